//! Throughput and latency of the REST API on the production-like backend (PostgreSQL + NATS
//! JetStream), over plain HTTP on 127.0.0.1.
//!
//! `cargo bench -p threeport-server --bench api`
//!
//! Not a test: it prints figures and asserts nothing about timing. Environment knobs:
//! `BENCH_SECS` (GET run length, default 10), `BENCH_SEED` (objects seeded first, default 1000),
//! `BENCH_CREATES` (sequential creates for the ratio, default 500), `BENCH_LARGE` (objects for
//! the second list measurement, default 20000; 0 skips it).

// Signals a child process / sets PATH for the servers it starts.
#![allow(unsafe_code)]

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threeport_server::{ServeConfig, Server};
use threeport_testkit::{Nats, Postgres};

const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const PLURAL: &str = "workload-definitions";
/// Pause after each sequential create/raw operation (see the create phase).
const SETTLE_MS: u64 = 5;
/// A small but realistic manifest, so rows and messages have a typical size.
const YAML: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n          ports:\n            - containerPort: 80\n";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------- statistics ----------

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    assert!(!v.is_empty(), "no samples");
    v.sort_unstable();
    let n = v.len();
    let pct = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    let total: Duration = v.iter().sum();
    Stats {
        n,
        p50: pct(0.50),
        p99: pct(0.99),
        max: v[n - 1],
        mean: total / n as u32,
    }
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else if m < 100.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.0} ms")
    }
}

/// 7812 -> "7 812".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// xorshift64*: random ids without sharing an RNG between tasks.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

// ---------- HTTP helpers ----------

fn definition(name: &str) -> Value {
    json!({"Name": name, "YAMLDocument": YAML})
}

async fn create(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<u64> {
    let resp = http
        .post(format!("{base}/v0/{PLURAL}"))
        .json(&definition(name))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status == 201, "POST {name}: {status} {body}");
    body["Data"][0]["ID"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no ID in {body}"))
}

/// Create `names` with `conc` requests in flight; returns the IDs and the wall time.
async fn seed(
    http: &reqwest::Client,
    base: &str,
    names: Vec<String>,
    conc: usize,
) -> anyhow::Result<(Vec<u64>, Duration)> {
    let t = Instant::now();
    let ids: Vec<anyhow::Result<u64>> = futures::stream::iter(names)
        .map(|n| async move { create(http, base, &n).await })
        .buffer_unordered(conc)
        .collect()
        .await;
    let ids = ids.into_iter().collect::<anyhow::Result<Vec<u64>>>()?;
    Ok((ids, t.elapsed()))
}

struct Load {
    conns: usize,
    n: usize,
    ok: u64,
    errors: u64,
    window: Duration,
    lat: Stats,
}

/// `conns` tasks GET random IDs back to back for `warmup + window`; only requests that start
/// after the warm-up and finish inside the window count.
async fn get_load(
    http: &reqwest::Client,
    base: &str,
    ids: Arc<Vec<u64>>,
    conns: usize,
    warmup: Duration,
    window: Duration,
) -> Load {
    let start = Instant::now();
    let from = start + warmup;
    let until = from + window;
    let mut tasks = Vec::new();
    for t in 0..conns {
        let http = http.clone();
        let base = base.to_string();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(t as u64 + 1);
            let mut lat = Vec::with_capacity(1 << 16);
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let id = ids[rng.below(ids.len())];
                let r = http.get(format!("{base}/v0/{PLURAL}/{id}")).send().await;
                let good = match r {
                    Ok(resp) => {
                        let status = resp.status();
                        resp.bytes().await.is_ok() && status == 200
                    }
                    Err(_) => false,
                };
                let t1 = Instant::now();
                if t0 >= from && t1 <= until {
                    if good {
                        ok += 1;
                        lat.push(t1 - t0);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, ok, errors)
        }));
    }
    let (mut all, mut ok, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, o, e) = t.await.expect("load task");
        all.extend(l);
        ok += o;
        errors += e;
    }
    Load {
        conns,
        n: ids.len(),
        ok,
        errors,
        window,
        lat: stats(all),
    }
}

impl Load {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
    fn print(&self, label: &str) {
        println!(
            "  {label} C={:<3} {:>7} req/s  p50 {:>8}  p99 {:>8}  max {:>8}  ({} ok, {} errors in {:.0} s)",
            self.conns,
            thousands(self.rate().round() as u64),
            ms(self.lat.p50),
            ms(self.lat.p99),
            ms(self.lat.max),
            thousands(self.ok),
            self.errors,
            self.window.as_secs_f64()
        );
    }
}

/// `reps` sequential GETs of `path` (after a few unmeasured ones); checks the item count.
async fn timed_gets(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    reps: usize,
    want_items: usize,
) -> anyhow::Result<Stats> {
    let mut lat = Vec::with_capacity(reps);
    for i in 0..reps + 5 {
        let t0 = Instant::now();
        let resp = http.get(format!("{base}{path}")).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let dt = t0.elapsed();
        anyhow::ensure!(status == 200, "GET {path}: {status}");
        if i == 0 {
            let v: Value = serde_json::from_slice(&body)?;
            let got = v["Data"].as_array().map(Vec::len).unwrap_or(0);
            anyhow::ensure!(
                got == want_items,
                "GET {path}: {got} items, expected {want_items}"
            );
        }
        if i >= 5 {
            lat.push(dt);
        }
    }
    Ok(stats(lat))
}

struct ListFigures {
    n: u64,
    page: u64,
    page_lat: Stats,
    name_lat: Stats,
}

async fn list_figures(
    http: &reqwest::Client,
    base: &str,
    n: u64,
    some_name: &str,
) -> anyhow::Result<ListFigures> {
    let page = (n / 50 / 2).max(1);
    let page_lat = timed_gets(
        http,
        base,
        &format!("/v0/{PLURAL}?page={page}&size=50"),
        100,
        50,
    )
    .await?;
    let name_lat = timed_gets(
        http,
        base,
        &format!("/v0/{PLURAL}?name={some_name}"),
        100,
        1,
    )
    .await?;
    Ok(ListFigures {
        n,
        page,
        page_lat,
        name_lat,
    })
}

impl ListFigures {
    fn print(&self) {
        println!(
            "  N={:>7}  ?page={}&size=50: p50 {}  p99 {}  mean {}   ?name=…: p50 {}  p99 {}  mean {}",
            thousands(self.n),
            self.page,
            ms(self.page_lat.p50),
            ms(self.page_lat.p99),
            ms(self.page_lat.mean),
            ms(self.name_lat.p50),
            ms(self.name_lat.p99),
            ms(self.name_lat.mean),
        );
    }
}

/// Wait until the relay has published every notification (so a later phase does not pay for
/// an earlier phase's backlog).
async fn outbox_drained(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND subject IS NOT NULL",
        )
        .fetch_one(pool)
        .await?;
        if n == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{n} notifications still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------- the benchmark ----------

struct Env {
    base: String,
    db_url: String,
    nats_url: String,
    store_pool: sqlx::AnyPool,
    store: Arc<threeport_server::store::Store>,
}

async fn bench(env: Env) -> anyhow::Result<()> {
    let secs = env_num("BENCH_SECS", 10);
    let n_seed = env_num("BENCH_SEED", 1000) as usize;
    let k = env_num("BENCH_CREATES", 500) as usize;
    let n_large = env_num("BENCH_LARGE", 20_000) as usize;
    let base = env.base.as_str();
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .http1_only()
        .build()?;
    let pg = PgPoolOptions::new()
        .max_connections(8)
        .connect(&env.db_url)
        .await?;

    // 2. Seed.
    println!("\n== seed ==");
    let names: Vec<String> = (0..n_seed).map(|i| format!("bench-wd-{i:06}")).collect();
    let (mut ids, took) = seed(&http, base, names, 32).await?;
    println!(
        "  {} WorkloadDefinitions via POST /v0/{PLURAL} (32 in flight): {:.1} s, {} creates/s",
        thousands(ids.len() as u64),
        took.as_secs_f64(),
        thousands((ids.len() as f64 / took.as_secs_f64()).round() as u64)
    );
    outbox_drained(&pg).await?;

    // 3. GET by id.
    println!(
        "\n== GET /v0/{PLURAL}/{{id}} (random ids from {} seeded; keep-alive, HTTP/1.1) ==",
        thousands(ids.len() as u64)
    );
    println!(
        "  note: the load generator runs on the same 2 cores as the server, PostgreSQL and NATS"
    );
    let id_set = Arc::new(ids.clone());
    let mut get_runs = Vec::new();
    for conns in [16usize, 64] {
        let l = get_load(
            &http,
            base,
            id_set.clone(),
            conns,
            Duration::from_secs(1),
            Duration::from_secs(secs),
        )
        .await;
        l.print("API");
        get_runs.push(l);
    }
    // Reference: the same point reads straight from PostgreSQL (no HTTP, no server).
    let raw_get =
        raw_select_load(&pg, id_set.clone(), 64, Duration::from_secs(secs.min(5))).await?;
    println!(
        "  reference, SELECT by id through sqlx PgPool (8 conns, 64 tasks, no HTTP): {} rows/s  p50 {}  p99 {}",
        thousands((raw_get.0 as f64 / raw_get.1.as_secs_f64()).round() as u64),
        ms(raw_get.2.p50),
        ms(raw_get.2.p99)
    );

    // 4. Create latency vs the raw work a create needs.
    println!(
        "\n== create latency, sequential (one at a time, interleaved, {SETTLE_MS} ms pause after each) =="
    );
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (id BIGINT PRIMARY KEY, body TEXT)")
        .execute(&pg)
        .await?;
    let nats = async_nats::connect(&env.nats_url).await?;
    let js = jetstream::new(nats);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "benchStream".into(),
        subjects: vec!["bench.>".into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create benchStream: {e}"))?;
    let raw_body = definition("raw-000000").to_string();
    let mut api_lat = Vec::with_capacity(k);
    let mut raw_lat = Vec::with_capacity(k);
    let mut raw_any_lat = Vec::with_capacity(k);
    let mut store_lat = Vec::with_capacity(k);
    let mut livez_lat = Vec::with_capacity(k);
    let wd_kind =
        threeport_api::kinds::by_name("WorkloadDefinition").expect("WorkloadDefinition kind");
    let warm = 20;
    let mut raw_id = 0i64;
    // Interleaved, so all series see the same machine state; the first `warm` rounds are not
    // counted. Each operation is followed by a pause: an API create wakes the outbox relay (a
    // JetStream publish and an UPDATE) and the watch tail after its 201, and that work must not
    // land on whichever measurement comes next.
    let settle = Duration::from_millis(SETTLE_MS);
    for i in 0..k + warm {
        let name = format!("bench-create-{i:06}");
        let t0 = Instant::now();
        let id = create(&http, base, &name).await?;
        let api = t0.elapsed();
        ids.push(id);
        tokio::time::sleep(settle).await;

        raw_id += 1;
        let t0 = Instant::now();
        raw_op(RawPool::Pg(&pg), &js, raw_id, &raw_body).await?;
        let raw = t0.elapsed();
        tokio::time::sleep(settle).await;

        raw_id += 1;
        let t0 = Instant::now();
        raw_op(RawPool::Any(&env.store_pool), &js, raw_id, &raw_body).await?;
        let raw_any = t0.elapsed();
        tokio::time::sleep(settle).await;

        // Breakdown: the create's transaction alone (the body the handler would pass; notify
        // off so the relay's 500 ms poll does not publish behind the measurements), and the
        // HTTP round trip alone.
        let mut body = match definition(&format!("bench-store-{i:06}")) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        body.insert("Reconciled".into(), Value::Bool(false));
        let t0 = Instant::now();
        let stored = env
            .store
            .insert(wd_kind, &body, false)
            .await
            .map_err(|e| anyhow::anyhow!("store.insert: {e}"))?;
        let store_t = t0.elapsed();
        ids.push(stored.id as u64);
        tokio::time::sleep(settle).await;

        let t0 = Instant::now();
        let r = http.get(format!("{base}/livez")).send().await?;
        anyhow::ensure!(r.status() == 200, "livez: {}", r.status());
        r.bytes().await?;
        let livez = t0.elapsed();
        tokio::time::sleep(settle).await;
        if i >= warm {
            api_lat.push(api);
            raw_lat.push(raw);
            raw_any_lat.push(raw_any);
            store_lat.push(store_t);
            livez_lat.push(livez);
        }
    }
    let api = stats(api_lat);
    let raw = stats(raw_lat);
    let raw_any = stats(raw_any_lat);
    let store_s = stats(store_lat);
    let livez = stats(livez_lat);
    let ratio_p50 = api.p50.as_secs_f64() / raw.p50.as_secs_f64();
    let ratio_mean = api.mean.as_secs_f64() / raw.mean.as_secs_f64();
    println!(
        "  API  POST /v0/{PLURAL} → 201       ({} runs): p50 {}  mean {}  p99 {}",
        api.n,
        ms(api.p50),
        ms(api.mean),
        ms(api.p99)
    );
    println!(
        "  raw  INSERT bench_raw (PgPool) + JetStream publish, ack awaited: p50 {}  mean {}  p99 {}",
        ms(raw.p50),
        ms(raw.mean),
        ms(raw.p99)
    );
    println!(
        "  raw' same, INSERT through the server's store pool (AnyPool):  p50 {}  mean {}  p99 {}",
        ms(raw_any.p50),
        ms(raw_any.mean),
        ms(raw_any.p99)
    );
    println!(
        "  breakdown: Store::insert() called directly (the create's transaction, no HTTP): p50 {}  mean {}",
        ms(store_s.p50),
        ms(store_s.mean)
    );
    println!(
        "  breakdown: GET /livez (HTTP round trip, no database):                        p50 {}  mean {}",
        ms(livez.p50),
        ms(livez.mean)
    );
    println!(
        "  ratio api/raw: p50 {ratio_p50:.2}×  mean {ratio_mean:.2}×   (api/raw' p50 {:.2}×)",
        api.p50.as_secs_f64() / raw_any.p50.as_secs_f64()
    );
    outbox_drained(&pg).await?;

    // 5. Lists at N objects.
    println!("\n== list latency (100 sequential GETs each) ==");
    let mut lists = Vec::new();
    let n_now = ids.len() as u64;
    let l = list_figures(&http, base, n_now, "bench-wd-000500").await?;
    l.print();
    lists.push(l);
    let mut large_get = None;
    if n_large > ids.len() {
        let extra = n_large - ids.len();
        let names: Vec<String> = (n_seed..n_seed + extra)
            .map(|i| format!("bench-wd-{i:06}"))
            .collect();
        let (more, took) = seed(&http, base, names, 32).await?;
        println!(
            "  seeded {} more through the API (32 in flight): {:.1} s, {} creates/s",
            thousands(more.len() as u64),
            took.as_secs_f64(),
            thousands((more.len() as f64 / took.as_secs_f64()).round() as u64)
        );
        ids.extend(more);
        outbox_drained(&pg).await?;
        let l = list_figures(
            &http,
            base,
            ids.len() as u64,
            &format!("bench-wd-{:06}", n_large / 2),
        )
        .await?;
        l.print();
        if std::env::var_os("BENCH_EXPLAIN").is_some() {
            explain_list(&pg, l.page).await?;
        }
        lists.push(l);
        let g = get_load(
            &http,
            base,
            Arc::new(ids.clone()),
            64,
            Duration::from_secs(1),
            Duration::from_secs(secs),
        )
        .await;
        println!("  GET by id with N={}:", thousands(ids.len() as u64));
        g.print("API");
        large_get = Some(g);
    }

    // 6. Summary.
    println!(
        "\n== summary (PostgreSQL + NATS JetStream, plain HTTP on 127.0.0.1, {} cores shared by server, load generator, PostgreSQL and NATS) ==",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for g in get_runs.iter().chain(large_get.iter()) {
        println!(
            "GET by id: {} req/s, p50 {}, p99 {}, max {} ({} conns, N={})   [target ≥ 5 000 req/s: {}]",
            thousands(g.rate().round() as u64),
            ms(g.lat.p50),
            ms(g.lat.p99),
            ms(g.lat.max),
            g.conns,
            thousands(g.n as u64),
            if g.rate() >= 5000.0 { "met" } else { "MISSED" }
        );
    }
    println!(
        "create/raw ratio: {ratio_p50:.2}× p50, {ratio_mean:.2}× mean (api p50 {} mean {}, raw p50 {} mean {})   [target ≤ 1.5×: {}]",
        ms(api.p50),
        ms(api.mean),
        ms(raw.p50),
        ms(raw.mean),
        if ratio_p50 <= 1.5 { "met" } else { "MISSED" }
    );
    for l in &lists {
        println!(
            "list N={}: page {} of 50 p50 {} (p99 {}), ?name= p50 {} (p99 {})",
            thousands(l.n),
            l.page,
            ms(l.page_lat.p50),
            ms(l.page_lat.p99),
            ms(l.name_lat.p50),
            ms(l.name_lat.p99)
        );
    }
    Ok(())
}

/// What a create fundamentally needs: one row in PostgreSQL (autocommit INSERT), then one
/// JetStream publish whose ack is awaited. The message carries a Nats-Msg-Id like the relay's.
enum RawPool<'a> {
    Pg(&'a sqlx::PgPool),
    Any(&'a sqlx::AnyPool),
}

async fn raw_op(
    pool: RawPool<'_>,
    js: &jetstream::Context,
    id: i64,
    body: &str,
) -> anyhow::Result<()> {
    const INSERT: &str = "INSERT INTO bench_raw (id, body) VALUES ($1, $2)";
    match pool {
        RawPool::Pg(p) => {
            sqlx::query(INSERT).bind(id).bind(body).execute(p).await?;
        }
        RawPool::Any(p) => {
            sqlx::query(INSERT).bind(id).bind(body).execute(p).await?;
        }
    }
    let payload = json!({
        "Operation": "Created",
        "CreationTime": 1_700_000_000u64,
        "Object": {"ID": id, "ResourceVersion": 1, "Name": "raw", "YAMLDocument": YAML, "Reconciled": false},
        "ObjectVersion": "v0",
    })
    .to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.to_string().as_str());
    js.publish_with_headers("bench.create", headers, payload.into())
        .await
        .map_err(|e| anyhow::anyhow!("publish: {e}"))?
        .await
        .map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
    Ok(())
}

/// Diagnostics (BENCH_EXPLAIN=1): PostgreSQL's plans for the two queries behind a list page,
/// as the server sends them (prepared, so after five runs possibly a generic plan).
async fn explain_list(pg: &sqlx::PgPool, page: u64) -> anyhow::Result<()> {
    let mut conn = pg.acquire().await?;
    let offset = (page - 1) * 50;
    for sql in [
        "PREPARE bench_page(text, bigint, bigint) AS SELECT id, version, created_at, updated_at, body \
         FROM objects WHERE kind = $1 ORDER BY id LIMIT $2 OFFSET $3",
        "PREPARE bench_count(text) AS SELECT COUNT(*) FROM objects WHERE kind = $1",
    ] {
        sqlx::raw_sql(sql).execute(&mut *conn).await?;
    }
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await?;
        for q in [
            format!(
                "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_page('WorkloadDefinition', 50, {offset})"
            ),
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_count('WorkloadDefinition')".to_string(),
        ] {
            println!("  -- {mode}: {q}");
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(q))
                .fetch_all(&mut *conn)
                .await?;
            for (line,) in rows {
                println!("     {line}");
            }
        }
    }
    sqlx::raw_sql("DEALLOCATE ALL; RESET plan_cache_mode")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `tasks` tasks SELECT random rows by id through a plain PgPool for `window`.
async fn raw_select_load(
    pg: &sqlx::PgPool,
    ids: Arc<Vec<u64>>,
    tasks: usize,
    window: Duration,
) -> anyhow::Result<(u64, Duration, Stats)> {
    let until = Instant::now() + window;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let pg = pg.clone();
        let ids = ids.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + t as u64);
            let mut lat = Vec::new();
            while Instant::now() < until {
                let id = ids[rng.below(ids.len())] as i64;
                let t0 = Instant::now();
                let row: Option<(i64, String)> =
                    sqlx::query_as("SELECT id, body FROM objects WHERE id = $1 AND kind = $2")
                        .bind(id)
                        .bind("WorkloadDefinition")
                        .fetch_optional(&pg)
                        .await?;
                anyhow::ensure!(row.is_some(), "object {id} missing");
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok((all.len() as u64, window, stats(all)))
}

fn main() -> anyhow::Result<()> {
    threeport_server::install_crypto_provider();
    if let Ok(tools) = std::fs::canonicalize(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv-tools/bin"
    )) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![tools];
        dirs.extend(std::env::split_paths(&path));
        // SAFETY: single-threaded here; no runtime or other thread exists yet.
        unsafe { std::env::set_var("PATH", std::env::join_paths(dirs)?) };
    }

    println!(
        "threeport API benchmark: PostgreSQL + NATS JetStream backend, plain HTTP on 127.0.0.1"
    );
    let t = Instant::now();
    let pg = Postgres::start()?;
    let db_url = pg.create_database("threeport_bench")?;
    let nats = Nats::start()?;
    println!(
        "  PostgreSQL {} (fsync=off, testkit), nats-server {}, started in {:.1} s",
        pg.port(),
        nats.url(),
        t.elapsed().as_secs_f64()
    );

    // The server gets its own runtime (as in its own process, tokio's default of one worker per
    // core); the load generator another. All share the same cores.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("loadgen")
        .enable_all()
        .build()?;

    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut cfg = ServeConfig::new(listen, db_url.clone());
    cfg.nats_url = Some(nats.url());
    cfg.encryption_key = Some(KEY_B64.as_bytes().to_vec());
    let server: Server = server_rt.block_on(threeport_server::start(cfg))?;
    println!(
        "  control plane at {} ({} server worker threads, {} load-generator threads, {} cores)",
        server.url(),
        cores,
        cores,
        cores
    );

    let env = Env {
        base: server.url(),
        db_url,
        nats_url: nats.url(),
        store_pool: server.store.pool().clone(),
        store: server.store.clone(),
    };
    let result = client_rt.block_on(bench(env));
    server_rt.block_on(server.shutdown());
    drop(client_rt);
    drop(server_rt);
    drop(nats);
    drop(pg);
    result
}
