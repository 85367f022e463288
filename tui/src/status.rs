//! Status words, text markers and the "why" of an unhealthy object: the deepest cause found by
//! walking definition → instances → resources → events.

use crate::store::{Store, display_name};
use serde_json::Value;
use threeport_api::kinds::{self, Kind, Role};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    Progress,
    Failed,
    Deleting,
    /// Kinds without a status (accounts, ports, events).
    None,
}

impl Health {
    /// The text marker shown with the status: colour is never the only signal.
    pub fn marker(self) -> &'static str {
        match self {
            Health::Ok => "✓",
            Health::Progress => "…",
            Health::Failed => "✗",
            Health::Deleting => "⊘",
            Health::None => "",
        }
    }
}

fn set(o: &Value, f: &str) -> bool {
    o.get(f)
        .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
}

fn str_field<'a>(o: &'a Value, f: &str) -> &'a str {
    o.get(f).and_then(Value::as_str).unwrap_or("")
}

/// One word for where an object stands (as `tptctl get` prints it), and how healthy that is.
pub fn status(kind: &Kind, o: &Value) -> (String, Health) {
    if set(o, "DeletionScheduled") || set(o, "ScheduledForDeletion") {
        return ("Deleting".into(), Health::Deleting);
    }
    if set(o, "CreationFailed") {
        return ("Failed".into(), Health::Failed);
    }
    let s = str_field(o, "Status");
    if !s.is_empty() {
        return (s.to_string(), classify(s));
    }
    if kind.name == "WorkloadResourceInstance" {
        return match o.get("Reconciled").and_then(Value::as_bool) {
            Some(true) => ("Reconciled".into(), Health::Ok),
            _ => ("Reconciling".into(), Health::Progress),
        };
    }
    if !kind.reconciled {
        return ("-".into(), Health::None);
    }
    match o.get("Reconciled").and_then(Value::as_bool) {
        Some(true) => ("Reconciled".into(), Health::Ok),
        _ => ("Reconciling".into(), Health::Progress),
    }
}

fn classify(s: &str) -> Health {
    let l = s.to_ascii_lowercase();
    if [
        "fail",
        "error",
        "degraded",
        "unhealthy",
        "crash",
        "backoff",
        "invalid",
    ]
    .iter()
    .any(|w| l.contains(w))
    {
        Health::Failed
    } else if [
        "healthy",
        "ready",
        "running",
        "reconciled",
        "active",
        "available",
        "succeeded",
    ]
    .iter()
    .any(|w| l == *w)
    {
        Health::Ok
    } else if l.contains("delet") {
        Health::Deleting
    } else {
        Health::Progress
    }
}

/// `✗ Failed`, `✓ Reconciled`, `-`.
pub fn status_label(kind: &Kind, o: &Value) -> (String, Health) {
    let (word, h) = status(kind, o);
    match h {
        Health::None => (word, h),
        _ => (format!("{} {word}", h.marker()), h),
    }
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// `5s`, `3m`, `2h`, `4d`, like kubectl's AGE column; `now` is injected so output is testable.
pub fn age(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(t) = t else {
        return "?".into();
    };
    match (now - t).whole_seconds().max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// One event, from either the generic `events` or `workload-events`.
#[derive(Clone, Debug)]
pub struct EventLine {
    pub kind: &'static Kind,
    pub id: u64,
    pub time: Option<OffsetDateTime>,
    pub ty: String,
    pub reason: String,
    pub message: String,
    /// `workload-instance/web`, or the resource for workload events.
    pub object: String,
}

impl PartialEq for EventLine {
    fn eq(&self, o: &EventLine) -> bool {
        self.kind.name == o.kind.name
            && self.id == o.id
            && self.time == o.time
            && self.ty == o.ty
            && self.reason == o.reason
            && self.message == o.message
            && self.object == o.object
    }
}

impl EventLine {
    pub fn is_warning(&self) -> bool {
        self.ty.eq_ignore_ascii_case("warning")
    }
}

pub fn event_line(store: &Store, kind: &'static Kind, id: u64, e: &Value) -> EventLine {
    let s = |f: &str| str_field(e, f).to_string();
    if kind.name == "WorkloadEvent" {
        let wri = kinds::by_name("WorkloadResourceInstance").expect("registered");
        let wi = kinds::by_name("WorkloadInstance").expect("registered");
        let object = match (
            e.get("WorkloadResourceInstanceID").and_then(Value::as_u64),
            e.get("WorkloadInstanceID").and_then(Value::as_u64),
        ) {
            (Some(r), _) => format!(
                "resource/{}",
                store.name_of(wri, r).unwrap_or_else(|| r.to_string())
            ),
            (None, Some(i)) => format!(
                "{}/{}",
                wi.singular(),
                store.name_of(wi, i).unwrap_or_else(|| i.to_string())
            ),
            _ => String::new(),
        };
        EventLine {
            kind,
            id,
            time: parse_time(str_field(e, "Timestamp"))
                .or_else(|| parse_time(str_field(e, "CreatedAt"))),
            ty: s("Type"),
            reason: s("Reason"),
            message: s("Message"),
            object,
        }
    } else {
        let object = match (
            kinds::by_name(str_field(e, "ObjectKind")),
            e.get("ObjectID").and_then(Value::as_u64),
        ) {
            (Some(k), Some(oid)) => format!(
                "{}/{}",
                k.singular(),
                store.name_of(k, oid).unwrap_or_else(|| oid.to_string())
            ),
            _ => str_field(e, "ObjectKind").to_string(),
        };
        EventLine {
            kind,
            id,
            time: parse_time(str_field(e, "EventTime"))
                .or_else(|| parse_time(str_field(e, "CreatedAt"))),
            ty: s("Type"),
            reason: s("Reason"),
            message: s("Note"),
            object,
        }
    }
}

/// Events about one object, newest first: generic events by (ObjectKind, ObjectID), plus
/// workload events for workload instances and resources.
pub fn events_for(store: &Store, kind: &Kind, id: u64) -> Vec<EventLine> {
    let ev = kinds::by_name("Event").expect("registered");
    let we = kinds::by_name("WorkloadEvent").expect("registered");
    let mut out: Vec<EventLine> = store
        .referrers_of(id, ev)
        .filter(|(_, e)| str_field(e, "ObjectKind") == kind.name)
        .map(|(eid, e)| event_line(store, ev, eid, e))
        .collect();
    if matches!(kind.name, "WorkloadInstance" | "WorkloadResourceInstance") {
        out.extend(
            store
                .referrers_of(id, we)
                .map(|(eid, e)| event_line(store, we, eid, e)),
        );
    }
    sort_events(&mut out);
    out
}

/// Newest first; ties by ID (creation order) so the order is stable.
pub fn sort_events(v: &mut [EventLine]) {
    v.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
}

/// Objects "under" an object for the "why": a definition's instances, an instance's resources.
/// Other dependants (the workloads on a runtime) do not make their parent unhealthy.
pub fn child_kinds(store: &Store, kind: &Kind, id: u64) -> Vec<&'static Kind> {
    let _ = (store, id);
    match kind.name {
        "WorkloadDefinition" => vec![kinds::by_name("WorkloadInstance").expect("registered")],
        "WorkloadInstance" => vec![kinds::by_name("WorkloadResourceInstance").expect("registered")],
        _ if kind.role == Role::Definition => kinds::references_to(kind.name)
            .filter(|(k, f)| k.role == Role::Instance && f.required)
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    }
}

pub fn is_event_kind(k: &Kind) -> bool {
    matches!(k.name, "Event" | "WorkloadEvent")
}

/// The deepest known reason an object is not healthy.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// Objects walked through to get there: `workload-instance/web`, `Deployment/web`.
    pub path: Vec<String>,
    pub text: String,
}

impl Cause {
    pub fn one_line(&self) -> String {
        if self.path.is_empty() {
            self.text.clone()
        } else {
            format!("{} › {}", self.path.join(" › "), self.text)
        }
    }
}

fn label(kind: &Kind, o: &Value) -> String {
    if kind.name == "WorkloadResourceInstance" {
        display_name(o)
    } else {
        format!("{}/{}", kind.singular(), display_name(o))
    }
}

fn unhealthy(store: &Store, kind: &Kind, id: u64, o: &Value) -> bool {
    match status(kind, o).1 {
        Health::Failed => true,
        Health::Ok | Health::Deleting => false,
        // Still reconciling, or no status: unhealthy if the latest event is a warning.
        Health::Progress | Health::None => events_for(store, kind, id)
            .first()
            .is_some_and(EventLine::is_warning),
    }
}

/// Walk down to the deepest cause: failing children first, then this object's latest warning,
/// then its StatusReason. `None` when the object looks fine.
pub fn deepest_cause(store: &Store, kind: &'static Kind, id: u64) -> Option<Cause> {
    deepest(store, kind, id, 0)
}

fn deepest(store: &Store, kind: &'static Kind, id: u64, depth: usize) -> Option<Cause> {
    let o = store.get(kind, id)?;
    if depth > 4 || status(kind, o).1 == Health::Deleting {
        return None;
    }
    if !unhealthy(store, kind, id, o) {
        // A healthy definition still answers for its failing instances.
        if kind.role != Role::Definition {
            return None;
        }
        return failing_child(store, kind, id, depth);
    }
    if let Some(c) = failing_child(store, kind, id, depth) {
        return Some(c);
    }
    deepest_own(store, kind, id, o)
}

fn failing_child(store: &Store, kind: &'static Kind, id: u64, depth: usize) -> Option<Cause> {
    for ck in child_kinds(store, kind, id) {
        let mut children: Vec<(u64, &Value)> = store.referrers_of(id, ck).collect();
        children.sort_by_key(|(cid, _)| *cid);
        for (cid, c) in children {
            if let Some(mut cause) = deepest(store, ck, cid, depth + 1) {
                cause.path.insert(0, label(ck, c));
                return Some(cause);
            }
        }
    }
    None
}

fn deepest_own(store: &Store, kind: &'static Kind, id: u64, o: &Value) -> Option<Cause> {
    if let Some(w) = events_for(store, kind, id)
        .into_iter()
        .find(EventLine::is_warning)
    {
        return Some(Cause {
            path: vec![],
            text: format!("{} {}: {}", w.ty, w.reason, w.message),
        });
    }
    let reason = str_field(o, "StatusReason");
    if !reason.is_empty() {
        return Some(Cause {
            path: vec![],
            text: reason.to_string(),
        });
    }
    Some(Cause {
        path: vec![],
        text: match status(kind, o).0.as_str() {
            "Failed" => "creation failed; no reason was recorded".into(),
            other => format!("{other}; no reason was recorded"),
        },
    })
}

/// Everything the detail pane shows about the selected object.
#[derive(Clone, Debug, PartialEq)]
pub struct Why {
    pub title: String,
    pub status: (String, Health),
    pub reason: Option<String>,
    pub cause: Option<Cause>,
    /// Children that are not healthy (e.g. failing resources of an instance).
    pub failing: Vec<String>,
    pub warnings: Vec<EventLine>,
}

pub fn why(store: &Store, kind: &'static Kind, id: u64) -> Option<Why> {
    let o = store.get(kind, id)?;
    let reason = Some(str_field(o, "StatusReason").to_string()).filter(|s| !s.is_empty());
    let mut failing = Vec::new();
    for ck in child_kinds(store, kind, id) {
        let mut children: Vec<(u64, &Value)> = store.referrers_of(id, ck).collect();
        children.sort_by_key(|(cid, _)| *cid);
        for (cid, c) in children {
            if unhealthy(store, ck, cid, c) {
                failing.push(label(ck, c));
            }
        }
    }
    let warnings: Vec<EventLine> = events_for(store, kind, id)
        .into_iter()
        .filter(EventLine::is_warning)
        .take(3)
        .collect();
    Some(Why {
        title: label(kind, o),
        status: status_label(kind, o),
        reason,
        cause: deepest_cause(store, kind, id),
        failing,
        warnings,
    })
}
