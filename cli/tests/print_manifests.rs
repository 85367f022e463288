//! `tptctl up --print-manifests`: the install as YAML documents, in the order `up` applies
//! them, valid for Kubernetes 1.31 by the official schemas (`kubernetes-validate --strict`,
//! PyPI), with Secrets only when asked for.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

fn print(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["up", "--print-manifests"])
        .args(args)
        .env("HOME", home.path())
        .env_remove("THREEPORT_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kinds(yaml: &str) -> Vec<(String, String)> {
    yaml.split("\n---\n")
        .filter_map(|doc| {
            let v: serde_json::Value =
                serde_yaml::from_str(doc.trim_start_matches("---\n")).ok()?;
            Some((
                v["kind"].as_str()?.to_string(),
                v["metadata"]["name"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn printed_manifests_are_valid_kubernetes_1_31_in_apply_order() {
    let yaml = print(&["--include-secrets", "--image-tag", "0.1.0"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("install.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = Command::new(threeport_testkit::kubernetes_validate())
        .args(["-k", "1.31.0", "--strict"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate --strict rejected the install:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The order `up` applies: the installer's own list.
    let secrets = threeport_installers::manifests::Secrets::generate(&[], "k".repeat(44)).unwrap();
    let applied: Vec<(String, String)> = threeport_installers::manifests::control_plane(
        &threeport_installers::manifests::Images::published("ghcr.io/threeport", "0.1.0"),
        &secrets,
        threeport_installers::manifests::Exposure::NodePort,
    )
    .iter()
    .map(|o| {
        (
            o["kind"].as_str().unwrap().to_string(),
            o["metadata"]["name"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    assert_eq!(kinds(&yaml), applied);
}

#[test]
fn secrets_are_left_out_unless_asked_for_and_the_comment_says_which() {
    let yaml = print(&["--image-tag", "0.1.0"]);
    let printed = kinds(&yaml);
    assert!(!printed.iter().any(|(k, _)| k == "Secret"), "{printed:?}");
    assert!(
        yaml.starts_with("# Secrets left out (--include-secrets prints them): "),
        "{yaml}"
    );
    assert!(!yaml.contains("PRIVATE KEY"), "no key material");
    // The EKS form exposes the API through a load balancer.
    let eks = print(&["--provider", "eks", "--image-tag", "0.1.0"]);
    assert!(eks.contains("type: LoadBalancer"), "{eks}");
    // Without a published image, the built one is named with how to load it.
    let built = print(&[]);
    assert!(
        built.contains(
            "# The threeport image is built from this tptctl: threeport.local/threeport:"
        ),
        "{built}"
    );
    assert!(built.contains("kind load image-archive "), "{built}");
}
