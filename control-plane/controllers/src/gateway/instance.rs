//! Gateways (`GatewayInstance`): a workload reachable on its host.
//!
//! 1. Wait until the workload is placed on a runtime; find the workload's Service
//!    (`ServiceName`) among its objects, or fail naming the Services it has.
//! 2. Make sure the runtime has its support services ([`super::support`]): a Gateway API
//!    implementation, and cert-manager when a port has TLS.
//! 3. Apply the Gateway, its routes and, for TLS, the ACME Issuer and the Certificate
//!    ([`super::objects`]); record them as the workload's resources (so they are deleted with
//!    it, and one that is no longer wanted is pruned).
//! 4. Publish the Gateway's address on the instance (`Address`) and ask its domain name to
//!    point the record at it.
//! 5. Report: `Healthy` only when everything works ([`super::health`]); until then
//!    `Progressing` or `Degraded` with the implementation's own words, looked at again shortly.

use super::health::{self, Observed, Verdict};
use super::objects::{self, HttpPort, Service, Spec, TcpPort};
use super::{Gateways, dns, support};
use crate::cluster::{self, INSTANCE_LABEL, ObjectRef};
use crate::dependency::{self, Placement};
use crate::runtime::{Outcome, ReconcileError};
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::kinds::{
    DOMAIN_NAME_DEFINITION, GATEWAY_DEFINITION, GATEWAY_HTTP_PORT, GATEWAY_INSTANCE,
    GATEWAY_TCP_PORT, KUBERNETES_RUNTIME_INSTANCE, WORKLOAD_RESOURCE_INSTANCE,
};
use threeport_api::{Client, ObjectExt};

/// How soon a gateway that is not healthy yet is looked at again.
const POLL: Duration = Duration::from_secs(2);

/// The Services among a workload's objects: (name, namespace, ports).
fn services(resources: &[Value]) -> Vec<(String, String, Vec<(Option<String>, i64)>)> {
    resources
        .iter()
        .filter(|r| !r.is_set("Dependency"))
        .filter_map(|r| r.get("JSONDefinition"))
        .filter(|d| d["kind"] == "Service")
        .map(|d| {
            let s = |p: &str| {
                d.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let ports = d
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let n = p.get("port")?.as_i64()?;
                    Some((p.get("name").and_then(Value::as_str).map(str::to_string), n))
                })
                .collect();
            (s("/metadata/name"), s("/metadata/namespace"), ports)
        })
        .collect()
}

/// Progressing or Degraded, said on the instance; look again shortly.
async fn report(api: &Client, inst: &Value, v: &Verdict) -> Result<Outcome, ReconcileError> {
    if inst.status() != Some(v.status()) || inst.status_reason() != Some(v.reason()) {
        api.patch(
            GATEWAY_INSTANCE,
            inst.id().unwrap_or_default(),
            &json!({"Status": v.status(), "StatusReason": v.reason()}),
        )
        .await?;
    }
    Ok(Outcome::RequeueAfter(POLL))
}

/// The dependency name its objects are recorded under.
fn dependency_name(inst: &Value) -> String {
    dependency::name(GATEWAY_INSTANCE, inst)
}

pub async fn apply(g: &Gateways, api: &Client, inst: Value) -> Result<Outcome, ReconcileError> {
    let def = api
        .get(
            GATEWAY_DEFINITION,
            inst.id_field("GatewayDefinitionID").unwrap_or_default(),
        )
        .await?;
    // 1. Where, and to what.
    let (wi, rid) = match dependency::placement(api, &inst, "a GatewayInstance").await? {
        Placement::Ready(wi, rid) => (wi, rid),
        Placement::Waiting(why) => {
            return dependency::wait(api, GATEWAY_INSTANCE, &inst, why, POLL).await;
        }
    };
    let wi_id = wi.id().unwrap_or_default();
    let resources = api
        .list(
            WORKLOAD_RESOURCE_INSTANCE,
            &[("workloadinstanceid", wi_id.to_string())],
        )
        .await?;
    let service_name = def.str_field("ServiceName");
    if service_name.is_empty() {
        return Err(ReconcileError::Permanent(format!(
            "GatewayDefinition {:?} has no ServiceName: name the workload's Service the gateway sends traffic to",
            def.name()
        )));
    }
    let all = services(&resources);
    let Some((_, namespace, ports)) = all.iter().find(|(n, _, _)| n == service_name) else {
        if !wi.is_reconciled() && all.is_empty() {
            return dependency::wait(
                api,
                GATEWAY_INSTANCE,
                &inst,
                format!("waiting for WorkloadInstance {:?} to be applied", wi.name()),
                POLL,
            )
            .await;
        }
        let has = if all.is_empty() {
            "it has no Services".to_string()
        } else {
            let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
            format!("it has: {}", names.join(", "))
        };
        return Err(ReconcileError::Permanent(format!(
            "ServiceName {service_name:?}: WorkloadInstance {:?} has no Service of that name; {has}",
            wi.name()
        )));
    };
    let def_id = def.id().unwrap_or_default();
    let mut http: Vec<HttpPort> = api
        .list(
            GATEWAY_HTTP_PORT,
            &[("gatewaydefinitionid", def_id.to_string())],
        )
        .await?
        .iter()
        .map(|p| HttpPort {
            port: p.get("Port").and_then(Value::as_i64).unwrap_or_default(),
            path: match p.str_field("Path") {
                "" => "/".to_string(),
                path => path.to_string(),
            },
            tls: p.get("TLSEnabled") == Some(&Value::Bool(true)),
            https_redirect: p.get("HTTPSRedirect") == Some(&Value::Bool(true)),
        })
        .collect();
    // By port, whatever order the API lists them in (apply writes them concurrently).
    http.sort_by_key(|p| p.port);
    let mut tcp: Vec<TcpPort> = api
        .list(
            GATEWAY_TCP_PORT,
            &[("gatewaydefinitionid", def_id.to_string())],
        )
        .await?
        .iter()
        .map(|p| TcpPort {
            port: p.get("Port").and_then(Value::as_i64).unwrap_or_default(),
            tls: p.get("TLSEnabled") == Some(&Value::Bool(true)),
        })
        .collect();
    tcp.sort_by_key(|p| p.port);
    let (host, email) = match def.id_field("DomainNameDefinitionID") {
        Some(d) => {
            let domain = api.get(DOMAIN_NAME_DEFINITION, d).await?;
            (
                Some(dns::host(
                    def.str_field("SubDomain"),
                    domain.str_field("Domain"),
                )),
                Some(domain.str_field("AdminEmail").to_string()),
            )
        }
        None => (None, None),
    };
    let mut spec = Spec {
        name: crate::workload::instance_namespace(inst.name()),
        namespace: if namespace.is_empty() {
            crate::workload::instance_namespace(wi.name())
        } else {
            namespace.clone()
        },
        class: String::new(),
        host,
        service: Service {
            name: service_name.to_string(),
            ports: ports.clone(),
        },
        http,
        tcp,
        email,
        acme_server: g.support.acme_server.clone(),
    };
    // Its ports are rows of their own, written after the definition: none yet is not a fault.
    if spec.http.is_empty() && spec.tcp.is_empty() {
        let why = format!(
            "GatewayDefinition {:?} has no ports yet: give it HttpPorts or TcpPorts",
            def.name()
        );
        return report(api, &inst, &Verdict::Progressing(why)).await;
    }
    // Refuse what cannot work before installing anything for it.
    objects::check(&spec).map_err(ReconcileError::Permanent)?;

    // 2. Support services.
    let runtime = api.get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid).await?;
    let cluster = g.clients.get(&runtime).await?;
    spec.class =
        match support::ensure(&g.support, api, &runtime, &cluster, spec.needs_tls()).await? {
            support::Support::Ready(class) => class,
            support::Support::Waiting(why) => {
                return report(api, &inst, &Verdict::Progressing(why)).await;
            }
        };

    // 3. The objects, recorded as the workload's.
    let labels = [
        (INSTANCE_LABEL, wi_id.to_string()),
        ("app.kubernetes.io/managed-by", "threeport".to_string()),
    ];
    let wanted = objects::build(&spec).map_err(ReconcileError::Permanent)?;
    let mut identities = Vec::new();
    let mut applied = Vec::new();
    for o in wanted {
        let r = ObjectRef::of(&o).map_err(ReconcileError::Permanent)?;
        identities.push(json!({"apiVersion": r.api_version, "kind": r.kind,
            "metadata": {"name": r.name, "namespace": spec.namespace}}));
        applied.push((
            r,
            cluster::apply(&cluster, o, &spec.namespace, &labels).await?,
        ));
    }
    dependency::record_all(api, &cluster, wi_id, &dependency_name(&inst), &identities).await?;

    // 4. The address, and its DNS record.
    let gateway = applied.first().map(|(_, o)| o.clone());
    let gateway = match gateway {
        // Read again: what apply returns can predate the implementation's status.
        Some(_) => cluster::get(&cluster, &applied[0].0, &spec.namespace).await?,
        None => None,
    };
    let address = gateway
        .as_ref()
        .and_then(health::address)
        .map(str::to_string);
    if address.as_deref().unwrap_or("") != inst.str_field("Address") {
        api.patch(
            GATEWAY_INSTANCE,
            inst.id().unwrap_or_default(),
            &json!({"Address": address}),
        )
        .await?;
        dns::retrigger(api, wi_id, &def).await?;
    }
    let record = dns::record_state(api, wi_id, &def, inst.name(), address.as_deref()).await?;

    // 5. Where it stands.
    let mut routes = Vec::new();
    let mut certificate = None;
    for (r, _) in applied.iter().skip(1) {
        let now = cluster::get(&cluster, r, &spec.namespace).await?;
        match r.kind.as_str() {
            "HTTPRoute" | "TCPRoute" => routes.push((r.kind.clone(), r.name.clone(), now)),
            "Certificate" => certificate = Some((r.name.clone(), now)),
            _ => {}
        }
    }
    let observed = Observed {
        now: time::OffsetDateTime::now_utc(),
        grace: g.support.programmed_grace,
        gateway_name: &spec.name,
        gateway: gateway.as_ref(),
        routes: routes
            .iter()
            .map(|(k, n, o)| (k.as_str(), n.as_str(), o.as_ref()))
            .collect(),
        certificate: certificate.as_ref().map(|(n, o)| (n.as_str(), o.as_ref())),
        record,
    };
    match health::evaluate(&observed) {
        Verdict::Healthy(why) => Ok(Outcome::DoneWith(json!({
            "Status": "Healthy", "StatusReason": why,
        }))),
        other => report(api, &inst, &other).await,
    }
}

/// Remove the gateway's objects from the cluster and the workload's records, and ask its
/// domain name to remove the record that pointed at it.
pub async fn delete(g: &Gateways, api: &Client, inst: &Value) -> Result<Outcome, ReconcileError> {
    dependency::remove(api, &g.clients, inst, &dependency_name(inst)).await?;
    if let Some(wi_id) = inst.id_field("WorkloadInstanceID") {
        let def = api
            .get(
                GATEWAY_DEFINITION,
                inst.id_field("GatewayDefinitionID").unwrap_or_default(),
            )
            .await?;
        dns::retrigger(api, wi_id, &def).await?;
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_the_workloads_own() {
        let rs = vec![
            json!({"JSONDefinition": {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "blog"},
                "spec": {"ports": [{"name": "http", "port": 8080}]}}}),
            json!({"JSONDefinition": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}}),
            json!({"Dependency": "GatewayInstance/x", "JSONDefinition": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"}}}),
        ];
        assert_eq!(
            services(&rs),
            vec![(
                "web".to_string(),
                "blog".to_string(),
                vec![(Some("http".to_string()), 8080)]
            )]
        );
    }
}
