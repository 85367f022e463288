//! `tptctl runtime register`: make an existing cluster (kind, minikube, Docker Desktop, …) a
//! Threeport runtime from its kubeconfig, through the same apply path as YAML files.

use serde_json::{Map, json};
use threeport_api::kinds;
use threeport_api::manifest::{Desired, Loaded, Ref};
pub use threeport_installers::kubeconfig::{Connection, read_kubeconfig};

/// A KubernetesRuntimeDefinition and Instance for the cluster, ready for `apply::apply`. For a
/// runtime that `exists`, only its connection (rotated credentials, a moved API server): its
/// definition, provider and `Location` (immutable) stay as they are, and connection fields the
/// kubeconfig does not give are cleared.
pub fn desired(name: &str, conn: &Connection, default: bool, source: &str, exists: bool) -> Loaded {
    let krd = kinds::KUBERNETES_RUNTIME_DEFINITION;
    let kri = kinds::KUBERNETES_RUNTIME_INSTANCE;
    let provider = if conn.context.starts_with("kind-") {
        "kind"
    } else {
        "external"
    };
    let mut def = Map::new();
    def.insert("Name".into(), json!(name));
    def.insert("InfraProvider".into(), json!(provider));
    let mut inst = Map::new();
    inst.insert("Name".into(), json!(name));
    if !exists {
        inst.insert("Location".into(), json!("Local"));
    }
    inst.insert("APIEndpoint".into(), json!(conn.server));
    for (field, value) in [
        ("CACertificate", &conn.ca_pem),
        ("Certificate", &conn.cert_pem),
        ("CertificateKey", &conn.key_pem),
        ("ConnectionToken", &conn.token),
    ] {
        match value {
            Some(v) => {
                inst.insert(field.into(), json!(v));
            }
            None if exists => {
                inst.insert(field.into(), serde_json::Value::Null);
            }
            None => {}
        }
    }
    if default {
        inst.insert("DefaultRuntime".into(), json!(true));
    }
    let mk = |kind, fields, refs| Desired {
        kind,
        name: name.to_string(),
        fields,
        refs,
        file: source.to_string(),
        line: 0,
        wants_default_runtime: false,
    };
    let def_ref = Ref {
        field: "KubernetesRuntimeDefinitionID",
        kind: krd,
        name: name.to_string(),
        line: 0,
    };
    let objects = if exists {
        vec![mk(kri, inst, vec![])]
    } else {
        vec![mk(krd, def, vec![]), mk(kri, inst, vec![def_ref])]
    };
    Loaded {
        objects,
        ..Default::default()
    }
}
