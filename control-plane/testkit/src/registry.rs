//! The CNCF distribution server (Debian's `docker-registry`): a real OCI registry for the image
//! tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How to install `docker-registry`.
pub const DOCKER_REGISTRY_INSTALL_COMMAND: &str = "apt-get install -y docker-registry";

/// `docker-registry` on a free loopback port (plain HTTP), with its storage in a temporary
/// directory; killed on drop.
pub struct Registry {
    _dir: tempfile::TempDir,
    child: Child,
    addr: String,
}

impl Registry {
    /// Starts it and waits until it listens. Panics, naming the install command, when the
    /// binary is missing (tests that need it fail, never skip).
    pub fn start() -> Registry {
        let bin = ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join("docker-registry"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "docker-registry is required and was not found; install it with: {DOCKER_REGISTRY_INSTALL_COMMAND}"
                )
            });
        let dir = tempfile::tempdir().expect("a temporary directory");
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write the registry's config");
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        crate::eventually_blocking(Duration::from_secs(20), "docker-registry to listen", || {
            std::net::TcpStream::connect(&addr).ok().map(|_| ())
        });
        Registry {
            _dir: dir,
            child,
            addr,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `skopeo`, or a panic naming `apt-get install -y skopeo`.
pub fn skopeo() -> PathBuf {
    ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join("skopeo"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "skopeo is required and was not found; install it with: apt-get install -y skopeo"
            )
        })
}
