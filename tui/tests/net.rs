//! The network task against a real API server (SQLite): list, follow the watch stream, survive a
//! restart by resuming from the last event ID (no relist), and list kinds asked for later.

use serde_json::json;
use std::time::Duration;
use threeport_api::{Client, kinds};
use threeport_tui::net::{NetCmd, NetMsg, watch_loop};
use tokio::sync::mpsc;

async fn start(db: &str, port: u16) -> threeport_server::Server {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    threeport_server::start(threeport_server::ServeConfig::new(addr, db))
        .await
        .unwrap()
}

/// The next message matching `pred`; everything before it is returned too.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<NetMsg>,
    what: &str,
    pred: impl Fn(&NetMsg) -> bool,
) -> Vec<NetMsg> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => {
                let done = pred(&m);
                seen.push(m);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("the network task ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; got {seen:#?}"),
        }
    }
}

fn created(m: &NetMsg, name: &str) -> bool {
    matches!(m, NetMsg::Event(ev) if ev.object["Name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_follows_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tp.db").display());
    let port = threeport_testkit::free_port();
    let server = start(&db, port).await;
    let client = Client::new(&server.url(), None).unwrap();
    let aws = kinds::AWS_ACCOUNT;
    client
        .create(aws, &json!({"Name": "a0", "AccountID": "0"}))
        .await
        .unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(watch_loop(client.clone(), vec![aws], tx, cmd_rx));

    // Initial state by list, then live.
    let first = until(&mut rx, "connected", |m| matches!(m, NetMsg::Connected)).await;
    assert!(
        first
            .iter()
            .any(|m| matches!(m, NetMsg::Snapshot { kind, objects }
            if std::ptr::eq(*kind, aws) && objects.len() == 1)),
        "{first:#?}"
    );
    client
        .create(aws, &json!({"Name": "a1", "AccountID": "1"}))
        .await
        .unwrap();
    until(&mut rx, "a1 pushed", |m| created(m, "a1")).await;

    // The server goes away: the task says so and keeps retrying.
    server.shutdown().await;
    until(
        &mut rx,
        "disconnected",
        |m| matches!(m, NetMsg::Disconnected { attempt, .. } if *attempt >= 2),
    )
    .await;

    // Back on the same data: a change made before the task reconnects is replayed from the
    // last event ID, without listing again.
    let server = start(&db, port).await;
    client
        .create(aws, &json!({"Name": "a2", "AccountID": "2"}))
        .await
        .unwrap();
    let after = until(&mut rx, "a2 after the restart", |m| created(m, "a2")).await;
    assert!(
        after.iter().any(|m| matches!(m, NetMsg::Connected)),
        "{after:#?}"
    );
    assert!(
        !after.iter().any(|m| matches!(m, NetMsg::Snapshot { .. })),
        "resumed, not relisted: {after:#?}"
    );

    // A kind asked for later is listed, then followed.
    let wd = kinds::WORKLOAD_DEFINITION;
    cmd_tx.send(NetCmd::Load(wd)).unwrap();
    until(
        &mut rx,
        "the workload definitions",
        |m| matches!(m, NetMsg::Snapshot { kind, .. } if std::ptr::eq(*kind, wd)),
    )
    .await;
    client
        .create(wd, &json!({"Name": "w", "YAMLDocument": "kind: ConfigMap"}))
        .await
        .unwrap();
    until(&mut rx, "w pushed", |m| created(m, "w")).await;

    // The task ends with the UI.
    drop(rx);
    drop(cmd_tx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends when the UI is gone")
        .unwrap();
    server.shutdown().await;
}
