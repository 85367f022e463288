//! The simulated control loops: what the deployment/statefulset/job controllers, the scheduler
//! and the kubelet would report for workloads, without running anything.
//!
//! For every Deployment, StatefulSet, ReplicaSet, DaemonSet and Job, each new `generation` gets
//!
//! 1. at once, an in-progress status (`observedGeneration` = the generation, not ready yet), so a
//!    client that wrongly treats "observed" as "ready" is caught; then
//! 2. `ready_delay` later, the final status: ready (`readyReplicas` = `availableReplicas` =
//!    `replicas`, `Available=True`, `Progressing=True/NewReplicaSetAvailable`; Jobs `Complete`),
//!    or — when the object or its pod template carries the annotation
//!    `threeport.io/simulate-failure` — a failure: not ready, `Available=False`
//!    (`MinimumReplicasUnavailable`), a Warning Event about the workload, and one fake Pod whose
//!    container is waiting with the failure reason (for `kubectl get pods` / describe-style code).
//!
//! LoadBalancer Services get `status.loadBalancer.ingress[0].ip = 127.0.0.1` after the delay.
//!
//! Status is written through the same `/status` code path as any client (manager
//! `kube-controller-manager`), so it produces MODIFIED watch events and managedFields like a
//! real controller, and never touches the spec's field ownership.

use crate::discovery::{ResKey, ResourceType};
use crate::ops::{self, DeleteOpts, WriteCtx};
use crate::store::{Inner, Store, meta_str, now_rfc3339, random_suffix, stable_suffix};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Annotation (on the workload or its pod template) that makes the simulated kubelet fail it.
/// Values: `ImagePullBackOff` / `ErrImagePull` (Event reason `Failed`), `CrashLoopBackOff`
/// (Event reason `BackOff`); anything else is reported as a generic `Failed`.
pub const FAILURE_ANNOTATION: &str = "threeport.io/simulate-failure";
/// Label on the fake Pods the kubelet creates.
pub const SIMULATED_LABEL: &str = "kube-double.threeport.io/simulated";
const STATUS_MANAGER: &str = "kube-controller-manager";
const KUBELET: &str = "kubelet";
pub const NODE_NAME: &str = "kube-double";

const WORKLOADS: &[(&str, &str)] = &[
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "replicasets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("", "services"),
];

struct Track {
    key: ResKey,
    ns: String,
    name: String,
    generation: i64,
    due: Option<Instant>,
}

pub async fn run(store: Arc<Store>, delay: Duration, mut stop: watch::Receiver<bool>) {
    let mut changes = store.subscribe();
    let mut tracked: HashMap<String, Track> = HashMap::new();
    loop {
        changes.borrow_and_update();
        {
            let mut g = store.lock();
            scan(&mut g, &mut tracked, delay);
            process_due(&mut g, &mut tracked);
        }
        let next_due = tracked.values().filter_map(|t| t.due).min();
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = sleep_until_opt(next_due) => {}
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

fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Track every new workload generation, and write its in-progress status.
fn scan(g: &mut Inner, tracked: &mut HashMap<String, Track>, delay: Duration) {
    let mut seen = HashSet::new();
    for (group, plural) in WORKLOADS {
        let key = ResKey::new(group, plural);
        let Some(rt) = g.registry.find_key(&key).cloned() else {
            continue;
        };
        for obj in g.list(&key, None) {
            let uid = meta_str(&obj, "uid").to_string();
            seen.insert(uid.clone());
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let generation = generation(&obj);
            if tracked
                .get(&uid)
                .is_some_and(|t| t.generation == generation)
            {
                continue;
            }
            if rt.kind == "Service"
                && obj.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer")
            {
                continue;
            }
            let ns = meta_str(&obj, "namespace").to_string();
            let name = meta_str(&obj, "name").to_string();
            // A new generation replaces the pods of the previous one.
            delete_simulated_pods(g, &uid);
            if let Some(status) = progressing_status(&rt, &obj) {
                let _ = ops::set_status(g, &rt, &ns, &name, status, STATUS_MANAGER);
            }
            tracked.insert(
                uid,
                Track {
                    key: key.clone(),
                    ns,
                    name,
                    generation,
                    due: Some(Instant::now() + delay),
                },
            );
        }
    }
    tracked.retain(|uid, _| seen.contains(uid));
}

fn process_due(g: &mut Inner, tracked: &mut HashMap<String, Track>) {
    let now = Instant::now();
    for (uid, t) in tracked.iter_mut() {
        if t.due.is_none_or(|d| d > now) {
            continue;
        }
        t.due = None;
        let Some(obj) = g.get(&t.key, &t.ns, &t.name) else {
            continue;
        };
        if meta_str(&obj, "uid") != uid || generation(&obj) != t.generation {
            continue; // replaced meanwhile; the next scan tracks the new one
        }
        let Some(rt) = g.registry.find_key(&t.key).cloned() else {
            continue;
        };
        let failure = failure_mode(&obj);
        let status = final_status(&rt, &obj, failure.is_some());
        let _ = ops::set_status(g, &rt, &t.ns, &t.name, status, STATUS_MANAGER);
        if let Some(mode) = failure
            && rt.kind != "Service"
        {
            report_failure(g, &rt, &obj, &mode);
        }
    }
}

fn failure_mode(obj: &Value) -> Option<String> {
    [
        "/metadata/annotations",
        "/spec/template/metadata/annotations",
    ]
    .iter()
    .find_map(|p| {
        obj.pointer(p)
            .and_then(|a| a.get(FAILURE_ANNOTATION))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    })
}

fn desired(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn template_hash(obj: &Value) -> String {
    stable_suffix(obj.pointer("/spec/template").unwrap_or(&Value::Null), 10)
}

fn cond(t: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": status, "reason": reason, "message": message,
           "lastUpdateTime": now, "lastTransitionTime": now})
}

/// Insert `k: v` unless v is 0, like Go's `omitempty` on the real status structs.
fn nz(m: &mut Map<String, Value>, k: &str, v: i64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn progressing_status(rt: &ResourceType, obj: &Value) -> Option<Value> {
    let now = now_rfc3339();
    let g = generation(obj);
    let n = desired(obj);
    let prev = |k: &str| {
        obj.pointer(&format!("/status/{k}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let mut m = Map::new();
    m.insert("observedGeneration".into(), json!(g));
    match rt.kind.as_str() {
        "Deployment" => {
            let rs = format!("{}-{}", meta_str(obj, "name"), template_hash(obj));
            let available = prev("availableReplicas").min(n);
            nz(&mut m, "replicas", n);
            if available > 0 {
                // A rollout of an available Deployment: still available while it progresses.
                nz(&mut m, "readyReplicas", available);
                nz(&mut m, "availableReplicas", available);
                m.insert(
                    "conditions".into(),
                    json!([
                        cond(
                            "Available",
                            "True",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                            &now
                        ),
                        cond(
                            "Progressing",
                            "True",
                            "ReplicaSetUpdated",
                            &format!("ReplicaSet \"{rs}\" is progressing."),
                            &now
                        ),
                    ]),
                );
            } else {
                nz(&mut m, "updatedReplicas", n);
                nz(&mut m, "unavailableReplicas", n);
                m.insert(
                    "conditions".into(),
                    json!([
                        cond(
                            "Available",
                            "False",
                            "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability.",
                            &now
                        ),
                        cond(
                            "Progressing",
                            "True",
                            "ReplicaSetUpdated",
                            &format!("ReplicaSet \"{rs}\" is progressing."),
                            &now
                        ),
                    ]),
                );
            }
        }
        "StatefulSet" => {
            let rev = format!("{}-{}", meta_str(obj, "name"), template_hash(obj));
            nz(&mut m, "replicas", n);
            m.insert("currentRevision".into(), json!(rev));
            m.insert("updateRevision".into(), json!(rev));
            m.insert("collisionCount".into(), json!(0));
        }
        "ReplicaSet" => {
            nz(&mut m, "replicas", n);
            nz(&mut m, "fullyLabeledReplicas", n);
        }
        "DaemonSet" => {
            m.insert("desiredNumberScheduled".into(), json!(1));
            m.insert("currentNumberScheduled".into(), json!(1));
            m.insert("numberMisscheduled".into(), json!(0));
            m.insert("numberReady".into(), json!(0));
            m.insert("updatedNumberScheduled".into(), json!(1));
            m.insert("numberUnavailable".into(), json!(1));
        }
        "Job" => {
            m.remove("observedGeneration");
            let start = obj
                .pointer("/status/startTime")
                .cloned()
                .unwrap_or(json!(now));
            m.insert("startTime".into(), start);
            m.insert("active".into(), json!(1));
            m.insert("ready".into(), json!(0));
            m.insert("uncountedTerminatedPods".into(), json!({}));
        }
        _ => return None,
    }
    Some(Value::Object(m))
}

fn final_status(rt: &ResourceType, obj: &Value, failed: bool) -> Value {
    let now = now_rfc3339();
    let g = generation(obj);
    let n = desired(obj);
    let name = meta_str(obj, "name");
    let mut m = Map::new();
    m.insert("observedGeneration".into(), json!(g));
    match rt.kind.as_str() {
        "Deployment" => {
            let rs = format!("{name}-{}", template_hash(obj));
            nz(&mut m, "replicas", n);
            nz(&mut m, "updatedReplicas", n);
            if failed {
                nz(&mut m, "unavailableReplicas", n);
                m.insert(
                    "conditions".into(),
                    json!([
                        cond(
                            "Available",
                            "False",
                            "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability.",
                            &now
                        ),
                        cond(
                            "Progressing",
                            "True",
                            "ReplicaSetUpdated",
                            &format!("ReplicaSet \"{rs}\" is progressing."),
                            &now
                        ),
                    ]),
                );
            } else {
                nz(&mut m, "readyReplicas", n);
                nz(&mut m, "availableReplicas", n);
                m.insert(
                    "conditions".into(),
                    json!([
                        cond(
                            "Available",
                            "True",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                            &now
                        ),
                        cond(
                            "Progressing",
                            "True",
                            "NewReplicaSetAvailable",
                            &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                            &now
                        ),
                    ]),
                );
            }
        }
        "StatefulSet" => {
            let rev = format!("{name}-{}", template_hash(obj));
            nz(&mut m, "replicas", n);
            nz(&mut m, "currentReplicas", n);
            nz(&mut m, "updatedReplicas", n);
            if !failed {
                nz(&mut m, "readyReplicas", n);
                nz(&mut m, "availableReplicas", n);
            }
            m.insert("currentRevision".into(), json!(rev));
            m.insert("updateRevision".into(), json!(rev));
            m.insert("collisionCount".into(), json!(0));
        }
        "ReplicaSet" => {
            nz(&mut m, "replicas", n);
            nz(&mut m, "fullyLabeledReplicas", n);
            if !failed {
                nz(&mut m, "readyReplicas", n);
                nz(&mut m, "availableReplicas", n);
            }
        }
        "DaemonSet" => {
            m.insert("desiredNumberScheduled".into(), json!(1));
            m.insert("currentNumberScheduled".into(), json!(1));
            m.insert("numberMisscheduled".into(), json!(0));
            m.insert("updatedNumberScheduled".into(), json!(1));
            if failed {
                m.insert("numberReady".into(), json!(0));
                m.insert("numberUnavailable".into(), json!(1));
            } else {
                m.insert("numberReady".into(), json!(1));
                m.insert("numberAvailable".into(), json!(1));
            }
        }
        "Job" => {
            m.remove("observedGeneration");
            let start = obj
                .pointer("/status/startTime")
                .cloned()
                .unwrap_or(json!(now));
            m.insert("startTime".into(), start);
            m.insert("ready".into(), json!(0));
            m.insert("uncountedTerminatedPods".into(), json!({}));
            if failed {
                m.insert("failed".into(), json!(1));
                let msg = "Job has reached the specified backoff limit";
                m.insert(
                    "conditions".into(),
                    json!([
                        cond("FailureTarget", "True", "BackoffLimitExceeded", msg, &now),
                        cond("Failed", "True", "BackoffLimitExceeded", msg, &now),
                    ]),
                );
            } else {
                let completions = obj
                    .pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                m.insert("succeeded".into(), json!(completions));
                m.insert("completionTime".into(), json!(now));
                let msg = "Reached expected number of succeeded pods";
                m.insert(
                    "conditions".into(),
                    json!([
                        cond(
                            "SuccessCriteriaMet",
                            "True",
                            "CompletionsReached",
                            msg,
                            &now
                        ),
                        cond("Complete", "True", "CompletionsReached", msg, &now),
                    ]),
                );
            }
        }
        "Service" => {
            return json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}});
        }
        _ => {}
    }
    Value::Object(m)
}

fn delete_simulated_pods(g: &mut Inner, owner_uid: &str) {
    let key = ResKey::new("", "pods");
    let Some(rt) = g.registry.find_key(&key).cloned() else {
        return;
    };
    for p in g.list(&key, None) {
        let simulated = p
            .pointer(&format!(
                "/metadata/labels/{}",
                SIMULATED_LABEL.replace('/', "~1")
            ))
            .is_some();
        let owned = p
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                r.iter()
                    .any(|o| o.get("uid").and_then(Value::as_str) == Some(owner_uid))
            });
        if simulated && owned {
            let _ = ops::delete(
                g,
                &rt,
                meta_str(&p, "namespace"),
                meta_str(&p, "name"),
                &DeleteOpts::default(),
            );
        }
    }
}

/// A Warning Event about the workload and a fake Pod stuck on the failure.
fn report_failure(g: &mut Inner, rt: &ResourceType, obj: &Value, mode: &str) {
    let ns = meta_str(obj, "namespace").to_string();
    let name = meta_str(obj, "name").to_string();
    let container = obj
        .pointer("/spec/template/spec/containers/0")
        .cloned()
        .unwrap_or(json!({}));
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let cname = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("main")
        .to_string();
    let hash = template_hash(obj);
    let pod_name = match rt.kind.as_str() {
        "StatefulSet" => format!("{name}-0"),
        "Job" | "DaemonSet" => format!("{name}-{}", random_suffix(5)),
        _ => format!("{name}-{hash}-{}", random_suffix(5)),
    };
    let (reason, message, waiting_message) = match mode {
        "ImagePullBackOff" | "ErrImagePull" => (
            "Failed",
            format!("Failed to pull image \"{image}\": {mode}"),
            format!("Back-off pulling image \"{image}\""),
        ),
        "CrashLoopBackOff" => (
            "BackOff",
            format!("Back-off restarting failed container {cname} in pod {pod_name}_{ns}"),
            format!("back-off 10s restarting failed container={cname} pod={pod_name}_{ns}"),
        ),
        other => (
            "Failed",
            format!("Simulated failure: {other}"),
            format!("simulated failure: {other}"),
        ),
    };
    let now = now_rfc3339();
    let kubelet = WriteCtx::new(KUBELET);

    // The event.
    if let Some(ev_rt) = g.registry.find_key(&ResKey::new("", "events")).cloned() {
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{:016x}", rand::random::<u64>()), "namespace": ns},
            "involvedObject": {
                "apiVersion": rt.api_version(), "kind": rt.kind, "name": name, "namespace": ns,
                "uid": meta_str(obj, "uid"), "resourceVersion": meta_str(obj, "resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "kubelet", "host": NODE_NAME},
            "reportingComponent": "kubelet",
            "reportingInstance": NODE_NAME,
        });
        let _ = ops::create(g, &ev_rt, &ns, ev, &kubelet);
    }

    // The pod, for code that looks at container statuses.
    let Some(pod_rt) = g.registry.find_key(&ResKey::new("", "pods")).cloned() else {
        return;
    };
    let mut labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    labels["pod-template-hash"] = json!(hash);
    labels[SIMULATED_LABEL] = json!("true");
    let mut spec = obj
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(json!({}));
    spec["nodeName"] = json!(NODE_NAME);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name, "namespace": ns, "labels": labels,
            "ownerReferences": [{"apiVersion": rt.api_version(), "kind": rt.kind, "name": name,
                                 "uid": meta_str(obj, "uid"), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
    });
    if ops::create(g, &pod_rt, &ns, pod, &kubelet).is_err() {
        return;
    }
    let waiting_reason = if mode == "ErrImagePull" {
        "ErrImagePull"
    } else {
        mode
    };
    let container_statuses: Vec<Value> = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "name": c.get("name").cloned().unwrap_or(json!("main")),
                "image": c.get("image").cloned().unwrap_or(json!("")),
                "imageID": "",
                "ready": false,
                "started": false,
                "restartCount": if mode == "CrashLoopBackOff" { 3 } else { 0 },
                "state": {"waiting": {"reason": waiting_reason, "message": waiting_message}},
            })
        })
        .collect();
    let status = json!({
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
        ],
        "containerStatuses": container_statuses,
        "hostIP": "127.0.0.1",
        "podIP": "10.244.0.10",
        "qosClass": "BestEffort",
        "startTime": now,
    });
    let _ = ops::set_status(g, &pod_rt, &ns, &pod_name, status, KUBELET);
}
