//! `tptctl up/down --provider eks`: AWS infrastructure through `threeport-eks` (every resource
//! in `~/.threeport/eks-inventory-NAME.json` as soon as it exists), then the same control-plane
//! install as kind, exposed through a load balancer. A failure rolls back what this run created
//! (unless `--retain`), and no config entry is written until everything is up.

use crate::config::{ControlPlane, Credential, EksProviderConfig, KubeApi, ThreeportConfig, b64};
use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use kube::api::Api;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use threeport_installers::install::{self, ClusterInfo};
use threeport_installers::manifests::{self, Exposure, Images, Secrets};
use tokio_util::sync::CancellationToken;

pub const PROVIDER: &str = "eks";

pub fn inventory_path(config_path: &Path, name: &str) -> PathBuf {
    config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("eks-inventory-{name}.json"))
}

/// `threeport-eks` reports phases through its own trait; show them like every other phase.
struct Phases(threeport_installers::Progress);

impl threeport_eks::Progress for Phases {
    fn start(&self, phase: &str) {
        self.0.start(phase);
    }
    fn done(&self, _phase: &str, _elapsed: Duration) {
        self.0.done();
    }
    fn failed(&self, _phase: &str, error: &str) {
        self.0.failed(error);
    }
}

async fn aws(region: &str, profile: Option<&str>) -> aws_config::SdkConfig {
    // AWS_ENDPOINT_URL (e.g. a moto server) and the usual credential chain are honoured.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// A kubeconfig that authenticates with `aws eks get-token`, as eksctl writes it.
fn kubeconfig(
    access: &threeport_eks::ClusterAccess,
    region: &str,
    profile: Option<&str>,
) -> String {
    let mut env = Vec::new();
    if let Some(p) = profile {
        env.push(serde_json::json!({"name": "AWS_PROFILE", "value": p}));
    }
    let kc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "eks",
        "clusters": [{"name": "eks", "cluster": {"server": access.endpoint, "certificate-authority-data": b64(&access.ca_pem)}}],
        "users": [{"name": "eks", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", access.cluster_name, "--region", region], "env": env,
            "interactiveMode": "Never",
        }}}],
        "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
    });
    serde_yaml::to_string(&kc).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
pub async fn up(
    config_path: &Path,
    name: &str,
    region: &str,
    profile: Option<&str>,
    images: Images,
    retain: bool,
) -> Result<()> {
    let mut cfg = ThreeportConfig::load(config_path)?;
    if crate::install::already_up(&cfg, name, PROVIDER).await? {
        return Ok(());
    }
    let sdk = aws(region, profile).await;
    let inventory = inventory_path(config_path, name);
    let cancel = crate::install::cancel_on_ctrl_c();
    let phases = Phases(threeport_installers::Progress::new());
    let spec = threeport_eks::EksSpec::new(name, region);
    spec.validate()?;
    let opts = threeport_eks::UpOptions {
        retain,
        ..Default::default()
    };
    let access =
        threeport_eks::up_with(&sdk, &spec, &inventory, &phases, cancel.clone(), &opts).await?;
    let installed = install_control_plane(
        config_path,
        name,
        region,
        profile,
        images,
        &access,
        &phases.0,
        &cancel,
    )
    .await;
    let installed = match installed {
        Ok(x) => x,
        Err(e) => {
            if retain {
                eprintln!(
                    "\nleft behind for debugging: everything in {}\n  resume:   tptctl up --provider eks --name {name} --aws-region {region}\n  clean up: tptctl down --name {name}",
                    inventory.display()
                );
            } else {
                let report = threeport_eks::down(&sdk, &inventory, &phases).await?;
                let _ = std::fs::remove_dir_all(crate::local::data_dir(config_path, name));
                if report.failed.is_empty() {
                    eprintln!(
                        "rolled back: {} AWS resources deleted; nothing was left behind",
                        report.deleted.len()
                    );
                } else {
                    eprintln!("left behind (still listed in {}):", inventory.display());
                    for (item, why) in &report.failed {
                        eprintln!("  {} {}: {why}", item.kind, item.id);
                    }
                }
            }
            return Err(e);
        }
    };
    cfg.upsert(installed);
    cfg.current_control_plane = name.to_string();
    cfg.save(config_path)?;
    eprintln!(
        "\ncontrol plane {name:?} is ready on EKS cluster {}\n\nNext:\n  tptctl get kubernetes-runtime-instances\n  tptctl dashboard",
        access.cluster_name
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn install_control_plane(
    config_path: &Path,
    name: &str,
    region: &str,
    profile: Option<&str>,
    images: Images,
    access: &threeport_eks::ClusterAccess,
    progress: &threeport_installers::Progress,
    cancel: &CancellationToken,
) -> Result<ControlPlane> {
    let dir = crate::local::data_dir(config_path, name);
    std::fs::create_dir_all(&dir)?;
    let kc_text = kubeconfig(access, region, profile);
    threeport_pki::write_file(&dir.join("kubeconfig"), kc_text.as_bytes(), true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = progress
        .phase("Connecting to the EKS cluster", async {
            let kc = kube::config::Kubeconfig::from_yaml(&kc_text)?;
            let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
            client.apiserver_version().await.context("the cluster's API server did not answer (is the `aws` CLI installed and authorised?)")?;
            Ok(client)
        })
        .await?;
    // The load balancer's name is not known before it exists; its zone's wildcard is.
    let elb = format!("*.{region}.elb.amazonaws.com");
    let key = threeport_server::crypto::Cipher::generate_key_b64();
    let secrets = Secrets::generate(&[elb.as_str()], key)?;
    let objects = manifests::control_plane(&images, &secrets, Exposure::LoadBalancer);
    let run = async {
        progress
            .phase(
                "Installing the control plane",
                install::apply_all(&client, &objects),
            )
            .await?;
        progress
            .phase(
                "Waiting for rollouts",
                install::wait_rollouts(&client, &objects, Duration::from_secs(900)),
            )
            .await?;
        let host = progress
            .phase(
                "Waiting for the load balancer",
                load_balancer(&client, Duration::from_secs(600)),
            )
            .await?;
        let tls = threeport_api::ClientTls {
            ca_pem: secrets.api.ca.pair.cert_pem.clone(),
            cert_pem: secrets.api.client.cert_pem.clone(),
            key_pem: secrets.api.client.key_pem.clone(),
        };
        let api_server = format!("{host}:{}", manifests::API_PORT);
        let api = threeport_api::Client::new(&format!("https://{api_server}"), Some(&tls))?;
        progress
            .phase(
                "Waiting for the API",
                install::wait_api(&api, Duration::from_secs(600)),
            )
            .await?;
        let info = ClusterInfo {
            name: access.cluster_name.clone(),
            provider: "eks".into(),
            endpoint: access.endpoint.clone(),
            ca_pem: Some(access.ca_pem.clone()),
            cert_pem: None,
            key_pem: None,
            token: None,
        };
        progress
            .phase(
                "Registering the cluster and the control plane",
                install::register(&api, &info, name),
            )
            .await?;
        progress
            .phase(
                "Recording the AWS inventory",
                record_inventory(&api, access, region, &inventory_path(config_path, name)),
            )
            .await?;
        anyhow::Ok(api_server)
    };
    let api_server = tokio::select! {
        r = run => r?,
        _ = cancel.cancelled() => bail!("interrupted"),
    };
    Ok(ControlPlane {
        name: name.into(),
        provider: PROVIDER.into(),
        genesis: true,
        auth_enabled: true,
        api_server,
        ca_cert: b64(&secrets.api.ca.pair.cert_pem),
        credentials: vec![Credential {
            name: name.into(),
            client_cert: b64(&secrets.api.client.cert_pem),
            client_key: b64(&secrets.api.client.key_pem),
        }],
        encryption_key: secrets.encryption_key.clone(),
        kube_api: KubeApi {
            api_endpoint: access.endpoint.clone(),
            ca_certificate: b64(&access.ca_pem),
            ..Default::default()
        },
        eks_provider_config: EksProviderConfig {
            aws_config_profile: profile.unwrap_or("default").into(),
            aws_region: region.into(),
            aws_account_id: String::new(),
        },
        ..Default::default()
    })
}

/// The AWS side as objects: the account, and the EKS runtime with the inventory of every AWS
/// resource created for it (already reconciled: they exist).
async fn record_inventory(
    api: &threeport_api::Client,
    access: &threeport_eks::ClusterAccess,
    region: &str,
    inventory: &Path,
) -> Result<()> {
    let k = |n: &str| threeport_api::kinds::by_name(n).expect("registered kind");
    let inv: Value = serde_json::from_str(&std::fs::read_to_string(inventory)?)?;
    let id = |o: &Value| threeport_api::object_id(o).context("object without ID");
    let find_or_create = |kind: &'static threeport_api::Kind, body: Value| async move {
        match api
            .find_by_name(kind, body["Name"].as_str().unwrap_or_default())
            .await?
        {
            Some(o) => anyhow::Ok(o),
            None => Ok(api.create(kind, &body).await?),
        }
    };
    let account = find_or_create(
        k("AwsAccount"),
        serde_json::json!({"Name": format!("{}-account", access.cluster_name), "AccountID": access.account_id, "DefaultRegion": region}),
    )
    .await?;
    let krd = api
        .find_by_name(k("KubernetesRuntimeDefinition"), &access.cluster_name)
        .await?
        .context("runtime definition not registered")?;
    let kri = api
        .find_by_name(k("KubernetesRuntimeInstance"), &access.cluster_name)
        .await?
        .context("runtime instance not registered")?;
    let def = find_or_create(
        k("AwsEksKubernetesRuntimeDefinition"),
        serde_json::json!({"Name": access.cluster_name, "AwsAccountID": id(&account)?, "ZoneCount": 2, "KubernetesRuntimeDefinitionID": id(&krd)?, "Reconciled": true}),
    )
    .await?;
    find_or_create(
        k("AwsEksKubernetesRuntimeInstance"),
        serde_json::json!({"Name": access.cluster_name, "Region": region, "AwsEksKubernetesRuntimeDefinitionID": id(&def)?,
                           "KubernetesRuntimeInstanceID": id(&kri)?, "ResourceInventory": inv, "Reconciled": true}),
    )
    .await?;
    Ok(())
}

/// The API Service's load balancer hostname, once AWS has made it.
async fn load_balancer(client: &kube::Client, timeout: Duration) -> Result<String> {
    let api: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), manifests::NAMESPACE);
    let deadline = Instant::now() + timeout;
    loop {
        let svc = serde_json::to_value(api.get(manifests::API_NAME).await?)?;
        let ingress = svc.pointer("/status/loadBalancer/ingress/0");
        if let Some(host) = ingress
            .and_then(|i| i.get("hostname").or(i.get("ip")))
            .and_then(Value::as_str)
        {
            return Ok(host.to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "the API's load balancer has no address after {}s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Delete the load balancer first (through its Service, so AWS removes it and its network
/// interfaces), then exactly the inventory, in reverse order.
pub async fn down(config_path: &Path, name: &str) -> Result<()> {
    let mut cfg = ThreeportConfig::load(config_path)?;
    let (region, profile) = match cfg.get(name) {
        Some(cp) => (
            cp.eks_provider_config.aws_region.clone(),
            Some(cp.eks_provider_config.aws_config_profile.clone()).filter(|p| !p.is_empty()),
        ),
        None => {
            let inv = threeport_eks::Inventory::load(&inventory_path(config_path, name))?
                .with_context(|| format!("no control plane or EKS inventory named {name:?}"))?;
            (inv.region, None)
        }
    };
    let dir = crate::local::data_dir(config_path, name);
    let progress = threeport_installers::Progress::new();
    if let Ok(kc_text) = std::fs::read_to_string(dir.join("kubeconfig")) {
        progress.start("Deleting the API load balancer");
        let deleted = async {
            let kc = kube::config::Kubeconfig::from_yaml(&kc_text)?;
            let client = kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
            )?;
            let api: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(client, manifests::NAMESPACE);
            api.delete(manifests::API_NAME, &Default::default()).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(60), deleted).await {
            Ok(Ok(())) => progress.done(),
            Ok(Err(e)) => progress.failed(&format!("{e:#}")),
            Err(_) => progress.failed("timed out"),
        }
    }
    let sdk = aws(&region, profile.as_deref()).await;
    let report =
        threeport_eks::down(&sdk, &inventory_path(config_path, name), &Phases(progress)).await?;
    if !report.failed.is_empty() {
        eprintln!(
            "could not delete (still listed in {}):",
            inventory_path(config_path, name).display()
        );
        for (item, why) in &report.failed {
            eprintln!("  {} {}: {why}", item.kind, item.id);
        }
        bail!(
            "{} AWS resources remain; run `tptctl down --name {name}` again once their dependencies are gone",
            report.failed.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if cfg.remove(name) {
        cfg.save(config_path)?;
    }
    eprintln!(
        " ✓ deleted {} AWS resources and removed {name:?}",
        report.deleted.len()
    );
    Ok(())
}
