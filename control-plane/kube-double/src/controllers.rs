//! kube-controller-manager stand-ins: namespace, ReplicaSet, Deployment, StatefulSet, DaemonSet,
//! Job and the LoadBalancer "cloud controller". Each is one function over all objects of its
//! kind, called by `Sim::step`; see `sim.rs` for how the loop runs and README.md ("Differences")
//! for how each one differs from the real controller.

use crate::sim::{
    self, CONTROLLER_MANAGER, DAEMONSETS, DEPLOYMENTS, Dirty, JOBS, NAMESPACES, PODS, REPLICASETS,
    SERVICES, STATEFULSETS, Sim, annotation, children, condition, create, delete, desired, event,
    generation, i, int_or_percent, label, list, live, merge_patch, pod_from_template, pod_phase,
    pod_ready, rt, s, targets, write_status,
};
use crate::store::{Inner, Store, meta_str, stable_suffix};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio::time::Instant;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";
const REVISION_HASH: &str = "controller-revision-hash";

/// The pod-template hash (ReplicaSet names and the `pod-template-hash` label; real: FNV-32a of
/// the template, also 10 characters of the same alphabet). Computed over the template with its
/// keys sorted, so the same template in another key order is the same template.
pub fn template_hash(template: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    stable_suffix(&sorted(template), 10)
}

/// Insert `k: v` unless v is 0, like Go's `omitempty` on the real status structs.
fn nz(m: &mut Map<String, Value>, k: &str, v: i64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn ready_count(pods: &[Arc<Value>]) -> i64 {
    pods.iter().filter(|p| pod_ready(p)).count() as i64
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

/// A deleted namespace is `Terminating` (ops marks it); here its content is deleted, its status
/// reports what remains, and once it is empty — and `ready_delay` after the deletion at the
/// earliest — the `kubernetes` finalizer is removed from `spec.finalizers`, which removes it.
pub fn namespaces(sim: &mut Sim, store: &Store, now: Instant, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let Some(ns_rt) = rt(g, "", "namespaces") else {
        return;
    };
    // The terminating namespaces: those known, and those just marked.
    let mut terminating: Vec<String> = sim.namespaces.keys().cloned().collect();
    for n in list(g, "", "namespaces") {
        let name = meta_str(&n, "name").to_string();
        if !live(&n) && dirty.has(NAMESPACES, &n) && !terminating.contains(&name) {
            terminating.push(name);
        }
    }
    terminating.retain(|k| g.namespace(k).is_some_and(|n| !live(&n)));
    sim.namespaces.retain(|k, _| terminating.contains(k));
    drop(guard);
    for name in terminating {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        let since = *sim.namespaces.entry(name.clone()).or_insert(now);
        // Delete the content (objects with finalizers stay marked until they are removed).
        let types: Vec<_> = g
            .registry
            .all()
            .iter()
            .filter(|t| t.namespaced)
            .cloned()
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut remaining: Vec<(String, usize)> = Vec::new();
        let mut finalizers: Vec<String> = Vec::new();
        for t in types {
            if !seen.insert(t.key()) {
                continue;
            }
            let objs = g.list(&t.key(), Some(&name));
            for o in &objs {
                if live(o) {
                    delete(g, &t, o);
                }
            }
            let left = g.list(&t.key(), Some(&name));
            if !left.is_empty() {
                remaining.push((t.group_resource(), left.len()));
                for o in &left {
                    for f in o
                        .pointer("/metadata/finalizers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if !finalizers.iter().any(|x| x == f) {
                            finalizers.push(f.to_string());
                        }
                    }
                }
            }
        }
        let Some(n) = g.namespace(&name) else {
            continue;
        };
        let old = n.get("status");
        let (content, content_reason, content_msg) = if remaining.is_empty() {
            (
                "False",
                "ContentRemoved",
                "All content successfully removed".to_string(),
            )
        } else {
            let parts: Vec<String> = remaining
                .iter()
                .map(|(r, c)| format!("{r} has {c} resource instances"))
                .collect();
            (
                "True",
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", parts.join(", ")),
            )
        };
        let (fin, fin_reason, fin_msg) = if finalizers.is_empty() {
            (
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".to_string(),
            )
        } else {
            let parts: Vec<String> = finalizers
                .iter()
                .map(|f| format!("{f} in 1 resource instances"))
                .collect();
            (
                "True",
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    parts.join(", ")
                ),
            )
        };
        let status = json!({
            "phase": "Terminating",
            "conditions": [
                condition(old, "NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered", "All resources successfully discovered", false, false),
                condition(old, "NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions", "All legacy kube types successfully parsed", false, false),
                condition(old, "NamespaceDeletionContentFailure", "False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization", false, false),
                condition(old, "NamespaceContentRemaining", content, content_reason, &content_msg, false, false),
                condition(old, "NamespaceFinalizersRemaining", fin, fin_reason, &fin_msg, false, false),
            ],
        });
        write_status(g, &ns_rt, &n, status);
        if !remaining.is_empty() {
            continue;
        }
        if now < since + sim.opts.ready_delay {
            continue;
        }
        let Some(n) = g.namespace(&name) else {
            continue;
        };
        let spec_finalizers: Vec<Value> = n
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != "kubernetes")
            .collect();
        // The namespace controller's `/finalize`; the server removes the namespace once both
        // finalizer lists are empty.
        merge_patch(
            g,
            &ns_rt,
            &n,
            json!({"spec": {"finalizers": spec_finalizers}}),
            CONTROLLER_MANAGER,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ReplicaSets
// ---------------------------------------------------------------------------------------------

pub fn replicasets(store: &Store, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let (Some(rs_rt), Some(pod_rt)) = (rt(g, "apps", "replicasets"), rt(g, "", "pods")) else {
        return;
    };
    let todo = targets(g, REPLICASETS, dirty);
    let pods = children(g, PODS, &todo);
    drop(guard);
    for rs in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        // The object as it is now (the lock was released since the list).
        let Some(rs) = g
            .get(
                &rs_rt.key(),
                meta_str(&rs, "namespace"),
                meta_str(&rs, "name"),
            )
            .filter(|o| live(o) && meta_str(o, "uid") == meta_str(&rs, "uid"))
        else {
            continue;
        };
        if !live(&rs) {
            continue;
        }
        let name = meta_str(&rs, "name").to_string();
        let ns = meta_str(&rs, "namespace").to_string();
        let mut owned = pods.get(meta_str(&rs, "uid")).cloned().unwrap_or_default();
        let want = desired(&rs);
        let have = owned.len() as i64;
        if have < want {
            for _ in have..want {
                let pod = pod_from_template(&rs, None, &format!("{name}-"), &[]);
                match create(g, &pod_rt, &ns, pod) {
                    Some(p) => {
                        let pname = meta_str(&p, "name").to_string();
                        event(
                            g,
                            &rs,
                            "replicaset-controller",
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {pname}"),
                            None,
                        );
                        owned.push(Arc::new(p));
                    }
                    None => break,
                }
            }
        } else if have > want {
            // Not-ready Pods go first, then the newest.
            owned.sort_by(|a, b| {
                (
                    pod_ready(a),
                    meta_str(b, "creationTimestamp"),
                    meta_str(b, "name"),
                )
                    .cmp(&(
                        pod_ready(b),
                        meta_str(a, "creationTimestamp"),
                        meta_str(a, "name"),
                    ))
            });
            let excess: Vec<_> = owned.drain(..(have - want) as usize).collect();
            for p in excess {
                if delete(g, &pod_rt, &p) {
                    event(
                        g,
                        &rs,
                        "replicaset-controller",
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", meta_str(&p, "name")),
                        None,
                    );
                }
            }
        }
        let n = owned.len() as i64;
        let ready = ready_count(&owned);
        let mut st = Map::new();
        st.insert("replicas".into(), json!(n));
        nz(&mut st, "fullyLabeledReplicas", n);
        nz(&mut st, "readyReplicas", ready);
        nz(&mut st, "availableReplicas", ready);
        st.insert("observedGeneration".into(), json!(generation(&rs)));
        if let Some(cur) = g.get(&rs_rt.key(), &ns, &name) {
            write_status(g, &rs_rt, &cur, Value::Object(st));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------------

fn revision(o: &Value) -> i64 {
    annotation(o, REVISION).parse().unwrap_or(0)
}

fn scale_rs(
    g: &mut Inner,
    rs_rt: &crate::discovery::ResourceType,
    dep: &Value,
    rs: &mut Value,
    to: i64,
) {
    let from = desired(rs);
    if from == to {
        return;
    }
    if let Some(v) = merge_patch(
        g,
        rs_rt,
        rs,
        json!({"spec": {"replicas": to}}),
        CONTROLLER_MANAGER,
    ) {
        *rs = v;
        let (verb, name) = (if to > from { "up" } else { "down" }, meta_str(rs, "name"));
        event(
            g,
            dep,
            "deployment-controller",
            "Normal",
            "ScalingReplicaSet",
            &format!("Scaled {verb} replica set {name} from {from} to {to}"),
            None,
        );
    }
}

pub fn deployments(sim: &mut Sim, store: &Store, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let (Some(dep_rt), Some(rs_rt)) = (rt(g, "apps", "deployments"), rt(g, "apps", "replicasets"))
    else {
        return;
    };
    let todo = targets(g, DEPLOYMENTS, dirty);
    let owned_rs = children(g, REPLICASETS, &todo);
    drop(guard);
    for dep in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        // The object as it is now (the lock was released since the list).
        let Some(dep) = g
            .get(
                &dep_rt.key(),
                meta_str(&dep, "namespace"),
                meta_str(&dep, "name"),
            )
            .filter(|o| live(o) && meta_str(o, "uid") == meta_str(&dep, "uid"))
        else {
            continue;
        };
        if !live(&dep) {
            continue;
        }
        let want = desired(&dep);
        let ns = meta_str(&dep, "namespace").to_string();
        let dname = meta_str(&dep, "name").to_string();
        let template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let mut rss: Vec<Value> = owned_rs
            .get(meta_str(&dep, "uid"))
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| (**r).clone())
            .collect();
        rss.sort_by_key(revision);
        let mut created_new = false;
        let new_idx = match rss.iter().position(|r| label(r, HASH) == hash) {
            Some(i) => i,
            None => {
                let rev = rss.iter().map(revision).max().unwrap_or(0) + 1;
                let mut tmpl = template.clone();
                tmpl["metadata"]["labels"][HASH] = json!(hash);
                let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"][HASH] = json!(hash);
                let mut labels = template
                    .pointer("/metadata/labels")
                    .cloned()
                    .filter(Value::is_object)
                    .unwrap_or(json!({}));
                labels[HASH] = json!(hash);
                let mut annotations = json!({
                    REVISION: rev.to_string(),
                    "deployment.kubernetes.io/desired-replicas": want.to_string(),
                    "deployment.kubernetes.io/max-replicas": (want + int_or_percent(dep.pointer("/spec/strategy/rollingUpdate/maxSurge"), "25%", want, true)).to_string(),
                });
                let failure = annotation(&dep, sim::FAILURE_ANNOTATION);
                if !failure.is_empty() {
                    annotations[sim::FAILURE_ANNOTATION] = json!(failure);
                }
                let mut spec = json!({"replicas": 0, "selector": selector, "template": tmpl});
                if let Some(m) = dep.pointer("/spec/minReadySeconds") {
                    spec["minReadySeconds"] = m.clone();
                }
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": format!("{dname}-{hash}"), "namespace": ns, "labels": labels,
                                 "annotations": annotations, "ownerReferences": [sim::owner_ref(&dep)]},
                    "spec": spec,
                });
                match create(g, &rs_rt, &ns, rs) {
                    Some(v) => {
                        created_new = true;
                        rss.push(v);
                        rss.len() - 1
                    }
                    None => continue,
                }
            }
        };
        let new_name = meta_str(&rss[new_idx], "name").to_string();
        let rolling = s(&dep, "/spec/strategy/type") != "Recreate";
        let surge = if rolling {
            int_or_percent(
                dep.pointer("/spec/strategy/rollingUpdate/maxSurge"),
                "25%",
                want,
                true,
            )
        } else {
            0
        };
        let mut unavail = if rolling {
            int_or_percent(
                dep.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                "25%",
                want,
                false,
            )
        } else {
            0
        };
        if rolling && surge == 0 && unavail == 0 {
            unavail = 1;
        }
        let unavail = unavail.min(want);
        let paused = dep.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        if !paused {
            let olds: Vec<usize> = (0..rss.len()).filter(|&k| k != new_idx).collect();
            if rolling {
                // Scale the new ReplicaSet up within maxSurge…
                let total: i64 = rss.iter().map(desired).sum();
                let new_spec = desired(&rss[new_idx]);
                let target = if new_spec > want {
                    want
                } else if new_spec < want && total < want + surge {
                    want.min(new_spec + (want + surge - total))
                } else {
                    new_spec
                };
                let mut new_rs = rss[new_idx].clone();
                scale_rs(g, &rs_rt, &dep, &mut new_rs, target);
                rss[new_idx] = new_rs;
                // …and the old ones down while at least want - maxUnavailable stay available.
                let min_available = want - unavail;
                let all_pods: i64 = rss.iter().map(|r| i(r, "/status/replicas")).sum();
                let new_unavailable =
                    (desired(&rss[new_idx]) - i(&rss[new_idx], "/status/availableReplicas")).max(0);
                let mut cleanup = all_pods - min_available - new_unavailable;
                for &k in &olds {
                    if cleanup <= 0 {
                        break;
                    }
                    let unhealthy = desired(&rss[k]) - i(&rss[k], "/status/availableReplicas");
                    if unhealthy <= 0 {
                        continue;
                    }
                    let d = unhealthy.min(cleanup);
                    let mut r = rss[k].clone();
                    let to = desired(&r) - d;
                    scale_rs(g, &rs_rt, &dep, &mut r, to);
                    rss[k] = r;
                    cleanup -= d;
                }
                let available: i64 = rss.iter().map(|r| i(r, "/status/availableReplicas")).sum();
                let mut can = available - min_available;
                for &k in &olds {
                    if can <= 0 {
                        break;
                    }
                    let cur = desired(&rss[k]);
                    if cur == 0 {
                        continue;
                    }
                    let d = cur.min(can);
                    let mut r = rss[k].clone();
                    scale_rs(g, &rs_rt, &dep, &mut r, cur - d);
                    rss[k] = r;
                    can -= d;
                }
            } else {
                // Recreate: every old Pod goes before the new ReplicaSet is scaled up.
                let mut old_pods = 0;
                for &k in &olds {
                    let mut r = rss[k].clone();
                    scale_rs(g, &rs_rt, &dep, &mut r, 0);
                    old_pods += i(&r, "/status/replicas");
                    rss[k] = r;
                }
                if old_pods == 0 {
                    let mut r = rss[new_idx].clone();
                    scale_rs(g, &rs_rt, &dep, &mut r, want);
                    rss[new_idx] = r;
                }
            }
            // revisionHistoryLimit: old, empty ReplicaSets beyond it are deleted, oldest first.
            let limit = dep
                .pointer("/spec/revisionHistoryLimit")
                .and_then(Value::as_i64)
                .unwrap_or(10)
                .max(0) as usize;
            let empty: Vec<usize> = (0..rss.len())
                .filter(|&k| {
                    k != new_idx && desired(&rss[k]) == 0 && i(&rss[k], "/status/replicas") == 0
                })
                .collect();
            if empty.len() > limit {
                for &k in &empty[..empty.len() - limit] {
                    delete(g, &rs_rt, &rss[k]);
                }
            }
        }
        // The status, from the ReplicaSets as they are now.
        let fresh: Vec<Value> = rss
            .iter()
            .filter_map(|r| {
                g.get(&rs_rt.key(), &ns, meta_str(r, "name"))
                    .map(|v| (*v).clone())
            })
            .collect();
        let new_rs = fresh.iter().find(|r| meta_str(r, "name") == new_name);
        let replicas: i64 = fresh.iter().map(|r| i(r, "/status/replicas")).sum();
        let updated = new_rs.map_or(0, |r| i(r, "/status/replicas"));
        let ready: i64 = fresh.iter().map(|r| i(r, "/status/readyReplicas")).sum();
        let available: i64 = fresh
            .iter()
            .map(|r| i(r, "/status/availableReplicas"))
            .sum();
        let total_spec: i64 = fresh.iter().map(desired).sum();
        let unavailable = (total_spec - available).max(0);
        let Some(cur) = g.get(&dep_rt.key(), &ns, &dname) else {
            continue;
        };
        let old = cur.get("status");
        let counts = |st: Option<&Value>| {
            let n = |k: &str| {
                st.and_then(|s| s.get(k))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            };
            (
                n("replicas"),
                n("updatedReplicas"),
                n("readyReplicas"),
                n("availableReplicas"),
            )
        };
        let progressed = created_new || counts(old) != (replicas, updated, ready, available);
        let complete = updated == want && replicas == want && available == want;
        let (av_status, av_reason, av_msg) = if available >= want - unavail {
            (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        let old_progress = old
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
            .cloned();
        let deadline = dep
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(600);
        let progressing = if complete {
            condition(
                old,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                true,
                false,
            )
        } else if created_new {
            condition(
                old,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set \"{new_name}\""),
                true,
                true,
            )
        } else if progressed || old_progress.is_none() {
            condition(
                old,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                true,
                true,
            )
        } else {
            let last = old_progress
                .as_ref()
                .and_then(|c| c["lastUpdateTime"].as_str())
                .and_then(crate::store::parse_time);
            let waited = last
                .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds())
                .unwrap_or(0);
            let was_done = old_progress
                .as_ref()
                .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
            if !was_done && !paused && waited > deadline {
                condition(
                    old,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    true,
                    false,
                )
            } else {
                if !was_done
                    && !paused
                    && old_progress.as_ref().is_some_and(|c| c["status"] == "True")
                {
                    let left = (deadline - waited + 1).max(1) as u64;
                    sim.deadlines.insert(
                        (ns.clone(), dname.clone()),
                        Instant::now() + std::time::Duration::from_secs(left),
                    );
                }
                old_progress.clone().unwrap_or(json!({}))
            }
        };
        let mut st = Map::new();
        st.insert("observedGeneration".into(), json!(generation(&cur)));
        nz(&mut st, "replicas", replicas);
        nz(&mut st, "updatedReplicas", updated);
        nz(&mut st, "readyReplicas", ready);
        nz(&mut st, "availableReplicas", available);
        nz(&mut st, "unavailableReplicas", unavailable);
        st.insert(
            "conditions".into(),
            json!([
                condition(old, "Available", av_status, av_reason, av_msg, true, false),
                progressing
            ]),
        );
        write_status(g, &dep_rt, &cur, Value::Object(st));
        // The Deployment carries its current revision, like its newest ReplicaSet.
        if let Some(r) = new_rs {
            let rev = annotation(r, REVISION).to_string();
            if let Some(cur) = g.get(&dep_rt.key(), &ns, &dname)
                && annotation(&cur, REVISION) != rev
            {
                merge_patch(
                    g,
                    &dep_rt,
                    &cur,
                    json!({"metadata": {"annotations": {REVISION: rev}}}),
                    CONTROLLER_MANAGER,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// StatefulSets
// ---------------------------------------------------------------------------------------------

fn ordinal(sts_name: &str, pod: &Value) -> Option<i64> {
    meta_str(pod, "name")
        .strip_prefix(sts_name)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

pub fn statefulsets(store: &Store, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let (Some(sts_rt), Some(pod_rt)) = (rt(g, "apps", "statefulsets"), rt(g, "", "pods")) else {
        return;
    };
    let todo = targets(g, STATEFULSETS, dirty);
    let pods = children(g, PODS, &todo);
    drop(guard);
    for sts in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        // The object as it is now (the lock was released since the list).
        let Some(sts) = g
            .get(
                &sts_rt.key(),
                meta_str(&sts, "namespace"),
                meta_str(&sts, "name"),
            )
            .filter(|o| live(o) && meta_str(o, "uid") == meta_str(&sts, "uid"))
        else {
            continue;
        };
        if !live(&sts) {
            continue;
        }
        let name = meta_str(&sts, "name").to_string();
        let ns = meta_str(&sts, "namespace").to_string();
        let want = desired(&sts);
        let rev = format!(
            "{name}-{}",
            template_hash(sts.pointer("/spec/template").unwrap_or(&Value::Null))
        );
        let parallel = s(&sts, "/spec/podManagementPolicy") == "Parallel";
        let mut owned: Vec<Arc<Value>> =
            pods.get(meta_str(&sts, "uid")).cloned().unwrap_or_default();
        owned.sort_by_key(|p| ordinal(&name, p).unwrap_or(i64::MAX));
        let at = |owned: &[Arc<Value>], k: i64| {
            owned.iter().find(|p| ordinal(&name, p) == Some(k)).cloned()
        };
        // Create the missing ordinals (in order, each after the previous one is ready).
        for k in 0..want {
            if at(&owned, k).is_some() {
                continue;
            }
            if !parallel && (0..k).any(|j| at(&owned, j).is_none_or(|p| !pod_ready(&p))) {
                break;
            }
            let pname = format!("{name}-{k}");
            let mut pod = pod_from_template(
                &sts,
                Some(pname.clone()),
                "",
                &[
                    (REVISION_HASH, rev.clone()),
                    ("statefulset.kubernetes.io/pod-name", pname.clone()),
                    ("apps.kubernetes.io/pod-index", k.to_string()),
                ],
            );
            pod["spec"]["hostname"] = json!(pname);
            if let Some(svc) = sts
                .pointer("/spec/serviceName")
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty())
            {
                pod["spec"]["subdomain"] = json!(svc);
            }
            match create(g, &pod_rt, &ns, pod) {
                Some(p) => {
                    event(
                        g,
                        &sts,
                        "statefulset-controller",
                        "Normal",
                        "SuccessfulCreate",
                        &format!("create Pod {pname} in StatefulSet {name} successful"),
                        None,
                    );
                    owned.push(Arc::new(p));
                    owned.sort_by_key(|p| ordinal(&name, p).unwrap_or(i64::MAX));
                }
                None => break,
            }
            if !parallel {
                break;
            }
        }
        let all_there = (0..want).all(|k| at(&owned, k).is_some());
        let all_ready = owned.iter().all(|p| pod_ready(p));
        // Scale down from the highest ordinal; then roll Pods of an old revision, highest first.
        let extra: Vec<Arc<Value>> = owned
            .iter()
            .filter(|p| ordinal(&name, p).is_none_or(|k| k >= want))
            .rev()
            .cloned()
            .collect();
        let mut victim = None;
        if let Some(p) = extra.first() {
            if parallel || all_ready {
                victim = Some(p.clone());
            }
        } else if all_there && all_ready && s(&sts, "/spec/updateStrategy/type") != "OnDelete" {
            let partition = i(&sts, "/spec/updateStrategy/rollingUpdate/partition");
            victim = owned
                .iter()
                .rev()
                .find(|p| {
                    label(p, REVISION_HASH) != rev
                        && ordinal(&name, p).is_some_and(|k| k >= partition)
                })
                .cloned();
        }
        if let Some(p) = victim
            && delete(g, &pod_rt, &p)
        {
            let pname = meta_str(&p, "name").to_string();
            event(
                g,
                &sts,
                "statefulset-controller",
                "Normal",
                "SuccessfulDelete",
                &format!("delete Pod {pname} in StatefulSet {name} successful"),
                None,
            );
            owned.retain(|x| meta_str(x, "name") != pname);
        }
        let ready = ready_count(&owned);
        let updated = owned
            .iter()
            .filter(|p| label(p, REVISION_HASH) == rev)
            .count() as i64;
        let cur_rev = match sts
            .pointer("/status/currentRevision")
            .and_then(Value::as_str)
        {
            _ if updated == owned.len() as i64 && updated == want => rev.clone(),
            Some(r) if !r.is_empty() => r.to_string(),
            _ => rev.clone(),
        };
        let current = owned
            .iter()
            .filter(|p| label(p, REVISION_HASH) == cur_rev)
            .count() as i64;
        let mut st = Map::new();
        st.insert("observedGeneration".into(), json!(generation(&sts)));
        st.insert("replicas".into(), json!(owned.len()));
        nz(&mut st, "readyReplicas", ready);
        nz(&mut st, "currentReplicas", current);
        nz(&mut st, "updatedReplicas", updated);
        st.insert("availableReplicas".into(), json!(ready));
        st.insert("currentRevision".into(), json!(cur_rev));
        st.insert("updateRevision".into(), json!(rev));
        st.insert("collisionCount".into(), json!(0));
        if let Some(cur) = g.get(&sts_rt.key(), &ns, &name) {
            write_status(g, &sts_rt, &cur, Value::Object(st));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DaemonSets (one node: one Pod each)
// ---------------------------------------------------------------------------------------------

pub fn daemonsets(store: &Store, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let (Some(ds_rt), Some(pod_rt)) = (rt(g, "apps", "daemonsets"), rt(g, "", "pods")) else {
        return;
    };
    let todo = targets(g, DAEMONSETS, dirty);
    let pods = children(g, PODS, &todo);
    drop(guard);
    for ds in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        // The object as it is now (the lock was released since the list).
        let Some(ds) = g
            .get(
                &ds_rt.key(),
                meta_str(&ds, "namespace"),
                meta_str(&ds, "name"),
            )
            .filter(|o| live(o) && meta_str(o, "uid") == meta_str(&ds, "uid"))
        else {
            continue;
        };
        if !live(&ds) {
            continue;
        }
        let name = meta_str(&ds, "name").to_string();
        let ns = meta_str(&ds, "namespace").to_string();
        let hash = template_hash(ds.pointer("/spec/template").unwrap_or(&Value::Null));
        let mut owned: Vec<Arc<Value>> =
            pods.get(meta_str(&ds, "uid")).cloned().unwrap_or_default();
        // RollingUpdate (maxUnavailable 1): a Pod of an old template is replaced.
        if s(&ds, "/spec/updateStrategy/type") != "OnDelete" {
            let stale: Vec<_> = owned
                .iter()
                .filter(|p| label(p, REVISION_HASH) != hash)
                .cloned()
                .collect();
            for p in stale {
                if delete(g, &pod_rt, &p) {
                    event(
                        g,
                        &ds,
                        "daemonset-controller",
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", meta_str(&p, "name")),
                        None,
                    );
                    owned.retain(|x| meta_str(x, "uid") != meta_str(&p, "uid"));
                }
            }
        }
        if owned.is_empty() {
            let pod = pod_from_template(
                &ds,
                None,
                &format!("{name}-"),
                &[
                    (REVISION_HASH, hash.clone()),
                    ("pod-template-generation", generation(&ds).to_string()),
                ],
            );
            if let Some(p) = create(g, &pod_rt, &ns, pod) {
                event(
                    g,
                    &ds,
                    "daemonset-controller",
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", meta_str(&p, "name")),
                    None,
                );
                owned.push(Arc::new(p));
            }
        }
        let ready = ready_count(&owned);
        let updated = owned
            .iter()
            .filter(|p| label(p, REVISION_HASH) == hash)
            .count() as i64;
        let mut st = Map::new();
        st.insert("observedGeneration".into(), json!(generation(&ds)));
        st.insert("desiredNumberScheduled".into(), json!(1));
        st.insert("currentNumberScheduled".into(), json!(owned.len()));
        st.insert("numberMisscheduled".into(), json!(0));
        st.insert("numberReady".into(), json!(ready));
        nz(&mut st, "numberAvailable", ready);
        nz(&mut st, "numberUnavailable", (1 - ready).max(0));
        nz(&mut st, "updatedNumberScheduled", updated);
        if let Some(cur) = g.get(&ds_rt.key(), &ns, &name) {
            write_status(g, &ds_rt, &cur, Value::Object(st));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

pub fn jobs(store: &Store, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let (Some(job_rt), Some(pod_rt)) = (rt(g, "batch", "jobs"), rt(g, "", "pods")) else {
        return;
    };
    let todo = targets(g, JOBS, dirty);
    let pods = children(g, PODS, &todo);
    drop(guard);
    for job in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        // The object as it is now (the lock was released since the list).
        let Some(job) = g
            .get(
                &job_rt.key(),
                meta_str(&job, "namespace"),
                meta_str(&job, "name"),
            )
            .filter(|o| live(o) && meta_str(o, "uid") == meta_str(&job, "uid"))
        else {
            continue;
        };
        if !live(&job) {
            continue;
        }
        let name = meta_str(&job, "name").to_string();
        let ns = meta_str(&job, "namespace").to_string();
        let uid = meta_str(&job, "uid").to_string();
        let owned: Vec<Arc<Value>> = pods.get(&uid).cloned().unwrap_or_default();
        let completions = job
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let parallelism = job
            .pointer("/spec/parallelism")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let backoff_limit = job
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        let old = job.get("status").cloned();
        let has = |t: &str| {
            old.as_ref()
                .and_then(|s| s.get("conditions"))
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
        };
        let finished = has("Complete") || has("Failed");
        let succeeded = owned.iter().filter(|p| pod_phase(p) == "Succeeded").count() as i64;
        let failed = owned.iter().filter(|p| pod_phase(p) == "Failed").count() as i64;
        let mut active: Vec<Arc<Value>> = owned
            .iter()
            .filter(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
            .cloned()
            .collect();
        let now = crate::store::now_rfc3339();
        let mut conditions = old
            .as_ref()
            .and_then(|s| s.get("conditions"))
            .cloned()
            .unwrap_or(json!([]));
        let mut completion_time = old.as_ref().and_then(|s| s.get("completionTime")).cloned();
        if !finished {
            let failing = failed > backoff_limit;
            let done = succeeded >= completions;
            if failing || done {
                for p in active.drain(..) {
                    delete(g, &pod_rt, &p);
                }
            }
            if failing {
                let msg = "Job has reached the specified backoff limit";
                conditions = json!([
                    condition(
                        None,
                        "FailureTarget",
                        "True",
                        "BackoffLimitExceeded",
                        msg,
                        false,
                        false
                    ),
                    condition(
                        None,
                        "Failed",
                        "True",
                        "BackoffLimitExceeded",
                        msg,
                        false,
                        false
                    ),
                ]);
                event(
                    g,
                    &job,
                    "job-controller",
                    "Warning",
                    "BackoffLimitExceeded",
                    msg,
                    None,
                );
            } else if done {
                let msg = "Reached expected number of succeeded pods";
                conditions = json!([
                    condition(
                        None,
                        "SuccessCriteriaMet",
                        "True",
                        "CompletionsReached",
                        msg,
                        false,
                        false
                    ),
                    condition(
                        None,
                        "Complete",
                        "True",
                        "CompletionsReached",
                        msg,
                        false,
                        false
                    ),
                ]);
                completion_time = Some(json!(now));
                event(
                    g,
                    &job,
                    "job-controller",
                    "Normal",
                    "Completed",
                    "Job completed",
                    None,
                );
            } else {
                let want_active = parallelism.min(completions - succeeded).max(0);
                while (active.len() as i64) < want_active {
                    let pod = pod_from_template(
                        &job,
                        None,
                        &format!("{name}-"),
                        &[
                            ("batch.kubernetes.io/controller-uid", uid.clone()),
                            ("batch.kubernetes.io/job-name", name.clone()),
                            ("controller-uid", uid.clone()),
                            ("job-name", name.clone()),
                        ],
                    );
                    match create(g, &pod_rt, &ns, pod) {
                        Some(p) => {
                            event(
                                g,
                                &job,
                                "job-controller",
                                "Normal",
                                "SuccessfulCreate",
                                &format!("Created pod: {}", meta_str(&p, "name")),
                                None,
                            );
                            active.push(Arc::new(p));
                        }
                        None => break,
                    }
                }
            }
        }
        let mut st = Map::new();
        let start = old
            .as_ref()
            .and_then(|s| s.get("startTime"))
            .cloned()
            .unwrap_or(json!(now));
        st.insert("startTime".into(), start);
        if let Some(c) = completion_time {
            st.insert("completionTime".into(), c);
        }
        nz(&mut st, "active", active.len() as i64);
        st.insert("ready".into(), json!(ready_count(&active)));
        nz(&mut st, "succeeded", succeeded);
        nz(&mut st, "failed", failed);
        st.insert("uncountedTerminatedPods".into(), json!({}));
        if conditions.as_array().is_some_and(|a| !a.is_empty()) {
            st.insert("conditions".into(), conditions);
        }
        if let Some(cur) = g.get(&job_rt.key(), &ns, &name) {
            write_status(g, &job_rt, &cur, Value::Object(st));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LoadBalancer Services
// ---------------------------------------------------------------------------------------------

/// `status.loadBalancer.ingress[0].ip = 127.0.0.1`, `ready_delay` after a LoadBalancer Service
/// appears (or changes).
pub fn services(sim: &mut Sim, store: &Store, now: Instant, dirty: &Dirty) {
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let Some(svc_rt) = rt(g, "", "services") else {
        return;
    };
    let delay = sim.opts.ready_delay;
    let todo = targets(g, SERVICES, dirty);
    drop(guard);
    for svc in todo {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        if s(&svc, "/spec/type") != "LoadBalancer" {
            continue;
        }
        let uid = meta_str(&svc, "uid").to_string();
        let gen_ = generation(&svc);
        let (ns, name) = (
            meta_str(&svc, "namespace").to_string(),
            meta_str(&svc, "name").to_string(),
        );
        let entry =
            sim.services
                .entry(uid)
                .or_insert((gen_, Some(now + delay), ns.clone(), name.clone()));
        if entry.0 != gen_ {
            *entry = (gen_, Some(now + delay), ns, name);
        }
        match entry.1 {
            Some(due) if now < due => continue,
            None => continue,
            Some(_) => entry.1 = None,
        }
        let status = json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}});
        write_status(g, &svc_rt, &svc, status);
    }
    for uid in &dirty.deleted {
        sim.services.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"b": "2", "a": "1"}}}"#).unwrap();
        assert_eq!(template_hash(&a), template_hash(&b));
        let c: Value =
            serde_json::from_str(r#"{"spec": {"containers": [{"image": "j", "name": "c"}]}}"#)
                .unwrap();
        assert_ne!(template_hash(&a), template_hash(&c));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
