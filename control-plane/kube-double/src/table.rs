//! `meta.k8s.io/v1` Tables: what `kubectl get` asks for (`Accept: ...;as=Table`), so its output
//! has the familiar columns instead of a generic NAME/AGE fallback.

use crate::discovery::ResourceType;
use crate::ops::present;
use crate::store::{meta_str, parse_time};
use crate::watch::partial_metadata;
use serde_json::{Value, json};
use std::sync::Arc;

/// kubectl's `HumanDuration`.
fn human_age(created: &str) -> String {
    let Some(t) = parse_time(created) else {
        return "<unknown>".into();
    };
    let s = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else {
        format!("{d}d")
    }
}

fn columns_for(rt: &ResourceType) -> Vec<&'static str> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => vec!["Status"],
        ("", "Node") => vec!["Status", "Version"],
        ("", "Pod") => vec!["Ready", "Status", "Restarts"],
        ("", "Service") => vec!["Type", "Cluster-IP", "External-IP", "Port(s)"],
        ("", "ConfigMap") => vec!["Data"],
        ("", "Secret") => vec!["Type", "Data"],
        ("", "Event") => vec!["Type", "Reason", "Object", "Message"],
        ("apps", "Deployment") => vec!["Ready", "Up-to-date", "Available"],
        ("apps", "StatefulSet") => vec!["Ready"],
        ("apps", "ReplicaSet") => vec!["Desired", "Current", "Ready"],
        ("batch", "Job") => vec!["Status", "Completions"],
        _ => vec![],
    }
}

fn cell(rt: &ResourceType, col: &str, o: &Value) -> String {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let count = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    match (rt.kind.as_str(), col) {
        ("Namespace", "Status") => s("/status/phase"),
        ("Node", "Status") => "Ready".into(),
        ("Node", "Version") => s("/status/nodeInfo/kubeletVersion"),
        ("Pod", "Ready") => {
            let cs = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            format!("{ready}/{total}")
        }
        ("Pod", "Status") => o
            .pointer("/status/containerStatuses/0/state/waiting/reason")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| s("/status/phase")),
        ("Pod", "Restarts") => n("/status/containerStatuses/0/restartCount").to_string(),
        ("Service", "Type") => s("/spec/type"),
        ("Service", "Cluster-IP") => s("/spec/clusterIP"),
        ("Service", "External-IP") => o
            .pointer("/status/loadBalancer/ingress/0/ip")
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string(),
        ("Service", "Port(s)") => o
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p["port"],
                            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "<none>".into()),
        ("ConfigMap", "Data") => (count("/data") + count("/binaryData")).to_string(),
        ("Secret", "Type") => s("/type"),
        ("Secret", "Data") => count("/data").to_string(),
        ("Event", "Type") => s("/type"),
        ("Event", "Reason") => s("/reason"),
        ("Event", "Object") => format!(
            "{}/{}",
            s("/involvedObject/kind").to_lowercase(),
            s("/involvedObject/name")
        ),
        ("Event", "Message") => s("/message"),
        ("Deployment" | "StatefulSet", "Ready") => {
            format!("{}/{}", n("/status/readyReplicas"), n("/spec/replicas"))
        }
        ("Deployment", "Up-to-date") => n("/status/updatedReplicas").to_string(),
        ("Deployment", "Available") => n("/status/availableReplicas").to_string(),
        ("ReplicaSet", "Desired") => n("/spec/replicas").to_string(),
        ("ReplicaSet", "Current") => n("/status/replicas").to_string(),
        ("ReplicaSet", "Ready") => n("/status/readyReplicas").to_string(),
        ("Job", "Status") => {
            let conds = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            if has("Complete") {
                "Complete".into()
            } else if has("Failed") {
                "Failed".into()
            } else {
                "Running".into()
            }
        }
        ("Job", "Completions") => format!(
            "{}/{}",
            n("/status/succeeded"),
            o.pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
        _ => String::new(),
    }
}

/// A `meta.k8s.io/v1` Table, what `kubectl get` asks for. Columns: NAME, a few per-kind ones,
/// AGE. (kubectl adds NAMESPACE itself from each row's object metadata.)
pub fn table(rt: &ResourceType, objs: &[Arc<Value>], rv: u64, include: &str) -> Value {
    let cols = columns_for(rt);
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    for c in &cols {
        defs.push(
            json!({"name": c, "type": "string", "format": "", "description": c, "priority": 0}),
        );
    }
    defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "Time since creation", "priority": 0}));
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![json!(meta_str(o, "name"))];
            cells.extend(cols.iter().map(|c| json!(cell(rt, c, o))));
            cells.push(json!(human_age(meta_str(o, "creationTimestamp"))));
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = present(rt, o),
                _ => row["object"] = partial_metadata(o),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": defs,
        "rows": rows,
    })
}
