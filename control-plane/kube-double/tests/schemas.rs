//! What the double serves is what a real API server would serve: every object it holds after a
//! busy scenario (rollouts, failing Pods, Jobs, a Terminating namespace, a
//! certificate issued by the simulated cert-manager, …) is dumped and
//! checked against the official Kubernetes 1.31 OpenAPI schemas with `kubernetes-validate
//! --strict` (PyPI), which rejects unknown fields, wrong types and missing required fields.
//!
//! `kubernetes-validate` is required: the test fails (it does not skip) when it is missing.

mod common;

use common::{client, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn validator() -> PathBuf {
    threeport_testkit::kubernetes_validate()
}

const SCENARIO: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: app}
data: {GREETING: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: app}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: runner, namespace: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{containerPort: 80}]
          resources: {limits: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: pull, namespace: app}
spec:
  selector: {matchLabels: {app: pull}}
  template:
    metadata: {labels: {app: pull}, annotations: {threeport.io/simulate-failure: ImagePullBackOff}}
    spec: {containers: [{name: a, image: nginx:no-such-tag}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: errpull, namespace: app}
spec:
  selector: {matchLabels: {app: errpull}}
  template:
    metadata: {labels: {app: errpull}, annotations: {threeport.io/simulate-failure: ErrImagePull}}
    spec: {containers: [{name: a, image: example.com/x/y:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: crash, namespace: app}
spec:
  selector: {matchLabels: {app: crash}}
  template:
    metadata: {labels: {app: crash}, annotations: {threeport.io/simulate-failure: CrashLoopBackOff}}
    spec: {containers: [{name: a, image: busybox}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: app}
spec:
  strategy: {type: Recreate}
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: a, image: "registry.example/stuck:never"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: app}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: app}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: busybox}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: app}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: doomed-job, namespace: app}
spec:
  backoffLimit: 0
  template:
    metadata: {annotations: {threeport.io/simulate-failure: CrashLoopBackOff}}
    spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: app}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: n, image: busybox}]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: app}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: app}
spec:
  rules:
    - host: web.example
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: app}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: app}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: app}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: runner, namespace: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: threeport-reader}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: threeport-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: threeport-reader}
subjects: [{kind: ServiceAccount, name: runner, namespace: app}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: app}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: v1
kind: Namespace
metadata: {name: leaving}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held, namespace: leaving, finalizers: [example.com/hold]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_the_double_serves_validates_against_the_official_schemas() {
    let validate = validator();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let double = kube_api_double::KubeDouble::start(kube_api_double::Options {
        ready_delay: common::READY_DELAY,
        never_ready_images: vec!["*:never".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client(&double).await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();

    // The scenario, applied as a controller applies it (server-side apply, any kind).
    for doc in serde_yaml::Deserializer::from_str(SCENARIO) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let (ar, caps) = match discovery.resolve_gvk(&gvk) {
            Some(x) => x,
            None => kube::discovery::pinned_kind(&client, &gvk).await.unwrap(),
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                v["metadata"]["namespace"].as_str().unwrap(),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("schema-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {}: {e}", obj.name_any()));
    }
    // A rollout (two ReplicaSets, a revision history), an events.k8s.io Event, a Terminating
    // namespace held by a finalizer.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "app");
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28",
                "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}]}}}})),
        )
        .await
        .unwrap();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "app")
        .get("web-config")
        .await
        .unwrap();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "schema-test".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Normal,
                reason: "Checked".into(),
                note: Some("validated".into()),
                action: "Validate".into(),
                secondary: None,
            },
            &cm.object_ref(&()),
        )
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .delete("leaving", &DeleteParams::default())
        .await
        .unwrap();
    let widgets = kube::discovery::pinned_kind(
        &client,
        &kube::api::GroupVersionKind::gvk("example.com", "v1", "Widget"),
    )
    .await
    .unwrap()
    .0;
    Api::<DynamicObject>::namespaced_with(client.clone(), "app", &widgets)
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).unwrap())
        .await
        .unwrap();
    // The add-ons: their CRDs, an ACME issuer and a Certificate it issues (the account key and
    // TLS Secrets, cert-manager's Events), a Gateway of the double's class.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for manifest in [
        kube_api_double::crds::GATEWAY_API,
        kube_api_double::crds::CERT_MANAGER,
    ] {
        for doc in kube_api_double::crds::documents(manifest).unwrap() {
            let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
                serde_json::from_value(doc).unwrap();
            crds.patch(
                &crd.name_any(),
                &PatchParams::apply("schema-test"),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap();
        }
    }
    let custom = |group: &str, version: &str, kind: &str, plural: &str| {
        kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(group, version, kind),
            plural,
        )
    };
    let certificates = custom("cert-manager.io", "v1", "Certificate", "certificates");
    for (ar, obj) in [
        (
            custom("cert-manager.io", "v1", "Issuer", "issuers"),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "le"},
                "spec": {"acme": {"server": "https://acme-v02.api.letsencrypt.org/directory",
                                  "privateKeySecretRef": {"name": "le-account"}, "solvers": []}}}),
        ),
        (
            certificates.clone(),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web"},
                "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com"], "issuerRef": {"name": "le"}}}),
        ),
        (
            custom(
                "gateway.networking.k8s.io",
                "v1",
                "GatewayClass",
                "gatewayclasses",
            ),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "double"},
                "spec": {"controllerName": kube_api_double::DOUBLE_GATEWAY_CONTROLLER}}),
        ),
        (
            custom("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "edge"},
                "spec": {"gatewayClassName": "double", "listeners": [{"name": "https", "protocol": "HTTPS", "port": 443,
                         "tls": {"certificateRefs": [{"name": "web-tls"}]}}]}}),
        ),
    ] {
        let api: Api<DynamicObject> = if ar.kind == "GatewayClass" {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), "app", &ar)
        };
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("schema-test"),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    }

    // Wait until the simulation has reached every state worth checking.
    eventually(30, "the scenario settled", || {
        let client = client.clone();
        let certificates = certificates.clone();
        async move {
            let d = Api::<Deployment>::namespaced(client.clone(), "app")
                .get("web")
                .await
                .ok()?;
            let st = d.status?;
            let rolled = st.observed_generation == Some(2)
                && st.updated_replicas == Some(2)
                && st.replicas == Some(2)
                && st.available_replicas == Some(2);
            let pods = Api::<Pod>::namespaced(client.clone(), "app")
                .list(&ListParams::default())
                .await
                .ok()?
                .items;
            let waiting = |app: &str, reason: &str| {
                pods.iter().any(|p| {
                    p.labels().get("app").map(String::as_str) == Some(app)
                        && p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .is_some_and(|cs| {
                                cs[0]
                                    .state
                                    .as_ref()
                                    .and_then(|s| s.waiting.as_ref())
                                    .and_then(|w| w.reason.as_deref())
                                    == Some(reason)
                            })
                })
            };
            let failures = waiting("pull", "ImagePullBackOff")
                && waiting("errpull", "ErrImagePull")
                && waiting("crash", "CrashLoopBackOff");
            let jobs = Api::<Job>::namespaced(client.clone(), "app");
            let done = |j: Option<Job>, t: &str| {
                j.and_then(|j| j.status?.conditions)
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
            };
            let jobs_done = done(jobs.get("migrate").await.ok(), "Complete")
                && done(jobs.get("doomed-job").await.ok(), "Failed");
            let lb = Api::<Service>::namespaced(client.clone(), "app")
                .get("web")
                .await
                .ok()?
                .status?
                .load_balancer?
                .ingress
                .is_some_and(|i| !i.is_empty());
            let ns = Api::<Namespace>::all(client.clone())
                .get("leaving")
                .await
                .ok()?;
            let terminating = ns.status?.conditions.is_some_and(|c| c.len() == 5);
            let cert = Api::<DynamicObject>::namespaced_with(client.clone(), "app", &certificates)
                .get("web")
                .await
                .ok()?;
            let issued = cert.data["status"]["conditions"][0]["status"] == "True";
            (rolled && failures && jobs_done && lb && terminating && issued).then_some(())
        }
    })
    .await;

    // Dump every object of every served built-in resource, as listed (kind/apiVersion restored
    // from the list, since built-in list items carry none).
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut docs = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let custom = [
                "example.com",
                "cert-manager.io",
                "gateway.networking.k8s.io",
            ];
            if custom.contains(&ar.group.as_str())
                || !caps.supports_operation(kube::discovery::verbs::LIST)
            {
                continue; // custom resources have no official schema
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            for mut o in api.list(&ListParams::default()).await.unwrap().items {
                assert!(
                    o.types.is_none(),
                    "built-in list items carry no kind: {ar:?}"
                );
                o.types = Some(kube::api::TypeMeta {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                });
                *counts
                    .entry(format!("{}/{}", ar.api_version, ar.kind))
                    .or_default() += 1;
                // JSON documents (YAML readers would turn unquoted timestamps into datetimes).
                docs.push_str("---\n");
                docs.push_str(&serde_json::to_string(&o).unwrap());
                docs.push('\n');
            }
        }
    }
    for kind in [
        "apps/v1/Deployment",
        "apps/v1/ReplicaSet",
        "v1/Pod",
        "v1/Event",
        "v1/Namespace",
        "v1/ConfigMap",
        "v1/Service",
        "v1/Secret",
        "v1/Node",
        "apps/v1/StatefulSet",
        "apps/v1/DaemonSet",
        "batch/v1/Job",
        "events.k8s.io/v1/Event",
        "apiextensions.k8s.io/v1/CustomResourceDefinition",
    ] {
        assert!(
            counts.contains_key(kind),
            "no {kind} in the dump: {counts:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, &docs).unwrap();
    let out = std::process::Command::new(&validate)
        .args(["-k", "1.31.0", "--strict"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install it: {}",
                validate.display(),
                threeport_testkit::KUBERNETES_VALIDATE_INSTALL_COMMAND
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = text.lines().filter(|l| !l.starts_with("INFO")).collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "kubernetes-validate --strict (Kubernetes 1.31) rejected objects the double serves:\n{}\n(objects: {counts:?}; dump kept at {})",
        problems.join("\n"),
        dir.keep().join("objects.yaml").display()
    );
    let total: usize = counts.values().sum();
    let valid = text
        .lines()
        .filter(|l| l.starts_with("INFO") && l.contains(" passed for resource "))
        .count();
    assert_eq!(valid, total, "every object was validated:\n{text}");
    double.shutdown().await;
}
