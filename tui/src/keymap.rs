//! Actions ↔ keys. The defaults follow k9s; a YAML file (by default `~/.threeport/dashboard.yaml`)
//! can rebind any action, and the help screen and the footer hints are generated from the live
//! keymap, so they never disagree with what the keys do.
//!
//! File format:
//!
//! ```yaml
//! keys:
//!   describe: v              # one key…
//!   down: [j, down, ctrl-n]  # …or a list; it replaces that action's default keys
//!   delete: ctrl-x
//! ```
//!
//! Key syntax: a single character (`d`, `G`, `/`, `?`), a name (`enter`, `esc`, `tab`, `backtab`,
//! `space`, `backspace`, `delete`, `insert`, `up`, `down`, `left`, `right`, `home`, `end`,
//! `pageup`, `pagedown`, `f1`…`f12`), optionally prefixed by `ctrl-`, `alt-` (and `shift-` for
//! named keys). `ctrl-c` cannot be bound: it always quits. A key bound to two actions is an error.

use anyhow::{Context, Result, bail};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Back,
    Quit,
    Filter,
    Command,
    Describe,
    Events,
    Delete,
    Help,
}

impl Action {
    pub const ALL: [Action; 15] = [
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Top,
        Action::Bottom,
        Action::Open,
        Action::Back,
        Action::Quit,
        Action::Filter,
        Action::Command,
        Action::Describe,
        Action::Events,
        Action::Delete,
        Action::Help,
    ];

    /// The name used in the keymap file.
    pub fn name(self) -> &'static str {
        match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page_up",
            Action::PageDown => "page_down",
            Action::Top => "top",
            Action::Bottom => "bottom",
            Action::Open => "open",
            Action::Back => "back",
            Action::Quit => "quit",
            Action::Filter => "filter",
            Action::Command => "command",
            Action::Describe => "describe",
            Action::Events => "events",
            Action::Delete => "delete",
            Action::Help => "help",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Action::Up => "move up",
            Action::Down => "move down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Top => "go to the first row",
            Action::Bottom => "go to the last row",
            Action::Open => "drill down (definition → instances → resources → events)",
            Action::Back => "go back; clears the filter first",
            Action::Quit => "go back; quits from the top view",
            Action::Filter => "filter the rows",
            Action::Command => "switch view: :workloads, :aws-accounts, … (tab completes)",
            Action::Describe => "describe the object (YAML)",
            Action::Events => "events of the object",
            Action::Delete => "delete the object (asks you to type its name)",
            Action::Help => "this help",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    fn defaults(self) -> &'static [&'static str] {
        match self {
            Action::Up => &["up", "k"],
            Action::Down => &["down", "j"],
            Action::PageUp => &["pageup", "ctrl-b"],
            Action::PageDown => &["pagedown", "ctrl-f"],
            Action::Top => &["home", "g"],
            Action::Bottom => &["end", "G"],
            Action::Open => &["enter"],
            Action::Back => &["esc"],
            Action::Quit => &["q"],
            Action::Filter => &["/"],
            Action::Command => &[":"],
            Action::Describe => &["d"],
            Action::Events => &["e"],
            Action::Delete => &["ctrl-d"],
            Action::Help => &["?"],
        }
    }
}

/// A key with its modifiers, normalised so that `G` and `shift-g` are the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn new(code: KeyCode, mods: KeyModifiers) -> Key {
        let mut mods = mods & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        // A character already carries its shift state ('G', '?').
        if let KeyCode::Char(_) = code {
            mods.remove(KeyModifiers::SHIFT);
        }
        // Terminals report Shift-Tab as BackTab, sometimes with SHIFT set.
        if code == KeyCode::BackTab {
            mods.remove(KeyModifiers::SHIFT);
        }
        Key { code, mods }
    }

    pub fn from_event(ev: &KeyEvent) -> Key {
        Key::new(ev.code, ev.modifiers)
    }

    pub fn is_ctrl_c(&self) -> bool {
        self.mods.contains(KeyModifiers::CONTROL)
            && matches!(self.code, KeyCode::Char('c') | KeyCode::Char('C'))
    }

    pub fn parse(spec: &str) -> Result<Key> {
        let mut rest = spec.trim();
        if rest.is_empty() {
            bail!("empty key");
        }
        let mut mods = KeyModifiers::NONE;
        loop {
            let lower = rest.to_ascii_lowercase();
            let (m, len) = if lower.starts_with("ctrl-") && rest.len() > 5 {
                (KeyModifiers::CONTROL, 5)
            } else if lower.starts_with("alt-") && rest.len() > 4 {
                (KeyModifiers::ALT, 4)
            } else if lower.starts_with("shift-") && rest.len() > 6 {
                (KeyModifiers::SHIFT, 6)
            } else {
                break;
            };
            mods |= m;
            rest = &rest[len..];
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => {
                // ctrl-D is ctrl-d: terminals cannot tell them apart.
                if mods.contains(KeyModifiers::CONTROL) {
                    KeyCode::Char(c.to_ascii_lowercase())
                } else if mods.contains(KeyModifiers::SHIFT) {
                    mods.remove(KeyModifiers::SHIFT);
                    KeyCode::Char(c.to_ascii_uppercase())
                } else {
                    KeyCode::Char(c)
                }
            }
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "space" => KeyCode::Char(' '),
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "insert" => KeyCode::Insert,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" => KeyCode::PageDown,
                f if f.starts_with('f')
                    && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
                {
                    KeyCode::F(f[1..].parse().unwrap_or(1))
                }
                _ => bail!("unknown key {spec:?}"),
            },
        };
        let key = Key::new(code, mods);
        if key.is_ctrl_c() {
            bail!("ctrl-c cannot be bound: it always quits");
        }
        Ok(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("alt-")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("backtab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Insert => f.write_str("insert"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pageup"),
            KeyCode::PageDown => f.write_str("pagedown"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Keymap {
    bindings: BTreeMap<Action, Vec<Key>>,
    lookup: HashMap<Key, Action>,
}

/// The keymap file: `keys:` maps action names to one key or a list of keys.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeymapFile {
    #[serde(default)]
    keys: BTreeMap<String, OneOrMany>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for Keymap {
    fn default() -> Keymap {
        let bindings = Action::ALL
            .into_iter()
            .map(|a| {
                let keys = a
                    .defaults()
                    .iter()
                    .map(|k| Key::parse(k).expect("default keys parse"))
                    .collect();
                (a, keys)
            })
            .collect();
        Keymap::build(bindings).expect("default keymap has no conflicts")
    }
}

impl Keymap {
    fn build(bindings: BTreeMap<Action, Vec<Key>>) -> Result<Keymap> {
        let mut lookup = HashMap::new();
        for (action, keys) in &bindings {
            for k in keys {
                if let Some(other) = lookup.insert(*k, *action)
                    && other != *action
                {
                    bail!(
                        "key {k} is bound to both {:?} and {:?}",
                        other.name(),
                        action.name()
                    );
                }
            }
        }
        Ok(Keymap { bindings, lookup })
    }

    /// The defaults with the overrides of a YAML keymap file applied.
    pub fn from_yaml(text: &str) -> Result<Keymap> {
        let file: KeymapFile = if text.trim().is_empty() {
            KeymapFile::default()
        } else {
            serde_yaml::from_str(text)?
        };
        let mut keymap = Keymap::default();
        for (name, keys) in file.keys {
            let action = Action::from_name(&name).with_context(|| {
                format!(
                    "unknown action {name:?}; actions: {}",
                    Action::ALL.map(Action::name).join(", ")
                )
            })?;
            let specs = match keys {
                OneOrMany::One(k) => vec![k],
                OneOrMany::Many(ks) => ks,
            };
            let mut parsed = Vec::new();
            for s in &specs {
                parsed.push(Key::parse(s).with_context(|| format!("action {name:?}"))?);
            }
            keymap.bindings.insert(action, parsed);
        }
        Keymap::build(keymap.bindings)
    }

    /// Load overrides from `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Keymap> {
        match std::fs::read_to_string(path) {
            Ok(text) => Keymap::from_yaml(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keymap::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn action(&self, key: &Key) -> Option<Action> {
        self.lookup.get(key).copied()
    }

    pub fn keys(&self, action: Action) -> &[Key] {
        self.bindings.get(&action).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `j, down`: how the help and the footer name an action's keys.
    pub fn keys_label(&self, action: Action) -> String {
        let keys = self.keys(action);
        if keys.is_empty() {
            return "(unbound)".into();
        }
        keys.iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first key of an action, for short hints (`<d> describe`).
    pub fn first_key(&self, action: Action) -> Option<String> {
        self.keys(action).first().map(Key::to_string)
    }

    /// The help screen: one line per action, from the live bindings.
    pub fn help_lines(&self) -> Vec<(String, &'static str)> {
        let mut lines: Vec<(String, &'static str)> = Action::ALL
            .into_iter()
            .map(|a| (self.keys_label(a), a.description()))
            .collect();
        lines.push(("ctrl-c".into(), "quit (always)"));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lookup() {
        let km = Keymap::default();
        let k = |c: char| Key::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(km.action(&k('j')), Some(Action::Down));
        assert_eq!(km.action(&k('d')), Some(Action::Describe));
        // Terminals send 'G' with SHIFT set.
        assert_eq!(
            km.action(&Key::new(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            km.action(&Key::new(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Some(Action::Delete)
        );
        assert_eq!(km.keys_label(Action::Down), "down, j");
    }

    #[test]
    fn overrides_replace_the_action_keys() {
        let km = Keymap::from_yaml("keys:\n  describe: v\n  down: [j, ctrl-n]\n").unwrap();
        let k = |c: char| Key::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(km.action(&k('v')), Some(Action::Describe));
        assert_eq!(km.action(&k('d')), None, "the default is replaced");
        assert_eq!(
            km.action(&Key::new(KeyCode::Char('n'), KeyModifiers::CONTROL)),
            Some(Action::Down)
        );
        assert_eq!(
            km.action(&Key::new(KeyCode::Down, KeyModifiers::NONE)),
            None
        );
        let help = km.help_lines();
        assert!(help.contains(&("v".to_string(), Action::Describe.description())));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = Keymap::from_yaml("keys:\n  explode: x\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown action \"explode\""),
            "{e:#}"
        );
        let e = Keymap::from_yaml("keys:\n  down: d\n").unwrap_err();
        assert!(format!("{e:#}").contains("bound to both"), "{e:#}");
        let e = Keymap::from_yaml("keys:\n  quit: ctrl-c\n").unwrap_err();
        assert!(format!("{e:#}").contains("always quits"), "{e:#}");
        let e = Keymap::from_yaml("keys:\n  quit: hyper-q\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown key"), "{e:#}");
        let e = Keymap::from_yaml("bindings: {}\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }

    #[test]
    fn key_syntax_round_trips() {
        for s in [
            "ctrl-d", "G", "/", "?", "enter", "esc", "pagedown", "f5", "alt-x", "space",
        ] {
            assert_eq!(Key::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Key::parse("shift-g").unwrap(), Key::parse("G").unwrap());
        assert_eq!(Key::parse("ctrl-D").unwrap(), Key::parse("ctrl-d").unwrap());
    }
}
