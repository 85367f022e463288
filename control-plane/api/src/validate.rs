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

/// The registry's value constraints beyond the type: `one_of` and `range`.
pub fn check_allowed(field: &crate::kinds::Field, value: &Value) -> Result<(), String> {
    if let (false, Some(v)) = (field.one_of.is_empty(), value.as_str())
        && !field.one_of.contains(&v)
    {
        let hint = field
            .one_of
            .iter()
            .find(|c| c.eq_ignore_ascii_case(v))
            .map(|c| format!("; did you mean \"{c}\"?"))
            .unwrap_or_default();
        return Err(format!(
            "{v:?} is not one of {}{hint}",
            field.one_of.join(", ")
        ));
    }
    if let (Some((lo, hi)), Some(n)) = (field.range, value.as_i64())
        && (n < lo || n > hi)
    {
        return Err(format!("must be between {lo} and {hi}, got {n}"));
    }
    Ok(())
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
        check_allowed(field, value).map_err(|m| FieldError::new(key, m))?;
        if field.name == "Name"
            && let Some(name) = value.as_str()
        {
            check_name(name).map_err(|m| FieldError::new(key, m))?;
        }
        // Indexed strings are stored as they are, and PostgreSQL/CockroachDB text cannot hold
        // U+0000 (a database error, a 500, before this check).
        if field.ty == FieldType::String && value.as_str().is_some_and(|s| s.contains('\0')) {
            return Err(FieldError::new(
                key,
                "must not contain NUL characters (U+0000)",
            ));
        }
        // Object IDs are 1 to 2^63-1 (a BIGINT): a reference outside that range names nothing,
        // and PostgreSQL refuses to even compare it (a 500 before this check).
        if let (Some(to), Some(id)) = (field.references, value.as_u64())
            && (id == 0 || id > i64::MAX as u64)
        {
            return Err(FieldError::new(
                key,
                format!("no {to} has ID {id}: IDs are 1 to {}", i64::MAX),
            ));
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
        // A PATCH is checked by the server once merged with what is stored.
        crate::services::check_object(kind, obj)?;
    }
    Ok(obj)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    // Characters, as the message (and the OpenAPI document's maxLength) says, not UTF-8 bytes.
    if name.chars().count() > 253 {
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
        // IDs are unsigned 64-bit (a reference, though, only reaches 2^63-1: see below).
        assert!(
            check_body(
                lookup("events").unwrap(),
                &json!({"ObjectID": 18446744073709551615u64}),
                Mode::Create
            )
            .is_ok()
        );
        assert!(check_body(wi, &json!([]), Mode::Create).is_err());
    }

    #[test]
    fn references_and_strings_the_database_cannot_hold() {
        let wi = lookup("workload-instances").unwrap();
        for id in [0, i64::MAX as u64 + 1, u64::MAX] {
            let e = check_body(
                wi,
                &json!({"Name": "w", "WorkloadDefinitionID": id}),
                Mode::Create,
            )
            .unwrap_err();
            assert_eq!(e.field, "WorkloadDefinitionID", "{e}");
        }
        assert!(
            check_body(
                wi,
                &json!({"Name": "w", "WorkloadDefinitionID": i64::MAX}),
                Mode::Create
            )
            .is_ok()
        );
        let e = check_body(wi, &json!({"Status": "a\u{0}b"}), Mode::Patch).unwrap_err();
        assert_eq!(e.field, "Status");
        let wd = lookup("workload-definitions").unwrap();
        // Documents (not indexed) may hold anything.
        assert!(check_body(wd, &json!({"YAMLDocument": "a\u{0}b"}), Mode::Patch).is_ok());
    }

    #[test]
    fn names_are_counted_in_characters() {
        let wd = lookup("workload-definitions").unwrap();
        let body = |name: String| json!({"Name": name, "YAMLDocument": "x"});
        assert!(check_body(wd, &body("é".repeat(253)), Mode::Create).is_ok());
        assert!(check_body(wd, &body("é".repeat(254)), Mode::Create).is_err());
        assert!(check_body(wd, &body(" \u{3000}".into()), Mode::Create).is_err());
    }
}

/// Parse JSON like `serde_json::from_slice`, but refuse duplicate keys in any object: with
/// duplicates, which value wins is parser-specific, so an ambiguous body is an error.
///
/// JSON has one number type, so `2.0` and `2e0` are the integer 2 (JSON Schema's `integer`, which
/// the OpenAPI document uses, says so too): such whole numbers are read as integers, exactly (not
/// through an f64, which would round IDs above 2^53), so integer and ID fields accept them.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let bytes = integral_numbers_as_integers(bytes);
    let Strict(v) = serde_json::from_slice(&bytes)?;
    Ok(v)
}

/// Rewrite every number token with a fraction or an exponent whose value is a whole number that
/// fits in an i64 or u64 (`2.0`, `-3e2`, `1.50e1`) as plain integer digits. Anything else,
/// malformed input included, is left as it is for the parser to take or refuse.
fn integral_numbers_as_integers(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    if !bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Cow::Borrowed(bytes);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0; // bytes[..copied] are in `out` already
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let (end, integer) = number_token(bytes, i);
                if let Some(digits) = integer {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
                    o.extend_from_slice(&bytes[copied..i]);
                    o.extend_from_slice(digits.as_bytes());
                    copied = end;
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(bytes),
        Some(mut o) => {
            o.extend_from_slice(&bytes[copied.min(bytes.len())..]);
            Cow::Owned(o)
        }
    }
}

/// The end of the number token at `start` and, if it has a fraction or an exponent and its
/// value is a whole number in the i64/u64 range, that number's integer spelling.
fn number_token(b: &[u8], start: usize) -> (usize, Option<String>) {
    let digits_from = |mut j: usize| {
        let from = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        (from, j)
    };
    let negative = b[start] == b'-';
    let (int_from, int_to) = digits_from(start + usize::from(negative));
    let int = &b[int_from..int_to];
    // JSON's grammar: an integer part, no leading zeros.
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return (int_to, None);
    }
    let mut j = int_to;
    let mut frac: &[u8] = &[];
    if j < b.len() && b[j] == b'.' {
        let (f_from, f_to) = digits_from(j + 1);
        if f_to == f_from {
            return (f_to, None);
        }
        frac = &b[f_from..f_to];
        j = f_to;
    }
    let mut exp: i64 = 0;
    let mut has_exp = false;
    if j < b.len() && matches!(b[j], b'e' | b'E') {
        let mut k = j + 1;
        let exp_negative = k < b.len() && b[k] == b'-';
        if k < b.len() && matches!(b[k], b'+' | b'-') {
            k += 1;
        }
        let (e_from, e_to) = digits_from(k);
        if e_to == e_from {
            return (e_to, None);
        }
        // An exponent of 1000 or more (as 999 here) leaves nothing in range but zero.
        let text = std::str::from_utf8(&b[e_from..e_to]).unwrap_or("99");
        exp = match text.trim_start_matches('0') {
            "" => 0,
            t if t.len() <= 3 => t.parse().unwrap_or(999),
            _ => 999,
        };
        if exp_negative {
            exp = -exp;
        }
        has_exp = true;
        j = e_to;
    }
    if frac.is_empty() && !has_exp {
        return (j, None);
    }
    // The value is mantissa × 10^scale, with the mantissa's digits as written.
    let mut mantissa: Vec<u8> = int.iter().chain(frac).copied().collect();
    let scale = exp - frac.len() as i64;
    if scale < 0 {
        let cut = (-scale) as usize;
        if cut > mantissa.len() || mantissa[mantissa.len() - cut..].iter().any(|d| *d != b'0') {
            return (j, None); // a fraction remains (or the number is below 1)
        }
        mantissa.truncate(mantissa.len() - cut);
    } else {
        if scale > 20 {
            // Only zero stays in range with this many trailing zeros.
            if mantissa.iter().all(|d| *d == b'0') {
                return (j, Some("0".into()));
            }
            return (j, None);
        }
        mantissa.extend(std::iter::repeat_n(b'0', scale as usize));
    }
    let digits = std::str::from_utf8(&mantissa)
        .unwrap_or("")
        .trim_start_matches('0');
    if digits.is_empty() {
        return (j, Some("0".into()));
    }
    let spelled = if negative {
        format!("-{digits}")
    } else {
        digits.to_string()
    };
    let fits = if negative {
        spelled.parse::<i64>().is_ok()
    } else {
        spelled.parse::<u64>().is_ok()
    };
    (j, fits.then_some(spelled))
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

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

    #[test]
    fn whole_numbers_are_integers() {
        let v = super::parse_json_strict(
            br#"{"a":2.0,"b":-3e2,"c":1.5,"d":1e300,"e":"1.0","f":[18446744073709551615.0,1.50E1,-0.0,0e5],
                 "g":2251799813685247.0,"h":9223372036854775808.0,"i":-9223372036854775809.0,"j":120e-1,"k":1e-999}"#,
        )
        .unwrap();
        assert_eq!(v["a"].as_u64(), Some(2));
        assert_eq!(v["b"].as_i64(), Some(-300));
        assert_eq!(v["c"].as_f64(), Some(1.5));
        assert!(!v["d"].is_i64() && !v["d"].is_u64());
        assert_eq!(v["e"], "1.0");
        assert_eq!(v["f"][0].as_u64(), Some(u64::MAX));
        assert_eq!(v["f"][1].as_u64(), Some(15));
        assert_eq!(v["f"][2].as_u64(), Some(0));
        assert_eq!(v["f"][3].as_u64(), Some(0));
        assert_eq!(v["g"].as_u64(), Some(2251799813685247));
        assert_eq!(v["h"].as_u64(), Some(9223372036854775808));
        assert!(v["i"].is_f64());
        assert_eq!(v["j"].as_u64(), Some(12));
        assert!(v["k"].is_f64());
        assert!(super::parse_json_strict(br#"{"a":01.0}"#).is_err());
        assert!(super::parse_json_strict(br#"{"a":1.}"#).is_err());
        assert!(super::parse_json_strict(br#"{"a\"":1.0}"#).unwrap()["a\""].is_u64());
    }
}
