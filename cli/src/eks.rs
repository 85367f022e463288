//! `tptctl up/down --provider eks`: `threeport_eks::provider` does the work (the AWS
//! infrastructure, every resource in `~/.threeport/eks-inventory-NAME.json` as soon as it
//! exists, then the control plane behind a load balancer); this writes the config entry, last,
//! so a failed `up` never leaves one behind, and says what a failure left.

use crate::config::ThreeportConfig;
use crate::hint;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use threeport_eks::provider::{self, EksOptions, EksPlace};
use threeport_installers::manifests::Images;

pub const PROVIDER: &str = provider::PROVIDER;

pub fn inventory_path(config_path: &Path, name: &str) -> PathBuf {
    config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("eks-inventory-{name}.json"))
}

fn place(config_path: &Path, name: &str, region: &str, profile: Option<&str>) -> EksPlace {
    EksPlace {
        region: region.to_string(),
        profile: profile.map(str::to_string),
        data_dir: crate::local::data_dir(config_path, name),
        inventory: inventory_path(config_path, name),
    }
}

/// What `tptctl up --provider eks` was asked for.
pub struct UpOptions {
    pub name: String,
    pub region: String,
    /// AWS config profile; `None` for the default credential chain.
    pub profile: Option<String>,
    pub images: Images,
    /// Build the image from this tptctl and push it to the control plane's ECR repository (no
    /// published image was asked for).
    pub build: Option<threeport_installers::kind::BuildImage>,
    /// Keep what a failed `up` created.
    pub retain: bool,
    /// For each rollout, the load balancer, then the API.
    pub timeout: Duration,
}

/// How long `up` waits for each rollout and for the API unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(900);

pub async fn up(config_path: &Path, opts: UpOptions) -> Result<()> {
    let name = opts.name.as_str();
    let eks = EksOptions {
        name: name.to_string(),
        place: place(config_path, name, &opts.region, opts.profile.as_deref()),
        images: opts.images,
        build: opts.build,
        retain: opts.retain,
        timeout: opts.timeout,
    };
    let mut resume = format!(
        "tptctl up --provider eks --name {name} --aws-region {}",
        opts.region
    );
    if let Some(p) = &opts.profile {
        resume.push_str(&format!(" --aws-config-profile {p}"));
    }
    let done = crate::install::provision(
        config_path,
        name,
        PROVIDER,
        &resume,
        |progress, cancel| async move { provider::up(&eks, &progress, cancel).await },
    )
    .await?;
    if done.is_some() {
        eprintln!(
            "\ncontrol plane {name:?} is ready on EKS cluster {}\n\nNext:\n  tptctl get kubernetes-runtime-instances\n  tptctl dashboard",
            threeport_eks::EksSpec::new(name, &opts.region).cluster_name()
        );
    }
    Ok(())
}

/// Delete the load balancer, then exactly the inventory; remove the entry once nothing is left.
pub async fn down(config_path: &Path, name: &str) -> Result<()> {
    let mut cfg = ThreeportConfig::load(config_path)?;
    let inventory = inventory_path(config_path, name);
    let (region, profile) = match cfg.get(name) {
        Some(cp) => (
            cp.eks_provider_config.aws_region.clone(),
            Some(cp.eks_provider_config.aws_config_profile.clone()).filter(|p| !p.is_empty()),
        ),
        None => {
            let inv = threeport_eks::Inventory::load(&inventory)?
                .with_context(|| format!("no control plane or EKS inventory named {name:?}"))?;
            (inv.region, None)
        }
    };
    let progress = threeport_installers::Progress::new();
    let place = place(config_path, name, &region, profile.as_deref());
    let report = provider::down(&place, &progress).await?;
    if !report.failed.is_empty() {
        // Each one's reason is on its ✗ line above.
        let left: Vec<String> = (report.failed.iter())
            .map(|(item, _)| format!("{} {}", item.kind, item.id))
            .collect();
        return Err(hint::error(
            format!(
                "{} AWS resources remain (listed in {}): {}",
                left.len(),
                inventory.display(),
                left.join(", ")
            ),
            format!("run `tptctl down --name {name}` again once their dependencies are gone"),
        ));
    }
    if cfg.remove(name) {
        cfg.save(config_path)?;
    }
    eprintln!(
        " ✓ deleted {} AWS resources and removed {name:?}",
        report.deleted.len()
    );
    Ok(())
}
