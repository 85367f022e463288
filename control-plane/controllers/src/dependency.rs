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

/// The workload resource `dependency` recorded on workload instance `wi_id`, if any.
async fn find(api: &Client, wi_id: u64, dependency: &str) -> Result<Option<Value>, ReconcileError> {
    Ok(api
        .list(
            WORKLOAD_RESOURCE_INSTANCE,
            &[("workloadinstanceid", wi_id.to_string())],
        )
        .await?
        .into_iter()
        .find(|r| r.str_field("Dependency") == dependency))
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

/// Delete what `dependency` recorded on the workload of `inst`, in the cluster and the record.
pub async fn remove(
    api: &Client,
    clients: &Clients,
    inst: &Value,
    dependency: &str,
) -> Result<(), ReconcileError> {
    let Some(wi_id) = inst.id_field("WorkloadInstanceID") else {
        return Ok(());
    };
    let Some(rec) = find(api, wi_id, dependency).await? else {
        return Ok(());
    };
    let target = rec.get("JSONDefinition").cloned().unwrap_or(Value::Null);
    let wi = match api.get(WORKLOAD_INSTANCE, wi_id).await {
        Ok(wi) => Some(wi),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    if let (Ok(r), Some(rid)) = (
        ObjectRef::of(&target),
        wi.as_ref()
            .and_then(|w| w.id_field("KubernetesRuntimeInstanceID")),
    ) {
        let runtime = api.get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
        let cluster = clients.get(&runtime).await?;
        let ns = r.namespace.clone().unwrap_or_default();
        cluster::delete(&cluster, &r, &ns).await?;
    }
    match api
        .delete(WORKLOAD_RESOURCE_INSTANCE, rec.id().unwrap_or_default())
        .await
    {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}
