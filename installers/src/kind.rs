//! `tptctl up/down --provider kind`: a kind cluster (through the `kind` CLI, with duct), the
//! control plane installed into it, the cluster registered as the default runtime.
//!
//! Every completed step is recorded in `<data dir>/install-state.json`, so a re-run resumes
//! where the last one stopped. A failed or interrupted run deletes what it created (the
//! cluster and the data dir) unless `retain` is set, and never leaves a config entry: writing
//! it is the caller's last step.

use crate::Progress;
use crate::install::{self, ClusterInfo};
use crate::kubeconfig;
use crate::manifests::{self, Exposure, Images, Secrets};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct KindOptions {
    pub name: String,
    /// Host port for the API (the NodePort is mapped to it).
    pub port: u16,
    pub images: Images,
    /// Keep a failed cluster for debugging.
    pub retain: bool,
    /// Show kind's own output.
    pub verbose: bool,
    /// `~/.threeport/<name>/`.
    pub data_dir: PathBuf,
    pub rollout_timeout: Duration,
}

/// What the caller needs to write the config entry.
pub struct Installed {
    pub api_server: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub encryption_key: String,
    pub kube_api: kubeconfig::Connection,
}

pub fn cluster_name(name: &str) -> String {
    format!("threeport-{name}")
}

/// Steps done so far, saved after each one.
#[derive(Default, Serialize, Deserialize)]
struct State {
    port: u16,
    cluster_created: bool,
    installed: bool,
    registered: bool,
}

impl State {
    fn path(dir: &Path) -> PathBuf {
        dir.join("install-state.json")
    }
    fn load(dir: &Path) -> Option<State> {
        serde_json::from_str(&std::fs::read_to_string(State::path(dir)).ok()?).ok()
    }
    fn save(&self, dir: &Path) -> Result<()> {
        threeport_pki::write_file(
            &State::path(dir),
            serde_json::to_string_pretty(self)?.as_bytes(),
            true,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Saved secret material, so a resumed install applies the same certificates.
#[derive(Serialize, Deserialize)]
struct SavedSecrets {
    api: [String; 6],
    db: [String; 6],
    controllers: Vec<(String, String, String)>,
    encryption_key: String,
}

impl SavedSecrets {
    fn from(s: &Secrets) -> SavedSecrets {
        SavedSecrets {
            api: [
                s.api.ca.pair.cert_pem.clone(),
                s.api.ca.pair.key_pem.clone(),
                s.api.server.cert_pem.clone(),
                s.api.server.key_pem.clone(),
                s.api.client.cert_pem.clone(),
                s.api.client.key_pem.clone(),
            ],
            db: [
                s.db_ca.pair.cert_pem.clone(),
                s.db_ca.pair.key_pem.clone(),
                s.db_node.cert_pem.clone(),
                s.db_node.key_pem.clone(),
                s.db_root.cert_pem.clone(),
                s.db_root.key_pem.clone(),
            ],
            controllers: s
                .controllers
                .iter()
                .map(|(n, p)| (n.clone(), p.cert_pem.clone(), p.key_pem.clone()))
                .collect(),
            encryption_key: s.encryption_key.clone(),
        }
    }
    fn into_secrets(self) -> Secrets {
        use threeport_pki::{CertAuthority, CertPair, TlsBundle};
        let pair = |c: &str, k: &str| CertPair {
            cert_pem: c.into(),
            key_pem: k.into(),
        };
        let [a0, a1, a2, a3, a4, a5] = self.api;
        let [d0, d1, d2, d3, d4, d5] = self.db;
        Secrets {
            api: TlsBundle {
                ca: CertAuthority::from_pem(&a0, &a1),
                server: pair(&a2, &a3),
                client: pair(&a4, &a5),
            },
            db_ca: CertAuthority::from_pem(&d0, &d1),
            db_node: pair(&d2, &d3),
            db_root: pair(&d4, &d5),
            controllers: self
                .controllers
                .into_iter()
                .map(|(n, c, k)| (n, pair(&c, &k)))
                .collect(),
            encryption_key: self.encryption_key,
        }
    }
}

/// One prerequisite check (also `tptctl doctor`).
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

pub fn doctor(port: Option<u16>) -> Vec<Check> {
    let mut checks = Vec::new();
    for (bin, args, hint) in [
        (
            "docker",
            vec!["info", "--format", "{{.ServerVersion}}"],
            "install Docker and start its daemon",
        ),
        (
            "kind",
            vec!["version"],
            "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
        ),
    ] {
        let check = match which(bin) {
            None => Check {
                name: bin.into(),
                ok: false,
                detail: format!("not found on PATH; {hint}"),
            },
            Some(path) => match duct::cmd(&path, &args)
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
            {
                Ok(out) if out.status.success() => Check {
                    name: bin.into(),
                    ok: true,
                    detail: String::from_utf8_lossy(&out.stdout).trim().to_string(),
                },
                Ok(out) => Check {
                    name: bin.into(),
                    ok: false,
                    detail: format!(
                        "{} failed: {}; {hint}",
                        bin,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                },
                Err(e) => Check {
                    name: bin.into(),
                    ok: false,
                    detail: format!("cannot run {}: {e}", path.display()),
                },
            },
        };
        checks.push(check);
    }
    if let Some(port) = port {
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        checks.push(Check {
            name: format!("port {port}"),
            ok: free,
            detail: if free {
                "free".into()
            } else {
                format!("in use; pick another with --port or stop what listens on {port}")
            },
        });
    }
    checks
}

/// The kind cluster config: the API's NodePort mapped to the host port.
fn kind_config(port: u16) -> String {
    let cfg = serde_json::json!({
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{
            "role": "control-plane",
            "extraPortMappings": [{"containerPort": manifests::NODE_PORT, "hostPort": port, "listenAddress": "127.0.0.1", "protocol": "TCP"}],
        }],
    });
    serde_yaml::to_string(&cfg).unwrap_or_default()
}

fn kind(args: &[&str], verbose: bool) -> Result<String> {
    let mut cmd = duct::cmd("kind", args).stdout_capture().unchecked();
    if !verbose {
        cmd = cmd.stderr_capture();
    }
    let out = cmd
        .run()
        .with_context(|| "cannot run kind (is it installed? see `tptctl doctor`)")?;
    if !out.status.success() {
        bail!(
            "kind {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn cancellable<T>(
    cancel: &CancellationToken,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = f => r,
        _ = cancel.cancelled() => bail!("interrupted"),
    }
}

pub async fn up(
    opts: &KindOptions,
    progress: &Progress,
    cancel: CancellationToken,
) -> Result<Installed> {
    let dir = &opts.data_dir;
    let resumed = State::load(dir);
    let fresh = resumed.is_none();
    let mut state = resumed.unwrap_or(State {
        port: opts.port,
        ..Default::default()
    });
    let result = run(opts, &mut state, progress, &cancel).await;
    if let Err(e) = &result {
        if opts.retain {
            eprintln!(
                "\nleft behind for debugging: kind cluster {} and {}\n  resume:   tptctl up --provider kind --name {}\n  clean up: tptctl down --name {}",
                cluster_name(&opts.name),
                dir.display(),
                opts.name,
                opts.name
            );
        } else if fresh || !state.registered {
            progress.start("Rolling back");
            let mut left = Vec::new();
            if state.cluster_created {
                if let Err(err) = kind(
                    &["delete", "cluster", "--name", &cluster_name(&opts.name)],
                    opts.verbose,
                ) {
                    left.push(format!(
                        "kind cluster {} ({err}); delete it with `kind delete cluster --name {}`",
                        cluster_name(&opts.name),
                        cluster_name(&opts.name)
                    ));
                }
            }
            if let Err(err) = std::fs::remove_dir_all(dir) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    left.push(format!("{} ({err})", dir.display()));
                }
            }
            if left.is_empty() {
                progress.done();
                eprintln!("nothing was left behind ({e:#})");
            } else {
                progress.failed("some resources remain");
                eprintln!("left behind:\n  {}", left.join("\n  "));
            }
        }
    }
    result
}

async fn run(
    opts: &KindOptions,
    state: &mut State,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Installed> {
    let dir = &opts.data_dir;
    let cluster = cluster_name(&opts.name);
    progress
        .phase("Checking prerequisites", async {
            let checks = doctor((!state.cluster_created).then_some(state.port));
            let failed: Vec<String> = checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            if !failed.is_empty() {
                bail!("{}", failed.join("; "));
            }
            Ok(())
        })
        .await?;
    std::fs::create_dir_all(dir)?;
    let secrets = progress
        .phase("Generating certificates and keys", async {
            let path = dir.join("install-secrets.json");
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Ok(serde_json::from_str::<SavedSecrets>(&text)?.into_secrets());
            }
            let key = base64_key();
            let s = Secrets::generate(&[], key)?;
            threeport_pki::write_file(
                &path,
                serde_json::to_string(&SavedSecrets::from(&s))?.as_bytes(),
                true,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            // The API's certificates where a local process can use them (the config entry, resume).
            s.api
                .write_dir(&dir.join("tls"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            threeport_pki::write_file(
                &dir.join("encryption.key"),
                s.encryption_key.as_bytes(),
                true,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(s)
        })
        .await?;
    state.save(dir)?;
    if !state.cluster_created {
        let config = dir.join("kind-config.yaml");
        std::fs::write(&config, kind_config(state.port))?;
        let config_arg = config.display().to_string();
        let verbose = opts.verbose;
        let c = cluster.clone();
        progress
            .phase(
                &format!("Creating kind cluster {cluster}"),
                cancellable(cancel, async move {
                    tokio::task::spawn_blocking(move || {
                        kind(
                            &["create", "cluster", "--name", &c, "--config", &config_arg],
                            verbose,
                        )
                    })
                    .await??;
                    Ok(())
                }),
            )
            .await?;
        state.cluster_created = true;
        state.save(dir)?;
    }
    let kubeconfig_text = progress
        .phase("Getting the cluster's kubeconfig", async {
            kind(&["get", "kubeconfig", "--name", &cluster], opts.verbose)
        })
        .await?;
    let kc_path = dir.join("kubeconfig");
    threeport_pki::write_file(&kc_path, kubeconfig_text.as_bytes(), true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = kubeconfig::read_kubeconfig(&kc_path, None)?;
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig_text)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?;
    let objects = manifests::control_plane(&opts.images, &secrets, Exposure::NodePort);
    progress
        .phase(
            "Installing the control plane",
            cancellable(cancel, install::apply_all(&client, &objects)),
        )
        .await?;
    state.installed = true;
    state.save(dir)?;
    progress
        .phase(
            "Waiting for rollouts",
            cancellable(
                cancel,
                install::wait_rollouts(&client, &objects, opts.rollout_timeout),
            ),
        )
        .await?;
    let tls = threeport_api::ClientTls {
        ca_pem: secrets.api.ca.pair.cert_pem.clone(),
        cert_pem: secrets.api.client.cert_pem.clone(),
        key_pem: secrets.api.client.key_pem.clone(),
    };
    let api_server = format!("127.0.0.1:{}", state.port);
    let api = threeport_api::Client::new(&format!("https://{api_server}"), Some(&tls))?;
    progress
        .phase(
            "Waiting for the API",
            cancellable(cancel, install::wait_api(&api, opts.rollout_timeout)),
        )
        .await?;
    let info = ClusterInfo {
        name: cluster.clone(),
        provider: "kind".into(),
        // Controllers run inside the cluster: they reach its API server at the in-cluster address.
        endpoint: "https://kubernetes.default.svc".into(),
        ca_pem: conn.ca_pem.clone(),
        cert_pem: conn.cert_pem.clone(),
        key_pem: conn.key_pem.clone(),
        token: conn.token.clone(),
    };
    progress
        .phase(
            "Registering the cluster and the control plane",
            cancellable(cancel, install::register(&api, &info, &opts.name)),
        )
        .await?;
    state.registered = true;
    state.save(dir)?;
    Ok(Installed {
        api_server,
        ca_pem: secrets.api.ca.pair.cert_pem.clone(),
        client_cert_pem: secrets.api.client.cert_pem.clone(),
        client_key_pem: secrets.api.client.key_pem.clone(),
        encryption_key: secrets.encryption_key.clone(),
        kube_api: conn,
    })
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// `tptctl down` for kind: delete the cluster and the data dir.
pub fn down(name: &str, data_dir: &Path, verbose: bool, progress: &Progress) -> Result<()> {
    progress.start(&format!("Deleting kind cluster {}", cluster_name(name)));
    match kind(
        &["delete", "cluster", "--name", &cluster_name(name)],
        verbose,
    ) {
        Ok(_) => progress.done(),
        Err(e) => {
            progress.failed(&e.to_string());
            return Err(e);
        }
    }
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}
