//! Controllers end to end: a real control plane (embedded, or PostgreSQL + NATS), the real
//! controllers, and the Kubernetes API double reached through the real kube-rs client.

mod common;

use common::Harness;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::Api;
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

fn failing_manifest() -> String {
    MANIFEST.replace("      labels: {app: web}\n", "      labels: {app: web}\n      annotations: {threeport.io/simulate-failure: ImagePullBackOff}\n")
}

async fn kube_client(double: &KubeDouble) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&double.kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn fast_options() -> threeport_controllers::ControllerOptions {
    let mut o = threeport_controllers::ControllerOptions::default();
    o.runtime_check_interval = Duration::from_millis(500);
    o
}

/// Poll the API until `pred` holds for the object, returning it.
async fn wait_for(
    h: &Harness,
    plural: &str,
    id: u64,
    what: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let r = h.get(&format!("/v0/{plural}/{id}")).await;
        if r.status == 200 {
            last = r.object().clone();
            if pred(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {plural}/{id} to be {what}; last seen: {last}");
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

/// The whole workload flow; the same for both backends.
async fn workload_flow(h: &Harness, double: &KubeDouble) {
    let kube = kube_client(double).await;
    let runtime = register_runtime(h, double, "double").await;
    let rt = wait_for(
        h,
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

    // Apply: Deployment + Service + ConfigMap reach Healthy.
    let def = h
        .post(
            "workload-definitions",
            json!({"Name": "web", "YAMLDocument": MANIFEST}),
        )
        .await
        .id();
    let inst = h.post("workload-instances", json!({"Name": "web", "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": runtime})).await.id();
    let o = wait_for(h, "workload-instances", inst, "Healthy", 30, |o| {
        status(o) == "Healthy"
    })
    .await;
    assert!(o["StatusReason"].as_str().unwrap().contains("ready"), "{o}");
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), "web");
    let d = deployments.get("web").await.expect("deployment applied");
    assert_eq!(
        d.metadata.labels.unwrap()["threeport.io/workload-instance"],
        inst.to_string()
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(kube.clone(), "web");
    assert!(configmaps.get_opt("web-config").await.unwrap().is_some());
    let wris = h
        .get(&format!(
            "/v0/workload-resource-instances?workloadinstanceid={inst}"
        ))
        .await;
    assert_eq!(wris.body["Meta"]["TotalCount"], 3);

    // Changing the image re-applies.
    let v2 = MANIFEST.replace("nginx:1.27", "nginx:1.28");
    assert_eq!(
        h.patch("workload-definitions", def, json!({"YAMLDocument": v2}))
            .await
            .status,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = deployments.get("web").await.unwrap();
        let image = d.spec.template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default();
        if image == "nginx:1.28" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "image never changed (still {image})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(h, "workload-instances", inst, "Healthy again", 30, |o| {
        status(o) == "Healthy"
    })
    .await;

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

    // A failing image: Degraded with the reason, and a WorkloadEvent.
    let bad_def = h
        .post(
            "workload-definitions",
            json!({"Name": "bad", "YAMLDocument": failing_manifest()}),
        )
        .await
        .id();
    let bad = h
        .post(
            "workload-instances",
            json!({"Name": "bad", "WorkloadDefinitionID": bad_def}),
        )
        .await
        .id();
    let o = wait_for(h, "workload-instances", bad, "Degraded", 30, |o| {
        matches!(status(o), "Degraded" | "Failed")
    })
    .await;
    assert!(
        o["StatusReason"]
            .as_str()
            .unwrap()
            .contains("ImagePullBackOff"),
        "the reason is on the instance: {o}"
    );
    assert_eq!(
        o["KubernetesRuntimeInstanceID"].as_u64(),
        Some(runtime),
        "no runtime named: the default one is used and recorded"
    );
    let events = h
        .get(&format!("/v0/workload-events?workloadinstanceid={bad}"))
        .await;
    assert!(
        events.body["Meta"]["TotalCount"].as_u64().unwrap() >= 1,
        "{}",
        events.body
    );

    // Delete: nothing left in the cluster, no row in the API.
    assert_eq!(h.delete("workload-instances", inst).await.status, 200);
    wait_gone(h, "workload-instances", inst, 30).await;
    assert!(
        deployments.get_opt("web").await.unwrap().is_none(),
        "deployment deleted"
    );
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    assert!(
        namespaces.get_opt("web").await.unwrap().is_none(),
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
        ready_delay: Duration::from_millis(200),
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
    let _ = ctl.await;
    h.server.shutdown().await;
    double.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workloads_reconcile_on_postgres_and_nats() {
    let double = KubeDouble::start(Options {
        ready_delay: Duration::from_millis(200),
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
    let _ = ctl.await;
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
    wait_for(
        &h,
        "kubernetes-runtime-instances",
        runtime,
        "Healthy",
        20,
        |o| status(o) == "Healthy",
    )
    .await;
    double.pause().await;
    let o = wait_for(
        &h,
        "kubernetes-runtime-instances",
        runtime,
        "Failed",
        30,
        |o| status(o) == "Failed",
    )
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
    wait_for(
        &h,
        "kubernetes-runtime-instances",
        runtime,
        "Healthy again",
        30,
        |o| status(o) == "Healthy",
    )
    .await;
    wait_for(&h, "workload-instances", inst, "Healthy", 60, |o| {
        status(o) == "Healthy"
    })
    .await;
    stop.cancel();
    let _ = ctl.await;
    h.server.shutdown().await;
    double.shutdown().await;
}

/// Crash safety: kill -9 the controller process 20 times while it reconciles 200 workloads,
/// restarting it each time. Every workload ends Healthy with exactly its three resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_twenty_times_while_reconciling_two_hundred_workloads() {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ListParams;
    const N: usize = 200;
    let double = KubeDouble::start(Options {
        ready_delay: Duration::from_millis(50),
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
    let mut ids = Vec::new();
    for i in 0..N {
        let r = h.post("workload-instances", json!({"Name": format!("chaos-{i:03}"), "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": runtime})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.id());
    }
    for round in 0..20 {
        tokio::time::sleep(Duration::from_millis(300 + (round % 5) * 150)).await;
        child.0.kill().unwrap(); // SIGKILL: no cleanup, locks and unacked messages left behind
        child.0.wait().unwrap();
        child = Reaper(spawn());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        // Healthy in the cluster, and the last reconcile finished (its records are complete).
        let healthy = h
            .get("/v0/workload-instances?status=Healthy&reconciled=true&size=1")
            .await
            .body["Meta"]["TotalCount"]
            .as_u64()
            .unwrap_or(0);
        if healthy as usize == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {healthy}/{N} Healthy after the crashes"
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
        assert_eq!(
            n, 3,
            "workload {id} has exactly its three resource instances"
        );
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
        N
    );
    assert_eq!(
        Api::<ConfigMap>::all(kube.clone())
            .list(&lp)
            .await
            .unwrap()
            .items
            .len(),
        N
    );
    assert_eq!(
        Api::<Service>::all(kube.clone())
            .list(&lp)
            .await
            .unwrap()
            .items
            .len(),
        N
    );
    h.server.shutdown().await;
    double.shutdown().await;
}
