//! The Kubernetes runtime controller: keeps each runtime's connection checked, reports it as
//! the runtime's status with the reason, keeps a single default runtime, and requeues workloads
//! that failed while their runtime was unreachable once it is back.

use crate::cluster::{Clients, client_for};
use crate::runtime::{Outcome, ReconcileError, Reconciler, now_rfc3339};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use threeport_api::{Client, Kind, kinds, object_id};
use tokio_util::sync::CancellationToken;

pub struct RuntimeReconciler {
    pub clients: Arc<Clients>,
}

fn k(name: &str) -> &'static Kind {
    kinds::by_name(name).expect("registered kind")
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
        vec![
            k("KubernetesRuntimeDefinition"),
            k("KubernetesRuntimeInstance"),
        ]
    }

    async fn reconcile(
        &self,
        api: &Client,
        kind: &'static Kind,
        o: Value,
    ) -> Result<Outcome, ReconcileError> {
        let id = object_id(&o).unwrap_or_default();
        if o.get("DeletionScheduled").is_some_and(|v| !v.is_null()) {
            // The API refuses the delete while workloads still use the runtime (409), so there is
            // nothing left in it that Threeport applied.
            api.patch(
                kind,
                id,
                &json!({"DeletionAcknowledged": now_rfc3339(), "DeletionConfirmed": now_rfc3339()}),
            )
            .await?;
            return Ok(Outcome::Done);
        }
        if kind.name == "KubernetesRuntimeDefinition" {
            api.patch(
                kind,
                id,
                &json!({"Reconciled": true, "CreationConfirmed": now_rfc3339()}),
            )
            .await?;
            return Ok(Outcome::Done);
        }
        if o.get("DefaultRuntime") == Some(&Value::Bool(true)) {
            // One default only: the newest claim wins.
            for other in api.list(kind, &[("defaultruntime", "true".into())]).await? {
                let oid = object_id(&other).unwrap_or_default();
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
        let mut patch = json!({"Reconciled": true, "CreationConfirmed": now_rfc3339()});
        match check(&o).await {
            Ok(v) => {
                patch["Status"] = json!("Healthy");
                patch["StatusReason"] = json!(format!("reachable (Kubernetes {v})"));
            }
            Err(reason) => {
                patch["Status"] = json!("Failed");
                patch["StatusReason"] = json!(reason);
            }
        }
        api.patch(kind, id, &patch).await?;
        Ok(Outcome::Done)
    }
}

/// Check every runtime periodically. A runtime that comes back gets `Healthy` again, and the
/// workload instances on it that failed meanwhile are asked to reconcile again.
pub async fn monitor(api: Client, interval: Duration, shutdown: CancellationToken) {
    let kri = k("KubernetesRuntimeInstance");
    let wi = k("WorkloadInstance");
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
