//! Upstream's user YAML, turned into the objects to apply.
//!
//! The format (reference §5): the top-level key is the kind in PascalCase, objects refer to each
//! other by name (`KubernetesRuntimeInstance: {Name: dev}`, `AwsAccountName: prod`), document fields
//! (`YAMLDocument`, `ValuesDocument`, …) are paths relative to the YAML file, and a "defined
//! instance" (`Workload`, `HelmWorkload`, `KubernetesRuntime`, …) expands into a Definition and an
//! Instance with the same name. Everything here is offline: `tptctl validate` runs only this, and
//! `tptctl apply` runs this first, then resolves names against the control plane.

use crate::kinds::{self, FieldType, KINDS, Kind};
use crate::validate::{check_allowed, check_type, did_you_mean};
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem, located: `web.yaml:3: WorkloadInstance "web": unknown field "X"; did you mean "Y"?`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    /// (kind, name) of the object, when known.
    pub object: Option<(String, String)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some((kind, name)) = &self.object {
            write!(f, "{kind} {name:?}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A reference by name, resolved to an ID at apply time.
#[derive(Debug, Clone)]
pub struct Ref {
    /// The ID field it fills (`WorkloadDefinitionID`).
    pub field: &'static str,
    pub kind: &'static Kind,
    pub name: String,
    pub line: usize,
}

/// One object as the user wants it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub kind: &'static Kind,
    pub name: String,
    /// Literal fields, documents already read.
    pub fields: Map<String, Value>,
    pub refs: Vec<Ref>,
    pub file: String,
    pub line: usize,
    /// The kind has a runtime reference and none was named: use the default runtime.
    pub wants_default_runtime: bool,
}

impl Desired {
    /// `workload-definition/web`, as `tptctl` prints it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind.singular(), self.name)
    }
    pub fn key(&self) -> (&'static str, String) {
        (self.kind.name, self.name.clone())
    }
    fn problem(&self, line: usize, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line,
            object: Some((self.kind.name.into(), self.name.clone())),
            message: message.into(),
        }
    }
}

/// What loading files produced. Objects with problems are left out, but their (kind, name) is in
/// `broken`, so objects that depend on them are skipped rather than applied half-way.
#[derive(Debug, Default)]
pub struct Loaded {
    pub objects: Vec<Desired>,
    pub problems: Vec<Problem>,
    pub broken: BTreeSet<(String, String)>,
}

impl Loaded {
    fn merge(&mut self, other: Loaded) {
        self.objects.extend(other.objects);
        self.problems.extend(other.problems);
        self.broken.extend(other.broken);
    }
}

/// Lists of child objects written inline under a parent (upstream's gateway ports).
struct ChildList {
    parent: &'static &'static Kind,
    key: &'static str,
    child: &'static &'static Kind,
    /// The child's field that identifies it within the parent; the child's name is `<parent>-<value>`.
    identity: &'static str,
}

static CHILD_LISTS: &[ChildList] = &[
    ChildList {
        parent: &kinds::GATEWAY_DEFINITION,
        key: "HttpPorts",
        child: &kinds::GATEWAY_HTTP_PORT,
        identity: "Port",
    },
    ChildList {
        parent: &kinds::GATEWAY_DEFINITION,
        key: "TcpPorts",
        child: &kinds::GATEWAY_TCP_PORT,
        identity: "Port",
    },
];

/// Fields only `tptctl` reads (upstream reads AWS credentials from local files, never sends paths).
const AWS_LOCAL_FIELDS: &[&str] = &["LocalConfig", "LocalCredentials", "LocalProfile"];

/// Every top-level key the format accepts.
pub fn top_level_keys() -> Vec<&'static str> {
    kinds::composites()
        .map(|c| c.name)
        .chain(KINDS.iter().map(|k| k.name))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// YAML with line numbers

#[derive(Debug, Clone)]
enum Y {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<(Y, usize)>),
    Map(Vec<(String, Y, usize)>),
}

impl Y {
    fn from_marked(n: &MarkedYamlOwned) -> Y {
        match &n.data {
            YamlDataOwned::Value(s) => match s {
                ScalarOwned::Null => Y::Null,
                ScalarOwned::Boolean(b) => Y::Bool(*b),
                ScalarOwned::Integer(i) => Y::Int(*i),
                ScalarOwned::FloatingPoint(f) => Y::Float(f.into_inner()),
                ScalarOwned::String(s) => Y::Str(s.clone()),
            },
            YamlDataOwned::Representation(s, _, _) => Y::Str(s.clone()),
            YamlDataOwned::Sequence(items) => Y::Seq(
                items
                    .iter()
                    .map(|i| (Y::from_marked(i), i.span.start.line()))
                    .collect(),
            ),
            YamlDataOwned::Mapping(m) => Y::Map(
                m.iter()
                    .map(|(k, v)| {
                        let key = match Y::from_marked(k) {
                            Y::Str(s) => s,
                            other => other.to_json().to_string(),
                        };
                        (key, Y::from_marked(v), k.span.start.line())
                    })
                    .collect(),
            ),
            YamlDataOwned::Tagged(_, inner) => Y::from_marked(inner),
            YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => Y::Null,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Y::Null => Value::Null,
            Y::Bool(b) => Value::Bool(*b),
            Y::Int(i) => Value::from(*i),
            Y::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Y::Str(s) => Value::String(s.clone()),
            Y::Seq(items) => Value::Array(items.iter().map(|(y, _)| y.to_json()).collect()),
            Y::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v, _)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    fn to_yaml(&self) -> saphyr::Yaml<'_> {
        use saphyr::{Scalar, Yaml};
        use std::borrow::Cow;
        match self {
            Y::Null => Yaml::Value(Scalar::Null),
            Y::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
            Y::Int(i) => Yaml::Value(Scalar::Integer(*i)),
            Y::Float(f) => Yaml::Value(Scalar::FloatingPoint((*f).into())),
            Y::Str(s) => Yaml::Value(Scalar::String(Cow::Borrowed(s))),
            Y::Seq(items) => Yaml::Sequence(items.iter().map(|(y, _)| y.to_yaml()).collect()),
            Y::Map(entries) => {
                let mut m = saphyr::Mapping::new();
                for (k, v, _) in entries {
                    m.insert(Yaml::Value(Scalar::String(Cow::Borrowed(k))), v.to_yaml());
                }
                Yaml::Mapping(m)
            }
        }
    }

    /// The value as a YAML document (inline Helm values become the `…Document` field's text).
    fn to_yaml_text(&self) -> String {
        let mut out = String::new();
        let mut e = saphyr::YamlEmitter::new(&mut out);
        e.multiline(true);
        if e.dump(&self.to_yaml()).is_err() {
            return self.to_json().to_string(); // JSON is YAML too
        }
        let body = out.strip_prefix("---\n").unwrap_or(&out);
        format!("{body}\n")
    }

    fn name(&self) -> Option<&str> {
        match self {
            Y::Map(entries) => {
                entries
                    .iter()
                    .find(|(k, _, _)| k == "Name")
                    .and_then(|(_, v, _)| match v {
                        Y::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Load a file, or every `.yaml`/`.yml` file of a directory (recursively with `recursive`).
pub fn load_path(path: &Path, recursive: bool) -> Loaded {
    let mut out = Loaded::default();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                out.problems
                    .push(file_problem(path, 0, format!("cannot read directory: {e}")));
                return out;
            }
        };
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if recursive {
                    out.merge(load_path(&p, true));
                }
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && !is_foreign(&p)
            {
                out.merge(load_path(&p, recursive));
            }
        }
        return out;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            load_str(&text, &path.display().to_string(), &base)
        }
        Err(e) => {
            out.problems
                .push(file_problem(path, 0, format!("cannot read file: {e}")));
            out
        }
    }
}

/// In a directory, Threeport files sit next to the documents they point at (Kubernetes
/// manifests, Helm values). Threeport's top-level keys are PascalCase kinds; a file whose
/// documents only have lower-case top-level keys (`apiVersion`, `replicaCount`) is one of those
/// documents, not a Threeport file, so directory loads skip it. A file given by name is never skipped.
fn is_foreign(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(docs) = MarkedYamlOwned::load_from_str(&text) else {
        return false;
    };
    let mut keys = docs.iter().filter_map(|d| match Y::from_marked(d) {
        Y::Map(entries) => Some(entries.into_iter().map(|(k, _, _)| k).collect::<Vec<_>>()),
        _ => None,
    });
    keys.all(|ks| {
        ks.iter()
            .all(|k| k.starts_with(|c: char| !c.is_ascii_uppercase()))
    })
}

fn file_problem(path: &Path, line: usize, message: String) -> Problem {
    Problem {
        file: path.display().to_string(),
        line,
        object: None,
        message,
    }
}

/// Load YAML text. `file` labels messages; `base` resolves relative document paths.
pub fn load_str(text: &str, file: &str, base: &Path) -> Loaded {
    let mut out = Loaded::default();
    let docs = match MarkedYamlOwned::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            out.problems.push(Problem {
                file: file.into(),
                line: e.marker().line(),
                object: None,
                message: format!(
                    "YAML syntax error: {} (column {})",
                    e.info(),
                    e.marker().col() + 1
                ),
            });
            return out;
        }
    };
    let ctx = Ctx { file, base };
    for doc in &docs {
        let line = doc.span.start.line();
        match Y::from_marked(doc) {
            Y::Null => {}
            Y::Map(entries) => {
                for (key, body, line) in entries {
                    ctx.object(&key, &body, line, &mut out);
                }
            }
            _ => out.problems.push(Problem {
                file: file.into(),
                line,
                object: None,
                message: "a document must be a mapping whose key is the kind, for example `WorkloadDefinition: {Name: web, YAMLDocument: web.yaml}`".to_string(),
            }),
        }
    }
    out
}

struct Ctx<'a> {
    file: &'a str,
    base: &'a Path,
}

/// How a YAML key maps onto a kind's fields.
enum Route {
    Literal(&'static kinds::Field),
    Reference(&'static kinds::Field, &'static Kind),
    Children(&'static ChildList),
    AwsLocal,
    /// `ValuesDocument` written inline as `Values: {…}` (upstream's `DefinitionValues`, the
    /// observability stack's `GrafanaHelmValues`): stored as the document's YAML text.
    InlineDocument(&'static kinds::Field),
}

fn route(kind: &'static Kind, key: &str, value: &Y) -> Option<Route> {
    if let Some(f) = kind.field(key) {
        let writable =
            !kinds::SERVER_MANAGED.contains(&f.name) && f.name != "ResourceVersion" && !f.status;
        // `XID: 123` stays possible for scripts that already know IDs.
        if writable {
            return Some(Route::Literal(f));
        }
        return None;
    }
    // `WorkloadDefinition: {Name: web}` fills `WorkloadDefinitionID`; `AwsAccountName: prod`
    // fills `AwsAccountID`.
    let by_id = kind
        .field(&format!("{key}ID"))
        .filter(|f| f.references.is_some());
    if let (Some(f), Y::Map(_)) = (by_id, value) {
        return Some(Route::Reference(f, kinds::by_name(f.references?)?));
    }
    if let Some(stem) = key.strip_suffix("Name")
        && let Some(f) = kind
            .field(&format!("{stem}ID"))
            .filter(|f| f.references.is_some())
        && matches!(value, Y::Str(_))
    {
        return Some(Route::Reference(f, kinds::by_name(f.references?)?));
    }
    if let Some(c) = CHILD_LISTS
        .iter()
        .find(|c| std::ptr::eq(*c.parent, kind) && c.key == key)
    {
        return Some(Route::Children(c));
    }
    if std::ptr::eq(kind, kinds::AWS_ACCOUNT) && AWS_LOCAL_FIELDS.contains(&key) {
        return Some(Route::AwsLocal);
    }
    if let Some(f) = kind
        .field(&format!("{key}Document"))
        .filter(|f| f.ty == FieldType::Text && !f.status)
        && matches!(value, Y::Map(_) | Y::Seq(_) | Y::Str(_))
    {
        return Some(Route::InlineDocument(f));
    }
    None
}

/// Dependencies written inside a defined instance (`Workload: {AwsRelationalDatabase: {…}}`):
/// every other defined instance whose instance kind refers to `parent`'s instance kind.
fn nested(parent: &'static Kind, key: &str) -> Option<kinds::Composite> {
    kinds::composites().find(|c| {
        c.name == key
            && !std::ptr::eq(c.instance, parent)
            && c.instance
                .fields()
                .any(|f| f.attaches && f.references == Some(parent.name))
    })
}

/// Keys split between the two halves of a defined instance: `DefinitionValuesDocument` is the
/// definition's `ValuesDocument`, `InstanceValues` the instance's inline values (upstream's
/// `HelmWorkload`).
fn split_prefix<'k>(
    key: &'k str,
    def: &'static Kind,
    inst: &'static Kind,
    value: &Y,
) -> Option<(bool, &'k str)> {
    if let Some(rest) = key.strip_prefix("Definition")
        && route(def, rest, value).is_some()
    {
        return Some((true, rest));
    }
    if let Some(rest) = key.strip_prefix("Instance")
        && route(inst, rest, value).is_some()
    {
        return Some((false, rest));
    }
    None
}

/// Every key `kind` accepts in YAML, for did-you-mean hints.
fn accepted_keys(kind: &'static Kind) -> Vec<String> {
    let mut keys: Vec<String> = kind
        .writable_fields()
        .filter(|f| !f.status)
        .map(|f| f.name.to_string())
        .collect();
    for f in kind.fields().filter(|f| f.references.is_some()) {
        let stem = f.name.trim_end_matches("ID");
        keys.push(stem.to_string());
        if stem.starts_with("Aws") {
            keys.push(format!("{stem}Name"));
        }
    }
    keys.extend(
        CHILD_LISTS
            .iter()
            .filter(|c| std::ptr::eq(*c.parent, kind))
            .map(|c| c.key.to_string()),
    );
    keys.extend(
        kind.fields()
            .filter_map(|f| {
                f.name
                    .strip_suffix("Document")
                    .filter(|_| f.ty == FieldType::Text)
            })
            .map(str::to_string),
    );
    keys.extend(
        kinds::composites()
            .filter(|c| nested(kind, c.name).is_some())
            .map(|c| c.name.to_string()),
    );
    keys
}

fn suggest(key: &str, kinds: &[&'static Kind]) -> String {
    let mut best: Option<(f64, String)> = None;
    for k in kinds {
        for cand in accepted_keys(k) {
            let score = if cand.eq_ignore_ascii_case(key) {
                1.0
            } else {
                strsim::jaro_winkler(&cand.to_ascii_lowercase(), &key.to_ascii_lowercase())
            };
            if score >= 0.8 && best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, cand));
            }
        }
    }
    let _ = did_you_mean;
    match best {
        Some((_, c)) => format!("; did you mean \"{c}\"?"),
        None => String::new(),
    }
}

impl Ctx<'_> {
    fn object(&self, key: &str, body: &Y, line: usize, out: &mut Loaded) {
        let name = body.name().map(str::to_string);
        let entries = match body {
            Y::Map(e) => e,
            _ => {
                out.problems.push(Problem {
                    file: self.file.into(),
                    line,
                    object: None,
                    message: format!(
                        "{key}: expected a mapping of fields, for example `{key}: {{Name: …}}`"
                    ),
                });
                return;
            }
        };
        let Some(name) = name else {
            out.problems.push(Problem {
                file: self.file.into(),
                line,
                object: None,
                message: format!("{key}: missing required field \"Name\""),
            });
            return;
        };
        if let Some(c) = kinds::composites().find(|c| c.name == key) {
            let def = c.definition;
            let inst = c.instance;
            self.composite(def, inst, &name, entries, line, out);
        } else if let Some(kind) = kinds::by_name(key) {
            let (objs, problems) = self.build(kind, &name, entries, line, &[], &[]);
            self.finish(objs, problems, &[(kind, name.clone())], out);
        } else {
            let keys = top_level_keys();
            let hint = keys
                .iter()
                .map(|k| {
                    (
                        strsim::jaro_winkler(&k.to_ascii_lowercase(), &key.to_ascii_lowercase()),
                        *k,
                    )
                })
                .filter(|(s, _)| *s >= 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            out.problems.push(Problem {
                file: self.file.into(),
                line,
                object: None,
                message: format!("unknown kind \"{key}\"{hint}"),
            });
            out.broken.insert((key.to_string(), name));
        }
    }

    fn finish(
        &self,
        objs: Vec<Desired>,
        problems: Vec<Problem>,
        identities: &[(&'static Kind, String)],
        out: &mut Loaded,
    ) {
        if problems.is_empty() {
            out.objects.extend(objs);
        } else {
            out.problems.extend(problems);
            for (k, n) in identities {
                out.broken.insert((k.name.to_string(), n.clone()));
            }
            for o in objs {
                out.broken.insert((o.kind.name.to_string(), o.name));
            }
        }
    }

    fn composite(
        &self,
        def: &'static Kind,
        inst: &'static Kind,
        name: &str,
        entries: &[(String, Y, usize)],
        line: usize,
        out: &mut Loaded,
    ) {
        let (objs, problems, identities) = self.expand(def, inst, name, entries, line, None);
        self.finish(objs, problems, &identities, out);
    }

    /// A defined instance and the dependencies nested in it. `parent`: the instance this one is
    /// nested in, which its instance refers to and whose runtime it shares. A problem anywhere
    /// in the tree leaves the whole tree out (a workload without its database is not what the
    /// file asks for).
    #[allow(clippy::type_complexity)]
    fn expand(
        &self,
        def: &'static Kind,
        inst: &'static Kind,
        name: &str,
        entries: &[(String, Y, usize)],
        line: usize,
        parent: Option<(&Desired, Vec<Ref>)>,
    ) -> (Vec<Desired>, Vec<Problem>, Vec<(&'static Kind, String)>) {
        // Each key goes to the definition if it takes it, else to the instance.
        let mut def_entries = Vec::new();
        let mut inst_entries = Vec::new();
        let mut children: Vec<(kinds::Composite, &Vec<(String, Y, usize)>, usize)> = Vec::new();
        let mut problems = Vec::new();
        let composite_name = def.name.trim_end_matches("Definition");
        for (k, v, l) in entries {
            if k == "Name" {
                def_entries.push((k.clone(), v.clone(), *l));
                inst_entries.push((k.clone(), v.clone(), *l));
            } else if route(def, k, v).is_some() {
                def_entries.push((k.clone(), v.clone(), *l));
            } else if route(inst, k, v).is_some() {
                inst_entries.push((k.clone(), v.clone(), *l));
            } else if let Some((to_def, rest)) = split_prefix(k, def, inst, v) {
                let e = (rest.to_string(), v.clone(), *l);
                if to_def {
                    def_entries.push(e)
                } else {
                    inst_entries.push(e)
                }
            } else if let (Some(c), Y::Map(body)) = (nested(inst, k), v) {
                children.push((c, body, *l));
            } else {
                let hint = match nested(inst, k) {
                    Some(_) => format!("; write it as a mapping, for example `{k}: {{Name: …}}`"),
                    None => suggest(k, &[def, inst]),
                };
                problems.push(Problem {
                    file: self.file.into(),
                    line: *l,
                    object: Some((composite_name.to_string(), name.to_string())),
                    message: format!("unknown field \"{k}\"{hint}"),
                });
            }
        }
        let (mut objs, p1) = self.build(def, name, &def_entries, line, &[], &[]);
        let definition_ref = Ref {
            field: leak_id_field(inst, def),
            kind: def,
            name: name.to_string(),
            line,
        };
        let mut inst_refs = vec![definition_ref.clone()];
        let mut implied = vec![definition_ref.field];
        if let Some((_, refs)) = &parent {
            implied.extend(refs.iter().map(|r| r.field));
            inst_refs.extend(refs.iter().cloned());
        }
        let (mut inst_objs, p2) = self.build(inst, name, &inst_entries, line, &implied, &inst_refs);
        // A nested dependency runs where its workload runs.
        if let (Some((p, _)), Some(i)) = (&parent, inst_objs.first_mut())
            && i.kind.field("KubernetesRuntimeInstanceID").is_some()
            && !i
                .refs
                .iter()
                .any(|r| r.field == "KubernetesRuntimeInstanceID")
            && !i.fields.contains_key("KubernetesRuntimeInstanceID")
        {
            i.wants_default_runtime = p.wants_default_runtime;
            i.refs.extend(
                p.refs
                    .iter()
                    .filter(|r| r.field == "KubernetesRuntimeInstanceID")
                    .cloned(),
            );
        }
        problems.extend(p1);
        problems.extend(p2);
        let mut identities = vec![(def, name.to_string()), (inst, name.to_string())];
        let parent_inst = inst_objs.first().cloned();
        objs.extend(inst_objs);
        let Some(parent_inst) = parent_inst else {
            return (objs, problems, identities);
        };
        // Nested dependencies: named as written, or after their workload.
        let named: Vec<(kinds::Composite, String)> = children
            .iter()
            .map(|(c, body, _)| {
                let n = body
                    .iter()
                    .find(|(k, _, _)| k == "Name")
                    .and_then(|(_, v, _)| match v {
                        Y::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| name.to_string());
                (*c, n)
            })
            .collect();
        for ((c, body, l), (_, child_name)) in children.iter().zip(&named) {
            let mut body: Vec<(String, Y, usize)> = (*body).clone();
            if !body.iter().any(|(k, _, _)| k == "Name") {
                body.push(("Name".into(), Y::Str(child_name.clone()), *l));
            }
            // A sibling's definition this one refers to and does not name (a nested Gateway
            // next to a nested DomainName) is that sibling.
            for (other, other_name) in &named {
                if std::ptr::eq(other.definition, c.definition) {
                    continue;
                }
                let Some(f) = c
                    .definition
                    .fields()
                    .find(|f| f.references == Some(other.definition.name))
                else {
                    continue;
                };
                let stem = f.name.trim_end_matches("ID");
                if !body.iter().any(|(k, _, _)| k == stem || k == f.name) {
                    let m = vec![("Name".to_string(), Y::Str(other_name.clone()), *l)];
                    body.push((stem.to_string(), Y::Map(m), *l));
                }
            }
            let up = Ref {
                field: leak_id_field(c.instance, inst),
                kind: inst,
                name: name.to_string(),
                line: *l,
            };
            let (o, p, ids) = self.expand(
                c.definition,
                c.instance,
                child_name,
                &body,
                *l,
                Some((&parent_inst, vec![up])),
            );
            objs.extend(o);
            problems.extend(p);
            identities.extend(ids);
        }
        (objs, problems, identities)
    }

    /// Build one object (plus inline children). `implied` fields are filled by `extra_refs`.
    fn build(
        &self,
        kind: &'static Kind,
        name: &str,
        entries: &[(String, Y, usize)],
        line: usize,
        implied: &[&str],
        extra_refs: &[Ref],
    ) -> (Vec<Desired>, Vec<Problem>) {
        let mut d = Desired {
            kind,
            name: name.to_string(),
            fields: Map::new(),
            refs: extra_refs.to_vec(),
            file: self.file.into(),
            line,
            wants_default_runtime: false,
        };
        d.fields.insert("Name".into(), Value::String(name.into()));
        let mut problems = Vec::new();
        let mut children = Vec::new();
        // Each with the line it is on, for the error when its file cannot be read.
        let mut aws_local: HashMap<&str, (String, usize)> = HashMap::new();
        // Fields that were written but could not be read: already reported, so not "missing".
        let mut failed: Vec<&'static str> = Vec::new();
        for (key, value, l) in entries {
            if key == "Name" {
                if !matches!(value, Y::Str(_)) {
                    problems.push(d.problem(*l, "field \"Name\": must be a string"));
                }
                continue;
            }
            match route(kind, key, value) {
                Some(Route::Literal(f)) => match self.literal(f, value) {
                    Ok(v) => {
                        d.fields.insert(f.name.into(), v);
                    }
                    Err(m) => {
                        failed.push(f.name);
                        problems.push(d.problem(*l, format!("field \"{key}\": {m}")))
                    }
                },
                Some(Route::Reference(f, target)) => {
                    let target_name = match value {
                        Y::Str(s) => Some(s.clone()),
                        other => other.name().map(str::to_string),
                    };
                    match target_name {
                        Some(n) => d.refs.push(Ref {
                            field: f.name,
                            kind: target,
                            name: n,
                            line: *l,
                        }),
                        None => problems.push(d.problem(
                            *l,
                            format!(
                                "field \"{key}\": refer to a {} by name, as `{key}: {{Name: …}}`",
                                target.name
                            ),
                        )),
                    }
                }
                Some(Route::Children(c)) => match value {
                    Y::Seq(items) => {
                        let child = *c.child;
                        for (item, il) in items {
                            let Y::Map(fields) = item else {
                                problems.push(d.problem(
                                    *il,
                                    format!("field \"{key}\": each item must be a mapping"),
                                ));
                                continue;
                            };
                            let ident = fields
                                .iter()
                                .find(|(k, _, _)| k == c.identity)
                                .map(|(_, v, _)| v.to_json());
                            let Some(ident) = ident.filter(|v| !v.is_null()) else {
                                problems.push(d.problem(
                                    *il,
                                    format!("field \"{key}\": each item needs \"{}\"", c.identity),
                                ));
                                continue;
                            };
                            let child_name =
                                format!("{name}-{}", ident.to_string().trim_matches('"'));
                            let parent_ref = Ref {
                                field: leak_id_field(child, kind),
                                kind,
                                name: name.to_string(),
                                line: *il,
                            };
                            let (objs, p) = self.build(
                                child,
                                &child_name,
                                fields,
                                *il,
                                &[parent_ref.field],
                                &[parent_ref],
                            );
                            children.extend(objs);
                            problems.extend(p);
                        }
                    }
                    _ => problems.push(d.problem(*l, format!("field \"{key}\": must be a list"))),
                },
                Some(Route::InlineDocument(f)) => {
                    let text = match value {
                        Y::Str(s) => s.clone(),
                        other => other.to_yaml_text(),
                    };
                    d.fields.insert(f.name.into(), Value::String(text));
                }
                Some(Route::AwsLocal) => match value {
                    Y::Str(s) => {
                        aws_local.insert(key.as_str(), (s.clone(), *l));
                    }
                    _ => problems.push(d.problem(*l, format!("field \"{key}\": must be a string"))),
                },
                None => {
                    problems.push(d.problem(
                        *l,
                        format!("unknown field \"{key}\"{}", suggest(key, &[kind])),
                    ));
                }
            }
        }
        if !aws_local.is_empty()
            && let Err((at, m)) = self.aws_local(&aws_local, &mut d.fields)
        {
            problems.push(d.problem(at, m));
        }
        // An EKS runtime's reference is the runtime it becomes (its controller registers it),
        // not one it runs on: it never takes the default.
        let has_runtime_field = kind.field("KubernetesRuntimeInstanceID").is_some()
            && kind.role == kinds::Role::Instance
            && !std::ptr::eq(kind, kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE);
        if has_runtime_field
            && !d.fields.contains_key("KubernetesRuntimeInstanceID")
            && !d
                .refs
                .iter()
                .any(|r| r.field == "KubernetesRuntimeInstanceID")
        {
            d.wants_default_runtime = true;
        }
        for f in kind
            .writable_fields()
            .filter(|f| f.required && f.name != "Name")
        {
            let given = d.fields.get(f.name).is_some_and(|v| !v.is_null())
                || d.refs.iter().any(|r| r.field == f.name)
                || implied.contains(&f.name)
                || failed.contains(&f.name);
            if !given {
                let hint = match f.references {
                    Some(t) => format!(" (write `{t}: {{Name: …}}`)"),
                    None => String::new(),
                };
                problems
                    .push(d.problem(line, format!("missing required field \"{}\"{hint}", f.name)));
            }
        }
        if let Err(e) = crate::services::check_object(kind, &d.fields) {
            let at = entries
                .iter()
                .find(|(k, _, _)| *k == e.field)
                .map_or(line, |(_, _, l)| *l);
            problems.push(d.problem(at, e.to_string()));
        }
        let mut objs = vec![d];
        objs.extend(children);
        (objs, problems)
    }

    fn literal(&self, f: &'static kinds::Field, value: &Y) -> Result<Value, String> {
        let json = value.to_json();
        check_type(f.ty, &json)?;
        check_allowed(f, &json)?;
        if f.ty == FieldType::Text
            && let Y::Str(path) = value
        {
            if f.name.ends_with("Document") {
                let p = self.base.join(path);
                return std::fs::read_to_string(&p).map(Value::String).map_err(|e| {
                    format!(
                        "cannot read {}: {e} (document paths are relative to the YAML file)",
                        p.display()
                    )
                });
            }
            if f.name == "ConfigDir" {
                return read_config_dir(&self.base.join(path)).map(Value::String);
            }
        }
        Ok(json)
    }

    /// Upstream's AwsAccount reads keys and region from the local AWS CLI files.
    fn aws_local(
        &self,
        local: &HashMap<&str, (String, usize)>,
        fields: &mut Map<String, Value>,
    ) -> Result<(), (usize, String)> {
        let (profile, profile_line) = local
            .get("LocalProfile")
            .cloned()
            .unwrap_or_else(|| ("default".into(), 0));
        if let Some((creds, at)) = local.get("LocalCredentials") {
            let p = expand_home(&self.base.join(creds));
            let ini = ini::Ini::load_from_file(&p).map_err(|e| {
                (
                    *at,
                    format!(
                        "field \"LocalCredentials\": cannot read {}: {e}; point it at your AWS credentials file (usually ~/.aws/credentials)",
                        p.display()
                    ),
                )
            })?;
            let section = ini.section(Some(profile.as_str())).ok_or_else(|| {
                (
                    if profile_line > 0 { profile_line } else { *at },
                    format!(
                        "field \"LocalProfile\": profile [{profile}] not found in {}",
                        p.display()
                    ),
                )
            })?;
            for (ini_key, field) in [
                ("aws_access_key_id", "AccessKeyID"),
                ("aws_secret_access_key", "SecretAccessKey"),
            ] {
                let v = section.get(ini_key).ok_or_else(|| {
                    (
                        *at,
                        format!("{} has no {ini_key} in [{profile}]", p.display()),
                    )
                })?;
                fields.insert(field.into(), Value::String(v.into()));
            }
        }
        if let Some((config, at)) = local.get("LocalConfig") {
            let p = expand_home(&self.base.join(config));
            let ini = ini::Ini::load_from_file(&p).map_err(|e| {
                (
                    *at,
                    format!(
                        "field \"LocalConfig\": cannot read {}: {e}; point it at your AWS config file (usually ~/.aws/config)",
                        p.display()
                    ),
                )
            })?;
            let section_name = if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            };
            if let Some(region) = ini
                .section(Some(section_name.as_str()))
                .and_then(|s| s.get("region"))
            {
                fields
                    .entry("DefaultRegion")
                    .or_insert_with(|| Value::String(region.into()));
            }
        }
        Ok(())
    }
}

fn expand_home(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    match (s.find("~/"), std::env::var_os("HOME")) {
        (Some(i), Some(home)) => PathBuf::from(home).join(&s[i + 2..]),
        _ => p.to_path_buf(),
    }
}

/// Terraform configuration: every `.tf` file of the directory, in name order.
fn read_config_dir(dir: &Path) -> Result<String, String> {
    if dir.is_file() {
        return std::fs::read_to_string(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} has no .tf files", dir.display()));
    }
    let mut out = String::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        out.push_str(&format!(
            "# {}\n{text}\n",
            f.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    Ok(out)
}

/// The `<Target>ID` field of `kind` that points at `target`.
fn leak_id_field(kind: &'static Kind, target: &'static Kind) -> &'static str {
    kind.fields()
        .find(|f| f.references == Some(target.name))
        .map(|f| f.name)
        .expect("the registry links these kinds")
}

// ---------------------------------------------------------------------------------------------
// Ordering

/// Sort objects so every object comes after the objects it references (definitions before
/// instances, runtimes before workloads). Objects in a cycle, or depending on broken objects, are
/// reported and left out.
pub fn order(loaded: Loaded) -> Loaded {
    let Loaded {
        objects,
        mut problems,
        mut broken,
    } = loaded;
    let mut seen: HashMap<(&'static str, String), usize> = HashMap::new();
    let mut unique = Vec::new();
    for o in objects {
        if let Some(&first) = seen.get(&o.key()) {
            let first: &Desired = &unique[first];
            problems.push(o.problem(
                o.line,
                format!("defined twice (first at {}:{})", first.file, first.line),
            ));
            broken.insert((o.kind.name.into(), o.name.clone()));
            continue;
        }
        seen.insert(o.key(), unique.len());
        unique.push(o);
    }
    let index: HashMap<(&'static str, String), usize> = unique
        .iter()
        .enumerate()
        .map(|(i, o)| (o.key(), i))
        .collect();
    let deps: Vec<Vec<usize>> = unique
        .iter()
        .map(|o| {
            o.refs
                .iter()
                .filter_map(|r| index.get(&(r.kind.name, r.name.clone())).copied())
                .collect()
        })
        .collect();
    // Depth-first topological sort; grey nodes on the stack reveal cycles.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    let mut mark = vec![Mark::White; unique.len()];
    let mut sorted = Vec::new();
    let mut cyclic = BTreeSet::new();
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        mark: &mut [Mark],
        stack: &mut Vec<usize>,
        sorted: &mut Vec<usize>,
        cyclic: &mut BTreeSet<usize>,
    ) {
        match mark[i] {
            Mark::Black => return,
            Mark::Grey => {
                if let Some(pos) = stack.iter().position(|&s| s == i) {
                    cyclic.extend(stack[pos..].iter().copied());
                }
                return;
            }
            Mark::White => {}
        }
        mark[i] = Mark::Grey;
        stack.push(i);
        for &d in &deps[i] {
            visit(d, deps, mark, stack, sorted, cyclic);
        }
        stack.pop();
        mark[i] = Mark::Black;
        sorted.push(i);
    }
    // Visit in registry order so independent objects still come out kind by kind.
    let mut roots: Vec<usize> = (0..unique.len()).collect();
    roots.sort_by_key(|&i| KINDS.iter().position(|k| k.name == unique[i].kind.name));
    for i in roots {
        visit(
            i,
            &deps,
            &mut mark,
            &mut Vec::new(),
            &mut sorted,
            &mut cyclic,
        );
    }
    // One cycle, one error: it is reported on its first member; the others say why they were
    // not applied.
    let first = cyclic.iter().next().copied();
    for &i in &cyclic {
        let o = &unique[i];
        let message = if Some(i) == first {
            let members: Vec<String> = cyclic.iter().map(|&j| unique[j].label()).collect();
            format!("dependency cycle: {}", members.join(" → "))
        } else {
            format!(
                "not applied: it is in the cycle reported for {}",
                first.map(|f| unique[f].label()).unwrap_or_default()
            )
        };
        problems.push(o.problem(o.line, message));
        broken.insert((o.kind.name.into(), o.name.clone()));
    }
    // Anything depending (directly or not) on a broken object is skipped.
    let mut out = Vec::new();
    for i in sorted {
        let o = &unique[i];
        if cyclic.contains(&i) {
            continue;
        }
        if let Some(r) = o
            .refs
            .iter()
            .find(|r| broken.contains(&(r.kind.name.to_string(), r.name.clone())))
        {
            problems.push(o.problem(
                r.line,
                format!(
                    "not applied: it refers to {} {:?}, which has errors",
                    r.kind.name, r.name
                ),
            ));
            broken.insert((o.kind.name.into(), o.name.clone()));
            continue;
        }
        out.push(o.clone());
    }
    Loaded {
        objects: out,
        problems,
        broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        order(load_str(text, "t.yaml", Path::new("/nonexistent")))
    }

    #[test]
    fn composite_expands_and_orders() {
        let l = load(
            "Workload:\n  Name: web\n  KubernetesRuntimeInstance:\n    Name: dev\n---\nKubernetesRuntime:\n  Name: dev\n  InfraProvider: kind\n  Location: Local\n  DefaultRuntime: true\n",
        );
        // YAMLDocument is required and missing: one error for the Workload, whose instance is
        // then not applied either.
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        assert!(
            l.problems[0].to_string().starts_with(
                "t.yaml:1: WorkloadDefinition \"web\": missing required field \"YAMLDocument\""
            ),
            "{}",
            l.problems[0]
        );
        let labels: Vec<String> = l.objects.iter().map(Desired::label).collect();
        assert_eq!(
            labels,
            vec![
                "kubernetes-runtime-definition/dev",
                "kubernetes-runtime-instance/dev"
            ]
        );
        let kri = &l.objects[1];
        assert_eq!(kri.fields["Location"], "Local");
        assert_eq!(kri.fields["DefaultRuntime"], true);
        assert_eq!(kri.refs[0].field, "KubernetesRuntimeDefinitionID");
    }

    fn upstream(file: &str) -> Loaded {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/upstream");
        order(load_path(&dir.join(file), false))
    }

    fn find<'a>(l: &'a Loaded, kind: &str, name: &str) -> &'a Desired {
        l.objects
            .iter()
            .find(|o| o.kind.name == kind && o.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "{kind} {name} in {:?}",
                    l.objects.iter().map(Desired::label).collect::<Vec<_>>()
                )
            })
    }

    fn refers(d: &Desired, field: &str, name: &str) -> bool {
        d.refs.iter().any(|r| r.field == field && r.name == name)
    }

    #[test]
    fn upstreams_composite_workload_expands_into_every_dependency() {
        let l = upstream("wordpress-workload-remote.yaml");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let labels: Vec<String> = l.objects.iter().map(Desired::label).collect();
        assert_eq!(labels.len(), 14, "{labels:?}");
        let wi = find(&l, "WorkloadInstance", "wordpress");
        assert!(refers(wi, "KubernetesRuntimeInstanceID", "eks-k8s-runtime"));
        for (inst, name) in [
            ("AwsRelationalDatabaseInstance", "wordpress-db"),
            ("AwsObjectStorageBucketInstance", "s3-client-bucket"),
            ("DomainNameInstance", "example-domain"),
            ("SecretInstance", "wordpress-secret"),
            ("GatewayInstance", "web-service-gateway"),
        ] {
            let d = find(&l, inst, name);
            assert!(
                refers(d, "WorkloadInstanceID", "wordpress"),
                "{inst}: {:?}",
                d.refs
            );
            // Dependencies run where their workload runs, not on the default runtime.
            if d.kind.field("KubernetesRuntimeInstanceID").is_some() {
                assert!(
                    refers(d, "KubernetesRuntimeInstanceID", "eks-k8s-runtime"),
                    "{inst}"
                );
                assert!(!d.wants_default_runtime, "{inst}");
            }
            // Created after the workload instance they refer to.
            let pos = |label: &str| labels.iter().position(|x| x == label).unwrap();
            assert!(
                pos(&d.label()) > pos("workload-instance/wordpress"),
                "{labels:?}"
            );
        }
        let db = find(&l, "AwsRelationalDatabaseDefinition", "wordpress-db");
        assert_eq!(db.fields["Engine"], "mariadb");
        assert_eq!(db.fields["EngineVersion"], "10.11");
        assert_eq!(db.fields["MachineSize"], "XSmall");
        assert!(refers(db, "AwsAccountID", "default-account"));
        let secret = find(&l, "SecretDefinition", "wordpress-secret");
        assert_eq!(
            secret.fields["Data"]["WORDPRESS_PASSWORD"],
            "admin_password"
        );
        // The gateway uses the domain name written next to it.
        let gw = find(&l, "GatewayDefinition", "web-service-gateway");
        assert!(
            refers(gw, "DomainNameDefinitionID", "example-domain"),
            "{:?}",
            gw.refs
        );
        assert_eq!(gw.fields["SubDomain"], "blog");
        let https = find(&l, "GatewayHttpPort", "web-service-gateway-443");
        assert_eq!(https.fields["TLSEnabled"], true);
        assert_eq!(https.fields["Path"], "/");
    }

    #[test]
    fn nested_dependencies_without_a_name_take_the_workloads() {
        let l = upstream("wordpress-workload-unnamed.yaml");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        find(&l, "DomainNameInstance", "wordpress-guide");
        let gw = find(&l, "GatewayDefinition", "wordpress-guide");
        assert!(refers(gw, "DomainNameDefinitionID", "wordpress-guide"));
        // No runtime named: the workload and what it carries use the default one.
        assert!(find(&l, "WorkloadInstance", "wordpress-guide").wants_default_runtime);
        assert!(find(&l, "GatewayInstance", "wordpress-guide").wants_default_runtime);
    }

    #[test]
    fn a_problem_in_a_nested_dependency_leaves_the_whole_workload_out() {
        let l = load(
            "Workload:\n  Name: wp\n  YAMLDocument: x\n  AwsRelationalDatabase:\n    Name: db\n    AwsAccountName: a\n    Engine: mariadb\n    EngineVersion: \"9.9\"\n    MachineSize: Tiny\n",
        );
        let text: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|p| p.starts_with("t.yaml:9: AwsRelationalDatabaseDefinition \"db\": field \"MachineSize\": \"Tiny\" is not one of XSmall, Small")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.starts_with("t.yaml:8: AwsRelationalDatabaseDefinition \"db\": field \"EngineVersion\": mariadb \"9.9\" is not a supported version; use one of 10.4")),
            "{text:?}"
        );
        assert!(
            l.objects.is_empty(),
            "{:?}",
            l.objects.iter().map(Desired::label).collect::<Vec<_>>()
        );
        assert!(l.broken.contains(&("WorkloadInstance".into(), "wp".into())));
        // A nested kind written as a scalar says how to write it.
        let l = load("Workload:\n  Name: wp\n  YAMLDocument: x\n  Gateway: web\n");
        assert!(
            l.problems[0].message.contains("write it as a mapping"),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn upstreams_helm_observability_and_control_plane_forms() {
        let l = upstream("helm-observability-control-plane.yaml");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let hd = find(&l, "HelmWorkloadDefinition", "wordpress-helm");
        assert_eq!(hd.fields["ValuesDocument"], "wordpressUsername: admin\n");
        let hi = find(&l, "HelmWorkloadInstance", "wordpress-helm");
        let values = hi.fields["ValuesDocument"].as_str().unwrap();
        assert!(
            values.contains("replicaCount: 2") && values.contains("type: ClusterIP"),
            "{values}"
        );
        let oi = find(&l, "ObservabilityStackInstance", "observability");
        assert_eq!(oi.fields["MetricsEnabled"], true);
        assert_eq!(oi.fields["LoggingEnabled"], false);
        let od = find(&l, "ObservabilityStackDefinition", "observability");
        assert_eq!(od.fields["GrafanaHelmValuesDocument"], "adminUser: admin\n");
        let cp = find(&l, "ControlPlaneInstance", "child");
        assert_eq!(
            cp.fields["CustomComponentInfo"][0]["ImageRepo"],
            "ghcr.io/example"
        );
        let l = upstream("eks-runtime.yaml");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(
            find(&l, "KubernetesRuntimeDefinition", "eks-k8s-runtime").fields["InfraProvider"],
            "eks"
        );
    }

    #[test]
    fn unknown_field_has_line_and_hint() {
        let l = load(
            "WorkloadInstance:\n  Name: web\n  WorkloadDefinition:\n    Name: web\n  KubernetesRuntime:\n    Name: dev\n",
        );
        assert_eq!(
            l.problems[0].to_string(),
            "t.yaml:5: WorkloadInstance \"web\": unknown field \"KubernetesRuntime\"; did you mean \"KubernetesRuntimeInstance\"?"
        );
    }

    #[test]
    fn aws_credentials_come_from_local_files_and_a_missing_one_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("credentials"),
            "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = s\n[prod]\naws_access_key_id = AKIAPROD\naws_secret_access_key = p\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config"),
            "[profile prod]\nregion = eu-west-1\n",
        )
        .unwrap();
        let l = load_str(
            "AwsAccount:\n  Name: prod\n  AccountID: \"1\"\n  LocalConfig: config\n  LocalCredentials: credentials\n  LocalProfile: prod\n",
            "a.yaml",
            dir.path(),
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let f = &l.objects[0].fields;
        assert_eq!(
            (f["AccessKeyID"].as_str(), f["DefaultRegion"].as_str()),
            (Some("AKIAPROD"), Some("eu-west-1"))
        );
        assert!(
            !f.contains_key("LocalCredentials"),
            "paths are tptctl's, never sent"
        );
        let l = load_str(
            "AwsAccount:\n  Name: prod\n  AccountID: \"1\"\n  LocalCredentials: missing\n",
            "a.yaml",
            dir.path(),
        );
        let p = l.problems[0].to_string();
        assert!(
            p.starts_with(
                "a.yaml:4: AwsAccount \"prod\": field \"LocalCredentials\": cannot read "
            ),
            "{p}"
        );
        let l = load_str(
            "AwsAccount:\n  Name: prod\n  AccountID: \"1\"\n  LocalCredentials: credentials\n  LocalProfile: staging\n",
            "a.yaml",
            dir.path(),
        );
        let p = l.problems[0].to_string();
        assert!(
            p.starts_with(
                "a.yaml:5: AwsAccount \"prod\": field \"LocalProfile\": profile [staging] not found"
            ),
            "{p}"
        );
    }

    #[test]
    fn cycles_and_syntax_errors() {
        let l = load(
            "ControlPlaneDefinition: {Name: d}\n---\nControlPlaneInstance: {Name: a, ControlPlaneDefinition: {Name: d}, ParentControlPlaneInstance: {Name: b}}\n---\nControlPlaneInstance: {Name: b, ControlPlaneDefinition: {Name: d}, ParentControlPlaneInstance: {Name: a}}\n",
        );
        assert_eq!(l.objects.len(), 1);
        assert!(
            l.problems.iter().all(|p| p.message.contains("cycle")),
            "{:?}",
            l.problems
        );
        let l = load("Workload:\n  Name: [web\n");
        assert_eq!(l.problems.len(), 1);
        assert!(
            l.problems[0].message.contains("syntax"),
            "{}",
            l.problems[0]
        );
        let l = load("Workloud:\n  Name: web\n");
        assert!(
            l.problems[0].message.contains("did you mean \"Workload\""),
            "{}",
            l.problems[0]
        );
    }

    #[test]
    fn gateway_ports_and_account_names() {
        let l = load(
            "AwsAccount: {Name: prod, AccountID: \"1\"}\n---\nAwsEksKubernetesRuntime:\n  Name: eks\n  AwsAccountName: prod\n  Region: us-east-1\n  ZoneCount: 2\n---\nGatewayDefinition:\n  Name: gw\n  HttpPorts:\n    - Port: 80\n    - Port: 443\n      TLSEnabled: true\n",
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let labels: Vec<String> = l.objects.iter().map(Desired::label).collect();
        assert!(
            labels.contains(&"gateway-http-port/gw-443".to_string()),
            "{labels:?}"
        );
        let eks = l
            .objects
            .iter()
            .find(|o| o.kind.name == "AwsEksKubernetesRuntimeDefinition")
            .unwrap();
        assert_eq!(eks.refs[0].kind.name, "AwsAccount");
        let pos = |l: &str| labels.iter().position(|x| x == l).unwrap();
        assert!(pos("aws-account/prod") < pos("aws-eks-kubernetes-runtime-definition/eks"));
        assert!(pos("gateway-definition/gw") < pos("gateway-http-port/gw-80"));
    }
}
