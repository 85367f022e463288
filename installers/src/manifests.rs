//! The control plane's Kubernetes objects, built as typed k8s-openapi values (no text templates):
//! a typo is a compile error, and every object is exactly what the API server will parse.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, KeyToPath, Namespace, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, SecretVolumeSource,
    Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use serde_json::Value;
use std::collections::BTreeMap;
use threeport_pki::{CertAuthority, CertPair, TlsBundle};

pub const NAMESPACE: &str = "threeport-control-plane";
pub const API_NAME: &str = "threeport-api-server";
pub const API_PORT: i32 = 1323;
/// The NodePort kind maps to the host.
pub const NODE_PORT: i32 = 30323;
/// The controllers, one Deployment each: `threeport-<name>-controller` runs
/// `threeport controllers --only <name>`, with its own client certificate.
pub const CONTROLLERS: &[&str] = &["workload", "kubernetes-runtime", "secret", "aws", "gateway"];

/// `workload` → `workload-controller`: the name of its Deployment (after `threeport-`),
/// certificate and Secret.
pub fn controller_name(controller: &str) -> String {
    format!("{controller}-controller")
}

/// How the API is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// kind: a NodePort, mapped to the host by the kind cluster config.
    NodePort,
    /// EKS: a cloud load balancer.
    LoadBalancer,
}

/// The images the install runs. `threeport` is a full reference: either a published image
/// (`--image-repo`/`--image-tag`) or the one `tptctl image build` made and the provider put
/// where the nodes find it (loaded into kind, pushed to ECR).
#[derive(Clone, Debug)]
pub struct Images {
    pub threeport: String,
    pub cockroach: String,
    pub nats: String,
}

/// Where published threeport images live, for `--image-repo`'s default.
pub const PUBLISHED_REPO: &str = "ghcr.io/threeport";

impl Default for Images {
    fn default() -> Self {
        Images::published(PUBLISHED_REPO, env!("CARGO_PKG_VERSION"))
    }
}

impl Images {
    /// `<repo>/threeport:<tag>` from a registry the nodes pull from.
    pub fn published(repo: &str, tag: &str) -> Images {
        Images::with_threeport(format!("{}/threeport:{tag}", repo.trim_end_matches('/')))
    }

    /// This exact reference for the threeport containers (e.g. a built image's).
    pub fn with_threeport(reference: String) -> Images {
        Images {
            threeport: reference,
            cockroach: "cockroachdb/cockroach:v24.1.4".into(),
            nats: "nats:2.10-alpine".into(),
        }
    }

    fn threeport(&self) -> String {
        self.threeport.clone()
    }
}

/// Everything secret the install generates: API mTLS, database TLS, the encryption key.
pub struct Secrets {
    pub api: TlsBundle,
    pub db_ca: CertAuthority,
    pub db_node: CertPair,
    pub db_root: CertPair,
    /// One client certificate per controller, so each can be revoked on its own.
    pub controllers: Vec<(String, CertPair)>,
    pub encryption_key: String,
}

impl Secrets {
    /// The API's CA and the client certificate `tptctl` presents to it.
    pub fn client_tls(&self) -> threeport_api::ClientTls {
        threeport_api::ClientTls {
            ca_pem: self.api.ca.pair.cert_pem.clone(),
            cert_pem: self.api.client.cert_pem.clone(),
            key_pem: self.api.client.key_pem.clone(),
        }
    }

    pub fn generate(api_hosts: &[&str], encryption_key: String) -> anyhow::Result<Secrets> {
        let e = |e: threeport_pki::PkiError| anyhow::anyhow!("{e}");
        let api = TlsBundle::generate(api_hosts).map_err(e)?;
        let db_ca = CertAuthority::generate("Threeport CockroachDB CA").map_err(e)?;
        // CockroachDB's node certificate: CN=node, serverAuth and clientAuth, and every name
        // the node is dialled by (the Service, the StatefulSet Pod's stable name).
        let db_node = db_ca
            .issue_node(
                "node",
                &[
                    "localhost",
                    "127.0.0.1",
                    "crdb",
                    "crdb.threeport-control-plane",
                    "crdb.threeport-control-plane.svc",
                    "crdb.threeport-control-plane.svc.cluster.local",
                    "crdb-0.crdb",
                    "crdb-0.crdb.threeport-control-plane",
                    "crdb-0.crdb.threeport-control-plane.svc",
                    "crdb-0.crdb.threeport-control-plane.svc.cluster.local",
                ],
            )
            .map_err(e)?;
        let db_root = db_ca.issue_client("root").map_err(e)?;
        let controllers = CONTROLLERS
            .iter()
            .map(|c| {
                let name = controller_name(c);
                let pair = api.ca.issue_client(&name).map_err(e)?;
                Ok((name, pair))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Secrets {
            api,
            db_ca,
            db_node,
            db_root,
            controllers,
            encryption_key,
        })
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        labels: Some(labels(name)),
        ..Default::default()
    }
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), app.into()),
        ("app.kubernetes.io/part-of".into(), "threeport".into()),
    ])
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(name),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The user every threeport container runs as: the image's own non-root user.
pub const RUN_AS: i64 = crate::image::UID as i64;

/// A Secret mounted for a threeport container. The kubelet makes the files root's, with the
/// group of the pod's `fsGroup`; 0440 lets that group (the container's user, see
/// [`threeport_pod`]) read them and nobody else. 0400 would leave a non-root process unable to
/// read its own key.
fn secret_volume(name: &str, secret: &str) -> Volume {
    secret_volume_mode(name, secret, 0o440, None)
}

/// Only the listed keys of `secret`, so a pod never holds a key it does not use.
fn secret_volume_items(name: &str, secret: &str, keys: &[&str]) -> Volume {
    secret_volume_mode(name, secret, 0o440, Some(keys))
}

fn secret_volume_mode(name: &str, secret: &str, mode: i32, keys: Option<&[&str]>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(mode),
            items: keys.map(|keys| {
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).into(),
                        path: (*k).into(),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod-level security of every threeport pod: the image's user and group, non-root
/// enforced, and `fsGroup` so mounted Secrets are readable by that group.
fn threeport_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        run_as_non_root: Some(true),
        fs_group: Some(RUN_AS),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        ..Default::default()
    }
}

fn service(
    name: &str,
    selector: &str,
    ports: Vec<ServicePort>,
    type_: &str,
    headless: bool,
) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            selector: Some(labels(selector)),
            ports: Some(ports),
            type_: Some(type_.into()),
            cluster_ip: headless.then(|| "None".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sport(name: &str, port: i32, node_port: Option<i32>) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        node_port,
        ..Default::default()
    }
}

fn volume_claim(name: &str, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stateful_set(
    name: &str,
    container: Container,
    volumes: Vec<Volume>,
    claim: PersistentVolumeClaim,
) -> StatefulSet {
    StatefulSet {
        metadata: meta(name),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.into()),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn deployment(
    name: &str,
    sa: &str,
    init: Option<Container>,
    container: Container,
    volumes: Vec<Volume>,
) -> Deployment {
    Deployment {
        metadata: meta(name),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(sa.into()),
                    security_context: Some(threeport_pod()),
                    init_containers: init.map(|c| vec![c]),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

const DB_URL: &str = "postgresql://root@crdb:26257/threeport?sslmode=verify-full&sslrootcert=/certs/db/ca.crt&sslcert=/certs/db/client.root.crt&sslkey=/certs/db/client.root.key";

/// Every object of the control plane, in apply order, as JSON ready for server-side apply.
pub fn control_plane(images: &Images, secrets: &Secrets, exposure: Exposure) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut push = |v: Value| out.push(v);
    let to = |o: &dyn erased::Ser| o.to_json();

    push(to(&Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            labels: Some(labels("threeport")),
            ..Default::default()
        },
        ..Default::default()
    }));

    // RBAC: the control plane reads its own namespace; clusters are reached with runtime credentials.
    push(to(&ServiceAccount {
        metadata: meta("threeport"),
        ..Default::default()
    }));
    push(to(&Role {
        metadata: meta("threeport"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into(), "apps".into()]),
            resources: Some(vec![
                "pods".into(),
                "services".into(),
                "deployments".into(),
                "statefulsets".into(),
            ]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    }));
    push(to(&RoleBinding {
        metadata: meta("threeport"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "threeport".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "threeport".into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    }));

    // Secrets.
    push(to(&secret(
        "threeport-encryption-key",
        &[("key", &secrets.encryption_key)],
    )));
    push(to(&secret(
        "threeport-api-tls",
        &[
            ("ca.crt", &secrets.api.ca.pair.cert_pem),
            ("server.crt", &secrets.api.server.cert_pem),
            ("server.key", &secrets.api.server.key_pem),
        ],
    )));
    for (name, pair) in &secrets.controllers {
        push(to(&secret(
            &format!("threeport-{name}-tls"),
            &[
                ("ca.crt", &secrets.api.ca.pair.cert_pem),
                ("client.crt", &pair.cert_pem),
                ("client.key", &pair.key_pem),
            ],
        )));
    }
    push(to(&secret(
        "crdb-tls",
        &[
            ("ca.crt", &secrets.db_ca.pair.cert_pem),
            ("node.crt", &secrets.db_node.cert_pem),
            ("node.key", &secrets.db_node.key_pem),
            ("client.root.crt", &secrets.db_root.cert_pem),
            ("client.root.key", &secrets.db_root.key_pem),
        ],
    )));

    // CockroachDB, single node, TLS, on a volume.
    push(to(&service(
        "crdb",
        "crdb",
        vec![sport("sql", 26257, None), sport("http", 8080, None)],
        "ClusterIP",
        true,
    )));
    push(to(&stateful_set(
        "crdb",
        Container {
            name: "cockroach".into(),
            image: Some(images.cockroach.clone()),
            args: Some(vec![
                "start-single-node".into(),
                "--certs-dir=/cockroach/certs".into(),
                "--store=/cockroach/data".into(),
            ]),
            ports: Some(vec![port("sql", 26257), port("http", 8080)]),
            volume_mounts: Some(vec![
                mount("certs", "/cockroach/certs"),
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/cockroach/data".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        },
        // CockroachDB runs as root in its image and refuses keys readable by anyone else.
        vec![secret_volume_mode(
            "certs",
            "crdb-tls",
            0o400,
            Some(&["ca.crt", "node.crt", "node.key"]),
        )],
        volume_claim("data", "10Gi"),
    )));

    // NATS with JetStream, on a volume.
    push(to(&service(
        "nats",
        "nats",
        vec![sport("client", 4222, None)],
        "ClusterIP",
        false,
    )));
    push(to(&stateful_set(
        "nats",
        Container {
            name: "nats".into(),
            image: Some(images.nats.clone()),
            args: Some(vec!["-js".into(), "-sd".into(), "/data".into()]),
            ports: Some(vec![port("client", 4222)]),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        vec![],
        volume_claim("data", "5Gi"),
    )));

    // The API: an init container creates the database and runs migrations, then the server.
    // The API is a SQL client: the CA and root's client certificate, never the node's key.
    let db_volume = secret_volume_items(
        "db-certs",
        "crdb-tls",
        &["ca.crt", "client.root.crt", "client.root.key"],
    );
    let api = deployment(
        API_NAME,
        "threeport",
        Some(Container {
            name: "migrate".into(),
            image: Some(images.threeport()),
            // A loaded image is never pulled; a published one is pulled once per node.
            image_pull_policy: Some("IfNotPresent".into()),
            args: Some(vec![
                "migrate".into(),
                "--database-url".into(),
                DB_URL.into(),
            ]),
            volume_mounts: Some(vec![mount("db-certs", "/certs/db")]),
            ..Default::default()
        }),
        Container {
            name: "api".into(),
            image: Some(images.threeport()),
            // A loaded image is never pulled; a published one is pulled once per node.
            image_pull_policy: Some("IfNotPresent".into()),
            args: Some(
                [
                    "serve",
                    "--listen",
                    "0.0.0.0:1323",
                    "--tls-dir",
                    "/certs/api",
                    "--encryption-key-file",
                    "/secrets/key/key",
                    "--nats-url",
                    "nats://nats:4222",
                    "--no-controllers",
                    "--no-migrate",
                    "--database-url",
                    DB_URL,
                ]
                .map(String::from)
                .to_vec(),
            ),
            ports: Some(vec![port("api", API_PORT)]),
            volume_mounts: Some(vec![
                mount("api-tls", "/certs/api"),
                mount("db-certs", "/certs/db"),
                mount("key", "/secrets/key"),
            ]),
            ..Default::default()
        },
        vec![
            secret_volume("api-tls", "threeport-api-tls"),
            db_volume,
            secret_volume("key", "threeport-encryption-key"),
        ],
    );
    push(to(&api));
    let (svc_type, node_port) = match exposure {
        Exposure::NodePort => ("NodePort", Some(NODE_PORT)),
        Exposure::LoadBalancer => ("LoadBalancer", None),
    };
    push(to(&service(
        API_NAME,
        API_NAME,
        vec![sport("api", API_PORT, node_port)],
        svc_type,
        false,
    )));

    // One Deployment per controller, each running only its own controller with its own
    // client certificate, so each scales and fails on its own.
    for controller in CONTROLLERS {
        let name = controller_name(controller);
        push(to(&deployment(
            &format!("threeport-{name}"),
            "threeport",
            None,
            Container {
                name: name.clone(),
                image: Some(images.threeport()),
                image_pull_policy: Some("IfNotPresent".into()),
                args: Some(
                    [
                        "controllers",
                        "--only",
                        controller,
                        "--api-url",
                        "https://threeport-api-server:1323",
                        "--nats-url",
                        "nats://nats:4222",
                        "--tls-dir",
                        "/certs/client",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                env: Some(vec![EnvVar {
                    name: "THREEPORT_LOG".into(),
                    value: Some("info".into()),
                    ..Default::default()
                }]),
                volume_mounts: Some(vec![mount("client-tls", "/certs/client")]),
                ..Default::default()
            },
            vec![secret_volume(
                "client-tls",
                &format!("threeport-{name}-tls"),
            )],
        )));
    }
    out
}

/// Serialize any typed object (with its apiVersion/kind) to JSON.
mod erased {
    use serde_json::Value;
    pub trait Ser {
        fn to_json(&self) -> Value;
    }
    impl<T: k8s_openapi::Resource + serde::Serialize> Ser for T {
        fn to_json(&self) -> Value {
            let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
            v["apiVersion"] = Value::String(T::API_VERSION.into());
            v["kind"] = Value::String(T::KIND.into());
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_is_namespaced_and_named() {
        let s = Secrets::generate(&[], "k".into()).unwrap();
        let objs = control_plane(&Images::default(), &s, Exposure::NodePort);
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        for k in [
            "Namespace",
            "StatefulSet",
            "Deployment",
            "Service",
            "Secret",
            "Role",
            "RoleBinding",
            "ServiceAccount",
        ] {
            assert!(kinds.contains(&k), "{k} missing");
        }
        for o in &objs {
            assert!(o["metadata"]["name"].is_string());
            if o["kind"] != "Namespace" {
                assert_eq!(o["metadata"]["namespace"], NAMESPACE);
            }
        }
        let api = objs
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == API_NAME)
            .unwrap();
        assert_eq!(api["spec"]["ports"][0]["nodePort"], NODE_PORT);
        let custom = Images::published("registry.local/tp/", "dev");
        // Each controller Deployment runs only its own controllers.
        for (deployment, only) in [
            ("threeport-workload-controller", "workload"),
            (
                "threeport-kubernetes-runtime-controller",
                "kubernetes-runtime",
            ),
        ] {
            let d = objs
                .iter()
                .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == deployment)
                .unwrap_or_else(|| panic!("{deployment} missing"));
            let args = &d["spec"]["template"]["spec"]["containers"][0]["args"];
            assert_eq!(args[0], "controllers", "{args}");
            assert_eq!(args[1], "--only", "{args}");
            assert_eq!(args[2], only, "{args}");
        }
        let objs = control_plane(&custom, &s, Exposure::LoadBalancer);
        assert!(
            serde_json::to_string(&objs)
                .unwrap()
                .contains("registry.local/tp/threeport:dev")
        );
    }

    #[test]
    fn threeport_pods_run_as_the_image_user_and_can_read_only_their_own_keys() {
        let s = Secrets::generate(&[], "k".repeat(44)).unwrap();
        let objs = control_plane(&Images::default(), &s, Exposure::NodePort);
        let deployments: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Deployment").collect();
        assert_eq!(deployments.len(), 1 + CONTROLLERS.len());
        // One Deployment for each controller the registry knows.
        let mut known = threeport_api::kinds::controllers();
        known.sort();
        let mut ours = CONTROLLERS.to_vec();
        ours.sort();
        assert_eq!(ours, known);
        for d in deployments {
            let pod = &d["spec"]["template"]["spec"];
            let name = &d["metadata"]["name"];
            let sc = &pod["securityContext"];
            assert_eq!(sc["runAsUser"], RUN_AS, "{name}");
            assert_eq!(sc["fsGroup"], RUN_AS, "{name}");
            assert_eq!(sc["runAsNonRoot"], true, "{name}");
            for v in pod["volumes"].as_array().unwrap() {
                assert_eq!(v["secret"]["defaultMode"], 0o440, "{name}: {v}");
                if v["secret"]["secretName"] == "crdb-tls" {
                    let keys: Vec<&str> = v["secret"]["items"]
                        .as_array()
                        .expect("only chosen keys of crdb-tls")
                        .iter()
                        .map(|i| i["key"].as_str().unwrap())
                        .collect();
                    assert!(!keys.contains(&"node.key"), "{name} mounts {keys:?}");
                }
            }
        }
        let crdb = objs
            .iter()
            .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "crdb")
            .unwrap();
        let v = &crdb["spec"]["template"]["spec"]["volumes"][0]["secret"];
        assert_eq!(v["defaultMode"], 0o400, "CockroachDB wants its key private");
    }
}
