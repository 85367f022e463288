//! Notifications (JetStream and the in-process bus), the outbox under a NATS outage, and the
//! watch stream.

mod common;

use async_nats::jetstream::{self, consumer::pull};
use common::Harness;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use threeport_api::{Client, kinds};

/// Every message currently (or soon) on `subject`, read with a fresh pull consumer until
/// `want` distinct object IDs arrived or the deadline passed. Returns (IDs, messages seen).
async fn collect(
    nats_url: &str,
    stream: &str,
    subject: &str,
    want: usize,
    deadline: Duration,
) -> (HashSet<u64>, Vec<Value>) {
    let client = async_nats::connect(nats_url)
        .await
        .expect("connect to nats");
    let js = jetstream::new(client);
    let start = tokio::time::Instant::now();
    let stream = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(_) if start.elapsed() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("stream {stream} never appeared: {e}"),
        }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_string(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut ids = HashSet::new();
    let mut all = Vec::new();
    while ids.len() < want {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, messages.next()).await {
            Ok(Some(Ok(m))) => {
                assert_eq!(m.subject.as_str(), subject);
                let v: Value = serde_json::from_slice(&m.payload).expect("JSON message");
                ids.insert(v["Object"]["ID"].as_u64().expect("object ID"));
                all.push(v);
                m.ack().await.expect("ack");
            }
            Ok(other) => panic!("message stream ended: {other:?}"),
            Err(_) => break,
        }
    }
    (ids, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_instance_create_is_published_on_the_workload_stream() {
    let h = Harness::postgres_nats().await;
    // This test plays the workload controller (a delete of an object no controller serves or
    // ever touched needs no second phase).
    h.register_controller("test-workload", &["WorkloadDefinition", "WorkloadInstance"])
        .await;
    let def = h.seed_definition("js-web").await;
    let r = h
        .post(
            "workload-instances",
            json!({"Name": "js-web", "WorkloadDefinitionID": def}),
        )
        .await;
    assert_eq!(r.status, 201);
    let url = h.nats.as_ref().unwrap().url();
    let (ids, msgs) = collect(
        &url,
        "workloadStream",
        "workloadInstance.create",
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(ids, HashSet::from([r.id()]));
    let m = &msgs[0];
    assert_eq!(m["Operation"], "Created");
    assert_eq!(m["ObjectVersion"], "v0");
    assert!(m["CreationTime"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(m["Object"]["Name"], "js-web");
    assert_eq!(m["Object"]["WorkloadDefinitionID"].as_u64(), Some(def));

    // A spec change publishes .update; a status-only change by a controller does not.
    let w = h
        .patch(
            "workload-instances",
            r.id(),
            json!({"Status": "Healthy", "Reconciled": true}),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let w = h
        .patch(
            "workload-definitions",
            def,
            json!({"YAMLDocument": "kind: Secret\n"}),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let (ids, _) = collect(
        &url,
        "workloadStream",
        "workloadDefinition.update",
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(ids, HashSet::from([def]));
    let (ids, _) = collect(
        &url,
        "workloadStream",
        "workloadInstance.update",
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        ids.is_empty(),
        "a status PATCH must not notify the controller"
    );
    // Two-phase delete notifies .delete.
    assert_eq!(h.delete("workload-instances", r.id()).await.status, 200);
    let (ids, msgs) = collect(
        &url,
        "workloadStream",
        "workloadInstance.delete",
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(ids, HashSet::from([r.id()]));
    assert_eq!(msgs[0]["Operation"], "Deleted");
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_everything_created_while_nats_was_down() {
    let h = Harness::postgres_nats().await;
    let nats = h.nats.as_ref().unwrap();
    // One notification first, so the streams exist before the outage.
    let first = h.seed_definition("outage-0").await;
    let (ids, _) = collect(
        &nats.url(),
        "workloadStream",
        "workloadDefinition.create",
        1,
        Duration::from_secs(15),
    )
    .await;
    assert!(ids.contains(&first));

    nats.stop().unwrap();
    let mut created = HashSet::from([first]);
    for i in 1..=100 {
        let r = h
            .post(
                "workload-definitions",
                json!({"Name": format!("outage-{i}"), "YAMLDocument": "x"}),
            )
            .await;
        assert_eq!(
            r.status, 201,
            "writes succeed while NATS is down: {}",
            r.body
        );
        created.insert(r.id());
    }
    nats.restart().unwrap();
    let (ids, msgs) = collect(
        &nats.url(),
        "workloadStream",
        "workloadDefinition.create",
        101,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        ids, created,
        "every notification arrives after NATS comes back"
    );
    eprintln!(
        "{} messages for {} objects (duplicates are dropped by JetStream's Nats-Msg-Id window)",
        msgs.len(),
        ids.len()
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_notifies_the_in_process_bus() {
    let h = Harness::sqlite().await;
    let mut rx = h
        .server
        .local_bus
        .as_ref()
        .expect("embedded mode has a local bus")
        .subscribe();
    let def = h.seed_definition("local").await;
    let inst = h
        .post(
            "workload-instances",
            json!({"Name": "local", "WorkloadDefinitionID": def}),
        )
        .await
        .id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("notification arrives")
            .unwrap();
        if m.subject == "workloadInstance.create" {
            assert_eq!(m.stream, "workloadStream");
            let v: Value = serde_json::from_str(&m.payload).unwrap();
            assert_eq!(v["Object"]["ID"].as_u64(), Some(inst));
            break;
        }
    }
    h.server.shutdown().await;
}

async fn watch_and_resume(h: &Harness) {
    let client = Client::new(&h.base, None).unwrap();
    let kinds = [
        kinds::lookup("workload-definitions").unwrap(),
        kinds::lookup("aws-accounts").unwrap(),
    ];
    let mut stream = Box::pin(client.watch(&kinds, None).await.expect("watch"));
    // Not watched: must not show up.
    let krd = h
        .post(
            "kubernetes-runtime-definitions",
            json!({"Name": "w-krd", "InfraProvider": "kind"}),
        )
        .await;
    assert_eq!(krd.status, 201);
    let a = h.seed_definition("watch-a").await;
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("event pushed")
        .unwrap()
        .unwrap();
    let (last_id, ev) = next;
    assert_eq!(ev.operation, "created");
    assert_eq!(ev.kind, "WorkloadDefinition");
    assert_eq!(ev.object["ID"].as_u64(), Some(a));
    drop(stream);

    // While disconnected: create, update, and a plain kind created then deleted.
    let b = h.seed_definition("watch-b").await;
    let w = h
        .patch(
            "workload-definitions",
            b,
            json!({"YAMLDocument": "changed"}),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let acct = h
        .post(
            "aws-accounts",
            json!({"Name": "w-acct", "AccountID": "1", "SecretAccessKey": "hush"}),
        )
        .await
        .id();
    assert_eq!(h.delete("aws-accounts", acct).await.status, 200);

    let mut resumed = Box::pin(client.watch(&kinds, Some(&last_id)).await.expect("resume"));
    let mut got = Vec::new();
    while got.len() < 4 {
        let (_, ev) = tokio::time::timeout(Duration::from_secs(5), resumed.next())
            .await
            .expect("replayed")
            .unwrap()
            .unwrap();
        got.push((
            ev.operation.clone(),
            ev.kind.clone(),
            ev.object["ID"].as_u64().unwrap(),
        ));
        assert_ne!(
            ev.object["SecretAccessKey"], "hush",
            "secrets are redacted in the watch stream"
        );
    }
    assert_eq!(
        got,
        vec![
            ("created".into(), "WorkloadDefinition".into(), b),
            ("updated".into(), "WorkloadDefinition".into(), b),
            ("created".into(), "AwsAccount".into(), acct),
            ("deleted".into(), "AwsAccount".into(), acct),
        ]
    );
    // And it goes on live after the replay.
    let c = h.seed_definition("watch-c").await;
    let (_, ev) = tokio::time::timeout(Duration::from_secs(5), resumed.next())
        .await
        .expect("live")
        .unwrap()
        .unwrap();
    assert_eq!(ev.object["ID"].as_u64(), Some(c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_sqlite() {
    let h = Harness::sqlite().await;
    watch_and_resume(&h).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_postgres() {
    let h = Harness::postgres_nats().await;
    watch_and_resume(&h).await;
    h.server.shutdown().await;
}

/// A change that commits behind the watch tailer's cursor (its transaction started first, so
/// its position is older than changes already sent) still reaches watchers, soon after: the
/// tailer re-reads its reorder window, though not on every wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_behind_the_tailers_cursor_is_still_sent() {
    let h = Harness::sqlite().await;
    let api = Client::new(&h.base, None).unwrap();
    let mut watch = Box::pin(api.watch(&[kinds::AWS_ACCOUNT], None).await.unwrap());
    let first = h
        .post("aws-accounts", json!({"Name": "first", "AccountID": "1"}))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(next_name(&mut watch).await, "first");
    // A row whose position is a second older than what was sent, as a transaction that began
    // then and commits now leaves it.
    let late_seq = threeport_server::ids::floor_for_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            - 1000,
    ) + 7;
    let object = json!({"ID": 42, "Name": "late", "AccountID": "2"});
    let payload =
        json!({"Operation": "Created", "CreationTime": 0, "Object": object, "ObjectVersion": "v0"});
    let pool = sqlx::SqlitePool::connect(&h.database_url).await.unwrap();
    sqlx::query(
        "INSERT INTO outbox (seq, kind, object_id, event, stream, subject, payload, created_at, published_at) \
         VALUES ($1, 'AwsAccount', 42, 'created', NULL, NULL, $2, $3, NULL)",
    )
    .bind(late_seq)
    .bind(payload.to_string())
    .bind(0_i64)
    .execute(&pool)
    .await
    .unwrap();
    // Something newer, which the tailer reads past the late row first.
    let after = h
        .post("aws-accounts", json!({"Name": "after", "AccountID": "3"}))
        .await;
    assert_eq!(after.status, 201, "{}", after.body);
    let mut names = vec![next_name(&mut watch).await, next_name(&mut watch).await];
    names.sort();
    assert_eq!(names, ["after", "late"]);
}

/// The name of the next object a watch sends (within 5 s).
async fn next_name<S>(w: &mut S) -> String
where
    S: futures::Stream<Item = Result<(String, threeport_api::WatchEvent), threeport_api::ApiError>>
        + Unpin,
{
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("a watch event within 5 s");
    ev.unwrap().unwrap().1.object["Name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
