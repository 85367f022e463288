//! Group commit for the embedded store: writes that arrive while SQLite is busy with another
//! share the next commit.
//!
//! SQLite has one writer, so concurrent requests (a pipelined `tptctl apply` sends 8 at once)
//! queue for it anyway. A commit is the costly part of a small write: measured here with WAL and
//! `synchronous=NORMAL`, the same five-statement create ran at about 3 800 a second one per
//! commit and about 6 800 a second eight per commit. So one task owns the writing connection
//! and, each time it begins a transaction, runs every write already waiting, each in a
//! savepoint of its own, then commits once.
//!
//! What each request keeps:
//! - **Isolation of failures.** A write that fails rolls back to its savepoint, so it leaves
//!   nothing behind and the others in the batch still commit.
//! - **Durability before the answer.** A write's result is handed back only after the commit
//!   that holds it has succeeded; if that commit fails, every write in it gets the error and
//!   none of them happened. A failed write is answered after the commit too, since it may have
//!   failed on another write of the batch, which readers see only from then on.
//! - **Order.** Writes run one at a time in the order they arrived, so a later write in a batch
//!   sees the earlier ones, as it would after their commits.
//! - **Cancellation.** The work runs on the writer's task: a caller that goes away (a client
//!   that disconnects) cannot stop a write half-way; its answer is simply dropped.
//!
//! Nothing waits for company: a write that arrives at an idle writer commits at once, alone.

use crate::store::StoreError;
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::{Acquire, AnyConnection, AnyPool};
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The most writes one commit holds, so an endless stream of writes still commits regularly.
const MAX_BATCH: usize = 64;

type Value = Box<dyn Any + Send>;
type Work = Box<
    dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<Value, StoreError>> + Send,
>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Value, StoreError>>,
}

/// Counters since start: `commits < writes` shows writes shared commits.
#[derive(Default)]
struct Stats {
    submitted: AtomicU64,
    writes: AtomicU64,
    commits: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes handed to the writer.
    pub submitted: u64,
    /// Writes it has run (committed or failed).
    pub writes: u64,
    /// Commits it has made.
    pub commits: u64,
}

pub struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
    stats: Arc<Stats>,
}

impl GroupCommit {
    /// Starts the writer task on the current runtime. It owns no connection between batches:
    /// it takes `pool`'s for each batch, so other users of the pool (the outbox relay) get
    /// their turn. It ends when the `GroupCommit` is dropped.
    pub fn start(pool: AnyPool) -> GroupCommit {
        let (jobs, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(pool, rx, stats.clone()));
        GroupCommit { jobs, stats }
    }

    pub fn stats(&self) -> WriteStats {
        WriteStats {
            submitted: self.stats.submitted.load(Ordering::Relaxed),
            writes: self.stats.writes.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` in the next commit and returns its result once that commit has succeeded.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work =
            Box::new(move |conn| work(conn).map(|r| r.map(|v| Box::new(v) as Value)).boxed());
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        self.jobs.send(Job { work, reply }).map_err(|_| stopped())?;
        let value = answer.await.map_err(|_| stopped())??;
        Ok(*value
            .downcast::<T>()
            .expect("a write's answer has the type its work returned"))
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer stopped".into())
}

async fn run(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Job>, stats: Arc<Stats>) {
    while let Some(first) = rx.recv().await {
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                let _ = first.reply.send(Err(crate::store::map_err(e)));
                continue;
            }
        };
        let mut tx = match conn.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                let _ = first.reply.send(Err(crate::store::map_err(e)));
                continue;
            }
        };
        // Every answer waits for the commit, failures too: a write refused because of another
        // write in this batch (a name it just took) must not be answered while that write is
        // still invisible to readers, or the caller re-reads and finds nothing.
        let mut answers: Vec<(
            oneshot::Sender<Result<Value, StoreError>>,
            Result<Value, StoreError>,
        )> = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let result = run_one(&mut tx, job.work).await;
            answers.push((job.reply, result));
            if answers.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        stats
            .writes
            .fetch_add(answers.len() as u64, Ordering::Relaxed);
        let commit = if answers.iter().any(|(_, r)| r.is_ok()) {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            tx.commit().await.map_err(crate::store::map_err)
        } else {
            // Nothing to keep: every write rolled back to its savepoint.
            let _ = tx.rollback().await;
            Ok(())
        };
        for (reply, result) in answers {
            let _ = reply.send(match &commit {
                Ok(()) => result,
                // None of the batch happened; the failed ones may have failed because of
                // writes that are now gone too, so all get the commit's error.
                Err(e) => Err(e.clone()),
            });
        }
    }
}

/// One write in a savepoint of its own: released when it succeeds, rolled back when it fails
/// or panics.
async fn run_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    work: Work,
) -> Result<Value, StoreError> {
    let mut sp = tx.begin().await.map_err(crate::store::map_err)?;
    let result = match AssertUnwindSafe(work(&mut sp)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Other("the write panicked".into())),
    };
    match result {
        Ok(v) => {
            sp.commit().await.map_err(crate::store::map_err)?;
            Ok(v)
        }
        Err(e) => {
            // If SQLite already rolled the whole transaction back (a full disk), this fails and
            // so does the batch's commit, which then reports that error to every write in it.
            let _ = sp.rollback().await;
            Err(e)
        }
    }
}
