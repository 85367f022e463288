//! What `up` does the same way for every provider that installs into a cluster (kind, EKS).

use crate::config::ThreeportConfig;
use anyhow::Result;
use tokio_util::sync::CancellationToken;

/// Whether `name` already exists with `provider` and answers: then `up` says so and stops.
/// A name taken by another provider is an error.
pub async fn already_up(cfg: &ThreeportConfig, name: &str, provider: &str) -> Result<bool> {
    if let Some(existing) = cfg.existing(name, provider)? {
        if existing.client()?.version().await.is_ok() {
            eprintln!(
                "control plane {name:?} is already running at {}",
                existing.url()
            );
            return Ok(true);
        }
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
