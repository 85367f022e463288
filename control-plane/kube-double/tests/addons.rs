//! The simulated add-ons — a Gateway API implementation and cert-manager — driven through the
//! real kube-rs client, as a Gateway controller and code that uses cert-manager would: CRDs
//! applied first, then classes, Gateways, routes, issuers and Certificates, and the statuses,
//! Secrets and Events read back. Also the failure switches, and that the loop settles.

mod common;

use common::{READY_DELAY, client, eventually};
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{Discovery, Scope};
use kube_api_double::{DOUBLE_GATEWAY_CONTROLLER, KubeDouble, Options, crds};
use serde_json::{Value, json};
use std::time::Duration;

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

async fn start_with(opts: Options) -> KubeDouble {
    // kube (ring) and other crates (aws-lc-rs) both link rustls: install one provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    KubeDouble::start(Options {
        ready_delay: READY_DELAY,
        ..opts
    })
    .await
    .expect("start the double")
}

/// Server-side apply every CRD of a manifest, as `kubectl apply --server-side -f` would.
async fn apply_crds(client: &kube::Client, manifest: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in crds::documents(manifest).unwrap() {
        let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn api(client: &kube::Client, r: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, r),
        None => Api::all_with(client.clone(), r),
    }
}

/// Server-side apply one object given as JSON.
async fn apply(api: &Api<DynamicObject>, obj: Value) -> DynamicObject {
    let o: DynamicObject = serde_json::from_value(obj).unwrap();
    let name = o.metadata.name.clone().unwrap();
    api.patch(&name, &PatchParams::apply("test"), &Patch::Apply(&o))
        .await
        .unwrap()
}

/// The object's status as JSON (`null` when it has none).
async fn status(api: &Api<DynamicObject>, name: &str) -> Value {
    api.get(name)
        .await
        .map(|o| o.data.get("status").cloned().unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

/// The condition of `type` in the `conditions` array at `at` (a JSON pointer into `v`).
fn condition<'a>(v: &'a Value, at: &str, t: &str) -> Option<&'a Value> {
    v.pointer(at)?.as_array()?.iter().find(|c| c["type"] == t)
}

/// (status, reason) of a condition.
fn state(v: &Value, at: &str, t: &str) -> Option<(String, String)> {
    let c = condition(v, at, t)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

fn is(v: &Value, at: &str, t: &str, status: &str, reason: &str) -> bool {
    state(v, at, t) == Some((status.into(), reason.into()))
}

fn listener<'a>(gw_status: &'a Value, name: &str) -> Option<&'a Value> {
    gw_status["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
}

/// Wait until `name`'s status satisfies `f`; returns that status.
async fn status_where(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    eventually(10, what, || {
        let api = api.clone();
        let name = name.to_string();
        let f = &f;
        async move {
            let st = status(&api, &name).await;
            f(&st).then_some(st)
        }
    })
    .await
}

/// The cluster's current resourceVersion (the global counter every write bumps).
async fn cluster_rv(client: &kube::Client) -> u64 {
    let list = Api::<Event>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap();
    list.metadata.resource_version.unwrap().parse().unwrap()
}

/// Wait until nothing is written for a whole second: the simulation has settled.
async fn settles(client: &kube::Client) {
    eventually(15, "the simulation settles (no writes for 1 s)", || async {
        let before = cluster_rv(client).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        (cluster_rv(client).await == before).then_some(())
    })
    .await
}

/// The Events about one object, oldest first: (type, reason, message, source component).
async fn events_of(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<(String, String, String, String)> {
    let mut evs = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items;
    evs.sort_by_key(|e| {
        e.metadata
            .resource_version
            .as_deref()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0)
    });
    evs.into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.source.and_then(|s| s.component).unwrap_or_default(),
            )
        })
        .collect()
}

/// The PEM chain verifies, with its last certificate as the root, as a server certificate
/// for `host` (what a TLS client of the Gateway checks).
fn verify_chain(chain_pem: &[u8], host: &str) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .expect("tls.crt is PEM");
    assert!(certs.len() >= 2, "a leaf and its issuer: {}", certs.len());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.last().unwrap().clone()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_server_cert(
            &certs[0],
            &certs[1..certs.len() - 1],
            &ServerName::try_from(host.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| panic!("the certificate is valid for {host}: {e}"));
}

fn crd_kinds() -> [ApiResource; 6] {
    [
        ar(GATEWAY_GROUP, "v1", "GatewayClass", "gatewayclasses"),
        ar(GATEWAY_GROUP, "v1", "Gateway", "gateways"),
        ar(GATEWAY_GROUP, "v1", "HTTPRoute", "httproutes"),
        ar(GATEWAY_GROUP, "v1alpha2", "TCPRoute", "tcproutes"),
        ar("cert-manager.io", "v1", "Issuer", "issuers"),
        ar("cert-manager.io", "v1", "Certificate", "certificates"),
    ]
}

async fn service(client: &kube::Client, name: &str) {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
}

#[tokio::test]
async fn crds_register_the_gateway_api_and_cert_manager_kinds() {
    let double = start_with(Options::default()).await;
    let client = client(&double).await;
    apply_crds(&client, crds::GATEWAY_API).await;
    apply_crds(&client, crds::CERT_MANAGER).await;

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    for (g, v, k, plural, scope) in [
        (
            GATEWAY_GROUP,
            "v1",
            "GatewayClass",
            "gatewayclasses",
            Scope::Cluster,
        ),
        (
            GATEWAY_GROUP,
            "v1beta1",
            "GatewayClass",
            "gatewayclasses",
            Scope::Cluster,
        ),
        (
            GATEWAY_GROUP,
            "v1",
            "Gateway",
            "gateways",
            Scope::Namespaced,
        ),
        (
            GATEWAY_GROUP,
            "v1",
            "HTTPRoute",
            "httproutes",
            Scope::Namespaced,
        ),
        (
            GATEWAY_GROUP,
            "v1alpha2",
            "TCPRoute",
            "tcproutes",
            Scope::Namespaced,
        ),
        (
            GATEWAY_GROUP,
            "v1beta1",
            "ReferenceGrant",
            "referencegrants",
            Scope::Namespaced,
        ),
        (
            "cert-manager.io",
            "v1",
            "Certificate",
            "certificates",
            Scope::Namespaced,
        ),
        (
            "cert-manager.io",
            "v1",
            "CertificateRequest",
            "certificaterequests",
            Scope::Namespaced,
        ),
        (
            "cert-manager.io",
            "v1",
            "Issuer",
            "issuers",
            Scope::Namespaced,
        ),
        (
            "cert-manager.io",
            "v1",
            "ClusterIssuer",
            "clusterissuers",
            Scope::Cluster,
        ),
    ] {
        let (r, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk(g, v, k))
            .unwrap_or_else(|| panic!("{g}/{v} {k} is discovered"));
        assert_eq!((r.plural.as_str(), caps.scope), (plural, scope), "{k}");
    }
    // Short names and categories, as kubectl resolves `kubectl get gtw,cert`.
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (crd, short) in [
        ("gateways.gateway.networking.k8s.io", "gtw"),
        ("gatewayclasses.gateway.networking.k8s.io", "gc"),
        ("certificates.cert-manager.io", "cert"),
        ("certificaterequests.cert-manager.io", "cr"),
    ] {
        let c = crd_api.get(crd).await.unwrap();
        assert!(
            c.spec
                .names
                .short_names
                .unwrap_or_default()
                .contains(&short.to_string()),
            "{crd} has short name {short}"
        );
    }
    // Applying them again changes nothing.
    let rv = cluster_rv(&client).await;
    apply_crds(&client, crds::GATEWAY_API).await;
    apply_crds(&client, crds::CERT_MANAGER).await;
    assert_eq!(
        cluster_rv(&client).await,
        rv,
        "re-applying the CRDs is a no-op"
    );
    double.shutdown().await;
}

#[tokio::test]
async fn gateways_routes_and_certificates_behave_like_a_real_cluster() {
    let double = start_with(Options::default()).await;
    let client = client(&double).await;
    apply_crds(&client, crds::GATEWAY_API).await;
    apply_crds(&client, crds::CERT_MANAGER).await;
    let [class_r, gw_r, http_r, tcp_r, issuer_r, cert_r] = crd_kinds();
    let classes = api(&client, &class_r, None);
    let gateways = api(&client, &gw_r, Some("default"));
    let http_routes = api(&client, &http_r, Some("default"));
    let tcp_routes = api(&client, &tcp_r, Some("default"));
    let issuers = api(&client, &issuer_r, Some("default"));
    let certs = api(&client, &cert_r, Some("default"));
    service(&client, "web").await;

    apply(
        &classes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "double"}, "spec": {"controllerName": DOUBLE_GATEWAY_CONTROLLER}}),
    )
    .await;
    apply(&classes, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "foreign"}, "spec": {"controllerName": "example.com/another-controller"}})).await;
    apply(&gateways, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge"},
        "spec": {"gatewayClassName": "double", "listeners": [
            {"name": "http", "protocol": "HTTP", "port": 80},
            {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "app.example.com",
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "app-tls"}]}},
            {"name": "db", "protocol": "TCP", "port": 5432},
        ]}})).await;
    apply(&gateways, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "elsewhere"},
        "spec": {"gatewayClassName": "foreign", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})).await;
    let web_parent = json!({"name": "edge"});
    apply(
        &http_routes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"parentRefs": [web_parent], "hostnames": ["app.example.com"],
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    )
    .await;
    apply(
        &http_routes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "api"},
        "spec": {"parentRefs": [{"name": "edge", "sectionName": "https"}],
                 "rules": [{"backendRefs": [{"name": "api", "port": 80}]}]}}),
    )
    .await;
    apply(
        &tcp_routes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
        "metadata": {"name": "db"},
        "spec": {"parentRefs": [{"name": "edge", "sectionName": "db"}],
                 "rules": [{"backendRefs": [{"name": "web", "port": 5432}]}]}}),
    )
    .await;
    apply(&http_routes, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "foreign"},
        "spec": {"parentRefs": [{"name": "elsewhere"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})).await;
    apply(&http_routes, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "orphan"},
        "spec": {"parentRefs": [{"name": "no-such-gateway"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})).await;

    // The class of the double's controller is accepted.
    let class = status_where(&classes, "double", "class Accepted", |s| {
        is(s, "/conditions", "Accepted", "True", "Accepted")
    })
    .await;
    let accepted = condition(&class, "/conditions", "Accepted").unwrap();
    assert_eq!(accepted["observedGeneration"], 1);
    assert!(accepted["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(accepted["lastTransitionTime"].as_str().is_some());

    // The Gateway gets an address and is programmed; the HTTPS listener's certificate Secret
    // does not exist yet, so that listener is not.
    let gw = status_where(&gateways, "edge", "gateway programmed", |s| {
        is(s, "/conditions", "Programmed", "True", "Programmed")
    })
    .await;
    assert!(
        is(&gw, "/conditions", "Accepted", "True", "Accepted"),
        "{gw:#}"
    );
    let addr = &gw["addresses"][0];
    assert_eq!(addr["type"], "IPAddress", "{gw:#}");
    assert!(
        addr["value"].as_str().unwrap().starts_with("192.0.2."),
        "{addr}"
    );
    let https = listener(&gw, "https").unwrap();
    assert!(
        is(
            https,
            "/conditions",
            "ResolvedRefs",
            "False",
            "InvalidCertificateRef"
        ),
        "{https:#}"
    );
    assert!(
        is(https, "/conditions", "Programmed", "False", "Invalid"),
        "{https:#}"
    );
    assert!(
        is(https, "/conditions", "Accepted", "True", "Accepted"),
        "{https:#}"
    );
    let http = listener(&gw, "http").unwrap();
    for t in ["Accepted", "Programmed", "ResolvedRefs"] {
        assert_eq!(
            state(http, "/conditions", t).unwrap().0,
            "True",
            "{t}: {http:#}"
        );
    }
    assert_eq!(
        http["supportedKinds"],
        json!([{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}])
    );
    assert_eq!(
        listener(&gw, "db").unwrap()["supportedKinds"][0]["kind"],
        "TCPRoute"
    );
    // web attaches to both HTTP listeners, api to https only, db to the TCP listener.
    let attached = |gw: &Value, l: &str| listener(gw, l).unwrap()["attachedRoutes"].clone();
    let gw = status_where(&gateways, "edge", "routes attached", |s| {
        listener(s, "https").is_some_and(|l| l["attachedRoutes"] == 2)
    })
    .await;
    assert_eq!(
        (attached(&gw, "http"), attached(&gw, "db")),
        (json!(1), json!(1))
    );

    // Routes: accepted by the double's controller, parentRef as given.
    let web = status_where(&http_routes, "web", "route accepted", |s| {
        is(s, "/parents/0/conditions", "Accepted", "True", "Accepted")
    })
    .await;
    let parent = &web["parents"][0];
    assert_eq!(parent["parentRef"], web_parent);
    assert_eq!(parent["controllerName"], DOUBLE_GATEWAY_CONTROLLER);
    assert!(is(
        &web,
        "/parents/0/conditions",
        "ResolvedRefs",
        "True",
        "ResolvedRefs"
    ));
    assert_eq!(web["parents"].as_array().unwrap().len(), 1);
    let db = status_where(&tcp_routes, "db", "TCP route accepted", |s| {
        is(s, "/parents/0/conditions", "Accepted", "True", "Accepted")
    })
    .await;
    assert!(is(
        &db,
        "/parents/0/conditions",
        "ResolvedRefs",
        "True",
        "ResolvedRefs"
    ));
    // A missing backend Service: accepted, but its references do not resolve...
    let api_route = status_where(&http_routes, "api", "backend not found", |s| {
        is(
            s,
            "/parents/0/conditions",
            "ResolvedRefs",
            "False",
            "BackendNotFound",
        )
    })
    .await;
    assert!(is(
        &api_route,
        "/parents/0/conditions",
        "Accepted",
        "True",
        "Accepted"
    ));
    // ...until the Service exists.
    service(&client, "api").await;
    status_where(&http_routes, "api", "backend found", |s| {
        is(
            s,
            "/parents/0/conditions",
            "ResolvedRefs",
            "True",
            "ResolvedRefs",
        )
    })
    .await;

    // An ACME issuer, and a Certificate for the HTTPS listener's Secret.
    apply(&issuers, json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "letsencrypt"},
        "spec": {"acme": {"server": "https://acme-v02.api.letsencrypt.org/directory",
                          "email": "ops@example.com", "privateKeySecretRef": {"name": "letsencrypt-account"},
                          "solvers": [{"http01": {"gatewayHTTPRoute": {"parentRefs": [{"name": "edge"}]}}}]}}})).await;
    let iss = status_where(&issuers, "letsencrypt", "issuer ready", |s| {
        is(s, "/conditions", "Ready", "True", "ACMEAccountRegistered")
    })
    .await;
    assert_eq!(
        condition(&iss, "/conditions", "Ready").unwrap()["message"],
        "The ACME account was registered with the ACME server"
    );
    assert!(
        iss["acme"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("https://acme-v02.api.letsencrypt.org/acme/acct/"),
        "{iss:#}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    eventually(5, "ACME account key Secret", || async {
        secrets.get("letsencrypt-account").await.ok()
    })
    .await;
    apply(&certs, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "app"},
        "spec": {"secretName": "app-tls", "dnsNames": ["app.example.com"],
                 "issuerRef": {"name": "letsencrypt", "kind": "Issuer", "group": "cert-manager.io"}}})).await;
    // Issuing first, ready after the issuer answers.
    let issuing = status_where(&certs, "app", "certificate issuing", |s| {
        condition(s, "/conditions", "Issuing").is_some()
            || is(s, "/conditions", "Ready", "True", "Ready")
    })
    .await;
    if condition(&issuing, "/conditions", "Issuing").is_some() {
        assert!(
            is(&issuing, "/conditions", "Ready", "False", "DoesNotExist"),
            "{issuing:#}"
        );
        assert!(
            is(&issuing, "/conditions", "Issuing", "True", "DoesNotExist"),
            "{issuing:#}"
        );
        assert_eq!(
            condition(&issuing, "/conditions", "Ready").unwrap()["message"],
            "Issuing certificate as Secret does not exist"
        );
    }
    let cert = status_where(&certs, "app", "certificate ready", |s| {
        is(s, "/conditions", "Ready", "True", "Ready")
    })
    .await;
    assert_eq!(
        condition(&cert, "/conditions", "Ready").unwrap()["message"],
        "Certificate is up to date and has not expired"
    );
    assert_eq!(cert["revision"], 1);
    assert!(
        condition(&cert, "/conditions", "Issuing").is_none(),
        "{cert:#}"
    );
    for f in ["notBefore", "notAfter", "renewalTime"] {
        assert!(
            cert[f].as_str().is_some_and(|t| t.ends_with('Z')),
            "{f}: {cert:#}"
        );
    }
    let secret = secrets.get("app-tls").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let ann = secret.metadata.annotations.clone().unwrap();
    for (k, v) in [
        ("cert-manager.io/certificate-name", "app"),
        ("cert-manager.io/issuer-name", "letsencrypt"),
        ("cert-manager.io/issuer-kind", "Issuer"),
        ("cert-manager.io/alt-names", "app.example.com"),
    ] {
        assert_eq!(ann.get(k).map(String::as_str), Some(v), "{k}");
    }
    let data = secret.data.unwrap();
    verify_chain(&data["tls.crt"].0, "app.example.com");
    assert!(
        String::from_utf8_lossy(&data["tls.key"].0).contains("PRIVATE KEY-----"),
        "tls.key is a PEM private key"
    );
    // What cert-manager reports on the Certificate, in order.
    let evs = events_of(&client, "default", "app").await;
    let reasons: Vec<(&str, &str)> = evs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("Normal", "Issuing"),
            ("Normal", "Generated"),
            ("Normal", "Requested"),
            ("Normal", "Issuing")
        ],
        "{evs:#?}"
    );
    assert_eq!(evs[3].2, "The certificate has been successfully issued");
    assert_eq!(evs[3].3, "cert-manager-certificates-issuing");
    assert_eq!(
        evs[2].2,
        "Created new CertificateRequest resource \"app-1\""
    );
    // The CertificateRequest, approved and issued; the temporary key Secret is gone.
    let requests = api(
        &client,
        &ar(
            "cert-manager.io",
            "v1",
            "CertificateRequest",
            "certificaterequests",
        ),
        Some("default"),
    );
    let cr = status(&requests, "app-1").await;
    assert!(
        is(&cr, "/conditions", "Approved", "True", "cert-manager.io"),
        "{cr:#}"
    );
    assert!(is(&cr, "/conditions", "Ready", "True", "Issued"), "{cr:#}");
    let temp = secrets
        .list(&ListParams::default().labels("cert-manager.io/next-private-key=true"))
        .await
        .unwrap();
    assert!(
        temp.items.is_empty(),
        "the temporary private key Secret is deleted"
    );

    // With its Secret issued, the HTTPS listener resolves and is programmed.
    let gw = status_where(&gateways, "edge", "listener resolved", |s| {
        listener(s, "https")
            .is_some_and(|l| is(l, "/conditions", "ResolvedRefs", "True", "ResolvedRefs"))
    })
    .await;
    assert!(is(
        listener(&gw, "https").unwrap(),
        "/conditions",
        "Programmed",
        "True",
        "Programmed"
    ));
    // Condition timestamps are kept while a condition does not change.
    let first = condition(&class, "/conditions", "Accepted").unwrap()["lastTransitionTime"].clone();
    assert_eq!(
        condition(&status(&classes, "double").await, "/conditions", "Accepted").unwrap()["lastTransitionTime"],
        first
    );

    settles(&client).await;
    // Objects of another controller, and routes to a missing Gateway, got no status at all.
    assert_eq!(status(&classes, "foreign").await, Value::Null);
    assert_eq!(status(&gateways, "elsewhere").await, Value::Null);
    assert_eq!(status(&http_routes, "foreign").await, Value::Null);
    assert_eq!(status(&http_routes, "orphan").await, Value::Null);
    double.shutdown().await;
}

#[tokio::test]
async fn gateway_programming_switch_and_hostname_addresses() {
    let double = start_with(Options {
        gateway_programming: false,
        ..Default::default()
    })
    .await;
    let client = client(&double).await;
    apply_crds(&client, crds::GATEWAY_API).await;
    let [class_r, gw_r, ..] = crd_kinds();
    let classes = api(&client, &class_r, None);
    let gateways = api(&client, &gw_r, Some("default"));
    apply(
        &classes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "double"}, "spec": {"controllerName": DOUBLE_GATEWAY_CONTROLLER}}),
    )
    .await;
    apply(&gateways, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge"},
        "spec": {"gatewayClassName": "double", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})).await;

    // Off: accepted, never programmed, no address — what a real one says without a load balancer.
    let not_programmed = |s: &Value| {
        is(s, "/conditions", "Accepted", "True", "Accepted")
            && is(
                s,
                "/conditions",
                "Programmed",
                "False",
                "AddressNotAssigned",
            )
    };
    let st = status_where(&gateways, "edge", "gateway not programmed", not_programmed).await;
    assert_eq!(
        condition(&st, "/conditions", "Programmed").unwrap()["message"],
        "No addresses have been assigned to the Gateway"
    );
    assert!(st.get("addresses").is_none(), "{st:#}");
    settles(&client).await;
    let st = status(&gateways, "edge").await;
    assert!(
        not_programmed(&st) && st.get("addresses").is_none(),
        "still not programmed: {st:#}"
    );

    // On: programmed with an IP address.
    double.set_gateway_programming(true);
    let st = status_where(&gateways, "edge", "gateway programmed", |s| {
        is(s, "/conditions", "Programmed", "True", "Programmed")
    })
    .await;
    let ip = st["addresses"][0].clone();
    assert_eq!(ip["type"], "IPAddress");

    // Host names, as an AWS load balancer gives them.
    double.set_gateway_hostname_addresses(true);
    let st = status_where(&gateways, "edge", "host name address", |s| {
        s["addresses"][0]["type"] == "Hostname"
    })
    .await;
    assert_eq!(
        st["addresses"],
        json!([{"type": "Hostname", "value": "edge-default.lb.double.example"}])
    );
    assert!(is(&st, "/conditions", "Programmed", "True", "Programmed"));

    // Off again: the address is withdrawn; back on: the same address as before.
    double.set_gateway_hostname_addresses(false);
    double.set_gateway_programming(false);
    status_where(&gateways, "edge", "programming off", |s| {
        not_programmed(s) && s.get("addresses").is_none()
    })
    .await;
    double.set_gateway_programming(true);
    let st = status_where(&gateways, "edge", "programmed again", |s| {
        is(s, "/conditions", "Programmed", "True", "Programmed")
    })
    .await;
    assert_eq!(st["addresses"][0], ip, "the Gateway keeps its address");
    settles(&client).await;
    double.shutdown().await;
}

#[tokio::test]
async fn certificate_issuance_switch_fails_like_an_unreachable_http01_challenge() {
    let double = start_with(Options::default()).await;
    let client = client(&double).await;
    apply_crds(&client, crds::CERT_MANAGER).await;
    let certs = api(
        &client,
        &ar("cert-manager.io", "v1", "Certificate", "certificates"),
        Some("default"),
    );
    let cluster_issuers = api(
        &client,
        &ar("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers"),
        None,
    );
    let issuers = api(
        &client,
        &ar("cert-manager.io", "v1", "Issuer", "issuers"),
        Some("default"),
    );
    apply(
        &cluster_issuers,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "letsencrypt-staging"},
        "spec": {"acme": {"server": "https://acme-staging-v02.api.letsencrypt.org/directory",
                          "privateKeySecretRef": {"name": "le-staging-account"},
                          "solvers": [{"http01": {"ingress": {}}}]}}}),
    )
    .await;
    apply(
        &issuers,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "self"}, "spec": {"selfSigned": {}}}),
    )
    .await;
    let st = status_where(
        &cluster_issuers,
        "letsencrypt-staging",
        "cluster issuer ready",
        |s| is(s, "/conditions", "Ready", "True", "ACMEAccountRegistered"),
    )
    .await;
    assert!(
        st["acme"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("https://acme-staging-v02.api.letsencrypt.org/acme/acct/")
    );
    status_where(&issuers, "self", "self-signed issuer ready", |s| {
        is(s, "/conditions", "Ready", "True", "IsReady")
    })
    .await;

    // Off: the order goes invalid, as when Let's Encrypt cannot reach the HTTP-01 challenge.
    double.set_certificate_issuance(false);
    apply(
        &certs,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "shop"},
        "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                 "issuerRef": {"name": "letsencrypt-staging", "kind": "ClusterIssuer"}}}),
    )
    .await;
    let st = status_where(&certs, "shop", "issuance failed", |s| {
        is(s, "/conditions", "Issuing", "False", "Failed")
    })
    .await;
    assert!(
        is(&st, "/conditions", "Ready", "False", "DoesNotExist"),
        "{st:#}"
    );
    assert_eq!(
        condition(&st, "/conditions", "Ready").unwrap()["message"],
        "Issuing certificate as Secret does not exist"
    );
    let msg = condition(&st, "/conditions", "Issuing").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("The certificate request has failed to complete and will be retried: Failed to wait for order resource \"shop-1-")
            && msg.ends_with("\" to become ready: order is in \"invalid\" state: "),
        "{msg}"
    );
    assert_eq!(st["failedIssuanceAttempts"], 1);
    assert!(st["lastFailureTime"].as_str().is_some());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert!(secrets.get_opt("shop-tls").await.unwrap().is_none());
    let evs = events_of(&client, "default", "shop").await;
    let failed = evs
        .iter()
        .find(|e| e.0 == "Warning")
        .expect("a Warning Event");
    assert_eq!(
        (failed.1.as_str(), failed.2.as_str()),
        ("Failed", msg.as_str())
    );
    let requests = api(
        &client,
        &ar(
            "cert-manager.io",
            "v1",
            "CertificateRequest",
            "certificaterequests",
        ),
        Some("default"),
    );
    let cr = status(&requests, "shop-1").await;
    assert!(is(&cr, "/conditions", "Ready", "False", "Failed"), "{cr:#}");
    // It stays failed (cert-manager backs off) and the loop settles.
    settles(&client).await;
    let again = status(&certs, "shop").await;
    assert_eq!(again["failedIssuanceAttempts"], 1);
    assert!(is(&again, "/conditions", "Issuing", "False", "Failed"));

    // Back on: the retry issues it.
    double.set_certificate_issuance(true);
    let st = status_where(&certs, "shop", "certificate ready", |s| {
        is(s, "/conditions", "Ready", "True", "Ready")
    })
    .await;
    assert_eq!(st["revision"], 1);
    assert!(
        st.get("failedIssuanceAttempts").is_none() && st.get("lastFailureTime").is_none(),
        "{st:#}"
    );
    let secret = secrets.get("shop-tls").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    verify_chain(&data["tls.crt"].0, "shop.example.com");
    assert_eq!(
        secret.metadata.annotations.unwrap()["cert-manager.io/issuer-kind"],
        "ClusterIssuer"
    );

    // A self-signed Certificate carries itself as ca.crt.
    apply(
        &certs,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "internal"},
        "spec": {"secretName": "internal-tls", "dnsNames": ["internal.example"], "duration": "720h",
                 "issuerRef": {"name": "self"}}}),
    )
    .await;
    let st = status_where(&certs, "internal", "self-signed ready", |s| {
        is(s, "/conditions", "Ready", "True", "Ready")
    })
    .await;
    let (nb, na) = (
        time::OffsetDateTime::parse(
            st["notBefore"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap(),
        time::OffsetDateTime::parse(
            st["notAfter"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap(),
    );
    assert_eq!(na - nb, time::Duration::hours(720), "spec.duration");
    let data = secrets.get("internal-tls").await.unwrap().data.unwrap();
    assert_eq!(data["ca.crt"].0, data["tls.crt"].0);

    // A changed spec is reissued (revision 2) for the new names.
    apply(
        &certs,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "shop"},
        "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com", "www.shop.example.com"],
                 "issuerRef": {"name": "letsencrypt-staging", "kind": "ClusterIssuer"}}}),
    )
    .await;
    status_where(&certs, "shop", "reissued", |s| {
        is(s, "/conditions", "Ready", "True", "Ready") && s["revision"] == 2
    })
    .await;
    let data = secrets.get("shop-tls").await.unwrap().data.unwrap();
    verify_chain(&data["tls.crt"].0, "www.shop.example.com");
    settles(&client).await;
    double.shutdown().await;
}
