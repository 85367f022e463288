//! In-memory object storage: the objects, the global resourceVersion and the event history.
//!
//! One mutex guards everything (objects, registry, history). That is what makes the double
//! behave like etcd behind a single API server: every write gets the next resourceVersion, its
//! event lands in the history in the same order, and a LIST's resourceVersion is exactly the point
//! a WATCH has to resume from — the invariant kube-runtime's watcher relies on (LIST, then WATCH
//! from the list's resourceVersion, without missing or repeating an event).
//!
//! This module only knows how to store; the verbs' semantics live in `ops`.

use crate::discovery::{Registry, ResKey};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// How many events a watch can resume from. Older resourceVersions get `410 Gone`, like a
/// compacted etcd, so clients' re-list paths are exercised when they fall behind.
pub const HISTORY_LIMIT: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One committed change, as a watch replays it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub etype: EventType,
    pub key: ResKey,
    pub namespace: String,
    pub object: Arc<Value>,
    /// The previous state (for MODIFIED), so a selector-filtered watch can turn "stopped
    /// matching" into DELETED and "started matching" into ADDED, as the real server does.
    pub old: Option<Arc<Value>>,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

pub struct Inner {
    pub registry: Registry,
    rv: u64,
    objects: BTreeMap<ResKey, Objects>,
    history: VecDeque<Event>,
    history_limit: usize,
    /// Every event with rv <= `compacted` may have been dropped from `history`.
    compacted: u64,
    /// Next ClusterIP to hand out to a Service.
    pub next_ip: u32,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// The latest committed resourceVersion; watches and the kubelet wait on it instead of
    /// polling. Published when the lock guard drops, i.e. after the write is visible.
    tx: watch::Sender<u64>,
}

/// The lock guard; publishes the new resourceVersion to waiters when dropped.
pub struct Guard<'a> {
    g: MutexGuard<'a, Inner>,
    tx: &'a watch::Sender<u64>,
}

impl std::ops::Deref for Guard<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.g
    }
}
impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.g
    }
}
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let rv = self.g.rv;
        self.tx.send_if_modified(|cur| {
            if *cur != rv {
                *cur = rv;
                true
            } else {
                false
            }
        });
    }
}

impl Store {
    pub fn new(registry: Registry, history_limit: usize) -> Arc<Store> {
        let (tx, _) = watch::channel(1);
        Arc::new(Store {
            inner: Mutex::new(Inner {
                registry,
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted: 0,
                next_ip: 10,
            }),
            tx,
        })
    }

    pub fn lock(&self) -> Guard<'_> {
        // A panic while holding the lock must not wedge every later request of a test.
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Guard { g, tx: &self.tx }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

impl Inner {
    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, key: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of one resource, in one namespace or all, ordered by (namespace, name).
    pub fn list(&self, key: &ResKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(key) else {
            return vec![];
        };
        match ns {
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => m.values().cloned().collect(),
        }
    }

    pub fn keys(&self) -> Vec<ResKey> {
        self.objects.keys().cloned().collect()
    }

    pub fn namespace(&self, ns: &str) -> Option<Arc<Value>> {
        self.get(&ResKey::new("", "namespaces"), "", ns)
    }

    /// Whether any namespaced object lives in `ns`.
    pub fn namespace_has_objects(&self, ns: &str) -> bool {
        self.objects.iter().any(|(k, m)| {
            !(k.group.is_empty() && k.plural == "namespaces")
                && m.range((ns.to_string(), String::new())..)
                    .next()
                    .is_some_and(|((n, _), _)| n == ns)
        })
    }

    /// Store `obj` (created or replaced) under the next resourceVersion and record the event.
    pub fn put(&mut self, key: &ResKey, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let obj = Arc::new(obj);
        let old = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv: self.rv,
            etype,
            key: key.clone(),
            namespace: ns,
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Remove an object; the DELETED event (and the returned object) carry the deletion's
    /// resourceVersion, as on the real server.
    pub fn remove(&mut self, key: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        let m = self.objects.get_mut(key)?;
        let old = m.remove(&(ns.to_string(), name.to_string()))?;
        if m.is_empty() {
            self.objects.remove(key);
        }
        self.rv += 1;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let last = Arc::new(last);
        self.record(Event {
            rv: self.rv,
            etype: EventType::Deleted,
            key: key.clone(),
            namespace: ns.to_string(),
            object: last.clone(),
            old: Some(old),
        });
        Some(last)
    }

    fn record(&mut self, e: Event) {
        self.history.push_back(e);
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Events strictly after `rv`, or `Err(oldest available rv)` if some were compacted away.
    pub fn events_after(&self, rv: u64) -> Result<impl Iterator<Item = &Event>, u64> {
        if rv < self.compacted {
            return Err(self.compacted + 1);
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..))
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Kubernetes timestamps: RFC 3339, whole seconds, UTC (`metav1.Time`).
pub fn now_rfc3339() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

pub fn format_time(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

pub fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// A random RFC 4122 version-4 UUID, the format of `metadata.uid`.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The alphabet the real server uses for `generateName` suffixes and pod-template hashes
/// (no vowels, so it never spells words).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    (0..n)
        .map(|_| SUFFIX_ALPHABET[rand::random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

/// A stable short hash in the same alphabet (pod-template-hash, ReplicaSet names).
pub fn stable_suffix(v: &Value, n: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    let mut x = h.finish();
    (0..n)
        .map(|_| {
            let c = SUFFIX_ALPHABET[(x % SUFFIX_ALPHABET.len() as u64) as usize] as char;
            x /= SUFFIX_ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_reports_compaction() {
        let store = Store::new(Registry::builtin(), 3);
        let key = ResKey::new("", "configmaps");
        let mut g = store.lock();
        for i in 0..5 {
            g.put(
                &key,
                json!({"metadata": {"name": format!("c{i}"), "namespace": "default"}}),
            );
        }
        assert_eq!(g.rv(), 6);
        assert!(g.events_after(1).is_err());
        let rvs: Vec<u64> = g.events_after(4).unwrap().map(|e| e.rv).collect();
        assert_eq!(rvs, [5, 6]);
        assert_eq!(g.list(&key, Some("default")).len(), 5);
        assert!(g.list(&key, Some("defaul")).is_empty());
    }

    #[test]
    fn uid_and_time_formats() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
        assert!(parse_time(&t).is_some());
    }
}
