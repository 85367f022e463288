//! The workload flow on a real kind cluster. Docker and kind cannot run on the CI machines, so
//! these tests are `#[ignore]`d (they count as ignored, not passed) and run with
//! `THREEPORT_E2E_KIND=1 cargo test -p tptctl --test kind_e2e -- --ignored`; everywhere else the
//! Kubernetes API double covers the same flow (control-plane/server/tests/controllers.rs).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NEEDS_KIND: &str =
    "needs Docker and kind; run with THREEPORT_E2E_KIND=1 cargo test -- --ignored";

/// `--ignored` alone is not enough: these create kind clusters and docker images, so they also
/// want the variable, and say so instead of passing without having run.
fn require_kind_opt_in() {
    assert!(
        std::env::var("THREEPORT_E2E_KIND").as_deref() == Ok("1"),
        "{NEEDS_KIND}"
    );
}

#[test]
#[ignore = "needs Docker and kind; run with THREEPORT_E2E_KIND=1 cargo test -- --ignored"]
fn workload_on_a_real_kind_cluster() {
    require_kind_opt_in();
    let home = tempfile::tempdir().unwrap();
    let cluster = "threeport-e2e";
    sh(Command::new("kind").args(["create", "cluster", "--name", cluster, "--wait", "120s"]));
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        sh(Command::new("kind").args(["get", "kubeconfig", "--name", cluster])),
    )
    .unwrap();
    let tptctl = |args: &[&str]| {
        sh(Command::new(BIN)
            .args(args)
            .env("HOME", home.path())
            .env_remove("THREEPORT_CONFIG"))
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let result = std::panic::catch_unwind(|| {
        tptctl(&[
            "up",
            "--provider",
            "local",
            "--name",
            "kind-e2e",
            "--runtime-from-kubeconfig",
            kubeconfig.to_str().unwrap(),
        ]);
        let web = repo.join("testdata/samples/api-split.yaml");
        tptctl(&["apply", "-f", web.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let o: serde_json::Value = serde_json::from_str(&tptctl(&[
                "get",
                "workload-instances",
                "api-staging",
                "-o",
                "json",
            ]))
            .unwrap();
            if o["Status"] == "Healthy" {
                break;
            }
            assert!(Instant::now() < deadline, "never Healthy: {o}");
            std::thread::sleep(Duration::from_secs(2));
        }
        let pods = sh(Command::new("kubectl").args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "get",
            "deploy",
            "-n",
            "api-staging",
            "web",
        ]));
        assert!(pods.contains("web"));
        tptctl(&[
            "delete",
            "workload-instance",
            "api-staging",
            "--wait",
            "--timeout",
            "2m",
        ]);
        let left = Command::new("kubectl")
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "get",
                "ns",
                "api-staging",
            ])
            .output()
            .unwrap();
        assert!(!left.status.success(), "namespace removed");
    });
    let _ = Command::new(BIN)
        .args(["down", "--name", "kind-e2e", "--purge"])
        .env("HOME", home.path())
        .output();
    let _ = Command::new("kind")
        .args(["delete", "cluster", "--name", cluster])
        .output();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `tptctl up --provider kind` on real kind: build the threeport image, load it into the
/// cluster `up` creates while `up` waits for the rollouts, apply a workload, then `down`.
/// Ignored unless run as the module doc says (Docker and kind needed).
#[test]
#[ignore = "needs Docker and kind; run with THREEPORT_E2E_KIND=1 cargo test -- --ignored"]
fn up_apply_down_with_the_kind_provider() {
    require_kind_opt_in();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let image_repo = "localhost/threeport-e2e";
    let image = format!("{image_repo}/threeport:e2e");
    sh(Command::new("docker")
        .args(["build", "-t", &image, "."])
        .current_dir(&repo));
    let home = tempfile::tempdir().unwrap();
    let name = "kind-provider-e2e";
    let cluster = format!("threeport-{name}");
    let up = {
        let home = home.path().to_path_buf();
        std::thread::spawn(move || {
            Command::new(BIN)
                .args([
                    "up",
                    "--provider",
                    "kind",
                    "--name",
                    name,
                    "--image-repo",
                    image_repo,
                    "--image-tag",
                    "e2e",
                    "--port",
                    "21323",
                ])
                .env("HOME", &home)
                .env_remove("THREEPORT_CONFIG")
                .output()
                .unwrap()
        })
    };
    // Load the image as soon as the cluster exists; the rollouts wait for it.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let clusters = Command::new("kind")
            .args(["get", "clusters"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&clusters.stdout)
            .lines()
            .any(|l| l == cluster)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kind cluster {cluster} never appeared"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    sh(Command::new("kind").args(["load", "docker-image", &image, "--name", &cluster]));
    let out = up.join().unwrap();
    let tptctl = |args: &[&str]| {
        sh(Command::new(BIN)
            .args(args)
            .env("HOME", home.path())
            .env_remove("THREEPORT_CONFIG"))
    };
    let result = std::panic::catch_unwind(|| {
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tptctl(&[
            "apply",
            "-f",
            repo.join("testdata/samples/api-split.yaml")
                .to_str()
                .unwrap(),
        ]);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let o: serde_json::Value = serde_json::from_str(&tptctl(&[
                "get",
                "workload-instances",
                "api-staging",
                "-o",
                "json",
            ]))
            .unwrap();
            if o["Status"] == "Healthy" {
                break;
            }
            assert!(Instant::now() < deadline, "never Healthy: {o}");
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let down = Command::new(BIN)
        .args(["down", "--name", name])
        .env("HOME", home.path())
        .output()
        .unwrap();
    let left = Command::new("kind")
        .args(["get", "clusters"])
        .output()
        .unwrap();
    if let Err(e) = result {
        let _ = Command::new("kind")
            .args(["delete", "cluster", "--name", &cluster])
            .output();
        std::panic::resume_unwind(e);
    }
    assert!(
        down.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&left.stdout)
            .lines()
            .any(|l| l == cluster),
        "cluster deleted by down"
    );
}
