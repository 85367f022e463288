//! `tptctl up/down --provider kubernetes`: the control plane installed into a cluster the user
//! already has (upstream's `--control-plane-only`), from a kubeconfig and context.
//!
//! Everything the install makes lives in its own namespace, which must not exist beforehand:
//! `down` then deletes exactly that namespace (and waits until it is gone), never the cluster
//! or anything that was there before. Completed steps are recorded in
//! `<data dir>/install-state.json`, so a re-run resumes; a failed run deletes what it applied
//! unless `retain` is set.
//!
//! The image: published (`--image-repo R --image-tag T`), built from this tptctl and pushed to
//! a registry the cluster pulls from (`--image-repo R` alone), or, for a kind context, built
//! and loaded with `kind load image-archive`. Other local clusters (k3d, minikube) get the
//! command that loads the archive their way.
//!
//! How this machine reaches the API: a kind context gets a NodePort, reached at a node's
//! InternalIP (kind nodes are containers on this machine's Docker network); any other cluster
//! gets a LoadBalancer, reached at the address its controller assigns; `--api-address` names
//! an address instead (a port-forward, an ingress). The API's certificate is made once that
//! address is known, so it names it.

use crate::install::{ClusterInfo, Steps};
use crate::kind::BuildImage;
use crate::manifests::{self, Exposure, Images};
use crate::outcome::{Installed, KubeApi, ProviderConfig, UpFailed};
use crate::{Progress, kubeconfig, secrets};
use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::api::{Api, DeleteParams};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const PROVIDER: &str = crate::outcome::KUBERNETES;

/// Where the control plane image comes from.
#[derive(Clone, Debug)]
pub enum ImageSource {
    /// `images` names a published image; nothing is built.
    Published,
    /// Build from this tptctl and push to `<repository>/threeport:<tag as built>`.
    Push {
        build: BuildImage,
        repository: String,
        auth: crate::image::push::Auth,
        plain_http: bool,
    },
    /// Build and load into the nodes with the local cluster tool (kind, k3d, minikube).
    Load { build: BuildImage },
}

#[derive(Clone, Debug)]
pub struct KubernetesOptions {
    pub name: String,
    pub kubeconfig: PathBuf,
    /// `None`: the kubeconfig's current context.
    pub context: Option<String>,
    /// `~/.threeport/<name>/`.
    pub data_dir: PathBuf,
    pub images: Images,
    pub image: ImageSource,
    /// `host:port` this machine reaches the API at, instead of the Service's own address.
    pub api_address: Option<String>,
    pub retain: bool,
    pub verbose: bool,
    /// For each wait: the load balancer, rollouts, the API.
    pub timeout: Duration,
}

/// The local cluster tool a context belongs to, from the name each gives its contexts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalCluster {
    Kind(String),
    K3d(String),
    Minikube(String),
}

impl LocalCluster {
    pub fn of_context(context: &str) -> Option<LocalCluster> {
        if let Some(c) = context.strip_prefix("kind-") {
            Some(LocalCluster::Kind(c.into()))
        } else if let Some(c) = context.strip_prefix("k3d-") {
            Some(LocalCluster::K3d(c.into()))
        } else if context == "minikube" {
            Some(LocalCluster::Minikube(context.into()))
        } else {
            None
        }
    }

    /// The command that loads `archive` into this cluster's nodes.
    pub fn load_command(&self, archive: &Path) -> String {
        let a = archive.display();
        match self {
            LocalCluster::Kind(c) => format!("kind load image-archive {a} --name {c}"),
            LocalCluster::K3d(c) => format!("k3d image import {a} --cluster {c}"),
            LocalCluster::Minikube(p) => format!("minikube image load {a} --profile {p}"),
        }
    }
}

/// Steps done so far, saved after each one.
#[derive(Default, Serialize, Deserialize)]
struct State {
    kubeconfig: PathBuf,
    context: String,
    /// The namespace was created by this install (it did not exist before).
    namespace_created: bool,
    /// The digest of the image pushed or loaded, so a re-run does not do it again.
    #[serde(default)]
    image: Option<String>,
    installed: bool,
    registered: bool,
}

impl State {
    fn load(dir: &Path) -> Result<Option<State>> {
        crate::install::state::load(dir)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        crate::install::state::save(dir, self)
    }
}

/// A kube-rs client for `context` of the kubeconfig at `path`.
async fn client_for(path: &Path, context: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("{}: not a kubeconfig", path.display()))?;
    let opts = kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .with_context(|| format!("{}: context {context:?} is not usable", path.display()))?;
    Ok(kube::Client::try_from(config)?)
}

/// Install (or resume installing) the control plane into the cluster of `opts.context`.
pub async fn up(
    opts: &KubernetesOptions,
    progress: &Progress,
    cancel: CancellationToken,
) -> Result<Installed> {
    let dir = &opts.data_dir;
    let conn = kubeconfig::read_kubeconfig(&opts.kubeconfig, opts.context.as_deref())?;
    let resumed = State::load(dir)?;
    let fresh = resumed.is_none();
    let mut state = resumed.unwrap_or(State {
        kubeconfig: std::path::absolute(&opts.kubeconfig)?,
        context: conn.context.clone(),
        ..Default::default()
    });
    if state.context != conn.context {
        bail!(
            "control plane {} was being installed into context {:?}, not {:?}; finish or undo that first (`tptctl down --name {}`)",
            opts.name,
            state.context,
            conn.context,
            opts.name
        );
    }
    let result = run(opts, &conn, &mut state, progress, &cancel).await;
    let Err(e) = result else { return result };
    let mut failed = UpFailed::new(format!(
        "installing control plane {} into context {}",
        opts.name, conn.context
    ));
    let namespace = format!(
        "namespace {} in context {}",
        manifests::NAMESPACE,
        conn.context
    );
    let mut made = Vec::new();
    if state.namespace_created {
        made.push(namespace.clone());
    }
    if dir.exists() {
        made.push(dir.display().to_string());
    }
    if made.is_empty() || opts.retain || (!fresh && state.registered) {
        failed.retained = opts.retain;
        failed.left_behind = made;
        return Err(e.context(failed));
    }
    progress.start("Rolling back");
    if state.namespace_created {
        failed.undo(namespace, delete_namespace(&state, opts.timeout).await);
    }
    failed.finish_rollback(dir, progress);
    Err(e.context(failed))
}

async fn run(
    opts: &KubernetesOptions,
    conn: &kubeconfig::Connection,
    state: &mut State,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Installed> {
    let dir = &opts.data_dir;
    let steps = Steps {
        progress,
        cancel,
        timeout: opts.timeout,
    };
    let context = conn.context.clone();
    let client = steps
        .phase(&format!("Connecting to context {context}"), async {
            let client = client_for(&state.kubeconfig, &context).await?;
            client
                .apiserver_version()
                .await
                .with_context(|| format!("the API server of context {context:?} did not answer"))?;
            Ok(client)
        })
        .await?;
    let local = LocalCluster::of_context(&context);
    if !state.namespace_created {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(manifests::NAMESPACE).await?.is_some() {
            bail!(
                "namespace {} already exists in context {context:?}: a control plane is installed there already, or something else uses the name; tptctl installs only into a namespace it creates, so that `down` can remove exactly what it made",
                manifests::NAMESPACE
            );
        }
    }
    std::fs::create_dir_all(dir)?;
    state.save(dir)?;
    let mut images = opts.images.clone();
    match &opts.image {
        ImageSource::Published => {}
        ImageSource::Push {
            build,
            repository,
            auth,
            plain_http,
        } => {
            let built = build_image(progress, build).await?;
            let tag = built.reference.rsplit(':').next().unwrap_or("latest");
            // `R/threeport:T`, the name `--image-repo R --image-tag T` means everywhere.
            let target = format!("{}/threeport:{tag}", repository.trim_end_matches('/'));
            if state.image.as_deref() != Some(built.digest.as_str()) {
                let (archive, t, auth, plain) = (
                    built.archive.clone(),
                    target.clone(),
                    auth.clone(),
                    *plain_http,
                );
                steps
                    .phase(&format!("Pushing image {target}"), async move {
                        crate::image::push::push(&archive, &t, &auth, plain).await
                    })
                    .await?;
                state.image = Some(built.digest.clone());
                state.save(dir)?;
            }
            images.threeport = target;
        }
        ImageSource::Load { build } => {
            // Checked before the build: only local clusters can be given a local image.
            let Some(tool) = &local else {
                bail!(
                    "context {context:?} is not a kind, k3d or minikube cluster, so its nodes cannot be given a local image; pass --image-repo REGISTRY/REPOSITORY (a registry the cluster pulls from) to push it there"
                );
            };
            let built = build_image(progress, build).await?;
            if state.image.as_deref() != Some(built.digest.as_str()) {
                match tool {
                    LocalCluster::Kind(cluster) => {
                        let (archive, c, verbose) = (
                            built.archive.display().to_string(),
                            cluster.clone(),
                            opts.verbose,
                        );
                        steps
                            .phase(
                                &format!(
                                    "Loading image {} into kind cluster {cluster}",
                                    built.reference
                                ),
                                async move {
                                    tokio::task::spawn_blocking(move || {
                                        crate::kind::kind(
                                            &["load", "image-archive", &archive, "--name", &c],
                                            verbose,
                                        )
                                    })
                                    .await??;
                                    Ok(())
                                },
                            )
                            .await?;
                    }
                    other => bail!(
                        "tptctl loads images into kind clusters only; load it yourself with `{}`, then run `up` again with --image-repo {} --image-tag {}",
                        other.load_command(&built.archive),
                        built
                            .reference
                            .rsplit_once(':')
                            .map(|r| r.0.trim_end_matches("/threeport"))
                            .unwrap_or_default(),
                        built.reference.rsplit(':').next().unwrap_or_default()
                    ),
                }
                state.image = Some(built.digest.clone());
                state.save(dir)?;
            }
            images.threeport = built.reference;
        }
    }
    let exposure = match local {
        Some(LocalCluster::Kind(_)) => Exposure::NodePort,
        _ => Exposure::LoadBalancer,
    };
    // Secrets are made once the API's address is known (their certificate names it); until
    // then an empty set stands in, and only the Namespace and the Service are applied.
    let placeholder = manifests::Secrets::generate(&[], secrets::generate_key())?;
    let skeleton: Vec<serde_json::Value> =
        manifests::control_plane(&images, &placeholder, exposure)
            .into_iter()
            .filter(|o| {
                o["kind"] == "Namespace"
                    || (o["kind"] == "Service" && o["metadata"]["name"] == manifests::API_NAME)
            })
            .collect();
    // Recorded before the apply: a crash in the middle still lets `down` find it.
    state.namespace_created = true;
    state.save(dir)?;
    steps
        .phase(
            "Creating the namespace and the API's Service",
            crate::install::apply_all(&client, &skeleton),
        )
        .await?;
    let api_server = match (&opts.api_address, exposure) {
        (Some(a), _) => a.clone(),
        (None, Exposure::NodePort) => {
            let ip = steps
                .phase("Finding a node's address", node_address(&client))
                .await?;
            format!("{ip}:{}", manifests::NODE_PORT)
        }
        (None, Exposure::LoadBalancer) => {
            let host = steps
                .phase(
                    "Waiting for the API's load balancer",
                    load_balancer(&client, opts.timeout),
                )
                .await?;
            format!("{host}:{}", manifests::API_PORT)
        }
    };
    let host = api_host(&api_server);
    let secrets = secrets::load_or_generate(dir, &[host.as_str()])?;
    let objects = manifests::control_plane(&images, &secrets, exposure);
    steps.install(&client, &objects).await?;
    state.installed = true;
    state.save(dir)?;
    let tls = secrets.client_tls();
    let info = ClusterInfo::in_cluster(context.clone(), PROVIDER, conn);
    steps.register(&api_server, &tls, &info, &opts.name).await?;
    state.registered = true;
    state.save(dir)?;
    Ok(Installed {
        name: opts.name.clone(),
        api_server,
        tls,
        encryption_key: secrets.encryption_key.clone(),
        kube_api: Some(KubeApi {
            connection: conn.clone(),
            kubeconfig: state.kubeconfig.clone(),
        }),
        provider: ProviderConfig::Kubernetes { context },
    })
}

async fn build_image(progress: &Progress, build: &BuildImage) -> Result<crate::image::Built> {
    let b = build.clone();
    progress
        .phase("Building the control plane image", async move {
            tokio::task::spawn_blocking(move || crate::image::cached(&b.inputs, &b.cache_dir))
                .await?
        })
        .await
}

/// The host of `host:port` (an IPv6 literal keeps its brackets off).
fn api_host(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// A node's InternalIP: where a kind node's NodePort is reached from this machine.
async fn node_address(client: &kube::Client) -> Result<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await?;
    nodes
        .items
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .context("no node reports an InternalIP address; pass --api-address HOST:PORT")
}

/// The API Service's load balancer address, once the cluster's controller has assigned one.
async fn load_balancer(client: &kube::Client, timeout: Duration) -> Result<String> {
    let api: Api<Service> = Api::namespaced(client.clone(), manifests::NAMESPACE);
    let deadline = Instant::now() + timeout;
    loop {
        let svc = api.get(manifests::API_NAME).await?;
        let ingress = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().next());
        if let Some(addr) = ingress.and_then(|i| i.hostname.or(i.ip)) {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            bail!(
                "the API's LoadBalancer Service has no address after {}s: this cluster has no load-balancer controller (bare metal without MetalLB, minikube without `minikube tunnel`); reach the API another way, e.g. `kubectl -n {} port-forward svc/{} {}:{}` in another terminal, and pass --api-address 127.0.0.1:{}",
                timeout.as_secs(),
                manifests::NAMESPACE,
                manifests::API_NAME,
                manifests::API_PORT,
                manifests::API_PORT,
                manifests::API_PORT
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Delete the install's namespace (and with it everything the install made) and wait until
/// the cluster has finished: a namespace stays `Terminating` while its contents go.
async fn delete_namespace(state: &State, timeout: Duration) -> Result<()> {
    let client = client_for(&state.kubeconfig, &state.context).await?;
    let api: Api<Namespace> = Api::all(client);
    match api
        .delete(manifests::NAMESPACE, &DeleteParams::foreground())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + timeout;
    while api.get_opt(manifests::NAMESPACE).await?.is_some() {
        if Instant::now() > deadline {
            bail!(
                "namespace {} is still terminating after {}s (`kubectl get ns {} -o yaml` shows what holds it)",
                manifests::NAMESPACE,
                timeout.as_secs(),
                manifests::NAMESPACE
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// `tptctl down` for an existing cluster: delete the install's namespace, never the cluster,
/// then the data dir.
pub async fn down(data_dir: &Path, timeout: Duration, progress: &Progress) -> Result<()> {
    let Some(state) = State::load(data_dir)? else {
        bail!(
            "{} is missing: nothing records what was installed",
            crate::install::state::path(data_dir).display()
        );
    };
    if state.namespace_created {
        progress.start(&format!(
            "Deleting namespace {} in context {}",
            manifests::NAMESPACE,
            state.context
        ));
        match delete_namespace(&state, timeout).await {
            Ok(()) => progress.done(),
            Err(e) => {
                progress.failed();
                return Err(e);
            }
        }
    }
    std::fs::remove_dir_all(data_dir)
        .with_context(|| format!("removing {}", data_dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_clusters_are_known_by_their_context_names() {
        let a = Path::new("/tmp/i.tar");
        assert_eq!(
            LocalCluster::of_context("kind-dev")
                .unwrap()
                .load_command(a),
            "kind load image-archive /tmp/i.tar --name dev"
        );
        assert_eq!(
            LocalCluster::of_context("k3d-x").unwrap().load_command(a),
            "k3d image import /tmp/i.tar --cluster x"
        );
        assert_eq!(
            LocalCluster::of_context("minikube")
                .unwrap()
                .load_command(a),
            "minikube image load /tmp/i.tar --profile minikube"
        );
        assert_eq!(LocalCluster::of_context("prod-eu"), None);
    }

    #[test]
    fn the_api_host_is_the_address_without_its_port() {
        assert_eq!(api_host("10.0.0.5:30323"), "10.0.0.5");
        assert_eq!(api_host("api.example.com:1323"), "api.example.com");
        assert_eq!(api_host("[fd00::1]:1323"), "fd00::1");
    }
}
