//! `tptctl up/down --provider eks` against a moto server (AWS_ENDPOINT_URL). moto makes the
//! AWS side real enough (IAM, VPC, EKS, node groups) but its clusters have no Kubernetes API, so
//! `up` fails at the install step: exactly the case where everything it created must be rolled
//! back (or kept with --retain and removed by `down`), with no config entry left.

use aws_config::BehaviorVersion;
use aws_sdk_ec2::types::Filter;
use std::process::Command;
use threeport_testkit::Moto;

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

fn tptctl(home: &std::path::Path, moto: &Moto, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .env_remove("THREEPORT_CONFIG")
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn counts(moto: &Moto, name: &str) -> (usize, usize) {
    let cfg = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region("us-east-1")
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    let vpcs = aws_sdk_ec2::Client::new(&cfg)
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:threeport.io/control-plane")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let clusters = aws_sdk_eks::Client::new(&cfg)
        .list_clusters()
        .send()
        .await
        .unwrap();
    (
        vpcs.vpcs().len(),
        clusters
            .clusters()
            .iter()
            .filter(|c| c.contains(name))
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_eks_up_rolls_back_or_is_retained_then_down_leaves_nothing() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start().expect("moto_server");
    let home = tempfile::tempdir().unwrap();
    let inventory = |n: &str| {
        home.path()
            .join(format!(".threeport/eks-inventory-{n}.json"))
    };

    // Rolled back: nothing in AWS, no inventory, no config entry.
    let (code, err) = tokio::task::block_in_place(|| {
        tptctl(
            home.path(),
            &moto,
            &["up", "--provider", "eks", "--name", "rollback"],
        )
    });
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("✓ cluster") || err.contains("cluster"),
        "{err}"
    );
    assert!(err.contains("nothing was left behind"), "{err}");
    assert_eq!(counts(&moto, "rollback").await, (0, 0));
    assert!(!inventory("rollback").exists());
    let cfg =
        std::fs::read_to_string(home.path().join(".threeport/config.yaml")).unwrap_or_default();
    assert!(!cfg.contains("rollback"), "{cfg}");

    // Retained: the inventory lists what exists, and `down` deletes exactly it.
    let (code, err) = tokio::task::block_in_place(|| {
        tptctl(
            home.path(),
            &moto,
            &["up", "--provider", "eks", "--name", "kept", "--retain"],
        )
    });
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tptctl down --name kept"), "{err}");
    assert_eq!(counts(&moto, "kept").await, (1, 1), "VPC and cluster kept");
    let inv = std::fs::read_to_string(inventory("kept")).expect("inventory kept");
    for kind in ["IamRole", "Vpc", "EksCluster", "NodeGroup"] {
        assert!(inv.contains(kind), "{kind} in inventory: {inv}");
    }
    let (code, err) =
        tokio::task::block_in_place(|| tptctl(home.path(), &moto, &["down", "--name", "kept"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(counts(&moto, "kept").await, (0, 0));
    assert!(!inventory("kept").exists());
}
