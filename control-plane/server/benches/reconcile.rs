//! `cargo bench -p threeport-server --bench reconcile`: apply→reconciled latency for 1 000
//! workload instances on the Kubernetes API double (its simulated readiness delay set to zero, so
//! the figure is Threeport's own work: notification, re-read, server-side apply of three
//! resources, records, status). Embedded control plane with in-process controllers, and the
//! watch stream to see each instance become `Reconciled` without polling. Prints figures only.

use kube_api_double::{KubeDouble, Options};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use threeport_api::{Client, kinds};
use threeport_server::ServeConfig;
use tokio_util::sync::CancellationToken;

const N: usize = 1000;
const MANIFEST: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  A: b\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - port: 80\n";

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    threeport_server::install_crypto_provider();
    let rate: u64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let double = KubeDouble::start(Options {
        ready_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("double");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        format!("sqlite://{}", dir.path().join("db").display()),
    );
    cfg.encryption_key = Some(b"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_vec());
    let server = threeport_server::start(cfg).await.expect("server");
    let api = Client::new(&server.url(), None).unwrap();
    let stop = CancellationToken::new();
    let bus = server.local_bus.as_ref().unwrap().forward(stop.clone());
    let mut opts = threeport_controllers::ControllerOptions::default();
    opts.runtime.concurrency = 16;
    tokio::spawn(threeport_controllers::run_all(
        api.clone(),
        threeport_controllers::Notifications::Local(bus),
        opts,
        stop.clone(),
    ));

    let k = |n: &str| kinds::by_name(n).unwrap();
    let krd = api
        .create(
            k("KubernetesRuntimeDefinition"),
            &json!({"Name": "double", "InfraProvider": "kind"}),
        )
        .await
        .unwrap();
    let kri = api
        .create(
            k("KubernetesRuntimeInstance"),
            &json!({"Name": "double", "KubernetesRuntimeDefinitionID": krd["ID"], "DefaultRuntime": true, "APIEndpoint": double.url(),
                    "CACertificate": double.ca_pem(), "Certificate": double.client_cert_pem(), "CertificateKey": double.client_key_pem()}),
        )
        .await
        .unwrap();
    let def = api
        .create(
            k("WorkloadDefinition"),
            &json!({"Name": "bench", "YAMLDocument": MANIFEST}),
        )
        .await
        .unwrap();
    // Let the definition reconcile first: the figure is about instances.
    loop {
        if api
            .get(k("WorkloadDefinition"), def["ID"].as_u64().unwrap())
            .await
            .unwrap()["Reconciled"]
            == true
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Watch for instances turning Reconciled.
    use futures::StreamExt;
    let mut watch = Box::pin(api.watch(&[k("WorkloadInstance")], None).await.unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    tokio::spawn(async move {
        while let Some(Ok((_, ev))) = watch.next().await {
            if ev.object["Reconciled"] == true {
                if let Some(id) = ev.object["ID"].as_u64() {
                    let _ = tx.send((id, Instant::now()));
                }
            }
        }
    });

    let started = Instant::now();
    let mut created: HashMap<u64, Instant> = HashMap::new();
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    for i in 0..N {
        let t = Instant::now();
        let o = api
            .create(k("WorkloadInstance"), &json!({"Name": format!("b-{i:04}"), "WorkloadDefinitionID": def["ID"], "KubernetesRuntimeInstanceID": kri["ID"]}))
            .await
            .unwrap();
        created.insert(o["ID"].as_u64().unwrap(), t);
        let next = started + interval * (i as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    let mut lat = Vec::new();
    let mut done: HashMap<u64, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.len() < N && Instant::now() < deadline {
        if let Ok(Some((id, at))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            if created.contains_key(&id) {
                done.entry(id).or_insert(at);
            }
        }
    }
    for (id, at) in &done {
        lat.push(at.duration_since(created[id]));
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "apply→reconciled for {} of {N} workload instances (3 resources each, Kubernetes API double, readiness delay 0, {rate}/s offered)",
        lat.len()
    );
    if !lat.is_empty() {
        println!(
            "  p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (targets: p50 < 50 ms, p99 < 250 ms)",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.9)),
            ms(pct(&lat, 0.99)),
            ms(*lat.last().unwrap())
        );
    }
    println!(
        "  embedded control plane (SQLite, in-process bus), controllers in process with concurrency 16, 2 cores shared with the double"
    );
    stop.cancel();
    server.shutdown().await;
    double.shutdown().await;
}
