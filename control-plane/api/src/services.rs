//! What the managed-service kinds accept, in one place: the API refuses anything else on write
//! (a 400 naming the field), `tptctl validate` says so offline, and the AWS controllers map the
//! accepted values onto AWS's own (`MachineSize: XSmall` → `db.t3.micro`).

use crate::kinds::Kind;
use crate::validate::FieldError;
use serde_json::{Map, Value};

/// RDS engines, as upstream's `Engine` field spells them (they are also RDS's engine names).
pub const RDS_ENGINES: &[&str] = &["mariadb", "mysql", "postgres"];

/// Major versions RDS offers for each engine. A version is accepted when it is one of these or
/// a minor release of one (`10.11` and `10.11.5` both match `10.11`).
pub const RDS_ENGINE_VERSIONS: &[(&str, &[&str])] = &[
    ("mariadb", &["10.4", "10.5", "10.6", "10.11", "11.4"]),
    ("mysql", &["5.7", "8.0", "8.4"]),
    ("postgres", &["12", "13", "14", "15", "16", "17"]),
];

/// Upstream's `MachineSize` names and the RDS instance classes they stand for.
pub const MACHINE_SIZE_CLASSES: &[(&str, &str)] = &[
    ("XSmall", "db.t3.micro"),
    ("Small", "db.t3.small"),
    ("Medium", "db.t3.medium"),
    ("Large", "db.t3.large"),
    ("XLarge", "db.t3.xlarge"),
];

/// The names alone, for the registry's `one_of`.
pub const MACHINE_SIZES: &[&str] = &["XSmall", "Small", "Medium", "Large", "XLarge"];

/// RDS's limits for these engines on general-purpose storage (the registry's ranges).
pub const RDS_STORAGE_GB: (i64, i64) = (20, 65_536);
pub const RDS_PORTS: (i64, i64) = (1_150, 65_535);
pub const RDS_BACKUP_DAYS: (i64, i64) = (0, 35);

/// The RDS instance class for an upstream machine size.
pub fn instance_class(size: &str) -> Option<&'static str> {
    MACHINE_SIZE_CLASSES
        .iter()
        .find(|(s, _)| *s == size)
        .map(|(_, c)| *c)
}

/// The port an engine listens on when the definition names none.
pub fn default_port(engine: &str) -> i64 {
    if engine == "postgres" { 5432 } else { 3306 }
}

/// Whether `version` is `major` or a minor release of it (`10.11`, `10.11.5`; not `10.1`).
fn is_release_of(version: &str, major: &str) -> bool {
    version.strip_prefix(major).is_some_and(|rest| {
        rest.split('.')
            .skip(1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && (rest.is_empty() || rest.starts_with('.'))
    })
}

/// The same rule as a regular expression, for the OpenAPI document.
fn release_pattern(majors: &[&str]) -> String {
    let alts: Vec<String> = majors.iter().map(|m| m.replace('.', "\\.")).collect();
    format!("^(?:{})(?:\\.[0-9]+)*$", alts.join("|"))
}

/// Rules that involve more than one field: run on the object as it will be stored (after a
/// PATCH is merged), so a PATCH of `EngineVersion` alone is checked against the stored `Engine`.
pub fn check_object(kind: &Kind, obj: &Map<String, Value>) -> Result<(), FieldError> {
    if kind.name != crate::kinds::AWS_RELATIONAL_DATABASE_DEFINITION.name {
        return Ok(());
    }
    let engine = obj.get("Engine").and_then(Value::as_str).unwrap_or("");
    let Some(version) = obj.get("EngineVersion").and_then(Value::as_str) else {
        return Ok(());
    };
    let Some((_, majors)) = RDS_ENGINE_VERSIONS.iter().find(|(e, _)| *e == engine) else {
        return Ok(()); // the engine itself is refused by its field's check
    };
    if majors.iter().any(|m| is_release_of(version, m)) {
        return Ok(());
    }
    Err(FieldError::new(
        "EngineVersion",
        format!(
            "{engine} {version:?} is not a supported version; use one of {} (or a minor release of one, such as {}.1)",
            majors.join(", "),
            majors[majors.len() - 1]
        ),
    ))
}

/// `check_object`'s rules as JSON Schema (`allOf` members of a create/replace body), so the
/// OpenAPI document describes exactly what the server accepts.
pub fn schema_rules(kind: &Kind) -> Vec<Value> {
    if kind.name != crate::kinds::AWS_RELATIONAL_DATABASE_DEFINITION.name {
        return Vec::new();
    }
    RDS_ENGINE_VERSIONS
        .iter()
        .map(|(engine, majors)| {
            serde_json::json!({
                "if": {"properties": {"Engine": {"const": engine}}, "required": ["Engine"]},
                "then": {"properties": {"EngineVersion": {
                    "anyOf": [{"type": "null"}, {"type": "string", "pattern": release_pattern(majors)}]
                }}}
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::AWS_RELATIONAL_DATABASE_DEFINITION as RDS;
    use serde_json::json;

    fn check(v: Value) -> Result<(), FieldError> {
        check_object(RDS, v.as_object().unwrap())
    }

    #[test]
    fn versions_are_checked_against_the_engine() {
        assert!(check(json!({"Engine": "mariadb", "EngineVersion": "10.11"})).is_ok());
        assert!(check(json!({"Engine": "mariadb", "EngineVersion": "10.11.5"})).is_ok());
        assert!(check(json!({"Engine": "postgres", "EngineVersion": "16.2"})).is_ok());
        let e = check(json!({"Engine": "mariadb", "EngineVersion": "9.1"})).unwrap_err();
        assert_eq!(e.field, "EngineVersion");
        assert!(e.message.contains("10.11"), "{e}");
        // `10.1` is not a prefix match for `10.11`.
        assert!(check(json!({"Engine": "mariadb", "EngineVersion": "10.1"})).is_err());
        assert!(check(json!({"Engine": "mariadb", "EngineVersion": "10.11."})).is_err());
        assert!(check(json!({"Engine": "mariadb", "EngineVersion": "10.11.x"})).is_err());
        assert!(check(json!({"Engine": "mysql", "EngineVersion": "10.11"})).is_err());
        assert_eq!(instance_class("XSmall"), Some("db.t3.micro"));
        assert_eq!(
            MACHINE_SIZES.to_vec(),
            MACHINE_SIZE_CLASSES
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
        );
    }
}
