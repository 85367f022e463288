//! The workload controller: WorkloadDefinitions become WorkloadResourceDefinitions; a
//! WorkloadInstance is server-side applied to its runtime's cluster, pruned on change, deleted on
//! delete, and its status follows the cluster through a watch.

use crate::cluster::{self, Clients, INSTANCE_LABEL, ObjectRef};
use crate::runtime::{Outcome, ReconcileError, Reconciler};
use crate::status::StatusWatchers;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use threeport_api::kinds::{
    self, KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_DEFINITION, WORKLOAD_INSTANCE,
    WORKLOAD_RESOURCE_DEFINITION, WORKLOAD_RESOURCE_INSTANCE,
};
use threeport_api::{Client, Kind, ObjectExt, object_id};

pub struct WorkloadReconciler {
    pub clients: Arc<Clients>,
    pub watchers: Arc<StatusWatchers>,
    /// Each definition's resource definitions, by the definition's `ResourceVersion` once it
    /// was reconciled: they change only while it is reconciled (which writes it again), so a
    /// hundred instances of one definition list them once.
    pub definitions: DefinitionCache,
}

#[derive(Default)]
pub struct DefinitionCache(
    std::sync::Mutex<std::collections::HashMap<u64, (i64, Arc<Vec<Value>>)>>,
);

impl DefinitionCache {
    fn get(&self, id: u64, version: i64) -> Option<Arc<Vec<Value>>> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&id)
            .filter(|(v, _)| *v == version)
            .map(|(_, w)| w.clone())
    }
    fn put(&self, id: u64, version: i64, wrds: Arc<Vec<Value>>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a control plane with more definitions than this lists again.
        if m.len() >= 4096 && !m.contains_key(&id) {
            m.clear();
        }
        m.insert(id, (version, wrds));
    }
}

/// Split a multi-document manifest into Kubernetes objects, checking each has an identity.
pub fn split_manifest(yaml: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let v = serde_json::to_value(
            serde::Deserialize::deserialize(doc)
                .map(|v: serde_yaml::Value| v)
                .map_err(|e| format!("YAMLDocument: document {}: {e}", i + 1))?,
        )
        .map_err(|e| format!("YAMLDocument: document {}: {e}", i + 1))?;
        if v.is_null() {
            continue;
        }
        if !v.is_object() {
            return Err(format!(
                "YAMLDocument: document {} is not a Kubernetes object",
                i + 1
            ));
        }
        ObjectRef::of(&v).map_err(|e| format!("YAMLDocument: document {}: {e}", i + 1))?;
        out.push(v);
    }
    if out.is_empty() {
        return Err("YAMLDocument holds no Kubernetes objects".into());
    }
    Ok(out)
}

/// The namespace for objects that name none: one per instance, so two instances of one
/// definition never overwrite each other.
pub fn instance_namespace(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s = s.trim_matches('-').to_string();
    s.truncate(63);
    if s.is_empty() {
        "threeport-workload".into()
    } else {
        s
    }
}

impl Reconciler for WorkloadReconciler {
    fn name(&self) -> &'static str {
        "workload-controller"
    }

    fn kinds(&self) -> Vec<&'static Kind> {
        kinds::served_by("workload").collect()
    }

    async fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if std::ptr::eq(kind, WORKLOAD_DEFINITION) {
            self.definition(api, object).await
        } else {
            self.instance(api, object).await
        }
    }

    async fn cleanup(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if std::ptr::eq(kind, WORKLOAD_DEFINITION) {
            // Its resource definitions cascade when the row goes.
            return Ok(Outcome::Done);
        }
        let ns = instance_namespace(object.name());
        self.delete_instance(api, &object, &ns).await
    }
}

impl WorkloadReconciler {
    async fn definition(&self, api: &Client, def: Value) -> Result<Outcome, ReconcileError> {
        let wrd = WORKLOAD_RESOURCE_DEFINITION;
        let id = def.id().unwrap_or_default();
        let yaml = def
            .get("YAMLDocument")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let docs = split_manifest(yaml).map_err(ReconcileError::Permanent)?;
        let mut desired: BTreeMap<ObjectRef, Value> = BTreeMap::new();
        for d in docs {
            let r = ObjectRef::of(&d).map_err(ReconcileError::Permanent)?;
            if desired.insert(r.clone(), d).is_some() {
                return Err(ReconcileError::Permanent(format!(
                    "YAMLDocument: {r} appears twice"
                )));
            }
        }
        let existing = api
            .list(wrd, &[("workloaddefinitionid", id.to_string())])
            .await?;
        let mut changed = false;
        let mut seen = Vec::new();
        for e in &existing {
            let eid = object_id(e).unwrap_or_default();
            let body = e.get("JSONDefinition").cloned().unwrap_or(Value::Null);
            match ObjectRef::of(&body)
                .ok()
                .filter(|r| desired.contains_key(r))
            {
                Some(r) => {
                    if desired[&r] != body {
                        api.patch(wrd, eid, &json!({"JSONDefinition": desired[&r]}))
                            .await?;
                        changed = true;
                    }
                    seen.push(r);
                }
                None => {
                    api.delete(wrd, eid).await?;
                    changed = true;
                }
            }
        }
        for (r, body) in &desired {
            if !seen.contains(r) {
                api.create(
                    wrd,
                    &json!({"JSONDefinition": body, "WorkloadDefinitionID": id}),
                )
                .await?;
                changed = true;
            }
        }
        if changed {
            // A changed definition re-applies every instance of it (they wait until the
            // runtime has confirmed this definition).
            let wi = WORKLOAD_INSTANCE;
            for inst in api
                .list(wi, &[("workloaddefinitionid", id.to_string())])
                .await?
            {
                if inst.is_reconciled() && !inst.is_deleting() {
                    api.patch(
                        wi,
                        inst.id().unwrap_or_default(),
                        &json!({"Reconciled": false}),
                    )
                    .await?;
                }
            }
        }
        Ok(Outcome::Done)
    }

    async fn runtime_for(
        &self,
        api: &Client,
        inst: &Value,
    ) -> Result<(u64, Value, cluster::Cluster), ReconcileError> {
        let rid = match inst.get("KubernetesRuntimeInstanceID").and_then(Value::as_u64) {
            Some(id) => id,
            // No runtime named: the default runtime, as upstream does.
            None => api
                .list(KUBERNETES_RUNTIME_INSTANCE, &[("defaultruntime", "true".into())])
                .await?
                .first()
                .and_then(object_id)
                .ok_or_else(|| {
                    ReconcileError::Permanent("no Kubernetes runtime: name a KubernetesRuntimeInstance or mark one DefaultRuntime".into())
                })?,
        };
        let runtime = api.get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
        let client = self.clients.get(&runtime).await?;
        Ok((rid, runtime, client))
    }

    async fn instance(&self, api: &Client, inst: Value) -> Result<Outcome, ReconcileError> {
        let wri = WORKLOAD_RESOURCE_INSTANCE;
        let id = inst.id().unwrap_or_default();
        let ns = instance_namespace(inst.name());
        let def_id = inst
            .get("WorkloadDefinitionID")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let def = api.get(WORKLOAD_DEFINITION, def_id).await?;
        if def.is_set("CreationFailed") {
            return Err(ReconcileError::Permanent(format!(
                "its WorkloadDefinition {:?} failed; fix the definition",
                def.get("Name").and_then(Value::as_str).unwrap_or_default()
            )));
        }
        if !def.is_reconciled() {
            // The definition's resources are being prepared; not a failure.
            return Ok(Outcome::RequeueAfter(Duration::from_millis(500)));
        }
        let (rid, _runtime, client) = self.runtime_for(api, &inst).await?;
        let def_version = def
            .get("ResourceVersion")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let wrds = match self.definitions.get(def_id, def_version) {
            Some(w) => w,
            None => {
                let w = Arc::new(
                    api.list(
                        WORKLOAD_RESOURCE_DEFINITION,
                        &[("workloaddefinitionid", def_id.to_string())],
                    )
                    .await?,
                );
                self.definitions.put(def_id, def_version, w.clone());
                w
            }
        };
        let existing = api
            .list(wri, &[("workloadinstanceid", id.to_string())])
            .await?;
        let existing: Vec<(ObjectRef, u64, Value)> = existing
            .into_iter()
            .filter_map(|e| {
                let r = ObjectRef::of(e.get("JSONDefinition")?).ok()?;
                Some((r, object_id(&e)?, e))
            })
            .collect();
        let labels = [
            (INSTANCE_LABEL, id.to_string()),
            ("app.kubernetes.io/managed-by", "threeport".to_string()),
        ];
        // What the workload's buckets ask of its objects (a ServiceAccount's role, an env var).
        let injections = crate::bucket::injections(api, id).await?;
        let mut desired_refs = Vec::new();
        let mut applied_objects = Vec::new();
        // A new object, a changed spec (a new generation) or a pruned one: a rollout starts.
        let mut changed = false;
        for wrd in wrds.iter() {
            let body = wrd.get("JSONDefinition").cloned().unwrap_or(Value::Null);
            let mut r = ObjectRef::of(&body).map_err(ReconcileError::Permanent)?;
            let wanted = crate::bucket::inject(&body, &injections);
            let mut applied = cluster::apply(&client, wanted, &ns, &labels).await?;
            // Who set which field is the cluster's bookkeeping, not the object: it is large and
            // would be stored and sent with every record.
            if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
            // Record with the namespace it really went to.
            r.namespace = applied
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut stored = body.clone();
            if let Some(n) = &r.namespace {
                stored["metadata"]["namespace"] = json!(n);
            }
            let generation = |o: &Value| o.pointer("/metadata/generation").and_then(Value::as_i64);
            match existing.iter().find(|(er, _, _)| *er == r) {
                Some((_, _, e))
                    if e.get("RuntimeDefinition").and_then(generation) == generation(&applied) => {}
                _ => changed = true,
            }
            match existing.iter().find(|(er, _, _)| *er == r) {
                // Recorded as it is (same definition, and the cluster holds what the record
                // says, status aside): a write would change nothing a reader uses.
                Some((_, _, e))
                    if e.get("JSONDefinition") == Some(&stored)
                        && e.get("RuntimeDefinition").map(settled) == Some(settled(&applied)) => {}
                Some((_, eid, _)) => {
                    api.patch(wri, *eid, &json!({"JSONDefinition": stored, "RuntimeDefinition": applied, "LastOperation": "Updated", "Reconciled": true})).await?;
                }
                None => {
                    api.create(
                        wri,
                        &json!({"JSONDefinition": stored, "WorkloadInstanceID": id, "RuntimeDefinition": applied, "LastOperation": "Created", "Reconciled": true}),
                    )
                    .await?;
                }
            }
            desired_refs.push(r);
            applied_objects.push(applied);
        }
        // Prune what the definition no longer has. What a dependency's controller added (its
        // `Dependency` is set) is that controller's to remove, or goes with the workload.
        for (r, eid, e) in &existing {
            if !desired_refs.contains(r) && !e.is_set("Dependency") {
                cluster::delete(&client, r, &ns).await?;
                api.delete(wri, *eid).await?;
                changed = true;
            }
        }
        // Record the runtime it went to (the default one when none was named).
        let mut report = json!({"KubernetesRuntimeInstanceID": rid});
        // Unchanged objects keep the status the watcher reports (Healthy stays Healthy); after
        // a change the instance is Progressing until the watcher sees the rollout complete.
        if changed
            || inst
                .status()
                .is_none_or(|s| matches!(s, "Failed" | "Pending" | "Reconciling"))
        {
            report["Status"] = json!("Progressing");
            report["StatusReason"] = json!("applied to the cluster; waiting for readiness");
        }
        self.watchers
            .ensure(rid, client.client.clone(), api.clone())
            .await;
        self.watchers
            .touch_applied(
                rid,
                id,
                crate::status::Expected::from_objects(&applied_objects),
            )
            .await;
        Ok(Outcome::DoneWith(report))
    }

    async fn delete_instance(
        &self,
        api: &Client,
        inst: &Value,
        ns: &str,
    ) -> Result<Outcome, ReconcileError> {
        let id = inst.id().unwrap_or_default();
        let wri = WORKLOAD_RESOURCE_INSTANCE;
        let resources = api
            .list(wri, &[("workloadinstanceid", id.to_string())])
            .await?;
        if !resources.is_empty() || inst.get("KubernetesRuntimeInstanceID").is_some() {
            match self.runtime_for(api, inst).await {
                Ok((_, _, client)) => {
                    for e in &resources {
                        if let Some(r) = e.get("JSONDefinition").and_then(|j| ObjectRef::of(j).ok())
                        {
                            cluster::delete(&client, &r, ns).await?;
                        }
                        api.delete(wri, e.id().unwrap_or_default()).await?;
                    }
                    // The per-instance namespace was ours.
                    let nsref = ObjectRef {
                        api_version: "v1".into(),
                        kind: "Namespace".into(),
                        namespace: None,
                        name: ns.to_string(),
                    };
                    if let Some(n) = cluster::get(&client, &nsref, ns).await? {
                        if n.pointer("/metadata/labels/app.kubernetes.io~1managed-by")
                            .and_then(Value::as_str)
                            == Some("threeport")
                        {
                            cluster::delete(&client, &nsref, ns).await?;
                        }
                    }
                }
                Err(ReconcileError::Permanent(_)) if resources.is_empty() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Done)
    }
}

/// An applied object without what the cluster changes on its own (its status, the
/// resourceVersion every write bumps): two records equal in this need no rewrite. The
/// generation alone is not enough: metadata (a bucket's role annotation on a ServiceAccount)
/// changes without it, and most kinds (ServiceAccount, ConfigMap) have none.
fn settled(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record is rewritten when an annotation changes (no generation moves for it), and not
    /// when only the status or the resourceVersion did.
    #[test]
    fn a_record_is_current_when_the_cluster_object_differs_only_in_status() {
        let sa =
            json!({"kind": "ServiceAccount", "metadata": {"name": "s3", "resourceVersion": "7"}});
        let mut annotated = sa.clone();
        annotated["metadata"]["annotations"] =
            json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"});
        assert_ne!(settled(&sa), settled(&annotated));
        let deploy = json!({"kind": "Deployment", "metadata": {"name": "web", "generation": 2, "resourceVersion": "9"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 0}});
        let mut later = deploy.clone();
        later["metadata"]["resourceVersion"] = json!("12");
        later["status"]["readyReplicas"] = json!(1);
        assert_eq!(settled(&deploy), settled(&later));
    }

    #[test]
    fn manifests_split_and_are_checked() {
        let docs = split_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(
            split_manifest("apiVersion: v1\nkind: ConfigMap\n")
                .unwrap_err()
                .contains("metadata.name")
        );
        assert!(split_manifest("- a\n").is_err());
        assert!(split_manifest("a: [").is_err());
        assert_eq!(instance_namespace("Web_App.1"), "web-app-1");
    }
}
