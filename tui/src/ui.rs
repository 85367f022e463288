//! Rendering only: `draw` turns an [`App`] and the current time into a frame. No I/O, no state
//! changes, so every view can be snapshot-tested with ratatui's `TestBackend`.

use crate::app::{self, App, ColKind, Conn, Level, Mode, View};
use crate::keymap::Action;
use crate::layout::{FOOTER, HEADER, detail_height, list_height};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, TableState};
use threeport_api::status::{self, Health};
use time::OffsetDateTime;

/// Styles; with `NO_COLOR` only modifiers (bold, reverse) are used, never a colour.
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn health(&self, h: Health) -> Style {
        match h {
            Health::Ok => self.fg(Color::Green),
            Health::Progress => self.fg(Color::Yellow),
            // Waiting on something that is not there (a controller): worth a look, not a failure.
            Health::Pending => self.fg(Color::LightBlue).add_modifier(Modifier::BOLD),
            Health::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Health::Deleting => self.fg(Color::Magenta),
            Health::None => Style::default(),
        }
    }
    fn selected(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::REVERSED);
        if self.color { s.fg(Color::Cyan) } else { s }
    }
    fn brand(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED);
        if self.color { s.fg(Color::Blue) } else { s }
    }
    fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    fn banner(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color {
            s.fg(Color::White).bg(Color::Red)
        } else {
            s.add_modifier(Modifier::REVERSED)
        }
    }
    fn level(&self, l: Level) -> Style {
        match l {
            Level::Info => self.fg(Color::Green),
            Level::Warn => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Level::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }
    fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
}

pub fn draw(f: &mut Frame<'_>, app: &App, now: OffsetDateTime) {
    let theme = Theme {
        color: !app.no_color,
    };
    let area = f.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let [header, list, detail, footer] = Layout::vertical([
        Constraint::Length(HEADER.min(area.height)),
        Constraint::Length(list_height(area.height)),
        Constraint::Length(detail_height(area.height)),
        Constraint::Length(FOOTER),
    ])
    .areas(area);
    draw_header(f, app, &theme, header);
    match app.screen().view {
        View::Describe { .. } => draw_text(f, app, &theme, list),
        _ => draw_table(f, app, &theme, list, now),
    }
    if detail.height > 0 {
        draw_why(f, app, &theme, detail, now);
    }
    draw_footer(f, app, &theme, footer);
    match &app.mode {
        Mode::Confirm(_) => draw_confirm(f, app, &theme, area),
        Mode::Help => draw_help(f, app, &theme, area),
        _ => {}
    }
}

fn draw_header(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect) {
    let conn = match &app.conn {
        Conn::Connecting => Span::styled("… connecting", t.fg(Color::Yellow)),
        Conn::Connected => Span::styled("● connected", t.fg(Color::Green)),
        Conn::Disconnected { .. } => Span::styled(
            "✗ disconnected — retrying",
            t.fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    };
    let mut first = vec![
        Span::styled(" Threeport ", t.brand()),
        Span::raw(" control plane: "),
        Span::styled(
            app.control_plane.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw("  API: "),
        Span::raw(app.api_url.clone()),
        Span::raw("  "),
        conn,
    ];
    if app.readonly {
        first.push(Span::raw("  "));
        first.push(Span::styled(
            "[read-only]",
            t.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    let second = match &app.conn {
        Conn::Disconnected {
            error,
            attempt,
            retry_in_ms,
        } => Line::styled(
            format!(
                " disconnected — retrying (attempt {attempt}, next in {:.1}s); showing the last data received · {error}",
                *retry_in_ms as f64 / 1000.0
            ),
            t.banner(),
        ),
        _ => {
            let crumbs: Vec<String> = app.stack.iter().map(|s| s.view.crumb(&app.store)).collect();
            Line::from(vec![
                Span::styled(" ", t.dim()),
                Span::styled(crumbs.join(" › "), t.dim()),
            ])
        }
    };
    f.render_widget(Paragraph::new(vec![Line::from(first), second]), area);
}

fn list_title(app: &App) -> String {
    let s = app.screen();
    let mut title = format!(" {} ", s.view.title(&app.store));
    let filter = match &app.mode {
        Mode::Filter { input } => input.as_str(),
        _ => s.filter.as_str(),
    };
    if filter.is_empty() {
        title.push_str(&format!("({}) ", app.row_count()));
    } else {
        title.push_str(&format!(
            "({}/{}) /{filter} ",
            app.row_count(),
            app.total_rows()
        ));
    }
    title
}

fn empty_text(app: &App) -> String {
    if app.loading() {
        return "loading…".into();
    }
    let s = app.screen();
    if app.total_rows() > 0 {
        return "no rows match the filter (esc clears it)".into();
    }
    match &s.view {
        View::Workloads => "no workloads yet: tptctl apply -f FILE creates some".into(),
        View::Events | View::ObjectEvents { .. } => "no events".into(),
        View::Children { .. } => "nothing here yet".into(),
        View::Kind(k) => format!("no {}", k.plural),
        View::Describe { .. } => String::new(),
    }
}

fn draw_table(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect, now: OffsetDateTime) {
    let block = Block::bordered().title(Span::styled(list_title(app), t.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let cols = app.columns();
    let cap = inner.height.saturating_sub(1) as usize;
    let n = app.row_count();
    if n == 0 {
        let hint = Paragraph::new(Line::styled(format!(" {}", empty_text(app)), t.dim()));
        let [_, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        f.render_widget(hint, body);
    }
    let s = app.screen();
    let sel = s.selected.min(n.saturating_sub(1));
    // Defensive: the window may have changed since the app last clamped.
    let offset = if cap == 0 {
        sel
    } else {
        s.offset.min(sel).max((sel + 1).saturating_sub(cap))
    };
    let end = (offset + cap).min(n);
    let widths: Vec<Constraint> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i + 1 == cols.len() {
                Constraint::Fill(1)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect();
    let header =
        Row::new(cols.iter().map(|c| {
            Cell::from(c.title.clone()).style(Style::default().add_modifier(Modifier::BOLD))
        }));
    let mut rows = Vec::with_capacity(end.saturating_sub(offset));
    for i in offset..end {
        let Some(r) = app.row(i) else { break };
        let cells: Vec<Cell<'_>> = cols
            .iter()
            .enumerate()
            .map(|(ci, c)| match c.kind {
                ColKind::Text => Cell::from(r.cells.get(ci).cloned().unwrap_or_default()),
                ColKind::Status | ColKind::EventType => {
                    Cell::from(r.cells.get(ci).cloned().unwrap_or_default())
                        .style(t.health(r.health))
                }
                ColKind::Age => Cell::from(status::age(r.time, now)),
                ColKind::Why => match r.health {
                    Health::Deleting => Cell::from(""),
                    h => Cell::from(
                        status::deepest_cause(&app.store, r.kind, r.id)
                            .map(|c| c.one_line())
                            .unwrap_or_default(),
                    )
                    .style(t.health(if h == Health::Pending {
                        Health::Pending
                    } else {
                        Health::Failed
                    })),
                },
            })
            .collect();
        rows.push(Row::new(cells));
    }
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(2)
        .row_highlight_style(t.selected())
        .highlight_symbol("> ")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_offset(0);
    if n > 0 && sel >= offset && sel < end {
        state.select(Some(sel - offset));
    }
    f.render_stateful_widget(table, inner, &mut state);
}

fn draw_text(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect) {
    let block = Block::bordered().title(Span::styled(
        format!(" {} ", app.screen().view.title(&app.store)),
        t.title(),
    ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let text = app.text();
    let start = app.screen().selected.min(text.len());
    let end = (start + inner.height as usize).min(text.len());
    let lines: Vec<Line<'_>> = text[start..end]
        .iter()
        .map(|l| {
            if l.starts_with('#') {
                Line::styled(l.clone(), t.dim())
            } else {
                Line::raw(l.clone())
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_event(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect, now: OffsetDateTime) -> bool {
    let Some((k, id)) = app.target() else {
        return false;
    };
    if !k.is_event() {
        return false;
    }
    let Some(o) = app.store.get(k, id) else {
        return false;
    };
    let e = status::event_line(&app.store, k, o);
    let block = Block::bordered().title(Span::styled(format!(" event: {} ", e.reason), t.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let label = |s: &str| {
        Span::styled(
            format!(" {s:<10}"),
            Style::default().add_modifier(Modifier::BOLD),
        )
    };
    let ty_style = if e.is_warning() {
        t.health(Health::Failed)
    } else {
        Style::default()
    };
    let lines = vec![
        Line::from(vec![
            label("Type:"),
            Span::styled(e.ty.clone(), ty_style),
            Span::raw(format!("   {} ago", status::age(e.time, now))),
        ]),
        Line::from(vec![label("Object:"), Span::raw(e.object.clone())]),
        Line::from(vec![label("Message:"), Span::raw(e.message.clone())]),
    ];
    f.render_widget(
        Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
        inner,
    );
    true
}

fn draw_why(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect, now: OffsetDateTime) {
    if draw_event(f, app, t, area, now) {
        return;
    }
    let Some(w) = app.why() else {
        let block = Block::bordered().title(" why ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        f.render_widget(
            Paragraph::new(Line::styled(
                " select an object to see its status and why",
                t.dim(),
            )),
            inner,
        );
        return;
    };
    let block = Block::bordered().title(Span::styled(format!(" why: {} ", w.title), t.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let label = |s: &str| {
        Span::styled(
            format!(" {s:<10}"),
            Style::default().add_modifier(Modifier::BOLD),
        )
    };
    let mut lines = vec![Line::from(vec![
        label("Status:"),
        Span::styled(w.status.0.clone(), t.health(w.status.1)),
    ])];
    // Reasons and causes are wrapped: their end often says what to do (`start one with …`).
    let text_width = inner.width.saturating_sub(LABEL_WIDTH) as usize;
    if let Some(r) = &w.reason {
        lines.extend(labelled(label("Reason:"), r, Style::default(), text_width));
    }
    // A cause that only repeats the reason (a Pending object's) is not shown twice.
    let cause = w
        .cause
        .as_ref()
        .filter(|c| !(c.path.is_empty() && w.reason.as_deref() == Some(c.text.as_str())));
    if let Some(c) = cause {
        let style = t.health(if w.status.1 == Health::Pending {
            Health::Pending
        } else {
            Health::Failed
        });
        lines.extend(labelled(label("Cause:"), &c.one_line(), style, text_width));
    }
    if !w.failing.is_empty() {
        lines.push(Line::from(vec![
            label("Failing:"),
            Span::raw(w.failing.join(", ")),
        ]));
    }
    for (i, e) in w.warnings.iter().enumerate() {
        lines.push(Line::from(vec![
            label(if i == 0 { "Warnings:" } else { "" }),
            Span::styled(
                format!(
                    "{:<5} {} {}: {}",
                    status::age(e.time, now),
                    e.object,
                    e.reason,
                    e.message
                ),
                t.fg(Color::Yellow),
            ),
        ]));
    }
    if w.cause.is_none()
        && w.warnings.is_empty()
        && w.failing.is_empty()
        && !w.status.1.is_trouble()
    {
        lines.push(Line::styled(" no problems reported", t.dim()));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// Width of the why pane's labels (` Reason:   `).
const LABEL_WIDTH: u16 = 11;
/// At most this many lines for one wrapped field, so the fields after it stay visible.
const MAX_WRAPPED: usize = 3;

/// `label` then `text` wrapped at spaces to `width`, continuation lines indented under the text;
/// cut with `…` after [`MAX_WRAPPED`] lines.
fn labelled(label: Span<'static>, text: &str, style: Style, width: usize) -> Vec<Line<'static>> {
    let mut rows: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let (cw, ww) = (cur.chars().count(), word.chars().count());
        if !cur.is_empty() && width > 0 && cw + 1 + ww > width {
            rows.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    rows.push(cur);
    if rows.len() > MAX_WRAPPED {
        rows.truncate(MAX_WRAPPED);
        let last = &mut rows[MAX_WRAPPED - 1];
        let keep = last.chars().count().min(width.saturating_sub(1));
        *last = last.chars().take(keep).collect::<String>() + "…";
    }
    let indent = " ".repeat(LABEL_WIDTH as usize);
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let head = if i == 0 {
                label.clone()
            } else {
                Span::raw(indent.clone())
            };
            Line::from(vec![head, Span::styled(r, style)])
        })
        .collect()
}

fn hint(app: &App, a: Action, what: &str) -> Vec<Span<'static>> {
    match app.keymap.first_key(a) {
        Some(k) => vec![
            Span::styled(
                format!("<{k}>"),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" {what}  ")),
        ],
        None => Vec::new(),
    }
}

fn draw_footer(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect) {
    let line = match &app.mode {
        Mode::Filter { input } => {
            let l = Line::from(vec![
                Span::styled(
                    format!("/{input}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled("   enter keeps the filter, esc clears it", t.dim()),
            ]);
            set_cursor(f, area, 1 + input.chars().count());
            l
        }
        Mode::Command { input, .. } => {
            let matches = app::completions(input);
            let shown = if input.is_empty() {
                "workloads runtimes control-planes events … (tab completes any kind)".to_string()
            } else if matches.is_empty() {
                "no such view".into()
            } else {
                let mut s = matches[..matches.len().min(8)].join(" ");
                if matches.len() > 8 {
                    s.push_str(" …");
                }
                s
            };
            set_cursor(f, area, 1 + input.chars().count());
            Line::from(vec![
                Span::styled(
                    format!(":{input}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled(format!("   {shown}"), t.dim()),
            ])
        }
        _ => match &app.message {
            Some(m) => Line::styled(format!(" {}", m.text), t.level(m.level)),
            None => {
                let mut spans = vec![Span::raw(" ")];
                spans.extend(hint(app, Action::Open, "open"));
                spans.extend(hint(app, Action::Describe, "describe"));
                spans.extend(hint(app, Action::Events, "events"));
                spans.extend(hint(app, Action::Filter, "filter"));
                spans.extend(hint(app, Action::Command, "view"));
                if !app.readonly {
                    spans.extend(hint(app, Action::Delete, "delete"));
                }
                spans.extend(hint(app, Action::Help, "help"));
                spans.extend(hint(app, Action::Quit, "back/quit"));
                Line::from(spans)
            }
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

fn set_cursor(f: &mut Frame<'_>, area: Rect, x: usize) {
    let x = area.x.saturating_add(x.min(u16::MAX as usize) as u16);
    if x < area.right() {
        f.set_cursor_position((x, area.y));
    }
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_confirm(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect) {
    let Mode::Confirm(c) = &app.mode else { return };
    let r = centered(area, 64, 8);
    f.render_widget(Clear, r);
    let block = Block::bordered().title(Span::styled(" delete ", t.health(Health::Failed)));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let what = if c.kind.reconciled {
        " Its controller cleans up, then the object is gone."
    } else {
        " It is removed at once."
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw(" Delete "),
            Span::styled(
                format!("{}/{}", c.kind.singular(), c.name),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw("?"),
        ]),
        Line::raw(what),
        Line::raw(format!(" Type its name ({}) to confirm:", c.name)),
        Line::styled(
            format!(" > {}", c.input),
            Style::default().add_modifier(Modifier::BOLD),
        ),
    ];
    match &c.error {
        Some(e) => lines.push(Line::styled(format!(" {e}"), t.level(Level::Error))),
        None => lines.push(Line::raw("")),
    }
    lines.push(Line::styled(" enter: delete   esc: cancel", t.dim()));
    f.render_widget(Paragraph::new(lines), inner);
    if inner.height > 2 {
        let x = inner.x.saturating_add(3 + c.input.chars().count() as u16);
        if x < inner.right() && inner.height > 3 {
            f.set_cursor_position((x, inner.y + 3));
        }
    }
}

fn draw_help(f: &mut Frame<'_>, app: &App, t: &Theme, area: Rect) {
    let help = app.keymap.help_lines();
    let h = help.len() as u16 + 8;
    let r = centered(area, 84, h);
    f.render_widget(Clear, r);
    let block = Block::bordered().title(Span::styled(" help: keys ", t.title()));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let mut lines: Vec<Line<'_>> = help
        .into_iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {keys:<18}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::raw(
        " Views (:): workloads, runtimes, control-planes, events, or any kind or alias",
    ));
    lines.push(Line::raw(
        " (aws-accounts, wi, kri, …); tab completes.  Keys come from:",
    ));
    lines.push(Line::styled(format!(" {}", app.keymap_source), t.dim()));
    lines.push(Line::raw(
        " Format: keys: {describe: v, down: [j, down]}   Any key closes this help.",
    ));
    f.render_widget(Paragraph::new(lines), inner);
}
