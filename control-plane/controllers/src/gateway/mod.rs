//! The gateway controller: support services (a workload reachable on its domain over TLS).
//!
//! - [`instance`]: a `GatewayInstance` becomes a Gateway API `Gateway` with its routes and,
//!   for TLS, a cert-manager Issuer and Certificate, on the workload's runtime;
//! - [`dns`]: a `DomainNameInstance` points `SubDomain.Domain` at the gateway in Route53;
//! - [`support`]: what the runtime needs first (a Gateway API implementation, cert-manager),
//!   found or installed, and recorded on the runtime;
//! - [`objects`] and [`health`]: the pure parts (what to apply, whether it works).

pub mod dns;
pub mod health;
pub mod instance;
pub mod objects;
pub mod support;

use crate::aws::AwsAccess;
use crate::cluster::Clients;
use crate::runtime::{Outcome, ReconcileError, Reconciler};
use serde_json::{Value, json};
use std::sync::Arc;
use threeport_api::kinds::{
    self, DOMAIN_NAME_DEFINITION, DOMAIN_NAME_INSTANCE, GATEWAY_DEFINITION, GATEWAY_INSTANCE,
};
use threeport_api::{Client, Kind, ObjectExt};

pub use support::{Bundle, SupportConfig};

/// What the gateway controller works with.
pub struct Gateways {
    pub clients: Arc<Clients>,
    pub aws: AwsAccess,
    pub support: SupportConfig,
}

impl Reconciler for Gateways {
    fn name(&self) -> &'static str {
        "gateway-controller"
    }

    fn kinds(&self) -> Vec<&'static Kind> {
        kinds::served_by("gateway").collect()
    }

    async fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if std::ptr::eq(kind, GATEWAY_INSTANCE) {
            return instance::apply(self, api, object).await;
        }
        if std::ptr::eq(kind, DOMAIN_NAME_INSTANCE) {
            return dns::apply(api, &self.aws, object).await;
        }
        // Definitions: checked by the API on write; each instance makes its own objects, so a
        // changed definition (or one of its ports) asks them to apply it.
        retrigger_instances(api, kind, &object).await?;
        Ok(Outcome::DoneWith(json!({
            "Status": "Healthy",
            "StatusReason": "checked; each instance makes its own objects",
        })))
    }

    async fn cleanup(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> Result<Outcome, ReconcileError> {
        if std::ptr::eq(kind, GATEWAY_INSTANCE) {
            return instance::delete(self, api, &object).await;
        }
        if std::ptr::eq(kind, DOMAIN_NAME_INSTANCE) {
            return dns::delete(api, &self.aws, &object).await;
        }
        Ok(Outcome::Done)
    }
}

/// Ask the instances a changed definition shapes to reconcile again: a gateway definition's
/// instances; a domain name definition's instances and the gateways that use the domain.
async fn retrigger_instances(
    api: &Client,
    kind: &'static Kind,
    def: &Value,
) -> Result<(), ReconcileError> {
    let id = def.id().unwrap_or_default().to_string();
    let mut targets: Vec<(&'static Kind, Value)> = Vec::new();
    if std::ptr::eq(kind, GATEWAY_DEFINITION) {
        for i in api
            .list(GATEWAY_INSTANCE, &[("gatewaydefinitionid", id.clone())])
            .await?
        {
            targets.push((GATEWAY_INSTANCE, i));
        }
    } else if std::ptr::eq(kind, DOMAIN_NAME_DEFINITION) {
        for i in api
            .list(
                DOMAIN_NAME_INSTANCE,
                &[("domainnamedefinitionid", id.clone())],
            )
            .await?
        {
            targets.push((DOMAIN_NAME_INSTANCE, i));
        }
        for gd in api
            .list(
                GATEWAY_DEFINITION,
                &[("domainnamedefinitionid", id.clone())],
            )
            .await?
        {
            let gd_id = gd.id().unwrap_or_default().to_string();
            for i in api
                .list(GATEWAY_INSTANCE, &[("gatewaydefinitionid", gd_id)])
                .await?
            {
                targets.push((GATEWAY_INSTANCE, i));
            }
        }
    }
    for (k, i) in targets {
        // Not reconciled yet: it will read the definition as it is now anyway.
        if i.is_reconciled() && !i.is_deleting() {
            api.patch(k, i.id().unwrap_or_default(), &json!({"Reconciled": false}))
                .await?;
        }
    }
    Ok(())
}
