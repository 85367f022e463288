//! Snapshot tests of every view, rendered with ratatui's `TestBackend` from a fixed data set and a
//! fixed "now", so ages and layouts never drift.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::REDACTED;
use threeport_api::kinds::{self, Kind};
use threeport_tui::app::{App, View, core_kinds};
use threeport_tui::keymap::Keymap;
use threeport_tui::net::NetMsg;
use threeport_tui::ui;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-20 12:00:00 UTC);

fn at(mins_ago: i64) -> String {
    (NOW - time::Duration::minutes(mins_ago))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn fixture() -> Vec<(&'static Kind, Vec<Value>)> {
    vec![
        (
            kinds::KUBERNETES_RUNTIME_DEFINITION,
            vec![
                json!({"ID": 100, "Name": "kind", "InfraProvider": "kind", "CreatedAt": at(600), "Reconciled": true}),
                json!({"ID": 101, "Name": "eks", "InfraProvider": "eks", "CreatedAt": at(600), "Reconciled": true}),
            ],
        ),
        (
            kinds::KUBERNETES_RUNTIME_INSTANCE,
            vec![
                json!({"ID": 110, "Name": "dev-0", "KubernetesRuntimeDefinitionID": 100, "Location": "Local",
                       "Status": "Healthy", "Reconciled": true, "CreatedAt": at(590), "CACertificate": REDACTED}),
                json!({"ID": 111, "Name": "eks-prod", "KubernetesRuntimeDefinitionID": 101, "Location": "us-east-1",
                       "Status": "Failed", "StatusReason": "node group creation failed", "CreationFailed": at(100),
                       "Reconciled": true, "CreatedAt": at(120)}),
            ],
        ),
        (
            kinds::CONTROL_PLANE_DEFINITION,
            vec![json!({"ID": 1, "Name": "genesis", "CreatedAt": at(3000), "Reconciled": true})],
        ),
        (
            kinds::CONTROL_PLANE_INSTANCE,
            vec![
                json!({"ID": 120, "Name": "threeport-dev", "ControlPlaneDefinitionID": 1, "Genesis": true,
                        "IsSelf": true, "Status": "Healthy", "Reconciled": true, "CreatedAt": at(3000),
                        "ClientKey": REDACTED}),
            ],
        ),
        (
            kinds::WORKLOAD_DEFINITION,
            vec![
                json!({"ID": 200, "Name": "web", "YAMLDocument": "kind: Deployment", "Reconciled": true, "CreatedAt": at(60)}),
                json!({"ID": 201, "Name": "api", "YAMLDocument": "kind: Deployment", "Reconciled": false, "CreatedAt": at(1)}),
            ],
        ),
        (
            kinds::WORKLOAD_INSTANCE,
            vec![
                json!({"ID": 300, "Name": "web", "WorkloadDefinitionID": 200, "KubernetesRuntimeInstanceID": 110,
                       "Status": "Healthy", "Reconciled": true, "CreatedAt": at(59)}),
                json!({"ID": 301, "Name": "web-canary", "WorkloadDefinitionID": 200, "KubernetesRuntimeInstanceID": 110,
                       "Status": "Degraded", "StatusReason": "1 of 2 resources not ready", "Reconciled": true,
                       "CreatedAt": at(30)}),
                json!({"ID": 302, "Name": "api-staging", "WorkloadDefinitionID": 201, "KubernetesRuntimeInstanceID": 111,
                       "Reconciled": false, "CreatedAt": at(1)}),
                json!({"ID": 303, "Name": "web-old", "WorkloadDefinitionID": 200, "KubernetesRuntimeInstanceID": 110,
                       "Status": "Healthy", "Reconciled": true, "DeletionScheduled": at(2), "CreatedAt": at(1440 * 3)}),
            ],
        ),
        (
            kinds::WORKLOAD_RESOURCE_INSTANCE,
            vec![
                json!({"ID": 400, "WorkloadInstanceID": 301, "Reconciled": false, "CreatedAt": at(30),
                       "JSONDefinition": {"kind": "Deployment", "metadata": {"name": "web-canary"}}}),
                json!({"ID": 401, "WorkloadInstanceID": 301, "Reconciled": true, "CreatedAt": at(30),
                       "JSONDefinition": {"kind": "Service", "metadata": {"name": "web-canary"}}}),
                json!({"ID": 402, "WorkloadInstanceID": 300, "Reconciled": true, "CreatedAt": at(59),
                       "JSONDefinition": {"kind": "Deployment", "metadata": {"name": "web"}}}),
            ],
        ),
        (
            kinds::WORKLOAD_EVENT,
            vec![
                json!({"ID": 500, "WorkloadInstanceID": 301, "WorkloadResourceInstanceID": 400, "Type": "Normal",
                       "Reason": "Scheduled", "Message": "assigned to node dev-0-worker", "Timestamp": at(29)}),
                json!({"ID": 501, "WorkloadInstanceID": 301, "WorkloadResourceInstanceID": 400, "Type": "Warning",
                       "Reason": "BackOff", "Message": "Back-off pulling image \"nginx:9.99\"", "Timestamp": at(5)}),
                json!({"ID": 502, "WorkloadInstanceID": 300, "WorkloadResourceInstanceID": 402, "Type": "Normal",
                       "Reason": "Started", "Message": "Started container web", "Timestamp": at(58)}),
            ],
        ),
        (
            kinds::EVENT,
            vec![
                json!({"ID": 600, "ObjectKind": "KubernetesRuntimeInstance", "ObjectID": 111, "Type": "Warning",
                        "Reason": "ReconcileFailed", "Note": "AccessDenied: eks:CreateNodegroup",
                        "ReportingController": "kubernetes-runtime", "EventTime": at(100)}),
            ],
        ),
        (
            kinds::AWS_ACCOUNT,
            vec![
                json!({"ID": 700, "Name": "default-account", "AccountID": "111122223333", "DefaultAccount": true,
                        "DefaultRegion": "us-east-1", "AccessKeyID": REDACTED, "SecretAccessKey": REDACTED,
                        "CreatedAt": at(5000)}),
            ],
        ),
    ]
}

fn app() -> App {
    let mut app = App::new("dev", "https://127.0.0.1:1323", false, Keymap::default());
    app.no_color = true;
    for k in core_kinds() {
        app.on_net(NetMsg::Snapshot {
            kind: k,
            objects: vec![],
        });
    }
    for (k, objects) in fixture() {
        app.on_net(NetMsg::Snapshot { kind: k, objects });
    }
    app.on_net(NetMsg::Connected);
    app.refresh();
    app
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    app.resize(w, h);
    app.refresh();
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app, NOW)).unwrap();
    t
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn keys(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    render(app, w, h).backend().to_string()
}

#[test]
fn workloads_view_shows_the_deepest_cause() {
    let mut a = app();
    // Select web-canary (definition api, instance api-staging, definition web, web, web-canary).
    keys(&mut a, "jjjj");
    assert_eq!(a.selected_row().unwrap().cells[0], "└ web-canary");
    insta::assert_snapshot!("workloads", screen(&mut a, 120, 30));
}

#[test]
fn runtimes_view() {
    let mut a = app();
    a.run_command("runtimes");
    keys(&mut a, "j");
    insta::assert_snapshot!("runtimes", screen(&mut a, 120, 24));
}

#[test]
fn control_planes_view() {
    let mut a = app();
    a.run_command("control-planes");
    insta::assert_snapshot!("control_planes", screen(&mut a, 100, 20));
}

#[test]
fn events_view() {
    let mut a = app();
    a.run_command("events");
    insta::assert_snapshot!("events", screen(&mut a, 120, 20));
}

#[test]
fn any_kind_through_command_mode() {
    let mut a = app();
    key(&mut a, KeyCode::Char(':'));
    keys(&mut a, "aws-acc");
    key(&mut a, KeyCode::Tab);
    insta::assert_snapshot!("command_mode", screen(&mut a, 100, 20));
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen().view, View::Kind(kinds::AWS_ACCOUNT));
    insta::assert_snapshot!("aws_accounts", screen(&mut a, 100, 20));
}

#[test]
fn drill_down_definition_instances_resources_events() {
    let mut a = app();
    keys(&mut a, "jj");
    assert_eq!(a.selected_row().unwrap().cells[0], "web");
    key(&mut a, KeyCode::Enter);
    keys(&mut a, "j");
    insta::assert_snapshot!("drill_instances", screen(&mut a, 120, 24));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("drill_resources", screen(&mut a, 120, 24));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("drill_events", screen(&mut a, 120, 24));
    for _ in 0..3 {
        key(&mut a, KeyCode::Esc);
    }
    assert_eq!(a.screen().view, View::Workloads);
}

#[test]
fn describe_keeps_secrets_redacted() {
    let mut a = app();
    a.run_command("kri");
    key(&mut a, KeyCode::Char('d'));
    let s = screen(&mut a, 100, 40);
    assert!(s.contains("CACertificate: '*** redacted ***'"), "{s}");
    insta::assert_snapshot!("describe", s);
}

#[test]
fn events_of_one_object() {
    let mut a = app();
    a.run_command("runtimes");
    keys(&mut a, "je");
    insta::assert_snapshot!("object_events", screen(&mut a, 120, 16));
}

#[test]
fn filter() {
    let mut a = app();
    key(&mut a, KeyCode::Char('/'));
    keys(&mut a, "canary");
    insta::assert_snapshot!("filter_typing", screen(&mut a, 100, 16));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("filter_kept", screen(&mut a, 100, 16));
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut a = app();
    a.keymap = Keymap::from_yaml("keys:\n  describe: v\n  delete: [ctrl-x]\n").unwrap();
    a.keymap_source = "/home/me/.threeport/dashboard.yaml".into();
    key(&mut a, KeyCode::Char('?'));
    let s = screen(&mut a, 100, 34);
    assert!(s.contains("v                 describe the object"), "{s}");
    assert!(s.contains("ctrl-x"), "{s}");
    insta::assert_snapshot!("help", s);
}

#[test]
fn delete_confirmation_and_readonly() {
    let mut a = app();
    keys(&mut a, "jjjj");
    a.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
    keys(&mut a, "web-can");
    insta::assert_snapshot!("delete_confirm", screen(&mut a, 100, 24));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("delete_mismatch", screen(&mut a, 100, 24));

    let mut ro = app();
    ro.readonly = true;
    ro.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
    insta::assert_snapshot!("readonly_refused", screen(&mut ro, 100, 12));
}

#[test]
fn disconnected_banner_keeps_the_data() {
    let mut a = app();
    a.on_net(NetMsg::Disconnected {
        error: "cannot reach https://127.0.0.1:1323: Connection refused (os error 111)".into(),
        attempt: 3,
        retry_in: Duration::from_secs(1),
    });
    insta::assert_snapshot!("disconnected", screen(&mut a, 120, 14));
}

#[test]
fn empty_and_loading() {
    let mut a = App::new("dev", "http://127.0.0.1:1323", true, Keymap::default());
    a.no_color = true;
    insta::assert_snapshot!("loading", screen(&mut a, 80, 10));
    for k in core_kinds() {
        a.on_net(NetMsg::Snapshot {
            kind: k,
            objects: vec![],
        });
    }
    a.on_net(NetMsg::Connected);
    insta::assert_snapshot!("empty_readonly", screen(&mut a, 80, 10));
}

#[test]
fn tiny_windows_render_without_panic() {
    let mut a = app();
    keys(&mut a, "G");
    for (w, h) in [(20, 5), (1, 1), (5, 2), (120, 3), (10, 40), (40, 12)] {
        let _ = screen(&mut a, w, h);
        let s = a.screen();
        assert!(s.selected < a.row_count());
    }
    insta::assert_snapshot!("tiny_20x5", screen(&mut a, 20, 5));
    // Every overlay too.
    key(&mut a, KeyCode::Char('?'));
    let _ = screen(&mut a, 20, 5);
    key(&mut a, KeyCode::Esc);
    a.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
    let _ = screen(&mut a, 20, 5);
    key(&mut a, KeyCode::Esc);
    keys(&mut a, "d");
    let _ = screen(&mut a, 20, 5);
}

#[test]
fn no_color_means_no_colour_but_text_markers_stay() {
    let colours = |a: &mut App| -> usize {
        let t = render(a, 120, 30);
        t.backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    let mut plain = app();
    assert_eq!(colours(&mut plain), 0, "NO_COLOR: no colour at all");
    let mut coloured = app();
    coloured.no_color = false;
    assert!(colours(&mut coloured) > 0);
    // The failed status is also a text marker.
    let s = screen(&mut plain, 120, 30);
    assert!(s.contains("✗ Degraded"), "{s}");
    assert!(s.contains("⊘ Deleting"), "{s}");
}

#[test]
fn live_events_update_the_view() {
    let mut a = app();
    a.on_net(NetMsg::Event(threeport_api::WatchEvent {
        operation: "created".into(),
        kind: kinds::WORKLOAD_DEFINITION.name.into(),
        object: json!({"ID": 250, "Name": "blog", "YAMLDocument": "x", "CreatedAt": at(0)}),
    }));
    let s = screen(&mut a, 100, 20);
    assert!(s.contains("blog"), "{s}");
    a.on_net(NetMsg::Event(threeport_api::WatchEvent {
        operation: "deleted".into(),
        kind: kinds::WORKLOAD_DEFINITION.name.into(),
        object: json!({"ID": 250}),
    }));
    let s = screen(&mut a, 100, 20);
    assert!(!s.contains("blog"), "{s}");
}

/// Replace `kind`'s objects with the fixture's plus `extra`, as a fresh list would.
fn add(a: &mut App, kind: &'static Kind, extra: Vec<Value>) {
    let mut objects: Vec<Value> = fixture()
        .into_iter()
        .filter(|(k, _)| std::ptr::eq(*k, kind))
        .flat_map(|(_, v)| v)
        .collect();
    objects.extend(extra);
    a.on_net(NetMsg::Snapshot { kind, objects });
    a.refresh();
}

/// What the server stores for an object of a kind no running controller serves.
fn pending(kind: &Kind, fix: &str) -> Value {
    json!({"Status": "Pending", "Reconciled": false,
           "StatusReason": format!("no controller for {} is running in this control plane; {fix}", kind.name)})
}

fn with(mut o: Value, more: Value) -> Value {
    o.as_object_mut()
        .unwrap()
        .extend(more.as_object().unwrap().clone());
    o
}

#[test]
fn pending_objects_say_what_they_wait_for() {
    let mut a = app();
    let start = "start one with `threeport controllers --only workload`";
    add(
        &mut a,
        kinds::WORKLOAD_DEFINITION,
        vec![with(
            pending(kinds::WORKLOAD_DEFINITION, start),
            json!({"ID": 210, "Name": "queue", "YAMLDocument": "kind: Deployment", "CreatedAt": at(3)}),
        )],
    );
    add(
        &mut a,
        kinds::WORKLOAD_INSTANCE,
        vec![with(
            pending(kinds::WORKLOAD_INSTANCE, start),
            json!({"ID": 310, "Name": "queue", "WorkloadDefinitionID": 210,
                   "KubernetesRuntimeInstanceID": 110, "CreatedAt": at(3)}),
        )],
    );
    // api, └ api-staging, queue, └ queue.
    keys(&mut a, "jjj");
    assert_eq!(a.selected_row().unwrap().cells[0], "└ queue");
    let s = screen(&mut a, 120, 30);
    assert!(s.contains("○ Pending"), "{s}");
    insta::assert_snapshot!("workloads_pending", s);

    // A kind this release has no controller for.
    let (hwd, hwi) = (
        kinds::HELM_WORKLOAD_DEFINITION,
        kinds::HELM_WORKLOAD_INSTANCE,
    );
    let none = "this release has no controller for it";
    a.run_command("helm-workload-instances");
    a.on_net(NetMsg::Snapshot {
        kind: hwd,
        objects: vec![with(
            pending(hwd, none),
            json!({"ID": 800, "Name": "redis", "Repo": "https://charts.bitnami.com/bitnami",
                   "Chart": "redis", "CreatedAt": at(4)}),
        )],
    });
    a.on_net(NetMsg::Snapshot {
        kind: hwi,
        objects: vec![with(
            pending(hwi, none),
            json!({"ID": 810, "Name": "redis", "HelmWorkloadDefinitionID": 800,
                   "KubernetesRuntimeInstanceID": 110, "CreatedAt": at(4)}),
        )],
    });
    a.refresh();
    let s = screen(&mut a, 120, 20);
    assert!(
        s.contains("no controller for HelmWorkloadInstance is running"),
        "{s}"
    );
    insta::assert_snapshot!("helm_workload_instances_pending", s);
}

#[test]
fn controllers_view_shows_running_and_gone() {
    let mut a = app();
    a.run_command("controllers");
    assert_eq!(a.screen().view, View::Kind(kinds::CONTROLLER));
    let served = |k: &[&Kind]| k.iter().map(|k| k.name).collect::<Vec<_>>();
    a.on_net(NetMsg::Snapshot {
        kind: kinds::CONTROLLER,
        objects: vec![
            json!({"ID": 900, "Name": "cp-0-4242", "Controllers": ["workload", "kubernetes-runtime"],
                   "Kinds": served(&[kinds::WORKLOAD_DEFINITION, kinds::WORKLOAD_INSTANCE,
                                     kinds::KUBERNETES_RUNTIME_DEFINITION, kinds::KUBERNETES_RUNTIME_INSTANCE]),
                   "HeartbeatAt": at(0), "Version": "0.1.0", "Host": "cp-0", "Status": "Running",
                   "StatusReason": "serves workload, kubernetes-runtime", "CreatedAt": at(120)}),
            json!({"ID": 901, "Name": "cp-1-977", "Controllers": ["workload"],
                   "Kinds": served(&[kinds::WORKLOAD_DEFINITION, kinds::WORKLOAD_INSTANCE]),
                   "HeartbeatAt": at(10), "Version": "0.1.0", "Host": "cp-1", "Status": "Gone",
                   "StatusReason": format!("no heartbeat since {} (now {}); the process stopped or cannot reach the API", at(10), at(9)),
                   "CreatedAt": at(300)}),
        ],
    });
    a.refresh();
    keys(&mut a, "j");
    assert_eq!(a.selected_row().unwrap().cells[0], "cp-1-977");
    let s = screen(&mut a, 120, 20);
    assert!(s.contains("✓ Running") && s.contains("✗ Gone"), "{s}");
    insta::assert_snapshot!("controllers", s);
}
