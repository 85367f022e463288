//! `tptctl up/down --provider kind` with a stand-in `kind` (and `docker`) on PATH. The stand-in
//! records its arguments and hands out a kubeconfig for the Kubernetes API double, so the real
//! installer applies the real manifests through the real kube-rs client. No pod can run in the
//! double, so on `kind create cluster` the stand-in also starts what the API Deployment would run
//! (a threeport API on the mapped host port, from the certificates `up` generated).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::Api;
use kube_api_double::{KubeDouble, Options};
use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

const KIND: &str = r#"#!/bin/bash
# Stand-in for kind: records arguments, fails where told, serves the double's kubeconfig.
echo "$*" >> "$KIND_LOG"
name=""
config=""
args=("$@")
for ((i=0; i<${#args[@]}; i++)); do
  case "${args[$i]}" in
    --name) name="${args[$((i+1))]}" ;;
    --config) config="${args[$((i+1))]}" ;;
  esac
done
case "$1 $2" in
  "version ") echo "kind v0.23.0 stand-in"; exit 0 ;;
  "create cluster")
    [ "$KIND_FAIL_AT" = create ] && { echo "ERROR: failed to create cluster: simulated" >&2; exit 1; }
    port=$(grep -E 'hostPort:' "$config" | head -1 | sed -E 's/.*hostPort: *//')
    dir="$HOME/.threeport/${name#threeport-}"
    "$TPTCTL" serve-local --dir "$dir" --listen "127.0.0.1:$port" >> "$HOME/stand-in-api.log" 2>&1 &
    echo $! > "$HOME/stand-in-api.pid"
    exit 0 ;;
  "load image-archive")
    # A real node imports the archive with containerd; the stand-in only checks it is there.
    [ -f "$3" ] || { echo "ERROR: no such archive: $3" >&2; exit 1; }
    exit 0 ;;
  "get kubeconfig")
    [ "$KIND_FAIL_AT" = kubeconfig ] && { echo "ERROR: simulated" >&2; exit 1; }
    cat "$KIND_KUBECONFIG"; exit 0 ;;
  "delete cluster")
    [ -f "$HOME/stand-in-api.pid" ] && kill "$(cat "$HOME/stand-in-api.pid")" 2>/dev/null
    rm -f "$HOME/stand-in-api.pid"
    echo "Deleting cluster \"$name\" ..." >&2; exit 0 ;;
esac
echo "stand-in kind: unexpected arguments: $*" >&2
exit 2
"#;

const DOCKER: &str = "#!/bin/bash\necho 27.0.0-stand-in\n";

struct Fixture {
    home: tempfile::TempDir,
    bin: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
}

impl Fixture {
    fn new(double: &KubeDouble) -> Fixture {
        let home = tempfile::tempdir().unwrap();
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for (name, text) in [("kind", KIND), ("docker", DOCKER)] {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let kubeconfig = home.path().join("double.kubeconfig");
        double.write_kubeconfig(&kubeconfig).unwrap();
        let log = home.path().join("kind.log");
        Fixture {
            home,
            bin,
            kubeconfig,
            log,
        }
    }

    fn run(&self, args: &[&str], fail_at: Option<&str>) -> (i32, String, String) {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(BIN)
            .args(args)
            .env("HOME", self.home.path())
            .env("PATH", path)
            .env_remove("THREEPORT_CONFIG")
            .env("KIND_LOG", &self.log)
            .env("KIND_KUBECONFIG", &self.kubeconfig)
            .env("KIND_FAIL_AT", fail_at.unwrap_or(""))
            .env("TPTCTL", BIN)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn kind_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.home.path().join(".threeport/config.yaml")).unwrap_or_default()
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.home.path().join(".threeport").join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.home.path().join("stand-in-api.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

async fn kube(double: &KubeDouble) -> kube::Client {
    threeport_testkit::kube_client(&double.kubeconfig()).await
}

fn port() -> String {
    threeport_testkit::free_port().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_with_kind() {
    let double = KubeDouble::start(Options {
        ready_delay: std::time::Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let f = Fixture::new(&double);
    let p = port();
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &[
                "up",
                "--provider",
                "kind",
                "--name",
                "dev",
                "--port",
                &p,
                "--image-tag",
                "test",
            ],
            None,
        )
    });
    assert_eq!(code, 0, "up failed:\n{err}");
    for phase in [
        "Creating kind cluster threeport-dev",
        "Installing the control plane",
        "Waiting for rollouts",
        "Waiting for the API",
        "Registering",
    ] {
        assert!(
            err.contains(&format!("✓ {phase}")),
            "phase {phase:?} in:\n{err}"
        );
    }
    let log = f.kind_log();
    assert!(
        log.contains("create cluster --name threeport-dev --config"),
        "{log}"
    );
    let kind_config = std::fs::read_to_string(f.data_dir("dev").join("kind-config.yaml")).unwrap();
    assert!(
        kind_config.contains(&format!("hostPort: {p}"))
            && kind_config.contains("containerPort: 30323"),
        "{kind_config}"
    );
    // The gateway's node ports, on the host's HTTP and HTTPS ports (`--gateway-ports`).
    let cfg: serde_json::Value = serde_yaml::from_str(&kind_config).unwrap();
    let mappings: Vec<(i64, i64)> = cfg["nodes"][0]["extraPortMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["containerPort"].as_i64().unwrap(),
                m["hostPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        mappings.contains(&(30080, 80)) && mappings.contains(&(30443, 443)),
        "{kind_config}"
    );

    // Every control-plane object exists in the cluster, through the real kube-rs client.
    let k = kube(&double).await;
    let ns = "threeport-control-plane";
    assert!(
        Api::<Namespace>::all(k.clone())
            .get_opt(ns)
            .await
            .unwrap()
            .is_some()
    );
    for s in ["crdb", "nats"] {
        let sts = Api::<StatefulSet>::namespaced(k.clone(), ns)
            .get(s)
            .await
            .unwrap_or_else(|e| panic!("statefulset {s}: {e}"));
        assert!(
            sts.status.unwrap().ready_replicas.unwrap_or(0) >= 1,
            "rollout of {s} was waited on"
        );
    }
    for d in [
        "threeport-api-server",
        "threeport-workload-controller",
        "threeport-kubernetes-runtime-controller",
    ] {
        let dep = Api::<Deployment>::namespaced(k.clone(), ns)
            .get(d)
            .await
            .unwrap_or_else(|e| panic!("deployment {d}: {e}"));
        assert!(
            dep.status.unwrap().ready_replicas.unwrap_or(0) >= 1,
            "rollout of {d} was waited on"
        );
        let container = dep.spec.template.spec.unwrap().containers[0].clone();
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/threeport/threeport:test")
        );
        // Each controller Deployment runs only its own controllers.
        let args = container.args.unwrap_or_default();
        if let Some(only) = d
            .strip_prefix("threeport-")
            .and_then(|c| c.strip_suffix("-controller"))
        {
            assert_eq!(args[..3], ["controllers", "--only", only], "{d}: {args:?}");
        }
    }
    let svc = Api::<Service>::namespaced(k.clone(), ns)
        .get("threeport-api-server")
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("NodePort"));
    for s in [
        "threeport-encryption-key",
        "threeport-api-tls",
        "crdb-tls",
        "threeport-workload-controller-tls",
    ] {
        assert!(
            Api::<Secret>::namespaced(k.clone(), ns)
                .get_opt(s)
                .await
                .unwrap()
                .is_some(),
            "secret {s}"
        );
    }

    // The runtime and the control plane are registered, and the config is written.
    let (code, out, err) = tokio::task::block_in_place(|| {
        f.run(&["get", "kubernetes-runtime-instances", "-o", "json"], None)
    });
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Name"], "threeport-dev");
    assert_eq!(v["DefaultRuntime"], true);
    let (_, out, _) = tokio::task::block_in_place(|| {
        f.run(&["get", "control-plane-instances", "-o", "json"], None)
    });
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["Name"].as_str(), v["Genesis"].as_bool()),
        (Some("dev"), Some(true))
    );
    let cfg = f.config();
    assert!(
        cfg.contains("Provider: kind") && cfg.contains(&format!("APIServer: 127.0.0.1:{p}")),
        "{cfg}"
    );

    // Re-running up says so.
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &["up", "--provider", "kind", "--name", "dev", "--port", &p],
            None,
        )
    });
    assert_eq!(code, 0);
    assert!(err.contains("already running"), "{err}");

    let (code, _, err) = tokio::task::block_in_place(|| f.run(&["down", "--name", "dev"], None));
    assert_eq!(code, 0, "{err}");
    assert!(f.kind_log().contains("delete cluster --name threeport-dev"));
    assert!(
        !f.config().contains("Name: dev"),
        "entry removed: {}",
        f.config()
    );
    assert!(!f.data_dir("dev").exists());
    double.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_phase_leaves_no_config_entry() {
    let double = KubeDouble::start(Options::default()).await.unwrap();
    // (where it fails, what the log must say)
    for (fail_at, expect) in [
        ("create", "failed to create cluster"),
        ("kubeconfig", "get kubeconfig"),
        ("install", "Installing the control plane"),
    ] {
        let f = Fixture::new(&double);
        if fail_at == "install" {
            // The cluster's API server goes away after the cluster is created.
            std::fs::write(
                &f.kubeconfig,
                double
                    .kubeconfig()
                    .replace(&double.url(), "https://127.0.0.1:9"),
            )
            .unwrap();
        }
        let p = port();
        let (code, _, err) = tokio::task::block_in_place(|| {
            f.run(
                &["up", "--provider", "kind", "--name", "bad", "--port", &p],
                Some(fail_at),
            )
        });
        assert_eq!(code, 1, "{fail_at}: {err}");
        assert!(err.contains(expect), "{fail_at}: {err}");
        assert!(
            err.contains("nothing was left behind") || err.contains("left behind:"),
            "{fail_at}: the log says what was left:\n{err}"
        );
        assert!(
            !f.config().contains("Name: bad"),
            "{fail_at}: no config entry"
        );
        assert!(!f.data_dir("bad").exists(), "{fail_at}: data dir removed");
        let created = f.kind_log().contains("create cluster");
        let deleted = f.kind_log().contains("delete cluster --name threeport-bad");
        assert_eq!(
            created && fail_at != "create",
            deleted,
            "{fail_at}: a created cluster is rolled back:\n{}",
            f.kind_log()
        );
    }
    // --retain keeps the failed cluster and says how to resume or clean up.
    let f = Fixture::new(&double);
    let p = port();
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &[
                "up",
                "--provider",
                "kind",
                "--name",
                "keep",
                "--port",
                &p,
                "--retain",
            ],
            Some("kubeconfig"),
        )
    });
    assert_eq!(code, 1);
    assert!(
        err.contains("tptctl up --provider kind --name keep")
            && err.contains("tptctl down --name keep"),
        "{err}"
    );
    assert!(!f.kind_log().contains("delete cluster"));
    assert!(
        f.data_dir("keep").join("install-state.json").exists(),
        "state kept for resume"
    );
    // Resume: the cluster is not created again.
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &["up", "--provider", "kind", "--name", "keep", "--port", &p],
            None,
        )
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        f.kind_log().matches("create cluster").count(),
        1,
        "resumed, not recreated:\n{}",
        f.kind_log()
    );
    assert!(f.config().contains("Name: keep"));
    let _ = tokio::task::block_in_place(|| f.run(&["down", "--name", "keep"], None));
    double.shutdown().await;
}

/// A control-plane rollout that never completes (the double's kubelet keeps the API's Pods
/// unready, as a failing readiness probe would) fails `up` at the rollout wait, naming the
/// Deployment and what its Pod reports, and rolls everything back. With a ready-at-once
/// double this could not fail, so it is what shows that `up` really waits for rollouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_never_becomes_ready_fails_up_naming_the_deployment() {
    let double = KubeDouble::start(Options {
        ready_delay: std::time::Duration::from_millis(100),
        never_ready_images: vec!["ghcr.io/threeport/threeport:never-ready".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let f = Fixture::new(&double);
    let p = port();
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &[
                "up",
                "--provider",
                "kind",
                "--name",
                "stuck",
                "--port",
                &p,
                "--image-tag",
                "never-ready",
                "--timeout",
                "3s",
            ],
            None,
        )
    });
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("✓ Installing the control plane"), "{err}");
    assert!(err.contains("✗ Waiting for rollouts"), "{err}");
    // The first Deployment of the install, its state, and the kubelet's reason from its Pod.
    for part in [
        "Deployment threeport-control-plane/threeport-api-server did not roll out within 3s: 0 of 1 updated replicas available",
        "; Pod threeport-api-server-",
        "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503",
    ] {
        assert!(err.contains(part), "{part:?} in:\n{err}");
    }
    // The StatefulSets before it (other images) did roll out; nothing else was blamed.
    assert!(
        !err.contains("StatefulSet threeport-control-plane/"),
        "{err}"
    );
    assert!(
        f.kind_log()
            .contains("delete cluster --name threeport-stuck"),
        "rolled back:\n{}",
        f.kind_log()
    );
    assert!(!f.config().contains("Name: stuck"), "{}", f.config());
    assert!(!f.data_dir("stuck").exists());
    double.shutdown().await;
}

/// Without --image-repo/--image-tag, `up` builds the control plane image from this tptctl and
/// loads it into the cluster (`kind load image-archive`) before the install, and every
/// control-plane container runs exactly that reference with `IfNotPresent`. The load is a
/// recorded step: a re-run after a failure does not load again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_builds_its_own_image_and_loads_it_once() {
    let double = KubeDouble::start(Options {
        ready_delay: std::time::Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let f = Fixture::new(&double);
    // First run: the image is built and loaded, then the install fails (the cluster's API
    // is unreachable); --retain keeps the cluster and the state.
    std::fs::write(
        &f.kubeconfig,
        double
            .kubeconfig()
            .replace(&double.url(), "https://127.0.0.1:9"),
    )
    .unwrap();
    let p = port();
    let up = [
        "up",
        "--provider",
        "kind",
        "--name",
        "img",
        "--port",
        &p,
        "--timeout",
        "5s",
    ];
    let (code, _, err) =
        tokio::task::block_in_place(|| f.run(&[&up[..], &["--retain"]].concat(), None));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("✓ Building the control plane image"), "{err}");
    let loaded: Vec<String> = f
        .kind_log()
        .lines()
        .filter(|l| l.starts_with("load image-archive "))
        .map(str::to_string)
        .collect();
    assert_eq!(loaded.len(), 1, "{}", f.kind_log());
    let archive = loaded[0].split_whitespace().nth(2).unwrap().to_string();
    assert!(loaded[0].ends_with("--name threeport-img"), "{}", loaded[0]);
    assert!(
        archive.starts_with(
            &f.home
                .path()
                .join(".threeport/images")
                .display()
                .to_string()
        ),
        "cached under ~/.threeport/images: {archive}"
    );
    // The loaded file is an OCI archive that skopeo (not our code) accepts.
    let skopeo = std::process::Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{archive}")])
        .output()
        .expect("skopeo runs (apt-get install -y skopeo)");
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    let digest = serde_json::from_slice::<serde_json::Value>(&skopeo.stdout).unwrap()["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let reference = format!(
        "threeport.local/threeport:{}-{}",
        env!("CARGO_PKG_VERSION"),
        &digest.trim_start_matches("sha256:")[..12]
    );
    assert!(
        err.contains(&format!("✓ Loading image {reference} into threeport-img")),
        "{err}"
    );

    // The re-run resumes: the image is not loaded again, and the install uses it.
    double.write_kubeconfig(&f.kubeconfig).unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| f.run(&up, None));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("Loading image"), "{err}");
    assert_eq!(
        f.kind_log().matches("load image-archive").count(),
        1,
        "{}",
        f.kind_log()
    );
    let k = kube(&double).await;
    let deployments = Api::<Deployment>::namespaced(k.clone(), "threeport-control-plane")
        .list(&Default::default())
        .await
        .unwrap();
    let mut ours = 0;
    for d in deployments.items {
        let spec = d.spec.template.spec.unwrap();
        for c in spec
            .init_containers
            .unwrap_or_default()
            .iter()
            .chain(&spec.containers)
        {
            assert_eq!(c.image.as_deref(), Some(reference.as_str()), "{}", c.name);
            assert_eq!(
                c.image_pull_policy.as_deref(),
                Some("IfNotPresent"),
                "{}",
                c.name
            );
            ours += 1;
        }
    }
    assert!(
        ours >= 4,
        "the API (with its migrate init container) and both controllers"
    );
    let _ = tokio::task::block_in_place(|| f.run(&["down", "--name", "img"], None));
    double.shutdown().await;
}

#[test]
fn doctor_reports_missing_tools() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["doctor"])
        .env("HOME", home.path())
        .env("PATH", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("✗ docker") && text.contains("✗ kind") && text.contains("kind.sigs.k8s.io"),
        "{text}"
    );
}

/// `up --provider local --runtime-from-kubeconfig` and `runtime register`: an existing cluster
/// becomes the default runtime, and a workload applied with the real binary ends Healthy on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_cluster_as_runtime_runs_a_workload() {
    let double = KubeDouble::start(Options {
        ready_delay: std::time::Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let f = Fixture::new(&double);
    let p = port();
    let kc = f.kubeconfig.to_str().unwrap().to_string();
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &[
                "up",
                "--provider",
                "local",
                "--name",
                "laptop",
                "--port",
                &p,
                "--runtime-from-kubeconfig",
                &kc,
            ],
            None,
        )
    });
    assert_eq!(code, 0, "{err}");
    let get = |kind: &str, name: &str| -> serde_json::Value {
        let (code, out, err) = f.run(&["get", kind, name, "-o", "json"], None);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let wait = |kind: &str, name: &str, want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let o = get(kind, name);
            if o["Status"] == want {
                return o;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind}/{name} never {want}: {o}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let rt = tokio::task::block_in_place(|| {
        wait("kubernetes-runtime-instances", "kube-double", "Healthy")
    });
    assert_eq!(rt["DefaultRuntime"], true);
    assert_eq!(rt["CertificateKey"], "*** redacted ***");
    // A second registration of the same cluster under another name, not default.
    let (code, out, err) = tokio::task::block_in_place(|| {
        f.run(
            &["runtime", "register", "second", "--kubeconfig", &kc],
            None,
        )
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("kubernetes-runtime-instance/second created"),
        "{out}"
    );
    // The samples' split workload names no runtime: it goes to the default one and ends Healthy.
    let samples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/samples/api-split.yaml");
    let (code, _, err) =
        tokio::task::block_in_place(|| f.run(&["apply", "-f", samples.to_str().unwrap()], None));
    assert_eq!(code, 0, "{err}");
    let wi = tokio::task::block_in_place(|| wait("workload-instances", "api-staging", "Healthy"));
    assert_eq!(wi["KubernetesRuntimeInstanceID"], rt["ID"]);
    let k = kube(&double).await;
    assert!(
        Api::<Deployment>::namespaced(k.clone(), "api-staging")
            .get_opt("web")
            .await
            .unwrap()
            .is_some()
    );
    let (code, _, err) = tokio::task::block_in_place(|| {
        f.run(
            &[
                "delete",
                "workload-instance",
                "api-staging",
                "--wait",
                "--timeout",
                "60s",
            ],
            None,
        )
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        Api::<Deployment>::namespaced(k.clone(), "api-staging")
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
    );
    let _ = tokio::task::block_in_place(|| f.run(&["down", "--name", "laptop", "--purge"], None));
    double.shutdown().await;
}
