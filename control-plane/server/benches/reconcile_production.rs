//! `cargo bench -p threeport-server --bench reconcile_production`: apply→Healthy latency on the
//! production configuration: PostgreSQL + NATS JetStream, the API in this process, and two
//! separate `threeport controllers` processes (the workload controller, 16 at a time each), all
//! against the Kubernetes API double (readiness delay zero, so the figure is Threeport's own work).
//!
//! WorkloadInstances are offered open-loop at a fixed rate (each create is sent at its scheduled
//! time, whether or not earlier ones have finished), and latency runs from that scheduled time to
//! the watch event that shows the instance `Healthy`. A main run at `BENCH_RATE` (default 100/s)
//! for `BENCH_SECS` (default 60), after a sweep of rising rates (`BENCH_SWEEP`, default
//! `30,50,70,100,150`, `BENCH_SWEEP_SECS` each, default 15) that stops at the first rate whose
//! p99 is 1 s or more and reports the highest rate whose p99 stayed under 1 s.
//!
//! Not a test: it prints figures and asserts nothing about timing.

use futures::StreamExt;
use kube_api_double::{KubeDouble, Options};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use threeport_api::status::Health;
use threeport_api::{Client, kinds};
use threeport_server::ServeConfig;
use threeport_testkit::{Nats, Postgres};

const MANIFEST: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  A: b\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - port: 80\n";
const REPLICAS: usize = 2;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU seconds used so far: by every process on the machine, keyed by its name (`comm`), and
/// by this process's threads, keyed `thread:<name>`. Deltas over a run show where the time went
/// (the machine's own idle services add nothing to a delta).
fn cpu_seconds() -> HashMap<String, f64> {
    // Linux's USER_HZ is 100 on every architecture we build for.
    const TICKS: f64 = 100.0;
    fn read(path: &std::path::Path) -> Option<(String, f64)> {
        let stat = std::fs::read_to_string(path).ok()?;
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((name, (utime + stime) / TICKS))
    }
    let mut out: HashMap<String, f64> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some((name, secs)) = read(&e.path().join("stat")) {
            *out.entry(name).or_default() += secs;
        }
    }
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some((name, secs)) = read(&e.path().join("stat")) {
            *out.entry(format!("thread:{name}")).or_default() += secs;
        }
    }
    out
}

/// Where the CPU went between two readings, `wall` apart.
fn print_cpu(before: &HashMap<String, f64>, after: &HashMap<String, f64>, wall: Duration) {
    let d = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let parts = [
        ("API server and load (this process)", d("thread:api")),
        ("Kubernetes API double (this process)", d("thread:double")),
        ("2 controller processes", d("threeport")),
        ("PostgreSQL", d("postgres")),
        ("NATS", d("nats-server")),
    ];
    let total: f64 = parts.iter().map(|(_, s)| s).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "  CPU during it ({:.0} s wall, {:.0} CPU-s available on {cores} cores; {:.0} CPU-s used):",
        wall.as_secs_f64(),
        wall.as_secs_f64() * cores,
        total
    );
    for (what, secs) in parts {
        println!(
            "    {what:<40} {secs:>6.1} CPU-s  ({:>4.1} % of it)",
            100.0 * secs / total.max(f64::EPSILON)
        );
    }
}

/// The database's own counters (`pg_stat_database`): transactions committed and rows read and
/// written, to say what one instance costs the database.
fn pg_counters(url: &str) -> Vec<i64> {
    let out = Command::new("psql")
        .args([
            url,
            "-Atc",
            "SELECT xact_commit + xact_rollback, xact_rollback, tup_returned + tup_fetched, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .split('|')
            .filter_map(|v| v.parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

fn print_pg(before: &[i64], after: &[i64], instances: usize) {
    if before.len() != 6 || after.len() != 6 || instances == 0 {
        return;
    }
    let per = |i: usize| (after[i] - before[i]) as f64 / instances as f64;
    println!(
        "  PostgreSQL per instance: {:.1} transactions ({:.2} rolled back and retried), {:.0} rows read, {:.1} inserted, {:.1} updated, {:.1} deleted",
        per(0),
        per(1),
        per(2),
        per(3),
        per(4),
        per(5)
    );
}

/// The first time the watch showed each instance Healthy.
type Seen = Arc<Mutex<HashMap<u64, Instant>>>;

struct Run {
    rate: u64,
    offered: usize,
    lat: Vec<Duration>,
    create_errors: usize,
}

impl Run {
    fn p99(&self) -> Option<Duration> {
        (self.lat.len() == self.offered && !self.lat.is_empty()).then(|| pct(&self.lat, 0.99))
    }
    fn print(&self, label: &str) {
        if self.lat.is_empty() {
            println!(
                "  {label}: {}/s: none of {} became Healthy",
                self.rate, self.offered
            );
            return;
        }
        println!(
            "  {label}: {:>3}/s offered, {:>5} of {:>5} Healthy   p50 {:>6.1} ms   p90 {:>6.1} ms   p99 {:>7.1} ms   max {:>7.1} ms{}",
            self.rate,
            self.lat.len(),
            self.offered,
            ms(pct(&self.lat, 0.5)),
            ms(pct(&self.lat, 0.9)),
            ms(pct(&self.lat, 0.99)),
            ms(*self.lat.last().unwrap()),
            if self.create_errors > 0 {
                format!("   ({} creates failed)", self.create_errors)
            } else {
                String::new()
            }
        );
    }
}

/// Offer `rate` instances a second for `secs`, then wait (up to 60 s) for them to be Healthy.
async fn offer(
    api: &Client,
    seen: &Seen,
    def: u64,
    kri: u64,
    prefix: &str,
    rate: u64,
    secs: u64,
) -> Run {
    let n = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at).await;
        let api = api.clone();
        let name = format!("{prefix}-{i:05}");
        tasks.push(tokio::spawn(async move {
            let o = api
                .create(
                    kinds::WORKLOAD_INSTANCE,
                    &json!({"Name": name, "WorkloadDefinitionID": def, "KubernetesRuntimeInstanceID": kri}),
                )
                .await?;
            Ok::<_, threeport_api::ApiError>((o["ID"].as_u64().unwrap_or_default(), at.into_std()))
        }));
    }
    let mut sent = Vec::with_capacity(n);
    let mut create_errors = 0;
    for t in tasks {
        match t.await.expect("create task") {
            Ok(x) => sent.push(x),
            Err(e) => {
                if create_errors == 0 {
                    eprintln!("create failed: {e}");
                }
                create_errors += 1;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            sent.iter().filter(|(id, _)| seen.contains_key(id)).count()
        };
        if done == sent.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap();
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|h| h.saturating_duration_since(*at)))
        .collect();
    lat.sort();
    Run {
        rate,
        offered: n,
        lat,
        create_errors,
    }
}

fn controller(bin: &str, api: &str, nats: &str, log: &std::path::Path) -> Child {
    Command::new(bin)
        .args([
            "controllers",
            "--api-url",
            api,
            "--nats-url",
            nats,
            "--concurrency",
            "16",
            "--only",
            "workload",
        ])
        .env("THREEPORT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("controller log"))
        .spawn()
        .expect("start threeport controllers")
}

fn main() -> anyhow::Result<()> {
    threeport_server::install_crypto_provider();
    let rate = env_num("BENCH_RATE", 100);
    let secs = env_num("BENCH_SECS", 60);
    let sweep_secs = env_num("BENCH_SWEEP_SECS", 15);
    let sweep: Vec<u64> = std::env::var("BENCH_SWEEP")
        .unwrap_or_else(|_| "30,50,70,100,150".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let pg = Postgres::start()?;
    let db_url = pg.create_database("reconcile_bench")?;
    let nats = Nats::start()?;
    let logs = tempfile::tempdir()?;
    // The double stands for a cluster's API server, which is not Threeport's work: it runs on
    // threads of its own, so the CPU it takes is reported apart.
    let double_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("double")
        .enable_all()
        .build()?;
    let double = double_rt.block_on(KubeDouble::start(Options {
        ready_delay: Duration::ZERO,
        ..Default::default()
    }))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("api")
        .enable_all()
        .build()?;
    let mut children = Vec::new();
    let result = rt.block_on(async {
        let mut cfg = ServeConfig::new("127.0.0.1:0".parse()?, db_url.clone());
        cfg.nats_url = Some(nats.url());
        cfg.encryption_key = Some(b"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_vec());
        let server = threeport_server::start(cfg).await?;
        let api = Client::new(&server.url(), None)?;
        for i in 0..REPLICAS {
            children.push(controller(
                env!("CARGO_BIN_EXE_threeport"),
                &server.url(),
                &nats.url(),
                &logs.path().join(format!("controllers-{i}.log")),
            ));
        }
        // Both replicas registered before the clock starts.
        let registered = Instant::now();
        while api.list(kinds::CONTROLLER, &[]).await?.len() < REPLICAS {
            anyhow::ensure!(
                registered.elapsed() < Duration::from_secs(60),
                "the controller processes did not register; see {}",
                logs.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let k = |n: &str| kinds::by_name(n).unwrap();
        let krd = api
            .create(
                k("KubernetesRuntimeDefinition"),
                &json!({"Name": "double", "InfraProvider": "kind"}),
            )
            .await?;
        let kri = api
            .create(
                k("KubernetesRuntimeInstance"),
                &json!({"Name": "double", "KubernetesRuntimeDefinitionID": krd["ID"], "DefaultRuntime": true, "APIEndpoint": double.url(),
                        "CACertificate": double.ca_pem(), "Certificate": double.client_cert_pem(), "CertificateKey": double.client_key_pem()}),
            )
            .await?;
        let def = api
            .create(
                k("WorkloadDefinition"),
                &json!({"Name": "bench", "YAMLDocument": MANIFEST}),
            )
            .await?;
        let def_id = def["ID"].as_u64().unwrap();
        let kri_id = kri["ID"].as_u64().unwrap();
        while api.get(k("WorkloadDefinition"), def_id).await?["Reconciled"] != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let seen: Seen = Arc::default();
        let mut watch = Box::pin(api.watch(&[kinds::WORKLOAD_INSTANCE], None).await?);
        let recorder = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok((_, ev))) = watch.next().await {
                let healthy = threeport_api::status::status(kinds::WORKLOAD_INSTANCE, &ev.object).1
                    == Health::Ok;
                if let (true, Some(id)) = (healthy, ev.object["ID"].as_u64()) {
                    recorder.lock().unwrap().entry(id).or_insert_with(Instant::now);
                }
            }
        });

        println!(
            "apply→Healthy on PostgreSQL + NATS JetStream, API in process, {REPLICAS} `threeport controllers` processes (workload, concurrency 16 each), Kubernetes API double (3 resources per instance, readiness delay 0), all on {} cores",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        println!("  open-loop: each create is sent at its scheduled time; latency from then to the watch event showing Healthy");
        // The sweep first: a main run past saturation leaves a backlog behind that would make
        // every later rate look slow.
        let mut best = None;
        for (i, r) in sweep.iter().enumerate() {
            let run = offer(&api, &seen, def_id, kri_id, &format!("sweep{i}"), *r, sweep_secs).await;
            run.print(&format!("sweep {sweep_secs} s"));
            match run.p99() {
                Some(p) if p < Duration::from_secs(1) => best = Some(*r),
                _ => break,
            }
        }
        match best {
            Some(r) => println!("  highest offered rate with p99 < 1 s: {r}/s (of {sweep:?})"),
            None => println!("  no rate in {sweep:?} kept p99 under 1 s"),
        }

        let (cpu0, pg0, t0) = (cpu_seconds(), pg_counters(&db_url), Instant::now());
        let main = offer(&api, &seen, def_id, kri_id, "main", rate, secs).await;
        main.print(&format!("{secs} s"));
        print_cpu(&cpu0, &cpu_seconds(), t0.elapsed());
        print_pg(&pg0, &pg_counters(&db_url), main.offered);
        println!("  (target: 100/s sustained for 60 s with p50 < 50 ms, p99 < 500 ms)");

        server.shutdown().await;
        anyhow::Ok(())
    });
    double_rt.block_on(double.shutdown());
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}
