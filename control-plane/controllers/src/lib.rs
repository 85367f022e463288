//! Controllers: a shared runtime (locks, backoff, in-progress acks, delivery limits, events)
//! and the reconcilers built on it. They talk to the control plane only through its REST API.

pub mod cluster;
pub mod kuberuntime;
pub mod runtime;
pub mod status;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;
use threeport_api::Client;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Where every reconciler gets its notifications.
#[derive(Clone)]
pub enum Notifications {
    JetStream(async_nats::Client),
    /// The embedded server's bus: `(subject, payload)`.
    Local(broadcast::Sender<(String, String)>),
}

impl Notifications {
    fn source(&self) -> runtime::Source {
        match self {
            Notifications::JetStream(c) => runtime::Source::JetStream(c.clone()),
            Notifications::Local(tx) => runtime::Source::Local(tx.subscribe()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub runtime: runtime::Options,
    /// How often runtimes are checked for reachability.
    pub runtime_check_interval: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            runtime: runtime::Options::default(),
            runtime_check_interval: Duration::from_secs(10),
        }
    }
}

/// Run every controller until `shutdown`.
pub async fn run_all(
    api: Client,
    notifications: Notifications,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clients = Arc::new(cluster::Clients::default());
    let watchers = Arc::new(status::StatusWatchers::new(shutdown.clone()));
    let workload = Arc::new(workload::WorkloadReconciler {
        clients: clients.clone(),
        watchers,
    });
    let runtimes = Arc::new(kuberuntime::RuntimeReconciler { clients });
    let monitor = tokio::spawn(kuberuntime::monitor(
        api.clone(),
        opts.runtime_check_interval,
        shutdown.clone(),
    ));
    // Status follows the cluster even for workloads this process never reconciled (a restart,
    // another replica): watch every runtime that has workloads from the start.
    {
        let (api, clients, watchers) = (
            api.clone(),
            workload.clients.clone(),
            workload.watchers.clone(),
        );
        tokio::spawn(async move { status::watch_all(&api, &clients, &watchers).await });
    }
    let (a, b) = tokio::join!(
        runtime::run(
            workload,
            api.clone(),
            notifications.source(),
            opts.runtime.clone(),
            shutdown.clone()
        ),
        runtime::run(
            runtimes,
            api.clone(),
            notifications.source(),
            opts.runtime.clone(),
            shutdown.clone()
        ),
    );
    monitor.abort();
    a?;
    b?;
    Ok(())
}
