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

/// Names of referenced objects, for the table's reference columns: looked up as pages arrive and
/// kept, so a long list does not ask twice. A handful of new IDs are read one by one; more, and
/// the referenced kind is listed once.
#[derive(Default)]
pub struct RefNames {
    pub names: HashMap<u64, String>,
    listed: Vec<&'static str>,
}

impl RefNames {
    pub async fn resolve(&mut self, client: &Client, kind: &Kind, objects: &[Value]) {
        for f in kind.fields().filter(|f| f.references.is_some()) {
            let Some(tk) = f.references.and_then(threeport_api::kinds::by_name) else {
                continue;
            };
            if self.listed.contains(&tk.name) {
                continue;
            }
            let mut missing: Vec<u64> = objects
                .iter()
                .filter_map(|o| o.get(f.name).and_then(Value::as_u64))
                .filter(|id| !self.names.contains_key(id))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            if missing.len() <= 16 {
                for id in missing {
                    if let Ok(o) = client.get(tk, id).await {
                        self.names.insert(id, name_of(&o));
                    }
                }
                continue;
            }
            self.listed.push(tk.name);
            if let Ok(items) = client.list(tk, &[]).await {
                for it in items {
                    if let Some(id) = it.get("ID").and_then(Value::as_u64) {
                        self.names.insert(id, name_of(&it));
                    }
                }
            }
        }
    }
}

/// Names of the objects that `objects` refer to.
pub async fn reference_names(
    client: &Client,
    kind: &Kind,
    objects: &[Value],
) -> HashMap<u64, String> {
    let mut r = RefNames::default();
    r.resolve(client, kind, objects).await;
    r.names
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
    let mut printer = TablePrinter::new(kind, wide);
    printer.page(objects, refs, now)
}

/// A kubectl-style table printed page by page as a list arrives: the header with the first page,
/// and every later page aligned to the columns so far (a longer value widens its page only,
/// as `kubectl get --chunk-size` does).
pub struct TablePrinter {
    kind: &'static Kind,
    wide: bool,
    widths: Option<Vec<u16>>,
}

impl TablePrinter {
    pub fn new(kind: &'static Kind, wide: bool) -> TablePrinter {
        TablePrinter {
            kind,
            wide,
            widths: None,
        }
    }

    /// The text for one page of objects (not event kinds: those are sorted as a whole).
    pub fn page(
        &mut self,
        objects: &[Value],
        refs: &HashMap<u64, String>,
        now: OffsetDateTime,
    ) -> String {
        let (kind, wide) = (self.kind, self.wide);
        let mut t = Table::new();
        t.load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
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
                            && matches!(
                                f.ty,
                                FieldType::String | FieldType::Bool | FieldType::Int
                            )))
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
        let columns = header.len();
        if self.widths.is_none() {
            t.set_header(header);
        }
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
        if let Some(w) = &self.widths {
            // The columns exist once rows do. Boundaries only hold when comfy-table arranges
            // the content; a width no line reaches keeps it from ever wrapping.
            t.set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(u16::MAX)
                .set_constraints(w.iter().map(|w| {
                    // A fixed width counts the cell's padding (a space each side).
                    comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(*w + 2))
                }));
        }
        let seen = t.column_max_content_widths();
        let widths = self.widths.get_or_insert_with(|| vec![0; columns]);
        for (w, s) in widths.iter_mut().zip(seen) {
            *w = (*w).max(s);
        }
        unpad(&t)
    }
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
    fn pages_line_up_under_the_first_pages_header() {
        use serde_json::json;
        let now = OffsetDateTime::now_utc();
        let at = |n: &str| {
            json!({"ID": 1, "Name": n, "WorkloadDefinitionID": 7, "Status": "Healthy",
                   "CreatedAt": "2026-12-01T00:00:00Z"})
        };
        let refs = HashMap::from([(7, "web".to_string())]);
        let mut p = TablePrinter::new(threeport_api::kinds::WORKLOAD_INSTANCE, false);
        let first = p.page(&[at("a-long-instance-name"), at("b")], &refs, now);
        let second = p.page(&[at("c"), at("d")], &refs, now);
        let lines: Vec<&str> = first.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{first}");
        assert_eq!(second.lines().count(), 2, "no second header: {second}");
        // Every later row starts its columns where the first page's do.
        let col = |l: &str| l.find("web");
        assert_eq!(
            col(lines[1]),
            col(second.lines().next().unwrap()),
            "{first}{second}"
        );
        assert_eq!(col(lines[2]), col(second.lines().nth(1).unwrap()));
        // A longer value widens its own page.
        let third = p.page(&[at("an-even-longer-instance-name-here")], &refs, now);
        assert!(
            third.contains("an-even-longer-instance-name-here  web"),
            "{third}"
        );
    }

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
