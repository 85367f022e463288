//! CockroachDB runs every transaction SERIALIZABLE and reports conflicts as SQLSTATE 40001; the
//! test PostgreSQL runs the same way (`default_transaction_isolation = serializable`, set by the
//! testkit). Conflicting writes must be retried by the store until they succeed, with nothing
//! lost.

use serde_json::{Map, Value, json};
use std::sync::Arc;
use threeport_api::kinds::{WORKLOAD_DEFINITION, WORKLOAD_INSTANCE};
use threeport_server::store::{Page, Store, StoreError};
use threeport_testkit::{shared_postgres, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serialization_conflicts_are_retried_and_nothing_is_lost() {
    let pg = shared_postgres();
    let db = unique_name("serial");
    let url = pg.url(&db);
    Store::create_database_if_missing(&url).await.unwrap();
    let store = Arc::new(Store::connect(&url).await.unwrap());
    store.migrate().await.unwrap();

    // The database really is serializable.
    let level: (String,) = sqlx::query_as("SHOW default_transaction_isolation")
        .fetch_one(&sqlx::PgPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(level.0, "serializable");

    let body = |v: Value| -> Map<String, Value> { v.as_object().cloned().unwrap() };
    let def = store
        .insert(
            WORKLOAD_DEFINITION,
            &body(json!({"Name": "web", "YAMLDocument": "kind: ConfigMap\n", "Reconciled": true})),
            false,
        )
        .await
        .unwrap();

    // Two conflicting transactions at a time, many times over: writers of one row race (each
    // read the same version), and creators race on the same index. Under SERIALIZABLE the
    // loser of each race gets 40001, which the store retries.
    let mut rounds = 0;
    while store.retries() == 0 && rounds < 20 {
        rounds += 1;
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            let def_id = def.id;
            tasks.push(tokio::spawn(async move {
                let name = format!("web-{rounds}-{i}");
                store
                    .insert(
                        WORKLOAD_INSTANCE,
                        &body(json!({"Name": name, "WorkloadDefinitionID": def_id as u64,
                                     "Reconciled": false})),
                        true,
                    )
                    .await
                    .map(|_| ())
            }));
        }
        for t in tasks {
            t.await
                .unwrap()
                .expect("a create that conflicted was retried to success");
        }
        // Same-row writers: each reads the current version, then writes it; exactly one wins
        // each version, the others see a stale version (after any 40001 retries).
        let current = store.fetch(WORKLOAD_DEFINITION, def.id).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let (id, version) = (current.id, current.version);
            let mut b = current.body.clone();
            b.insert(
                "YAMLDocument".into(),
                json!(format!("kind: ConfigMap # {rounds}.{i}\n")),
            );
            tasks.push(tokio::spawn(async move {
                store
                    .update(WORKLOAD_DEFINITION, id, version, &b, None)
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(StoreError::StaleVersion { .. }) => {}
                Err(e) => panic!("a conflicting update must be retried, not fail: {e}"),
            }
        }
        assert_eq!(won, 1, "exactly one writer of a version wins");
    }
    assert!(
        store.retries() > 0,
        "no serialization conflict was provoked in {rounds} rounds"
    );
    // Nothing lost: every create is there, each with its notification.
    let (_, total) = store
        .list(WORKLOAD_INSTANCE, None, &[], Page::number(1), 1)
        .await
        .unwrap();
    assert_eq!(total, 16 * rounds as u64);
    let pending = store.pending_notifications(10_000).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .filter(|r| r.subject.as_deref() == Some("workloadInstance.create"))
            .count() as u64,
        total
    );
    eprintln!(
        "{} serialization conflicts retried over {rounds} round(s)",
        store.retries()
    );
}

/// A client that disconnects mid-request drops the handler's future wherever it is, including
/// while `BEGIN` is in flight (sqlx's PostgreSQL `begin` is not cancel-safe: launchbadge/sqlx#4393).
/// No connection may go back to the pool inside a transaction: the database shows none
/// `idle in transaction`, and every later write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_cancelled_at_any_point_leave_no_connection_inside_a_transaction() {
    let pg = shared_postgres();
    let db = unique_name("cancel");
    let url = pg.url(&db);
    Store::create_database_if_missing(&url).await.unwrap();
    let store = Arc::new(Store::connect(&url).await.unwrap());
    store.migrate().await.unwrap();
    let body = |v: Value| -> Map<String, Value> { v.as_object().cloned().unwrap() };
    let def = store
        .insert(
            WORKLOAD_DEFINITION,
            &body(json!({"Name": "web", "YAMLDocument": "kind: ConfigMap\n", "Reconciled": true})),
            false,
        )
        .await
        .unwrap();
    // Cancel updates after 0–2 ms: some before BEGIN is sent, some while it is in flight, some
    // mid-transaction, some after COMMIT.
    for i in 0..400u64 {
        let current = store.fetch(WORKLOAD_DEFINITION, def.id).await.unwrap();
        let mut b = current.body.clone();
        b.insert(
            "YAMLDocument".into(),
            json!(format!("kind: ConfigMap # {i}\n")),
        );
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros((i * 37) % 2000),
            store.update(WORKLOAD_DEFINITION, current.id, current.version, &b, None),
        )
        .await;
    }
    // Released connections flush their queued ROLLBACK on the way back to the pool.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let admin = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    let stuck: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(&db)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(stuck.0, 0, "connections left idle in a transaction");
    for i in 0..50 {
        let current = store.fetch(WORKLOAD_DEFINITION, def.id).await.unwrap();
        let mut b = current.body.clone();
        b.insert(
            "YAMLDocument".into(),
            json!(format!("kind: ConfigMap # after {i}\n")),
        );
        store
            .update(WORKLOAD_DEFINITION, current.id, current.version, &b, None)
            .await
            .unwrap_or_else(|e| panic!("write {i} after the cancellations failed: {e}"));
    }
}
