//! `tptctl apply`: declarative create-or-update of upstream YAML, in dependency order, reporting
//! `created`, `configured` or `unchanged` per object and carrying on past failures.

use crate::hint;
use crate::output::{self, Format};
use anyhow::Result;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use threeport_api::ObjectExt;
use threeport_api::manifest::{Desired, Loaded};
use threeport_api::status::Health;
use threeport_api::{Client, Kind, kinds, object_id};

#[derive(Clone, Debug)]
pub struct ApplyOpts {
    pub dry_run: bool,
    pub output: Option<Format>,
    /// Upstream's `create`: an object that already exists is an error.
    pub create_only: bool,
    /// How many objects are written at once (objects wait for what they refer to either way).
    pub concurrency: usize,
}

/// `--concurrency`'s default: enough to hide a round trip, few enough not to crowd the API.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What happened to each object.
#[derive(Debug, Default)]
pub struct Report {
    pub failed: usize,
    pub total: usize,
    /// Applied objects as the server returned them, for `-o` and `--wait`.
    pub applied: Vec<(&'static Kind, Value)>,
}

/// Why one object was not applied, and what to do about it when we know.
struct Failure {
    message: String,
    hint: Option<&'static str>,
}

impl Failure {
    fn with_hint(message: impl Into<String>, hint: &'static str) -> Failure {
        Failure {
            message: message.into(),
            hint: Some(hint),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            hint: None,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        message.to_string().into()
    }
}

/// One line of the report on stdout (`workload-definition/web created`). A closed stdout
/// (`tptctl apply … | head -1`) does not stop the work: the objects after the last line the
/// reader took still get applied, and the exit code still says how that went.
pub fn report_line(line: fmt::Arguments<'_>) {
    if let Err(e) = outln!("{line}")
        && !e.is_broken_pipe()
    {
        eprint!("{}", hint::render(&e.into()));
    }
}

fn differs(existing: &Value, desired: &Map<String, Value>) -> Map<String, Value> {
    desired
        .iter()
        .filter(|(k, v)| existing.get(k.as_str()).unwrap_or(&Value::Null) != *v)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Lookups shared by the objects applied concurrently in one run. The locks are never held
/// across an await.
struct Resolver<'a> {
    client: &'a Client,
    /// IDs of objects applied in this run.
    applied: Mutex<HashMap<(&'static str, String), u64>>,
    /// Server lookups by (kind, name).
    cache: Mutex<HashMap<(&'static str, String), Option<Value>>>,
}

impl Resolver<'_> {
    fn forget(&self, kind: &'static Kind, name: &str) {
        self.cache
            .lock()
            .unwrap()
            .remove(&(kind.name, name.to_string()));
    }

    async fn find(&self, kind: &'static Kind, name: &str) -> Result<Option<Value>> {
        let key = (kind.name, name.to_string());
        if let Some(v) = self.cache.lock().unwrap().get(&key) {
            return Ok(v.clone());
        }
        let (items, _) = self
            .client
            .list_page(
                kind,
                &[("name", name.to_string()), ("reveal", "true".into())],
                1,
                1,
            )
            .await?;
        let found = items.into_iter().next();
        self.cache.lock().unwrap().insert(key, found.clone());
        Ok(found)
    }

    /// The ID for a by-name reference: from this run, else from the server.
    async fn id_of(
        &self,
        kind: &'static Kind,
        name: &str,
        dry_run: bool,
        planned: &BTreeSet<(String, String)>,
    ) -> Result<Option<u64>, Failure> {
        let known = self
            .applied
            .lock()
            .unwrap()
            .get(&(kind.name, name.to_string()))
            .copied();
        if let Some(id) = known {
            return Ok(Some(id));
        }
        match self.find(kind, name).await {
            Ok(Some(o)) => Ok(object_id(&o)),
            // In a dry run the object would have been created earlier in this run.
            Ok(None) if dry_run && planned.contains(&(kind.name.to_string(), name.to_string())) => {
                Ok(None)
            }
            Ok(None) => Err(Failure::with_hint(
                format!(
                    "refers to {} {name:?}, which is neither in these files nor on the control plane",
                    kind.name
                ),
                "add the file that declares it to this apply, or apply that file first",
            )),
            Err(e) => Err(e.to_string().into()),
        }
    }

    async fn default_runtime(&self, loaded: &[Desired]) -> Result<Option<u64>, String> {
        let kri = kinds::KUBERNETES_RUNTIME_INSTANCE;
        if let Some(d) = default_runtime_in(loaded) {
            return Ok(self
                .applied
                .lock()
                .unwrap()
                .get(&(kri.name, d.name.clone()))
                .copied());
        }
        let (items, _) = self
            .client
            .list_page(kri, &[("defaultruntime", "true".into())], 1, 1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(items.first().and_then(object_id))
    }
}

/// The runtime instance these files mark `DefaultRuntime: true`, if any.
fn default_runtime_in(loaded: &[Desired]) -> Option<&Desired> {
    let kri = kinds::KUBERNETES_RUNTIME_INSTANCE;
    loaded.iter().find(|d| {
        d.kind.name == kri.name && d.fields.get("DefaultRuntime") == Some(&Value::Bool(true))
    })
}

/// For each object, the objects in these files it must wait for: what it refers to by name, and
/// the file's default runtime when it takes the default. The loader has already put them in
/// dependency order, so every index here is smaller than the object's own.
pub(crate) fn prerequisites(objects: &[Desired]) -> Vec<Vec<usize>> {
    let index: HashMap<(&'static str, &str), usize> = objects
        .iter()
        .enumerate()
        .map(|(i, d)| ((d.kind.name, d.name.as_str()), i))
        .collect();
    let default_runtime = default_runtime_in(objects)
        .and_then(|d| index.get(&(d.kind.name, d.name.as_str())).copied());
    // The parts of each object (a gateway definition's ports): whatever refers to the object
    // is written after them, so its controller sees the object whole.
    let mut parts: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, d) in objects.iter().enumerate() {
        for r in &d.refs {
            if d.kind.field(r.field).is_some_and(|f| f.part)
                && let Some(&whole) = index.get(&(r.kind.name, r.name.as_str()))
            {
                parts.entry(whole).or_default().push(i);
            }
        }
    }
    objects
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut deps: Vec<usize> = d
                .refs
                .iter()
                .filter_map(|r| index.get(&(r.kind.name, r.name.as_str())).copied())
                .collect();
            // (A part does not wait for its siblings.)
            let whole_parts: Vec<usize> = d
                .refs
                .iter()
                .filter(|r| !d.kind.field(r.field).is_some_and(|f| f.part))
                .filter_map(|r| index.get(&(r.kind.name, r.name.as_str())))
                .flat_map(|j| parts.get(j).into_iter().flatten().copied())
                .collect();
            deps.extend(whole_parts);
            if d.wants_default_runtime {
                deps.extend(default_runtime);
            }
            // Objects named by a field (an account by `InfraProviderAccountName`): what the
            // controller makes from this one will refer to them.
            for f in d.kind.fields() {
                if let (Some(k), Some(name)) =
                    (f.names, d.fields.get(f.name).and_then(Value::as_str))
                {
                    deps.extend(index.get(&(k, name)).copied());
                }
            }
            deps.retain(|&j| j != i);
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

/// How one object ended.
enum Outcome {
    Applied(&'static str, Option<Value>),
    Failed(Failure),
    /// Not attempted: it refers to this object (kind, name), which failed or was skipped.
    Skipped(&'static str, String),
}

pub async fn apply(client: &Client, loaded: Loaded, opts: &ApplyOpts) -> Result<Report> {
    let mut report = Report {
        failed: loaded.problems.len(),
        total: loaded.objects.len() + loaded.problems.len(),
        ..Default::default()
    };
    for p in &loaded.problems {
        eprintln!("error: {p}");
    }
    let planned: BTreeSet<(String, String)> = loaded
        .objects
        .iter()
        .map(|o| (o.kind.name.to_string(), o.name.clone()))
        .collect();
    let r = Resolver {
        client,
        applied: Mutex::new(HashMap::new()),
        cache: Mutex::new(HashMap::new()),
    };
    let objects = &loaded.objects;
    let deps = prerequisites(objects);
    let suffix = if opts.dry_run { " (dry run)" } else { "" };
    // Objects are written concurrently (bounded), each once everything it refers to in these
    // files is done; the lines are printed in file order, each as soon as those before it are.
    let mut outcomes: Vec<Option<Outcome>> = (0..objects.len()).map(|_| None).collect();
    let mut started = vec![false; objects.len()];
    // Everything before it has started: the scan for startable objects begins here, so a large
    // file is not rescanned from its first object after every write.
    let mut first_unstarted = 0;
    let mut running = FuturesUnordered::new();
    let mut printed = 0;
    let limit = opts.concurrency.max(1);
    while printed < objects.len() {
        while first_unstarted < objects.len() && started[first_unstarted] {
            first_unstarted += 1;
        }
        for (i, d) in objects.iter().enumerate().skip(first_unstarted) {
            if running.len() >= limit {
                break;
            }
            if started[i] || !deps[i].iter().all(|&j| outcomes[j].is_some()) {
                continue;
            }
            started[i] = true;
            let failed_dep = deps[i]
                .iter()
                .copied()
                .find(|&j| !matches!(outcomes[j], Some(Outcome::Applied(..))));
            let failed_outside = d.refs.iter().find(|x| {
                loaded
                    .broken
                    .contains(&(x.kind.name.to_string(), x.name.clone()))
            });
            if let Some(j) = failed_dep {
                let dep = &objects[j];
                outcomes[i] = Some(Outcome::Skipped(dep.kind.name, dep.name.clone()));
            } else if let Some(x) = failed_outside {
                outcomes[i] = Some(Outcome::Skipped(x.kind.name, x.name.clone()));
            } else {
                let (r, planned) = (&r, &planned);
                running.push(async move { (i, apply_one(r, d, objects, opts, planned).await) });
            }
        }
        while printed < objects.len() {
            let Some(outcome) = &outcomes[printed] else {
                break;
            };
            let d = &objects[printed];
            match outcome {
                Outcome::Applied(action, object) => {
                    match opts.output {
                        Some(Format::Name) => report_line(format_args!("{}", d.label())),
                        Some(_) => {}
                        None => report_line(format_args!("{} {action}{suffix}", d.label())),
                    }
                    if let Some(o) = object {
                        report.applied.push((d.kind, o.clone()));
                    }
                }
                Outcome::Failed(Failure { message, hint }) => {
                    hint::eprint(
                        format_args!(
                            "{}:{}: {} {:?}: {message}",
                            d.file, d.line, d.kind.name, d.name
                        ),
                        *hint,
                    );
                    report.failed += 1;
                }
                Outcome::Skipped(kind, name) => {
                    eprintln!(
                        "error: {}:{}: {} {:?}: skipped: it refers to {kind} {name:?}, which failed",
                        d.file, d.line, d.kind.name, d.name
                    );
                    report.failed += 1;
                }
            }
            printed += 1;
        }
        if printed == objects.len() {
            break;
        }
        let Some((i, result)) = running.next().await else {
            // Nothing running and nothing startable would mean a reference cycle, which the
            // loader refuses; stop rather than spin.
            anyhow::bail!(
                "apply stalled at {}: a reference cycle?",
                objects[printed].label()
            );
        };
        outcomes[i] = Some(match result {
            Ok((action, object)) => {
                if let Some(id) = object.as_ref().and_then(object_id) {
                    r.applied
                        .lock()
                        .unwrap()
                        .insert((objects[i].kind.name, objects[i].name.clone()), id);
                }
                Outcome::Applied(action, object)
            }
            Err(f) => Outcome::Failed(f),
        });
    }
    if let Some(fmt @ (Format::Json | Format::Yaml)) = opts.output {
        let objects: Vec<Value> = report.applied.iter().map(|(_, o)| o.clone()).collect();
        let kind = report
            .applied
            .first()
            .map(|(k, _)| *k)
            .unwrap_or(&kinds::KINDS[0]);
        if fmt == Format::Json {
            outln!("{}", serde_json::to_string_pretty(&Value::Array(objects))?)?;
        } else {
            output::print_objects(fmt, kind, &objects)?;
        }
    }
    Ok(report)
}

async fn apply_one(
    r: &Resolver<'_>,
    d: &Desired,
    all: &[Desired],
    opts: &ApplyOpts,
    planned: &BTreeSet<(String, String)>,
) -> Result<(&'static str, Option<Value>), Failure> {
    let mut desired = d.fields.clone();
    for reference in &d.refs {
        match r
            .id_of(reference.kind, &reference.name, opts.dry_run, planned)
            .await?
        {
            Some(id) => {
                desired.insert(reference.field.into(), Value::from(id));
            }
            None => {
                // Dry run: it would exist by now; nothing to compare.
                desired.remove(reference.field);
            }
        }
    }
    if d.wants_default_runtime
        && let Some(id) = r.default_runtime(all).await?
    {
        desired.insert("KubernetesRuntimeInstanceID".into(), Value::from(id));
    }
    // Another apply (a script, a CI job) may create or change the same object between our read
    // and our write: a create that loses the race re-reads and carries on as an update, and a
    // PATCH whose ResourceVersion went stale re-reads and re-diffs. Bounded: a write that
    // conflicts every time is reported.
    const ATTEMPTS: usize = 5;
    let mut last_conflict = String::new();
    for _ in 0..ATTEMPTS {
        let existing = r.find(d.kind, &d.name).await.map_err(|e| e.to_string())?;
        let written = match existing {
            None => {
                if opts.dry_run {
                    return Ok(("created", Some(Value::Object(desired))));
                }
                match r
                    .client
                    .create(d.kind, &Value::Object(desired.clone()))
                    .await
                {
                    Ok(created) => Ok(("created", created)),
                    Err(e) => Err(e),
                }
            }
            Some(_) if opts.create_only => {
                return Err(Failure::with_hint(
                    "already exists",
                    "`tptctl apply` updates objects that exist",
                ));
            }
            Some(current) => {
                let mut patch = differs(&current, &desired);
                if patch.is_empty() {
                    return Ok(("unchanged", Some(current)));
                }
                if opts.dry_run {
                    return Ok(("configured", Some(current)));
                }
                // Send the version we compared against: a concurrent change is a 409, not a
                // silent overwrite.
                patch.insert("ResourceVersion".into(), current["ResourceVersion"].clone());
                let id =
                    object_id(&current).ok_or("the server returned an object without an ID")?;
                r.client
                    .patch(d.kind, id, &Value::Object(patch))
                    .await
                    .map(|updated| ("configured", updated))
            }
        };
        match written {
            Ok((action, object)) => {
                r.forget(d.kind, &d.name);
                return Ok((action, Some(object)));
            }
            Err(e) if e.is_conflict() => {
                // Read it again: it exists now, or it changed since we read it.
                r.forget(d.kind, &d.name);
                last_conflict = e.to_string();
            }
            Err(e) => return Err(e.to_string().into()),
        }
    }
    Err(Failure::with_hint(
        format!("still conflicting after {ATTEMPTS} attempts: {last_conflict}"),
        "something else keeps changing this object; run the apply again",
    ))
}

/// How `--wait` ended.
pub enum WaitOutcome {
    Done,
    Failed(Vec<String>),
    TimedOut(Vec<String>),
}

/// Wait until every reconciled object is reconciled (or failed), or until `timeout`.
pub async fn wait(
    client: &Client,
    objects: &[(&'static Kind, Value)],
    timeout: Duration,
) -> Result<WaitOutcome> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<(&'static Kind, u64, String)> = objects
        .iter()
        .filter(|(k, _)| k.reconciled)
        .filter_map(|(k, o)| Some((*k, object_id(o)?, output::name_of(o))))
        .collect();
    let mut failed = Vec::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (kind, id, name) in pending {
            let o = client.get(kind, id).await?;
            let label = format!("{}/{name}", kind.singular());
            let reason = || {
                o.status_reason()
                    .unwrap_or("no reason was recorded")
                    .to_string()
            };
            match threeport_api::status::status(kind, &o).1 {
                Health::Failed => failed.push(format!("{label}: {}", reason())),
                // Nothing will reconcile it (no controller serves its kind): waiting cannot help.
                Health::Pending
                    if !o.is_reconciled()
                        && o.str_field("StatusReason").starts_with("no controller") =>
                {
                    failed.push(format!("{label}: Pending: {}", reason()))
                }
                _ if o.is_reconciled() => {
                    eprintln!(" ✓ {label} reconciled")
                }
                _ => still.push((kind, id, name)),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(WaitOutcome::TimedOut(
                pending
                    .iter()
                    .map(|(k, _, n)| format!("{}/{n}", k.singular()))
                    .collect(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(if failed.is_empty() {
        WaitOutcome::Done
    } else {
        WaitOutcome::Failed(failed)
    })
}
