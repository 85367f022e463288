//! What a screen shows: the [`View`]s (which kinds it needs, its title and breadcrumb, where
//! Enter goes from one of its objects) and the [`Screen`]s of the view stack (a view with its
//! cursor and filter).

use crate::store::Store;
use threeport_api::kinds::{self, Kind};

/// Kinds listed at start: what the built-in views and the "why" pane need.
pub fn core_kinds() -> Vec<&'static Kind> {
    let mut v = vec![
        kinds::WORKLOAD_DEFINITION,
        kinds::WORKLOAD_INSTANCE,
        kinds::WORKLOAD_RESOURCE_INSTANCE,
        kinds::KUBERNETES_RUNTIME_INSTANCE,
        kinds::CONTROL_PLANE_INSTANCE,
    ];
    v.extend(event_kinds());
    v
}

/// `Event` and `WorkloadEvent`, as the registry says.
pub fn event_kinds() -> impl Iterator<Item = &'static Kind> {
    kinds::KINDS.iter().filter(|k| k.is_event())
}

#[derive(Clone, Debug)]
pub enum View {
    /// Workload definitions with their instances under them.
    Workloads,
    /// Every object of one kind (`:aws-accounts`, `:runtimes`).
    Kind(&'static Kind),
    /// Events and workload events, newest first.
    Events,
    /// Objects of `kinds` that point at the parent (definition → instances → resources).
    Children {
        parent: &'static Kind,
        id: u64,
        kinds: Vec<&'static Kind>,
    },
    /// Events about one object.
    ObjectEvents { kind: &'static Kind, id: u64 },
    /// The object as YAML.
    Describe { kind: &'static Kind, id: u64 },
}

fn same(a: &'static Kind, b: &'static Kind) -> bool {
    std::ptr::eq(a, b)
}

// `Kind` has no `PartialEq`: kinds are registry statics, compared by address.
impl PartialEq for View {
    fn eq(&self, other: &View) -> bool {
        match (self, other) {
            (View::Workloads, View::Workloads) | (View::Events, View::Events) => true,
            (View::Kind(a), View::Kind(b)) => same(a, b),
            (
                View::Children { parent, id, kinds },
                View::Children {
                    parent: p2,
                    id: i2,
                    kinds: k2,
                },
            ) => {
                same(parent, p2)
                    && id == i2
                    && kinds.len() == k2.len()
                    && kinds.iter().zip(k2).all(|(a, b)| same(a, b))
            }
            (View::ObjectEvents { kind, id }, View::ObjectEvents { kind: k2, id: i2 })
            | (View::Describe { kind, id }, View::Describe { kind: k2, id: i2 }) => {
                same(kind, k2) && id == i2
            }
            _ => false,
        }
    }
}

impl View {
    /// Where Enter goes from an object: an event opens as YAML; anything else shows the objects
    /// under it (`Kind::children`: a definition's instances, an instance's resources), else the
    /// objects that point at it (`Kind::dependents`: the workloads on a runtime), else its events.
    pub fn open(kind: &'static Kind, id: u64) -> View {
        if kind.is_event() {
            return View::Describe { kind, id };
        }
        let mut kinds = kind.children();
        if kinds.is_empty() {
            kinds = kind.dependents();
        }
        if kinds.is_empty() {
            View::ObjectEvents { kind, id }
        } else {
            View::Children {
                parent: kind,
                id,
                kinds,
            }
        }
    }

    /// Kinds whose data the view shows (they must be listed first).
    pub fn needs(&self) -> Vec<&'static Kind> {
        match self {
            View::Workloads => vec![
                kinds::WORKLOAD_DEFINITION,
                kinds::WORKLOAD_INSTANCE,
                kinds::KUBERNETES_RUNTIME_INSTANCE,
            ],
            View::Kind(k) => {
                // The kind, then what its reference columns name.
                let mut v = vec![*k];
                for t in k.own_fields.iter().filter_map(|f| f.references) {
                    if let Some(t) = kinds::by_name(t)
                        && !v.iter().any(|x| same(x, t))
                    {
                        v.push(t);
                    }
                }
                v
            }
            View::Events => event_kinds().collect(),
            View::Children { parent, kinds, .. } => {
                let mut v = kinds.clone();
                v.push(parent);
                v
            }
            View::ObjectEvents { kind, .. } | View::Describe { kind, .. } => {
                let mut v = vec![*kind];
                v.extend(event_kinds());
                v
            }
        }
    }

    fn object_label(store: &Store, k: &'static Kind, id: u64) -> String {
        format!(
            "{}/{}",
            k.singular(),
            store.name_of(k, id).unwrap_or_else(|| id.to_string())
        )
    }

    /// `resources`, `workload-instances`, `dependants`: what a children view lists.
    fn children_word(kinds: &[&'static Kind]) -> String {
        match kinds {
            [k] if same(k, kinds::WORKLOAD_RESOURCE_INSTANCE) => "resources".into(),
            // A workload instance: its Kubernetes objects, then its databases, secrets, …
            [k, ..] if same(k, kinds::WORKLOAD_RESOURCE_INSTANCE) => {
                "resources and dependencies".into()
            }
            [k] => k.plural.into(),
            _ => "dependants".into(),
        }
    }

    /// Short name for the breadcrumb and the table title.
    pub fn title(&self, store: &Store) -> String {
        match self {
            View::Workloads => "workloads".into(),
            View::Kind(k) => k.plural.into(),
            View::Events => "events".into(),
            View::Children { parent, id, kinds } => format!(
                "{} of {}",
                Self::children_word(kinds),
                Self::object_label(store, parent, *id)
            ),
            View::ObjectEvents { kind, id } => {
                format!("events of {}", Self::object_label(store, kind, *id))
            }
            View::Describe { kind, id } => {
                format!("describe {}", Self::object_label(store, kind, *id))
            }
        }
    }

    pub fn crumb(&self, store: &Store) -> String {
        match self {
            View::Children { kinds, .. } => Self::children_word(kinds),
            View::ObjectEvents { .. } => "events".into(),
            View::Describe { kind, id } => Self::object_label(store, kind, *id),
            other => other.title(store),
        }
    }
}

/// One entry of the view stack: a view with its cursor, scroll offset and filter.
#[derive(Clone, Debug)]
pub struct Screen {
    pub view: View,
    pub selected: usize,
    pub offset: usize,
    pub filter: String,
    /// The selected object, so the cursor follows it when rows move.
    pub(super) selected_key: Option<(&'static Kind, u64)>,
}

impl Screen {
    pub fn new(view: View) -> Screen {
        Screen {
            view,
            selected: 0,
            offset: 0,
            filter: String::new(),
            selected_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_follows_the_registry() {
        let children = |v: View| match v {
            View::Children { kinds, .. } => kinds.iter().map(|k| k.name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            children(View::open(kinds::WORKLOAD_DEFINITION, 1)),
            [kinds::WORKLOAD_INSTANCE.name]
        );
        let under_instance = children(View::open(kinds::WORKLOAD_INSTANCE, 1));
        assert_eq!(under_instance[0], kinds::WORKLOAD_RESOURCE_INSTANCE.name);
        assert!(
            under_instance.contains(&kinds::SECRET_INSTANCE.name),
            "{under_instance:?}"
        );
        // A runtime has no children, but workloads (and more) run on it.
        let on_runtime = children(View::open(kinds::KUBERNETES_RUNTIME_INSTANCE, 1));
        assert!(
            on_runtime.contains(&kinds::WORKLOAD_INSTANCE.name),
            "{on_runtime:?}"
        );
        assert_eq!(
            View::open(kinds::WORKLOAD_RESOURCE_INSTANCE, 1),
            View::ObjectEvents {
                kind: kinds::WORKLOAD_RESOURCE_INSTANCE,
                id: 1
            }
        );
        assert_eq!(
            View::open(kinds::EVENT, 1),
            View::Describe {
                kind: kinds::EVENT,
                id: 1
            }
        );
    }
}
