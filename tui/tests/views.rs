//! Snapshot tests of every view, rendered with ratatui's `TestBackend` from a fixed data set and a
//! fixed "now", so ages and layouts never drift.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use serde_json::{Value, json};
use std::time::Duration;
use threeport_api::REDACTED;
use threeport_tui::app::{App, View, core_kinds, kind};
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

fn fixture() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        (
            "KubernetesRuntimeDefinition",
            vec![
                json!({"ID": 100, "Name": "kind", "InfraProvider": "kind", "CreatedAt": at(600), "Reconciled": true}),
                json!({"ID": 101, "Name": "eks", "InfraProvider": "eks", "CreatedAt": at(600), "Reconciled": true}),
            ],
        ),
        (
            "KubernetesRuntimeInstance",
            vec![
                json!({"ID": 110, "Name": "dev-0", "KubernetesRuntimeDefinitionID": 100, "Location": "Local",
                       "Status": "Healthy", "Reconciled": true, "CreatedAt": at(590), "CACertificate": REDACTED}),
                json!({"ID": 111, "Name": "eks-prod", "KubernetesRuntimeDefinitionID": 101, "Location": "us-east-1",
                       "Status": "Failed", "StatusReason": "node group creation failed", "CreationFailed": at(100),
                       "Reconciled": true, "CreatedAt": at(120)}),
            ],
        ),
        (
            "ControlPlaneDefinition",
            vec![json!({"ID": 1, "Name": "genesis", "CreatedAt": at(3000), "Reconciled": true})],
        ),
        (
            "ControlPlaneInstance",
            vec![
                json!({"ID": 120, "Name": "threeport-dev", "ControlPlaneDefinitionID": 1, "Genesis": true,
                        "IsSelf": true, "Status": "Healthy", "Reconciled": true, "CreatedAt": at(3000),
                        "ClientKey": REDACTED}),
            ],
        ),
        (
            "WorkloadDefinition",
            vec![
                json!({"ID": 200, "Name": "web", "YAMLDocument": "kind: Deployment", "Reconciled": true, "CreatedAt": at(60)}),
                json!({"ID": 201, "Name": "api", "YAMLDocument": "kind: Deployment", "Reconciled": false, "CreatedAt": at(1)}),
            ],
        ),
        (
            "WorkloadInstance",
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
            "WorkloadResourceInstance",
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
            "WorkloadEvent",
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
            "Event",
            vec![
                json!({"ID": 600, "ObjectKind": "KubernetesRuntimeInstance", "ObjectID": 111, "Type": "Warning",
                        "Reason": "ReconcileFailed", "Note": "AccessDenied: eks:CreateNodegroup",
                        "ReportingController": "kubernetes-runtime", "EventTime": at(100)}),
            ],
        ),
        (
            "AwsAccount",
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
        app.on_net(NetMsg::Snapshot {
            kind: kind(k),
            objects,
        });
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
    assert_eq!(a.screen().view, View::Kind(kind("AwsAccount")));
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
        kind: "WorkloadDefinition".into(),
        object: json!({"ID": 250, "Name": "blog", "YAMLDocument": "x", "CreatedAt": at(0)}),
    }));
    let s = screen(&mut a, 100, 20);
    assert!(s.contains("blog"), "{s}");
    a.on_net(NetMsg::Event(threeport_api::WatchEvent {
        operation: "deleted".into(),
        kind: "WorkloadDefinition".into(),
        object: json!({"ID": 250}),
    }));
    let s = screen(&mut a, 100, 20);
    assert!(!s.contains("blog"), "{s}");
}
