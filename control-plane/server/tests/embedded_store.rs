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

/// Writes that wait for the writer share its next commit, each in a savepoint of its own: one
/// that fails (a name already taken) leaves nothing behind, not even its outbox row, and the
/// others in the same commit still land. A write refused because of another in its batch (the
/// same new name) is answered only once that other is visible, so a caller that re-reads after
/// a conflict finds the object that took its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_for_the_writer_share_one_commit_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(store(&dir).await);
    store
        .insert(
            WORKLOAD_DEFINITION,
            &body(json!({"Name": "taken", "YAMLDocument": "kind: ConfigMap\n"})),
            false,
        )
        .await
        .unwrap();
    let before = store
        .group_commit_stats()
        .expect("SQLite has a group writer");
    assert_eq!(
        (before.writes, before.commits),
        (1, 1),
        "a write to an idle writer commits alone"
    );

    // Hold the writer's only connection, so the next writes queue as they would behind a
    // long write.
    let held = store.pool().begin().await.unwrap();
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let name = match i {
                7 => "taken".to_string(),
                12 => "w3".to_string(),
                _ => format!("w{i}"),
            };
            tokio::spawn(async move {
                let r = store
                    .insert(
                        WORKLOAD_DEFINITION,
                        &body(json!({"Name": name, "YAMLDocument": "kind: ConfigMap\n"})),
                        true,
                    )
                    .await;
                // What a caller that lost the name sees when it re-reads at once.
                let seen = store
                    .list(WORKLOAD_DEFINITION, Some(&name), &[], Page::number(1), 10)
                    .await
                    .unwrap()
                    .1;
                (r, seen)
            })
        })
        .collect();
    // Every write handed to the writer (well inside the store's 3 s acquire timeout).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while store.group_commit_stats().unwrap().submitted < before.submitted + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writes never reached the writer"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (listed, _) = store
        .list(WORKLOAD_DEFINITION, None, &[], Page::number(1), 100)
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "nothing queued is visible before its commit"
    );
    held.rollback().await.unwrap();

    let mut failed = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        match w.await.unwrap() {
            (Ok(_), _) => {}
            (Err(e), seen) => failed.push((i, e.to_string(), seen)),
        }
    }
    // Which of the two writes of "w3" (3 and 12) wins depends on which task ran first.
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().any(|(i, e, _)| *i == 7 && e.contains("named \"taken\" already exists"))
            && failed.iter().any(|(i, e, _)| (*i == 3 || *i == 12)
                && e.contains("named \"w3\" already exists")),
        "{failed:?}"
    );
    assert_eq!(
        (failed[0].2, failed[1].2),
        (1, 1),
        "the object that holds the name is visible when the conflict is answered"
    );
    let after = store.group_commit_stats().unwrap();
    assert_eq!(after.writes - before.writes, 20);
    assert_eq!(
        after.commits - before.commits,
        1,
        "the 20 queued writes shared one commit"
    );
    let (listed, total) = store
        .list(WORKLOAD_DEFINITION, None, &[], Page::number(1), 100)
        .await
        .unwrap();
    assert_eq!(
        (listed.len(), total),
        (19, 19),
        "taken + the 18 that succeeded"
    );
    let changes = store.changes_after(0, 1000).await.unwrap();
    assert_eq!(
        changes.len(),
        19,
        "one outbox row per committed create; none from the two that failed"
    );
}
