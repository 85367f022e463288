//! The outbox relay: publishes committed notifications and marks them sent. A notification is
//! written in the same transaction as its change, so a crash or a NATS outage delays it but
//! never loses it. Delivery is at least once; JetStream's duplicate window drops the repeats a
//! lost ack would cause.

use crate::bus::{Bus, BusMessage};
use crate::ids::now_ms;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 256;
/// Another API replica's rows, and retries, are picked up at least this often.
const POLL: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long changes stay in the outbox for watch clients to resume from.
pub const RETENTION: Duration = Duration::from_secs(3600);

pub async fn run(
    store: Arc<Store>,
    bus: Arc<Bus>,
    wake: Arc<crate::NotifyHandle>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    let mut last_prune = 0u64;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match relay_once(&store, &bus).await {
            Ok(more) => {
                backoff = Duration::from_secs(1);
                if more {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay: notifications held until this succeeds");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        if now_ms() - last_prune > 60_000 {
            last_prune = now_ms();
            if let Err(e) = store
                .prune_outbox(now_ms().saturating_sub(RETENTION.as_millis() as u64))
                .await
            {
                tracing::debug!(error = %e, "outbox prune failed");
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Relay one batch. Returns whether a full batch was sent (so there may be more).
async fn relay_once(store: &Store, bus: &Bus) -> anyhow::Result<bool> {
    let rows = store.pending_notifications(BATCH).await?;
    if rows.is_empty() {
        return Ok(false);
    }
    let batch: Vec<BusMessage> = rows
        .iter()
        .map(|r| BusMessage {
            stream: r.stream.clone().unwrap_or_default(),
            subject: r.subject.clone().unwrap_or_default(),
            id: r.seq,
            payload: r.payload.clone(),
        })
        .collect();
    let (sent, err) = bus.publish(&batch).await;
    let seqs: Vec<i64> = rows[..sent].iter().map(|r| r.seq).collect();
    store.mark_published(&seqs).await?;
    if let Some(e) = err {
        return Err(e);
    }
    Ok(rows.len() as i64 == BATCH)
}
