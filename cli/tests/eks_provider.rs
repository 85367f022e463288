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
    tptctl_at(home, &moto.url, args)
}

/// `tptctl` with AWS at `endpoint`; returns the exit code and stderr.
fn tptctl_at(home: &std::path::Path, endpoint: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .env_remove("THREEPORT_CONFIG")
        .env("AWS_ENDPOINT_URL", endpoint)
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

async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region("us-east-1")
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await
}

async fn counts(moto: &Moto, name: &str) -> (usize, usize) {
    let cfg = sdk(moto).await;
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
    // The AWS side was made in full; the install failed (moto's cluster has no Kubernetes
    // API), and everything was rolled back.
    for done in [
        "✓ Creating EKS cluster threeport-rollback",
        "✓ Waiting for node group threeport-rollback-nodes to become ACTIVE",
    ] {
        assert!(err.contains(done), "{done:?} in:\n{err}");
    }
    assert!(err.contains("✗ Connecting to the EKS cluster"), "{err}");
    assert!(
        err.contains(
            "error: installing control plane rollback on EKS cluster threeport-rollback: "
        ),
        "{err}"
    );
    assert!(
        err.contains("✓ Deleting EksCluster threeport-rollback"),
        "{err}"
    );
    assert!(
        err.contains("hint: rolled back 18 resources; nothing was left behind"),
        "{err}"
    );
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

/// A failed AWS call reads `<Operation>: <Code>: <message>`, printed once, with no SDK dump.
/// moto refuses the first subnet of a VPC that carries our tags but another CIDR (adopted, as
/// if a crashed run had made it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_aws_call_prints_operation_code_and_message_once() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start().expect("moto_server");
    let home = tempfile::tempdir().unwrap();
    let tags = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value("threeport-clash-vpc")
                .build(),
        )
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("threeport.io/control-plane")
                .value("clash")
                .build(),
        )
        .build();
    aws_sdk_ec2::Client::new(&sdk(&moto).await)
        .create_vpc()
        .cidr_block("192.168.0.0/16")
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();

    let (code, err) = tokio::task::block_in_place(|| {
        tptctl(
            home.path(),
            &moto,
            &["up", "--provider", "eks", "--name", "clash"],
        )
    });
    assert_eq!(code, 1, "{err}");
    for raw in [
        "ServiceError {",
        "raw:",
        "SdkBody",
        "Error {",
        "aws_request_id",
    ] {
        assert!(!err.contains(raw), "{raw:?} in:\n{err}");
    }
    let line = "error: creating EKS control plane clash: CreateSubnet: InvalidSubnet.Range: The CIDR '10.0.0.0/20' is invalid.\n";
    assert!(err.contains(line), "{err}");
    for once in [
        "CreateSubnet",
        "InvalidSubnet.Range",
        "The CIDR '10.0.0.0/20' is invalid.",
    ] {
        assert_eq!(err.matches(once).count(), 1, "{once:?} once in:\n{err}");
    }
    assert!(
        err.contains(" ✗ Creating subnets in 2 availability zones ("),
        "{err}"
    );
    assert!(
        err.contains("hint: rolled back 7 resources; nothing was left behind"),
        "{err}"
    );
    assert_eq!(counts(&moto, "clash").await, (0, 0));

    // No answer at all: a plain sentence naming the operation and what went wrong.
    let closed = threeport_testkit::free_port();
    let (code, err) = tokio::task::block_in_place(|| {
        tptctl_at(
            home.path(),
            &format!("http://127.0.0.1:{closed}"),
            &["up", "--provider", "eks", "--name", "nowhere"],
        )
    });
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: creating EKS control plane nowhere: GetCallerIdentity: cannot reach the AWS endpoint: "),
        "{err}"
    );
    assert_eq!(err.matches("GetCallerIdentity").count(), 1, "{err}");
    for raw in ["DispatchFailure", "ConnectorError", "Error {"] {
        assert!(!err.contains(raw), "{raw:?} in:\n{err}");
    }
}
