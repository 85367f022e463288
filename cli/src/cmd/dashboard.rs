//! `tptctl dashboard`: the terminal dashboard (`threeport-tui`) on the current control plane.

use super::Ctx;
use crate::args::DashboardArgs;
use anyhow::Result;

pub async fn run(ctx: &Ctx, args: DashboardArgs) -> Result<u8> {
    let cfg = ctx.config()?;
    let cp = cfg.select(ctx.control_plane.as_deref())?;
    threeport_tui::run(threeport_tui::DashboardOptions {
        client: cp.client()?,
        control_plane: cp.name.clone(),
        api_url: cp.url(),
        readonly: args.readonly,
        keymap: Some(ctx.config_path.with_file_name("dashboard.yaml")),
    })
    .await?;
    Ok(0)
}
