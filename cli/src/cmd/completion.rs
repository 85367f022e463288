//! `tptctl completion SHELL`: the completion script, generated from the clap definition.

use crate::args::{Cli, CompletionArgs};
use anyhow::Result;
use clap::CommandFactory;

pub fn run(args: CompletionArgs) -> Result<u8> {
    // Into a buffer first: clap_complete panics when its writer fails (`| head` closing early),
    // and `out!` returns the error instead.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "tptctl", &mut script);
    out!("{}", String::from_utf8_lossy(&script))?;
    Ok(0)
}
