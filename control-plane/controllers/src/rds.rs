//! The aws controller (`AwsReconciler`: databases here, buckets in [`crate::bucket`], EKS
//! runtimes in [`crate::eks_runtime`]) and its
//! relational databases. An `AwsRelationalDatabaseInstance` is created in
//! its workload's runtime's VPC (an EKS runtime's, from its `ResourceInventory`): a DB subnet
//! group on the runtime's subnets, a security group that admits only the cluster's security
//! group on the database port, and the RDS instance, with a generated master password that is
//! stored only encrypted. Once the database is available its connection goes into the
//! workload's namespace as the Secret `WorkloadSecretName` (upstream's keys `db-endpoint`,
//! `db-port`, `db-name`, `db-user`, `db-password`), recorded as one of the workload's resources,
//! and the workload is reconciled again so its pods pick the Secret up.
//!
//! Each AWS resource is recorded in the instance's `ResourceInventory` as soon as AWS returns
//! it, so a restarted controller carries on rather than creating a second one; one found by
//! name is adopted only when it carries this instance's tag. Delete goes in reverse.

use crate::aws::{AwsAccess, reconcile_error};
use crate::bucket::Bucket;
use crate::cluster::{self, Clients, INSTANCE_LABEL};
use crate::dependency::{self, Placement};
use crate::eks::{Network, network_of};
use crate::runtime::{Outcome, ReconcileError, Reconciler};
use crate::workload::instance_namespace;
use aws_sdk_ec2::types::{Filter, IpPermission, ResourceType, TagSpecification, UserIdGroupPair};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use threeport_api::kinds::{
    self, AWS_OBJECT_STORAGE_BUCKET_INSTANCE, AWS_RELATIONAL_DATABASE_DEFINITION,
    AWS_RELATIONAL_DATABASE_INSTANCE, KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_INSTANCE,
};
use threeport_api::{Client, Kind, ObjectExt, services};
use threeport_eks::{AwsResultExt, Found};

/// The tag on every AWS resource of a database: the instance's ID.
const TAG: &str = "threeport.io/relational-database-instance";
const MASTER_USER: &str = "threeport";
/// How often a database that is being created or deleted is looked at again.
const POLL: Duration = Duration::from_secs(3);

pub struct AwsReconciler {
    pub clients: Arc<Clients>,
    pub aws: AwsAccess,
}

impl Reconciler for AwsReconciler {
    fn name(&self) -> &'static str {
        "aws-controller"
    }

    fn kinds(&self) -> Vec<&'static Kind> {
        kinds::served_by("aws").collect()
    }

    async fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if kind.role == kinds::Role::Definition {
            // Checked by the API on write (engine, version, size, ranges); its instances make
            // the databases and buckets.
            return Ok(Outcome::DoneWith(json!({
                "Status": "Healthy",
                "StatusReason": "checked; each instance creates its own resources",
            })));
        }
        if std::ptr::eq(kind, AWS_OBJECT_STORAGE_BUCKET_INSTANCE) {
            let bucket = Bucket::load(api, &self.aws, &object).await?;
            return bucket.apply(api, object).await;
        }
        if std::ptr::eq(kind, kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE) {
            return crate::eks_runtime::apply(api, &self.aws, object).await;
        }
        let db = Database::load(api, &self.aws, &object).await?;
        db.apply(api, &self.clients, object).await
    }

    async fn cleanup(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if kind.role == kinds::Role::Definition {
            return Ok(Outcome::Done);
        }
        if std::ptr::eq(kind, AWS_OBJECT_STORAGE_BUCKET_INSTANCE) {
            let bucket = Bucket::load(api, &self.aws, &object).await?;
            return bucket.delete(api, &object).await;
        }
        if std::ptr::eq(kind, kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE) {
            return crate::eks_runtime::delete(api, &self.aws, &object).await;
        }
        let db = Database::load(api, &self.aws, &object).await?;
        db.delete(api, &self.clients, &object).await
    }
}

/// One database instance with what it needs: its definition, its account's clients.
struct Database {
    def: Value,
    account: String,
    rds: aws_sdk_rds::Client,
    ec2: aws_sdk_ec2::Client,
    /// The RDS identifier (the instance's name).
    id: String,
}

/// What the instance's `ResourceInventory` records, by kind.
#[derive(Default, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Recorded {
    #[serde(default, rename = "DBSubnetGroup")]
    subnet_group: Option<String>,
    #[serde(default, rename = "SecurityGroup")]
    security_group: Option<String>,
    #[serde(default, rename = "DBInstance")]
    instance: Option<String>,
}

impl Recorded {
    /// What `inst`'s `ResourceInventory` says was made (nothing, before the first step).
    fn of(inst: &Value) -> Recorded {
        inst.get("ResourceInventory")
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

fn valid_identifier(id: &str) -> bool {
    id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--")
}

fn generate_password() -> String {
    // RDS refuses `/`, `"`, `@` and spaces; letters and digits need no quoting anywhere.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Database {
    async fn load(api: &Client, aws: &AwsAccess, inst: &Value) -> Result<Database, ReconcileError> {
        let def_id = inst
            .id_field("AwsRelationalDatabaseDefinitionID")
            .unwrap_or_default();
        let def = api.get(AWS_RELATIONAL_DATABASE_DEFINITION, def_id).await?;
        let account_id = def.id_field("AwsAccountID").unwrap_or_default();
        let account = aws.account(api, account_id).await?;
        let id = inst.name().to_string();
        if !valid_identifier(&id) {
            return Err(ReconcileError::Permanent(format!(
                "Name: {id:?} is not a valid RDS identifier: lowercase letters, digits and single hyphens, starting with a letter, at most 63 characters"
            )));
        }
        Ok(Database {
            rds: aws_sdk_rds::Client::new(&account.config),
            ec2: aws_sdk_ec2::Client::new(&account.config),
            account: account.name,
            def,
            id,
        })
    }

    fn port(&self) -> i64 {
        self.def
            .get("DatabasePort")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| services::default_port(self.def.str_field("Engine")))
    }

    fn resource_name(&self, what: &str) -> String {
        format!("threeport-{}-{what}", self.id)
    }

    async fn apply(
        &self,
        api: &Client,
        clients: &Clients,
        inst: Value,
    ) -> Result<Outcome, ReconcileError> {
        let iid = inst.id().unwrap_or_default();
        let (wi, rid) = match dependency::placement(api, &inst, "a database").await? {
            Placement::Ready(wi, rid) => (wi, rid),
            Placement::Waiting(why) => {
                return dependency::wait(api, AWS_RELATIONAL_DATABASE_INSTANCE, &inst, why, POLL)
                    .await;
            }
        };
        let Some(network) = network_of(api, rid).await? else {
            let why = format!(
                "waiting for EKS runtime {rid} to be provisioned: its AwsEksKubernetesRuntimeInstance has no VPC, subnets and security group in its ResourceInventory yet"
            );
            return dependency::wait(api, AWS_RELATIONAL_DATABASE_INSTANCE, &inst, why, POLL).await;
        };
        let mut rec = Recorded::of(&inst);
        // The password first, so a crash after CreateDBInstance never leaves a database whose
        // password nobody knows.
        let mut password = inst.str_field("MasterPassword").to_string();
        if password.is_empty() {
            password = generate_password();
            api.patch(
                AWS_RELATIONAL_DATABASE_INSTANCE,
                iid,
                &json!({"MasterPassword": password}),
            )
            .await?;
        }
        if rec.subnet_group.is_none() {
            rec.subnet_group = Some(self.subnet_group(iid, &network.subnets).await?);
            record(api, iid, &rec).await?;
        }
        if rec.security_group.is_none() {
            rec.security_group = Some(self.security_group(iid, &network).await?);
            record(api, iid, &rec).await?;
        }
        if rec.instance.is_none() {
            self.create_instance(iid, &rec, &password).await?;
            rec.instance = Some(self.id.clone());
            record(api, iid, &rec).await?;
        }
        let found = self.describe().await?;
        let Some(db) = found else {
            // Recorded but gone (deleted behind our back): create it again next time.
            rec.instance = None;
            record(api, iid, &rec).await?;
            return Ok(Outcome::RequeueAfter(Duration::ZERO));
        };
        let state = db.db_instance_status().unwrap_or("unknown");
        if state != "available" {
            let why = format!("Provisioning: RDS instance {} is {state}", self.id);
            return progressing(api, &inst, why).await;
        }
        let endpoint = db.endpoint().and_then(|e| e.address()).unwrap_or_default();
        let port = db
            .endpoint()
            .and_then(|e| e.port())
            .map(i64::from)
            .unwrap_or_else(|| self.port());
        let address = format!("{endpoint}:{port}");
        self.connection_secret(api, clients, &inst, &wi, rid, endpoint, port, &password)
            .await?;
        // Pods read the Secret when they start: run the workload's reconcile again the first
        // time the database answers (or when its address changed).
        if inst.str_field("Endpoint") != address && wi.is_reconciled() {
            api.patch(
                WORKLOAD_INSTANCE,
                wi.id().unwrap_or_default(),
                &json!({"Reconciled": false}),
            )
            .await?;
        }
        Ok(Outcome::DoneWith(json!({
            "Endpoint": address,
            "Status": "Healthy",
            "StatusReason": format!("RDS instance {} is available at {address}", self.id),
        })))
    }

    async fn subnet_group(&self, iid: u64, subnets: &[String]) -> Result<String, ReconcileError> {
        let name = self.resource_name("subnets");
        let created = self
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(&name)
            .db_subnet_group_description(format!("threeport database {}", self.id))
            .set_subnet_ids(Some(subnets.to_vec()))
            .tags(rds_tag(iid))
            .send()
            .await
            .aws("CreateDBSubnetGroup");
        match created {
            Ok(_) => Ok(name),
            // Made by an earlier attempt that crashed before recording it: the name is ours.
            Err(e) if e.has_code("DBSubnetGroupAlreadyExists") => Ok(name),
            Err(e) => Err(reconcile_error(e)),
        }
    }

    async fn security_group(&self, iid: u64, network: &Network) -> Result<String, ReconcileError> {
        let name = self.resource_name("db");
        let found = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values(&name).build())
            .filters(
                Filter::builder()
                    .name("vpc-id")
                    .values(&network.vpc)
                    .build(),
            )
            .send()
            .await
            .aws("DescribeSecurityGroups")
            .map_err(reconcile_error)?;
        if let Some(g) = found.security_groups().first() {
            let ours = g
                .tags()
                .iter()
                .any(|t| t.key() == Some(TAG) && t.value() == Some(iid.to_string().as_str()));
            if !ours {
                return Err(ReconcileError::Permanent(format!(
                    "security group {name} already exists in {} and was not made for this database; delete it or rename the database",
                    network.vpc
                )));
            }
            return Ok(g.group_id().unwrap_or_default().to_string());
        }
        let created = self
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(format!("threeport database {}: the cluster only", self.id))
            .vpc_id(&network.vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key(TAG)
                            .value(iid.to_string())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .aws("CreateSecurityGroup")
            .map_err(reconcile_error)?;
        let group = created.group_id().unwrap_or_default().to_string();
        let port = self.port() as i32;
        self.ec2
            .authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(port)
                    .to_port(port)
                    .user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(&network.cluster_security_group)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .aws("AuthorizeSecurityGroupIngress")
            .map_err(reconcile_error)?;
        Ok(group)
    }

    async fn create_instance(
        &self,
        iid: u64,
        rec: &Recorded,
        password: &str,
    ) -> Result<(), ReconcileError> {
        let d = &self.def;
        let engine = d.str_field("Engine");
        let size = d.str_field("MachineSize");
        let class = services::instance_class(if size.is_empty() { "XSmall" } else { size })
            .unwrap_or("db.t3.micro");
        let mut req = self
            .rds
            .create_db_instance()
            .db_instance_identifier(&self.id)
            .engine(engine)
            .db_instance_class(class)
            .allocated_storage(d.get("StorageGb").and_then(Value::as_i64).unwrap_or(20) as i32)
            .master_username(MASTER_USER)
            .master_user_password(password)
            .port(self.port() as i32)
            .set_db_subnet_group_name(rec.subnet_group.clone())
            .set_vpc_security_group_ids(rec.security_group.clone().map(|g| vec![g]))
            .publicly_accessible(false)
            .tags(rds_tag(iid));
        if !d.str_field("EngineVersion").is_empty() {
            req = req.engine_version(d.str_field("EngineVersion"));
        }
        if !d.str_field("DatabaseName").is_empty() {
            req = req.db_name(d.str_field("DatabaseName"));
        }
        if let Some(days) = d.get("BackupDays").and_then(Value::as_i64) {
            req = req.backup_retention_period(days as i32);
        }
        match req.send().await.aws("CreateDBInstance") {
            Ok(_) => Ok(()),
            Err(e) if e.has_code("DBInstanceAlreadyExists") => {
                // Ours only if an earlier attempt made it (and crashed before recording it).
                let ours = self.describe().await?.is_some_and(|db| {
                    db.tag_list().iter().any(|t| {
                        t.key() == Some(TAG) && t.value() == Some(iid.to_string().as_str())
                    })
                });
                if ours {
                    Ok(())
                } else {
                    Err(ReconcileError::Permanent(format!(
                        "{e} (in account {}; it was not made for this database: choose another Name)",
                        self.account
                    )))
                }
            }
            Err(e) => Err(reconcile_error(e)),
        }
    }

    async fn describe(&self) -> Result<Option<aws_sdk_rds::types::DbInstance>, ReconcileError> {
        match self
            .rds
            .describe_db_instances()
            .db_instance_identifier(&self.id)
            .send()
            .await
            .aws("DescribeDBInstances")
        {
            Ok(out) => Ok(out.db_instances().first().cloned()),
            Err(e) if e.has_code("DBInstanceNotFound") => Ok(None),
            Err(e) => Err(reconcile_error(e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn connection_secret(
        &self,
        api: &Client,
        clients: &Clients,
        inst: &Value,
        wi: &Value,
        rid: u64,
        endpoint: &str,
        port: i64,
        password: &str,
    ) -> Result<(), ReconcileError> {
        let name = self.def.str_field("WorkloadSecretName");
        if name.is_empty() {
            return Ok(());
        }
        let wi_id = wi.id().unwrap_or_default();
        let ns = instance_namespace(wi.name());
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name},
            "data": {
                "db-endpoint": b64.encode(endpoint),
                "db-port": b64.encode(port.to_string()),
                "db-name": b64.encode(self.def.str_field("DatabaseName")),
                "db-user": b64.encode(MASTER_USER),
                "db-password": b64.encode(password),
            },
        });
        let runtime = api.get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
        let cluster = clients.get(&runtime).await?;
        let labels = [
            (INSTANCE_LABEL, wi_id.to_string()),
            ("app.kubernetes.io/managed-by", "threeport".to_string()),
        ];
        cluster::apply(&cluster, secret, &ns, &labels).await?;
        let identity = json!({"apiVersion": "v1", "kind": "Secret",
                              "metadata": {"name": name, "namespace": ns}});
        dependency::record(
            api,
            wi_id,
            &dependency::name(AWS_RELATIONAL_DATABASE_INSTANCE, inst),
            identity,
        )
        .await
    }

    async fn delete(
        &self,
        api: &Client,
        clients: &Clients,
        inst: &Value,
    ) -> Result<Outcome, ReconcileError> {
        let iid = inst.id().unwrap_or_default();
        let dep = dependency::name(AWS_RELATIONAL_DATABASE_INSTANCE, inst);
        dependency::remove(api, clients, inst, &dep).await?;
        let mut rec = Recorded::of(inst);
        if rec.instance.is_some() {
            match self.describe().await? {
                None => {
                    rec.instance = None;
                    record(api, iid, &rec).await?;
                }
                Some(db) if db.db_instance_status() == Some("deleting") => {
                    return progressing(api, inst, format!("RDS instance {} is deleting", self.id))
                        .await;
                }
                Some(_) => {
                    let skip = self.def.get("SkipFinalSnapshot") == Some(&Value::Bool(true));
                    let mut req = self
                        .rds
                        .delete_db_instance()
                        .db_instance_identifier(&self.id)
                        .skip_final_snapshot(skip);
                    if !skip {
                        req = req.final_db_snapshot_identifier(format!(
                            "{}-final-{}",
                            self.id,
                            time::OffsetDateTime::now_utc().unix_timestamp()
                        ));
                    }
                    match req.send().await.aws("DeleteDBInstance") {
                        Ok(_) => {}
                        Err(e) if e.has_code("DBInstanceNotFound") => {}
                        Err(e) => return Err(reconcile_error(e)),
                    }
                    // Look again: it is gone, or still deleting.
                    return Ok(Outcome::RequeueAfter(Duration::ZERO));
                }
            }
        }
        if let Some(group) = rec.security_group.clone() {
            self.ec2
                .delete_security_group()
                .group_id(&group)
                .send()
                .await
                .aws("DeleteSecurityGroup")
                .found()
                .map_err(reconcile_error)?;
            rec.security_group = None;
            record(api, iid, &rec).await?;
        }
        if let Some(group) = rec.subnet_group.clone() {
            match self
                .rds
                .delete_db_subnet_group()
                .db_subnet_group_name(&group)
                .send()
                .await
                .aws("DeleteDBSubnetGroup")
            {
                Ok(_) => {}
                Err(e) if e.has_code("DBSubnetGroupNotFoundFault") => {}
                Err(e) => return Err(reconcile_error(e)),
            }
        }
        Ok(Outcome::Done)
    }
}

fn rds_tag(iid: u64) -> aws_sdk_rds::types::Tag {
    aws_sdk_rds::types::Tag::builder()
        .key(TAG)
        .value(iid.to_string())
        .build()
}

async fn record(api: &Client, iid: u64, rec: &Recorded) -> Result<(), ReconcileError> {
    api.patch(
        AWS_RELATIONAL_DATABASE_INSTANCE,
        iid,
        &json!({"ResourceInventory": rec}),
    )
    .await?;
    Ok(())
}

/// Work under way in AWS: `Progressing` with what it is, then look again.
async fn progressing(api: &Client, inst: &Value, why: String) -> Result<Outcome, ReconcileError> {
    if inst.status_reason() != Some(why.as_str()) || inst.status() != Some("Progressing") {
        api.patch(
            AWS_RELATIONAL_DATABASE_INSTANCE,
            inst.id().unwrap_or_default(),
            &json!({"Status": "Progressing", "StatusReason": why}),
        )
        .await?;
    }
    Ok(Outcome::RequeueAfter(POLL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_passwords_are_what_rds_takes() {
        assert!(valid_identifier("wordpress-db"));
        for bad in ["Wordpress", "1db", "db-", "a--b", "db_1", ""] {
            assert!(!valid_identifier(bad), "{bad}");
        }
        let p = generate_password();
        assert_eq!(p.len(), 32);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, generate_password());
    }
}
