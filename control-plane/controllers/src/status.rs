//! Workload status read back from the cluster. One watcher set per runtime follows what a real
//! cluster provides: the workload objects Threeport applied (Deployments, StatefulSets,
//! DaemonSets, Jobs, by label), the ReplicaSets and Pods they own (by ownerReferences: Pod →
//! ReplicaSet → Deployment, or Pod → StatefulSet/DaemonSet/Job), and the Warning Events about
//! any of them — the kubelet files its Events on the Pod. From those it computes each
//! instance's `Status` + `StatusReason` and records WorkloadEvents. A watch, not a poll: a
//! Deployment that becomes ready, or starts failing, an hour later is reflected within moments.
//!
//! What it relies on, because real clusters behave that way:
//! * items of a LIST carry no `kind` (only the list does): the kind comes from the watched
//!   resource, never from the object;
//! * a watcher re-lists (after a restart, a `410 Gone`, a reconnect): objects absent from the
//!   new list are gone; nothing is reported until every watch has completed its first list, so
//!   a restarted controller does not report a half-seen cluster;
//! * `Healthy` needs every workload object of the instance observed at (at least) the
//!   generation Threeport applied, `observedGeneration == generation`, and a complete rollout
//!   (`updatedReplicas == replicas == availableReplicas == spec.replicas`, and the equivalents for
//!   StatefulSets, DaemonSets and Jobs). An instance with no applied objects is never `Healthy`.
//!
//! The watcher writes the status only of instances whose reconcile is finished (`Reconciled`,
//! not failed, not being deleted): while the workload reconciler works, the reconciler's report
//! is the status. After each reconcile the instance is re-checked (`touch`), retrying until the
//! reconcile's bookkeeping is written. Otherwise the API is asked only when the status computed
//! for an instance changes.

use crate::cluster::INSTANCE_LABEL;
use crate::runtime::now_rfc3339;
use futures::{StreamExt, stream::BoxStream};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use threeport_api::{Client, ObjectExt, kinds};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Health of one instance from its cluster objects, their Pods and warning events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: &'static str,
    pub reason: String,
}

/// The kinds whose readiness the watcher follows. Other applied kinds (ConfigMaps, Services, …)
/// are ready once applied.
pub const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "Job"];

/// Container waiting reasons that are just a Pod starting, not a problem.
const STARTING: &[&str] = &["ContainerCreating", "PodInitializing"];

/// (kind, namespace, name)
pub type Key = (String, String, String);

/// A container that is waiting for a reason other than starting up.
#[derive(Debug, Clone, PartialEq)]
pub struct PodProblem {
    pub pod: String,
    pub reason: String,
    pub message: String,
}

/// A Warning Event about a workload object, one of its ReplicaSets or one of its Pods.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// "Pod web-7d9c-x2x4z", "Deployment web"
    pub object: String,
    pub reason: String,
    pub message: String,
}

/// One workload object of an instance as the watcher sees it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    /// The object as last observed; `None` when not observed yet.
    pub object: Option<Value>,
    /// The generation Threeport applied (0: unknown): an older observation is stale.
    pub applied_generation: i64,
    pub problems: Vec<PodProblem>,
    pub warnings: Vec<Warning>,
}

enum Verdict {
    Ready(String),
    NotReady(String),
    Stuck(String),
    Failed(String),
}

fn n(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn cond<'a>(o: &'a Value, t: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == t)
}

fn verdict(w: &Workload) -> Verdict {
    let (kind, name) = (w.kind.as_str(), w.name.as_str());
    let Some(o) = &w.object else {
        return Verdict::NotReady(format!("{kind} {name}: not observed yet"));
    };
    let generation = n(o, "/metadata/generation");
    if generation < w.applied_generation {
        return Verdict::NotReady(format!("{kind} {name}: not observed yet"));
    }
    if kind == "Job" {
        let is = |t: &str| cond(o, t).is_some_and(|c| c["status"] == "True");
        if is("Failed") {
            let msg = cond(o, "Failed")
                .and_then(|c| c["message"].as_str())
                .unwrap_or("failed");
            return Verdict::Failed(format!("Job {name} failed: {msg}"));
        }
        if is("Complete") {
            return Verdict::Ready(format!("Job {name} complete"));
        }
        return Verdict::NotReady(format!(
            "Job {name}: running ({} active, {} succeeded)",
            n(o, "/status/active"),
            n(o, "/status/succeeded")
        ));
    }
    let observed = o
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if observed.is_none_or(|g| g < generation) {
        return Verdict::NotReady(format!(
            "{kind} {name}: generation {generation} not observed by its controller yet"
        ));
    }
    let want = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match kind {
        "Deployment" => {
            if let Some(c) = cond(o, "Progressing")
                && c["status"] == "False"
                && c["reason"] == "ProgressDeadlineExceeded"
            {
                return Verdict::Stuck(format!(
                    "Deployment {name}: {}",
                    c["message"]
                        .as_str()
                        .unwrap_or("progress deadline exceeded")
                ));
            }
            let (replicas, updated) = (n(o, "/status/replicas"), n(o, "/status/updatedReplicas"));
            let (ready, available) = (
                n(o, "/status/readyReplicas"),
                n(o, "/status/availableReplicas"),
            );
            let state = format!(
                "{updated}/{want} updated, {ready}/{want} ready, {available}/{want} available"
            );
            if updated < want || replicas != want || ready < want || available < want {
                let old = (replicas - updated).max(0);
                let tail = if old > 0 {
                    format!(", {old} old replica(s) left")
                } else {
                    String::new()
                };
                Verdict::NotReady(format!(
                    "Deployment {name}: rollout in progress: {state}{tail}"
                ))
            } else {
                Verdict::Ready(format!("Deployment {name}: {state}"))
            }
        }
        "StatefulSet" => {
            let (replicas, ready, updated) = (
                n(o, "/status/replicas"),
                n(o, "/status/readyReplicas"),
                n(o, "/status/updatedReplicas"),
            );
            let available = o
                .pointer("/status/availableReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(ready);
            let on_delete = o
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                == Some("OnDelete");
            let partition = n(o, "/spec/updateStrategy/rollingUpdate/partition");
            let revisions_done = on_delete
                || partition > 0
                || (updated >= want
                    && o.pointer("/status/currentRevision") == o.pointer("/status/updateRevision"));
            let state = format!("{ready}/{want} ready, {updated}/{want} updated");
            if replicas != want || ready < want || available < want || !revisions_done {
                Verdict::NotReady(format!("StatefulSet {name}: rollout in progress: {state}"))
            } else {
                Verdict::Ready(format!("StatefulSet {name}: {state}"))
            }
        }
        "DaemonSet" => {
            let desired = n(o, "/status/desiredNumberScheduled");
            let (ready, available, updated) = (
                n(o, "/status/numberReady"),
                n(o, "/status/numberAvailable"),
                n(o, "/status/updatedNumberScheduled"),
            );
            let state = format!("{ready}/{desired} ready, {updated}/{desired} updated");
            if updated < desired || ready < desired || available < desired {
                Verdict::NotReady(format!("DaemonSet {name}: rollout in progress: {state}"))
            } else {
                Verdict::Ready(format!("DaemonSet {name}: {state}"))
            }
        }
        _ => Verdict::Ready(format!("{kind} {name}")),
    }
}

/// Pure: decide the status from the instance's workload objects (with their Pods' problems and
/// the warnings about them) and how many other objects it has.
pub fn health(workloads: &[Workload], other_objects: usize) -> Health {
    if workloads.is_empty() && other_objects == 0 {
        return Health {
            status: "Progressing",
            reason: "no objects applied to the cluster yet".into(),
        };
    }
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut degraded = Vec::new();
    for w in workloads {
        match verdict(w) {
            Verdict::Failed(m) => {
                return Health {
                    status: "Failed",
                    reason: m,
                };
            }
            Verdict::Ready(m) => ready.push(m),
            Verdict::NotReady(m) => not_ready.push((w, m)),
            Verdict::Stuck(m) => degraded.push(m),
        }
    }
    if !not_ready.is_empty() || !degraded.is_empty() {
        // The deepest cause first: a container that cannot start, as the kubelet reports it…
        for (w, _) in &not_ready {
            if let Some(p) = w.problems.first() {
                let mut reason = format!(
                    "{} {}: Pod {}: {}: {}",
                    w.kind, w.name, p.pod, p.reason, p.message
                );
                let pod = format!("Pod {}", p.pod);
                if let Some(detail) = w.warnings.iter().find(|x| {
                    x.object == pod && x.reason == "Failed" && !x.message.starts_with("Error: ")
                }) {
                    reason.push_str("; ");
                    reason.push_str(&detail.message);
                }
                return Health {
                    status: "Degraded",
                    reason,
                };
            }
        }
        if let Some(m) = degraded.first() {
            return Health {
                status: "Degraded",
                reason: m.clone(),
            };
        }
        // …then the latest warning about something that is not ready.
        for (w, _) in &not_ready {
            if let Some(x) = w.warnings.last() {
                return Health {
                    status: "Degraded",
                    reason: format!(
                        "{} {}: {}: {}: {}",
                        w.kind, w.name, x.object, x.reason, x.message
                    ),
                };
            }
        }
        return Health {
            status: "Progressing",
            reason: not_ready
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        };
    }
    let mut reason = format!(
        "{} object(s) applied, {} workload(s) ready",
        workloads.len() + other_objects,
        workloads.len()
    );
    if !ready.is_empty() {
        reason.push_str(": ");
        reason.push_str(&ready.join("; "));
    }
    Health {
        status: "Healthy",
        reason,
    }
}

// ---------------------------------------------------------------------------------------------
// The watcher's view of one cluster
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Workload(&'static str),
    ReplicaSet,
    Pod,
    Event,
}

struct Obj {
    instance: u64,
    uid: String,
    value: Value,
}

struct Owned {
    namespace: String,
    name: String,
    owner_uid: String,
    /// Pods: containers waiting for a reason other than starting.
    problems: Vec<(String, String)>,
}

struct Warn {
    /// (kind, namespace, name) of the involved object, and its uid when the event has one.
    involved: Key,
    involved_uid: String,
    reason: String,
    message: String,
    time: String,
}

/// A Warning Event to record as a WorkloadEvent: (event uid, reason, message, time).
type EventRow = (String, String, String, String);

/// What an instance is expected to have, from its reconcile (or its resource instances).
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// Workload objects with the generation Threeport applied (0: unknown).
    pub workloads: Vec<(Key, i64)>,
    /// How many other objects (ConfigMaps, Services, …).
    pub others: usize,
}

impl Expected {
    /// From the objects as applied (the server-side apply responses, or the definitions).
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Expected {
        let mut e = Expected::default();
        for o in objects {
            let s = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let kind = s("/kind");
            if WORKLOAD_KINDS.contains(&kind.as_str()) {
                let generation = o
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                e.workloads.push((
                    (kind, s("/metadata/namespace"), s("/metadata/name")),
                    generation,
                ));
            } else {
                e.others += 1;
            }
        }
        e
    }
}

#[derive(Default)]
struct State {
    /// Workload objects by identity.
    objects: HashMap<Key, Obj>,
    /// ReplicaSets and Pods by uid.
    replicasets: HashMap<String, Owned>,
    pods: HashMap<String, Owned>,
    /// Warning events by event uid.
    warnings: HashMap<String, Warn>,
    expected: HashMap<u64, Expected>,
    /// The status last written (or found) per instance, and the instances whose stored status
    /// must be read again before trusting that (touched by a reconcile, or not reconciled yet).
    reported: HashMap<u64, Health>,
    unsettled: HashSet<u64>,
    events_sent: HashSet<String>,
    /// Sources that completed a first list, and the keys seen by a list in progress.
    synced: HashSet<Source>,
    relisting: HashMap<Source, HashSet<String>>,
}

fn instance_of(v: &Value) -> Option<u64> {
    v.pointer(&format!(
        "/metadata/labels/{}",
        INSTANCE_LABEL.replace('/', "~1")
    ))
    .and_then(Value::as_str)
    .and_then(|s| s.parse::<u64>().ok())
}

fn controller_uid(v: &Value) -> String {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|rs| {
            rs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn pod_problems(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for list in ["initContainerStatuses", "containerStatuses"] {
        for c in v
            .pointer(&format!("/status/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(w) = c.pointer("/state/waiting") {
                let reason = w.get("reason").and_then(Value::as_str).unwrap_or_default();
                if !reason.is_empty() && !STARTING.contains(&reason) {
                    let message = w.get("message").and_then(Value::as_str).unwrap_or_default();
                    out.push((reason.to_string(), message.to_string()));
                }
            }
        }
    }
    out
}

impl State {
    fn forget(&mut self, id: u64) {
        self.expected.remove(&id);
        self.reported.remove(&id);
        self.unsettled.remove(&id);
    }

    /// The instance a workload object, ReplicaSet, Pod or event belongs to.
    fn instance_by_uid(&self, uid: &str) -> Option<u64> {
        if uid.is_empty() {
            return None;
        }
        if let Some(o) = self.objects.values().find(|o| o.uid == uid) {
            return Some(o.instance);
        }
        if let Some(rs) = self.replicasets.get(uid) {
            return self.instance_by_uid(&rs.owner_uid);
        }
        if let Some(p) = self.pods.get(uid) {
            return self.instance_by_uid(&p.owner_uid);
        }
        None
    }

    fn instance_of_involved(&self, w: &Warn) -> Option<u64> {
        let (kind, ns, name) = &w.involved;
        if let Some(id) = self.instance_by_uid(&w.involved_uid) {
            return Some(id);
        }
        match kind.as_str() {
            "Pod" => self
                .pods
                .iter()
                .find(|(_, p)| &p.namespace == ns && &p.name == name)
                .and_then(|(uid, _)| self.instance_by_uid(uid)),
            "ReplicaSet" => self
                .replicasets
                .iter()
                .find(|(_, r)| &r.namespace == ns && &r.name == name)
                .and_then(|(uid, _)| self.instance_by_uid(uid)),
            _ => self.objects.get(&w.involved).map(|o| o.instance),
        }
    }

    /// Apply one watch event; the instances it concerns become dirty.
    fn apply(&mut self, src: Source, v: Value, deleted: bool, dirty: &mut HashSet<u64>) {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let uid = s("/metadata/uid");
        match src {
            Source::Workload(kind) => {
                let key: Key = (
                    kind.to_string(),
                    s("/metadata/namespace"),
                    s("/metadata/name"),
                );
                if let Some(l) = self.relisting.get_mut(&src) {
                    l.insert(format!("{}/{}", key.1, key.2));
                }
                if let Some(old) = self.objects.get(&key) {
                    dirty.insert(old.instance);
                }
                match instance_of(&v) {
                    Some(id) if !deleted => {
                        dirty.insert(id);
                        self.objects.insert(
                            key,
                            Obj {
                                instance: id,
                                uid,
                                value: v,
                            },
                        );
                    }
                    _ => {
                        self.objects.remove(&key);
                    }
                }
            }
            Source::ReplicaSet | Source::Pod => {
                if let Some(l) = self.relisting.get_mut(&src) {
                    l.insert(uid.clone());
                }
                let before = self.instance_by_uid(&uid);
                let map = if src == Source::Pod {
                    &mut self.pods
                } else {
                    &mut self.replicasets
                };
                if deleted {
                    map.remove(&uid);
                } else {
                    let owner_uid = controller_uid(&v);
                    if owner_uid.is_empty() {
                        map.remove(&uid);
                    } else {
                        map.insert(
                            uid.clone(),
                            Owned {
                                namespace: s("/metadata/namespace"),
                                name: s("/metadata/name"),
                                owner_uid,
                                problems: if src == Source::Pod {
                                    pod_problems(&v)
                                } else {
                                    vec![]
                                },
                            },
                        );
                    }
                }
                dirty.extend(before);
                dirty.extend(self.instance_by_uid(&uid));
            }
            Source::Event => {
                if let Some(l) = self.relisting.get_mut(&src) {
                    l.insert(uid.clone());
                }
                if deleted || s("/type") != "Warning" {
                    self.warnings.remove(&uid);
                    return;
                }
                let w = Warn {
                    involved: (
                        s("/involvedObject/kind"),
                        s("/involvedObject/namespace"),
                        s("/involvedObject/name"),
                    ),
                    involved_uid: s("/involvedObject/uid"),
                    reason: s("/reason"),
                    message: s("/message"),
                    time: s("/lastTimestamp"),
                };
                dirty.extend(self.instance_of_involved(&w));
                self.warnings.insert(uid, w);
            }
        }
    }

    /// A re-list finished: whatever it did not contain is gone.
    fn finish_relist(&mut self, src: Source, dirty: &mut HashSet<u64>) {
        self.synced.insert(src);
        let Some(seen) = self.relisting.remove(&src) else {
            return;
        };
        match src {
            Source::Workload(kind) => {
                let gone: Vec<Key> = self
                    .objects
                    .keys()
                    .filter(|k| k.0 == kind && !seen.contains(&format!("{}/{}", k.1, k.2)))
                    .cloned()
                    .collect();
                for k in gone {
                    if let Some(o) = self.objects.remove(&k) {
                        dirty.insert(o.instance);
                    }
                }
            }
            Source::ReplicaSet | Source::Pod => {
                let map = if src == Source::Pod {
                    &self.pods
                } else {
                    &self.replicasets
                };
                let gone: Vec<String> =
                    map.keys().filter(|u| !seen.contains(*u)).cloned().collect();
                for u in gone {
                    dirty.extend(self.instance_by_uid(&u));
                    if src == Source::Pod {
                        self.pods.remove(&u);
                    } else {
                        self.replicasets.remove(&u);
                    }
                }
            }
            Source::Event => self.warnings.retain(|u, _| seen.contains(u)),
        }
    }

    /// The instance's workload objects with their Pods' problems and warnings, and the Warning
    /// events (uid, reason, message, time) about them.
    fn view(&self, id: u64) -> (Vec<Workload>, usize, Vec<EventRow>) {
        let expected = self.expected.get(&id).cloned().unwrap_or_default();
        let mut keys: Vec<(Key, i64)> = expected.workloads.clone();
        for (k, o) in &self.objects {
            if o.instance == id && !keys.iter().any(|(e, _)| e == k) {
                keys.push((k.clone(), 0));
            }
        }
        keys.sort();
        let mut events = Vec::new();
        let mut out = Vec::new();
        for (key, applied_generation) in keys {
            let obj = self.objects.get(&key).filter(|o| o.instance == id);
            let mut problems = Vec::new();
            let mut warnings = Vec::new();
            let mut related: Vec<(Key, String)> = Vec::new(); // (identity, uid)
            if let Some(o) = obj {
                related.push((key.clone(), o.uid.clone()));
                let rs_uids: Vec<&String> = self
                    .replicasets
                    .iter()
                    .filter(|(_, r)| r.owner_uid == o.uid)
                    .map(|(u, r)| {
                        related.push((
                            ("ReplicaSet".into(), r.namespace.clone(), r.name.clone()),
                            u.clone(),
                        ));
                        u
                    })
                    .collect();
                let mut pods: Vec<(&String, &Owned)> = self
                    .pods
                    .iter()
                    .filter(|(_, p)| p.owner_uid == o.uid || rs_uids.contains(&&p.owner_uid))
                    .collect();
                pods.sort_by(|a, b| a.1.name.cmp(&b.1.name));
                for (uid, p) in pods {
                    related.push((
                        ("Pod".into(), p.namespace.clone(), p.name.clone()),
                        uid.clone(),
                    ));
                    for (reason, message) in &p.problems {
                        problems.push(PodProblem {
                            pod: p.name.clone(),
                            reason: reason.clone(),
                            message: message.clone(),
                        });
                    }
                }
                let mut found: Vec<(&String, &Warn)> = self
                    .warnings
                    .iter()
                    .filter(|(_, w)| {
                        related.iter().any(|(k, u)| {
                            w.involved == *k && (w.involved_uid.is_empty() || w.involved_uid == *u)
                        })
                    })
                    .collect();
                found.sort_by(|a, b| (&a.1.time, a.0).cmp(&(&b.1.time, b.0)));
                for (euid, w) in found {
                    let object = format!("{} {}", w.involved.0, w.involved.2);
                    warnings.push(Warning {
                        object: object.clone(),
                        reason: w.reason.clone(),
                        message: w.message.clone(),
                    });
                    events.push((
                        euid.clone(),
                        w.reason.clone(),
                        format!("{object}: {}", w.message),
                        w.time.clone(),
                    ));
                }
            }
            out.push(Workload {
                kind: key.0.clone(),
                name: key.2.clone(),
                object: obj.map(|o| o.value.clone()),
                applied_generation,
                problems,
                warnings,
            });
        }
        (out, expected.others, events)
    }
}

// ---------------------------------------------------------------------------------------------
// Watchers per runtime
// ---------------------------------------------------------------------------------------------

struct Touch {
    instance: u64,
    expected: Option<Expected>,
}

/// Watcher sets per runtime, started on first use.
#[derive(Default)]
pub struct StatusWatchers {
    running: Mutex<HashMap<u64, mpsc::UnboundedSender<Touch>>>,
    pub shutdown: CancellationToken,
}

impl StatusWatchers {
    pub fn new(shutdown: CancellationToken) -> StatusWatchers {
        StatusWatchers {
            running: Mutex::default(),
            shutdown,
        }
    }

    pub async fn ensure(&self, runtime_id: u64, client: kube::Client, api: Client) {
        let mut running = self.running.lock().await;
        if running.get(&runtime_id).is_some_and(|tx| !tx.is_closed()) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        running.insert(runtime_id, tx);
        tokio::spawn(watch_runtime(client, api, rx, self.shutdown.clone()));
    }

    /// Re-check one instance now (and again until its reconcile's bookkeeping is written) even
    /// if nothing in the cluster changed. Its expected objects are read from its
    /// WorkloadResourceInstances unless already known.
    pub async fn touch(&self, runtime_id: u64, instance_id: u64) {
        self.send(runtime_id, instance_id, None).await;
    }

    /// Like `touch`, after a reconcile that applied these objects (the apply responses).
    pub async fn touch_applied(&self, runtime_id: u64, instance_id: u64, expected: Expected) {
        self.send(runtime_id, instance_id, Some(expected)).await;
    }

    async fn send(&self, runtime_id: u64, instance: u64, expected: Option<Expected>) {
        if let Some(tx) = self.running.lock().await.get(&runtime_id) {
            let _ = tx.send(Touch { instance, expected });
        }
    }

    pub async fn stop(&self, runtime_id: u64) {
        self.running.lock().await.remove(&runtime_id);
    }
}

/// Start watchers for every runtime that has workload instances, and recompute them all.
pub async fn watch_all(api: &Client, clients: &crate::cluster::Clients, watchers: &StatusWatchers) {
    let kri = kinds::KUBERNETES_RUNTIME_INSTANCE;
    let wi = kinds::WORKLOAD_INSTANCE;
    let Ok(runtimes) = api.list(kri, &[]).await else {
        return;
    };
    for r in runtimes {
        let Some(rid) = threeport_api::object_id(&r) else {
            continue;
        };
        let Ok(instances) = api
            .list(wi, &[("kubernetesruntimeinstanceid", rid.to_string())])
            .await
        else {
            continue;
        };
        if instances.is_empty() {
            continue;
        }
        let Ok(revealed) = api.get_revealed(kri, rid).await else {
            continue;
        };
        let Ok(client) = clients.get(&revealed).await else {
            continue;
        };
        watchers
            .ensure(rid, client.client.clone(), api.clone())
            .await;
        for i in instances.iter().filter_map(threeport_api::object_id) {
            watchers.touch(rid, i).await;
        }
    }
}

fn stream_for(
    client: &kube::Client,
    src: Source,
    ar: ApiResource,
    labels: Option<&str>,
) -> BoxStream<'static, (Source, watcher::Event<DynamicObject>)> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut cfg = watcher::Config::default();
    if let Some(l) = labels {
        cfg = cfg.labels(l);
    }
    watcher(api, cfg)
        .default_backoff()
        .filter_map(move |r| async move {
            match r {
                Ok(ev) => Some((src, ev)),
                Err(e) => {
                    tracing::debug!(error = %e, "status watch error; retrying");
                    None
                }
            }
        })
        .boxed()
}

/// How long a watcher leaves an instance it did not reconcile to the replica that did.
const OTHERS_FIRST: Duration = Duration::from_millis(1000);

/// When a deferred re-check is due: 200 ms, doubling, at most 5 s apart, for about a minute.
fn defer_delay(attempt: u32) -> Option<Duration> {
    (attempt < 16).then(|| Duration::from_millis((200u64 << attempt.min(5)).min(5_000)))
}

async fn watch_runtime(
    client: kube::Client,
    api: Client,
    mut touched: mpsc::UnboundedReceiver<Touch>,
    shutdown: CancellationToken,
) {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    let sources = vec![
        stream_for(
            &client,
            Source::Workload("Deployment"),
            ApiResource::erase::<apps::Deployment>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            Source::Workload("StatefulSet"),
            ApiResource::erase::<apps::StatefulSet>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            Source::Workload("DaemonSet"),
            ApiResource::erase::<apps::DaemonSet>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            Source::Workload("Job"),
            ApiResource::erase::<batch::Job>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            Source::ReplicaSet,
            ApiResource::erase::<apps::ReplicaSet>(&()),
            None,
        ),
        stream_for(
            &client,
            Source::Pod,
            ApiResource::erase::<core::Pod>(&()),
            None,
        ),
        stream_for(
            &client,
            Source::Event,
            ApiResource::erase::<core::Event>(&()),
            None,
        ),
    ];
    let source_count = sources.len();
    let mut merged = futures::stream::select_all(sources);
    let mut st = State::default();
    let mut dirty: HashSet<u64> = HashSet::new();
    let mut deferred: HashMap<u64, (Instant, u32)> = HashMap::new();
    let mut flush = tokio::time::interval(Duration::from_millis(150));
    // Reports wait for every first list, but not forever (a kind the cluster refuses to list).
    let started = Instant::now();
    loop {
        let synced = st.synced.len() == source_count || started.elapsed() > Duration::from_secs(30);
        let next_deferred = deferred.values().map(|(t, _)| *t).min();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            t = touched.recv() => match t {
                Some(t) => {
                    if let Some(e) = t.expected {
                        st.expected.insert(t.instance, e);
                    }
                    st.unsettled.insert(t.instance);
                    deferred.remove(&t.instance);
                    dirty.insert(t.instance);
                }
                None => return,
            },
            _ = async { tokio::time::sleep_until(next_deferred.unwrap_or_else(Instant::now)).await },
                if next_deferred.is_some() => {
                let now = Instant::now();
                for (id, (due, _)) in deferred.iter_mut() {
                    if *due <= now {
                        dirty.insert(*id);
                        // Parked until the flush takes it (keeping its attempt count): a due
                        // time left in the past would wake this loop again at once, and spin.
                        *due = now + Duration::from_secs(3600);
                    }
                }
            }
            ev = merged.next() => {
                let Some((src, ev)) = ev else { return };
                let to_value = |o: &DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
                match ev {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                        st.apply(src, to_value(&o), false, &mut dirty);
                    }
                    watcher::Event::Delete(o) => st.apply(src, to_value(&o), true, &mut dirty),
                    watcher::Event::Init => {
                        st.relisting.insert(src, HashSet::new());
                    }
                    watcher::Event::InitDone => st.finish_relist(src, &mut dirty),
                }
            }
            _ = flush.tick(), if !dirty.is_empty() && synced => {
                let ids: Vec<u64> = dirty.drain().collect();
                for id in ids {
                    let attempt = deferred.get(&id).map_or(0, |(_, a)| *a);
                    // An instance this process neither reconciled nor has reported yet is
                    // another replica's to report first (every replica sees every change):
                    // look a moment later, by when the API usually shows it, so the replicas
                    // do not all read and write it. A restarted replica gets there the same way.
                    if attempt == 0 && !st.expected.contains_key(&id) {
                        deferred.insert(id, (Instant::now() + OTHERS_FIRST, 1));
                        continue;
                    }
                    deferred.remove(&id);
                    match report(&api, &mut st, id).await {
                        Report::Done => {}
                        Report::Later => {
                            if let Some(d) = defer_delay(attempt) {
                                deferred.insert(id, (Instant::now() + d, attempt + 1));
                            }
                        }
                    }
                }
            }
        }
    }
}

enum Report {
    Done,
    /// Not now (the reconcile is not finished, or the API failed): again a little later.
    Later,
}

async fn report(api: &Client, st: &mut State, id: u64) -> Report {
    let wi = kinds::WORKLOAD_INSTANCE;
    // Settled and unchanged: nothing to write, no need to ask the API.
    if st.expected.contains_key(&id) && !st.unsettled.contains(&id) {
        let (workloads, others, events) = st.view(id);
        let h = health(&workloads, others);
        if st.reported.get(&id) == Some(&h) {
            record_events(api, st, id, events).await;
            return Report::Done;
        }
    }
    let inst = match api.get(wi, id).await {
        Ok(i) => i,
        Err(e) if e.is_not_found() => {
            st.forget(id);
            return Report::Done;
        }
        Err(e) => {
            tracing::debug!(error = %e, "status check: cannot read the instance; will retry");
            return Report::Later;
        }
    };
    // The reconcile's own report stands until it is finished; a reconcile failure stands.
    if inst.is_deleting() || inst.is_set("CreationFailed") {
        st.unsettled.insert(id);
        return Report::Done;
    }
    if !inst.is_reconciled() {
        st.unsettled.insert(id);
        return Report::Later;
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = st.expected.entry(id) {
        let wri = kinds::WORKLOAD_RESOURCE_INSTANCE;
        match api
            .list(wri, &[("workloadinstanceid", id.to_string())])
            .await
        {
            Ok(rows) => {
                let defs: Vec<Value> = rows
                    .iter()
                    .filter_map(|r| r.get("JSONDefinition").cloned())
                    .collect();
                let mut e = Expected::from_objects(&defs);
                // The definitions carry no generation: any observation counts.
                for w in &mut e.workloads {
                    w.1 = 0;
                }
                slot.insert(e);
            }
            Err(e) => {
                tracing::debug!(error = %e, "status check: cannot list the instance's resources");
                return Report::Later;
            }
        }
    }
    let (workloads, others, events) = st.view(id);
    let h = health(&workloads, others);
    if inst.status() != Some(h.status) || inst.status_reason() != Some(h.reason.as_str()) {
        match api
            .patch(
                wi,
                id,
                &json!({"Status": h.status, "StatusReason": h.reason}),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                st.forget(id);
                return Report::Done;
            }
            Err(e) => {
                tracing::debug!(error = %e, "status report failed; will retry");
                return Report::Later;
            }
        }
    }
    st.reported.insert(id, h);
    st.unsettled.remove(&id);
    record_events(api, st, id, events).await;
    Report::Done
}

/// The Warning Events not yet recorded as WorkloadEvents of the instance.
async fn record_events(api: &Client, st: &mut State, id: u64, events: Vec<EventRow>) {
    let we = kinds::WORKLOAD_EVENT;
    for (uid, reason, message, ts) in events {
        if st.events_sent.contains(&uid) {
            continue;
        }
        let body = json!({
            "WorkloadInstanceID": id, "RuntimeEventUID": uid, "Type": "Warning", "Reason": reason, "Message": message,
            "Timestamp": if ts.is_empty() { now_rfc3339() } else { ts },
        });
        if api.create(we, &body).await.is_ok() {
            st.events_sent.insert(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(generation: i64, observed: i64, updated: i64, replicas: i64, ready: i64) -> Workload {
        Workload {
            kind: "Deployment".into(),
            name: "web".into(),
            object: Some(
                json!({"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 2},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": replicas,
                           "readyReplicas": ready, "availableReplicas": ready}}),
            ),
            applied_generation: generation,
            problems: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn healthy_only_after_a_complete_observed_rollout() {
        let h = health(&[dep(2, 2, 2, 2, 2)], 1);
        assert_eq!(h.status, "Healthy", "{h:?}");
        assert!(h.reason.contains("2/2 ready"), "{h:?}");
        // Not observed by the Deployment controller yet.
        assert_eq!(health(&[dep(2, 1, 2, 2, 2)], 0).status, "Progressing");
        // The old ReplicaSet's Pods are still ready, the new ones are not: not done.
        let h = health(&[dep(2, 2, 1, 3, 2)], 0);
        assert_eq!(h.status, "Progressing", "{h:?}");
        assert!(h.reason.contains("1/2 updated"), "{h:?}");
        assert_eq!(health(&[dep(2, 2, 2, 2, 1)], 0).status, "Progressing");
        // Observed at an older generation than the one applied.
        let mut stale = dep(1, 1, 2, 2, 2);
        stale.applied_generation = 2;
        assert_eq!(health(&[stale], 0).status, "Progressing");
        // Not observed at all, and nothing at all.
        let mut missing = dep(1, 1, 2, 2, 2);
        missing.object = None;
        assert_eq!(health(&[missing], 3).status, "Progressing");
        assert_eq!(health(&[], 0).status, "Progressing");
        assert_eq!(health(&[], 2).status, "Healthy");
    }

    #[test]
    fn pod_problems_and_warnings_give_degraded() {
        let mut w = dep(1, 1, 2, 2, 0);
        w.problems.push(PodProblem {
            pod: "web-abc-x".into(),
            reason: "ImagePullBackOff".into(),
            message: "Back-off pulling image \"nginx:bad\"".into(),
        });
        w.warnings.push(Warning {
            object: "Pod web-abc-x".into(),
            reason: "Failed".into(),
            message: "Failed to pull image \"nginx:bad\": not found".into(),
        });
        let h = health(&[w], 0);
        assert_eq!(h.status, "Degraded");
        assert!(
            h.reason
                .contains("Pod web-abc-x: ImagePullBackOff: Back-off pulling image \"nginx:bad\"")
                && h.reason.contains("Failed to pull image"),
            "{h:?}"
        );
        let mut w = dep(1, 1, 2, 2, 0);
        w.warnings.push(Warning {
            object: "Pod web-abc-x".into(),
            reason: "Unhealthy".into(),
            message: "Readiness probe failed".into(),
        });
        assert_eq!(health(&[w], 0).status, "Degraded");
        // Warnings about a ready workload do not matter.
        let mut w = dep(1, 1, 2, 2, 2);
        w.warnings.push(Warning {
            object: "Pod web-abc-x".into(),
            reason: "Unhealthy".into(),
            message: "Readiness probe failed".into(),
        });
        assert_eq!(health(&[w], 0).status, "Healthy");
        let job = Workload {
            kind: "Job".into(),
            name: "j".into(),
            object: Some(
                json!({"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
            ),
            applied_generation: 0,
            problems: vec![],
            warnings: vec![],
        };
        assert_eq!(health(&[job], 0).status, "Failed");
    }

    #[test]
    fn pods_map_to_their_deployment_through_the_replicaset() {
        let mut st = State::default();
        let mut dirty = HashSet::new();
        // A list item: no kind; the kind comes from the watched resource.
        let d = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": 1,
                       "labels": {INSTANCE_LABEL: "7"}}, "spec": {"replicas": 1}});
        st.apply(Source::Workload("Deployment"), d, false, &mut dirty);
        let rs = json!({"metadata": {"name": "web-h", "namespace": "ns", "uid": "r1",
                        "ownerReferences": [{"uid": "d1", "controller": true, "kind": "Deployment", "name": "web"}]}});
        st.apply(Source::ReplicaSet, rs, false, &mut dirty);
        let pod = json!({"metadata": {"name": "web-h-x", "namespace": "ns", "uid": "p1",
                         "ownerReferences": [{"uid": "r1", "controller": true, "kind": "ReplicaSet", "name": "web-h"}]},
                         "status": {"containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]}});
        dirty.clear();
        st.apply(Source::Pod, pod, false, &mut dirty);
        assert!(dirty.contains(&7));
        let ev = json!({"metadata": {"uid": "e1"}, "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container c",
                        "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "web-h-x", "uid": "p1"}});
        dirty.clear();
        st.apply(Source::Event, ev, false, &mut dirty);
        assert!(dirty.contains(&7));
        let (w, _, events) = st.view(7);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].problems[0].reason, "CrashLoopBackOff");
        assert_eq!(w[0].warnings[0].object, "Pod web-h-x");
        assert_eq!(events.len(), 1);
        // A re-list without the Pod: it is gone.
        st.relisting.insert(Source::Pod, HashSet::new());
        st.finish_relist(Source::Pod, &mut dirty);
        let (w, _, _) = st.view(7);
        assert!(w[0].problems.is_empty() && w[0].warnings.is_empty());
    }
}
