//! `tptctl delete -f`: delete what the files declare, dependents first.
//!
//! A reconciled object's delete is two-phase: the API schedules it and the object stays until its
//! controller confirms. While it stays, it still refers to its definition, runtime or workload,
//! and the API refuses to delete those (409, "still referenced"). So an object here is deleted
//! only once every object in the files that refers to it is gone, not merely scheduled. Objects
//! that do not depend on each other go concurrently, so a hundred workloads wait for their
//! controllers in parallel rather than one after another.

use crate::apply::{prerequisites, report_line};
use anyhow::Result;
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::Duration;
use threeport_api::ObjectExt;
use threeport_api::manifest::Loaded;
use threeport_api::{Client, Kind, object_id};
use tokio::time::Instant;

/// How often a scheduled deletion is checked while something waits for it.
const POLL: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Waiting for the objects that refer to it.
    Waiting,
    Running,
    /// Scheduled (two-phase); not confirmed yet.
    Scheduled(u64),
    Gone,
    /// Not deleted: its delete failed, it was not confirmed in time, or it was skipped.
    Stuck,
}

enum Event {
    Deleted(usize, Result<Option<u64>, String>),
    Confirmed(usize, Result<bool, String>),
}

/// Delete every object of `loaded`, dependents first. Returns the number of failures and the
/// two-phase deletions still unconfirmed (for `--wait`).
pub async fn delete_from(
    client: &Client,
    loaded: Loaded,
    timeout: Duration,
    concurrency: usize,
) -> Result<(usize, Vec<(&'static Kind, u64)>)> {
    let mut failed = 0;
    for p in &loaded.problems {
        eprintln!("error: {p}");
        failed += 1;
    }
    let objects = loaded.objects;
    let refers_to = prerequisites(&objects);
    let mut referred_by: Vec<Vec<usize>> = vec![Vec::new(); objects.len()];
    for (i, deps) in refers_to.iter().enumerate() {
        for &j in deps {
            referred_by[j].push(i);
        }
    }
    let deadline = Instant::now() + timeout;
    let mut state = vec![State::Waiting; objects.len()];
    let mut running = FuturesUnordered::new();
    let mut in_flight = 0usize;
    loop {
        // Start every object whose dependents are all gone, up to the bound; the latest in the
        // files first, so the lines read as the reverse of apply's.
        for i in (0..objects.len()).rev() {
            if in_flight >= concurrency.max(1) {
                break;
            }
            if state[i] != State::Waiting {
                continue;
            }
            let blockers: Vec<usize> = referred_by[i]
                .iter()
                .copied()
                .filter(|&j| state[j] != State::Gone)
                .collect();
            if let Some(&j) = blockers.iter().find(|&&j| state[j] == State::Stuck) {
                state[i] = State::Stuck;
                failed += 1;
                eprintln!(
                    "error: {}: not deleted: {} still refers to it and was not deleted",
                    objects[i].label(),
                    objects[j].label()
                );
                continue;
            }
            if !blockers.is_empty() {
                continue;
            }
            state[i] = State::Running;
            in_flight += 1;
            let d = &objects[i];
            running.push(Box::pin(async move {
                Event::Deleted(i, delete_one(client, d.kind, &d.name).await)
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Event> + '_>>);
        }
        let Some(event) = running.next().await else {
            break;
        };
        match event {
            Event::Deleted(i, result) => {
                in_flight -= 1;
                let d = &objects[i];
                match result {
                    Ok(None) => state[i] = State::Gone,
                    Ok(Some(id)) => {
                        state[i] = State::Scheduled(id);
                        // Only what something in the files waits for is followed here; the rest
                        // is `--wait`'s business.
                        if referred_by_waiting(&refers_to[i], &state) {
                            let kind = d.kind;
                            running.push(Box::pin(async move {
                                Event::Confirmed(i, confirmed(client, kind, id, deadline).await)
                            }));
                        }
                    }
                    Err(e) => {
                        state[i] = State::Stuck;
                        failed += 1;
                        eprintln!("error: {}: {e}", d.label());
                    }
                }
            }
            Event::Confirmed(i, result) => {
                let d = &objects[i];
                match result {
                    Ok(true) => state[i] = State::Gone,
                    Ok(false) => {
                        state[i] = State::Stuck;
                        failed += 1;
                        let why = match client.find_by_name(d.kind, &d.name).await {
                            Ok(Some(o)) => status_of(&o),
                            _ => String::new(),
                        };
                        eprintln!(
                            "error: {}: its deletion was not confirmed within {}s{why}",
                            d.label(),
                            timeout.as_secs()
                        );
                        eprintln!(
                            "hint: see why with `tptctl why {} {}`, or wait longer with --timeout",
                            d.kind.singular(),
                            d.name
                        );
                    }
                    Err(e) => {
                        state[i] = State::Stuck;
                        failed += 1;
                        eprintln!("error: {}: {e}", d.label());
                    }
                }
            }
        }
    }
    // Nothing is left waiting when every delete has answered (each waits only for objects that
    // end Gone or Stuck); say so if that ever stops holding rather than exit 0 quietly.
    for (d, s) in objects.iter().zip(&state) {
        if *s == State::Waiting {
            failed += 1;
            eprintln!(
                "error: {}: not deleted: what refers to it is still there",
                d.label()
            );
        }
    }
    let scheduled = objects
        .iter()
        .zip(&state)
        .filter_map(|(d, s)| match s {
            State::Scheduled(id) => Some((d.kind, *id)),
            _ => None,
        })
        .collect();
    Ok((failed, scheduled))
}

/// Whether an object it refers to is still waiting (so its confirmation must be followed).
fn referred_by_waiting(refers_to: &[usize], state: &[State]) -> bool {
    refers_to.iter().any(|&j| state[j] == State::Waiting)
}

/// Delete one object by name: `Ok(None)` when it is gone (deleted at once, or not there),
/// `Ok(Some(id))` when its two-phase deletion was scheduled.
async fn delete_one(
    client: &Client,
    kind: &'static Kind,
    name: &str,
) -> Result<Option<u64>, String> {
    let label = format!("{}/{name}", kind.singular());
    let found = client
        .find_by_name(kind, name)
        .await
        .map_err(|e| e.to_string())?;
    let Some(o) = found else {
        eprintln!("{label} not found");
        return Ok(None);
    };
    let id = object_id(&o).unwrap_or_default();
    // Already scheduled (an earlier run was interrupted): wait for it like any other.
    if o.get("DeletionScheduled").is_some_and(|v| !v.is_null()) {
        report_line(format_args!("{label} deletion scheduled"));
        return Ok(Some(id));
    }
    match client.delete(kind, id).await {
        Ok(_) if kind.reconciled => {
            report_line(format_args!("{label} deletion scheduled"));
            Ok(Some(id))
        }
        Ok(_) => {
            report_line(format_args!("{label} deleted"));
            Ok(None)
        }
        // Removed by someone else in between: the end state is what the files ask for.
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Wait until the object is gone; `Ok(false)` at the deadline.
async fn confirmed(
    client: &Client,
    kind: &'static Kind,
    id: u64,
    deadline: Instant,
) -> Result<bool, String> {
    loop {
        match client.get(kind, id).await {
            Err(e) if e.is_not_found() => return Ok(true),
            Err(e) => return Err(e.to_string()),
            Ok(_) if Instant::now() >= deadline => return Ok(false),
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// ` (Failed: …)`, when the object says why it is still there.
fn status_of(o: &serde_json::Value) -> String {
    match (o.status(), o.status_reason()) {
        (Some(s), Some(r)) if !r.is_empty() => format!(" ({s}: {r})"),
        (Some(s), _) => format!(" ({s})"),
        _ => String::new(),
    }
}

/// Wait until every object is gone (its two-phase delete was confirmed).
pub async fn wait_gone(
    client: &Client,
    objects: &[(&'static Kind, u64)],
    timeout: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    for (kind, id) in objects {
        match confirmed(client, kind, *id, deadline).await {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(anyhow::anyhow!(e)),
        }
    }
    Ok(true)
}
