//! Hidden `tptctl serve-local`: the background process of `up --provider local`.

use crate::args::ServeLocalArgs;
use anyhow::Result;

pub async fn run(args: ServeLocalArgs) -> Result<u8> {
    // Its stdout and stderr are the control plane's log file.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("THREEPORT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .init();
    crate::local::serve(&args.dir, args.listen).await?;
    Ok(0)
}
