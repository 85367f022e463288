//! `tptctl doctor`: check what `up --provider kind` needs.

use super::EXIT_ERROR;
use crate::args::DoctorArgs;
use anyhow::Result;

pub fn run(args: DoctorArgs) -> Result<u8> {
    let mut ok = true;
    for c in threeport_installers::kind::doctor(Some(args.port)) {
        outln!(
            "{} {:<10} {}",
            if c.ok { "✓" } else { "✗" },
            c.name,
            c.detail
        )?;
        ok &= c.ok;
    }
    Ok(if ok { 0 } else { EXIT_ERROR })
}
