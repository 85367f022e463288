//! `tptctl image build`: the control plane image, from this very executable.

use super::Ctx;
use crate::args::{ImageArgs, ImageCommand};
use anyhow::Result;
use threeport_installers::image::{self, Inputs};

pub fn run(ctx: &Ctx, args: ImageArgs) -> Result<u8> {
    match args.command {
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
