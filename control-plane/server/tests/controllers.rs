//! Controllers end to end: a real control plane (embedded, or PostgreSQL + NATS), the real
//! controllers, and the Kubernetes API double reached through the real kube-rs client.

mod common;

use common::Harness;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use kube::api::Api;
use kube::runtime::watcher;
use kube_api_double::{KubeDouble, Options};
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::{Client, kinds};
use tokio_util::sync::CancellationToken;

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  GREETING: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - port: 80
";

/// The manifest with a pod template the double's kubelet fails in `mode` (its
/// `threeport.io/simulate-failure` switch) and an image of its own.
fn failing_manifest(mode: &str, image: &str) -> String {
    MANIFEST
        .replace(
            "      labels: {app: web}\n",
            &format!("      labels: {{app: web}}\n      annotations: {{threeport.io/simulate-failure: {mode}}}\n"),
        )
        .replace("nginx:1.27", image)
}

async fn kube_client(double: &KubeDouble) -> kube::Client {
    threeport_testkit::kube_client(&double.kubeconfig()).await
}

fn fast_options() -> threeport_controllers::ControllerOptions {
    let mut o = threeport_controllers::ControllerOptions::default();
    o.runtime_check_interval = Duration::from_millis(500);
    o
}

async fn wait_gone(h: &Harness, plural: &str, id: u64, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while h.get(&format!("/v0/{plural}/{id}")).await.status != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{plural}/{id} was never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status(o: &Value) -> &str {
    o["Status"].as_str().unwrap_or("")
}

pub async fn register_runtime(h: &Harness, double: &KubeDouble, name: &str) -> u64 {
    let def = h
        .post(
            "kubernetes-runtime-definitions",
            json!({"Name": name, "InfraProvider": "kind"}),
        )
        .await;
    assert_eq!(def.status, 201, "{}", def.body);
    let inst = h
        .post(
            "kubernetes-runtime-instances",
            json!({
                "Name": name, "KubernetesRuntimeDefinitionID": def.id(), "Location": "Local", "DefaultRuntime": true,
                "APIEndpoint": double.url(), "CACertificate": double.ca_pem(),
                "Certificate": double.client_cert_pem(), "CertificateKey": double.client_key_pem(),
            }),
        )
        .await;
    assert_eq!(inst.status, 201, "{}", inst.body);
    inst.id()
}

/// How long the double's kubelet takes to start a Pod in the flow tests: long enough that a
/// rollout (two maxSurge steps) is observed in progress through the API.
const READY_DELAY: Duration = Duration::from_millis(800);

/// The ReplicaSets of a Deployment (owned by it), with their image and ready replicas.
async fn replicasets_of(
    kube: &kube::Client,
    ns: &str,
    d: &Deployment,
) -> Vec<(String, String, i32, i32)> {
    let api: Api<ReplicaSet> = Api::namespaced(kube.clone(), ns);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata.owner_references.as_ref().is_some_and(|o| {
                o.iter()
                    .any(|r| Some(&r.uid) == d.metadata.uid.as_ref() && r.controller == Some(true))
            })
        })
        .map(|rs| {
            let image = rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .map(|s| s.containers[0].image.clone().unwrap_or_default())
                .unwrap_or_default();
            let st = rs.status.unwrap_or_default();
            (
                rs.metadata.name.unwrap_or_default(),
                image,
                rs.spec.replicas.unwrap_or(1),
                st.ready_replicas.unwrap_or(0),
            )
        })
        .collect()
}

/// Wait until the instance is `Degraded` (only that: not `Failed`) because a Pod's container
/// waits for `reason` (the kubelet's container status) and the reason says all of `details`,
/// and return it. (The Pod's status and its Events come through different watches: a reason
/// built from the first to arrive is completed when the other arrives.)
async fn wait_degraded(h: &Harness, id: u64, reason: &str, details: &[&str]) -> Value {
    let waiting = format!(": {reason}: ");
    let what = format!("Degraded ({reason}, {details:?})");
    h.wait_for("workload-instances", id, &what, 30, |o| {
        let r = o["StatusReason"].as_str().unwrap_or("");
        status(o) == "Degraded"
            && r.contains(": Pod web-")
            && r.contains(&waiting)
            && details.iter().all(|d| r.contains(d))
    })
    .await
}

/// The whole workload flow; the same for both backends.
async fn workload_flow(h: &Harness, double: &KubeDouble) {
    let kube = kube_client(double).await;
    let runtime = register_runtime(h, double, "double").await;
    let rt = h
        .wait_for(
            "kubernetes-runtime-instances",
            runtime,
            "Healthy",
            20,
            |o| status(o) == "Healthy",
        )
        .await;
    assert!(
        rt["StatusReason"].as_str().unwrap().contains("reachable"),
        "{rt}"
    );

    // Apply: Deployment + Service + ConfigMap reach Healthy — with the Deployment observed and
    // fully rolled out, not merely applied.
    let def = h
        .post(
            "workload-definitions",
            json!({"Name": "web", "YAMLDocument": MANIFEST}),
        )
        .await
        .id();
    let inst = h.post("workload-instances", json!({"Name": "web", "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": runtime})).await.id();
    let o = h
        .wait_for("workload-instances", inst, "Healthy", 30, |o| {
            status(o) == "Healthy"
        })
        .await;
    let reason = o["StatusReason"].as_str().unwrap();
    assert!(
        reason.contains("Deployment web: 2/2 updated, 2/2 ready, 2/2 available"),
        "the reason names what is ready: {o}"
    );
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), "web");
    let d = deployments.get("web").await.expect("deployment applied");
    assert_eq!(
        d.metadata.labels.clone().unwrap()["threeport.io/workload-instance"],
        inst.to_string()
    );
    let ds = d.status.clone().unwrap();
    assert_eq!(
        (ds.observed_generation, ds.ready_replicas),
        (d.metadata.generation, Some(2))
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(kube.clone(), "web");
    assert!(configmaps.get_opt("web-config").await.unwrap().is_some());
    let wris = h
        .get(&format!(
            "/v0/workload-resource-instances?workloadinstanceid={inst}"
        ))
        .await;
    assert_eq!(wris.body["Meta"]["TotalCount"], 3);

    // Changing the image re-applies: Progressing while the new ReplicaSet's Pods start (the old
    // ones stay ready meanwhile, so `readyReplicas` alone would say 2/2), Healthy only once the
    // new ReplicaSet is ready and the old one is scaled away.
    let v2 = MANIFEST.replace("nginx:1.27", "nginx:1.28");
    assert_eq!(
        h.patch("workload-definitions", def, json!({"YAMLDocument": v2}))
            .await
            .status,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<String> = vec![];
    loop {
        let o = h
            .get(&format!("/v0/workload-instances/{inst}"))
            .await
            .object()
            .clone();
        let st = status(&o).to_string();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        let d = deployments.get("web").await.unwrap();
        let image = d.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default();
        if st == "Healthy" && image == "nginx:1.28" && seen.iter().any(|s| s == "Progressing") {
            // Healthy now: the rollout really is complete.
            let sets = replicasets_of(&kube, "web", &d).await;
            let new = sets
                .iter()
                .find(|s| s.1 == "nginx:1.28")
                .expect("a ReplicaSet of the new image");
            assert_eq!(
                (new.2, new.3),
                (2, 2),
                "Healthy before the new ReplicaSet was ready: {sets:?}; {o}"
            );
            for old in sets.iter().filter(|s| s.1 != "nginx:1.28") {
                assert_eq!(
                    old.2, 0,
                    "Healthy while the old ReplicaSet still runs: {sets:?}"
                );
            }
            let ds = d.status.unwrap();
            assert_eq!(ds.observed_generation, d.metadata.generation);
            assert_eq!(
                (ds.updated_replicas, ds.replicas, ds.available_replicas),
                (Some(2), Some(2), Some(2))
            );
            break;
        }
        assert!(
            !matches!(st.as_str(), "Degraded" | "Failed"),
            "an image change is not a failure: {o}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "never Healthy after the image change; statuses seen: {seen:?}; last: {o}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.iter()
            .skip_while(|s| *s == "Healthy")
            .take(2)
            .collect::<Vec<_>>(),
        ["Progressing", "Healthy"],
        "Healthy → Progressing → Healthy (seen: {seen:?})"
    );

    // Dropping the ConfigMap from the definition prunes it.
    let v3 = v2.split("---\n").skip(1).collect::<Vec<_>>().join("---\n");
    assert_eq!(
        h.patch("workload-definitions", def, json!({"YAMLDocument": v3}))
            .await
            .status,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while configmaps.get_opt("web-config").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ConfigMap was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h
        .get(&format!(
            "/v0/workload-resource-instances?workloadinstanceid={inst}"
        ))
        .await
        .body["Meta"]["TotalCount"]
        != 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "resource instance of the pruned ConfigMap remained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pods that cannot start: the double's kubelet reports it on the Pod (container status and
    // Events whose involvedObject is the Pod), as a real kubelet does; the instance is Degraded
    // with the kubelet's message.
    for (name, mode, image, message) in [
        (
            "bad",
            "ImagePullBackOff",
            "nginx:no-such-tag",
            "Back-off pulling image \"nginx:no-such-tag\"".to_string(),
        ),
        (
            "crash",
            "CrashLoopBackOff",
            "nginx:1.27",
            "back-off 10s restarting failed container=web pod=web-".to_string(),
        ),
    ] {
        let bad_def = h
            .post(
                "workload-definitions",
                json!({"Name": name, "YAMLDocument": failing_manifest(mode, image)}),
            )
            .await
            .id();
        let bad = h
            .post(
                "workload-instances",
                json!({"Name": name, "WorkloadDefinitionID": bad_def}),
            )
            .await
            .id();
        let details: &[&str] = if mode == "ImagePullBackOff" {
            &["Failed to pull image \"nginx:no-such-tag\""]
        } else {
            &[]
        };
        let o = wait_degraded(h, bad, mode, details).await;
        let reason = o["StatusReason"].as_str().unwrap();
        assert!(
            reason.starts_with("Deployment web: Pod web-")
                && reason.contains(&format!(": {mode}: "))
                && reason.contains(&message),
            "the kubelet's reason and message are on the instance: {o}"
        );
        if mode == "ImagePullBackOff" {
            assert!(
                reason.contains("Failed to pull image \"nginx:no-such-tag\""),
                "{o}"
            );
        }
        assert_eq!(
            o["KubernetesRuntimeInstanceID"].as_u64(),
            Some(runtime),
            "no runtime named: the default one is used and recorded"
        );
        // What the controller read is what a real cluster provides: Warning Events about the
        // Pod, none about the Deployment.
        let events: Api<Event> = Api::namespaced(kube.clone(), name);
        let all = events.list(&Default::default()).await.unwrap().items;
        let warnings: Vec<&Event> = all
            .iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .collect();
        assert!(!warnings.is_empty());
        assert!(
            warnings
                .iter()
                .all(|e| e.involved_object.kind.as_deref() == Some("Pod")),
            "{warnings:?}"
        );
        let wevents = h
            .get(&format!("/v0/workload-events?workloadinstanceid={bad}"))
            .await;
        let rows = wevents.body["Data"].as_array().cloned().unwrap_or_default();
        assert!(
            rows.iter()
                .any(|e| e["Message"].as_str().unwrap_or("").starts_with("Pod web-")),
            "the Pod's events are recorded as WorkloadEvents: {}",
            wevents.body
        );
    }

    // Delete: nothing left in the cluster, no row in the API; the instance's namespace is seen
    // Terminating (while its content goes), then gone.
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let ns_watch = tokio::spawn(async move {
        let mut s = Box::pin(watcher(
            namespaces,
            watcher::Config::default().fields("metadata.name=web"),
        ));
        let mut listed_tx = Some(listed_tx);
        let mut phases = Vec::new();
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    let terminating = n.metadata.deletion_timestamp.is_some();
                    let phase = n.status.and_then(|s| s.phase).unwrap_or_default();
                    if phases.last() != Some(&(phase.clone(), terminating)) {
                        phases.push((phase, terminating));
                    }
                }
                watcher::Event::Delete(_) => return phases,
                watcher::Event::Init => {}
            }
        }
        panic!("namespace watch ended");
    });
    tokio::time::timeout(Duration::from_secs(10), listed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.delete("workload-instances", inst).await.status, 200);
    wait_gone(h, "workload-instances", inst, 30).await;
    assert!(
        deployments.get_opt("web").await.unwrap().is_none(),
        "deployment deleted"
    );
    let phases = tokio::time::timeout(Duration::from_secs(30), ns_watch)
        .await
        .expect("the per-instance namespace goes")
        .unwrap();
    assert_eq!(
        phases.last(),
        Some(&("Terminating".to_string(), true)),
        "the namespace was Terminating before it went: {phases:?}"
    );
    assert!(
        Api::<Namespace>::all(kube.clone())
            .get_opt("web")
            .await
            .unwrap()
            .is_none(),
        "per-instance namespace deleted"
    );
    let wris = h
        .get(&format!(
            "/v0/workload-resource-instances?workloadinstanceid={inst}"
        ))
        .await;
    assert_eq!(wris.body["Meta"]["TotalCount"], 0);
}

fn api_client(h: &Harness) -> Client {
    Client::new(&h.base, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workloads_reconcile_on_the_embedded_control_plane() {
    let double = KubeDouble::start(Options {
        ready_delay: READY_DELAY,
        ..Default::default()
    })
    .await
    .unwrap();
    let h = Harness::sqlite().await;
    let stop = CancellationToken::new();
    let bus = h.server.local_bus.as_ref().unwrap().forward(stop.clone());
    let ctl = tokio::spawn(threeport_controllers::run_all(
        api_client(&h),
        threeport_controllers::Notifications::Local(bus),
        fast_options(),
        stop.clone(),
    ));
    workload_flow(&h, &double).await;
    stop.cancel();
    ctl.await
        .expect("the controllers task")
        .expect("the controllers stop cleanly");
    h.server.shutdown().await;
    double.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workloads_reconcile_on_postgres_and_nats() {
    let double = KubeDouble::start(Options {
        ready_delay: READY_DELAY,
        ..Default::default()
    })
    .await
    .unwrap();
    let h = Harness::postgres_nats().await;
    let stop = CancellationToken::new();
    let nats = async_nats::connect(h.nats.as_ref().unwrap().url())
        .await
        .unwrap();
    let ctl = tokio::spawn(threeport_controllers::run_all(
        api_client(&h),
        threeport_controllers::Notifications::JetStream(nats),
        fast_options(),
        stop.clone(),
    ));
    workload_flow(&h, &double).await;
    stop.cancel();
    ctl.await
        .expect("the controllers task")
        .expect("the controllers stop cleanly");
    h.server.shutdown().await;
    double.shutdown().await;
}

/// A controller restart with nothing changed in the cluster: the new status watchers learn
/// everything from their initial LIST (whose items carry no `kind`), and report the same
/// statuses. A status tampered with while the controller was down is put right from the list
/// alone; an untouched one is never disturbed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_restart_keeps_the_right_status_from_the_initial_list() {
    let double = KubeDouble::start(Options {
        ready_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let h = Harness::sqlite().await;
    let start = |h: &Harness| {
        let stop = CancellationToken::new();
        let bus = h.server.local_bus.as_ref().unwrap().forward(stop.clone());
        let ctl = tokio::spawn(threeport_controllers::run_all(
            api_client(h),
            threeport_controllers::Notifications::Local(bus),
            fast_options(),
            stop.clone(),
        ));
        (stop, ctl)
    };
    let (stop, ctl) = start(&h);
    let runtime = register_runtime(&h, &double, "double").await;
    let mut ids = Vec::new();
    for (name, yaml) in [
        ("web", MANIFEST.to_string()),
        (
            "bad",
            failing_manifest("ImagePullBackOff", "nginx:no-such-tag"),
        ),
    ] {
        let def = h
            .post(
                "workload-definitions",
                json!({"Name": name, "YAMLDocument": yaml}),
            )
            .await
            .id();
        let id = h
            .post("workload-instances", json!({"Name": name, "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": runtime}))
            .await
            .id();
        ids.push(id);
    }
    let (web, bad) = (ids[0], ids[1]);
    let healthy = h
        .wait_for("workload-instances", web, "Healthy", 30, |o| {
            status(o) == "Healthy"
        })
        .await;
    let degraded = wait_degraded(&h, bad, "ImagePullBackOff", &["Failed to pull image"]).await;
    stop.cancel();
    ctl.await
        .expect("the controllers task")
        .expect("the controllers stop cleanly");

    // While no controller runs, one status is made wrong (a status-only PATCH reconciles nothing).
    let r = h
        .patch(
            "workload-instances",
            bad,
            json!({"Status": "Progressing", "StatusReason": "tampered"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (stop, ctl) = start(&h);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let w = h
            .get(&format!("/v0/workload-instances/{web}"))
            .await
            .object()
            .clone();
        assert_eq!(
            (status(&w), &w["StatusReason"]),
            ("Healthy", &healthy["StatusReason"]),
            "the untouched instance keeps its status across the restart"
        );
        let b = h
            .get(&format!("/v0/workload-instances/{bad}"))
            .await
            .object()
            .clone();
        if status(&b) == "Degraded" {
            let (before, after) = (
                degraded["StatusReason"].as_str().unwrap(),
                b["StatusReason"].as_str().unwrap(),
            );
            // The same Pod, the same kubelet message and Event: learnt from the lists alone.
            assert_eq!(after, before);
            break;
        }
        assert_ne!(status(&b), "Healthy", "{b}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted controller never put the status right: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    ctl.await
        .expect("the controllers task")
        .expect("the controllers stop cleanly");
    h.server.shutdown().await;
    double.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_runtime_fails_with_reason_and_recovers() {
    let double = KubeDouble::start(Options::default()).await.unwrap();
    let h = Harness::sqlite().await;
    let stop = CancellationToken::new();
    let bus = h.server.local_bus.as_ref().unwrap().forward(stop.clone());
    let ctl = tokio::spawn(threeport_controllers::run_all(
        api_client(&h),
        threeport_controllers::Notifications::Local(bus),
        fast_options(),
        stop.clone(),
    ));
    let runtime = register_runtime(&h, &double, "flaky").await;
    h.wait_for(
        "kubernetes-runtime-instances",
        runtime,
        "Healthy",
        20,
        |o| status(o) == "Healthy",
    )
    .await;
    double.pause().await;
    let o = h
        .wait_for("kubernetes-runtime-instances", runtime, "Failed", 30, |o| {
            status(o) == "Failed"
        })
        .await;
    assert!(
        o["StatusReason"].as_str().unwrap().contains("unreachable"),
        "{o}"
    );
    // A workload applied while the runtime is down fails with the reason…
    let def = h
        .post(
            "workload-definitions",
            json!({"Name": "w", "YAMLDocument": MANIFEST}),
        )
        .await
        .id();
    let inst = h.post("workload-instances", json!({"Name": "w", "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": runtime})).await.id();
    let ev = kinds::by_name("Event").unwrap();
    let client = api_client(&h);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = client
            .list(ev, &[("objectid", inst.to_string())])
            .await
            .unwrap();
        if events
            .iter()
            .any(|e| e["Note"].as_str().unwrap_or("").contains("kubernetes"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event explains the failure"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and both recover without help when the runtime is back.
    double.resume().await.unwrap();
    h.wait_for(
        "kubernetes-runtime-instances",
        runtime,
        "Healthy again",
        30,
        |o| status(o) == "Healthy",
    )
    .await;
    h.wait_for("workload-instances", inst, "Healthy", 60, |o| {
        status(o) == "Healthy"
    })
    .await;
    stop.cancel();
    ctl.await
        .expect("the controllers task")
        .expect("the controllers stop cleanly");
    h.server.shutdown().await;
    double.shutdown().await;
}

/// Crash safety: kill -9 the controller process 20 times, each time while a reconcile is
/// provably under way, restarting it each time. Every workload ends Healthy with exactly its
/// three resources, in the API and in the cluster.
///
/// "Under way" is checked, not hoped for: each round creates a batch of instances for the
/// process just started, waits until one of them is `CreationAcknowledged` (the runtime writes
/// it before the first apply) but not `Reconciled`, kills, and then reads the instance again.
/// Only the killed process had it, so if it is still not `Reconciled` the kill landed inside
/// its reconcile. A round whose reconcile won the race to the kill is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_twenty_times_mid_reconcile() {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ListParams;
    const KILLS: usize = 20;
    const BATCH: usize = 10;
    // The API runs in this process: its errors belong in the failure output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("threeport_server=warn")
        .with_test_writer()
        .try_init();
    let double = KubeDouble::start(Options {
        ready_delay: Duration::from_millis(50),
        // A remote API server's write round trip: a reconcile (three applies) takes ≥ 300 ms,
        // long enough to be caught in the middle.
        write_latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let h = Harness::postgres_nats().await;
    let nats_url = h.nats.as_ref().unwrap().url();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_threeport"))
            .args([
                "controllers",
                "--api-url",
                &h.base,
                "--nats-url",
                &nats_url,
                "--concurrency",
                "16",
                "--ack-wait-secs",
                "3",
                "--lock-ttl-secs",
                "3",
            ])
            .env("THREEPORT_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("threeport controllers starts")
    };
    /// Kill the controller process even when an assertion fails.
    struct Reaper(std::process::Child);
    impl Drop for Reaper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaper(spawn());
    let runtime = register_runtime(&h, &double, "chaos").await;
    let def = h
        .post(
            "workload-definitions",
            json!({"Name": "chaos", "YAMLDocument": MANIFEST}),
        )
        .await
        .id();
    let mut ids: Vec<u64> = Vec::new();
    let (mut kills, mut mid_reconcile) = (0, 0);
    while mid_reconcile < KILLS {
        assert!(
            kills < 3 * KILLS,
            "only {mid_reconcile} of {kills} kills landed inside a reconcile"
        );
        let batch: Vec<u64> = {
            let mut batch = Vec::new();
            for _ in 0..BATCH {
                let name = format!("chaos-{:03}", ids.len() + batch.len());
                let r = h.post("workload-instances", json!({"Name": name, "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": runtime})).await;
                assert_eq!(r.status, 201, "{}", r.body);
                batch.push(r.id());
            }
            batch
        };
        ids.extend(&batch);
        // One of this batch acknowledged by the live process and not finished.
        let (batch, h) = (&batch, &h);
        let caught = threeport_testkit::eventually(
            Duration::from_secs(60),
            "a reconcile of the new batch under way",
            move || async move {
                for id in batch {
                    let o = h.get(&format!("/v0/workload-instances/{id}")).await;
                    let o = o.object();
                    if o["CreationAcknowledged"].is_string() && o["Reconciled"] != true {
                        return Some(*id);
                    }
                }
                None
            },
        )
        .await;
        child.0.kill().unwrap(); // SIGKILL: no cleanup, locks and unacked messages left behind
        child.0.wait().unwrap();
        kills += 1;
        let after = h.get(&format!("/v0/workload-instances/{caught}")).await;
        if after.object()["Reconciled"] != true {
            mid_reconcile += 1;
        }
        child = Reaper(spawn());
    }
    eprintln!("{mid_reconcile} of {kills} SIGKILLs landed inside a reconcile");
    let n = ids.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        // Healthy in the cluster, and the last reconcile finished (its records are complete).
        let healthy = h
            .get("/v0/workload-instances?status=Healthy&reconciled=true&size=1")
            .await
            .body["Meta"]["TotalCount"]
            .as_u64()
            .unwrap_or(0);
        if healthy as usize == n {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {healthy}/{n} Healthy after {kills} kills"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(child);
    // Nothing duplicated in the API…
    for id in &ids {
        let n = h
            .get(&format!(
                "/v0/workload-resource-instances?workloadinstanceid={id}&size=1"
            ))
            .await
            .body["Meta"]["TotalCount"]
            .clone();
        if n != 3 {
            let o = h.get(&format!("/v0/workload-instances/{id}")).await;
            let all = h
                .get(&format!(
                    "/v0/workload-resource-instances?workloadinstanceid={id}"
                ))
                .await;
            panic!(
                "workload {id} has {n} resource instances, not its three: {}\n{}",
                o.body, all.body
            );
        }
    }
    // …nor half-applied in the cluster.
    let kube = kube_client(&double).await;
    let lp = ListParams::default().labels("threeport.io/workload-instance");
    assert_eq!(
        Api::<Deployment>::all(kube.clone())
            .list(&lp)
            .await
            .unwrap()
            .items
            .len(),
        n
    );
    assert_eq!(
        Api::<ConfigMap>::all(kube.clone())
            .list(&lp)
            .await
            .unwrap()
            .items
            .len(),
        n
    );
    assert_eq!(
        Api::<Service>::all(kube.clone())
            .list(&lp)
            .await
            .unwrap()
            .items
            .len(),
        n
    );
    h.server.shutdown().await;
    double.shutdown().await;
}
