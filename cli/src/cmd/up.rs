//! `tptctl up`: create a control plane with the chosen provider and make it the current one;
//! with `--runtime-from-kubeconfig`, also register an existing cluster as its default runtime.

use super::{Ctx, runtime};
use crate::args::{Provider, UpArgs};
use crate::hint::Hint;
use anyhow::Result;
use threeport_installers::manifests::Images;

pub async fn run(ctx: &Ctx, args: UpArgs) -> Result<u8> {
    // Read it first: a bad kubeconfig fails before anything is started.
    let conn = match &args.runtime_from_kubeconfig {
        Some(p) => Some(crate::runtime::read_kubeconfig(p, None)?),
        None => None,
    };
    match args.provider {
        Provider::Local => crate::local::up(&ctx.config_path, &args.name, args.port).await?,
        Provider::Kind => {
            let opts = crate::kind::UpOptions {
                name: args.name.clone(),
                port: args.port.unwrap_or(threeport_server::DEFAULT_PORT),
                images: images(&args),
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
                images: images(&args),
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

/// The threeport image for the in-cluster providers: `--image-repo`, and `--image-tag` or this version.
fn images(args: &UpArgs) -> Images {
    let mut images = Images {
        repo: args.image_repo.clone(),
        ..Default::default()
    };
    if let Some(t) = &args.image_tag {
        images.tag = t.clone();
    }
    images
}
