//! `tptctl version`: this client's version, and the server's when a control plane is configured.

use super::{Ctx, EXIT_ERROR};
use anyhow::Result;

pub async fn run(ctx: &Ctx) -> Result<u8> {
    outln!("Client: {}", env!("CARGO_PKG_VERSION"))?;
    let cfg = ctx.config()?;
    match cfg.select(ctx.control_plane.as_deref()) {
        Ok(cp) => match cp.client()?.version().await {
            Ok(v) => outln!("Server: {v} ({})", cp.url())?,
            Err(e) => {
                outln!("Server: unreachable ({e})")?;
                return Ok(EXIT_ERROR);
            }
        },
        Err(_) => outln!("Server: no control plane configured")?,
    }
    Ok(0)
}
