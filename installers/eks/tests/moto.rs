//! `up`/`down` against a real moto_server (started per test on a free port).
//!
//! moto_server must be installed (`pip install 'moto[server]'`); the tests fail,
//! never skip, when it is missing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threeport_eks::wait::{BoxFuture, EksStatusSource};
use threeport_eks::{
    AwsError, CONTROL_PLANE_TAG as TAG, Clock, DownOptions, EksSpec, Inventory, InventoryItem,
    Progress, StatusSource, UpFailed, UpOptions, WaitOptions, down_with, up_with,
};
use threeport_installers::Event;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- moto server

use threeport_testkit::{Footprint, Moto};

fn start_moto() -> Moto {
    Moto::start().expect("moto_server starts")
}

async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    moto.sdk_config().await
}

/// The testkit counts EC2 resources by the tag `up` puts on them.
#[test]
fn the_testkit_counts_by_our_tag() {
    assert_eq!(threeport_testkit::aws::CONTROL_PLANE_TAG, TAG);
    assert_eq!(spec("x").cluster_name(), "threeport-x");
}

// ---------------------------------------------------------------- seams

/// Records every progress event and prints it; optionally cancels a token when
/// a phase containing `cancel_after` completes. Derefs to the [`Progress`] to pass.
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    progress: Progress,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(None)
    }
}

impl std::ops::Deref for Recorder {
    type Target = Progress;
    fn deref(&self) -> &Progress {
        &self.progress
    }
}

impl Recorder {
    fn new(cancel_after: Option<(String, CancellationToken)>) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let progress = Progress::observed(move |e| {
            let line = match e {
                Event::Start { phase } => {
                    println!(" • {phase} …");
                    format!("start: {phase}")
                }
                Event::Done { phase, elapsed } => {
                    println!(" ✓ {phase} ({elapsed:?})");
                    if let Some((needle, token)) = &cancel_after
                        && phase.contains(needle.as_str())
                    {
                        token.cancel();
                    }
                    format!("done: {phase}")
                }
                Event::Failed { phase, reason, .. } => {
                    println!(" ✗ {phase}: {reason:?}");
                    format!("failed: {phase}: {}", reason.as_deref().unwrap_or(""))
                }
                Event::Note(text) => {
                    println!("{text}");
                    format!("note: {text}")
                }
            };
            seen.lock().unwrap().push(line);
        });
        Recorder { events, progress }
    }
    fn done_phases(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.strip_prefix("done: ").map(str::to_string))
            .collect()
    }
    fn failed_phases(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("failed: "))
            .cloned()
            .collect()
    }
}

/// Virtual time: sleeps return at once.
#[derive(Default)]
struct FakeClock {
    now: Mutex<Duration>,
    sleeps: AtomicU32,
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        *self.now.lock().unwrap() += d;
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
}

/// Reports CREATING for the first `creating` cluster polls (moto clusters are
/// ACTIVE at once), then asks moto.
struct SlowCluster {
    inner: EksStatusSource,
    creating: AtomicU32,
}

impl StatusSource for SlowCluster {
    fn cluster_status<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async move {
            if self.creating.load(Ordering::SeqCst) > 0 {
                self.creating.fetch_sub(1, Ordering::SeqCst);
                return Ok(Some("CREATING".to_string()));
            }
            self.inner.cluster_status(cluster).await
        })
    }
    fn nodegroup_status<'a>(
        &'a self,
        c: &'a str,
        n: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        self.inner.nodegroup_status(c, n)
    }
}

fn fast_wait(clock: Arc<FakeClock>) -> WaitOptions {
    WaitOptions {
        interval: Duration::from_secs(15),
        clock,
        ..WaitOptions::default()
    }
}

fn opts() -> UpOptions {
    UpOptions {
        wait: fast_wait(Arc::new(FakeClock::default())),
        ..UpOptions::default()
    }
}

fn down_opts() -> DownOptions {
    DownOptions {
        wait: fast_wait(Arc::new(FakeClock::default())),
    }
}

// ---------------------------------------------------------------- checks

struct Aws {
    cfg: aws_config::SdkConfig,
    iam: aws_sdk_iam::Client,
    ec2: aws_sdk_ec2::Client,
    eks: aws_sdk_eks::Client,
    ecr: aws_sdk_ecr::Client,
}

impl Aws {
    fn new(cfg: &aws_config::SdkConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            iam: aws_sdk_iam::Client::new(cfg),
            ec2: aws_sdk_ec2::Client::new(cfg),
            eks: aws_sdk_eks::Client::new(cfg),
            ecr: aws_sdk_ecr::Client::new(cfg),
        }
    }

    /// What AWS holds for control plane `name`: tagged EC2 resources, its cluster and node
    /// groups, its IAM roles.
    async fn footprint(&self, name: &str) -> Footprint {
        Footprint::of(&self.cfg, name).await
    }

    /// Asserts that the resource an inventory item names exists.
    async fn assert_exists(&self, item: &InventoryItem) {
        let id = item.id.as_str();
        match item.kind.as_str() {
            "IamRole" => {
                let role = self.iam.get_role().role_name(id).send().await.unwrap();
                let r = role.role().unwrap();
                assert!(
                    r.tags().iter().any(|t| t.key() == TAG),
                    "role {id} is tagged"
                );
                let attached = self
                    .iam
                    .list_attached_role_policies()
                    .role_name(id)
                    .send()
                    .await
                    .unwrap();
                let want = if id.ends_with("cluster-role") { 1 } else { 3 };
                assert_eq!(attached.attached_policies().len(), want, "policies on {id}");
            }
            "IamRolePolicyAttachment" => {
                let attached = self
                    .iam
                    .list_attached_role_policies()
                    .role_name(item.extra_str("role"))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    attached
                        .attached_policies()
                        .iter()
                        .any(|p| p.policy_arn() == Some(id)),
                    "{id} attached"
                );
            }
            "Vpc" => assert_eq!(
                self.ec2
                    .describe_vpcs()
                    .vpc_ids(id)
                    .send()
                    .await
                    .unwrap()
                    .vpcs()
                    .len(),
                1
            ),
            "Subnet" => {
                let out = self
                    .ec2
                    .describe_subnets()
                    .subnet_ids(id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    out.subnets()[0].availability_zone(),
                    Some(item.extra_str("zone"))
                );
            }
            "InternetGateway" => {
                let out = self
                    .ec2
                    .describe_internet_gateways()
                    .internet_gateway_ids(id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.internet_gateways().len(), 1);
            }
            "InternetGatewayAttachment" => {
                let out = self
                    .ec2
                    .describe_internet_gateways()
                    .internet_gateway_ids(id)
                    .send()
                    .await
                    .unwrap();
                let vpc = item.extra_str("vpc_id");
                assert!(
                    out.internet_gateways()[0]
                        .attachments()
                        .iter()
                        .any(|a| a.vpc_id() == Some(vpc))
                );
            }
            "RouteTable" => {
                let out = self
                    .ec2
                    .describe_route_tables()
                    .route_table_ids(id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.route_tables().len(), 1);
            }
            "Route" => {
                let out = self
                    .ec2
                    .describe_route_tables()
                    .route_table_ids(item.extra_str("route_table_id"))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    out.route_tables()[0]
                        .routes()
                        .iter()
                        .any(|r| r.destination_cidr_block() == Some(id))
                );
            }
            "RouteTableAssociation" => {
                let out = self
                    .ec2
                    .describe_route_tables()
                    .route_table_ids(item.extra_str("route_table_id"))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    out.route_tables()[0]
                        .associations()
                        .iter()
                        .any(|a| a.route_table_association_id() == Some(id))
                );
            }
            "SecurityGroup" => {
                let out = self
                    .ec2
                    .describe_security_groups()
                    .group_ids(id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.security_groups().len(), 1);
            }
            "EksCluster" => {
                let out = self.eks.describe_cluster().name(id).send().await.unwrap();
                assert_eq!(out.cluster().unwrap().status().unwrap().as_str(), "ACTIVE");
            }
            "NodeGroup" => {
                let out = self
                    .eks
                    .describe_nodegroup()
                    .cluster_name(item.extra_str("cluster"))
                    .nodegroup_name(id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    out.nodegroup().unwrap().status().unwrap().as_str(),
                    "ACTIVE"
                );
            }
            "EcrRepository" => {
                let out = self
                    .ecr
                    .describe_repositories()
                    .repository_names(id)
                    .send()
                    .await
                    .unwrap();
                let repo = &out.repositories()[0];
                assert_eq!(repo.repository_uri(), Some(item.extra_str("uri")));
                assert!(
                    item.extra_str("uri").ends_with(&format!("/{id}")),
                    "{item:?}"
                );
                let tags = self
                    .ecr
                    .list_tags_for_resource()
                    .resource_arn(repo.repository_arn().unwrap())
                    .send()
                    .await
                    .unwrap();
                assert!(
                    tags.tags().iter().any(|t| t.key() == TAG),
                    "repository {id} is tagged"
                );
            }
            other => panic!("unexpected kind {other}"),
        }
    }

    /// Asserts that nothing of the control plane is left: by tag, by name, and
    /// item by item for `items` (an inventory snapshot).
    async fn assert_nothing_left(&self, name: &str, items: &[InventoryItem]) {
        let fp = self.footprint(name).await;
        assert!(fp.is_empty(), "left for {name}: {fp}");
        for item in items {
            let id = item.id.as_str();
            let gone = match item.kind.as_str() {
                "IamRole" => self.iam.get_role().role_name(id).send().await.is_err(),
                "Vpc" => self
                    .ec2
                    .describe_vpcs()
                    .vpc_ids(id)
                    .send()
                    .await
                    .map(|o| o.vpcs().is_empty())
                    .unwrap_or(true),
                "Subnet" => self
                    .ec2
                    .describe_subnets()
                    .subnet_ids(id)
                    .send()
                    .await
                    .map(|o| o.subnets().is_empty())
                    .unwrap_or(true),
                "InternetGateway" => self
                    .ec2
                    .describe_internet_gateways()
                    .internet_gateway_ids(id)
                    .send()
                    .await
                    .map(|o| o.internet_gateways().is_empty())
                    .unwrap_or(true),
                "RouteTable" => self
                    .ec2
                    .describe_route_tables()
                    .route_table_ids(id)
                    .send()
                    .await
                    .map(|o| o.route_tables().is_empty())
                    .unwrap_or(true),
                "SecurityGroup" => self
                    .ec2
                    .describe_security_groups()
                    .group_ids(id)
                    .send()
                    .await
                    .map(|o| o.security_groups().is_empty())
                    .unwrap_or(true),
                "EksCluster" => self.eks.describe_cluster().name(id).send().await.is_err(),
                "NodeGroup" => self
                    .eks
                    .describe_nodegroup()
                    .cluster_name(item.extra_str("cluster"))
                    .nodegroup_name(id)
                    .send()
                    .await
                    .is_err(),
                "EcrRepository" => self
                    .ecr
                    .describe_repositories()
                    .repository_names(id)
                    .send()
                    .await
                    .is_err(),
                _ => true, // attachments, routes, associations go with their parents
            };
            assert!(gone, "{} {id} still exists", item.kind);
        }
    }
}

fn spec(name: &str) -> EksSpec {
    EksSpec::new(name, "us-east-1")
}

fn kinds(inv: &Inventory) -> Vec<&str> {
    inv.resources.iter().map(|i| i.kind.as_str()).collect()
}

const ALL_KINDS: &[&str] = &[
    "IamRole",
    "IamRolePolicyAttachment",
    "IamRole",
    "IamRolePolicyAttachment",
    "IamRolePolicyAttachment",
    "IamRolePolicyAttachment",
    "Vpc",
    "Subnet",
    "Subnet",
    "InternetGateway",
    "InternetGatewayAttachment",
    "RouteTable",
    "Route",
    "RouteTableAssociation",
    "RouteTableAssociation",
    "SecurityGroup",
    "EksCluster",
    "NodeGroup",
    "EcrRepository",
];

/// Everything up to the cluster: no node group, no ECR repository.
const UP_TO_CLUSTER: &[&str] = ALL_KINDS.split_at(ALL_KINDS.len() - 2).0;

// ---------------------------------------------------------------- tests

/// 1. `up` creates everything the inventory lists; the cluster wait goes
/// through the seam (CREATING twice, in virtual time).
#[tokio::test]
async fn up_creates_every_inventory_resource() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    let clock = Arc::new(FakeClock::default());
    let status = Arc::new(SlowCluster {
        inner: EksStatusSource {
            client: aws.eks.clone(),
        },
        creating: AtomicU32::new(2),
    });
    let mut opts = opts();
    opts.wait = WaitOptions {
        status: Some(status),
        ..fast_wait(clock.clone())
    };
    let progress = Recorder::default();

    let access = up_with(
        &cfg,
        &spec("alpha"),
        &path,
        &progress,
        CancellationToken::new(),
        &opts,
    )
    .await
    .unwrap();

    assert_eq!(access.cluster_name, "threeport-alpha");
    assert!(!access.endpoint.is_empty());
    assert!(access.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        clock.sleeps.load(Ordering::SeqCst),
        2,
        "two polls saw CREATING"
    );
    let inv = Inventory::load(&path).unwrap().expect("inventory written");
    assert_eq!(kinds(&inv), ALL_KINDS);
    for item in &inv.resources {
        aws.assert_exists(item).await;
    }
    assert_eq!(aws.footprint("alpha").await, Footprint::COMPLETE);
    let subnets: Vec<&str> = inv
        .resources
        .iter()
        .filter(|i| i.kind == "Subnet")
        .map(|i| i.extra_str("zone"))
        .collect();
    assert_ne!(subnets[0], subnets[1], "subnets are in different zones");
    let done = progress.done_phases();
    assert_eq!(done.len(), 13, "{done:#?}");
    assert!(done[0].contains("identity"));
    assert!(
        done.iter()
            .any(|p| p.contains("Waiting for EKS cluster threeport-alpha"))
    );
    assert!(progress.failed_phases().is_empty());
}

/// 2. `down` deletes all of it and removes the inventory file.
#[tokio::test]
async fn down_leaves_nothing() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    let progress = Recorder::default();
    up_with(
        &cfg,
        &spec("beta"),
        &path,
        &progress,
        CancellationToken::new(),
        &opts(),
    )
    .await
    .unwrap();
    let snapshot = Inventory::load(&path).unwrap().unwrap().resources;

    let report = down_with(&cfg, &path, &progress, &down_opts())
        .await
        .unwrap();

    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert_eq!(report.deleted.len(), snapshot.len());
    // Reverse order of creation.
    let mut reversed = snapshot.clone();
    reversed.reverse();
    assert_eq!(report.deleted, reversed);
    assert!(!path.exists(), "inventory removed once empty");
    aws.assert_nothing_left("beta", &snapshot).await;
    // A second down is a no-op.
    let again = down_with(&cfg, &path, &progress, &down_opts())
        .await
        .unwrap();
    assert!(again.deleted.is_empty() && again.failed.is_empty());
}

/// 3a. Cancellation right after the cluster is created, with `retain`: the
/// inventory keeps everything up to the cluster, and `down` removes it all.
#[tokio::test]
async fn cancel_after_cluster_with_retain_then_down_leaves_nothing() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    let token = CancellationToken::new();
    let progress = Recorder::new(Some(("Creating EKS cluster".to_string(), token.clone())));
    let mut opts = opts();
    opts.retain = true;

    let err = up_with(&cfg, &spec("gamma"), &path, &progress, token, &opts)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("creating EKS control plane gamma: cancelled"),
        "{msg}"
    );
    // What is left, and where it is listed, for the caller's hint.
    let failed = UpFailed::of(&err).expect("an UpFailed context");
    assert!(failed.retained && failed.rolled_back.is_empty());
    assert_eq!(failed.left_behind.len(), UP_TO_CLUSTER.len());
    assert_eq!(failed.listed_in.as_deref(), Some(path.as_path()));
    assert!(
        failed
            .summary()
            .starts_with("kept for debugging: 17 resources"),
        "{}",
        failed.summary()
    );

    let inv = Inventory::load(&path).unwrap().unwrap();
    assert_eq!(
        kinds(&inv),
        UP_TO_CLUSTER,
        "everything up to the cluster, no node group"
    );
    for item in &inv.resources {
        if item.kind != "EksCluster" {
            aws.assert_exists(item).await;
        }
    }
    let report = down_with(&cfg, &path, &progress, &down_opts())
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(!path.exists());
    aws.assert_nothing_left("gamma", &inv.resources).await;
}

/// 3b. An injected failure after the cluster step without `retain`: this run's
/// resources are rolled back, nothing is left, and `down` has nothing to do.
#[tokio::test]
async fn failure_after_cluster_rolls_back() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    let progress = Recorder::default();
    let mut opts = opts();
    opts.fail_after = Some("cluster-active".to_string());

    let err = up_with(
        &cfg,
        &spec("delta"),
        &path,
        &progress,
        CancellationToken::new(),
        &opts,
    )
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("injected failure after step cluster-active"),
        "{msg}"
    );
    let failed = UpFailed::of(&err).expect("an UpFailed context");
    assert_eq!(failed.rolled_back.len(), 17);
    assert_eq!(
        failed.summary(),
        "rolled back 17 resources; nothing was left behind"
    );
    assert!(!path.exists(), "inventory removed after a full rollback");
    assert!(
        progress
            .done_phases()
            .iter()
            .any(|p| p.starts_with("Rolling back EksCluster"))
    );
    aws.assert_nothing_left("delta", &[]).await;

    let report = down_with(&cfg, &path, &progress, &down_opts())
        .await
        .unwrap();
    assert!(report.deleted.is_empty() && report.failed.is_empty());
}

/// 4. Re-running `up` after failures resumes instead of duplicating — also when
/// a crash lost the inventory records of resources that exist (they are
/// adopted by tag). Then `down` leaves nothing.
#[tokio::test]
async fn rerun_resumes_without_duplicates() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    let s = spec("epsilon");

    // Run 1 fails after the subnets, keeping what it made.
    let progress = Recorder::default();
    let mut o = opts();
    o.retain = true;
    o.fail_after = Some("subnets".to_string());
    up_with(&cfg, &s, &path, &progress, CancellationToken::new(), &o)
        .await
        .unwrap_err();
    assert_eq!(
        aws.footprint("epsilon").await,
        Footprint {
            vpcs: 1,
            subnets: 2,
            iam_roles: 2,
            ..Footprint::default()
        }
    );

    // Run 2 resumes and fails after the cluster.
    o.fail_after = Some("cluster".to_string());
    up_with(&cfg, &s, &path, &progress, CancellationToken::new(), &o)
        .await
        .unwrap_err();
    assert_eq!(
        aws.footprint("epsilon").await,
        Footprint {
            node_groups: 0,
            ecr_repositories: 0,
            ..Footprint::COMPLETE
        }
    );
    let inv = Inventory::load(&path).unwrap().unwrap();
    assert_eq!(kinds(&inv), UP_TO_CLUSTER);

    // Simulate a crash that lost every record from the VPC on: the resources
    // exist, the inventory does not list them.
    let mut truncated = inv.clone();
    let vpc_pos = truncated
        .resources
        .iter()
        .position(|i| i.kind == "Vpc")
        .unwrap();
    truncated.resources.truncate(vpc_pos);
    truncated.save(&path).unwrap();

    // Run 3 adopts them, completes, and creates nothing twice.
    let progress3 = Recorder::default();
    up_with(
        &cfg,
        &s,
        &path,
        &progress3,
        CancellationToken::new(),
        &opts(),
    )
    .await
    .unwrap();
    assert_eq!(aws.footprint("epsilon").await, Footprint::COMPLETE);
    let inv = Inventory::load(&path).unwrap().unwrap();
    assert_eq!(kinds(&inv), ALL_KINDS);
    let before: Vec<&str> = inv.resources.iter().map(|i| i.id.as_str()).collect();
    for item in &inv.resources {
        aws.assert_exists(item).await;
    }

    // Run 4 on a complete inventory changes nothing.
    up_with(
        &cfg,
        &s,
        &path,
        &Recorder::default(),
        CancellationToken::new(),
        &opts(),
    )
    .await
    .unwrap();
    let again = Inventory::load(&path).unwrap().unwrap();
    assert_eq!(
        again
            .resources
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        before
    );
    assert_eq!(aws.footprint("epsilon").await, Footprint::COMPLETE);

    let report = down_with(&cfg, &path, &Recorder::default(), &down_opts())
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    aws.assert_nothing_left("epsilon", &again.resources).await;
}

/// `down` keeps what it cannot delete in the inventory and reports it.
#[tokio::test]
async fn down_reports_and_keeps_failures() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    let mut inv = Inventory::new("zeta", "us-east-1");
    inv.resources.push(InventoryItem::new(
        "Mystery",
        "thing-1",
        serde_json::json!({"step": "x"}),
    ));
    inv.resources.push(InventoryItem::new(
        "Vpc",
        "vpc-00000000",
        serde_json::json!({"step": "vpc"}),
    ));
    inv.save(&path).unwrap();

    let report = down_with(&cfg, &path, &Recorder::default(), &down_opts())
        .await
        .unwrap();
    // The missing VPC counts as deleted; the unknown kind fails and stays.
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0.kind, "Mystery");
    let left = Inventory::load(&path).unwrap().unwrap();
    assert_eq!(left.resources.len(), 1);
    assert_eq!(left.resources[0].id, "thing-1");
}

/// A failed AWS call reads `<Operation>: <Code>: <message>`, once, with no SDK dump: a VPC
/// carrying our tags but another CIDR (left by someone else) is adopted, and AWS (moto)
/// refuses the first subnet. The phase's ✗ line has no reason (the error carries it), the
/// error is typed, and what this run recorded is rolled back.
#[tokio::test]
async fn a_refused_aws_call_reads_operation_code_message() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.json");
    aws.ec2
        .create_vpc()
        .cidr_block("192.168.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value("threeport-clash-vpc")
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(TAG)
                        .value("clash")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let progress = Recorder::default();

    let err = up_with(
        &cfg,
        &spec("clash"),
        &path,
        &progress,
        CancellationToken::new(),
        &opts(),
    )
    .await
    .unwrap_err();

    let aws_err = err
        .downcast_ref::<AwsError>()
        .expect("an AwsError in the chain");
    assert_eq!(aws_err.operation, "CreateSubnet");
    assert_eq!(aws_err.code.as_deref(), Some("InvalidSubnet.Range"));
    assert_eq!(aws_err.message, "The CIDR '10.0.0.0/20' is invalid.");
    assert_eq!(
        format!("{err:#}"),
        "creating EKS control plane clash: CreateSubnet: InvalidSubnet.Range: The CIDR '10.0.0.0/20' is invalid."
    );
    assert_eq!(
        progress.failed_phases(),
        ["failed: Creating subnets in 2 availability zones: "],
        "the ✗ line leaves the error to the caller"
    );
    let failed = UpFailed::of(&err).expect("an UpFailed context");
    assert!(failed.left_behind.is_empty(), "{failed:?}");
    assert!(failed.rolled_back.iter().any(|r| r.starts_with("Vpc ")));
    aws.assert_nothing_left("clash", &[]).await;
}

/// 5. The ECR repository: one with our name and tag that no record lists (a crash between
/// create and save) is adopted; one with our name but not our tag stops `up` and is left
/// alone; the account's authorization token decodes to a login.
#[tokio::test]
async fn the_ecr_repository_is_adopted_when_ours_and_refused_when_not() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let aws = Aws::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let tag = |v: &str| {
        aws_sdk_ecr::types::Tag::builder()
            .key(TAG)
            .value(v)
            .build()
            .unwrap()
    };
    aws.ecr
        .create_repository()
        .repository_name("threeport-eta")
        .tags(tag("eta"))
        .send()
        .await
        .unwrap();
    let path = dir.path().join("eta.json");
    let access = up_with(
        &cfg,
        &spec("eta"),
        &path,
        &Recorder::default(),
        CancellationToken::new(),
        &opts(),
    )
    .await
    .unwrap();
    let inv = Inventory::load(&path).unwrap().unwrap();
    let item = inv.resources.last().unwrap();
    assert_eq!(
        (item.kind.as_str(), item.id.as_str(), item.step()),
        ("EcrRepository", "threeport-eta", "ecr-repository")
    );
    assert_eq!(item.extra["adopted"], true, "{item:?}");
    assert_eq!(access.image_repository, item.extra_str("uri"));
    aws.assert_exists(item).await;
    assert_eq!(aws.footprint("eta").await, Footprint::COMPLETE);

    aws.ecr
        .create_repository()
        .repository_name("threeport-theta")
        .tags(tag("someone-else"))
        .send()
        .await
        .unwrap();
    let path = dir.path().join("theta.json");
    let err = up_with(
        &cfg,
        &spec("theta"),
        &path,
        &Recorder::default(),
        CancellationToken::new(),
        &opts(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "creating EKS control plane theta: ECR repository threeport-theta already exists and is not tagged threeport.io/control-plane=theta"
    );
    let failed = UpFailed::of(&err).expect("an UpFailed context");
    assert_eq!(failed.rolled_back.len(), ALL_KINDS.len() - 1);
    assert!(failed.left_behind.is_empty(), "{failed:?}");
    assert_eq!(
        aws.footprint("theta").await,
        Footprint {
            ecr_repositories: 1,
            ..Footprint::default()
        },
        "the foreign repository is not ours to delete"
    );

    match threeport_eks::ecr::login(&aws.ecr).await.unwrap() {
        threeport_installers::image::push::Auth::Basic(user, password) => {
            assert_eq!(user, "AWS");
            assert!(!password.is_empty());
        }
        other => panic!("not a login: {other:?}"),
    }
}

/// The EKS token is a presigned `GetCallerIdentity` that moto's STS answers. moto serves every
/// API on one port and picks the service from the Authorization header's credential scope (or a
/// form body), never from a presigned query, so the GET carries that scope in a header too, for
/// routing only: moto checks no signature, and real STS has a host of its own.
#[tokio::test]
async fn sts_answers_the_eks_token() {
    let moto = start_moto();
    let cfg = sdk_config(&moto).await;
    let t = threeport_eks::token::token(&cfg, "threeport-dev", std::time::SystemTime::now())
        .await
        .unwrap();
    let url = threeport_eks::token::presigned_url(&t.token).unwrap();
    assert!(url.starts_with(&moto.url), "{url}");
    let scope = url
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        .unwrap()
        .replace("%2F", "/");
    assert!(scope.ends_with("/us-east-1/sts/aws4_request"), "{scope}");
    let r = reqwest::Client::new()
        .get(&url)
        .header(threeport_eks::token::CLUSTER_HEADER, "threeport-dev")
        .header("authorization", format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-k8s-aws-id, Signature=routing-only"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<GetCallerIdentityResult>") && body.contains("<Arn>"),
        "{body}"
    );
}
