//! A test-only Kubernetes API server double.
//!
//! No real API server, kind or Docker can run where Threeport's tests run, so controllers are
//! tested against this double through the *real* kube-rs client and the real `kubectl`. It
//! speaks enough of the Kubernetes API for that — discovery (legacy and aggregated), CRUD,
//! server-side apply with field ownership, merge/JSON patches, `/status` subresources, watches
//! with bookmarks and `410 Gone`, Tables for kubectl — and simulates the controller-manager,
//! the scheduler and the kubelet (Deployments → ReplicaSets → Pods with owner references, Pod
//! phases and container statuses, the kubelet's Events on the Pod, rollouts, Terminating
//! namespaces) so workloads become ready (or fail on demand). Installed add-ons are simulated
//! too, once a test applies their CRDs (`crds`): a Gateway API implementation for
//! [`DOUBLE_GATEWAY_CONTROLLER`] and cert-manager, each with a run-time switch that makes it fail
//! as the real one does. See README.md for what differs from a real cluster.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
//! let double = kube_api_double::KubeDouble::start(Default::default()).await?;
//! let kubeconfig = double.kubeconfig(); // give this to kube-rs or kubectl
//! double.pause().await;                 // the cluster becomes unreachable...
//! double.resume().await?;               // ...and comes back on the same port, same state
//! double.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Module map: `discovery` (resource registry, discovery and OpenAPI documents), `store`
//! (objects, resourceVersions, event history), `ops` (verb semantics), `apply` (patches,
//! managedFields, server-side apply), `selector`, `watch` (streams), `sim` (the simulation
//! loop), `controllers` (controller-manager stand-ins), `kubelet` (scheduler and kubelet
//! stand-ins), `gateway` (a Gateway API implementation), `certmanager` (cert-manager), `crds`
//! (their CRD manifests), `server` (TLS, routing, lists, `/scale`), `table` (kubectl Tables), `proto`
//! (kubectl's protobuf bodies), `errors` (`Status` objects).

mod apply;
mod certmanager;
mod controllers;
pub mod crds;
mod discovery;
mod errors;
mod gateway;
mod kubelet;
mod ops;
mod proto;
mod selector;
mod server;
mod sim;
mod store;
mod table;
mod watch;

pub use gateway::DOUBLE_GATEWAY_CONTROLLER;
pub use sim::FAILURE_ANNOTATION;

use base64::Engine;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use threeport_pki::TlsBundle;

/// How to start the double.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long the simulated kubelet takes to start a Pod: a Pod becomes ready (or fails)
    /// this long after it is created. A rollout takes a multiple of it (one step per
    /// `maxSurge` batch), and a deleted namespace stays `Terminating` at least this long.
    pub ready_delay: Duration,
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Container images whose Pods start but never become ready (a failing readiness probe):
    /// `Running`, the container `running` with `ready: false`, a Warning `Unhealthy` Event, so
    /// their Deployment/StatefulSet never completes its rollout. Exact images, or patterns with
    /// `*` (e.g. `"*:never-ready"`, `"registry.example/api:*"`).
    pub never_ready_images: Vec<String>,
    /// How long every write (POST, PUT, PATCH, DELETE) waits before it is served: the round
    /// trip to a remote API server and its etcd commit, which the loopback double otherwise
    /// answers in well under a millisecond. Tests that must catch a reconcile mid-way (a
    /// `kill -9` while it runs) use it to give the reconcile a duration. Reads are not delayed.
    pub write_latency: Duration,
    /// Whether the simulated Gateway API implementation gets addresses for the Gateways of
    /// its class (`Programmed=True`). Off: `Accepted=True` but `Programmed=False`, reason
    /// `AddressNotAssigned`, no addresses — a cluster whose load balancer never comes. Default
    /// on; `KubeDouble::set_gateway_programming` flips it at run time.
    pub gateway_programming: bool,
    /// Gateway addresses as an AWS load balancer gives them: `type: Hostname`, value
    /// `<gateway>-<namespace>.lb.double.example`, instead of `type: IPAddress` from
    /// 192.0.2.0/24. Default off; `KubeDouble::set_gateway_hostname_addresses` flips it.
    pub gateway_hostname_addresses: bool,
    /// Whether the simulated cert-manager issues Certificates. Off: every issuance fails as an
    /// ACME order does when the HTTP-01 challenge cannot be reached (`Issuing=False`, reason
    /// `Failed`, a Warning Event). Default on; `KubeDouble::set_certificate_issuance` flips it.
    pub certificate_issuance: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ready_delay: Duration::from_millis(300),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            never_ready_images: Vec::new(),
            write_latency: Duration::ZERO,
            gateway_programming: true,
            gateway_hostname_addresses: false,
            certificate_issuance: true,
        }
    }
}

/// A running double. Dropping it stops everything (tasks are aborted); `shutdown` does the
/// same in an orderly way.
pub struct KubeDouble {
    app: Arc<server::App>,
    tls: Arc<rustls::ServerConfig>,
    bundle: TlsBundle,
    addr: SocketAddr,
    serving: tokio::sync::Mutex<Option<server::Serving>>,
    epoch: tokio::sync::watch::Sender<u64>,
    kubelet_stop: tokio::sync::watch::Sender<bool>,
    kubelet: Option<tokio::task::JoinHandle<()>>,
    switches: tokio::sync::watch::Sender<sim::Switches>,
}

/// Objects every cluster has.
fn bootstrap(store: &store::Store) -> anyhow::Result<()> {
    let mut g = store.lock();
    let ctx = ops::WriteCtx::new("kube-apiserver");
    let ns_rt = g
        .registry
        .find("", "v1", "namespaces")
        .cloned()
        .expect("built-in");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ops::create(&mut g, &ns_rt, "", json!({"metadata": {"name": ns}}), &ctx)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let node_rt = g
        .registry
        .find("", "v1", "nodes")
        .cloned()
        .expect("built-in");
    let node = json!({"metadata": {"name": sim::NODE_NAME, "labels": {
        "kubernetes.io/hostname": sim::NODE_NAME, "kubernetes.io/os": "linux",
        "node-role.kubernetes.io/control-plane": ""}}});
    ops::create(&mut g, &node_rt, "", node, &ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": sim::NODE_NAME}],
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "nodeInfo": {"kubeletVersion": "v1.34.0", "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": "amd64", "containerRuntimeVersion": "kube-double://0",
                     "osImage": "kube-double", "kernelVersion": "6.0.0-kube-double",
                     "machineID": "00000000000000000000000000000000",
                     "systemUUID": "00000000-0000-0000-0000-000000000000",
                     "bootID": "00000000-0000-0000-0000-000000000000"},
    });
    ops::set_status(&mut g, &node_rt, "", sim::NODE_NAME, status, "kubelet")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

impl KubeDouble {
    pub async fn start(opts: Options) -> anyhow::Result<KubeDouble> {
        let bundle = TlsBundle::generate(&[])?;
        let tls = Arc::new(server::tls_config(&bundle)?);
        let store = store::Store::new(discovery::Registry::builtin(), store::HISTORY_LIMIT);
        bootstrap(&store)?;
        let listener = server::bind(opts.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
        let addr = listener.local_addr()?;
        let (epoch, epoch_rx) = tokio::sync::watch::channel(0u64);
        let app = Arc::new(server::App {
            store: store.clone(),
            epoch: watch::Epoch(epoch_rx),
            server_address: format!("{}:{}", host(addr), addr.port()),
            write_latency: opts.write_latency,
        });
        let serving = server::Serving::start(app.clone(), tls.clone(), listener)?;
        let (kubelet_stop, stop_rx) = tokio::sync::watch::channel(false);
        let (switches, switches_rx) = tokio::sync::watch::channel(sim::Switches {
            gateway_programming: opts.gateway_programming,
            gateway_hostnames: opts.gateway_hostname_addresses,
            certificate_issuance: opts.certificate_issuance,
        });
        let kubelet = tokio::spawn(sim::run(
            store,
            sim::SimOptions {
                ready_delay: opts.ready_delay,
                never_ready_images: opts.never_ready_images.clone(),
            },
            switches_rx,
            stop_rx,
        ));
        tracing::info!(%addr, "kube-double listening");
        Ok(KubeDouble {
            app,
            tls,
            bundle,
            addr,
            serving: tokio::sync::Mutex::new(Some(serving)),
            epoch,
            kubelet_stop,
            kubelet: Some(kubelet),
            switches,
        })
    }

    /// Turn the Gateway API implementation's address assignment on or off (see
    /// `Options::gateway_programming`). Off takes effect on the next pass (addresses
    /// withdrawn, `Programmed=False`/`AddressNotAssigned`); back on, Gateways get their address
    /// `ready_delay` later, like new ones.
    pub fn set_gateway_programming(&self, on: bool) {
        self.switches
            .send_if_modified(|s| std::mem::replace(&mut s.gateway_programming, on) != on);
    }

    /// Give Gateways load-balancer host names instead of IP addresses (see
    /// `Options::gateway_hostname_addresses`); takes effect on the next pass.
    pub fn set_gateway_hostname_addresses(&self, on: bool) {
        self.switches
            .send_if_modified(|s| std::mem::replace(&mut s.gateway_hostnames, on) != on);
    }

    /// Turn certificate issuance on or off (see `Options::certificate_issuance`). Off: the
    /// attempts that complete from now on fail; back on: failed Certificates are retried at
    /// once (issued `ready_delay` later).
    pub fn set_certificate_issuance(&self, on: bool) {
        self.switches
            .send_if_modified(|s| std::mem::replace(&mut s.certificate_issuance, on) != on);
    }

    /// `https://127.0.0.1:PORT` (the listen address, with an unspecified IP shown as loopback).
    pub fn url(&self) -> String {
        format!("https://{}:{}", host(self.addr), self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ca_pem(&self) -> String {
        self.bundle.ca.pair.cert_pem.clone()
    }

    pub fn client_cert_pem(&self) -> String {
        self.bundle.client.cert_pem.clone()
    }

    pub fn client_key_pem(&self) -> String {
        self.bundle.client.key_pem.clone()
    }

    /// A kubeconfig (YAML) with one cluster, one client-certificate user and the context
    /// `kube-double` (namespace `default`), which is the current context.
    pub fn kubeconfig(&self) -> String {
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kube-double
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: kube-double
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: kube-double
  context:
    cluster: kube-double
    user: kube-double
    namespace: default
current-context: kube-double
preferences: {{}}
",
            url = self.url(),
            ca = b64(self.ca_pem()),
            cert = b64(self.client_cert_pem()),
            key = b64(self.client_key_pem()),
        )
    }

    /// Write `kubeconfig()` to `path` (atomically, mode 0600: it holds a private key).
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        threeport_pki::write_file(path, self.kubeconfig().as_bytes(), true)?;
        Ok(())
    }

    /// Stop listening and drop every connection (open watches included): clients get
    /// "connection refused", as with an unreachable cluster. All state is kept, and the
    /// simulated kubelet keeps running.
    pub async fn pause(&self) {
        let serving = self.serving.lock().await.take();
        if let Some(s) = serving {
            self.epoch.send_modify(|e| *e += 1);
            s.stop().await;
            tracing::info!(addr = %self.addr, "kube-double paused");
        }
    }

    /// Listen again on the same port, with the same state and certificates.
    pub async fn resume(&self) -> anyhow::Result<()> {
        let mut serving = self.serving.lock().await;
        if serving.is_some() {
            return Ok(());
        }
        // The previous listener is closed by now; retry briefly in case the OS is slow to
        // release the port.
        let mut last_err = None;
        for _ in 0..50 {
            match server::bind(self.addr) {
                Ok(l) => {
                    *serving = Some(server::Serving::start(
                        self.app.clone(),
                        self.tls.clone(),
                        l,
                    )?);
                    tracing::info!(addr = %self.addr, "kube-double resumed");
                    return Ok(());
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Err(anyhow::anyhow!(
            "cannot listen on {} again: {}",
            self.addr,
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    pub async fn shutdown(mut self) {
        self.pause().await;
        let _ = self.kubelet_stop.send(true);
        if let Some(k) = self.kubelet.take() {
            let _ = k.await;
        }
    }
}

impl Drop for KubeDouble {
    fn drop(&mut self) {
        if let Some(s) = self.serving.get_mut().take() {
            s.abort();
        }
        self.epoch.send_modify(|e| *e += 1);
        if let Some(k) = self.kubelet.take() {
            k.abort();
        }
    }
}

fn host(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() && addr.is_ipv4() => "127.0.0.1".into(),
        ip if ip.is_unspecified() => "[::1]".into(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}
