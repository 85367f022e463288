//! What the end-to-end tests share: the real `tptctl` in a temporary HOME, a control plane on
//! PostgreSQL + NATS in the test process, `threeport controllers` processes, and the AWS world
//! (moto, the Kubernetes API double as the default runtime, an account).

#![allow(dead_code)] // each test binary uses its own part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use threeport_testkit::Tptctl;

pub const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real `tptctl` in a temporary HOME, run in the repository root.
pub fn tptctl() -> Tptctl {
    Tptctl::new(BIN, repo())
}

/// An API on PostgreSQL + NATS in this process, with TLS and client certificates, and `env`'s
/// config pointing at it (a "kind" entry, so neither `down` nor Drop tries to stop it).
pub struct PgPlane {
    pub server: threeport_server::Server,
    pub nats: threeport_testkit::Nats,
    /// The server's TLS directory; `threeport controllers --tls-dir` reads its client pair.
    pub tls: tempfile::TempDir,
}

impl PgPlane {
    pub async fn start(env: &Tptctl) -> PgPlane {
        threeport_server::install_crypto_provider();
        let url = threeport_testkit::shared_postgres()
            .create_database(&threeport_testkit::unique_name("cli"))
            .unwrap();
        let nats = threeport_testkit::Nats::start().unwrap();
        let tls = tempfile::tempdir().unwrap();
        let bundle = threeport_pki::TlsBundle::generate(&[]).unwrap();
        bundle.write_dir(tls.path()).unwrap();
        let mut cfg = threeport_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), url);
        cfg.nats_url = Some(nats.url());
        cfg.tls_dir = Some(tls.path().to_path_buf());
        cfg.encryption_key = Some(b"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_vec());
        let server = threeport_server::start(cfg).await.unwrap();
        use base64::Engine;
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let config = format!(
            "CurrentControlPlane: pg\nControlPlanes:\n- Name: pg\n  Provider: kind\n  Genesis: true\n  AuthEnabled: true\n  APIServer: {}\n  CACert: {}\n  Credentials:\n  - Name: pg\n    ClientCert: {}\n    ClientKey: {}\n",
            server.addr,
            b(&bundle.ca.pair.cert_pem),
            b(&bundle.client.cert_pem),
            b(&bundle.client.key_pem)
        );
        std::fs::create_dir_all(env.config_path().parent().unwrap()).unwrap();
        std::fs::write(env.config_path(), config).unwrap();
        PgPlane { server, nats, tls }
    }
}

/// `threeport controllers`, built with this tptctl (`cargo test --workspace` builds it first).
pub fn controllers_binary() -> PathBuf {
    let bin = Path::new(BIN).with_file_name("threeport");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p threeport-server --bin threeport` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A controller process, killed when dropped (even when an assertion fails).
pub struct Controllers(pub std::process::Child);

impl Controllers {
    pub fn spawn(plane: &PgPlane) -> Controllers {
        Self::spawn_with(plane, &[])
    }

    pub fn spawn_with(plane: &PgPlane, envs: &[(&str, String)]) -> Controllers {
        let child = Command::new(controllers_binary())
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .args([
                "controllers",
                "--api-url",
                &format!("https://{}", plane.server.addr),
            ])
            .args(["--nats-url", &plane.nats.url()])
            .arg("--tls-dir")
            .arg(plane.tls.path())
            // Few at a time, so a hundred deletes are still in flight when one process dies;
            // short ack and lock lifetimes, so the survivor takes its work over within seconds.
            .args([
                "--concurrency",
                "4",
                "--ack-wait-secs",
                "3",
                "--lock-ttl-secs",
                "3",
            ])
            .env("THREEPORT_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("threeport controllers starts");
        Controllers(child)
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The control plane's API client, as a controller holds it (the plane's client certificate).
pub fn api_client(plane: &PgPlane) -> threeport_api::Client {
    let read = |f: &str| std::fs::read_to_string(plane.tls.path().join(f)).unwrap();
    let tls = threeport_api::ClientTls {
        ca_pem: read("ca.crt"),
        cert_pem: read("client.crt"),
        key_pem: read("client.key"),
    };
    threeport_api::Client::new(&format!("https://{}", plane.server.addr), Some(&tls)).unwrap()
}

pub async fn tp(env: Tptctl, args: &[&str], ok: bool) -> (Tptctl, threeport_testkit::Run) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = if ok { env.ok(&args) } else { env.run(&args) };
        (env, r)
    })
    .await
    .unwrap()
}

/// What the AWS dependency tests share: a control plane on PostgreSQL + NATS, moto, the
/// Kubernetes API double registered as the default runtime `double`, one controller process
/// that reaches moto through its environment, and the account `moto`.
pub struct AwsWorld {
    pub plane: PgPlane,
    // Kept alive for the test; killed on drop.
    _moto: threeport_testkit::Moto,
    pub aws: aws_config::SdkConfig,
    pub kube: kube::Client,
    pub api: threeport_api::Client,
    pub work: tempfile::TempDir,
    pub double: kube_api_double::KubeDouble,
    pub controllers: Controllers,
    /// The controllers' environment, for a respawn.
    pub controller_env: Vec<(&'static str, String)>,
}

impl AwsWorld {
    pub async fn start(env: Tptctl) -> (Tptctl, AwsWorld) {
        Self::start_with(env, &[]).await
    }

    /// With `extra` in the controllers' environment.
    pub async fn start_with(env: Tptctl, extra: &[(&'static str, String)]) -> (Tptctl, AwsWorld) {
        let plane = PgPlane::start(&env).await;
        let moto = threeport_testkit::Moto::start().expect("moto_server starts");
        let aws = moto.sdk_config().await;
        let double = kube_api_double::KubeDouble::start(Default::default())
            .await
            .unwrap();
        let kube = threeport_testkit::kube_client(&double.kubeconfig()).await;
        // The endpoint and the controller's own credentials (for a role to assume) come from
        // its environment, as they would in a cluster.
        let mut controller_env = moto.cli_env();
        controller_env.extend(extra.iter().cloned());
        let controllers = Controllers::spawn_with(&plane, &controller_env);
        let api = api_client(&plane);
        let work = tempfile::tempdir().unwrap();
        let kubeconfig = work.path().join("kubeconfig");
        double.write_kubeconfig(&kubeconfig).unwrap();
        let account = work.path().join("account.yaml");
        std::fs::write(&account, "AwsAccount:\n  Name: moto\n  AccountID: \"123456789012\"\n  DefaultRegion: us-east-1\n  AccessKeyID: AKIAEXAMPLEKEY\n  SecretAccessKey: wJalrXUtnFEMIEXAMPLE\n").unwrap();
        let kc = kubeconfig.to_str().unwrap();
        let (env, _) = tp(
            env,
            &[
                "runtime",
                "register",
                "double",
                "--kubeconfig",
                kc,
                "--default",
            ],
            true,
        )
        .await;
        let (env, _) = tp(env, &["apply", "-f", account.to_str().unwrap()], true).await;
        let world = AwsWorld {
            plane,
            _moto: moto,
            aws,
            kube,
            api,
            work,
            double,
            controllers,
            controller_env,
        };
        (env, world)
    }

    /// Write `text` to `name` in the work directory; its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.work.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// `kill -9` the controllers process and start a new one.
    pub fn kill_and_respawn_controllers(&mut self) {
        self.controllers.0.kill().unwrap(); // SIGKILL
        self.controllers.0.wait().unwrap();
        self.controllers = Controllers::spawn_with(&self.plane, &self.controller_env);
    }

    pub async fn stop(self, env: Tptctl) {
        std::fs::remove_file(env.config_path()).unwrap();
        drop(env);
        self.plane.server.shutdown().await;
    }
}
