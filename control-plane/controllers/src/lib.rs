//! Controllers: a shared runtime (locks, backoff, in-progress acks, delivery limits, events)
//! and the reconcilers built on it. They talk to the control plane only through its REST API.

#![forbid(unsafe_code)]

pub mod aws;
pub mod bucket;
pub mod cluster;
pub mod dependency;
pub mod eks;
pub mod eks_runtime;
pub mod gateway;
pub mod kuberuntime;
pub mod rds;
pub mod registration;
pub mod runtime;
pub mod secret;
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
    /// How often EKS runtimes' tokens are looked at (one that lapses within a minute is
    /// replaced).
    pub token_refresh_interval: Duration,
    /// Run only these controllers (`workload`, `kubernetes-runtime`, `secret`, `aws`, `gateway`);
    /// `None` runs all of them.
    pub only: Option<Vec<String>>,
    /// How the AWS-facing controllers reach AWS.
    pub aws: aws::AwsAccess,
    /// Where the gateway controller gets the support services it installs.
    pub support: gateway::SupportConfig,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            runtime: runtime::Options::default(),
            runtime_check_interval: Duration::from_secs(10),
            token_refresh_interval: Duration::from_secs(60),
            only: None,
            aws: aws::AwsAccess::default(),
            support: gateway::SupportConfig::default(),
        }
    }
}

impl ControllerOptions {
    /// The controllers to run, checked against the registry.
    pub fn selected(&self) -> anyhow::Result<Vec<&'static str>> {
        let all = threeport_api::kinds::controllers();
        let Some(only) = &self.only else {
            return Ok(all);
        };
        let mut out = Vec::new();
        for name in only {
            match all.iter().find(|c| **c == name.as_str()) {
                Some(c) => out.push(*c),
                None => anyhow::bail!(
                    "unknown controller {name:?}; this release has: {}",
                    all.join(", ")
                ),
            }
        }
        Ok(out)
    }
}

/// Run one reconciler under a registration of its own (tests, and controllers built outside
/// this crate): register, reconcile until `shutdown`, then remove the registration.
pub async fn run_registered<R: runtime::Reconciler>(
    reconciler: Arc<R>,
    api: Client,
    notifications: Notifications,
    opts: runtime::Options,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reg =
        registration::Registration::new(vec![reconciler.name().to_string()], reconciler.kinds());
    let id = reg.register_until_done(&api, &shutdown).await;
    let heartbeat = tokio::spawn(reg.keep(api.clone(), id, shutdown.clone()));
    let r = runtime::run(reconciler, api, notifications.source(), opts, shutdown).await;
    heartbeat.await.ok();
    r
}

/// Run the selected controllers (all of them by default) until `shutdown`.
pub async fn run_all(
    api: Client,
    notifications: Notifications,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let selected = opts.selected()?;
    let clients = Arc::new(cluster::Clients::default());
    let watchers = Arc::new(status::StatusWatchers::new(shutdown.clone()));
    let workload = Arc::new(workload::WorkloadReconciler {
        clients: clients.clone(),
        watchers,
        definitions: Default::default(),
    });
    let runtimes = Arc::new(kuberuntime::RuntimeReconciler {
        clients: clients.clone(),
    });
    let secrets = Arc::new(secret::SecretReconciler {
        clients: clients.clone(),
        aws: opts.aws.clone(),
    });
    let gateways = Arc::new(gateway::Gateways {
        clients: clients.clone(),
        aws: opts.aws.clone(),
        support: opts.support.clone(),
    });
    let aws = Arc::new(rds::AwsReconciler {
        clients,
        aws: opts.aws.clone(),
    });
    // Register before the first reconcile, so the server knows these kinds are served.
    let kinds: Vec<&'static threeport_api::Kind> = selected
        .iter()
        .flat_map(|c| threeport_api::kinds::served_by(c))
        .collect();
    let reg =
        registration::Registration::new(selected.iter().map(|c| c.to_string()).collect(), kinds);
    let id = reg.register_until_done(&api, &shutdown).await;
    let heartbeat = tokio::spawn(reg.keep(api.clone(), id, shutdown.clone()));

    let start = Start {
        api: &api,
        notifications: &notifications,
        opts: &opts.runtime,
        shutdown: &shutdown,
    };
    let mut runs: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = Vec::new();
    if selected.contains(&"workload") {
        // Status follows the cluster even for workloads this process never reconciled (a
        // restart, another replica): watch every runtime that has workloads from the start.
        {
            let (api, clients, watchers) = (
                api.clone(),
                workload.clients.clone(),
                workload.watchers.clone(),
            );
            tokio::spawn(async move { status::watch_all(&api, &clients, &watchers).await });
        }
        runs.push(start.run(workload));
    }
    let mut monitor = None;
    if selected.contains(&"kubernetes-runtime") {
        monitor = Some(tokio::spawn(kuberuntime::monitor(
            api.clone(),
            opts.runtime_check_interval,
            shutdown.clone(),
        )));
        runs.push(start.run(runtimes));
    }
    if selected.contains(&"aws") {
        tokio::spawn(eks_runtime::refresh_tokens(
            api.clone(),
            opts.aws.clone(),
            opts.token_refresh_interval,
            shutdown.clone(),
        ));
        runs.push(start.run(aws));
    }
    if selected.contains(&"secret") {
        runs.push(start.run(secrets));
    }
    if selected.contains(&"gateway") {
        runs.push(start.run(gateways));
    }
    let mut result = Ok(());
    for r in runs {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(anyhow::anyhow!("controller task: {e}")),
        }
    }
    if let Some(m) = monitor {
        m.abort();
    }
    heartbeat.await.ok();
    result
}

/// What every reconciler of one process runs with.
struct Start<'a> {
    api: &'a Client,
    notifications: &'a Notifications,
    opts: &'a runtime::Options,
    shutdown: &'a CancellationToken,
}

impl Start<'_> {
    fn run<R: runtime::Reconciler>(
        &self,
        reconciler: Arc<R>,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        tokio::spawn(runtime::run(
            reconciler,
            self.api.clone(),
            self.notifications.source(),
            self.opts.clone(),
            self.shutdown.clone(),
        ))
    }
}
