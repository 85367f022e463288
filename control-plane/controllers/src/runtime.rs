//! The controller runtime every reconciler shares.
//!
//! Upstream's flow is kept: a notification names an object, the controller takes a per-object
//! lock, re-reads the object from the REST API, reconciles, and reports through the API. What is
//! fixed: requeues back off from 1 s with jitter instead of being effectively immediate; long
//! reconciles send in-progress acks so they are not redelivered while running; a message that keeps
//! failing ends in a visible `Failed` status with the reason instead of retrying forever; every
//! failure is recorded as an Event on the object.

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use threeport_api::{Client, Kind, ObjectExt, kinds};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// What a reconcile asks for next.
#[derive(Debug)]
pub enum Outcome {
    /// Finished. The runtime records it (`Reconciled`, `CreationConfirmed`, or for a cleanup
    /// `DeletionConfirmed`).
    Done,
    /// Finished, and these fields (the reconciler's own status: `Status`, `StatusReason`, …)
    /// go in the same write as the runtime's bookkeeping.
    DoneWith(Value),
    /// Not an error, but not finished (e.g. waiting on another object): look again later.
    RequeueAfter(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Worth retrying (the cluster is unreachable, a conflict, …).
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (invalid manifest): fail now with this reason.
    #[error("{0}")]
    Permanent(String),
    /// A call to the control plane's own API failed. A 4xx (other than a conflict) means the
    /// request itself is wrong, so it is permanent; transport errors and 5xx are retried.
    #[error("threeport API: {0}")]
    Api(#[source] threeport_api::ApiError),
    #[error("kubernetes: {0}")]
    Kube(#[source] kube::Error),
}

impl ReconcileError {
    pub fn is_permanent(&self) -> bool {
        match self {
            ReconcileError::Permanent(_) => true,
            ReconcileError::Api(e) => e
                .code()
                .is_some_and(|c| (400..500).contains(&c) && c != 409 && c != 429),
            ReconcileError::Retryable(_) | ReconcileError::Kube(_) => false,
        }
    }
}

impl From<threeport_api::ApiError> for ReconcileError {
    fn from(e: threeport_api::ApiError) -> Self {
        ReconcileError::Api(e)
    }
}

impl From<kube::Error> for ReconcileError {
    fn from(e: kube::Error) -> Self {
        ReconcileError::Kube(e)
    }
}

/// A controller's intent. The runtime owns the protocol around it (see [`run`]): it takes the
/// lock, re-reads the object, writes `CreationAcknowledged` once `apply` has run for 100 ms (or
/// with the confirmation, when it is done sooner) and `Reconciled` + `CreationConfirmed` after
/// it, `DeletionAcknowledged` before `cleanup` and `DeletionConfirmed`
/// after it, and `CreationFailed` with the reason when a reconcile fails for good. A reconciler
/// never writes those fields itself, so it cannot forget one.
pub trait Reconciler: Send + Sync + 'static {
    /// Durable consumer name, and `ReportingController` on events.
    fn name(&self) -> &'static str;
    fn kinds(&self) -> Vec<&'static Kind>;
    /// Make the world match the object (created or changed; secrets revealed).
    fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> impl Future<Output = Result<Outcome, ReconcileError>> + Send;
    /// Remove what `apply` made; the object is being deleted.
    fn cleanup(
        &self,
        api: &Client,
        kind: &'static Kind,
        object: Value,
    ) -> impl Future<Output = Result<Outcome, ReconcileError>> + Send;
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Objects reconciled at the same time.
    pub concurrency: usize,
    /// Deliveries before an object is marked `Failed`.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// JetStream redelivers after this unless an in-progress ack extends it.
    pub ack_wait: Duration,
    /// TTL of per-object locks; refreshed while the reconcile runs.
    pub lock_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 8,
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            ack_wait: Duration::from_secs(30),
            lock_ttl: Duration::from_secs(60),
        }
    }
}

impl Options {
    /// Exponential backoff with full jitter in [d/2, d], never below the base (never zero).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = exp.min(self.backoff_cap);
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        d.mul_f64(jitter).max(self.backoff_base)
    }
}

/// Where notifications come from.
pub enum Source {
    /// NATS JetStream: a durable pull consumer per reconciler, KV locks shared by all replicas.
    JetStream(async_nats::Client),
    /// Embedded mode: `(subject, payload)` from the server's in-process bus.
    Local(broadcast::Receiver<(String, String)>),
}

/// Per-object locks: a KV key with a TTL across replicas, or an in-process set.
#[derive(Clone)]
enum Locks {
    Kv(kv::Store),
    Local(Arc<Mutex<HashSet<String>>>),
}

impl Locks {
    async fn acquire(&self, key: &str, owner: &str) -> bool {
        match self {
            Locks::Kv(store) => store.create(key, owner.to_string().into()).await.is_ok(),
            Locks::Local(set) => set
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string()),
        }
    }
    async fn refresh(&self, key: &str, owner: &str) {
        if let Locks::Kv(store) = self {
            let _ = store.put(key, owner.to_string().into()).await;
        }
    }
    async fn release(&self, key: &str) {
        match self {
            Locks::Kv(store) => {
                let _ = store.purge(key).await;
            }
            Locks::Local(set) => {
                set.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            }
        }
    }
}

/// How one attempt ended.
enum Verdict {
    Ack,
    Retry(Duration),
    /// The reconciler asked to look again later (`RequeueAfter`): not a failed attempt.
    Requeue(Duration),
    /// Give up: recorded on the object as `Failed`.
    Failed(String),
    /// Someone else holds the lock: look again shortly, without counting a failure.
    Busy,
}

struct Shared<R> {
    reconciler: Arc<R>,
    api: Client,
    opts: Options,
    locks: Locks,
    owner: String,
    shutdown: CancellationToken,
    /// Per object (lock key): deliveries that were not failed attempts (a requeue asked for by
    /// the reconciler, a lock held elsewhere). JetStream counts every delivery, and an object
    /// that polls for minutes (a certificate being issued) must not use up its attempts by
    /// waiting. Kept in memory: another replica's count is not known here, so a failure there
    /// may count a few deliveries more.
    not_failures: Mutex<std::collections::HashMap<String, u32>>,
}

/// How long a reconcile may run before its acknowledgement is written on its own.
const ACK_DELAY: Duration = Duration::from_millis(100);

/// The field that says a controller took the object up.
fn ack_field(deleting: bool) -> &'static str {
    if deleting {
        "DeletionAcknowledged"
    } else {
        "CreationAcknowledged"
    }
}

fn lock_key(kind: &Kind, id: u64) -> String {
    format!("{}.{id}", kind.lower_camel())
}

/// Object (kind, ID) named by a notification payload.
fn target(subject: &str, payload: &str) -> Option<(&'static Kind, u64)> {
    let prefix = subject.split('.').next()?;
    let kind = kinds::KINDS.iter().find(|k| k.lower_camel() == prefix)?;
    let v: Value = serde_json::from_str(payload).ok()?;
    Some((kind, v.get("Object")?.get("ID")?.as_u64()?))
}

impl<R: Reconciler> Shared<R> {
    fn not_failures_of(&self, key: &str) -> u32 {
        let m = self.not_failures.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).copied().unwrap_or(0)
    }
    fn count_not_failure(&self, key: &str) {
        let mut m = self.not_failures.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(key.to_string()).or_default() += 1;
    }
    fn forget_not_failures(&self, key: &str) {
        let mut m = self.not_failures.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(key);
    }

    /// One attempt at one object. `attempt` starts at 1. `progress` is called periodically
    /// while the reconcile runs (in-progress ack).
    async fn attempt<P, F>(
        &self,
        kind: &'static Kind,
        id: u64,
        attempt: u32,
        progress: P,
    ) -> Verdict
    where
        P: Fn() -> F + Send,
        F: Future<Output = ()> + Send,
    {
        let key = lock_key(kind, id);
        if !self.locks.acquire(&key, &self.owner).await {
            return Verdict::Busy;
        }
        let verdict = self.locked(kind, id, attempt, &key, progress).await;
        self.locks.release(&key).await;
        verdict
    }

    async fn locked<P, F>(
        &self,
        kind: &'static Kind,
        id: u64,
        attempt: u32,
        key: &str,
        progress: P,
    ) -> Verdict
    where
        P: Fn() -> F + Send,
        F: Future<Output = ()> + Send,
    {
        // 1. Re-read: the notification may be stale, and secrets are not in it.
        let object =
            match self.api.get_revealed(kind, id).await {
                Ok(o) => o,
                Err(e) if e.is_not_found() => return Verdict::Ack,
                Err(e) => {
                    return Verdict::Retry(self.opts.backoff(attempt).max(Duration::from_secs(1)))
                        .log(kind, id, &e.to_string());
                }
            };
        let deleting = object.is_deleting();
        if !deleting && object.is_reconciled() {
            return Verdict::Ack;
        }
        // 2. Acknowledge: the object is being worked on, and is no longer `Pending`. A
        // reconcile done within `ACK_DELAY` writes its acknowledgement with its confirmation,
        // one write instead of two; a longer one writes it when `ACK_DELAY` has passed, so
        // people see it being worked on while it runs.
        let mut version = object.get("ResourceVersion").and_then(Value::as_i64);
        let mut acknowledged = false;
        // 3. The reconciler's intent, with in-progress acks while it runs.
        let tick = self.opts.ack_wait.min(self.opts.lock_ttl) / 3;
        let was_pending = object.status() == Some("Pending");
        let spec = spec_of(kind, &object);
        let acknowledge_from = object.clone();
        let work = async {
            if deleting {
                self.reconciler.cleanup(&self.api, kind, object).await
            } else {
                self.reconciler.apply(&self.api, kind, object).await
            }
        };
        tokio::pin!(work);
        let ack_due = tokio::time::sleep(ACK_DELAY);
        tokio::pin!(ack_due);
        let result = loop {
            tokio::select! {
                r = &mut work => break Some(r),
                _ = &mut ack_due, if !acknowledged => {
                    acknowledged = true;
                    match self.acknowledge(kind, id, &acknowledge_from, deleting).await {
                        Ok(v) => version = v,
                        Err(e) => tracing::info!(kind = kind.name, id, "cannot acknowledge yet: {e}"),
                    }
                }
                _ = tokio::time::sleep(tick) => {
                    progress().await;
                    self.locks.refresh(key, &self.owner).await;
                }
                _ = self.shutdown.cancelled() => break None,
            }
        };
        // Not finished (waiting, retrying, failed): the acknowledgement says it was seen.
        let finished = matches!(
            result,
            Some(Ok(Outcome::Done)) | Some(Ok(Outcome::DoneWith(_)))
        );
        if !acknowledged && result.is_some() && !finished {
            if let Err(e) = self
                .acknowledge(kind, id, &acknowledge_from, deleting)
                .await
            {
                tracing::info!(kind = kind.name, id, "cannot acknowledge: {e}");
            }
        }
        let ack_field = (!acknowledged && !acknowledge_from.is_set(ack_field(deleting)))
            .then(|| ack_field(deleting));
        // 4. Record how it ended.
        let report = match result {
            // Shutting down mid-reconcile: hand the object back for another replica or restart.
            None => return Verdict::Retry(Duration::ZERO),
            Some(Ok(Outcome::RequeueAfter(d))) => {
                return Verdict::Requeue(d.max(self.opts.backoff_base));
            }
            Some(Ok(Outcome::Done)) => None,
            Some(Ok(Outcome::DoneWith(v))) => Some(v),
            Some(Err(e)) if e.is_permanent() => {
                let m = e.to_string();
                self.record_event(kind, id, "ReconcileFailed", &m).await;
                return Verdict::Failed(m);
            }
            Some(Err(e)) => {
                let m = error_chain(&e);
                self.record_event(
                    kind,
                    id,
                    "ReconcileError",
                    &format!("attempt {attempt}/{}: {m}", self.opts.max_attempts),
                )
                .await;
                return if attempt >= self.opts.max_attempts {
                    Verdict::Failed(format!("gave up after {attempt} attempts: {m}"))
                } else {
                    Verdict::Retry(self.opts.backoff(attempt)).log(kind, id, &m)
                };
            }
        };
        // 5. Confirm, on the condition that nothing was written since the acknowledgement: a
        // spec change made while the reconcile ran has not been applied, so it is done again
        // rather than marked reconciled (the change's own notification would find it
        // reconciled). Anything else written meanwhile (a status, by the reconciler itself or
        // a watcher) is re-read and the confirmation sent again; a delete confirms at once.
        for _ in 0..5 {
            let expect = (!deleting).then_some(version).flatten();
            match self
                .confirm(
                    kind,
                    id,
                    deleting,
                    was_pending,
                    report.clone(),
                    expect,
                    ack_field,
                )
                .await
            {
                Ok(()) => return Verdict::Ack,
                Err(e) if e.is_not_found() => return Verdict::Ack,
                Err(e) if e.is_conflict() && expect.is_some() => {
                    match self.api.get(kind, id).await {
                        Ok(now) if spec_of(kind, &now) != spec => {
                            tracing::info!(
                                kind = kind.name,
                                id,
                                "changed while reconciling; again"
                            );
                            return Verdict::Retry(Duration::ZERO);
                        }
                        Ok(now) => version = now.get("ResourceVersion").and_then(Value::as_i64),
                        Err(e) if e.is_not_found() => return Verdict::Ack,
                        Err(e) => {
                            return Verdict::Retry(self.opts.backoff(attempt)).log(
                                kind,
                                id,
                                &e.to_string(),
                            );
                        }
                    }
                }
                Err(e) => {
                    return Verdict::Retry(self.opts.backoff(attempt)).log(
                        kind,
                        id,
                        &e.to_string(),
                    );
                }
            }
        }
        Verdict::Retry(self.opts.backoff(attempt)).log(kind, id, "kept changing while confirming")
    }

    /// `CreationAcknowledged` (or `DeletionAcknowledged`) the first time; a `Pending` object
    /// becomes `Reconciling`, so nobody reads the old reason while work is under way. Returns
    /// the object's `ResourceVersion` after it.
    async fn acknowledge(
        &self,
        kind: &'static Kind,
        id: u64,
        object: &Value,
        deleting: bool,
    ) -> Result<Option<i64>, threeport_api::ApiError> {
        let mut patch = serde_json::Map::new();
        let field = ack_field(deleting);
        if !object.is_set(field) {
            patch.insert(field.into(), json!(now_rfc3339()));
        }
        if object.status() == Some("Pending") {
            patch.insert("Status".into(), json!("Reconciling"));
            patch.insert(
                "StatusReason".into(),
                json!(format!("{} is working on it", self.reconciler.name())),
            );
        }
        let version = |o: &Value| o.get("ResourceVersion").and_then(Value::as_i64);
        if patch.is_empty() {
            return Ok(version(object));
        }
        self.api
            .patch(kind, id, &Value::Object(patch))
            .await
            .map(|o| version(&o))
    }

    /// The end of a successful reconcile: `DeletionConfirmed` (which removes the object), or
    /// `Reconciled` + `CreationConfirmed` with the reconciler's report in the same write.
    async fn confirm(
        &self,
        kind: &'static Kind,
        id: u64,
        deleting: bool,
        was_pending: bool,
        report: Option<Value>,
        expect_version: Option<i64>,
        acknowledge: Option<&'static str>,
    ) -> Result<(), threeport_api::ApiError> {
        let mut patch = match report {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        // A quick reconcile's acknowledgement goes with its confirmation.
        if let Some(f) = acknowledge {
            patch.insert(f.into(), json!(now_rfc3339()));
        }
        if let Some(v) = expect_version {
            patch.insert("ResourceVersion".into(), json!(v));
        }
        if deleting {
            patch.insert("DeletionConfirmed".into(), json!(now_rfc3339()));
        } else {
            patch.insert("Reconciled".into(), json!(true));
            patch.insert("CreationConfirmed".into(), json!(now_rfc3339()));
            patch.insert("CreationFailed".into(), Value::Null);
            // The runtime's own `Reconciling` goes when the reconciler reports no status.
            if was_pending && !patch.contains_key("Status") {
                patch.insert("Status".into(), Value::Null);
                patch.insert("StatusReason".into(), Value::Null);
            }
        }
        self.api
            .patch(kind, id, &Value::Object(patch))
            .await
            .map(|_| ())
    }

    async fn record_event(&self, kind: &'static Kind, id: u64, reason: &str, note: &str) {
        let ev = kinds::EVENT;
        let body = json!({
            "ObjectKind": kind.name, "ObjectID": id, "Type": "Warning", "Reason": reason,
            "Note": note, "ReportingController": self.reconciler.name(), "EventTime": now_rfc3339(),
        });
        if let Err(e) = self.api.create(ev, &body).await {
            tracing::warn!(error = %e, "cannot record event");
        }
    }

    /// The visible end state of an object that cannot be reconciled.
    async fn mark_failed(&self, kind: &'static Kind, id: u64, reason: &str) {
        let mut patch = json!({"Reconciled": true, "CreationFailed": now_rfc3339()});
        if kind.has_status() {
            patch["Status"] = json!("Failed");
            patch["StatusReason"] = json!(reason);
        }
        if let Err(e) = self.api.patch(kind, id, &patch).await {
            tracing::warn!(error = %e, kind = kind.name, id, "cannot mark object failed");
        }
        tracing::warn!(kind = kind.name, id, reason, "reconcile failed for good");
    }
}

trait LogVerdict {
    fn log(self, kind: &Kind, id: u64, msg: &str) -> Self;
}

impl LogVerdict for Verdict {
    fn log(self, kind: &Kind, id: u64, msg: &str) -> Self {
        if let Verdict::Retry(d) = &self {
            tracing::info!(kind = kind.name, id, retry_in = ?d, "reconcile failed: {msg}");
        }
        self
    }
}

pub use threeport_api::object::now_rfc3339;

/// The fields a reconcile acts on (everything a client writes that is not status), as read.
/// Secrets are compared redacted, so a re-read without `reveal` matches.
fn spec_of(kind: &Kind, o: &Value) -> Vec<(&'static str, Value)> {
    kind.writable_fields()
        .filter(|f| !f.status)
        .map(|f| {
            let v = o.get(f.name).cloned().unwrap_or(Value::Null);
            let v = if f.secret && !v.is_null() {
                json!("secret")
            } else {
                v
            };
            (f.name, v)
        })
        .collect()
}

/// An error with its causes, `a: b: c`, for events and logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

/// Work for the in-process queue: startup resync, local-bus notifications and local retries.
#[derive(Clone, Copy)]
struct Work {
    kind: &'static Kind,
    id: u64,
    attempt: u32,
}

/// Run `reconciler` until `shutdown`.
pub async fn run<R: Reconciler>(
    reconciler: Arc<R>,
    api: Client,
    source: Source,
    opts: Options,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let owner = format!("{}-{}", reconciler.name(), rand::random::<u32>());
    let kinds = reconciler.kinds();
    let (locks, js) = match &source {
        Source::JetStream(client) => {
            let js = jetstream::new(client.clone());
            let store = js
                .create_key_value(kv::Config {
                    bucket: "threeport-locks".into(),
                    max_age: opts.lock_ttl,
                    history: 1,
                    ..Default::default()
                })
                .await;
            let store = match store {
                Ok(s) => s,
                Err(_) => js.get_key_value("threeport-locks").await?,
            };
            (Locks::Kv(store), Some(js))
        }
        Source::Local(_) => (Locks::Local(Arc::default()), None),
    };
    let shared = Arc::new(Shared {
        reconciler: reconciler.clone(),
        api: api.clone(),
        opts: opts.clone(),
        locks,
        owner,
        shutdown: shutdown.clone(),
        not_failures: Mutex::default(),
    });
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<Work>();

    // Resync: anything left unreconciled while no controller ran (the in-process bus forgets).
    for kind in &kinds {
        let filters = [("reconciled", "false".to_string())];
        match api.list(kind, &filters).await {
            Ok(items) => {
                for o in items {
                    if let Some(id) = threeport_api::object_id(&o) {
                        let _ = queue_tx.send(Work {
                            kind,
                            id,
                            attempt: 1,
                        });
                    }
                }
            }
            Err(e) => tracing::warn!(kind = kind.name, error = %e, "resync list failed"),
        }
    }

    // Notifications from the in-process bus join the queue.
    if let Source::Local(mut rx) = source {
        let tx = queue_tx.clone();
        let wanted = kinds.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = rx.recv() => m,
                    _ = stop.cancelled() => return,
                };
                match msg {
                    Ok((subject, payload)) => {
                        if let Some((kind, id)) = target(&subject, &payload) {
                            if wanted.iter().any(|k| k.name == kind.name) {
                                let _ = tx.send(Work {
                                    kind,
                                    id,
                                    attempt: 1,
                                });
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        tracing::warn!(
                            "controller fell behind the in-process bus; a restart resyncs"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    // Every in-flight attempt, so a shutdown lets them hand their object back (NAK, lock
    // released) before the process exits.
    let tracker = tokio_util::task::TaskTracker::new();
    // The in-process queue (both modes).
    let queue_task = {
        let tracker = tracker.clone();
        let shared = shared.clone();
        let permits = permits.clone();
        let tx = queue_tx.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let work = tokio::select! {
                    w = queue_rx.recv() => match w { Some(w) => w, None => return },
                    _ = stop.cancelled() => return,
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let shared = shared.clone();
                let tx = tx.clone();
                tracker.spawn(async move {
                    let verdict = shared
                        .attempt(work.kind, work.id, work.attempt, || async {})
                        .await;
                    drop(permit);
                    let (delay, next) = match verdict {
                        Verdict::Ack => return,
                        Verdict::Failed(reason) => {
                            shared.mark_failed(work.kind, work.id, &reason).await;
                            return;
                        }
                        Verdict::Busy => (Duration::from_secs(1), work.attempt),
                        Verdict::Requeue(d) => (d, work.attempt),
                        Verdict::Retry(d) => (d, work.attempt + 1),
                    };
                    if shared.shutdown.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Work {
                        attempt: next,
                        ..work
                    });
                });
            }
        })
    };

    if let Some(js) = js {
        consume(js, shared.clone(), &kinds, permits, &tracker).await?;
    } else {
        shutdown.cancelled().await;
    }
    queue_task.abort();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some reconciles did not stop within 10s; their locks expire with their TTL"
        );
    }
    Ok(())
}

/// The JetStream half: a durable pull consumer over the kinds' subjects.
async fn consume<R: Reconciler>(
    js: jetstream::Context,
    shared: Arc<Shared<R>>,
    kinds: &[&'static Kind],
    permits: Arc<Semaphore>,
    tracker: &tokio_util::task::TaskTracker,
) -> anyhow::Result<()> {
    let stream_name = kinds
        .first()
        .map(|k| k.group.stream())
        .unwrap_or("workloadStream");
    let stream = loop {
        match js.get_stream(stream_name).await {
            Ok(s) => break s,
            Err(e) => {
                // The API creates streams on its first publish; wait for it.
                tracing::info!(stream = stream_name, error = %e, "waiting for the stream");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shared.shutdown.cancelled() => return Ok(()),
                }
            }
        }
    };
    let subjects: Vec<String> = kinds
        .iter()
        .flat_map(|k| ["create", "update", "delete"].map(|op| format!("{}.{op}", k.lower_camel())))
        .collect();
    let consumer = stream
        .get_or_create_consumer(
            shared.reconciler.name(),
            pull::Config {
                durable_name: Some(shared.reconciler.name().to_string()),
                filter_subjects: subjects,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: shared.opts.ack_wait,
                // Unlimited: a crash mid-reconcile or a busy lock also counts as a delivery, and
                // a message JetStream stops delivering would leave its object stuck without a
                // reason. Our own limit ends real failures in a visible `Failed` instead.
                max_deliver: -1,
                max_ack_pending: (shared.opts.concurrency * 4) as i64,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let msg = tokio::select! {
            m = messages.next() => m,
            _ = shared.shutdown.cancelled() => break,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            None => break,
        };
        let Some((kind, id)) = target(msg.subject.as_str(), &String::from_utf8_lossy(&msg.payload))
        else {
            let _ = msg.ack_with(AckKind::Term).await;
            continue;
        };
        let delivered = msg.info().map(|i| i.delivered as u32).unwrap_or(1);
        let key = lock_key(kind, id);
        let attempt = delivered
            .saturating_sub(shared.not_failures_of(&key))
            .max(1);
        let permit = permits.clone().acquire_owned().await?;
        let shared = shared.clone();
        tracker.spawn(async move {
            let msg = Arc::new(msg);
            let m2 = msg.clone();
            let verdict = shared
                .attempt(kind, id, attempt, move || {
                    let m = m2.clone();
                    async move {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                })
                .await;
            drop(permit);
            let ack = match verdict {
                Verdict::Ack => {
                    shared.forget_not_failures(&key);
                    AckKind::Ack
                }
                Verdict::Busy => {
                    shared.count_not_failure(&key);
                    AckKind::Nak(Some(Duration::from_secs(1)))
                }
                Verdict::Requeue(d) => {
                    shared.count_not_failure(&key);
                    AckKind::Nak(Some(d))
                }
                Verdict::Retry(d) => AckKind::Nak(Some(d)),
                Verdict::Failed(reason) => {
                    shared.forget_not_failures(&key);
                    shared.mark_failed(kind, id, &reason).await;
                    AckKind::Term
                }
            };
            if let Err(e) = msg.ack_with(ack).await {
                tracing::warn!(error = %e, "ack failed; the message will be redelivered");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_never_zero_and_capped() {
        let o = Options::default();
        for attempt in 0..40 {
            let d = o.backoff(attempt);
            assert!(d >= Duration::from_secs(1), "{d:?}");
            assert!(d <= Duration::from_secs(30), "{d:?}");
        }
        assert!(o.backoff(10) >= Duration::from_secs(15));
    }

    #[test]
    fn target_parses_upstream_messages() {
        let p = r#"{"Operation":"Created","CreationTime":1,"Object":{"ID":913485001775689728,"Name":"web"},"ObjectVersion":"v0"}"#;
        let (k, id) = target("workloadInstance.create", p).unwrap();
        assert_eq!(k.name, "WorkloadInstance");
        assert_eq!(id, 913485001775689728);
    }
}
