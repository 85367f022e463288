//! Where notifications go: NATS JetStream in a real deployment, or an in-process bus in the
//! embedded mode (controllers then run in the same process and subscribe directly).

use std::time::Duration;
use threeport_api::KINDS;
use tokio::sync::broadcast;

/// One notification: upstream's stream and subject names, upstream's message body.
#[derive(Clone, Debug)]
pub struct BusMessage {
    pub stream: String,
    pub subject: String,
    /// The outbox sequence number: JetStream's `Nats-Msg-Id`, so a relay retry after a lost ack
    /// is deduplicated by the server.
    pub id: i64,
    pub payload: String,
}

pub enum Bus {
    JetStream(JetStreamBus),
    Local(LocalBus),
}

impl Bus {
    /// Publish a batch, returning how many were confirmed, in order. Stops at the first failure
    /// so the relay retries from there.
    pub async fn publish(&self, batch: &[BusMessage]) -> (usize, Option<anyhow::Error>) {
        match self {
            Bus::JetStream(js) => js.publish(batch).await,
            Bus::Local(local) => {
                for m in batch {
                    // No subscriber is not an error: nobody needed telling.
                    let _ = local.tx.send(m.clone());
                }
                (batch.len(), None)
            }
        }
    }
}

/// The in-process bus. Subscribers see messages published after they subscribed.
#[derive(Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<BusMessage>,
}

impl LocalBus {
    pub fn new() -> LocalBus {
        LocalBus {
            tx: broadcast::channel(4096).0,
        }
    }
    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

pub struct JetStreamBus {
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    streams_ready: tokio::sync::OnceCell<()>,
}

/// How long JetStream keeps notifications. Upstream's streams never expired; a week is far longer
/// than any controller outage we should replay, and bounded.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

impl JetStreamBus {
    /// Connects in the background: the API starts and accepts writes while NATS is down, and the
    /// outbox holds notifications until it is back.
    pub async fn connect(url: &str) -> anyhow::Result<JetStreamBus> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(3))
            .max_reconnects(None)
            .connect(url)
            .await?;
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        Ok(JetStreamBus {
            js,
            client,
            streams_ready: tokio::sync::OnceCell::new(),
        })
    }

    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The stream configuration of every controller group that has reconciled kinds.
    pub fn stream_configs() -> Vec<async_nats::jetstream::stream::Config> {
        let mut groups: Vec<threeport_api::kinds::Group> = Vec::new();
        for k in KINDS.iter().filter(|k| k.reconciled) {
            if !groups.contains(&k.group) {
                groups.push(k.group);
            }
        }
        groups
            .into_iter()
            .map(|g| async_nats::jetstream::stream::Config {
                name: g.stream().to_string(),
                subjects: KINDS
                    .iter()
                    .filter(|k| k.reconciled && k.group == g)
                    .map(|k| format!("{}.*", k.lower_camel()))
                    .collect(),
                max_age: STREAM_MAX_AGE,
                duplicate_window: Duration::from_secs(120),
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .collect()
    }

    async fn ensure_streams(&self) -> anyhow::Result<()> {
        self.streams_ready
            .get_or_try_init(|| async {
                for cfg in Self::stream_configs() {
                    let name = cfg.name.clone();
                    match self.js.get_stream(&name).await {
                        Ok(_) => {
                            self.js
                                .update_stream(cfg)
                                .await
                                .map_err(|e| anyhow::anyhow!("update stream {name}: {e}"))?;
                        }
                        Err(_) => {
                            self.js
                                .create_stream(cfg)
                                .await
                                .map_err(|e| anyhow::anyhow!("create stream {name}: {e}"))?;
                        }
                    }
                }
                anyhow::Ok(())
            })
            .await?;
        Ok(())
    }

    async fn publish(&self, batch: &[BusMessage]) -> (usize, Option<anyhow::Error>) {
        if let Err(e) = self.ensure_streams().await {
            return (0, Some(e));
        }
        // Send the whole batch, then await the acks: one round trip per batch, not per message.
        let mut acks = Vec::with_capacity(batch.len());
        for m in batch {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.id.to_string().as_str());
            match self
                .js
                .publish_with_headers(m.subject.clone(), headers, m.payload.clone().into())
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    acks.truncate(acks.len());
                    return Self::settle(acks, Some(anyhow::anyhow!("publish {}: {e}", m.subject)))
                        .await;
                }
            }
        }
        Self::settle(acks, None).await
    }

    async fn settle(
        acks: Vec<async_nats::jetstream::context::PublishAckFuture>,
        mut err: Option<anyhow::Error>,
    ) -> (usize, Option<anyhow::Error>) {
        let mut confirmed = 0;
        for ack in acks {
            match ack.await {
                Ok(_) if err.is_none() => confirmed += 1,
                Ok(_) => {}
                Err(e) => {
                    err.get_or_insert_with(|| anyhow::anyhow!("publish ack: {e}"));
                }
            }
        }
        (confirmed, err)
    }
}

impl LocalBus {
    /// Re-publish as plain `(subject, payload)` pairs, the shape in-process controllers take, so
    /// the controllers crate does not depend on the server.
    pub fn forward(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> broadcast::Sender<(String, String)> {
        let (tx, _) = broadcast::channel(4096);
        let out = tx.clone();
        let mut rx = self.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) => { let _ = out.send((m.subject, m.payload)); }
                        Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "in-process bus overflow"),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        tx
    }
}
