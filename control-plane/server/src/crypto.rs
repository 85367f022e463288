//! Encryption of secret fields at rest (AES-256-GCM), and their redaction in outputs.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};
use threeport_api::{Kind, REDACTED};

/// Prefix of an encrypted value. The version lets the format change without guessing.
const PREFIX: &str = "enc:v1:";

pub struct Cipher {
    aead: Aes256Gcm,
}

impl Cipher {
    /// `key` is 32 raw bytes or their base64 (the format `tptctl up` writes).
    pub fn from_key_material(material: &[u8]) -> anyhow::Result<Cipher> {
        let trimmed = String::from_utf8_lossy(material).trim().to_string();
        let key = match B64.decode(trimmed.as_bytes()) {
            Ok(k) if k.len() == 32 => k,
            _ if material.len() == 32 => material.to_vec(),
            _ => anyhow::bail!(
                "the encryption key must be 32 bytes, raw or base64-encoded (generate one with `head -c32 /dev/urandom | base64`)"
            ),
        };
        Ok(Cipher {
            aead: Aes256Gcm::new_from_slice(&key).map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }

    pub fn generate_key_b64() -> String {
        B64.encode(rand::random::<[u8; 32]>())
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = self
            .aead
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> anyhow::Result<String> {
        let raw = stored
            .strip_prefix(PREFIX)
            .ok_or_else(|| anyhow::anyhow!("value is not encrypted"))?;
        let bytes = B64.decode(raw)?;
        anyhow::ensure!(bytes.len() > 12, "encrypted value is truncated");
        let (nonce, ct) = bytes.split_at(12);
        let pt = self
            .aead
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| anyhow::anyhow!("cannot decrypt a secret field: wrong encryption key?"))?;
        Ok(String::from_utf8(pt)?)
    }
}

/// Encrypt every secret field of `body` in place. Non-string secrets (e.g. a JSON `Data` map)
/// are serialized first, so the ciphertext is always a string.
pub fn seal(kind: &Kind, body: &mut Map<String, Value>, cipher: &Cipher) {
    for f in kind.secret_fields() {
        if let Some(v) = body.get_mut(f.name) {
            if v.is_null() {
                continue;
            }
            // Strings are stored as they are, unless they could be read back as one of the two
            // markers: then they get the `raw:` marker, so a secret that starts with `json:` is
            // never mistaken for a serialized non-string.
            let plain = match &*v {
                Value::String(s) if s.starts_with("json:") || s.starts_with("raw:") => {
                    format!("raw:{s}")
                }
                Value::String(s) => s.clone(),
                other => format!("json:{other}"),
            };
            *v = Value::String(cipher.encrypt(&plain));
        }
    }
}

/// Replace every secret field with the redaction marker, or decrypt it when `reveal`.
pub fn unseal(kind: &Kind, body: &mut Map<String, Value>, cipher: Option<&Cipher>, reveal: bool) {
    for f in kind.secret_fields() {
        if let Some(v) = body.get_mut(f.name) {
            let Value::String(stored) = v else { continue };
            *v = match (reveal, cipher) {
                (true, Some(c)) => match c.decrypt(stored) {
                    Ok(plain) => {
                        if let Some(raw) = plain.strip_prefix("raw:") {
                            Value::String(raw.to_string())
                        } else if let Some(j) = plain.strip_prefix("json:") {
                            serde_json::from_str(j).unwrap_or(Value::String(plain))
                        } else {
                            Value::String(plain)
                        }
                    }
                    Err(_) => Value::String(REDACTED.into()),
                },
                _ => Value::String(REDACTED.into()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = Cipher::from_key_material(Cipher::generate_key_b64().as_bytes()).unwrap();
        let e = c.encrypt("AKIA-secret");
        assert!(!e.contains("AKIA"));
        assert_eq!(c.decrypt(&e).unwrap(), "AKIA-secret");
        let other = Cipher::from_key_material(Cipher::generate_key_b64().as_bytes()).unwrap();
        assert!(other.decrypt(&e).is_err());
        assert!(Cipher::from_key_material(b"short").is_err());
    }

    #[test]
    fn secrets_come_back_as_they_went_in() {
        let c = Cipher::from_key_material(Cipher::generate_key_b64().as_bytes()).unwrap();
        let kind = threeport_api::kinds::SECRET_DEFINITION;
        for v in [
            serde_json::json!({"password": "x"}),
            serde_json::json!("json:{\"not\": \"an object\"}"),
            serde_json::json!("raw:abc"),
            serde_json::json!("plain"),
        ] {
            let mut body = Map::new();
            body.insert("Data".into(), v.clone());
            seal(kind, &mut body, &c);
            assert_ne!(body["Data"], v);
            unseal(kind, &mut body, Some(&c), true);
            assert_eq!(body["Data"], v);
        }
    }
}
