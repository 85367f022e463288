//! Support services end to end: a workload reachable on its domain over TLS. The control plane
//! runs on PostgreSQL + NATS with a separate `threeport controllers` process; Route53 is moto's,
//! reached through the real SDK; the cluster is the Kubernetes API double with its simulated
//! Gateway API implementation (`example.net/double-gateway`) and cert-manager.

mod common;

use common::*;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Server-side apply a manifest to the double, as a person would with kubectl.
fn kubectl_apply(kubeconfig: &str, manifest: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig, "apply", "--server-side", "-f"])
        .arg(&file)
        .output()
        .expect("kubectl runs (apt-get install kubectl)");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An object from the double, or `None`; a kind the cluster does not serve is `None` too.
async fn get(
    kube: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, _) = kube::discovery::pinned_kind(kube, &gvk).await.ok()?;
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, &ar),
        None => Api::all_with(kube.clone(), &ar),
    };
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

const GW: &str = "gateway.networking.k8s.io/v1";
const CM: &str = "cert-manager.io/v1";

/// The double as a runtime whose cluster already has a Gateway API implementation (the
/// double's class) and cert-manager's CRDs.
fn with_gateway_and_cert_manager(world: &AwsWorld) {
    let kc = world.work.path().join("kubeconfig");
    let kc = kc.to_str().unwrap();
    kubectl_apply(kc, kube_api_double::crds::GATEWAY_API);
    kubectl_apply(kc, kube_api_double::crds::CERT_MANAGER);
    kubectl_apply(
        kc,
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: double-gateway\nspec:\n  controllerName: {}\n",
            kube_api_double::DOUBLE_GATEWAY_CONTROLLER
        ),
    );
}

/// The workload's objects: a Deployment and its Service.
const MANIFEST: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: getting-started-wordpress\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: wordpress}\n  template:\n    metadata:\n      labels: {app: wordpress}\n    spec:\n      containers:\n        - name: wordpress\n          image: wordpress:6.5-apache\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: getting-started-wordpress\nspec:\n  selector: {app: wordpress}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 80\n";

/// Upstream's `Gateway` and `DomainName`, as its composite `Workload` writes them.
fn upstream_workload(name: &str, gateway: &str, domain: &str, sub: &str) -> String {
    format!(
        "Workload:\n  Name: {name}\n  YAMLDocument: manifest.yaml\n  DomainName:\n    Name: {name}-domain\n    Domain: {domain}\n    Zone: Public\n    AdminEmail: admin@example.com\n  Gateway:\n    Name: {gateway}\n    HttpPorts:\n      - Port: 80\n        HTTPSRedirect: true\n        Path: \"/\"\n      - Port: 443\n        TLSEnabled: true\n        Path: \"/\"\n    ServiceName: getting-started-wordpress\n    SubDomain: {sub}\n"
    )
}

/// The account that writes DNS: the runtime (the double) is no EKS runtime, so the default one.
async fn default_account(env: Tptctl, world: &AwsWorld) -> Tptctl {
    let account = world.file(
        "default-account.yaml",
        "AwsAccount:\n  Name: moto\n  AccountID: \"123456789012\"\n  DefaultAccount: true\n  DefaultRegion: us-east-1\n  AccessKeyID: AKIAEXAMPLEKEY\n  SecretAccessKey: wJalrXUtnFEMIEXAMPLE\n",
    );
    tp(env, &["apply", "-f", &account], true).await.0
}

use threeport_testkit::Tptctl;

/// The Route53 records of a zone: (name, type, values).
async fn records(r53: &aws_sdk_route53::Client, zone: &str) -> Vec<(String, String, Vec<String>)> {
    r53.list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap()
        .resource_record_sets()
        .iter()
        .map(|s| {
            (
                s.name().trim_end_matches('.').to_string(),
                s.r#type().as_str().to_string(),
                s.resource_records()
                    .iter()
                    .map(|r| r.value().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// Apply `text` as `file`, then poll the workload's `tptctl why` until it says `says`, within
/// 10 s of the apply.
async fn apply_then_why(
    env: Tptctl,
    world: &AwsWorld,
    file: &str,
    text: &str,
    workload: &str,
    says: &str,
) -> Tptctl {
    let f = world.file(file, text);
    let t = Instant::now();
    let (env, _) = tp(env, &["apply", "-f", &f], true).await;
    why_says(env, "workload-instance", workload, says, t).await
}

/// Poll `tptctl why KIND NAME` until it says `text`, within 10 s of `since`.
async fn why_says(mut env: Tptctl, kind: &str, name: &str, text: &str, since: Instant) -> Tptctl {
    loop {
        let (e, r) = tp(env, &["why", kind, name], false).await;
        env = e;
        if r.stdout.contains(text) {
            return env;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "`tptctl why {kind} {name}` did not say {text:?} within 10 s:\n{}{}",
            r.stdout,
            r.stderr
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Upstream's canonical gateway (80 redirecting, 443 with TLS, `SubDomain: blog`) and domain
/// name (`example.com`, `Public`) on a runtime with a Gateway API implementation and
/// cert-manager: the Gateway, the HTTPRoutes, the Issuer and the Certificate as specified, the
/// record in moto's hosted zone pointing at the Gateway's address, both `Healthy`. Deleting the
/// gateway removes its objects and its record; `delete -f` removes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_is_reachable_on_its_domain_over_tls() {
    let (env, world) = AwsWorld::start(tptctl()).await;
    with_gateway_and_cert_manager(&world);
    let env = default_account(env, &world).await;
    let r53 = aws_sdk_route53::Client::new(&world.aws);
    let zone = r53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("gateway-test")
        .send()
        .await
        .unwrap();
    let zone_id = zone
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string();
    world.file("manifest.yaml", MANIFEST);
    let file = world.file(
        "wordpress.yaml",
        &upstream_workload("wordpress", "web-service-gateway", "example.com", "blog"),
    );
    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "60s"],
        true,
    )
    .await;

    // The Gateway API objects, as specified.
    let kube = &world.kube;
    let ns = Some("wordpress");
    let gw = get(kube, GW, "Gateway", ns, "web-service-gateway")
        .await
        .expect("the Gateway");
    assert_eq!(gw["spec"]["gatewayClassName"], "double-gateway");
    let listeners = gw["spec"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2, "{gw:#}");
    assert_eq!(listeners[0]["port"], 80);
    assert_eq!(listeners[0]["protocol"], "HTTP");
    assert_eq!(listeners[1]["port"], 443);
    assert_eq!(listeners[1]["protocol"], "HTTPS");
    assert_eq!(listeners[1]["hostname"], "blog.example.com");
    assert_eq!(
        listeners[1]["tls"]["certificateRefs"][0]["name"],
        "web-service-gateway-tls"
    );
    let address = gw["status"]["addresses"][0]["value"]
        .as_str()
        .expect("the Gateway's address")
        .to_string();
    let redirect = get(kube, GW, "HTTPRoute", ns, "web-service-gateway-80")
        .await
        .expect("the port 80 route");
    assert_eq!(redirect["spec"]["hostnames"][0], "blog.example.com");
    assert_eq!(
        redirect["spec"]["rules"][0]["filters"][0]["requestRedirect"]["scheme"],
        "https"
    );
    let https = get(kube, GW, "HTTPRoute", ns, "web-service-gateway-443")
        .await
        .expect("the port 443 route");
    assert_eq!(https["spec"]["hostnames"][0], "blog.example.com");
    assert_eq!(
        https["spec"]["rules"][0]["backendRefs"][0],
        serde_json::json!({"name": "getting-started-wordpress", "port": 80})
    );
    assert_eq!(
        https["spec"]["rules"][0]["matches"][0]["path"],
        serde_json::json!({"type": "PathPrefix", "value": "/"})
    );
    let issuer = get(kube, CM, "Issuer", ns, "web-service-gateway-acme")
        .await
        .expect("the Issuer");
    assert_eq!(issuer["spec"]["acme"]["email"], "admin@example.com");
    assert_eq!(
        issuer["spec"]["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]["parentRefs"][0]["name"],
        "web-service-gateway"
    );
    let cert = get(kube, CM, "Certificate", ns, "web-service-gateway-tls")
        .await
        .expect("the Certificate");
    assert_eq!(cert["spec"]["dnsNames"][0], "blog.example.com");
    assert_eq!(
        cert["spec"]["issuerRef"]["name"],
        "web-service-gateway-acme"
    );

    // The record points at the Gateway's address.
    let recs = records(&r53, &zone_id).await;
    assert!(
        recs.contains(&("blog.example.com".into(), "A".into(), vec![address.clone()])),
        "{recs:?}"
    );
    let mut env = env;
    for plural in ["gateway-instances", "domain-name-instances"] {
        let (e, table) = tp(env, &["get", plural], true).await;
        env = e;
        assert!(table.lines()[1].contains("Healthy"), "{}", table.stdout);
    }
    let (env, table) = tp(
        env,
        &[
            "get",
            "gateway-instance",
            "web-service-gateway",
            "-o",
            "json",
        ],
        true,
    )
    .await;
    let g: Value = serde_json::from_str(&table.stdout).unwrap();
    assert_eq!(g["Address"], address.as_str());

    // The gateway alone goes: its objects and its record go, the workload stays.
    let (env, _) = tp(
        env,
        &[
            "delete",
            "gateway-instance",
            "web-service-gateway",
            "--wait",
            "--timeout",
            "30s",
        ],
        true,
    )
    .await;
    for (api, kind, name) in [
        (GW, "Gateway", "web-service-gateway"),
        (GW, "HTTPRoute", "web-service-gateway-80"),
        (GW, "HTTPRoute", "web-service-gateway-443"),
        (CM, "Issuer", "web-service-gateway-acme"),
        (CM, "Certificate", "web-service-gateway-tls"),
    ] {
        assert!(
            get(kube, api, kind, ns, name).await.is_none(),
            "{kind} {name} is left"
        );
    }
    assert!(
        get(
            kube,
            "apps/v1",
            "Deployment",
            ns,
            "getting-started-wordpress"
        )
        .await
        .is_some(),
        "the workload stays"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while records(&r53, &zone_id)
        .await
        .iter()
        .any(|r| r.0 == "blog.example.com")
    {
        assert!(
            Instant::now() < deadline,
            "the record stays without its gateway"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The rest of the file.
    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "60s"],
        true,
    )
    .await;
    assert!(
        !records(&r53, &zone_id).await.iter().any(|r| r.1 == "A"),
        "no record is left"
    );
    world.stop(env).await;
}

/// Failures show on the top-level `Workload` (`tptctl why`) within 10 s: no hosted zone, a
/// `ServiceName` the workload does not have, a Gateway that is never programmed, a certificate
/// that is never issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_failures_show_on_the_workload() {
    // A Gateway may wait this long for its address before it is shown Degraded (90 s by
    // default, for a cloud load balancer).
    let grace = ("THREEPORT_GATEWAY_PROGRAMMED_GRACE_SECS", "3".to_string());
    let (env, world) = AwsWorld::start_with(tptctl(), &[grace]).await;
    with_gateway_and_cert_manager(&world);
    let env = default_account(env, &world).await;
    let r53 = aws_sdk_route53::Client::new(&world.aws);
    r53.create_hosted_zone()
        .name("example.com")
        .caller_reference("failures")
        .send()
        .await
        .unwrap();
    world.file("manifest.yaml", MANIFEST);
    let plain = |name: &str, service: &str| {
        format!(
            "Workload:\n  Name: {name}\n  YAMLDocument: manifest.yaml\n  Gateway:\n    Name: {name}-gateway\n    HttpPorts:\n      - Port: 80\n    ServiceName: {service}\n"
        )
    };

    // No hosted zone for the domain.
    let env = apply_then_why(
        env,
        &world,
        "nozone.yaml",
        &upstream_workload("nozone", "nozone-gateway", "nozone.example", "www"),
        "nozone",
        "no Route53 hosted zone for nozone.example in account moto",
    )
    .await;

    // A Service the workload does not have.
    let env = apply_then_why(
        env,
        &world,
        "nosvc.yaml",
        &plain("nosvc", "nope"),
        "nosvc",
        "ServiceName \"nope\": WorkloadInstance \"nosvc\" has no Service of that name; it has: getting-started-wordpress",
    )
    .await;

    // A Gateway the implementation never programs.
    world.double.set_gateway_programming(false);
    let env = apply_then_why(
        env,
        &world,
        "noprog.yaml",
        &plain("noprog", "getting-started-wordpress"),
        "noprog",
        "Gateway noprog-gateway has not been Programmed for over 3s: No addresses have been assigned to the Gateway (AddressNotAssigned)",
    )
    .await;
    let (env, r) = tp(env, &["get", "gateway-instances", "noprog-gateway"], true).await;
    assert!(r.stdout.contains("Degraded"), "{}", r.stdout);
    world.double.set_gateway_programming(true);

    // A certificate that is never issued.
    world.double.set_certificate_issuance(false);
    let env = apply_then_why(
        env,
        &world,
        "nocert.yaml",
        &upstream_workload("nocert", "nocert-gateway", "example.com", "shop"),
        "nocert",
        "Certificate nocert-gateway-tls is not Ready: The certificate request has failed to complete and will be retried",
    )
    .await;
    // Issued once it can be: the gateway recovers by itself.
    world.double.set_certificate_issuance(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut env = env;
    loop {
        let (e, r) = tp(env, &["get", "gateway-instances", "nocert-gateway"], true).await;
        env = e;
        if r.stdout.contains("Healthy") {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", r.stdout);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    world.stop(env).await;
}

/// A runtime without a Gateway API implementation gets one from the configured manifests (a
/// local HTTP server here, serving CRDs and a Deployment): with a wrong sha256 nothing is
/// applied and the gateway says why; with the right one the bundle is applied, waited for
/// (the Deployment rolled out, the class made and accepted) and recorded on the runtime,
/// which removes it when it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_without_gateway_support_gets_the_configured_bundle() {
    use sha2::Digest;
    // The bundle: Gateway API's CRDs and the implementation's Deployment.
    let site = tempfile::tempdir().unwrap();
    let bundle = format!(
        "{}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: double-gateway-system\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: double-gateway-controller\n  namespace: double-gateway-system\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: double-gateway}}\n  template:\n    metadata:\n      labels: {{app: double-gateway}}\n    spec:\n      containers:\n        - name: controller\n          image: registry.example/double-gateway:1.0\n",
        kube_api_double::crds::GATEWAY_API
    );
    std::fs::write(site.path().join("bundle.yaml"), &bundle).unwrap();
    let sum: String = sha2::Sha256::digest(bundle.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(site.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server starts");
    let url = format!("http://127.0.0.1:{port}/bundle.yaml");
    threeport_testkit::eventually(Duration::from_secs(10), "the bundle is served", || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
    let wrong = "0".repeat(64);
    let config = |sha: &str| {
        vec![
            ("THREEPORT_GATEWAY_MANIFESTS", url.clone()),
            ("THREEPORT_GATEWAY_MANIFESTS_SHA256", sha.to_string()),
            (
                "THREEPORT_GATEWAY_CONTROLLER_NAME",
                kube_api_double::DOUBLE_GATEWAY_CONTROLLER.to_string(),
            ),
        ]
    };
    let (env, mut world) = AwsWorld::start_with(tptctl(), &config(&wrong)).await;
    world.file("manifest.yaml", MANIFEST);
    let file = world.file(
        "web.yaml",
        "Workload:\n  Name: web\n  YAMLDocument: manifest.yaml\n  Gateway:\n    Name: web-gateway\n    HttpPorts:\n      - Port: 80\n    ServiceName: getting-started-wordpress\n",
    );

    // A wrong sha256: refused, with the reason, and nothing applied.
    let t = Instant::now();
    let (env, _) = tp(env, &["apply", "-f", &file], true).await;
    let env = why_says(
        env,
        "gateway-instance",
        "web-gateway",
        &format!(
            "sha256 is {sum}, but the control plane's config expects {wrong}; nothing was applied"
        ),
        t,
    )
    .await;
    let kube = world.kube.clone();
    assert!(
        get(
            &kube,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "gateways.gateway.networking.k8s.io"
        )
        .await
        .is_none(),
        "nothing applied"
    );
    assert!(
        get(&kube, "v1", "Namespace", None, "double-gateway-system")
            .await
            .is_none()
    );

    // The right one: applied, waited for, recorded.
    world
        .controller_env
        .retain(|(k, _)| !k.starts_with("THREEPORT_GATEWAY"));
    world.controller_env.extend(config(&sum));
    world.kill_and_respawn_controllers();
    let (env, _) = tp(
        env,
        &[
            "delete",
            "gateway-instance",
            "web-gateway",
            "--wait",
            "--timeout",
            "30s",
        ],
        true,
    )
    .await;
    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "60s"],
        true,
    )
    .await;
    let deployment = get(
        &kube,
        "apps/v1",
        "Deployment",
        Some("double-gateway-system"),
        "double-gateway-controller",
    )
    .await
    .expect("the implementation's Deployment");
    assert_eq!(deployment["status"]["readyReplicas"], 1, "rolled out");
    let class = get(&kube, GW, "GatewayClass", None, "threeport")
        .await
        .expect("the class made for it");
    assert_eq!(
        class["spec"]["controllerName"],
        kube_api_double::DOUBLE_GATEWAY_CONTROLLER
    );
    let gw = get(&kube, GW, "Gateway", Some("web"), "web-gateway")
        .await
        .expect("the Gateway");
    assert_eq!(gw["spec"]["gatewayClassName"], "threeport");
    let (env, r) = tp(
        env,
        &["get", "kubernetes-runtime-instance", "double", "-o", "json"],
        true,
    )
    .await;
    let runtime: Value = serde_json::from_str(&r.stdout).unwrap();
    let rec = &runtime["SupportServices"]["gateway-api"];
    assert_eq!(rec["Installed"], true, "{runtime:#}");
    assert_eq!(rec["Source"], url.as_str());
    assert_eq!(rec["GatewayClass"], "threeport");
    let kinds: Vec<&str> = rec["Objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"CustomResourceDefinition")
            && kinds.contains(&"Deployment")
            && kinds.contains(&"GatewayClass"),
        "{kinds:?}"
    );
    let (env, d) = tp(
        env,
        &["describe", "kubernetes-runtime-instance", "double"],
        true,
    )
    .await;
    assert!(d.stdout.contains("SupportServices"), "{}", d.stdout);

    // Removed with the runtime.
    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "60s"],
        true,
    )
    .await;
    let (env, _) = tp(
        env,
        &[
            "delete",
            "kubernetes-runtime-instance",
            "double",
            "--wait",
            "--timeout",
            "30s",
        ],
        true,
    )
    .await;
    assert!(
        get(
            &kube,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "gateways.gateway.networking.k8s.io"
        )
        .await
        .is_none(),
        "the CRDs go with the runtime"
    );
    assert!(
        get(
            &kube,
            "apps/v1",
            "Deployment",
            Some("double-gateway-system"),
            "double-gateway-controller"
        )
        .await
        .is_none()
    );
    server.kill().ok();
    server.wait().ok();
    world.stop(env).await;
}
