//! A controller process tells the control plane which kinds it serves, and keeps saying so.
//!
//! The registration is a `Controller` object, written through the REST API like everything a
//! controller writes. It is created (or taken over, after a restart with the same name) before
//! the first reconcile, heartbeats every few seconds, and is removed on a clean shutdown. The
//! server treats a registration without a recent heartbeat as gone, so objects of kinds that no
//! live controller serves show `Pending` with the reason rather than `Reconciling` forever.

use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::kinds::{self, CONTROLLER, Kind};
use threeport_api::object::now_rfc3339;
use threeport_api::{Client, ObjectExt};
use tokio_util::sync::CancellationToken;

/// What this process serves.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Unique per process: the pod name in a cluster, `host-pid` elsewhere.
    pub name: String,
    /// Controller names (`workload`, `kubernetes-runtime`, or a test's own).
    pub controllers: Vec<String>,
    pub kinds: Vec<&'static Kind>,
}

impl Registration {
    pub fn new(controllers: Vec<String>, kinds: Vec<&'static Kind>) -> Registration {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "host".into());
        Registration {
            name: format!("{host}-{}", std::process::id()),
            controllers,
            kinds,
        }
    }

    fn body(&self) -> Value {
        json!({
            "Name": self.name,
            "Controllers": self.controllers,
            "Kinds": self.kinds.iter().map(|k| k.name).collect::<Vec<_>>(),
            "HeartbeatAt": now_rfc3339(),
            "Version": env!("CARGO_PKG_VERSION"),
            "Host": std::env::var("HOSTNAME").unwrap_or_default(),
            "Status": "Running",
            "StatusReason": format!("serves {}", self.controllers.join(", ")),
        })
    }

    /// Create the registration, or take over one of the same name. Returns its ID.
    pub async fn register(&self, api: &Client) -> Result<u64, threeport_api::ApiError> {
        let existing = api.list(CONTROLLER, &[("name", self.name.clone())]).await?;
        let body = self.body();
        match existing.first().and_then(|o| o.id()) {
            Some(id) => api.patch(CONTROLLER, id, &body).await.map(|_| id),
            None => {
                let created = api.create(CONTROLLER, &body).await?;
                Ok(created.id().unwrap_or_default())
            }
        }
    }

    /// Register, retrying until the API answers (it may start after the controllers).
    pub async fn register_until_done(
        &self,
        api: &Client,
        shutdown: &CancellationToken,
    ) -> Option<u64> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.register(api).await {
                Ok(id) => return Some(id),
                Err(e) => {
                    tracing::info!(error = %e, "cannot register the controller yet; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return None,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Heartbeat until `shutdown`, then remove the registration. A failed
    /// heartbeat (the API is down) is retried at the next tick; if the registration was removed
    /// meanwhile (the server forgot a long-silent controller), it is created again.
    pub async fn keep(self, api: Client, mut id: Option<u64>, shutdown: CancellationToken) {
        let interval = Duration::from_secs(kinds::CONTROLLER_HEARTBEAT_INTERVAL_SECS);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => break,
            }
            id = match id {
                None => self.register(&api).await.ok(),
                Some(i) => match api.patch(CONTROLLER, i, &self.body()).await {
                    Ok(_) => Some(i),
                    Err(e) if e.is_not_found() => self.register(&api).await.ok(),
                    Err(e) => {
                        tracing::warn!(error = %e, "controller heartbeat failed");
                        Some(i)
                    }
                },
            };
        }
        if let Some(i) = id {
            if let Err(e) = api.delete(CONTROLLER, i).await {
                tracing::warn!(error = %e, "cannot remove the controller registration");
            }
        }
    }
}
