//! What `describe` and `why` read about one object: the object, its children (recursively, as
//! the registry defines them) and the events about each, fetched with indexed filters into a
//! [`Snapshot`] that `threeport_api::status` reads, the same functions the dashboard calls.

use serde_json::Value;
use threeport_api::kinds::{self, Kind};
use threeport_api::status::Snapshot;
use threeport_api::{Client, ObjectExt};

/// How deep children are followed (definition → instances → resources).
const DEPTH: usize = 3;
/// Children of one kind fetched per object; more are not needed to find a cause.
const CHILDREN: usize = 200;

/// The object `id` of `kind` with its children and their events.
pub async fn gather(client: &Client, kind: &'static Kind, object: Value) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut todo = vec![(kind, object, 0usize)];
    while let Some((k, o, depth)) = todo.pop() {
        let Some(id) = o.id() else { continue };
        events_into(client, k, id, &mut snap).await;
        if depth < DEPTH {
            for ck in k.children() {
                let Some(field) = ck.parent_field(k) else {
                    continue;
                };
                let key = field.filter_key();
                if let Ok(items) = client.list(ck, &[(key.as_str(), id.to_string())]).await {
                    for c in items.into_iter().take(CHILDREN) {
                        todo.push((ck, c, depth + 1));
                    }
                }
            }
        }
        snap.insert(k, o);
    }
    snap
}

/// Events about one object: generic events by ID (filtered by kind when read), and typed event
/// rows whose fields point at this kind.
async fn events_into(client: &Client, kind: &'static Kind, id: u64, snap: &mut Snapshot) {
    for ek in kinds::KINDS.iter().filter(|k| k.is_event()) {
        let filters: Vec<(String, String)> = if std::ptr::eq(ek, kinds::EVENT) {
            vec![
                ("objectkind".into(), kind.name.to_string()),
                ("objectid".into(), id.to_string()),
            ]
        } else {
            match ek
                .own_fields
                .iter()
                .find(|f| f.references == Some(kind.name))
            {
                Some(f) => vec![(f.filter_key(), id.to_string())],
                None => continue,
            }
        };
        let refs: Vec<(&str, String)> = filters
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if let Ok(items) = client.list(ek, &refs).await {
            snap.extend(ek, items);
        }
    }
}
