//! The aws controller's object storage. An `AwsObjectStorageBucketInstance` gets:
//! - the S3 bucket (named after the instance), private unless `PublicReadAccess`;
//! - an IAM role that only the workload's ServiceAccount can assume, through the cluster's OIDC
//!   provider (IRSA), with a policy scoped to that bucket;
//! - through the workload controller (the one owner of the workload's objects), the annotation
//!   `eks.amazonaws.com/role-arn` on that ServiceAccount and the env var `WorkloadBucketEnvVar`
//!   in every pod template that runs as it ([`inject`]).
//!
//! Deleting it deletes the bucket only when it is empty, or after emptying it when the
//! instance sets `ForceDelete`, then the role.

use crate::aws::{AwsAccess, reconcile_error};
use crate::dependency::{self, Placement};
use crate::runtime::{Outcome, ReconcileError};
use crate::workload::instance_namespace;
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::kinds::{
    AWS_OBJECT_STORAGE_BUCKET_DEFINITION, AWS_OBJECT_STORAGE_BUCKET_INSTANCE, WORKLOAD_INSTANCE,
    WORKLOAD_RESOURCE_DEFINITION, WORKLOAD_RESOURCE_INSTANCE,
};
use threeport_api::{Client, ObjectExt};
use threeport_eks::{AwsResultExt, Found};

/// The annotation IRSA reads.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The thumbprint eksctl registers for EKS's OIDC issuers (IAM no longer checks it for them).
const OIDC_THUMBPRINT: &str = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";
const POLL: Duration = Duration::from_secs(3);

/// One bucket instance with its definition and its account's clients.
pub struct Bucket {
    def: Value,
    account: String,
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    eks: aws_sdk_eks::Client,
    /// The bucket's name (the instance's).
    name: String,
}

fn valid_bucket_name(n: &str) -> bool {
    (3..=63).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

impl Bucket {
    pub async fn load(
        api: &Client,
        aws: &AwsAccess,
        inst: &Value,
    ) -> Result<Bucket, ReconcileError> {
        let def_id = inst
            .id_field("AwsObjectStorageBucketDefinitionID")
            .unwrap_or_default();
        let def = api
            .get(AWS_OBJECT_STORAGE_BUCKET_DEFINITION, def_id)
            .await?;
        let account = aws
            .account(api, def.id_field("AwsAccountID").unwrap_or_default())
            .await?;
        let name = inst.name().to_string();
        if !valid_bucket_name(&name) {
            return Err(ReconcileError::Permanent(format!(
                "Name: {name:?} is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, hyphens and dots"
            )));
        }
        Ok(Bucket {
            s3: aws_sdk_s3::Client::new(&account.config),
            iam: aws_sdk_iam::Client::new(&account.config),
            eks: aws_sdk_eks::Client::new(&account.config),
            account: account.name,
            def,
            name,
        })
    }

    fn role_name(&self) -> String {
        let mut n = format!("threeport-{}", self.name.replace('.', "-"));
        n.truncate(64);
        n
    }

    pub async fn apply(&self, api: &Client, inst: Value) -> Result<Outcome, ReconcileError> {
        let kind = AWS_OBJECT_STORAGE_BUCKET_INSTANCE;
        let (wi, rid) = match dependency::placement(api, &inst, "a bucket").await? {
            Placement::Ready(wi, rid) => (wi, rid),
            Placement::Waiting(why) => return dependency::wait(api, kind, &inst, why, POLL).await,
        };
        let sa = self.def.str_field("WorkloadServiceAccountName");
        if !sa.is_empty() {
            check_service_account(api, &wi, sa).await?;
        }
        let Some(cluster) = crate::eks::cluster_of(api, rid).await? else {
            let why = format!(
                "waiting for EKS runtime {rid} to be provisioned: its AwsEksKubernetesRuntimeInstance has no cluster in its ResourceInventory yet"
            );
            return dependency::wait(api, kind, &inst, why, POLL).await;
        };
        self.bucket().await?;
        // Recorded at once: a delete removes only what is recorded as made.
        if inst.str_field("BucketName") != self.name {
            api.patch(
                kind,
                inst.id().unwrap_or_default(),
                &json!({"BucketName": self.name}),
            )
            .await?;
        }
        let role_arn = self
            .role(&cluster, &instance_namespace(wi.name()), sa)
            .await?;
        // The workload writes the annotation and the env var from these, so they are stored
        // before it is asked to run again.
        if inst.str_field("RoleArn") != role_arn {
            api.patch(
                kind,
                inst.id().unwrap_or_default(),
                &json!({"RoleArn": role_arn}),
            )
            .await?;
        }
        if !sa.is_empty() && !runs_as(api, &wi, sa, &role_arn).await? {
            // Not applied yet. A reconcile already under way may have read the instance before
            // the role was stored, so ask again until the cluster shows it.
            if wi.is_reconciled() && !wi.is_deleting() {
                api.patch(
                    WORKLOAD_INSTANCE,
                    wi.id().unwrap_or_default(),
                    &json!({"Reconciled": false}),
                )
                .await?;
            }
            let why = format!(
                "waiting for WorkloadInstance {:?} to run ServiceAccount {sa} as role {role_arn}",
                wi.name()
            );
            return dependency::wait(api, kind, &inst, why, Duration::from_secs(1)).await;
        }
        Ok(Outcome::DoneWith(json!({
            "Status": "Healthy",
            "StatusReason": format!(
                "bucket {} ({}) in account {}, for ServiceAccount {sa}",
                self.name,
                if self.public() { "public read" } else { "private" },
                self.account
            ),
        })))
    }

    fn public(&self) -> bool {
        self.def.get("PublicReadAccess") == Some(&Value::Bool(true))
    }

    async fn bucket(&self) -> Result<(), ReconcileError> {
        match self
            .s3
            .create_bucket()
            .bucket(&self.name)
            .send()
            .await
            .aws("CreateBucket")
        {
            Ok(_) => {}
            // Ours from an earlier attempt; someone else's is BucketAlreadyExists.
            Err(e) if e.has_code("BucketAlreadyOwnedByYou") => {}
            Err(e) => return Err(reconcile_error(e)),
        }
        let block = !self.public();
        self.s3
            .put_public_access_block()
            .bucket(&self.name)
            .public_access_block_configuration(
                aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(block)
                    .ignore_public_acls(block)
                    .block_public_policy(block)
                    .restrict_public_buckets(block)
                    .build(),
            )
            .send()
            .await
            .aws("PutPublicAccessBlock")
            .map_err(reconcile_error)?;
        Ok(())
    }

    /// The cluster's OIDC provider, registered in IAM if it is not yet: `(arn, issuer host/path)`.
    async fn oidc_provider(&self, cluster: &str) -> Result<(String, String), ReconcileError> {
        let out = self
            .eks
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .aws("DescribeCluster")
            .map_err(reconcile_error)?;
        let issuer = out
            .cluster()
            .and_then(|c| c.identity())
            .and_then(|i| i.oidc())
            .and_then(|o| o.issuer())
            .ok_or_else(|| {
                ReconcileError::Permanent(format!(
                    "EKS cluster {cluster} has no OIDC issuer, which a bucket's role needs"
                ))
            })?
            .to_string();
        let host = issuer.trim_start_matches("https://").to_string();
        let providers = self
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .aws("ListOpenIDConnectProviders")
            .map_err(reconcile_error)?;
        if let Some(p) = providers
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
            .find(|arn| arn.ends_with(&format!(":oidc-provider/{host}")))
        {
            return Ok((p.to_string(), host));
        }
        let created = self
            .iam
            .create_open_id_connect_provider()
            .url(&issuer)
            .client_id_list("sts.amazonaws.com")
            .thumbprint_list(OIDC_THUMBPRINT)
            .send()
            .await
            .aws("CreateOpenIDConnectProvider")
            .map_err(reconcile_error)?;
        Ok((
            created
                .open_id_connect_provider_arn()
                .unwrap_or_default()
                .to_string(),
            host,
        ))
    }

    /// The role the ServiceAccount `sa` in `ns` assumes, with access to this bucket only.
    async fn role(&self, cluster: &str, ns: &str, sa: &str) -> Result<String, ReconcileError> {
        let (provider, host) = self.oidc_provider(cluster).await?;
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{host}:sub"): format!("system:serviceaccount:{ns}:{sa}"),
                    format!("{host}:aud"): "sts.amazonaws.com",
                }},
            }],
        })
        .to_string();
        let name = self.role_name();
        let arn = match self
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(&trust)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("threeport.io/bucket")
                    .value(&self.name)
                    .build()
                    .map_err(|e| ReconcileError::Permanent(e.to_string()))?,
            )
            .send()
            .await
            .aws("CreateRole")
        {
            Ok(out) => out.role().map(|r| r.arn().to_string()).unwrap_or_default(),
            Err(e) if e.has_code("EntityAlreadyExists") => {
                // Ours from an earlier attempt (the name is ours): bring its trust up to date.
                self.iam
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(&trust)
                    .send()
                    .await
                    .aws("UpdateAssumeRolePolicy")
                    .map_err(reconcile_error)?;
                self.iam
                    .get_role()
                    .role_name(&name)
                    .send()
                    .await
                    .aws("GetRole")
                    .map_err(reconcile_error)?
                    .role()
                    .map(|r| r.arn().to_string())
                    .unwrap_or_default()
            }
            Err(e) => return Err(reconcile_error(e)),
        };
        let b = &self.name;
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")],
            }],
        })
        .to_string();
        self.iam
            .put_role_policy()
            .role_name(&name)
            .policy_name("bucket-access")
            .policy_document(policy)
            .send()
            .await
            .aws("PutRolePolicy")
            .map_err(reconcile_error)?;
        Ok(arn)
    }

    pub async fn delete(&self, api: &Client, inst: &Value) -> Result<Outcome, ReconcileError> {
        if inst.str_field("BucketName").is_empty() && inst.str_field("RoleArn").is_empty() {
            // Nothing was made (it never got that far): nothing to remove.
            return Ok(Outcome::Done);
        }
        if inst.get("ForceDelete") == Some(&Value::Bool(true)) {
            self.empty().await?;
        }
        match self
            .s3
            .delete_bucket()
            .bucket(&self.name)
            .send()
            .await
            .aws("DeleteBucket")
        {
            Ok(_) => {}
            Err(e) if e.has_code("NoSuchBucket") => {}
            Err(e) if e.has_code("BucketNotEmpty") => {
                return Err(ReconcileError::Permanent(format!(
                    "{e}; empty it, or set ForceDelete: true on this AwsObjectStorageBucketInstance to have it emptied"
                )));
            }
            Err(e) => return Err(reconcile_error(e)),
        }
        let name = self.role_name();
        self.iam
            .delete_role_policy()
            .role_name(&name)
            .policy_name("bucket-access")
            .send()
            .await
            .aws("DeleteRolePolicy")
            .found()
            .map_err(reconcile_error)?;
        self.iam
            .delete_role()
            .role_name(&name)
            .send()
            .await
            .aws("DeleteRole")
            .found()
            .map_err(reconcile_error)?;
        // The workload drops the annotation and the env var.
        if let Some(wi_id) = inst.id_field("WorkloadInstanceID") {
            match api.get(WORKLOAD_INSTANCE, wi_id).await {
                Ok(wi) if wi.is_reconciled() && !wi.is_deleting() => {
                    api.patch(WORKLOAD_INSTANCE, wi_id, &json!({"Reconciled": false}))
                        .await?;
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Outcome::Done)
    }

    /// Delete every object (and version) in the bucket.
    async fn empty(&self) -> Result<(), ReconcileError> {
        loop {
            let out = match self
                .s3
                .list_objects_v2()
                .bucket(&self.name)
                .send()
                .await
                .aws("ListObjectsV2")
            {
                Ok(out) => out,
                Err(e) if e.has_code("NoSuchBucket") => return Ok(()),
                Err(e) => return Err(reconcile_error(e)),
            };
            let keys: Vec<aws_sdk_s3::types::ObjectIdentifier> = out
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(k)
                        .build()
                        .ok()
                })
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            self.s3
                .delete_objects()
                .bucket(&self.name)
                .delete(
                    aws_sdk_s3::types::Delete::builder()
                        .set_objects(Some(keys))
                        .build()
                        .map_err(|e| ReconcileError::Permanent(e.to_string()))?,
                )
                .send()
                .await
                .aws("DeleteObjects")
                .map_err(reconcile_error)?;
        }
    }
}

/// Whether the workload's ServiceAccount `sa`, as the cluster holds it, carries `role`.
async fn runs_as(api: &Client, wi: &Value, sa: &str, role: &str) -> Result<bool, ReconcileError> {
    let applied = api
        .list(
            WORKLOAD_RESOURCE_INSTANCE,
            &[(
                "workloadinstanceid",
                wi.id().unwrap_or_default().to_string(),
            )],
        )
        .await?;
    Ok(applied.iter().any(|r| {
        let body = r.get("RuntimeDefinition").unwrap_or(&Value::Null);
        body["kind"] == "ServiceAccount"
            && body.pointer("/metadata/name") == Some(&json!(sa))
            && body
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ROLE_ANNOTATION))
                == Some(&json!(role))
    }))
}

/// The ServiceAccount the role is for must be one of the workload's objects.
async fn check_service_account(api: &Client, wi: &Value, sa: &str) -> Result<(), ReconcileError> {
    let def_id = wi.id_field("WorkloadDefinitionID").unwrap_or_default();
    let objects = api
        .list(
            WORKLOAD_RESOURCE_DEFINITION,
            &[("workloaddefinitionid", def_id.to_string())],
        )
        .await?;
    let found = objects.iter().any(|o| {
        let body = o.get("JSONDefinition").unwrap_or(&Value::Null);
        body["kind"] == "ServiceAccount" && body.pointer("/metadata/name") == Some(&json!(sa))
    });
    if found {
        Ok(())
    } else {
        Err(ReconcileError::Permanent(format!(
            "WorkloadServiceAccountName: ServiceAccount {sa:?} is not among WorkloadInstance {:?}'s objects; add it to the workload's manifest (the bucket's role is bound to it)",
            wi.name()
        )))
    }
}

/// What a bucket asks of its workload's objects.
pub struct Injection {
    pub service_account: String,
    pub role_arn: String,
    pub env_var: String,
    pub bucket: String,
}

/// The injections of workload instance `wi_id`'s buckets (those with a role, not deleting).
pub async fn injections(api: &Client, wi_id: u64) -> Result<Vec<Injection>, ReconcileError> {
    let mut out = Vec::new();
    for b in api
        .list(
            AWS_OBJECT_STORAGE_BUCKET_INSTANCE,
            &[("workloadinstanceid", wi_id.to_string())],
        )
        .await?
    {
        if b.is_deleting() || b.str_field("RoleArn").is_empty() {
            continue;
        }
        let def = api
            .get(
                AWS_OBJECT_STORAGE_BUCKET_DEFINITION,
                b.id_field("AwsObjectStorageBucketDefinitionID")
                    .unwrap_or_default(),
            )
            .await?;
        out.push(Injection {
            service_account: def.str_field("WorkloadServiceAccountName").to_string(),
            role_arn: b.str_field("RoleArn").to_string(),
            env_var: def.str_field("WorkloadBucketEnvVar").to_string(),
            bucket: b.str_field("BucketName").to_string(),
        });
    }
    Ok(out)
}

/// `obj` as the workload applies it: its ServiceAccount annotated with the role, and the bucket's
/// env var in every container of a pod template that runs as that ServiceAccount.
pub fn inject(obj: &Value, injections: &[Injection]) -> Value {
    let mut out = obj.clone();
    for i in injections {
        if i.service_account.is_empty() {
            continue;
        }
        if out["kind"] == "ServiceAccount"
            && out.pointer("/metadata/name") == Some(&json!(i.service_account))
        {
            out["metadata"]["annotations"][ROLE_ANNOTATION] = json!(i.role_arn);
        }
        if i.env_var.is_empty() {
            continue;
        }
        for path in [
            "/spec/template/spec",
            "/spec/jobTemplate/spec/template/spec",
        ] {
            let Some(pod) = out.pointer_mut(path) else {
                continue;
            };
            if pod.get("serviceAccountName") != Some(&json!(i.service_account)) {
                continue;
            }
            for list in ["containers", "initContainers"] {
                let Some(containers) = pod.get_mut(list).and_then(Value::as_array_mut) else {
                    continue;
                };
                for c in containers {
                    let env = c
                        .as_object_mut()
                        .map(|m| m.entry("env").or_insert_with(|| json!([])));
                    if let Some(Value::Array(env)) = env {
                        env.retain(|e| e["name"] != json!(i.env_var));
                        env.push(json!({"name": i.env_var, "value": i.bucket}));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_gets_the_role_and_the_bucket() {
        let i = [Injection {
            service_account: "s3-client".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            env_var: "S3_BUCKET_NAME".into(),
            bucket: "b".into(),
        }];
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "s3-client"}});
        assert_eq!(
            inject(&sa, &i)["metadata"]["annotations"][ROLE_ANNOTATION],
            "arn:aws:iam::1:role/r"
        );
        let other = json!({"kind": "ServiceAccount", "metadata": {"name": "other"}});
        assert_eq!(inject(&other, &i), other);
        let d = json!({"kind": "Deployment", "metadata": {"name": "w"}, "spec": {"template": {"spec": {
            "serviceAccountName": "s3-client",
            "containers": [{"name": "a", "env": [{"name": "S3_BUCKET_NAME", "value": "old"}, {"name": "X", "value": "1"}]}, {"name": "b"}]}}}});
        let out = inject(&d, &i);
        let env = |n: usize| out["spec"]["template"]["spec"]["containers"][n]["env"].clone();
        assert_eq!(
            env(0),
            json!([{"name": "X", "value": "1"}, {"name": "S3_BUCKET_NAME", "value": "b"}])
        );
        assert_eq!(env(1), json!([{"name": "S3_BUCKET_NAME", "value": "b"}]));
        let default_sa = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        assert_eq!(inject(&default_sa, &i), default_sa);
        assert!(valid_bucket_name("s3-client-bucket"));
        assert!(
            !valid_bucket_name("S3") && !valid_bucket_name("ab") && !valid_bucket_name("a_b-c")
        );
    }
}
