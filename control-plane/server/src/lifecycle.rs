//! The write rules of the object lifecycle, as pure functions: no HTTP, no database.
//!
//! # The flow (create → reconcile → delete → confirm)
//!
//! 1. **Create** (`POST`): a reconciled kind is stored with `Reconciled: false` and `<kind>.create`
//!    is published, unless the client seeds existing state with `Reconciled: true`. If no live
//!    controller serves the kind, the object is stored `Pending` with the reason instead of
//!    pretending it is being reconciled ([`plan_create`]).
//! 2. **Reconcile**: a controller takes the object, writes `CreationAcknowledged`, does the work,
//!    and writes `Reconciled: true` + `CreationConfirmed` (or `CreationFailed` with a reason).
//!    That bookkeeping lives in the controller runtime, not in each reconciler.
//! 3. **Update** (`PATCH`/`PUT`): a change to any non-status field sets `Reconciled: false` and
//!    publishes `<kind>.update`; status-only writes publish nothing ([`plan_write`]).
//! 4. **Delete** (`DELETE`): plain kinds go at once. A reconciled object that a controller may
//!    have acted on gets `DeletionScheduled` and `<kind>.delete`; one no controller ever touched
//!    while none serves its kind goes at once, since nothing outside exists to clean up
//!    ([`plan_delete`]).
//! 5. **Confirm**: the controller cleans up, then writes `DeletionConfirmed`, which removes the
//!    row ([`WritePlan::Remove`]). A second `DELETE` while the deletion is pending is a 409.

use serde_json::{Map, Value};
use threeport_api::validate::Mode;
use threeport_api::{Kind, Operation, REDACTED};

/// What a write should do, decided before anything is stored.
#[derive(Clone, Debug, PartialEq)]
pub enum WritePlan {
    /// Store `body`; publish `notify` in the same transaction.
    Store {
        body: Map<String, Value>,
        notify: Option<Operation>,
    },
    /// The controller confirmed a scheduled deletion: the object goes now.
    Remove,
}

/// What a `DELETE` should do.
#[derive(Clone, Debug, PartialEq)]
pub enum DeletePlan {
    /// Remove the row (and what cascades from it).
    Remove,
    /// Two-phase: store `body` (with `DeletionScheduled`) and publish `.delete`.
    Schedule { body: Map<String, Value> },
    /// 409 with this message.
    Refuse(String),
}

/// Whether a live controller serves a kind, as the server last saw the registrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    Yes,
    No,
}

/// The reason an object of `kind` is `Pending` while no controller serves it.
pub fn no_controller_reason(kind: &Kind) -> String {
    let what = format!(
        "no controller for {} is running in this control plane",
        kind.name
    );
    match kind.controller() {
        Some(c) => format!("{what}; start one with `threeport controllers --only {c}`"),
        None => format!("{what}; this release has no controller for it"),
    }
}

fn is_set(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool).unwrap_or(false)
}

fn mark_pending(body: &mut Map<String, Value>, reason: String) {
    body.insert("Status".into(), Value::String("Pending".into()));
    body.insert("StatusReason".into(), Value::String(reason));
}

/// `POST`: the body to store and whether to publish `.create`.
pub fn plan_create(
    kind: &Kind,
    mut body: Map<String, Value>,
    served: Served,
) -> (Map<String, Value>, bool) {
    if !kind.reconciled {
        return (body, false);
    }
    // A client seeding existing state sends Reconciled: true; anything else needs a controller.
    let reconciled = is_true(body.get("Reconciled"));
    body.insert("Reconciled".into(), Value::Bool(reconciled));
    if !reconciled && served == Served::No && !is_set(body.get("Status")) {
        mark_pending(&mut body, no_controller_reason(kind));
    }
    (body, !reconciled)
}

/// The fields of a `PATCH`/`PUT` body, checked against the stored object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Incoming {
    /// New values (secrets still in clear text: the caller seals them).
    pub fields: Map<String, Value>,
    /// Secrets written back as the redaction marker: the stored (sealed) values, kept as they
    /// are (GET → edit → PUT works). They do not count as a change.
    pub kept: Map<String, Value>,
}

/// Immutable fields cannot change once set. `Err` is a 400 message.
pub fn incoming_fields(
    kind: &Kind,
    current: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Incoming, String> {
    let mut incoming = Map::new();
    let mut kept = Map::new();
    for (k, v) in patch.iter().filter(|(k, _)| *k != "ResourceVersion") {
        let Some(field) = kind.field(k) else {
            return Err(format!("unknown field \"{k}\""));
        };
        if field.secret && v.as_str() == Some(REDACTED) {
            if let Some(old) = current.get(k) {
                kept.insert(k.clone(), old.clone());
            }
            continue;
        }
        if field.immutable && is_set(current.get(k)) && current.get(k) != Some(v) {
            return Err(format!("field \"{k}\" cannot be changed after creation"));
        }
        incoming.insert(k.clone(), v.clone());
    }
    Ok(Incoming {
        fields: incoming,
        kept,
    })
}

/// `PATCH` (merge) or `PUT` (replace; status fields are kept unless given) of `current` with the
/// already checked and sealed `incoming` fields. `explicit_reconciled` is the `Reconciled` value
/// the client sent, if any.
pub fn plan_write(
    kind: &Kind,
    mode: Mode,
    current: &Map<String, Value>,
    incoming: Incoming,
    served: Served,
) -> WritePlan {
    let Incoming {
        fields: incoming,
        kept,
    } = incoming;
    let explicit_reconciled = incoming.get("Reconciled").and_then(Value::as_bool);
    let is_status = |k: &str| kind.field(k).is_some_and(|f| f.status);
    let mut merged: Map<String, Value> = match mode {
        Mode::Replace => current
            .iter()
            .filter(|(k, _)| is_status(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => current.clone(),
    };
    let mut spec_changed = false;
    for (k, v) in incoming {
        let secret = kind.field(&k).is_some_and(|f| f.secret);
        // A secret is stored encrypted with a fresh nonce, so any write of one counts as a change.
        if !is_status(&k) && (secret || current.get(&k) != Some(&v)) {
            spec_changed = true;
        }
        merged.insert(k, v);
    }
    merged.extend(kept);
    if mode == Mode::Replace {
        // A PUT that drops a spec field changes the spec too.
        spec_changed |= current
            .iter()
            .any(|(k, v)| !is_status(k) && merged.get(k) != Some(v));
    }
    if !kind.reconciled {
        return WritePlan::Store {
            body: merged,
            notify: None,
        };
    }
    // Step 5 of the flow: the controller's confirmation removes the row.
    if is_set(merged.get("DeletionConfirmed")) && is_set(current.get("DeletionScheduled")) {
        return WritePlan::Remove;
    }
    // Upstream left Reconciled alone on a spec change, so updates did nothing. Here a spec
    // change always asks the controller to reconcile again.
    let reconciled = explicit_reconciled.unwrap_or(if spec_changed {
        false
    } else {
        is_true(current.get("Reconciled"))
    });
    merged.insert("Reconciled".into(), Value::Bool(reconciled));
    let deleting = is_set(merged.get("DeletionScheduled"));
    let mut notify = None;
    if !reconciled && (spec_changed || explicit_reconciled == Some(false)) {
        notify = Some(if deleting {
            Operation::Deleted
        } else {
            Operation::Updated
        });
        if served == Served::No {
            mark_pending(&mut merged, no_controller_reason(kind));
        }
    }
    WritePlan::Store {
        body: merged,
        notify,
    }
}

/// `DELETE` of `current`. `blockers` are the objects that still reference it (restricting
/// references); `now` is the timestamp to schedule with.
pub fn plan_delete(
    kind: &Kind,
    current: &Map<String, Value>,
    blockers: &[String],
    served: Served,
    now: &str,
) -> DeletePlan {
    // Plain kinds, and deletions the controller already confirmed, go at once (the store still
    // refuses while restricting references exist).
    if !kind.reconciled || is_set(current.get("DeletionConfirmed")) {
        return DeletePlan::Remove;
    }
    if is_set(current.get("DeletionScheduled")) {
        return DeletePlan::Refuse(format!(
            "deletion of {} {:?} is already pending; a controller will remove it",
            kind.name,
            current.get("Name").and_then(Value::as_str).unwrap_or("")
        ));
    }
    if !blockers.is_empty() {
        return DeletePlan::Refuse(format!(
            "{} {:?} is still referenced by {}; delete those first",
            kind.name,
            current.get("Name").and_then(Value::as_str).unwrap_or(""),
            blockers.join(", ")
        ));
    }
    let touched = is_set(current.get("CreationAcknowledged"));
    if served == Served::No && !touched {
        // No controller ever acted on it, and none would confirm: nothing outside to clean up.
        return DeletePlan::Remove;
    }
    let mut body = current.clone();
    body.insert("DeletionScheduled".into(), Value::String(now.to_string()));
    body.insert("Reconciled".into(), Value::Bool(false));
    if served == Served::No {
        mark_pending(
            &mut body,
            format!(
                "deletion waits for a controller: {}",
                no_controller_reason(kind)
            ),
        );
    }
    DeletePlan::Schedule { body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use threeport_api::kinds::{AWS_ACCOUNT, HELM_WORKLOAD_INSTANCE, WORKLOAD_INSTANCE};

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }
    fn inc(v: Value) -> Incoming {
        Incoming {
            fields: map(v),
            kept: Map::new(),
        }
    }
    const NOW: &str = "2026-12-02T12:00:00Z";

    #[test]
    fn create_asks_for_reconcile_or_says_pending() {
        let (b, notify) = plan_create(WORKLOAD_INSTANCE, map(json!({"Name": "web"})), Served::Yes);
        assert!(notify);
        assert_eq!(b["Reconciled"], json!(false));
        assert!(b.get("Status").is_none());

        let (b, notify) = plan_create(
            HELM_WORKLOAD_INSTANCE,
            map(json!({"Name": "redis"})),
            Served::No,
        );
        assert!(
            notify,
            "still published: a controller that starts later picks it up"
        );
        assert_eq!(b["Status"], json!("Pending"));
        assert_eq!(
            b["StatusReason"],
            json!(
                "no controller for HelmWorkloadInstance is running in this control plane; this release has no controller for it"
            )
        );

        let (b, _) = plan_create(WORKLOAD_INSTANCE, map(json!({"Name": "w"})), Served::No);
        assert!(
            b["StatusReason"]
                .as_str()
                .unwrap()
                .ends_with("start one with `threeport controllers --only workload`")
        );

        let (b, notify) = plan_create(
            WORKLOAD_INSTANCE,
            map(json!({"Name": "seeded", "Reconciled": true})),
            Served::No,
        );
        assert!(!notify);
        assert!(b.get("Status").is_none(), "seeded state is not pending");

        let (_, notify) = plan_create(AWS_ACCOUNT, map(json!({"Name": "a"})), Served::No);
        assert!(!notify);
    }

    #[test]
    fn spec_changes_reconcile_and_status_writes_do_not() {
        let cur = map(json!({"Name": "web", "WorkloadDefinitionID": 1, "Reconciled": true}));
        let spec = plan_write(
            WORKLOAD_INSTANCE,
            Mode::Patch,
            &cur,
            inc(json!({"KubernetesRuntimeInstanceID": 7})),
            Served::Yes,
        );
        let WritePlan::Store { body, notify } = spec else {
            panic!()
        };
        assert_eq!(notify, Some(Operation::Updated));
        assert_eq!(body["Reconciled"], json!(false));

        let status = plan_write(
            WORKLOAD_INSTANCE,
            Mode::Patch,
            &cur,
            inc(json!({"Status": "Healthy"})),
            Served::Yes,
        );
        let WritePlan::Store { body, notify } = status else {
            panic!()
        };
        assert_eq!(notify, None);
        assert_eq!(body["Reconciled"], json!(true));

        // A PUT that drops a spec field is a spec change.
        let put = plan_write(
            WORKLOAD_INSTANCE,
            Mode::Replace,
            &cur,
            inc(json!({"Name": "web"})),
            Served::No,
        );
        let WritePlan::Store { body, notify } = put else {
            panic!()
        };
        assert_eq!(notify, Some(Operation::Updated));
        assert_eq!(body["Status"], json!("Pending"));
        assert!(body.get("WorkloadDefinitionID").is_none());
    }

    #[test]
    fn secrets_written_back_redacted_keep_their_value_and_immutables_hold() {
        use threeport_api::kinds::KUBERNETES_RUNTIME_INSTANCE as kri;
        let cur = map(json!({"Name": "r", "Location": "Local", "CACertificate": "sealed"}));
        let inc = incoming_fields(kri, &cur, &map(json!({"CACertificate": REDACTED}))).unwrap();
        assert_eq!(inc.kept["CACertificate"], json!("sealed"));
        assert!(inc.fields.is_empty());
        // Kept secrets are no change: nothing to reconcile.
        let mut cur = cur.clone();
        cur.insert("Reconciled".into(), json!(true));
        let plan = plan_write(kri, Mode::Patch, &cur, inc, Served::Yes);
        let WritePlan::Store { body, notify } = plan else {
            panic!()
        };
        assert_eq!(notify, None);
        assert_eq!(body["CACertificate"], json!("sealed"));
        let err = incoming_fields(kri, &cur, &map(json!({"Location": "Mars"}))).unwrap_err();
        assert!(err.contains("\"Location\" cannot be changed"));
        assert!(incoming_fields(kri, &cur, &map(json!({"Location": "Local"}))).is_ok());
    }

    // Every row of the two-phase delete.
    #[test]
    fn delete_rows() {
        let wi = WORKLOAD_INSTANCE;
        let base = json!({"Name": "web", "Reconciled": true, "CreationAcknowledged": NOW});
        // 1. A plain kind goes at once.
        assert_eq!(
            plan_delete(
                AWS_ACCOUNT,
                &map(json!({"Name": "a"})),
                &[],
                Served::No,
                NOW
            ),
            DeletePlan::Remove
        );
        // 2. A confirmed deletion goes at once.
        let mut confirmed = base.clone();
        confirmed["DeletionScheduled"] = json!(NOW);
        confirmed["DeletionConfirmed"] = json!(NOW);
        assert_eq!(
            plan_delete(wi, &map(confirmed), &[], Served::Yes, NOW),
            DeletePlan::Remove
        );
        // 3. A pending deletion is a conflict.
        let mut pending = base.clone();
        pending["DeletionScheduled"] = json!(NOW);
        assert!(matches!(
            plan_delete(wi, &map(pending), &[], Served::Yes, NOW),
            DeletePlan::Refuse(m) if m.contains("already pending")
        ));
        // 4. Referenced objects cannot be scheduled.
        assert!(matches!(
            plan_delete(wi, &map(base.clone()), &["1 gateway-instances".into()], Served::Yes, NOW),
            DeletePlan::Refuse(m) if m.contains("still referenced by 1 gateway-instances")
        ));
        // 5. Served: scheduled, not reconciled, no pending mark.
        let DeletePlan::Schedule { body } =
            plan_delete(wi, &map(base.clone()), &[], Served::Yes, NOW)
        else {
            panic!()
        };
        assert_eq!(body["DeletionScheduled"], json!(NOW));
        assert_eq!(body["Reconciled"], json!(false));
        assert!(body.get("Status").is_none());
        // 6. Touched by a controller that is gone now: scheduled, and Pending says why.
        let DeletePlan::Schedule { body } =
            plan_delete(wi, &map(base.clone()), &[], Served::No, NOW)
        else {
            panic!()
        };
        assert_eq!(body["Status"], json!("Pending"));
        assert!(
            body["StatusReason"]
                .as_str()
                .unwrap()
                .starts_with("deletion waits for a controller")
        );
        // 7. Never touched and nothing serves it: nothing to clean up, it goes at once.
        let untouched = json!({"Name": "redis", "Reconciled": false, "Status": "Pending"});
        assert_eq!(
            plan_delete(
                HELM_WORKLOAD_INSTANCE,
                &map(untouched.clone()),
                &[],
                Served::No,
                NOW
            ),
            DeletePlan::Remove
        );
        // ... but a live controller gets to see it.
        assert!(matches!(
            plan_delete(
                HELM_WORKLOAD_INSTANCE,
                &map(untouched),
                &[],
                Served::Yes,
                NOW
            ),
            DeletePlan::Schedule { .. }
        ));
        // 8. The controller's DeletionConfirmed removes the row.
        let mut scheduled = base;
        scheduled["DeletionScheduled"] = json!(NOW);
        assert_eq!(
            plan_write(
                wi,
                Mode::Patch,
                &map(scheduled.clone()),
                inc(json!({"DeletionConfirmed": NOW})),
                Served::Yes
            ),
            WritePlan::Remove
        );
        // 9. DeletionAcknowledged alone keeps it, and publishes nothing.
        assert!(matches!(
            plan_write(
                wi,
                Mode::Patch,
                &map(scheduled),
                inc(json!({"DeletionAcknowledged": NOW})),
                Served::Yes
            ),
            WritePlan::Store { notify: None, .. }
        ));
    }
}
