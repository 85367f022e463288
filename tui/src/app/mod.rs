//! The dashboard's state, pure and testable: the object cache, a stack of views, the selection,
//! the filter, the input modes. Keys and network messages go in, [`Effect`]s come out; nothing
//! here does I/O or looks at the clock.
//!
//! - [`view`]: the views, where Enter goes, the screens of the view stack;
//! - [`input`]: the input modes and what a key does in each, the `:` commands;
//! - [`rows`]: the columns and rows of every view.
//!
//! This file ties them together: the [`App`] keeps the rows of the current view up to date,
//! keeps the cursor on its object and inside the window, and carries out keys and commands.

pub mod input;
pub mod rows;
pub mod view;

pub use input::{Command, Confirm, Mode, completions};
pub use rows::{ColKind, Column, Row};
pub use view::{Screen, View, core_kinds};

use crate::keymap::{Action, Key, Keymap};
use crate::layout;
use crate::net::NetMsg;
use crate::store::Store;
use crossterm::event::{KeyEvent, KeyEventKind};
use input::Step;
use rows::Table;
use threeport_api::kinds::Kind;
use threeport_api::status::{self, Why};

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
            (Effect::Load(a), Effect::Load(b)) => std::ptr::eq(*a, *b),
            (
                Effect::Delete { kind, id, name },
                Effect::Delete {
                    kind: k2,
                    id: i2,
                    name: n2,
                },
            ) => std::ptr::eq(*kind, *k2) && id == i2 && name == n2,
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
    requested: Vec<&'static Kind>,
    /// The current view's columns and rows (or text), as last built.
    table: Table,
    /// Indexes into `table.rows` of the rows the filter keeps.
    filtered: Vec<usize>,
    /// (store version, stack depth) the rows were built for.
    built_for: Option<(u64, usize)>,
    build_gen: u64,
    /// (build generation, filter) the filtered list is for.
    filtered_for: Option<(u64, String)>,
}

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
            requested: core_kinds(),
            table: Table::default(),
            filtered: Vec::new(),
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
        &self.table.columns
    }

    /// The rows of the current view, filtered.
    pub fn rows(&self) -> Vec<&Row> {
        self.filtered.iter().map(|i| &self.table.rows[*i]).collect()
    }

    pub fn row_count(&self) -> usize {
        self.filtered.len()
    }

    pub fn row(&self, i: usize) -> Option<&Row> {
        self.filtered.get(i).map(|j| &self.table.rows[*j])
    }

    pub fn total_rows(&self) -> usize {
        self.table.rows.len()
    }

    /// Describe view text.
    pub fn text(&self) -> &[String] {
        &self.table.text
    }

    fn is_text_view(&self) -> bool {
        matches!(self.screen().view, View::Describe { .. })
    }

    pub fn selected_row(&self) -> Option<&Row> {
        if self.is_text_view() {
            return None;
        }
        self.row(self.screen().selected)
    }

    /// The object the actions (describe, events, delete) apply to.
    pub fn target(&self) -> Option<(&'static Kind, u64)> {
        match self.screen().view {
            View::Describe { kind, id } => Some((kind, id)),
            _ => self.selected_row().map(|r| (r.kind, r.id)),
        }
    }

    /// The why pane's content for the selected object (events have their own pane).
    pub fn why(&self) -> Option<Why> {
        let (k, id) = self.target()?;
        if k.is_event() {
            return None;
        }
        status::why(&self.store, k, id)
    }

    /// Whether the view's data has arrived.
    pub fn loading(&self) -> bool {
        self.screen()
            .view
            .needs()
            .first()
            .is_some_and(|k| !self.store.is_loaded(k))
    }

    /// Rows per page in the current window.
    pub fn page_height(&self) -> usize {
        layout::list_capacity(self.size.0, self.size.1).max(1)
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
                self.requested.retain(|k| !std::ptr::eq(*k, kind));
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
            let view = &self.stack.last().expect("the stack is never empty").view;
            let patched = match self.built_for {
                Some((v, depth)) if depth == self.stack.len() => self
                    .store
                    .changes_since(v)
                    .is_some_and(|changes| self.table.patch(&self.store, view, changes)),
                _ => false,
            };
            if !patched {
                self.table = rows::build(&self.store, view);
                self.build_gen += 1;
            } else if !self.current_filter().is_empty() {
                // A patched row may now match the filter, or no longer.
                self.build_gen += 1;
            }
            self.built_for = Some(key);
        }
        self.apply_filter();
        self.clamp();
    }

    fn invalidate(&mut self) {
        self.built_for = None;
    }

    fn current_filter(&self) -> &str {
        match &self.mode {
            Mode::Filter { input } => input,
            _ => &self.screen().filter,
        }
    }

    fn apply_filter(&mut self) {
        let f = self.current_filter().to_lowercase();
        let key = (self.build_gen, f);
        if self.filtered_for.as_ref() == Some(&key) {
            return;
        }
        let f = key.1.as_str();
        let rows = &self.table.rows;
        self.filtered = if f.is_empty() {
            (0..rows.len()).collect()
        } else {
            (0..rows.len()).filter(|i| rows[*i].matches(f)).collect()
        };
        self.filtered_for = Some(key);
    }

    /// Keep the cursor on the same object when it is still there, else at the same position,
    /// and always inside the list and the window.
    pub fn clamp(&mut self) {
        let page = self.page_height();
        if self.is_text_view() {
            // The selection is the first visible line.
            let len = self.table.text.len();
            let s = self.screen_mut();
            s.selected = s.selected.min(len.saturating_sub(page));
            s.offset = s.selected;
            return;
        }
        let len = self.row_count();
        let key_pos = self.screen().selected_key.and_then(|(k, id)| {
            self.filtered
                .iter()
                .position(|i| self.table.rows[*i].is(k, id))
        });
        let sel = key_pos
            .unwrap_or(self.screen().selected)
            .min(len.saturating_sub(1));
        let key = self.row(sel).map(|r| (r.kind, r.id));
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

    /// Ask the network for the kinds the view needs that nobody asked for yet.
    fn effects_for_view(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        for k in self.screen().view.needs() {
            if !self.requested.iter().any(|r| std::ptr::eq(*r, k)) {
                self.requested.push(k);
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

    // ---- keys and commands ------------------------------------------------------------------

    pub fn on_key(&mut self, ev: KeyEvent) -> Vec<Effect> {
        if ev.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let key = Key::from_event(&ev);
        if key.is_ctrl_c() {
            self.should_quit = true;
            return vec![Effect::Quit];
        }
        let effects = match &self.mode {
            Mode::Normal => {
                self.message = None;
                match self.keymap.action(&key) {
                    Some(a) => self.on_action(a),
                    None => Vec::new(),
                }
            }
            mode => {
                let step = input::step(mode, &key);
                self.on_step(step)
            }
        };
        self.refresh();
        effects
    }

    /// Carry out what a key in a text-entry mode asked for.
    fn on_step(&mut self, step: Step) -> Vec<Effect> {
        match step {
            Step::Edit(mode) => self.mode = mode,
            Step::Ignore => {}
            Step::Close => self.mode = Mode::Normal,
            Step::Filter(keep) => {
                self.screen_mut().filter = keep.unwrap_or_default();
                self.mode = Mode::Normal;
            }
            Step::Run(cmd) => {
                self.mode = Mode::Normal;
                return self.run_command(&cmd);
            }
            Step::CancelDelete => {
                self.mode = Mode::Normal;
                self.set_message(Level::Info, "delete cancelled");
            }
            Step::Delete(c) => {
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
        }
        Vec::new()
    }

    /// A keymap action in normal mode.
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
                    let v = View::open(r.kind, r.id);
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
                if !self.is_text_view() {
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
                    && !self.is_text_view()
                {
                    return self.push(View::Describe { kind, id });
                }
            }
            Action::Events => {
                if let Some((kind, id)) = self.target()
                    && !kind.is_event()
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
            .name_of(kind, id)
            .unwrap_or_else(|| id.to_string());
        self.mode = Mode::Confirm(Confirm {
            kind,
            id,
            name,
            input: String::new(),
            error: None,
        });
    }

    /// `:workloads`, `:aws-accounts`, `:kri`, `:q`, `:help`.
    pub fn run_command(&mut self, cmd: &str) -> Vec<Effect> {
        match input::parse_command(cmd) {
            Ok(None) => Vec::new(),
            Ok(Some(Command::Quit)) => {
                self.should_quit = true;
                vec![Effect::Quit]
            }
            Ok(Some(Command::Help)) => {
                self.mode = Mode::Help;
                Vec::new()
            }
            Ok(Some(Command::View(v))) => self.jump(v),
            Err(e) => {
                self.set_message(Level::Error, e);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};
    use serde_json::{Value, json};
    use threeport_api::kinds;
    use threeport_api::status::Health;

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
        app.store.replace(kinds::WORKLOAD_DEFINITION, defs);
        app.refresh();
        app
    }

    /// What a status event leaves on screen is exactly what a rebuild gives, but only that
    /// object's row is touched; a rename (which moves rows) rebuilds.
    #[test]
    fn watch_events_patch_rows_in_place_and_match_a_rebuild() {
        let mut app = app_with(0);
        let (wd, wi) = (kinds::WORKLOAD_DEFINITION, kinds::WORKLOAD_INSTANCE);
        let defs = (0..20)
            .map(|i| json!({"ID": 1000 + i, "Name": format!("app-{i:02}"), "CreatedAt": "2026-01-01T00:00:00Z", "Reconciled": true}))
            .collect();
        app.store.replace(wd, defs);
        let insts = (0..40)
            .map(|i| json!({"ID": 2000 + i, "Name": format!("inst-{i:02}"), "WorkloadDefinitionID": 1000 + i % 20,
                            "CreatedAt": "2026-01-01T00:00:00Z", "Status": "Healthy", "ResourceVersion": 1}))
            .collect();
        app.store.replace(wi, insts);
        app.refresh();
        let event = |id: u64, fields: Value| {
            let mut o = json!({"ID": id, "Name": format!("inst-{:02}", id - 2000), "WorkloadDefinitionID": 1000 + (id - 2000) % 20,
                               "CreatedAt": "2026-01-01T00:00:00Z"});
            o.as_object_mut()
                .unwrap()
                .extend(fields.as_object().unwrap().clone());
            NetMsg::Event(threeport_api::WatchEvent {
                operation: "updated".into(),
                kind: "WorkloadInstance".into(),
                object: o,
            })
        };
        let same_as_rebuild = |app: &App| {
            let fresh = rows::build(&app.store, &app.screen().view);
            assert_eq!(app.table.rows, fresh.rows);
            // A patch widens a column for a longer status but never narrows one (no jitter
            // as statuses flip); the next rebuild fits it again.
            assert_eq!(app.table.columns.len(), fresh.columns.len());
            for (a, b) in app.table.columns.iter().zip(&fresh.columns) {
                assert_eq!((&a.title, a.kind), (&b.title, b.kind));
                assert!(a.width >= b.width, "{a:?} narrower than {b:?}");
            }
        };
        for (round, view) in ["workloads", "workload-instances"].into_iter().enumerate() {
            let rv = |n: u64| json!(10 * round as u64 + n);
            app.run_command(view);
            app.refresh();
            let gen_before = app.build_gen;
            app.on_net(event(2007, json!({"Status": "Degraded", "StatusReason": "1 of 2 resources not ready", "ResourceVersion": rv(2)})));
            // An event of a kind the view does not show changes nothing on it.
            app.on_net(NetMsg::Event(threeport_api::WatchEvent {
                operation: "created".into(),
                kind: "Event".into(),
                object: json!({"ID": 9000, "ObjectKind": "WorkloadInstance", "ObjectID": 2007, "Type": "Warning"}),
            }));
            app.refresh();
            assert_eq!(app.build_gen, gen_before, "{view}: patched, not rebuilt");
            let row = app.table.rows.iter().find(|r| r.id == 2007).unwrap();
            assert_eq!(row.health, Health::Failed, "{view}: {row:?}");
            same_as_rebuild(&app);
            // The filter sees the patched text.
            app.screen_mut().filter = "degraded".into();
            app.refresh();
            assert_eq!(app.row_count(), 1, "{view}");
            app.screen_mut().filter.clear();
            app.on_net(event(
                2007,
                json!({"Status": "Healthy", "ResourceVersion": rv(3)}),
            ));
            app.refresh();
            same_as_rebuild(&app);
            // A rename moves the row: rebuilt.
            let gen_before = app.build_gen;
            app.on_net(NetMsg::Event(threeport_api::WatchEvent {
                operation: "updated".into(),
                kind: "WorkloadInstance".into(),
                object: json!({"ID": 2003, "Name": format!("zz-renamed-{round}"), "WorkloadDefinitionID": 1003, "CreatedAt": "2026-01-01T00:00:00Z",
                               "Status": "Healthy", "ResourceVersion": rv(5)}),
            }));
            app.refresh();
            assert!(app.build_gen > gen_before, "{view}: rebuilt");
            same_as_rebuild(&app);
        }
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
        app.store.replace(kinds::WORKLOAD_DEFINITION, defs);
        app.refresh();
        assert_eq!(app.screen().selected, 2);
        assert_eq!(app.selected_row().unwrap().cells[0], "app-02");
        // Everything goes: no row, no panic, actions are harmless.
        app.store.replace(kinds::WORKLOAD_DEFINITION, vec![]);
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
        app.store.replace(kinds::WORKLOAD_DEFINITION, defs);
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
        app.store.replace(
            kinds::WORKLOAD_INSTANCE,
            vec![json!({"ID": 2000, "Name": "inst", "WorkloadDefinitionID": 1000})],
        );
        app.store.replace(
            kinds::WORKLOAD_RESOURCE_INSTANCE,
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
            "resources and dependencies of workload-instance/inst"
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
                kind: kinds::WORKLOAD_DEFINITION,
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
        assert_eq!(app.screen().view, View::Kind(kinds::AWS_ACCOUNT));
        assert_eq!(fx, vec![Effect::Load(kinds::AWS_ACCOUNT)]);
        assert!(app.loading());
        // Aliases from the registry, and the built-in names.
        // Runtimes are listed at start; their definitions (for names) on first use.
        assert_eq!(
            app.run_command("kri"),
            vec![Effect::Load(kinds::KUBERNETES_RUNTIME_DEFINITION)]
        );
        assert_eq!(
            app.screen().view,
            View::Kind(kinds::KUBERNETES_RUNTIME_INSTANCE)
        );
        app.run_command("workload-instances");
        assert_eq!(app.screen().view, View::Kind(kinds::WORKLOAD_INSTANCE));
        app.run_command("workloads");
        assert_eq!(app.screen().view, View::Workloads);
        app.run_command("nonsense");
        assert!(app.message.as_ref().unwrap().text.contains("unknown view"));
        assert_eq!(app.run_command("q"), vec![Effect::Quit]);
    }

    #[test]
    fn the_why_pane_explains_a_pending_object() {
        let mut app = app_with(0);
        let reason = "no controller for WorkloadInstance is running in this control plane";
        app.store.replace(
            kinds::WORKLOAD_INSTANCE,
            vec![
                json!({"ID": 2000, "Name": "queue", "Status": "Pending", "StatusReason": reason,
                        "Reconciled": false}),
            ],
        );
        app.refresh();
        let row = app.selected_row().unwrap();
        assert_eq!(row.cells[3], "○ Pending");
        let why = app.why().unwrap();
        assert_eq!(why.reason.as_deref(), Some(reason));
        assert_eq!(why.cause.unwrap().text, reason);
    }
}
