//! The simulated cluster: what kube-controller-manager, the scheduler and the kubelet write, as
//! far as clients read it back. One task runs every control loop in turn (`Sim::step`) whenever
//! the store changes or a timer is due, through the same verb code as any client (`ops`), so
//! every write gets a resourceVersion, managedFields and watch events like a real controller's.
//! A pass looks only at what changed since the last one (from the store's event history) or
//! whose timer is due, and takes the store lock per object, so API requests are served in
//! between:
//!
//! * `controllers` — the namespace controller (Terminating, then gone after the content),
//!   Deployments → ReplicaSets (rolling updates with `maxSurge`/`maxUnavailable`, `Recreate`,
//!   revisions) → Pods, StatefulSets → Pods (ordered), DaemonSets → one Pod (one node), Jobs →
//!   Pods (completions, `backoffLimit`), LoadBalancer Services;
//! * `kubelet` — Pod phases, conditions and container statuses, after `ready_delay`, with the
//!   kubelet's Events on the Pod; failures on demand (`FAILURE_ANNOTATION`), images that never
//!   become ready (`Options::never_ready_images`);
//! * `gateway` and `certmanager` — add-ons a cluster gets by installing them (a Gateway API
//!   implementation, cert-manager), acting once their CRDs are registered, with run-time test
//!   switches (`Switches`) that make them fail as the real ones do.
//!
//! Every status is computed from the current objects and written only when it differs, and
//! condition timestamps are kept while a condition does not change, so the loop settles: a pass
//! that finds nothing to do writes nothing.

use crate::discovery::{ResKey, ResourceType};
use crate::ops::{self, DeleteOpts, PatchType, WriteCtx};
use crate::store::{EventType, Inner, Store, meta_str, now_rfc3339};
use crate::{certmanager, controllers, gateway, kubelet};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Annotation (on a Pod, so on a pod template; or on the workload itself, which the double's
/// controllers copy to the Pods they create) that makes the simulated kubelet fail the Pod's
/// containers. Values: `ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`; any other value
/// becomes the containers' `waiting.reason` as it is (e.g. `CreateContainerConfigError`).
pub const FAILURE_ANNOTATION: &str = "threeport.io/simulate-failure";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBELET: &str = "kubelet";
pub const SCHEDULER: &str = "default-scheduler";
/// The one node; every Pod runs on it.
pub const NODE_NAME: &str = "kube-double";

#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    pub ready_delay: Duration,
    pub never_ready_images: Vec<String>,
}

/// Test switches a test flips while the double runs (`KubeDouble::set_*`); every pass reads
/// the current values, and a change wakes the loop and makes the add-ons look at everything
/// they simulate again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switches {
    /// Gateways of the double's class get an address and `Programmed=True`; off: no address,
    /// `Programmed=False`/`AddressNotAssigned`.
    pub gateway_programming: bool,
    /// Gateway addresses are host names (`<gw>-<ns>.lb.double.example`) instead of IPs.
    pub gateway_hostnames: bool,
    /// Certificates are issued; off: every issuance fails like an unreachable HTTP-01 challenge.
    pub certificate_issuance: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            gateway_programming: true,
            gateway_hostnames: false,
            certificate_issuance: true,
        }
    }
}

pub struct Sim {
    pub opts: SimOptions,
    /// The kubelet's Pods, by uid.
    pub pods: HashMap<String, kubelet::PodTrack>,
    /// Terminating namespaces: when the namespace controller first saw each.
    pub namespaces: HashMap<String, Instant>,
    /// LoadBalancer Services: uid → (generation, when its address is due (`None`: given),
    /// namespace, name).
    pub services: HashMap<String, (i64, Option<Instant>, String, String)>,
    /// Deployments waiting for their progress deadline: (namespace, name) → when.
    pub deadlines: HashMap<(String, String), Instant>,
    /// Pod IPs are handed out from 10.244.0.0/16.
    pub next_pod_ip: u32,
    /// The test switches as of this pass.
    pub switches: Switches,
    /// The Gateway API implementation's timers and bookkeeping.
    pub gateway: gateway::State,
    /// cert-manager's issuance attempts and signing CA.
    pub certs: certmanager::State,
    /// The store's resourceVersion up to which changes have been looked at.
    last_rv: u64,
}

/// The simulated kinds, as stored.
pub const PODS: (&str, &str) = ("", "pods");
pub const REPLICASETS: (&str, &str) = ("apps", "replicasets");
pub const DEPLOYMENTS: (&str, &str) = ("apps", "deployments");
pub const STATEFULSETS: (&str, &str) = ("apps", "statefulsets");
pub const DAEMONSETS: (&str, &str) = ("apps", "daemonsets");
pub const JOBS: (&str, &str) = ("batch", "jobs");
pub const SERVICES: (&str, &str) = ("", "services");
pub const NAMESPACES: (&str, &str) = ("", "namespaces");
pub const SECRETS: (&str, &str) = ("", "secrets");
pub const CRDS: (&str, &str) = ("apiextensions.k8s.io", "customresourcedefinitions");
const WATCHED: &[(&str, &str)] = &[
    PODS,
    REPLICASETS,
    DEPLOYMENTS,
    STATEFULSETS,
    DAEMONSETS,
    JOBS,
    SERVICES,
    NAMESPACES,
    // What the add-ons read: TLS Secrets (listeners, issued certificates), CRDs (an add-on
    // starts acting when its kinds appear) and their own kinds.
    SECRETS,
    CRDS,
    gateway::CLASSES,
    gateway::GATEWAYS,
    gateway::HTTPROUTES,
    gateway::TCPROUTES,
    gateway::REFERENCEGRANTS,
    certmanager::CERTIFICATES,
    certmanager::ISSUERS,
    certmanager::CLUSTER_ISSUERS,
];

/// What a pass has to look at: objects that changed since the last pass (or whose timer is
/// due), and the owners of changed objects. A pass looks only at those — a pass over every
/// object on every write would make a large cluster (the 200-workload tests) crawl.
#[derive(Default)]
pub struct Dirty {
    /// Everything (the first pass, or when the change history was compacted).
    pub full: bool,
    objects: HashSet<(&'static str, &'static str, String, String)>,
    /// Controller-owner uids of changed objects.
    owners: HashSet<String>,
    /// The same owners as (namespace, name): an owner lives in its children's namespace, so a
    /// pass finds them without looking through every object of their kind.
    owner_keys: HashSet<(String, String)>,
    /// uids of deleted objects.
    pub deleted: HashSet<String>,
}

impl Dirty {
    pub fn mark(&mut self, kind: (&'static str, &'static str), ns: &str, name: &str) {
        self.objects
            .insert((kind.0, kind.1, ns.to_string(), name.to_string()));
    }

    /// Whether `o` (of `kind`) needs a look: it changed, or something it controls did.
    pub fn has(&self, kind: (&'static str, &'static str), o: &Value) -> bool {
        self.full
            || self.owners.contains(meta_str(o, "uid"))
            || self.objects.contains(&(
                kind.0,
                kind.1,
                meta_str(o, "namespace").to_string(),
                meta_str(o, "name").to_string(),
            ))
    }

    /// (namespace, name) of the objects of `kind` that changed (or were deleted, or whose
    /// timer is due) since the last pass; not meaningful when `full`.
    pub fn changed(
        &self,
        kind: (&'static str, &'static str),
    ) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.objects
            .iter()
            .filter(move |(g, p, _, _)| (*g, *p) == kind)
            .map(|(_, _, ns, name)| (ns.as_str(), name.as_str()))
    }

    /// Whether a CRD of `group` was written or deleted (its kinds appeared, changed or went).
    pub fn crd_changed(&self, group: &str) -> bool {
        self.changed(CRDS)
            .any(|(_, name)| name.split_once('.').is_some_and(|(_, g)| g == group))
    }
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        Sim {
            opts,
            pods: HashMap::new(),
            namespaces: HashMap::new(),
            services: HashMap::new(),
            deadlines: HashMap::new(),
            next_pod_ip: 0,
            switches: Switches::default(),
            gateway: gateway::State::default(),
            certs: certmanager::State::default(),
            last_rv: 0,
        }
    }

    /// The changes since the last pass, from the store's event history.
    fn changes(&mut self, g: &Inner) -> Dirty {
        let mut d = Dirty::default();
        if self.last_rv == 0 {
            d.full = true;
        } else {
            match g.events_after(self.last_rv) {
                Err(_) => d.full = true,
                Ok(events) => {
                    for e in events {
                        let Some(&kind) = WATCHED
                            .iter()
                            .find(|(gr, pl)| e.key.group == *gr && e.key.plural == *pl)
                        else {
                            continue;
                        };
                        d.mark(kind, &e.namespace, meta_str(&e.object, "name"));
                        for o in std::iter::once(&e.object).chain(e.old.as_ref()) {
                            if let Some((uid, name)) = controller_ref(o) {
                                d.owners.insert(uid.to_string());
                                d.owner_keys.insert((e.namespace.clone(), name.to_string()));
                            }
                        }
                        if e.etype == EventType::Deleted {
                            d.deleted.insert(meta_str(&e.object, "uid").to_string());
                        }
                    }
                }
            }
        }
        self.last_rv = g.rv();
        d
    }

    /// One pass of every loop; returns when the next timer is due. The store lock is taken per
    /// object, not for the whole pass, so API requests are served in between.
    pub fn step(&mut self, store: &Store) -> Option<Instant> {
        let now = Instant::now();
        let mut dirty = self.changes(&store.lock());
        // Timers that are due make their objects dirty.
        for t in self.pods.values() {
            if let Some((ns, name)) = t.due_at(now) {
                dirty.mark(PODS, ns, name);
            }
        }
        for (_, due, ns, name) in self.services.values() {
            if due.is_some_and(|t| t <= now) {
                dirty.mark(SERVICES, ns, name);
            }
        }
        let due: Vec<_> = self
            .deadlines
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.deadlines.remove(&k);
            dirty.mark(DEPLOYMENTS, &k.0, &k.1);
        }
        for (ns, name) in self.gateway.due(now) {
            dirty.mark(gateway::GATEWAYS, &ns, &name);
        }
        for (ns, name) in self.certs.due(now) {
            dirty.mark(certmanager::CERTIFICATES, &ns, &name);
        }
        controllers::namespaces(self, store, now, &dirty);
        kubelet::pods(self, store, now, &dirty);
        controllers::replicasets(store, &dirty);
        controllers::statefulsets(store, &dirty);
        controllers::daemonsets(store, &dirty);
        controllers::jobs(store, &dirty);
        controllers::deployments(self, store, &dirty);
        controllers::services(self, store, now, &dirty);
        certmanager::pass(self, store, now, &dirty);
        gateway::pass(self, store, now, &dirty);
        // The next timer.
        let delay = self.opts.ready_delay;
        self.pods
            .values()
            .filter_map(|t| t.pending())
            .chain(
                self.services
                    .values()
                    .filter_map(|s| s.1)
                    .filter(|t| *t > now),
            )
            .chain(
                self.namespaces
                    .values()
                    .map(|t| *t + delay)
                    .filter(|t| *t > now),
            )
            .chain(self.deadlines.values().copied())
            .chain(self.gateway.next(now))
            .chain(self.certs.next(now))
            .min()
    }
}

pub async fn run(
    store: Arc<Store>,
    opts: SimOptions,
    mut switches: watch::Receiver<Switches>,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = store.subscribe();
    let mut sim = Sim::new(opts);
    loop {
        changes.borrow_and_update();
        sim.switches = *switches.borrow_and_update();
        let next = sim.step(&store);
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            // A flipped switch changes what the add-ons report without any object changing.
            r = switches.changed() => if r.is_err() { return },
            _ = sleep_until_opt(next) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the loops
// ---------------------------------------------------------------------------------------------

pub fn rt(g: &Inner, group: &str, plural: &str) -> Option<ResourceType> {
    g.registry.find_key(&ResKey::new(group, plural)).cloned()
}

pub fn list(g: &Inner, group: &str, plural: &str) -> Vec<Arc<Value>> {
    g.list(&ResKey::new(group, plural), None)
}

/// Not being deleted.
pub fn live(o: &Arc<Value>) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_none()
}

pub fn s<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

pub fn i(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

pub fn generation(o: &Value) -> i64 {
    o.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// `spec.replicas`, defaulted to 1.
pub fn desired(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

pub fn label<'a>(o: &'a Value, k: &str) -> &'a str {
    o.pointer("/metadata/labels")
        .and_then(|l| l.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub fn annotation<'a>(o: &'a Value, k: &str) -> &'a str {
    o.pointer("/metadata/annotations")
        .and_then(|l| l.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The uid of the controlling owner (`ownerReferences[].controller: true`).
pub fn controller_uid(o: &Value) -> Option<&str> {
    controller_ref(o).map(|(uid, _)| uid)
}

/// The controlling owner's (uid, name).
fn controller_ref(o: &Value) -> Option<(&str, &str)> {
    let r = o
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    Some((
        r.get("uid").and_then(Value::as_str)?,
        r.get("name").and_then(Value::as_str).unwrap_or_default(),
    ))
}

/// The live objects of `kind` this pass must look at: after the first pass, only those that
/// changed or control something that did, looked up by key, so a pass costs what changed, not
/// what the cluster holds.
pub fn targets(g: &Inner, kind: (&'static str, &'static str), dirty: &Dirty) -> Vec<Arc<Value>> {
    if dirty.full {
        return list(g, kind.0, kind.1)
            .into_iter()
            .filter(|o| live(o) && dirty.has(kind, o))
            .collect();
    }
    let key = ResKey::new(kind.0, kind.1);
    let keys: std::collections::BTreeSet<(&str, &str)> = dirty
        .changed(kind)
        .chain(
            dirty
                .owner_keys
                .iter()
                .map(|(ns, name)| (ns.as_str(), name.as_str())),
        )
        .collect();
    keys.into_iter()
        .filter_map(|(ns, name)| g.get(&key, ns, name))
        .filter(|o| live(o) && dirty.has(kind, o))
        .collect()
}

/// The live objects of `kind` controlled by one of `owners`, by owner uid. Children live in
/// their owner's namespace, so only those namespaces are looked through.
pub fn children(
    g: &Inner,
    kind: (&'static str, &'static str),
    owners: &[Arc<Value>],
) -> HashMap<String, Vec<Arc<Value>>> {
    let uids: HashSet<&str> = owners.iter().map(|o| meta_str(o, "uid")).collect();
    let namespaces: std::collections::BTreeSet<&str> =
        owners.iter().map(|o| meta_str(o, "namespace")).collect();
    let key = ResKey::new(kind.0, kind.1);
    let mut m: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for o in namespaces.into_iter().flat_map(|ns| g.list(&key, Some(ns))) {
        if let Some(uid) = controller_uid(&o).filter(|u| uids.contains(u))
            && live(&o)
        {
            m.entry(uid.to_string()).or_default().push(o.clone());
        }
    }
    m
}

pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": s(owner, "/apiVersion"), "kind": s(owner, "/kind"),
        "name": meta_str(owner, "name"), "uid": meta_str(owner, "uid"),
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// Write `status` unless it is what the object has.
pub fn write_status(g: &mut Inner, rt: &ResourceType, o: &Value, status: Value) {
    write_status_as(g, rt, o, status, CONTROLLER_MANAGER);
}

/// `write_status` by another field manager (an add-on's controller).
pub fn write_status_as(g: &mut Inner, rt: &ResourceType, o: &Value, status: Value, manager: &str) {
    if o.get("status") == Some(&status) {
        return;
    }
    let _ = ops::set_status(
        g,
        rt,
        meta_str(o, "namespace"),
        meta_str(o, "name"),
        status,
        manager,
    );
}

/// A merge patch of the main resource by `manager`; the stored result.
pub fn merge_patch(
    g: &mut Inner,
    rt: &ResourceType,
    o: &Value,
    patch: Value,
    manager: &str,
) -> Option<Value> {
    let body = serde_json::to_vec(&patch).unwrap_or_default();
    ops::patch(
        g,
        rt,
        meta_str(o, "namespace"),
        meta_str(o, "name"),
        PatchType::Merge,
        &body,
        &WriteCtx::new(manager),
        false,
    )
    .ok()
    .map(|(v, _)| v)
}

pub fn delete(g: &mut Inner, rt: &ResourceType, o: &Value) -> bool {
    ops::delete(
        g,
        rt,
        meta_str(o, "namespace"),
        meta_str(o, "name"),
        &DeleteOpts::default(),
    )
    .is_ok()
}

pub fn create(g: &mut Inner, rt: &ResourceType, ns: &str, o: Value) -> Option<Value> {
    ops::create(g, rt, ns, o, &WriteCtx::new(CONTROLLER_MANAGER)).ok()
}

/// A condition, keeping the old one's timestamps while it does not change: `lastTransitionTime`
/// while `status` is the same; `lastUpdateTime` (with `update_time`) while reason and message
/// are too, unless `touch` (progress was made).
#[allow(clippy::too_many_arguments)]
pub fn condition(
    old_status: Option<&Value>,
    t: &str,
    status: &str,
    reason: &str,
    message: &str,
    update_time: bool,
    touch: bool,
) -> Value {
    let now = now_rfc3339();
    let old = old_status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == t));
    let same_status = old.is_some_and(|c| c["status"] == status);
    let same_all =
        same_status && old.is_some_and(|c| c["reason"] == reason && c["message"] == message);
    let transition = match old {
        Some(c) if same_status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c = Map::new();
    c.insert("type".into(), json!(t));
    c.insert("status".into(), json!(status));
    if update_time {
        let update = match old {
            Some(c) if same_all && !touch => c["lastUpdateTime"].clone(),
            _ => json!(now),
        };
        c.insert("lastUpdateTime".into(), update);
    }
    c.insert("lastTransitionTime".into(), transition);
    if !reason.is_empty() {
        c.insert("reason".into(), json!(reason));
    }
    if !message.is_empty() {
        c.insert("message".into(), json!(message));
    }
    Value::Object(c)
}

/// A core/v1 Event about `involved`, as the named component files it.
#[allow(clippy::too_many_arguments)]
pub fn event(
    g: &mut Inner,
    involved: &Value,
    component: &str,
    etype: &str,
    reason: &str,
    message: &str,
    field_path: Option<&str>,
) {
    let Some(ev_rt) = rt(g, "", "events") else {
        return;
    };
    let ns = match meta_str(involved, "namespace") {
        "" => "default",
        n => n,
    }
    .to_string();
    let now = now_rfc3339();
    let mut obj = json!({
        "apiVersion": s(involved, "/apiVersion"), "kind": s(involved, "/kind"),
        "name": meta_str(involved, "name"), "namespace": meta_str(involved, "namespace"),
        "uid": meta_str(involved, "uid"), "resourceVersion": meta_str(involved, "resourceVersion"),
    });
    if meta_str(involved, "namespace").is_empty() {
        obj.as_object_mut().map(|m| m.remove("namespace"));
    }
    if let Some(fp) = field_path {
        obj["fieldPath"] = json!(fp);
    }
    let mut source = json!({"component": component});
    if component == KUBELET {
        source["host"] = json!(NODE_NAME);
    }
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:016x}", meta_str(involved, "name"), rand::random::<u64>()), "namespace": ns},
        "involvedObject": obj,
        "reason": reason,
        "message": message,
        "type": etype,
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": source,
        "reportingComponent": component,
        "reportingInstance": if component == KUBELET { NODE_NAME } else { "" },
    });
    let _ = ops::create(g, &ev_rt, &ns, ev, &WriteCtx::new(component));
}

/// An IntOrString (`3`, `"25%"`) against `total`, rounding percentages up or down.
pub fn int_or_percent(v: Option<&Value>, default: &str, total: i64, round_up: bool) -> i64 {
    let v = v.cloned().unwrap_or(json!(default));
    if let Some(n) = v.as_i64() {
        return n.max(0);
    }
    let s = v.as_str().unwrap_or(default);
    match s
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<i64>().ok())
    {
        Some(p) => {
            let x = p * total;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        None => s.parse::<i64>().unwrap_or(0).max(0),
    }
}

/// Whether a Pod is `Ready=True`.
pub fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub fn pod_phase(p: &Value) -> &str {
    s(p, "/status/phase")
}

/// `*`-glob match (the only wildcard), e.g. `registry.example/*:never`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// A Pod for `owner` from its pod template: template labels and annotations (plus `labels`),
/// the owner's failure annotation, a controller ownerReference, and the node.
pub fn pod_from_template(
    owner: &Value,
    name: Option<String>,
    generate_name: &str,
    labels: &[(&str, String)],
) -> Value {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut meta = Map::new();
    match name {
        Some(n) => meta.insert("name".into(), json!(n)),
        None => meta.insert("generateName".into(), json!(generate_name)),
    };
    meta.insert("namespace".into(), json!(meta_str(owner, "namespace")));
    let mut l = template
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    for (k, v) in labels {
        l[*k] = json!(v);
    }
    meta.insert("labels".into(), l);
    let mut a = template
        .pointer("/metadata/annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    let inherited = annotation(owner, FAILURE_ANNOTATION);
    if !inherited.is_empty() && a.get(FAILURE_ANNOTATION).is_none() {
        a[FAILURE_ANNOTATION] = json!(inherited);
    }
    if a.as_object().is_some_and(|m| !m.is_empty()) {
        meta.insert("annotations".into(), a);
    }
    meta.insert("ownerReferences".into(), json!([owner_ref(owner)]));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if !spec.is_object() {
        spec = json!({});
    }
    spec["nodeName"] = json!(NODE_NAME);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// A stable 64-hex-digit digest (image IDs, container IDs).
pub fn hex64(seed: &str) -> String {
    use std::hash::{Hash, Hasher};
    (0..4)
        .map(|k| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (k, seed).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_percentages() {
        assert!(glob("a/*:never", "a/b:never"));
        assert!(glob("*never*", "x-never-y"));
        assert!(!glob("a/*:never", "a/b:1"));
        assert!(glob("exact", "exact") && !glob("exact", "exact2"));
        assert_eq!(int_or_percent(None, "25%", 2, true), 1);
        assert_eq!(int_or_percent(None, "25%", 2, false), 0);
        assert_eq!(int_or_percent(Some(&json!(3)), "25%", 2, false), 3);
        assert_eq!(int_or_percent(Some(&json!("50%")), "25%", 4, false), 2);
    }

    #[test]
    fn conditions_keep_their_timestamps() {
        let old = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "R", "message": "m",
                                          "lastUpdateTime": "2020-01-01T00:00:00Z", "lastTransitionTime": "2019-01-01T00:00:00Z"}]});
        let c = condition(Some(&old), "Ready", "True", "R", "m", true, false);
        assert_eq!(c["lastUpdateTime"], "2020-01-01T00:00:00Z");
        assert_eq!(c["lastTransitionTime"], "2019-01-01T00:00:00Z");
        let c = condition(Some(&old), "Ready", "True", "R2", "m", true, false);
        assert_ne!(c["lastUpdateTime"], "2020-01-01T00:00:00Z");
        assert_eq!(c["lastTransitionTime"], "2019-01-01T00:00:00Z");
        let c = condition(Some(&old), "Ready", "False", "R", "m", false, false);
        assert_ne!(c["lastTransitionTime"], "2019-01-01T00:00:00Z");
        assert!(c.get("lastUpdateTime").is_none());
    }
}
