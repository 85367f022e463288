//! The Kubernetes objects a `GatewayInstance` asks for, as pure functions of what it declares:
//! a Gateway API `Gateway` with one listener per port, an `HTTPRoute` per HTTP port (to the
//! workload's Service, or a redirect to HTTPS), a `TCPRoute` per TCP port, and, when a port
//! has TLS, a cert-manager ACME `Issuer` (HTTP-01 solved through this Gateway) and a
//! `Certificate` for the host whose Secret the TLS listeners use.
//!
//! Everything here is checked before anything is applied, so a gateway that cannot work (TLS
//! without a host name, a redirect with nowhere to go) fails at once with the reason.

use serde_json::{Value, json};

pub const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
/// TCPRoute is still in Gateway API's experimental channel.
pub const GATEWAY_API_ALPHA: &str = "gateway.networking.k8s.io/v1alpha2";
pub const CERT_MANAGER_API: &str = "cert-manager.io/v1";

#[derive(Clone, Debug, PartialEq)]
pub struct HttpPort {
    pub port: i64,
    pub path: String,
    pub tls: bool,
    pub https_redirect: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TcpPort {
    pub port: i64,
    pub tls: bool,
}

/// The workload Service the routes send traffic to: its name and its ports (name, number).
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub ports: Vec<(Option<String>, i64)>,
}

/// What one gateway instance declares, resolved.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The Gateway's name (a DNS label made from the instance's name).
    pub name: String,
    /// The workload Service's namespace: routes must live next to their backends.
    pub namespace: String,
    pub class: String,
    /// `SubDomain.Domain`, when the gateway has a domain name.
    pub host: Option<String>,
    pub service: Service,
    pub http: Vec<HttpPort>,
    pub tcp: Vec<TcpPort>,
    /// The ACME account's contact (`AdminEmail`).
    pub email: Option<String>,
    /// The ACME directory the Issuer registers with.
    pub acme_server: String,
}

/// The names this spec gives its objects.
impl Spec {
    pub fn issuer_name(&self) -> String {
        format!("{}-acme", self.name)
    }
    /// The Certificate's name, which is also its Secret's.
    pub fn certificate_name(&self) -> String {
        format!("{}-tls", self.name)
    }
    pub fn needs_tls(&self) -> bool {
        self.http.iter().any(|p| p.tls) || self.tcp.iter().any(|p| p.tls)
    }
    pub fn http_route_name(&self, p: &HttpPort) -> String {
        format!("{}-{}", self.name, p.port)
    }
    pub fn tcp_route_name(&self, p: &TcpPort) -> String {
        format!("{}-tcp-{}", self.name, p.port)
    }
}

pub fn http_listener(p: &HttpPort) -> String {
    format!("{}-{}", if p.tls { "https" } else { "http" }, p.port)
}

pub fn tcp_listener(p: &TcpPort) -> String {
    format!("{}-{}", if p.tls { "tls" } else { "tcp" }, p.port)
}

/// The Service port a route to `listener_port` uses: the only one; else one numbered like the
/// listener; else for HTTP the one named `http`; else the first.
fn service_port(s: &Service, listener_port: i64, http: bool) -> Option<i64> {
    if s.ports.len() == 1 {
        return Some(s.ports[0].1);
    }
    s.ports
        .iter()
        .find(|(_, n)| *n == listener_port)
        .or_else(|| {
            http.then(|| s.ports.iter().find(|(n, _)| n.as_deref() == Some("http")))
                .flatten()
        })
        .or(s.ports.first())
        .map(|(_, n)| *n)
}

/// Check the spec: every reason a gateway could not work that is known before it runs.
pub fn check(spec: &Spec) -> Result<(), String> {
    if spec.http.is_empty() && spec.tcp.is_empty() {
        return Err("the GatewayDefinition has no ports: give it HttpPorts or TcpPorts".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    let ports = spec
        .http
        .iter()
        .map(|p| p.port)
        .chain(spec.tcp.iter().map(|p| p.port));
    for port in ports {
        if !(1..=65535).contains(&port) {
            return Err(format!("port {port} is not a TCP port (1-65535)"));
        }
        if !seen.insert(port) {
            return Err(format!(
                "port {port} is declared twice; a gateway listens once per port"
            ));
        }
    }
    if spec.service.ports.is_empty() {
        return Err(format!(
            "Service {:?} has no ports for the gateway to route to",
            spec.service.name
        ));
    }
    let tls_http = spec.http.iter().find(|p| p.tls);
    for p in &spec.http {
        if p.https_redirect && p.tls {
            return Err(format!(
                "port {}: HTTPSRedirect on a TLSEnabled port would redirect to itself; set it on the plain HTTP port",
                p.port
            ));
        }
        if p.https_redirect && tls_http.is_none() {
            return Err(format!(
                "port {}: HTTPSRedirect needs a TLSEnabled HTTP port to redirect to; add one (e.g. Port: 443, TLSEnabled: true)",
                p.port
            ));
        }
        if !p.path.starts_with('/') {
            return Err(format!(
                "port {}: Path {:?} must start with /",
                p.port, p.path
            ));
        }
    }
    if spec.needs_tls() {
        if spec.host.is_none() {
            return Err("TLSEnabled needs a host name for the certificate: add a DomainName next to the Gateway (and a SubDomain)".into());
        }
        // ACME's HTTP-01 challenge is always asked on port 80.
        if !spec.http.iter().any(|p| p.port == 80 && !p.tls) {
            return Err("TLSEnabled: the certificate comes from ACME through an HTTP-01 challenge, which is answered on plain HTTP port 80; add HttpPorts: [{Port: 80}]".into());
        }
    }
    Ok(())
}

/// The objects, in the order they are applied (the Gateway before what attaches to it).
pub fn build(spec: &Spec) -> Result<Vec<Value>, String> {
    check(spec)?;
    let meta = |name: String| json!({"name": name, "namespace": spec.namespace});
    let cert_ref = json!([{"kind": "Secret", "group": "", "name": spec.certificate_name()}]);
    let mut listeners = Vec::new();
    for p in &spec.http {
        let mut l = json!({
            "name": http_listener(p),
            "protocol": if p.tls { "HTTPS" } else { "HTTP" },
            "port": p.port,
        });
        if let Some(h) = &spec.host {
            l["hostname"] = json!(h);
        }
        if p.tls {
            l["tls"] = json!({"mode": "Terminate", "certificateRefs": cert_ref});
        }
        listeners.push(l);
    }
    for p in &spec.tcp {
        let mut l = json!({
            "name": tcp_listener(p),
            "protocol": if p.tls { "TLS" } else { "TCP" },
            "port": p.port,
        });
        if p.tls {
            if let Some(h) = &spec.host {
                l["hostname"] = json!(h);
            }
            l["tls"] = json!({"mode": "Terminate", "certificateRefs": cert_ref});
        }
        listeners.push(l);
    }
    let mut out = vec![json!({
        "apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": meta(spec.name.clone()),
        "spec": {"gatewayClassName": spec.class, "listeners": listeners},
    })];
    let tls_port = spec.http.iter().find(|p| p.tls).map(|p| p.port);
    for p in &spec.http {
        let mut rule = json!({"matches": [{"path": {"type": "PathPrefix", "value": p.path}}]});
        if p.https_redirect {
            let mut redirect = json!({"scheme": "https", "statusCode": 301});
            // 443 is what the https scheme implies; any other port must be said.
            if let Some(port) = tls_port.filter(|p| *p != 443) {
                redirect["port"] = json!(port);
            }
            rule["filters"] = json!([{"type": "RequestRedirect", "requestRedirect": redirect}]);
        } else {
            let port = service_port(&spec.service, p.port, true).unwrap_or_default();
            rule["backendRefs"] = json!([{"name": spec.service.name, "port": port}]);
        }
        let mut route = json!({
            "apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": meta(spec.http_route_name(p)),
            "spec": {
                "parentRefs": [{"name": spec.name, "sectionName": http_listener(p)}],
                "rules": [rule],
            },
        });
        if let Some(h) = &spec.host {
            route["spec"]["hostnames"] = json!([h]);
        }
        out.push(route);
    }
    for p in &spec.tcp {
        let port = service_port(&spec.service, p.port, false).unwrap_or_default();
        out.push(json!({
            "apiVersion": GATEWAY_API_ALPHA, "kind": "TCPRoute", "metadata": meta(spec.tcp_route_name(p)),
            "spec": {
                "parentRefs": [{"name": spec.name, "sectionName": tcp_listener(p)}],
                "rules": [{"backendRefs": [{"name": spec.service.name, "port": port}]}],
            },
        }));
    }
    if spec.needs_tls() {
        let host = spec.host.clone().unwrap_or_default();
        let mut acme = json!({
            "server": spec.acme_server,
            "privateKeySecretRef": {"name": format!("{}-account", spec.issuer_name())},
            "solvers": [{"http01": {"gatewayHTTPRoute": {"parentRefs": [{
                "name": spec.name, "namespace": spec.namespace, "kind": "Gateway",
                "sectionName": "http-80",
            }]}}}],
        });
        if let Some(e) = spec.email.as_deref().filter(|e| !e.is_empty()) {
            acme["email"] = json!(e);
        }
        out.push(json!({
            "apiVersion": CERT_MANAGER_API, "kind": "Issuer", "metadata": meta(spec.issuer_name()),
            "spec": {"acme": acme},
        }));
        out.push(json!({
            "apiVersion": CERT_MANAGER_API, "kind": "Certificate",
            "metadata": meta(spec.certificate_name()),
            "spec": {
                "secretName": spec.certificate_name(),
                "dnsNames": [host],
                "issuerRef": {"name": spec.issuer_name(), "kind": "Issuer", "group": "cert-manager.io"},
            },
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's canonical gateway: 80 redirecting, 443 with TLS, `SubDomain: blog`.
    fn blog() -> Spec {
        Spec {
            name: "web-service-gateway".into(),
            namespace: "wordpress".into(),
            class: "double-gateway".into(),
            host: Some("blog.example.com".into()),
            service: Service {
                name: "getting-started-wordpress".into(),
                ports: vec![(Some("http".into()), 8080)],
            },
            http: vec![
                HttpPort {
                    port: 80,
                    path: "/".into(),
                    tls: false,
                    https_redirect: true,
                },
                HttpPort {
                    port: 443,
                    path: "/".into(),
                    tls: true,
                    https_redirect: false,
                },
            ],
            tcp: vec![],
            email: Some("admin@example.com".into()),
            acme_server: "https://acme.example/directory".into(),
        }
    }

    #[test]
    fn the_canonical_gateway() {
        let objs = build(&blog()).unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["Gateway", "HTTPRoute", "HTTPRoute", "Issuer", "Certificate"]
        );
        let gw = &objs[0];
        assert_eq!(gw["spec"]["gatewayClassName"], "double-gateway");
        assert_eq!(
            gw["spec"]["listeners"],
            json!([
                {"name": "http-80", "protocol": "HTTP", "port": 80, "hostname": "blog.example.com"},
                {"name": "https-443", "protocol": "HTTPS", "port": 443, "hostname": "blog.example.com",
                 "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "group": "", "name": "web-service-gateway-tls"}]}},
            ])
        );
        let redirect = &objs[1];
        assert_eq!(redirect["metadata"]["name"], "web-service-gateway-80");
        assert_eq!(redirect["spec"]["hostnames"], json!(["blog.example.com"]));
        assert_eq!(
            redirect["spec"]["rules"][0]["filters"],
            json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}])
        );
        assert!(redirect["spec"]["rules"][0].get("backendRefs").is_none());
        let https = &objs[2];
        assert_eq!(
            https["spec"]["parentRefs"],
            json!([{"name": "web-service-gateway", "sectionName": "https-443"}])
        );
        assert_eq!(
            https["spec"]["rules"][0]["backendRefs"],
            json!([{"name": "getting-started-wordpress", "port": 8080}])
        );
        assert_eq!(
            objs[3]["spec"]["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]["parentRefs"][0]["sectionName"],
            "http-80"
        );
        assert_eq!(objs[3]["spec"]["acme"]["email"], "admin@example.com");
        assert_eq!(objs[4]["spec"]["dnsNames"], json!(["blog.example.com"]));
        assert_eq!(objs[4]["spec"]["secretName"], "web-service-gateway-tls");
    }

    #[test]
    fn tcp_ports_no_host_and_service_ports() {
        let mut s = blog();
        s.host = None;
        s.http = vec![HttpPort {
            port: 8000,
            path: "/api".into(),
            tls: false,
            https_redirect: false,
        }];
        s.tcp = vec![TcpPort {
            port: 5432,
            tls: false,
        }];
        s.service.ports = vec![(Some("web".into()), 80), (Some("db".into()), 5432)];
        let objs = build(&s).unwrap();
        assert!(objs[1]["spec"].get("hostnames").is_none());
        assert_eq!(objs[1]["spec"]["rules"][0]["backendRefs"][0]["port"], 80);
        assert_eq!(
            objs[1]["spec"]["rules"][0]["matches"][0]["path"]["value"],
            "/api"
        );
        assert_eq!(objs[2]["kind"], "TCPRoute");
        assert_eq!(objs[2]["apiVersion"], GATEWAY_API_ALPHA);
        assert_eq!(objs[2]["spec"]["rules"][0]["backendRefs"][0]["port"], 5432);
        assert_eq!(objs[0]["spec"]["listeners"][1]["protocol"], "TCP");
    }

    #[test]
    fn what_cannot_work_is_refused_with_the_fix() {
        let mut s = blog();
        s.host = None;
        assert!(check(&s).unwrap_err().contains("add a DomainName"));
        let mut s = blog();
        s.http.remove(0);
        assert!(check(&s).unwrap_err().contains("plain HTTP port 80"));
        let mut s = blog();
        s.http.remove(1);
        assert!(
            check(&s)
                .unwrap_err()
                .contains("needs a TLSEnabled HTTP port")
        );
        let mut s = blog();
        s.http[1].port = 80;
        assert!(check(&s).unwrap_err().contains("declared twice"));
        let mut s = blog();
        s.http.clear();
        assert!(check(&s).unwrap_err().contains("no ports"));
        let mut s = blog();
        s.http[1].port = 8443;
        let objs = build(&s).unwrap();
        assert_eq!(
            objs[1]["spec"]["rules"][0]["filters"][0]["requestRedirect"]["port"],
            8443
        );
    }
}
