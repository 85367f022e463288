//! The Kubernetes runtime controller: keeps each runtime's connection checked, reports it as
//! the runtime's status with the reason, keeps a single default runtime, and requeues workloads
//! that failed while their runtime was unreachable once it is back.

use crate::cluster::{Clients, client_for};
use crate::runtime::{Outcome, ReconcileError, Reconciler};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use threeport_api::kinds::{
    self, KUBERNETES_RUNTIME_DEFINITION, KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_INSTANCE,
};
use threeport_api::{Client, Kind, ObjectExt, object_id};
use tokio_util::sync::CancellationToken;

pub struct RuntimeReconciler {
    pub clients: Arc<Clients>,
}

/// Reachability: `Ok(version)` or `Err(reason)`.
pub async fn check(runtime: &Value) -> Result<String, String> {
    let client = client_for(runtime).await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(8), client.apiserver_version()).await {
        Ok(Ok(v)) => Ok(v.git_version),
        Ok(Err(e)) => Err(format!("unreachable: {e}")),
        Err(_) => Err("unreachable: no answer within 8s".into()),
    }
}

impl Reconciler for RuntimeReconciler {
    fn name(&self) -> &'static str {
        "kubernetes-runtime-controller"
    }

    fn kinds(&self) -> Vec<&'static Kind> {
        kinds::served_by("kubernetes-runtime").collect()
    }

    async fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        o: Value,
    ) -> Result<Outcome, ReconcileError> {
        if std::ptr::eq(kind, KUBERNETES_RUNTIME_DEFINITION) {
            if o.get("InfraProvider").and_then(Value::as_str) == Some("eks") {
                let eks = crate::eks_runtime::ensure_definition(api, &o).await?;
                return Ok(Outcome::DoneWith(json!({
                    "Status": "Healthy",
                    "StatusReason": format!("its instances are provisioned in EKS (AwsEksKubernetesRuntimeDefinition {eks:?})"),
                })));
            }
            return Ok(Outcome::Done);
        }
        let id = o.id().unwrap_or_default();
        // An `eks` runtime is provisioned first (as upstream does, through an
        // AwsEksKubernetesRuntimeInstance the aws controller reconciles), then checked.
        let def_id = o
            .id_field("KubernetesRuntimeDefinitionID")
            .unwrap_or_default();
        let def = api.get(KUBERNETES_RUNTIME_DEFINITION, def_id).await?;
        if let Some(why) = crate::eks_runtime::provision_for(api, &o, &def).await? {
            if o.status() != Some("Progressing") || o.status_reason() != Some(why.as_str()) {
                api.patch(
                    kind,
                    id,
                    &json!({"Status": "Progressing", "StatusReason": why}),
                )
                .await?;
            }
            return Ok(Outcome::RequeueAfter(Duration::from_secs(3)));
        }
        if o.get("DefaultRuntime") == Some(&Value::Bool(true)) {
            // One default only: the newest claim wins.
            for other in api.list(kind, &[("defaultruntime", "true".into())]).await? {
                let oid = other.id().unwrap_or_default();
                if oid != id {
                    api.patch(
                        kind,
                        oid,
                        &json!({"DefaultRuntime": false, "Reconciled": true}),
                    )
                    .await?;
                }
            }
        }
        Ok(Outcome::DoneWith(match check(&o).await {
            Ok(v) => {
                json!({"Status": "Healthy", "StatusReason": format!("reachable (Kubernetes {v})")})
            }
            Err(reason) => json!({"Status": "Failed", "StatusReason": reason}),
        }))
    }

    async fn cleanup(
        &self,
        api: &Client,
        kind: &'static Kind,
        o: Value,
    ) -> Result<Outcome, ReconcileError> {
        // The API refuses the delete while workloads still use the runtime (409), so there is
        // nothing left in it that Threeport applied. What is bound to it (the EKS instance that
        // provisioned it, which tears the cluster down) goes first.
        let id = o.id().unwrap_or_default();
        if std::ptr::eq(kind, KUBERNETES_RUNTIME_INSTANCE) {
            self.remove_support_services(api, &o).await?;
        }
        match crate::eks_runtime::release_bound(api, kind, id).await? {
            Some(why) => crate::dependency::wait(api, kind, &o, why, Duration::from_secs(2)).await,
            None => Ok(Outcome::Done),
        }
    }
}

impl RuntimeReconciler {
    /// What the gateway controller installed on the runtime (Gateway API, cert-manager) goes
    /// with it; what it found stays. A cluster that cannot be reached any more cannot be
    /// cleaned, and must not keep the runtime from going: that is logged.
    async fn remove_support_services(&self, api: &Client, o: &Value) -> Result<(), ReconcileError> {
        let installed = o
            .get(crate::gateway::support::FIELD)
            .and_then(Value::as_object)
            .is_some_and(|m| m.values().any(|r| r["Installed"] == Value::Bool(true)));
        if !installed {
            return Ok(());
        }
        let revealed = api
            .get_revealed(KUBERNETES_RUNTIME_INSTANCE, o.id().unwrap_or_default())
            .await?;
        if let Err(why) = check(&revealed).await {
            tracing::warn!(runtime = o.name(), "support services left in place: {why}");
            return Ok(());
        }
        let cluster = self.clients.get(&revealed).await?;
        let removed = crate::gateway::support::remove(&cluster, &revealed).await?;
        tracing::info!(runtime = o.name(), ?removed, "support services removed");
        Ok(())
    }
}

/// Check every runtime periodically. A runtime that comes back gets `Healthy` again, and the
/// workload instances on it that failed meanwhile are asked to reconcile again.
pub async fn monitor(api: Client, interval: Duration, shutdown: CancellationToken) {
    let (kri, wi) = (KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_INSTANCE);
    let mut last: HashMap<u64, bool> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let Ok(runtimes) = api.list(kri, &[]).await else {
            continue;
        };
        for r in runtimes {
            let id = object_id(&r).unwrap_or_default();
            if r.get("DeletionScheduled").is_some_and(|v| !v.is_null())
                || r.get("APIEndpoint").is_none()
            {
                continue;
            }
            let Ok(revealed) = api.get_revealed(kri, id).await else {
                continue;
            };
            let result = check(&revealed).await;
            let ok = result.is_ok();
            let (status, reason) = match result {
                Ok(v) => ("Healthy", format!("reachable (Kubernetes {v})")),
                Err(e) => ("Failed", e),
            };
            if r.get("Status").and_then(Value::as_str) != Some(status) {
                let _ = api
                    .patch(kri, id, &json!({"Status": status, "StatusReason": reason}))
                    .await;
            }
            if ok && last.get(&id) != Some(&true) {
                for inst in api
                    .list(wi, &[("kubernetesruntimeinstanceid", id.to_string())])
                    .await
                    .unwrap_or_default()
                {
                    let failed = inst.get("Status").and_then(Value::as_str) == Some("Failed");
                    if failed && inst.get("DeletionScheduled").is_none_or(Value::is_null) {
                        let _ = api
                            .patch(
                                wi,
                                object_id(&inst).unwrap_or_default(),
                                &json!({"Reconciled": false, "CreationFailed": null}),
                            )
                            .await;
                    }
                }
            }
            last.insert(id, ok);
        }
    }
}
