//! What `up` does the same way for every provider: stop early when the control plane already
//! answers, stop on Ctrl-C, turn the provider's [`Installed`] into the config entry (the one
//! place an entry is built), and turn a failed `up`'s [`UpFailed`] into `hint:` lines.

use crate::config::{ControlPlane, Credential, EksProviderConfig, KubeApi, ThreeportConfig, b64};
use crate::hint::Hint;
use anyhow::Result;
use std::path::Path;
use threeport_installers::{Installed, ProviderConfig, UpFailed};
use tokio_util::sync::CancellationToken;

/// Whether `name` already exists with `provider` and answers: then `up` says so and stops.
/// A name taken by another provider is an error.
pub async fn already_up(cfg: &ThreeportConfig, name: &str, provider: &str) -> Result<bool> {
    if let Some(existing) = cfg.existing(name, provider)?
        && existing.client()?.version().await.is_ok()
    {
        eprintln!(
            "control plane {name:?} is already running at {}",
            existing.url()
        );
        return Ok(true);
    }
    Ok(false)
}

/// Cancelled on Ctrl-C: an install then rolls back (or keeps, with --retain) instead of
/// leaving half of itself behind.
pub fn cancel_on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c.cancel();
        }
    });
    cancel
}

/// The config entry of an installed control plane, in upstream's format.
pub fn entry(installed: &Installed) -> ControlPlane {
    let opt_b64 = |pem: &Option<String>| pem.as_deref().map(b64).unwrap_or_default();
    let kube_api = match &installed.kube_api {
        Some(k) => KubeApi {
            api_endpoint: k.connection.server.clone(),
            ca_certificate: opt_b64(&k.connection.ca_pem),
            certificate: opt_b64(&k.connection.cert_pem),
            key: opt_b64(&k.connection.key_pem),
        },
        None => KubeApi::default(),
    };
    let eks_provider_config = match &installed.provider {
        ProviderConfig::Eks {
            region,
            profile,
            account_id,
            ..
        } => EksProviderConfig {
            aws_config_profile: profile.clone().unwrap_or_else(|| "default".into()),
            aws_region: region.clone(),
            aws_account_id: account_id.clone(),
        },
        ProviderConfig::Local | ProviderConfig::Kind { .. } | ProviderConfig::Kubernetes { .. } => {
            EksProviderConfig::default()
        }
    };
    ControlPlane {
        name: installed.name.clone(),
        provider: installed.provider.name().into(),
        genesis: true,
        auth_enabled: true,
        api_server: installed.api_server.clone(),
        ca_cert: b64(&installed.tls.ca_pem),
        credentials: vec![Credential {
            name: installed.name.clone(),
            client_cert: b64(&installed.tls.cert_pem),
            client_key: b64(&installed.tls.key_pem),
        }],
        encryption_key: installed.encryption_key.clone(),
        kube_api,
        eks_provider_config,
        ..Default::default()
    }
}

/// Write the entry of `installed` and make it the current control plane: the last step of
/// every `up`, so a failed one never leaves an entry.
/// The `up` flow every cluster provider shares: a running control plane of that name is left as
/// it is; otherwise the provider installs it (Ctrl-C cancels, a failure is explained with the
/// command that resumes), and the config entry is written last, so a failed `up` leaves none.
/// Returns `None` when it was already up.
pub async fn provision<F, Fut>(
    config_path: &Path,
    name: &str,
    provider: &str,
    resume: &str,
    install: F,
) -> Result<Option<Installed>>
where
    F: FnOnce(threeport_installers::Progress, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<Installed>>,
{
    let cfg = ThreeportConfig::load(config_path)?;
    if already_up(&cfg, name, provider).await? {
        return Ok(None);
    }
    let installed = install(threeport_installers::Progress::new(), cancel_on_ctrl_c())
        .await
        .map_err(|e| explain(e, name, resume))?;
    save(config_path, &installed)?;
    Ok(Some(installed))
}

pub fn save(config_path: &Path, installed: &Installed) -> Result<()> {
    let mut cfg = ThreeportConfig::load(config_path)?;
    cfg.upsert(entry(installed));
    cfg.current_control_plane = installed.name.clone();
    cfg.save(config_path)
}

/// A failed `up`'s error with what it left as hints: the summary, and when something is left,
/// how to resume (`resume`, the `up` command line) or delete it.
pub fn explain(e: anyhow::Error, name: &str, resume: &str) -> anyhow::Error {
    let Some(failed) = UpFailed::of(&e).cloned() else {
        return e;
    };
    let summary = failed.summary();
    let r = Err::<(), _>(e);
    let r = if failed.left_behind.is_empty() {
        r.hint(summary)
    } else {
        r.hint(format!(
            "resume with `{resume}`, or delete what is left with `tptctl down --name {name}`"
        ))
        .hint(summary)
    };
    r.expect_err("an error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_failed_up_says_what_it_left_and_what_to_do() {
        let mut f = UpFailed::new("creating control plane dev on kind");
        f.retained = true;
        f.left_behind = vec!["kind cluster threeport-dev".into()];
        let e = Err::<(), _>(anyhow::anyhow!("kind get kubeconfig failed"))
            .context(f)
            .unwrap_err();
        let e = explain(e, "dev", "tptctl up --provider kind --name dev");
        assert_eq!(
            crate::hint::render(&e),
            "error: creating control plane dev on kind: kind get kubeconfig failed\n\
             hint: kept for debugging: kind cluster threeport-dev\n\
             hint: resume with `tptctl up --provider kind --name dev`, or delete what is left with `tptctl down --name dev`\n"
        );
    }

    #[test]
    fn one_function_builds_every_entry() {
        let installed = Installed {
            name: "prod".into(),
            api_server: "lb.example:1323".into(),
            tls: threeport_api::ClientTls {
                ca_pem: "CA".into(),
                cert_pem: "CERT".into(),
                key_pem: "KEY".into(),
            },
            encryption_key: "k".into(),
            kube_api: Some(threeport_installers::KubeApi {
                connection: threeport_installers::kubeconfig::Connection {
                    server: "https://eks.example".into(),
                    ca_pem: Some("KCA".into()),
                    ..Default::default()
                },
                kubeconfig: "/tmp/kubeconfig".into(),
            }),
            provider: ProviderConfig::Eks {
                cluster: "threeport-prod".into(),
                region: "eu-west-1".into(),
                profile: None,
                account_id: "123456789012".into(),
            },
        };
        let e = entry(&installed);
        assert_eq!(
            (e.provider.as_str(), e.api_server.as_str()),
            ("eks", "lb.example:1323")
        );
        assert_eq!(e.ca_cert, b64("CA"));
        assert_eq!(e.credentials[0].client_key, b64("KEY"));
        assert_eq!(e.kube_api.api_endpoint, "https://eks.example");
        assert_eq!(e.kube_api.ca_certificate, b64("KCA"));
        assert_eq!(e.kube_api.certificate, "");
        assert_eq!(e.eks_provider_config.aws_region, "eu-west-1");
        assert_eq!(e.eks_provider_config.aws_account_id, "123456789012");
        assert_eq!(e.eks_provider_config.aws_config_profile, "default");
        let local = entry(&Installed {
            kube_api: None,
            provider: ProviderConfig::Local,
            ..installed
        });
        assert_eq!(local.provider, "local");
        assert_eq!(local.kube_api, KubeApi::default());
        assert_eq!(local.eks_provider_config, EksProviderConfig::default());
    }
}
