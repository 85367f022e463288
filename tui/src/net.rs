//! The network side, on its own tokio tasks: list the kinds the views need, then follow the
//! server's watch stream (server-sent events, no polling). On a disconnect it keeps retrying with
//! backoff and resumes from the last event ID (the server replays what was missed), or lists
//! again when it cannot resume. The UI only sees messages on a channel, so it never waits on the
//! network.

use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use threeport_api::{ApiError, Client, Kind, WatchEvent};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

#[derive(Debug)]
pub enum NetMsg {
    Connecting,
    Connected,
    Disconnected {
        error: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// A complete list of a kind.
    Snapshot {
        kind: &'static Kind,
        objects: Vec<Value>,
    },
    Event(WatchEvent),
    LoadFailed {
        kind: &'static Kind,
        error: String,
    },
    /// The outcome of a user action (delete), for the message line.
    ActionDone {
        text: String,
        ok: bool,
    },
}

#[derive(Debug)]
pub enum NetCmd {
    /// Start listing and following a kind.
    Load(&'static Kind),
}

/// Delay before reconnect attempt `attempt` (1-based): 250 ms doubling, capped at 2 s, so a
/// restarted control plane is picked up quickly without hammering a dead one.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(8));
    Duration::from_millis(ms.min(2_000))
}

fn describe(e: &ApiError) -> String {
    match e {
        // reqwest's Display hides the cause ("error sending request"); show the root of it.
        ApiError::Transport { url, source } => {
            let mut root: &dyn std::error::Error = source;
            while let Some(s) = root.source() {
                root = s;
            }
            format!("cannot reach {url}: {root}")
        }
        other => other.to_string(),
    }
}

async fn list(
    client: &Client,
    kind: &'static Kind,
    tx: &UnboundedSender<NetMsg>,
) -> Result<(), ApiError> {
    let objects = client.list(kind, &[]).await?;
    let _ = tx.send(NetMsg::Snapshot { kind, objects });
    Ok(())
}

/// The SSE layer's own errors (as the client words them), as opposed to an event whose data is
/// not a change (`resync`).
fn stream_broken(message: &str) -> bool {
    ["Transport error", "UTF8 error", "Parse error"]
        .iter()
        .any(|p| message.starts_with(p))
}

enum Ended {
    /// The UI is gone.
    Closed,
    Lost(String),
}

/// Follow the control plane until the UI goes away. `kinds` are listed at start; more arrive
/// through `cmds`.
pub async fn watch_loop(
    client: Client,
    kinds: Vec<&'static Kind>,
    tx: UnboundedSender<NetMsg>,
    mut cmds: UnboundedReceiver<NetCmd>,
) {
    let mut state = WatchState {
        kinds,
        listed: HashSet::new(),
        last_id: None,
    };
    let mut attempt: u32 = 0;
    let _ = tx.send(NetMsg::Connecting);
    loop {
        let error = match state.session(&client, &tx, &mut cmds, &mut attempt).await {
            Ended::Closed => return,
            Ended::Lost(e) => e,
        };
        if tx.is_closed() {
            return;
        }
        attempt += 1;
        let delay = backoff(attempt);
        let _ = tx.send(NetMsg::Disconnected {
            error,
            attempt,
            retry_in: delay,
        });
        // Wait, but keep accepting kinds to load meanwhile.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(NetCmd::Load(k)) => state.add(k),
                },
            }
        }
    }
}

struct WatchState {
    kinds: Vec<&'static Kind>,
    /// Kinds whose list is current (reset when the stream cannot be resumed).
    listed: HashSet<&'static str>,
    last_id: Option<String>,
}

impl WatchState {
    fn add(&mut self, k: &'static Kind) {
        if !self.kinds.iter().any(|x| std::ptr::eq(*x, k)) {
            self.kinds.push(k);
        }
    }

    fn follows(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k.name == kind)
    }

    /// List every followed kind not yet listed. The stream is already open, so nothing that
    /// changes during the list is missed; its events are applied after the list (the store
    /// ignores versions older than what it has).
    async fn list_missing(
        &mut self,
        client: &Client,
        tx: &UnboundedSender<NetMsg>,
    ) -> Result<(), String> {
        let missing: Vec<&'static Kind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| !self.listed.contains(k.name))
            .collect();
        let results = futures::future::join_all(missing.iter().map(|k| list(client, k, tx))).await;
        for (k, r) in missing.iter().zip(results) {
            match r {
                Ok(()) => {
                    self.listed.insert(k.name);
                }
                Err(e @ ApiError::Http { .. }) => {
                    // The server answered: this kind cannot be listed, the connection is fine.
                    let _ = tx.send(NetMsg::LoadFailed {
                        kind: k,
                        error: describe(&e),
                    });
                    self.kinds.retain(|x| !std::ptr::eq(*x, *k));
                }
                Err(e) => return Err(describe(&e)),
            }
        }
        Ok(())
    }

    /// One connection: open the stream, list what is needed, forward events until it breaks.
    async fn session(
        &mut self,
        client: &Client,
        tx: &UnboundedSender<NetMsg>,
        cmds: &mut UnboundedReceiver<NetCmd>,
        attempt: &mut u32,
    ) -> Ended {
        let stream = match client.watch(&[], self.last_id.as_deref()).await {
            Ok(s) => s,
            Err(e) => return Ended::Lost(describe(&e)),
        };
        if self.last_id.is_none() {
            // Nothing to resume from: the lists are the only truth.
            self.listed.clear();
        }
        if let Err(e) = self.list_missing(client, tx).await {
            return Ended::Lost(e);
        }
        *attempt = 0;
        let _ = tx.send(NetMsg::Connected);
        tokio::pin!(stream);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok((id, ev))) => {
                        if !id.is_empty() {
                            self.last_id = Some(id);
                        }
                        if self.follows(&ev.kind) && tx.send(NetMsg::Event(ev)).is_err() {
                            return Ended::Closed;
                        }
                    }
                    // The client reports a broken stream as a decode error too.
                    Some(Err(ApiError::Decode(m))) if stream_broken(&m) => {
                        return Ended::Lost(format!("the watch stream broke: {m}"));
                    }
                    // The only events that do not decode as changes are the server's `resync`:
                    // it could not replay everything, so list again (the stream stays open).
                    Some(Err(ApiError::Decode(_))) => {
                        self.listed.clear();
                        if let Err(e) = self.list_missing(client, tx).await {
                            return Ended::Lost(e);
                        }
                    }
                    Some(Err(e)) => return Ended::Lost(describe(&e)),
                    None => return Ended::Lost("the control plane closed the watch stream".into()),
                },
                cmd = cmds.recv() => match cmd {
                    None => return Ended::Closed,
                    Some(NetCmd::Load(k)) => {
                        self.add(k);
                        if let Err(e) = self.list_missing(client, tx).await {
                            return Ended::Lost(e);
                        }
                    }
                },
            }
        }
    }
}

/// Run a delete in its own task and report the outcome.
pub fn spawn_delete(
    client: Client,
    kind: &'static Kind,
    id: u64,
    name: String,
    tx: UnboundedSender<NetMsg>,
) {
    tokio::spawn(async move {
        let label = format!("{}/{name}", kind.singular());
        let msg = match client.delete(kind, id).await {
            Ok(_) if kind.reconciled => NetMsg::ActionDone {
                text: format!("{label} deletion scheduled"),
                ok: true,
            },
            Ok(_) => NetMsg::ActionDone {
                text: format!("{label} deleted"),
                ok: true,
            },
            Err(e) => NetMsg::ActionDone {
                text: format!("cannot delete {label}: {}", describe(&e)),
                ok: false,
            },
        };
        let _ = tx.send(msg);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_millis(1000));
        assert_eq!(backoff(4), Duration::from_millis(2000));
        assert_eq!(backoff(40), Duration::from_millis(2000));
    }
}
