//! Installing the control plane into a cluster, the same way for every provider that has one
//! (kind, EKS): server-side apply every object, wait for each rollout, wait for the API, then
//! register the cluster and the control plane through the new API. [`Steps`] runs these as
//! phases; the provider only brings the cluster and the API's address.

use crate::Progress;
use crate::manifests::{self, NAMESPACE};
use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Scope};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use threeport_api::{Client, ClientTls, kinds};
use tokio_util::sync::CancellationToken;

pub const FIELD_MANAGER: &str = "threeport-installer";

/// The install phases every provider shares, each stopped by `cancel` (Ctrl-C).
pub struct Steps<'a> {
    pub progress: &'a Progress,
    pub cancel: &'a CancellationToken,
    /// For each wait: rollouts, then the API.
    pub timeout: Duration,
}

impl Steps<'_> {
    /// Run `f` as a phase that Ctrl-C interrupts.
    pub async fn phase<T>(
        &self,
        name: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.progress
            .phase(name, async {
                tokio::select! {
                    r = f => r,
                    _ = self.cancel.cancelled() => bail!("interrupted"),
                }
            })
            .await
    }

    /// "Installing the control plane", then "Waiting for rollouts".
    pub async fn install(&self, client: &kube::Client, objects: &[Value]) -> Result<()> {
        self.phase("Installing the control plane", apply_all(client, objects))
            .await?;
        self.phase(
            "Waiting for rollouts",
            wait_rollouts(client, objects, self.timeout),
        )
        .await?;
        Ok(())
    }

    /// "Waiting for the API" at `api_server` (`host:port`), then "Registering the cluster and the
    /// control plane"; returns the API's client.
    pub async fn register(
        &self,
        api_server: &str,
        tls: &ClientTls,
        cluster: &ClusterInfo,
        control_plane: &str,
    ) -> Result<Client> {
        let api = Client::new(&format!("https://{api_server}"), Some(tls))?;
        self.phase("Waiting for the API", wait_api(&api, self.timeout))
            .await?;
        self.phase(
            "Registering the cluster and the control plane",
            register(&api, cluster, control_plane),
        )
        .await?;
        Ok(api)
    }
}

/// A kube-rs client from a kubeconfig's text (its current context).
pub async fn kube_client(kubeconfig: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Apply `objects` in order with server-side apply.
pub async fn apply_all(client: &kube::Client, objects: &[Value]) -> Result<()> {
    for o in objects {
        let api_version = o["apiVersion"]
            .as_str()
            .context("object without apiVersion")?;
        let kind = o["kind"].as_str().context("object without kind")?;
        let name = o["metadata"]["name"]
            .as_str()
            .context("object without a name")?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let (ar, caps): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("{kind}: not served by the cluster"))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                o["metadata"]["namespace"].as_str().unwrap_or(NAMESPACE),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(o),
        )
        .await
        .with_context(|| format!("apply {kind}/{name}"))?;
    }
    Ok(())
}

/// Wait until every Deployment and StatefulSet of the control plane has rolled out, as
/// `kubectl rollout status` decides it (see [`rollout_pending`]). One that is not done by
/// `timeout` fails the wait, naming it and what its Pods report.
pub async fn wait_rollouts(
    client: &kube::Client,
    objects: &[Value],
    timeout: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut waited = Vec::new();
    for o in objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
    {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let ar = if kind == "Deployment" {
            ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&())
        } else {
            ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&())
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &ar);
        loop {
            let cur = serde_json::to_value(api.get(name).await?)?;
            let Some(pending) = rollout_pending(kind, &cur) else {
                break;
            };
            if Instant::now() > deadline {
                let pods = pod_problems(client, &cur).await;
                bail!(
                    "{kind} {NAMESPACE}/{name} did not roll out within {}s: {pending}{pods}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        waited.push(format!("{kind}/{name}"));
    }
    Ok(waited)
}

/// What a rollout still waits for, or `None` when it is complete. The conditions are those of
/// `kubectl rollout status`: the controller has seen the current spec, every replica runs the
/// current template, no old replica is left, and every replica is available (Deployment) or
/// ready (StatefulSet). Ready replicas alone are not enough: during an upgrade the old
/// ReplicaSet's Pods are ready too.
pub fn rollout_pending(kind: &str, o: &Value) -> Option<String> {
    let int = |p: &str| o.pointer(p).and_then(Value::as_i64);
    let want = int("/spec/replicas").unwrap_or(1);
    let generation = int("/metadata/generation").unwrap_or(0);
    if int("/status/observedGeneration").unwrap_or(0) < generation {
        return Some("waiting for the new spec to be observed".into());
    }
    let updated = int("/status/updatedReplicas").unwrap_or(0);
    if updated < want {
        return Some(format!("{updated} of {want} replicas updated"));
    }
    if kind == "Deployment" {
        let total = int("/status/replicas").unwrap_or(0);
        if total > updated {
            return Some(format!(
                "{} old replica(s) pending termination",
                total - updated
            ));
        }
        let available = int("/status/availableReplicas").unwrap_or(0);
        if available < updated {
            return Some(format!(
                "{available} of {updated} updated replicas available"
            ));
        }
    } else {
        let ready = int("/status/readyReplicas").unwrap_or(0);
        if ready < want {
            return Some(format!("{ready} of {want} replicas ready"));
        }
        let current = o.pointer("/status/currentRevision");
        let update = o.pointer("/status/updateRevision");
        if update.is_some() && current != update {
            return Some("waiting for the update to finish".into());
        }
    }
    None
}

/// Why the workload's Pods are not ready, for the timeout message: each not-ready Pod with its
/// containers' waiting reasons and its latest Warning Event (what `kubectl describe pod` shows
/// at the bottom). Empty when nothing can be read; the timeout itself is the error.
async fn pod_problems(client: &kube::Client, workload: &Value) -> String {
    use k8s_openapi::api::core::v1::{Event, Pod};
    use kube::api::ListParams;
    let Some(labels) = workload
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    else {
        return String::new();
    };
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return String::new();
    };
    let mut out = String::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            continue;
        }
        let mut why: Vec<String> = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| {
                let w = c.state.as_ref()?.waiting.as_ref()?;
                let reason = w.reason.clone().unwrap_or_default();
                Some(match &w.message {
                    Some(m) => format!("{}: {reason}: {m}", c.name),
                    None => format!("{}: {reason}", c.name),
                })
            })
            .collect();
        let warning = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .ok()
            .and_then(|l| {
                l.items
                    .into_iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                    .max_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0))
            });
        if let Some(e) = warning {
            why.push(format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            ));
        }
        if why.is_empty() {
            why.push(format!(
                "phase {}",
                status.phase.unwrap_or_else(|| "unknown".into())
            ));
        }
        out.push_str(&format!("; Pod {name}: {}", why.join("; ")));
    }
    out
}

/// Wait until the API answers `/version` through `client`.
pub async fn wait_api(client: &Client, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match client.version().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => bail!(
                "the API at {} did not answer within {}s: {e}",
                client.base_url(),
                timeout.as_secs()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The cluster this control plane runs in, as Threeport sees it.
pub struct ClusterInfo {
    pub name: String,
    pub provider: String,
    pub endpoint: String,
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub token: Option<String>,
}

impl ClusterInfo {
    /// A cluster the control plane runs inside, with `conn`'s credentials: its controllers
    /// reach the cluster's API server at the in-cluster address.
    pub fn in_cluster(name: String, provider: &str, conn: &crate::kubeconfig::Connection) -> Self {
        ClusterInfo {
            name,
            provider: provider.into(),
            endpoint: "https://kubernetes.default.svc".into(),
            ca_pem: conn.ca_pem.clone(),
            cert_pem: conn.cert_pem.clone(),
            key_pem: conn.key_pem.clone(),
            token: conn.token.clone(),
        }
    }
}

async fn upsert(client: &Client, kind: &'static threeport_api::Kind, body: Value) -> Result<u64> {
    let name = body["Name"].as_str().unwrap_or_default().to_string();
    if let Some(existing) = client.find_by_name(kind, &name).await? {
        return threeport_api::object_id(&existing).context("object without ID");
    }
    let created = client
        .create(kind, &body)
        .await
        .with_context(|| format!("register {} {name}", kind.name))?;
    threeport_api::object_id(&created).context("object without ID")
}

/// Register the cluster as the default runtime and the control plane itself (both already
/// reconciled: they exist, nothing needs creating). Idempotent, so a resumed `up` can redo it.
pub async fn register(client: &Client, cluster: &ClusterInfo, control_plane: &str) -> Result<()> {
    let krd = upsert(
        client,
        kinds::KUBERNETES_RUNTIME_DEFINITION,
        json!({"Name": cluster.name, "InfraProvider": cluster.provider, "Reconciled": true}),
    )
    .await?;
    let mut inst = json!({
        "Name": cluster.name, "KubernetesRuntimeDefinitionID": krd, "Location": "Local", "DefaultRuntime": true, "Reconciled": true,
        "APIEndpoint": cluster.endpoint, "ThreeportControlPlaneHost": format!("{}.{NAMESPACE}.svc", manifests::API_NAME),
    });
    for (f, v) in [
        ("CACertificate", &cluster.ca_pem),
        ("Certificate", &cluster.cert_pem),
        ("CertificateKey", &cluster.key_pem),
        ("ConnectionToken", &cluster.token),
    ] {
        if let Some(v) = v {
            inst[f] = json!(v);
        }
    }
    let kri = upsert(client, kinds::KUBERNETES_RUNTIME_INSTANCE, inst).await?;
    let cpd = upsert(
        client,
        kinds::CONTROL_PLANE_DEFINITION,
        json!({"Name": control_plane, "AuthEnabled": true, "Reconciled": true}),
    )
    .await?;
    upsert(
        client,
        kinds::CONTROL_PLANE_INSTANCE,
        json!({
            "Name": control_plane, "ControlPlaneDefinitionID": cpd, "KubernetesRuntimeInstanceID": kri, "Namespace": NAMESPACE,
            "Genesis": true, "IsSelf": true, "Reconciled": true,
        }),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rollout_pending;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn a_deployment_is_rolled_out_only_when_every_replica_is_new_and_available() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            rollout_pending("Deployment", &deployment(2, done.clone())),
            None
        );
        // The controller has not seen generation 3 yet: the old status says nothing.
        assert!(
            rollout_pending("Deployment", &deployment(3, done))
                .unwrap()
                .contains("observed")
        );
        // Mid-upgrade: the old Pods are ready, which is not a finished rollout.
        let mid = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            rollout_pending("Deployment", &deployment(2, mid)).as_deref(),
            Some("1 of 2 replicas updated")
        );
        let old_left = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
            "readyReplicas": 3, "availableReplicas": 3});
        assert_eq!(
            rollout_pending("Deployment", &deployment(2, old_left)).as_deref(),
            Some("1 old replica(s) pending termination")
        );
        let not_ready = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 1, "availableReplicas": 1});
        assert_eq!(
            rollout_pending("Deployment", &deployment(2, not_ready)).as_deref(),
            Some("1 of 2 updated replicas available")
        );
        // No status at all (just created).
        assert!(rollout_pending("Deployment", &deployment(1, json!({}))).is_some());
    }

    #[test]
    fn a_statefulset_is_rolled_out_when_ready_and_on_the_update_revision() {
        let sts = |status| json!({"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": status});
        let done = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "currentRevision": "a", "updateRevision": "a"});
        assert_eq!(rollout_pending("StatefulSet", &sts(done)), None);
        let not_ready = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 0, "currentRevision": "a", "updateRevision": "a"});
        assert_eq!(
            rollout_pending("StatefulSet", &sts(not_ready)).as_deref(),
            Some("0 of 1 replicas ready")
        );
        let updating = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"});
        assert!(rollout_pending("StatefulSet", &sts(updating)).is_some());
    }
}

/// `<data dir>/install-state.json`: the steps a provider's `up` has done, saved after each one
/// so a re-run resumes (kind and kubernetes each keep their own fields in it).
pub(crate) mod state {
    use anyhow::{Context, Result};
    use serde::{Serialize, de::DeserializeOwned};
    use std::path::{Path, PathBuf};

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("install-state.json")
    }

    /// `Ok(None)` when there is none yet; an error when it is there but unreadable.
    pub fn load<T: DeserializeOwned>(dir: &Path) -> Result<Option<T>> {
        let path = path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{}: not an install state", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(format!("reading {}", path.display())),
        }
    }

    pub fn save<T: Serialize>(dir: &Path, state: &T) -> Result<()> {
        threeport_pki::write_file(
            &path(dir),
            serde_json::to_string_pretty(state)?.as_bytes(),
            true,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
