//! Output formats shared by `get`, `apply` and `describe`.

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;
use std::collections::HashMap;
use threeport_api::kinds::{self, Field, FieldType, Kind};
use threeport_api::status::{self, Snapshot};
use threeport_api::{Client, ObjectExt, REDACTED};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wide,
    Json,
    Yaml,
    Name,
}

/// The status word `get` and `describe` print: `threeport_api::status`, as the dashboard shows it.
pub fn status(kind: &Kind, o: &Value) -> String {
    status::status(kind, o).0
}

pub fn name_of(o: &Value) -> String {
    status::display_name(o)
}

/// Names of referenced objects, fetched once per referenced kind.
pub async fn reference_names(
    client: &Client,
    kind: &Kind,
    objects: &[Value],
) -> HashMap<u64, String> {
    let mut names = HashMap::new();
    let mut done = Vec::new();
    for f in kind.fields().filter(|f| f.references.is_some()) {
        let target = f.references.unwrap_or_default();
        if done.contains(&target)
            || !objects
                .iter()
                .any(|o| o.get(f.name).is_some_and(|v| !v.is_null()))
        {
            continue;
        }
        done.push(target);
        if let Some(tk) = threeport_api::kinds::by_name(target) {
            if let Ok(items) = client.list(tk, &[]).await {
                for it in items {
                    if let Some(id) = it.get("ID").and_then(Value::as_u64) {
                        names.insert(id, name_of(&it));
                    }
                }
            }
        }
    }
    names
}

/// A kubectl-style table: NAME, the references, the fields the registry marks as columns (and in
/// `wide` every short field), STATUS and AGE. Event kinds get TYPE, REASON, OBJECT, MESSAGE and
/// AGE instead. `now` is the clock ages are measured against.
pub fn table(
    kind: &'static Kind,
    objects: &[Value],
    refs: &HashMap<u64, String>,
    names: &dyn status::Objects,
    wide: bool,
    now: OffsetDateTime,
) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if kind.is_event() {
        t.set_header(["TYPE", "REASON", "OBJECT", "MESSAGE", "AGE"]);
        let mut lines: Vec<status::EventLine> = objects
            .iter()
            .map(|e| status::event_line(names, kind, e))
            .collect();
        // Oldest first, as kubectl get events prints them.
        status::sort_events(&mut lines);
        lines.reverse();
        for e in lines {
            t.add_row([
                e.ty.clone(),
                e.reason.clone(),
                e.object.clone(),
                e.message.clone(),
                status::age(e.time, now),
            ]);
        }
        return unpad(&t);
    }
    let ref_fields: Vec<&str> = kind
        .own_fields
        .iter()
        .filter(|f| f.references.is_some())
        .map(|f| f.name)
        .collect();
    let extra: Vec<&'static Field> = kind
        .own_fields
        .iter()
        .filter(|f| {
            f.references.is_none()
                && !f.secret
                && (f.column
                    || (wide
                        && matches!(f.ty, FieldType::String | FieldType::Bool | FieldType::Int)))
        })
        .collect();
    let mut header: Vec<String> = vec!["NAME".into()];
    if wide {
        header.push("ID".into());
    }
    header.extend(ref_fields.iter().map(|f| status::ref_title(f)));
    header.extend(extra.iter().map(|f| f.name.to_ascii_uppercase()));
    header.push("STATUS".into());
    header.push("AGE".into());
    t.set_header(header);
    for o in objects {
        let mut row = vec![name_of(o)];
        if wide {
            row.push(o.get("ID").map(|v| v.to_string()).unwrap_or_default());
        }
        for f in &ref_fields {
            row.push(match o.get(*f).and_then(Value::as_u64) {
                Some(id) => refs.get(&id).cloned().unwrap_or_else(|| id.to_string()),
                None => "<none>".into(),
            });
        }
        for f in &extra {
            row.push(cell(f, o.get(f.name), now));
        }
        row.push(status(kind, o));
        row.push(status::object_age(o, now));
        t.add_row(row);
    }
    unpad(&t)
}

/// One cell: lists joined with commas, timestamps as ages.
fn cell(f: &Field, v: Option<&Value>, now: OffsetDateTime) -> String {
    match v {
        Some(Value::String(s)) if f.ty == FieldType::Timestamp => {
            status::age(threeport_api::object::parse_time(s), now)
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Null) | None => "".into(),
        Some(v) => v.to_string(),
    }
}

/// comfy-table pads every line; kubectl-style output has no trailing spaces.
fn unpad(t: &Table) -> String {
    t.to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end().trim_start_matches(' ')))
        .collect()
}

/// The objects event lines name (`workload-instance/web`), fetched once per kind they point at.
pub async fn event_names(client: &Client, kind: &'static Kind, events: &[Value]) -> Snapshot {
    let mut snap = Snapshot::default();
    if !kind.is_event() {
        return snap;
    }
    let mut targets: Vec<&'static Kind> = Vec::new();
    for e in events {
        if let Some(k) = kinds::by_name(e.str_field("ObjectKind")) {
            if !targets.iter().any(|t| std::ptr::eq(*t, k)) {
                targets.push(k);
            }
        }
    }
    for f in kind.own_fields {
        if let Some(k) = f.references.and_then(kinds::by_name) {
            if !targets.iter().any(|t| std::ptr::eq(*t, k)) {
                targets.push(k);
            }
        }
    }
    for k in targets {
        if let Ok(items) = client.list(k, &[]).await {
            snap.extend(k, items);
        }
    }
    snap
}

/// `-o json|yaml|name` on stdout.
pub fn print_objects(format: Format, kind: &Kind, objects: &[Value]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let v = if objects.len() == 1 {
                objects[0].clone()
            } else {
                Value::Array(objects.to_vec())
            };
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Yaml => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    outln!("---")?;
                }
                out!("{}", serde_yaml::to_string(o)?)?;
            }
        }
        Format::Name => {
            for o in objects {
                outln!("{}/{}", kind.singular(), name_of(o))?;
            }
        }
        Format::Wide => unreachable!("tables are printed by the caller"),
    }
    Ok(())
}

/// `describe`: the object's fields, long documents indented, secrets as the server redacted them.
/// Values start in one column, one space after the longest key's colon.
pub fn describe_fields(kind: &Kind, o: &Value, refs: &HashMap<u64, String>) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    lines.push(("Name", name_of(o)));
    lines.push(("Kind", kind.name.to_string()));
    for f in kind.fields() {
        if f.name == "Name" {
            continue;
        }
        let Some(v) = o.get(f.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let shown = match (v, f.references) {
            (Value::Number(n), Some(target)) => {
                let id = n.as_u64().unwrap_or_default();
                format!(
                    "{} ({target} {id})",
                    refs.get(&id).cloned().unwrap_or_else(|| "?".into())
                )
            }
            (Value::String(s), _) if s == REDACTED => s.clone(),
            (Value::String(s), _) if s.contains('\n') => {
                let body: String = s.lines().map(|l| format!("    {l}\n")).collect();
                format!("|\n{}", body.trim_end())
            }
            (Value::String(s), _) => s.clone(),
            (other, _) => other.to_string(),
        };
        lines.push((f.name, shown));
    }
    if kind.has_status() || kind.field("Reconciled").is_some() {
        lines.push(("Summary", status(kind, o)));
    }
    let width = lines.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(k, v)| format!("{:<width$}{v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_aligns_values_after_the_longest_key() {
        let kind = threeport_api::kinds::AWS_RELATIONAL_DATABASE_INSTANCE;
        let o = serde_json::json!({
            "Name": "web-db",
            "AwsRelationalDatabaseDefinitionID": 7,
            "Reconciled": true,
        });
        let refs = HashMap::from([(7, "web-db".to_string())]);
        let text = describe_fields(kind, &o, &refs);
        let key = "AwsRelationalDatabaseDefinitionID:";
        let column = key.len() + 1;
        for line in text.lines() {
            let (k, _) = line.split_once(':').unwrap();
            assert!(line.len() > column, "{line:?}");
            assert_eq!(
                line[..column].trim_end(),
                format!("{k}:"),
                "value of {k} starts at column {column}:\n{text}"
            );
            assert_ne!(&line[column..column + 1], " ", "{text}");
        }
        assert!(
            text.contains(&format!("{key} web-db (AwsRelationalDatabaseDefinition 7)")),
            "{text}"
        );
    }
}
