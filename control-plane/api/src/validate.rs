//! Validation of object bodies against the kind registry. The server runs it on every write and
//! `tptctl validate` runs the same code offline, so both give the same messages.

use crate::kinds::{FieldType, Kind, SERVER_MANAGED};
use serde_json::{Map, Value};
use std::fmt;

/// A problem with one field of one object. `field` is empty when the problem is the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "field \"{}\": {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// POST: required fields must be present.
    Create,
    /// PUT: the body replaces the object, so required fields must be present.
    Replace,
    /// PATCH: only the fields present are checked.
    Patch,
}

/// The field name closest to `name`, for "did you mean" hints on typos and wrong case.
pub fn did_you_mean(kind: &Kind, name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    kind.writable_fields()
        .map(|f| {
            let score = if f.name.to_ascii_lowercase() == lower {
                1.0
            } else {
                strsim::jaro_winkler(&f.name.to_ascii_lowercase(), &lower)
            };
            (score, f.name)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// Check one value against a field type. `Null` always passes here (it means "unset").
pub fn check_type(ty: FieldType, value: &Value) -> Result<(), String> {
    let ok = match (ty, value) {
        (_, Value::Null) => true,
        (FieldType::String | FieldType::Text, Value::String(_)) => true,
        (FieldType::Bool, Value::Bool(_)) => true,
        (FieldType::Int, Value::Number(n)) => n.is_i64(),
        (FieldType::Id, Value::Number(n)) => n.is_u64(),
        (FieldType::Json, _) => true,
        (FieldType::Timestamp, Value::String(s)) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("must be {}, got {}", ty.describe(), short(value)))
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

/// Validate a request body for `kind`. On success returns the body as a JSON object.
pub fn check_body<'a>(
    kind: &Kind,
    body: &'a Value,
    mode: Mode,
) -> Result<&'a Map<String, Value>, FieldError> {
    let obj = body.as_object().ok_or_else(|| {
        FieldError::new(
            "",
            format!(
                "the request body must be a JSON object describing a {}",
                kind.name
            ),
        )
    })?;
    for (key, value) in obj {
        if SERVER_MANAGED.contains(&key.as_str()) {
            return Err(FieldError::new(
                key,
                "is set by the server; remove it from the request body",
            ));
        }
        if key == "ResourceVersion" {
            if mode == Mode::Create {
                return Err(FieldError::new(
                    key,
                    "is set by the server; send it only on PATCH/PUT as a precondition",
                ));
            }
            check_type(FieldType::Int, value).map_err(|m| FieldError::new(key, m))?;
            continue;
        }
        let Some(field) = kind.field(key) else {
            let hint = match did_you_mean(kind, key) {
                Some(s) => format!("; did you mean \"{s}\"?"),
                None => String::new(),
            };
            return Err(FieldError::new(
                key,
                format!("unknown field for {}{hint}", kind.name),
            ));
        };
        check_type(field.ty, value).map_err(|m| FieldError::new(key, m))?;
        if field.required && value.is_null() {
            return Err(FieldError::new(key, "is required and cannot be null"));
        }
        if field.name == "Name" {
            if let Some(name) = value.as_str() {
                check_name(name).map_err(|m| FieldError::new(key, m))?;
            }
        }
    }
    if mode != Mode::Patch {
        for field in kind.writable_fields().filter(|f| f.required) {
            if obj.get(field.name).is_none_or(Value::is_null) {
                return Err(FieldError::new(
                    field.name,
                    format!("is required for {}", kind.name),
                ));
            }
        }
    }
    Ok(obj)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::lookup;
    use serde_json::json;

    #[test]
    fn messages_name_the_field() {
        let wd = lookup("workload-definitions").unwrap();
        let e = check_body(wd, &json!({"Name": "web"}), Mode::Create).unwrap_err();
        assert_eq!(e.field, "YAMLDocument");
        let e = check_body(
            wd,
            &json!({"Name": "web", "YAMLDocument": "x", "ID": 3}),
            Mode::Create,
        )
        .unwrap_err();
        assert_eq!(e.field, "ID");
        let e = check_body(
            wd,
            &json!({"Name": "web", "YamlDocument": "x"}),
            Mode::Patch,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("did you mean \"YAMLDocument\""),
            "{e}"
        );
        let wi = lookup("workload-instances").unwrap();
        let e = check_body(
            wi,
            &json!({"Name": "w", "WorkloadDefinitionID": "12"}),
            Mode::Create,
        )
        .unwrap_err();
        assert_eq!(e.field, "WorkloadDefinitionID");
        let e = check_body(
            wi,
            &json!({"Name": "w", "KubernetesRuntime": 1}),
            Mode::Patch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("KubernetesRuntimeInstanceID"), "{e}");
        assert!(
            check_body(
                wi,
                &json!({"Name": "w", "WorkloadDefinitionID": 18446744073709551615u64}),
                Mode::Create
            )
            .is_ok()
        );
        assert!(check_body(wi, &json!([]), Mode::Create).is_err());
    }
}
