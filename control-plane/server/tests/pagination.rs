//! Cursor paging (`?after=<ID>&size=N`): a reader paging through a list while others create and
//! delete sees every object that existed throughout exactly once, on both backends.

mod common;

use common::Harness;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

async fn cursor_pages_survive_concurrent_writes(h: &Harness) {
    // 1 200 objects, created concurrently in batches.
    let mut ids = Vec::new();
    for batch in 0..12 {
        let posts = (0..100).map(|i| {
            h.post(
                "aws-accounts",
                json!({"Name": format!("acct-{batch:02}-{i:03}"), "AccountID": format!("{batch}{i}")}),
            )
        });
        for r in futures::future::join_all(posts).await {
            assert_eq!(r.status, 201, "{}", r.body);
            ids.push(r.id());
        }
    }
    // Between pages: create two, delete one of the originals (from the far end, so some not
    // yet read go), so OFFSET paging would skip or repeat.
    let mut deleted = BTreeSet::new();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut after: Option<u64> = None;
    let mut pages = 0;
    loop {
        let path = match after {
            Some(a) => format!("/v0/aws-accounts?after={a}&size=100"),
            None => "/v0/aws-accounts?size=100".to_string(),
        };
        let r = h.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["Data"].as_array().cloned().unwrap_or_default();
        for o in &items {
            *seen.entry(o["ID"].as_u64().unwrap()).or_default() += 1;
        }
        // TotalCount is of everything that matches, not what is left after the cursor.
        let total = r.body["Meta"]["TotalCount"].as_u64().unwrap();
        assert!(total >= 1200 - deleted.len() as u64, "TotalCount {total}");
        pages += 1;
        assert!(pages <= 30, "the cursor does not advance");
        if items.len() < 100 {
            break;
        }
        after = items.last().and_then(|o| o["ID"].as_u64());
        for k in 0..2 {
            let r = h
                .post(
                    "aws-accounts",
                    json!({"Name": format!("new-{pages}-{k}"), "AccountID": "1"}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
        }
        let victim = ids[ids.len() - 1 - deleted.len() * 7];
        assert_eq!(h.delete("aws-accounts", victim).await.status, 200);
        deleted.insert(victim);
    }
    assert!(pages >= 12, "{pages} pages");
    for id in &ids {
        if deleted.contains(id) {
            continue;
        }
        assert_eq!(
            seen.get(id),
            Some(&1),
            "object {id}, there throughout, seen exactly once"
        );
    }
    assert!(seen.values().all(|n| *n == 1), "no object seen twice");

    // TotalCount is kept as objects come and go, not counted per page: it is exact, for a whole
    // kind and for a filtered list, also after a delete that cascades.
    let total = |path: String| async move {
        let r = h.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["Meta"]["TotalCount"].as_u64().unwrap()
    };
    let listed = 1200 - deleted.len() as u64 + 2 * (pages as u64 - 1);
    assert_eq!(total("/v0/aws-accounts?size=1".into()).await, listed);
    assert_eq!(
        total("/v0/aws-accounts?name=acct-00-000&size=1".into()).await,
        1
    );
    let def = h
        .post(
            "workload-definitions",
            json!({"Name": "counted", "YAMLDocument": "kind: ConfigMap", "Reconciled": true}),
        )
        .await;
    let before = total("/v0/workload-resource-definitions?size=1".into()).await;
    for i in 0..3 {
        let r = h
            .post(
                "workload-resource-definitions",
                json!({"JSONDefinition": {"i": i}, "WorkloadDefinitionID": def.id()}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(
        total("/v0/workload-resource-definitions?size=1".into()).await,
        before + 3
    );
    // A reconciled definition's delete is two-phase: confirm it, and its rows cascade.
    assert_eq!(h.delete("workload-definitions", def.id()).await.status, 200);
    let r = h
        .patch(
            "workload-definitions",
            def.id(),
            json!({"DeletionConfirmed": "2026-12-01T00:00:00Z"}),
        )
        .await;
    assert!(r.status == 200 || r.status == 404, "{}", r.body);
    assert_eq!(
        total("/v0/workload-resource-definitions?size=1".into()).await,
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_on_the_embedded_backend() {
    cursor_pages_survive_concurrent_writes(&Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_on_postgres() {
    cursor_pages_survive_concurrent_writes(&Harness::postgres_nats().await).await;
}

/// A cursor past the last ID gives an empty page; one that is not a number is a 400 naming it.
#[tokio::test]
async fn cursor_edges() {
    let h = Harness::sqlite().await;
    let r = h.get(&format!("/v0/aws-accounts?after={}", u64::MAX)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Data"].as_array().map_or(0, Vec::len), 0);
    let r = h.get("/v0/aws-accounts?after=soon").await;
    assert_eq!(r.status, 400);
    assert!(
        r.error().contains("after must be an object ID"),
        "{}",
        r.body
    );
}
