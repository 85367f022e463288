//! One test feeds `tptctl` and the dashboard the same objects and checks that they say the same
//! thing: the status word of every object (the dashboard adds only its text marker), its age
//! against one clock, and the "why" (reason, deepest cause, warnings).

use crate::output;
use serde_json::{Value, json};
use std::collections::HashMap;
use threeport_api::kinds::{self, Kind};
use threeport_api::status::{self, Snapshot};
use threeport_tui::app::rows;
use threeport_tui::store::Store;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-02 12:00:00 UTC);

fn at(mins_ago: i64) -> String {
    threeport_api::object::format_time(NOW - time::Duration::minutes(mins_ago))
}

fn objects() -> Vec<(&'static Kind, Vec<Value>)> {
    vec![
        (
            kinds::WORKLOAD_DEFINITION,
            vec![json!({"ID": 1, "Name": "web", "CreatedAt": at(90), "Reconciled": true})],
        ),
        (
            kinds::WORKLOAD_INSTANCE,
            vec![
                json!({"ID": 2, "Name": "web", "WorkloadDefinitionID": 1, "CreatedAt": at(80),
                       "Reconciled": true, "Status": "Degraded", "StatusReason": "1 of 2 objects not ready"}),
                json!({"ID": 3, "Name": "api", "WorkloadDefinitionID": 1, "CreatedAt": at(3),
                       "Reconciled": false}),
            ],
        ),
        (
            kinds::WORKLOAD_RESOURCE_INSTANCE,
            vec![
                json!({"ID": 4, "WorkloadInstanceID": 2, "CreatedAt": at(79), "Reconciled": true,
                       "JSONDefinition": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}}),
            ],
        ),
        (
            kinds::WORKLOAD_EVENT,
            vec![
                json!({"ID": 5, "WorkloadInstanceID": 2, "WorkloadResourceInstanceID": 4,
                        "Type": "Warning", "Reason": "BackOff", "Message": "Back-off pulling image \"nginx:nope\"",
                        "Timestamp": at(1), "CreatedAt": at(1)}),
            ],
        ),
        (
            kinds::HELM_WORKLOAD_DEFINITION,
            vec![
                json!({"ID": 6, "Name": "redis", "Repo": "https://charts.example.com", "Chart": "redis",
                        "CreatedAt": at(200), "Reconciled": false, "Status": "Pending",
                        "StatusReason": "no controller for HelmWorkloadDefinition is running in this control plane"}),
            ],
        ),
        (
            kinds::HELM_WORKLOAD_INSTANCE,
            vec![
                json!({"ID": 7, "Name": "redis", "HelmWorkloadDefinitionID": 6, "CreatedAt": at(150),
                        "Reconciled": false, "Status": "Pending",
                        "StatusReason": "no controller for HelmWorkloadInstance is running in this control plane"}),
            ],
        ),
        (
            kinds::CONTROLLER,
            vec![
                json!({"ID": 8, "Name": "host-42", "Controllers": ["workload"], "Kinds": ["WorkloadInstance"],
                        "HeartbeatAt": at(10), "Status": "Gone", "StatusReason": "no heartbeat since …",
                        "CreatedAt": at(60)}),
            ],
        ),
    ]
}

/// The CLI's table, as `(name, status, age)` per row.
fn cli_rows(kind: &'static Kind, objs: &[Value], snap: &Snapshot) -> Vec<(String, String, String)> {
    let text = output::table(kind, objs, &HashMap::new(), snap, false, NOW);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let col = |name: &str| header.find(name).unwrap();
    let (status_at, age_at) = (col("STATUS"), col("AGE"));
    lines
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().to_string();
            let status = l[status_at..age_at].trim().to_string();
            let age = l[age_at..].trim().to_string();
            (name, status, age)
        })
        .collect()
}

#[test]
fn the_cli_and_the_dashboard_say_the_same_words() {
    let mut store = Store::new();
    let mut snap = Snapshot::default();
    for (kind, objs) in objects() {
        store.replace(kind, objs.clone());
        snap.extend(kind, objs);
    }
    let mut compared = 0;
    for (kind, objs) in objects() {
        if kind.is_event() {
            continue;
        }
        let cli = cli_rows(kind, &objs, &snap);
        let (columns, tui) = rows::object_rows(&store, &[kind], None);
        let status_col = columns.iter().position(|c| c.title == "STATUS");
        assert_eq!(cli.len(), tui.len(), "{}", kind.name);
        for (name, word, age) in &cli {
            let row = tui.iter().find(|r| &r.cells[0] == name).unwrap();
            if let Some(i) = status_col {
                // The dashboard adds a text marker (colour is never the only signal).
                let shown = row.cells[i].as_str();
                let plain = shown.split_once(' ').map_or(shown, |(_, w)| w);
                assert_eq!(plain, word, "{} {name}: dashboard {shown:?}", kind.name);
            }
            assert_eq!(&status::age(row.time, NOW), age, "{} {name}", kind.name);
            compared += 1;
        }
        // The why: `tptctl why` reads a Snapshot, the dashboard its Store.
        for o in &objs {
            let id = o["ID"].as_u64().unwrap();
            let a = status::why(&snap, kind, id).map(|w| w.lines(NOW));
            let b = status::why(&store, kind, id).map(|w| w.lines(NOW));
            assert_eq!(a, b, "{} {id}", kind.name);
        }
    }
    assert_eq!(compared, 7);
    // And the words themselves, as a person reads them.
    let why = status::why(&snap, kinds::WORKLOAD_DEFINITION, 1).unwrap();
    assert_eq!(
        why.cause.unwrap().one_line(),
        "workload-instance/web › Warning BackOff: Back-off pulling image \"nginx:nope\""
    );
    let pending = cli_rows(kinds::HELM_WORKLOAD_INSTANCE, &objects()[5].1, &snap);
    assert_eq!(pending[0].1, "Pending");
    // Events: the same line in `get events` and the dashboard's events view.
    let events = output::table(
        kinds::WORKLOAD_EVENT,
        &objects()[3].1,
        &HashMap::new(),
        &snap,
        false,
        NOW,
    );
    assert_eq!(
        events
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()[..3],
        ["Warning", "BackOff", "Deployment/web"]
    );
    let lines = status::events_for(&store, kinds::WORKLOAD_INSTANCE, 2);
    assert_eq!(lines[0].object, "Deployment/web");
}
