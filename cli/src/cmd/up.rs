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
                retain: args.retain,
                timeout: args.timeout.unwrap_or(crate::eks::DEFAULT_TIMEOUT),
            };
            crate::eks::up(&ctx.config_path, opts).await?
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

/// Without a published image, the one built from this tptctl, cached beside the config.
fn build_image(ctx: &Ctx) -> Result<BuildImage> {
    Ok(BuildImage {
        inputs: Inputs::current(env!("CARGO_PKG_VERSION"))?,
        cache_dir: super::image::cache_dir(&ctx.config_path),
    })
}
