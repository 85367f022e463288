//! The install's secret material kept in its data dir, so a resumed install applies the same
//! certificates and key it applied the first time (kind and EKS alike).
//!
//! `<dir>/install-secrets.json` (mode 0600) holds everything; `<dir>/tls/` (CA, client
//! certificate) and `<dir>/encryption.key` are the parts a local process reads.

use crate::manifests::Secrets;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use threeport_pki::{CertAuthority, CertPair, TlsBundle};

const FILE: &str = "install-secrets.json";

/// A certificate and its key, PEM.
#[derive(Serialize, Deserialize)]
struct Pem {
    cert: String,
    key: String,
}

impl From<&CertPair> for Pem {
    fn from(p: &CertPair) -> Pem {
        Pem {
            cert: p.cert_pem.clone(),
            key: p.key_pem.clone(),
        }
    }
}

impl From<Pem> for CertPair {
    fn from(p: Pem) -> CertPair {
        CertPair {
            cert_pem: p.cert,
            key_pem: p.key,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ControllerPem {
    name: String,
    #[serde(flatten)]
    pem: Pem,
}

/// [`Secrets`] as saved.
#[derive(Serialize, Deserialize)]
struct Saved {
    api_ca: Pem,
    api_server: Pem,
    api_client: Pem,
    db_ca: Pem,
    db_node: Pem,
    db_root: Pem,
    controllers: Vec<ControllerPem>,
    encryption_key: String,
}

impl From<&Secrets> for Saved {
    fn from(s: &Secrets) -> Saved {
        Saved {
            api_ca: (&s.api.ca.pair).into(),
            api_server: (&s.api.server).into(),
            api_client: (&s.api.client).into(),
            db_ca: (&s.db_ca.pair).into(),
            db_node: (&s.db_node).into(),
            db_root: (&s.db_root).into(),
            controllers: s
                .controllers
                .iter()
                .map(|(name, p)| ControllerPem {
                    name: name.clone(),
                    pem: p.into(),
                })
                .collect(),
            encryption_key: s.encryption_key.clone(),
        }
    }
}

impl From<Saved> for Secrets {
    fn from(s: Saved) -> Secrets {
        Secrets {
            api: TlsBundle {
                ca: CertAuthority::from_pem(&s.api_ca.cert, &s.api_ca.key),
                server: s.api_server.into(),
                client: s.api_client.into(),
            },
            db_ca: CertAuthority::from_pem(&s.db_ca.cert, &s.db_ca.key),
            db_node: s.db_node.into(),
            db_root: s.db_root.into(),
            controllers: s
                .controllers
                .into_iter()
                .map(|c| (c.name, c.pem.into()))
                .collect(),
            encryption_key: s.encryption_key,
        }
    }
}

fn pki(e: threeport_pki::PkiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The secrets saved in `dir`, or new ones (the API certificate valid for `api_hosts` too),
/// saved before they are returned.
pub fn load_or_generate(dir: &Path, api_hosts: &[&str]) -> Result<Secrets> {
    let path = dir.join(FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let saved: Saved = serde_json::from_str(&text)
            .with_context(|| format!("{}: not this version's saved secrets", path.display()))?;
        return Ok(saved.into());
    }
    let s = Secrets::generate(api_hosts, generate_key())?;
    threeport_pki::write_file(
        &path,
        serde_json::to_string(&Saved::from(&s))?.as_bytes(),
        true,
    )
    .map_err(pki)?;
    s.api.write_dir(&dir.join("tls")).map_err(pki)?;
    threeport_pki::write_file(
        &dir.join("encryption.key"),
        s.encryption_key.as_bytes(),
        true,
    )
    .map_err(pki)?;
    Ok(s)
}

/// A new 32-byte encryption key, base64.
pub fn generate_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_secrets_come_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(dir.path(), &["example.test"]).unwrap();
        let b = load_or_generate(dir.path(), &[]).unwrap();
        assert_eq!(a.api.ca.pair.cert_pem, b.api.ca.pair.cert_pem);
        assert_eq!(a.api.client.key_pem, b.api.client.key_pem);
        assert_eq!(a.db_root.cert_pem, b.db_root.cert_pem);
        assert_eq!(a.encryption_key, b.encryption_key);
        assert_eq!(
            a.controllers.iter().map(|c| &c.0).collect::<Vec<_>>(),
            b.controllers.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
        assert!(dir.path().join("tls").join("ca.crt").exists());
        assert!(dir.path().join("encryption.key").exists());
    }
}
