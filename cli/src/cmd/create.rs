//! `tptctl create KIND -c FILE`: upstream's spelling; like apply, but an existing object is an error.

use super::{Ctx, require_inputs};
use crate::apply::ApplyOpts;
use crate::args::CreateArgs;
use anyhow::Result;

pub async fn run(ctx: &Ctx, args: CreateArgs) -> Result<u8> {
    // The kinds come from the files; upstream's KIND argument is accepted and not needed.
    let CreateArgs { kind: _, inputs } = args;
    require_inputs(&inputs, "tptctl create -c FILE (or -f FILE)")?;
    let opts = ApplyOpts {
        dry_run: false,
        output: None,
        create_only: true,
        concurrency: crate::apply::DEFAULT_CONCURRENCY,
    };
    super::apply::apply_files(ctx, &inputs, opts, None).await
}
