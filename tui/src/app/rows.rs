//! Row builders: the columns and rows of every view, from the store. Status words, ages, event
//! lines and causes come from `threeport_api::status`; what is built here is the table (which
//! columns, in which order, how wide) and the per-row text the filter searches.

use super::view::{View, event_kinds};
use crate::store::{Change, Obj, Store};
use serde_json::Value;
use std::collections::HashMap;
use threeport_api::REDACTED;
use threeport_api::kinds::{self, Field, Kind, Role};
use threeport_api::object::ObjectExt;
use threeport_api::status::{self, EventLine, Health};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColKind {
    Text,
    /// Status with its text marker; coloured by the row's health.
    Status,
    /// Computed from the row's time at render (so snapshots can inject "now").
    Age,
    /// The deepest cause, computed at render for visible rows only.
    Why,
    /// Event type: warnings are highlighted.
    EventType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub title: String,
    pub kind: ColKind,
    /// Widest content (capped), computed when the rows are built.
    pub width: u16,
}

impl Column {
    fn new(title: &str, kind: ColKind) -> Column {
        Column {
            title: title.to_string(),
            kind,
            width: title.chars().count() as u16,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub kind: &'static Kind,
    pub id: u64,
    /// One per column; empty for Age and Why columns.
    pub cells: Vec<String>,
    pub health: Health,
    pub time: Option<OffsetDateTime>,
    /// Lower-cased text the filter matches against.
    search: String,
}

impl Row {
    fn new(
        kind: &'static Kind,
        id: u64,
        cells: Vec<String>,
        health: Health,
        time: Option<OffsetDateTime>,
    ) -> Row {
        let search = Row::search_text(&cells);
        Row {
            kind,
            id,
            cells,
            health,
            time,
            search,
        }
    }

    fn search_text(cells: &[String]) -> String {
        let joined = cells.join(" ");
        if joined.is_ascii() {
            joined.to_ascii_lowercase()
        } else {
            joined.to_lowercase()
        }
    }

    /// Whether the row matches a lower-cased filter.
    pub fn matches(&self, filter: &str) -> bool {
        self.search.contains(filter)
    }

    /// Whether the row shows this object.
    pub fn is(&self, kind: &'static Kind, id: u64) -> bool {
        std::ptr::eq(self.kind, kind) && self.id == id
    }
}

impl PartialEq for Row {
    fn eq(&self, o: &Row) -> bool {
        self.is(o.kind, o.id)
            && (&self.cells, self.health, self.time) == (&o.cells, o.health, o.time)
    }
}

/// What a view shows: a table, or (describe) lines of text.
#[derive(Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub text: Vec<String>,
    /// Object ID → its row, made on the first patch after a build (IDs are unique across kinds).
    by_id: HashMap<u64, usize>,
}

/// Build the table of a view from the store.
pub fn build(store: &Store, view: &View) -> Table {
    let (columns, rows) = match view {
        View::Workloads => workload_rows(store),
        View::Kind(k) if k.is_event() => event_rows(all_events(store, &[k])),
        View::Kind(k) => object_rows(store, &[k], None),
        View::Events => event_rows(all_events(store, &event_kinds().collect::<Vec<_>>())),
        View::Children { id, kinds, .. } => object_rows(store, kinds, Some(*id)),
        View::ObjectEvents { kind, id } => event_rows(status::events_for(store, kind, *id)),
        View::Describe { kind, id } => {
            return Table {
                text: describe_text(store, kind, *id),
                ..Table::default()
            };
        }
    };
    let mut t = Table {
        columns,
        rows,
        ..Table::default()
    };
    t.fit_widths();
    t
}

impl Table {
    /// Bring the rows up to date with `changes` in place, when that gives exactly what a rebuild
    /// would: on a watch event that changes an object's status, the dashboard touches one row
    /// instead of rebuilding (and re-sorting) all of them, so an event costs the same at 100 000
    /// objects as at 100. False when it cannot (a list replaced, an object added or removed, a
    /// name or reference changed, in a kind the view shows): the caller rebuilds.
    pub fn patch<'a>(
        &mut self,
        store: &Store,
        view: &View,
        changes: impl Iterator<Item = &'a Change>,
    ) -> bool {
        let tabular = match view {
            View::Workloads | View::Children { .. } => true,
            View::Kind(k) => !k.is_event(),
            View::Events | View::ObjectEvents { .. } | View::Describe { .. } => false,
        };
        if !tabular {
            return false;
        }
        let needs = view.needs();
        let status_col = self.columns.iter().position(|c| c.kind == ColKind::Status);
        for change in changes {
            let &Change::Object { kind, id, shape } = change else {
                return false;
            };
            // Rows show only the kinds the view needs (names of referenced objects included).
            if !needs.iter().any(|k| std::ptr::eq(*k, kind)) {
                continue;
            }
            if shape {
                return false;
            }
            if self.by_id.is_empty() {
                self.by_id = self
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id, i))
                    .collect();
            }
            // Not shown here (a referenced kind, or another parent's child): its status is not
            // on any row.
            let Some(&i) = self.by_id.get(&id) else {
                continue;
            };
            let (Some(o), row) = (store.entry(kind, id), &mut self.rows[i]) else {
                return false;
            };
            if !row.is(kind, id) {
                return false;
            }
            if let Some(c) = status_col {
                row.cells[c].clone_from(&o.status);
                let w = (o.status.chars().count().min(48)) as u16;
                self.columns[c].width = self.columns[c].width.max(w);
            }
            row.health = o.health;
            row.time = o.created;
            row.search = Row::search_text(&row.cells);
        }
        true
    }

    /// Each column as wide as its widest cell (capped); computed once per build, not per frame.
    fn fit_widths(&mut self) {
        let width = |s: &str| {
            if s.is_ascii() {
                s.len()
            } else {
                s.chars().count()
            }
        };
        for (i, c) in self.columns.iter_mut().enumerate() {
            let mut w = width(&c.title);
            if matches!(c.kind, ColKind::Text | ColKind::Status | ColKind::EventType) {
                for r in &self.rows {
                    w = w.max(r.cells.get(i).map_or(0, |s| width(s)));
                }
            }
            if c.kind == ColKind::Age {
                w = w.max(4);
            }
            c.width = w.min(48) as u16;
        }
    }
}

fn all_events(store: &Store, kinds_: &[&'static Kind]) -> Vec<EventLine> {
    let mut lines = Vec::new();
    for k in kinds_ {
        lines.extend(
            store
                .objects(k)
                .map(|(_, e)| status::event_line(store, k, e)),
        );
    }
    lines
}

/// The name of the object a reference field of `o` points at (its ID when not loaded).
fn ref_name(store: &Store, target: &'static Kind, o: &Value, field: &str) -> String {
    match o.id_field(field) {
        Some(id) => store
            .entry(target, id)
            .map_or_else(|| id.to_string(), |t| t.name.clone()),
        None => String::new(),
    }
}

/// Definitions with their instances under them: NAME, KIND, RUNTIME, STATUS, AGE, WHY.
pub fn workload_rows(store: &Store) -> (Vec<Column>, Vec<Row>) {
    let (wd, wi) = (kinds::WORKLOAD_DEFINITION, kinds::WORKLOAD_INSTANCE);
    let runtime = runtime_field(wi);
    let columns = vec![
        Column::new("NAME", ColKind::Text),
        Column::new("KIND", ColKind::Text),
        Column::new("RUNTIME", ColKind::Text),
        Column::new("STATUS", ColKind::Status),
        Column::new("AGE", ColKind::Age),
        Column::new("WHY", ColKind::Why),
    ];
    let inst_row = |id: u64, o: &Obj, prefix: &str| {
        let rt = runtime.map_or_else(String::new, |f| {
            ref_name(store, kinds::KUBERNETES_RUNTIME_INSTANCE, &o.value, f.name)
        });
        Row::new(
            wi,
            id,
            vec![
                format!("{prefix}{}", o.name),
                "instance".into(),
                rt,
                o.status.clone(),
                String::new(),
                String::new(),
            ],
            o.health,
            o.created,
        )
    };
    let by_name = |a: &(u64, &Obj), b: &(u64, &Obj)| a.1.name.cmp(&b.1.name).then(a.0.cmp(&b.0));
    let mut defs: Vec<(u64, &Obj)> = store.entries(wd).collect();
    defs.sort_by(by_name);
    let mut rows = Vec::with_capacity(store.len(wd) + store.len(wi));
    for (id, o) in &defs {
        rows.push(Row::new(
            wd,
            *id,
            vec![
                o.name.clone(),
                "definition".into(),
                String::new(),
                o.status.clone(),
                String::new(),
                String::new(),
            ],
            o.health,
            o.created,
        ));
        let mut insts: Vec<(u64, &Obj)> = store.referrer_entries(*id, wi).collect();
        insts.sort_by(by_name);
        for (iid, io) in insts {
            rows.push(inst_row(iid, io, "└ "));
        }
    }
    // Instances whose definition is not (yet) known.
    let placed = rows.len() - defs.len();
    if placed == store.len(wi) {
        return (columns, rows);
    }
    let def_field = definition_field(wi);
    let mut orphans: Vec<(u64, &Obj)> = store
        .entries(wi)
        .filter(|(_, o)| {
            def_field
                .and_then(|f| o.value.id_field(f.name))
                .is_none_or(|d| store.get(wd, d).is_none())
        })
        .collect();
    orphans.sort_by(by_name);
    for (id, o) in orphans {
        rows.push(inst_row(id, o, ""));
    }
    (columns, rows)
}

/// The reference field of `k` that names its runtime.
fn runtime_field(k: &Kind) -> Option<&'static Field> {
    k.own_fields
        .iter()
        .find(|f| f.references == Some(kinds::KUBERNETES_RUNTIME_INSTANCE.name))
}

/// The reference field of an instance kind that names its definition.
fn definition_field(k: &Kind) -> Option<&'static Field> {
    let d = k.definition_kind()?;
    k.own_fields.iter().find(|f| f.references == Some(d.name))
}

/// Whether the kind's rows get a STATUS (and WHY) column: it has a `Status`, or a `Reconciled`
/// flag that `status::status` turns into a word (resource rows).
fn shows_status(k: &Kind) -> bool {
    k.has_status() || k.field("Reconciled").is_some()
}

/// A reference column: the field and the kind it points at.
type RefColumn = (&'static Field, &'static Kind);

/// The kind of the parent object a children view is under (its rows all point at it, so the
/// column would only repeat the parent's name).
fn parent_kind(store: &Store, k: &Kind, parent: u64) -> Option<&'static Kind> {
    k.own_fields
        .iter()
        .filter_map(|f| f.references.and_then(kinds::by_name))
        .find(|t| store.get(t, parent).is_some())
}

/// At most two reference columns: the runtime and the definition first; never the parent's
/// kind or a self-reference.
fn ref_columns(k: &'static Kind, skip: Option<&'static Kind>) -> Vec<RefColumn> {
    let mut refs: Vec<RefColumn> = k
        .own_fields
        .iter()
        .filter_map(|f| Some((f, f.references.and_then(kinds::by_name)?)))
        .filter(|(_, t)| !skip.is_some_and(|s| std::ptr::eq(*t, s)) && !std::ptr::eq(*t, k))
        .collect();
    refs.sort_by_key(|(_, t)| match t {
        t if std::ptr::eq(*t, kinds::KUBERNETES_RUNTIME_INSTANCE) => 0,
        t if t.role == Role::Definition => 1,
        _ => 2,
    });
    refs.truncate(2);
    refs
}

fn ref_column_title(k: &Kind, (field, target): RefColumn) -> String {
    if std::ptr::eq(target, kinds::KUBERNETES_RUNTIME_INSTANCE) {
        "RUNTIME".into()
    } else if target.role == Role::Definition && k.role == Role::Instance {
        "DEFINITION".into()
    } else {
        status::ref_title(field.name)
    }
}

/// Objects of one or more kinds, optionally only those pointing at `parent`.
pub fn object_rows(
    store: &Store,
    kinds_: &[&'static Kind],
    parent: Option<u64>,
) -> (Vec<Column>, Vec<Row>) {
    let single = kinds_.len() == 1;
    let mut columns = vec![Column::new("NAME", ColKind::Text)];
    let refs: Vec<RefColumn> = if single {
        ref_columns(
            kinds_[0],
            parent.and_then(|p| parent_kind(store, kinds_[0], p)),
        )
    } else {
        columns.push(Column::new("KIND", ColKind::Text));
        Vec::new()
    };
    for r in &refs {
        columns.push(Column::new(&ref_column_title(kinds_[0], *r), ColKind::Text));
    }
    let with_status = kinds_.iter().any(|k| shows_status(k));
    if with_status {
        columns.push(Column::new("STATUS", ColKind::Status));
    }
    columns.push(Column::new("AGE", ColKind::Age));
    if with_status {
        columns.push(Column::new("WHY", ColKind::Why));
    }
    let mut rows = Vec::new();
    for k in kinds_ {
        let objs: Vec<(u64, &Obj)> = match parent {
            Some(p) => store.referrer_entries(p, k).collect(),
            None => store.entries(k).collect(),
        };
        let start = rows.len();
        for (id, o) in objs {
            let mut cells = vec![o.name.clone()];
            if !single {
                cells.push(k.singular().to_string());
            }
            for (f, t) in &refs {
                cells.push(ref_name(store, t, &o.value, f.name));
            }
            if with_status {
                cells.push(o.status.clone());
            }
            cells.push(String::new());
            if with_status {
                cells.push(String::new());
            }
            rows.push(Row::new(k, id, cells, o.health, o.created));
        }
        if k.named {
            rows[start..].sort_by(|a, b| a.cells[0].cmp(&b.cells[0]).then(a.id.cmp(&b.id)));
        }
    }
    (columns, rows)
}

/// TYPE, REASON, OBJECT, AGE, MESSAGE; newest first.
pub fn event_rows(mut lines: Vec<EventLine>) -> (Vec<Column>, Vec<Row>) {
    status::sort_events(&mut lines);
    let columns = vec![
        Column::new("TYPE", ColKind::EventType),
        Column::new("REASON", ColKind::Text),
        Column::new("OBJECT", ColKind::Text),
        Column::new("AGE", ColKind::Age),
        Column::new("MESSAGE", ColKind::Text),
    ];
    let rows = lines
        .into_iter()
        .map(|e| {
            // A warning is marked in text too ("! Warning"), not by colour alone.
            let (ty, h) = if e.is_warning() {
                (format!("! {}", e.ty), Health::Failed)
            } else {
                (e.ty.clone(), Health::None)
            };
            Row::new(
                e.kind,
                e.id,
                vec![ty, e.reason, e.object, String::new(), e.message],
                h,
                e.time,
            )
        })
        .collect();
    (columns, rows)
}

/// The object as YAML. Secrets stay as the server sent them (redacted); any secret field that
/// somehow arrives in clear is masked here too.
pub fn describe_text(store: &Store, kind: &'static Kind, id: u64) -> Vec<String> {
    let Some(o) = store.get(kind, id) else {
        return vec![format!("{}/{id} no longer exists", kind.singular())];
    };
    let mut o = o.clone();
    if let Value::Object(m) = &mut o {
        for f in kind.secret_fields() {
            if let Some(v) = m.get_mut(f.name)
                && !v.is_null()
                && v.as_str() != Some(REDACTED)
            {
                *v = Value::String(REDACTED.into());
            }
        }
    }
    let mut lines = vec![format!("# {} {}", kind.name, status::display_name(&o))];
    match serde_yaml::to_string(&o) {
        Ok(y) => lines.extend(y.lines().map(str::to_string)),
        Err(e) => lines.push(format!("# cannot render as YAML: {e}")),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_masks_secret_fields() {
        let mut s = Store::new();
        let aws = kinds::AWS_ACCOUNT;
        s.replace(
            aws,
            vec![json!({"ID": 1, "Name": "a", "AccountID": "1", "SecretAccessKey": "wJalrXUtnFEMI", "AccessKeyID": REDACTED})],
        );
        let text = describe_text(&s, aws, 1).join("\n");
        assert!(!text.contains("wJalrXUtnFEMI"));
        assert!(
            text.contains("SecretAccessKey: '*** redacted ***'"),
            "{text}"
        );
    }

    #[test]
    fn reference_columns_name_the_runtime_and_the_definition() {
        let titles = |k: &'static Kind| -> Vec<String> {
            ref_columns(k, None)
                .into_iter()
                .map(|r| ref_column_title(k, r))
                .collect()
        };
        assert_eq!(titles(kinds::WORKLOAD_INSTANCE), ["RUNTIME", "DEFINITION"]);
        assert_eq!(
            titles(kinds::AWS_EKS_KUBERNETES_RUNTIME_DEFINITION),
            ["KUBERNETES-RUNTIME-DEFINITION", "AWS-ACCOUNT"]
        );
        // Under its runtime, a workload's runtime column would only repeat the parent.
        let under = ref_columns(
            kinds::WORKLOAD_INSTANCE,
            Some(kinds::KUBERNETES_RUNTIME_INSTANCE),
        );
        assert_eq!(under.len(), 1);
        assert!(shows_status(kinds::WORKLOAD_RESOURCE_INSTANCE));
        assert!(shows_status(kinds::CONTROLLER));
        assert!(!shows_status(kinds::AWS_ACCOUNT));
    }
}
