//! `tptctl dashboard`: a live terminal view of a Threeport control plane.
//!
//! - [`app`]: state (views, selection, filter, modes), pure and unit-tested;
//! - [`keymap`]: actions ↔ keys, overrides from `~/.threeport/dashboard.yaml`, generated help;
//! - [`ui`]: rendering only (snapshot-tested with ratatui's `TestBackend`);
//! - [`layout`]: the screen's layout arithmetic, shared by `app` and `ui`;
//! - [`net`]: list + watch on separate tokio tasks, reconnect with backoff;
//! - [`store`]: the object cache. Status words, ages, event lines and the "why" of a status
//!   come from `threeport_api::status`, which reads the store.
//!
//! Dependencies point one way: `lib` → `ui` → `app` → `store`, `keymap`, `layout`, `net`
//! (for its message type); `ui` also reads `layout` and `keymap`. Nothing below `lib` knows the
//! event loop, and `store` knows nothing else in the crate.
//!
//! The event loop below only moves messages between the terminal, the network tasks and the app.

#![forbid(unsafe_code)]

pub mod app;
pub mod keymap;
pub mod layout;
pub mod net;
pub mod store;
pub mod ui;

use anyhow::{Context, Result, bail};
use app::{App, Effect};
use crossterm::event::{Event, EventStream};
use crossterm::{cursor, execute, terminal};
use futures::StreamExt;
use keymap::Keymap;
use net::{NetCmd, NetMsg};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

pub struct DashboardOptions {
    pub client: threeport_api::Client,
    /// Control plane name, shown in the header.
    pub control_plane: String,
    /// API endpoint, shown in the header.
    pub api_url: String,
    /// Refuse every change.
    pub readonly: bool,
    /// Keymap overrides; a missing file means the defaults.
    pub keymap: Option<PathBuf>,
}

/// Set by the panic hook once the terminal is restored, so nothing draws over the report.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// The terminal is in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Restore once: leaving the alternate screen a second time would move the cursor back over
/// whatever was printed since (a panic message, for instance).
fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// Restore the terminal before the panic message is printed, whatever task panics.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        restore_terminal();
        previous(info);
    }));
}

/// Leaves raw mode and the alternate screen however `run` ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

pub async fn run(opts: DashboardOptions) -> Result<()> {
    let (keymap, source) = match &opts.keymap {
        Some(p) if p.exists() => (Keymap::load(p)?, p.display().to_string()),
        Some(p) => (
            Keymap::default(),
            format!("built-in defaults ({} overrides them)", p.display()),
        ),
        None => (Keymap::default(), "built-in defaults".to_string()),
    };
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("tptctl dashboard needs a terminal; use `tptctl get` in scripts");
    }
    let mut app = App::new(&opts.control_plane, &opts.api_url, opts.readonly, keymap);
    app.keymap_source = source;
    app.no_color = no_color();

    install_panic_hook();
    terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
    ACTIVE.store(true, Ordering::SeqCst);
    let _guard = TerminalGuard;
    execute!(std::io::stdout(), terminal::EnterAlternateScreen)?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    let size = term.size()?;
    app.resize(size.width, size.height);

    let (net_tx, mut net_rx) = mpsc::unbounded_channel::<NetMsg>();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<NetCmd>();
    let watcher = tokio::spawn(net::watch_loop(
        opts.client.clone(),
        app::core_kinds(),
        net_tx.clone(),
        cmd_rx,
    ));

    // Test hook for the end-to-end test: a panic on another task must give the terminal back.
    if std::env::var_os("THREEPORT_DASHBOARD_TEST_PANIC").is_some() {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            panic!("test panic (THREEPORT_DASHBOARD_TEST_PANIC is set)");
        });
    }
    let mut keys = EventStream::new();
    // Redraws ages and the retry countdown; the data itself is pushed by the server.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut signals = Signals::new()?;
    let result: Result<()> = loop {
        if PANICKED.load(Ordering::SeqCst) {
            break Err(anyhow::anyhow!(
                "the dashboard stopped after an internal error"
            ));
        }
        // One frame per wake-up: after a key, a burst of network messages, or a tick.
        app.refresh();
        let now = time::OffsetDateTime::now_utc();
        if let Err(e) = term.draw(|f| ui::draw(f, &app, now)) {
            break Err(e.into());
        }
        let mut effects = Vec::new();
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) => effects = app.on_key(k),
                Some(Ok(Event::Resize(w, h))) => app.resize(w, h),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e.into()),
                None => break Ok(()),
            },
            msg = net_rx.recv() => {
                if let Some(msg) = msg {
                    app.on_net(msg);
                    // Apply a burst of events at once, then draw one frame.
                    for _ in 0..10_000 {
                        match net_rx.try_recv() {
                            Ok(m) => app.on_net(m),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = tick.tick() => {}
            _ = signals.recv() => break Ok(()),
        }
        for e in effects {
            match e {
                Effect::Quit => app.should_quit = true,
                Effect::Load(k) => {
                    let _ = cmd_tx.send(NetCmd::Load(k));
                }
                Effect::Delete { kind, id, name } => {
                    if app.readonly {
                        app.set_message(app::Level::Warn, "read-only mode: nothing is changed");
                    } else {
                        net::spawn_delete(opts.client.clone(), kind, id, name, net_tx.clone());
                    }
                }
            }
        }
        if app.should_quit {
            break Ok(());
        }
    };
    watcher.abort();
    drop(term);
    drop(_guard);
    result
}

/// SIGTERM and SIGHUP (the terminal went away) end the dashboard cleanly.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}
