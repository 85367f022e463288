//! `tptctl up/down --provider kind`: the installer does the work; this writes the config
//! entry, last, so a failed `up` never leaves one behind.

use crate::config::ThreeportConfig;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;
use threeport_installers::kind::{self, KindOptions};
use threeport_installers::manifests::Images;

pub const PROVIDER: &str = kind::PROVIDER;

/// How long `up` waits for each rollout and for the API unless `--timeout` says otherwise:
/// image pulls on a cold kind node can take minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What `tptctl up --provider kind` was asked for.
pub struct UpOptions {
    pub name: String,
    /// Host port for the API.
    pub port: u16,
    /// Host ports for the gateway's HTTP and HTTPS node ports.
    pub gateway_ports: Option<(u16, u16)>,
    pub images: Images,
    /// Build the image from this tptctl and load it (no published image was asked for).
    pub build: Option<threeport_installers::kind::BuildImage>,
    /// Keep what a failed `up` created.
    pub retain: bool,
    /// Show kind's own output.
    pub verbose: bool,
    /// For each rollout, then the API.
    pub timeout: Duration,
}

pub async fn up(config_path: &Path, opts: UpOptions) -> Result<()> {
    let name = opts.name.as_str();
    let kind_opts = KindOptions {
        name: name.to_string(),
        port: opts.port,
        gateway_ports: opts.gateway_ports,
        images: opts.images,
        retain: opts.retain,
        verbose: opts.verbose,
        data_dir: crate::local::data_dir(config_path, name),
        rollout_timeout: opts.timeout,
        build: opts.build,
    };
    let resume = format!("tptctl up --provider kind --name {name}");
    let done = crate::install::provision(
        config_path,
        name,
        PROVIDER,
        &resume,
        |progress, cancel| async move { kind::up(&kind_opts, &progress, cancel).await },
    )
    .await?;
    if done.is_some() {
        eprintln!(
            "\ncontrol plane {name:?} is ready on kind cluster {}\n\nNext:\n  tptctl apply -f testdata/samples/api-split.yaml\n  tptctl dashboard\n  tptctl down --name {name}",
            kind::cluster_name(name)
        );
    }
    Ok(())
}

pub fn down(config_path: &Path, name: &str) -> Result<()> {
    let progress = threeport_installers::Progress::new();
    kind::down(
        name,
        &crate::local::data_dir(config_path, name),
        false,
        &progress,
    )?;
    let mut cfg = ThreeportConfig::load(config_path)?;
    if cfg.remove(name) {
        cfg.save(config_path)?;
        eprintln!(" ✓ removed {name:?} from {}", config_path.display());
    }
    Ok(())
}
