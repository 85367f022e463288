//! Typed accessors over untyped objects, as kube-rs's `ResourceExt` gives every resource.
//!
//! Objects travel as `serde_json::Value` because one generic path serves every kind. The
//! bookkeeping every reconciled object carries is read here, once, instead of by literal field
//! names in each controller, the CLI and the dashboard.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Accessors every object has.
pub trait ObjectExt {
    /// `ID`, a 64-bit integer (never read through f64).
    fn id(&self) -> Option<u64>;
    /// `Name`, or `""` for unnamed rows.
    fn name(&self) -> &str;
    /// A field is present and not `null`.
    fn is_set(&self, field: &str) -> bool;
    /// A string field, `""` when absent.
    fn str_field(&self, field: &str) -> &str;
    /// An ID (or other unsigned integer) field.
    fn id_field(&self, field: &str) -> Option<u64>;
    /// A timestamp field.
    fn time_field(&self, field: &str) -> Option<OffsetDateTime>;
    /// `DeletionScheduled` is set: a two-phase delete is under way.
    fn is_deleting(&self) -> bool;
    /// `Reconciled: true`.
    fn is_reconciled(&self) -> bool;
    /// `Status`, when set and not empty.
    fn status(&self) -> Option<&str>;
    /// `StatusReason`, when set and not empty.
    fn status_reason(&self) -> Option<&str>;
    fn created_at(&self) -> Option<OffsetDateTime>;
    /// The bookkeeping fields, typed.
    fn reconciliation(&self) -> Reconciliation;
}

impl ObjectExt for Value {
    fn id(&self) -> Option<u64> {
        self.id_field("ID")
    }
    fn name(&self) -> &str {
        self.str_field("Name")
    }
    fn is_set(&self, field: &str) -> bool {
        self.get(field).is_some_and(|v| !v.is_null())
    }
    fn str_field(&self, field: &str) -> &str {
        self.get(field).and_then(Value::as_str).unwrap_or("")
    }
    fn id_field(&self, field: &str) -> Option<u64> {
        self.get(field).and_then(Value::as_u64)
    }
    fn time_field(&self, field: &str) -> Option<OffsetDateTime> {
        parse_time(self.str_field(field))
    }
    fn is_deleting(&self) -> bool {
        self.is_set("DeletionScheduled")
    }
    fn is_reconciled(&self) -> bool {
        self.get("Reconciled").and_then(Value::as_bool) == Some(true)
    }
    fn status(&self) -> Option<&str> {
        Some(self.str_field("Status")).filter(|s| !s.is_empty())
    }
    fn status_reason(&self) -> Option<&str> {
        Some(self.str_field("StatusReason")).filter(|s| !s.is_empty())
    }
    fn created_at(&self) -> Option<OffsetDateTime> {
        self.time_field("CreatedAt")
    }
    fn reconciliation(&self) -> Reconciliation {
        serde_json::from_value(self.clone()).unwrap_or_default()
    }
}

/// Upstream's `Reconciliation` embed: the fields [`crate::kinds::RECONCILIATION_FIELDS`] lists.
/// Serializing one gives a PATCH body with only the fields that are set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reconciliation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_acknowledged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_confirmed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_failed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_scheduled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_acknowledged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_confirmed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt_reconciliation: Option<bool>,
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Now, as RFC 3339 (the format of every timestamp field).
pub fn now_rfc3339() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_read_the_bookkeeping() {
        let o = json!({"ID": 913485001775689728u64, "Name": "web", "Reconciled": true,
            "DeletionScheduled": null, "Status": "", "CreationConfirmed": "2026-12-01T00:00:00Z"});
        assert_eq!(o.id(), Some(913485001775689728));
        assert_eq!(o.name(), "web");
        assert!(o.is_reconciled() && !o.is_deleting());
        assert_eq!(o.status(), None);
        let r = o.reconciliation();
        assert_eq!(
            r.creation_confirmed.as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        let patch = serde_json::to_value(Reconciliation {
            reconciled: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(patch, json!({"Reconciled": true}));
    }
}
