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

/// Parse JSON like `serde_json::from_slice`, but refuse duplicate keys in any object: with
/// duplicates, which value wins is parser-specific, so an ambiguous body is an error.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let Strict(v) = serde_json::from_slice(bytes)?;
    Ok(v)
}

struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate field \"{key}\""
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod strict_tests {
    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(super::parse_json_strict(br#"{"a":1,"a":2}"#).is_err());
        assert!(super::parse_json_strict(br#"{"a":{"b":1,"b":1}}"#).is_err());
        let v =
            super::parse_json_strict(br#"{"ID":18446744073709551615,"x":[1,-2,1.5,null,true]}"#)
                .unwrap();
        assert_eq!(v["ID"].as_u64(), Some(u64::MAX));
    }
}
