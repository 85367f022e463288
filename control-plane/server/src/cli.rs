//! The `threeport` command line: `serve`, `controllers`, `migrate`. It lives in the library so
//! that one executable can carry the whole control plane: the `threeport` binary runs it, and
//! so does `tptctl` when it is started as `threeport` (the control plane image's entry point)
//! or as `tptctl threeport …`.

use crate::{DEFAULT_BODY_LIMIT, ServeConfig};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The program name the control plane runs under.
pub const NAME: &str = "threeport";

#[derive(Parser)]
#[command(name = "threeport", version, about = "The Threeport control plane")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Db {
    /// postgres://… or postgresql://… (CockroachDB, PostgreSQL), or sqlite://FILE (embedded).
    #[arg(long, env = "THREEPORT_DATABASE_URL")]
    database_url: String,
}

/// Where the gateway controller gets the support services it installs on a runtime that lacks
/// them (a Gateway API implementation, cert-manager): official release manifests by default.
#[derive(clap::Args, Clone, Debug)]
struct SupportArgs {
    /// The Gateway API implementation's manifests: a URL or a directory of YAML files
    /// [default: Envoy Gateway's pinned release]
    #[arg(long, env = "THREEPORT_GATEWAY_MANIFESTS")]
    gateway_manifests: Option<String>,
    /// Their sha256 (hex; for a directory, of its .yaml/.yml files concatenated in name order).
    #[arg(long, env = "THREEPORT_GATEWAY_MANIFESTS_SHA256")]
    gateway_manifests_sha256: Option<String>,
    /// The controllerName of the GatewayClass made after that install when it brings none.
    #[arg(long, env = "THREEPORT_GATEWAY_CONTROLLER_NAME")]
    gateway_controller_name: Option<String>,
    /// cert-manager's manifests: a URL or a directory [default: cert-manager's pinned release]
    #[arg(long, env = "THREEPORT_CERT_MANAGER_MANIFESTS")]
    cert_manager_manifests: Option<String>,
    #[arg(long, env = "THREEPORT_CERT_MANAGER_MANIFESTS_SHA256")]
    cert_manager_manifests_sha256: Option<String>,
    /// The ACME directory certificates are issued by [default: Let's Encrypt]
    #[arg(long, env = "THREEPORT_ACME_SERVER")]
    acme_server: Option<String>,
    /// Seconds a Gateway may wait to be programmed (its load balancer's address) before it is
    /// shown Degraded.
    #[arg(
        long,
        env = "THREEPORT_GATEWAY_PROGRAMMED_GRACE_SECS",
        default_value_t = 90
    )]
    gateway_programmed_grace_secs: u64,
}

/// The support-services config from the environment alone (`THREEPORT_GATEWAY_MANIFESTS`, …),
/// for a control plane started without this command line (`tptctl up --provider local`).
pub fn support_config_from_env() -> anyhow::Result<threeport_controllers::gateway::SupportConfig> {
    #[derive(Parser)]
    struct FromEnv {
        #[command(flatten)]
        support: SupportArgs,
    }
    Ok(FromEnv::try_parse_from([NAME])?.support.config())
}

impl SupportArgs {
    fn config(self) -> threeport_controllers::gateway::SupportConfig {
        let mut c = threeport_controllers::gateway::SupportConfig::default();
        if let Some(src) = self.gateway_manifests {
            c.gateway.version = format!("the Gateway API implementation from {src}");
            c.gateway.source = src;
        }
        c.gateway.sha256 = self.gateway_manifests_sha256;
        if let Some(n) = self.gateway_controller_name {
            c.gateway_controller = n;
        }
        if let Some(src) = self.cert_manager_manifests {
            c.cert_manager.version = format!("cert-manager from {src}");
            c.cert_manager.source = src;
        }
        c.cert_manager.sha256 = self.cert_manager_manifests_sha256;
        if let Some(a) = self.acme_server {
            c.acme_server = a;
        }
        c.programmed_grace = std::time::Duration::from_secs(self.gateway_programmed_grace_secs);
        c
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API, relay notifications and stream changes.
    Serve {
        #[arg(long, default_value = "127.0.0.1:1323")]
        listen: SocketAddr,
        #[command(flatten)]
        db: Db,
        /// NATS server with JetStream. Without it, notifications use the in-process bus.
        #[arg(long, env = "THREEPORT_NATS_URL")]
        nats_url: Option<String>,
        /// Directory with ca.crt, server.crt and server.key: serve HTTPS and require client certificates.
        #[arg(long, env = "THREEPORT_TLS_DIR")]
        tls_dir: Option<PathBuf>,
        /// File holding the 32-byte (or base64) key that encrypts secret fields.
        #[arg(long, env = "THREEPORT_ENCRYPTION_KEY_FILE")]
        encryption_key_file: Option<PathBuf>,
        /// Allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
        #[arg(long)]
        insecure_no_tls: bool,
        /// Do not run migrations at start (run `threeport migrate` separately).
        #[arg(long)]
        no_migrate: bool,
        /// Largest accepted request body, in bytes.
        #[arg(long, default_value_t = DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// Do not run the controllers in this process (run `threeport controllers` instead).
        #[arg(long)]
        no_controllers: bool,
        #[command(flatten)]
        support: SupportArgs,
    },
    /// Run the controllers on their own, against a control plane's API and NATS.
    Controllers {
        /// The API, e.g. https://threeport-api-server:1323.
        #[arg(long, env = "THREEPORT_API_URL")]
        api_url: String,
        #[arg(long, env = "THREEPORT_NATS_URL")]
        nats_url: String,
        /// Directory with ca.crt, client.crt and client.key for mutual TLS to the API.
        #[arg(long, env = "THREEPORT_TLS_DIR")]
        tls_dir: Option<PathBuf>,
        /// Objects each controller reconciles at the same time.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds before an unacknowledged notification is redelivered (in-progress acks extend it).
        #[arg(long, default_value_t = 30)]
        ack_wait_secs: u64,
        /// Seconds a crashed replica's per-object lock outlives it.
        #[arg(long, default_value_t = 60)]
        lock_ttl_secs: u64,
        /// Seconds between looks at the EKS runtimes' tokens (each is replaced a minute before
        /// it lapses).
        #[arg(long, env = "THREEPORT_TOKEN_REFRESH_CHECK_SECS", default_value_t = 60)]
        token_refresh_check_secs: u64,
        /// Run only these controllers, comma-separated (`workload`, `kubernetes-runtime`, `secret`,
        /// `aws`, `gateway`); default: all of them. Each registers the kinds it serves with the API.
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        #[command(flatten)]
        support: SupportArgs,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: Db,
    },
}

/// Run the `threeport` command line with these arguments (the first is the program name):
/// parse, set up logging and the TLS provider, and run the command to its end. Both the
/// `threeport` binary and `tptctl` (as the control plane image's entry point) call this.
pub fn main_with<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

/// Run one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("THREEPORT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    crate::install_crypto_provider();
    match cli.command {
        Command::Migrate { db } => {
            crate::store::Store::create_database_if_missing(&db.database_url).await?;
            let store = crate::store::Store::connect(&db.database_url).await?;
            store.migrate().await?;
            eprintln!(
                "migrations applied to {}",
                crate::redact_url(&db.database_url)
            );
        }
        Command::Controllers {
            api_url,
            nats_url,
            tls_dir,
            concurrency,
            ack_wait_secs,
            lock_ttl_secs,
            token_refresh_check_secs,
            only,
            support,
        } => {
            let api = api_client(&api_url, tls_dir.as_deref())?;
            let nats = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(&nats_url)
                .await?;
            let token = tokio_util::sync::CancellationToken::new();
            shutdown_on_signal(token.clone());
            let mut opts = threeport_controllers::ControllerOptions::default();
            opts.runtime.concurrency = concurrency;
            opts.runtime.ack_wait = std::time::Duration::from_secs(ack_wait_secs.max(1));
            opts.runtime.lock_ttl = std::time::Duration::from_secs(lock_ttl_secs.max(1));
            opts.only = only;
            opts.support = support.config();
            opts.token_refresh_interval =
                std::time::Duration::from_secs(token_refresh_check_secs.max(1));
            // Refuse an unknown name before connecting anywhere.
            opts.selected()?;
            threeport_controllers::run_all(
                api,
                threeport_controllers::Notifications::JetStream(nats),
                opts,
                token,
            )
            .await?;
        }
        Command::Serve {
            listen,
            db,
            nats_url,
            tls_dir,
            encryption_key_file,
            insecure_no_tls,
            no_migrate,
            body_limit,
            no_controllers,
            support,
        } => {
            let encryption_key = match (
                encryption_key_file,
                std::env::var("THREEPORT_ENCRYPTION_KEY").ok(),
            ) {
                (Some(f), _) => {
                    Some(std::fs::read(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?)
                }
                (None, Some(k)) => Some(k.into_bytes()),
                (None, None) => None,
            };
            let controller_tls = tls_dir.clone();
            let cfg = ServeConfig {
                listen,
                database_url: db.database_url,
                nats_url: nats_url.clone(),
                tls_dir,
                encryption_key,
                insecure_no_tls,
                migrate: !no_migrate,
                body_limit,
            };
            let mut server = crate::start(cfg).await?;
            let token = server.shutdown_token();
            shutdown_on_signal(token.clone());
            if !no_controllers {
                let url = format!(
                    "{}://127.0.0.1:{}",
                    if server.tls { "https" } else { "http" },
                    server.addr.port()
                );
                let api = api_client(&url, controller_tls.as_deref())?;
                let notifications = match (&nats_url, &server.local_bus) {
                    (Some(n), _) => threeport_controllers::Notifications::JetStream(
                        async_nats::ConnectOptions::new()
                            .retry_on_initial_connect()
                            .connect(n)
                            .await?,
                    ),
                    (None, Some(bus)) => {
                        threeport_controllers::Notifications::Local(bus.forward(token.clone()))
                    }
                    (None, None) => anyhow::bail!("no notification source for the controllers"),
                };
                let t = token.clone();
                let opts = threeport_controllers::ControllerOptions {
                    support: support.config(),
                    ..Default::default()
                };
                tokio::spawn(async move {
                    if let Err(e) =
                        threeport_controllers::run_all(api, notifications, opts, t).await
                    {
                        tracing::error!(error = %e, "controllers stopped");
                    }
                });
            }
            server.wait().await;
        }
    }
    Ok(())
}

/// The REST client the controllers use; with a TLS dir, its client certificate.
fn api_client(
    url: &str,
    tls_dir: Option<&std::path::Path>,
) -> anyhow::Result<threeport_api::Client> {
    let tls = match tls_dir {
        Some(dir) => {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(f).display()))
            };
            Some(threeport_api::ClientTls {
                ca_pem: read("ca.crt")?,
                cert_pem: read("client.crt")?,
                key_pem: read("client.key")?,
            })
        }
        None => None,
    };
    Ok(threeport_api::Client::new(url, tls.as_ref())?)
}

/// SIGTERM or Ctrl-C stops everything gracefully: locks released, work requeued.
fn shutdown_on_signal(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}
