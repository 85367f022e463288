//! What an EKS control plane leaves in AWS (moto or real), counted.

use std::fmt;

use aws_config::SdkConfig;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::Filter;

/// The tag every EC2 resource of a control plane carries (`threeport-eks`'s
/// `CONTROL_PLANE_TAG`): `threeport.io/control-plane=<name>`.
pub const CONTROL_PLANE_TAG: &str = "threeport.io/control-plane";

/// Counts of everything an EKS control plane named `control_plane` has in AWS:
/// EC2 resources tagged [`CONTROL_PLANE_TAG`]`=<name>`, the EKS cluster
/// `threeport-<name>` and its node groups, the IAM roles named `threeport-<name>-…`, and the
/// ECR repository `threeport-<name>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub vpcs: usize,
    pub subnets: usize,
    pub internet_gateways: usize,
    pub route_tables: usize,
    pub security_groups: usize,
    pub clusters: usize,
    pub node_groups: usize,
    pub iam_roles: usize,
    pub ecr_repositories: usize,
}

impl Footprint {
    /// Everything a complete EKS `up` makes: one VPC, two subnets, one internet gateway, route
    /// table, security group, cluster, node group and ECR repository, and two IAM roles.
    pub const COMPLETE: Footprint = Footprint {
        vpcs: 1,
        subnets: 2,
        internet_gateways: 1,
        route_tables: 1,
        security_groups: 1,
        clusters: 1,
        node_groups: 1,
        iam_roles: 2,
        ecr_repositories: 1,
    };

    /// Counts what AWS at `cfg` holds for `control_plane`. Panics if a call fails.
    pub async fn of(cfg: &SdkConfig, control_plane: &str) -> Footprint {
        let ec2 = aws_sdk_ec2::Client::new(cfg);
        let eks = aws_sdk_eks::Client::new(cfg);
        let iam = aws_sdk_iam::Client::new(cfg);
        let ecr = aws_sdk_ecr::Client::new(cfg);
        let tag = || {
            Filter::builder()
                .name(format!("tag:{CONTROL_PLANE_TAG}"))
                .values(control_plane)
                .build()
        };
        let failed = |what: &str, e: &dyn std::error::Error| -> ! {
            panic!(
                "{what} (counting what control plane {control_plane} has in AWS): {}",
                DisplayErrorContext(e)
            )
        };

        let vpcs = ec2
            .describe_vpcs()
            .filters(tag())
            .send()
            .await
            .unwrap_or_else(|e| failed("DescribeVpcs", &e))
            .vpcs()
            .len();
        let subnets = ec2
            .describe_subnets()
            .filters(tag())
            .send()
            .await
            .unwrap_or_else(|e| failed("DescribeSubnets", &e))
            .subnets()
            .len();
        let internet_gateways = ec2
            .describe_internet_gateways()
            .filters(tag())
            .send()
            .await
            .unwrap_or_else(|e| failed("DescribeInternetGateways", &e))
            .internet_gateways()
            .len();
        let route_tables = ec2
            .describe_route_tables()
            .filters(tag())
            .send()
            .await
            .unwrap_or_else(|e| failed("DescribeRouteTables", &e))
            .route_tables()
            .len();
        let security_groups = ec2
            .describe_security_groups()
            .filters(tag())
            .send()
            .await
            .unwrap_or_else(|e| failed("DescribeSecurityGroups", &e))
            .security_groups()
            .len();

        let cluster = format!("threeport-{control_plane}");
        let mut clusters = 0;
        let mut next = None;
        loop {
            let page = eks
                .list_clusters()
                .set_next_token(next)
                .send()
                .await
                .unwrap_or_else(|e| failed("ListClusters", &e));
            clusters += page.clusters().iter().filter(|c| **c == cluster).count();
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        let mut node_groups = 0;
        if clusters > 0 {
            let mut next = None;
            loop {
                let page = eks
                    .list_nodegroups()
                    .cluster_name(&cluster)
                    .set_next_token(next)
                    .send()
                    .await
                    .unwrap_or_else(|e| failed("ListNodegroups", &e));
                node_groups += page.nodegroups().len();
                next = page.next_token().map(str::to_string);
                if next.is_none() {
                    break;
                }
            }
        }

        let prefix = format!("threeport-{control_plane}-");
        let mut iam_roles = 0;
        let mut marker = None;
        loop {
            let page = iam
                .list_roles()
                .set_marker(marker)
                .send()
                .await
                .unwrap_or_else(|e| failed("ListRoles", &e));
            iam_roles += page
                .roles()
                .iter()
                .filter(|r| r.role_name().starts_with(&prefix))
                .count();
            marker = page.marker().map(str::to_string);
            if !page.is_truncated() || marker.is_none() {
                break;
            }
        }

        let mut ecr_repositories = 0;
        let mut next = None;
        loop {
            let page = ecr
                .describe_repositories()
                .set_next_token(next)
                .send()
                .await
                .unwrap_or_else(|e| failed("DescribeRepositories", &e));
            ecr_repositories += page
                .repositories()
                .iter()
                .filter(|r| r.repository_name() == Some(cluster.as_str()))
                .count();
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }

        Footprint {
            vpcs,
            subnets,
            internet_gateways,
            route_tables,
            security_groups,
            clusters,
            node_groups,
            iam_roles,
            ecr_repositories,
        }
    }

    /// True if nothing of the control plane is left.
    pub fn is_empty(&self) -> bool {
        *self == Footprint::default()
    }

    fn fields(&self) -> [(&'static str, usize); 9] {
        [
            ("VPCs", self.vpcs),
            ("subnets", self.subnets),
            ("internet gateways", self.internet_gateways),
            ("route tables", self.route_tables),
            ("security groups", self.security_groups),
            ("EKS clusters", self.clusters),
            ("node groups", self.node_groups),
            ("IAM roles", self.iam_roles),
            ("ECR repositories", self.ecr_repositories),
        ]
    }
}

/// The non-zero counts (`VPCs: 1, subnets: 2, IAM roles: 2`), or `nothing`.
impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .fields()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what}: {n}"))
            .collect();
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Footprint;

    #[test]
    fn display_lists_non_zero_counts() {
        assert_eq!(Footprint::default().to_string(), "nothing");
        assert!(Footprint::default().is_empty());
        let fp = Footprint {
            vpcs: 1,
            subnets: 2,
            iam_roles: 2,
            ..Footprint::default()
        };
        assert!(!fp.is_empty());
        assert_eq!(fp.to_string(), "VPCs: 1, subnets: 2, IAM roles: 2");
    }

    /// Counted by tag, by exact cluster name and by role-name prefix: another
    /// control plane's resources (`kept2` next to `kept`) do not count.
    #[tokio::test]
    async fn counts_by_tag_and_name_in_moto() {
        let moto = crate::Moto::start().expect("moto_server");
        let cfg = moto.sdk_config().await;
        assert!(Footprint::of(&cfg, "kept").await.is_empty());

        let ec2 = aws_sdk_ec2::Client::new(&cfg);
        for (cp, cidr) in [("kept", "10.1.0.0/16"), ("kept2", "10.2.0.0/16")] {
            let tags = aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(super::CONTROL_PLANE_TAG)
                        .value(cp)
                        .build(),
                )
                .build();
            ec2.create_vpc()
                .cidr_block(cidr)
                .tag_specifications(tags)
                .send()
                .await
                .unwrap();
        }
        let iam = aws_sdk_iam::Client::new(&cfg);
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        for role in [
            "threeport-kept-cluster-role",
            "threeport-kept-node-role",
            "threeport-kept2-cluster-role",
            "other-kept-role",
        ] {
            iam.create_role()
                .role_name(role)
                .assume_role_policy_document(trust)
                .send()
                .await
                .unwrap();
        }

        let ecr = aws_sdk_ecr::Client::new(&cfg);
        for repo in ["threeport-kept", "threeport-kept2", "threeport-kept-x"] {
            ecr.create_repository()
                .repository_name(repo)
                .send()
                .await
                .unwrap();
        }

        let fp = Footprint::of(&cfg, "kept").await;
        assert_eq!(
            fp,
            Footprint {
                vpcs: 1,
                iam_roles: 2,
                ecr_repositories: 1,
                ..Footprint::default()
            }
        );
        assert_eq!(fp.to_string(), "VPCs: 1, IAM roles: 2, ECR repositories: 1");
        assert_eq!(Footprint::of(&cfg, "kept2").await.iam_roles, 1);
        assert!(Footprint::of(&cfg, "gone").await.is_empty());
    }
}
