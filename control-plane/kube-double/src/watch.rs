//! Watch streams: newline-delimited JSON `{"type": ..., "object": ...}` over a chunked
//! response, replayed from the store's history.
//!
//! Semantics kept from the real server because clients depend on them:
//! * no `resourceVersion` (or `"0"`): synthetic ADDED events for everything that exists, then
//!   live changes; a specific resourceVersion: only changes after it;
//! * a resourceVersion older than the history: one ERROR event with a `410 Expired` Status,
//!   then the stream ends (kube-runtime's watcher re-lists on it);
//! * with a selector, an object that stops matching is sent as DELETED and one that starts
//!   matching as ADDED;
//! * `allowWatchBookmarks`: periodic BOOKMARK events carrying only the current resourceVersion,
//!   and with `sendInitialEvents=true` the bookmark annotated `k8s.io/initial-events-end`;
//! * `timeoutSeconds` ends the stream cleanly.
//!
//! Streams also end when the double is paused or shut down (see `Epoch`), so a paused double
//! really looks unreachable to a client holding a watch open.

use crate::discovery::{ResKey, ResourceType};
use crate::errors::ApiError;
use crate::ops::present;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Store};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often an idle watch with bookmarks enabled gets a BOOKMARK.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// Watches without `timeoutSeconds` end after this long (the real server picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// How objects are rendered in events.
#[derive(Clone, Debug, PartialEq)]
pub enum Render {
    Full,
    /// `PartialObjectMetadata` (kube-runtime `metadata_watcher`).
    Metadata,
    /// A one-row Table per event (`kubectl get -w`), with this `includeObject`.
    Table(String),
}

pub struct WatchRequest {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` = "from now, with the current state as ADDED events".
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub render: Render,
}

impl WatchRequest {
    fn key(&self) -> ResKey {
        self.rt.key()
    }

    fn selects(&self, ns: &str, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    fn line(&self, etype: &str, obj: &Value) -> Bytes {
        let obj = match &self.render {
            Render::Full => present(&self.rt, obj),
            Render::Metadata => partial_metadata(obj),
            Render::Table(include) => {
                let rv = crate::store::meta_str(obj, "resourceVersion")
                    .parse()
                    .unwrap_or(0);
                crate::table::table(&self.rt, &[Arc::new(obj.clone())], rv, include)
            }
        };
        let mut s = serde_json::to_vec(&json!({"type": etype, "object": obj})).unwrap_or_default();
        s.push(b'\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": md});
        let mut s =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        s.push(b'\n');
        Bytes::from(s)
    }

    /// What a client watching with this request sees for a stored event, if anything.
    fn translate(&self, e: &Event) -> Option<Bytes> {
        if e.key != self.key() {
            return None;
        }
        let now = self.selects(&e.namespace, &e.object);
        let before = e
            .old
            .as_deref()
            .is_some_and(|o| self.selects(&e.namespace, o));
        let etype = match e.etype {
            EventType::Added if now => "ADDED",
            EventType::Deleted if before => "DELETED",
            EventType::Modified => match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            _ => return None,
        };
        Some(self.line(etype, &e.object))
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Closes streams when the double pauses or shuts down: each serving period has an epoch, and
/// a stream ends as soon as the epoch it started in is over.
#[derive(Clone)]
pub struct Epoch(pub watch::Receiver<u64>);

struct State {
    store: Arc<Store>,
    req: WatchRequest,
    last_rv: u64,
    queue: VecDeque<Bytes>,
    changes: watch::Receiver<u64>,
    epoch: watch::Receiver<u64>,
    started_epoch: u64,
    deadline: Instant,
    next_bookmark: Instant,
    done: bool,
}

/// The body of a watch response.
pub fn stream(store: Arc<Store>, req: WatchRequest, epoch: Epoch) -> axum::body::Body {
    let mut changes = store.subscribe();
    changes.borrow_and_update();
    let mut queue = VecDeque::new();
    let last_rv;
    {
        let g = store.lock();
        match req.resource_version {
            Some(rv) if !req.send_initial_events => {
                last_rv = rv;
            }
            _ => {
                // Current state as ADDED events, consistent with the resourceVersion we resume
                // from, because both are read under the same lock.
                for o in g.list(&req.key(), req.namespace.as_deref()) {
                    let ns = crate::store::meta_str(&o, "namespace").to_string();
                    if req.selects(&ns, &o) {
                        queue.push_back(req.line("ADDED", &o));
                    }
                }
                last_rv = g.rv();
                if req.send_initial_events && req.bookmarks {
                    queue.push_back(req.bookmark(last_rv, true));
                }
            }
        }
    }
    let started_epoch = *epoch.0.borrow();
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let state = State {
        store,
        req,
        last_rv,
        queue,
        changes,
        epoch: epoch.0,
        started_epoch,
        deadline: Instant::now() + timeout,
        next_bookmark: Instant::now() + BOOKMARK_INTERVAL,
        done: false,
    };
    let s = futures::stream::unfold(state, |mut st| async move {
        let item = next(&mut st).await?;
        Some((Ok::<Bytes, std::convert::Infallible>(item), st))
    });
    axum::body::Body::from_stream(s)
}

async fn next(st: &mut State) -> Option<Bytes> {
    loop {
        if let Some(b) = st.queue.pop_front() {
            return Some(b);
        }
        if st.done || *st.epoch.borrow() != st.started_epoch {
            return None;
        }
        // Mark the current value seen *before* reading the history, so a commit racing with
        // this read still wakes us up below.
        st.changes.borrow_and_update();
        {
            let g = st.store.lock();
            match g.events_after(st.last_rv) {
                Err(oldest) => {
                    let err = ApiError::gone(st.last_rv, oldest);
                    let mut s =
                        serde_json::to_vec(&json!({"type": "ERROR", "object": err.status()}))
                            .unwrap_or_default();
                    s.push(b'\n');
                    st.queue.push_back(Bytes::from(s));
                    st.done = true;
                    continue;
                }
                Ok(events) => {
                    for e in events {
                        if let Some(b) = st.req.translate(e) {
                            st.queue.push_back(b);
                        }
                    }
                }
            }
            st.last_rv = st.last_rv.max(g.rv());
        }
        if !st.queue.is_empty() {
            continue;
        }
        tokio::select! {
            r = st.changes.changed() => {
                if r.is_err() {
                    st.done = true;
                }
            }
            r = st.epoch.changed() => {
                if r.is_err() {
                    st.done = true;
                }
            }
            _ = tokio::time::sleep_until(st.deadline) => {
                st.done = true;
            }
            _ = tokio::time::sleep_until(st.next_bookmark), if st.req.bookmarks => {
                st.next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
                st.queue.push_back(st.req.bookmark(st.last_rv, false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Registry;

    fn request(store: &Store, rv: Option<u64>, labels: &str, timeout: u64) -> WatchRequest {
        let rt = store
            .lock()
            .registry
            .find("", "v1", "configmaps")
            .cloned()
            .unwrap();
        WatchRequest {
            rt,
            namespace: Some("default".into()),
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::default(),
            resource_version: rv,
            send_initial_events: false,
            bookmarks: false,
            timeout: Some(Duration::from_secs(timeout)),
            render: Render::Full,
        }
    }

    async fn collect(store: &Arc<Store>, req: WatchRequest) -> Vec<Value> {
        let (_tx, rx) = watch::channel(0);
        let body = stream(store.clone(), req, Epoch(rx));
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn cm(name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}})
    }

    #[tokio::test]
    async fn too_old_resource_version_is_410_gone() {
        let store = Store::new(Registry::builtin(), 3);
        let key = ResKey::new("", "configmaps");
        for i in 0..5 {
            store.lock().put(&key, cm(&format!("c{i}"), "x"));
        }
        let events = collect(&store, request(&store, Some(1), "", 5)).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "ERROR");
        assert_eq!(events[0]["object"]["code"], 410);
        assert_eq!(events[0]["object"]["reason"], "Expired");

        // Within the history: exactly the later events, then the stream ends at the timeout.
        let events = collect(&store, request(&store, Some(4), "", 1)).await;
        let names: Vec<&str> = events
            .iter()
            .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c3", "c4"]);
    }

    #[tokio::test]
    async fn selector_transitions_become_added_and_deleted() {
        let store = Store::new(Registry::builtin(), 100);
        let key = ResKey::new("", "configmaps");
        let start = store.lock().rv();
        store.lock().put(&key, cm("a", "x"));
        store.lock().put(&key, cm("a", "y")); // stops matching app=x
        store.lock().put(&key, cm("a", "x")); // matches again
        let events = collect(&store, request(&store, Some(start), "app=x", 1)).await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["ADDED", "DELETED", "ADDED"]);
    }
}
