//! The workload flow on a real kind cluster. Docker and kind cannot run on the CI machines, so
//! this runs only with `THREEPORT_E2E_KIND=1`; everywhere else the Kubernetes API double covers
//! the same flow (control-plane/server/tests/controllers.rs).

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

#[test]
fn workload_on_a_real_kind_cluster() {
    if std::env::var("THREEPORT_E2E_KIND").as_deref() != Ok("1") {
        eprintln!("not run: set THREEPORT_E2E_KIND=1 on a machine with Docker and kind");
        return;
    }
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
