//! Provision and tear down what an EKS control plane needs (IAM roles, VPC,
//! subnets, internet gateway, routes, security group, EKS cluster, node group, ECR repository),
//! recording every resource in a crash-safe [`Inventory`] the moment it exists.
//!
//! * [`up`] creates, resumes from an existing inventory, and rolls back what the
//!   current run created on error or cancellation (unless [`UpOptions::retain`]).
//! * [`down`] deletes exactly the inventory, in reverse order, and reports what
//!   it could not delete (those items stay in the inventory file).
//!
//! * [`provider`] is `tptctl up/down --provider eks`: this infrastructure, then the control
//!   plane installed into the cluster behind a load balancer, ending in an [`Installed`].
//! * [`ecr`] is the control plane's ECR repository: created by `up` (last), deleted by `down`,
//!   pushed to by the provider.
//! * [`AwsError`] is how every failed AWS call reads: `<Operation>: <Code>: <message>`.
//!
//! See README.md for the inventory format and the creation/deletion order.

#![forbid(unsafe_code)]

pub mod aws;
mod down;
pub mod ecr;
mod inventory;
pub mod provider;
pub mod token;
mod up;
pub mod wait;

pub use aws::{AwsError, AwsErrorKind, AwsResultExt, CONTROL_PLANE_TAG, Found};
pub use down::{DownOptions, DownReport, down, down_in, down_with};
pub use inventory::{FileStore, Inventory, InventoryItem, InventoryStore, StoreFuture};
pub use threeport_installers::{Installed, Progress, UpFailed};
pub use up::{UpOptions, up, up_in, up_with};
pub use wait::{Clock, StatusSource, TokioClock, WaitOptions};

/// What to create.
#[derive(Debug, Clone)]
pub struct EksSpec {
    /// Control plane name: lowercase letters, digits and `-`, starting with a
    /// letter, at most 32 characters. Resources are named `threeport-<name>-…`.
    pub name: String,
    pub region: String,
    /// Availability zones to spread subnets over (EKS needs at least 2).
    pub zone_count: usize,
    pub instance_type: String,
    pub node_min: i32,
    pub node_max: i32,
    pub node_desired: i32,
}

impl EksSpec {
    /// A spec with the defaults: 2 zones, `t3.medium`, 1–3 nodes, 2 desired.
    pub fn new(name: &str, region: &str) -> Self {
        Self {
            name: name.to_string(),
            region: region.to_string(),
            zone_count: 2,
            instance_type: "t3.medium".to_string(),
            node_min: 1,
            node_max: 3,
            node_desired: 2,
        }
    }

    /// Checks that every name derived from the spec is valid for AWS
    /// (IAM role names ≤ 64 chars, EKS names `[A-Za-z0-9][A-Za-z0-9_-]*`, …).
    pub fn validate(&self) -> anyhow::Result<()> {
        let n = &self.name;
        let ok = !n.is_empty()
            && n.len() <= 32
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && !n.ends_with('-')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        anyhow::ensure!(
            ok,
            "invalid control plane name {n:?}: use 1-32 lowercase letters, digits and '-', starting with a letter"
        );
        anyhow::ensure!(!self.region.is_empty(), "region is empty");
        anyhow::ensure!(
            (2..=6).contains(&self.zone_count),
            "zone_count must be between 2 and 6 (EKS needs subnets in at least two zones)"
        );
        anyhow::ensure!(!self.instance_type.is_empty(), "instance_type is empty");
        anyhow::ensure!(
            self.node_min >= 0
                && self.node_max >= 1
                && self.node_min <= self.node_desired
                && self.node_desired <= self.node_max,
            "node sizes must satisfy 0 <= min <= desired <= max and max >= 1"
        );
        Ok(())
    }

    /// `threeport-<name>-<suffix>`.
    pub fn resource_name(&self, suffix: &str) -> String {
        format!("threeport-{}-{suffix}", self.name)
    }

    /// The EKS cluster name: `threeport-<name>`.
    pub fn cluster_name(&self) -> String {
        format!("threeport-{}", self.name)
    }
}

/// How to reach the cluster `up` created.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    pub endpoint: String,
    /// The cluster CA, PEM-encoded.
    pub ca_pem: String,
    pub cluster_name: String,
    /// The AWS account it was created in.
    pub account_id: String,
    /// The ECR repository's URI (`<account>.dkr.ecr.<region>.amazonaws.com/threeport-<name>`),
    /// where the provider pushes an image built from this `tptctl`.
    pub image_repository: String,
}
