//! The double driven by the real kube-rs client (kube 5, k8s-openapi 0.29), the way Threeport's
//! controllers use it.

mod common;

use common::{READY_DELAY, api_error, client, eventually, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::{Duration, Instant};

fn deployment(name: &str, replicas: i32, template_annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": template_annotations},
                "spec": {"containers": [{"name": "main", "image": format!("registry.example/{name}:1.0")}]},
            },
        },
    }))
    .unwrap()
}

fn configmap(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
    .unwrap()
}

fn condition<'a>(
    d: &'a Deployment,
    t: &str,
) -> Option<&'a k8s_openapi::api::apps::v1::DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(t))
}

/// A complete rollout, as `kubectl rollout status` judges it: observed, every replica updated,
/// no old one left, all ready and available. (`readyReplicas` alone is not enough: during a
/// rollout the old Pods are ready.)
fn is_ready(d: &Deployment) -> bool {
    let want = Some(d.spec.replicas.unwrap_or(1));
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    st.observed_generation == d.metadata.generation
        && st.updated_replicas == want
        && st.replicas == want
        && st.ready_replicas == want
        && st.available_replicas == want
        && condition(d, "Available").is_some_and(|c| c.status.as_deref() == Some("True"))
}

#[tokio::test]
async fn discovery_finds_builtin_kinds_with_verbs_and_subresources() {
    let double = start().await;
    let client = client(&double).await;

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment");
    let (ar, caps) = discovery
        .resolve_gvk(&gvk)
        .expect("apps/v1 Deployment is discovered");
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    for verb in [
        verbs::CREATE,
        verbs::DELETE,
        verbs::GET,
        verbs::LIST,
        verbs::PATCH,
        verbs::UPDATE,
        verbs::WATCH,
    ] {
        assert!(caps.supports_operation(verb), "deployments support {verb}");
    }
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "deployments/status" || sub.plural == "status"),
        "deployments/status is listed: {:?}",
        caps.subresources
            .iter()
            .map(|(s, _)| &s.plural)
            .collect::<Vec<_>>()
    );
    let (ns, ns_caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "Namespace"))
        .expect("namespaces");
    assert_eq!(ns.plural, "namespaces");
    assert_eq!(ns_caps.scope, Scope::Cluster);
    for (g, v, k) in [
        ("batch", "v1", "Job"),
        ("networking.k8s.io", "v1", "Ingress"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        ("", "v1", "ConfigMap"),
    ] {
        assert!(
            discovery
                .resolve_gvk(&kube::api::GroupVersionKind::gvk(g, v, k))
                .is_some(),
            "{g}/{v} {k}"
        );
    }

    // One-kind discovery (`pinned_kind`, what a controller applying arbitrary manifests uses).
    let (ar_cm, caps_cm) = kube::discovery::pinned_kind(
        &client,
        &kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap"),
    )
    .await
    .unwrap();
    assert_eq!(
        (ar_cm.plural.as_str(), caps_cm.scope.clone()),
        ("configmaps", Scope::Namespaced)
    );
    let (ar_d, _) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(ar_d.api_version, "apps/v1");

    // Aggregated discovery (two requests) sees the same thing.
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (ar2, caps2) = aggregated.resolve_gvk(&gvk).expect("aggregated discovery");
    assert_eq!(ar2.plural, "deployments");
    assert!(caps2.supports_operation(verbs::WATCH));

    // The namespaces every cluster starts with.
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(
        names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()),
        "{names:?}"
    );
    double.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_create_update_conflict_and_force() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<Deployment> = Api::namespaced(client, "default");

    // Create through apply.
    let d = api
        .patch(
            "web",
            &PatchParams::apply("mgr-a"),
            &Patch::Apply(deployment("web", 1, json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert!(d.metadata.uid.is_some() && d.metadata.creation_timestamp.is_some());
    let managers: Vec<_> = d
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone(), m.operation.clone()))
        .collect();
    assert!(
        managers.contains(&(Some("mgr-a".into()), Some("Apply".into()))),
        "{managers:?}"
    );

    // Update through apply: spec change bumps generation and resourceVersion.
    let d2 = api
        .patch(
            "web",
            &PatchParams::apply("mgr-a"),
            &Patch::Apply(deployment("web", 2, json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(d2.spec.replicas, Some(2));
    assert_eq!(d2.metadata.generation, Some(2));
    assert_ne!(d2.resource_version(), d.resource_version());

    // An identical apply is a no-op: no new resourceVersion (controllers apply every reconcile).
    let current = api.get("web").await.unwrap();
    let same = api
        .patch(
            "web",
            &PatchParams::apply("mgr-a"),
            &Patch::Apply(deployment("web", 2, json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), current.resource_version());

    // Another manager setting the same field to another value conflicts...
    let err = api_error(
        api.patch(
            "web",
            &PatchParams::apply("mgr-b"),
            &Patch::Apply(deployment("web", 5, json!({}))),
        )
        .await,
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert!(
        err.message.contains("mgr-a") && err.message.contains(".spec.replicas"),
        "{}",
        err.message
    );
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(2));

    // ...and wins with force.
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(deployment("web", 5, json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(5));
    // mgr-a can now apply its old config without touching replicas... but still conflicts on it.
    let err = api_error(
        api.patch(
            "web",
            &PatchParams::apply("mgr-a"),
            &Patch::Apply(deployment("web", 2, json!({}))),
        )
        .await,
    );
    assert_eq!(err.code, 409);

    // Status written by a client through the main resource is ignored.
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 99}})),
        )
        .await
        .unwrap();
    assert_ne!(patched.status.and_then(|s| s.replicas), Some(99));

    // Apply without a field manager is rejected, like the real server.
    let no_manager = PatchParams::default();
    assert!(no_manager.field_manager.is_none());
    let raw = api
        .patch(
            "web",
            &no_manager,
            &Patch::Apply(deployment("web", 5, json!({}))),
        )
        .await;
    assert!(raw.is_err());
    double.shutdown().await;
}

#[tokio::test]
async fn errors_are_real_status_objects() {
    let double = start().await;
    let client = client(&double).await;

    // A namespaced object in a missing namespace.
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = api_error(
        missing
            .create(
                &PostParams::default(),
                &configmap("c", json!({}), json!({})),
            )
            .await,
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.reason, "NotFound");
    assert_eq!(err.message, "namespaces \"nope\" not found");
    let err = api_error(
        missing
            .patch(
                "c",
                &PatchParams::apply("t"),
                &Patch::Apply(configmap("c", json!({}), json!({}))),
            )
            .await,
    );
    assert_eq!(err.code, 404);

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &configmap("c", json!({}), json!({"a": "1"})),
        )
        .await
        .unwrap();
    let err = api_error(
        api.create(
            &PostParams::default(),
            &configmap("c", json!({}), json!({})),
        )
        .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    // Optimistic concurrency: a replace with a stale resourceVersion conflicts.
    let mut fresh = created.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("c", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api_error(api.replace("c", &PostParams::default(), &stale).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    let err = api_error(api.get("absent").await);
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "configmaps \"absent\" not found");
    let err = api_error(api.delete("absent", &DeleteParams::default()).await);
    assert_eq!(err.code, 404);

    // Merge patch and strategic merge patch (treated as a merge patch); JSON patch: kubectl test.
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"b": "x"}})),
    )
    .await
    .unwrap();
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Strategic(json!({"data": {"c": "y"}})),
    )
    .await
    .unwrap();
    let got = api.get("c").await.unwrap();
    assert_eq!(got.data.unwrap().get("b").map(String::as_str), Some("x"));

    // Invalid names are rejected (422), as a real cluster would.
    let err = api_error(
        api.create(
            &PostParams::default(),
            &configmap("Bad_Name", json!({}), json!({})),
        )
        .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    double.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, labels) in [
        ("a1", json!({"app": "a", "tier": "web"})),
        ("a2", json!({"app": "a"})),
        ("b1", json!({"app": "b", "tier": "db"})),
        ("c1", json!({})),
    ] {
        api.create(&PostParams::default(), &configmap(name, labels, json!({})))
            .await
            .unwrap();
    }
    let names = |lp: ListParams| {
        let api = api.clone();
        async move {
            let mut v: Vec<String> = api
                .list(&lp)
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| o.name_any())
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(
        names(ListParams::default().labels("app=a")).await,
        ["a1", "a2"]
    );
    assert_eq!(
        names(ListParams::default().labels("app!=a")).await,
        ["b1", "c1"]
    );
    assert_eq!(
        names(ListParams::default().labels("app in (a, b),tier")).await,
        ["a1", "b1"]
    );
    assert_eq!(
        names(ListParams::default().labels("app notin (a)")).await,
        ["b1", "c1"]
    );
    assert_eq!(
        names(ListParams::default().labels("!tier")).await,
        ["a2", "c1"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.name=b1")).await,
        ["b1"]
    );
    assert_eq!(
        names(
            ListParams::default()
                .fields("metadata.name!=b1")
                .labels("app")
        )
        .await,
        ["a1", "a2"]
    );

    // Pagination with limit/continue.
    let page = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let token = page.metadata.continue_.clone().expect("continue token");
    let rest = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none());

    // Cross-namespace list.
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "other")
        .create(
            &PostParams::default(),
            &configmap("o1", json!({"app": "a"}), json!({})),
        )
        .await
        .unwrap();
    let all = Api::<ConfigMap>::all(client)
        .list(&ListParams::default().labels("app=a"))
        .await
        .unwrap();
    let mut got: Vec<_> = all
        .items
        .iter()
        .map(|o| (o.namespace().unwrap(), o.name_any()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("default".into(), "a1".into()),
            ("default".into(), "a2".into()),
            ("other".into(), "o1".into())
        ]
    );
    assert!(
        all.metadata
            .resource_version
            .is_some_and(|rv| rv.parse::<u64>().is_ok())
    );
    double.shutdown().await;
}

#[tokio::test]
async fn watcher_sees_added_then_modified_when_the_kubelet_makes_it_ready() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");

    // Raw watch: exact event types.
    let raw = api
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap();
    let raw = tokio::spawn(async move {
        let mut raw = Box::pin(raw);
        let mut seen = Vec::new();
        while let Some(ev) = raw.next().await {
            match ev.unwrap() {
                WatchEvent::Added(d) => seen.push(("ADDED", is_ready(&d))),
                WatchEvent::Modified(d) => {
                    let ready = is_ready(&d);
                    seen.push(("MODIFIED", ready));
                    if ready {
                        break;
                    }
                }
                WatchEvent::Deleted(_) => seen.push(("DELETED", false)),
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            }
        }
        seen
    });

    // kube-runtime watcher: initial LIST, then WATCH from the list's resourceVersion.
    let stream = watcher(api.clone(), watcher::Config::default());
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let wait_ready = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        let mut applies = 0;
        let mut listed_tx = Some(listed_tx);
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                    applies += 1;
                    if d.name_any() == "web" && is_ready(&d) {
                        return (applies, d);
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Init | watcher::Event::Delete(_) => {}
            }
        }
        panic!("watch ended");
    });
    // The watcher has listed (and watches from the list's resourceVersion) before the create.
    tokio::time::timeout(Duration::from_secs(10), listed)
        .await
        .expect("the watcher lists within 10 s")
        .unwrap();
    let created_at = Instant::now();
    api.patch(
        "web",
        &PatchParams::apply("test"),
        &Patch::Apply(deployment("web", 3, json!({}))),
    )
    .await
    .unwrap();

    let (applies, ready) = tokio::time::timeout(Duration::from_secs(10), wait_ready)
        .await
        .unwrap()
        .unwrap();
    assert!(applies >= 2, "the object was seen before it was ready");
    assert!(
        created_at.elapsed() >= READY_DELAY,
        "readiness waits for ready_delay"
    );
    let status = ready.status.unwrap();
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.observed_generation, Some(1));
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(
        (progressing.status.as_deref(), progressing.reason.as_deref()),
        (Some("True"), Some("NewReplicaSetAvailable"))
    );

    let seen = tokio::time::timeout(Duration::from_secs(10), raw)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.first(), Some(&("ADDED", false)), "{seen:?}");
    assert_eq!(seen.last(), Some(&("MODIFIED", true)), "{seen:?}");

    // A spec change makes it not ready (new generation) until the delay passes again.
    let d = api
        .patch(
            "web",
            &PatchParams::apply("test"),
            &Patch::Apply(deployment("web", 4, json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    let d = api.get("web").await.unwrap();
    assert!(!is_ready(&d));
    eventually(5, "ready again", || {
        let api = api.clone();
        async move { api.get("web").await.ok().filter(is_ready) }
    })
    .await;

    // Watch from a resourceVersion: only later events; bookmarks carry resourceVersions.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = Box::pin(
        api.watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap(),
    );
    api.delete("web", &DeleteParams::default()).await.unwrap();
    match w.next().await.unwrap().unwrap() {
        WatchEvent::Deleted(d) => assert_eq!(d.name_any(), "web"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    double.shutdown().await;
}

/// The Pods of a Deployment, found as a client finds them: ReplicaSets owned by the Deployment,
/// Pods owned by those ReplicaSets.
async fn pods_of(client: &kube::Client, d: &Deployment) -> Vec<(ReplicaSet, Vec<Pod>)> {
    let ns = d.metadata.namespace.clone().unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pods = pod_api.list(&ListParams::default()).await.unwrap().items;
    let mut out = Vec::new();
    for rs in rs_api.list(&ListParams::default()).await.unwrap().items {
        if !owned_by(&rs.metadata, d.metadata.uid.as_deref()) {
            continue;
        }
        let mine = pods
            .iter()
            .filter(|p| owned_by(&p.metadata, rs.metadata.uid.as_deref()))
            .cloned()
            .collect();
        out.push((rs, mine));
    }
    out
}

fn owned_by(m: &kube::api::ObjectMeta, uid: Option<&str>) -> bool {
    m.owner_references.as_ref().is_some_and(|rs| {
        rs.iter()
            .any(|r| Some(r.uid.as_str()) == uid && r.controller == Some(true))
    })
}

fn waiting(p: &Pod) -> Option<(String, String)> {
    let w = p.status.as_ref()?.container_statuses.as_ref()?[0]
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

/// The failure switch on a pod template: the simulated kubelet fails the Pod's containers the
/// way a real kubelet reports it — on the Pod (container status, phase) and in Events whose
/// involvedObject is the Pod, with the kubelet's reasons. The Deployment only stays unavailable.
#[tokio::test]
async fn failures_are_reported_on_the_pod_as_a_kubelet_reports_them() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    for (name, mode) in [
        ("broken", "ImagePullBackOff"),
        ("crashy", "CrashLoopBackOff"),
    ] {
        let d = api
            .patch(
                name,
                &PatchParams::apply("test"),
                &Patch::Apply(deployment(
                    name,
                    1,
                    json!({"threeport.io/simulate-failure": mode}),
                )),
            )
            .await
            .unwrap();
        // The Pod (owned by the Deployment's ReplicaSet) gets the kubelet's container status.
        let pod = eventually(10, &format!("{name}'s pod {mode}"), || {
            let (client, d) = (client.clone(), d.clone());
            async move {
                let sets = pods_of(&client, &d).await;
                let pod = sets.first()?.1.first()?.clone();
                (waiting(&pod)?.0 == mode).then_some(pod)
            }
        })
        .await;
        let pod_name = pod.metadata.name.clone().unwrap();
        let pod_uid = pod.metadata.uid.clone().unwrap();
        let status = pod.status.clone().unwrap();
        let cs = &status.container_statuses.as_ref().unwrap()[0];
        assert!(!cs.ready);
        let (_, message) = waiting(&pod).unwrap();
        let image = format!("registry.example/{name}:1.0");
        if mode == "ImagePullBackOff" {
            assert_eq!(status.phase.as_deref(), Some("Pending"));
            assert_eq!(message, format!("Back-off pulling image \"{image}\""));
        } else {
            assert_eq!(status.phase.as_deref(), Some("Running"));
            assert_eq!(cs.restart_count, 1);
            assert!(cs.last_state.as_ref().unwrap().terminated.is_some());
            assert_eq!(
                message,
                format!(
                    "back-off 10s restarting failed container=main pod={pod_name}_default({pod_uid})"
                )
            );
        }
        // The kubelet's Events are about the Pod, found as `kubectl describe pod` finds them.
        let selector = format!(
            "involvedObject.kind=Pod,involvedObject.name={pod_name},involvedObject.namespace=default,involvedObject.uid={pod_uid}"
        );
        let warnings = eventually(5, "the kubelet's warnings", || {
            let (events, selector) = (events.clone(), selector.clone());
            async move {
                let w: Vec<Event> = events
                    .list(&ListParams::default().fields(&selector))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                    .collect();
                (!w.is_empty()).then_some(w)
            }
        })
        .await;
        let said: Vec<(String, String)> = warnings
            .iter()
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                )
            })
            .collect();
        for e in &warnings {
            assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
            assert_eq!(e.involved_object.uid.as_deref(), Some(pod_uid.as_str()));
            assert_eq!(
                e.involved_object.field_path.as_deref(),
                Some("spec.containers{main}")
            );
            assert_eq!(
                e.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("kubelet")
            );
        }
        if mode == "ImagePullBackOff" {
            let pull_failed = said
                .iter()
                .find(|(r, m)| r == "Failed" && m.starts_with("Failed to pull image"));
            assert!(
                pull_failed.is_some_and(|(_, m)| m.contains(&format!("\"{image}\""))),
                "{said:?}"
            );
            assert!(
                said.contains(&("Failed".into(), "Error: ErrImagePull".into())),
                "{said:?}"
            );
            assert!(
                said.contains(&("Failed".into(), "Error: ImagePullBackOff".into())),
                "{said:?}"
            );
        } else {
            assert_eq!(
                said,
                [(
                    "BackOff".to_string(),
                    format!(
                        "Back-off restarting failed container main in pod {pod_name}_default({pod_uid})"
                    )
                )]
            );
        }
        // Nothing is filed against the Deployment; it just stays unavailable.
        let about_deployment = events
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=Deployment,involvedObject.name={name}"
            )))
            .await
            .unwrap()
            .items;
        assert!(
            about_deployment
                .iter()
                .all(|e| e.type_.as_deref() == Some("Normal")),
            "{about_deployment:?}"
        );
        let d = api.get(name).await.unwrap();
        let available = condition(&d, "Available").expect("Available condition");
        assert_eq!(available.status.as_deref(), Some("False"));
        assert_eq!(
            available.reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
        let st = d.status.as_ref().unwrap();
        assert_eq!(st.ready_replicas.unwrap_or(0), 0);
        assert_eq!(
            (st.observed_generation, st.updated_replicas),
            (Some(1), Some(1))
        );
    }

    // Deleting the deployment garbage-collects its ReplicaSet and Pods (ownerReferences).
    api.delete("broken", &DeleteParams::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert!(
        pods.list(&ListParams::default().labels("app=broken"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    double.shutdown().await;
}

/// A Deployment becomes a ReplicaSet (named after the template hash, owned by it) becomes Pods
/// (owned by the ReplicaSet), which the kubelet runs. An image change rolls out like a real
/// RollingUpdate (maxSurge 25% → 1, maxUnavailable 25% → 0 for two replicas): a new ReplicaSet,
/// `updatedReplicas` counting its Pods, and at every moment of the rollout at least two ready
/// Pods — the old ones stay until the new ones are ready.
#[tokio::test]
async fn deployments_roll_out_through_replicasets_and_pods() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.patch(
        "web",
        &PatchParams::apply("test"),
        &Patch::Apply(deployment("web", 2, json!({}))),
    )
    .await
    .unwrap();
    let d = eventually(10, "web ready", || {
        let api = api.clone();
        async move { api.get("web").await.ok().filter(is_ready) }
    })
    .await;
    let sets = pods_of(&client, &d).await;
    assert_eq!(sets.len(), 1);
    let (rs1, pods1) = &sets[0];
    let hash = rs1.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs1.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs1.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(rs1.status.as_ref().unwrap().ready_replicas, Some(2));
    assert_eq!(pods1.len(), 2);
    for p in pods1 {
        assert!(
            p.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(st.container_statuses.as_ref().unwrap()[0].ready);
        assert!(
            st.pod_ip.is_some()
                && p.spec.as_ref().unwrap().node_name.as_deref() == Some("kube-double")
        );
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let pod_events: Vec<String> = events
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={}",
            pods1[0].metadata.name.as_ref().unwrap()
        )))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    for r in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(pod_events.iter().any(|x| x == r), "{r} in {pod_events:?}");
    }

    // Follow every Pod change during the rollout: the count of ready Pods never drops below 2.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let follow = tokio::spawn(async move {
        let mut s = Box::pin(watcher(pods, watcher::Config::default().labels("app=web")));
        let mut ready: std::collections::HashMap<String, bool> = Default::default();
        let mut listed_tx = Some(listed_tx);
        let mut min_ready = usize::MAX;
        let mut max_pods = 0;
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let r = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    ready.insert(p.name_any(), r);
                }
                watcher::Event::Delete(p) => {
                    ready.remove(&p.name_any());
                }
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                watcher::Event::Init => continue,
            }
            if listed_tx.is_none() {
                min_ready = min_ready.min(ready.values().filter(|r| **r).count());
                max_pods = max_pods.max(ready.len());
                // Done: two Pods, both ready, none of the first ReplicaSet's.
                if ready.len() == 2
                    && ready.values().all(|r| *r)
                    && ready.keys().all(|n| !n.contains(&hash))
                {
                    return (min_ready, max_pods);
                }
            }
        }
        panic!("pod watch ended");
    });
    tokio::time::timeout(Duration::from_secs(10), listed)
        .await
        .unwrap()
        .unwrap();
    let mut v2 = deployment("web", 2, json!({}));
    v2.spec.template.spec.as_mut().unwrap().containers[0].image =
        Some("registry.example/web:2.0".into());
    let d = api
        .patch("web", &PatchParams::apply("test"), &Patch::Apply(v2))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // Mid-rollout: observed at once, a new ReplicaSet whose Pods are the updated ones, and the
    // old Pods still serving.
    let mid = eventually(5, "the rollout under way", || {
        let api = api.clone();
        async move {
            let d = api.get("web").await.ok()?;
            let st = d.status.clone()?;
            (st.observed_generation == Some(2)
                && st.updated_replicas == Some(1)
                && st.replicas == Some(3))
            .then_some(d)
        }
    })
    .await;
    let st = mid.status.as_ref().unwrap();
    assert_eq!(
        st.ready_replicas,
        Some(2),
        "the old Pods stay ready: {st:?}"
    );
    assert!(
        !is_ready(&mid),
        "ready replicas alone do not make a rollout complete"
    );
    let (min_ready, max_pods) = tokio::time::timeout(Duration::from_secs(15), follow)
        .await
        .unwrap()
        .unwrap();
    assert!(
        min_ready >= 2,
        "ready Pods dropped to {min_ready} during the rollout"
    );
    assert_eq!(max_pods, 3, "maxSurge 1: never more than 3 Pods");
    let d = eventually(5, "web ready again", || {
        let api = api.clone();
        async move { api.get("web").await.ok().filter(is_ready) }
    })
    .await;
    let st = d.status.as_ref().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (Some(2), Some(2), Some(2), Some(2))
    );
    assert_eq!(
        condition(&d, "Progressing").unwrap().reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let sets = pods_of(&client, &d).await;
    assert_eq!(
        sets.len(),
        2,
        "the old ReplicaSet is kept (revision history), scaled to 0"
    );
    let old = sets
        .iter()
        .find(|(rs, _)| rs.metadata.name == rs1.metadata.name)
        .unwrap();
    assert_eq!(old.0.spec.replicas, Some(0));
    assert!(old.1.is_empty());
    double.shutdown().await;
}

/// `Options::never_ready_images`: such Pods run but never pass readiness, so their workload
/// never completes its rollout (what a test of "wait for every rollout" needs).
#[tokio::test]
async fn never_ready_images_keep_the_rollout_incomplete() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let double = kube_api_double::KubeDouble::start(kube_api_double::Options {
        ready_delay: READY_DELAY,
        never_ready_images: vec!["registry.example/*:never".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client(&double).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("stuck", 1, json!({}));
    d.spec.template.spec.as_mut().unwrap().containers[0].image =
        Some("registry.example/stuck:never".into());
    let d = api
        .patch("stuck", &PatchParams::apply("test"), &Patch::Apply(d))
        .await
        .unwrap();
    let pod = eventually(10, "the pod running, not ready", || {
        let (client, d) = (client.clone(), d.clone());
        async move {
            let pod = pods_of(&client, &d).await.first()?.1.first()?.clone();
            (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
        }
    })
    .await;
    let cs = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(!cs.ready && cs.started == Some(true) && cs.state.as_ref().unwrap().running.is_some());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let unhealthy = events
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={},reason=Unhealthy",
            pod.name_any()
        )))
        .await
        .unwrap()
        .items;
    assert_eq!(unhealthy.len(), 1);
    assert!(
        unhealthy[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Readiness probe failed")
    );
    let d = api.get("stuck").await.unwrap();
    assert!(!is_ready(&d));
    assert_eq!(d.status.as_ref().unwrap().ready_replicas.unwrap_or(0), 0);
    // Other images are unaffected.
    api.patch(
        "fine",
        &PatchParams::apply("test"),
        &Patch::Apply(deployment("fine", 1, json!({}))),
    )
    .await
    .unwrap();
    eventually(10, "fine ready", || {
        let api = api.clone();
        async move { api.get("fine").await.ok().filter(is_ready) }
    })
    .await;
    assert!(!is_ready(&api.get("stuck").await.unwrap()));
    double.shutdown().await;
}

#[tokio::test]
async fn crd_adds_a_kind_to_discovery_usable_as_dynamic_object() {
    let double = start().await;
    let client = client(&double).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            }],
        },
    }))
    .unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("example.com", "v1", "Widget");
    assert!(
        Discovery::new(client.clone())
            .run()
            .await
            .unwrap()
            .resolve_gvk(&gvk)
            .is_none()
    );

    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = created
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established, "CRDs report Established");

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery.resolve_gvk(&gvk).expect("Widget is discovered");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let mut w = DynamicObject::new("w1", &ar).within("default");
    w.data = json!({"spec": {"size": 3}});
    api.patch("w1", &PatchParams::apply("test"), &Patch::Apply(&w))
        .await
        .unwrap();
    let got = api.get("w1").await.unwrap();
    assert_eq!(got.data["spec"]["size"], 3);
    // Items of a custom resource list keep kind/apiVersion, as the real server's do…
    let items = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(items.len(), 1);
    let types = items[0]
        .types
        .as_ref()
        .expect("custom resource items carry their kind");
    assert_eq!(
        (types.kind.as_str(), types.api_version.as_str()),
        ("Widget", "example.com/v1")
    );
    // …and built-in list items carry none (the list names the kind once), while a GET does.
    let cm_ar = kube::discovery::ApiResource::erase::<ConfigMap>(&());
    let cms: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &cm_ar);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.types.kind, "ConfigMapList");
    assert!(
        list.items.iter().all(|i| i.types.is_none()),
        "built-in list items have no kind/apiVersion: {:?}",
        list.items[0].types
    );
    assert!(cms.get("plain").await.unwrap().types.is_some());

    // The status subresource is separate from the main resource.
    api.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Ready"}})),
    )
    .await
    .unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 4}, "status": {"phase": "Ignored"}})),
    )
    .await
    .unwrap();
    let got = api.get("w1").await.unwrap();
    assert_eq!(got.data["status"]["phase"], "Ready");
    assert_eq!(got.data["spec"]["size"], 4);
    assert_eq!(
        got.metadata.generation,
        Some(2),
        "status writes do not bump generation"
    );

    // Deleting the CRD removes the kind and its objects.
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.resolve_gvk(&gvk).is_none());
    assert_eq!(api_error(api.get("w1").await).code, 404);
    double.shutdown().await;
}

#[tokio::test]
async fn pause_makes_the_cluster_unreachable_and_resume_restores_it() {
    let double = start().await;
    let client = client(&double).await;
    let port = double.port();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &configmap("kept", json!({}), json!({"k": "v"})),
    )
    .await
    .unwrap();

    // A watcher that outlives the outage (with the usual backoff).
    use kube::runtime::WatchStreamExt;
    let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch_task = tokio::spawn(async move {
        let mut s = Box::pin(stream);
        while let Some(ev) = s.next().await {
            if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = ev {
                let _ = tx.send(cm.name_any());
            }
        }
    });
    eventually(5, "watcher initial list", || {
        let got = rx.try_recv().ok().filter(|n| n == "kept");
        async move { got }
    })
    .await;

    double.pause().await;
    match api.get("kept").await {
        Err(kube::Error::Api(s)) => panic!("expected a connection error, got an API answer {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("a paused double must not answer"),
    }
    // New connections are refused outright.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port closed while paused"
    );

    double.resume().await.unwrap();
    assert_eq!(double.port(), port);
    let cm = eventually(5, "the double answers again", || {
        let api = api.clone();
        async move { api.get("kept").await.ok() }
    })
    .await;
    assert_eq!(cm.data.unwrap()["k"], "v");

    // The watcher recovers and sees changes made after the outage.
    api.create(
        &PostParams::default(),
        &configmap("after", json!({}), json!({})),
    )
    .await
    .unwrap();
    let mut seen_after = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen_after && Instant::now() < deadline {
        if let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            seen_after = n == "after";
        }
    }
    assert!(seen_after, "the watcher recovered after resume");
    watch_task.abort();
    double.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_finalizers_and_garbage_collection() {
    let double = start().await;
    let client = client(&double).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let owner = cms
        .create(
            &PostParams::default(),
            &configmap("owner", json!({}), json!({})),
        )
        .await
        .unwrap();
    let mut owned = configmap("owned", json!({}), json!({}));
    owned.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &owned).await.unwrap();

    // Garbage collection through ownerReferences.
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(cms.get("owned").await).code, 404);

    // Finalizers hold the deletion until they are removed.
    let mut held = configmap("held", json!({}), json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());

    // Deleting the namespace makes it Terminating at once; the namespace controller then
    // deletes its content, and it stays while content (held by a finalizer) remains.
    cms.create(
        &PostParams::default(),
        &configmap("inside", json!({}), json!({})),
    )
    .await
    .unwrap();
    let deleted = namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the namespace is returned, not a Status: it is not gone yet");
    assert!(deleted.metadata.deletion_timestamp.is_some());
    assert_eq!(
        deleted.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    eventually(5, "the namespace's content deleted", || {
        let cms = cms.clone();
        async move {
            matches!(cms.get("inside").await, Err(kube::Error::Api(s)) if s.code == 404)
                .then_some(())
        }
    })
    .await;
    let ns = eventually(5, "the namespace reporting what remains", || {
        let namespaces = namespaces.clone();
        async move {
            let ns = namespaces.get("doomed").await.ok()?;
            let conds = ns.status.as_ref()?.conditions.clone()?;
            conds
                .iter()
                .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
                .then_some(ns)
        }
    })
    .await;
    assert_eq!(
        ns.status.as_ref().unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let remaining = ns.status.unwrap().conditions.unwrap();
    let content = remaining
        .iter()
        .find(|c| c.type_ == "NamespaceContentRemaining")
        .unwrap();
    assert_eq!(content.status, "True");
    assert!(
        content
            .message
            .as_deref()
            .unwrap()
            .contains("configmaps has 1 resource instances"),
        "{content:?}"
    );
    assert_eq!(
        ns.spec.unwrap().finalizers,
        Some(vec!["kubernetes".to_string()])
    );
    let err = api_error(
        cms.create(
            &PostParams::default(),
            &configmap("late", json!({}), json!({})),
        )
        .await,
    );
    assert_eq!(err.code, 403);

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(cms.get("held").await).code, 404);
    eventually(5, "the empty namespace removed", || {
        let namespaces = namespaces.clone();
        async move {
            matches!(namespaces.get("doomed").await, Err(kube::Error::Api(s)) if s.code == 404)
                .then_some(())
        }
    })
    .await;

    // The built-in namespaces cannot be deleted.
    assert_eq!(
        api_error(namespaces.delete("default", &DeleteParams::default()).await).code,
        403
    );
    double.shutdown().await;
}

#[tokio::test]
async fn streaming_list_and_metadata_watchers() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &configmap("before", json!({}), json!({})),
    )
    .await
    .unwrap();

    // sendInitialEvents=true: initial ADDED events, then a bookmark ending the initial list.
    let streaming = watcher(api.clone(), watcher::Config::default().streaming_lists());
    // Metadata-only requests (Accept: ...;as=PartialObjectMetadata...).
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), "default");
    let metadata = watcher(meta_api, watcher::Config::default());
    // Each watcher says when its initial list is complete; "after" is created only then.
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<&str>();
    let streaming_ready = ready_tx.clone();
    let streaming = tokio::spawn(async move {
        let mut s = Box::pin(streaming);
        let mut names = Vec::new();
        let mut init_done = false;
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitApply(cm) | watcher::Event::Apply(cm) => {
                    names.push(cm.name_any())
                }
                watcher::Event::InitDone => {
                    init_done = true;
                    let _ = streaming_ready.send("streaming");
                }
                _ => {}
            }
            if init_done && names.contains(&"after".to_string()) {
                return names;
            }
        }
        panic!("stream ended");
    });
    let metadata = tokio::spawn(async move {
        let mut s = Box::pin(metadata);
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::Apply(m) if m.metadata.name.as_deref() == Some("after") => {
                    return m.metadata.labels;
                }
                watcher::Event::InitDone => {
                    let _ = ready_tx.send("metadata");
                }
                _ => {}
            }
        }
        panic!("stream ended");
    });
    let mut listed = Vec::new();
    while listed.len() < 2 {
        let which = tokio::time::timeout(Duration::from_secs(10), ready.recv())
            .await
            .expect("both watchers list within 10 s")
            .unwrap();
        listed.push(which);
    }
    api.create(
        &PostParams::default(),
        &configmap("after", json!({"l": "v"}), json!({})),
    )
    .await
    .unwrap();
    let names = tokio::time::timeout(Duration::from_secs(10), streaming)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names, ["before", "after"]);
    let labels = tokio::time::timeout(Duration::from_secs(10), metadata)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(labels.unwrap()["l"], "v");
    double.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_event_recorder_publishes() {
    use kube::runtime::events::{Event as RecEvent, EventType, Recorder, Reporter};
    let double = start().await;
    let client = client(&double).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &configmap("subject", json!({}), json!({})),
        )
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-controller".into(),
            instance: None,
        },
    );
    let ev = RecEvent {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&ev, &cm.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &cm.object_ref(&())).await.unwrap(); // the second one patches the series
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].reason.as_deref(), Some("Reconciled"));
    double.shutdown().await;
}

#[tokio::test]
async fn statefulsets_become_ready_and_jobs_complete() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::Job;
    let double = start().await;
    let client = client(&double).await;
    let template = json!({"metadata": {"labels": {"app": "x"}},
                          "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "x"}}, "template": template},
    }))
    .unwrap();
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"template": template},
    }))
    .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let job_api: Api<Job> = Api::namespaced(client.clone(), "default");
    sts_api.create(&PostParams::default(), &sts).await.unwrap();
    job_api.create(&PostParams::default(), &job).await.unwrap();

    let st = eventually(5, "statefulset ready", || {
        let api = sts_api.clone();
        async move {
            let s = api.get("db").await.ok()?.status?;
            (s.ready_replicas == Some(3)).then_some(s)
        }
    })
    .await;
    assert_eq!(
        (st.replicas, st.available_replicas, st.observed_generation),
        (3, Some(3), Some(1))
    );

    let js = eventually(5, "job complete", || {
        let api = job_api.clone();
        async move {
            let s = api.get("migrate").await.ok()?.status?;
            s.conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(s)
        }
    })
    .await;
    assert_eq!(js.succeeded, Some(1));
    assert!(js.completion_time.is_some() && js.start_time.is_some());

    // The Pods behind them: ordinals owned by the StatefulSet, a Succeeded Pod of the Job.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let sts_uid = sts_api.get("db").await.unwrap().metadata.uid;
    let mut names: Vec<String> =
        all.iter()
            .filter(|p| {
                p.metadata.owner_references.as_ref().is_some_and(|o| {
                    o[0].kind == "StatefulSet" && Some(&o[0].uid) == sts_uid.as_ref()
                })
            })
            .map(|p| p.name_any())
            .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let job_pods: Vec<&Pod> = all
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("job-name").map(String::as_str) == Some("migrate"))
        })
        .collect();
    assert_eq!(job_pods.len(), 1);
    assert_eq!(
        job_pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    double.shutdown().await;
}
