//! `tptctl image build`: the control plane image, from this very executable.

use super::Ctx;
use crate::args::{ImageArgs, ImageCommand};
use anyhow::Result;
use threeport_installers::image::{self, Inputs};

pub async fn run(ctx: &Ctx, args: ImageArgs) -> Result<u8> {
    match args.command {
        ImageCommand::Push {
            repository,
            plain_http,
        } => {
            let inputs = Inputs::current(env!("CARGO_PKG_VERSION"))?;
            let built = tokio::task::spawn_blocking({
                let dir = cache_dir(&ctx.config_path);
                move || image::cached(&inputs, &dir)
            })
            .await??;
            let tag = built.reference.rsplit(':').next().unwrap_or_default();
            let target = format!("{}:{tag}", repository.trim_end_matches('/'));
            let auth = super::up::registry_auth();
            let digest = image::push::push(&built.archive, &target, &auth, plain_http).await?;
            outln!("{target}@{digest}")?;
            Ok(0)
        }
        ImageCommand::Build { output } => {
            let inputs = Inputs::current(env!("CARGO_PKG_VERSION"))?;
            let built = match output {
                Some(out) => image::build(&inputs, &out)?,
                None => image::cached(&inputs, &cache_dir(&ctx.config_path))?,
            };
            outln!("{}", built.archive.display())?;
            eprintln!("image {} ({})", built.reference, built.digest);
            Ok(0)
        }
    }
}

/// `~/.threeport/images/`, beside the config file.
pub fn cache_dir(config_path: &std::path::Path) -> std::path::PathBuf {
    config_path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("images")
}
