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

/// Wait until every Deployment and StatefulSet of the control plane has its replicas ready.
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
            let want = cur
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = cur
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if ready >= want {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{kind} {name} not ready after {}s ({ready}/{want} replicas)",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        waited.push(format!("{kind}/{name}"));
    }
    Ok(waited)
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
