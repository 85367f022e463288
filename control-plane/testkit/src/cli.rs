//! The real `tptctl` binary in a temporary HOME.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// One `tptctl` run: exit code (-1 if killed by a signal) and its output.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

/// `tptctl` (the binary at `bin`, run in `cwd`) with `HOME` a temporary
/// directory, `NO_COLOR=1` and no `THREEPORT_CONFIG`, plus any extra
/// environment given with [`with_env`](Tptctl::with_env).
///
/// Dropping it runs `tptctl down --name X` for every `- Name: X` in
/// `$HOME/.threeport/config.yaml`: no control plane outlives a failed test.
///
/// ```no_run
/// # let bin = "tptctl";
/// let t = threeport_testkit::Tptctl::new(bin, std::env::current_dir().unwrap());
/// t.up_local("demo");
/// let kinds = t.json(&["get", "kinds", "-o", "json"]);
/// # let _ = kinds;
/// ```
pub struct Tptctl {
    bin: PathBuf,
    cwd: PathBuf,
    home: tempfile::TempDir,
    /// Applied in order after the fixed ones; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
}

impl Tptctl {
    /// `bin` in a fresh temporary HOME, run in `cwd`.
    pub fn new(bin: &str, cwd: PathBuf) -> Tptctl {
        Tptctl {
            bin: PathBuf::from(bin),
            cwd,
            home: tempfile::Builder::new()
                .prefix("tptctl-home-")
                .tempdir()
                .expect("create a temporary HOME"),
            env: Vec::new(),
        }
    }

    /// Sets `key=value` for every run (a later setting of the same key wins).
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Sets every `(key, value)` of `vars`, as [`with_env`](Tptctl::with_env).
    pub fn with_envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        for (k, v) in vars {
            self = self.with_env(k, v);
        }
        self
    }

    /// Removes `key` from every run's environment.
    pub fn without_env(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// AWS at `moto`: its [`cli_env`](crate::Moto::cli_env), and no `AWS_PROFILE`.
    pub fn with_moto(self, moto: &crate::Moto) -> Self {
        self.with_envs(moto.cli_env()).without_env("AWS_PROFILE")
    }

    /// The temporary HOME.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `$HOME/.threeport/config.yaml`.
    pub fn config_path(&self) -> PathBuf {
        self.home().join(".threeport").join("config.yaml")
    }

    /// The config file's text, or empty if there is none.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    /// `tptctl <args>` with this environment, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("HOME", self.home())
            .env_remove("THREEPORT_CONFIG")
            .env("NO_COLOR", "1")
            .current_dir(&self.cwd);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Runs `tptctl <args>` to completion, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        Run::from(out)
    }

    /// Runs `tptctl <args>` and asserts it exits 0 (the panic shows its output).
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "tptctl {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    /// Runs `tptctl <args>`, asserts it exits 0 and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.ok(args);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("tptctl {args:?} printed no JSON ({e}):\n{}", r.stdout))
    }

    /// Runs with stdout a pipe nobody reads (`tptctl … | head -0`): every write
    /// fails with EPIPE. `stdout` of the result is empty.
    pub fn run_with_closed_stdout(&self, args: &[&str]) -> Run {
        let (reader, writer) = std::io::pipe().expect("create a pipe");
        drop(reader);
        let out = self
            .cmd(args)
            .stdout(writer)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        Run::from(out)
    }

    /// `tptctl up --provider local --name <name>` on a free port (asserted to
    /// succeed); returns how long it took.
    pub fn up_local(&self, name: &str) -> Duration {
        self.up_local_on(name, crate::free_port())
    }

    /// [`up_local`](Tptctl::up_local) with the API on `port`.
    pub fn up_local_on(&self, name: &str, port: u16) -> Duration {
        let port = port.to_string();
        let t = Instant::now();
        self.ok(&["up", "--provider", "local", "--name", name, "--port", &port]);
        t.elapsed()
    }

    /// The control plane names in the config file (`- Name: X`).
    fn config_names(&self) -> Vec<String> {
        self.config()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- Name: "))
            .map(|n| n.trim().to_string())
            .collect()
    }
}

impl Drop for Tptctl {
    fn drop(&mut self) {
        // Never leave a control plane running after a failed test.
        for name in self.config_names() {
            let _ = self.cmd(&["down", "--name", &name]).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_isolated_and_extendable() {
        let t = Tptctl::new("/bin/sh", std::env::temp_dir())
            .with_env("EXTRA", "one")
            .with_envs([("EXTRA", "two"), ("OTHER", "x")])
            .without_env("OTHER");
        assert!(t.home().is_dir());
        assert_eq!(t.config(), "");
        assert_eq!(t.config_path(), t.home().join(".threeport/config.yaml"));
        let r = t.ok(&[
            "-c",
            "echo \"$HOME|$NO_COLOR|${THREEPORT_CONFIG-unset}|$EXTRA|${OTHER-unset}\"; pwd",
        ]);
        let want_pwd = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(
            r.lines(),
            [
                format!("{}|1|unset|two|unset", t.home().display()).as_str(),
                want_pwd.to_str().unwrap(),
            ]
        );
        let r = t.run(&["-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (3, "out\n", "err\n")
        );
        assert_eq!(t.json(&["-c", "echo '{\"a\": 1}'"])["a"], 1);
        let r = t.run_with_closed_stdout(&["-c", "trap '' PIPE; echo x; echo after $? >&2"]);
        let last = r.stderr.lines().last().unwrap_or_default();
        assert!(r.stdout.is_empty(), "{}", r.stdout);
        assert!(
            last.starts_with("after ") && last != "after 0",
            "the write failed: {}",
            r.stderr
        );
    }

    #[test]
    fn drop_runs_down_for_every_configured_control_plane() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let fake = dir.path().join("fake-tptctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\n",
                crate::sh_quote(log.to_str().unwrap())
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = Tptctl::new(fake.to_str().unwrap(), dir.path().to_path_buf());
        std::fs::create_dir_all(t.config_path().parent().unwrap()).unwrap();
        std::fs::write(
            t.config_path(),
            "CurrentControlPlane: a\nControlPlanes:\n- Name: a\n  Provider: kind\n- Name: b\n",
        )
        .unwrap();
        let home = t.home().to_path_buf();
        drop(t);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "down --name a\ndown --name b\n"
        );
        assert!(!home.exists(), "the temporary HOME is removed");
    }

    #[test]
    fn a_killed_run_has_code_minus_one() {
        let t = Tptctl::new("/bin/sh", std::env::temp_dir());
        assert_eq!(t.run(&["-c", "kill -9 $$"]).code, -1);
    }
}
