//! Patches, field ownership (`metadata.managedFields`) and server-side apply.
//!
//! # The ownership model (simplified, deliberately)
//!
//! The real server tracks ownership with structured-merge-diff, which knows every type's schema
//! (associative lists keyed by `name`, atomic maps, ...). The double has no schemas, so it uses
//! a model that is simple to predict and still catches the bugs that matter (two managers
//! fighting over a field, a manager forgetting `force`):
//!
//! * A **field path** is a list of object keys from the root to a *leaf*. A leaf is a scalar, a
//!   list or an empty object. **Lists are atomic**: whoever sets a list owns all of it (the real
//!   server merges `containers`, `env`, `ports`... by key; here two managers contributing items
//!   to one list conflict instead).
//! * Tracked fields: everything except `apiVersion`, `kind` and server-owned metadata; in
//!   `metadata` only `labels`, `annotations`, `finalizers` and `ownerReferences`. For types
//!   with a `/status` subresource, the main resource and `status` are separate scopes (entries
//!   with `subresource: status`), so a controller writing status never conflicts with the
//!   owner of the spec.
//! * Each `managedFields` entry is (manager, operation, subresource) with its field set, encoded
//!   as `FieldsV1` (`{"f:spec":{"f:replicas":{}}}`, no `.` or `k:` entries).
//! * **Apply** by manager M with config C: for every path p of C and every path q owned by a
//!   *different* entry, p and q conflict when one is a prefix of the other (or equal) and the
//!   live value differs from C's. Conflicts fail with 409 unless `force=true`, which moves the
//!   contested fields to M. Fields M applied before but left out of C are removed from the
//!   object unless another entry also owns them. Then C is merged into the live object (maps
//!   merge key by key, lists and scalars replace), and M's Apply entry owns exactly C's paths.
//!   Another manager that owns a path with the same value keeps co-ownership.
//! * **Update** (POST, PUT, merge/JSON patch) by manager U: U's Update entry gains every path
//!   whose value changed; those paths (and their prefixes/descendants) are taken away from every
//!   other entry, without conflicts, like the real server.
//! * After every write, paths that no longer exist (or stopped being leaves) are dropped from
//!   every entry, and empty entries are removed. Entries whose field set did not change keep
//!   their timestamp, so an identical re-apply is a true no-op (no new resourceVersion, no watch
//!   event) — controllers that apply on every reconcile depend on that.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The main resource. With `status_subresource`, `.status` is outside it.
    Main { status_subresource: bool },
    /// The `/status` subresource: only `.status`.
    Status,
}

const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

impl Scope {
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            Scope::Main { .. } => None,
        }
    }

    fn tracks_top(self, key: &str) -> bool {
        match self {
            Scope::Main { status_subresource } => {
                key != "apiVersion" && key != "kind" && !(status_subresource && key == "status")
            }
            Scope::Status => key == "status",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                path.push(k.clone());
                walk(c, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The part of `obj` a scope manages (same filter as `leaf_paths`).
pub fn restrict(obj: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if !scope.tracks_top(k) {
                continue;
            }
            if k == "metadata" {
                let mut md = Map::new();
                for mk in TRACKED_METADATA {
                    if let Some(x) = v.get(*mk) {
                        md.insert(mk.to_string(), x.clone());
                    }
                }
                if !md.is_empty() {
                    out.insert(k.clone(), Value::Object(md));
                }
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Leaf paths of the tracked part of `obj`.
pub fn leaf_paths(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let r = restrict(obj, scope);
    let mut path = Vec::new();
    if let Some(m) = r.as_object() {
        for (k, v) in m {
            path.push(k.clone());
            walk(v, &mut path, &mut out);
            path.pop();
        }
    }
    out
}

pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

/// Remove the field at `path`, then the maps it leaves empty (but never a top-level section).
pub fn remove_path(v: &mut Value, path: &[String]) {
    fn rec(v: &mut Value, path: &[String], depth: usize) {
        let Some(m) = v.as_object_mut() else { return };
        if path.len() == 1 {
            m.remove(&path[0]);
            return;
        }
        if let Some(child) = m.get_mut(&path[0]) {
            rec(child, &path[1..], depth + 1);
            if depth >= 1 && child.as_object().is_some_and(|c| c.is_empty()) {
                m.remove(&path[0]);
            }
        }
    }
    if !path.is_empty() {
        rec(v, path, 0);
    }
}

fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub fn display_path(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

// ---------------------------------------------------------------------------------------------
// managedFields
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

fn fields_to_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn fields_from_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        let mut leaf = true;
        for (k, c) in m {
            if let Some(seg) = k.strip_prefix("f:") {
                leaf = false;
                path.push(seg.to_string());
                rec(c, path, out);
                path.pop();
            }
        }
        // `k:`/`v:` entries (list items, written by a real server) own the list as a whole here.
        if leaf && !path.is_empty() {
            out.insert(path.clone());
        }
    }
    let mut out = FieldSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(arr) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    arr.iter()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Managed {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .filter(|x| !x.is_empty())
                    .map(String::from),
                fields: e.get("fieldsV1").map(fields_from_v1).unwrap_or_default(),
            }
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        md.remove("managedFields");
        return;
    }
    let arr: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_to_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    md.insert("managedFields".into(), Value::Array(arr));
}

/// Drop paths that no longer exist (or are no longer leaves) and entries left empty.
fn prune(obj: &Value, entries: &mut Vec<Managed>, now: &str) {
    for e in entries.iter_mut() {
        let before = e.fields.len();
        e.fields.retain(|q| match get_path(obj, q) {
            None | Some(Value::Null) => false,
            Some(Value::Object(m)) => m.is_empty(),
            Some(_) => true,
        });
        if e.fields.len() != before {
            e.time = now.to_string();
        }
    }
    entries.retain(|e| !e.fields.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Patches
// ---------------------------------------------------------------------------------------------

/// RFC 7386 JSON merge patch. Also used to merge an apply configuration into the live object:
/// the semantics are the same (maps merge, everything else replaces, `null` deletes).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(pm) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let tm = target.as_object_mut().expect("just made an object");
            for (k, pv) in pm {
                if pv.is_null() {
                    tm.remove(k);
                } else {
                    merge_patch(tm.entry(k.clone()).or_insert(Value::Null), pv);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Strategic merge patch is treated as a JSON merge patch; its `$patch`, `$retainKeys`,
/// `$setElementOrder/...` and `$deleteFromPrimitiveList/...` directives are dropped so they never
/// end up stored as fields.
pub fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn pointer_segments(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {p:?}"))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(doc: &'a mut Value, segs: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for s in &segs[..segs.len() - 1] {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(s)
                .ok_or_else(|| format!("path {s:?} not found"))?,
            Value::Array(a) => {
                let i: usize = s.parse().map_err(|_| format!("invalid index {s:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("index {i} out of range"))?
            }
            _ => return Err(format!("cannot traverse into {s:?}")),
        };
    }
    Ok(cur)
}

fn jp_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segs = pointer_segments(path)?;
    if segs.is_empty() {
        *doc = value;
        return Ok(());
    }
    let last = segs.last().expect("non-empty").clone();
    match parent_mut(doc, &segs)? {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid index {last:?}"))?;
                if i > a.len() {
                    return Err(format!("index {i} out of range"));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(format!("cannot add at {path:?}")),
    }
    Ok(())
}

fn jp_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let segs = pointer_segments(path)?;
    let last = segs.last().ok_or("cannot remove the root")?.clone();
    match parent_mut(doc, &segs)? {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("path {path:?} not found")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("path {path:?} not found")),
    }
}

/// RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let s = |k: &str| op.get(k).and_then(Value::as_str);
        let path = s("path").ok_or("operation without path")?;
        let value = || op.get("value").cloned().ok_or("operation without value");
        match s("op").unwrap_or_default() {
            "add" => jp_add(doc, path, value()?)?,
            "remove" => {
                jp_remove(doc, path)?;
            }
            "replace" => {
                jp_remove(doc, path)?;
                jp_add(doc, path, value()?)?;
            }
            "move" => {
                let v = jp_remove(doc, s("from").ok_or("move without from")?)?;
                jp_add(doc, path, v)?;
            }
            "copy" => {
                let from = s("from").ok_or("copy without from")?;
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("path {from:?} not found"))?;
                jp_add(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server-side apply and update ownership
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: FieldPath,
}

/// Whether applying `cfg`'s path `p` would take field `q` (owned by someone else) away.
fn conflicts_with(live: &Value, cfg: &Value, p: &FieldPath, q: &FieldPath) -> bool {
    if p == q {
        get_path(live, p) != get_path(cfg, p)
    } else if q.starts_with(p) {
        // Applying a leaf above someone else's field replaces it, unless the leaf is an empty
        // map (merging `{}` changes nothing).
        match get_path(cfg, p) {
            Some(Value::Object(m)) if m.is_empty() => false,
            c => get_path(live, p) != c,
        }
    } else if p.starts_with(q) {
        // Setting a field below someone else's scalar/list turns it into a map.
        matches!(get_path(live, q), Some(v) if !v.is_object())
    } else {
        false
    }
}

pub struct ApplyRequest<'a> {
    pub live: Option<&'a Value>,
    pub config: &'a Value,
    pub manager: &'a str,
    pub force: bool,
    pub scope: Scope,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Server-side apply. Returns the merged object with updated `managedFields` (server-owned
/// metadata such as name or uid is the caller's business), or the conflicts.
pub fn server_side_apply(req: ApplyRequest<'_>) -> Result<Value, Vec<Conflict>> {
    let ApplyRequest {
        live,
        config,
        manager,
        force,
        scope,
        api_version,
        now,
    } = req;
    let base = live.cloned().unwrap_or_else(|| json!({"metadata": {}}));
    let cfg = restrict(config, scope);
    let applied = leaf_paths(&cfg, scope);
    let mut entries = read_managed(&base);
    let sub = scope.subresource().map(String::from);
    let in_scope = |e: &Managed| e.subresource == sub;
    let is_me =
        |e: &Managed| e.manager == manager && e.operation == "Apply" && e.subresource == sub;

    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| in_scope(e) && !is_me(e)) {
        for q in &e.fields {
            if applied.iter().any(|p| conflicts_with(&base, &cfg, p, q)) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: q.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflicts);
        }
        for e in entries.iter_mut().filter(|e| in_scope(e) && !is_me(e)) {
            let before = e.fields.len();
            e.fields
                .retain(|q| !applied.iter().any(|p| conflicts_with(&base, &cfg, p, q)));
            if e.fields.len() != before {
                e.time = now.to_string();
            }
        }
    }

    let prev: FieldSet = entries
        .iter()
        .find(|e| is_me(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: Vec<&FieldPath> = entries
        .iter()
        .filter(|e| in_scope(e) && !is_me(e))
        .flat_map(|e| e.fields.iter())
        .collect();
    let mut new = base.clone();
    for p in prev.difference(&applied) {
        let shared = others.iter().any(|q| related(p, q));
        let reapplied = applied.iter().any(|a| related(a, p));
        if !shared && !reapplied {
            remove_path(&mut new, p);
        }
    }
    merge_patch(&mut new, &cfg);

    match entries.iter_mut().find(|e| is_me(e)) {
        Some(e) => {
            if e.fields != applied || e.api_version != api_version {
                e.fields = applied;
                e.api_version = api_version.to_string();
                e.time = now.to_string();
            }
        }
        None => entries.push(Managed {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: sub.clone(),
            fields: applied,
        }),
    }
    prune(&new, &mut entries, now);
    write_managed(&mut new, &entries);
    Ok(new)
}

/// Record an Update-operation write of `new` (previously `old`) by `manager` into
/// `new.metadata.managedFields` (which is rebuilt from `old`; what the client sent is ignored).
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    api_version: &str,
    now: &str,
) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let sub = scope.subresource().map(String::from);
    let changed: FieldSet = leaf_paths(new, scope)
        .into_iter()
        .filter(|p| old.and_then(|o| get_path(o, p)) != get_path(new, p))
        .collect();
    if !changed.is_empty() {
        let is_me =
            |e: &Managed| e.manager == manager && e.operation == "Update" && e.subresource == sub;
        for e in entries
            .iter_mut()
            .filter(|e| e.subresource == sub && !is_me(e))
        {
            let before = e.fields.len();
            e.fields.retain(|q| !changed.iter().any(|p| related(p, q)));
            if e.fields.len() != before {
                e.time = now.to_string();
            }
        }
        match entries.iter_mut().find(|e| is_me(e)) {
            Some(e) => {
                e.fields.extend(changed);
                e.api_version = api_version.to_string();
                e.time = now.to_string();
            }
            None => entries.push(Managed {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: sub,
                fields: changed,
            }),
        }
    }
    prune(new, &mut entries, now);
    write_managed(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Scope = Scope::Main {
        status_subresource: true,
    };

    fn apply(
        live: Option<&Value>,
        cfg: Value,
        mgr: &str,
        force: bool,
    ) -> Result<Value, Vec<Conflict>> {
        server_side_apply(ApplyRequest {
            live,
            config: &cfg,
            manager: mgr,
            force,
            scope: MAIN,
            api_version: "apps/v1",
            now: "2026-01-01T00:00:00Z",
        })
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3], "n": {"x": null, "y": 1}}));
        assert_eq!(t, json!({"a": [3], "n": {"y": 1}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": {"b": [1, 2]}});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/a/b/0", "value": 0},
                {"op": "copy", "from": "/a/b", "path": "/c"},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "test", "path": "/c/2", "value": 3},
            ]),
        )
        .unwrap();
        assert_eq!(d, json!({"a": {"b": [0, 3]}, "c": [0, 2, 3]}));
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/c/0", "value": 9}])).is_err());
    }

    #[test]
    fn fields_v1_round_trip() {
        let set: FieldSet = [
            vec!["spec".to_string(), "replicas".to_string()],
            vec![
                "metadata".to_string(),
                "labels".to_string(),
                "app".to_string(),
            ],
        ]
        .into_iter()
        .collect();
        let v = fields_to_v1(&set);
        assert_eq!(v["f:spec"]["f:replicas"], json!({}));
        assert_eq!(fields_from_v1(&v), set);
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let a = apply(
            None,
            json!({"metadata": {"labels": {"x": "1"}}, "spec": {"replicas": 1, "paused": false}}),
            "a",
            false,
        )
        .unwrap();
        // Same value: co-ownership, no conflict.
        let b = apply(Some(&a), json!({"spec": {"replicas": 1}}), "b", false).unwrap();
        // Different value: conflict without force.
        let err = apply(Some(&b), json!({"spec": {"replicas": 3}}), "b", false).unwrap_err();
        assert_eq!(err[0].manager, "a");
        assert_eq!(display_path(&err[0].path), ".spec.replicas");
        let forced = apply(Some(&b), json!({"spec": {"replicas": 3}}), "b", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = read_managed(&forced);
        let a_fields = &entries.iter().find(|e| e.manager == "a").unwrap().fields;
        assert!(!a_fields.contains(&vec!["spec".to_string(), "replicas".to_string()]));
        // "a" drops its label: removed, since nobody else owns it.
        let after = apply(
            Some(&forced),
            json!({"spec": {"paused": false}}),
            "a",
            false,
        )
        .unwrap();
        assert!(after.pointer("/metadata/labels").is_none(), "{after}");
        assert_eq!(after["spec"]["replicas"], 3);
        // An identical re-apply changes nothing at all (timestamps included).
        let again = server_side_apply(ApplyRequest {
            live: Some(&after),
            config: &json!({"spec": {"paused": false}}),
            manager: "a",
            force: false,
            scope: MAIN,
            api_version: "apps/v1",
            now: "2030-01-01T00:00:00Z",
        })
        .unwrap();
        assert_eq!(again, after);
    }

    #[test]
    fn status_is_a_separate_scope() {
        let a = apply(
            None,
            json!({"spec": {"replicas": 1}, "status": {"ready": 1}}),
            "a",
            false,
        )
        .unwrap();
        assert!(a.get("status").is_none());
        let mut s = a.clone();
        s["status"] = json!({"readyReplicas": 1});
        record_update(Some(&a), &mut s, "kcm", Scope::Status, "apps/v1", "t");
        let entries = read_managed(&s);
        assert!(
            entries
                .iter()
                .any(|e| e.manager == "kcm" && e.subresource.as_deref() == Some("status"))
        );
        // Applying spec again does not conflict with the status manager.
        apply(Some(&s), json!({"spec": {"replicas": 2}}), "a", false).unwrap();
    }

    #[test]
    fn update_takes_ownership_and_then_apply_conflicts() {
        let mut created = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
        record_update(None, &mut created, "kubectl-create", MAIN, "apps/v1", "t");
        let err = apply(
            Some(&created),
            json!({"spec": {"replicas": 2}}),
            "ctl",
            false,
        )
        .unwrap_err();
        assert_eq!(err[0].manager, "kubectl-create");
        let mut updated = created.clone();
        updated["spec"]["replicas"] = json!(5);
        record_update(Some(&created), &mut updated, "other", MAIN, "apps/v1", "t");
        let entries = read_managed(&updated);
        assert!(
            entries.iter().all(|e| e.manager != "kubectl-create"),
            "{entries:?}"
        );
    }
}
