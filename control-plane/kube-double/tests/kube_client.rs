//! The double driven by the real kube-rs client (kube 5, k8s-openapi 0.29), the way Threeport's
//! controllers use it.

mod common;

use common::{READY_DELAY, api_error, client, eventually, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
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

fn is_ready(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let st = d.status.as_ref();
    st.and_then(|s| s.observed_generation) == d.metadata.generation
        && st.and_then(|s| s.ready_replicas) == Some(want)
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
    let created_at = Instant::now();
    let wait_ready = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        let mut applies = 0;
        while let Some(ev) = stream.try_next().await.unwrap() {
            if let watcher::Event::Apply(d) | watcher::Event::InitApply(d) = ev {
                applies += 1;
                if d.name_any() == "web" && is_ready(&d) {
                    return (applies, d);
                }
            }
        }
        panic!("watch ended");
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
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

#[tokio::test]
async fn image_pull_backoff_annotation_fails_the_deployment_with_a_warning_event() {
    let double = start().await;
    let client = client(&double).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    // Events must be visible through a watch.
    let ev_stream = watcher(events.clone(), watcher::Config::default());
    let warning = tokio::spawn(async move {
        let mut s = Box::pin(ev_stream);
        while let Some(ev) = s.try_next().await.unwrap() {
            if let watcher::Event::Apply(e) | watcher::Event::InitApply(e) = ev
                && e.type_.as_deref() == Some("Warning")
            {
                return e;
            }
        }
        panic!("event watch ended");
    });

    let d = api
        .patch(
            "broken",
            &PatchParams::apply("test"),
            &Patch::Apply(deployment(
                "broken",
                2,
                json!({"threeport.io/simulate-failure": "ImagePullBackOff"}),
            )),
        )
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), warning)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.reason.as_deref(), Some("Failed"));
    assert_eq!(
        ev.message.as_deref(),
        Some("Failed to pull image \"registry.example/broken:1.0\": ImagePullBackOff")
    );
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Deployment"));
    assert_eq!(ev.involved_object.name.as_deref(), Some("broken"));
    assert_eq!(ev.involved_object.namespace.as_deref(), Some("default"));
    assert_eq!(ev.involved_object.uid, d.metadata.uid);

    // Well past the delay, it is still not available.
    tokio::time::sleep(READY_DELAY * 2).await;
    let d = api.get("broken").await.unwrap();
    let available = condition(&d, "Available").expect("Available condition");
    assert_eq!(available.status.as_deref(), Some("False"));
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasUnavailable")
    );
    assert!(condition(&d, "Progressing").is_some());
    assert_eq!(d.status.as_ref().unwrap().ready_replicas.unwrap_or(0), 0);
    assert_eq!(d.status.as_ref().unwrap().observed_generation, Some(1));

    // The same event is found by a field selector, as `kubectl describe` looks them up.
    let found = events
        .list(
            &ListParams::default()
                .fields("involvedObject.name=broken,involvedObject.kind=Deployment"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);

    // And a fake pod is stuck pulling.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod = pods
        .list(&ListParams::default().labels("app=broken"))
        .await
        .unwrap()
        .items
        .pop()
        .expect("a pod");
    let waiting = pod.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));

    // Deleting the deployment garbage-collects its pod (ownerReferences).
    api.delete("broken", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        pods.list(&ListParams::default().labels("app=broken"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
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
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

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

    // Deleting the namespace deletes its content; it waits for the finalizer.
    cms.create(
        &PostParams::default(),
        &configmap("inside", json!({}), json!({})),
    )
    .await
    .unwrap();
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(cms.get("inside").await).code, 404);
    let ns = namespaces.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
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
    assert_eq!(api_error(namespaces.get("doomed").await).code, 404);

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
    let streaming = tokio::spawn(async move {
        let mut s = Box::pin(streaming);
        let mut names = Vec::new();
        let mut init_done = false;
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitApply(cm) | watcher::Event::Apply(cm) => {
                    names.push(cm.name_any())
                }
                watcher::Event::InitDone => init_done = true,
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
            if let watcher::Event::Apply(m) = ev
                && m.metadata.name.as_deref() == Some("after")
            {
                return m.metadata.labels;
            }
        }
        panic!("stream ended");
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    double.shutdown().await;
}
