//! `tptctl up`: create a control plane with the chosen provider and make it the current one;
//! with `--runtime-from-kubeconfig`, also register an existing cluster as its default runtime.

use super::{Ctx, runtime};
use crate::args::{Provider, UpArgs};
use crate::hint::Hint;
use anyhow::Result;
use threeport_installers::image::Inputs;
use threeport_installers::kind::BuildImage;
use threeport_installers::manifests::{Images, PUBLISHED_REPO};

pub async fn run(ctx: &Ctx, args: UpArgs) -> Result<u8> {
    if args.print_manifests {
        return print_manifests(ctx, &args);
    }
    // Read it first: a bad kubeconfig fails before anything is started.
    let conn = match &args.runtime_from_kubeconfig {
        Some(p) => Some(crate::runtime::read_kubeconfig(p, None)?),
        None => None,
    };
    match args.provider {
        Provider::Local => crate::local::up(&ctx.config_path, &args.name, args.port).await?,
        Provider::Kind => {
            let published = published(&args);
            let build = match published {
                Some(_) => None,
                None => Some(build_image(ctx)?),
            };
            let opts = crate::kind::UpOptions {
                name: args.name.clone(),
                port: args.port.unwrap_or(threeport_server::DEFAULT_PORT),
                gateway_ports: args.gateway_ports.0,
                images: published.unwrap_or_default(),
                build,
                retain: args.retain,
                verbose: args.verbose,
                timeout: args.timeout.unwrap_or(crate::kind::DEFAULT_TIMEOUT),
            };
            crate::kind::up(&ctx.config_path, opts).await?
        }
        Provider::Eks => {
            let opts = crate::eks::UpOptions {
                name: args.name.clone(),
                region: args.aws_region.clone(),
                profile: args.aws_config_profile.clone(),
                images: published(&args).unwrap_or_default(),
                // No published image asked for: build one and push it to ECR.
                build: match published(&args) {
                    Some(_) => None,
                    None => Some(build_image(ctx)?),
                },
                retain: args.retain,
                timeout: args.timeout.unwrap_or(crate::eks::DEFAULT_TIMEOUT),
            };
            crate::eks::up(&ctx.config_path, opts).await?
        }
        Provider::Kubernetes => {
            use threeport_installers::kubernetes::ImageSource;
            // --image-repo alone: build and push there; with --image-tag: a published image.
            let image = match (&args.image_repo, &args.image_tag) {
                (_, Some(_)) => ImageSource::Published,
                (Some(repo), None) => ImageSource::Push {
                    build: build_image(ctx)?,
                    repository: repo.clone(),
                    auth: registry_auth(),
                    plain_http: args.plain_http,
                },
                (None, None) => ImageSource::Load {
                    build: build_image(ctx)?,
                },
            };
            let images = match image {
                ImageSource::Published => published(&args).unwrap_or_default(),
                _ => Images::default(),
            };
            let opts = crate::kubernetes::UpOptions {
                name: args.name.clone(),
                kubeconfig: crate::kubernetes::kubeconfig_path(args.kubeconfig.as_deref()),
                context: args.context.clone(),
                images,
                image,
                api_address: args.api_address.clone(),
                retain: args.retain,
                verbose: args.verbose,
                timeout: args.timeout.unwrap_or(crate::kubernetes::DEFAULT_TIMEOUT),
            };
            crate::kubernetes::up(&ctx.config_path, opts).await?
        }
    }
    if let (Some(conn), Some(path)) = (conn, &args.runtime_from_kubeconfig) {
        let ctx = Ctx {
            config_path: ctx.config_path.clone(),
            control_plane: Some(args.name.clone()),
        };
        let failed = runtime::register(&ctx, &conn.context, &conn, true, path).await?;
        if failed {
            // The exact command that finishes the job, with this run's values.
            return Err(anyhow::anyhow!(
                "the control plane is up, but registering the runtime failed"
            ))
            .hint(format!(
                "retry with `tptctl runtime register {} --kubeconfig {} --default --control-plane {}`",
                conn.context,
                path.display(),
                args.name
            ));
        }
    }
    Ok(0)
}

/// The published threeport image, when `--image-repo` or `--image-tag` asks for one.
fn published(args: &UpArgs) -> Option<Images> {
    if args.image_repo.is_none() && args.image_tag.is_none() {
        return None;
    }
    Some(Images::published(
        args.image_repo.as_deref().unwrap_or(PUBLISHED_REPO),
        args.image_tag
            .as_deref()
            .unwrap_or(env!("CARGO_PKG_VERSION")),
    ))
}

/// Registry credentials from THREEPORT_REGISTRY_USERNAME/PASSWORD, as `tptctl image push`.
pub(crate) fn registry_auth() -> threeport_installers::image::push::Auth {
    use threeport_installers::image::push::Auth;
    match (
        std::env::var("THREEPORT_REGISTRY_USERNAME"),
        std::env::var("THREEPORT_REGISTRY_PASSWORD"),
    ) {
        (Ok(u), Ok(p)) => Auth::Basic(u, p),
        _ => Auth::Anonymous,
    }
}

/// Without a published image, the one built from this tptctl, cached beside the config.
fn build_image(ctx: &Ctx) -> Result<BuildImage> {
    Ok(BuildImage {
        inputs: Inputs::current(env!("CARGO_PKG_VERSION"))?,
        cache_dir: super::image::cache_dir(&ctx.config_path),
    })
}

/// `up --print-manifests`: the objects `up` would apply, in order, as YAML documents. Secrets
/// are generated for the printout (a later `up` makes its own) and left out unless asked for;
/// a comment says which were left out and which image to make available.
fn print_manifests(ctx: &Ctx, args: &UpArgs) -> Result<u8> {
    use threeport_installers::manifests::{self, Exposure, Secrets};
    let (images, note) = match published(args) {
        Some(images) => (images, None),
        None => {
            let b = build_image(ctx)?;
            let built = threeport_installers::image::cached(&b.inputs, &b.cache_dir)?;
            let note = format!(
                "# The threeport image is built from this tptctl: {}\n# Make it available to the cluster first, e.g. `kind load image-archive {} --name CLUSTER`,\n# or push it and print again with --image-repo/--image-tag.\n",
                built.reference,
                built.archive.display()
            );
            (Images::with_threeport(built.reference), Some(note))
        }
    };
    let exposure = match args.provider {
        Provider::Eks => Exposure::LoadBalancer,
        Provider::Local | Provider::Kind | Provider::Kubernetes => Exposure::NodePort,
    };
    let secrets = Secrets::generate(&[], threeport_installers::secrets::generate_key())?;
    let objects = manifests::control_plane(&images, &secrets, exposure);
    let mut text = String::new();
    if let Some(n) = note {
        text.push_str(&n);
    }
    let (kept, left_out): (Vec<_>, Vec<_>) = objects
        .iter()
        .partition(|o| args.include_secrets || o["kind"] != "Secret");
    if !left_out.is_empty() {
        let names: Vec<&str> = left_out
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        text.push_str(&format!(
            "# Secrets left out (--include-secrets prints them): {}\n",
            names.join(", ")
        ));
    }
    for o in kept {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(o)?);
    }
    out!("{text}")?;
    Ok(0)
}
