//! Input modes and what a key does in each text-entry mode (filter, `:` command, delete
//! confirmation, help), plus the `:` command names and their completion. Each function here
//! takes the mode and the key and says what should happen ([`Step`]); the app carries it out.
//! Normal mode goes through the keymap instead (`App::on_action`).

use super::view::View;
use crate::keymap::Key;
use crossterm::event::{KeyCode, KeyModifiers};
use threeport_api::kinds::{self, Kind};

#[derive(Clone, Debug)]
pub struct Confirm {
    pub kind: &'static Kind,
    pub id: u64,
    pub name: String,
    pub input: String,
    pub error: Option<String>,
}

impl PartialEq for Confirm {
    fn eq(&self, o: &Confirm) -> bool {
        std::ptr::eq(self.kind, o.kind)
            && (self.id, &self.name, &self.input, &self.error)
                == (o.id, &o.name, &o.input, &o.error)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    Filter {
        input: String,
    },
    Command {
        input: String,
        /// (typed prefix, index of the completion shown) while Tab cycles.
        cycle: Option<(String, usize)>,
    },
    Confirm(Confirm),
    Help,
}

/// What a key in a text-entry mode asks of the app.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Stay in this (updated) mode.
    Edit(Mode),
    /// Back to normal mode, nothing else.
    Close,
    /// Filter mode ended: keep this filter (`Some`) or clear it (`None`).
    Filter(Option<String>),
    /// Run a `:` command.
    Run(String),
    /// The delete dialog was cancelled.
    CancelDelete,
    /// The typed name matches: delete.
    Delete(Confirm),
    /// The key means nothing here.
    Ignore,
}

fn typed_char(key: &Key) -> Option<char> {
    match key.code {
        KeyCode::Char(c) if !key.mods.contains(KeyModifiers::CONTROL) => Some(c),
        _ => None,
    }
}

/// A key in any mode but `Normal` (which goes through the keymap).
pub fn step(mode: &Mode, key: &Key) -> Step {
    match mode {
        Mode::Normal => Step::Ignore,
        Mode::Help => Step::Close,
        Mode::Filter { input } => filter_key(key, input.clone()),
        Mode::Command { input, cycle } => command_key(key, input.clone(), cycle.clone()),
        Mode::Confirm(c) => confirm_key(key, c.clone()),
    }
}

fn filter_key(key: &Key, mut input: String) -> Step {
    match key.code {
        KeyCode::Esc => Step::Filter(None),
        KeyCode::Enter => Step::Filter(Some(input)),
        KeyCode::Backspace => {
            input.pop();
            Step::Edit(Mode::Filter { input })
        }
        _ => match typed_char(key) {
            Some(c) => {
                input.push(c);
                Step::Edit(Mode::Filter { input })
            }
            None => Step::Ignore,
        },
    }
}

fn command_key(key: &Key, mut input: String, cycle: Option<(String, usize)>) -> Step {
    match key.code {
        KeyCode::Esc => Step::Close,
        KeyCode::Enter => Step::Run(input.trim().to_string()),
        KeyCode::Backspace => {
            input.pop();
            Step::Edit(Mode::Command { input, cycle: None })
        }
        KeyCode::Tab | KeyCode::BackTab => {
            Step::Edit(complete(input, cycle, key.code == KeyCode::BackTab))
        }
        _ => match typed_char(key) {
            Some(c) => {
                input.push(c);
                Step::Edit(Mode::Command { input, cycle: None })
            }
            None => Step::Ignore,
        },
    }
}

/// Tab: complete to the only match, else to the longest common prefix, else cycle through the
/// matches (Shift-Tab backwards).
fn complete(input: String, cycle: Option<(String, usize)>, backwards: bool) -> Mode {
    let prefix = cycle.as_ref().map_or(input.clone(), |(p, _)| p.clone());
    let matches = completions(&prefix);
    match matches.len() {
        0 => Mode::Command { input, cycle: None },
        1 => Mode::Command {
            input: matches[0].clone(),
            cycle: None,
        },
        n => {
            let lcp = common_prefix(&matches);
            if cycle.is_none() && lcp.len() > input.len() {
                return Mode::Command {
                    input: lcp,
                    cycle: None,
                };
            }
            let next = match (&cycle, backwards) {
                (None, true) => n - 1,
                (None, false) => 0,
                (Some((_, i)), true) => (i + n - 1) % n,
                (Some((_, i)), false) => (i + 1) % n,
            };
            Mode::Command {
                input: matches[next].clone(),
                cycle: Some((prefix, next)),
            }
        }
    }
}

fn confirm_key(key: &Key, mut c: Confirm) -> Step {
    match key.code {
        KeyCode::Esc => Step::CancelDelete,
        KeyCode::Enter if c.input == c.name => Step::Delete(c),
        KeyCode::Enter => {
            c.error = Some(format!(
                "{:?} does not match {:?}; nothing was deleted",
                c.input, c.name
            ));
            Step::Edit(Mode::Confirm(c))
        }
        KeyCode::Backspace => {
            c.input.pop();
            c.error = None;
            Step::Edit(Mode::Confirm(c))
        }
        _ => match typed_char(key) {
            Some(ch) => {
                c.input.push(ch);
                c.error = None;
                Step::Edit(Mode::Confirm(c))
            }
            None => Step::Ignore,
        },
    }
}

// ---- `:` commands ---------------------------------------------------------------------------

/// Names `:` accepts besides the kinds' plurals, singulars and aliases.
const BUILTIN_VIEWS: &[&str] = &["workloads", "runtimes", "control-planes", "events"];
const COMMANDS: &[&str] = &["help", "quit"];

/// What a `:` command asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    View(View),
    Help,
    Quit,
}

/// `:workloads`, `:aws-accounts`, `:kri`, `:q`, `:help`. `Ok(None)` for an empty command; the
/// error says what was typed and what it might have meant.
pub fn parse_command(cmd: &str) -> Result<Option<Command>, String> {
    let c = cmd.trim().trim_start_matches(':').to_ascii_lowercase();
    let view = match c.as_str() {
        "" => return Ok(None),
        "q" | "q!" | "quit" | "exit" => return Ok(Some(Command::Quit)),
        "help" | "?" => return Ok(Some(Command::Help)),
        "workloads" | "wl" => View::Workloads,
        "runtimes" | "runtime" => View::Kind(kinds::KUBERNETES_RUNTIME_INSTANCE),
        "control-planes" | "control-plane" | "cp" => View::Kind(kinds::CONTROL_PLANE_INSTANCE),
        "events" | "event" | "ev" => View::Events,
        other => match kinds::lookup(other) {
            Some(k) => View::Kind(k),
            None => {
                let start: String = other.chars().take(3).collect();
                let hint = completions(&start);
                let hint = if hint.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", hint[..hint.len().min(4)].join(", "))
                };
                return Err(format!("unknown view {other:?}{hint}; Tab completes"));
            }
        },
    };
    Ok(Some(Command::View(view)))
}

/// Every name `:` accepts, sorted.
pub fn command_names() -> Vec<String> {
    let mut v: Vec<String> = BUILTIN_VIEWS
        .iter()
        .chain(COMMANDS.iter())
        .map(|s| s.to_string())
        .collect();
    for k in kinds::KINDS.iter() {
        v.push(k.plural.to_string());
        v.push(k.singular().to_string());
        v.extend(k.aliases.iter().map(|a| a.to_string()));
    }
    v.sort();
    v.dedup();
    v
}

/// The command names that start with `prefix`.
pub fn completions(prefix: &str) -> Vec<String> {
    let p = prefix.trim().to_ascii_lowercase();
    command_names()
        .into_iter()
        .filter(|c| c.starts_with(&p))
        .collect()
}

fn common_prefix(v: &[String]) -> String {
    let Some(first) = v.first() else {
        return String::new();
    };
    let mut n = first.chars().count();
    for s in &v[1..] {
        n = n.min(
            first
                .chars()
                .zip(s.chars())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    first.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEvent;

    fn k(code: KeyCode) -> Key {
        Key::from_event(&KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn command(input: &str) -> Mode {
        Mode::Command {
            input: input.into(),
            cycle: None,
        }
    }

    #[test]
    fn tab_completes_then_cycles() {
        let Step::Edit(m) = step(&command("aws-acc"), &k(KeyCode::Tab)) else {
            panic!()
        };
        assert_eq!(m, command("aws-account"), "the common prefix first");
        let Step::Edit(m) = step(&m, &k(KeyCode::Tab)) else {
            panic!()
        };
        let Mode::Command { input, cycle } = &m else {
            panic!()
        };
        assert_eq!((input.as_str(), cycle.is_some()), ("aws-account", true));
        let Step::Edit(Mode::Command { input, .. }) = step(&m, &k(KeyCode::Tab)) else {
            panic!()
        };
        assert_eq!(input, "aws-accounts");
        assert_eq!(
            step(&command(" kri "), &k(KeyCode::Enter)),
            Step::Run("kri".into())
        );
    }

    #[test]
    fn commands_resolve_through_the_registry() {
        let view = |c: &str| match parse_command(c) {
            Ok(Some(Command::View(v))) => v,
            other => panic!("{c}: {other:?}"),
        };
        assert_eq!(view("kri"), View::Kind(kinds::KUBERNETES_RUNTIME_INSTANCE));
        assert_eq!(view(":controllers"), View::Kind(kinds::CONTROLLER));
        assert_eq!(
            view("runtimes"),
            View::Kind(kinds::KUBERNETES_RUNTIME_INSTANCE)
        );
        assert_eq!(view("events"), View::Events);
        assert_eq!(parse_command("q"), Ok(Some(Command::Quit)));
        assert_eq!(parse_command("  "), Ok(None));
        let e = parse_command("workluads").unwrap_err();
        assert!(
            e.contains("unknown view") && e.contains("did you mean workload-"),
            "{e}"
        );
    }

    #[test]
    fn the_delete_dialog_needs_the_exact_name() {
        let c = Confirm {
            kind: kinds::WORKLOAD_DEFINITION,
            id: 1,
            name: "web".into(),
            input: "we".into(),
            error: None,
        };
        let Step::Edit(Mode::Confirm(wrong)) = step(&Mode::Confirm(c.clone()), &k(KeyCode::Enter))
        else {
            panic!()
        };
        assert!(wrong.error.unwrap().contains("nothing was deleted"));
        let Step::Edit(Mode::Confirm(typed)) = step(&Mode::Confirm(c), &k(KeyCode::Char('b')))
        else {
            panic!()
        };
        assert!(matches!(
            step(&Mode::Confirm(typed), &k(KeyCode::Enter)),
            Step::Delete(_)
        ));
    }
}
