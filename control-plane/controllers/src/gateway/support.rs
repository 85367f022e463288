//! Support services: what a runtime needs before a gateway can route anything. That is a
//! Gateway API implementation (its CRDs and a `GatewayClass` that is `Accepted`) and, for TLS,
//! cert-manager.
//!
//! A runtime that already has them keeps them: the `GatewayClass` named on the runtime
//! (`GatewayClassName`), or else the only accepted one, and cert-manager when its CRDs are
//! served. Otherwise the controller installs a pinned release from its official manifests
//! (the sources are the control plane's config: a URL or a directory, with an optional
//! sha256), through the same server-side apply as workloads, and records on the runtime
//! (`SupportServices`) what it installed before it applies it, so a crash half-way still knows
//! what to remove. It then waits for the install to be ready (CRDs `Established`, workloads
//! rolled out, the class `Accepted`). What was installed is shown on the runtime and removed
//! with it ([`remove`]); what was found is never touched.

use crate::cluster::{self, Cluster, ObjectRef};
use crate::runtime::ReconcileError;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use threeport_api::kinds::{KUBERNETES_RUNTIME_DEFINITION, KUBERNETES_RUNTIME_INSTANCE};
use threeport_api::{Client, ObjectExt};

use super::objects::{CERT_MANAGER_API, GATEWAY_API};

/// The runtime field that records them.
pub const FIELD: &str = "SupportServices";
pub const GATEWAY_API_SERVICE: &str = "gateway-api";
pub const CERT_MANAGER_SERVICE: &str = "cert-manager";
/// Label on every object installed here.
const LABEL: &str = "threeport.io/support-service";
/// Envoy Gateway's controller name, for the class made after its install.
pub const ENVOY_GATEWAY_CONTROLLER: &str = "gateway.envoyproxy.io/gatewayclass-controller";

/// Where one support service's manifests come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// What it is, as shown on the runtime: `Envoy Gateway v1.7.2 (Gateway API v1.4)`.
    pub version: String,
    /// An `http(s)://` URL of a multi-document YAML file, or a directory of `.yaml`/`.yml`
    /// files (read in name order).
    pub source: String,
    /// The sha256 (hex) of the file, or of a directory's files concatenated in name order.
    pub sha256: Option<String>,
}

/// The control plane's config for support services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportConfig {
    pub gateway: Bundle,
    /// The `controllerName` of the `GatewayClass` made after installing `gateway`, when its
    /// manifests bring no class of their own.
    pub gateway_controller: String,
    /// The name of that class.
    pub gateway_class: String,
    pub cert_manager: Bundle,
    /// The ACME directory the certificates' Issuers register with.
    pub acme_server: String,
    /// How long a Gateway may stay unprogrammed (waiting for its address, its proxies) before
    /// it is shown `Degraded` rather than `Progressing`.
    pub programmed_grace: Duration,
}

impl Default for SupportConfig {
    fn default() -> Self {
        SupportConfig {
            gateway: Bundle {
                version: "Envoy Gateway v1.7.2 (Gateway API v1.4, experimental channel)".into(),
                source: "https://github.com/envoyproxy/gateway/releases/download/v1.7.2/install.yaml"
                    .into(),
                sha256: None,
            },
            gateway_controller: ENVOY_GATEWAY_CONTROLLER.into(),
            gateway_class: "threeport".into(),
            cert_manager: Bundle {
                version: "cert-manager v1.16.2".into(),
                source: "https://github.com/cert-manager/cert-manager/releases/download/v1.16.2/cert-manager.yaml"
                    .into(),
                sha256: None,
            },
            acme_server: "https://acme-v02.api.letsencrypt.org/directory".into(),
            // A cloud load balancer's address usually comes within a minute.
            programmed_grace: Duration::from_secs(90),
        }
    }
}

/// What the runtime records about one support service.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    /// Installed by Threeport (removed with the runtime), or found on the cluster.
    pub installed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The GatewayClass the runtime's gateways use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_class: Option<String>,
    /// What was applied (identities only), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Value>,
}

/// The runtime's records, by service.
fn records(runtime: &Value) -> Map<String, Value> {
    runtime
        .get(FIELD)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn record_of(runtime: &Value, service: &str) -> Option<Record> {
    records(runtime)
        .get(service)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Write one service's record on the runtime (a status field: it reconciles nothing).
async fn save(
    api: &Client,
    runtime_id: u64,
    service: &str,
    record: &Record,
) -> Result<(), ReconcileError> {
    let current = api.get(KUBERNETES_RUNTIME_INSTANCE, runtime_id).await?;
    let mut all = records(&current);
    let value =
        serde_json::to_value(record).map_err(|e| ReconcileError::Retryable(e.to_string()))?;
    if all.get(service) == Some(&value) {
        return Ok(());
    }
    all.insert(service.to_string(), value);
    api.patch(
        KUBERNETES_RUNTIME_INSTANCE,
        runtime_id,
        &json!({ FIELD: Value::Object(all) }),
    )
    .await?;
    Ok(())
}

/// Whether the support services are there.
pub enum Support {
    /// Ready: the GatewayClass to use.
    Ready(String),
    /// Not yet: why.
    Waiting(String),
}

/// Make sure the runtime has a Gateway API implementation (and cert-manager when `tls`).
pub async fn ensure(
    cfg: &SupportConfig,
    api: &Client,
    runtime: &Value,
    cluster: &Cluster,
    tls: bool,
) -> Result<Support, ReconcileError> {
    let class = match gateway_api(cfg, api, runtime, cluster).await? {
        Support::Ready(c) => c,
        waiting => return Ok(waiting),
    };
    if tls {
        if let Some(why) = cert_manager(cfg, api, runtime, cluster).await? {
            return Ok(Support::Waiting(why));
        }
    }
    Ok(Support::Ready(class))
}

fn accepted(class: &Value) -> Result<(), String> {
    match super::health::condition(class, "/status/conditions", "Accepted") {
        Some(("True", ..)) => Ok(()),
        Some((_, reason, message)) => Err(format!("{message} ({reason})")),
        None => Err("its controller has not accepted it".into()),
    }
}

fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn gateway_api(
    cfg: &SupportConfig,
    api: &Client,
    runtime: &Value,
    cluster: &Cluster,
) -> Result<Support, ReconcileError> {
    let rid = runtime.id().unwrap_or_default();
    let named = runtime
        .get("GatewayClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let mine = record_of(runtime, GATEWAY_API_SERVICE).filter(|r| r.installed);
    let classes = cluster::list(cluster, GATEWAY_API, "GatewayClass", None).await?;
    // 1. Use what the runtime has: the named class, or the only accepted one.
    if let Some(classes) = &classes {
        let chosen = match named {
            Some(n) => classes.iter().find(|c| name_of(c) == n),
            None => {
                let ok: Vec<&Value> = classes.iter().filter(|c| accepted(c).is_ok()).collect();
                if ok.len() > 1 {
                    let names: Vec<&str> = ok.iter().map(|c| name_of(c)).collect();
                    return Err(ReconcileError::Permanent(format!(
                        "the runtime has {} accepted GatewayClasses ({}); set GatewayClassName on KubernetesRuntimeInstance {:?} to choose one",
                        ok.len(),
                        names.join(", "),
                        runtime.name()
                    )));
                }
                ok.first().copied().or_else(|| {
                    // Ours, made after our install, before its controller accepted it.
                    mine.as_ref()
                        .and_then(|m| m.gateway_class.as_deref())
                        .and_then(|n| classes.iter().find(|c| name_of(c) == n))
                })
            }
        };
        if let Some(class) = chosen {
            let name = name_of(class).to_string();
            if mine.is_none() {
                save(
                    api,
                    rid,
                    GATEWAY_API_SERVICE,
                    &Record {
                        installed: false,
                        gateway_class: Some(name.clone()),
                        ..Default::default()
                    },
                )
                .await?;
            }
            if let Some(m) = &mine {
                if let Some(why) = readiness(cluster, &m.objects).await? {
                    return Ok(Support::Waiting(format!("installing {}: {why}", m.version)));
                }
            }
            return Ok(match accepted(class) {
                Ok(()) => Support::Ready(name),
                Err(why) => {
                    Support::Waiting(format!("GatewayClass {name} is not Accepted yet: {why}"))
                }
            });
        }
    }
    // 2. Installed here already (its CRDs or class may not be served yet): wait for it.
    if let Some(m) = mine.as_ref().filter(|m| m.source == cfg.gateway.source) {
        let why = match readiness(cluster, &m.objects).await? {
            Some(why) => why,
            None => format!(
                "GatewayClass {} is not there yet",
                m.gateway_class.as_deref().unwrap_or("?")
            ),
        };
        return Ok(Support::Waiting(format!("installing {}: {why}", m.version)));
    }
    // 3. Nothing usable: install the configured implementation and make its class.
    let class_name = named.unwrap_or(&cfg.gateway_class).to_string();
    let mut docs = fetch(&cfg.gateway, "Gateway API implementation").await?;
    if !docs.iter().any(|d| d["kind"] == "GatewayClass") {
        let mut class = json!({
            "apiVersion": GATEWAY_API, "kind": "GatewayClass",
            "metadata": {"name": class_name},
            "spec": {"controllerName": cfg.gateway_controller},
        });
        if cfg.gateway_controller == ENVOY_GATEWAY_CONTROLLER && is_kind(api, runtime).await? {
            // kind maps the host's ports 80 and 443 to these node ports (`tptctl up`), so the
            // gateway's Service must use them.
            docs.push(kind_envoy_proxy());
            class["spec"]["parametersRef"] = json!({
                "group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                "name": KIND_ENVOY_PROXY, "namespace": "envoy-gateway-system",
            });
        }
        docs.push(class);
    }
    let gateway_class = docs
        .iter()
        .find(|d| d["kind"] == "GatewayClass")
        .map(|c| name_of(c).to_string());
    let record = Record {
        installed: true,
        version: cfg.gateway.version.clone(),
        source: cfg.gateway.source.clone(),
        gateway_class: gateway_class.clone(),
        objects: docs.iter().filter_map(identity).collect(),
    };
    save(api, rid, GATEWAY_API_SERVICE, &record).await?;
    apply_all(cluster, docs, GATEWAY_API_SERVICE).await?;
    Ok(Support::Waiting(format!(
        "installing {} from {}; waiting for it to be ready",
        cfg.gateway.version, cfg.gateway.source
    )))
}

/// `None` when cert-manager is there and ready; else why not.
async fn cert_manager(
    cfg: &SupportConfig,
    api: &Client,
    runtime: &Value,
    cluster: &Cluster,
) -> Result<Option<String>, ReconcileError> {
    let rid = runtime.id().unwrap_or_default();
    let mine = record_of(runtime, CERT_MANAGER_SERVICE).filter(|r| r.installed);
    let served = cluster::list(cluster, CERT_MANAGER_API, "Certificate", Some("default"))
        .await?
        .is_some();
    if served {
        return match &mine {
            Some(m) => Ok(readiness(cluster, &m.objects)
                .await?
                .map(|why| format!("installing {}: {why}", m.version))),
            None => {
                if record_of(runtime, CERT_MANAGER_SERVICE).is_none() {
                    save(
                        api,
                        rid,
                        CERT_MANAGER_SERVICE,
                        &Record {
                            installed: false,
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                Ok(None)
            }
        };
    }
    let mut docs = fetch(&cfg.cert_manager, "cert-manager").await?;
    for d in &mut docs {
        enable_gateway_api(d);
    }
    let record = Record {
        installed: true,
        version: cfg.cert_manager.version.clone(),
        source: cfg.cert_manager.source.clone(),
        gateway_class: None,
        objects: docs.iter().filter_map(identity).collect(),
    };
    save(api, rid, CERT_MANAGER_SERVICE, &record).await?;
    apply_all(cluster, docs, CERT_MANAGER_SERVICE).await?;
    Ok(Some(format!(
        "installing {} from {}; waiting for it to be ready",
        cfg.cert_manager.version, cfg.cert_manager.source
    )))
}

/// cert-manager solves HTTP-01 through a Gateway only with `--enable-gateway-api`, which its
/// static manifest leaves off: add it to the controller's arguments.
fn enable_gateway_api(doc: &mut Value) {
    if doc["kind"] != "Deployment" || name_of(doc) != "cert-manager" {
        return;
    }
    let Some(containers) = doc
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in containers {
        if c["name"] != "cert-manager-controller" {
            continue;
        }
        let args = c
            .as_object_mut()
            .map(|m| m.entry("args").or_insert_with(|| json!([])));
        if let Some(Value::Array(args)) = args {
            if !args.iter().any(|a| a == "--enable-gateway-api") {
                args.push(json!("--enable-gateway-api"));
            }
        }
    }
}

const KIND_ENVOY_PROXY: &str = "threeport-kind";
/// The node ports `tptctl up --provider kind` maps the host's ports 80 and 443 to.
pub const KIND_HTTP_NODE_PORT: i64 = 30080;
pub const KIND_HTTPS_NODE_PORT: i64 = 30443;

/// Envoy Gateway's proxy settings for a kind runtime: a NodePort Service on the node ports
/// kind maps to the host.
fn kind_envoy_proxy() -> Value {
    json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyProxy",
        "metadata": {"name": KIND_ENVOY_PROXY, "namespace": "envoy-gateway-system"},
        "spec": {"provider": {"type": "Kubernetes", "kubernetes": {"envoyService": {
            "type": "NodePort",
            "patch": {"type": "StrategicMerge", "value": {"spec": {"ports": [
                {"port": 80, "nodePort": KIND_HTTP_NODE_PORT},
                {"port": 443, "nodePort": KIND_HTTPS_NODE_PORT},
            ]}}},
        }}}},
    })
}

async fn is_kind(api: &Client, runtime: &Value) -> Result<bool, ReconcileError> {
    let Some(def) = runtime.id_field("KubernetesRuntimeDefinitionID") else {
        return Ok(false);
    };
    let def = api.get(KUBERNETES_RUNTIME_DEFINITION, def).await?;
    Ok(def.get("InfraProvider").and_then(Value::as_str) == Some("kind"))
}

fn identity(doc: &Value) -> Option<Value> {
    let r = ObjectRef::of(doc).ok()?;
    let mut id = json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": {"name": r.name}});
    if let Some(ns) = r.namespace {
        id["metadata"]["namespace"] = json!(ns);
    }
    Some(id)
}

/// Read a bundle and check its sha256: the parsed objects, CRDs and namespaces first.
pub async fn fetch(bundle: &Bundle, what: &str) -> Result<Vec<Value>, ReconcileError> {
    let source = &bundle.source;
    let bytes: Vec<u8> = if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ReconcileError::Retryable(format!("{what} manifests: {e}")))?;
        let resp = client.get(source).send().await.map_err(|e| {
            ReconcileError::Retryable(format!("{what} manifests: GET {source}: {e}"))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let e = format!("{what} manifests: GET {source}: {status}");
            // A missing file stays missing; a server error may pass.
            return Err(if status.is_client_error() {
                ReconcileError::Permanent(e)
            } else {
                ReconcileError::Retryable(e)
            });
        }
        resp.bytes()
            .await
            .map_err(|e| ReconcileError::Retryable(format!("{what} manifests: GET {source}: {e}")))?
            .to_vec()
    } else {
        read_dir(source).map_err(|e| ReconcileError::Permanent(format!("{what} manifests: {e}")))?
    };
    if let Some(want) = &bundle.sha256 {
        let got = hex(&Sha256::digest(&bytes));
        if !got.eq_ignore_ascii_case(want.trim()) {
            return Err(ReconcileError::Permanent(format!(
                "{what} manifests {source}: sha256 is {got}, but the control plane's config expects {}; nothing was applied (fix the configured sha256 or the source)",
                want.trim()
            )));
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        ReconcileError::Permanent(format!("{what} manifests {source}: not UTF-8 YAML"))
    })?;
    let mut docs = crate::workload::split_manifest(&text).map_err(|e| {
        ReconcileError::Permanent(format!(
            "{what} manifests {source}: {}",
            e.trim_start_matches("YAMLDocument: ")
        ))
    })?;
    // CRDs, then namespaces, then the rest, each group in the files' order.
    docs.sort_by_key(|d| match d["kind"].as_str() {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    });
    Ok(docs)
}

fn read_dir(dir: &str) -> Result<Vec<u8>, String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{dir}: no .yaml or .yml files"));
    }
    let mut out = Vec::new();
    for f in files {
        let mut b = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        if !b.ends_with(b"\n") {
            b.push(b'\n');
        }
        // Files are separate documents.
        out.extend_from_slice(b"---\n");
        out.extend_from_slice(&b);
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn apply_all(
    cluster: &Cluster,
    docs: Vec<Value>,
    service: &str,
) -> Result<(), ReconcileError> {
    for d in docs {
        cluster::apply(cluster, d, "default", &[(LABEL, service.to_string())]).await?;
    }
    Ok(())
}

/// `None` when every installed object is ready; else what is still coming up.
async fn readiness(cluster: &Cluster, objects: &[Value]) -> Result<Option<String>, ReconcileError> {
    for id in objects {
        let Ok(r) = ObjectRef::of(id) else { continue };
        let kind = r.kind.as_str();
        if !matches!(
            kind,
            "CustomResourceDefinition" | "Deployment" | "StatefulSet" | "DaemonSet"
        ) {
            continue;
        }
        let what = match &r.namespace {
            Some(ns) => format!("{kind} {ns}/{}", r.name),
            None => format!("{kind} {}", r.name),
        };
        let Some(o) = cluster::get(cluster, &r, "default").await? else {
            return Ok(Some(format!("{what} is not there yet")));
        };
        let int = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let ready = match kind {
            "CustomResourceDefinition" => {
                matches!(
                    super::health::condition(&o, "/status/conditions", "Established"),
                    Some(("True", ..))
                )
            }
            "DaemonSet" => {
                int("/status/numberReady") >= int("/status/desiredNumberScheduled")
                    && int("/status/desiredNumberScheduled") > 0
            }
            _ => {
                let want = o
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                int("/status/observedGeneration") >= int("/metadata/generation")
                    && int("/status/readyReplicas") >= want
                    && int("/status/updatedReplicas") >= want
            }
        };
        if !ready {
            return Ok(Some(match kind {
                "CustomResourceDefinition" => format!("{what} is not Established yet"),
                "DaemonSet" => format!(
                    "{what}: {}/{} ready",
                    int("/status/numberReady"),
                    int("/status/desiredNumberScheduled")
                ),
                _ => format!(
                    "{what}: {}/{} ready",
                    int("/status/readyReplicas"),
                    o.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
            }));
        }
    }
    Ok(None)
}

/// Remove what was installed on this runtime (newest first: workloads, then namespaces, then
/// CRDs), and say what was removed. What was found on the cluster stays.
pub async fn remove(cluster: &Cluster, runtime: &Value) -> Result<Vec<String>, ReconcileError> {
    let mut removed = Vec::new();
    for (service, v) in records(runtime) {
        let Ok(rec) = serde_json::from_value::<Record>(v) else {
            continue;
        };
        if !rec.installed {
            continue;
        }
        let mut objects: Vec<ObjectRef> = rec
            .objects
            .iter()
            .filter_map(|o| ObjectRef::of(o).ok())
            .collect();
        objects.reverse();
        objects.sort_by_key(|r| match r.kind.as_str() {
            "CustomResourceDefinition" => 2,
            "Namespace" => 1,
            _ => 0,
        });
        for r in &objects {
            cluster::delete(cluster, r, "default").await?;
        }
        removed.push(format!("{service} ({})", rec.version));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_managers_controller_gets_gateway_api_support() {
        let mut d = json!({"kind": "Deployment", "metadata": {"name": "cert-manager", "namespace": "cert-manager"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "cert-manager-controller", "args": ["--v=2"]}]}}}});
        enable_gateway_api(&mut d);
        enable_gateway_api(&mut d);
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/args").unwrap(),
            &json!(["--v=2", "--enable-gateway-api"])
        );
        let mut other = json!({"kind": "Deployment", "metadata": {"name": "cert-manager-webhook"},
            "spec": {"template": {"spec": {"containers": [{"name": "cert-manager-webhook", "args": []}]}}}});
        enable_gateway_api(&mut other);
        assert_eq!(
            other
                .pointer("/spec/template/spec/containers/0/args")
                .unwrap(),
            &json!([])
        );
    }

    #[tokio::test]
    async fn a_directory_bundle_is_read_in_order_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b-deploy.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gw, namespace: gw-system}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a-crds.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: gw-system}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gateways.gateway.networking.k8s.io}\n",
        )
        .unwrap();
        let mut bundle = Bundle {
            version: "test".into(),
            source: dir.path().to_str().unwrap().into(),
            sha256: None,
        };
        let docs = fetch(&bundle, "Gateway API implementation").await.unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["CustomResourceDefinition", "Namespace", "Deployment"]
        );
        let bytes = read_dir(&bundle.source).unwrap();
        bundle.sha256 = Some(hex(&Sha256::digest(&bytes)));
        assert!(fetch(&bundle, "x").await.is_ok());
        bundle.sha256 = Some("00".repeat(32));
        let e = fetch(&bundle, "Gateway API implementation")
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(
            e.to_string()
                .contains("but the control plane's config expects 0000"),
            "{e}"
        );
    }
}
