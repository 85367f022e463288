//! `tptctl up/down --provider eks` against a moto server (AWS_ENDPOINT_URL). moto makes the
//! AWS side real enough (IAM, VPC, EKS, node groups) but its clusters have no Kubernetes API, so
//! `up` fails at the install step: exactly the case where everything it created must be rolled
//! back (or kept with --retain and removed by `down`), with no config entry left.

use std::path::{Path, PathBuf};
use threeport_testkit::{Footprint, Moto, Run, Tptctl};

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

/// `tptctl` in a temporary HOME with AWS at `moto`.
fn tptctl(moto: &Moto) -> Tptctl {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Tptctl::new(BIN, PathBuf::from(repo)).with_moto(moto)
}

/// Runs `tptctl <args>` outside the runtime's worker (it blocks for a while); returns the exit
/// code and stderr.
fn run(t: &Tptctl, args: &[&str]) -> (i32, String) {
    let r = tokio::task::block_in_place(|| t.run(args));
    (r.code, r.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_eks_up_rolls_back_or_is_retained_then_down_leaves_nothing() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start().expect("moto_server");
    let aws = moto.sdk_config().await;
    let t = tptctl(&moto);
    let inventory = |n: &str| t.home().join(format!(".threeport/eks-inventory-{n}.json"));

    // Rolled back: nothing in AWS, no inventory, no config entry.
    let (code, err) = run(&t, &["up", "--provider", "eks", "--name", "rollback"]);
    assert_eq!(code, 1, "{err}");
    // The AWS side was made in full; the install failed (moto's cluster has no Kubernetes
    // API), and everything was rolled back.
    for done in [
        "✓ Creating EKS cluster threeport-rollback",
        "✓ Waiting for node group threeport-rollback-nodes to become ACTIVE",
        "✓ Creating ECR repository threeport-rollback",
    ] {
        assert!(err.contains(done), "{done:?} in:\n{err}");
    }
    assert!(err.contains("✗ Connecting to the EKS cluster"), "{err}");
    // So the image is never built or pushed (moto serves no registry).
    assert!(!err.contains("Pushing image"), "{err}");
    assert!(
        err.contains(
            "error: installing control plane rollback on EKS cluster threeport-rollback: "
        ),
        "{err}"
    );
    for deleted in [
        "✓ Deleting EksCluster threeport-rollback",
        "✓ Deleting EcrRepository threeport-rollback",
    ] {
        assert!(err.contains(deleted), "{deleted:?} in:\n{err}");
    }
    assert!(
        err.contains("hint: rolled back 19 resources; nothing was left behind"),
        "{err}"
    );
    let fp = Footprint::of(&aws, "rollback").await;
    assert!(fp.is_empty(), "left after the rollback: {fp}");
    assert!(!inventory("rollback").exists());
    let cfg = t.config();
    assert!(!cfg.contains("rollback"), "{cfg}");

    // Retained: the inventory lists what exists, and `down` deletes exactly it.
    let (code, err) = run(
        &t,
        &["up", "--provider", "eks", "--name", "kept", "--retain"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tptctl down --name kept"), "{err}");
    let fp = Footprint::of(&aws, "kept").await;
    assert_eq!(
        fp,
        Footprint::COMPLETE,
        "the VPC and its network, the cluster, its node group, the IAM roles and the ECR repository are kept: {fp}"
    );
    let inv = std::fs::read_to_string(inventory("kept")).expect("inventory kept");
    for kind in ["IamRole", "Vpc", "EksCluster", "NodeGroup", "EcrRepository"] {
        assert!(inv.contains(kind), "{kind} in inventory: {inv}");
    }
    let (code, err) = run(&t, &["down", "--name", "kept"]);
    assert_eq!(code, 0, "{err}");
    let fp = Footprint::of(&aws, "kept").await;
    assert!(fp.is_empty(), "left after down: {fp}");
    assert!(!inventory("kept").exists());
}

/// A failed AWS call reads `<Operation>: <Code>: <message>`, printed once, with no SDK dump.
/// moto refuses the first subnet of a VPC that carries our tags but another CIDR (adopted, as
/// if a crashed run had made it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_aws_call_prints_operation_code_and_message_once() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start().expect("moto_server");
    let aws = moto.sdk_config().await;
    let t = tptctl(&moto);
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
    aws_sdk_ec2::Client::new(&aws)
        .create_vpc()
        .cidr_block("192.168.0.0/16")
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();

    let (code, err) = run(&t, &["up", "--provider", "eks", "--name", "clash"]);
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
    let fp = Footprint::of(&aws, "clash").await;
    assert!(fp.is_empty(), "left after the rollback: {fp}");

    // No answer at all: a plain sentence naming the operation and what went wrong.
    let closed = threeport_testkit::free_port();
    let Run {
        code, stderr: err, ..
    } = tokio::task::block_in_place(|| {
        Run::from(
            t.cmd(&["up", "--provider", "eks", "--name", "nowhere"])
                .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
                .output()
                .unwrap(),
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
