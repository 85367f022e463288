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

/// The region and static credentials moto is used with.
pub const MOTO_REGION: &str = "us-east-1";
const MOTO_KEY: &str = "test";

impl Moto {
    /// An AWS SDK config for this server: endpoint [`Moto::url`], region
    /// `us-east-1`, static credentials `test`/`test`. Installs the aws-lc-rs
    /// rustls provider unless one is installed.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(MOTO_REGION)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                MOTO_KEY, MOTO_KEY, None, None, "static",
            ))
            .load()
            .await
    }

    /// The environment a child process (`tptctl`) needs to use this server:
    /// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`. Remove `AWS_PROFILE` as well (see
    /// [`Tptctl::with_moto`](crate::Tptctl::with_moto)), so a profile of the
    /// developer's does not take over.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", MOTO_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_KEY.to_string()),
            ("AWS_REGION", MOTO_REGION.to_string()),
        ]
    }

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
