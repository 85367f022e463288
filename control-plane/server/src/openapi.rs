//! The OpenAPI 3.1 document, derived from the kind registry at run time, so it can never
//! disagree with the routes (which come from the same registry).
//!
//! The document states what the server enforces, no more and no less, so that a generated
//! client (or a fuzzer such as schemathesis) can rely on it:
//!
//! - request bodies: one schema per write mode, because the modes differ: POST may not carry
//!   `ResourceVersion` and needs every required field; PATCH needs none; PUT needs every
//!   required field and may carry `ResourceVersion` as a precondition. Server-managed fields
//!   (`ID`, `CreatedAt`, …) and unknown fields are refused (`additionalProperties: false`).
//!   `null` means "unset" and is accepted for every field that is not required;
//! - values: IDs are unsigned 64-bit integers (a reference to another object 1 to 2^63-1: no
//!   object has any other ID), other integers signed 64-bit (`2.0` is an integer, as JSON Schema
//!   says), timestamps RFC 3339, `Name` 1 to 253 characters, not only white space, no control
//!   characters. Other strings, required ones included, may be empty: the server accepts "";
//! - list filters: one query parameter per indexed field, typed as the field (`page`, `size`,
//!   `reveal` besides);
//! - responses: the envelope of each status the handlers return (`400`, `404`, `409`, `413`,
//!   `503` carry `Status.error`); DELETE answers `200` with the object, "deletion scheduled"
//!   for reconciled kinds (two-phase), "deleted" for the others;
//! - `links` from each POST's `201` to the object's GET/PATCH/PUT/DELETE, and to the POST and
//!   the filtered list of every kind that references it, so tools can chain the calls.

use serde_json::{Map, Value, json};
use threeport_api::kinds::{Field, FieldType, KINDS, Kind, SERVER_MANAGED};

use crate::MAX_PAGE_SIZE;

/// What `Name` must look like (see `threeport_api::validate`): at least one character that is
/// neither white space (Unicode `White_Space`, as `str::trim` reads it) nor a control
/// character, and no control character (`char::is_control`: U+0000–U+001F, U+007F–U+009F).
/// Spelled with explicit classes, not `\s`, so ECMA-262, Python and Rust engines agree.
const NAME_PATTERN: &str = concat!(
    r"^[^\u0000-\u001F\u007F-\u009F]*",
    r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
    r"[^\u0000-\u001F\u007F-\u009F]*$"
);
pub const NAME_MAX_CHARS: u64 = 253;
const NO_NUL_PATTERN: &str = r"^[^\u0000]*$";

/// The JSON pointer of the created object's ID in a `201` envelope.
const CREATED_ID: &str = "$response.body#/Data/0/ID";

fn id_schema() -> Value {
    json!({"type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX})
}

fn int_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX})
}

/// The schema of a field's value. `nullable`: `null` is accepted too (it means "unset").
fn value_schema(f: &Field, nullable: bool) -> Value {
    let mut s = match f.ty {
        FieldType::String | FieldType::Text if f.name == "Name" => json!({
            "type": "string", "minLength": 1, "maxLength": NAME_MAX_CHARS, "pattern": NAME_PATTERN,
        }),
        // Indexed strings cannot hold U+0000 (the databases' text cannot); documents can.
        FieldType::String => json!({"type": "string", "pattern": NO_NUL_PATTERN}),
        FieldType::Text => json!({"type": "string"}),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Int => int_schema(),
        // No object has ID 0 or one above 2^63-1 (the database's BIGINT), so a reference
        // outside that range is always refused.
        FieldType::Id if f.references.is_some() => {
            json!({"type": "integer", "format": "uint64", "minimum": 1, "maximum": i64::MAX})
        }
        FieldType::Id => id_schema(),
        FieldType::Json if nullable => json!({}),
        FieldType::Json => {
            json!({"type": ["object", "array", "string", "number", "boolean"]})
        }
        FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
    };
    if !f.one_of.is_empty() {
        s["enum"] = json!(f.one_of);
    }
    if let Some((lo, hi)) = f.range {
        s["minimum"] = json!(lo);
        s["maximum"] = json!(hi);
    }
    if nullable && f.ty != FieldType::Json {
        let ty = s["type"].clone();
        s["type"] = json!([ty, "null"]);
        if let Some(Value::Array(values)) = s.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    let mut notes = Vec::new();
    if let Some(to) = f.references {
        notes.push(format!(
            "ID of an existing {to} (400 naming the field if there is none)"
        ));
    }
    if f.secret {
        notes.push(
            "secret: encrypted at rest, returned as \"*** redacted ***\" unless ?reveal=true; \
             refused (400) by a server without an encryption key"
                .into(),
        );
    }
    if f.immutable {
        notes.push("cannot change once set (400)".into());
    }
    if f.status {
        notes.push("status: changing it does not ask the controller to reconcile again".into());
    }
    if !notes.is_empty() {
        s["description"] = json!(notes.join("; "));
    }
    s
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    Create,
    Patch,
    Replace,
}

/// A request body schema: what `validate::check_body` accepts in each mode.
fn request_schema(kind: &Kind, mode: Body) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in kind.writable_fields() {
        props.insert(f.name.into(), value_schema(f, !f.required));
        if f.required && mode != Body::Patch {
            required.push(f.name);
        }
    }
    if mode != Body::Create {
        let mut rv = int_schema();
        rv["type"] = json!(["integer", "null"]);
        rv["description"] =
            json!("precondition: the write is refused (409) unless the object is at this version");
        props.insert("ResourceVersion".into(), rv);
    }
    let what = match mode {
        Body::Create => format!("A new {}", kind.name),
        Body::Patch => format!(
            "The fields of a {} to change; the others are kept",
            kind.name
        ),
        Body::Replace => format!("The whole {} (status fields not given are kept)", kind.name),
    };
    let mut schema = json!({
        "description": what,
        "type": "object",
        "additionalProperties": false,
        "properties": props,
        "required": required,
    });
    // A PATCH is checked against the stored object once merged, which no schema can express.
    let rules = threeport_api::services::schema_rules(kind);
    if mode != Body::Patch && !rules.is_empty() {
        schema["allOf"] = json!(rules);
    }
    schema
}

/// An object as the server returns it: unset fields are left out.
fn object_schema(kind: &Kind) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in kind.fields() {
        let mut s = match f.name {
            "ID" => {
                let mut s = id_schema();
                s["minimum"] = json!(1);
                s
            }
            "ResourceVersion" => {
                let mut s = int_schema();
                s["minimum"] = json!(1);
                s
            }
            _ if f.secret => {
                // Redacted (a string) unless revealed, when it is the value as written.
                let mut s = if f.ty == FieldType::Json {
                    json!({})
                } else {
                    value_schema(f, false)
                };
                s["description"] = value_schema(f, false)["description"].clone();
                s
            }
            _ => value_schema(f, false),
        };
        if SERVER_MANAGED.contains(&f.name) || f.name == "ResourceVersion" {
            s["readOnly"] = json!(true);
        }
        if f.required || COMMON_REQUIRED.contains(&f.name) {
            required.push(f.name);
        }
        props.insert(f.name.into(), s);
    }
    json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
}

const COMMON_REQUIRED: &[&str] = &["ID", "CreatedAt", "UpdatedAt", "ResourceVersion"];

fn envelope_schema(kind: &Kind, single: bool) -> Value {
    let mut data =
        json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{}", kind.name)}});
    if single {
        data["minItems"] = json!(1);
        data["maxItems"] = json!(1);
    }
    json!({
        "type": "object",
        "required": ["Meta", "Type", "Data", "Status"],
        "properties": {
            "Meta": {"$ref": "#/components/schemas/Meta"},
            "Type": {"const": kind.name},
            "Data": data,
            "Status": {"$ref": "#/components/schemas/Status"},
        }
    })
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": json_content(schema_ref("Error"))})
}

/// The error responses of one operation, from the codes listed.
fn errors(codes: &[u16]) -> Map<String, Value> {
    codes
        .iter()
        .map(|code| {
            let text = match code {
                400 => "invalid request (Status.error names the field): a malformed or duplicate-key body, \
                        a field the schema does not allow, a query parameter that is not listed, a reference \
                        to an object that does not exist, a change to an immutable field, or a secret field \
                        on a server without an encryption key",
                404 => "no object with this ID",
                409 => "conflict: the Name is taken, ResourceVersion is stale, the object is still \
                        referenced, or its deletion is already pending",
                413 => "the request body is larger than the server's --body-limit",
                503 => "the database is unavailable (or the object kept changing): retry",
                _ => "error",
            };
            (code.to_string(), error(text))
        })
        .collect()
}

/// operationIds, also the targets of links.
fn op_id(verb: &str, kind: &Kind) -> String {
    format!("{verb}{}", kind.name)
}

/// The query parameters of a list: one exact-match filter per indexed field, then paging.
/// The rules are `http::filter`'s: secret, unindexed and bookkeeping fields are not filters.
fn list_parameters(kind: &Kind) -> Vec<Value> {
    let mut params: Vec<Value> = kind
        .fields()
        .filter(|f| f.ty.filterable() && !f.secret && !matches!(f.name, "ID" | "ResourceVersion"))
        .filter(|f| {
            !matches!(
                f.filter_key().as_str(),
                "page" | "after" | "size" | "reveal"
            )
        })
        .map(|f| {
            let mut s = match f.ty {
                // A filter is compared with the stored value, so any string is a valid filter,
                // but for one with U+0000, which no stored value holds (the server says 400).
                FieldType::String | FieldType::Text => {
                    json!({"type": "string", "pattern": NO_NUL_PATTERN})
                }
                // Any unsigned 64-bit number is a valid filter (it may just match nothing).
                FieldType::Id => id_schema(),
                // Likewise any 64-bit integer, even outside the field's writable range.
                FieldType::Int => int_schema(),
                _ => value_schema(f, false),
            };
            if let Some(o) = s.as_object_mut() {
                o.remove("description");
            }
            json!({"name": f.filter_key(), "in": "query", "required": false, "schema": s,
                   "description": format!("only objects whose {} equals this value", f.name)})
        })
        .collect();
    params.extend([
        json!({"name": "page", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 1, "maximum": u64::MAX, "default": 1},
               "description": "page number, from 1 (OFFSET paging; `after` is cheaper on large lists)"}),
        json!({"name": "after", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
               "description": "only objects whose ID is greater than this one: the last ID of the previous page, for cursor paging (with page, pages are counted after it)"}),
        json!({"name": "size", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                          "default": crate::DEFAULT_PAGE_SIZE},
               "description": "objects per page"}),
        reveal_parameter(),
    ]);
    params
}

fn reveal_parameter() -> Value {
    json!({"name": "reveal", "in": "query", "required": false,
           "schema": {"type": "boolean", "default": false},
           "description": "return secret fields decrypted instead of redacted"})
}

fn path_links(kind: &Kind) -> Map<String, Value> {
    let mut links = Map::new();
    for (verb, what) in [
        ("get", "Read"),
        ("patch", "Update"),
        ("replace", "Replace"),
        ("delete", "Delete"),
    ] {
        links.insert(
            format!("{what}{}", kind.name),
            json!({"operationId": op_id(verb, kind), "parameters": {"path.id": CREATED_ID},
                   "description": format!("{what} the {} just written", kind.name)}),
        );
    }
    links
}

/// Links from a kind's `201` to the kinds whose fields reference it: create one that points at
/// the new object, and list those that do.
fn reference_links(target: &Kind) -> Map<String, Value> {
    let mut links = Map::new();
    for kind in KINDS.iter() {
        for f in kind.fields().filter(|f| f.references == Some(target.name)) {
            links.insert(
                format!("Create{}With{}", kind.name, f.name),
                json!({"operationId": op_id("create", kind), "requestBody": {f.name: CREATED_ID},
                       "description": format!("create a {} whose {} is the new {}", kind.name, f.name, target.name)}),
            );
            links.insert(
                format!("List{}By{}", kind.name, f.name),
                json!({"operationId": op_id("list", kind),
                       "parameters": {format!("query.{}", f.filter_key()): CREATED_ID},
                       "description": format!("list the {} whose {} is the new {}", kind.plural, f.name, target.name)}),
            );
        }
    }
    links
}

fn kind_paths(kind: &Kind, paths: &mut Map<String, Value>) {
    let one = |code: &str, description: String, links: Option<Map<String, Value>>| {
        let mut r = json!({"description": description,
                           "content": json_content(schema_ref(&format!("{}Single", kind.name)))});
        if let Some(l) = links {
            r["links"] = Value::Object(l);
        }
        (code.to_string(), r)
    };
    let body = |mode: &str| json!({"required": true, "content": json_content(schema_ref(&format!("{}{mode}", kind.name)))});
    let responses = |ok: Vec<(String, Value)>, codes: &[u16]| {
        let mut m: Map<String, Value> = ok.into_iter().collect();
        m.extend(errors(codes));
        Value::Object(m)
    };

    let mut created_links = path_links(kind);
    created_links.extend(reference_links(kind));
    let mut written_links = Map::new();
    for (verb, what) in [("get", "Read"), ("delete", "Delete")] {
        written_links.insert(
            format!("{what}{}", kind.name),
            json!({"operationId": op_id(verb, kind), "parameters": {"path.id": "$request.path.id"}}),
        );
    }

    let list_ok = (
        "200".to_string(),
        json!({"description": format!("a page of {}, ordered by ID; Meta.TotalCount counts every match", kind.plural),
               "content": json_content(schema_ref(&format!("{}List", kind.name)))}),
    );
    paths.insert(
        format!("/v0/{}", kind.plural),
        json!({
            "get": {
                "operationId": op_id("list", kind),
                "summary": format!("List {}", kind.plural),
                "parameters": list_parameters(kind),
                "responses": responses(vec![list_ok], &[400, 503]),
            },
            "post": {
                "operationId": op_id("create", kind),
                "summary": format!("Create a {}", kind.name),
                "requestBody": body("Create"),
                "responses": responses(vec![one("201", format!("the {} as stored", kind.name), Some(created_links))],
                                       &[400, 409, 413, 503]),
            },
        }),
    );

    let delete_ok = if kind.reconciled {
        one(
            "200",
            format!(
                "deletion scheduled (two-phase): the {} is returned with DeletionScheduled set and \
                 Reconciled false, and its controller removes it once it has cleaned up (PATCH \
                 DeletionConfirmed). It is removed at once instead, and returned as it was, when \
                 DeletionConfirmed is already set, or when no controller serves the kind and none ever \
                 acknowledged the object (CreationAcknowledged unset). A DELETE while the deletion is \
                 pending is a 409",
                kind.name
            ),
            None,
        )
    } else {
        let mut gone = Map::new();
        gone.insert(
            format!("Read{}", kind.name),
            json!({"operationId": op_id("get", kind), "parameters": {"path.id": "$request.path.id"},
                   "description": "the deleted object is gone (404)"}),
        );
        one(
            "200",
            format!("deleted at once; the removed {} is returned", kind.name),
            Some(gone),
        )
    };
    let (write_code, write_ok) = one(
        "200",
        format!(
            "the {} as stored{}",
            kind.name,
            if kind.reconciled {
                "; a spec change sets Reconciled false. DeletionConfirmed on an object whose \
                 deletion is scheduled removes it, and the removed object is returned"
            } else {
                ""
            }
        ),
        Some(written_links),
    );
    paths.insert(
        format!("/v0/{}/{{id}}", kind.plural),
        json!({
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": id_schema(),
                            "description": format!("the {}'s ID (IDs above 2^63-1 are never assigned: 404)", kind.name)}],
            "get": {
                "operationId": op_id("get", kind),
                "summary": format!("Get a {}", kind.name),
                "parameters": [reveal_parameter()],
                "responses": responses(vec![one("200", format!("the {}", kind.name), None)], &[400, 404, 503]),
            },
            "patch": {
                "operationId": op_id("patch", kind),
                "summary": format!("Update fields of a {}", kind.name),
                "requestBody": body("Patch"),
                "responses": responses(vec![(write_code.clone(), write_ok.clone())], &[400, 404, 409, 413, 503]),
            },
            "put": {
                "operationId": op_id("replace", kind),
                "summary": format!("Replace a {}", kind.name),
                "requestBody": body("Replace"),
                "responses": responses(vec![(write_code, write_ok)], &[400, 404, 409, 413, 503]),
            },
            "delete": {
                "operationId": op_id("delete", kind),
                "summary": if kind.reconciled {
                    format!("Schedule deletion of a {} (two-phase)", kind.name)
                } else {
                    format!("Delete a {}", kind.name)
                },
                "responses": responses(vec![delete_ok], &[400, 404, 409, 503]),
            },
        }),
    );
    paths.insert(
        format!("/{}/versions", kind.plural),
        json!({"get": {
            "operationId": op_id("versions", kind),
            "summary": format!("API versions of {}", kind.plural),
            "responses": {"200": {"description": "the versions served", "content": json_content(json!({
                "type": "object", "required": ["API", "Versions"],
                "properties": {"API": {"const": kind.name},
                               "Versions": {"type": "array", "items": {"type": "string"}}},
            }))}},
        }}),
    );
}

pub fn document() -> Value {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    schemas.insert(
        "Status".into(),
        json!({"type": "object", "required": ["code", "message", "error"], "properties": {
            "code": {"type": "integer", "description": "the HTTP status code"},
            "message": {"type": "string", "description": "its reason phrase"},
            "error": {"type": "string", "description": "what went wrong; empty on success"}}}),
    );
    schemas.insert(
        "Meta".into(),
        json!({"type": "object", "required": ["Page", "Size", "TotalCount"], "properties": {
            "Page": {"type": "integer", "minimum": 0},
            "Size": {"type": "integer", "minimum": 0},
            "TotalCount": {"type": "integer", "minimum": 0}}}),
    );
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["Meta", "Type", "Data", "Status"], "properties": {
            "Meta": {"$ref": "#/components/schemas/Meta"},
            "Type": {"type": "string"},
            "Data": {"type": "null"},
            "Status": {"$ref": "#/components/schemas/Status"}}}),
    );
    for kind in KINDS.iter() {
        schemas.insert(kind.name.into(), object_schema(kind));
        schemas.insert(
            format!("{}Create", kind.name),
            request_schema(kind, Body::Create),
        );
        schemas.insert(
            format!("{}Patch", kind.name),
            request_schema(kind, Body::Patch),
        );
        schemas.insert(
            format!("{}Replace", kind.name),
            request_schema(kind, Body::Replace),
        );
        schemas.insert(format!("{}List", kind.name), envelope_schema(kind, false));
        schemas.insert(format!("{}Single", kind.name), envelope_schema(kind, true));
        kind_paths(kind, &mut paths);
    }
    let plain = |schema: Value| json!({"application/json": {"schema": schema}});
    paths.insert(
        "/version".into(),
        json!({"get": {"operationId": "version", "summary": "Server version", "responses": {"200": {
            "description": "the server's version",
            "content": plain(json!({"type": "object", "required": ["Version"], "properties": {"Version": {"type": "string"}}})),
        }}}}),
    );
    paths.insert(
        "/livez".into(),
        json!({"get": {"operationId": "livez", "summary": "Liveness", "responses": {"200": {
            "description": "the process serves requests",
            "content": plain(json!({"type": "object", "required": ["Status"], "properties": {"Status": {"const": "alive"}}})),
        }}}}),
    );
    let ready = json!({"type": "object", "required": ["Status", "Database"], "properties": {
        "Status": {"enum": ["ready", "not ready"]}, "Database": {"type": "string"},
        "Nats": {"type": ["string", "null"]}}});
    paths.insert(
        "/readyz".into(),
        json!({"get": {"operationId": "readyz", "summary": "Readiness", "responses": {
            "200": {"description": "the database answers", "content": plain(ready.clone())},
            "503": {"description": "the database does not answer", "content": plain(ready)},
        }}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"operationId": "openapi", "summary": "This document", "responses": {"200": {
            "description": "the OpenAPI document", "content": plain(json!({"type": "object"})),
        }}}}),
    );
    let kinds: Vec<&str> = KINDS.iter().map(|k| k.plural).collect();
    paths.insert(
        "/v0/watch".into(),
        json!({"get": {
            "operationId": "watch",
            "summary": "Server-sent events of every change; resume with Last-Event-ID",
            "parameters": [
                {"name": "kind", "in": "query", "required": false, "schema": {"type": "string"},
                 "description": format!("comma-separated kinds (plurals, names or aliases), e.g. {}", kinds.join(","))},
                {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "integer", "minimum": 0},
                 "description": "resume after this event"},
            ],
            "responses": {
                "200": {"description": "an endless stream: created/updated/deleted events with the object, resync when the client must list again",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "400": error("an unknown parameter or kind"),
            },
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Threeport API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
