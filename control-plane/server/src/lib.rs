//! The Threeport control plane: REST API (axum), store (sqlx: CockroachDB, PostgreSQL or SQLite),
//! transactional outbox relayed to NATS JetStream or an in-process bus, and the watch stream.
//!
//! [`start`] is the one entry point: `threeport serve` calls it, `tptctl up --provider local`
//! calls it, and the tests call it.

#![forbid(unsafe_code)]

pub mod bus;
pub mod cli;
pub mod crypto;
pub mod group_commit;
pub mod http;
pub mod ids;
pub mod lifecycle;
pub mod openapi;
pub mod registrations;
pub mod relay;
pub mod store;
pub mod tls;
pub mod watch;

use bus::{Bus, JetStreamBus, LocalBus};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use tls::install_crypto_provider;

/// Upstream's API port.
pub const DEFAULT_PORT: u16 = 1323;
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Upstream's page size, and the largest page a client may ask for.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// `postgres://…`/`postgresql://…` (CockroachDB or PostgreSQL) or `sqlite://FILE`.
    pub database_url: String,
    /// Without it, notifications go to the in-process bus (embedded mode).
    pub nats_url: Option<String>,
    /// `ca.crt`, `server.crt`, `server.key`: serve HTTPS and require client certificates.
    pub tls_dir: Option<PathBuf>,
    /// 32 bytes (raw or base64) for AES-256-GCM of secret fields.
    pub encryption_key: Option<Vec<u8>>,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_no_tls: bool,
    /// Run migrations before serving.
    pub migrate: bool,
    pub body_limit: usize,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> ServeConfig {
        ServeConfig {
            listen,
            database_url: database_url.into(),
            nats_url: None,
            tls_dir: None,
            encryption_key: None,
            insecure_no_tls: false,
            migrate: true,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// A running control plane.
pub struct Server {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The in-process bus in embedded mode, for controllers running in the same process.
    pub local_bus: Option<LocalBus>,
    pub store: Arc<store::Store>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Resolves when the server stops (after [`Server::shutdown`] or a fatal error).
    pub async fn wait(&mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// Stop accepting requests, end watch streams, stop the relay. Pending notifications stay in
    /// the outbox for the next start.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

pub async fn start(cfg: ServeConfig) -> anyhow::Result<Server> {
    install_crypto_provider();
    if cfg.tls_dir.is_none() && !cfg.listen.ip().is_loopback() && !cfg.insecure_no_tls {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}: give --tls-dir (mutual TLS), listen on a loopback address, \
             or pass --insecure-no-tls if something in front of this server terminates TLS",
            cfg.listen
        );
    }
    let tls_config = match &cfg.tls_dir {
        Some(dir) => Some(tls::server_config(dir)?),
        None => None,
    };
    let store = Arc::new(store::Store::connect(&cfg.database_url).await?);
    if cfg.migrate {
        store
            .migrate()
            .await
            .map_err(|e| anyhow::anyhow!("migrations on {}: {e}", redact_url(&cfg.database_url)))?;
    }
    let cipher = match &cfg.encryption_key {
        Some(k) => Some(Arc::new(crypto::Cipher::from_key_material(k)?)),
        None => None,
    };
    let (bus, local_bus, nats) = match &cfg.nats_url {
        Some(url) => {
            let js = JetStreamBus::connect(url).await?;
            let client = js.client();
            (Bus::JetStream(js), None, Some(client))
        }
        None => {
            let local = LocalBus::new();
            (Bus::Local(local.clone()), Some(local), None)
        }
    };
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Wake::default());
    let watcher = watch::Watcher::new();
    let registry = Arc::new(registrations::Registry::default());
    let state = http::AppState {
        registry: registry.clone(),
        store: store.clone(),
        cipher,
        wake: wake.clone(),
        watcher: watcher.clone(),
        nats,
        shutdown: shutdown.clone(),
    };
    let app = http::router(state, cfg.body_limit);
    let mut tasks = vec![
        tokio::spawn(registrations::run(
            registry,
            store.clone(),
            wake.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(relay::run(
            store.clone(),
            Arc::new(bus),
            Arc::new(wake.relay_handle()),
            shutdown.clone(),
        )),
        tokio::spawn(watcher.tail(
            store.clone(),
            Arc::new(wake.watch_handle()),
            shutdown.clone(),
        )),
    ];
    let addr;
    match tls_config {
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
            let server = axum_server::bind_rustls(cfg.listen, rustls).handle(handle.clone());
            let stop = shutdown.clone();
            let h2 = handle.clone();
            tasks.push(tokio::spawn(async move {
                stop.cancelled().await;
                h2.graceful_shutdown(Some(Duration::from_secs(3)));
            }));
            let serve = tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "API server stopped");
                }
            });
            addr = match handle.listening().await {
                Some(a) => a,
                None => {
                    let _ = serve.await;
                    anyhow::bail!("cannot listen on {}", cfg.listen);
                }
            };
            tasks.push(serve);
        }
        None => {
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
            addr = listener.local_addr()?;
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "API server stopped");
                }
            }));
        }
    }
    tracing::info!(%addr, tls = cfg.tls_dir.is_some(), nats = cfg.nats_url.is_some(), "threeport API listening");
    Ok(Server {
        addr,
        tls: cfg.tls_dir.is_some(),
        local_bus,
        store,
        shutdown,
        tasks,
    })
}

/// Wakes the outbox relay and the watch tailer after a commit. Each has its own `Notify` and is
/// poked with `notify_one`, which keeps a permit when the task is busy: a commit that lands while
/// the relay is mid-query is still seen at once, not after the next poll.
#[derive(Default)]
pub struct Wake {
    relay: Arc<Notify>,
    watch: Arc<Notify>,
}

impl Wake {
    pub fn poke(&self) {
        self.relay.notify_one();
        self.watch.notify_one();
    }
    fn relay_handle(&self) -> NotifyHandle {
        NotifyHandle(self.relay.clone())
    }
    fn watch_handle(&self) -> NotifyHandle {
        NotifyHandle(self.watch.clone())
    }
}

/// One side of [`Wake`], for the task that waits on it.
pub struct NotifyHandle(Arc<Notify>);

impl NotifyHandle {
    pub async fn notified(&self) {
        self.0.notified().await
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
