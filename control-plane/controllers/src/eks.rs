//! What AWS-facing dependencies read about an EKS runtime: the inventory its
//! `AwsEksKubernetesRuntimeInstance` records (the format `installers/eks` writes), which names
//! its VPC, subnets, cluster security group and cluster.

use crate::runtime::ReconcileError;
use threeport_api::Client;
use threeport_api::kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE;
use threeport_eks::Inventory;

/// The inventory of runtime `rid`'s EKS instance; `None` while it has none (not provisioned
/// yet). A runtime that is not an EKS runtime at all is a permanent error: `what` (`an RDS
/// database`) says what needed one, and waiting would show `Reconciling` forever.
async fn inventory_of(
    api: &Client,
    rid: u64,
    what: &str,
) -> Result<Option<Inventory>, ReconcileError> {
    let eks = api
        .list(
            AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
            &[("kubernetesruntimeinstanceid", rid.to_string())],
        )
        .await?;
    let Some(eks) = eks.first() else {
        let runtime = api
            .get(threeport_api::kinds::KUBERNETES_RUNTIME_INSTANCE, rid)
            .await?;
        return Err(ReconcileError::Permanent(format!(
            "{what} needs an EKS runtime, and the workload's runtime {:?} is not one (no AwsEksKubernetesRuntimeInstance); run the workload on an EKS runtime",
            threeport_api::ObjectExt::name(&runtime)
        )));
    };
    let inv = eks
        .get("ResourceInventory")
        .and_then(|v| serde_json::from_value::<Inventory>(v.clone()).ok());
    // Not provisioned, and nothing provisioning it (no EKS controller runs, or it gave up):
    // waiting would never end.
    let status = threeport_api::ObjectExt::status(eks);
    if inv.is_none() && matches!(status, Some("Pending" | "Failed")) {
        return Err(ReconcileError::Permanent(format!(
            "{what} needs its EKS runtime provisioned, and AwsEksKubernetesRuntimeInstance {:?} is {}: {}",
            threeport_api::ObjectExt::name(eks),
            status.unwrap_or_default(),
            threeport_api::ObjectExt::status_reason(eks).unwrap_or("no reason recorded")
        )));
    }
    Ok(inv)
}

fn ids(inv: &Inventory, kind: &str) -> Vec<String> {
    inv.resources
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.id.clone())
        .collect()
}

/// The VPC a runtime's databases go in.
pub struct Network {
    pub vpc: String,
    pub subnets: Vec<String>,
    /// The group the cluster's nodes are in: the only one a database admits.
    pub cluster_security_group: String,
}

/// The network of runtime `rid`; `None` while its inventory has none (still provisioning).
pub async fn network_of(api: &Client, rid: u64) -> Result<Option<Network>, ReconcileError> {
    let Some(inv) =
        inventory_of(api, rid, "an RDS database (it lives in its runtime's VPC)").await?
    else {
        return Ok(None);
    };
    let (vpc, subnets, groups) = (
        ids(&inv, "Vpc"),
        ids(&inv, "Subnet"),
        ids(&inv, "SecurityGroup"),
    );
    match (vpc.first(), groups.first()) {
        (Some(vpc), Some(sg)) if !subnets.is_empty() => Ok(Some(Network {
            vpc: vpc.clone(),
            subnets,
            cluster_security_group: sg.clone(),
        })),
        _ => Ok(None),
    }
}

/// The EKS cluster of runtime `rid`; `None` while its inventory has none.
pub async fn cluster_of(api: &Client, rid: u64) -> Result<Option<String>, ReconcileError> {
    Ok(inventory_of(
        api,
        rid,
        "a bucket (its role is assumed through the cluster's OIDC provider)",
    )
    .await?
    .and_then(|inv| ids(&inv, "EksCluster").into_iter().next()))
}
