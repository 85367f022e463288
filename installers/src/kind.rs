//! `tptctl up/down --provider kind`: a kind cluster (through the `kind` CLI, with duct), the
//! control plane installed into it, the cluster registered as the default runtime.
//!
//! Every completed step is recorded in `<data dir>/install-state.json`, so a re-run resumes
//! where the last one stopped. A failed or interrupted run deletes what it created (the
//! cluster and the data dir) unless `retain` is set, and never leaves a config entry: writing
//! it is the caller's last step.

use crate::install::{ClusterInfo, Steps};
use crate::manifests::{self, Exposure, Images};
use crate::outcome::{Installed, KubeApi, ProviderConfig, UpFailed};
use crate::{Progress, kubeconfig, secrets};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const PROVIDER: &str = crate::outcome::KIND;

#[derive(Clone, Debug)]
pub struct KindOptions {
    pub name: String,
    /// Host port for the API (the NodePort is mapped to it).
    pub port: u16,
    /// Host ports (HTTP, HTTPS) mapped to the node ports the gateway controller gives a kind
    /// runtime's gateways, so `curl -H 'Host: …' localhost` reaches an app; `None`: no mapping.
    pub gateway_ports: Option<(u16, u16)>,
    pub images: Images,
    /// Keep a failed cluster for debugging.
    pub retain: bool,
    /// Show kind's own output.
    pub verbose: bool,
    /// `~/.threeport/<name>/`.
    pub data_dir: PathBuf,
    pub rollout_timeout: Duration,
    /// Build the control plane image from this executable (cached in `cache_dir`) and load it
    /// into the cluster; `images.threeport` is then that image. `None`: `images` is published.
    pub build: Option<BuildImage>,
}

/// What to build the image from and where to cache it.
#[derive(Clone, Debug)]
pub struct BuildImage {
    pub inputs: crate::image::Inputs,
    pub cache_dir: PathBuf,
}

pub fn cluster_name(name: &str) -> String {
    format!("threeport-{name}")
}

/// Steps done so far, saved after each one.
#[derive(Default, Serialize, Deserialize)]
struct State {
    port: u16,
    #[serde(default)]
    gateway_ports: Option<(u16, u16)>,
    cluster_created: bool,
    /// The digest of the image loaded into the cluster's nodes, so a re-run does not load
    /// the same image again.
    #[serde(default)]
    image_loaded: Option<String>,
    installed: bool,
    registered: bool,
}

impl State {
    /// An unreadable state counts as none: the install starts over.
    fn load(dir: &Path) -> Option<State> {
        crate::install::state::load(dir).ok().flatten()
    }
    fn save(&self, dir: &Path) -> Result<()> {
        crate::install::state::save(dir, self)
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

/// The HTTP and HTTPS node ports of a kind runtime's gateways (the gateway controller sets
/// them on the Gateway API implementation's Service).
pub const GATEWAY_NODE_PORTS: (u16, u16) = (30080, 30443);

/// The kind cluster config: the API's NodePort mapped to the host port, and the gateway's
/// node ports to the host's HTTP and HTTPS ports.
fn kind_config(port: u16, gateway_ports: Option<(u16, u16)>) -> String {
    let map = |container: i64, host: u16| serde_json::json!({"containerPort": container, "hostPort": host, "listenAddress": "127.0.0.1", "protocol": "TCP"});
    let mut mappings = vec![map(manifests::NODE_PORT.into(), port)];
    if let Some((http, https)) = gateway_ports {
        mappings.push(map(GATEWAY_NODE_PORTS.0.into(), http));
        mappings.push(map(GATEWAY_NODE_PORTS.1.into(), https));
    }
    let cfg = serde_json::json!({
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{
            "role": "control-plane",
            "extraPortMappings": mappings,
        }],
    });
    serde_yaml::to_string(&cfg).unwrap_or_default()
}

pub(crate) fn kind(args: &[&str], verbose: bool) -> Result<String> {
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

/// Create (or resume) the kind cluster and install the control plane into it.
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
        gateway_ports: opts.gateway_ports,
        ..Default::default()
    });
    let result = run(opts, &mut state, progress, &cancel).await;
    let Err(e) = result else { return result };
    let cluster = format!("kind cluster {}", cluster_name(&opts.name));
    let mut failed = UpFailed::new(format!("creating control plane {} on kind", opts.name));
    let mut made = Vec::new();
    if state.cluster_created {
        made.push(cluster.clone());
    }
    if dir.exists() {
        made.push(dir.display().to_string());
    }
    // A resumed install that had finished registering is not undone by a later failure.
    if made.is_empty() || opts.retain || (!fresh && state.registered) {
        failed.retained = opts.retain;
        failed.left_behind = made;
        return Err(e.context(failed));
    }
    progress.start("Rolling back");
    if state.cluster_created {
        let deleted = kind(
            &["delete", "cluster", "--name", &cluster_name(&opts.name)],
            opts.verbose,
        );
        failed.undo(cluster, deleted.map(drop));
    }
    failed.finish_rollback(dir, progress);
    Err(e.context(failed))
}

async fn run(
    opts: &KindOptions,
    state: &mut State,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Installed> {
    let dir = &opts.data_dir;
    let cluster = cluster_name(&opts.name);
    let steps = Steps {
        progress,
        cancel,
        timeout: opts.rollout_timeout,
    };
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
            secrets::load_or_generate(dir, &[])
        })
        .await?;
    state.save(dir)?;
    if !state.cluster_created {
        let config = dir.join("kind-config.yaml");
        std::fs::write(&config, kind_config(state.port, state.gateway_ports))?;
        let config_arg = config.display().to_string();
        let verbose = opts.verbose;
        let c = cluster.clone();
        steps
            .phase(&format!("Creating kind cluster {cluster}"), async move {
                tokio::task::spawn_blocking(move || {
                    kind(
                        &["create", "cluster", "--name", &c, "--config", &config_arg],
                        verbose,
                    )
                })
                .await??;
                Ok(())
            })
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
    let client = crate::install::kube_client(&kubeconfig_text).await?;
    let mut images = opts.images.clone();
    if let Some(build) = &opts.build {
        let b = build.clone();
        let built = progress
            .phase("Building the control plane image", async move {
                tokio::task::spawn_blocking(move || crate::image::cached(&b.inputs, &b.cache_dir))
                    .await?
            })
            .await?;
        if state.image_loaded.as_deref() != Some(built.digest.as_str()) {
            let archive = built.archive.display().to_string();
            let (c, verbose) = (cluster.clone(), opts.verbose);
            steps
                .phase(
                    &format!("Loading image {} into {cluster}", built.reference),
                    async move {
                        tokio::task::spawn_blocking(move || {
                            kind(&["load", "image-archive", &archive, "--name", &c], verbose)
                        })
                        .await??;
                        Ok(())
                    },
                )
                .await?;
            state.image_loaded = Some(built.digest.clone());
            state.save(dir)?;
        }
        images.threeport = built.reference;
    }
    let objects = manifests::control_plane(&images, &secrets, Exposure::NodePort);
    steps.install(&client, &objects).await?;
    state.installed = true;
    state.save(dir)?;
    let tls = secrets.client_tls();
    let api_server = format!("127.0.0.1:{}", state.port);
    let info = ClusterInfo::in_cluster(cluster.clone(), PROVIDER, &conn);
    steps.register(&api_server, &tls, &info, &opts.name).await?;
    state.registered = true;
    state.save(dir)?;
    Ok(Installed {
        name: opts.name.clone(),
        api_server,
        tls,
        encryption_key: secrets.encryption_key.clone(),
        kube_api: Some(KubeApi {
            connection: conn,
            kubeconfig: kc_path,
        }),
        provider: ProviderConfig::Kind { cluster },
    })
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
            progress.failed();
            return Err(e);
        }
    }
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}
