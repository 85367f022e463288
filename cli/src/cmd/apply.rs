//! `tptctl apply`: load the files, apply them (`crate::apply`), then optionally `--wait`.

use super::{Ctx, EXIT_ERROR, EXIT_TIMEOUT, load_inputs, require_inputs};
use crate::apply::{self, ApplyOpts, WaitOutcome};
use crate::args::{ApplyArgs, Inputs};
use anyhow::Result;
use std::time::Duration;

pub async fn run(ctx: &Ctx, args: ApplyArgs) -> Result<u8> {
    require_inputs(&args.inputs, "tptctl apply -f FILE|DIR|- [-R]")?;
    let opts = ApplyOpts {
        dry_run: args.dry_run,
        output: args.output,
        create_only: false,
        concurrency: args.concurrency,
    };
    apply_files(ctx, &args.inputs, opts, args.wait.then_some(args.timeout)).await
}

/// Apply (or, for `create`, create) what the files declare; with `wait`, until reconciled.
pub async fn apply_files(
    ctx: &Ctx,
    inputs: &Inputs,
    opts: ApplyOpts,
    wait: Option<Duration>,
) -> Result<u8> {
    let loaded = load_inputs(inputs)?;
    let client = ctx.client()?;
    let report = apply::apply(&client, loaded, &opts).await?;
    if report.failed > 0 {
        eprintln!(
            "{} of {} objects failed; the others were applied",
            report.failed, report.total
        );
        return Ok(EXIT_ERROR);
    }
    let Some(timeout) = wait.filter(|_| !opts.dry_run) else {
        return Ok(0);
    };
    match apply::wait(&client, &report.applied, timeout).await? {
        WaitOutcome::Done => Ok(0),
        WaitOutcome::Failed(failed) => {
            for x in &failed {
                eprintln!("error: {x}");
            }
            Ok(EXIT_ERROR)
        }
        WaitOutcome::TimedOut(pending) => {
            eprintln!(
                "timed out after {}s waiting for: {}",
                timeout.as_secs(),
                pending.join(", ")
            );
            if let Some((kind, name)) = pending.first().and_then(|p| p.split_once('/')) {
                eprintln!(
                    "hint: wait longer with --timeout, or see where it stands with `tptctl describe {kind} {name}`"
                );
            }
            Ok(EXIT_TIMEOUT)
        }
    }
}
