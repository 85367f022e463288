//! `tptctl up/down --provider local`: the embedded control plane (SQLite, in-process bus, mTLS)
//! as a background process of this same binary, so nothing else needs installing.
//!
//! Layout of `<config dir>/<name>/`: `tls/` (CA, server and client certificates), `encryption.key`,
//! `threeport.db`, `threeport.log`, `threeport.pid`, `port`.

use crate::config::ThreeportConfig;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use threeport_installers::{Installed, ProviderConfig};
use threeport_pki::{TlsBundle, files};

pub const PROVIDER: &str = threeport_installers::outcome::LOCAL;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn data_dir(config_path: &Path, name: &str) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join(name)
}

fn pid_of(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("threeport.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Is `pid` alive and our server (not a recycled pid)?
fn is_our_server(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("serve-local"))
        .unwrap_or(false)
}

pub fn running_pid(dir: &Path) -> Option<i32> {
    pid_of(dir).filter(|p| is_our_server(*p))
}

// The one unsafe call in tptctl: signalling the background control plane it started.
#[allow(unsafe_code)]
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("threeport.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn free_port(preferred: u16) -> Result<u16> {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Start (or resume) the local control plane and write its config entry.
pub async fn up(config_path: &Path, name: &str, port: Option<u16>) -> Result<()> {
    let started = Instant::now();
    let cfg = ThreeportConfig::load(config_path)?;
    cfg.existing(name, PROVIDER)?;
    let dir = data_dir(config_path, name);
    if let Some(pid) = running_pid(&dir)
        && let Some(cp) = cfg.get(name)
    {
        eprintln!(
            "control plane {name:?} is already running (pid {pid}) at {}",
            cp.url()
        );
        return Ok(());
    }
    let fresh =
        !dir.join(files::CA_CERT).exists() && !dir.join("tls").join(files::CA_CERT).exists();
    let result = start(&dir, name, port, fresh).await;
    let installed = match result {
        Ok(installed) => installed,
        Err(e) => {
            // Leave nothing behind: no process, no config entry, no half-made data dir.
            if let Some(pid) = running_pid(&dir) {
                signal(pid, libc::SIGKILL);
            }
            let tail = log_tail(&dir);
            if fresh {
                let _ = std::fs::remove_dir_all(&dir);
            }
            if tail.is_empty() {
                return Err(e);
            }
            return Err(e.context(format!("the control plane's log ended with:\n{tail}")));
        }
    };
    crate::install::save(config_path, &installed)?;
    eprintln!(
        " ✓ control plane {name:?} is ready ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    eprintln!("   data and logs: {}", dir.display());
    eprintln!(
        "\nNext:\n  tptctl apply -f testdata/samples/api-split.yaml\n  tptctl get workloads\n  tptctl down --name {name}"
    );
    Ok(())
}

async fn start(dir: &Path, name: &str, port: Option<u16>, fresh: bool) -> Result<Installed> {
    let tls_dir = dir.join("tls");
    if fresh {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        TlsBundle::generate(&[])
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .write_dir(&tls_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = threeport_server::crypto::Cipher::generate_key_b64();
        threeport_pki::write_file(&dir.join("encryption.key"), key.as_bytes(), true)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Keep the port across restarts so the config entry stays valid.
    let port = match (
        port,
        std::fs::read_to_string(dir.join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok()),
    ) {
        (Some(p), _) => p,
        (None, Some(p)) => p,
        (None, None) => free_port(threeport_server::DEFAULT_PORT)?,
    };
    std::fs::write(dir.join("port"), port.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("threeport.log"))?;
    let exe = std::env::current_exe().context("cannot find the tptctl executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve-local")
        .arg("--dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: Ctrl-C in this terminal must not stop the control plane.
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .context("cannot start the control plane process")?;
    std::fs::write(dir.join("threeport.pid"), child.id().to_string())?;

    let read = |f: &str| {
        std::fs::read_to_string(tls_dir.join(f))
            .with_context(|| format!("missing {f} in {}", tls_dir.display()))
    };
    let installed = Installed {
        name: name.to_string(),
        api_server: format!("127.0.0.1:{port}"),
        tls: threeport_api::ClientTls {
            ca_pem: read(files::CA_CERT)?,
            cert_pem: read(files::CLIENT_CERT)?,
            key_pem: read(files::CLIENT_KEY)?,
        },
        encryption_key: std::fs::read_to_string(dir.join("encryption.key"))?
            .trim()
            .to_string(),
        kube_api: None,
        provider: ProviderConfig::Local,
    };
    let client = installed.client()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the control plane process exited ({status}) before it was ready");
        }
        if client.version().await.is_ok() {
            return Ok(installed);
        }
        if Instant::now() > deadline {
            bail!(
                "the control plane was not ready after {}s",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Stop the local control plane, remove its config entry, and with `purge` its data.
pub fn down(config_path: &Path, name: &str, purge: bool) -> Result<()> {
    let mut cfg = ThreeportConfig::load(config_path)?;
    let dir = data_dir(config_path, name);
    match cfg.get(name) {
        Some(cp) if cp.provider != PROVIDER => {
            bail!(
                "control plane {name:?} uses provider {:?}; `tptctl down` supports only the local provider in this version",
                cp.provider
            )
        }
        None if !dir.exists() => {
            bail!("no control plane named {name:?} (see `tptctl config get-control-planes`)")
        }
        _ => {}
    }
    if let Some(pid) = running_pid(&dir) {
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_our_server(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_our_server(pid) {
            signal(pid, libc::SIGKILL);
        }
        eprintln!(" ✓ stopped control plane {name:?} (pid {pid})");
    }
    let _ = std::fs::remove_file(dir.join("threeport.pid"));
    if cfg.remove(name) {
        cfg.save(config_path)?;
        eprintln!(" ✓ removed {name:?} from {}", config_path.display());
    }
    if purge {
        std::fs::remove_dir_all(&dir).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        eprintln!(" ✓ deleted {}", dir.display());
    } else if dir.exists() {
        eprintln!(
            "   data kept in {} (`tptctl up --provider local --name {name}` resumes it; --purge deletes it)",
            dir.display()
        );
    }
    Ok(())
}

/// The background process itself (hidden `tptctl serve-local`).
pub async fn serve(dir: &Path, listen: std::net::SocketAddr) -> Result<()> {
    let key = std::fs::read(dir.join("encryption.key")).context("missing encryption.key")?;
    let mut cfg = threeport_server::ServeConfig::new(
        listen,
        format!("sqlite://{}", dir.join("threeport.db").display()),
    );
    cfg.tls_dir = Some(dir.join("tls"));
    cfg.encryption_key = Some(key);
    let mut server = threeport_server::start(cfg).await?;
    let token = server.shutdown_token();
    // Controllers in the same process, on the in-process bus, through the API like any client.
    if let Some(bus) = &server.local_bus {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join("tls").join(f))
                .with_context(|| format!("missing tls/{f}"))
        };
        let tls = threeport_api::ClientTls {
            ca_pem: read(files::CA_CERT)?,
            cert_pem: read(files::CLIENT_CERT)?,
            key_pem: read(files::CLIENT_KEY)?,
        };
        let api = threeport_api::Client::new(
            &format!("https://127.0.0.1:{}", server.addr.port()),
            Some(&tls),
        )?;
        let notifications = threeport_controllers::Notifications::Local(bus.forward(token.clone()));
        let t = token.clone();
        // The support services' sources come from the environment `up` ran in, as for
        // `threeport serve`.
        let opts = threeport_controllers::ControllerOptions {
            support: threeport_server::cli::support_config_from_env()?,
            ..Default::default()
        };
        tokio::spawn(async move {
            if let Err(e) = threeport_controllers::run_all(api, notifications, opts, t).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });
    }
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
    server.wait().await;
    Ok(())
}
