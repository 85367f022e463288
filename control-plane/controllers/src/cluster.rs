//! Talking to a runtime's cluster: a kube-rs client from a KubernetesRuntimeInstance, and
//! server-side apply / delete of any kind through discovery (CRDs included).

use crate::runtime::ReconcileError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Field manager for every server-side apply: Threeport owns what it applied.
pub const FIELD_MANAGER: &str = "threeport";
/// Label on every applied object: which workload instance it belongs to.
pub const INSTANCE_LABEL: &str = "threeport.io/workload-instance";

/// Build a client from a runtime instance (secrets revealed): API endpoint, CA, and a client
/// certificate or a token.
pub async fn client_for(runtime: &Value) -> Result<kube::Client, ReconcileError> {
    let s = |f: &str| {
        runtime
            .get(f)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && *v != threeport_api::REDACTED)
    };
    let endpoint = s("APIEndpoint")
        .ok_or_else(|| ReconcileError::Permanent("the runtime has no APIEndpoint".into()))?;
    let mut user = serde_json::Map::new();
    if let (Some(cert), Some(key)) = (s("Certificate"), s("CertificateKey")) {
        user.insert("client-certificate-data".into(), json!(B64.encode(cert)));
        user.insert("client-key-data".into(), json!(B64.encode(key)));
    }
    if let Some(token) = s("ConnectionToken") {
        user.insert("token".into(), json!(token));
    }
    let mut cluster = serde_json::Map::new();
    cluster.insert("server".into(), json!(endpoint));
    match s("CACertificate") {
        Some(ca) => cluster.insert("certificate-authority-data".into(), json!(B64.encode(ca))),
        None => cluster.insert(
            "insecure-skip-tls-verify".into(),
            json!(endpoint.starts_with("https")),
        ),
    };
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "runtime",
        "clusters": [{"name": "runtime", "cluster": cluster}],
        "users": [{"name": "runtime", "user": user}],
        "contexts": [{"name": "runtime", "context": {"cluster": "runtime", "user": "runtime"}}],
    });
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig.to_string())
        .map_err(|e| ReconcileError::Permanent(format!("runtime connection details: {e}")))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| ReconcileError::Permanent(format!("runtime connection details: {e}")))?;
    cfg.connect_timeout = Some(Duration::from_secs(5));
    cfg.read_timeout = Some(Duration::from_secs(30));
    kube::Client::try_from(cfg)
        .map_err(|e| ReconcileError::Permanent(format!("runtime client: {e}")))
}

/// A runtime's client plus what is worth remembering about its cluster: which kinds it serves
/// (discovery is a round trip per apply otherwise) and which namespaces already exist.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    kinds: Arc<Mutex<HashMap<String, (ApiResource, ApiCapabilities)>>>,
    namespaces: Arc<Mutex<HashSet<String>>>,
}

impl Cluster {
    pub fn new(client: kube::Client) -> Cluster {
        Cluster {
            client,
            kinds: Arc::default(),
            namespaces: Arc::default(),
        }
    }
}

/// Clusters by runtime (ID, ResourceVersion): a changed runtime gets a fresh client.
#[derive(Default)]
pub struct Clients {
    cache: Mutex<HashMap<(u64, i64), Cluster>>,
}

impl Clients {
    pub async fn get(&self, runtime: &Value) -> Result<Cluster, ReconcileError> {
        let key = (
            runtime
                .get("ID")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            runtime
                .get("ResourceVersion")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
        );
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let c = Cluster::new(client_for(runtime).await?);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, c.clone());
        Ok(c)
    }
}

/// The identity of a Kubernetes object: what pruning compares.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(obj: &Value) -> Result<ObjectRef, String> {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
        Ok(ObjectRef {
            api_version: s("/apiVersion").ok_or("missing apiVersion")?,
            kind: s("/kind").ok_or("missing kind")?,
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name").ok_or("missing metadata.name")?,
        })
    }

    pub fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), self.api_version.clone()),
        };
        GroupVersionKind {
            group,
            version,
            kind: self.kind.clone(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} {}/{}", self.api_version, self.kind, ns, self.name),
            None => write!(f, "{}/{} {}", self.api_version, self.kind, self.name),
        }
    }
}

async fn resolve(
    cluster: &Cluster,
    r: &ObjectRef,
) -> Result<(ApiResource, ApiCapabilities), ReconcileError> {
    let key = format!("{}/{}", r.api_version, r.kind);
    if let Some(hit) = cluster
        .kinds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(hit.clone());
    }
    let found = kube::discovery::pinned_kind(&cluster.client, &r.gvk())
        .await
        .map_err(|e| match e {
            // No such kind, or no such group at all (its API path is a 404).
            kube::Error::Discovery(_) => ReconcileError::Retryable(format!(
                "{}: the cluster does not serve this kind (is its CRD installed?)",
                r
            )),
            kube::Error::Api(s) if s.code == 404 => ReconcileError::Retryable(format!(
                "{}: the cluster does not serve this kind (is its CRD installed?)",
                r
            )),
            other => ReconcileError::from(other),
        })?;
    cluster
        .kinds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, found.clone());
    Ok(found)
}

fn api_for(
    client: &kube::Client,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    ns: &str,
) -> Api<DynamicObject> {
    match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), ns, ar),
        Scope::Cluster => Api::all_with(client.clone(), ar),
    }
}

/// Server-side apply `obj` (namespaced objects without a namespace go to `default_ns`), creating
/// the namespace when missing. Returns the object as the cluster holds it.
pub async fn apply(
    cluster: &Cluster,
    mut obj: Value,
    default_ns: &str,
    labels: &[(&str, String)],
) -> Result<Value, ReconcileError> {
    let r = ObjectRef::of(&obj).map_err(ReconcileError::Permanent)?;
    let (ar, caps) = resolve(cluster, &r).await?;
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| default_ns.to_string());
    if caps.scope == Scope::Namespaced {
        obj["metadata"]["namespace"] = json!(ns);
        ensure_namespace(cluster, &ns).await?;
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ReconcileError::Permanent(format!("{r}: metadata must be a mapping")))?;
    let label_map = meta.entry("labels").or_insert_with(|| json!({}));
    for (k, v) in labels {
        label_map[*k] = json!(v);
    }
    let api = api_for(&cluster.client, &ar, &caps, &ns);
    let applied = api
        .patch(
            &r.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| {
            // Someone deleted the namespace behind our back (gone, or still Terminating, which
            // refuses new content with 403): look again next time.
            if matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 403) {
                cluster
                    .namespaces
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&ns);
            }
            ReconcileError::Retryable(format!("apply {r}: {e}"))
        })?;
    serde_json::to_value(applied).map_err(|e| ReconcileError::Retryable(e.to_string()))
}

async fn ensure_namespace(cluster: &Cluster, ns: &str) -> Result<(), ReconcileError> {
    if cluster
        .namespaces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(ns)
    {
        return Ok(());
    }
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    if let Some(existing) = api.get_opt(ns).await? {
        // A namespace being deleted takes no new content until it is gone (a real cluster
        // keeps it Terminating while its content is removed).
        if existing.metadata.deletion_timestamp.is_some() {
            return Err(ReconcileError::Retryable(format!(
                "namespace {ns} is being deleted (Terminating); waiting for it to go"
            )));
        }
        cluster
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ns.to_string());
        return Ok(());
    }
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": "threeport"}}});
    api.patch(ns, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&obj))
        .await?;
    cluster
        .namespaces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(ns.to_string());
    Ok(())
}

/// Delete an object; already gone is fine.
pub async fn delete(
    cluster: &Cluster,
    r: &ObjectRef,
    default_ns: &str,
) -> Result<(), ReconcileError> {
    if r.kind == "Namespace" {
        cluster
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&r.name);
    }
    let (ar, caps) = match resolve(cluster, r).await {
        Ok(x) => x,
        // The kind itself is gone (CRD deleted): so is the object.
        Err(ReconcileError::Retryable(m)) if m.contains("does not serve") => return Ok(()),
        Err(e) => return Err(e),
    };
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| default_ns.to_string());
    match api_for(&cluster.client, &ar, &caps, &ns)
        .delete(&r.name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ReconcileError::Retryable(format!("delete {r}: {e}"))),
    }
}

/// Fetch an object, `None` if it does not exist.
pub async fn get(
    cluster: &Cluster,
    r: &ObjectRef,
    default_ns: &str,
) -> Result<Option<Value>, ReconcileError> {
    let (ar, caps) = resolve(cluster, r).await?;
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| default_ns.to_string());
    let got = api_for(&cluster.client, &ar, &caps, &ns)
        .get_opt(&r.name)
        .await?;
    Ok(got.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
}

/// List the objects of a kind (in `namespace`, or everywhere); `None` when the cluster does not
/// serve the kind (its CRD is not installed).
pub async fn list(
    cluster: &Cluster,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<Option<Vec<Value>>, ReconcileError> {
    let r = ObjectRef {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: None,
        name: String::new(),
    };
    let (ar, caps) = match resolve(cluster, &r).await {
        Ok(x) => x,
        Err(ReconcileError::Retryable(m)) if m.contains("does not serve") => return Ok(None),
        Err(e) => return Err(e),
    };
    let api: Api<DynamicObject> = match (caps.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
        _ => Api::all_with(cluster.client.clone(), &ar),
    };
    let items = api.list(&Default::default()).await?.items;
    Ok(Some(
        items
            .into_iter()
            .map(|o| {
                let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
                // List items may come without their type: say it once more.
                v["apiVersion"] = json!(api_version);
                v["kind"] = json!(kind);
                v
            })
            .collect(),
    ))
}
