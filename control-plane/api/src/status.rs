//! What users see about an object, in one place: the status word and its health, the reason,
//! the age, event lines, and the deepest cause of trouble (the "why" chain).
//!
//! `tptctl get`/`describe`/`why` and the dashboard all call these functions, so they cannot
//! disagree. Nothing here does I/O: objects come through [`Objects`] (the dashboard's store, or a
//! [`Snapshot`] the CLI fills from a few list calls), and the clock is a parameter.

use crate::kinds::{self, Kind, Role};
use crate::object::{ObjectExt, parse_time};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Ok,
    Progress,
    /// Accepted, but nothing works on it yet (no controller serves its kind, or it waits on
    /// another object). The reason says what is missing.
    Pending,
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
            Health::Pending => "○",
            Health::Failed => "✗",
            Health::Deleting => "⊘",
            Health::None => "",
        }
    }

    /// Whether a person should look at it.
    pub fn is_trouble(self) -> bool {
        matches!(self, Health::Failed | Health::Pending)
    }
}

/// The status word (as `tptctl get` prints it) and how healthy that is.
pub fn status(kind: &Kind, o: &Value) -> (String, Health) {
    if o.is_deleting() || o.get("ScheduledForDeletion") == Some(&Value::Bool(true)) {
        // A deletion that nothing will carry out says so (the server marks it Pending).
        if o.status() == Some("Pending") {
            return ("Pending".into(), Health::Pending);
        }
        return ("Deleting".into(), Health::Deleting);
    }
    if o.is_set("CreationFailed") && o.status().is_none_or(|s| classify(s) != Health::Ok) {
        return ("Failed".into(), Health::Failed);
    }
    if let Some(s) = o.status() {
        return (s.to_string(), classify(s));
    }
    // Kinds with a `Reconciled` flag (reconciled kinds, and resource rows that carry one).
    if kind.field("Reconciled").is_some() {
        return if o.is_reconciled() {
            ("Reconciled".into(), Health::Ok)
        } else {
            ("Reconciling".into(), Health::Progress)
        };
    }
    ("-".into(), Health::None)
}

fn classify(s: &str) -> Health {
    let l = s.to_ascii_lowercase();
    const FAILED: &[&str] = &[
        "fail",
        "error",
        "degraded",
        "unhealthy",
        "crash",
        "backoff",
        "invalid",
        "gone",
    ];
    const OK: &[&str] = &[
        "healthy",
        "ready",
        "running",
        "reconciled",
        "active",
        "available",
        "succeeded",
    ];
    if FAILED.iter().any(|w| l.contains(w)) {
        Health::Failed
    } else if OK.contains(&l.as_str()) {
        Health::Ok
    } else if l == "pending" {
        Health::Pending
    } else if l.contains("delet") {
        Health::Deleting
    } else {
        Health::Progress
    }
}

/// `✗ Failed`, `✓ Reconciled`, `-`: the word with its marker.
pub fn status_label(kind: &Kind, o: &Value) -> (String, Health) {
    let (word, h) = status(kind, o);
    match h {
        Health::None => (word, h),
        _ => (format!("{} {word}", h.marker()), h),
    }
}

/// The object's own reason for its status, if it recorded one.
pub fn reason(o: &Value) -> Option<&str> {
    o.status_reason()
}

/// `5s`, `3m`, `2h`, `4d`, like kubectl's AGE column. `now` is injected so output is testable.
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

/// The age of an object from its `CreatedAt`.
pub fn object_age(o: &Value, now: OffsetDateTime) -> String {
    age(o.created_at(), now)
}

/// `Name`, or for unnamed kinds the Kubernetes object (`Deployment/web`) or the ID.
pub fn display_name(o: &Value) -> String {
    if !o.name().is_empty() {
        return o.name().to_string();
    }
    if let Some(def) = o.get("JSONDefinition") {
        let k = def.get("kind").and_then(Value::as_str);
        let n = def.pointer("/metadata/name").and_then(Value::as_str);
        if let (Some(k), Some(n)) = (k, n) {
            return format!("{k}/{n}");
        }
    }
    o.get("ID").map(|v| v.to_string()).unwrap_or_default()
}

/// `workload-instance/web`; resource rows are named by their Kubernetes object.
pub fn object_label(kind: &Kind, o: &Value) -> String {
    if std::ptr::eq(kind, kinds::WORKLOAD_RESOURCE_INSTANCE) {
        display_name(o)
    } else {
        format!("{}/{}", kind.singular(), display_name(o))
    }
}

/// Title of a column or key for a reference field: `KubernetesRuntimeInstanceID` →
/// `KUBERNETES-RUNTIME-INSTANCE`.
pub fn ref_title(field: &str) -> String {
    let stem = field.strip_suffix("ID").unwrap_or(field);
    let mut out = String::new();
    for (i, c) in stem.char_indices() {
        if c.is_ascii_uppercase() && i > 0 && !stem[..i].ends_with(|p: char| p.is_ascii_uppercase())
        {
            out.push('-');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Objects and events

/// Where the functions below read objects from.
pub trait Objects {
    fn get(&self, kind: &'static Kind, id: u64) -> Option<&Value>;
    /// Objects of `kind` with an ID field pointing at `target`, in ID order.
    fn referrers(&self, target: u64, kind: &'static Kind) -> Vec<(u64, &Value)>;
    fn name_of(&self, kind: &'static Kind, id: u64) -> Option<String> {
        self.get(kind, id).map(display_name)
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
    /// `workload-instance/web`, or the Kubernetes object for workload events.
    pub object: String,
}

impl EventLine {
    pub fn is_warning(&self) -> bool {
        self.ty.eq_ignore_ascii_case("warning")
    }
    /// `Warning BackOff: Back-off pulling image` (the why pane and `tptctl why`).
    pub fn summary(&self) -> String {
        format!("{} {}: {}", self.ty, self.reason, self.message)
    }
}

impl PartialEq for EventLine {
    fn eq(&self, o: &EventLine) -> bool {
        std::ptr::eq(self.kind, o.kind)
            && (
                self.id,
                self.time,
                &self.ty,
                &self.reason,
                &self.message,
                &self.object,
            ) == (o.id, o.time, &o.ty, &o.reason, &o.message, &o.object)
    }
}

/// The event line of one event row (`kind` is `Event` or `WorkloadEvent`).
pub fn event_line(objs: &dyn Objects, kind: &'static Kind, e: &Value) -> EventLine {
    let id = e.id().unwrap_or_default();
    let s = |f: &str| e.str_field(f).to_string();
    if std::ptr::eq(kind, kinds::WORKLOAD_EVENT) {
        let (wri, wi) = (kinds::WORKLOAD_RESOURCE_INSTANCE, kinds::WORKLOAD_INSTANCE);
        let object = match (
            e.id_field("WorkloadResourceInstanceID"),
            e.id_field("WorkloadInstanceID"),
        ) {
            (Some(r), _) => objs.name_of(wri, r).unwrap_or_else(|| r.to_string()),
            (None, Some(i)) => format!(
                "{}/{}",
                wi.singular(),
                objs.name_of(wi, i).unwrap_or_else(|| i.to_string())
            ),
            _ => String::new(),
        };
        EventLine {
            kind,
            id,
            time: e.time_field("Timestamp").or_else(|| e.created_at()),
            ty: s("Type"),
            reason: s("Reason"),
            message: s("Message"),
            object,
        }
    } else {
        let object = match (
            kinds::by_name(e.str_field("ObjectKind")),
            e.id_field("ObjectID"),
        ) {
            (Some(k), Some(oid)) => format!(
                "{}/{}",
                k.singular(),
                objs.name_of(k, oid).unwrap_or_else(|| oid.to_string())
            ),
            _ => s("ObjectKind"),
        };
        EventLine {
            kind,
            id,
            time: e.time_field("EventTime").or_else(|| e.created_at()),
            ty: s("Type"),
            reason: s("Reason"),
            message: s("Note"),
            object,
        }
    }
}

/// Events about one object, newest first: generic events by (ObjectKind, ObjectID), plus
/// workload events for the kinds they point at.
pub fn events_for(objs: &dyn Objects, kind: &'static Kind, id: u64) -> Vec<EventLine> {
    let mut out: Vec<EventLine> = Vec::new();
    for ek in kinds::KINDS.iter().filter(|k| k.is_event()) {
        // Generic events name their object by (ObjectKind, ObjectID); typed event rows
        // (WorkloadEvent) exist only for the kinds their fields point at.
        let generic = std::ptr::eq(ek, kinds::EVENT);
        if !generic
            && !ek
                .own_fields
                .iter()
                .any(|f| f.references == Some(kind.name))
        {
            continue;
        }
        for (_, e) in objs.referrers(id, ek) {
            if generic && e.str_field("ObjectKind") != kind.name {
                continue;
            }
            out.push(event_line(objs, ek, e));
        }
    }
    sort_events(&mut out);
    out
}

/// Newest first; ties by ID (creation order) so the order is stable.
pub fn sort_events(v: &mut [EventLine]) {
    v.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
}

// ---------------------------------------------------------------------------------------------
// The "why"

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

fn unhealthy(objs: &dyn Objects, kind: &'static Kind, id: u64, o: &Value) -> bool {
    match status(kind, o).1 {
        Health::Failed | Health::Pending => true,
        Health::Ok | Health::Deleting => false,
        // Still reconciling, or no status: unhealthy if the latest event is a warning.
        Health::Progress | Health::None => events_for(objs, kind, id)
            .first()
            .is_some_and(EventLine::is_warning),
    }
}

/// Walk down to the deepest cause: failing children first, then this object's latest warning,
/// then its StatusReason. `None` when the object looks fine.
pub fn deepest_cause(objs: &dyn Objects, kind: &'static Kind, id: u64) -> Option<Cause> {
    deepest(objs, kind, id, 0)
}

fn deepest(objs: &dyn Objects, kind: &'static Kind, id: u64, depth: usize) -> Option<Cause> {
    let o = objs.get(kind, id)?;
    if depth > 4 || status(kind, o).1 == Health::Deleting {
        return None;
    }
    if !unhealthy(objs, kind, id, o) {
        // A healthy definition still answers for its failing instances, and a healthy
        // instance for its failing dependencies (a workload whose secret failed).
        let kinds = if kind.role == Role::Definition {
            kind.children()
        } else {
            kind.dependencies()
        };
        return failing_child(objs, &kinds, id, depth);
    }
    if let Some(c) = failing_child(objs, &kind.children(), id, depth) {
        return Some(c);
    }
    Some(own_cause(objs, kind, id, o))
}

fn failing_child(
    objs: &dyn Objects,
    kinds: &[&'static Kind],
    id: u64,
    depth: usize,
) -> Option<Cause> {
    for &ck in kinds {
        for (cid, c) in objs.referrers(id, ck) {
            if let Some(mut cause) = deepest(objs, ck, cid, depth + 1) {
                cause.path.insert(0, object_label(ck, c));
                return Some(cause);
            }
        }
    }
    None
}

fn own_cause(objs: &dyn Objects, kind: &'static Kind, id: u64, o: &Value) -> Cause {
    let (word, health) = status(kind, o);
    // Pending says what is missing in its reason; a stale warning would mislead.
    if health != Health::Pending {
        if let Some(w) = events_for(objs, kind, id)
            .into_iter()
            .find(EventLine::is_warning)
        {
            return Cause {
                path: vec![],
                text: w.summary(),
            };
        }
    }
    let text = match reason(o) {
        Some(r) => r.to_string(),
        None if word == "Failed" => "creation failed; no reason was recorded".into(),
        None => format!("{word}; no reason was recorded"),
    };
    Cause { path: vec![], text }
}

/// Everything `tptctl why` and the dashboard's why pane show about one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Why {
    /// `workload-instance/web`.
    pub title: String,
    /// The status with its marker.
    pub status: (String, Health),
    pub reason: Option<String>,
    pub cause: Option<Cause>,
    /// Children that are not healthy (e.g. failing resources of an instance).
    pub failing: Vec<String>,
    /// The latest warnings (at most 3), newest first.
    pub warnings: Vec<EventLine>,
}

pub fn why(objs: &dyn Objects, kind: &'static Kind, id: u64) -> Option<Why> {
    let o = objs.get(kind, id)?;
    let mut failing = Vec::new();
    for ck in kind.children() {
        for (cid, c) in objs.referrers(id, ck) {
            if unhealthy(objs, ck, cid, c) {
                failing.push(object_label(ck, c));
            }
        }
    }
    let warnings: Vec<EventLine> = events_for(objs, kind, id)
        .into_iter()
        .filter(EventLine::is_warning)
        .take(3)
        .collect();
    Some(Why {
        title: object_label(kind, o),
        status: status_label(kind, o),
        reason: reason(o).map(str::to_string),
        cause: deepest_cause(objs, kind, id),
        failing,
        warnings,
    })
}

impl Why {
    /// The text `tptctl why` prints (and the dashboard's pane shows line by line).
    pub fn lines(&self, now: OffsetDateTime) -> Vec<String> {
        let mut out = vec![format!("{}: {}", self.title, self.status.0)];
        if let Some(r) = &self.reason {
            out.push(format!("  reason: {r}"));
        }
        match &self.cause {
            Some(c) => out.push(format!("  cause:  {}", c.one_line())),
            None => out.push("  cause:  none; it looks fine".into()),
        }
        for f in &self.failing {
            out.push(format!("  failing: {f}"));
        }
        for w in &self.warnings {
            out.push(format!("  {} ago  {}", age(w.time, now), w.summary()));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// A small in-memory set of objects, for callers that fetch what they need (the CLI).

#[derive(Default, Debug)]
pub struct Snapshot {
    objects: HashMap<(&'static str, u64), Value>,
    /// (target ID, referrer kind) → referrer IDs.
    referrers: HashMap<(u64, &'static str), BTreeSet<u64>>,
}

impl Snapshot {
    pub fn insert(&mut self, kind: &'static Kind, o: Value) {
        let Some(id) = o.id() else { return };
        for f in kind.fields() {
            if f.ty == kinds::FieldType::Id && f.name != "ID" {
                if let Some(t) = o.id_field(f.name) {
                    self.referrers.entry((t, kind.name)).or_default().insert(id);
                }
            }
        }
        self.objects.insert((kind.name, id), o);
    }

    pub fn extend(&mut self, kind: &'static Kind, objects: impl IntoIterator<Item = Value>) {
        for o in objects {
            self.insert(kind, o);
        }
    }
}

impl Objects for Snapshot {
    fn get(&self, kind: &'static Kind, id: u64) -> Option<&Value> {
        self.objects.get(&(kind.name, id))
    }
    fn referrers(&self, target: u64, kind: &'static Kind) -> Vec<(u64, &Value)> {
        self.referrers
            .get(&(target, kind.name))
            .into_iter()
            .flatten()
            .filter_map(|id| Some((*id, self.objects.get(&(kind.name, *id))?)))
            .collect()
    }
}

/// Every kind whose objects the "why" of an object of `kind` may read: the kind, its children
/// (recursively), and the event kinds. The CLI lists these before it asks.
pub fn why_kinds(kind: &'static Kind) -> Vec<&'static Kind> {
    let mut out: BTreeMap<usize, &'static Kind> = BTreeMap::new();
    let mut todo = vec![kind];
    while let Some(k) = todo.pop() {
        let pos = kinds::KINDS
            .iter()
            .position(|x| std::ptr::eq(x, k))
            .unwrap_or_default();
        if out.insert(pos, k).is_none() {
            todo.extend(k.children());
        }
    }
    for (pos, k) in kinds::KINDS
        .iter()
        .enumerate()
        .filter(|(_, k)| k.is_event())
    {
        out.insert(pos, k);
    }
    out.into_values().collect()
}

/// When a controller registration was last heard from, and whether that still counts as live.
pub fn controller_live(o: &Value, now: OffsetDateTime) -> bool {
    parse_time(o.str_field("HeartbeatAt"))
        .is_some_and(|t| (now - t).whole_seconds() <= kinds::CONTROLLER_HEARTBEAT_TIMEOUT_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn words_and_health() {
        let wi = kinds::WORKLOAD_INSTANCE;
        let w = |o: Value| status(wi, &o);
        assert_eq!(w(json!({"Reconciled": false})).0, "Reconciling");
        assert_eq!(w(json!({"Reconciled": true})).0, "Reconciled");
        assert_eq!(
            w(json!({"Status": "Pending", "Reconciled": false})),
            ("Pending".into(), Health::Pending)
        );
        assert_eq!(
            w(json!({"Status": "Healthy", "CreationFailed": null})).1,
            Health::Ok
        );
        assert_eq!(
            w(json!({"CreationFailed": "2026-01-01T00:00:00Z", "Status": "Failed"})).1,
            Health::Failed
        );
        assert_eq!(
            w(json!({"DeletionScheduled": "2026-01-01T00:00:00Z"})).1,
            Health::Deleting
        );
        let wri = kinds::WORKLOAD_RESOURCE_INSTANCE;
        assert_eq!(status(wri, &json!({"Reconciled": true})).0, "Reconciled");
        assert_eq!(status(kinds::AWS_ACCOUNT, &json!({})).0, "-");
        assert_eq!(
            status(kinds::CONTROLLER, &json!({"Status": "Gone"})).1,
            Health::Failed
        );
    }

    #[test]
    fn age_uses_the_given_clock() {
        let now = datetime!(2026-12-02 12:00:00 UTC);
        assert_eq!(age(Some(datetime!(2026-12-02 11:59:30 UTC)), now), "30s");
        assert_eq!(age(Some(datetime!(2026-12-02 11:00:00 UTC)), now), "60m");
        assert_eq!(age(Some(datetime!(2026-11-28 12:00:00 UTC)), now), "4d");
        assert_eq!(age(None, now), "?");
    }

    #[test]
    fn why_walks_to_the_deepest_cause() {
        let mut s = Snapshot::default();
        s.insert(
            kinds::WORKLOAD_DEFINITION,
            json!({"ID": 1, "Name": "web", "Reconciled": true}),
        );
        s.insert(
            kinds::WORKLOAD_INSTANCE,
            json!({"ID": 2, "Name": "web", "WorkloadDefinitionID": 1, "Status": "Degraded",
                   "StatusReason": "1 object not ready"}),
        );
        s.insert(
            kinds::WORKLOAD_EVENT,
            json!({"ID": 3, "WorkloadInstanceID": 2, "Type": "Warning", "Reason": "BackOff",
                   "Message": "Back-off pulling image \"nginx:nope\"", "Timestamp": "2026-12-02T11:59:00Z"}),
        );
        let cause = deepest_cause(&s, kinds::WORKLOAD_DEFINITION, 1).unwrap();
        assert_eq!(
            cause.one_line(),
            "workload-instance/web › Warning BackOff: Back-off pulling image \"nginx:nope\""
        );
        let why = why(&s, kinds::WORKLOAD_INSTANCE, 2).unwrap();
        assert_eq!(why.reason.as_deref(), Some("1 object not ready"));
        assert_eq!(why.warnings.len(), 1);
        assert_eq!(why.warnings[0].object, "workload-instance/web");
    }

    #[test]
    fn pending_is_explained_by_its_reason() {
        let mut s = Snapshot::default();
        s.insert(
            kinds::HELM_WORKLOAD_INSTANCE,
            json!({"ID": 5, "Name": "redis", "Status": "Pending",
                   "StatusReason": "no controller for HelmWorkloadInstance is running in this control plane"}),
        );
        let c = deepest_cause(&s, kinds::HELM_WORKLOAD_INSTANCE, 5).unwrap();
        assert!(c.text.starts_with("no controller for HelmWorkloadInstance"));
    }

    #[test]
    fn ref_titles() {
        assert_eq!(
            ref_title("KubernetesRuntimeInstanceID"),
            "KUBERNETES-RUNTIME-INSTANCE"
        );
        assert_eq!(ref_title("AwsAccountID"), "AWS-ACCOUNT");
    }
}
