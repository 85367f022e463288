//! `cargo bench -p tptctl --bench startup`: how fast the CLI starts, next to kubectl, and how long
//! `tptctl up --provider local` takes to reach a ready control plane. Prints figures; asserts nothing.

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        if !f() {
            return None;
        }
        times.push(t.elapsed());
    }
    Some(median(times))
}

fn main() {
    let home = tempfile::tempdir().expect("temp HOME");
    let tptctl = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("HOME", home.path())
            .env_remove("THREEPORT_CONFIG")
            .output()
            .expect("run tptctl")
    };
    // Warm the page cache once.
    tptctl(&["version"]);
    let ours =
        time_runs(30, || tptctl(&["version"]).status.success()).expect("tptctl version runs");
    println!(
        "tptctl version (no control plane):   median {:>7.2} ms over 30 runs",
        ours.as_secs_f64() * 1e3
    );
    let kubectl = time_runs(30, || {
        Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    match kubectl {
        Some(k) => println!(
            "kubectl version --client:            median {:>7.2} ms over 30 runs  → tptctl/kubectl = {:.2}× (target ≤ 0.2×)",
            k.as_secs_f64() * 1e3,
            ours.as_secs_f64() / k.as_secs_f64()
        ),
        None => println!("kubectl version --client:            kubectl not found; no comparison"),
    }

    let mut ups = Vec::new();
    for i in 0..5 {
        let name = format!("bench{i}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let t = Instant::now();
        let out = tptctl(&[
            "up",
            "--provider",
            "local",
            "--name",
            &name,
            "--port",
            &port,
        ]);
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = tptctl(&["version"]);
        assert!(
            String::from_utf8_lossy(&v.stdout).contains("Server: "),
            "server answers after up"
        );
        ups.push(took);
        tptctl(&["down", "--name", &name, "--purge"]);
    }
    println!(
        "tptctl up --provider local → ready:  median {:>7.2} ms, max {:.2} ms over 5 runs (target < 2 s)",
        median(ups.clone()).as_secs_f64() * 1e3,
        ups.iter().max().unwrap().as_secs_f64() * 1e3
    );
}
