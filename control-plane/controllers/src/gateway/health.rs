//! Whether a gateway works, from what the cluster reports, as a pure function: the Gateway is
//! `Programmed`, every route is `Accepted` (and its backends resolved) by that Gateway, the
//! certificate is `Ready`, and the DNS record points at the Gateway's current address.
//! Otherwise it is `Progressing` (still converging) or `Degraded` (the implementation said
//! something is wrong), and the reason is the implementation's own condition message.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy(String),
    Progressing(String),
    Degraded(String),
}

impl Verdict {
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Healthy(_) => "Healthy",
            Verdict::Progressing(_) => "Progressing",
            Verdict::Degraded(_) => "Degraded",
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Healthy(r) | Verdict::Progressing(r) | Verdict::Degraded(r) => r,
        }
    }
}

/// Where the DNS record for the gateway's host stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// No domain name: no record to wait for.
    NotNeeded,
    /// The record points at the current address.
    InPlace,
    /// Not yet: why.
    Waiting(String),
    /// It cannot be written: why.
    Failed(String),
}

/// What was read back from the cluster.
pub struct Observed<'a> {
    /// Now, and how long a Gateway may wait to be programmed before that is a fault: a cloud
    /// load balancer takes a while to get its address, so `AddressNotAssigned` is progress at
    /// first.
    pub now: time::OffsetDateTime,
    pub grace: std::time::Duration,
    pub gateway_name: &'a str,
    pub gateway: Option<&'a Value>,
    /// (kind, name, object as read).
    pub routes: Vec<(&'a str, &'a str, Option<&'a Value>)>,
    /// `None`: no TLS. `Some(None)`: asked for, not there yet.
    pub certificate: Option<(&'a str, Option<&'a Value>)>,
    pub record: Record,
}

/// A condition of `obj` (in `conditions`, a list at `pointer`): (status, reason, message).
pub fn condition<'a>(
    obj: &'a Value,
    pointer: &str,
    ty: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    let c = obj
        .pointer(pointer)?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))?;
    let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("");
    Some((s("status"), s("reason"), s("message")))
}

/// When a condition last changed (`lastTransitionTime`).
fn transitioned(obj: &Value, pointer: &str, ty: &str) -> Option<time::OffsetDateTime> {
    let c = obj
        .pointer(pointer)?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))?;
    parse_time(c.get("lastTransitionTime")?.as_str()?)
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// `message (Reason)`, or whichever of the two there is.
fn said(reason: &str, message: &str) -> String {
    match (message.is_empty(), reason.is_empty()) {
        (false, false) => format!("{message} ({reason})"),
        (false, true) => message.to_string(),
        (true, false) => reason.to_string(),
        (true, true) => "no message".to_string(),
    }
}

/// The Gateway's first published address.
pub fn address(gateway: &Value) -> Option<&str> {
    gateway
        .pointer("/status/addresses/0/value")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
}

/// The parent status a route got from `gateway` (Gateway API keeps one per parent).
fn parent_status<'a>(route: &'a Value, gateway: &str) -> Option<&'a Value> {
    route
        .pointer("/status/parents")?
        .as_array()?
        .iter()
        .find(|p| p.pointer("/parentRef/name").and_then(Value::as_str) == Some(gateway))
}

pub fn evaluate(o: &Observed<'_>) -> Verdict {
    let mut waiting: Vec<String> = Vec::new();
    let gw = o.gateway_name;
    match o.gateway {
        None => waiting.push(format!("Gateway {gw} is not created yet")),
        Some(g) => {
            if let Some(("False", reason, message)) = condition(g, "/status/conditions", "Accepted")
            {
                return Verdict::Degraded(format!(
                    "Gateway {gw} is not Accepted: {}",
                    said(reason, message)
                ));
            }
            match condition(g, "/status/conditions", "Programmed") {
                Some(("True", ..)) => {}
                // The implementation refuses its configuration: no wait will change that.
                Some(("False", "Invalid", message)) => {
                    return Verdict::Degraded(format!(
                        "Gateway {gw} is not Programmed: {}",
                        said("Invalid", message)
                    ));
                }
                // Waiting for an address, for resources or for a controller at all: progress,
                // until it has lasted longer than anything should.
                programmed => {
                    let since = transitioned(g, "/status/conditions", "Programmed")
                        .filter(|_| programmed.is_some())
                        .or_else(|| {
                            g.pointer("/metadata/creationTimestamp")
                                .and_then(Value::as_str)
                                .and_then(parse_time)
                        });
                    let stuck = since.is_some_and(|t| o.now - t >= o.grace);
                    let why = match programmed {
                        Some((_, reason, message)) => said(reason, message),
                        None => "no controller of its GatewayClass has looked at it".into(),
                    };
                    if stuck {
                        return Verdict::Degraded(format!(
                            "Gateway {gw} has not been Programmed for over {}s: {why}",
                            o.grace.as_secs()
                        ));
                    }
                    waiting.push(format!("Gateway {gw} is not Programmed yet: {why}"));
                }
            }
        }
    }
    for (kind, name, route) in &o.routes {
        let Some(route) = route else {
            waiting.push(format!("{kind} {name} is not created yet"));
            continue;
        };
        let Some(parent) = parent_status(route, gw) else {
            waiting.push(format!("{kind} {name} is not accepted by Gateway {gw} yet"));
            continue;
        };
        match condition(parent, "/conditions", "Accepted") {
            Some(("True", ..)) => {}
            Some(("False", reason, message)) => {
                return Verdict::Degraded(format!(
                    "{kind} {name} is not Accepted: {}",
                    said(reason, message)
                ));
            }
            _ => waiting.push(format!("{kind} {name} is not accepted by Gateway {gw} yet")),
        }
        if let Some(("False", reason, message)) = condition(parent, "/conditions", "ResolvedRefs") {
            return Verdict::Degraded(format!(
                "{kind} {name} cannot reach its backend: {}",
                said(reason, message)
            ));
        }
    }
    if let Some((name, cert)) = &o.certificate {
        match cert {
            None => waiting.push(format!("Certificate {name} is not created yet")),
            Some(c) => match condition(c, "/status/conditions", "Ready") {
                Some(("True", ..)) => {}
                ready => {
                    // cert-manager says why issuance failed on `Issuing`, not on `Ready`.
                    if let Some(("False", "Failed", message)) =
                        condition(c, "/status/conditions", "Issuing")
                    {
                        return Verdict::Degraded(format!(
                            "Certificate {name} is not Ready: {message}"
                        ));
                    }
                    waiting.push(match ready {
                        Some((_, reason, message)) => {
                            format!(
                                "Certificate {name} is not Ready yet: {}",
                                said(reason, message)
                            )
                        }
                        None => format!("waiting for cert-manager to issue Certificate {name}"),
                    });
                }
            },
        }
    }
    match &o.record {
        Record::Failed(why) => return Verdict::Degraded(why.clone()),
        Record::Waiting(why) => waiting.push(why.clone()),
        Record::NotNeeded | Record::InPlace => {}
    }
    if !waiting.is_empty() {
        return Verdict::Progressing(waiting.join("; "));
    }
    let address = o.gateway.and_then(address).unwrap_or("?");
    let mut parts = vec![format!("Gateway {gw} Programmed at {address}")];
    parts.push(format!("{} route(s) Accepted", o.routes.len()));
    if let Some((name, _)) = &o.certificate {
        parts.push(format!("Certificate {name} Ready"));
    }
    if o.record == Record::InPlace {
        parts.push("DNS record in place".into());
    }
    Verdict::Healthy(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const T0: &str = "2026-12-01T10:00:00Z";

    fn at(secs: i64) -> time::OffsetDateTime {
        parse_time(T0).unwrap() + time::Duration::seconds(secs)
    }

    fn gateway(programmed: (&str, &str, &str)) -> Value {
        json!({"metadata": {"creationTimestamp": T0}, "status": {
        "addresses": [{"type": "IPAddress", "value": "192.0.2.7"}],
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok"},
            {"type": "Programmed", "status": programmed.0, "reason": programmed.1,
             "message": programmed.2, "lastTransitionTime": T0},
        ]}})
    }

    fn route(accepted: &str, resolved: &str) -> Value {
        json!({"status": {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "x",
        "conditions": [
            {"type": "Accepted", "status": accepted, "reason": "Accepted", "message": ""},
            {"type": "ResolvedRefs", "status": resolved, "reason": "BackendNotFound", "message": "Service web/nope not found"},
        ]}]}})
    }

    fn cert(ready: &str, issuing: Option<(&str, &str, &str)>) -> Value {
        let mut conds = vec![
            json!({"type": "Ready", "status": ready, "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist"}),
        ];
        if let Some((s, r, m)) = issuing {
            conds.push(json!({"type": "Issuing", "status": s, "reason": r, "message": m}));
        }
        json!({"status": {"conditions": conds}})
    }

    fn observed<'a>(
        secs: i64,
        g: &'a Value,
        routes: Vec<(&'a str, &'a str, Option<&'a Value>)>,
        certificate: Option<(&'a str, Option<&'a Value>)>,
        record: Record,
    ) -> Observed<'a> {
        Observed {
            now: at(secs),
            grace: Duration::from_secs(30),
            gateway_name: "gw",
            gateway: Some(g),
            routes,
            certificate,
            record,
        }
    }

    #[test]
    fn healthy_only_when_everything_is() {
        let g = gateway(("True", "Programmed", "ok"));
        let r = route("True", "True");
        let c = cert("True", None);
        let routes = || vec![("HTTPRoute", "gw-80", Some(&r))];
        let o = observed(1, &g, routes(), Some(("gw-tls", Some(&c))), Record::InPlace);
        assert_eq!(
            evaluate(&o),
            Verdict::Healthy("Gateway gw Programmed at 192.0.2.7, 1 route(s) Accepted, Certificate gw-tls Ready, DNS record in place".into())
        );
        let waiting = Record::Waiting("waiting for DomainNameInstance d".into());
        let o = observed(1, &g, routes(), Some(("gw-tls", Some(&c))), waiting);
        assert_eq!(
            evaluate(&o),
            Verdict::Progressing("waiting for DomainNameInstance d".into())
        );
    }

    #[test]
    fn the_implementations_message_is_the_reason() {
        let g = gateway((
            "False",
            "AddressNotAssigned",
            "No addresses have been assigned to the Gateway",
        ));
        // A load balancer takes a while: progress at first, a fault once it lasts.
        assert_eq!(
            evaluate(&observed(5, &g, vec![], None, Record::NotNeeded)),
            Verdict::Progressing("Gateway gw is not Programmed yet: No addresses have been assigned to the Gateway (AddressNotAssigned)".into())
        );
        assert_eq!(
            evaluate(&observed(31, &g, vec![], None, Record::NotNeeded)),
            Verdict::Degraded("Gateway gw has not been Programmed for over 30s: No addresses have been assigned to the Gateway (AddressNotAssigned)".into())
        );
        // Waiting for a controller is progress too, for a while.
        let g = gateway(("Unknown", "Pending", "Waiting for controller"));
        assert!(
            matches!(evaluate(&observed(5, &g, vec![], None, Record::NotNeeded)), Verdict::Progressing(r) if r.contains("Waiting for controller"))
        );
        // A refused configuration is a fault at once.
        let g = gateway(("False", "Invalid", "listener https-443 has no certificate"));
        assert!(
            matches!(evaluate(&observed(1, &g, vec![], None, Record::NotNeeded)), Verdict::Degraded(r) if r.contains("has no certificate (Invalid)"))
        );

        let g = gateway(("True", "Programmed", ""));
        let r = route("True", "False");
        let o = observed(
            1,
            &g,
            vec![("HTTPRoute", "gw-80", Some(&r))],
            None,
            Record::NotNeeded,
        );
        assert_eq!(
            evaluate(&o),
            Verdict::Degraded("HTTPRoute gw-80 cannot reach its backend: Service web/nope not found (BackendNotFound)".into())
        );
    }

    #[test]
    fn a_certificate_that_fails_to_issue_is_degraded() {
        let g = gateway(("True", "Programmed", ""));
        let issuing = cert(
            "False",
            Some((
                "True",
                "DoesNotExist",
                "Issuing certificate as Secret does not exist",
            )),
        );
        let failed = cert(
            "False",
            Some((
                "False",
                "Failed",
                "The certificate request has failed to complete and will be retried: order is in \"invalid\" state",
            )),
        );
        let mk = |c| observed(1, &g, vec![], Some(("gw-tls", Some(c))), Record::NotNeeded);
        assert!(
            matches!(evaluate(&mk(&issuing)), Verdict::Progressing(r) if r.starts_with("Certificate gw-tls is not Ready yet: Issuing certificate as Secret does not exist"))
        );
        assert_eq!(
            evaluate(&mk(&failed)),
            Verdict::Degraded("Certificate gw-tls is not Ready: The certificate request has failed to complete and will be retried: order is in \"invalid\" state".into())
        );
    }
}
