//! What every dependency of a workload (its secret, its database) does the same way: find
//! where the workload runs, wait visibly while it is not placed, and record the Kubernetes
//! objects it adds to the workload as the workload's resources with `Dependency` set, so the
//! workload controller never prunes them and deletes them with the workload.

use crate::cluster::{self, Clients, ObjectRef};
use crate::runtime::{Outcome, ReconcileError};
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::kinds::{
    KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_INSTANCE, WORKLOAD_RESOURCE_INSTANCE,
};
use threeport_api::{Client, Kind, ObjectExt};

pub enum Placement {
    /// The workload instance and the runtime it runs on.
    Ready(Value, u64),
    /// Not placed yet: why.
    Waiting(String),
}

/// Where the workload the dependency `inst` belongs to runs. `what` names the dependency in
/// messages (`a SecretInstance`).
pub async fn placement(
    api: &Client,
    inst: &Value,
    what: &str,
) -> Result<Placement, ReconcileError> {
    let Some(wi_id) = inst.id_field("WorkloadInstanceID") else {
        return Err(ReconcileError::Permanent(
            if inst.is_set("HelmWorkloadInstanceID") {
                format!(
                    "{what} of a HelmWorkloadInstance is not served in this release (no Helm controller); nest it in a Workload"
                )
            } else {
                format!(
                    "{what} needs a workload: set WorkloadInstanceID (or nest it in a Workload)"
                )
            },
        ));
    };
    let wi = api.get(WORKLOAD_INSTANCE, wi_id).await?;
    if wi.is_set("CreationFailed") {
        return Err(ReconcileError::Permanent(format!(
            "its WorkloadInstance {:?} failed: {}",
            wi.name(),
            wi.status_reason().unwrap_or("see its events")
        )));
    }
    match wi.id_field("KubernetesRuntimeInstanceID") {
        Some(rid) => Ok(Placement::Ready(wi, rid)),
        None => Ok(Placement::Waiting(format!(
            "waiting for WorkloadInstance {:?} to be placed on a runtime",
            wi.name()
        ))),
    }
}

/// Say what the object waits for (in its `StatusReason`), then look again after `after`.
pub async fn wait(
    api: &Client,
    kind: &'static Kind,
    obj: &Value,
    why: String,
    after: Duration,
) -> Result<Outcome, ReconcileError> {
    if obj.status_reason() != Some(why.as_str()) {
        api.patch(
            kind,
            obj.id().unwrap_or_default(),
            &json!({"StatusReason": why}),
        )
        .await?;
    }
    Ok(Outcome::RequeueAfter(after))
}

/// `Dependency` of the records `inst` (of `kind`) makes: `SecretInstance/web-credentials`.
pub fn name(kind: &Kind, inst: &Value) -> String {
    format!("{}/{}", kind.name, inst.name())
}

/// The workload resources `dependency` recorded on workload instance `wi_id`.
async fn find_all(
    api: &Client,
    wi_id: u64,
    dependency: &str,
) -> Result<Vec<Value>, ReconcileError> {
    Ok(api
        .list(
            WORKLOAD_RESOURCE_INSTANCE,
            &[("workloadinstanceid", wi_id.to_string())],
        )
        .await?
        .into_iter()
        .filter(|r| r.str_field("Dependency") == dependency)
        .collect())
}

/// The workload resource `dependency` recorded on workload instance `wi_id`, if any.
async fn find(api: &Client, wi_id: u64, dependency: &str) -> Result<Option<Value>, ReconcileError> {
    Ok(find_all(api, wi_id, dependency).await?.into_iter().next())
}

/// Record exactly `identities` (apiVersion, kind, name, namespace) as what `dependency` made on
/// workload instance `wi_id`, for a dependency that makes several objects (a gateway's routes):
/// new ones are added, and ones it no longer makes are deleted from `cluster` and forgotten.
pub async fn record_all(
    api: &Client,
    cluster: &cluster::Cluster,
    wi_id: u64,
    dependency: &str,
    identities: &[Value],
) -> Result<(), ReconcileError> {
    let existing = find_all(api, wi_id, dependency).await?;
    for id in identities {
        if !existing.iter().any(|r| r.get("JSONDefinition") == Some(id)) {
            api.create(
                WORKLOAD_RESOURCE_INSTANCE,
                &json!({"JSONDefinition": id, "WorkloadInstanceID": wi_id,
                        "Dependency": dependency, "LastOperation": "Created", "Reconciled": true}),
            )
            .await?;
        }
    }
    for r in existing {
        let def = r.get("JSONDefinition").cloned().unwrap_or(Value::Null);
        if identities.contains(&def) {
            continue;
        }
        if let Ok(o) = ObjectRef::of(&def) {
            let ns = o.namespace.clone().unwrap_or_default();
            cluster::delete(cluster, &o, &ns).await?;
        }
        match api
            .delete(WORKLOAD_RESOURCE_INSTANCE, r.id().unwrap_or_default())
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Record `identity` (apiVersion, kind, name and namespace only: never a Secret's data) as a
/// resource of workload instance `wi_id` made by `dependency`.
pub async fn record(
    api: &Client,
    wi_id: u64,
    dependency: &str,
    identity: Value,
) -> Result<(), ReconcileError> {
    match find(api, wi_id, dependency).await? {
        Some(r) if r.get("JSONDefinition") == Some(&identity) => {}
        Some(r) => {
            api.patch(
                WORKLOAD_RESOURCE_INSTANCE,
                r.id().unwrap_or_default(),
                &json!({"JSONDefinition": identity}),
            )
            .await?;
        }
        None => {
            api.create(
                WORKLOAD_RESOURCE_INSTANCE,
                &json!({"JSONDefinition": identity, "WorkloadInstanceID": wi_id,
                        "Dependency": dependency, "LastOperation": "Created", "Reconciled": true}),
            )
            .await?;
        }
    }
    Ok(())
}

/// Delete what `dependency` recorded on the workload of `inst`, in the cluster and the records,
/// newest first.
pub async fn remove(
    api: &Client,
    clients: &Clients,
    inst: &Value,
    dependency: &str,
) -> Result<(), ReconcileError> {
    let Some(wi_id) = inst.id_field("WorkloadInstanceID") else {
        return Ok(());
    };
    let records = find_all(api, wi_id, dependency).await?;
    if records.is_empty() {
        return Ok(());
    }
    let wi = match api.get(WORKLOAD_INSTANCE, wi_id).await {
        Ok(wi) => Some(wi),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let cluster = match wi
        .as_ref()
        .and_then(|w| w.id_field("KubernetesRuntimeInstanceID"))
    {
        Some(rid) => {
            let runtime = api.get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
            Some(clients.get(&runtime).await?)
        }
        None => None,
    };
    for rec in records.iter().rev() {
        let target = rec.get("JSONDefinition").cloned().unwrap_or(Value::Null);
        if let (Ok(r), Some(cluster)) = (ObjectRef::of(&target), &cluster) {
            let ns = r.namespace.clone().unwrap_or_default();
            cluster::delete(cluster, &r, &ns).await?;
        }
        match api
            .delete(WORKLOAD_RESOURCE_INSTANCE, rec.id().unwrap_or_default())
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}
