//! A tiny decoder for the Kubernetes protobuf encoding, for the few kinds kubectl's typed
//! clients send that way.
//!
//! client-go's generated clientsets send built-in types as `application/vnd.kubernetes.protobuf`
//! and do not fall back to JSON, so `kubectl create namespace|configmap|secret|serviceaccount`
//! would otherwise fail against the double. Decoding protobuf in general needs every type's
//! schema; these four kinds only need `ObjectMeta` plus a few maps, so they are decoded by hand
//! (field numbers from k8s.io/api `generated.proto`). Any other protobuf body gets
//! 415 Unsupported Media Type (use `kubectl apply`, which sends JSON).

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\x00";

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        x |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(x);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let w = match key & 7 {
            0 => Wire::Varint(varint(b, &mut i)?),
            1 => {
                i += 8;
                Wire::Fixed
            }
            2 => {
                let n = varint(b, &mut i)? as usize;
                let s = b.get(i..i + n).ok_or("truncated field")?;
                i += n;
                Wire::Bytes(s)
            }
            5 => {
                i += 4;
                Wire::Fixed
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        out.push((key >> 3, w));
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

/// A `map<string, string|bytes>` entry: key = 1, value = 2.
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut k, mut v) = (String::new(), &b[0..0]);
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(x)) => k = string(x)?,
            (2, Wire::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_map(
    obj: &mut Map<String, Value>,
    key: &str,
    b: &[u8],
    bytes: bool,
) -> Result<(), String> {
    let (k, v) = map_entry(b)?;
    let v = if bytes {
        json!(base64::engine::general_purpose::STANDARD.encode(v))
    } else {
        json!(string(v)?)
    };
    obj.entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("map field is not an object")?
        .insert(k, v);
    Ok(())
}

/// gogo-protobuf writes empty strings; the JSON form omits them.
fn put_str(obj: &mut Map<String, Value>, key: &str, b: &[u8]) -> Result<(), String> {
    if !b.is_empty() {
        obj.insert(key.into(), json!(string(b)?));
    }
    Ok(())
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if let Value::Array(a) = obj.entry(key).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(x)) => {
                put_str(&mut o, "kind", x)?;
            }
            (3, Wire::Bytes(x)) => {
                put_str(&mut o, "name", x)?;
            }
            (4, Wire::Bytes(x)) => {
                put_str(&mut o, "uid", x)?;
            }
            (5, Wire::Bytes(x)) => {
                put_str(&mut o, "apiVersion", x)?;
            }
            (6, Wire::Varint(x)) => {
                o.insert("controller".into(), json!(x != 0));
            }
            (7, Wire::Varint(x)) => {
                o.insert("blockOwnerDeletion".into(), json!(x != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(x)) => {
                put_str(&mut m, "name", x)?;
            }
            (2, Wire::Bytes(x)) => {
                put_str(&mut m, "generateName", x)?;
            }
            (3, Wire::Bytes(x)) => {
                put_str(&mut m, "namespace", x)?;
            }
            (6, Wire::Bytes(x)) => {
                put_str(&mut m, "resourceVersion", x)?;
            }
            (11, Wire::Bytes(x)) => insert_map(&mut m, "labels", x, false)?,
            (12, Wire::Bytes(x)) => insert_map(&mut m, "annotations", x, false)?,
            (13, Wire::Bytes(x)) => push(&mut m, "ownerReferences", owner_reference(x)?),
            (14, Wire::Bytes(x)) => push(&mut m, "finalizers", json!(string(x)?)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn decode_kind(kind: &str, raw: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    o.insert("apiVersion".into(), json!("v1"));
    o.insert("kind".into(), json!(kind));
    for (n, w) in fields(raw)? {
        let Wire::Bytes(x) = w else {
            if let (Wire::Varint(v), true) = (
                &w,
                matches!(
                    (kind, n),
                    ("ConfigMap", 4) | ("Secret", 5) | ("ServiceAccount", 4)
                ),
            ) {
                let key = if kind == "ServiceAccount" {
                    "automountServiceAccountToken"
                } else {
                    "immutable"
                };
                o.insert(key.into(), json!(*v != 0));
            }
            continue;
        };
        match (kind, n) {
            (_, 1) => {
                o.insert("metadata".into(), object_meta(x)?);
            }
            ("Namespace", 2) => {
                let mut spec = Map::new();
                for (sn, sw) in fields(x)? {
                    if let (1, Wire::Bytes(f)) = (sn, sw) {
                        push(&mut spec, "finalizers", json!(string(f)?));
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            ("ConfigMap", 2) => insert_map(&mut o, "data", x, false)?,
            ("ConfigMap", 3) => insert_map(&mut o, "binaryData", x, true)?,
            ("Secret", 2) => insert_map(&mut o, "data", x, true)?,
            ("Secret", 3) => {
                put_str(&mut o, "type", x)?;
            }
            ("Secret", 4) => insert_map(&mut o, "stringData", x, false)?,
            ("ServiceAccount", 3) => {
                let mut r = Map::new();
                for (rn, rw) in fields(x)? {
                    if let (1, Wire::Bytes(f)) = (rn, rw) {
                        put_str(&mut r, "name", f)?;
                    }
                }
                push(&mut o, "imagePullSecrets", Value::Object(r));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// Decode a protobuf-encoded object, or explain why not.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &rest[0..0]);
    for (n, w) in fields(rest)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (tn, tw) in fields(tm)? {
                    match (tn, tw) {
                        (1, Wire::Bytes(x)) => api_version = string(x)?,
                        (2, Wire::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", k @ ("Namespace" | "ConfigMap" | "Secret" | "ServiceAccount")) => {
            decode_kind(k, raw)
        }
        _ => Err(format!(
            "protobuf bodies are only understood for v1 Namespace, ConfigMap, Secret and ServiceAccount, not {api_version} {kind}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_configmap() {
        let meta = [
            field(1, b"cm1"),
            field(3, b"ns1"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm1", "namespace": "ns1", "labels": {"app": "web"}},
                   "data": {"k": "v"}})
        );
    }
}
