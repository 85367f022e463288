//! Domain names (`DomainNameInstance`): the DNS records that send a host to its gateway,
//! written straight to Route53.
//!
//! With `Zone: Public`, the account is the runtime's (an EKS runtime's account), else the one
//! marked `DefaultAccount`. The hosted zone is the public one named `Domain`. For every
//! gateway of the same workload whose definition names this domain, the record
//! `SubDomain.Domain` is UPSERTed to the gateway's published address: an `A` record for an IP
//! address, a `CNAME` for a hostname (a cloud load balancer's). What was written is kept in the
//! instance's `Records`, so a record no gateway wants any more, and every record on delete, is
//! removed exactly. A gateway whose address changes asks for this reconcile again.

use crate::aws::{AwsAccess, reconcile_error};
use crate::dependency::{self, Placement};
use crate::runtime::{Outcome, ReconcileError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::kinds::{
    AWS_ACCOUNT, AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
    DOMAIN_NAME_DEFINITION, DOMAIN_NAME_INSTANCE, GATEWAY_DEFINITION, GATEWAY_INSTANCE,
};
use threeport_api::{Client, ObjectExt};
use threeport_eks::AwsResultExt;

/// Records are short-lived so a moved gateway is followed quickly.
const TTL: i64 = 60;
/// How soon a domain name that waits (for an account, for a gateway's address) looks again.
const WAIT: Duration = Duration::from_secs(2);
const PENDING_RECHECK: Duration = Duration::from_secs(30);

/// One record as written (and as it must be named to be deleted).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub name: String,
    #[serde(rename = "Type")]
    pub ty: String,
    pub value: String,
    #[serde(rename = "TTL")]
    pub ttl: i64,
    pub hosted_zone_id: String,
    /// The GatewayInstance it points to.
    pub gateway: String,
}

/// The record type for an address: `A` for an IPv4 address, `AAAA` for IPv6, else `CNAME`.
pub fn record_type(address: &str) -> &'static str {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => "A",
        Ok(std::net::IpAddr::V6(_)) => "AAAA",
        Err(_) => "CNAME",
    }
}

/// `SubDomain.Domain`, or the domain itself without a subdomain.
pub fn host(sub_domain: &str, domain: &str) -> String {
    let domain = domain.trim_end_matches('.');
    match sub_domain.trim_matches('.') {
        "" => domain.to_string(),
        s => format!("{s}.{domain}"),
    }
}

fn recorded(inst: &Value) -> Vec<Record> {
    inst.get("Records")
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The AWS account DNS is written with: the runtime's (an EKS runtime's), else the default.
async fn account_for(api: &Client, runtime_id: u64) -> Result<Option<u64>, ReconcileError> {
    let eks = api
        .list(
            AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
            &[("kubernetesruntimeinstanceid", runtime_id.to_string())],
        )
        .await?;
    if let Some(def_id) = eks
        .first()
        .and_then(|e| e.id_field("AwsEksKubernetesRuntimeDefinitionID"))
    {
        let def = api
            .get(AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, def_id)
            .await?;
        if let Some(a) = def.id_field("AwsAccountID") {
            return Ok(Some(a));
        }
    }
    Ok(api
        .list(AWS_ACCOUNT, &[("defaultaccount", "true".into())])
        .await?
        .first()
        .and_then(|a| a.id()))
}

/// Say `Pending` with what is needed, and look again later (the fix is the user's: a default
/// account, a public zone).
async fn pending(api: &Client, inst: &Value, why: String) -> Result<Outcome, ReconcileError> {
    if inst.status() != Some("Pending") || inst.status_reason() != Some(why.as_str()) {
        api.patch(
            DOMAIN_NAME_INSTANCE,
            inst.id().unwrap_or_default(),
            &json!({"Status": "Pending", "StatusReason": why}),
        )
        .await?;
    }
    Ok(Outcome::RequeueAfter(PENDING_RECHECK))
}

/// What the reconcile works with: the definition, the Route53 client, the zone.
struct Zone {
    route53: aws_sdk_route53::Client,
    id: String,
    name: String,
    account: String,
}

enum Found {
    Zone(Zone),
    /// Cannot go on, and not a failure: why.
    Pending(String),
}

async fn zone_for(
    api: &Client,
    aws: &AwsAccess,
    def: &Value,
    runtime_id: u64,
) -> Result<Found, ReconcileError> {
    let domain = def.str_field("Domain").trim_end_matches('.').to_string();
    if def.str_field("Zone") == "Private" {
        return Ok(Found::Pending(format!(
            "Zone: Private needs a private hosted zone attached to the runtime's VPC, which this release does not manage; use Zone: Public for {domain}"
        )));
    }
    let Some(account_id) = account_for(api, runtime_id).await? else {
        return Ok(Found::Pending(format!(
            "no AWS account to write {domain}'s records with: the workload's runtime is not an EKS runtime and no AwsAccount is marked DefaultAccount; mark one DefaultAccount: true"
        )));
    };
    let account = aws.account(api, account_id).await?;
    let route53 = aws_sdk_route53::Client::new(&account.config);
    let zones = route53
        .list_hosted_zones_by_name()
        .dns_name(format!("{domain}."))
        .send()
        .await
        .aws("ListHostedZonesByName")
        .map_err(reconcile_error)?;
    let zone = zones.hosted_zones().iter().find(|z| {
        z.name().trim_end_matches('.') == domain && !z.config().is_some_and(|c| c.private_zone())
    });
    let Some(zone) = zone else {
        return Err(ReconcileError::Permanent(format!(
            "no Route53 hosted zone for {domain} in account {}",
            account.name
        )));
    };
    Ok(Found::Zone(Zone {
        route53,
        id: zone.id().trim_start_matches("/hostedzone/").to_string(),
        name: domain,
        account: account.name,
    }))
}

fn change(action: ChangeAction, r: &Record) -> Result<Change, ReconcileError> {
    let set = ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(RrType::from(r.ty.as_str()))
        .ttl(r.ttl)
        .resource_records(
            ResourceRecord::builder()
                .value(&r.value)
                .build()
                .map_err(|e| ReconcileError::Permanent(e.to_string()))?,
        )
        .build()
        .map_err(|e| ReconcileError::Permanent(e.to_string()))?;
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| ReconcileError::Permanent(e.to_string()))
}

async fn send(zone: &Zone, changes: Vec<Change>) -> Result<(), ReconcileError> {
    if changes.is_empty() {
        return Ok(());
    }
    let batch = ChangeBatch::builder()
        .set_changes(Some(changes))
        .build()
        .map_err(|e| ReconcileError::Permanent(e.to_string()))?;
    zone.route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .change_batch(batch)
        .send()
        .await
        .aws("ChangeResourceRecordSets")
        .map_err(reconcile_error)?;
    Ok(())
}

/// Whether Route53 holds `r` as written (read back, not assumed).
async fn holds(zone: &Zone, r: &Record) -> Result<bool, ReconcileError> {
    let out = zone
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .start_record_name(&r.name)
        .start_record_type(RrType::from(r.ty.as_str()))
        .max_items(1)
        .send()
        .await
        .aws("ListResourceRecordSets")
        .map_err(reconcile_error)?;
    Ok(out.resource_record_sets().iter().any(|s| {
        s.name().trim_end_matches('.') == r.name
            && s.r#type().as_str() == r.ty
            && s.resource_records()
                .iter()
                .any(|v| v.value().trim_end_matches('.') == r.value.trim_end_matches('.'))
    }))
}

pub async fn apply(api: &Client, aws: &AwsAccess, inst: Value) -> Result<Outcome, ReconcileError> {
    let id = inst.id().unwrap_or_default();
    let def_id = inst.id_field("DomainNameDefinitionID").unwrap_or_default();
    let def = api.get(DOMAIN_NAME_DEFINITION, def_id).await?;
    let (wi, runtime_id) = match dependency::placement(api, &inst, "a DomainNameInstance").await? {
        Placement::Ready(wi, rid) => (wi, rid),
        Placement::Waiting(why) => {
            return dependency::wait(api, DOMAIN_NAME_INSTANCE, &inst, why, WAIT).await;
        }
    };
    let zone = match zone_for(api, aws, &def, runtime_id).await? {
        Found::Zone(z) => z,
        Found::Pending(why) => return pending(api, &inst, why).await,
    };
    // The gateways of this workload that use this domain, and where they are published.
    let mut wanted = Vec::new();
    let mut waiting = Vec::new();
    for gw in api
        .list(
            GATEWAY_INSTANCE,
            &[(
                "workloadinstanceid",
                wi.id().unwrap_or_default().to_string(),
            )],
        )
        .await?
    {
        if gw.is_deleting() {
            continue;
        }
        let gdef = api
            .get(
                GATEWAY_DEFINITION,
                gw.id_field("GatewayDefinitionID").unwrap_or_default(),
            )
            .await?;
        if gdef.id_field("DomainNameDefinitionID") != Some(def_id) {
            continue;
        }
        let name = host(gdef.str_field("SubDomain"), &zone.name);
        let address = gw.str_field("Address");
        if address.is_empty() {
            waiting.push(format!(
                "waiting for GatewayInstance {:?} to be given an address",
                gw.name()
            ));
            continue;
        }
        let ty = record_type(address);
        if ty == "CNAME" && name == zone.name {
            return Err(ReconcileError::Permanent(format!(
                "GatewayInstance {:?} is published at a hostname ({address}), which the zone apex {name} cannot point to with a CNAME; set a SubDomain on its GatewayDefinition",
                gw.name()
            )));
        }
        wanted.push(Record {
            name,
            ty: ty.to_string(),
            value: address.to_string(),
            ttl: TTL,
            hosted_zone_id: zone.id.clone(),
            gateway: gw.name().to_string(),
        });
    }
    // Write what is wanted; remove what was written before and is not wanted now.
    let before = recorded(&inst);
    let mut changes = Vec::new();
    for r in &wanted {
        if !before.contains(r) {
            changes.push(change(ChangeAction::Upsert, r)?);
        }
    }
    for r in &before {
        let replaced = wanted.iter().any(|w| w.name == r.name && w.ty == r.ty);
        if !wanted.contains(r) && !replaced && r.hosted_zone_id == zone.id {
            changes.push(change(ChangeAction::Delete, r)?);
        }
    }
    send(&zone, changes).await?;
    // Record what was written before saying anything else, so a delete finds it.
    if before != wanted {
        api.patch(DOMAIN_NAME_INSTANCE, id, &json!({"Records": wanted}))
            .await?;
    }
    for r in &wanted {
        if !holds(&zone, r).await? {
            return Err(ReconcileError::Retryable(format!(
                "Route53 does not hold {} {} → {} yet",
                r.ty, r.name, r.value
            )));
        }
    }
    if !waiting.is_empty() {
        let why = waiting.join("; ");
        if inst.status() != Some("Progressing") || inst.status_reason() != Some(why.as_str()) {
            api.patch(
                DOMAIN_NAME_INSTANCE,
                id,
                &json!({"Status": "Progressing", "StatusReason": why}),
            )
            .await?;
        }
        return Ok(Outcome::RequeueAfter(WAIT));
    }
    let reason = if wanted.is_empty() {
        format!(
            "hosted zone {} ({}) of account {} found; no gateway of WorkloadInstance {:?} uses {} yet, so no record is written",
            zone.name,
            zone.id,
            zone.account,
            wi.name(),
            zone.name
        )
    } else {
        let recs: Vec<String> = wanted
            .iter()
            .map(|r| format!("{} → {} ({})", r.name, r.value, r.ty))
            .collect();
        format!(
            "{} in hosted zone {} ({}) of account {}",
            recs.join(", "),
            zone.name,
            zone.id,
            zone.account
        )
    };
    Ok(Outcome::DoneWith(
        json!({"Status": "Healthy", "StatusReason": reason}),
    ))
}

/// Remove every record this instance wrote.
pub async fn delete(
    api: &Client,
    aws: &AwsAccess,
    inst: &Value,
) -> Result<Outcome, ReconcileError> {
    let records = recorded(inst);
    if records.is_empty() {
        return Ok(Outcome::Done);
    }
    let def = api
        .get(
            DOMAIN_NAME_DEFINITION,
            inst.id_field("DomainNameDefinitionID").unwrap_or_default(),
        )
        .await?;
    let runtime_id = match dependency::placement(api, inst, "a DomainNameInstance").await {
        Ok(Placement::Ready(_, rid)) => rid,
        _ => {
            return Err(ReconcileError::Permanent(format!(
                "its {} record(s) cannot be removed: its workload's runtime is gone, so its AWS account is unknown; remove them in Route53 by hand",
                records.len()
            )));
        }
    };
    let zone = match zone_for(api, aws, &def, runtime_id).await {
        Ok(Found::Zone(z)) => z,
        // The zone itself is gone: so are its records.
        Err(e) if e.to_string().starts_with("no Route53 hosted zone") => return Ok(Outcome::Done),
        Ok(Found::Pending(why)) => return Err(ReconcileError::Permanent(why)),
        Err(e) => return Err(e),
    };
    let mut changes = Vec::new();
    for r in records.iter().filter(|r| r.hosted_zone_id == zone.id) {
        if holds(&zone, r).await? {
            changes.push(change(ChangeAction::Delete, r)?);
        }
    }
    send(&zone, changes).await?;
    api.patch(
        DOMAIN_NAME_INSTANCE,
        inst.id().unwrap_or_default(),
        &json!({"Records": null}),
    )
    .await?;
    Ok(Outcome::Done)
}

/// Ask the domain names of workload `wi_id` that `gateway_def` uses to write their records
/// again (the gateway's address changed).
pub async fn retrigger(
    api: &Client,
    wi_id: u64,
    gateway_def: &Value,
) -> Result<(), ReconcileError> {
    let Some(def_id) = gateway_def.id_field("DomainNameDefinitionID") else {
        return Ok(());
    };
    for d in api
        .list(
            DOMAIN_NAME_INSTANCE,
            &[("workloadinstanceid", wi_id.to_string())],
        )
        .await?
    {
        if d.id_field("DomainNameDefinitionID") == Some(def_id) && !d.is_deleting() {
            api.patch(
                DOMAIN_NAME_INSTANCE,
                d.id().unwrap_or_default(),
                &json!({"Reconciled": false}),
            )
            .await?;
        }
    }
    Ok(())
}

/// Where the record for a gateway of `wi_id` at `host` stands, as its domain name reports it.
pub async fn record_state(
    api: &Client,
    wi_id: u64,
    gateway_def: &Value,
    gateway_name: &str,
    address: Option<&str>,
) -> Result<super::health::Record, ReconcileError> {
    use super::health::Record as R;
    let Some(def_id) = gateway_def.id_field("DomainNameDefinitionID") else {
        return Ok(R::NotNeeded);
    };
    let Some(address) = address else {
        return Ok(R::Waiting(
            "waiting for the Gateway's address before its DNS record".into(),
        ));
    };
    let found = api
        .list(
            DOMAIN_NAME_INSTANCE,
            &[("workloadinstanceid", wi_id.to_string())],
        )
        .await?
        .into_iter()
        .find(|d| d.id_field("DomainNameDefinitionID") == Some(def_id));
    let Some(d) = found else {
        let def = api.get(DOMAIN_NAME_DEFINITION, def_id).await?;
        return Ok(R::Waiting(format!(
            "no DomainNameInstance of {:?} is attached to its workload, so no DNS record points at it",
            def.name()
        )));
    };
    if d.status() == Some("Failed") || d.is_set("CreationFailed") {
        return Ok(R::Failed(format!(
            "its DomainNameInstance {:?} failed: {}",
            d.name(),
            d.status_reason().unwrap_or("see its events")
        )));
    }
    let points = recorded(&d)
        .iter()
        .any(|r| r.gateway == gateway_name && r.value == address);
    Ok(
        if points && d.status() == Some("Healthy") && d.is_reconciled() {
            R::InPlace
        } else {
            R::Waiting(format!(
                "waiting for DomainNameInstance {:?} to point its record at {address}{}",
                d.name(),
                d.status_reason()
                    .map(|r| format!(" ({}: {r})", d.status().unwrap_or("?")))
                    .unwrap_or_default()
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_record_types() {
        assert_eq!(host("blog", "example.com"), "blog.example.com");
        assert_eq!(host("", "example.com."), "example.com");
        assert_eq!(record_type("192.0.2.10"), "A");
        assert_eq!(record_type("2001:db8::1"), "AAAA");
        assert_eq!(record_type("abc.elb.amazonaws.com"), "CNAME");
    }
}
