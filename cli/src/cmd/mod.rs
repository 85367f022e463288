//! One module per verb; each `run` takes the command's args struct and returns the exit code.
//! What several verbs share (the config context, kind and object lookup, loading `-f` inputs)
//! is here.

pub mod apply;
pub mod completion;
pub mod config;
pub mod create;
pub mod dashboard;
pub mod delete;
pub mod describe;
pub mod doctor;
pub mod down;
pub mod get;
pub mod image;
pub mod runtime;
pub mod serve_local;
pub mod up;
pub mod validate;
pub mod version;
pub mod why;

use crate::args::Inputs;
use crate::hint;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use threeport_api::manifest::{self, Loaded};
use threeport_api::{Kind, kinds};

/// Exit codes, documented in `--help` (`args::AFTER_HELP`).
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_TIMEOUT: u8 = 3;

/// The global flags: which config file, which control plane.
pub struct Ctx {
    pub config_path: PathBuf,
    pub control_plane: Option<String>,
}

impl Ctx {
    pub fn config(&self) -> Result<crate::config::ThreeportConfig> {
        crate::config::ThreeportConfig::load(&self.config_path)
    }

    pub fn client(&self) -> Result<threeport_api::Client> {
        self.config()?
            .select(self.control_plane.as_deref())?
            .client()
    }
}

/// A kind as the user typed it: plural, singular, PascalCase or alias.
pub fn kind_arg(name: &str) -> Result<&'static Kind> {
    kinds::lookup(name).ok_or_else(|| {
        let hint = match closest_kind(name) {
            Some(k) => format!("did you mean {k:?}? `tptctl get kinds` lists every kind"),
            None => "`tptctl get kinds` lists every kind".to_string(),
        };
        hint::error(format!("unknown kind {name:?}"), hint)
    })
}

/// The plural or alias closest to `name`, when it is close enough to be a typo.
fn closest_kind(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    kinds::KINDS
        .iter()
        .flat_map(|k| std::iter::once(k.plural).chain(k.aliases.iter().copied()))
        .map(|cand| (strsim::levenshtein(&name, cand), cand))
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, cand)| cand)
}

/// One object by name (or by ID for the unnamed kinds: events, resource rows).
pub async fn find(
    client: &threeport_api::Client,
    kind: &'static Kind,
    name: &str,
) -> Result<Value> {
    if !kind.named
        && let Ok(id) = name.parse::<u64>()
    {
        return Ok(client.get(kind, id).await?);
    }
    client.find_by_name(kind, name).await?.ok_or_else(|| {
        hint::error(
            format!("{} {name:?} not found", kind.singular()),
            format!("`tptctl get {}` lists them", kind.plural),
        )
    })
}

/// Every `-f`/`-c` input, loaded and put in dependency order. Problems are in `Loaded::problems`.
pub fn load_inputs(inputs: &Inputs) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    for p in inputs.all() {
        let part = if p == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read stdin")?;
            manifest::load_str(&text, "<stdin>", &std::env::current_dir()?)
        } else {
            if !p.exists() {
                anyhow::bail!("{}: no such file or directory", p.display());
            }
            manifest::load_path(&p, inputs.recursive)
        };
        loaded.objects.extend(part.objects);
        loaded.problems.extend(part.problems);
        loaded.broken.extend(part.broken);
    }
    Ok(manifest::order(loaded))
}

/// `-f` is required by this verb: the error says how to give it.
pub fn require_inputs(inputs: &Inputs, usage: &str) -> Result<()> {
    if inputs.is_empty() {
        return Err(hint::error("no files given", usage.to_string()));
    }
    Ok(())
}

/// Print problems found while loading files, one `error:` line each; whether there were any.
pub fn report_problems(loaded: &Loaded) -> bool {
    for p in &loaded.problems {
        eprintln!("error: {p}");
    }
    !loaded.problems.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_of_kinds_get_a_suggestion() {
        assert_eq!(closest_kind("workloadz"), Some("workloads"));
        assert_eq!(
            closest_kind("workload-instnces"),
            Some("workload-instances")
        );
        assert_eq!(closest_kind("zzzzzzzz"), None);
        let e = kind_arg("workloadz").unwrap_err();
        assert_eq!(
            hint::render(&e),
            "error: unknown kind \"workloadz\"\nhint: did you mean \"workloads\"? `tptctl get kinds` lists every kind\n"
        );
    }
}
