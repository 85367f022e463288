//! What AWS-facing dependencies read about an EKS runtime: the inventory its
//! `AwsEksKubernetesRuntimeInstance` records (the format `installers/eks` writes), which names
//! its VPC, subnets, cluster security group and cluster.

use crate::runtime::ReconcileError;
use threeport_api::Client;
use threeport_api::kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE;
use threeport_eks::Inventory;

/// The inventory of runtime `rid`'s EKS instance; `None` when it has none (not an EKS runtime,
/// or not provisioned yet).
async fn inventory_of(api: &Client, rid: u64) -> Result<Option<Inventory>, ReconcileError> {
    let eks = api
        .list(
            AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
            &[("kubernetesruntimeinstanceid", rid.to_string())],
        )
        .await?;
    Ok(eks
        .first()
        .and_then(|e| e.get("ResourceInventory"))
        .and_then(|v| serde_json::from_value::<Inventory>(v.clone()).ok()))
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

/// The network of runtime `rid`; `None` while its inventory has none.
pub async fn network_of(api: &Client, rid: u64) -> Result<Option<Network>, ReconcileError> {
    let Some(inv) = inventory_of(api, rid).await? else {
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
    Ok(inventory_of(api, rid)
        .await?
        .and_then(|inv| ids(&inv, "EksCluster").into_iter().next()))
}
