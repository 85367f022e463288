//! `up`: create (or resume creating) everything an EKS control plane needs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};
use aws_sdk_eks::types::{NodegroupScalingConfig, VpcConfigRequest};
use base64::Engine;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::aws::{CONTROL_PLANE_TAG, Clients, code, err, is_not_found};
use crate::down::delete_items;
use crate::wait::{EksStatusSource, StatusSource, Target, WaitOptions, wait_until};
use crate::{ClusterAccess, EksSpec, Inventory, InventoryItem, Progress};

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
    /// `nodegroup-active`).
    pub fail_after: Option<String>,
}

/// Creates or resumes the control plane's AWS resources with default options
/// (roll back this run's resources on failure, real waits). See [`up_with`].
pub async fn up(
    aws: &aws_config::SdkConfig,
    spec: &EksSpec,
    inventory_path: &Path,
    progress: &dyn Progress,
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

/// Creates or resumes the control plane's AWS resources.
///
/// Every resource is appended to the inventory and saved as soon as AWS returns
/// its id. With an existing inventory, steps whose resources are recorded and
/// still exist are skipped. Resources that carry our Name tag but were never
/// recorded (a crash between create and save) are adopted, not duplicated.
///
/// On error or cancellation the resources created by *this* run are deleted
/// (in reverse order) unless `opts.retain`; the returned error says what was
/// left behind and how to clean up or resume.
pub async fn up_with(
    aws: &aws_config::SdkConfig,
    spec: &EksSpec,
    inventory_path: &Path,
    progress: &dyn Progress,
    cancel: CancellationToken,
    opts: &UpOptions,
) -> Result<ClusterAccess> {
    spec.validate()?;
    let inv = match Inventory::load(inventory_path)? {
        Some(inv) => {
            if inv.name != spec.name || inv.region != spec.region {
                bail!(
                    "inventory {} belongs to control plane {:?} in {}, not {:?} in {}",
                    inventory_path.display(),
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
        inv,
        path: inventory_path,
        progress,
        cancel: &cancel,
        opts,
        status,
        created: Vec::new(),
        account: String::new(),
    };
    match run.steps().await {
        Ok(access) => Ok(access),
        Err(e) => {
            let e = e.context(format!("creating EKS control plane {}", spec.name));
            if opts.retain || run.created.is_empty() {
                return Err(e.context(run.left_behind_message()));
            }
            let created = run.created.clone();
            let report = delete_items(
                &clients,
                &mut run.inv,
                inventory_path,
                progress,
                &opts.wait,
                &*run.status,
                "Rolling back",
                |item| created.contains(item),
            )
            .await;
            let mut msg = format!(
                "rolled back {} resource(s) created by this run",
                report.deleted.len()
            );
            if !report.failed.is_empty() {
                msg.push_str(&format!("; {} could not be deleted", report.failed.len()));
            }
            Err(e.context(format!("{msg}. {}", run.left_behind_message())))
        }
    }
}

struct Run<'a> {
    c: &'a Clients,
    spec: &'a EksSpec,
    inv: Inventory,
    path: &'a Path,
    progress: &'a dyn Progress,
    cancel: &'a CancellationToken,
    opts: &'a UpOptions,
    status: Arc<dyn StatusSource>,
    /// Items recorded by this run (rolled back on failure).
    created: Vec<InventoryItem>,
    /// The caller's AWS account, from the identity check.
    account: String,
}

/// Runs one phase: checks cancellation, reports start/done/failed, applies `fail_after`.
macro_rules! phase {
    ($run:expr, $step:expr, $title:expr, $body:expr) => {{
        if $run.cancel.is_cancelled() {
            bail!("cancelled before: {}", $title);
        }
        let title: String = $title;
        $run.progress.start(&title);
        let t = Instant::now();
        let r = $body;
        match r {
            Ok(v) => {
                $run.progress.done(&title, t.elapsed());
                if $run.opts.fail_after.as_deref() == Some($step) {
                    bail!("injected failure after step {}", $step);
                }
                v
            }
            Err(e) => {
                $run.progress.failed(&title, &format!("{e:#}"));
                return Err(e);
            }
        }
    }};
}

impl Run<'_> {
    fn left_behind_message(&self) -> String {
        if self.inv.resources.is_empty() {
            return "nothing was left behind".to_string();
        }
        let list: Vec<String> = self
            .inv
            .resources
            .iter()
            .map(|i| format!("{} {}", i.kind, i.id))
            .collect();
        format!(
            "left behind (recorded in {}): {}. Run `tptctl up` again to resume, or `tptctl down` to delete them",
            self.path.display(),
            list.join(", ")
        )
    }

    /// Records a new resource and saves the inventory at once.
    fn record(
        &mut self,
        kind: &str,
        id: &str,
        step: &str,
        mut extra: serde_json::Value,
    ) -> Result<()> {
        extra["step"] = json!(step);
        let item = InventoryItem::new(kind, id, extra);
        self.inv.resources.push(item.clone());
        self.inv.save(self.path).context("saving inventory")?;
        self.created.push(item);
        Ok(())
    }

    /// Drops an item whose resource no longer exists.
    fn forget(&mut self, step: &str) -> Result<()> {
        tracing::warn!(step, "recorded resource no longer exists; recreating it");
        self.inv.resources.retain(|i| i.step() != step);
        self.inv.save_or_remove(self.path)
    }

    fn recorded(&self, step: &str) -> Option<InventoryItem> {
        self.inv.find_step(step).cloned()
    }

    fn tag_spec(&self, rt: ResourceType, name: &str) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(rt)
            .tags(Tag::builder().key("Name").value(name).build())
            .tags(
                Tag::builder()
                    .key(CONTROL_PLANE_TAG)
                    .value(&self.spec.name)
                    .build(),
            )
            .build()
    }

    fn tag_filters(&self, name: &str) -> Vec<Filter> {
        vec![
            Filter::builder().name("tag:Name").values(name).build(),
            Filter::builder()
                .name(format!("tag:{CONTROL_PLANE_TAG}"))
                .values(&self.spec.name)
                .build(),
        ]
    }

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
        self.access().await
    }

    async fn identity(&mut self) -> Result<()> {
        let out = self
            .c
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| err(e, "GetCallerIdentity"))?;
        tracing::info!(account = out.account(), arn = out.arn(), "AWS identity");
        self.account = out.account().unwrap_or_default().to_string();
        Ok(())
    }

    /// Ensures the role exists and has `policies` attached; returns its ARN.
    async fn role(&mut self, step: &str, service: &str, policies: &[&str]) -> Result<String> {
        let name = self.spec.resource_name(step);
        let iam = &self.c.iam;
        let existing = match iam.get_role().role_name(&name).send().await {
            Ok(out) => out.role().cloned(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(err(e, "GetRole")),
        };
        let arn = match (existing, self.recorded(step)) {
            (Some(role), Some(_)) => role.arn().to_string(),
            (Some(role), None) => {
                // Created by a run that crashed before saving: adopt it if it is ours.
                let ours = role
                    .tags()
                    .iter()
                    .any(|t| t.key() == CONTROL_PLANE_TAG && t.value() == self.spec.name);
                if !ours {
                    bail!(
                        "IAM role {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
                        self.spec.name
                    );
                }
                let arn = role.arn().to_string();
                self.record(
                    "IamRole",
                    &name,
                    step,
                    json!({ "arn": arn, "adopted": true }),
                )?;
                arn
            }
            (None, recorded) => {
                if recorded.is_some() {
                    self.forget(step)?;
                }
                let trust = json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": { "Service": service },
                        "Action": "sts:AssumeRole"
                    }]
                });
                let out = iam
                    .create_role()
                    .role_name(&name)
                    .assume_role_policy_document(trust.to_string())
                    .description(format!("Threeport control plane {}", self.spec.name))
                    .tags(
                        aws_sdk_iam::types::Tag::builder()
                            .key(CONTROL_PLANE_TAG)
                            .value(&self.spec.name)
                            .build()?,
                    )
                    .send()
                    .await
                    .map_err(|e| err(e, "CreateRole"))?;
                let arn = out
                    .role()
                    .map(|r| r.arn().to_string())
                    .context("CreateRole returned no role")?;
                self.record("IamRole", &name, step, json!({ "arn": arn }))?;
                arn
            }
        };
        // Attaching is idempotent; each attachment is recorded so `down` detaches it.
        for (i, policy) in policies.iter().enumerate() {
            let pstep = format!("{step}-policy-{i}");
            iam.attach_role_policy()
                .role_name(&name)
                .policy_arn(*policy)
                .send()
                .await
                .map_err(|e| err(e, &format!("AttachRolePolicy {policy}")))?;
            if self.recorded(&pstep).is_none() {
                self.record(
                    "IamRolePolicyAttachment",
                    policy,
                    &pstep,
                    json!({ "role": name }),
                )?;
            }
        }
        Ok(arn)
    }

    async fn vpc(&mut self) -> Result<String> {
        let name = self.spec.resource_name("vpc");
        let ec2 = &self.c.ec2;
        if let Some(item) = self.recorded("vpc") {
            match ec2.describe_vpcs().vpc_ids(&item.id).send().await {
                Ok(out) if !out.vpcs().is_empty() => return Ok(item.id),
                Ok(_) => self.forget("vpc")?,
                Err(e) if is_not_found(&e) => self.forget("vpc")?,
                Err(e) => return Err(err(e, "DescribeVpcs")),
            }
        }
        let found = ec2
            .describe_vpcs()
            .set_filters(Some(self.tag_filters(&name)))
            .send()
            .await
            .map_err(|e| err(e, "DescribeVpcs"))?;
        let id = if let Some(id) = found.vpcs().first().and_then(|v| v.vpc_id()) {
            let id = id.to_string();
            self.record(
                "Vpc",
                &id,
                "vpc",
                json!({ "cidr": VPC_CIDR, "adopted": true }),
            )?;
            id
        } else {
            let out = ec2
                .create_vpc()
                .cidr_block(VPC_CIDR)
                .tag_specifications(self.tag_spec(ResourceType::Vpc, &name))
                .send()
                .await
                .map_err(|e| err(e, "CreateVpc"))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .context("CreateVpc returned no id")?
                .to_string();
            self.record("Vpc", &id, "vpc", json!({ "cidr": VPC_CIDR }))?;
            id
        };
        // Nodes need DNS hostnames; both calls are idempotent.
        for hostnames in [false, true] {
            let req = ec2.modify_vpc_attribute().vpc_id(&id);
            let on = AttributeBooleanValue::builder().value(true).build();
            let req = if hostnames {
                req.enable_dns_hostnames(on)
            } else {
                req.enable_dns_support(on)
            };
            req.send().await.map_err(|e| err(e, "ModifyVpcAttribute"))?;
        }
        Ok(id)
    }

    async fn subnets(&mut self, vpc: &str) -> Result<Vec<String>> {
        let ec2 = &self.c.ec2;
        let azs = ec2
            .describe_availability_zones()
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| err(e, "DescribeAvailabilityZones"))?;
        let mut zones: Vec<String> = azs
            .availability_zones()
            .iter()
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        zones.sort();
        if zones.len() < self.spec.zone_count {
            bail!(
                "region {} has {} available zones, {} requested",
                self.spec.region,
                zones.len(),
                self.spec.zone_count
            );
        }
        let mut ids = Vec::new();
        for (i, zone) in zones.iter().take(self.spec.zone_count).enumerate() {
            let step = format!("subnet-{i}");
            let name = self.spec.resource_name(&format!("subnet-{zone}"));
            if let Some(item) = self.recorded(&step) {
                match ec2.describe_subnets().subnet_ids(&item.id).send().await {
                    Ok(out) if !out.subnets().is_empty() => {
                        ids.push(item.id);
                        continue;
                    }
                    Ok(_) => self.forget(&step)?,
                    Err(e) if is_not_found(&e) => self.forget(&step)?,
                    Err(e) => return Err(err(e, "DescribeSubnets")),
                }
            }
            let cidr = format!("10.0.{}.0/20", i * 16);
            let found = ec2
                .describe_subnets()
                .set_filters(Some(self.tag_filters(&name)))
                .send()
                .await
                .map_err(|e| err(e, "DescribeSubnets"))?;
            let id = if let Some(id) = found.subnets().first().and_then(|s| s.subnet_id()) {
                let id = id.to_string();
                self.record(
                    "Subnet",
                    &id,
                    &step,
                    json!({ "zone": zone, "cidr": cidr, "adopted": true }),
                )?;
                id
            } else {
                let out = ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(&cidr)
                    .availability_zone(zone)
                    .tag_specifications(self.tag_spec(ResourceType::Subnet, &name))
                    .send()
                    .await
                    .map_err(|e| err(e, "CreateSubnet"))?;
                let id = out
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .context("CreateSubnet returned no id")?
                    .to_string();
                self.record("Subnet", &id, &step, json!({ "zone": zone, "cidr": cidr }))?;
                id
            };
            // Managed node groups in public subnets need public IPs.
            ec2.modify_subnet_attribute()
                .subnet_id(&id)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .map_err(|e| err(e, "ModifySubnetAttribute"))?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn internet_gateway(&mut self, vpc: &str) -> Result<String> {
        let name = self.spec.resource_name("igw");
        let ec2 = &self.c.ec2;
        let mut igw = None;
        if let Some(item) = self.recorded("internet-gateway") {
            match ec2
                .describe_internet_gateways()
                .internet_gateway_ids(&item.id)
                .send()
                .await
            {
                Ok(out) if !out.internet_gateways().is_empty() => {
                    igw = Some(out.internet_gateways()[0].clone())
                }
                Ok(_) => self.forget("internet-gateway")?,
                Err(e) if is_not_found(&e) => self.forget("internet-gateway")?,
                Err(e) => return Err(err(e, "DescribeInternetGateways")),
            }
        }
        if igw.is_none() {
            let found = ec2
                .describe_internet_gateways()
                .set_filters(Some(self.tag_filters(&name)))
                .send()
                .await
                .map_err(|e| err(e, "DescribeInternetGateways"))?;
            if let Some(g) = found.internet_gateways().first() {
                let id = g.internet_gateway_id().unwrap_or_default().to_string();
                self.record(
                    "InternetGateway",
                    &id,
                    "internet-gateway",
                    json!({ "adopted": true }),
                )?;
                igw = Some(g.clone());
            }
        }
        let igw = match igw {
            Some(g) => g,
            None => {
                let out = ec2
                    .create_internet_gateway()
                    .tag_specifications(self.tag_spec(ResourceType::InternetGateway, &name))
                    .send()
                    .await
                    .map_err(|e| err(e, "CreateInternetGateway"))?;
                let g = out
                    .internet_gateway()
                    .context("CreateInternetGateway returned nothing")?
                    .clone();
                self.record(
                    "InternetGateway",
                    g.internet_gateway_id().unwrap_or_default(),
                    "internet-gateway",
                    json!({}),
                )?;
                g
            }
        };
        let id = igw.internet_gateway_id().unwrap_or_default().to_string();
        let attached = igw.attachments().iter().any(|a| a.vpc_id() == Some(vpc));
        if !attached {
            ec2.attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| err(e, "AttachInternetGateway"))?;
        }
        if !attached || self.recorded("internet-gateway-attachment").is_none() {
            self.inv
                .resources
                .retain(|i| i.step() != "internet-gateway-attachment");
            self.record(
                "InternetGatewayAttachment",
                &id,
                "internet-gateway-attachment",
                json!({ "vpc_id": vpc }),
            )?;
        }
        Ok(id)
    }

    async fn route_table(&mut self, vpc: &str, igw: &str, subnets: &[String]) -> Result<()> {
        let name = self.spec.resource_name("rtb");
        let ec2 = &self.c.ec2;
        let mut table = None;
        if let Some(item) = self.recorded("route-table") {
            match ec2
                .describe_route_tables()
                .route_table_ids(&item.id)
                .send()
                .await
            {
                Ok(out) if !out.route_tables().is_empty() => {
                    table = Some(out.route_tables()[0].clone())
                }
                Ok(_) => self.forget("route-table")?,
                Err(e) if is_not_found(&e) => self.forget("route-table")?,
                Err(e) => return Err(err(e, "DescribeRouteTables")),
            }
        }
        if table.is_none() {
            let found = ec2
                .describe_route_tables()
                .set_filters(Some(self.tag_filters(&name)))
                .send()
                .await
                .map_err(|e| err(e, "DescribeRouteTables"))?;
            if let Some(t) = found.route_tables().first() {
                self.record(
                    "RouteTable",
                    t.route_table_id().unwrap_or_default(),
                    "route-table",
                    json!({ "vpc_id": vpc, "adopted": true }),
                )?;
                table = Some(t.clone());
            }
        }
        let table = match table {
            Some(t) => t,
            None => {
                let out = ec2
                    .create_route_table()
                    .vpc_id(vpc)
                    .tag_specifications(self.tag_spec(ResourceType::RouteTable, &name))
                    .send()
                    .await
                    .map_err(|e| err(e, "CreateRouteTable"))?;
                let t = out
                    .route_table()
                    .context("CreateRouteTable returned nothing")?
                    .clone();
                self.record(
                    "RouteTable",
                    t.route_table_id().unwrap_or_default(),
                    "route-table",
                    json!({ "vpc_id": vpc }),
                )?;
                t
            }
        };
        let rtb = table.route_table_id().unwrap_or_default().to_string();

        // Default route to the internet gateway.
        let has_route = table.routes().iter().any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0") && r.gateway_id() == Some(igw)
        });
        if !has_route {
            ec2.create_route()
                .route_table_id(&rtb)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map_err(|e| err(e, "CreateRoute"))?;
        }
        if !has_route || self.recorded("route-default").is_none() {
            self.inv.resources.retain(|i| i.step() != "route-default");
            self.record(
                "Route",
                "0.0.0.0/0",
                "route-default",
                json!({ "route_table_id": rtb, "gateway_id": igw }),
            )?;
        }

        // One association per subnet.
        for (i, subnet) in subnets.iter().enumerate() {
            let step = format!("route-table-association-{i}");
            let existing = table
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet.as_str()))
                .and_then(|a| a.route_table_association_id())
                .map(str::to_string);
            let assoc = match existing {
                Some(a) => a,
                None => ec2
                    .associate_route_table()
                    .route_table_id(&rtb)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(|e| err(e, "AssociateRouteTable"))?
                    .association_id()
                    .context("AssociateRouteTable returned no id")?
                    .to_string(),
            };
            if self.recorded(&step).map(|i| i.id) != Some(assoc.clone()) {
                self.inv.resources.retain(|i| i.step() != step);
                self.record(
                    "RouteTableAssociation",
                    &assoc,
                    &step,
                    json!({ "route_table_id": rtb, "subnet_id": subnet }),
                )?;
            }
        }
        Ok(())
    }

    async fn security_group(&mut self, vpc: &str) -> Result<String> {
        let name = self.spec.resource_name("cluster-sg");
        let ec2 = &self.c.ec2;
        if let Some(item) = self.recorded("security-group") {
            match ec2
                .describe_security_groups()
                .group_ids(&item.id)
                .send()
                .await
            {
                Ok(out) if !out.security_groups().is_empty() => return Ok(item.id),
                Ok(_) => self.forget("security-group")?,
                Err(e) if is_not_found(&e) => self.forget("security-group")?,
                Err(e) => return Err(err(e, "DescribeSecurityGroups")),
            }
        }
        let mut filters = self.tag_filters(&name);
        filters.push(Filter::builder().name("vpc-id").values(vpc).build());
        let found = ec2
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| err(e, "DescribeSecurityGroups"))?;
        if let Some(id) = found.security_groups().first().and_then(|g| g.group_id()) {
            let id = id.to_string();
            self.record(
                "SecurityGroup",
                &id,
                "security-group",
                json!({ "vpc_id": vpc, "adopted": true }),
            )?;
            return Ok(id);
        }
        let out = ec2
            .create_security_group()
            .group_name(&name)
            .description(format!(
                "Threeport control plane {} cluster",
                self.spec.name
            ))
            .vpc_id(vpc)
            .tag_specifications(self.tag_spec(ResourceType::SecurityGroup, &name))
            .send()
            .await
            .map_err(|e| err(e, "CreateSecurityGroup"))?;
        let id = out
            .group_id()
            .context("CreateSecurityGroup returned no id")?
            .to_string();
        self.record(
            "SecurityGroup",
            &id,
            "security-group",
            json!({ "vpc_id": vpc }),
        )?;
        // Members of the group (control plane and nodes) may talk to each other.
        let rule = ec2
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = rule
            && code(&e) != "InvalidPermission.Duplicate"
        {
            return Err(err(e, "AuthorizeSecurityGroupIngress"));
        }
        Ok(id)
    }

    async fn cluster(&mut self, role_arn: &str, subnets: &[String], sg: &str) -> Result<()> {
        let name = self.spec.cluster_name();
        let eks = &self.c.eks;
        let existing = match eks.describe_cluster().name(&name).send().await {
            Ok(out) => out.cluster().cloned(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(err(e, "DescribeCluster")),
        };
        if let Some(c) = existing {
            let status = c
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if status == "DELETING" || status == "FAILED" {
                bail!("EKS cluster {name} exists but is {status}; run `tptctl down` first");
            }
            if self.recorded("cluster").is_none() {
                let ours = c
                    .tags()
                    .is_some_and(|t| t.get(CONTROL_PLANE_TAG) == Some(&self.spec.name));
                if !ours {
                    bail!(
                        "EKS cluster {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
                        self.spec.name
                    );
                }
                self.record(
                    "EksCluster",
                    &name,
                    "cluster",
                    json!({ "arn": c.arn(), "adopted": true }),
                )?;
            }
            return Ok(());
        }
        if self.recorded("cluster").is_some() {
            self.forget("cluster")?;
        }
        let out = eks
            .create_cluster()
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
            .tags(CONTROL_PLANE_TAG, &self.spec.name)
            .tags("Name", &name)
            .send()
            .await
            .map_err(|e| err(e, "CreateCluster"))?;
        let arn = out
            .cluster()
            .and_then(|c| c.arn())
            .unwrap_or_default()
            .to_string();
        self.record("EksCluster", &name, "cluster", json!({ "arn": arn }))
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
        let cluster = self.spec.cluster_name();
        let name = self.spec.resource_name("nodes");
        let eks = &self.c.eks;
        let existing = match eks
            .describe_nodegroup()
            .cluster_name(&cluster)
            .nodegroup_name(&name)
            .send()
            .await
        {
            Ok(out) => out.nodegroup().cloned(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(err(e, "DescribeNodegroup")),
        };
        if let Some(ng) = existing {
            let status = ng
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if status == "DELETING" || status == "CREATE_FAILED" || status == "DELETE_FAILED" {
                bail!("node group {name} exists but is {status}; run `tptctl down` first");
            }
            if self.recorded("nodegroup").is_none() {
                let ours = ng
                    .tags()
                    .is_some_and(|t| t.get(CONTROL_PLANE_TAG) == Some(&self.spec.name));
                if !ours {
                    bail!(
                        "node group {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
                        self.spec.name
                    );
                }
                self.record(
                    "NodeGroup",
                    &name,
                    "nodegroup",
                    json!({ "cluster": cluster, "adopted": true }),
                )?;
            }
            return Ok(());
        }
        if self.recorded("nodegroup").is_some() {
            self.forget("nodegroup")?;
        }
        let s = self.spec;
        let out = eks
            .create_nodegroup()
            .cluster_name(&cluster)
            .nodegroup_name(&name)
            .node_role(node_role_arn)
            .set_subnets(Some(subnets.to_vec()))
            .instance_types(&s.instance_type)
            .scaling_config(
                NodegroupScalingConfig::builder()
                    .min_size(s.node_min)
                    .max_size(s.node_max)
                    .desired_size(s.node_desired)
                    .build(),
            )
            .tags(CONTROL_PLANE_TAG, &s.name)
            .tags("Name", &name)
            .send()
            .await
            .map_err(|e| err(e, "CreateNodegroup"))?;
        let arn = out
            .nodegroup()
            .and_then(|n| n.nodegroup_arn())
            .unwrap_or_default()
            .to_string();
        self.record(
            "NodeGroup",
            &name,
            "nodegroup",
            json!({ "cluster": cluster, "arn": arn }),
        )
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

    async fn access(&self) -> Result<ClusterAccess> {
        let name = self.spec.cluster_name();
        let out = self
            .c
            .eks
            .describe_cluster()
            .name(&name)
            .send()
            .await
            .map_err(|e| err(e, "DescribeCluster"))?;
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
