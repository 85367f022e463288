//! `tptctl down`: take a control plane down with the provider that made it.

use super::Ctx;
use crate::args::DownArgs;
use crate::{eks, hint, kind, kubernetes, local};
use anyhow::Result;

pub async fn run(ctx: &Ctx, args: DownArgs) -> Result<u8> {
    let DownArgs { name, purge } = args;
    let cfg = ctx.config()?;
    match cfg.get(&name).map(|c| c.provider.as_str()) {
        Some(kind::PROVIDER) => kind::down(&ctx.config_path, &name)?,
        Some(eks::PROVIDER) => eks::down(&ctx.config_path, &name).await?,
        Some(kubernetes::PROVIDER) => kubernetes::down(&ctx.config_path, &name).await?,
        Some(local::PROVIDER) => local::down(&ctx.config_path, &name, purge)?,
        Some(other) => {
            return Err(hint::error(
                format!(
                    "control plane {name:?} has provider {other:?}, which tptctl cannot take down"
                ),
                "take it down with the tool that created it",
            ));
        }
        // A failed `up --provider eks --retain` leaves an inventory and no entry.
        None if eks::inventory_path(&ctx.config_path, &name).exists() => {
            eks::down(&ctx.config_path, &name).await?
        }
        // A local plane whose entry is gone still has its data (and maybe its process).
        None if local::data_dir(&ctx.config_path, &name).exists() => {
            local::down(&ctx.config_path, &name, purge)?
        }
        None => {
            return Err(hint::error(
                format!("no control plane named {name:?}"),
                "`tptctl config get-control-planes` lists them",
            ));
        }
    }
    Ok(0)
}
