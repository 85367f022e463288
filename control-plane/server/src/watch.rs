//! The watch stream (`GET /v0/watch`, server-sent events). Clients such as the dashboard get
//! every change pushed instead of polling, and resume with `Last-Event-ID` after a disconnect.
//!
//! The source is the outbox table, so every API replica sees every change, whichever replica
//! wrote it (CockroachDB has no LISTEN/NOTIFY). A tailer per process reads it and fans changes
//! out over a broadcast channel.

use crate::ids::{floor_for_ms, now_ms};
use crate::relay::RETENTION;
use crate::store::{OutboxRow, Store};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use threeport_api::{Kind, WatchEvent};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A change ready to send: `data` is the serialized [`WatchEvent`].
#[derive(Debug)]
pub struct Change {
    pub seq: i64,
    pub kind: String,
    pub event: String,
    pub data: String,
}

impl Change {
    fn from_row(r: &OutboxRow) -> Change {
        let object = serde_json::from_str::<Value>(&r.payload)
            .ok()
            .and_then(|mut v| v.get_mut("Object").map(Value::take))
            .unwrap_or(Value::Null);
        let ev = WatchEvent {
            operation: r.event.clone(),
            kind: r.kind.clone(),
            object,
        };
        Change {
            seq: r.seq,
            kind: r.kind.clone(),
            event: r.event.clone(),
            data: serde_json::to_string(&ev).unwrap_or_default(),
        }
    }

    fn sse(&self) -> Event {
        Event::default()
            .id(self.seq.to_string())
            .event(&self.event)
            .data(&self.data)
    }
}

/// Transactions that started earlier can commit after later ones, so a row can appear behind
/// the tailer's cursor. The tailer re-reads this window and skips what it has already sent.
const REORDER_WINDOW_MS: u64 = 5_000;
/// How often the window is re-read. Every commit wakes the tailer, which then reads only what
/// lies past its cursor: re-reading the whole window on every wake made the tailer read each
/// row hundreds of times under load. A row that commits behind the cursor is sent at the next
/// re-read, at most this much later.
const REORDER_RESCAN: Duration = Duration::from_millis(500);
const PAGE: i64 = 1000;
const POLL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Watcher {
    tx: broadcast::Sender<Arc<Change>>,
}

impl Watcher {
    pub fn new() -> Watcher {
        Watcher {
            tx: broadcast::channel(8192).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// Tail the outbox until shutdown. Starts at "now": history is served per client on resume.
    pub async fn tail(
        self,
        store: Arc<Store>,
        wake: Arc<crate::NotifyHandle>,
        shutdown: CancellationToken,
    ) {
        let mut cursor = floor_for_ms(now_ms());
        let mut seen: BTreeSet<i64> = BTreeSet::new();
        let mut rescanned = tokio::time::Instant::now();
        loop {
            let window_start = floor_for_ms(now_ms().saturating_sub(REORDER_WINDOW_MS));
            let mut from = if rescanned.elapsed() >= REORDER_RESCAN {
                rescanned = tokio::time::Instant::now();
                cursor.min(window_start)
            } else {
                cursor
            };
            loop {
                match store.changes_after(from, PAGE).await {
                    Ok(rows) => {
                        for r in &rows {
                            if seen.insert(r.seq) {
                                let _ = self.tx.send(Arc::new(Change::from_row(r)));
                            }
                            cursor = cursor.max(r.seq);
                        }
                        match rows.last() {
                            Some(last) if rows.len() as i64 == PAGE => from = last.seq,
                            _ => break,
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "watch tailer: cannot read changes");
                        break;
                    }
                }
            }
            seen = seen.split_off(&window_start);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

/// Tell the client its cache is no longer complete and it must list again.
fn resync(reason: &str) -> Event {
    Event::default()
        .event("resync")
        .data(format!("{{\"Reason\":{}}}", Value::String(reason.into())))
}

/// Build the SSE stream for one client: replay from `last_event_id`, then live changes.
pub async fn stream(
    store: Arc<Store>,
    watcher: Watcher,
    kinds: Vec<&'static Kind>,
    last_event_id: Option<i64>,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before replaying so nothing committed in between is missed.
    let live = watcher.subscribe();
    let wanted = move |kind: &str| kinds.is_empty() || kinds.iter().any(|k| k.name == kind);
    let wanted = Arc::new(wanted);
    let mut replay: Vec<Event> = Vec::new();
    let mut replayed_upto = i64::MIN;
    if let Some(last) = last_event_id {
        if last < floor_for_ms(now_ms().saturating_sub(RETENTION.as_millis() as u64)) {
            replay.push(resync(
                "the requested position is older than the server keeps; list again",
            ));
        }
        let mut from = last;
        loop {
            match store.changes_after(from, PAGE).await {
                Ok(rows) => {
                    for r in &rows {
                        if wanted(&r.kind) {
                            replay.push(Change::from_row(r).sse());
                        }
                        replayed_upto = replayed_upto.max(r.seq);
                    }
                    match rows.last() {
                        Some(l) if rows.len() as i64 == PAGE => from = l.seq,
                        _ => break,
                    }
                }
                Err(_) => {
                    replay.push(resync(
                        "the database is unavailable; list again when it is back",
                    ));
                    break;
                }
            }
        }
    }
    let wanted_live = wanted.clone();
    let live = tokio_stream::wrappers::BroadcastStream::new(live).filter_map(move |item| {
        let wanted = wanted_live.clone();
        async move {
            match item {
                Ok(c) if c.seq > replayed_upto && wanted(&c.kind) => Some(Ok(c.sse())),
                Ok(_) => None,
                // This client fell too far behind: it lost events, so it must relist.
                Err(_) => Some(Ok(resync(
                    "the client fell behind and missed changes; list again",
                ))),
            }
        }
    });
    let stream = futures::stream::iter(replay.into_iter().map(Ok))
        .chain(live)
        .take_until(shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    )
}
