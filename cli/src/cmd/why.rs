//! `tptctl why KIND NAME`: the status and its reason, the deepest cause (walking children and
//! events as the registry defines them) and the latest warnings. The words are
//! `threeport_api::status::Why::lines`, the same the dashboard's why pane shows.

use super::{Ctx, find, kind_arg};
use crate::args::WhyArgs;
use anyhow::Result;
use threeport_api::ObjectExt;
use threeport_api::status;

pub async fn run(ctx: &Ctx, args: WhyArgs) -> Result<u8> {
    let kind = kind_arg(&args.kind)?;
    let client = ctx.client()?;
    let o = find(&client, kind, &args.name).await?;
    let id = o.id().unwrap_or_default();
    let snap = crate::view::gather(&client, kind, o).await;
    let Some(why) = status::why(&snap, kind, id) else {
        return Ok(0);
    };
    for line in why.lines(time::OffsetDateTime::now_utc()) {
        outln!("{line}")?;
    }
    Ok(0)
}
