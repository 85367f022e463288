//! A throwaway moto server (AWS APIs) on a free port, killed on drop.

use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOTO_INSTALL_COMMAND: &str = ".venv-tools/bin/pip install 'moto[server]'";

pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`, for `endpoint_url` / `AWS_ENDPOINT_URL`.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` on PATH, else in the workspace's `.venv-tools/bin`.
pub fn moto_server_binary() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin"));
    dirs.into_iter()
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .with_context(|| format!("moto_server not found on PATH or in .venv-tools/bin; install it with `{MOTO_INSTALL_COMMAND}`"))
}

impl Moto {
    pub fn start() -> Result<Moto> {
        let port = crate::free_port();
        let child = Command::new(moto_server_binary()?)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Attaching AWS-managed IAM policies fails without it.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("cannot start moto_server; install it with `{MOTO_INSTALL_COMMAND}`")
            })?;
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                bail!(
                    "moto_server exited with {status}; reinstall it with `{MOTO_INSTALL_COMMAND}`"
                );
            }
            if Instant::now() > deadline {
                bail!("moto_server did not listen on port {port} within 60s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
