//! EKS runtimes (`AwsEksKubernetesRuntimeInstance`, part of the aws controller): the cluster is
//! provisioned through `installers/eks` exactly as `tptctl up --provider eks` provisions its own
//! (same steps, adoption by tag, reverse-order delete), with one difference: the inventory is
//! kept in the instance's `ResourceInventory`, saved through the API after every resource
//! ([`ApiStore`]). A controller killed mid-way (or another replica) resumes from it and never
//! makes a second VPC or cluster.
//!
//! Once the node group is ACTIVE the cluster is registered as a `KubernetesRuntimeInstance`
//! (the one the instance names, or one of the same name it creates) with the cluster's
//! endpoint and CA and a bearer token made here ([`threeport_eks::token`]): a presigned STS
//! `GetCallerIdentity` URL, stored encrypted as `ConnectionToken` with its
//! `ConnectionTokenExpiration`, and replaced before it lapses by [`refresh_tokens`].

use crate::aws::{AwsAccess, reconcile_error};
use crate::runtime::{Outcome, ReconcileError};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};
use threeport_api::kinds::{
    AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
    KUBERNETES_RUNTIME_DEFINITION, KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_INSTANCE,
};
use threeport_api::{Client, ObjectExt, object_id};
use threeport_eks::{
    AwsError, DownOptions, EksSpec, Inventory, InventoryStore, Progress, StoreFuture, UpOptions,
};
use tokio_util::sync::CancellationToken;

/// Test hook: pause after every provisioning step (milliseconds), so a test can kill the
/// controller between steps it sees in `ResourceInventory`. moto answers every call at once.
pub const STEP_PAUSE_ENV: &str = "THREEPORT_TEST_EKS_STEP_PAUSE_MS";

/// The inventory in the instance's `ResourceInventory`, read and written through the API.
/// A PATCH returns once the row is committed, so a save is durable when it returns.
struct ApiStore<'a> {
    api: &'a Client,
    id: u64,
}

impl InventoryStore for ApiStore<'_> {
    fn load(&self) -> StoreFuture<'_, Option<Inventory>> {
        Box::pin(async move {
            let inst = self
                .api
                .get(AWS_EKS_KUBERNETES_RUNTIME_INSTANCE, self.id)
                .await?;
            match inst.get("ResourceInventory").filter(|v| !v.is_null()) {
                Some(v) => Ok(Some(serde_json::from_value(v.clone())?)),
                None => Ok(None),
            }
        })
    }

    fn save<'a>(&'a self, inv: &'a Inventory) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let value = if inv.resources.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(inv)?
            };
            self.api
                .patch(
                    AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
                    self.id,
                    &json!({ "ResourceInventory": value }),
                )
                .await?;
            Ok(())
        })
    }
}

/// An instance with what provisioning needs: the spec from its definition, its account.
struct Runtime {
    id: u64,
    name: String,
    spec: EksSpec,
    account: crate::aws::Account,
}

impl Runtime {
    async fn load(api: &Client, aws: &AwsAccess, inst: &Value) -> Result<Runtime, ReconcileError> {
        let id = inst.id().unwrap_or_default();
        let name = inst.name().to_string();
        let def_id = inst
            .get("AwsEksKubernetesRuntimeDefinitionID")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let def = api
            .get(AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, def_id)
            .await?;
        let account_id = def
            .get("AwsAccountID")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let mut account = aws.account(api, account_id).await?;
        let region = match inst.get("Region").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => {
                account.config = account
                    .config
                    .to_builder()
                    .region(aws_config::Region::new(r.to_string()))
                    .build();
                r.to_string()
            }
            _ => account
                .config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_default(),
        };
        let mut spec = EksSpec::new(&name, &region);
        let int = |f: &str| def.get(f).and_then(Value::as_i64);
        if let Some(n) = int("ZoneCount") {
            spec.zone_count = n.max(0) as usize;
        }
        if let Some(t) = def
            .get("DefaultNodeGroupInstanceType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            spec.instance_type = t.to_string();
        }
        if let Some(n) = int("DefaultNodeGroupInitialSize") {
            spec.node_desired = n as i32;
        }
        if let Some(n) = int("DefaultNodeGroupMinimumSize") {
            spec.node_min = n as i32;
        }
        if let Some(n) = int("DefaultNodeGroupMaximumSize") {
            spec.node_max = n as i32;
        }
        spec.validate().map_err(|e| {
            ReconcileError::Permanent(format!(
                "AwsEksKubernetesRuntime {name:?}: {e:#} (Name, ZoneCount and DefaultNodeGroup*Size of the instance and its definition)"
            ))
        })?;
        Ok(Runtime {
            id,
            name,
            spec,
            account,
        })
    }
}

/// An installer failure as a reconcile error: AWS's own answer when there is one (operation,
/// code, message), else the error with its context.
fn up_error(e: anyhow::Error) -> ReconcileError {
    match e.chain().find_map(|c| c.downcast_ref::<AwsError>()) {
        Some(aws) => reconcile_error(aws.clone()),
        None => ReconcileError::Retryable(format!("{e:#}")),
    }
}

/// The installer's progress goes to the log, not to a terminal.
fn quiet() -> Progress {
    Progress::observed(|e| tracing::debug!(event = ?e, "eks"))
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Provision (or resume provisioning) the cluster, then register it as a runtime.
pub async fn apply(api: &Client, aws: &AwsAccess, inst: Value) -> Result<Outcome, ReconcileError> {
    let rt = Runtime::load(api, aws, &inst).await?;
    let cluster = rt.spec.cluster_name();
    api.patch(
        AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
        rt.id,
        &json!({"Status": "Progressing", "StatusReason": format!("provisioning EKS cluster {cluster} in {}", rt.spec.region)}),
    )
    .await?;
    let opts = UpOptions {
        // What is made stays (recorded) on a failure: the status says why, a retry resumes,
        // and a delete removes it.
        retain: true,
        no_image_repository: true,
        step_pause: std::env::var(STEP_PAUSE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis),
        ..Default::default()
    };
    let store = ApiStore { api, id: rt.id };
    let access = threeport_eks::up_in(
        &rt.account.config,
        &rt.spec,
        &store,
        &quiet(),
        CancellationToken::new(),
        &opts,
    )
    .await
    .map_err(up_error)?;
    let token = threeport_eks::token::token(&rt.account.config, &cluster, SystemTime::now())
        .await
        .map_err(|e| ReconcileError::Retryable(format!("{e:#}")))?;
    let connection = json!({
        "APIEndpoint": access.endpoint,
        "CACertificate": access.ca_pem,
        "ConnectionToken": token.token,
        "ConnectionTokenExpiration": rfc3339(token.expiration),
    });
    let runtime = register(api, &rt, &inst, connection).await?;
    Ok(Outcome::DoneWith(json!({
        "Status": "Healthy",
        "StatusReason": format!("EKS cluster {cluster} and its node group are ACTIVE; registered as runtime {runtime:?}"),
    })))
}

/// The runtime instance this cluster is: the one named by `KubernetesRuntimeInstanceID`, else
/// one of the same name (found, or created with an `eks` definition). Its endpoint and CA are
/// set only when it has none, so a connection rotated with `tptctl runtime register` stays;
/// the token is always the fresh one.
async fn register(
    api: &Client,
    rt: &Runtime,
    inst: &Value,
    connection: Value,
) -> Result<String, ReconcileError> {
    let kri = KUBERNETES_RUNTIME_INSTANCE;
    let existing = match inst
        .get("KubernetesRuntimeInstanceID")
        .and_then(Value::as_u64)
    {
        Some(id) => Some(api.get(kri, id).await?),
        None => api.find_by_name(kri, &rt.name).await?,
    };
    let runtime = match existing {
        Some(r) => {
            let mut patch = json!({
                "ConnectionToken": connection["ConnectionToken"],
                "ConnectionTokenExpiration": connection["ConnectionTokenExpiration"],
            });
            if r.get("APIEndpoint")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                patch["APIEndpoint"] = connection["APIEndpoint"].clone();
                patch["CACertificate"] = connection["CACertificate"].clone();
            }
            api.patch(kri, r.id().unwrap_or_default(), &patch).await?;
            r
        }
        None => {
            let def = match api
                .find_by_name(KUBERNETES_RUNTIME_DEFINITION, &rt.name)
                .await?
            {
                Some(d) => d,
                None => {
                    api.create(
                        KUBERNETES_RUNTIME_DEFINITION,
                        &json!({"Name": rt.name, "InfraProvider": "eks", "InfraProviderAccountName": rt.account.name}),
                    )
                    .await?
                }
            };
            let mut body = connection;
            body["Name"] = json!(rt.name);
            body["KubernetesRuntimeDefinitionID"] = json!(def.id());
            body["Location"] = json!(rt.spec.region);
            api.create(kri, &body).await?
        }
    };
    if inst
        .get("KubernetesRuntimeInstanceID")
        .and_then(Value::as_u64)
        != runtime.id()
    {
        api.patch(
            AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
            rt.id,
            &json!({"KubernetesRuntimeInstanceID": runtime.id()}),
        )
        .await?;
    }
    Ok(runtime.name().to_string())
}

/// Tear the cluster down (exactly the inventory, newest first), refusing while workloads still
/// run on its runtime; then the runtime instance it registered goes too.
pub async fn delete(
    api: &Client,
    aws: &AwsAccess,
    inst: &Value,
) -> Result<Outcome, ReconcileError> {
    let runtime_id = inst
        .get("KubernetesRuntimeInstanceID")
        .and_then(Value::as_u64);
    if let Some(rid) = runtime_id {
        let workloads = api
            .list(
                WORKLOAD_INSTANCE,
                &[("kubernetesruntimeinstanceid", rid.to_string())],
            )
            .await?;
        if !workloads.is_empty() {
            let names: Vec<&str> = workloads.iter().take(3).map(|w| w.name()).collect();
            return Err(ReconcileError::Permanent(format!(
                "{} workload instance(s) still run on this runtime ({}); delete them first",
                workloads.len(),
                names.join(", ")
            )));
        }
    }
    let rt = Runtime::load(api, aws, inst).await?;
    let store = ApiStore { api, id: rt.id };
    let report = threeport_eks::down_in(
        &rt.account.config,
        &store,
        &quiet(),
        &DownOptions::default(),
    )
    .await
    .map_err(up_error)?;
    if let Some((item, why)) = report.failed.first() {
        return Err(ReconcileError::Retryable(format!(
            "{} of the cluster's resources are not deleted yet; {} {}: {why}",
            report.failed.len(),
            item.kind,
            item.id
        )));
    }
    if let Some(rid) = runtime_id {
        // The runtime points at a cluster that no longer exists. Unlink it first: the instance
        // refers to it, which would refuse its delete.
        api.patch(
            AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
            rt.id,
            &json!({"KubernetesRuntimeInstanceID": null}),
        )
        .await?;
        match api.delete(KUBERNETES_RUNTIME_INSTANCE, rid).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(ReconcileError::Api(e)),
        }
    }
    Ok(Outcome::Done)
}

/// Keep every EKS runtime's token fresh: look each minute, and replace a token that lapses
/// within the next minute ([`threeport_eks::token::needs_refresh`]).
pub async fn refresh_tokens(
    api: Client,
    aws: AwsAccess,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        let Ok(instances) = api.list(AWS_EKS_KUBERNETES_RUNTIME_INSTANCE, &[]).await else {
            continue;
        };
        for inst in instances {
            if let Err(e) = refresh_one(&api, &aws, &inst).await {
                tracing::warn!(runtime = inst.name(), "refreshing the EKS token: {e}");
            }
        }
    }
}

async fn refresh_one(api: &Client, aws: &AwsAccess, inst: &Value) -> Result<(), ReconcileError> {
    let Some(rid) = inst
        .get("KubernetesRuntimeInstanceID")
        .and_then(Value::as_u64)
    else {
        return Ok(());
    };
    if inst.status() != Some("Healthy") {
        return Ok(());
    }
    let runtime = api.get(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
    let expires = runtime
        .get("ConnectionTokenExpiration")
        .and_then(Value::as_str)
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(SystemTime::from);
    let now = SystemTime::now();
    if expires.is_some_and(|t| !threeport_eks::token::needs_refresh(t, now)) {
        return Ok(());
    }
    let rt = Runtime::load(api, aws, inst).await?;
    let token = threeport_eks::token::token(&rt.account.config, &rt.spec.cluster_name(), now)
        .await
        .map_err(|e| ReconcileError::Retryable(format!("{e:#}")))?;
    api.patch(
        KUBERNETES_RUNTIME_INSTANCE,
        object_id(&runtime).unwrap_or_default(),
        &json!({"ConnectionToken": token.token, "ConnectionTokenExpiration": rfc3339(token.expiration)}),
    )
    .await?;
    Ok(())
}
