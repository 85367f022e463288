//! `cargo bench -p tptctl --bench scale`: how the API and `tptctl` behave as the store grows, on
//! the embedded backend (SQLite) and on PostgreSQL + NATS, with the API as its own process
//! (`tptctl threeport serve --no-controllers`, so its memory can be read and nothing else runs
//! in it).
//!
//! 1. SQLite only: `tptctl apply` of 1 000 new objects, next to raw inserts of the same rows
//!    (object + outbox row, one transaction each, the same schema and `synchronous`) in the same
//!    run, and the ratio between them.
//! 2. Both backends, at 1k, 10k and 100k WorkloadDefinitions (`BENCH_LEVELS`): list page latency
//!    for the first, middle and last page by cursor (`?after=`) and by offset (`?page=`),
//!    `tptctl get workload-definitions` as a table and `-o name` (time to its first line and to
//!    its last), and
//!    the API process's RSS. Side by side at the end, with the 100k/1k ratio.
//!
//! Not a test: it prints figures and asserts nothing about timing. `BENCH_BACKENDS=sqlite` (or
//! `postgres`) runs one backend.

use futures::StreamExt;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use threeport_api::{Client, kinds};

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const MIGRATION: &str = include_str!("../../control-plane/server/migrations/0001_objects.sql");
const YAML: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  A: b\n";
const PAGE: usize = 50;
const SAMPLES: usize = 40;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Api {
    child: Child,
    url: String,
    config: PathBuf,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    /// The API process, plain HTTP on loopback, and a tptctl config entry for it.
    async fn start(dir: &Path, database_url: &str, nats: Option<&str>) -> anyhow::Result<Api> {
        let port = threeport_testkit::free_port();
        let key = dir.join("key");
        std::fs::write(&key, KEY_B64)?;
        let mut cmd = Command::new(BIN);
        cmd.args(["threeport", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--database-url", database_url, "--no-controllers"])
            .arg("--encryption-key-file")
            .arg(&key)
            .env("THREEPORT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("api.log"))?);
        if let Some(n) = nats {
            cmd.args(["--nats-url", n]);
        }
        let child = cmd.spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "CurrentControlPlane: bench\nControlPlanes:\n- Name: bench\n  Provider: kind\n  Genesis: true\n  AuthEnabled: false\n  APIServer: 127.0.0.1:{port}\n  CACert: ''\n  Credentials: []\n"
            ),
        )?;
        let api = Api { child, url, config };
        let client = api.client()?;
        let t = Instant::now();
        while client
            .list_page(kinds::AWS_ACCOUNT, &[], 1, 1)
            .await
            .is_err()
        {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "the API did not answer; see {}",
                dir.join("api.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(api)
    }

    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, None)?)
    }

    fn tptctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--threeport-config").arg(&self.config).args(args);
        c
    }

    /// Resident and peak resident memory of the API process, in MB.
    fn rss_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// `tptctl apply` of 1 000 new objects, and raw inserts of the same rows.
async fn apply_vs_raw(dir: &Path) -> anyhow::Result<()> {
    let db = dir.join("apply.db");
    let api = Api::start(dir, &format!("sqlite://{}", db.display()), None).await?;
    let mut yaml = String::new();
    for i in 0..1000 {
        yaml.push_str(&format!(
            "AwsAccount:\n  Name: acct-{i:04}\n  AccountID: \"{:012}\"\n  DefaultRegion: us-east-1\n---\n",
            100_000_000_000u64 + i
        ));
    }
    let file = dir.join("accounts.yaml");
    std::fs::write(&file, yaml)?;
    let run = |what: &str| {
        let t = Instant::now();
        let out = api
            .tptctl(&["apply", "-f", file.to_str().unwrap()])
            .output()
            .expect("tptctl apply");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let created = run("create");
    let unchanged = run("unchanged");

    // The same rows, written as the API writes them (the object and its outbox row in one
    // transaction, one transaction per object, one connection), without HTTP, JSON checks,
    // encryption or the notification relay.
    let objects = api.client()?.list(kinds::AWS_ACCOUNT, &[]).await?;
    drop(api);
    let raw_path = dir.join("raw.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&raw_path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    sqlx::raw_sql(MIGRATION).execute(&pool).await?;
    let t = Instant::now();
    for (i, o) in objects.iter().enumerate() {
        let mut tx = pool.begin().await?;
        let body = o.to_string();
        sqlx::query("INSERT INTO objects (id, kind, name, version, created_at, updated_at, body) VALUES (?, 'AwsAccount', ?, 1, 0, 0, ?)")
            .bind(i as i64 + 1)
            .bind(o["Name"].as_str())
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO outbox (seq, kind, object_id, event, stream, subject, payload, created_at) VALUES (?, 'AwsAccount', ?, 'created', 'threeport', 'aws-account.created', ?, 0)")
            .bind(i as i64 + 1)
            .bind(i as i64 + 1)
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let raw = t.elapsed();
    let n = objects.len() as f64;
    println!("\n== tptctl apply, embedded (SQLite WAL, synchronous=NORMAL) ==");
    println!(
        "  1 000 new objects: {:.2} s = {:.0} objects/s (target ≥ 500/s); unchanged re-apply {:.2} s",
        created.as_secs_f64(),
        n / created.as_secs_f64(),
        unchanged.as_secs_f64()
    );
    println!(
        "  raw SQLite inserts of the same {n} rows + outbox rows, same synchronous: {:.3} s = {:.0} rows/s; tptctl apply / raw = {:.1}× (target ≤ 3×)",
        raw.as_secs_f64(),
        n / raw.as_secs_f64(),
        created.as_secs_f64() / raw.as_secs_f64()
    );
    Ok(())
}

#[derive(Clone, Copy)]
struct Lat {
    p50: Duration,
    p99: Duration,
}

async fn timed(http: &reqwest::Client, url: &str) -> anyhow::Result<Lat> {
    let mut v = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let r = http.get(url).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
        let _ = r.bytes().await?;
        v.push(t.elapsed());
    }
    v.sort();
    Ok(Lat {
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
    })
}

struct Level {
    n: usize,
    /// (first, middle, last) by cursor, then by offset.
    cursor: [Lat; 3],
    offset: [Lat; 3],
    get_first_line: Duration,
    get_total: Duration,
    get_lines: usize,
    table_first_line: Duration,
    table_total: Duration,
    rss: (f64, f64),
}

async fn measure(api: &Api, ids: &[u64]) -> anyhow::Result<Level> {
    let http = reqwest::Client::new();
    let n = ids.len();
    let plural = kinds::WORKLOAD_DEFINITION.plural;
    let base = format!("{}/v0/{plural}", api.url);
    let pages = n.div_ceil(PAGE);
    let at = |page: usize| {
        if page == 0 {
            None
        } else {
            Some(ids[page * PAGE - 1])
        }
    };
    let mut cursor = Vec::new();
    let mut offset = Vec::new();
    for page in [0, pages / 2, pages - 1] {
        let url = match at(page) {
            None => format!("{base}?size={PAGE}"),
            Some(after) => format!("{base}?after={after}&size={PAGE}"),
        };
        cursor.push(timed(&http, &url).await?);
        offset.push(timed(&http, &format!("{base}?page={}&size={PAGE}", page + 1)).await?);
    }
    // `tptctl get`, as a table and `-o name`: time to the first line on stdout and to the end.
    let table = time_get(api, &["get", plural])?;
    let (first, lines, get_total) = time_get(api, &["get", plural, "-o", "name"])?;
    Ok(Level {
        n,
        cursor: [cursor[0], cursor[1], cursor[2]],
        offset: [offset[0], offset[1], offset[2]],
        get_first_line: first,
        get_total,
        get_lines: lines,
        table_first_line: table.0,
        table_total: table.2,
        rss: api.rss_mb(),
    })
}

/// Run `tptctl ARGS`: when its first line came, how many lines, when it ended.
fn time_get(api: &Api, args: &[&str]) -> anyhow::Result<(Duration, usize, Duration)> {
    use std::io::BufRead;
    let t = Instant::now();
    let mut child = api
        .tptctl(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut first = None;
    let mut lines = 0;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        line?;
        first.get_or_insert_with(|| t.elapsed());
        lines += 1;
    }
    anyhow::ensure!(child.wait()?.success(), "tptctl {args:?} failed");
    Ok((first.unwrap_or_default(), lines, t.elapsed()))
}

async fn growth(
    backend: &str,
    dir: &Path,
    url: &str,
    nats: Option<&str>,
    levels: &[usize],
) -> anyhow::Result<Vec<Level>> {
    let api = Api::start(dir, url, nats).await?;
    let client = api.client()?;
    let mut ids: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    println!("\n== {backend}: growth ==");
    for &n in levels {
        let t = Instant::now();
        let start = ids.len();
        let created: Vec<anyhow::Result<u64>> = futures::stream::iter(start..n)
            .map(|i| {
                let client = client.clone();
                async move {
                    let o = client
                        .create(
                            kinds::WORKLOAD_DEFINITION,
                            &json!({"Name": format!("wd-{i:06}"), "YAMLDocument": YAML}),
                        )
                        .await?;
                    o["ID"]
                        .as_u64()
                        .ok_or_else(|| anyhow::anyhow!("no ID in {o}"))
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for id in created {
            ids.push(id?);
        }
        ids.sort_unstable();
        println!(
            "  seeded to {n} through the API (16 in flight): {} more in {:.1} s",
            n - start,
            t.elapsed().as_secs_f64()
        );
        let level = measure(&api, &ids).await?;
        print_level(&level);
        out.push(level);
    }
    Ok(out)
}

fn print_level(l: &Level) {
    let f = |x: &[Lat; 3]| {
        x.iter()
            .map(|l| format!("{:.2}/{:.2}", ms(l.p50), ms(l.p99)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "  N={:>6}  cursor first/middle/last p50/p99 ms: {}   offset: {}",
        l.n,
        f(&l.cursor),
        f(&l.offset)
    );
    println!(
        "            tptctl get -o name: first line {:.0} ms, all {} lines {:.2} s; as a table: first line {:.0} ms, all {:.2} s   API RSS {:.0} MB (peak {:.0} MB)",
        ms(l.get_first_line),
        l.get_lines,
        l.get_total.as_secs_f64(),
        ms(l.table_first_line),
        l.table_total.as_secs_f64(),
        l.rss.0,
        l.rss.1
    );
}

fn summary(backend: &str, levels: &[Level]) {
    println!("\n  {backend}, side by side:");
    print!("  {:<34}", "");
    for l in levels {
        print!("{:>12}", format!("N={}", l.n));
    }
    println!("{:>12}", "last/first");
    let row = |label: &str, f: &dyn Fn(&Level) -> f64, unit: &str| {
        print!("  {label:<34}");
        for l in levels {
            print!("{:>12}", format!("{:.2}{unit}", f(l)));
        }
        let (a, b) = (f(&levels[0]), f(levels.last().unwrap()));
        println!("{:>12}", format!("{:.2}×", b / a));
    };
    for (i, which) in ["first", "middle", "last"].iter().enumerate() {
        row(
            &format!("cursor {which} page p99 (ms)"),
            &|l| ms(l.cursor[i].p99),
            "",
        );
    }
    // p99s of about a millisecond swing with whatever else the 2 cores run; the medians show
    // the growth itself.
    for (i, which) in ["first", "middle", "last"].iter().enumerate() {
        row(
            &format!("cursor {which} page p50 (ms)"),
            &|l| ms(l.cursor[i].p50),
            "",
        );
    }
    for (i, which) in ["first", "middle", "last"].iter().enumerate() {
        row(
            &format!("offset {which} page p99 (ms)"),
            &|l| ms(l.offset[i].p99),
            "",
        );
    }
    row("tptctl get: first line (ms)", &|l| ms(l.get_first_line), "");
    row(
        "tptctl get: all lines (s)",
        &|l| l.get_total.as_secs_f64(),
        "",
    );
    row(
        "tptctl get (table): first line (ms)",
        &|l| ms(l.table_first_line),
        "",
    );
    row(
        "tptctl get (table): all lines (s)",
        &|l| l.table_total.as_secs_f64(),
        "",
    );
    row("API RSS (MB)", &|l| l.rss.0, "");
    println!(
        "  targets: every page < 10 ms at 100k and 100k/1k ≤ 2; tptctl get of 100k < 3 s, streamed; API RSS < 200 MB"
    );
}

fn main() -> anyhow::Result<()> {
    let levels: Vec<usize> = std::env::var("BENCH_LEVELS")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "scale: the API as its own process (`tptctl threeport serve --no-controllers`), plain HTTP on 127.0.0.1, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    rt.block_on(async {
        if backends.contains("sqlite") {
            let dir = tempfile::tempdir()?;
            apply_vs_raw(dir.path()).await?;
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("scale.db").display());
            let l = growth("SQLite (embedded)", dir.path(), &url, None, &levels).await?;
            summary("SQLite (embedded)", &l);
        }
        if backends.contains("postgres") {
            let pg = threeport_testkit::Postgres::start()?;
            let url = pg.create_database("scale_bench")?;
            let nats = threeport_testkit::Nats::start()?;
            let dir = tempfile::tempdir()?;
            let l = growth(
                "PostgreSQL + NATS",
                dir.path(),
                &url,
                Some(&nats.url()),
                &levels,
            )
            .await?;
            summary("PostgreSQL + NATS", &l);
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
