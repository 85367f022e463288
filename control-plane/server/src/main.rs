//! `threeport`: the control-plane server binary. The command line is `threeport_server::cli`,
//! shared with `tptctl`, which carries the same control plane.

fn main() -> anyhow::Result<()> {
    threeport_server::cli::main_with(std::env::args_os())
}
