//! `down`: delete exactly what the inventory lists, in reverse order.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_sdk_ec2::types::Filter;

use crate::aws::{AwsResultExt, Clients, Found};
use crate::wait::{EksStatusSource, StatusSource, Target, WaitOptions, wait_until};
use crate::{FileStore, Inventory, InventoryItem, InventoryStore, Progress};

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Items deleted (or found already gone), in deletion order.
    pub deleted: Vec<InventoryItem>,
    /// Items that could not be deleted, with the error. They stay in the inventory.
    pub failed: Vec<(InventoryItem, String)>,
}

/// Options for [`down_with`].
#[derive(Clone, Default)]
pub struct DownOptions {
    pub wait: WaitOptions,
}

/// Deletes everything in the inventory at `inventory_path` with default options.
/// A missing inventory file means there is nothing to delete.
pub async fn down(
    aws: &aws_config::SdkConfig,
    inventory_path: &Path,
    progress: &Progress,
) -> Result<DownReport> {
    down_with(aws, inventory_path, progress, &DownOptions::default()).await
}

/// Deletes everything in the inventory file, newest first. See [`down_in`].
pub async fn down_with(
    aws: &aws_config::SdkConfig,
    inventory_path: &Path,
    progress: &Progress,
    opts: &DownOptions,
) -> Result<DownReport> {
    let store = FileStore(inventory_path.to_path_buf());
    down_in(aws, &store, progress, opts).await
}

/// Deletes everything in the inventory, newest first. Failures do not stop the
/// walk: they are reported in [`DownReport::failed`] and kept in the inventory,
/// which is saved after every deletion (a file is removed once empty).
pub async fn down_in(
    aws: &aws_config::SdkConfig,
    store: &dyn InventoryStore,
    progress: &Progress,
    opts: &DownOptions,
) -> Result<DownReport> {
    let Some(mut inv) = store.load().await? else {
        return Ok(DownReport::default());
    };
    let clients = Clients::new(aws, &inv.region);
    let status: Arc<dyn StatusSource> = match &opts.wait.status {
        Some(s) => s.clone(),
        None => Arc::new(EksStatusSource {
            client: clients.eks.clone(),
        }),
    };
    let deleter = Deleter {
        c: &clients,
        progress,
        wait: &opts.wait,
        status: &*status,
    };
    let report = deleter
        .delete_items(&mut inv, store, "Deleting", |_| true)
        .await;
    Ok(report)
}

/// What deleting needs besides the inventory. Used by `down` and by `up`'s rollback.
pub(crate) struct Deleter<'a> {
    pub c: &'a Clients,
    pub progress: &'a Progress,
    pub wait: &'a WaitOptions,
    pub status: &'a dyn StatusSource,
}

impl Deleter<'_> {
    /// Deletes the selected items of `inv` in reverse order, saving the inventory after each
    /// deletion. A failure is shown on its ✗ line and reported; the walk goes on.
    pub async fn delete_items(
        &self,
        inv: &mut Inventory,
        store: &dyn InventoryStore,
        verb: &str,
        select: impl Fn(&InventoryItem) -> bool,
    ) -> DownReport {
        let (c, progress) = (self.c, self.progress);
        let mut report = DownReport::default();
        let items: Vec<InventoryItem> = inv
            .resources
            .iter()
            .rev()
            .filter(|i| select(i))
            .cloned()
            .collect();
        let vpc = inv
            .resources
            .iter()
            .find(|i| i.kind == "Vpc")
            .map(|i| i.id.clone());
        let mut swept = false;
        for item in items {
            // Once the cluster is gone, clear network interfaces left in the VPC
            // (they block security group, subnet and VPC deletion).
            if !swept
                && matches!(item.kind.as_str(), "SecurityGroup" | "Subnet" | "Vpc")
                && let Some(vpc) = &vpc
            {
                swept = true;
                progress.start(&format!("Deleting network interfaces in {vpc}"));
                match sweep_network_interfaces(c, vpc).await {
                    Ok(()) => progress.done(),
                    Err(e) => progress.failed_because(&format!("{e:#}")),
                }
            }
            progress.start(&format!("{verb} {} {}", item.kind, item.id));
            match delete_one(c, &item, self.wait, self.status).await {
                Ok(()) => {
                    progress.done();
                    if let Some(pos) = inv.resources.iter().position(|i| *i == item) {
                        inv.resources.remove(pos);
                    }
                    if let Err(e) = store.save(inv).await {
                        tracing::error!("saving inventory: {e:#}");
                    }
                    report.deleted.push(item);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    progress.failed_because(&msg);
                    report.failed.push((item, msg));
                }
            }
        }
        report
    }
}

/// Deletes one resource; "already gone" counts as success.
async fn delete_one(
    c: &Clients,
    item: &InventoryItem,
    wait: &WaitOptions,
    status: &dyn StatusSource,
) -> Result<()> {
    let id = item.id.as_str();
    macro_rules! gone_ok {
        ($call:expr, $op:expr) => {
            anyhow::Ok($call.send().await.aws($op).found().map(|_| ())?)
        };
    }
    match item.kind.as_str() {
        "NodeGroup" => {
            let cluster = item.extra_str("cluster").to_string();
            gone_ok!(
                c.eks
                    .delete_nodegroup()
                    .cluster_name(&cluster)
                    .nodegroup_name(id),
                "DeleteNodegroup"
            )?;
            wait_until(
                &format!("node group {id} to be deleted"),
                Target::Gone,
                || {
                    let cluster = cluster.clone();
                    Box::pin(async move { status.nodegroup_status(&cluster, id).await })
                },
                &*wait.clock,
                wait.interval,
                wait.nodegroup_timeout,
                None,
            )
            .await
        }
        "EksCluster" => {
            gone_ok!(c.eks.delete_cluster().name(id), "DeleteCluster")?;
            wait_until(
                &format!("EKS cluster {id} to be deleted"),
                Target::Gone,
                || Box::pin(async move { status.cluster_status(id).await }),
                &*wait.clock,
                wait.interval,
                wait.cluster_timeout,
                None,
            )
            .await
        }
        "SecurityGroup" => gone_ok!(
            c.ec2.delete_security_group().group_id(id),
            "DeleteSecurityGroup"
        ),
        "RouteTableAssociation" => {
            gone_ok!(
                c.ec2.disassociate_route_table().association_id(id),
                "DisassociateRouteTable"
            )
        }
        "Route" => gone_ok!(
            c.ec2
                .delete_route()
                .route_table_id(item.extra_str("route_table_id"))
                .destination_cidr_block(id),
            "DeleteRoute"
        ),
        "RouteTable" => gone_ok!(
            c.ec2.delete_route_table().route_table_id(id),
            "DeleteRouteTable"
        ),
        "InternetGatewayAttachment" => gone_ok!(
            c.ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(item.extra_str("vpc_id")),
            "DetachInternetGateway"
        ),
        "InternetGateway" => gone_ok!(
            c.ec2.delete_internet_gateway().internet_gateway_id(id),
            "DeleteInternetGateway"
        ),
        "Subnet" => gone_ok!(c.ec2.delete_subnet().subnet_id(id), "DeleteSubnet"),
        "Vpc" => gone_ok!(c.ec2.delete_vpc().vpc_id(id), "DeleteVpc"),
        "IamRolePolicyAttachment" => gone_ok!(
            c.iam
                .detach_role_policy()
                .role_name(item.extra_str("role"))
                .policy_arn(id),
            "DetachRolePolicy"
        ),
        "IamRole" => delete_role(c, id).await,
        crate::ecr::KIND => crate::ecr::delete(&c.ecr, id).await,
        other => anyhow::bail!("unknown inventory kind {other:?}; delete {id} by hand"),
    }
}

/// Detaches every managed policy, deletes inline policies, removes the role from
/// instance profiles, then deletes the role.
async fn delete_role(c: &Clients, name: &str) -> Result<()> {
    let iam = &c.iam;
    let Some(attached) = (iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await)
        .aws("ListAttachedRolePolicies")
        .found()?
    else {
        return Ok(());
    };
    for arn in attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
    {
        (iam.detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await)
            .aws("DetachRolePolicy")
            .found()?;
    }
    let inline = (iam.list_role_policies().role_name(name).send().await).aws("ListRolePolicies")?;
    for p in inline.policy_names() {
        (iam.delete_role_policy()
            .role_name(name)
            .policy_name(p)
            .send()
            .await)
            .aws("DeleteRolePolicy")?;
    }
    let profiles = (iam
        .list_instance_profiles_for_role()
        .role_name(name)
        .send()
        .await)
        .aws("ListInstanceProfilesForRole")?;
    for p in profiles.instance_profiles() {
        (iam.remove_role_from_instance_profile())
            .instance_profile_name(p.instance_profile_name())
            .role_name(name)
            .send()
            .await
            .aws("RemoveRoleFromInstanceProfile")?;
    }
    (iam.delete_role().role_name(name).send().await)
        .aws("DeleteRole")
        .found()?;
    Ok(())
}

/// Deletes the network interfaces left in the VPC (detaching those that are
/// attached). Interfaces owned by other services (load balancers) cannot be
/// deleted this way; the error names them.
async fn sweep_network_interfaces(c: &Clients, vpc: &str) -> Result<()> {
    let out = c
        .ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .aws("DescribeNetworkInterfaces")?;
    let mut failures = Vec::new();
    for eni in out.network_interfaces() {
        let Some(id) = eni.network_interface_id() else {
            continue;
        };
        if let Some(att) = eni.attachment().and_then(|a| a.attachment_id())
            && let Err(e) = (c.ec2.detach_network_interface())
                .attachment_id(att)
                .force(true)
                .send()
                .await
                .aws("DetachNetworkInterface")
                .found()
        {
            failures.push(format!("{id}: {e}"));
            continue;
        }
        if let Err(e) = (c.ec2.delete_network_interface())
            .network_interface_id(id)
            .send()
            .await
            .aws("DeleteNetworkInterface")
            .found()
        {
            failures.push(format!("{id}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failures.join("; "))).context("network interfaces remain")
    }
}
