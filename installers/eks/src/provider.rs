//! The EKS provider (`tptctl up/down --provider eks`): the AWS infrastructure of [`crate::up`]
//! (every resource in the inventory as soon as it exists), then the same control-plane install
//! as kind ([`threeport_installers::install::Steps`]), exposed through a load balancer. Unless a
//! published image was asked for, the image is built from this `tptctl` and pushed to the
//! control plane's ECR repository, which the nodes pull from. It ends
//! in an [`Installed`], like kind's; the caller writes the config entry from it.
//!
//! A failure rolls back what the run created (unless `retain`); the error's context is an
//! [`UpFailed`] saying what is left.

use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use base64::Engine;
use kube::api::Api;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use threeport_installers::install::{ClusterInfo, Steps};
use threeport_installers::kind::BuildImage;
use threeport_installers::kubeconfig::Connection;
use threeport_installers::manifests::{self, Exposure, Images};
use threeport_installers::{Installed, KubeApi, Progress, ProviderConfig, UpFailed, secrets};
use tokio_util::sync::CancellationToken;

use crate::{ClusterAccess, DownReport, EksSpec, Inventory, UpOptions};

pub const PROVIDER: &str = threeport_installers::outcome::EKS;

/// Where an EKS control plane's AWS side lives and what is kept of it on this machine.
#[derive(Clone, Debug)]
pub struct EksPlace {
    pub region: String,
    /// The AWS config profile; `None` for the default credential chain.
    pub profile: Option<String>,
    /// `~/.threeport/<name>/`: the kubeconfig and the install's secrets.
    pub data_dir: PathBuf,
    /// The inventory of every AWS resource (`~/.threeport/eks-inventory-<name>.json`).
    pub inventory: PathBuf,
}

#[derive(Clone, Debug)]
pub struct EksOptions {
    pub name: String,
    pub place: EksPlace,
    pub images: Images,
    /// Build the image from this `tptctl` and push it to the control plane's ECR repository
    /// (no published image was asked for); `images.threeport` is then the pushed one.
    pub build: Option<BuildImage>,
    /// Keep what a failed `up` created, for debugging.
    pub retain: bool,
    /// For each wait of the install (rollouts, load balancer, API).
    pub timeout: Duration,
}

/// The AWS SDK configuration for `region` (and `profile`). `AWS_ENDPOINT_URL` (e.g. a moto
/// server) and the usual credential chain are honoured.
pub async fn sdk_config(region: &str, profile: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// Create (or resume) the AWS infrastructure, then install the control plane into it.
pub async fn up(
    opts: &EksOptions,
    progress: &Progress,
    cancel: CancellationToken,
) -> Result<Installed> {
    let place = &opts.place;
    let sdk = sdk_config(&place.region, place.profile.as_deref()).await;
    let spec = EksSpec::new(&opts.name, &place.region);
    let infra = UpOptions {
        retain: opts.retain,
        ..Default::default()
    };
    // Its error says already what it rolled back.
    let access = crate::up_with(
        &sdk,
        &spec,
        &place.inventory,
        progress,
        cancel.clone(),
        &infra,
    )
    .await?;
    let mut applied = false;
    let e = match install(opts, &sdk, &access, progress, &cancel, &mut applied).await {
        Ok(installed) => return Ok(installed),
        Err(e) => e,
    };
    let mut failed = UpFailed::new(format!(
        "installing control plane {} on EKS cluster {}",
        opts.name, access.cluster_name
    ));
    failed.listed_in = Some(place.inventory.clone());
    let listed = |inv: Option<Inventory>| -> Vec<String> {
        inv.map(|i| {
            i.resources
                .iter()
                .map(|r| format!("{} {}", r.kind, r.id))
                .collect()
        })
        .unwrap_or_default()
    };
    if opts.retain {
        failed.retained = true;
        failed.left_behind = listed(Inventory::load(&place.inventory)?);
        return Err(e.context(failed));
    }
    // Once the manifests are applied, the API's Service may have made a load balancer, which
    // `down` deletes first; before, there is nothing in the cluster to delete.
    let report = down_with(place, progress, applied).await?;
    failed.rolled_back = (report.deleted.iter())
        .map(|r| format!("{} {}", r.kind, r.id))
        .collect();
    failed.left_behind = listed(Inventory::load(&place.inventory)?);
    Err(e.context(failed))
}

/// A kubeconfig that authenticates with `aws eks get-token`, as eksctl writes it.
fn kubeconfig(access: &ClusterAccess, region: &str, profile: Option<&str>) -> String {
    let mut env = Vec::new();
    if let Some(p) = profile {
        env.push(json!({"name": "AWS_PROFILE", "value": p}));
    }
    let ca = base64::engine::general_purpose::STANDARD.encode(access.ca_pem.as_bytes());
    let kc = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "eks",
        "clusters": [{"name": "eks", "cluster": {"server": access.endpoint, "certificate-authority-data": ca}}],
        "users": [{"name": "eks", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", access.cluster_name, "--region", region], "env": env,
            "interactiveMode": "Never",
        }}}],
        "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
    });
    serde_yaml::to_string(&kc).unwrap_or_default()
}

/// A kubeconfig that presents `token` (see [`crate::token`]): what tptctl's own calls use.
fn token_kubeconfig(access: &ClusterAccess, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(access.ca_pem.as_bytes());
    let kc = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "eks",
        "clusters": [{"name": "eks", "cluster": {"server": access.endpoint, "certificate-authority-data": ca}}],
        "users": [{"name": "eks", "user": {"token": token}}],
        "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
    });
    serde_yaml::to_string(&kc).unwrap_or_default()
}

/// The control plane into the cluster `access` names: the shared install steps, with the
/// load balancer's address as the API's.
async fn install(
    opts: &EksOptions,
    sdk: &aws_config::SdkConfig,
    access: &ClusterAccess,
    progress: &Progress,
    cancel: &CancellationToken,
    applied: &mut bool,
) -> Result<Installed> {
    let place = &opts.place;
    let steps = Steps {
        progress,
        cancel,
        timeout: opts.timeout,
    };
    let dir = &place.data_dir;
    std::fs::create_dir_all(dir)?;
    let kc_text = kubeconfig(access, &place.region, place.profile.as_deref());
    let kc_path = dir.join("kubeconfig");
    threeport_pki::write_file(&kc_path, kc_text.as_bytes(), true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The kubeconfig written for people runs `aws eks get-token`; tptctl makes the same token
    // itself, so it needs no `aws` CLI.
    let client = steps
        .phase("Connecting to the EKS cluster", async {
            let token =
                crate::token::token(sdk, &access.cluster_name, std::time::SystemTime::now())
                    .await?;
            let client =
                threeport_installers::install::kube_client(&token_kubeconfig(access, &token.token))
                    .await?;
            client
                .apiserver_version()
                .await
                .context("the cluster's API server did not answer")?;
            Ok(client)
        })
        .await?;
    // The load balancer's name is not known before it exists; its zone's wildcard is.
    let elb = format!("*.{}.elb.amazonaws.com", place.region);
    let secrets = secrets::load_or_generate(dir, &[elb.as_str()])?;
    let images = match &opts.build {
        Some(build) => {
            let reference = push_image(&steps, build, sdk, &access.image_repository).await?;
            Images::with_threeport(reference)
        }
        None => opts.images.clone(),
    };
    let objects = manifests::control_plane(&images, &secrets, Exposure::LoadBalancer);
    *applied = true;
    steps.install(&client, &objects).await?;
    let host = steps
        .phase(
            "Waiting for the load balancer",
            load_balancer(&client, opts.timeout),
        )
        .await?;
    let tls = secrets.client_tls();
    let api_server = format!("{host}:{}", manifests::API_PORT);
    let info = ClusterInfo {
        name: access.cluster_name.clone(),
        provider: PROVIDER.into(),
        endpoint: access.endpoint.clone(),
        ca_pem: Some(access.ca_pem.clone()),
        cert_pem: None,
        key_pem: None,
        token: None,
    };
    let api = steps.register(&api_server, &tls, &info, &opts.name).await?;
    steps
        .phase(
            "Recording the AWS inventory",
            record_inventory(&api, access, &place.region, &place.inventory),
        )
        .await?;
    Ok(Installed {
        name: opts.name.clone(),
        api_server,
        tls,
        encryption_key: secrets.encryption_key.clone(),
        kube_api: Some(KubeApi {
            connection: Connection {
                context: "eks".into(),
                server: access.endpoint.clone(),
                ca_pem: Some(access.ca_pem.clone()),
                ..Default::default()
            },
            kubeconfig: kc_path,
        }),
        provider: ProviderConfig::Eks {
            cluster: access.cluster_name.clone(),
            region: place.region.clone(),
            profile: place.profile.clone(),
            account_id: access.account_id.clone(),
        },
    })
}

/// Builds the image (cached) and pushes it to `repository` (the ECR repository's URI) under the
/// built tag; returns the pushed reference, which the nodes pull.
async fn push_image(
    steps: &Steps<'_>,
    build: &BuildImage,
    sdk: &aws_config::SdkConfig,
    repository: &str,
) -> Result<String> {
    let b = build.clone();
    let built = steps
        .phase("Building the control plane image", async move {
            tokio::task::spawn_blocking(move || {
                threeport_installers::image::cached(&b.inputs, &b.cache_dir)
            })
            .await?
        })
        .await?;
    let target = crate::ecr::target(repository, &built.reference)?;
    let ecr = aws_sdk_ecr::Client::new(sdk);
    steps
        .phase(
            &format!("Pushing image {} to ECR as {target}", built.reference),
            async {
                let auth = crate::ecr::login(&ecr).await?;
                threeport_installers::image::push::push(&built.archive, &target, &auth, false)
                    .await?;
                Ok(())
            },
        )
        .await?;
    Ok(target)
}

/// The AWS side as objects: the account, and the EKS runtime with the inventory of every AWS
/// resource created for it (already reconciled: they exist).
async fn record_inventory(
    api: &threeport_api::Client,
    access: &ClusterAccess,
    region: &str,
    inventory: &Path,
) -> Result<()> {
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
        threeport_api::kinds::AWS_ACCOUNT,
        json!({"Name": format!("{}-account", access.cluster_name), "AccountID": access.account_id, "DefaultRegion": region}),
    )
    .await?;
    let krd = api
        .find_by_name(
            threeport_api::kinds::KUBERNETES_RUNTIME_DEFINITION,
            &access.cluster_name,
        )
        .await?
        .context("runtime definition not registered")?;
    let kri = api
        .find_by_name(
            threeport_api::kinds::KUBERNETES_RUNTIME_INSTANCE,
            &access.cluster_name,
        )
        .await?
        .context("runtime instance not registered")?;
    let def = find_or_create(
        threeport_api::kinds::AWS_EKS_KUBERNETES_RUNTIME_DEFINITION,
        json!({"Name": access.cluster_name, "AwsAccountID": id(&account)?, "ZoneCount": 2, "KubernetesRuntimeDefinitionID": id(&krd)?, "Reconciled": true}),
    )
    .await?;
    find_or_create(
        threeport_api::kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
        json!({"Name": access.cluster_name, "Region": region, "AwsEksKubernetesRuntimeDefinitionID": id(&def)?,
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
/// interfaces), then exactly the inventory, in reverse order. Once nothing is left, the data
/// dir goes too; what could not be deleted is in the report and stays in the inventory.
pub async fn down(place: &EksPlace, progress: &Progress) -> Result<DownReport> {
    down_with(place, progress, true).await
}

async fn down_with(
    place: &EksPlace,
    progress: &Progress,
    load_balancer: bool,
) -> Result<DownReport> {
    let kubeconfig = std::fs::read_to_string(place.data_dir.join("kubeconfig"));
    if let (true, Ok(kc_text)) = (load_balancer, kubeconfig) {
        progress.start("Deleting the API load balancer");
        let deleted = async {
            let client = threeport_installers::install::kube_client(&kc_text).await?;
            let api: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(client, manifests::NAMESPACE);
            api.delete(manifests::API_NAME, &Default::default()).await?;
            anyhow::Ok(())
        };
        // Not fatal: the cluster may be gone or unreachable, and the inventory still goes.
        match tokio::time::timeout(Duration::from_secs(60), deleted).await {
            Ok(Ok(())) => progress.done(),
            Ok(Err(e)) => progress.failed_because(&format!("{e:#}")),
            Err(_) => progress.failed_because("timed out after 60s"),
        }
    }
    let sdk = sdk_config(&place.region, place.profile.as_deref()).await;
    let report = crate::down(&sdk, &place.inventory, progress).await?;
    if report.failed.is_empty() {
        let _ = std::fs::remove_dir_all(&place.data_dir);
    }
    Ok(report)
}
