//! The OpenAPI document is the contract: it must state what the server enforces. Checked on the
//! document itself (links, responses, request schemas, all derived from the kind registry) and
//! against a live embedded server (documented filters work, undocumented ones are refused,
//! JSON Schema integers and names are accepted as the document says). `scripts/schemathesis.sh`
//! fuzzes the rest.

mod common;

use common::Harness;
use serde_json::{Value, json};
use std::collections::HashSet;
use threeport_api::kinds::KINDS;

fn document() -> Value {
    threeport_server::openapi::document()
}

const METHODS: &[&str] = &["get", "post", "patch", "put", "delete"];

/// (path, method, operation) for every operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                out.push((path.clone(), m.to_string(), op.clone()));
            }
        }
    }
    out
}

/// The parameters an operation takes, as (location, name): its own and its path item's.
fn parameters(doc: &Value, operation_id: &str) -> HashSet<(String, String)> {
    for item in doc["paths"].as_object().expect("paths").values() {
        for m in METHODS {
            if item[*m]["operationId"] == operation_id {
                return item["parameters"]
                    .as_array()
                    .into_iter()
                    .chain(item[*m]["parameters"].as_array())
                    .flatten()
                    .map(|p| {
                        (
                            p["in"].as_str().unwrap().to_string(),
                            p["name"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
            }
        }
    }
    panic!("no operation {operation_id}");
}

#[test]
fn every_post_links_to_its_object_and_every_link_resolves() {
    let doc = document();
    let ops = operations(&doc);
    let ids: HashSet<String> = ops
        .iter()
        .map(|(p, m, op)| {
            op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {p} has no operationId"))
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), ops.len(), "operationIds are unique");

    for kind in KINDS.iter() {
        let post = &doc["paths"][format!("/v0/{}", kind.plural)]["post"];
        let links = post["responses"]["201"]["links"]
            .as_object()
            .unwrap_or_else(|| panic!("POST /v0/{} 201 has no links", kind.plural));
        for verb in ["get", "patch", "replace", "delete"] {
            let target = format!("{verb}{}", kind.name);
            assert!(
                links.values().any(|l| l["operationId"] == target
                    && l["parameters"]["path.id"] == "$response.body#/Data/0/ID"),
                "POST /v0/{} 201 has no link to {target}",
                kind.plural
            );
        }
        // Every kind whose field references this one can be created from the new object.
        for other in KINDS.iter() {
            for f in other.fields().filter(|f| f.references == Some(kind.name)) {
                assert!(
                    links
                        .values()
                        .any(|l| l["operationId"] == format!("create{}", other.name)
                            && l["requestBody"][f.name] == "$response.body#/Data/0/ID"),
                    "POST /v0/{} 201 has no link to create a {} through {}",
                    kind.plural,
                    other.name,
                    f.name
                );
            }
        }
    }

    // Every link anywhere names an existing operation and parameters that operation takes.
    let mut count = 0;
    for (path, method, op) in &ops {
        for (code, response) in op["responses"].as_object().expect("responses") {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                count += 1;
                let target = link["operationId"].as_str().expect("operationId");
                assert!(
                    ids.contains(target),
                    "{method} {path} {code} link {name}: no operation {target}"
                );
                let taken = parameters(&doc, target);
                for key in link["parameters"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    let (loc, pname) = key.split_once('.').expect("location.name");
                    assert!(
                        taken.contains(&(loc.to_string(), pname.to_string())),
                        "{method} {path} {code} link {name}: {target} takes no {key}"
                    );
                }
                if let Some(body) = link["requestBody"].as_object() {
                    let schema = doc["paths"]
                        .as_object()
                        .unwrap()
                        .values()
                        .find_map(|item| {
                            item.get("post")
                                .filter(|o| o["operationId"] == target)
                                .map(|o| o["requestBody"]["content"]["application/json"]["schema"]["$ref"].clone())
                        })
                        .expect("a body link targets a POST");
                    let schema_name = schema.as_str().unwrap().rsplit('/').next().unwrap();
                    let props = &doc["components"]["schemas"][schema_name]["properties"];
                    for field in body.keys() {
                        assert!(
                            props.get(field).is_some(),
                            "{name}: {schema_name} has no property {field}"
                        );
                    }
                }
            }
        }
    }
    assert!(count > KINDS.len() * 4);
}

#[test]
fn responses_are_the_ones_the_handlers_return() {
    let doc = document();
    for kind in KINDS.iter() {
        let coll = &doc["paths"][format!("/v0/{}", kind.plural)];
        let item = &doc["paths"][format!("/v0/{}/{{id}}", kind.plural)];
        let codes = |op: &Value| -> Vec<String> {
            op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            codes(&coll["get"]),
            ["200", "400", "503"],
            "{}",
            kind.plural
        );
        assert_eq!(codes(&coll["post"]), ["201", "400", "409", "413", "503"]);
        assert_eq!(codes(&item["get"]), ["200", "400", "404", "503"]);
        for m in ["patch", "put"] {
            assert_eq!(codes(&item[m]), ["200", "400", "404", "409", "413", "503"]);
        }
        // DELETE answers 200 with the object, never 204; for reconciled kinds that 200 means
        // "deletion scheduled" (two-phase).
        assert_eq!(codes(&item["delete"]), ["200", "400", "404", "409", "503"]);
        let ok = item["delete"]["responses"]["200"]["description"]
            .as_str()
            .unwrap();
        assert_eq!(
            ok.starts_with("deletion scheduled"),
            kind.reconciled,
            "{}: {ok}",
            kind.name
        );
        for (code, r) in item["delete"]["responses"].as_object().unwrap() {
            assert!(
                r["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{} DELETE {code} has no schema",
                kind.name
            );
        }
    }
}

#[test]
fn request_schemas_follow_the_write_modes() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for kind in KINDS.iter() {
        let create = &schemas[format!("{}Create", kind.name)];
        let patch = &schemas[format!("{}Patch", kind.name)];
        let replace = &schemas[format!("{}Replace", kind.name)];
        let writable: HashSet<&str> = kind.writable_fields().map(|f| f.name).collect();
        let keys = |s: &Value| -> HashSet<String> {
            s["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            keys(create),
            writable.iter().map(|s| s.to_string()).collect(),
            "{}: POST takes the writable fields only",
            kind.name
        );
        let mut with_rv: HashSet<String> = writable.iter().map(|s| s.to_string()).collect();
        with_rv.insert("ResourceVersion".into());
        assert_eq!(keys(patch), with_rv);
        assert_eq!(keys(replace), with_rv);
        let required: Vec<&str> = kind
            .writable_fields()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        assert_eq!(create["required"], json!(required), "{}", kind.name);
        assert_eq!(replace["required"], json!(required));
        assert_eq!(patch["required"], json!([]));
        for s in [create, patch, replace] {
            assert_eq!(s["additionalProperties"], false);
        }
        for f in kind.fields().filter(|f| f.references.is_some()) {
            let p = &create["properties"][f.name];
            assert_eq!(p["minimum"], 1, "{}.{}", kind.name, f.name);
            assert_eq!(p["maximum"], i64::MAX, "{}.{}", kind.name, f.name);
        }
    }
}

/// A value the schema allows, as a query string spells it.
fn sample(schema: &Value) -> String {
    match schema["type"].as_str() {
        Some("integer") => schema["maximum"].to_string(),
        Some("boolean") => "true".into(),
        _ => "some value".into(),
    }
}

#[tokio::test]
async fn documented_filters_work_and_others_are_refused() {
    let h = Harness::sqlite().await;
    let doc = h.get("/openapi.json").await.body;
    assert_eq!(doc, document());
    for kind in KINDS.iter() {
        let params = doc["paths"][format!("/v0/{}", kind.plural)]["get"]["parameters"]
            .as_array()
            .unwrap();
        let mut documented = HashSet::new();
        for p in params {
            let name = p["name"].as_str().unwrap();
            documented.insert(name.to_string());
            let value = sample(&p["schema"]);
            let r = h
                .get(&format!("/v0/{}?{name}={}", kind.plural, urlencode(&value)))
                .await;
            assert_eq!(r.status, 200, "{} ?{name}={value}: {}", kind.plural, r.body);
            if matches!(p["schema"]["type"].as_str(), Some("integer" | "boolean")) {
                let r = h.get(&format!("/v0/{}?{name}=x", kind.plural)).await;
                assert_eq!(r.status, 400, "{} ?{name}=x: {}", kind.plural, r.body);
            }
            if p["schema"]["type"] == "integer" {
                let above = format!("{}0", p["schema"]["maximum"]);
                let r = h.get(&format!("/v0/{}?{name}={above}", kind.plural)).await;
                assert_eq!(r.status, 400, "{} ?{name}={above}: {}", kind.plural, r.body);
            }
        }
        for f in kind.fields() {
            let key = f.filter_key();
            if !documented.contains(&key) {
                let r = h.get(&format!("/v0/{}?{key}=1", kind.plural)).await;
                assert_eq!(
                    r.status, 400,
                    "{} ?{key}=1 is not documented: {}",
                    kind.plural, r.body
                );
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.replace(' ', "%20")
}

#[tokio::test]
async fn values_the_document_allows_are_accepted() {
    let h = Harness::sqlite().await;
    // JSON Schema's integer: 3.0 is 3 (and an ID written as 1e0-style stays exact).
    let r = h
        .post(
            "kubernetes-runtime-definitions",
            json!({"Name": "é".repeat(253), "InfraProvider": "kind", "NodeMaximum": 3.0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.object()["NodeMaximum"], 3);
    let def = r.id();
    let body = format!(r#"{{"Name": "whole", "KubernetesRuntimeDefinitionID": {def}.0}}"#);
    let r = h
        .raw(
            reqwest::Method::POST,
            "/v0/kubernetes-runtime-instances",
            body,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.object()["KubernetesRuntimeDefinitionID"], def);
    // What the document refuses, the server refuses.
    for bad in [
        json!({"Name": "é".repeat(254), "InfraProvider": "kind"}),
        json!({"Name": " \u{3000}", "InfraProvider": "kind"}),
        json!({"Name": "a\u{85}b", "InfraProvider": "kind"}),
        json!({"Name": "x", "InfraProvider": "kind", "NodeMaximum": 1.5}),
        json!({"Name": "x", "InfraProvider": "kind", "ResourceVersion": 1}),
        json!({"Name": "x", "InfraProvider": "ki\u{0}nd"}),
    ] {
        let r = h.post("kubernetes-runtime-definitions", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    for bad_ref in [0u64, i64::MAX as u64 + 1] {
        let r = h
            .post(
                "kubernetes-runtime-instances",
                json!({"Name": "r", "KubernetesRuntimeDefinitionID": bad_ref}),
            )
            .await;
        assert_eq!(r.status, 400, "{bad_ref}: {}", r.body);
    }
}
