//! The dashboard's state, pure and testable: the object cache, a stack of views, the selection,
//! the filter, the input modes. Keys and network messages go in, [`Effect`]s come out; nothing
//! here does I/O or looks at the clock.

use crate::keymap::{Action, Key, Keymap};
use crate::net::NetMsg;
use crate::status::{self, EventLine, Health};
use crate::store::{Obj, Store, display_name};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;
use threeport_api::REDACTED;
use threeport_api::kinds::{self, FieldType, Kind, Role};
use time::OffsetDateTime;

pub fn kind(name: &str) -> &'static Kind {
    kinds::by_name(name).expect("kind is registered")
}

/// Kinds listed at start: what the built-in views and the "why" pane need.
pub fn core_kinds() -> Vec<&'static Kind> {
    [
        "WorkloadDefinition",
        "WorkloadInstance",
        "WorkloadResourceInstance",
        "KubernetesRuntimeInstance",
        "ControlPlaneInstance",
        "Event",
        "WorkloadEvent",
    ]
    .into_iter()
    .map(kind)
    .collect()
}

#[derive(Clone, Debug)]
pub enum View {
    /// Workload definitions with their instances under them.
    Workloads,
    /// Every object of one kind (`:aws-accounts`, `:runtimes`).
    Kind(&'static Kind),
    /// Events and workload events, newest first.
    Events,
    /// Objects of `kinds` that point at the parent (definition → instances → resources).
    Children {
        parent: &'static Kind,
        id: u64,
        kinds: Vec<&'static Kind>,
    },
    /// Events about one object.
    ObjectEvents { kind: &'static Kind, id: u64 },
    /// The object as YAML.
    Describe { kind: &'static Kind, id: u64 },
}

// `Kind` has no `PartialEq`; kinds are compared by name.
impl PartialEq for View {
    fn eq(&self, other: &View) -> bool {
        self.key() == other.key()
    }
}

impl View {
    fn key(&self) -> (u8, Vec<&'static str>, u64) {
        match self {
            View::Workloads => (0, vec![], 0),
            View::Kind(k) => (1, vec![k.name], 0),
            View::Events => (2, vec![], 0),
            View::Children { parent, id, kinds } => {
                let mut v = vec![parent.name];
                v.extend(kinds.iter().map(|k| k.name));
                (3, v, *id)
            }
            View::ObjectEvents { kind, id } => (4, vec![kind.name], *id),
            View::Describe { kind, id } => (5, vec![kind.name], *id),
        }
    }

    /// Kinds whose data the view shows (they must be listed first).
    pub fn needs(&self) -> Vec<&'static Kind> {
        match self {
            View::Workloads => vec![
                kind("WorkloadDefinition"),
                kind("WorkloadInstance"),
                kind("KubernetesRuntimeInstance"),
            ],
            View::Kind(k) => {
                let mut v = vec![*k];
                for f in k.own_fields.iter() {
                    if let Some(t) = f.references.and_then(kinds::by_name)
                        && !v.iter().any(|x| x.name == t.name)
                    {
                        v.push(t);
                    }
                }
                v
            }
            View::Events => vec![kind("Event"), kind("WorkloadEvent")],
            View::Children { parent, kinds, .. } => {
                let mut v = kinds.clone();
                v.push(parent);
                v
            }
            View::ObjectEvents { kind: k, .. } | View::Describe { kind: k, .. } => {
                vec![k, kind("Event"), kind("WorkloadEvent")]
            }
        }
    }

    fn parent_label(store: &Store, k: &Kind, id: u64) -> String {
        format!(
            "{}/{}",
            k.singular(),
            store.name_of(k, id).unwrap_or_else(|| id.to_string())
        )
    }

    /// Short name for the breadcrumb and the table title.
    pub fn title(&self, store: &Store) -> String {
        match self {
            View::Workloads => "workloads".into(),
            View::Kind(k) => k.plural.into(),
            View::Events => "events".into(),
            View::Children { parent, id, kinds } => {
                let what = if kinds.len() == 1 {
                    if kinds[0].name == "WorkloadResourceInstance" {
                        "resources".to_string()
                    } else {
                        kinds[0].plural.to_string()
                    }
                } else {
                    "dependants".to_string()
                };
                format!("{what} of {}", Self::parent_label(store, parent, *id))
            }
            View::ObjectEvents { kind, id } => {
                format!("events of {}", Self::parent_label(store, kind, *id))
            }
            View::Describe { kind, id } => {
                format!("describe {}", Self::parent_label(store, kind, *id))
            }
        }
    }

    pub fn crumb(&self, store: &Store) -> String {
        match self {
            View::Children { kinds, .. } if kinds.len() == 1 => {
                if kinds[0].name == "WorkloadResourceInstance" {
                    "resources".into()
                } else {
                    kinds[0].plural.into()
                }
            }
            View::Children { .. } => "dependants".into(),
            View::ObjectEvents { .. } => "events".into(),
            View::Describe { kind, id } => Self::parent_label(store, kind, *id),
            other => other.title(store),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColKind {
    Text,
    /// Status with its text marker; coloured by the row's health.
    Status,
    /// Computed from the row's time at render (so snapshots can inject "now").
    Age,
    /// The deepest cause, computed at render for visible rows only.
    Why,
    /// Event type: warnings are highlighted.
    EventType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub title: String,
    pub kind: ColKind,
    /// Widest content (capped), computed when the rows are built.
    pub width: u16,
}

impl Column {
    fn new(title: &str, kind: ColKind) -> Column {
        Column {
            title: title.to_string(),
            kind,
            width: title.chars().count() as u16,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub kind: &'static Kind,
    pub id: u64,
    /// One per column; empty for Age and Why columns.
    pub cells: Vec<String>,
    pub health: Health,
    pub time: Option<OffsetDateTime>,
    /// Lower-cased text the filter matches against.
    search: String,
}

impl PartialEq for Row {
    fn eq(&self, o: &Row) -> bool {
        self.kind.name == o.kind.name
            && self.id == o.id
            && self.cells == o.cells
            && self.health == o.health
            && self.time == o.time
    }
}

#[derive(Clone, Debug)]
pub struct Screen {
    pub view: View,
    pub selected: usize,
    pub offset: usize,
    pub filter: String,
    /// The selected object, so the cursor follows it when rows move.
    selected_key: Option<(&'static str, u64)>,
}

impl Screen {
    pub fn new(view: View) -> Screen {
        Screen {
            view,
            selected: 0,
            offset: 0,
            filter: String::new(),
            selected_key: None,
        }
    }
}

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
        self.kind.name == o.kind.name
            && self.id == o.id
            && self.name == o.name
            && self.input == o.input
            && self.error == o.error
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

#[derive(Clone, Debug, PartialEq)]
pub enum Conn {
    Connecting,
    Connected,
    Disconnected {
        error: String,
        attempt: u32,
        retry_in_ms: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub text: String,
    pub level: Level,
}

/// What the event loop must do for the app.
#[derive(Clone, Debug)]
pub enum Effect {
    Load(&'static Kind),
    Delete {
        kind: &'static Kind,
        id: u64,
        name: String,
    },
    Quit,
}

impl PartialEq for Effect {
    fn eq(&self, o: &Effect) -> bool {
        match (self, o) {
            (Effect::Load(a), Effect::Load(b)) => a.name == b.name,
            (
                Effect::Delete { kind, id, name },
                Effect::Delete {
                    kind: k2,
                    id: i2,
                    name: n2,
                },
            ) => kind.name == k2.name && id == i2 && name == n2,
            (Effect::Quit, Effect::Quit) => true,
            _ => false,
        }
    }
}

pub struct App {
    pub store: Store,
    pub control_plane: String,
    pub api_url: String,
    pub readonly: bool,
    pub no_color: bool,
    pub keymap: Keymap,
    /// Where the keymap came from, for the help screen.
    pub keymap_source: String,
    pub conn: Conn,
    pub stack: Vec<Screen>,
    pub mode: Mode,
    pub message: Option<Message>,
    pub size: (u16, u16),
    pub should_quit: bool,
    /// Kinds asked of the network (listed or being listed).
    requested: Vec<&'static str>,
    columns: Vec<Column>,
    all_rows: Vec<Row>,
    /// Indexes into `all_rows` of the rows the filter keeps.
    filtered: Vec<usize>,
    /// Describe view text.
    text: Vec<String>,
    /// (store version, stack depth) the rows were built for.
    built_for: Option<(u64, usize)>,
    build_gen: u64,
    /// (build generation, filter) the filtered list is for.
    filtered_for: Option<(u64, String)>,
}

/// Names `:` accepts besides the kinds' plurals, singulars and aliases.
const BUILTIN_VIEWS: &[&str] = &["workloads", "runtimes", "control-planes", "events"];
const COMMANDS: &[&str] = &["help", "quit"];

impl App {
    pub fn new(control_plane: &str, api_url: &str, readonly: bool, keymap: Keymap) -> App {
        let mut app = App {
            store: Store::new(),
            control_plane: control_plane.to_string(),
            api_url: api_url.to_string(),
            readonly,
            no_color: false,
            keymap,
            keymap_source: "built-in defaults".into(),
            conn: Conn::Connecting,
            stack: vec![Screen::new(View::Workloads)],
            mode: Mode::Normal,
            message: None,
            size: (120, 40),
            should_quit: false,
            requested: core_kinds().iter().map(|k| k.name).collect(),
            columns: Vec::new(),
            all_rows: Vec::new(),
            filtered: Vec::new(),
            text: Vec::new(),
            built_for: None,
            build_gen: 0,
            filtered_for: None,
        };
        app.refresh();
        app
    }

    pub fn screen(&self) -> &Screen {
        self.stack.last().expect("the stack is never empty")
    }

    fn screen_mut(&mut self) -> &mut Screen {
        self.stack.last_mut().expect("the stack is never empty")
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows of the current view, filtered.
    pub fn rows(&self) -> Vec<&Row> {
        self.filtered.iter().map(|i| &self.all_rows[*i]).collect()
    }

    pub fn row_count(&self) -> usize {
        self.filtered.len()
    }

    pub fn row(&self, i: usize) -> Option<&Row> {
        self.filtered.get(i).map(|j| &self.all_rows[*j])
    }

    pub fn total_rows(&self) -> usize {
        self.all_rows.len()
    }

    pub fn text(&self) -> &[String] {
        &self.text
    }

    pub fn selected_row(&self) -> Option<&Row> {
        match self.screen().view {
            View::Describe { .. } => None,
            _ => self.row(self.screen().selected),
        }
    }

    /// The object the actions (describe, events, delete) apply to.
    pub fn target(&self) -> Option<(&'static Kind, u64)> {
        match self.screen().view {
            View::Describe { kind, id } => Some((kind, id)),
            _ => self.selected_row().map(|r| (r.kind, r.id)),
        }
    }

    /// Whether the view's data has arrived.
    pub fn loading(&self) -> bool {
        self.screen()
            .view
            .needs()
            .first()
            .is_some_and(|k| !self.store.is_loaded(k))
    }

    pub fn page_height(&self) -> usize {
        crate::ui::list_capacity(self.size.0, self.size.1).max(1)
    }

    // ---- data -------------------------------------------------------------------------------

    /// Apply what the network task reports.
    pub fn on_net(&mut self, msg: NetMsg) {
        match msg {
            NetMsg::Connecting => {
                if !matches!(self.conn, Conn::Disconnected { .. }) {
                    self.conn = Conn::Connecting;
                }
            }
            NetMsg::Connected => self.conn = Conn::Connected,
            NetMsg::Disconnected {
                error,
                attempt,
                retry_in,
            } => {
                self.conn = Conn::Disconnected {
                    error,
                    attempt,
                    retry_in_ms: retry_in.as_millis() as u64,
                }
            }
            NetMsg::Snapshot { kind, objects } => self.store.replace(kind, objects),
            NetMsg::Event(ev) => {
                self.store.apply(ev);
            }
            NetMsg::LoadFailed { kind, error } => {
                self.requested.retain(|k| *k != kind.name);
                self.set_message(
                    Level::Error,
                    format!("cannot list {}: {error}", kind.plural),
                );
            }
            NetMsg::ActionDone { text, ok } => {
                self.set_message(if ok { Level::Info } else { Level::Error }, text)
            }
        }
    }

    /// Rebuild rows when the data or the view changed; clamp the selection. Cheap when nothing
    /// changed, so the event loop calls it before every frame.
    pub fn refresh(&mut self) {
        let key = (self.store.version(), self.stack.len());
        if self.built_for != Some(key) {
            self.build();
            self.built_for = Some(key);
        }
        self.apply_filter();
        self.clamp();
    }

    fn invalidate(&mut self) {
        self.built_for = None;
    }

    fn build(&mut self) {
        let view = self.screen().view.clone();
        self.text.clear();
        let (columns, rows) = match &view {
            View::Workloads => workload_rows(&self.store),
            View::Kind(k) if status::is_event_kind(k) => event_rows(
                &self.store,
                self.store
                    .objects(k)
                    .map(|(id, e)| status::event_line(&self.store, k, id, e))
                    .collect(),
            ),
            View::Kind(k) => object_rows(&self.store, &[k], None),
            View::Events => {
                let mut lines = Vec::new();
                for k in [kind("Event"), kind("WorkloadEvent")] {
                    lines.extend(
                        self.store
                            .objects(k)
                            .map(|(id, e)| status::event_line(&self.store, k, id, e)),
                    );
                }
                event_rows(&self.store, lines)
            }
            View::Children { id, kinds, .. } => object_rows(&self.store, kinds, Some(*id)),
            View::ObjectEvents { kind, id } => {
                event_rows(&self.store, status::events_for(&self.store, kind, *id))
            }
            View::Describe { kind, id } => {
                self.text = describe_text(&self.store, kind, *id);
                (Vec::new(), Vec::new())
            }
        };
        self.columns = columns;
        self.all_rows = rows;
        self.build_gen += 1;
        self.recompute_widths();
    }

    fn apply_filter(&mut self) {
        let f = match &self.mode {
            Mode::Filter { input } => input.to_lowercase(),
            _ => self.screen().filter.to_lowercase(),
        };
        let key = (self.build_gen, f);
        if self.filtered_for.as_ref() == Some(&key) {
            return;
        }
        let f = &key.1;
        self.filtered = if f.is_empty() {
            (0..self.all_rows.len()).collect()
        } else {
            self.all_rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.search.contains(f.as_str()))
                .map(|(i, _)| i)
                .collect()
        };
        self.filtered_for = Some(key);
    }

    fn recompute_widths(&mut self) {
        for (i, c) in self.columns.iter_mut().enumerate() {
            let width = |s: &str| {
                if s.is_ascii() {
                    s.len()
                } else {
                    s.chars().count()
                }
            };
            let mut w = width(&c.title);
            if matches!(c.kind, ColKind::Text | ColKind::Status | ColKind::EventType) {
                for r in &self.all_rows {
                    w = w.max(r.cells.get(i).map_or(0, |s| width(s)));
                }
            }
            if c.kind == ColKind::Age {
                w = w.max(4);
            }
            c.width = w.min(48) as u16;
        }
    }

    fn is_text_view(&self) -> bool {
        matches!(self.screen().view, View::Describe { .. })
    }

    /// Keep the cursor on the same object when it is still there, else at the same position,
    /// and always inside the list and the window.
    pub fn clamp(&mut self) {
        let page = self.page_height();
        if self.is_text_view() {
            // The selection is the first visible line.
            let len = self.text.len();
            let s = self.screen_mut();
            s.selected = s.selected.min(len.saturating_sub(page));
            s.offset = s.selected;
            return;
        }
        let len = self.row_count();
        let key_pos = self.screen().selected_key.and_then(|(k, id)| {
            self.filtered.iter().position(|i| {
                let r = &self.all_rows[*i];
                r.kind.name == k && r.id == id
            })
        });
        let sel = key_pos
            .unwrap_or(self.screen().selected)
            .min(len.saturating_sub(1));
        let key = self.row(sel).map(|r| (r.kind.name, r.id));
        let s = self.screen_mut();
        s.selected = sel;
        s.selected_key = key;
        if s.selected < s.offset {
            s.offset = s.selected;
        }
        if s.selected >= s.offset + page {
            s.offset = s.selected + 1 - page;
        }
        s.offset = s.offset.min(len.saturating_sub(page));
    }

    pub fn resize(&mut self, w: u16, h: u16) {
        self.size = (w, h);
        self.clamp();
    }

    pub fn set_message(&mut self, level: Level, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            level,
        });
    }

    // ---- navigation -------------------------------------------------------------------------

    fn effects_for_view(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        for k in self.screen().view.needs() {
            if !self.requested.contains(&k.name) {
                self.requested.push(k.name);
                out.push(Effect::Load(k));
            }
        }
        out
    }

    pub fn push(&mut self, view: View) -> Vec<Effect> {
        self.stack.push(Screen::new(view));
        self.invalidate();
        self.refresh();
        self.effects_for_view()
    }

    /// Replace the whole stack (`:` commands jump, like k9s).
    pub fn jump(&mut self, view: View) -> Vec<Effect> {
        self.stack = vec![Screen::new(view)];
        self.invalidate();
        self.refresh();
        self.effects_for_view()
    }

    pub fn back(&mut self) -> bool {
        if self.stack.len() > 1 {
            self.stack.pop();
            self.invalidate();
            self.refresh();
            true
        } else {
            false
        }
    }

    fn move_to(&mut self, pos: usize) {
        let s = self.screen_mut();
        s.selected = pos;
        // Follow the row at the new position, not the old object.
        s.selected_key = None;
        self.clamp();
    }

    fn move_by(&mut self, delta: isize) {
        let pos = self.screen().selected.saturating_add_signed(delta);
        self.move_to(pos);
    }

    /// Where Enter goes from an object.
    pub fn drill_target(kind: &'static Kind, id: u64) -> View {
        if status::is_event_kind(kind) {
            return View::Describe { kind, id };
        }
        let fixed = match kind.name {
            "WorkloadDefinition" => Some("WorkloadInstance"),
            "WorkloadInstance" => Some("WorkloadResourceInstance"),
            "WorkloadResourceInstance" => return View::ObjectEvents { kind, id },
            _ => None,
        };
        let kinds: Vec<&'static Kind> = match fixed {
            Some(k) => vec![self::kind(k)],
            None => {
                let mut v: Vec<&'static Kind> = Vec::new();
                for (k, _) in kinds::references_to(kind.name) {
                    if !status::is_event_kind(k)
                        && k.name != "AttachedObjectReference"
                        && k.name != kind.name
                        && !v.iter().any(|x| x.name == k.name)
                    {
                        v.push(k);
                    }
                }
                // A definition's instances first.
                v.sort_by_key(|k| k.role != Role::Instance);
                v
            }
        };
        if kinds.is_empty() {
            View::ObjectEvents { kind, id }
        } else {
            View::Children {
                parent: kind,
                id,
                kinds,
            }
        }
    }

    // ---- keys -------------------------------------------------------------------------------

    pub fn on_key(&mut self, ev: KeyEvent) -> Vec<Effect> {
        if ev.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let key = Key::from_event(&ev);
        if key.is_ctrl_c() {
            self.should_quit = true;
            return vec![Effect::Quit];
        }
        let effects = match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::Filter { input } => self.on_filter_key(key, input),
            Mode::Command { input, cycle } => self.on_command_key(key, input, cycle),
            Mode::Confirm(c) => self.on_confirm_key(key, c),
            Mode::Normal => {
                self.message = None;
                match self.keymap.action(&key) {
                    Some(a) => self.on_action(a),
                    None => Vec::new(),
                }
            }
        };
        self.refresh();
        effects
    }

    pub fn on_action(&mut self, a: Action) -> Vec<Effect> {
        let page = self.page_height() as isize;
        match a {
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Top => self.move_to(0),
            Action::Bottom => self.move_to(usize::MAX),
            Action::Open => {
                if let Some(r) = self.selected_row() {
                    let v = App::drill_target(r.kind, r.id);
                    return self.push(v);
                }
            }
            Action::Back => {
                if !self.screen().filter.is_empty() {
                    self.screen_mut().filter.clear();
                } else {
                    self.back();
                }
            }
            Action::Quit => {
                if !self.back() {
                    self.should_quit = true;
                    return vec![Effect::Quit];
                }
            }
            Action::Filter => {
                if !matches!(self.screen().view, View::Describe { .. }) {
                    let input = self.screen().filter.clone();
                    self.mode = Mode::Filter { input };
                }
            }
            Action::Command => {
                self.mode = Mode::Command {
                    input: String::new(),
                    cycle: None,
                }
            }
            Action::Describe => {
                if let Some((kind, id)) = self.target()
                    && !matches!(self.screen().view, View::Describe { .. })
                {
                    return self.push(View::Describe { kind, id });
                }
            }
            Action::Events => {
                if let Some((kind, id)) = self.target()
                    && !status::is_event_kind(kind)
                {
                    return self.push(View::ObjectEvents { kind, id });
                }
            }
            Action::Delete => self.start_delete(),
            Action::Help => self.mode = Mode::Help,
        }
        Vec::new()
    }

    fn start_delete(&mut self) {
        let Some((kind, id)) = self.target() else {
            self.set_message(Level::Warn, "nothing selected to delete");
            return;
        };
        if self.readonly {
            self.set_message(
                Level::Warn,
                "read-only mode (--readonly): deleting is disabled",
            );
            return;
        }
        let name = self
            .store
            .get(kind, id)
            .map(display_name)
            .unwrap_or_else(|| id.to_string());
        self.mode = Mode::Confirm(Confirm {
            kind,
            id,
            name,
            input: String::new(),
            error: None,
        });
    }

    fn on_filter_key(&mut self, key: Key, mut input: String) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => {
                self.screen_mut().filter.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Enter => {
                self.screen_mut().filter = input;
                self.mode = Mode::Normal;
            }
            KeyCode::Backspace => {
                input.pop();
                self.mode = Mode::Filter { input };
            }
            KeyCode::Char(c) if !key.mods.contains(KeyModifiers::CONTROL) => {
                input.push(c);
                self.mode = Mode::Filter { input };
            }
            _ => {}
        }
        Vec::new()
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

    pub fn completions(prefix: &str) -> Vec<String> {
        let p = prefix.trim().to_ascii_lowercase();
        App::command_names()
            .into_iter()
            .filter(|c| c.starts_with(&p))
            .collect()
    }

    fn on_command_key(
        &mut self,
        key: Key,
        mut input: String,
        cycle: Option<(String, usize)>,
    ) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                return self.run_command(input.trim());
            }
            KeyCode::Backspace => {
                input.pop();
                self.mode = Mode::Command { input, cycle: None };
            }
            KeyCode::Tab | KeyCode::BackTab => {
                let prefix = cycle.as_ref().map_or(input.clone(), |(p, _)| p.clone());
                let matches = App::completions(&prefix);
                if matches.is_empty() {
                    self.mode = Mode::Command { input, cycle: None };
                } else if matches.len() == 1 {
                    self.mode = Mode::Command {
                        input: matches[0].clone(),
                        cycle: None,
                    };
                } else {
                    let lcp = common_prefix(&matches);
                    if cycle.is_none() && lcp.len() > input.len() {
                        self.mode = Mode::Command {
                            input: lcp,
                            cycle: None,
                        };
                    } else {
                        let n = matches.len();
                        let next = match (&cycle, key.code) {
                            (None, KeyCode::BackTab) => n - 1,
                            (None, _) => 0,
                            (Some((_, i)), KeyCode::BackTab) => (i + n - 1) % n,
                            (Some((_, i)), _) => (i + 1) % n,
                        };
                        self.mode = Mode::Command {
                            input: matches[next].clone(),
                            cycle: Some((prefix, next)),
                        };
                    }
                }
            }
            KeyCode::Char(c) if !key.mods.contains(KeyModifiers::CONTROL) => {
                input.push(c);
                self.mode = Mode::Command { input, cycle: None };
            }
            _ => {}
        }
        Vec::new()
    }

    /// `:workloads`, `:aws-accounts`, `:kri`, `:q`, `:help`.
    pub fn run_command(&mut self, cmd: &str) -> Vec<Effect> {
        let c = cmd.trim().trim_start_matches(':').to_ascii_lowercase();
        let view = match c.as_str() {
            "" => return Vec::new(),
            "q" | "q!" | "quit" | "exit" => {
                self.should_quit = true;
                return vec![Effect::Quit];
            }
            "help" | "?" => {
                self.mode = Mode::Help;
                return Vec::new();
            }
            "workloads" | "wl" => View::Workloads,
            "runtimes" | "runtime" => View::Kind(kind("KubernetesRuntimeInstance")),
            "control-planes" | "control-plane" | "cp" => View::Kind(kind("ControlPlaneInstance")),
            "events" | "event" | "ev" => View::Events,
            other => match kinds::lookup(other) {
                Some(k) => View::Kind(k),
                None => {
                    let start: String = other.chars().take(3).collect();
                    let hint = App::completions(&start);
                    let hint = if hint.is_empty() {
                        String::new()
                    } else {
                        format!(" (did you mean {}?)", hint[..hint.len().min(4)].join(", "))
                    };
                    self.set_message(
                        Level::Error,
                        format!("unknown view {other:?}{hint}; Tab completes"),
                    );
                    return Vec::new();
                }
            },
        };
        self.jump(view)
    }

    fn on_confirm_key(&mut self, key: Key, mut c: Confirm) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.set_message(Level::Info, "delete cancelled");
            }
            KeyCode::Enter => {
                if c.input == c.name {
                    self.mode = Mode::Normal;
                    self.set_message(
                        Level::Info,
                        format!("deleting {}/{}…", c.kind.singular(), c.name),
                    );
                    return vec![Effect::Delete {
                        kind: c.kind,
                        id: c.id,
                        name: c.name,
                    }];
                }
                c.error = Some(format!(
                    "{:?} does not match {:?}; nothing was deleted",
                    c.input, c.name
                ));
                self.mode = Mode::Confirm(c);
            }
            KeyCode::Backspace => {
                c.input.pop();
                c.error = None;
                self.mode = Mode::Confirm(c);
            }
            KeyCode::Char(ch) if !key.mods.contains(KeyModifiers::CONTROL) => {
                c.input.push(ch);
                c.error = None;
                self.mode = Mode::Confirm(c);
            }
            _ => {}
        }
        Vec::new()
    }

    /// The detail pane's content for the selected object.
    pub fn why(&self) -> Option<status::Why> {
        let (k, id) = self.target()?;
        if status::is_event_kind(k) {
            return None;
        }
        status::why(&self.store, k, id)
    }
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

fn row(
    kind: &'static Kind,
    id: u64,
    cells: Vec<String>,
    health: Health,
    time: Option<OffsetDateTime>,
) -> Row {
    let joined = cells.join(" ");
    let search = if joined.is_ascii() {
        joined.to_ascii_lowercase()
    } else {
        joined.to_lowercase()
    };
    Row {
        kind,
        id,
        cells,
        health,
        time,
        search,
    }
}

fn ref_name(store: &Store, target: &Kind, o: &Value, field: &str) -> String {
    match o.get(field).and_then(Value::as_u64) {
        Some(id) => store
            .entry(target, id)
            .map_or_else(|| id.to_string(), |t| t.name.clone()),
        None => String::new(),
    }
}

/// Definitions with their instances under them: NAME, KIND, RUNTIME, STATUS, AGE, WHY.
pub fn workload_rows(store: &Store) -> (Vec<Column>, Vec<Row>) {
    let wd = kind("WorkloadDefinition");
    let wi = kind("WorkloadInstance");
    let kri = kind("KubernetesRuntimeInstance");
    let columns = vec![
        Column::new("NAME", ColKind::Text),
        Column::new("KIND", ColKind::Text),
        Column::new("RUNTIME", ColKind::Text),
        Column::new("STATUS", ColKind::Status),
        Column::new("AGE", ColKind::Age),
        Column::new("WHY", ColKind::Why),
    ];
    let inst_row = |id: u64, o: &Obj, prefix: &str| {
        row(
            wi,
            id,
            vec![
                format!("{prefix}{}", o.name),
                "instance".into(),
                ref_name(store, kri, &o.value, "KubernetesRuntimeInstanceID"),
                o.status.clone(),
                String::new(),
                String::new(),
            ],
            o.health,
            o.created,
        )
    };
    let by_name = |a: &(u64, &Obj), b: &(u64, &Obj)| a.1.name.cmp(&b.1.name).then(a.0.cmp(&b.0));
    let mut defs: Vec<(u64, &Obj)> = store.entries(wd).collect();
    defs.sort_by(by_name);
    let mut rows = Vec::with_capacity(store.len(wd) + store.len(wi));
    for (id, o) in &defs {
        rows.push(row(
            wd,
            *id,
            vec![
                o.name.clone(),
                "definition".into(),
                String::new(),
                o.status.clone(),
                String::new(),
                String::new(),
            ],
            o.health,
            o.created,
        ));
        let mut insts: Vec<(u64, &Obj)> = store.referrer_entries(*id, wi).collect();
        insts.sort_by(by_name);
        for (iid, io) in insts {
            rows.push(inst_row(iid, io, "└ "));
        }
    }
    // Instances whose definition is not (yet) known.
    let placed = rows.len() - defs.len();
    if placed == store.len(wi) {
        return (columns, rows);
    }
    let mut orphans: Vec<(u64, &Obj)> = store
        .entries(wi)
        .filter(|(_, o)| {
            o.value
                .get("WorkloadDefinitionID")
                .and_then(Value::as_u64)
                .is_none_or(|d| store.get(wd, d).is_none())
        })
        .collect();
    orphans.sort_by(by_name);
    for (id, o) in orphans {
        rows.push(inst_row(id, o, ""));
    }
    (columns, rows)
}

/// Column title for a reference field: `KubernetesRuntimeInstanceID` → `KUBERNETES-RUNTIME-INSTANCE`.
pub fn ref_title(field: &str) -> String {
    let stem = field.trim_end_matches("ID");
    let mut out = String::new();
    for (i, c) in stem.char_indices() {
        if c.is_ascii_uppercase() && i > 0 && !stem[..i].ends_with(|p: char| p.is_ascii_uppercase())
        {
            out.push('-');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The kind of the parent object a children view is under (its rows all point at it, so the
/// column would only repeat the parent's name).
fn parent_kind(store: &Store, k: &Kind, parent: u64) -> Option<&'static str> {
    k.own_fields
        .iter()
        .filter_map(|f| f.references)
        .find(|t| kinds::by_name(t).is_some_and(|tk| store.get(tk, parent).is_some()))
}

/// At most two reference columns: the runtime and the definition first; never the parent's
/// kind or a self-reference.
fn ref_columns(k: &Kind, skip: Option<&str>) -> Vec<(&'static str, &'static str)> {
    let mut refs: Vec<(&'static str, &'static str)> = k
        .own_fields
        .iter()
        .filter_map(|f| f.references.map(|t| (f.name, t)))
        .filter(|(_, t)| Some(*t) != skip && *t != k.name)
        .collect();
    refs.sort_by_key(|(f, _)| match *f {
        "KubernetesRuntimeInstanceID" => 0,
        f if f.ends_with("DefinitionID") => 1,
        _ => 2,
    });
    refs.truncate(2);
    refs
}

fn short_ref_title(k: &Kind, field: &str) -> String {
    match field {
        "KubernetesRuntimeInstanceID" => "RUNTIME".into(),
        f if f.ends_with("DefinitionID") && k.role == Role::Instance => "DEFINITION".into(),
        f => ref_title(f),
    }
}

fn has_status(k: &Kind) -> bool {
    k.reconciled || k.role == Role::Instance || k.name == "WorkloadResourceInstance"
}

/// Objects of one or more kinds, optionally only those pointing at `parent`.
pub fn object_rows(
    store: &Store,
    kinds_: &[&'static Kind],
    parent: Option<u64>,
) -> (Vec<Column>, Vec<Row>) {
    let single = kinds_.len() == 1;
    let mut columns = vec![Column::new("NAME", ColKind::Text)];
    let refs: Vec<(&'static str, &'static str)> = if single {
        ref_columns(
            kinds_[0],
            parent.and_then(|p| parent_kind(store, kinds_[0], p)),
        )
    } else {
        columns.push(Column::new("KIND", ColKind::Text));
        Vec::new()
    };
    for (f, _) in &refs {
        columns.push(Column::new(&short_ref_title(kinds_[0], f), ColKind::Text));
    }
    let with_status = kinds_.iter().any(|k| has_status(k));
    if with_status {
        columns.push(Column::new("STATUS", ColKind::Status));
    }
    columns.push(Column::new("AGE", ColKind::Age));
    if with_status {
        columns.push(Column::new("WHY", ColKind::Why));
    }
    let ref_kinds: Vec<(&str, Option<&'static Kind>)> =
        refs.iter().map(|(f, t)| (*f, kinds::by_name(t))).collect();
    let mut rows = Vec::new();
    for k in kinds_ {
        let objs: Vec<(u64, &Obj)> = match parent {
            Some(p) => store.referrer_entries(p, k).collect(),
            None => store.entries(k).collect(),
        };
        let start = rows.len();
        for (id, o) in objs {
            let mut cells = vec![o.name.clone()];
            if !single {
                cells.push(k.singular().to_string());
            }
            for (f, t) in &ref_kinds {
                cells.push(t.map_or_else(String::new, |t| ref_name(store, t, &o.value, f)));
            }
            if with_status {
                cells.push(o.status.clone());
            }
            cells.push(String::new());
            if with_status {
                cells.push(String::new());
            }
            rows.push(row(k, id, cells, o.health, o.created));
        }
        if k.named {
            rows[start..].sort_by(|a, b| a.cells[0].cmp(&b.cells[0]).then(a.id.cmp(&b.id)));
        }
    }
    (columns, rows)
}

/// TYPE, REASON, OBJECT, AGE, MESSAGE; newest first.
pub fn event_rows(store: &Store, mut lines: Vec<EventLine>) -> (Vec<Column>, Vec<Row>) {
    let _ = store;
    status::sort_events(&mut lines);
    let columns = vec![
        Column::new("TYPE", ColKind::EventType),
        Column::new("REASON", ColKind::Text),
        Column::new("OBJECT", ColKind::Text),
        Column::new("AGE", ColKind::Age),
        Column::new("MESSAGE", ColKind::Text),
    ];
    let rows = lines
        .into_iter()
        .map(|e| {
            let h = if e.is_warning() {
                Health::Failed
            } else {
                Health::None
            };
            let ty = if e.is_warning() {
                format!("! {}", e.ty)
            } else {
                e.ty.clone()
            };
            row(
                e.kind,
                e.id,
                vec![ty, e.reason, e.object, String::new(), e.message],
                h,
                e.time,
            )
        })
        .collect();
    (columns, rows)
}

/// The object as YAML. Secrets stay as the server sent them (redacted); any secret field that
/// somehow arrives in clear is masked here too.
pub fn describe_text(store: &Store, kind: &'static Kind, id: u64) -> Vec<String> {
    let Some(o) = store.get(kind, id) else {
        return vec![format!("{}/{id} no longer exists", kind.singular())];
    };
    let mut o = o.clone();
    if let Value::Object(m) = &mut o {
        for f in kind.secret_fields() {
            if let Some(v) = m.get_mut(f.name)
                && !v.is_null()
                && v.as_str() != Some(REDACTED)
            {
                *v = Value::String(REDACTED.into());
            }
        }
    }
    let mut lines = vec![format!("# {} {}", kind.name, display_name(&o))];
    match serde_yaml::to_string(&o) {
        Ok(y) => lines.extend(y.lines().map(str::to_string)),
        Err(e) => lines.push(format!("# cannot render as YAML: {e}")),
    }
    let _ = FieldType::Id;
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }
    fn ch(app: &mut App, c: char) -> Vec<Effect> {
        press(app, KeyCode::Char(c))
    }
    fn typed(app: &mut App, s: &str) {
        for c in s.chars() {
            ch(app, c);
        }
    }

    fn app_with(n: usize) -> App {
        let mut app = App::new("test", "https://127.0.0.1:1", false, Keymap::default());
        for k in core_kinds() {
            app.store.replace(k, vec![]);
        }
        let defs = (0..n)
            .map(|i| json!({"ID": 1000 + i, "Name": format!("app-{i:02}"), "CreatedAt": "2026-01-01T00:00:00Z", "Reconciled": true}))
            .collect();
        app.store.replace(kind("WorkloadDefinition"), defs);
        app.refresh();
        app
    }

    #[test]
    fn moves_and_clamps_at_both_ends() {
        let mut app = app_with(5);
        ch(&mut app, 'k');
        assert_eq!(app.screen().selected, 0);
        for _ in 0..10 {
            ch(&mut app, 'j');
        }
        assert_eq!(app.screen().selected, 4);
        press(&mut app, KeyCode::Home);
        assert_eq!(app.screen().selected, 0);
        ch(&mut app, 'G');
        assert_eq!(app.screen().selected, 4);
        press(&mut app, KeyCode::Up);
        assert_eq!(app.selected_row().unwrap().cells[0], "app-03");
    }

    #[test]
    fn shrinking_the_list_under_the_cursor_clamps_the_selection() {
        let mut app = app_with(10);
        ch(&mut app, 'G');
        assert_eq!(app.screen().selected, 9);
        // The data shrinks to 3 objects (the selected one is gone).
        let defs = (0..3)
            .map(|i| json!({"ID": 1000 + i, "Name": format!("app-{i:02}")}))
            .collect();
        app.store.replace(kind("WorkloadDefinition"), defs);
        app.refresh();
        assert_eq!(app.screen().selected, 2);
        assert_eq!(app.selected_row().unwrap().cells[0], "app-02");
        // Everything goes: no row, no panic, actions are harmless.
        app.store.replace(kind("WorkloadDefinition"), vec![]);
        app.refresh();
        assert_eq!(app.screen().selected, 0);
        assert!(app.selected_row().is_none());
        for c in ['j', 'k', 'd', 'e', 'G'] {
            ch(&mut app, c);
        }
        press(&mut app, KeyCode::Enter);
        app.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn the_cursor_follows_its_object_when_rows_move() {
        let mut app = app_with(5);
        ch(&mut app, 'j');
        ch(&mut app, 'j');
        assert_eq!(app.selected_row().unwrap().cells[0], "app-02");
        // A new object sorts before it.
        let mut defs: Vec<Value> = (0..5)
            .map(|i| json!({"ID": 1000 + i, "Name": format!("app-{i:02}")}))
            .collect();
        defs.push(json!({"ID": 5000, "Name": "aaa"}));
        app.store.replace(kind("WorkloadDefinition"), defs);
        app.refresh();
        assert_eq!(app.selected_row().unwrap().cells[0], "app-02");
        assert_eq!(app.screen().selected, 3);
    }

    #[test]
    fn resizing_clamps_the_scroll_offset() {
        let mut app = app_with(60);
        app.resize(120, 40);
        ch(&mut app, 'G');
        let s = app.screen();
        assert!(s.offset <= s.selected && s.selected < s.offset + app.page_height());
        app.resize(20, 5);
        let s = app.screen().clone();
        assert_eq!(s.selected, 59);
        assert!(s.offset <= 59 && 59 < s.offset + app.page_height());
        app.resize(200, 80);
        let s = app.screen();
        assert!(s.offset + app.page_height() >= 60 || s.offset == 0);
        assert!(s.offset <= 60usize.saturating_sub(app.page_height()));
    }

    #[test]
    fn filter_enter_and_escape() {
        let mut app = app_with(12);
        ch(&mut app, '/');
        typed(&mut app, "app-1");
        assert!(matches!(app.mode, Mode::Filter { .. }));
        assert_eq!(app.row_count(), 2, "live filtering");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.screen().filter, "app-1");
        assert_eq!(app.row_count(), 2);
        // Esc clears the filter before going back.
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.row_count(), 12);
        ch(&mut app, '/');
        typed(&mut app, "zzz");
        assert_eq!(app.row_count(), 0);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.row_count(), 12);
        assert!(app.screen().filter.is_empty());
    }

    #[test]
    fn enter_drills_down_and_esc_goes_back() {
        let mut app = app_with(1);
        let wi = kind("WorkloadInstance");
        app.store.replace(
            wi,
            vec![json!({"ID": 2000, "Name": "inst", "WorkloadDefinitionID": 1000})],
        );
        app.store.replace(
            kind("WorkloadResourceInstance"),
            vec![json!({"ID": 3000, "WorkloadInstanceID": 2000, "JSONDefinition": {"kind": "Deployment", "metadata": {"name": "web"}}})],
        );
        app.refresh();
        assert_eq!(app.row_count(), 2);
        press(&mut app, KeyCode::Enter);
        assert!(matches!(app.screen().view, View::Children { .. }));
        assert_eq!(app.rows()[0].cells[0], "inst");
        press(&mut app, KeyCode::Enter);
        assert_eq!(
            app.screen().view.title(&app.store),
            "resources of workload-instance/inst"
        );
        assert_eq!(app.rows()[0].cells[0], "Deployment/web");
        press(&mut app, KeyCode::Enter);
        assert!(matches!(app.screen().view, View::ObjectEvents { .. }));
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen().view, View::Workloads);
        press(&mut app, KeyCode::Esc);
        assert!(!app.should_quit, "esc at the top does not quit");
        assert_eq!(ch(&mut app, 'q'), vec![Effect::Quit]);
    }

    #[test]
    fn delete_needs_the_typed_name_and_readonly_refuses() {
        let mut app = app_with(2);
        let ctrl_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
        assert!(app.on_key(ctrl_d).is_empty());
        assert!(matches!(app.mode, Mode::Confirm(_)));
        typed(&mut app, "app-0");
        assert!(
            press(&mut app, KeyCode::Enter).is_empty(),
            "app-0 is not app-00"
        );
        let Mode::Confirm(c) = &app.mode else {
            panic!()
        };
        assert!(c.error.as_deref().unwrap().contains("does not match"));
        typed(&mut app, "0");
        assert_eq!(
            press(&mut app, KeyCode::Enter),
            vec![Effect::Delete {
                kind: kind("WorkloadDefinition"),
                id: 1000,
                name: "app-00".into()
            }]
        );
        assert_eq!(app.mode, Mode::Normal);
        // Esc cancels.
        app.on_key(ctrl_d);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.mode, Mode::Normal);

        let mut ro = app_with(2);
        ro.readonly = true;
        assert!(ro.on_key(ctrl_d).is_empty());
        assert_eq!(ro.mode, Mode::Normal);
        assert!(ro.message.as_ref().unwrap().text.contains("read-only"));
    }

    #[test]
    fn ctrl_c_quits_from_every_mode() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for setup in [&[][..], &['/'][..], &[':'][..], &['?'][..]] {
            let mut app = app_with(2);
            for c in setup {
                ch(&mut app, *c);
            }
            assert_eq!(app.on_key(ctrl_c), vec![Effect::Quit]);
            assert!(app.should_quit);
        }
        let mut app = app_with(2);
        app.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
        assert_eq!(app.on_key(ctrl_c), vec![Effect::Quit]);
    }

    #[test]
    fn command_mode_switches_views_and_completes() {
        let mut app = app_with(2);
        ch(&mut app, ':');
        typed(&mut app, "aws-acc");
        press(&mut app, KeyCode::Tab);
        assert_eq!(
            app.mode,
            Mode::Command {
                input: "aws-account".into(),
                cycle: None
            }
        );
        press(&mut app, KeyCode::Tab);
        let Mode::Command { input, .. } = &app.mode else {
            panic!()
        };
        assert_eq!(input, "aws-account");
        press(&mut app, KeyCode::Tab);
        let Mode::Command { input, .. } = &app.mode else {
            panic!()
        };
        assert_eq!(input, "aws-accounts");
        let fx = press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen().view, View::Kind(kind("AwsAccount")));
        assert_eq!(fx, vec![Effect::Load(kind("AwsAccount"))]);
        assert!(app.loading());
        // Aliases from the registry, and the built-in names.
        // Runtimes are listed at start; their definitions (for names) on first use.
        assert_eq!(
            app.run_command("kri"),
            vec![Effect::Load(kind("KubernetesRuntimeDefinition"))]
        );
        assert_eq!(
            app.screen().view,
            View::Kind(kind("KubernetesRuntimeInstance"))
        );
        app.run_command("workload-instances");
        assert_eq!(app.screen().view, View::Kind(kind("WorkloadInstance")));
        app.run_command("workloads");
        assert_eq!(app.screen().view, View::Workloads);
        app.run_command("nonsense");
        assert!(app.message.as_ref().unwrap().text.contains("unknown view"));
        assert_eq!(app.run_command("q"), vec![Effect::Quit]);
    }

    #[test]
    fn describe_masks_secret_fields() {
        let mut s = Store::new();
        let aws = kind("AwsAccount");
        s.replace(
            aws,
            vec![json!({"ID": 1, "Name": "a", "AccountID": "1", "SecretAccessKey": "wJalrXUtnFEMI", "AccessKeyID": REDACTED})],
        );
        let text = describe_text(&s, aws, 1).join("\n");
        assert!(!text.contains("wJalrXUtnFEMI"));
        assert!(
            text.contains("SecretAccessKey: '*** redacted ***'"),
            "{text}"
        );
    }
}
