//! The OpenAPI 3.1 document, derived from the kind registry at run time, so it can never
//! disagree with the routes (which come from the same registry).

use serde_json::{Map, Value, json};
use threeport_api::kinds::{FieldType, KINDS, SERVER_MANAGED};

fn schema(ty: FieldType) -> Value {
    match ty {
        FieldType::String | FieldType::Text => json!({"type": "string"}),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Int => json!({"type": "integer", "format": "int64"}),
        FieldType::Id => json!({"type": "integer", "format": "uint64", "minimum": 0}),
        FieldType::Json => json!({}),
        FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
    }
}

pub fn document() -> Value {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    schemas.insert(
        "Status".into(),
        json!({"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "error": {"type": "string"}}}),
    );
    schemas.insert(
        "Meta".into(),
        json!({"type": "object", "properties": {"Page": {"type": "integer"}, "Size": {"type": "integer"}, "TotalCount": {"type": "integer"}}}),
    );
    for kind in KINDS.iter() {
        let mut props = Map::new();
        let mut required = Vec::new();
        for f in kind.fields() {
            let mut s = schema(f.ty);
            let o = s.as_object_mut().expect("schema is an object");
            if SERVER_MANAGED.contains(&f.name) {
                o.insert("readOnly".into(), json!(true));
            }
            if f.secret {
                o.insert(
                    "description".into(),
                    json!("secret: encrypted at rest, redacted unless ?reveal=true"),
                );
            }
            if let Some(to) = f.references {
                o.insert("description".into(), json!(format!("ID of a {to}")));
            }
            if f.required {
                required.push(f.name);
            }
            props.insert(f.name.into(), s);
        }
        schemas.insert(
            kind.name.into(),
            json!({"type": "object", "additionalProperties": false, "properties": props, "required": required}),
        );
        let envelope = json!({"description": "envelope", "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {
                "Meta": {"$ref": "#/components/schemas/Meta"},
                "Type": {"const": kind.name},
                "Data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", kind.name)}},
                "Status": {"$ref": "#/components/schemas/Status"},
            }
        }}}});
        let body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", kind.name)}}}});
        let filters: Vec<Value> = kind
            .fields()
            .filter(|f| f.ty.filterable() && !f.secret && !matches!(f.name, "ID" | "ResourceVersion"))
            .map(|f| json!({"name": f.filter_key(), "in": "query", "required": false, "schema": schema(f.ty)}))
            .chain([
                json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}),
                json!({"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}),
            ])
            .collect();
        let errors = json!({"400": {"description": "invalid request; Status.error names the field"},
                            "404": {"description": "not found"}, "409": {"description": "conflict"},
                            "503": {"description": "database unavailable"}});
        let id_param = json!([{"name": "id", "in": "path", "required": true, "schema": schema(FieldType::Id)}]);
        let mut coll = json!({
            "get": {"summary": format!("List {}", kind.plural), "parameters": filters, "responses": {"200": envelope.clone()}},
            "post": {"summary": format!("Create a {}", kind.name), "requestBody": body.clone(), "responses": {"201": envelope.clone()}},
        });
        let mut item = json!({
            "parameters": id_param,
            "get": {"summary": format!("Get a {}", kind.name), "responses": {"200": envelope.clone()}},
            "patch": {"summary": format!("Update fields of a {}", kind.name), "requestBody": body.clone(), "responses": {"200": envelope.clone()}},
            "put": {"summary": format!("Replace a {}", kind.name), "requestBody": body, "responses": {"200": envelope.clone()}},
            "delete": {"summary": if kind.reconciled { format!("Schedule deletion of a {} (two-phase)", kind.name) } else { format!("Delete a {}", kind.name) },
                       "responses": {"200": envelope}},
        });
        for op in ["get", "post"] {
            coll[op]["responses"]
                .as_object_mut()
                .expect("object")
                .extend(errors.as_object().expect("object").clone());
        }
        for op in ["get", "patch", "put", "delete"] {
            item[op]["responses"]
                .as_object_mut()
                .expect("object")
                .extend(errors.as_object().expect("object").clone());
        }
        paths.insert(format!("/v0/{}", kind.plural), coll);
        paths.insert(format!("/v0/{}/{{id}}", kind.plural), item);
    }
    paths.insert("/version".into(), json!({"get": {"summary": "Server version", "responses": {"200": {"description": "{\"Version\": \"…\"}"}}}}));
    paths.insert("/v0/watch".into(), json!({"get": {"summary": "Server-sent events of every change; resume with Last-Event-ID",
        "parameters": [{"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "comma-separated kinds"}],
        "responses": {"200": {"description": "text/event-stream"}}}}));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Threeport API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
