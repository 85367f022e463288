//! CustomResourceDefinitions of the add-ons the double simulates, for tests to apply as they
//! would on a real cluster (the double never registers them by itself: an add-on only acts
//! once its CRDs exist, so a test can also show what happens without them).
//!
//! Each manifest is multi-document YAML with upstream's names, plurals, short names,
//! categories, scopes, served versions and status subresources; the schemas accept anything
//! (`x-kubernetes-preserve-unknown-fields`), which is all the double reads of them.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> anyhow::Result<()> {
//! # use kube::api::{Api, Patch, PatchParams};
//! # use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
//! let crds: Api<CustomResourceDefinition> = Api::all(client);
//! for doc in kube_api_double::crds::documents(kube_api_double::crds::GATEWAY_API)? {
//!     let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
//!     let name = crd.metadata.name.clone().unwrap_or_default();
//!     crds.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&crd)).await?;
//! }
//! # Ok(()) }
//! ```

use serde::Deserialize;

/// Gateway API (`gateway.networking.k8s.io`): GatewayClass (cluster-scoped, v1 and v1beta1),
/// Gateway and HTTPRoute (v1 and v1beta1), TCPRoute (v1alpha2), ReferenceGrant (v1beta1 and the
/// deprecated v1alpha2).
pub const GATEWAY_API: &str = include_str!("../crds/gateway-api.yaml");

/// cert-manager (`cert-manager.io`, v1): Certificate, CertificateRequest, Issuer and
/// ClusterIssuer (cluster-scoped).
pub const CERT_MANAGER: &str = include_str!("../crds/cert-manager.yaml");

/// The documents of a multi-document YAML manifest, as JSON values (empty documents skipped).
pub fn documents(manifest: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let v = serde_json::Value::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Registry;

    #[test]
    fn the_manifests_define_the_add_on_kinds() {
        let mut kinds = Vec::new();
        for manifest in [GATEWAY_API, CERT_MANAGER] {
            for crd in documents(manifest).unwrap() {
                for t in Registry::types_from_crd(&crd).unwrap() {
                    kinds.push((t.kind, t.version, t.namespaced, t.status));
                }
            }
        }
        for want in [
            ("GatewayClass", "v1", false, true),
            ("Gateway", "v1", true, true),
            ("HTTPRoute", "v1", true, true),
            ("TCPRoute", "v1alpha2", true, true),
            ("ReferenceGrant", "v1beta1", true, false),
            ("Certificate", "v1", true, true),
            ("CertificateRequest", "v1", true, true),
            ("Issuer", "v1", true, true),
            ("ClusterIssuer", "v1", false, true),
        ] {
            assert!(
                kinds.contains(&(want.0.into(), want.1.into(), want.2, want.3)),
                "{want:?} in {kinds:?}"
            );
        }
    }
}
