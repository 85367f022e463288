//! `tptctl runtime register`: make an existing cluster a runtime, through the apply path.

use super::{Ctx, EXIT_ERROR};
use crate::args::{RegisterArgs, RuntimeArgs, RuntimeCommand};
use crate::runtime::Connection;
use anyhow::Result;
use std::path::Path;

pub async fn run(ctx: &Ctx, args: RuntimeArgs) -> Result<u8> {
    match args.command {
        RuntimeCommand::Register(RegisterArgs {
            name,
            kubeconfig,
            context,
            default,
        }) => {
            let conn = crate::runtime::read_kubeconfig(&kubeconfig, context.as_deref())?;
            let failed = register(ctx, &name, &conn, default, &kubeconfig).await?;
            Ok(if failed { EXIT_ERROR } else { 0 })
        }
    }
}

/// Create or update a runtime for a kubeconfig context. Returns whether it failed (the apply
/// has printed why).
pub async fn register(
    ctx: &Ctx,
    name: &str,
    conn: &Connection,
    default: bool,
    source: &Path,
) -> Result<bool> {
    let client = ctx.client()?;
    let exists = client
        .find_by_name(threeport_api::kinds::KUBERNETES_RUNTIME_INSTANCE, name)
        .await?
        .is_some();
    let loaded =
        crate::runtime::desired(name, conn, default, &source.display().to_string(), exists);
    let opts = crate::apply::ApplyOpts {
        dry_run: false,
        output: None,
        create_only: false,
        concurrency: crate::apply::DEFAULT_CONCURRENCY,
    };
    Ok(crate::apply::apply(&client, loaded, &opts).await?.failed > 0)
}
