//! The secret controller. A `SecretDefinition` holds the data: with an `AwsAccountID` it goes to
//! AWS Secrets Manager and leaves our database (upstream keeps it out too), otherwise it stays in
//! the API's encrypted store. A `SecretInstance` puts that data into its workload's namespace as
//! a Kubernetes Secret, recorded as one of the workload's resources so it is deleted with it.
//! A changed definition re-applies its instances, so the cluster Secret follows.

use crate::aws::{AwsAccess, reconcile_error};
use crate::cluster::{self, Clients, INSTANCE_LABEL};
use crate::dependency::{self, Placement};
use crate::runtime::{Outcome, ReconcileError, Reconciler};
use crate::workload::instance_namespace;
use aws_sdk_secretsmanager::types::Tag;
use base64::Engine;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use threeport_api::kinds::{self, KUBERNETES_RUNTIME_INSTANCE, SECRET_DEFINITION, SECRET_INSTANCE};
use threeport_api::{Client, Kind, ObjectExt};
use threeport_eks::{AwsResultExt, Found};

/// The tag that marks a Secrets Manager secret as this definition's (its ID), so a secret of
/// the same name that someone else made is never overwritten or deleted.
const DEFINITION_TAG: &str = "threeport.io/secret-definition";
const INSTANCE_SECRET_LABEL: &str = "threeport.io/secret-instance";
/// How soon an instance waiting for its definition or its workload looks again.
const WAIT: Duration = Duration::from_secs(1);

pub struct SecretReconciler {
    pub clients: Arc<Clients>,
    pub aws: AwsAccess,
}

impl Reconciler for SecretReconciler {
    fn name(&self) -> &'static str {
        "secret-controller"
    }

    fn kinds(&self) -> Vec<&'static Kind> {
        kinds::served_by("secret").collect()
    }

    async fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if std::ptr::eq(kind, SECRET_DEFINITION) {
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
        if std::ptr::eq(kind, SECRET_DEFINITION) {
            self.forget(api, &object).await
        } else {
            self.remove(api, &object).await
        }
    }
}

/// `Data` as the string map a Kubernetes Secret holds: scalars are written as text, anything
/// nested is refused (no Secret could hold it).
fn string_data(data: &Value) -> Result<Map<String, Value>, String> {
    let Some(map) = data.as_object().filter(|m| !m.is_empty()) else {
        return Err("Data is empty: give the secret's keys and values (Data: {KEY: value})".into());
    };
    let mut out = Map::new();
    for (k, v) in map {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "Data: key {k:?} holds a {}; each value must be a string",
                    if v.is_array() { "list" } else { "mapping" }
                ));
            }
        };
        out.insert(k.clone(), Value::String(text));
    }
    Ok(out)
}

impl SecretReconciler {
    async fn secrets_manager(
        &self,
        api: &Client,
        account_id: u64,
    ) -> Result<(aws_sdk_secretsmanager::Client, String), ReconcileError> {
        let account = self.aws.account(api, account_id).await?;
        Ok((
            aws_sdk_secretsmanager::Client::new(&account.config),
            account.name,
        ))
    }

    async fn definition(&self, api: &Client, def: Value) -> Result<Outcome, ReconcileError> {
        let id = def.id().unwrap_or_default();
        let data = def.get("Data").filter(|d| !d.is_null());
        let Some(account_id) = def.id_field("AwsAccountID") else {
            string_data(data.unwrap_or(&Value::Null)).map_err(ReconcileError::Permanent)?;
            self.reapply_instances(api, id).await?;
            return Ok(Outcome::DoneWith(json!({
                "Status": "Healthy",
                "StatusReason": "stored encrypted in the control plane (no AwsAccount named)",
            })));
        };
        let (sm, account) = self.secrets_manager(api, account_id).await?;
        let name = def.name();
        let Some(data) = data else {
            // Already handed over: check it is still there.
            let arn = def.str_field("AwsSecretArn");
            if arn.is_empty() {
                return Err(ReconcileError::Permanent(
                    "Data is empty: give the secret's keys and values (Data: {KEY: value})".into(),
                ));
            }
            let found = sm
                .describe_secret()
                .secret_id(arn)
                .send()
                .await
                .aws("DescribeSecret")
                .found()
                .map_err(reconcile_error)?;
            if found.is_none() {
                return Err(ReconcileError::Permanent(format!(
                    "secret {name} is gone from AWS Secrets Manager in account {account}; apply the SecretDefinition again with its Data"
                )));
            }
            return Ok(Outcome::DoneWith(json!({
                "Status": "Healthy",
                "StatusReason": format!("stored in AWS Secrets Manager in account {account}"),
            })));
        };
        let text = Value::Object(string_data(data).map_err(ReconcileError::Permanent)?).to_string();
        let created = sm
            .create_secret()
            .name(name)
            .secret_string(&text)
            .tags(
                Tag::builder()
                    .key(DEFINITION_TAG)
                    .value(id.to_string())
                    .build(),
            )
            .send()
            .await
            .aws("CreateSecret");
        let arn = match created {
            Ok(out) => out.arn().unwrap_or_default().to_string(),
            Err(e) if e.has_code("ResourceExistsException") => {
                // Ours from an earlier attempt (or an earlier Data): update it. Anyone else's:
                // leave it alone.
                let existing = sm
                    .describe_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .aws("DescribeSecret")
                    .map_err(reconcile_error)?;
                let ours = existing
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some(DEFINITION_TAG) && t.value() == Some(&id.to_string()));
                if !ours {
                    return Err(ReconcileError::Permanent(format!(
                        "{e}; that secret in account {account} was not made for this SecretDefinition, so it is left alone: rename the SecretDefinition or delete that secret"
                    )));
                }
                sm.put_secret_value()
                    .secret_id(name)
                    .secret_string(&text)
                    .send()
                    .await
                    .aws("PutSecretValue")
                    .map_err(reconcile_error)?;
                existing.arn().unwrap_or_default().to_string()
            }
            Err(e) => return Err(reconcile_error(e)),
        };
        self.reapply_instances(api, id).await?;
        Ok(Outcome::DoneWith(json!({
            "AwsSecretArn": arn,
            // Out of our database, now that Secrets Manager holds it.
            "Data": null,
            "Status": "Healthy",
            "StatusReason": format!("stored in AWS Secrets Manager in account {account}"),
        })))
    }

    /// New data: every reconciled instance writes it again.
    async fn reapply_instances(&self, api: &Client, def_id: u64) -> Result<(), ReconcileError> {
        for inst in api
            .list(
                SECRET_INSTANCE,
                &[("secretdefinitionid", def_id.to_string())],
            )
            .await?
        {
            if inst.is_reconciled() && !inst.is_deleting() && !inst.is_set("CreationFailed") {
                api.patch(
                    SECRET_INSTANCE,
                    inst.id().unwrap_or_default(),
                    &json!({"Reconciled": false}),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The definition's data, wherever it is kept.
    async fn data_of(
        &self,
        api: &Client,
        def: &Value,
    ) -> Result<Map<String, Value>, ReconcileError> {
        let Some(account_id) = def.id_field("AwsAccountID") else {
            return string_data(def.get("Data").unwrap_or(&Value::Null))
                .map_err(ReconcileError::Permanent);
        };
        let (sm, account) = self.secrets_manager(api, account_id).await?;
        let arn = def.str_field("AwsSecretArn");
        let id = if arn.is_empty() { def.name() } else { arn };
        let out = sm
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .aws("GetSecretValue")
            .map_err(reconcile_error)?;
        let parsed: Value =
            serde_json::from_str(out.secret_string().unwrap_or_default()).map_err(|e| {
                ReconcileError::Permanent(format!(
                    "secret {} in account {account} is not a JSON object of strings: {e}",
                    def.name()
                ))
            })?;
        string_data(&parsed).map_err(ReconcileError::Permanent)
    }

    async fn instance(&self, api: &Client, inst: Value) -> Result<Outcome, ReconcileError> {
        let id = inst.id().unwrap_or_default();
        let def_id = inst.id_field("SecretDefinitionID").unwrap_or_default();
        let def = api.get_revealed(SECRET_DEFINITION, def_id).await?;
        if def.is_set("CreationFailed") {
            return Err(ReconcileError::Permanent(format!(
                "its SecretDefinition {:?} failed: {}",
                def.name(),
                def.status_reason().unwrap_or("see its events")
            )));
        }
        if !def.is_reconciled() {
            let why = format!("waiting for SecretDefinition {:?} to be stored", def.name());
            return dependency::wait(api, SECRET_INSTANCE, &inst, why, WAIT).await;
        }
        let (wi, rid) = match dependency::placement(api, &inst, "a SecretInstance").await? {
            Placement::Ready(wi, rid) => (wi, rid),
            Placement::Waiting(why) => {
                return dependency::wait(api, SECRET_INSTANCE, &inst, why, WAIT).await;
            }
        };
        let wi_id = wi.id().unwrap_or_default();
        let data = self.data_of(api, &def).await?;
        let runtime = api.get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
        let cluster = self.clients.get(&runtime).await?;
        let ns = instance_namespace(wi.name());
        let b64 = base64::engine::general_purpose::STANDARD;
        let encoded: Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.clone(), json!(b64.encode(v.as_str().unwrap_or_default()))))
            .collect();
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": def.name()},
            "data": encoded,
        });
        let labels = [
            (INSTANCE_LABEL, wi_id.to_string()),
            (INSTANCE_SECRET_LABEL, id.to_string()),
            ("app.kubernetes.io/managed-by", "threeport".to_string()),
        ];
        cluster::apply(&cluster, secret, &ns, &labels).await?;
        // Recorded without its data: only the identity, so the workload's delete finds it.
        let identity = json!({"apiVersion": "v1", "kind": "Secret",
                              "metadata": {"name": def.name(), "namespace": ns}});
        dependency::record(
            api,
            wi_id,
            &dependency::name(SECRET_INSTANCE, &inst),
            identity,
        )
        .await?;
        Ok(Outcome::DoneWith(json!({
            "KubernetesRuntimeInstanceID": rid,
            "Status": "Healthy",
            "StatusReason": format!("Secret {} in namespace {ns} holds {} keys", def.name(), data.len()),
        })))
    }

    /// Delete the instance's cluster Secret and its record.
    async fn remove(&self, api: &Client, inst: &Value) -> Result<Outcome, ReconcileError> {
        let dep = dependency::name(SECRET_INSTANCE, inst);
        dependency::remove(api, &self.clients, inst, &dep).await?;
        Ok(Outcome::Done)
    }

    /// Delete the definition's Secrets Manager secret (only one this definition made).
    async fn forget(&self, api: &Client, def: &Value) -> Result<Outcome, ReconcileError> {
        let arn = def.str_field("AwsSecretArn");
        let Some(account_id) = def.id_field("AwsAccountID").filter(|_| !arn.is_empty()) else {
            return Ok(Outcome::Done);
        };
        let (sm, _) = self.secrets_manager(api, account_id).await?;
        sm.delete_secret()
            .secret_id(arn)
            .force_delete_without_recovery(true)
            .send()
            .await
            .aws("DeleteSecret")
            .found()
            .map_err(reconcile_error)?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_a_map_of_strings() {
        let d = string_data(&json!({"user": "admin", "port": 5432, "tls": true})).unwrap();
        assert_eq!(d["port"], "5432");
        assert_eq!(d["tls"], "true");
        assert!(
            string_data(&json!({}))
                .unwrap_err()
                .starts_with("Data is empty")
        );
        assert!(string_data(&Value::Null).is_err());
        assert_eq!(
            string_data(&json!({"nested": {"a": 1}})).unwrap_err(),
            "Data: key \"nested\" holds a mapping; each value must be a string"
        );
    }
}
