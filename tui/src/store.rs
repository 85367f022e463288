//! The dashboard's copy of the control plane: objects per kind, filled by a list and kept current
//! by watch events, with a reverse-reference index so drill-downs and "why" lookups do not scan.
//! It implements `threeport_api::status::Objects`, so the status words, event lines and the
//! "why" the dashboard shows are computed by the same code as `tptctl`'s.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use threeport_api::kinds::{self, FieldType, Kind};
use threeport_api::object::ObjectExt;
use threeport_api::status::{self, Health, Objects};
use threeport_api::{WatchEvent, object_id};
use time::OffsetDateTime;

/// An object with what every view shows of it, worked out once when it arrives (JSON field
/// lookups are what rebuilding 10 000 rows would otherwise spend its time on).
#[derive(Debug)]
pub struct Obj {
    pub value: Value,
    pub name: String,
    pub created: Option<OffsetDateTime>,
    /// `✓ Healthy`, `✗ Failed`, `-`.
    pub status: String,
    pub health: Health,
}

impl Obj {
    fn new(kind: &Kind, value: Value) -> Obj {
        let (status, health) = status::status_label(kind, &value);
        Obj {
            name: status::display_name(&value),
            created: value.created_at(),
            status,
            health,
            value,
        }
    }
}

#[derive(Default, Debug)]
pub struct KindData {
    pub objects: BTreeMap<u64, Obj>,
    /// A full list has arrived; before that the view shows "loading".
    pub loaded: bool,
}

/// One change to the store, as the views need to know it: a change of "shape" (an object
/// appeared or went, or its name, creation time or references changed) can move rows or change
/// other rows' text; any other change (status, spec) only touches the object's own row.
#[derive(Clone, Copy, Debug)]
pub enum Change {
    Object {
        kind: &'static Kind,
        id: u64,
        shape: bool,
    },
    /// A whole list was replaced.
    All,
}

/// How many changes the store remembers; a view further behind rebuilds from scratch.
const CHANGE_LOG: usize = 4096;

#[derive(Debug)]
pub struct Store {
    /// One slot per entry of `KINDS`, in its order.
    kinds: Vec<KindData>,
    /// IDs of deleted objects: IDs are never reused, so a late event can never resurrect one.
    tombstones: HashSet<u64>,
    /// Target ID → (kind slot, ID) of every object with an ID field pointing at it.
    referrers: HashMap<u64, BTreeSet<(usize, u64)>>,
    /// Bumped on every change, so views know when to rebuild their rows.
    version: u64,
    /// The latest changes, each with the version it produced.
    changes: VecDeque<(u64, Change)>,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            kinds: kinds::KINDS.iter().map(|_| KindData::default()).collect(),
            tombstones: HashSet::new(),
            referrers: HashMap::new(),
            version: 0,
            changes: VecDeque::new(),
        }
    }
}

fn resource_version(o: &Value) -> Option<i64> {
    o.get("ResourceVersion").and_then(Value::as_i64)
}

/// Every ID value an object points at (typed references and untyped ones such as `ObjectID`).
fn outgoing(kind: &Kind, o: &Value) -> impl Iterator<Item = u64> {
    kind.fields()
        .filter(|f| f.ty == FieldType::Id && f.name != "ID")
        .filter_map(|f| o.get(f.name).and_then(Value::as_u64))
        .collect::<Vec<_>>()
        .into_iter()
}

/// A kind's position in `KINDS`. The registry is static, so the pointer identifies the kind
/// (no string comparisons on the hot path).
fn slot(kind: &Kind) -> usize {
    kinds::KINDS
        .iter()
        .position(|k| std::ptr::eq(k, kind))
        .expect("kinds come from the registry")
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    fn data(&self, kind: &Kind) -> &KindData {
        &self.kinds[slot(kind)]
    }

    fn data_mut(&mut self, kind: &Kind) -> &mut KindData {
        &mut self.kinds[slot(kind)]
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The changes after version `v`, oldest first; `None` when they are no longer all known.
    pub fn changes_since(&self, v: u64) -> Option<impl Iterator<Item = &Change>> {
        let first = self.changes.front().map_or(self.version + 1, |(n, _)| *n);
        (v + 1 >= first || v == self.version).then(|| {
            self.changes
                .iter()
                .filter(move |(n, _)| *n > v)
                .map(|(_, c)| c)
        })
    }

    fn record(&mut self, change: Change) {
        self.version += 1;
        if self.changes.len() == CHANGE_LOG {
            self.changes.pop_front();
        }
        self.changes.push_back((self.version, change));
    }

    pub fn is_loaded(&self, kind: &Kind) -> bool {
        self.data(kind).loaded
    }

    pub fn objects(&self, kind: &Kind) -> impl Iterator<Item = (u64, &Value)> + '_ {
        self.data(kind)
            .objects
            .iter()
            .map(|(id, o)| (*id, &o.value))
    }

    /// Objects with their precomputed name, status and creation time.
    pub fn entries(&self, kind: &Kind) -> impl Iterator<Item = (u64, &Obj)> + '_ {
        self.data(kind).objects.iter().map(|(id, o)| (*id, o))
    }

    pub fn entry(&self, kind: &Kind, id: u64) -> Option<&Obj> {
        self.data(kind).objects.get(&id)
    }

    pub fn len(&self, kind: &Kind) -> usize {
        self.data(kind).objects.len()
    }

    pub fn total(&self) -> usize {
        self.kinds.iter().map(|k| k.objects.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    pub fn get(&self, kind: &Kind, id: u64) -> Option<&Value> {
        self.entry(kind, id).map(|o| &o.value)
    }

    /// Objects of `kind` whose ID fields point at `target`.
    pub fn referrers_of<'a>(
        &'a self,
        target: u64,
        kind: &'a Kind,
    ) -> impl Iterator<Item = (u64, &'a Value)> + 'a {
        self.referrer_entries(target, kind)
            .map(|(id, o)| (id, &o.value))
    }

    pub fn referrer_entries<'a>(
        &'a self,
        target: u64,
        kind: &'a Kind,
    ) -> impl Iterator<Item = (u64, &'a Obj)> + 'a {
        let want = slot(kind);
        let data = &self.kinds[want];
        self.referrers
            .get(&target)
            .into_iter()
            .flat_map(move |set| {
                // The set is ordered by kind slot: jump to this kind's range.
                set.range((want, 0)..=(want, u64::MAX))
                    .filter_map(move |(_, id)| data.objects.get(id).map(|o| (*id, o)))
            })
    }

    fn index(&mut self, kind: &'static Kind, id: u64, o: &Value) {
        let k = slot(kind);
        for target in outgoing(kind, o) {
            self.referrers.entry(target).or_default().insert((k, id));
        }
    }

    fn unindex(&mut self, kind: &'static Kind, id: u64, o: &Value) {
        let k = slot(kind);
        for target in outgoing(kind, o) {
            if let Some(set) = self.referrers.get_mut(&target) {
                set.remove(&(k, id));
                if set.is_empty() {
                    self.referrers.remove(&target);
                }
            }
        }
    }

    fn remove(&mut self, kind: &'static Kind, id: u64) {
        if let Some(old) = self.data_mut(kind).objects.remove(&id) {
            self.unindex(kind, id, &old.value);
        }
    }

    /// Insert or update; an older version never replaces a newer one. The change it made, if
    /// any.
    fn upsert(&mut self, kind: &'static Kind, o: Value) -> Option<Change> {
        let id = object_id(&o)?;
        if self.tombstones.contains(&id) {
            return None;
        }
        if let Some(old) = self.get(kind, id)
            && let (Some(a), Some(b)) = (resource_version(old), resource_version(&o))
            && b < a
        {
            return None;
        }
        let new = Obj::new(kind, o);
        let shape = self.entry(kind, id).is_none_or(|old| {
            old.name != new.name
                || old.created != new.created
                || !outgoing(kind, &old.value).eq(outgoing(kind, &new.value))
        });
        self.remove(kind, id);
        self.index(kind, id, &new.value);
        self.data_mut(kind).objects.insert(id, new);
        Some(Change::Object { kind, id, shape })
    }

    /// A complete list of `kind`: replaces what was there.
    pub fn replace(&mut self, kind: &'static Kind, objects: Vec<Value>) {
        let old = std::mem::take(&mut self.data_mut(kind).objects);
        for (id, o) in &old {
            self.unindex(kind, *id, &o.value);
        }
        for o in objects {
            self.upsert(kind, o);
        }
        self.data_mut(kind).loaded = true;
        self.record(Change::All);
    }

    /// Apply one watch event. Events of kinds that were never listed are ignored: the list
    /// that loads the kind will bring them.
    pub fn apply(&mut self, ev: WatchEvent) -> bool {
        let Some(kind) = kinds::by_name(&ev.kind) else {
            return false;
        };
        if !self.is_loaded(kind) {
            return false;
        }
        let change = match ev.operation.as_str() {
            "deleted" | "Deleted" | "delete" => object_id(&ev.object).and_then(|id| {
                self.tombstones.insert(id);
                let had = self.get(kind, id).is_some();
                self.remove(kind, id);
                had.then_some(Change::Object {
                    kind,
                    id,
                    shape: true,
                })
            }),
            _ => self.upsert(kind, ev.object),
        };
        match change {
            Some(c) => {
                self.record(c);
                true
            }
            None => false,
        }
    }

    /// The name of any object by ID, given the kind it belongs to.
    pub fn name_of(&self, kind: &Kind, id: u64) -> Option<String> {
        self.entry(kind, id).map(|o| o.name.clone())
    }
}

/// What `threeport_api::status` reads. Names come precomputed; referrers come from the index,
/// in ID order.
impl Objects for Store {
    fn get(&self, kind: &'static Kind, id: u64) -> Option<&Value> {
        Store::get(self, kind, id)
    }
    fn referrers(&self, target: u64, kind: &'static Kind) -> Vec<(u64, &Value)> {
        self.referrers_of(target, kind).collect()
    }
    fn name_of(&self, kind: &'static Kind, id: u64) -> Option<String> {
        Store::name_of(self, kind, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wi() -> &'static Kind {
        kinds::WORKLOAD_INSTANCE
    }

    #[test]
    fn events_apply_in_order_and_never_go_back() {
        let mut s = Store::new();
        s.replace(
            wi(),
            vec![json!({"ID": 1, "Name": "a", "ResourceVersion": 2, "WorkloadDefinitionID": 9})],
        );
        let ev = |op: &str, o: Value| WatchEvent {
            operation: op.into(),
            kind: wi().name.into(),
            object: o,
        };
        // An older update (from before the list) is ignored.
        assert!(!s.apply(ev(
            "updated",
            json!({"ID": 1, "Name": "old", "ResourceVersion": 1})
        )));
        assert_eq!(s.name_of(wi(), 1).unwrap(), "a");
        assert!(s.apply(ev(
            "updated",
            json!({"ID": 1, "Name": "b", "ResourceVersion": 3, "WorkloadDefinitionID": 9})
        )));
        assert_eq!(s.referrers_of(9, wi()).count(), 1);
        assert!(s.apply(ev("deleted", json!({"ID": 1}))));
        assert_eq!(s.referrers_of(9, wi()).count(), 0);
        // A late "created" does not resurrect it.
        assert!(!s.apply(ev(
            "created",
            json!({"ID": 1, "Name": "b", "ResourceVersion": 3})
        )));
        assert_eq!(s.len(wi()), 0);
        // Kinds never listed are ignored.
        let other = WatchEvent {
            operation: "created".into(),
            kind: kinds::AWS_ACCOUNT.name.into(),
            object: json!({"ID": 5, "Name": "x"}),
        };
        assert!(!s.apply(other));
    }
}
