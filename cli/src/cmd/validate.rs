//! `tptctl validate`: check YAML files offline, without a control plane.

use super::{EXIT_ERROR, load_inputs, report_problems, require_inputs};
use crate::args::ValidateArgs;
use anyhow::Result;

pub fn run(args: ValidateArgs) -> Result<u8> {
    require_inputs(&args.inputs, "tptctl validate -f FILE|DIR|- [-R]")?;
    let loaded = load_inputs(&args.inputs)?;
    if report_problems(&loaded) {
        eprintln!("{} problems found", loaded.problems.len());
        return Ok(EXIT_ERROR);
    }
    outln!("{} objects valid", loaded.objects.len())?;
    Ok(0)
}
