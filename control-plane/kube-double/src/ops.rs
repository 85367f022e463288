//! The verbs' semantics (create, replace, patch, apply, status writes, delete) on top of the
//! store, shared by the HTTP handlers and the simulated kubelet so both go through exactly the
//! same rules (resourceVersion, generation, managedFields, no-op detection, events).
//!
//! Every function runs with the store lock held, so a verb is atomic, like one etcd transaction.

use crate::apply::{self, ApplyRequest, Conflict, Scope};
use crate::discovery::{Registry, ResourceType, split_api_version};
use crate::errors::ApiError;
use crate::store::{Inner, meta_str, new_uid, now_rfc3339, random_suffix};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Who writes, and whether for real.
#[derive(Clone, Debug)]
pub struct WriteCtx {
    /// The field manager (`fieldManager` parameter, else the User-Agent's product name).
    pub manager: String,
    /// `dryRun=All`: compute and validate everything, store nothing.
    pub dry_run: bool,
}

impl WriteCtx {
    pub fn new(manager: &str) -> WriteCtx {
        WriteCtx {
            manager: manager.to_string(),
            dry_run: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PatchType {
    Merge,
    /// Treated as a JSON merge patch (directives stripped); see `apply::strip_directives`.
    Strategic,
    Json,
    Apply {
        force: bool,
    },
}

impl PatchType {
    pub fn from_content_type(ct: &str, force: bool) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        Some(match base {
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::Strategic,
            "application/json-patch+json" => PatchType::Json,
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                PatchType::Apply { force }
            }
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    /// `Orphan` keeps dependents; anything else deletes them (background cascade).
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn main_scope(rt: &ResourceType) -> Scope {
    Scope::Main {
        status_subresource: rt.status,
    }
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

/// An object as served under `rt`'s version (one stored object, several CRD versions: the
/// double converts by relabelling `apiVersion`, like a CRD with `conversion: None`).
pub fn present(rt: &ResourceType, obj: &Value) -> Value {
    let mut o = obj.clone();
    if o.get("apiVersion").and_then(Value::as_str) != Some(&rt.api_version()) {
        o["apiVersion"] = json!(rt.api_version());
    }
    o
}

pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    // JSON first (the common case); YAML is a superset for the apply and kubectl paths.
    serde_json::from_slice::<Value>(body)
        .or_else(|_| serde_yaml::from_slice::<Value>(body))
        .map_err(|e| ApiError::bad_request(format!("cannot decode the request body: {e}")))
}

fn check_type(rt: &ResourceType, obj: &Value, required: bool) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if required && (av.is_empty() || kind.is_empty()) {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply configuration",
        ));
    }
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the resource ({})",
            rt.kind
        )));
    }
    if !av.is_empty() && split_api_version(av).0 != rt.group {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    if rt.group == "rbac.authorization.k8s.io" {
        // RBAC objects only need to be valid path segments (`system:controller:foo`).
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) {
            return Err(ApiError::invalid(
                rt,
                name,
                &format!("metadata.name: Invalid value: \"{name}\": may not contain '/' or '%'"),
            ));
        }
        return Ok(());
    }
    let label = rt.group.is_empty() && (rt.kind == "Namespace" || rt.kind == "Service");
    let max = if label { 63 } else { 253 };
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars().all(|c| alnum(c) || c == '-')
            && p.starts_with(alnum)
            && p.ends_with(alnum)
    };
    let mut ok = !name.is_empty()
        && name.len() <= max
        && if label {
            part_ok(name)
        } else {
            name.split('.').all(part_ok)
        };
    if rt.kind == "Service" && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        ok = false;
    }
    if ok {
        return Ok(());
    }
    let what = if label { "label" } else { "subdomain" };
    Err(ApiError::invalid(
        rt,
        name,
        &format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 {what} must consist of lower case \
             alphanumeric characters, '-'{} and must start and end with an alphanumeric character",
            if label { "" } else { " or '.'" }
        ),
    ))
}

/// Namespaced writes need an existing namespace that is not being deleted.
fn check_namespace(inner: &Inner, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
    if !rt.namespaced {
        return Ok(());
    }
    match inner.namespace(ns) {
        None => Err(ApiError::namespace_not_found(ns)),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
            Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.group_resource()
            )))
        }
        Some(_) => Ok(()),
    }
}

fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Server-owned fields of a new object.
fn finish_new(rt: &ResourceType, ns: &str, name: &str, obj: &mut Value) {
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    let md = metadata_mut(obj);
    md.insert("name".into(), json!(name));
    if rt.namespaced {
        md.insert("namespace".into(), json!(ns));
    } else {
        md.remove("namespace");
    }
    md.insert("uid".into(), json!(new_uid()));
    md.insert("creationTimestamp".into(), json!(now_rfc3339()));
    md.insert("generation".into(), json!(1));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        md.remove(f);
    }
}

/// Server-side defaulting, limited to what controllers commonly read back.
fn defaults(inner: &mut Inner, rt: &ResourceType, old: Option<&Value>, obj: &mut Value) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = meta_str(obj, "name").to_string();
            let md = metadata_mut(obj);
            let labels = md.entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            labels["kubernetes.io/metadata.name"] = json!(name);
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
        }
        ("", "Secret")
            if obj
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty) =>
        {
            obj["type"] = json!("Opaque");
        }
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet")
            if obj.get("spec").is_some_and(Value::is_object)
                && obj["spec"].get("replicas").is_none() =>
        {
            obj["spec"]["replicas"] = json!(1);
        }
        ("", "Service") => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            if spec["type"] != "ExternalName" {
                let ip = spec
                    .get("clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if ip.is_empty() {
                    // ClusterIPs are immutable: keep the allocated one across updates.
                    let ip = match old
                        .and_then(|o| o.pointer("/spec/clusterIP"))
                        .and_then(Value::as_str)
                    {
                        Some(x) if !x.is_empty() => x.to_string(),
                        _ => {
                            inner.next_ip += 1;
                            format!("10.96.{}.{}", inner.next_ip / 250, inner.next_ip % 250 + 1)
                        }
                    };
                    spec["clusterIP"] = json!(ip);
                }
                if spec.get("clusterIPs").is_none() {
                    spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
                }
            }
        }
        _ => {}
    }
}

/// The status a new object of a type with a status subresource starts with.
fn initial_status(rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => obj["status"] = json!({"phase": "Active"}),
        ("", "Pod") => obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"}),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let now = now_rfc3339();
            let storage: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            obj["status"] = json!({
                "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(json!({})),
                "storedVersions": storage,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
        }
        _ => {}
    }
}

fn crd_register(
    inner: &mut Inner,
    rt: &ResourceType,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").to_string();
    let types = Registry::types_from_crd(obj).map_err(|m| ApiError::invalid(rt, &name, &m))?;
    for t in &types {
        if inner.registry.conflicts(&name, &t.group, &t.plural) {
            return Err(ApiError::invalid(
                rt,
                &name,
                &format!(
                    "spec.names.plural: Invalid value: \"{}\": already in use",
                    t.plural
                ),
            ));
        }
    }
    if !dry_run {
        inner.registry.set_crd_types(&name, types);
    }
    Ok(())
}

fn commit_new(
    inner: &mut Inner,
    rt: &ResourceType,
    obj: Value,
    ctx: &WriteCtx,
) -> Result<Value, ApiError> {
    if is_crd(rt) {
        crd_register(inner, rt, &obj, ctx.dry_run)?;
    }
    if ctx.dry_run {
        return Ok(obj);
    }
    Ok((*inner.put(&rt.key(), obj)).clone())
}

// ---------------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------------

pub fn create(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    body: Value,
    ctx: &WriteCtx,
) -> Result<Value, ApiError> {
    let mut obj = body;
    check_type(rt, &obj, false)?;
    let body_ns = meta_str(&obj, "namespace");
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let mut name = meta_str(&obj, "name").to_string();
    if name.is_empty() {
        let prefix = meta_str(&obj, "generateName").to_string();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                rt,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        // Like the real server: a random 5-character suffix, retried on collision.
        for _ in 0..16 {
            name = format!("{prefix}{}", random_suffix(5));
            if inner.get(&rt.key(), ns, &name).is_none() {
                break;
            }
        }
    }
    validate_name(rt, &name)?;
    check_namespace(inner, rt, ns, &name)?;
    if inner.get(&rt.key(), ns, &name).is_some() {
        return Err(ApiError::already_exists(rt, &name));
    }
    let md = metadata_mut(&mut obj);
    for f in ["managedFields", "uid", "creationTimestamp", "generation"] {
        md.remove(f);
    }
    if rt.status
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    finish_new(rt, ns, &name, &mut obj);
    apply::record_update(
        None,
        &mut obj,
        &ctx.manager,
        main_scope(rt),
        &rt.api_version(),
        &now_rfc3339(),
    );
    defaults(inner, rt, None, &mut obj);
    initial_status(rt, &mut obj);
    commit_new(inner, rt, obj, ctx)
}

// ---------------------------------------------------------------------------------------------
// Updates (PUT, PATCH, apply; main resource and /status)
// ---------------------------------------------------------------------------------------------

fn without_meta_and_status(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

/// Turn a client's version of `old` into the next stored version and commit it.
/// `manager` is the Update-operation manager (`None` when `new` already carries the
/// managedFields of a server-side apply).
fn finish_update(
    inner: &mut Inner,
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    scope: Scope,
    ctx: &WriteCtx,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    match scope {
        Scope::Status => {
            // A status write touches `.status` (and the status managedFields) only.
            let status = new.get("status").cloned();
            let managed = new.pointer("/metadata/managedFields").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
            if manager.is_none() {
                match managed {
                    Some(m) => new["metadata"]["managedFields"] = m,
                    None => {
                        metadata_mut(&mut new).remove("managedFields");
                    }
                }
            }
        }
        Scope::Main { status_subresource } => {
            if status_subresource {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|m| m.remove("status"));
                    }
                }
            }
        }
    }
    // Server-owned fields always come from the stored object.
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = json!(rt.kind);
    {
        let old_md = old["metadata"].as_object().cloned().unwrap_or_default();
        let md = metadata_mut(&mut new);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "selfLink",
            "generateName",
        ] {
            match old_md.get(f) {
                Some(v) => {
                    md.insert(f.into(), v.clone());
                }
                None => {
                    md.remove(f);
                }
            }
        }
    }
    let now = now_rfc3339();
    if let Some(m) = manager {
        apply::record_update(Some(old), &mut new, m, scope, &rt.api_version(), &now);
    }
    defaults(inner, rt, Some(old), &mut new);
    if without_meta_and_status(old) != without_meta_and_status(&new) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    commit_update(inner, rt, old, new, ctx)
}

fn commit_update(
    inner: &mut Inner,
    rt: &ResourceType,
    old: &Value,
    new: Value,
    ctx: &WriteCtx,
) -> Result<Value, ApiError> {
    // Writing back what is stored is not a write: no resourceVersion, no event.
    if new == *old {
        return Ok(new);
    }
    let ns = meta_str(old, "namespace").to_string();
    let name = meta_str(old, "name").to_string();
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers_left = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if deleting && !finalizers_left && !is_namespace(rt) {
        // The last finalizer is gone: the deletion completes now.
        if ctx.dry_run {
            return Ok(new);
        }
        return Ok(remove_now(inner, rt, &ns, &name, false).unwrap_or(new));
    }
    if is_crd(rt) {
        crd_register(inner, rt, &new, ctx.dry_run)?;
    }
    if ctx.dry_run {
        return Ok(new);
    }
    let stored = (*inner.put(&rt.key(), new)).clone();
    if is_namespace(rt) {
        maybe_finish_namespace(inner, &name);
    }
    Ok(stored)
}

fn get_or_404(inner: &Inner, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
    inner
        .get(&rt.key(), ns, name)
        .map(|o| (*o).clone())
        .ok_or_else(|| ApiError::not_found(rt, name))
}

fn check_name_matches(obj: &Value, name: &str) -> Result<(), ApiError> {
    let body_name = meta_str(obj, "name");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// PUT on the object (`status == false`) or its `/status`.
pub fn replace(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    body: Value,
    ctx: &WriteCtx,
    status: bool,
) -> Result<Value, ApiError> {
    check_type(rt, &body, false)?;
    check_name_matches(&body, name)?;
    let old = get_or_404(inner, rt, ns, name)?;
    let rv = meta_str(&body, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::stale(rt, name));
    }
    let scope = if status {
        Scope::Status
    } else {
        main_scope(rt)
    };
    finish_update(inner, rt, &old, body, scope, ctx, Some(&ctx.manager))
}

/// PATCH (any patch type) on the object or its `/status`. Returns (object, created).
#[allow(clippy::too_many_arguments)]
pub fn patch(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    ptype: PatchType,
    body: &[u8],
    ctx: &WriteCtx,
    status: bool,
) -> Result<(Value, bool), ApiError> {
    let scope = if status {
        Scope::Status
    } else {
        main_scope(rt)
    };
    if let PatchType::Apply { force } = ptype {
        return server_side_apply(inner, rt, ns, name, body, force, scope, ctx);
    }
    let old = get_or_404(inner, rt, ns, name)?;
    let mut p = parse_body(body)?;
    let mut new = old.clone();
    match ptype {
        PatchType::Merge => apply::merge_patch(&mut new, &p),
        PatchType::Strategic => {
            apply::strip_directives(&mut p);
            apply::merge_patch(&mut new, &p)
        }
        PatchType::Json => apply::json_patch(&mut new, &p).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("the JSON patch could not be applied: {e}"),
            )
        })?,
        PatchType::Apply { .. } => unreachable!("handled above"),
    }
    // A resourceVersion in the patch is a precondition, as on the real server.
    let rv = meta_str(&new, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::stale(rt, name));
    }
    Ok((
        finish_update(inner, rt, &old, new, scope, ctx, Some(&ctx.manager))?,
        false,
    ))
}

fn conflict_error(rt: &ResourceType, name: &str, conflicts: &[Conflict]) -> ApiError {
    let mut by_manager: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry((c.manager.clone(), c.api_version.clone()))
            .or_default()
            .push(apply::display_path(&c.path));
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|((m, v), paths)| {
            if paths.len() == 1 {
                format!("conflict with \"{m}\" using {v}: {}", paths[0])
            } else {
                let lines: String = paths.iter().map(|p| format!("\n- {p}")).collect();
                format!("conflicts with \"{m}\" using {v}:{lines}")
            }
        })
        .collect();
    let n = conflicts.len();
    let message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    );
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "type": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": apply::display_path(&c.path),
            })
        })
        .collect();
    ApiError {
        details: Some(
            json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
        ),
        ..ApiError::new(409, "Conflict", message)
    }
}

#[allow(clippy::too_many_arguments)]
fn server_side_apply(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    body: &[u8],
    force: bool,
    scope: Scope,
    ctx: &WriteCtx,
) -> Result<(Value, bool), ApiError> {
    if ctx.manager.is_empty() {
        return Err(ApiError::bad_request(
            "PATCH requests with the apply content type must specify a fieldManager",
        ));
    }
    let config = parse_body(body)?;
    check_type(rt, &config, true)?;
    check_name_matches(&config, name)?;
    let cfg_ns = meta_str(&config, "namespace");
    if rt.namespaced && !cfg_ns.is_empty() && cfg_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let live = inner.get(&rt.key(), ns, name).map(|o| (*o).clone());
    let rv = meta_str(&config, "resourceVersion");
    if !rv.is_empty()
        && live
            .as_ref()
            .is_none_or(|l| meta_str(l, "resourceVersion") != rv)
    {
        return Err(ApiError::stale(rt, name));
    }
    let now = now_rfc3339();
    let api_version = rt.api_version();
    let req = |live| ApplyRequest {
        live,
        config: &config,
        manager: &ctx.manager,
        force,
        scope,
        api_version: &api_version,
        now: &now,
    };
    match live {
        None => {
            if scope == Scope::Status {
                return Err(ApiError::not_found(rt, name));
            }
            // Apply creates a missing object.
            validate_name(rt, name)?;
            check_namespace(inner, rt, ns, name)?;
            let mut obj =
                apply::server_side_apply(req(None)).map_err(|c| conflict_error(rt, name, &c))?;
            if rt.status {
                obj.as_object_mut().map(|m| m.remove("status"));
            }
            finish_new(rt, ns, name, &mut obj);
            defaults(inner, rt, None, &mut obj);
            initial_status(rt, &mut obj);
            Ok((commit_new(inner, rt, obj, ctx)?, true))
        }
        Some(old) => {
            let new = apply::server_side_apply(req(Some(&old)))
                .map_err(|c| conflict_error(rt, name, &c))?;
            Ok((
                finish_update(inner, rt, &old, new, scope, ctx, None)?,
                false,
            ))
        }
    }
}

/// Replace `.status` (what the simulated controllers use).
pub fn set_status(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    status: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    replace(
        inner,
        rt,
        ns,
        name,
        json!({"status": status}),
        &WriteCtx::new(manager),
        true,
    )
}

// ---------------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------------

pub fn delete(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Value, ApiError> {
    let old = get_or_404(inner, rt, ns, name)?;
    if let Some(uid) = &opts.precondition_uid
        && uid != meta_str(&old, "uid")
    {
        return Err(ApiError::conflict(
            rt,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&old, "uid")
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && rv != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::conflict(
            rt,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&old, "resourceVersion")
            ),
        ));
    }
    if opts.dry_run {
        return Ok(old);
    }
    if is_namespace(rt) {
        return delete_namespace(inner, rt, name, old);
    }
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_finalizers {
        // Graceful deletion: mark it and let whoever owns the finalizers finish the job.
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
        return Ok((*inner.put(&rt.key(), new)).clone());
    }
    let orphan = opts.propagation.as_deref() == Some("Orphan");
    remove_now(inner, rt, ns, name, orphan).ok_or_else(|| ApiError::not_found(rt, name))
}

/// Remove an object for good, then what depends on it: a CRD's custom resources, owned
/// objects (garbage collection by `ownerReferences`), a terminating namespace left empty.
fn remove_now(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    orphan: bool,
) -> Option<Value> {
    let removed = (*inner.remove(&rt.key(), ns, name)?).clone();
    if is_crd(rt) {
        let keys: Vec<_> = inner
            .registry
            .all()
            .iter()
            .filter(|t| t.crd.as_deref() == Some(name))
            .map(|t| t.key())
            .collect();
        inner.registry.set_crd_types(name, vec![]);
        for key in keys {
            for o in inner.list(&key, None) {
                inner.remove(&key, meta_str(&o, "namespace"), meta_str(&o, "name"));
            }
        }
    }
    if !orphan {
        let uid = meta_str(&removed, "uid").to_string();
        collect_garbage(inner, &uid);
    }
    if rt.namespaced {
        maybe_finish_namespace(inner, ns);
    }
    Some(removed)
}

fn collect_garbage(inner: &mut Inner, owner_uid: &str) {
    if owner_uid.is_empty() {
        return;
    }
    let mut dependents = Vec::new();
    for key in inner.keys() {
        for o in inner.list(&key, None) {
            let owned = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
                });
            if owned {
                dependents.push((
                    key.clone(),
                    meta_str(&o, "namespace").to_string(),
                    meta_str(&o, "name").to_string(),
                ));
            }
        }
    }
    for (key, ns, name) in dependents {
        if let Some(rt) = inner.registry.find_key(&key).cloned() {
            let _ = delete(inner, &rt, &ns, &name, &DeleteOpts::default());
        }
    }
}

/// Namespace deletion, as the API server does it: the namespace is marked (`deletionTimestamp`,
/// `status.phase: Terminating`) and nothing else happens here. The namespace controller
/// stand-in (`controllers::namespaces`) deletes its content and then removes the `kubernetes`
/// entry of `spec.finalizers`; the namespace goes when both finalizer lists are empty and it
/// holds nothing.
fn delete_namespace(
    inner: &mut Inner,
    rt: &ResourceType,
    name: &str,
    old: Value,
) -> Result<Value, ApiError> {
    if ["default", "kube-system", "kube-public"].contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(old);
    }
    let mut term = old.clone();
    term["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    term["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    term["status"] = json!({"phase": "Terminating"});
    let term = (*inner.put(&rt.key(), term)).clone();
    maybe_finish_namespace(inner, name);
    Ok(inner.namespace(name).map(|n| (*n).clone()).unwrap_or(term))
}

fn maybe_finish_namespace(inner: &mut Inner, ns: &str) {
    let Some(n) = inner.namespace(ns) else { return };
    let terminating = n.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers = ["/metadata/finalizers", "/spec/finalizers"]
        .iter()
        .any(|p| {
            n.pointer(p)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
    if terminating && !finalizers && !inner.namespace_has_objects(ns) {
        inner.remove(&crate::discovery::ResKey::new("", "namespaces"), "", ns);
    }
}
