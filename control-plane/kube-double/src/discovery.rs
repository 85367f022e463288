//! The resource registry and the discovery documents built from it.
//!
//! Clients never hard-code URLs: kube-rs `Discovery`, kubectl and `kube::runtime` all resolve a
//! kind to a plural resource name, a scope and a set of verbs through `/api`, `/apis` and the
//! per group/version resource lists. So the registry is the single source of truth for routing
//! (which paths exist, cluster- or namespace-scoped, whether `/status` is a subresource) *and*
//! for what discovery advertises; the two can never disagree.
//!
//! Built-in types are a fixed table; CustomResourceDefinitions add types at run time
//! (`Registry::register_crd`) exactly when the CRD object is written, like the real
//! apiextensions server (minus the short "NamesAccepted" delay).

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The stable identity of a stored resource: objects are stored per group + plural, not per
/// version, because every served version of a CRD is a view of the same objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResKey {
    pub group: String,
    pub plural: String,
}

impl ResKey {
    pub fn new(group: &str, plural: &str) -> ResKey {
        ResKey {
            group: group.to_string(),
            plural: plural.to_string(),
        }
    }
}

/// One servable group/version/resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: normal writes then ignore `.status`, and `/status` writes
    /// touch nothing else (the contract controllers rely on to not clobber each other).
    pub status: bool,
    /// Has a `/scale` subresource (`autoscaling/v1` Scale; built-in workloads only).
    pub scale: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Defined by a CustomResourceDefinition (the CRD's `metadata.name`).
    pub crd: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn key(&self) -> ResKey {
        ResKey::new(&self.group, &self.plural)
    }

    /// `deployments.apps`, `configmaps`: how the real server names a resource in messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`: how the real server names a kind in validation messages.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// Verbs advertised for every main resource. All of them are implemented.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of a `/status` subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

// (group, version, kind, plural, namespaced, status subresource, short names, categories)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        true,
        &["ns"],
        &[],
    ),
    ("", "v1", "Node", "nodes", false, true, &["no"], &[]),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        false,
        &["cm"],
        &[],
    ),
    ("", "v1", "Secret", "secrets", true, false, &[], &[]),
    (
        "",
        "v1",
        "Service",
        "services",
        true,
        true,
        &["svc"],
        &["all"],
    ),
    ("", "v1", "Pod", "pods", true, true, &["po"], &["all"]),
    ("", "v1", "Event", "events", true, false, &["ev"], &[]),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        &["sa"],
        &[],
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        true,
        &["pvc"],
        &[],
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        &["deploy"],
        &["all"],
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        true,
        &["sts"],
        &["all"],
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        true,
        &["ds"],
        &["all"],
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        true,
        &["rs"],
        &["all"],
    ),
    ("batch", "v1", "Job", "jobs", true, true, &[], &["all"]),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        true,
        &["cj"],
        &["all"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        true,
        &["ing"],
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        &["netpol"],
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        false,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        &[],
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        &["crd", "crds"],
        &[],
    ),
    // events.k8s.io: kube-runtime's event `Recorder` writes here.
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        &["ev"],
        &[],
    ),
    // Leases: kube-runtime leader election and client-go controllers take them.
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        &[],
        &[],
    ),
];

/// The version priority order Kubernetes uses to pick a group's preferred version:
/// GA before beta before alpha, higher numbers first, anything else last (alphabetically).
fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (i, pre) in ["beta", "alpha"].iter().enumerate() {
            if let Some(n) = tail.strip_prefix(pre) {
                let minor: i64 = if n.is_empty() { 0 } else { n.parse().ok()? };
                return Some((i as u8 + 1, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((c, a, b)) => (c, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    pub fn builtin() -> Registry {
        let types = BUILTINS
            .iter()
            .map(|&(g, v, k, p, ns, st, short, cat)| ResourceType {
                group: g.into(),
                version: v.into(),
                kind: k.into(),
                plural: p.into(),
                singular: k.to_lowercase(),
                namespaced: ns,
                status: st,
                scale: g == "apps" && matches!(k, "Deployment" | "StatefulSet" | "ReplicaSet"),
                short_names: short.iter().map(|s| s.to_string()).collect(),
                categories: cat.iter().map(|s| s.to_string()).collect(),
                crd: None,
            })
            .collect();
        Registry { types }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Any served version of a stored resource (used for keys that come from storage).
    pub fn find_key(&self, key: &ResKey) -> Option<&ResourceType> {
        self.preferred(&key.group)
            .and_then(|v| self.find(&key.group, &v, &key.plural))
            .or_else(|| {
                self.types
                    .iter()
                    .find(|t| t.group == key.group && t.plural == key.plural)
            })
    }

    /// Groups other than core, in registration order (built-ins first, then CRD groups).
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.types {
            if !t.group.is_empty() && !out.contains(&t.group) {
                out.push(t.group.clone());
            }
        }
        out
    }

    /// Served versions of a group, preferred first.
    pub fn versions(&self, group: &str) -> Vec<String> {
        let mut vs: Vec<String> = Vec::new();
        for t in self.types.iter().filter(|t| t.group == group) {
            if !vs.contains(&t.version) {
                vs.push(t.version.clone());
            }
        }
        vs.sort_by_key(|v| version_priority(v));
        vs
    }

    pub fn preferred(&self, group: &str) -> Option<String> {
        self.versions(group).into_iter().next()
    }

    pub fn resources(&self, group: &str, version: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect()
    }

    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }

    /// Read a CRD object into resource types. Errors are validation messages (422).
    pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let group = s("/spec/group");
        let plural = s("/spec/names/plural");
        let kind = s("/spec/names/kind");
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return Err("spec.group, spec.names.plural and spec.names.kind are required".into());
        }
        // The real server insists on this; a typo here would break a real cluster, so the
        // double must reject it too.
        if name != format!("{plural}.{group}") {
            return Err(format!(
                "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            ));
        }
        let singular = match s("/spec/names/singular") {
            "" => kind.to_lowercase(),
            x => x.to_string(),
        };
        let namespaced = match s("/spec/scope") {
            "Namespaced" => true,
            "Cluster" => false,
            other => {
                return Err(format!(
                    "spec.scope: Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
                ));
            }
        };
        let strings = |p: &str| -> Vec<String> {
            crd.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if versions.is_empty() {
            return Err("spec.versions: Required value: must have exactly one version marked as storage version".into());
        }
        let mut out = Vec::new();
        for v in versions {
            let vname = v.get("name").and_then(Value::as_str).unwrap_or_default();
            if vname.is_empty() {
                return Err("spec.versions[].name: Required value".into());
            }
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            out.push(ResourceType {
                group: group.into(),
                version: vname.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: singular.clone(),
                namespaced,
                status: v.pointer("/subresources/status").is_some(),
                scale: false,
                short_names: strings("/spec/names/shortNames"),
                categories: strings("/spec/names/categories"),
                crd: Some(name.to_string()),
            });
        }
        Ok(out)
    }

    /// Replace whatever the CRD named `crd_name` registered before with `types`.
    pub fn set_crd_types(&mut self, crd_name: &str, types: Vec<ResourceType>) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd_name));
        self.types.extend(types);
    }

    /// Whether a CRD may claim this group/plural (not a built-in, not another CRD's).
    pub fn conflicts(&self, crd_name: &str, group: &str, plural: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.group == group && t.plural == plural && t.crd.as_deref() != Some(crd_name))
    }
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery documents
// ---------------------------------------------------------------------------------------------

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-kube-double",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_versions(reg: &Registry, group: &str) -> Value {
    let versions: Vec<Value> = reg
        .versions(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .map(|g| group_versions(reg, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    if !reg.groups().iter().any(|g| g == group) {
        return None;
    }
    let mut g = group_versions(reg, group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `APIResourceList` for one group/version, with `x/status` entries as the real server lists them.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.resources(group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
            "shortNames": t.short_names,
            "categories": t.categories,
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": STATUS_VERBS,
            }));
        }
        if t.scale {
            resources.push(json!({
                "name": format!("{}/scale", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": STATUS_VERBS,
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// The media type clients ask for when they want aggregated discovery (kubectl ≥ 1.26 and
/// `Discovery::run_aggregated`); the response must carry it back as its Content-Type, or
/// client-go falls back to the legacy documents.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn wants_aggregated(accept: &str) -> bool {
    // Honour the client's first choice only: a plain `application/json` first means legacy.
    accept
        .split(',')
        .next()
        .map(|first| first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2"))
        .unwrap_or(false)
}

/// `APIGroupDiscoveryList` for `/api` (core only) or `/apis` (every other group).
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let groups: Vec<String> = if core {
        vec![String::new()]
    } else {
        reg.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let versions: Vec<Value> = reg
                .versions(g)
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .resources(g, v)
                        .iter()
                        .map(|t| {
                            let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
                            let mut subresources: Vec<Value> = Vec::new();
                            if t.status {
                                subresources.push(json!({"subresource": "status", "responseKind": gvk, "verbs": STATUS_VERBS}));
                            }
                            if t.scale {
                                subresources.push(json!({"subresource": "scale",
                                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                                    "verbs": STATUS_VERBS}));
                            }
                            json!({
                                "resource": t.plural,
                                "responseKind": gvk,
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular,
                                "verbs": VERBS,
                                "shortNames": t.short_names,
                                "categories": t.categories,
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

// ---------------------------------------------------------------------------------------------
// OpenAPI v3 (just enough for kubectl)
// ---------------------------------------------------------------------------------------------
//
// kubectl (`apply`, `create`, `replace`) validates with `--validate=strict` by default. It first
// asks the server whether it supports server-side field validation by looking, in the OpenAPI v3
// document of the object's group/version, for a PATCH operation tagged with the object's GVK that
// accepts the `fieldValidation` query parameter. If it cannot find that, it falls back to
// client-side validation against `/openapi/v2`, which fails with "failed to download openapi".
// So each group/version document carries one PATCH path per kind with that parameter, and no
// schemas (the double does not validate fields anyway).

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn stable_hash(v: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = BTreeMap::new();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for g in reg.groups() {
        for v in reg.versions(&g) {
            gvs.push((g.clone(), v));
        }
    }
    for (g, v) in gvs {
        let doc = openapi_v3_gv(reg, &g, &v).unwrap_or(Value::Null);
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", stable_hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

pub fn openapi_v3_gv(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.resources(group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "force", "in": "query", "schema": {"type": "boolean"}},
    ]);
    for t in types {
        let base = format!("/{}", gv_path(group, version));
        let path = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patch{}", t.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                }
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-double)", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority_orders_like_kubernetes() {
        let mut v = vec![
            "v1alpha1", "v1beta1", "v2", "v1", "v2beta3", "foo", "v1beta2",
        ];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(
            v,
            [
                "v2", "v1", "v2beta3", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    #[test]
    fn crd_registration_and_name_check() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                                  {"name": "v1alpha1", "served": false, "storage": false}]}
        });
        let types = Registry::types_from_crd(&crd).unwrap();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].singular, "widget");
        assert!(types[0].status && types[0].namespaced);
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("widget.example.com");
        assert!(Registry::types_from_crd(&bad).is_err());
    }

    #[test]
    fn every_status_type_is_listed_as_subresource() {
        let reg = Registry::builtin();
        let list = resource_list(&reg, "apps", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments") && names.contains(&"deployments/status"));
    }
}
