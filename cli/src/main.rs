//! `tptctl`: parse the command line (`args`), run the verb (`cmd::<verb>`), and turn the outcome
//! into an exit code, printing errors with their hints (`hint`). The work happens in the library
//! crates.

/// `println!` that returns the write error instead of panicking on it; see `main` for why.
macro_rules! outln {
    () => {
        $crate::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns the write error instead of panicking on it.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod apply;
mod args;
mod cmd;
mod config;
mod eks;
mod hint;
mod install;
mod kind;
mod kubernetes;
mod local;
mod output;
mod runtime;
#[cfg(test)]
mod same_words;
mod teardown;
mod view;

use anyhow::Result;
use args::{Cli, Command};
use clap::Parser;
use cmd::{Ctx, EXIT_ERROR};
use std::io::{self, Write};
use std::process::ExitCode;

fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    io::stdout().lock().write_fmt(args).map_err(StdoutError)
}

/// Writing to stdout failed. Its own type, so that a broken pipe to the API server (which is an
/// `io::Error` too, deep in a client error) is never mistaken for the reader going away.
#[derive(Debug)]
struct StdoutError(io::Error);

impl StdoutError {
    fn is_broken_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot write to stdout")
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let ctx = Ctx {
        config_path: config::path(cli.threeport_config.as_deref())?,
        control_plane: cli.control_plane,
    };
    match cli.command {
        Command::Up(args) => cmd::up::run(&ctx, args).await,
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Runtime(args) => cmd::runtime::run(&ctx, args).await,
        Command::Down(args) => cmd::down::run(&ctx, args).await,
        Command::Apply(args) => cmd::apply::run(&ctx, args).await,
        Command::Validate(args) => cmd::validate::run(args),
        Command::Get(args) => cmd::get::run(&ctx, args).await,
        Command::Describe(args) => cmd::describe::run(&ctx, args).await,
        Command::Why(args) => cmd::why::run(&ctx, args).await,
        Command::Delete(args) => cmd::delete::run(&ctx, args).await,
        Command::Create(args) => cmd::create::run(&ctx, args).await,
        Command::Dashboard(args) => cmd::dashboard::run(&ctx, args).await,
        Command::Config(args) => cmd::config::run(&ctx, args),
        Command::Version => cmd::version::run(&ctx).await,
        Command::Completion(args) => cmd::completion::run(args),
        Command::Image(args) => cmd::image::run(&ctx, args).await,
        Command::ServeLocal(args) => cmd::serve_local::run(args).await,
    }
}

/// Whether the error is stdout's reader having gone away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(StdoutError::is_broken_pipe)
    })
}

/// The `threeport` command line this process was asked to run, if any: started as
/// `threeport` (the control plane image links its entry point to this executable), or as
/// `tptctl threeport …`. One executable then carries the CLI and the whole control plane, so
/// the image `tptctl image build` makes is exactly the binary the user already runs.
fn threeport_args() -> Option<Vec<std::ffi::OsString>> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let started_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_os_string());
    if started_as.as_deref() == Some(std::ffi::OsStr::new(threeport_server::cli::NAME)) {
        return Some(args);
    }
    if args.get(1).map(|a| a.as_os_str()) == Some(std::ffi::OsStr::new(threeport_server::cli::NAME))
    {
        args.remove(0);
        return Some(args);
    }
    None
}

fn main() -> ExitCode {
    // Broken pipes: Rust ignores SIGPIPE, so writing to a closed pipe (`tptctl get … | head -1`)
    // fails with EPIPE, and `println!` panics on that. Everything here writes stdout through
    // `out!`/`outln!`, which return the error; it travels up like any other and ends here as a
    // quiet success, as in ripgrep: the reader has everything it wanted and there is nobody
    // left to tell. (Restoring SIGPIPE's default instead would end the process by a signal,
    // which a `set -o pipefail` script sees as a failure.) Reports of work in progress (apply,
    // delete) ignore the closed pipe instead and finish the work: see `apply::report_line`.
    if let Some(args) = threeport_args() {
        return match threeport_server::cli::main_with(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    threeport_server::install_crypto_provider();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", hint::render(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
