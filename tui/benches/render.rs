//! Frame render time, event→screen time and resident memory at 10 000 and 100 000 objects.
//!
//! `cargo bench -p threeport-tui --bench render`. Targets at 100 000 objects: < 10 ms per frame,
//! event→screen < 50 ms, < 250 MB resident. Each size runs in a process of its own (this bench
//! re-runs itself), so the memory figure is that size's alone; `BENCH_OBJECTS=10000,100000`.
//! Frames are drawn with ratatui's `TestBackend` at 200x50 (the cost of building the frame; the
//! terminal only receives the cells that changed).

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};
use threeport_api::WatchEvent;
use threeport_api::kinds::{self, Kind};
use threeport_tui::app::{App, core_kinds};
use threeport_tui::keymap::Keymap;
use threeport_tui::net::NetMsg;
use threeport_tui::ui;
use time::OffsetDateTime;

const FRAMES: usize = 200;
const W: u16 = 200;
const H: u16 = 50;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn ts(now: OffsetDateTime, secs_ago: i64) -> String {
    (now - time::Duration::seconds(secs_ago))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Per 10 000 objects: 100 runtimes (100 in all), 1 000 definitions, 4 000 instances, 2 000
/// resources, 1 500 workload events and the rest events; a tenth of the instances failing with
/// warnings.
fn objects(now: OffsetDateTime, total: usize) -> Vec<(&'static Kind, Vec<Value>)> {
    let f = (total / 10_000).max(1);
    let mut id = 1_000_000u64;
    let mut next = || {
        id += 1;
        id
    };
    let runtimes: Vec<Value> = (0..100)
        .map(|i| json!({"ID": next(), "Name": format!("runtime-{i:03}"), "KubernetesRuntimeDefinitionID": 1,
                         "Status": "Healthy", "Reconciled": true, "CreatedAt": ts(now, 90_000)}))
        .collect();
    let rt_ids: Vec<u64> = runtimes.iter().map(|o| o["ID"].as_u64().unwrap()).collect();
    let defs: Vec<Value> = (0..1000 * f)
        .map(|i| json!({"ID": next(), "Name": format!("app-{i:04}"), "YAMLDocument": "kind: Deployment\n".repeat(20),
                         "Reconciled": true, "CreatedAt": ts(now, 7200 + i as i64)}))
        .collect();
    let mut insts = Vec::new();
    let mut resources = Vec::new();
    let mut wevents = Vec::new();
    let mut events = Vec::new();
    for (d, def) in defs.iter().enumerate() {
        for j in 0..4 {
            let failing = (d * 4 + j) % 10 == 0;
            let iid = next();
            insts.push(json!({"ID": iid, "Name": format!("app-{d:04}-{j}"), "WorkloadDefinitionID": def["ID"],
                "KubernetesRuntimeInstanceID": rt_ids[(d + j) % rt_ids.len()],
                "Status": if failing { "Degraded" } else { "Healthy" },
                "StatusReason": if failing { "1 of 2 resources not ready" } else { "" },
                "Reconciled": true, "CreatedAt": ts(now, 3600 + j as i64)}));
            if resources.len() < 2000 * f && (failing || j == 0) {
                for (k, kind) in ["Deployment", "Service"].iter().enumerate() {
                    let rid = next();
                    resources.push(json!({"ID": rid, "WorkloadInstanceID": iid, "Reconciled": !(failing && k == 0),
                        "JSONDefinition": {"kind": kind, "metadata": {"name": format!("app-{d:04}-{j}")}},
                        "CreatedAt": ts(now, 3600)}));
                    if failing && k == 0 && wevents.len() < 1500 * f {
                        wevents.push(json!({"ID": next(), "WorkloadInstanceID": iid, "WorkloadResourceInstanceID": rid,
                            "Type": "Warning", "Reason": "BackOff", "Message": "Back-off pulling image \"nginx:9.99\"",
                            "Timestamp": ts(now, 60)}));
                    }
                }
            }
        }
    }
    let total = runtimes.len() + defs.len() + insts.len() + resources.len() + wevents.len();
    for i in 0..(10_000 * f - total) {
        events.push(json!({"ID": next(), "ObjectKind": "WorkloadInstance",
            "ObjectID": insts[i % insts.len()]["ID"], "Type": if i % 3 == 0 { "Warning" } else { "Normal" },
            "Reason": "Reconciled", "Note": format!("reconcile attempt {i}"), "EventTime": ts(now, i as i64)}));
    }
    vec![
        (kinds::KUBERNETES_RUNTIME_INSTANCE, runtimes),
        (kinds::WORKLOAD_DEFINITION, defs),
        (kinds::WORKLOAD_INSTANCE, insts),
        (kinds::WORKLOAD_RESOURCE_INSTANCE, resources),
        (kinds::WORKLOAD_EVENT, wevents),
        (kinds::EVENT, events),
    ]
}

struct Stats {
    mean: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let p99 = v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1];
    Stats {
        mean,
        p99,
        max: *v.last().unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn report(what: &str, s: Stats) {
    println!(
        "{what:<58} mean {:>10}  p99 {:>10}  max {:>10}",
        ms(s.mean),
        ms(s.p99),
        ms(s.max)
    );
}

fn main() {
    let Some(total) = std::env::var("BENCH_ONE").ok().and_then(|v| v.parse().ok()) else {
        let sizes = std::env::var("BENCH_OBJECTS").unwrap_or_else(|_| "10000,100000".into());
        for n in sizes.split(',') {
            println!("\n== {n} objects ==");
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .env("BENCH_ONE", n.trim())
                .status()
                .expect("run one size");
            assert!(status.success(), "{n} objects: {status}");
        }
        return;
    };
    one(total);
}

fn one(total: usize) {
    let now = OffsetDateTime::now_utc();
    let rss_start = rss_mb();
    let data = objects(now, total);
    let count: usize = data.iter().map(|(_, v)| v.len()).sum();
    let mut app = App::new("bench", "https://127.0.0.1:1323", false, Keymap::default());
    for k in core_kinds() {
        app.on_net(NetMsg::Snapshot {
            kind: k,
            objects: vec![],
        });
    }
    let t = Instant::now();
    for (k, objects) in data {
        app.on_net(NetMsg::Snapshot { kind: k, objects });
    }
    app.on_net(NetMsg::Connected);
    let load = t.elapsed();
    app.resize(W, H);
    let t = Instant::now();
    app.refresh();
    let build = t.elapsed();
    let mut term = Terminal::new(TestBackend::new(W, H)).unwrap();

    println!(
        "objects loaded: {count} (rows in the workloads view: {})",
        app.row_count()
    );
    println!(
        "load (apply the lists): {}; build the workloads rows: {}",
        ms(load),
        ms(build)
    );

    // 1. Draw only: the cursor moves down one row per frame.
    let mut draws = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        app.on_action(threeport_tui::keymap::Action::Down);
        let t = Instant::now();
        term.draw(|f| ui::draw(f, &app, now)).unwrap();
        draws.push(t.elapsed());
        black_box(term.backend());
    }
    report(
        &format!("workloads view, draw, {W}x{H}, {FRAMES} frames"),
        stats(draws),
    );

    // 2. A watch event per frame: apply it, rebuild the rows (sort, filter, clamp), draw.
    let wi = kinds::WORKLOAD_INSTANCE;
    let ids: Vec<u64> = app
        .store
        .objects(wi)
        .map(|(id, _)| id)
        .take(FRAMES)
        .collect();
    let mut live = Vec::with_capacity(FRAMES);
    for (n, id) in ids.iter().enumerate() {
        let mut o = app.store.get(wi, *id).unwrap().clone();
        o["Status"] = json!(if n % 2 == 0 { "Failed" } else { "Healthy" });
        o["ResourceVersion"] = json!(1000 + n);
        let t = Instant::now();
        app.on_net(NetMsg::Event(WatchEvent {
            operation: "updated".into(),
            kind: wi.name.into(),
            object: o,
        }));
        app.refresh();
        term.draw(|f| ui::draw(f, &app, now)).unwrap();
        live.push(t.elapsed());
    }
    report(
        "workloads view, watch event + rebuild rows + draw",
        stats(live),
    );

    // 3. The other big views.
    app.run_command("events");
    app.refresh();
    let mut ev = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        app.on_action(threeport_tui::keymap::Action::Down);
        let t = Instant::now();
        term.draw(|f| ui::draw(f, &app, now)).unwrap();
        ev.push(t.elapsed());
    }
    report(
        &format!("events view ({} rows), draw", app.row_count()),
        stats(ev),
    );
    app.run_command("workload-instances");
    app.refresh();
    let mut wis = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        app.on_action(threeport_tui::keymap::Action::PageDown);
        let t = Instant::now();
        term.draw(|f| ui::draw(f, &app, now)).unwrap();
        wis.push(t.elapsed());
    }
    report(
        &format!(":workload-instances ({} rows), draw", app.row_count()),
        stats(wis),
    );

    let rss = rss_mb();
    println!("resident memory (VmRSS): {rss:.1} MB (at start: {rss_start:.1} MB)");
    black_box(&app);
}
