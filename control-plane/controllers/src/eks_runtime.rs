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

/// Upstream's `Location`s and the AWS regions they map to. A region name (`eu-west-1`) is
/// taken as it is.
const LOCATIONS: &[(&str, &str)] = &[
    ("NorthAmerica:NewYork", "us-east-1"),
    ("NorthAmerica:Virginia", "us-east-1"),
    ("NorthAmerica:Ohio", "us-east-2"),
    ("NorthAmerica:California", "us-west-1"),
    ("NorthAmerica:Oregon", "us-west-2"),
    ("NorthAmerica:Montreal", "ca-central-1"),
    ("SouthAmerica:SaoPaulo", "sa-east-1"),
    ("Europe:Ireland", "eu-west-1"),
    ("Europe:London", "eu-west-2"),
    ("Europe:Paris", "eu-west-3"),
    ("Europe:Frankfurt", "eu-central-1"),
    ("Europe:Stockholm", "eu-north-1"),
    ("Asia:Tokyo", "ap-northeast-1"),
    ("Asia:Seoul", "ap-northeast-2"),
    ("Asia:Singapore", "ap-southeast-1"),
    ("Asia:Mumbai", "ap-south-1"),
    ("Australia:Sydney", "ap-southeast-2"),
];

/// The AWS region of a runtime's `Location`.
pub fn region_for(location: &str) -> Result<String, String> {
    if let Some((_, r)) = LOCATIONS.iter().find(|(l, _)| *l == location) {
        return Ok(r.to_string());
    }
    let parts: Vec<&str> = location.split('-').collect();
    let looks_like_region = parts.len() == 3
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && parts[2].chars().all(|c| c.is_ascii_digit());
    if looks_like_region {
        return Ok(location.to_string());
    }
    let known: Vec<&str> = LOCATIONS.iter().map(|(l, _)| *l).collect();
    Err(format!(
        "Location {location:?} names no AWS region; use one of {} or a region name such as us-east-1",
        known.join(", ")
    ))
}

/// Upstream's node sizes and profiles as EC2 instance types.
fn instance_type(profile: &str, size: &str) -> Option<&'static str> {
    let family: [&'static str; 5] = match profile {
        "" | "Balanced" => [
            "t3.small",
            "t3.medium",
            "t3.large",
            "t3.xlarge",
            "t3.2xlarge",
        ],
        "ComputeOptimized" => [
            "c5.large",
            "c5.xlarge",
            "c5.2xlarge",
            "c5.4xlarge",
            "c5.9xlarge",
        ],
        "MemoryOptimized" => [
            "r5.large",
            "r5.xlarge",
            "r5.2xlarge",
            "r5.4xlarge",
            "r5.8xlarge",
        ],
        _ => return None,
    };
    let i = match size {
        "XSmall" => 0,
        // No size: EKS's usual t3.medium (what `tptctl up --provider eks` uses too).
        "" | "Small" => 1,
        "Medium" => 2,
        "Large" => 3,
        "XLarge" => 4,
        _ => return None,
    };
    Some(family[i])
}

/// What a `KubernetesRuntimeDefinition` with `InfraProvider: eks` means, as upstream's
/// kubernetes-runtime controller writes it: an `AwsEksKubernetesRuntimeDefinition` of the same
/// name, bound to it, in the account `InfraProviderAccountName` (else the default account),
/// with 2 zones (3 with `HighAvailability`) and `NodeProfile`/`NodeSize` as the instance type.
pub async fn ensure_definition(api: &Client, krd: &Value) -> Result<String, ReconcileError> {
    let krd_id = krd.id().unwrap_or_default();
    let text = |f: &str| krd.get(f).and_then(Value::as_str).unwrap_or_default();
    let account = match text("InfraProviderAccountName") {
        "" => api
            .list(threeport_api::kinds::AWS_ACCOUNT, &[("defaultaccount", "true".into())])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ReconcileError::Permanent(
                    "InfraProvider eks needs an AWS account: set InfraProviderAccountName, or mark an AwsAccount DefaultAccount".into(),
                )
            })?,
        name => api
            .find_by_name(threeport_api::kinds::AWS_ACCOUNT, name)
            .await?
            .ok_or_else(|| {
                ReconcileError::Permanent(format!(
                    "InfraProviderAccountName: AwsAccount {name:?} does not exist; create it or name another account"
                ))
            })?,
    };
    let (profile, size) = (text("NodeProfile"), text("NodeSize"));
    let machine = instance_type(profile, size).ok_or_else(|| {
        ReconcileError::Permanent(format!(
            "NodeProfile {profile:?} / NodeSize {size:?}: use Balanced, ComputeOptimized or MemoryOptimized, and XSmall, Small, Medium, Large or XLarge"
        ))
    })?;
    let zones = if krd.get("HighAvailability") == Some(&Value::Bool(true)) {
        3
    } else {
        2
    };
    let mut want = json!({
        "AwsAccountID": account.id(),
        "ZoneCount": zones,
        "DefaultNodeGroupInstanceType": machine,
        "DefaultNodeGroupInitialSize": zones,
        "DefaultNodeGroupMinimumSize": 1,
        "KubernetesRuntimeDefinitionID": krd_id,
    });
    if let Some(max) = krd.get("NodeMaximum").and_then(Value::as_i64) {
        want["DefaultNodeGroupMaximumSize"] = json!(max);
    } else {
        want["DefaultNodeGroupMaximumSize"] = json!(zones.max(3));
    }
    let bound = api
        .list(
            AWS_EKS_KUBERNETES_RUNTIME_DEFINITION,
            &[("kubernetesruntimedefinitionid", krd_id.to_string())],
        )
        .await?;
    match bound.first() {
        Some(def) => {
            let differs = want
                .as_object()
                .into_iter()
                .flatten()
                .any(|(k, v)| def.get(k) != Some(v));
            if differs {
                api.patch(
                    AWS_EKS_KUBERNETES_RUNTIME_DEFINITION,
                    def.id().unwrap_or_default(),
                    &want,
                )
                .await?;
            }
            Ok(def.name().to_string())
        }
        None => {
            // One of that name was written by the user (an `AwsEksKubernetesRuntime`, whose
            // instance registered this definition): it stays theirs.
            if let Some(def) = api
                .find_by_name(AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, krd.name())
                .await?
            {
                return Ok(def.name().to_string());
            }
            want["Name"] = json!(krd.name());
            let def = api
                .create(AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, &want)
                .await?;
            Ok(def.name().to_string())
        }
    }
}

/// What a `KubernetesRuntimeInstance` of an `eks` definition needs before its connection can
/// be checked: its `AwsEksKubernetesRuntimeInstance` (bound to it; created here, in the region
/// of its `Location`, unless the runtime already has a connection or one exists), provisioned.
/// `None`: provisioned (or not an EKS-made runtime), check the connection. `Some(why)`: still
/// provisioning. A failed EKS instance fails the runtime with its reason.
pub async fn provision_for(
    api: &Client,
    kri: &Value,
    krd: &Value,
) -> Result<Option<String>, ReconcileError> {
    if krd.get("InfraProvider").and_then(Value::as_str) != Some("eks") {
        return Ok(None);
    }
    let kri_id = kri.id().unwrap_or_default();
    let eksi = AWS_EKS_KUBERNETES_RUNTIME_INSTANCE;
    let bound = api
        .list(eksi, &[("kubernetesruntimeinstanceid", kri_id.to_string())])
        .await?;
    let connected = kri
        .get("APIEndpoint")
        .and_then(Value::as_str)
        .is_some_and(|e| !e.is_empty());
    let eks = match bound.into_iter().next() {
        Some(e) => e,
        // Registered by an AwsEksKubernetesRuntimeInstance (it creates its runtime with the
        // connection, then links it), or connected by hand: nothing to provision.
        None if connected => return Ok(None),
        None => match api.find_by_name(eksi, kri.name()).await? {
            // The EKS instance of this name is about to link it (see `register`).
            Some(e) => e,
            None => {
                let location = kri
                    .get("Location")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let region = region_for(location).map_err(ReconcileError::Permanent)?;
                let def_name = ensure_definition(api, krd).await?;
                let def = api
                    .find_by_name(AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, &def_name)
                    .await?
                    .ok_or_else(|| {
                        ReconcileError::Retryable(format!(
                            "AwsEksKubernetesRuntimeDefinition {def_name:?} is not there yet"
                        ))
                    })?;
                api.create(
                    eksi,
                    &json!({"Name": kri.name(), "Region": region,
                            "AwsEksKubernetesRuntimeDefinitionID": def.id(),
                            "KubernetesRuntimeInstanceID": kri_id}),
                )
                .await?
            }
        },
    };
    let name = eks.name();
    match eks.status() {
        Some("Healthy") if connected => Ok(None),
        Some("Failed") => Err(ReconcileError::Permanent(format!(
            "its AwsEksKubernetesRuntimeInstance {name:?} failed: {}",
            eks.status_reason().unwrap_or("see its events")
        ))),
        _ => Ok(Some(format!(
            "provisioning through AwsEksKubernetesRuntimeInstance {name:?}: {}",
            eks.status_reason()
                .unwrap_or("waiting for the aws controller")
        ))),
    }
}

/// Delete what is bound to an object being deleted (its `AwsEksKubernetesRuntimeInstance`, or
/// for a definition its `AwsEksKubernetesRuntimeDefinition`; the registry says which,
/// [`threeport_api::kinds::bound_to`]) and say what is still going. `None`: nothing left.
pub async fn release_bound(
    api: &Client,
    kind: &'static threeport_api::Kind,
    id: u64,
) -> Result<Option<String>, ReconcileError> {
    let mut going = Vec::new();
    for (k, f) in threeport_api::kinds::bound_to(kind.name) {
        let key = f.filter_key();
        for o in api.list(k, &[(key.as_str(), id.to_string())]).await? {
            if !o.is_deleting() {
                match api.delete(k, o.id().unwrap_or_default()).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.is_conflict() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            going.push(format!("{} {:?}", k.name, o.name()));
        }
    }
    Ok((!going.is_empty()).then(|| format!("waiting for {} to be deleted", going.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_map_to_regions() {
        assert_eq!(region_for("NorthAmerica:NewYork").unwrap(), "us-east-1");
        assert_eq!(region_for("eu-west-1").unwrap(), "eu-west-1");
        let e = region_for("Local").unwrap_err();
        assert!(
            e.contains("Location \"Local\"") && e.contains("NorthAmerica:NewYork"),
            "{e}"
        );
        assert_eq!(instance_type("", ""), Some("t3.medium"));
        assert_eq!(
            instance_type("ComputeOptimized", "XSmall"),
            Some("c5.large")
        );
        assert_eq!(instance_type("Huge", ""), None);
    }
}
