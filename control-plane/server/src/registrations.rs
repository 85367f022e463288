//! Which kinds a live controller serves, and what the control plane says about the rest.
//!
//! Each controller process keeps a `Controller` object (the kinds it serves, `HeartbeatAt`)
//! through the REST API like any other client. From those registrations the server knows, at
//! every write, whether anything will reconcile an object; when nothing will, the object is
//! stored `Pending` with the reason (see `lifecycle`). The sweeper here keeps that true over
//! time: a controller that stops heartbeating is marked `Gone`, and objects of kinds that no
//! live controller serves anymore are marked `Pending`. When a controller starts, it lists what
//! is unreconciled and takes it from there, so nothing waits for the sweeper to leave `Pending`.

use crate::lifecycle::{Served, no_controller_reason};
use crate::store::{Store, StoreError};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use threeport_api::kinds::{self, CONTROLLER, KINDS, Kind};
use threeport_api::object::{format_time, parse_time};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How often the sweeper looks.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3);
/// Registrations gone for longer than this are removed.
const FORGET_AFTER_SECS: i64 = 3600;

/// The kinds that live controllers serve, as of the last refresh.
#[derive(Default)]
pub struct Registry {
    served: RwLock<HashSet<&'static str>>,
    /// Kinds that lost their last controller since the last sweep (`None` before the first
    /// sweep: every kind). Only their objects need marking, so a sweep costs nothing in the
    /// steady state.
    lost: std::sync::Mutex<Option<HashSet<&'static str>>>,
}

impl Registry {
    pub fn served(&self, kind: &Kind) -> Served {
        let set = self.served.read().unwrap_or_else(|e| e.into_inner());
        if set.contains(kind.name) {
            Served::Yes
        } else {
            Served::No
        }
    }

    /// Re-read the registrations. Returns the registrations (for the sweeper).
    pub async fn refresh(&self, store: &Store) -> Result<Vec<crate::store::Stored>, StoreError> {
        let regs = list_all(store, CONTROLLER, &[]).await?;
        let now = OffsetDateTime::now_utc();
        let mut set = HashSet::new();
        for r in &regs {
            if live(&r.body, now) {
                for k in r
                    .body
                    .get("Kinds")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(kind) = k.as_str().and_then(kinds::by_name) {
                        set.insert(kind.name);
                    }
                }
            }
        }
        let old = std::mem::replace(
            &mut *self.served.write().unwrap_or_else(|e| e.into_inner()),
            set.clone(),
        );
        if let Some(lost) = self.lost.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            lost.extend(old.difference(&set));
        }
        Ok(regs)
    }
}

fn live(body: &Map<String, Value>, now: OffsetDateTime) -> bool {
    body.get("HeartbeatAt")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .is_some_and(|t| (now - t).whole_seconds() <= kinds::CONTROLLER_HEARTBEAT_TIMEOUT_SECS)
}

async fn list_all(
    store: &Store,
    kind: &'static Kind,
    filters: &[(&'static str, String)],
) -> Result<Vec<crate::store::Stored>, StoreError> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let (items, total) = store
            .list(kind, None, filters, crate::store::Page::number(page), 500)
            .await?;
        let n = items.len();
        out.extend(items);
        if n == 0 || out.len() as u64 >= total {
            return Ok(out);
        }
        page += 1;
    }
}

/// One pass: refresh the cache, mark silent controllers `Gone` (and forget long-gone ones), and
/// mark unreconciled objects of unserved kinds `Pending`. Returns how many objects it changed.
pub async fn sweep(registry: &Registry, store: &Store) -> Result<usize, StoreError> {
    let regs = registry.refresh(store).await?;
    let now = OffsetDateTime::now_utc();
    let mut changed = 0;
    for r in regs {
        if live(&r.body, now) {
            continue;
        }
        let heard = r
            .body
            .get("HeartbeatAt")
            .and_then(Value::as_str)
            .unwrap_or("never");
        let long_gone =
            parse_time(heard).is_none_or(|t| (now - t).whole_seconds() > FORGET_AFTER_SECS);
        if long_gone {
            if store
                .remove(CONTROLLER, r.id, Some(r.version))
                .await
                .is_ok()
            {
                changed += 1;
            }
            continue;
        }
        if r.body.get("Status").and_then(Value::as_str) != Some("Gone") {
            let mut body = r.body.clone();
            body.insert("Status".into(), "Gone".into());
            body.insert(
                "StatusReason".into(),
                format!(
                    "no heartbeat since {heard} (now {}); the process stopped or cannot reach the API",
                    format_time(now)
                )
                .into(),
            );
            if store
                .update(CONTROLLER, r.id, r.version, &body, None)
                .await
                .is_ok()
            {
                changed += 1;
            }
        }
    }
    // Objects written while a kind is unserved are stored Pending by the write itself; what
    // needs marking is what a controller that went away left unreconciled (or, at the first
    // sweep after a start, anything unreconciled).
    let lost = registry
        .lost
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(HashSet::new());
    for kind in KINDS.iter().filter(|k| k.reconciled) {
        let was_lost = lost.as_ref().is_none_or(|l| l.contains(kind.name));
        if !was_lost || registry.served(kind) == Served::Yes {
            continue;
        }
        let reason = no_controller_reason(kind);
        let objects = match list_all(store, kind, &[("Reconciled", "false".into())]).await {
            Ok(o) => o,
            Err(e) => {
                // Look at every kind again next time rather than forget what was lost.
                *registry.lost.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(e);
            }
        };
        for o in objects {
            let status = o.body.get("Status").and_then(Value::as_str);
            if status == Some("Pending") {
                continue;
            }
            let mut body = o.body.clone();
            body.insert("Status".into(), "Pending".into());
            let reason = if o
                .body
                .get("DeletionScheduled")
                .is_some_and(|v| !v.is_null())
            {
                format!("deletion waits for a controller: {reason}")
            } else {
                reason.clone()
            };
            body.insert("StatusReason".into(), reason.into());
            // Conditional on the version read: a controller's own write wins the race.
            match store.update(kind, o.id, o.version, &body, None).await {
                Ok(_) => changed += 1,
                Err(StoreError::StaleVersion { .. } | StoreError::NotFound) => {}
                Err(e) => {
                    *registry.lost.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Err(e);
                }
            }
        }
    }
    Ok(changed)
}

/// Sweep until `shutdown`.
pub async fn run(
    registry: Arc<Registry>,
    store: Arc<Store>,
    wake: Arc<crate::Wake>,
    shutdown: CancellationToken,
) {
    loop {
        match sweep(&registry, &store).await {
            // Let the relay and the watch stream see the changes now, not at their next poll.
            Ok(n) if n > 0 => wake.poke(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "controller sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
