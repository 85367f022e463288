//! Throwaway PostgreSQL clusters for tests.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::port::free_port;
use crate::util::{kill_watchdog, run, sh_quote_path, spawn_watchdog, tail, wait_for_tcp};

const INSTALL_HINT: &str = "install it with `apt-get install -y postgresql` (or run .ci/run), \
     or point THREEPORT_PG_BIN at a directory holding initdb, pg_ctl and psql";

/// How many times `start` tries a fresh port when the server cannot bind.
const START_ATTEMPTS: usize = 3;

/// A private PostgreSQL cluster in a temporary directory, listening on
/// `127.0.0.1:port` with user `postgres` and `trust` authentication.
///
/// Dropping it stops the server (immediate mode) and removes the directory.
/// A watchdog process also stops it if the test process dies without
/// dropping it.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin_dir: PathBuf,
    /// Running as root: server programs run as the `postgres` user.
    as_postgres_user: bool,
    watchdog: Mutex<Option<Child>>,
}

impl Postgres {
    /// Creates a fresh cluster (initdb) and starts it; returns once it
    /// accepts connections.
    pub fn start() -> Result<Postgres> {
        let bin_dir = pg_bin_dir()?;
        let as_postgres_user = unsafe { libc::geteuid() } == 0;

        let dir = tempfile::Builder::new()
            .prefix("threeport-pg-")
            .tempdir_in("/tmp")
            .context("creating a temporary directory for PostgreSQL under /tmp")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("chmod 0755 on the PostgreSQL temporary directory")?;
        if as_postgres_user {
            let (uid, gid) = lookup_user("postgres")?;
            chown(dir.path(), uid, gid)?;
        }

        let mut pg = Postgres {
            dir,
            port: 0,
            bin_dir,
            as_postgres_user,
            watchdog: Mutex::new(None),
        };

        let data = pg.data_dir();
        run(
            pg.server_cmd("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "--no-sync"])
                .args(["-E", "UTF8", "--locale=C"]),
            "initdb",
        )?;

        // Stops the cluster and removes the directory if this process dies
        // without dropping `pg`.
        let cleanup = format!(
            "{} >/dev/null 2>&1; rm -rf {}",
            pg.stop_shell_command(),
            sh_quote_path(pg.dir.path())
        );
        *pg.watchdog.lock().unwrap() = Some(spawn_watchdog(&cleanup)?);

        let mut attempt = 0;
        loop {
            attempt += 1;
            pg.port = free_port();
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(_) if attempt < START_ATTEMPTS && pg.bind_failed() => {
                    // Another process took the port between free_port() and
                    // the server's bind: try another one.
                    let _ = std::fs::remove_file(pg.log_file());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, database)
    }

    /// The temporary directory holding `data/`, the server log and the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `CREATE DATABASE "name"` (through the psql binary); returns `url(name)`.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        self.psql("postgres", &sql)
            .with_context(|| format!("creating database {name:?}"))?;
        Ok(self.url(name))
    }

    /// Runs `sql` with psql against `database` and returns its unaligned,
    /// tuples-only output (trimmed), e.g. `"1"` for `SELECT 1`.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = run(
            Command::new(self.psql_binary())
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-U", "postgres"])
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-d")
                .arg(database)
                .arg("-c")
                .arg(sql)
                .env("PGCONNECT_TIMEOUT", "10")
                .env_remove("PGPASSWORD")
                .env_remove("PGSERVICE")
                .env_remove("PGOPTIONS")
                .env_remove("PGSSLMODE"),
            "psql",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server with `pg_ctl -m immediate stop`, keeping the data.
    /// Does nothing if it is not running.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        run(
            self.server_cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        )?;
        Ok(())
    }

    /// Starts the server again on the same port and data directory (stopping
    /// it first if it is running); returns once it accepts connections.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_server()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn is_running(&self) -> bool {
        self.data_dir().join("postmaster.pid").exists()
    }

    fn bind_failed(&self) -> bool {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        log.contains("could not bind") || log.contains("Address already in use")
    }

    fn psql_binary(&self) -> PathBuf {
        let p = self.bin_dir.join("psql");
        if p.is_file() {
            p
        } else {
            PathBuf::from("psql")
        }
    }

    /// A command running a server program from the bin dir, as the
    /// `postgres` user when this process is root.
    fn server_cmd(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The postgres user may not be able to enter our working directory.
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn stop_shell_command(&self) -> String {
        let pg_ctl = sh_quote_path(&self.bin_dir.join("pg_ctl"));
        let data = sh_quote_path(&self.data_dir());
        let cmd = format!("{pg_ctl} -D {data} -m immediate -w stop");
        if self.as_postgres_user {
            format!("cd / && runuser -u postgres -- {cmd}")
        } else {
            cmd
        }
    }

    fn start_server(&self) -> Result<()> {
        let options = format!(
            // SERIALIZABLE by default, as CockroachDB runs: conflicts surface as SQLSTATE 40001,
            // so the store's retry path is exercised by every PostgreSQL suite.
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 \
             -c default_transaction_isolation=serializable",
            self.port,
            sh_quote_path(self.dir.path()),
        );
        let started = run(
            self.server_cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_file())
                .arg("-o")
                .arg(&options)
                .args(["-w", "-t", "120", "start"]),
            "pg_ctl start",
        );
        if let Err(e) = started {
            return Err(anyhow!(
                "{e:#}\n--- server log ({}) ---\n{}",
                self.log_file().display(),
                tail(&self.log_file(), 40)
            ));
        }
        // pg_ctl -w waits for "ready"; double-check the TCP listener.
        if !wait_for_tcp(self.port, Duration::from_secs(10)) {
            bail!(
                "PostgreSQL started but 127.0.0.1:{} does not accept connections\n--- server log ---\n{}",
                self.port,
                tail(&self.log_file(), 40)
            );
        }
        Ok(())
    }

    /// Stops the server, ignoring errors. Used by Drop and the exit hook.
    fn stop_quietly(&self) {
        let _ = self.stop();
        if let Some(mut w) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            kill_watchdog(&mut w);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_quietly();
        // The TempDir field removes the directory afterwards.
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("bin_dir", &self.bin_dir)
            .finish()
    }
}

/// The directory holding initdb, pg_ctl, postgres and psql:
/// `$THREEPORT_PG_BIN`, or the highest version under /usr/lib/postgresql.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("THREEPORT_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() || !dir.join("pg_ctl").is_file() {
            bail!(
                "THREEPORT_PG_BIN={} holds no initdb/pg_ctl; {INSTALL_HINT}",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if !bin.join("initdb").is_file() || !bin.join("pg_ctl").is_file() {
                continue;
            }
            if best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; {INSTALL_HINT}"
        )
    })
}

fn lookup_user(name: &str) -> Result<(libc::uid_t, libc::gid_t)> {
    let cname = CString::new(name).expect("user name without NUL");
    // getpwnam is not thread-safe, but the fields are copied out at once and
    // nothing else in this crate calls it concurrently in a harmful way.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, but there is no `{name}` user to run PostgreSQL as; \
             `apt-get install -y postgresql` creates it"
        );
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

fn chown(path: &Path, uid: libc::uid_t, gid: libc::gid_t) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to the postgres user", path.display()))
}

static SHARED: OnceLock<std::result::Result<Postgres, String>> = OnceLock::new();

extern "C" fn stop_shared_at_exit() {
    // Never unwind across the C boundary.
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(pg)) = SHARED.get() {
            pg.stop_quietly();
            let _ = std::fs::remove_dir_all(pg.dir.path());
        }
    });
}

/// One cluster per test process, for tests that only need their own
/// database (see [`unique_name`] and [`Postgres::create_database`]).
///
/// It is stopped and removed when the process exits (an `atexit` hook), and
/// by a watchdog process if the test process is killed.
///
/// # Panics
/// If the cluster cannot be started (e.g. PostgreSQL is not installed).
pub fn shared_postgres() -> &'static Postgres {
    let result = SHARED.get_or_init(|| {
        let pg = Postgres::start().map_err(|e| format!("{e:#}"))?;
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
        Ok(pg)
    });
    match result {
        Ok(pg) => pg,
        Err(e) => panic!("threeport-testkit: cannot start the shared PostgreSQL cluster: {e}"),
    }
}

/// A name unique within this process (and, through the pid, across
/// concurrently running test processes): `prefix`, pid and a counter,
/// lowercased, with anything but `[a-z0-9_]` replaced by `_`, so it is a
/// valid unquoted PostgreSQL identifier (at most 63 bytes).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{}_{}", std::process::id(), n);
    let mut head: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !head.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        head.insert(0, 't');
    }
    head.truncate(63 - suffix.len());
    head + &suffix
}
