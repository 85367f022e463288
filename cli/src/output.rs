//! Output formats shared by `get`, `apply` and `describe`.

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;
use std::collections::HashMap;
use threeport_api::kinds::{FieldType, Kind, Role};
use threeport_api::{Client, REDACTED};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wide,
    Json,
    Yaml,
    Name,
}

/// `5s`, `3m`, `2h`, `4d`, like kubectl's AGE column.
pub fn age(created: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
    else {
        return "?".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// One word for where an object stands, deepest fact first.
pub fn status(kind: &Kind, o: &Value) -> String {
    let set = |f: &str| o.get(f).is_some_and(|v| !v.is_null());
    if set("DeletionScheduled") {
        return "Deleting".into();
    }
    if set("CreationFailed") {
        return "Failed".into();
    }
    if let Some(s) = o
        .get("Status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return s.to_string();
    }
    if !kind.reconciled {
        return "-".into();
    }
    match o.get("Reconciled").and_then(Value::as_bool) {
        Some(true) => "Reconciled".into(),
        _ => "Reconciling".into(),
    }
}

pub fn name_of(o: &Value) -> String {
    match o.get("Name").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None => o.get("ID").map(|v| v.to_string()).unwrap_or_default(),
    }
}

/// Column title for a reference field: `KubernetesRuntimeInstanceID` → `KUBERNETES-RUNTIME-INSTANCE`.
fn ref_title(field: &str) -> String {
    let stem = field.trim_end_matches("ID");
    let mut out = String::new();
    for (i, c) in stem.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !stem[..i].ends_with(|p: char| p.is_ascii_uppercase())
        {
            out.push('-');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
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

pub fn table(kind: &Kind, objects: &[Value], refs: &HashMap<u64, String>, wide: bool) -> String {
    let ref_fields: Vec<&str> = kind
        .own_fields
        .iter()
        .filter(|f| f.references.is_some())
        .map(|f| f.name)
        .collect();
    let extra: Vec<&str> = if wide {
        kind.own_fields
            .iter()
            .filter(|f| {
                f.references.is_none()
                    && !f.secret
                    && matches!(f.ty, FieldType::String | FieldType::Bool | FieldType::Int)
            })
            .map(|f| f.name)
            .collect()
    } else {
        Vec::new()
    };
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    let mut header: Vec<String> = vec!["NAME".into()];
    if wide {
        header.push("ID".into());
    }
    header.extend(ref_fields.iter().map(|f| ref_title(f)));
    header.extend(extra.iter().map(|f| f.to_ascii_uppercase()));
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
            row.push(match o.get(*f) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "".into(),
                Some(v) => v.to_string(),
            });
        }
        row.push(status(kind, o));
        row.push(age(o
            .get("CreatedAt")
            .and_then(Value::as_str)
            .unwrap_or("")));
        t.add_row(row);
    }
    // comfy-table pads every line; kubectl-style output has no trailing spaces.
    t.to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end().trim_start_matches(' ')))
        .collect()
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
    if kind.role == Role::Instance || kind.reconciled {
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
        let kind = threeport_api::kinds::by_name("AwsRelationalDatabaseInstance").unwrap();
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
