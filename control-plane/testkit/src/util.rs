//! Small process helpers shared by the PostgreSQL and NATS fixtures.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Quotes `s` for a POSIX shell: `it's` becomes `'it'\''s'`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a path for a POSIX shell.
pub(crate) fn sh_quote_path(p: &Path) -> String {
    sh_quote(&p.to_string_lossy())
}

/// Runs `cmd` to completion, capturing its output; fails with the command's
/// stdout and stderr if it exits unsuccessfully.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: could not run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end(),
        );
    }
    Ok(out)
}

/// True if something accepts TCP connections on `127.0.0.1:port`.
pub(crate) fn tcp_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}

/// Polls until `127.0.0.1:port` accepts TCP connections or `timeout` passes.
pub(crate) fn wait_for_tcp(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if tcp_accepts(port) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a text file (empty if it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawns a detached watchdog: a `sh` in its own process group that waits
/// while this (test) process is alive and then runs `cleanup`. It covers the
/// cases where no destructor runs (the test process is killed, or a static
/// is never dropped). The returned child should be killed and reaped when the
/// resource is cleaned up normally.
pub(crate) fn spawn_watchdog(cleanup: &str) -> Result<Child> {
    let pid = std::process::id();
    let script = format!(
        "trap '' HUP INT TERM PIPE; \
         while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {cleanup}"
    );
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning the cleanup watchdog (/bin/sh)")
}

/// Kills and reaps a watchdog that is no longer needed.
pub(crate) fn kill_watchdog(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
