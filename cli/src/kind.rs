//! `tptctl up/down --provider kind`: the installer does the work; this writes the config
//! entry, last, so a failed `up` never leaves one behind.

use crate::config::{ControlPlane, Credential, KubeApi, ThreeportConfig, b64};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;
use threeport_installers::kind::{self, KindOptions};
use threeport_installers::manifests::Images;

pub const PROVIDER: &str = "kind";

pub async fn up(
    config_path: &Path,
    name: &str,
    port: u16,
    images: Images,
    retain: bool,
    verbose: bool,
) -> Result<()> {
    let mut cfg = ThreeportConfig::load(config_path)?;
    if crate::install::already_up(&cfg, name, PROVIDER).await? {
        return Ok(());
    }
    let opts = KindOptions {
        name: name.to_string(),
        port,
        images,
        retain,
        verbose,
        data_dir: crate::local::data_dir(config_path, name),
        rollout_timeout: Duration::from_secs(600),
    };
    let cancel = crate::install::cancel_on_ctrl_c();
    let progress = threeport_installers::Progress::new();
    let installed = kind::up(&opts, &progress, cancel).await?;
    cfg.upsert(ControlPlane {
        name: name.to_string(),
        provider: PROVIDER.into(),
        genesis: true,
        auth_enabled: true,
        api_server: installed.api_server,
        ca_cert: b64(&installed.ca_pem),
        credentials: vec![Credential {
            name: name.to_string(),
            client_cert: b64(&installed.client_cert_pem),
            client_key: b64(&installed.client_key_pem),
        }],
        encryption_key: installed.encryption_key,
        kube_api: KubeApi {
            api_endpoint: installed.kube_api.server.clone(),
            ca_certificate: installed
                .kube_api
                .ca_pem
                .as_deref()
                .map(b64)
                .unwrap_or_default(),
            certificate: installed
                .kube_api
                .cert_pem
                .as_deref()
                .map(b64)
                .unwrap_or_default(),
            key: installed
                .kube_api
                .key_pem
                .as_deref()
                .map(b64)
                .unwrap_or_default(),
        },
        ..Default::default()
    });
    cfg.current_control_plane = name.to_string();
    cfg.save(config_path)?;
    eprintln!(
        "\ncontrol plane {name:?} is ready on kind cluster {}\n\nNext:\n  tptctl apply -f testdata/samples/api-split.yaml\n  tptctl dashboard\n  tptctl down --name {name}",
        kind::cluster_name(name)
    );
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
