//! `tptctl config`: list the control planes in the config and switch between them.

use super::Ctx;
use crate::args::{ConfigArgs, ConfigCommand};
use crate::hint;
use anyhow::Result;

pub fn run(ctx: &Ctx, args: ConfigArgs) -> Result<u8> {
    let mut cfg = ctx.config()?;
    match args.command {
        ConfigCommand::GetControlPlanes => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::NOTHING);
            t.set_header(vec!["CURRENT", "NAME", "PROVIDER", "API SERVER"]);
            for cp in &cfg.control_planes {
                let cur = if cp.name == cfg.current_control_plane {
                    "*"
                } else {
                    ""
                };
                t.add_row(vec![cur, &cp.name, &cp.provider, &cp.url()]);
            }
            for l in t.to_string().lines() {
                outln!("{}", l.trim_end().trim_start_matches(' '))?;
            }
        }
        ConfigCommand::CurrentControlPlane { name: None } => {
            if cfg.current_control_plane.is_empty() {
                return Err(hint::error(
                    "no current control plane is set",
                    "pick one with `tptctl config current-control-plane NAME`, or create one with `tptctl up --provider local`",
                ));
            }
            outln!("{}", cfg.current_control_plane)?;
        }
        ConfigCommand::CurrentControlPlane { name: Some(name) } => {
            if cfg.get(&name).is_none() {
                return Err(hint::error(
                    format!(
                        "no control plane named {name:?} in {}",
                        ctx.config_path.display()
                    ),
                    "`tptctl config get-control-planes` lists them",
                ));
            }
            cfg.current_control_plane = name.clone();
            cfg.save(&ctx.config_path)?;
            eprintln!("current control plane is now {name:?}");
        }
    }
    Ok(0)
}
