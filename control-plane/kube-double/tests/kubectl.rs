//! The double driven by the real `kubectl`, a second independent client (client-go).
//!
//! kubectl is required: if it is missing this test fails (it does not skip), so a CI image
//! without it is noticed instead of silently testing less.

mod common;

use common::start;
use std::path::{Path, PathBuf};

const KUBECTL: &str = "/usr/bin/kubectl";

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// Run kubectl against the double (its own kubeconfig and discovery cache, so nothing
    /// from the user's environment leaks in).
    async fn raw(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .await
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run kubectl, insist on success, return stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.raw(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{err}\n{out}");
        out
    }
}

#[tokio::test]
async fn kubectl_get_apply_patch_and_describe() {
    assert!(
        Path::new(KUBECTL).exists(),
        "{KUBECTL} is required for this test (install kubectl); it is not skipped on purpose"
    );
    let double = start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl {
        kubeconfig,
        cache: dir.path().join("cache"),
    };

    // get namespaces (discovery + a Table response).
    let out = k.ok(&["get", "namespaces"]).await;
    assert!(out.starts_with("NAME"), "{out}");
    for ns in ["default", "kube-system"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(ns) && l.contains("Active")),
            "{ns} in:\n{out}"
        );
    }

    // Server-side apply of a ConfigMap from a file, twice (create, then no-op).
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: default\n  labels:\n    app: demo\ndata:\n  greeting: hello\n",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let out = k.ok(&["apply", "--server-side", "-f", m]).await;
    assert!(out.contains("configmap/demo serverside-applied"), "{out}");
    k.ok(&["apply", "--server-side", "-f", m]).await;
    let json_out = k
        .ok(&[
            "get",
            "configmap",
            "demo",
            "-n",
            "default",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["data"]["greeting"], "hello");
    assert_eq!(v["metadata"]["labels"]["app"], "demo");
    assert_eq!(v["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(v["metadata"]["managedFields"][0]["operation"], "Apply");

    // A second field manager changing the same field conflicts; forcing wins.
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: default\ndata:\n  greeting: bonjour\n",
    )
    .unwrap();
    let (ok, _, err) = k
        .raw(&[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            m,
        ])
        .await;
    assert!(!ok && err.contains("conflict"), "{err}");
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        m,
    ])
    .await;
    let out = k
        .ok(&["get", "cm", "demo", "-o", "jsonpath={.data.greeting}"])
        .await;
    assert_eq!(out, "bonjour");

    // Table columns, label selectors, JSON and merge patches.
    let out = k
        .ok(&["get", "cm", "-l", "app=demo", "--show-labels"])
        .await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("demo") && l.contains("app=demo")),
        "{out}"
    );
    k.ok(&[
        "patch",
        "cm",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/extra"}]"#,
    ])
    .await;
    let out = k.ok(&["get", "cm", "demo", "-o", "jsonpath={.data}"]).await;
    assert_eq!(out, r#"{"greeting":"bonjour"}"#);

    // Typed creates (protobuf bodies), a missing namespace, namespace deletion.
    k.ok(&["create", "namespace", "team-a"]).await;
    k.ok(&[
        "create",
        "configmap",
        "x",
        "-n",
        "team-a",
        "--from-literal=a=b",
    ])
    .await;
    let (ok, _, err) = k
        .raw(&[
            "create",
            "configmap",
            "y",
            "-n",
            "missing",
            "--from-literal=a=b",
        ])
        .await;
    assert!(
        !ok && err.contains("namespaces \"missing\" not found"),
        "{err}"
    );
    k.ok(&["delete", "namespace", "team-a"]).await;
    let (ok, _, err) = k.raw(&["get", "namespace", "team-a"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");

    // A workload becomes ready; rollout status waits for it.
    let dep = dir.path().join("dep.yaml");
    std::fs::write(
        &dep,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web, image: nginx:1.27}]\n",
    )
    .unwrap();
    let d = dep.to_str().unwrap();
    k.ok(&["apply", "--server-side", "-f", d]).await;
    let out = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = k.ok(&["get", "deployment", "web"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("web") && l.contains("2/2")),
        "{out}"
    );
    // describe: the Deployment names its new ReplicaSet and the controller's events; a Pod's
    // describe shows the kubelet's events, which kubectl finds by involvedObject.
    let out = k.ok(&["describe", "deployment", "web"]).await;
    assert!(out.contains("Name:") && out.contains("web"), "{out}");
    assert!(
        out.contains("NewReplicaSet:") && out.contains("(2/2 replicas created)"),
        "{out}"
    );
    assert!(out.contains("ScalingReplicaSet"), "{out}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: bad}\n  template:\n    metadata:\n      labels: {app: bad}\n      annotations: {threeport.io/simulate-failure: ImagePullBackOff}\n    spec:\n      containers: [{name: bad, image: nginx:no-such-tag}]\n",
    )
    .unwrap();
    k.ok(&["apply", "--server-side", "-f", bad.to_str().unwrap()])
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let pods = loop {
        let out = k.ok(&["get", "pods", "-l", "app=bad"]).await;
        if out.contains("ImagePullBackOff") {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pod never showed ImagePullBackOff:\n{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let pod = pods
        .lines()
        .find(|l| l.starts_with("bad-"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a pod row")
        .to_string();
    assert!(pods.contains("0/1"), "{pods}");
    let out = k.ok(&["describe", "pod", &pod]).await;
    assert!(
        out.contains("Controlled By:") && out.contains("ReplicaSet/bad-"),
        "{out}"
    );
    assert!(
        out.contains("Reason:       ImagePullBackOff") || out.contains("ImagePullBackOff"),
        "{out}"
    );
    let events = out.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("Failed to pull image \"nginx:no-such-tag\"") && events.contains("kubelet"),
        "the kubelet's events in describe:\n{out}"
    );
    assert!(
        events.contains("Scheduled") && events.contains("default-scheduler"),
        "{out}"
    );

    k.ok(&["scale", "deployment", "web", "--replicas=3"]).await;
    let out = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(out, "3");
    double.shutdown().await;
}
