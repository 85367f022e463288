//! `tptctl up/down --provider kubernetes`: the installer does the work; this writes the config
//! entry, last, so a failed `up` never leaves one behind.

use crate::config::ThreeportConfig;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;
use threeport_installers::kubernetes::{self, ImageSource, KubernetesOptions};
use threeport_installers::manifests::Images;

pub const PROVIDER: &str = kubernetes::PROVIDER;

/// How long `up` waits for the load balancer, each rollout and the API unless `--timeout`
/// says otherwise (image pulls from a remote registry can take minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What `tptctl up --provider kubernetes` was asked for.
pub struct UpOptions {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
    pub images: Images,
    pub image: ImageSource,
    pub api_address: Option<String>,
    pub retain: bool,
    pub verbose: bool,
    pub timeout: Duration,
}

/// `--kubeconfig`, else the first file of `$KUBECONFIG`, else `~/.kube/config`, as kubectl.
pub fn kubeconfig_path(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    std::env::home_dir()
        .unwrap_or_default()
        .join(".kube")
        .join("config")
}

pub async fn up(config_path: &Path, opts: UpOptions) -> Result<()> {
    let name = opts.name.as_str();
    let k = KubernetesOptions {
        name: name.to_string(),
        kubeconfig: opts.kubeconfig.clone(),
        context: opts.context.clone(),
        data_dir: crate::local::data_dir(config_path, name),
        images: opts.images,
        image: opts.image,
        api_address: opts.api_address,
        retain: opts.retain,
        verbose: opts.verbose,
        timeout: opts.timeout,
    };
    let mut resume = format!(
        "tptctl up --provider kubernetes --name {name} --kubeconfig {}",
        opts.kubeconfig.display()
    );
    if let Some(c) = &opts.context {
        resume.push_str(&format!(" --context {c}"));
    }
    let done = crate::install::provision(
        config_path,
        name,
        PROVIDER,
        &resume,
        |progress, cancel| async move { kubernetes::up(&k, &progress, cancel).await },
    )
    .await?;
    if let Some(installed) = done {
        let context = match &installed.provider {
            threeport_installers::ProviderConfig::Kubernetes { context } => context.clone(),
            _ => String::new(),
        };
        eprintln!(
            "\ncontrol plane {name:?} is ready in context {context} (namespace {})\n\nNext:\n  tptctl get kubernetes-runtime-instances\n  tptctl dashboard\n  tptctl down --name {name}",
            threeport_installers::manifests::NAMESPACE
        );
    }
    Ok(())
}

pub async fn down(config_path: &Path, name: &str) -> Result<()> {
    let progress = threeport_installers::Progress::new();
    kubernetes::down(
        &crate::local::data_dir(config_path, name),
        DEFAULT_TIMEOUT,
        &progress,
    )
    .await?;
    let mut cfg = ThreeportConfig::load(config_path)?;
    if cfg.remove(name) {
        cfg.save(config_path)?;
        eprintln!(" ✓ removed {name:?} from {}", config_path.display());
    }
    Ok(())
}
