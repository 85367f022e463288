//! Workload status read back from the cluster. One watcher set per runtime follows the
//! workload objects Threeport applied (by label) and the cluster's Events, and turns them into
//! the instance's `Status` + `StatusReason` and WorkloadEvents. A watch, not a poll: a Deployment
//! that becomes ready, or starts failing, an hour later is reflected within moments.

use crate::cluster::INSTANCE_LABEL;
use crate::runtime::now_rfc3339;
use futures::{StreamExt, stream::BoxStream};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use threeport_api::{Client, kinds};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// Health of one instance from its cluster objects and warning events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: &'static str,
    pub reason: String,
}

const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "Job"];

/// Pure: decide the status from the objects and the warnings about them.
pub fn health(objects: &[Value], warnings: &[(String, String, String)]) -> Health {
    let mut not_ready = Vec::new();
    let mut failed = Vec::new();
    for o in objects {
        let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let generation = n("/metadata/generation");
        let observed = o
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            .unwrap_or(generation);
        match kind {
            "Deployment" | "StatefulSet" => {
                let want = o
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let ready = n("/status/readyReplicas");
                if ready < want || observed < generation {
                    not_ready.push(format!("{kind} {name}: {ready}/{want} replicas ready"));
                }
            }
            "DaemonSet" => {
                let want = n("/status/desiredNumberScheduled");
                let ready = n("/status/numberReady");
                if ready < want {
                    not_ready.push(format!("{kind} {name}: {ready}/{want} pods ready"));
                }
            }
            "Job" => {
                let conds = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let has = |t: &str| {
                    conds
                        .iter()
                        .any(|c| c["type"] == t && c["status"] == "True")
                };
                if has("Failed") {
                    failed.push(format!("Job {name} failed"));
                } else if !has("Complete") {
                    not_ready.push(format!("Job {name}: running"));
                }
            }
            _ => {}
        }
    }
    if let Some(f) = failed.first() {
        return Health {
            status: "Failed",
            reason: f.clone(),
        };
    }
    if !not_ready.is_empty() {
        // Warnings about objects that are not ready are the deepest cause.
        if let Some((obj, reason, message)) = warnings.last() {
            return Health {
                status: "Degraded",
                reason: format!("{obj}: {reason}: {message}"),
            };
        }
        return Health {
            status: "Progressing",
            reason: not_ready.join("; "),
        };
    }
    Health {
        status: "Healthy",
        reason: format!("{} workload object(s) ready", objects.len()),
    }
}

type Key = (String, String, String); // (kind, namespace, name)

#[derive(Default)]
struct State {
    /// Workload objects by identity, with the instance that owns them.
    objects: HashMap<Key, (u64, Value)>,
    /// Warning events by involved object: (uid, reason, message, time).
    warnings: HashMap<Key, Vec<(String, String, String, String)>>,
    reported: HashMap<u64, Health>,
    events_sent: HashSet<String>,
}

fn key_of(o: &Value) -> Key {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

/// Watcher sets per runtime, started on first use.
#[derive(Default)]
pub struct StatusWatchers {
    running: Mutex<HashMap<u64, mpsc::UnboundedSender<u64>>>,
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

    /// Recompute one instance now (after a reconcile) even if nothing in the cluster changed.
    pub async fn touch(&self, runtime_id: u64, instance_id: u64) {
        if let Some(tx) = self.running.lock().await.get(&runtime_id) {
            let _ = tx.send(instance_id);
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
    ar: ApiResource,
    labels: Option<&str>,
) -> BoxStream<'static, watcher::Event<DynamicObject>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut cfg = watcher::Config::default();
    if let Some(l) = labels {
        cfg = cfg.labels(l);
    }
    watcher(api, cfg)
        .default_backoff()
        .filter_map(|r| async move {
            match r {
                Ok(ev) => Some(ev),
                Err(e) => {
                    tracing::debug!(error = %e, "status watch error; retrying");
                    None
                }
            }
        })
        .boxed()
}

async fn watch_runtime(
    client: kube::Client,
    api: Client,
    mut touched: mpsc::UnboundedReceiver<u64>,
    shutdown: CancellationToken,
) {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    let sources = vec![
        stream_for(
            &client,
            ApiResource::erase::<apps::Deployment>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            ApiResource::erase::<apps::StatefulSet>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            ApiResource::erase::<apps::DaemonSet>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(
            &client,
            ApiResource::erase::<batch::Job>(&()),
            Some(INSTANCE_LABEL),
        ),
        stream_for(&client, ApiResource::erase::<core::Event>(&()), None),
    ];
    let mut merged = futures::stream::select_all(sources);
    let state = Arc::new(Mutex::new(State::default()));
    let mut dirty: HashSet<u64> = HashSet::new();
    let mut flush = tokio::time::interval(Duration::from_millis(150));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            t = touched.recv() => match t {
                Some(id) => { dirty.insert(id); }
                None => return,
            },
            ev = merged.next() => {
                let Some(ev) = ev else { return };
                let mut st = state.lock().await;
                match ev {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                        let v = serde_json::to_value(&o).unwrap_or(Value::Null);
                        apply_event(&mut st, v, false, &mut dirty);
                    }
                    watcher::Event::Delete(o) => {
                        let v = serde_json::to_value(&o).unwrap_or(Value::Null);
                        apply_event(&mut st, v, true, &mut dirty);
                    }
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
            _ = flush.tick(), if !dirty.is_empty() => {
                let ids: Vec<u64> = dirty.drain().collect();
                let mut st = state.lock().await;
                for id in ids {
                    report(&api, &mut st, id).await;
                }
            }
        }
    }
}

fn apply_event(st: &mut State, v: Value, deleted: bool, dirty: &mut HashSet<u64>) {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "Event" {
        if v.get("type").and_then(Value::as_str) != Some("Warning") || deleted {
            return;
        }
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let involved = (
            s("/involvedObject/kind"),
            s("/involvedObject/namespace"),
            s("/involvedObject/name"),
        );
        let entry = (
            s("/metadata/uid"),
            s("/reason"),
            s("/message"),
            s("/lastTimestamp"),
        );
        let list = st.warnings.entry(involved.clone()).or_default();
        if !list.iter().any(|e| e.0 == entry.0) {
            list.push(entry);
        }
        if let Some((id, _)) = st.objects.get(&involved) {
            dirty.insert(*id);
        }
        return;
    }
    if !WORKLOAD_KINDS.contains(&kind.as_str()) {
        return;
    }
    let Some(id) = v
        .pointer(&format!(
            "/metadata/labels/{}",
            INSTANCE_LABEL.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let key = key_of(&v);
    if deleted {
        st.objects.remove(&key);
        st.warnings.remove(&key);
    } else {
        // A new generation starts over: old warnings were about the previous spec.
        let new_gen = v.pointer("/metadata/generation").and_then(Value::as_i64);
        let old_gen = st
            .objects
            .get(&key)
            .and_then(|(_, o)| o.pointer("/metadata/generation").and_then(Value::as_i64));
        if old_gen.is_some() && new_gen != old_gen {
            st.warnings.remove(&key);
        }
        st.objects.insert(key, (id, v));
    }
    dirty.insert(id);
}

async fn report(api: &Client, st: &mut State, id: u64) {
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    let mut fresh_events = Vec::new();
    for (key, (owner, o)) in &st.objects {
        if *owner != id {
            continue;
        }
        objects.push(o.clone());
        for (uid, reason, message, ts) in st.warnings.get(key).into_iter().flatten() {
            warnings.push((
                format!("{} {}", key.0, key.2),
                reason.clone(),
                message.clone(),
            ));
            if !st.events_sent.contains(uid) {
                fresh_events.push((uid.clone(), reason.clone(), message.clone(), ts.clone()));
            }
        }
    }
    let h = health(&objects, &warnings);
    let wi = kinds::WORKLOAD_INSTANCE;
    if st.reported.get(&id) != Some(&h) {
        match api
            .patch(
                wi,
                id,
                &json!({"Status": h.status, "StatusReason": h.reason}),
            )
            .await
        {
            Ok(_) => {
                st.reported.insert(id, h);
            }
            Err(e) if e.is_not_found() => {
                st.objects.retain(|_, (owner, _)| *owner != id);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "status report failed; will retry on the next change")
            }
        }
    }
    let we = kinds::WORKLOAD_EVENT;
    for (uid, reason, message, ts) in fresh_events {
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

    #[test]
    fn health_from_objects() {
        let dep = |ready: i64| json!({"kind": "Deployment", "metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 2}, "status": {"readyReplicas": ready, "observedGeneration": 2}});
        assert_eq!(health(&[dep(2)], &[]).status, "Healthy");
        let h = health(&[dep(1)], &[]);
        assert_eq!(h.status, "Progressing");
        assert!(h.reason.contains("1/2"));
        let h = health(
            &[dep(0)],
            &[(
                "Deployment web".into(),
                "Failed".into(),
                "ImagePullBackOff".into(),
            )],
        );
        assert_eq!(h.status, "Degraded");
        assert!(h.reason.contains("ImagePullBackOff"));
        let job = json!({"kind": "Job", "metadata": {"name": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(health(&[job], &[]).status, "Failed");
    }
}
