//! `up`: create (or resume creating) everything an EKS control plane needs.
//!
//! Every resource goes through [`Ledger::ensure`], so each step below is its three AWS calls:
//!
//! 1. `describe`: the resource the inventory recorded for this step. Still there: done.
//!    Gone: its record is dropped.
//! 2. `find_by_tag`: one carrying our tags (or our name, for roles, the cluster and the node
//!    group) that no record lists: a run crashed between "AWS created it" and "inventory saved".
//!    It is adopted, never duplicated. One with our name but not our tag is an error.
//! 3. `create`: a new one, recorded (and the inventory saved) before the step goes on.
//!
//! The last step, once the node group is ACTIVE, is the ECR repository the provider pushes
//! the built image to ([`crate::ecr`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};
use aws_sdk_eks::types::{NodegroupScalingConfig, VpcConfigRequest};
use base64::Engine;
use serde_json::{Value, json};
use threeport_installers::UpFailed;
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsResultExt, CONTROL_PLANE_TAG, Clients, Found};
use crate::down::Deleter;
use crate::wait::{EksStatusSource, StatusSource, Target, WaitOptions, wait_until};
use crate::{
    ClusterAccess, EksSpec, FileStore, Inventory, InventoryItem, InventoryStore, Progress,
};

const VPC_CIDR: &str = "10.0.0.0/16";
const CLUSTER_POLICIES: &[&str] = &["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"];
const NODE_POLICIES: &[&str] = &[
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
];

/// Options beyond the spec.
#[derive(Clone, Default)]
pub struct UpOptions {
    /// On error or cancellation keep what this run created (for debugging)
    /// instead of rolling it back. Either way the inventory lists what is left.
    pub retain: bool,
    /// Polling interval, timeouts, clock and status source for the waits.
    pub wait: WaitOptions,
    /// Test hook: fail right after the step with this name completes
    /// (`identity`, `cluster-role`, `node-role`, `vpc`, `subnets`, `internet-gateway`,
    /// `route-table`, `security-group`, `cluster`, `cluster-active`, `nodegroup`,
    /// `nodegroup-active`, `ecr-repository`).
    pub fail_after: Option<String>,
    /// Stop after the node group: a Kubernetes runtime's cluster needs no ECR repository
    /// (only `tptctl up --provider eks` pushes an image). [`ClusterAccess::image_repository`]
    /// is then empty.
    pub no_image_repository: bool,
    /// Test hook: sleep this long after every step, so a test can kill the process between
    /// steps it can see in the inventory (moto answers every call at once).
    pub step_pause: Option<std::time::Duration>,
}

/// Creates or resumes the control plane's AWS resources with default options
/// (roll back this run's resources on failure, real waits). See [`up_with`].
pub async fn up(
    aws: &aws_config::SdkConfig,
    spec: &EksSpec,
    inventory_path: &Path,
    progress: &Progress,
    cancel: CancellationToken,
) -> Result<ClusterAccess> {
    up_with(
        aws,
        spec,
        inventory_path,
        progress,
        cancel,
        &UpOptions::default(),
    )
    .await
}

/// Creates or resumes the control plane's AWS resources, with the inventory in a file.
/// See [`up_in`].
pub async fn up_with(
    aws: &aws_config::SdkConfig,
    spec: &EksSpec,
    inventory_path: &Path,
    progress: &Progress,
    cancel: CancellationToken,
    opts: &UpOptions,
) -> Result<ClusterAccess> {
    let store = FileStore(inventory_path.to_path_buf());
    up_in(aws, spec, &store, progress, cancel, opts).await
}

/// Creates or resumes the control plane's AWS resources.
///
/// Every resource is appended to the inventory and saved through `store` as soon as AWS
/// returns its id. With an existing inventory, steps whose resources are recorded and
/// still exist are skipped. Resources that carry our Name tag but were never
/// recorded (a crash between create and save) are adopted, not duplicated.
///
/// On error or cancellation the resources created by *this* run are deleted
/// (in reverse order) unless `opts.retain`. The error's context is an [`UpFailed`]
/// (`creating EKS control plane <name>`) that lists what was rolled back and what is left.
pub async fn up_in(
    aws: &aws_config::SdkConfig,
    spec: &EksSpec,
    store: &dyn InventoryStore,
    progress: &Progress,
    cancel: CancellationToken,
    opts: &UpOptions,
) -> Result<ClusterAccess> {
    spec.validate()?;
    let place = || match store.file() {
        Some(f) => format!("inventory {}", f.display()),
        None => "the inventory".to_string(),
    };
    let inv = match store.load().await? {
        Some(inv) => {
            if inv.name != spec.name || inv.region != spec.region {
                bail!(
                    "{} belongs to control plane {:?} in {}, not {:?} in {}",
                    place(),
                    inv.name,
                    inv.region,
                    spec.name,
                    spec.region
                );
            }
            inv
        }
        None => Inventory::new(&spec.name, &spec.region),
    };
    let clients = Clients::new(aws, &spec.region);
    let status: Arc<dyn StatusSource> = match &opts.wait.status {
        Some(s) => s.clone(),
        None => Arc::new(EksStatusSource {
            client: clients.eks.clone(),
        }),
    };
    let mut run = Run {
        c: &clients,
        spec,
        ledger: Ledger {
            inv,
            store,
            created: Vec::new(),
        },
        progress,
        cancel: &cancel,
        opts,
        status,
        account: String::new(),
    };
    let e = match run.steps().await {
        Ok(access) => return Ok(access),
        Err(e) => e,
    };
    let name = |i: &InventoryItem| format!("{} {}", i.kind, i.id);
    let mut failed = UpFailed::new(format!("creating EKS control plane {}", spec.name));
    failed.listed_in = store.file().map(Path::to_path_buf);
    if !opts.retain && !run.ledger.created.is_empty() {
        let created = run.ledger.created.clone();
        let deleter = Deleter {
            c: &clients,
            progress,
            wait: &opts.wait,
            status: &*run.status,
        };
        let report = deleter
            .delete_items(&mut run.ledger.inv, store, "Rolling back", |item| {
                created.contains(item)
            })
            .await;
        failed.rolled_back = report.deleted.iter().map(name).collect();
    }
    failed.retained = opts.retain;
    failed.left_behind = run.ledger.inv.resources.iter().map(name).collect();
    Err(e.context(failed))
}

struct Run<'a> {
    c: &'a Clients,
    spec: &'a EksSpec,
    ledger: Ledger<'a>,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
    opts: &'a UpOptions,
    status: Arc<dyn StatusSource>,
    /// The caller's AWS account, from the identity check.
    account: String,
}

/// The inventory as `up` writes it: every record saved at once, and what this run recorded
/// remembered for its rollback.
struct Ledger<'a> {
    inv: Inventory,
    store: &'a dyn InventoryStore,
    /// Items recorded by this run (rolled back on failure).
    created: Vec<InventoryItem>,
}

/// A resource `find_by_tag` found or `create` made: its id, what the step needs of it, and
/// what the inventory keeps besides (`arn`, …).
struct Made<T> {
    id: String,
    value: T,
    extra: Value,
}

impl<T> Made<T> {
    fn new(id: impl Into<String>, value: T) -> Self {
        Made {
            id: id.into(),
            value,
            extra: json!({}),
        }
    }

    fn with(mut self, key: &str, value: impl serde::Serialize) -> Self {
        self.extra[key] = json!(value);
        self
    }
}

impl Ledger<'_> {
    /// Records a new resource and saves the inventory at once.
    async fn record(&mut self, kind: &str, id: &str, step: &str, mut extra: Value) -> Result<()> {
        extra["step"] = json!(step);
        let item = InventoryItem::new(kind, id, extra);
        self.inv.resources.push(item.clone());
        self.store
            .save(&self.inv)
            .await
            .context("saving inventory")?;
        self.created.push(item);
        Ok(())
    }

    /// Records what has no describe of its own (attachments, routes, associations) unless it
    /// is recorded with this id already; `made_now` re-records it, so this run's rollback
    /// undoes what this run did.
    async fn record_once(
        &mut self,
        kind: &str,
        id: &str,
        step: &str,
        extra: Value,
        made_now: bool,
    ) -> Result<()> {
        if made_now || self.recorded(step).map(|i| i.id) != Some(id.to_string()) {
            self.inv.resources.retain(|i| i.step() != step);
            self.record(kind, id, step, extra).await?;
        }
        Ok(())
    }

    /// Drops an item whose resource no longer exists.
    async fn forget(&mut self, step: &str) -> Result<()> {
        tracing::warn!(step, "recorded resource no longer exists; recreating it");
        self.inv.resources.retain(|i| i.step() != step);
        self.store.save(&self.inv).await
    }

    fn recorded(&self, step: &str) -> Option<InventoryItem> {
        self.inv.find_step(step).cloned()
    }

    /// The resource of `step` (inventory kind `kind`): the recorded one if `describe` still
    /// finds it, else one `find_by_tag` finds (adopted), else a new one from `create`. Found
    /// or made, it is recorded before this returns.
    async fn ensure<T>(
        &mut self,
        step: &str,
        kind: &str,
        describe: impl AsyncFnOnce(String) -> Result<Option<T>>,
        find_by_tag: impl AsyncFnOnce() -> Result<Option<Made<T>>>,
        create: impl AsyncFnOnce() -> Result<Made<T>>,
    ) -> Result<T> {
        if let Some(item) = self.recorded(step) {
            match describe(item.id).await? {
                Some(v) => return Ok(v),
                None => self.forget(step).await?,
            }
        }
        if let Some(mut found) = find_by_tag().await? {
            found.extra["adopted"] = json!(true);
            self.record(kind, &found.id, step, found.extra).await?;
            return Ok(found.value);
        }
        let made = create().await?;
        self.record(kind, &made.id, step, made.extra).await?;
        Ok(made.value)
    }
}

/// Runs one phase: checks cancellation, reports start/done/failed, applies `fail_after`.
/// The error is returned, not printed: whoever receives it reports it once.
macro_rules! phase {
    ($run:expr, $step:expr, $title:expr, $body:expr) => {{
        if $run.cancel.is_cancelled() {
            bail!("cancelled before: {}", $title);
        }
        let title: String = $title;
        $run.progress.start(&title);
        match $body {
            Ok(v) => {
                $run.progress.done();
                if let Some(pause) = $run.opts.step_pause {
                    tokio::time::sleep(pause).await;
                }
                if $run.opts.fail_after.as_deref() == Some($step) {
                    bail!("injected failure after step {}", $step);
                }
                v
            }
            Err(e) => {
                $run.progress.failed();
                return Err(e);
            }
        }
    }};
}

/// EC2 tags at creation: Name and the control-plane tag, so a resource never exists untagged.
fn tag_spec(spec: &EksSpec, rt: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(
            Tag::builder()
                .key(CONTROL_PLANE_TAG)
                .value(&spec.name)
                .build(),
        )
        .build()
}

/// Filters for EC2 resources carrying both our tags.
fn tag_filters(spec: &EksSpec, name: &str) -> Vec<Filter> {
    vec![
        Filter::builder().name("tag:Name").values(name).build(),
        Filter::builder()
            .name(format!("tag:{CONTROL_PLANE_TAG}"))
            .values(&spec.name)
            .build(),
    ]
}

/// Whether EKS tags (a map) name this control plane.
fn eks_tagged_ours(
    tags: Option<&std::collections::HashMap<String, String>>,
    spec: &EksSpec,
) -> bool {
    tags.is_some_and(|t| t.get(CONTROL_PLANE_TAG) == Some(&spec.name))
}

fn first<T: Clone>(items: &[T]) -> Option<T> {
    items.first().cloned()
}

impl Run<'_> {
    async fn steps(&mut self) -> Result<ClusterAccess> {
        let s = self.spec;
        phase!(
            self,
            "identity",
            "Checking AWS identity".to_string(),
            self.identity().await
        );
        let cluster_role = phase!(
            self,
            "cluster-role",
            format!("Creating IAM role {}", s.resource_name("cluster-role")),
            self.role("cluster-role", "eks.amazonaws.com", CLUSTER_POLICIES)
                .await
        );
        let node_role = phase!(
            self,
            "node-role",
            format!("Creating IAM role {}", s.resource_name("node-role")),
            self.role("node-role", "ec2.amazonaws.com", NODE_POLICIES)
                .await
        );
        let vpc = phase!(
            self,
            "vpc",
            format!("Creating VPC {}", s.resource_name("vpc")),
            self.vpc().await
        );
        let subnets = phase!(
            self,
            "subnets",
            format!("Creating subnets in {} availability zones", s.zone_count),
            self.subnets(&vpc).await
        );
        let igw = phase!(
            self,
            "internet-gateway",
            format!("Creating internet gateway {}", s.resource_name("igw")),
            self.internet_gateway(&vpc).await
        );
        phase!(
            self,
            "route-table",
            format!("Creating route table {}", s.resource_name("rtb")),
            self.route_table(&vpc, &igw, &subnets).await
        );
        let sg = phase!(
            self,
            "security-group",
            format!("Creating security group {}", s.resource_name("cluster-sg")),
            self.security_group(&vpc).await
        );
        phase!(
            self,
            "cluster",
            format!("Creating EKS cluster {}", s.cluster_name()),
            self.cluster(&cluster_role, &subnets, &sg).await
        );
        phase!(
            self,
            "cluster-active",
            format!(
                "Waiting for EKS cluster {} to become ACTIVE",
                s.cluster_name()
            ),
            self.wait_cluster().await
        );
        phase!(
            self,
            "nodegroup",
            format!("Creating node group {}", s.resource_name("nodes")),
            self.nodegroup(&node_role, &subnets).await
        );
        phase!(
            self,
            "nodegroup-active",
            format!(
                "Waiting for node group {} to become ACTIVE",
                s.resource_name("nodes")
            ),
            self.wait_nodegroup().await
        );
        if self.opts.no_image_repository {
            return self.access(String::new()).await;
        }
        let image_repository = phase!(
            self,
            "ecr-repository",
            format!("Creating ECR repository {}", crate::ecr::repository_name(s)),
            self.ecr_repository().await
        );
        self.access(image_repository).await
    }

    async fn identity(&mut self) -> Result<()> {
        let out = (self.c.sts.get_caller_identity().send().await).aws("GetCallerIdentity")?;
        tracing::info!(account = out.account(), arn = out.arn(), "AWS identity");
        self.account = out.account().unwrap_or_default().to_string();
        Ok(())
    }

    /// Ensures the role exists and has `policies` attached; returns its ARN.
    async fn role(&mut self, step: &str, service: &str, policies: &[&str]) -> Result<String> {
        let (iam, spec) = (&self.c.iam, self.spec);
        let name = spec.resource_name(step);
        let get = async |name: &str| -> Result<Option<aws_sdk_iam::types::Role>> {
            let out = (iam.get_role().role_name(name).send().await)
                .aws("GetRole")
                .found()?;
            Ok(out.and_then(|o| o.role().cloned()))
        };
        let arn = self
            .ledger
            .ensure(
                step,
                "IamRole",
                async |id| Ok(get(&id).await?.map(|r| r.arn().to_string())),
                async || {
                    let Some(role) = get(&name).await? else {
                        return Ok(None);
                    };
                    let ours = (role.tags().iter())
                        .any(|t| t.key() == CONTROL_PLANE_TAG && t.value() == spec.name);
                    ensure!(
                        ours,
                        "IAM role {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
                        spec.name
                    );
                    Ok(Some(
                        Made::new(&name, role.arn().to_string()).with("arn", role.arn()),
                    ))
                },
                async || {
                    let trust = json!({
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Principal": { "Service": service },
                            "Action": "sts:AssumeRole"
                        }]
                    });
                    let tag = aws_sdk_iam::types::Tag::builder()
                        .key(CONTROL_PLANE_TAG)
                        .value(&spec.name)
                        .build()?;
                    let out = (iam.create_role())
                        .role_name(&name)
                        .assume_role_policy_document(trust.to_string())
                        .description(format!("Threeport control plane {}", spec.name))
                        .tags(tag)
                        .send()
                        .await
                        .aws("CreateRole")?;
                    let arn = out
                        .role()
                        .map(|r| r.arn().to_string())
                        .context("CreateRole returned no role")?;
                    Ok(Made::new(&name, arn.clone()).with("arn", arn))
                },
            )
            .await?;
        // Attaching is idempotent; each attachment is recorded so `down` detaches it.
        for (i, policy) in policies.iter().enumerate() {
            (iam.attach_role_policy()
                .role_name(&name)
                .policy_arn(*policy))
            .send()
            .await
            .aws("AttachRolePolicy")?;
            self.ledger
                .record_once(
                    "IamRolePolicyAttachment",
                    policy,
                    &format!("{step}-policy-{i}"),
                    json!({ "role": name }),
                    false,
                )
                .await?;
        }
        Ok(arn)
    }

    async fn vpc(&mut self) -> Result<String> {
        let (ec2, spec) = (&self.c.ec2, self.spec);
        let name = spec.resource_name("vpc");
        let id = self
            .ledger
            .ensure(
                "vpc",
                "Vpc",
                async |id| {
                    let out = (ec2.describe_vpcs().vpc_ids(&id).send().await)
                        .aws("DescribeVpcs")
                        .found()?;
                    Ok(out.filter(|o| !o.vpcs().is_empty()).map(|_| id))
                },
                async || {
                    let out = (ec2.describe_vpcs())
                        .set_filters(Some(tag_filters(spec, &name)))
                        .send()
                        .await
                        .aws("DescribeVpcs")?;
                    let id = first(out.vpcs()).and_then(|v| v.vpc_id);
                    Ok(id.map(|id| Made::new(&id, id.clone()).with("cidr", VPC_CIDR)))
                },
                async || {
                    let out = (ec2.create_vpc())
                        .cidr_block(VPC_CIDR)
                        .tag_specifications(tag_spec(spec, ResourceType::Vpc, &name))
                        .send()
                        .await
                        .aws("CreateVpc")?;
                    let id = (out.vpc().and_then(|v| v.vpc_id()))
                        .context("CreateVpc returned no id")?
                        .to_string();
                    Ok(Made::new(&id, id.clone()).with("cidr", VPC_CIDR))
                },
            )
            .await?;
        // Nodes need DNS hostnames; both calls are idempotent.
        for hostnames in [false, true] {
            let req = ec2.modify_vpc_attribute().vpc_id(&id);
            let on = AttributeBooleanValue::builder().value(true).build();
            let req = if hostnames {
                req.enable_dns_hostnames(on)
            } else {
                req.enable_dns_support(on)
            };
            req.send().await.aws("ModifyVpcAttribute")?;
        }
        Ok(id)
    }

    async fn subnets(&mut self, vpc: &str) -> Result<Vec<String>> {
        let (ec2, spec) = (&self.c.ec2, self.spec);
        let azs = (ec2.describe_availability_zones())
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .aws("DescribeAvailabilityZones")?;
        let mut zones: Vec<String> = azs
            .availability_zones()
            .iter()
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        zones.sort();
        if zones.len() < spec.zone_count {
            bail!(
                "region {} has {} available zones, {} requested",
                spec.region,
                zones.len(),
                spec.zone_count
            );
        }
        let mut ids = Vec::new();
        for (i, zone) in zones.iter().take(spec.zone_count).enumerate() {
            let name = spec.resource_name(&format!("subnet-{zone}"));
            let cidr = format!("10.0.{}.0/20", i * 16);
            let made = |id: String| {
                Made::new(&id, id.clone())
                    .with("zone", zone)
                    .with("cidr", &cidr)
            };
            let id = self
                .ledger
                .ensure(
                    &format!("subnet-{i}"),
                    "Subnet",
                    async |id| {
                        let out = (ec2.describe_subnets().subnet_ids(&id).send().await)
                            .aws("DescribeSubnets")
                            .found()?;
                        Ok(out.filter(|o| !o.subnets().is_empty()).map(|_| id))
                    },
                    async || {
                        let out = (ec2.describe_subnets())
                            .set_filters(Some(tag_filters(spec, &name)))
                            .send()
                            .await
                            .aws("DescribeSubnets")?;
                        Ok(first(out.subnets()).and_then(|s| s.subnet_id).map(made))
                    },
                    async || {
                        let out = (ec2.create_subnet())
                            .vpc_id(vpc)
                            .cidr_block(&cidr)
                            .availability_zone(zone)
                            .tag_specifications(tag_spec(spec, ResourceType::Subnet, &name))
                            .send()
                            .await
                            .aws("CreateSubnet")?;
                        let id = (out.subnet().and_then(|s| s.subnet_id()))
                            .context("CreateSubnet returned no id")?;
                        Ok(made(id.to_string()))
                    },
                )
                .await?;
            // Managed node groups in public subnets need public IPs.
            (ec2.modify_subnet_attribute())
                .subnet_id(&id)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .aws("ModifySubnetAttribute")?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn internet_gateway(&mut self, vpc: &str) -> Result<String> {
        let (ec2, spec) = (&self.c.ec2, self.spec);
        let name = spec.resource_name("igw");
        let made = |g: aws_sdk_ec2::types::InternetGateway| {
            Made::new(g.internet_gateway_id().unwrap_or_default().to_string(), g)
        };
        let igw = self
            .ledger
            .ensure(
                "internet-gateway",
                "InternetGateway",
                async |id| {
                    let out = (ec2.describe_internet_gateways())
                        .internet_gateway_ids(&id)
                        .send()
                        .await
                        .aws("DescribeInternetGateways")
                        .found()?;
                    Ok(out.and_then(|o| first(o.internet_gateways())))
                },
                async || {
                    let out = (ec2.describe_internet_gateways())
                        .set_filters(Some(tag_filters(spec, &name)))
                        .send()
                        .await
                        .aws("DescribeInternetGateways")?;
                    Ok(first(out.internet_gateways()).map(made))
                },
                async || {
                    let out = (ec2.create_internet_gateway())
                        .tag_specifications(tag_spec(spec, ResourceType::InternetGateway, &name))
                        .send()
                        .await
                        .aws("CreateInternetGateway")?;
                    let g = out
                        .internet_gateway()
                        .context("CreateInternetGateway returned nothing")?;
                    Ok(made(g.clone()))
                },
            )
            .await?;
        let id = igw.internet_gateway_id().unwrap_or_default().to_string();
        let attached = igw.attachments().iter().any(|a| a.vpc_id() == Some(vpc));
        if !attached {
            (ec2.attach_internet_gateway())
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .aws("AttachInternetGateway")?;
        }
        self.ledger
            .record_once(
                "InternetGatewayAttachment",
                &id,
                "internet-gateway-attachment",
                json!({ "vpc_id": vpc }),
                !attached,
            )
            .await?;
        Ok(id)
    }

    async fn route_table(&mut self, vpc: &str, igw: &str, subnets: &[String]) -> Result<()> {
        let (ec2, spec) = (&self.c.ec2, self.spec);
        let name = spec.resource_name("rtb");
        let made = |t: aws_sdk_ec2::types::RouteTable| {
            Made::new(t.route_table_id().unwrap_or_default().to_string(), t).with("vpc_id", vpc)
        };
        let table = self
            .ledger
            .ensure(
                "route-table",
                "RouteTable",
                async |id| {
                    let out = (ec2.describe_route_tables())
                        .route_table_ids(&id)
                        .send()
                        .await
                        .aws("DescribeRouteTables")
                        .found()?;
                    Ok(out.and_then(|o| first(o.route_tables())))
                },
                async || {
                    let out = (ec2.describe_route_tables())
                        .set_filters(Some(tag_filters(spec, &name)))
                        .send()
                        .await
                        .aws("DescribeRouteTables")?;
                    Ok(first(out.route_tables()).map(made))
                },
                async || {
                    let out = (ec2.create_route_table())
                        .vpc_id(vpc)
                        .tag_specifications(tag_spec(spec, ResourceType::RouteTable, &name))
                        .send()
                        .await
                        .aws("CreateRouteTable")?;
                    let t = out
                        .route_table()
                        .context("CreateRouteTable returned nothing")?;
                    Ok(made(t.clone()))
                },
            )
            .await?;
        let rtb = table.route_table_id().unwrap_or_default().to_string();

        // Default route to the internet gateway.
        let has_route = table.routes().iter().any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0") && r.gateway_id() == Some(igw)
        });
        if !has_route {
            (ec2.create_route())
                .route_table_id(&rtb)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .aws("CreateRoute")?;
        }
        self.ledger
            .record_once(
                "Route",
                "0.0.0.0/0",
                "route-default",
                json!({ "route_table_id": rtb, "gateway_id": igw }),
                !has_route,
            )
            .await?;

        // One association per subnet.
        for (i, subnet) in subnets.iter().enumerate() {
            let existing = table
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet.as_str()))
                .and_then(|a| a.route_table_association_id())
                .map(str::to_string);
            let assoc = match existing {
                Some(a) => a,
                None => (ec2.associate_route_table())
                    .route_table_id(&rtb)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .aws("AssociateRouteTable")?
                    .association_id()
                    .context("AssociateRouteTable returned no id")?
                    .to_string(),
            };
            self.ledger
                .record_once(
                    "RouteTableAssociation",
                    &assoc,
                    &format!("route-table-association-{i}"),
                    json!({ "route_table_id": rtb, "subnet_id": subnet }),
                    false,
                )
                .await?;
        }
        Ok(())
    }

    async fn security_group(&mut self, vpc: &str) -> Result<String> {
        let (ec2, spec) = (&self.c.ec2, self.spec);
        let name = spec.resource_name("cluster-sg");
        let made = |id: &str| Made::new(id, id.to_string()).with("vpc_id", vpc);
        let id = self
            .ledger
            .ensure(
                "security-group",
                "SecurityGroup",
                async |id| {
                    let out = (ec2.describe_security_groups().group_ids(&id).send().await)
                        .aws("DescribeSecurityGroups")
                        .found()?;
                    Ok(out.filter(|o| !o.security_groups().is_empty()).map(|_| id))
                },
                async || {
                    let mut filters = tag_filters(spec, &name);
                    filters.push(Filter::builder().name("vpc-id").values(vpc).build());
                    let out = (ec2.describe_security_groups())
                        .set_filters(Some(filters))
                        .send()
                        .await
                        .aws("DescribeSecurityGroups")?;
                    Ok(first(out.security_groups())
                        .and_then(|g| g.group_id)
                        .map(|id| made(&id)))
                },
                async || {
                    let out = (ec2.create_security_group())
                        .group_name(&name)
                        .description(format!("Threeport control plane {} cluster", spec.name))
                        .vpc_id(vpc)
                        .tag_specifications(tag_spec(spec, ResourceType::SecurityGroup, &name))
                        .send()
                        .await
                        .aws("CreateSecurityGroup")?;
                    let id = out
                        .group_id()
                        .context("CreateSecurityGroup returned no id")?;
                    Ok(made(id))
                },
            )
            .await?;
        // Members of the group (control plane and nodes) may talk to each other. Run on
        // every pass, so a crash right after the create is repaired by the next `up`.
        let rule = (ec2.authorize_security_group_ingress())
            .group_id(&id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
                    .build(),
            )
            .send()
            .await
            .aws("AuthorizeSecurityGroupIngress");
        match rule {
            Err(e) if !e.has_code("InvalidPermission.Duplicate") => Err(e.into()),
            _ => Ok(id),
        }
    }

    async fn cluster(&mut self, role_arn: &str, subnets: &[String], sg: &str) -> Result<()> {
        let (eks, spec) = (&self.c.eks, self.spec);
        let name = spec.cluster_name();
        // The cluster by name; one being deleted or failed cannot be used or adopted.
        let get = async || -> Result<Option<aws_sdk_eks::types::Cluster>> {
            let out = (eks.describe_cluster().name(&name).send().await)
                .aws("DescribeCluster")
                .found()?;
            let cluster = out.and_then(|o| o.cluster().cloned());
            if let Some(status) = cluster.as_ref().and_then(|c| c.status())
                && matches!(status.as_str(), "DELETING" | "FAILED")
            {
                bail!(
                    "EKS cluster {name} exists but is {}; run `tptctl down` first",
                    status.as_str()
                );
            }
            Ok(cluster)
        };
        self.ledger
            .ensure(
                "cluster",
                "EksCluster",
                async |_| Ok(get().await?.map(|_| ())),
                async || {
                    let Some(c) = get().await? else {
                        return Ok(None);
                    };
                    ensure!(
                        eks_tagged_ours(c.tags(), spec),
                        "EKS cluster {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
                        spec.name
                    );
                    Ok(Some(Made::new(&name, ()).with("arn", c.arn())))
                },
                async || {
                    let out = (eks.create_cluster())
                        .name(&name)
                        .role_arn(role_arn)
                        .resources_vpc_config(
                            VpcConfigRequest::builder()
                                .set_subnet_ids(Some(subnets.to_vec()))
                                .security_group_ids(sg)
                                .endpoint_public_access(true)
                                .endpoint_private_access(true)
                                .build(),
                        )
                        .tags(CONTROL_PLANE_TAG, &spec.name)
                        .tags("Name", &name)
                        .send()
                        .await
                        .aws("CreateCluster")?;
                    let arn = out.cluster().and_then(|c| c.arn()).unwrap_or_default();
                    Ok(Made::new(&name, ()).with("arn", arn))
                },
            )
            .await
    }

    async fn wait_cluster(&mut self) -> Result<()> {
        let name = self.spec.cluster_name();
        let w = &self.opts.wait;
        let status = self.status.clone();
        wait_until(
            &format!("EKS cluster {name}"),
            Target::Status("ACTIVE"),
            || {
                let status = status.clone();
                let name = name.clone();
                Box::pin(async move { status.cluster_status(&name).await })
            },
            &*w.clock,
            w.interval,
            w.cluster_timeout,
            Some(self.cancel),
        )
        .await
    }

    async fn nodegroup(&mut self, node_role_arn: &str, subnets: &[String]) -> Result<()> {
        let (eks, spec) = (&self.c.eks, self.spec);
        let cluster = spec.cluster_name();
        let name = spec.resource_name("nodes");
        // The node group by name; one being deleted or failed cannot be used or adopted.
        let get = async || -> Result<Option<aws_sdk_eks::types::Nodegroup>> {
            let out = (eks.describe_nodegroup())
                .cluster_name(&cluster)
                .nodegroup_name(&name)
                .send()
                .await
                .aws("DescribeNodegroup")
                .found()?;
            let ng = out.and_then(|o| o.nodegroup().cloned());
            if let Some(status) = ng.as_ref().and_then(|n| n.status())
                && matches!(
                    status.as_str(),
                    "DELETING" | "CREATE_FAILED" | "DELETE_FAILED"
                )
            {
                bail!(
                    "node group {name} exists but is {}; run `tptctl down` first",
                    status.as_str()
                );
            }
            Ok(ng)
        };
        self.ledger
            .ensure(
                "nodegroup",
                "NodeGroup",
                async |_| Ok(get().await?.map(|_| ())),
                async || {
                    let Some(ng) = get().await? else {
                        return Ok(None);
                    };
                    ensure!(
                        eks_tagged_ours(ng.tags(), spec),
                        "node group {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
                        spec.name
                    );
                    Ok(Some(Made::new(&name, ()).with("cluster", &cluster)))
                },
                async || {
                    let out = (eks.create_nodegroup())
                        .cluster_name(&cluster)
                        .nodegroup_name(&name)
                        .node_role(node_role_arn)
                        .set_subnets(Some(subnets.to_vec()))
                        .instance_types(&spec.instance_type)
                        .scaling_config(
                            NodegroupScalingConfig::builder()
                                .min_size(spec.node_min)
                                .max_size(spec.node_max)
                                .desired_size(spec.node_desired)
                                .build(),
                        )
                        .tags(CONTROL_PLANE_TAG, &spec.name)
                        .tags("Name", &name)
                        .send()
                        .await
                        .aws("CreateNodegroup")?;
                    let arn = (out.nodegroup().and_then(|n| n.nodegroup_arn())).unwrap_or_default();
                    Ok(Made::new(&name, ())
                        .with("cluster", &cluster)
                        .with("arn", arn))
                },
            )
            .await
    }

    async fn wait_nodegroup(&mut self) -> Result<()> {
        let cluster = self.spec.cluster_name();
        let name = self.spec.resource_name("nodes");
        let w = &self.opts.wait;
        let status = self.status.clone();
        wait_until(
            &format!("node group {name}"),
            Target::Status("ACTIVE"),
            || {
                let status = status.clone();
                let (cluster, name) = (cluster.clone(), name.clone());
                Box::pin(async move { status.nodegroup_status(&cluster, &name).await })
            },
            &*w.clock,
            w.interval,
            w.nodegroup_timeout,
            Some(self.cancel),
        )
        .await
    }

    /// The repository the provider pushes the built image to; returns its URI.
    async fn ecr_repository(&mut self) -> Result<String> {
        let (ecr, spec) = (&self.c.ecr, self.spec);
        let name = crate::ecr::repository_name(spec);
        let uri = |r: &aws_sdk_ecr::types::Repository| -> Result<String> {
            Ok(r.repository_uri()
                .context("ECR returned no repositoryUri")?
                .to_string())
        };
        let made = |r: aws_sdk_ecr::types::Repository| -> Result<Made<String>> {
            let uri = uri(&r)?;
            Ok(Made::new(&name, uri.clone())
                .with("uri", uri)
                .with("arn", r.repository_arn()))
        };
        self.ledger
            .ensure(
                "ecr-repository",
                crate::ecr::KIND,
                async |id| {
                    let repo = crate::ecr::describe(ecr, &id).await?;
                    repo.as_ref().map(uri).transpose()
                },
                async || {
                    let repo = crate::ecr::existing(ecr, spec, &name).await?;
                    repo.map(made).transpose()
                },
                async || made(crate::ecr::create(ecr, spec, &name).await?),
            )
            .await
    }

    async fn access(&self, image_repository: String) -> Result<ClusterAccess> {
        let name = self.spec.cluster_name();
        let out =
            (self.c.eks.describe_cluster().name(&name).send().await).aws("DescribeCluster")?;
        let c = out
            .cluster()
            .context("DescribeCluster returned no cluster")?;
        let endpoint = c.endpoint().context("cluster has no endpoint")?.to_string();
        let ca_b64 = c
            .certificate_authority()
            .and_then(|ca| ca.data())
            .context("cluster has no CA data")?;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .context("cluster CA data is not base64")?;
        let ca_pem = ca_to_pem(ca);
        Ok(ClusterAccess {
            endpoint,
            ca_pem,
            cluster_name: name,
            account_id: self.account.clone(),
            image_repository,
        })
    }
}

/// EKS returns the CA as base64 of a PEM document. Anything else (moto returns
/// random bytes) is treated as DER and wrapped in a PEM CERTIFICATE block.
fn ca_to_pem(ca: Vec<u8>) -> String {
    match String::from_utf8(ca) {
        Ok(text) if text.contains("-----BEGIN") => text,
        Ok(text) => der_to_pem(text.as_bytes()),
        Err(e) => der_to_pem(e.as_bytes()),
    }
}

fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_pem_is_kept_or_wrapped() {
        let pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        assert_eq!(ca_to_pem(pem.as_bytes().to_vec()), pem);
        let wrapped = ca_to_pem(vec![0xff; 100]);
        assert!(wrapped.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(wrapped.lines().all(|l| l.len() <= 64));
    }
}
