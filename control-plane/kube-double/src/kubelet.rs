//! The scheduler and kubelet stand-ins, for the one node `kube-double`: Pods are bound to it,
//! start (`Pending`, containers `ContainerCreating`), and `ready_delay` later reach their final
//! state, with the kubelet's Events filed on the Pod (involvedObject = the Pod, `fieldPath` =
//! the container, the real kubelet's reasons and messages):
//!
//! | Pod                                             | phase / containers                                          | Events (type reason: message)                                    |
//! |-------------------------------------------------|-------------------------------------------------------------|------------------------------------------------------------------|
//! | normal                                          | `Running`, `running`, Ready                                 | Scheduled, Pulled, Created, Started                              |
//! | of a Job (`restartPolicy` Never/OnFailure)      | `Succeeded`, `terminated` (0, `Completed`)                  | same                                                             |
//! | image in `Options::never_ready_images`          | `Running`, `running`, not ready                             | same + Warning Unhealthy: Readiness probe failed: …              |
//! | annotation `ErrImagePull`                       | `Pending`, `waiting` `ErrImagePull` (the pull error)        | Pulling; Warning Failed: Failed to pull image …; Warning Failed: Error: ErrImagePull |
//! | annotation `ImagePullBackOff`                   | `Pending`, `waiting` `ImagePullBackOff` (Back-off pulling image …) | the above + BackOff: Back-off pulling image …; Warning Failed: Error: ImagePullBackOff |
//! | annotation `CrashLoopBackOff`                   | `Running`, `waiting` `CrashLoopBackOff`, lastState `terminated` (1, `Error`); `Failed` with `restartPolicy: Never` | Pulled, Created, Started, Warning BackOff: Back-off restarting failed container … |
//! | annotation with any other value `X`            | `Pending`, `waiting` `X`                                    | Warning Failed: Error: X                                          |
//!
//! The failure annotation is `threeport.io/simulate-failure` on the Pod (so on a pod template),
//! or on its workload (the double's controllers copy it to the Pods).

use crate::sim::{
    Dirty, FAILURE_ANNOTATION, KUBELET, NODE_NAME, PODS, SCHEDULER, Sim, annotation, condition,
    event, glob, hex64, list, live, merge_patch, rt, s, targets,
};
use crate::store::{Inner, Store, meta_str, now_rfc3339};
use serde_json::{Value, json};
use std::collections::HashSet;
use tokio::time::Instant;

/// What the kubelet remembers about a Pod.
pub struct PodTrack {
    due: Instant,
    done: bool,
    namespace: String,
    name: String,
}

impl PodTrack {
    /// The Pod, when its start is due (and not done).
    pub fn due_at(&self, now: Instant) -> Option<(&str, &str)> {
        (!self.done && self.due <= now).then_some((&self.namespace, &self.name))
    }

    /// When its start is due, unless done.
    pub fn pending(&self) -> Option<Instant> {
        (!self.done).then_some(self.due)
    }
}

pub fn pods(sim: &mut Sim, store: &Store, now: Instant, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let Some(pod_rt) = rt(g, "", "pods") else {
        return;
    };
    for uid in &dirty.deleted {
        sim.pods.remove(uid);
    }
    if dirty.full {
        let all: HashSet<String> = list(g, "", "pods")
            .iter()
            .map(|p| meta_str(p, "uid").to_string())
            .collect();
        sim.pods.retain(|k, _| all.contains(k));
    }
    let todo = targets(g, PODS, dirty);
    drop(guard);
    for pod in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        let Some(pod) = g
            .get(
                &pod_rt.key(),
                meta_str(&pod, "namespace"),
                meta_str(&pod, "name"),
            )
            .filter(|o| live(o) && meta_str(o, "uid") == meta_str(&pod, "uid"))
        else {
            continue;
        };
        let uid = meta_str(&pod, "uid").to_string();
        let node = s(&pod, "/spec/nodeName");
        if node.is_empty() {
            // The scheduler binds it to the only node; the kubelet takes it on the next pass.
            merge_patch(
                g,
                &pod_rt,
                &pod,
                json!({"spec": {"nodeName": NODE_NAME}}),
                SCHEDULER,
            );
            continue;
        }
        if node != NODE_NAME {
            continue; // no such node: stays Pending, like a Pod bound to a node that is gone
        }
        let due = match sim.pods.get(&uid) {
            Some(t) if t.done => continue,
            Some(t) => t.due,
            None => {
                let due = now + sim.opts.ready_delay;
                event(
                    g,
                    &pod,
                    SCHEDULER,
                    "Normal",
                    "Scheduled",
                    &format!(
                        "Successfully assigned {}/{} to {NODE_NAME}",
                        meta_str(&pod, "namespace"),
                        meta_str(&pod, "name")
                    ),
                    None,
                );
                sim.pods.insert(
                    uid.clone(),
                    PodTrack {
                        due,
                        done: false,
                        namespace: meta_str(&pod, "namespace").to_string(),
                        name: meta_str(&pod, "name").to_string(),
                    },
                );
                if due > now {
                    let status = pending_status(&pod);
                    write_kubelet_status(g, &pod_rt, &pod, status);
                }
                due
            }
        };
        if due > now {
            continue;
        }
        let Some(cur) = g.get(
            &pod_rt.key(),
            meta_str(&pod, "namespace"),
            meta_str(&pod, "name"),
        ) else {
            continue;
        };
        sim.next_pod_ip += 1;
        let ip = format!(
            "10.244.{}.{}",
            sim.next_pod_ip / 250,
            sim.next_pod_ip % 250 + 2
        );
        run(sim, g, &pod_rt, &cur, &ip);
        if let Some(t) = sim.pods.get_mut(&uid) {
            t.done = true;
        }
    }
}

fn write_kubelet_status(
    g: &mut Inner,
    pod_rt: &crate::discovery::ResourceType,
    pod: &Value,
    status: Value,
) {
    if pod.get("status") == Some(&status) {
        return;
    }
    let _ = crate::ops::set_status(
        g,
        pod_rt,
        meta_str(pod, "namespace"),
        meta_str(pod, "name"),
        status,
        KUBELET,
    );
}

fn containers(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn cname(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("main")
        .to_string()
}

fn cimage(c: &Value) -> String {
    c.get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `nginx:1.27` → `docker.io/library/nginx:1.27`, as containerd reports references.
fn normalize(image: &str) -> String {
    let (name, tag) = match image.rsplit_once('@') {
        Some((n, d)) => (n.to_string(), format!("@{d}")),
        None => match image.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n.to_string(), format!(":{t}")),
            _ => (image.to_string(), ":latest".to_string()),
        },
    };
    let first = name.split('/').next().unwrap_or_default();
    let name = if !name.contains('/') {
        format!("docker.io/library/{name}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        name
    } else {
        format!("docker.io/{name}")
    };
    format!("{name}{tag}")
}

fn image_id(image: &str) -> String {
    let n = normalize(image);
    let repo = n.split(['@']).next().unwrap_or_default();
    let repo = match repo.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => r,
        _ => repo,
    };
    format!("{repo}@sha256:{}", hex64(image))
}

fn pull_error(image: &str) -> String {
    let r = normalize(image);
    format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": {r}: not found"
    )
}

fn qos(pod: &Value) -> &'static str {
    let cs = containers(pod);
    let res = |c: &Value, k: &str, r: &str| c.pointer(&format!("/resources/{k}/{r}")).cloned();
    if cs.iter().all(|c| {
        c.get("resources")
            .is_none_or(|r| r.as_object().is_none_or(|m| m.is_empty()))
    }) {
        return "BestEffort";
    }
    let guaranteed = cs.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = res(c, "limits", r);
            let request = res(c, "requests", r);
            limit.is_some() && (request.is_none() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn unready_message(names: &[String]) -> String {
    format!("containers with unready status: [{}]", names.join(" "))
}

fn pending_status(pod: &Value) -> Value {
    let old = pod.get("status");
    let names: Vec<String> = containers(pod).iter().map(cname).collect();
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            json!({
                "name": cname(c), "image": cimage(c), "imageID": "", "ready": false, "started": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
            })
        })
        .collect();
    json!({
        "phase": "Pending",
        "conditions": [
            condition(old, "PodReadyToStartContainers", "False", "", "", false, false),
            condition(old, "Initialized", "True", "", "", false, false),
            condition(old, "Ready", "False", "ContainersNotReady", &unready_message(&names), false, false),
            condition(old, "ContainersReady", "False", "ContainersNotReady", &unready_message(&names), false, false),
            condition(old, "PodScheduled", "True", "", "", false, false),
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": old.and_then(|s| s.get("startTime")).cloned().unwrap_or(json!(now_rfc3339())),
        "containerStatuses": statuses,
        "qosClass": qos(pod),
    })
}

/// The Pod's final state (see the module table) and its Events.
fn run(sim: &Sim, g: &mut Inner, pod_rt: &crate::discovery::ResourceType, pod: &Value, ip: &str) {
    let old = pod.get("status");
    let now = now_rfc3339();
    let ns = meta_str(pod, "namespace").to_string();
    let pname = meta_str(pod, "name").to_string();
    let uid = meta_str(pod, "uid").to_string();
    let mode = annotation(pod, FAILURE_ANNOTATION).to_string();
    let restart = match s(pod, "/spec/restartPolicy") {
        "" => "Always",
        r => r,
    }
    .to_string();
    let of_job = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|rs| rs.iter().any(|r| r["kind"] == "Job"));
    let started_at = now.clone();
    let mut events: Vec<(&str, &str, String, String)> = Vec::new(); // (type, reason, message, container)
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    let mut phase = "Running";
    let mut completed = false;
    for c in containers(pod) {
        let (name, image) = (cname(&c), cimage(&c));
        let cid = format!("containerd://{}", hex64(&format!("{uid}/{name}")));
        let base = |ready: bool, started: bool, state: Value| {
            json!({"name": name, "image": image, "imageID": image_id(&image), "containerID": cid,
                   "ready": ready, "started": started, "restartCount": 0, "state": state, "lastState": {}})
        };
        let pulled = |ev: &mut Vec<(&str, &str, String, String)>| {
            ev.push((
                "Normal",
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
                name.clone(),
            ));
            ev.push((
                "Normal",
                "Created",
                format!("Created container {name}"),
                name.clone(),
            ));
            ev.push((
                "Normal",
                "Started",
                format!("Started container {name}"),
                name.clone(),
            ));
        };
        match mode.as_str() {
            "" => {
                pulled(&mut events);
                if of_job && restart != "Always" {
                    completed = true;
                    statuses.push(base(false, false, json!({"terminated": {
                        "exitCode": 0, "reason": "Completed", "startedAt": started_at, "finishedAt": now, "containerID": cid}})));
                } else if sim.opts.never_ready_images.iter().any(|p| glob(p, &image)) {
                    unready.push(name.clone());
                    events.push((
                        "Warning",
                        "Unhealthy",
                        "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
                        name.clone(),
                    ));
                    statuses.push(base(
                        false,
                        true,
                        json!({"running": {"startedAt": started_at}}),
                    ));
                } else {
                    statuses.push(base(
                        true,
                        true,
                        json!({"running": {"startedAt": started_at}}),
                    ));
                }
            }
            "ErrImagePull" | "ImagePullBackOff" => {
                phase = "Pending";
                unready.push(name.clone());
                events.push((
                    "Normal",
                    "Pulling",
                    format!("Pulling image \"{image}\""),
                    name.clone(),
                ));
                events.push((
                    "Warning",
                    "Failed",
                    format!("Failed to pull image \"{image}\": {}", pull_error(&image)),
                    name.clone(),
                ));
                events.push((
                    "Warning",
                    "Failed",
                    "Error: ErrImagePull".into(),
                    name.clone(),
                ));
                let waiting = if mode == "ErrImagePull" {
                    json!({"reason": "ErrImagePull", "message": pull_error(&image)})
                } else {
                    events.push((
                        "Normal",
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                        name.clone(),
                    ));
                    events.push((
                        "Warning",
                        "Failed",
                        "Error: ImagePullBackOff".into(),
                        name.clone(),
                    ));
                    json!({"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")})
                };
                statuses.push(json!({"name": name, "image": image, "imageID": "", "ready": false, "started": false,
                                     "restartCount": 0, "state": {"waiting": waiting}, "lastState": {}}));
            }
            "CrashLoopBackOff" => {
                pulled(&mut events);
                unready.push(name.clone());
                let terminated = json!({"exitCode": 1, "reason": "Error", "startedAt": started_at, "finishedAt": now, "containerID": cid});
                if restart == "Never" {
                    phase = "Failed";
                    statuses.push(base(false, false, json!({"terminated": terminated})));
                } else {
                    events.push((
                        "Warning",
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {name} in pod {pname}_{ns}({uid})"
                        ),
                        name.clone(),
                    ));
                    let mut st = base(
                        false,
                        false,
                        json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off 10s restarting failed container={name} pod={pname}_{ns}({uid})")}}),
                    );
                    st["restartCount"] = json!(1);
                    st["lastState"] = json!({"terminated": terminated});
                    statuses.push(st);
                }
            }
            other => {
                phase = "Pending";
                unready.push(name.clone());
                events.push(("Warning", "Failed", format!("Error: {other}"), name.clone()));
                statuses.push(json!({"name": name, "image": image, "imageID": "", "ready": false, "started": false,
                                     "restartCount": 0, "state": {"waiting": {"reason": other, "message": format!("simulated failure: {other}")}},
                                     "lastState": {}}));
            }
        }
    }
    if completed && phase == "Running" {
        phase = "Succeeded";
    }
    let (ready, reason, message) = if phase == "Succeeded" || phase == "Failed" {
        ("False", "PodCompleted", String::new())
    } else if unready.is_empty() {
        ("True", "", String::new())
    } else {
        ("False", "ContainersNotReady", unready_message(&unready))
    };
    let sandbox = if phase == "Succeeded" || phase == "Failed" {
        "False"
    } else {
        "True"
    };
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition(old, "PodReadyToStartContainers", sandbox, "", "", false, false),
            condition(old, "Initialized", "True", if phase == "Succeeded" { "PodCompleted" } else { "" }, "", false, false),
            condition(old, "Ready", ready, reason, &message, false, false),
            condition(old, "ContainersReady", ready, reason, &message, false, false),
            condition(old, "PodScheduled", "True", "", "", false, false),
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": old.and_then(|s| s.get("startTime")).cloned().unwrap_or(json!(now)),
        "containerStatuses": statuses,
        "qosClass": qos(pod),
    });
    // The sandbox is up (it has an IP), even while an image cannot be pulled.
    status["podIP"] = json!(ip);
    status["podIPs"] = json!([{"ip": ip}]);
    write_kubelet_status(g, pod_rt, pod, status);
    let Some(cur) = g.get(&pod_rt.key(), &ns, &pname) else {
        return;
    };
    for (etype, reason, message, container) in events {
        let fp = format!("spec.containers{{{container}}}");
        event(g, &cur, KUBELET, etype, reason, &message, Some(&fp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_normalized_like_containerd() {
        assert_eq!(normalize("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(normalize("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(
            normalize("registry.example/a/b:1"),
            "registry.example/a/b:1"
        );
        assert_eq!(normalize("localhost:5000/x"), "localhost:5000/x:latest");
        assert!(image_id("nginx:1.27").starts_with("docker.io/library/nginx@sha256:"));
    }
}
