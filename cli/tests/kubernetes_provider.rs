//! `tptctl up/down --provider kubernetes` into a cluster that already exists: the Kubernetes API
//! double, with objects of its own that must outlive `down`. The real installer applies the
//! real manifests through kube-rs. No pod runs in the double, so once the install's rollouts
//! are done the test starts what the API Deployment would run (a threeport API from the
//! certificates `up` generated) at the address passed with `--api-address`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, PostParams};
use kube_api_double::{KubeDouble, Options};
use std::time::Duration;
use threeport_testkit::{Tptctl, eventually_blocking};

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");
const NS: &str = "threeport-control-plane";

/// The cluster that already exists: the double, its rollouts ready after 100 ms.
async fn double() -> KubeDouble {
    KubeDouble::start(Options {
        ready_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .expect("the Kubernetes API double starts")
}

/// What the API Deployment would run, started once `up` has installed (its state file says
/// so): `tptctl serve-local` on the control plane's data dir. Killed on drop.
struct StandInApi(std::process::Child);

impl StandInApi {
    fn when_installed(t: &Tptctl, name: &str, port: u16) -> std::thread::JoinHandle<StandInApi> {
        let dir = t.home().join(".threeport").join(name);
        let cmd = t.cmd(&[
            "serve-local",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        std::thread::spawn(move || {
            let mut cmd = cmd;
            eventually_blocking(Duration::from_secs(120), "up to finish installing", || {
                let state = std::fs::read_to_string(dir.join("install-state.json")).ok()?;
                let v: serde_json::Value = serde_json::from_str(&state).ok()?;
                (v["installed"] == true).then_some(())
            });
            StandInApi(
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("serve-local starts"),
            )
        })
    }
}

impl Drop for StandInApi {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_installs_into_an_existing_cluster_and_down_removes_only_that() {
    let double = double().await;
    let kube = threeport_testkit::kube_client(&double.kubeconfig()).await;
    // What the cluster already runs, which `down` must leave alone.
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "team-a"}})).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kube.clone(), "team-a");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            serde_json::json!({"metadata": {"name": "keep-me"}, "data": {"k": "v"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let before: Vec<String> = namespaces
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();

    let t = Tptctl::new(BIN, std::env::current_dir().unwrap());
    let kubeconfig = t.home().join("cluster.kubeconfig");
    double.write_kubeconfig(&kubeconfig).unwrap();
    let kc = kubeconfig.to_str().unwrap().to_string();
    let port = threeport_testkit::free_port();
    let address = format!("127.0.0.1:{port}");

    // A cluster that is not kind/k3d/minikube cannot be given a local image: a clear error
    // before anything is made.
    let up_edge = |extra: &[&str]| {
        let mut args = vec!["up", "--provider", "kubernetes", "--name", "edge"];
        args.extend(["--kubeconfig", &kc, "--api-address", &address]);
        args.extend(extra);
        tokio::task::block_in_place(|| t.run(&args))
    };
    let r = up_edge(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("error:") && r.stderr.contains("--image-repo REGISTRY/REPOSITORY"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was left behind"), "{}", r.stderr);
    assert!(namespaces.get_opt(NS).await.unwrap().is_none());
    assert!(!t.home().join(".threeport/edge").exists());

    // With a published image: installed, registered, and the config entry written.
    let api = StandInApi::when_installed(&t, "edge", port);
    let up = up_edge(&[
        "--image-repo",
        "ghcr.io/threeport",
        "--image-tag",
        "0.1.0",
        "--timeout",
        "60s",
    ]);
    let _api = api.join().unwrap();
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(
        up.stderr.contains("is ready in context kube-double"),
        "{}",
        up.stderr
    );
    let deployments = Api::<Deployment>::namespaced(kube.clone(), NS)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(!deployments.items.is_empty());
    // Every threeport container runs the published image asked for.
    let images: Vec<String> = deployments
        .items
        .iter()
        .flat_map(|d| {
            let v = serde_json::to_value(d).unwrap();
            v["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .filter(|i| i.contains("threeport"))
        .collect();
    assert!(!images.is_empty());
    assert!(
        images
            .iter()
            .all(|i| i == "ghcr.io/threeport/threeport:0.1.0"),
        "{images:?}"
    );
    let svc = Api::<Service>::namespaced(kube.clone(), NS)
        .get("threeport-api-server")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&svc).unwrap()["spec"]["type"].as_str(),
        Some("LoadBalancer"),
        "a cluster other than kind gets a LoadBalancer"
    );
    let config = t.config();
    assert!(config.contains("Provider: kubernetes"), "{config}");
    assert!(
        config.contains(&format!("APIServer: {address}")),
        "{config}"
    );
    let runtimes = tokio::task::block_in_place(|| {
        t.json(&["get", "kubernetes-runtime-instances", "-o", "json"])
    });
    assert!(
        runtimes.to_string().contains("kube-double"),
        "the cluster is registered as a runtime: {runtimes}"
    );

    // Another control plane into the same cluster: refused, and the first one untouched.
    let other = tokio::task::block_in_place(|| {
        t.run(&[
            "up",
            "--provider",
            "kubernetes",
            "--name",
            "other",
            "--kubeconfig",
            &kc,
            "--api-address",
            "127.0.0.1:1",
            "--image-repo",
            "ghcr.io/threeport",
            "--image-tag",
            "0.1.0",
        ])
    });
    assert_eq!(other.code, 1, "{}", other.stderr);
    assert!(
        other
            .stderr
            .contains("namespace threeport-control-plane already exists"),
        "{}",
        other.stderr
    );
    assert!(namespaces.get_opt(NS).await.unwrap().is_some());

    eprintln!("{}\n---\n{}\n---\n{}", r.stderr, up.stderr, other.stderr);
    // down: the install's namespace observed going, everything that was there before kept.
    let down = tokio::task::block_in_place(|| t.run(&["down", "--name", "edge"]));
    assert_eq!(down.code, 0, "{}", down.stderr);
    eprintln!("---\n{}", down.stderr);
    assert!(namespaces.get_opt(NS).await.unwrap().is_none());
    let after: Vec<String> = namespaces
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(after, before, "down leaves the cluster's own namespaces");
    assert_eq!(
        cms.get("keep-me").await.unwrap().data.unwrap()["k"],
        "v",
        "and their contents"
    );
    assert!(!t.config().contains("Name: edge"), "{}", t.config());
    assert!(!t.home().join(".threeport/edge").exists());
}

/// `--image-repo R` without a tag: `up` builds the image from this tptctl, pushes it to
/// `R/threeport:<tag>` in a real registry (Debian's docker-registry), and the control plane
/// runs exactly that reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_pushes_the_image_it_built_to_the_given_registry() {
    let registry = threeport_testkit::Registry::start();
    let double = double().await;
    let kube = threeport_testkit::kube_client(&double.kubeconfig()).await;
    let t = Tptctl::new(BIN, std::env::current_dir().unwrap());
    let kubeconfig = t.home().join("cluster.kubeconfig");
    double.write_kubeconfig(&kubeconfig).unwrap();
    let port = threeport_testkit::free_port();
    let address = format!("127.0.0.1:{port}");
    let api = StandInApi::when_installed(&t, "pushed", port);
    let up = tokio::task::block_in_place(|| {
        t.run(&[
            "up",
            "--provider",
            "kubernetes",
            "--name",
            "pushed",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--api-address",
            &address,
            "--image-repo",
            registry.addr(),
            "--plain-http",
            "--timeout",
            "60s",
        ])
    });
    let _api = api.join().unwrap();
    assert_eq!(up.code, 0, "{}", up.stderr);
    let api_deployment = Api::<Deployment>::namespaced(kube.clone(), NS)
        .get("threeport-api-server")
        .await
        .unwrap();
    let image =
        serde_json::to_value(&api_deployment).unwrap()["spec"]["template"]["spec"]["containers"][0]
            ["image"]
            .as_str()
            .unwrap()
            .to_string();
    let prefix = format!("{}/threeport:", registry.addr());
    assert!(image.starts_with(&prefix), "{image}");
    // The registry really holds it.
    let out = std::process::Command::new(threeport_testkit::skopeo())
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect docker://{image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(inspect["Digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        up.stderr.contains(&format!("Pushing image {image}")),
        "{}",
        up.stderr
    );
    tokio::task::block_in_place(|| t.ok(&["down", "--name", "pushed"]));
}

/// A kind context without --image-repo: the image built from this tptctl is loaded with
/// `kind load image-archive --name <cluster>` (a stand-in `kind` records the call), run by its
/// reference with `IfNotPresent`, and the API is a NodePort, as on any kind cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_context_gets_the_built_image_loaded_with_kind() {
    let double = double().await;
    let kube = threeport_testkit::kube_client(&double.kubeconfig()).await;
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("kind.log");
    let kind = bin.path().join("kind");
    std::fs::write(
        &kind,
        "#!/bin/bash\necho \"$*\" >> \"$KIND_LOG\"\n[ \"$1 $2\" = \"load image-archive\" ] && [ -f \"$3\" ] && exit 0\necho \"stand-in kind: unexpected: $*\" >&2; exit 2\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let t = Tptctl::new(BIN, std::env::current_dir().unwrap())
        .with_env("PATH", path)
        .with_env("KIND_LOG", &log);
    // The double's kubeconfig, with the names kind gives its contexts.
    let kubeconfig = t.home().join("kind.kubeconfig");
    std::fs::write(
        &kubeconfig,
        double.kubeconfig().replace("kube-double", "kind-dev"),
    )
    .unwrap();
    let port = threeport_testkit::free_port();
    let api = StandInApi::when_installed(&t, "onkind", port);
    let up = tokio::task::block_in_place(|| {
        t.run(&[
            "up",
            "--provider",
            "kubernetes",
            "--name",
            "onkind",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--api-address",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "60s",
        ])
    });
    let _api = api.join().unwrap();
    assert_eq!(up.code, 0, "{}", up.stderr);
    let calls = std::fs::read_to_string(&log).unwrap();
    let loads: Vec<&str> = calls
        .lines()
        .filter(|l| l.starts_with("load image-archive "))
        .collect();
    assert_eq!(loads.len(), 1, "{calls}");
    assert!(loads[0].ends_with(" --name dev"), "{calls}");
    let deployment = Api::<Deployment>::namespaced(kube.clone(), NS)
        .get("threeport-api-server")
        .await
        .unwrap();
    let container =
        &serde_json::to_value(&deployment).unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["image"]
            .as_str()
            .unwrap()
            .starts_with("threeport.local/threeport:"),
        "{container}"
    );
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    let svc = Api::<Service>::namespaced(kube.clone(), NS)
        .get("threeport-api-server")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&svc).unwrap()["spec"]["type"],
        "NodePort"
    );
    tokio::task::block_in_place(|| t.ok(&["down", "--name", "onkind"]));
}
