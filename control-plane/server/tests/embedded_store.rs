//! The embedded store (SQLite): WAL with one writer and a pool of readers, so a read never
//! waits for a write, and what each connection is set to.

use serde_json::{Map, Value, json};
use std::time::Duration;
use threeport_api::kinds::WORKLOAD_DEFINITION;
use threeport_server::store::{Page, Store};

async fn store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("threeport.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn body(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// With a write transaction held open on the writer (as a long write would), reads of what is
/// committed answer at once instead of queueing behind it; the write lands when it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_proceed_while_a_long_write_transaction_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let def = store
        .insert(
            WORKLOAD_DEFINITION,
            &body(json!({"Name": "web", "YAMLDocument": "kind: ConfigMap\n"})),
            false,
        )
        .await
        .unwrap();
    // The writer's only connection, inside an open transaction with an uncommitted write.
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("UPDATE objects SET name = 'renamed' WHERE id = $1")
        .bind(def.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    // The store's own acquire timeout is 3 s: a read queued behind the writer would fail.
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let one = store.fetch(WORKLOAD_DEFINITION, def.id).await.unwrap();
        let (all, total) = store
            .list(WORKLOAD_DEFINITION, None, &[], Page::number(1), 10)
            .await
            .unwrap();
        (one, all.len(), total)
    })
    .await
    .expect("reads answered while the write transaction was open");
    assert_eq!(
        read.0.name(),
        Some("web"),
        "the last commit, not the open write"
    );
    assert_eq!((read.1, read.2), (1, 1));
    tx.commit().await.unwrap();
    let (all, _) = store
        .list(
            WORKLOAD_DEFINITION,
            Some("renamed"),
            &[],
            Page::number(1),
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        1,
        "the committed write is visible to the readers"
    );
}

/// Every connection runs in WAL mode with synchronous=NORMAL and a busy timeout.
#[tokio::test]
async fn connections_use_wal_normal_sync_and_a_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let get = |pragma: &'static str| {
        let pool = store.pool().clone();
        async move {
            let (v,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                .fetch_one(&pool)
                .await
                .unwrap();
            v
        }
    };
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(get("synchronous").await, 1, "NORMAL");
    assert_eq!(get("busy_timeout").await, 5000);
}
