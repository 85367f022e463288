//! A Gateway API implementation stand-in (group `gateway.networking.k8s.io`): what a real
//! implementation (Envoy Gateway, Cilium, an AWS load balancer controller, ...) writes back for
//! the GatewayClasses whose `spec.controllerName` is [`DOUBLE_GATEWAY_CONTROLLER`]:
//!
//! * GatewayClass: `Accepted=True`;
//! * Gateway: `Accepted=True` at once, and `ready_delay` after it appears or changes an address
//!   (192.0.2.0/24, or a load balancer host name) with `Programmed=True` — or, with the
//!   programming switch off, no address and `Programmed=False`/`AddressNotAssigned`; per
//!   listener `supportedKinds`, `attachedRoutes` and `Accepted`/`Programmed`/`ResolvedRefs`
//!   (TLS certificate Secrets must exist, cross-namespace references need a ReferenceGrant);
//! * HTTPRoute (v1) and TCPRoute (v1alpha2): a `status.parents[]` entry per parentRef naming
//!   such a Gateway, with `Accepted` (listener matching by `sectionName`/`port`, route kind and
//!   `allowedRoutes.namespaces`) and `ResolvedRefs` (backend Services must exist).
//!
//! It acts only once the Gateway API CRDs are registered (as an implementation installed into a
//! cluster would) and never writes to objects of other controllers: a route whose parent Gateway
//! does not exist or belongs to another class gets no status from it. Route acceptance is
//! computed from the routes' and Gateways' specs, not from each other's status, so the order in
//! which a pass looks at them does not matter and the loop settles. README.md ("Simulations")
//! says how this differs from a real implementation.

use crate::discovery::ResKey;
use crate::selector::LabelSelector;
use crate::sim::{
    self, Dirty, SECRETS, SERVICES, Sim, generation, list, live, rt, s, write_status_as,
};
use crate::store::{Inner, Store, meta_str};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

/// The `spec.controllerName` of GatewayClasses the double's Gateway implementation serves.
pub const DOUBLE_GATEWAY_CONTROLLER: &str = "example.net/double-gateway";
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The field manager of the implementation's status writes.
const MANAGER: &str = "double-gateway-controller";

pub const CLASSES: (&str, &str) = (GROUP, "gatewayclasses");
pub const GATEWAYS: (&str, &str) = (GROUP, "gateways");
pub const HTTPROUTES: (&str, &str) = (GROUP, "httproutes");
pub const TCPROUTES: (&str, &str) = (GROUP, "tcproutes");
pub const REFERENCEGRANTS: (&str, &str) = (GROUP, "referencegrants");

/// The route kinds the implementation attaches, with their Kind.
const ROUTES: &[((&str, &str), &str)] = &[(HTTPROUTES, "HTTPRoute"), (TCPROUTES, "TCPRoute")];

type Name = (String, String);

/// What the implementation remembers between passes.
#[derive(Default)]
pub struct State {
    /// Gateways of the double's class, by uid.
    gateways: HashMap<String, Track>,
    /// The Gateways each route (by uid) named in its parentRefs at its last look, so a
    /// Gateway a route leaves (or a deleted route) gets its `attachedRoutes` recounted.
    route_parents: HashMap<String, Vec<Name>>,
    /// Addresses handed out from 192.0.2.0/24 (TEST-NET-1), kept per Gateway name.
    addresses: HashMap<Name, u32>,
    next_address: u32,
    /// (programming, host names) as of the last pass; a change re-evaluates every Gateway.
    seen: Option<(bool, bool)>,
}

struct Track {
    generation: i64,
    /// When the Gateway's address is due (`None`: assigned).
    due: Option<Instant>,
    ns: String,
    name: String,
}

impl State {
    /// Gateways whose address is due now.
    pub fn due(&self, now: Instant) -> Vec<Name> {
        self.gateways
            .values()
            .filter(|t| t.due.is_some_and(|d| d <= now))
            .map(|t| (t.ns.clone(), t.name.clone()))
            .collect()
    }

    /// The next address due after `now`.
    pub fn next(&self, now: Instant) -> Option<Instant> {
        self.gateways
            .values()
            .filter_map(|t| t.due)
            .filter(|d| *d > now)
            .min()
    }

    fn address(&mut self, ns: &str, name: &str, hostnames: bool) -> Value {
        if hostnames {
            // What an AWS load balancer gives: a DNS name, no IP (clients CNAME to it).
            return json!({"type": "Hostname", "value": format!("{name}-{ns}.lb.double.example")});
        }
        let next = &mut self.next_address;
        let n = *self
            .addresses
            .entry((ns.to_string(), name.to_string()))
            .or_insert_with(|| {
                *next = *next % 254 + 1;
                *next
            });
        json!({"type": "IPAddress", "value": format!("192.0.2.{n}")})
    }
}

/// A `metav1.Condition`: `lastTransitionTime` kept from the old one while `status` is the same.
fn cond(old: Option<&Value>, t: &str, status: &str, reason: &str, msg: &str, gen_: i64) -> Value {
    let mut c = sim::condition(old, t, status, reason, msg, false, false);
    c["observedGeneration"] = json!(gen_);
    c
}

fn name(o: &Value) -> String {
    meta_str(o, "name").to_string()
}

fn array<'a>(o: &'a Value, p: &str) -> &'a [Value] {
    o.pointer(p)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn str_or<'a>(o: &'a Value, key: &str, default: &'a str) -> &'a str {
    match o.get(key).and_then(Value::as_str) {
        Some(x) if !x.is_empty() => x,
        _ => default,
    }
}

/// Whether `class` is a live GatewayClass of the double's controller.
fn our_class(g: &Inner, class: &str) -> bool {
    g.get(&ResKey::new(CLASSES.0, CLASSES.1), "", class)
        .is_some_and(|c| live(&c) && s(&c, "/spec/controllerName") == DOUBLE_GATEWAY_CONTROLLER)
}

/// The Gateway a parentRef names (namespace defaulting to the route's), if it is a Gateway ref.
fn parent_gateway(pref: &Value, route_ns: &str) -> Option<Name> {
    let group = str_or(pref, "group", GROUP);
    let kind = str_or(pref, "kind", "Gateway");
    let name = pref.get("name").and_then(Value::as_str)?;
    (group == GROUP && kind == "Gateway")
        .then(|| (str_or(pref, "namespace", route_ns).to_string(), name.into()))
}

fn parent_gateways(route: &Value) -> Vec<Name> {
    let ns = meta_str(route, "namespace");
    array(route, "/spec/parentRefs")
        .iter()
        .filter_map(|p| parent_gateway(p, ns))
        .collect()
}

/// The Services a route's rules send to: (namespace, name) of core Service backendRefs.
fn backend_services(route: &Value) -> Vec<Name> {
    let ns = meta_str(route, "namespace");
    array(route, "/spec/rules")
        .iter()
        .flat_map(|r| array(r, "/backendRefs"))
        .filter(|b| str_or(b, "group", "").is_empty() && str_or(b, "kind", "Service") == "Service")
        .filter_map(|b| {
            let n = b.get("name").and_then(Value::as_str)?;
            Some((str_or(b, "namespace", ns).to_string(), n.to_string()))
        })
        .collect()
}

/// The Secrets a Gateway's listeners name in `tls.certificateRefs`.
fn certificate_secrets(gw: &Value) -> Vec<Name> {
    let ns = meta_str(gw, "namespace");
    array(gw, "/spec/listeners")
        .iter()
        .flat_map(|l| array(l, "/tls/certificateRefs"))
        .filter_map(|r| {
            let n = r.get("name").and_then(Value::as_str)?;
            Some((str_or(r, "namespace", ns).to_string(), n.to_string()))
        })
        .collect()
}

/// Whether a ReferenceGrant in `to_ns` lets (`from_kind` objects in `from_ns`) refer to the
/// object `to_kind`/`to_name` there.
fn granted(
    g: &Inner,
    from_kind: &str,
    from_ns: &str,
    to_kind: &str,
    to_ns: &str,
    to: &str,
) -> bool {
    g.list(
        &ResKey::new(REFERENCEGRANTS.0, REFERENCEGRANTS.1),
        Some(to_ns),
    )
    .iter()
    .any(|rg| {
        array(rg, "/spec/from").iter().any(|f| {
            s(f, "/group") == GROUP && s(f, "/kind") == from_kind && s(f, "/namespace") == from_ns
        }) && array(rg, "/spec/to").iter().any(|t| {
            s(t, "/group").is_empty()
                && s(t, "/kind") == to_kind
                && t.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(|n| n.is_empty() || n == to)
        })
    })
}

/// The route kinds a listener's protocol carries, and whether `allowedRoutes.kinds` asks for
/// one it cannot.
fn listener_kinds(l: &Value) -> (Vec<&'static str>, bool) {
    let native: &[&'static str] = match s(l, "/protocol") {
        "HTTP" | "HTTPS" => &["HTTPRoute"],
        "TCP" => &["TCPRoute"],
        "TLS" => &["TLSRoute"],
        "UDP" => &["UDPRoute"],
        _ => &[],
    };
    let requested = array(l, "/allowedRoutes/kinds");
    if requested.is_empty() {
        return (native.to_vec(), false);
    }
    let mut kinds = Vec::new();
    let mut invalid = false;
    for k in requested {
        match native.iter().find(|n| **n == s(k, "/kind")) {
            Some(n) if str_or(k, "group", GROUP) == GROUP => kinds.push(*n),
            _ => invalid = true,
        }
    }
    (kinds, invalid)
}

/// `allowedRoutes.namespaces` (default `Same`).
fn namespace_allowed(g: &Inner, l: &Value, gw_ns: &str, route_ns: &str) -> bool {
    match s(l, "/allowedRoutes/namespaces/from") {
        "All" => true,
        "Selector" => {
            let sel = l
                .pointer("/allowedRoutes/namespaces/selector")
                .cloned()
                .unwrap_or(json!({}));
            let mut terms: Vec<String> = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            for e in array(&sel, "/matchExpressions") {
                let (k, values) = (s(e, "/key"), array(e, "/values"));
                let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                terms.push(match s(e, "/operator") {
                    "In" => format!("{k} in ({})", values.join(",")),
                    "NotIn" => format!("{k} notin ({})", values.join(",")),
                    "Exists" => k.to_string(),
                    _ => format!("!{k}"),
                });
            }
            match (
                LabelSelector::parse(&terms.join(",")),
                g.namespace(route_ns),
            ) {
                (Ok(sel), Some(ns)) => sel.matches(&ns),
                _ => false,
            }
        }
        _ => gw_ns == route_ns,
    }
}

/// How a route attaches to one parent Gateway.
enum Attach {
    /// To these listeners.
    Listeners(Vec<String>),
    /// `sectionName`/`port` match no listener.
    NoMatchingParent,
    /// Listeners match, but none allows this kind of route from this namespace.
    NotAllowed,
}

fn attach(g: &Inner, route: &Value, kind: &str, pref: &Value, gw: &Value) -> Attach {
    let section = pref.get("sectionName").and_then(Value::as_str);
    let port = pref.get("port").and_then(Value::as_i64);
    let candidates: Vec<&Value> = array(gw, "/spec/listeners")
        .iter()
        .filter(|l| section.is_none_or(|n| s(l, "/name") == n))
        .filter(|l| port.is_none_or(|p| l.get("port").and_then(Value::as_i64) == Some(p)))
        .collect();
    if candidates.is_empty() {
        return Attach::NoMatchingParent;
    }
    let (gw_ns, route_ns) = (meta_str(gw, "namespace"), meta_str(route, "namespace"));
    let allowed: Vec<String> = candidates
        .into_iter()
        .filter(|l| listener_kinds(l).0.contains(&kind) && namespace_allowed(g, l, gw_ns, route_ns))
        .map(|l| s(l, "/name").to_string())
        .collect();
    if allowed.is_empty() {
        Attach::NotAllowed
    } else {
        Attach::Listeners(allowed)
    }
}

/// The live Gateway a parentRef names, when it is of the double's class.
fn our_gateway(g: &Inner, pref: &Value, route_ns: &str) -> Option<Arc<Value>> {
    let (ns, n) = parent_gateway(pref, route_ns)?;
    g.get(&ResKey::new(GATEWAYS.0, GATEWAYS.1), &ns, &n)
        .filter(|gw| live(gw) && our_class(g, s(gw, "/spec/gatewayClassName")))
}

/// `ResolvedRefs` of a route: every backendRef is a Service that exists (and, in another
/// namespace, is granted by a ReferenceGrant).
fn route_refs(g: &Inner, route: &Value, kind: &str) -> (&'static str, &'static str, String) {
    let ns = meta_str(route, "namespace");
    for b in array(route, "/spec/rules")
        .iter()
        .flat_map(|r| array(r, "/backendRefs"))
    {
        let (group, bkind) = (str_or(b, "group", ""), str_or(b, "kind", "Service"));
        let bname = s(b, "/name");
        if !group.is_empty() || bkind != "Service" {
            return (
                "False",
                "InvalidKind",
                format!(
                    "Backend ref kind {bkind} of group {group:?} is not supported; only Service is."
                ),
            );
        }
        let bns = str_or(b, "namespace", ns);
        if bns != ns && !granted(g, kind, ns, "Service", bns, bname) {
            return (
                "False",
                "RefNotPermitted",
                format!(
                    "Backend ref to Service {bns}/{bname} not permitted by any ReferenceGrant."
                ),
            );
        }
        if g.get(&ResKey::new(SERVICES.0, SERVICES.1), bns, bname)
            .is_none()
        {
            return (
                "False",
                "BackendNotFound",
                format!("Service {bns}/{bname} not found."),
            );
        }
    }
    (
        "True",
        "ResolvedRefs",
        "Resolved all the Object references for the Route".into(),
    )
}

/// A route's new status: the entries of other controllers kept, the double's recomputed;
/// `None` when the double has nothing to say and said nothing before (left alone).
fn route_status(g: &Inner, route: &Value, kind: &str) -> Option<Value> {
    let ns = meta_str(route, "namespace");
    let gen_ = generation(route);
    let old_parents = array(route, "/status/parents");
    let refs = route_refs(g, route, kind);
    let mut ours = Vec::new();
    for pref in array(route, "/spec/parentRefs") {
        let Some(gw) = our_gateway(g, pref, ns) else {
            continue;
        };
        let old = old_parents
            .iter()
            .find(|p| p["controllerName"] == DOUBLE_GATEWAY_CONTROLLER && p["parentRef"] == *pref);
        let (st, reason, msg) = match attach(g, route, kind, pref, &gw) {
            Attach::Listeners(_) => ("True", "Accepted", "Route is accepted"),
            Attach::NoMatchingParent => (
                "False",
                "NoMatchingParent",
                "No listeners match this parent ref",
            ),
            Attach::NotAllowed => (
                "False",
                "NotAllowedByListeners",
                "No listeners included by this parent ref allowed this attachment.",
            ),
        };
        ours.push(json!({
            "parentRef": pref,
            "controllerName": DOUBLE_GATEWAY_CONTROLLER,
            "conditions": [
                cond(old, "Accepted", st, reason, msg, gen_),
                cond(old, "ResolvedRefs", refs.0, refs.1, &refs.2, gen_),
            ],
        }));
    }
    let mut parents: Vec<Value> = old_parents
        .iter()
        .filter(|p| p["controllerName"] != DOUBLE_GATEWAY_CONTROLLER)
        .cloned()
        .collect();
    if ours.is_empty() && parents.len() == old_parents.len() {
        return None;
    }
    parents.extend(ours);
    let mut status = route.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    status["parents"] = json!(parents);
    Some(status)
}

/// Why a listener's references do not resolve (reason, message), if they do not.
fn listener_refs(g: &Inner, gw: &Value, l: &Value) -> Option<(&'static str, String)> {
    let (kinds, invalid_kinds) = listener_kinds(l);
    if invalid_kinds {
        return Some((
            "InvalidRouteKinds",
            format!("Listener allows only the route kinds {}.", kinds.join(", ")),
        ));
    }
    let protocol = s(l, "/protocol");
    let terminates =
        protocol == "HTTPS" || (protocol == "TLS" && s(l, "/tls/mode") != "Passthrough");
    if !terminates {
        return None;
    }
    let refs = array(l, "/tls/certificateRefs");
    if refs.is_empty() {
        return Some((
            "InvalidCertificateRef",
            "Listener must have at least 1 TLS certificate ref".into(),
        ));
    }
    let gw_ns = meta_str(gw, "namespace");
    for r in refs {
        let (group, kind) = (str_or(r, "group", ""), str_or(r, "kind", "Secret"));
        if !group.is_empty() || kind != "Secret" {
            return Some((
                "InvalidCertificateRef",
                format!("Certificate ref of kind {kind} is not supported; only Secret is."),
            ));
        }
        let (ns, n) = (str_or(r, "namespace", gw_ns), s(r, "/name"));
        if ns != gw_ns && !granted(g, "Gateway", gw_ns, "Secret", ns, n) {
            return Some((
                "RefNotPermitted",
                format!("Certificate ref to secret {ns}/{n} not permitted by any ReferenceGrant."),
            ));
        }
        let Some(secret) = g.get(&ResKey::new(SECRETS.0, SECRETS.1), ns, n) else {
            return Some((
                "InvalidCertificateRef",
                format!("Secret {ns}/{n} does not exist."),
            ));
        };
        let has = |k: &str| {
            secret
                .pointer("/data")
                .and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        };
        if !has("tls.crt") || !has("tls.key") {
            return Some((
                "InvalidCertificateRef",
                format!("Secret {ns}/{n} must contain tls.crt and tls.key."),
            ));
        }
    }
    None
}

fn listener_status(
    g: &Inner,
    gw: &Value,
    l: &Value,
    old: Option<&Value>,
    attached: usize,
    gen_: i64,
) -> Value {
    let (kinds, _) = listener_kinds(l);
    let protocol = s(l, "/protocol");
    let supported = !matches!(
        listener_kinds(&json!({"protocol": protocol})).0.as_slice(),
        []
    );
    let (acc, acc_reason, acc_msg) = if supported {
        (
            "True",
            "Accepted",
            "Listener has been successfully translated".to_string(),
        )
    } else {
        (
            "False",
            "UnsupportedProtocol",
            format!("Protocol {protocol} is unsupported."),
        )
    };
    let refs = listener_refs(g, gw, l);
    let (res, res_reason, res_msg) = match &refs {
        Some((reason, msg)) => ("False", *reason, msg.clone()),
        None => (
            "True",
            "ResolvedRefs",
            "Resolved all the Object references for the Listener".to_string(),
        ),
    };
    let (prog, prog_reason, prog_msg) = if supported && refs.is_none() {
        (
            "True",
            "Programmed",
            "Sending translated listener configuration to the data plane",
        )
    } else {
        (
            "False",
            "Invalid",
            "Listener is invalid, see other Conditions for details.",
        )
    };
    json!({
        "name": s(l, "/name"),
        "supportedKinds": kinds.iter().map(|k| json!({"group": GROUP, "kind": k})).collect::<Vec<_>>(),
        "attachedRoutes": attached,
        "conditions": [
            cond(old, "Accepted", acc, acc_reason, &acc_msg, gen_),
            cond(old, "Programmed", prog, prog_reason, prog_msg, gen_),
            cond(old, "ResolvedRefs", res, res_reason, &res_msg, gen_),
        ],
    })
}

fn gateway_status(
    g: &Inner,
    gw: &Value,
    address: Option<Value>,
    attached: Option<&HashMap<String, usize>>,
) -> Value {
    let gen_ = generation(gw);
    let old = gw.get("status");
    let listeners: Vec<Value> = array(gw, "/spec/listeners")
        .iter()
        .map(|l| {
            let lname = s(l, "/name");
            let old_l = old
                .and_then(|o| o.get("listeners"))
                .and_then(Value::as_array)
                .and_then(|ls| ls.iter().find(|x| x["name"] == lname));
            let n = attached.and_then(|a| a.get(lname)).copied().unwrap_or(0);
            listener_status(g, gw, l, old_l, n, gen_)
        })
        .collect();
    let programmed = match address {
        Some(_) => cond(
            old,
            "Programmed",
            "True",
            "Programmed",
            "Address assigned to the Gateway",
            gen_,
        ),
        None => cond(
            old,
            "Programmed",
            "False",
            "AddressNotAssigned",
            "No addresses have been assigned to the Gateway",
            gen_,
        ),
    };
    let mut status = json!({
        "conditions": [
            cond(old, "Accepted", "True", "Accepted", "The Gateway has been scheduled by the double gateway controller", gen_),
            programmed,
        ],
        "listeners": listeners,
    });
    if let Some(a) = address {
        status["addresses"] = json!([a]);
    }
    status
}

/// One pass of the implementation: GatewayClasses, then routes, then Gateways.
pub fn pass(sim: &mut Sim, store: &Store, now: Instant, dirty: &Dirty) {
    let delay = sim.opts.ready_delay;
    let switches = (
        sim.switches.gateway_programming,
        sim.switches.gateway_hostnames,
    );
    let st = &mut sim.gateway;
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let (Some(class_rt), Some(gw_rt)) =
        (rt(g, CLASSES.0, CLASSES.1), rt(g, GATEWAYS.0, GATEWAYS.1))
    else {
        // Not installed (or uninstalled): nothing to simulate.
        st.gateways.clear();
        st.route_parents.clear();
        return;
    };
    // A flipped switch, new CRDs or a changed ReferenceGrant can change any status.
    let full = dirty.full
        || st.seen != Some(switches)
        || dirty.crd_changed(GROUP)
        || dirty.changed(REFERENCEGRANTS).next().is_some();
    if st.seen.is_some_and(|(programming, _)| !programming) && switches.0 {
        // Back on: getting an address takes as long as for a new Gateway.
        for t in st.gateways.values_mut() {
            t.due = Some(now + delay);
        }
    }
    st.seen = Some(switches);
    for uid in &dirty.deleted {
        st.gateways.remove(uid);
    }

    // GatewayClasses.
    let changed_classes: HashSet<String> =
        dirty.changed(CLASSES).map(|(_, n)| n.to_string()).collect();
    let classes: Vec<Arc<Value>> = list(g, CLASSES.0, CLASSES.1)
        .into_iter()
        .filter(|c| {
            live(c)
                && s(c, "/spec/controllerName") == DOUBLE_GATEWAY_CONTROLLER
                && (full || changed_classes.contains(meta_str(c, "name")))
        })
        .collect();
    drop(guard);
    for c in classes {
        let mut guard = store.lock();
        let gen_ = generation(&c);
        let status = json!({"conditions": [cond(
            c.get("status"), "Accepted", "True", "Accepted", "Valid GatewayClass", gen_,
        )]});
        write_status_as(&mut guard, &class_rt, &c, status, MANAGER);
    }

    // Which Gateways and routes to look at.
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let gateways = list(g, GATEWAYS.0, GATEWAYS.1);
    let changed_secrets: HashSet<(&str, &str)> = dirty.changed(SECRETS).collect();
    let changed_services: HashSet<(&str, &str)> = dirty.changed(SERVICES).collect();
    // Gateways whose spec, class or existence changed: their routes' acceptance may have too.
    let mut gw_changed: HashSet<Name> = dirty
        .changed(GATEWAYS)
        .map(|(ns, n)| (ns.to_string(), n.to_string()))
        .collect();
    for gw in &gateways {
        if changed_classes.contains(s(gw, "/spec/gatewayClassName")) {
            gw_changed.insert((meta_str(gw, "namespace").into(), name(gw)));
        }
    }
    // Gateways to recompute: those, those whose certificate Secrets changed, and those a
    // changed route attaches to or left.
    let mut gw_todo: HashSet<Name> = gw_changed.clone();
    for gw in &gateways {
        if full
            || certificate_secrets(gw)
                .iter()
                .any(|(ns, n)| changed_secrets.contains(&(ns.as_str(), n.as_str())))
        {
            gw_todo.insert((meta_str(gw, "namespace").into(), name(gw)));
        }
    }
    for uid in &dirty.deleted {
        if let Some(parents) = st.route_parents.remove(uid) {
            gw_todo.extend(parents);
        }
    }
    let mut routes = Vec::new();
    for &(kind, kind_name) in ROUTES {
        let Some(route_rt) = rt(g, kind.0, kind.1) else {
            continue;
        };
        for r in list(g, kind.0, kind.1) {
            if !live(&r) {
                continue;
            }
            let parents = parent_gateways(&r);
            let look = full
                || dirty.has(kind, &r)
                || parents.iter().any(|p| gw_changed.contains(p))
                || backend_services(&r)
                    .iter()
                    .any(|(ns, n)| changed_services.contains(&(ns.as_str(), n.as_str())));
            if !look {
                continue;
            }
            let uid = meta_str(&r, "uid").to_string();
            if let Some(old) = st.route_parents.get(&uid) {
                gw_todo.extend(old.iter().cloned());
            }
            gw_todo.extend(parents.iter().cloned());
            st.route_parents.insert(uid, parents);
            routes.push((route_rt.clone(), kind_name, r));
        }
    }
    drop(guard);

    // Routes.
    for (route_rt, kind_name, r) in routes {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        if let Some(status) = route_status(g, &r, kind_name) {
            write_status_as(g, &route_rt, &r, status, MANAGER);
        }
    }

    // Gateways.
    if gw_todo.is_empty() {
        return;
    }
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    // attachedRoutes: per Gateway and listener, the routes accepted there (each route once).
    let mut attached: HashMap<Name, HashMap<String, usize>> = HashMap::new();
    for &(kind, kind_name) in ROUTES {
        for r in list(g, kind.0, kind.1).iter().filter(|r| live(r)) {
            let ns = meta_str(r, "namespace");
            let mut counted: HashSet<(Name, String)> = HashSet::new();
            for pref in array(r, "/spec/parentRefs") {
                let Some(gname) = parent_gateway(pref, ns).filter(|n| gw_todo.contains(n)) else {
                    continue;
                };
                let Some(gw) = our_gateway(g, pref, ns) else {
                    continue;
                };
                if let Attach::Listeners(ls) = attach(g, r, kind_name, pref, &gw) {
                    for l in ls {
                        if counted.insert((gname.clone(), l.clone())) {
                            *attached
                                .entry(gname.clone())
                                .or_default()
                                .entry(l)
                                .or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    drop(guard);
    for (ns, n) in gw_todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        let Some(gw) = g.get(&gw_rt.key(), &ns, &n).filter(live) else {
            continue;
        };
        let uid = meta_str(&gw, "uid").to_string();
        if !our_class(g, s(&gw, "/spec/gatewayClassName")) {
            // Another controller's Gateway (or a class that went away): not ours to touch.
            st.gateways.remove(&uid);
            continue;
        }
        let gen_ = generation(&gw);
        let t = st.gateways.entry(uid).or_insert_with(|| Track {
            generation: gen_,
            due: Some(now + delay),
            ns: ns.clone(),
            name: n.clone(),
        });
        if t.generation != gen_ {
            t.generation = gen_;
            t.due = Some(now + delay);
        }
        let pending = t.due.is_some_and(|d| now < d);
        if !pending {
            t.due = None;
        }
        let reported = !array(&gw, "/status/conditions").is_empty();
        if pending && reported {
            // Being (re)programmed: the status says what it said until the timer is due.
            continue;
        }
        let address = (!pending && switches.0).then(|| st.address(&ns, &n, switches.1));
        let status = gateway_status(g, &gw, address, attached.get(&(ns.clone(), n.clone())));
        write_status_as(g, &gw_rt, &gw, status, MANAGER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_kinds_follow_the_protocol_and_allowed_kinds() {
        assert_eq!(
            listener_kinds(&json!({"protocol": "HTTPS"})),
            (vec!["HTTPRoute"], false)
        );
        assert_eq!(
            listener_kinds(&json!({"protocol": "TCP"})),
            (vec!["TCPRoute"], false)
        );
        assert_eq!(
            listener_kinds(&json!({"protocol": "SCTP"})),
            (vec![], false)
        );
        let l = json!({"protocol": "HTTP", "allowedRoutes": {"kinds": [{"kind": "HTTPRoute"}, {"kind": "TCPRoute"}]}});
        assert_eq!(listener_kinds(&l), (vec!["HTTPRoute"], true));
    }

    #[test]
    fn parent_refs_default_to_gateways_in_the_route_namespace() {
        let r = json!({"metadata": {"namespace": "apps"}, "spec": {"parentRefs": [
            {"name": "edge"},
            {"name": "shared", "namespace": "infra", "sectionName": "https"},
            {"name": "svc", "kind": "Service", "group": ""},
        ]}});
        assert_eq!(
            parent_gateways(&r),
            vec![
                ("apps".to_string(), "edge".to_string()),
                ("infra".to_string(), "shared".to_string())
            ]
        );
    }

    #[test]
    fn addresses_are_stable_per_gateway() {
        let mut st = State::default();
        let a = st.address("default", "a", false);
        let b = st.address("default", "b", false);
        assert_eq!(a["value"], "192.0.2.1");
        assert_eq!(b["value"], "192.0.2.2");
        assert_eq!(st.address("default", "a", false), a);
        assert_eq!(
            st.address("default", "a", true),
            json!({"type": "Hostname", "value": "a-default.lb.double.example"})
        );
    }
}
