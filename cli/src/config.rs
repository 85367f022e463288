//! `~/.threeport/config.yaml`, in upstream's format (PascalCase keys, base64 PEM credentials), so an
//! upstream config keeps working and ours stays readable by upstream's tptctl. Fields we do not
//! model are kept as they are.

use crate::hint::{self, Hint};
use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use threeport_api::{Client, ClientTls};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ThreeportConfig {
    #[serde(default)]
    pub current_control_plane: String,
    #[serde(default)]
    pub control_planes: Vec<ControlPlane>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ControlPlane {
    pub name: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub genesis: bool,
    #[serde(default)]
    pub auth_enabled: bool,
    /// `host:port`, or a full URL.
    #[serde(rename = "APIServer", default)]
    pub api_server: String,
    /// Base64 of the CA's PEM.
    #[serde(rename = "CACert", default)]
    pub ca_cert: String,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    #[serde(default)]
    pub encryption_key: String,
    #[serde(rename = "KubeAPI", default, skip_serializing_if = "KubeApi::is_empty")]
    pub kube_api: KubeApi,
    #[serde(
        rename = "EKSProviderConfig",
        default,
        skip_serializing_if = "EksProviderConfig::is_empty"
    )]
    pub eks_provider_config: EksProviderConfig,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Credential {
    pub name: String,
    pub client_cert: String,
    pub client_key: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct KubeApi {
    #[serde(rename = "APIEndpoint", default)]
    pub api_endpoint: String,
    #[serde(rename = "CACertificate", default)]
    pub ca_certificate: String,
    #[serde(default)]
    pub certificate: String,
    #[serde(default)]
    pub key: String,
}

impl KubeApi {
    fn is_empty(&self) -> bool {
        *self == KubeApi::default()
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct EksProviderConfig {
    #[serde(rename = "AWSConfigProfile", default)]
    pub aws_config_profile: String,
    #[serde(rename = "AWSRegion", default)]
    pub aws_region: String,
    #[serde(rename = "AWSAccountID", default)]
    pub aws_account_id: String,
}

impl EksProviderConfig {
    fn is_empty(&self) -> bool {
        *self == EksProviderConfig::default()
    }
}

fn unb64(field: &str, v: &str) -> Result<String> {
    let bytes = B64
        .decode(v.trim())
        .with_context(|| format!("{field} is not valid base64"))?;
    String::from_utf8(bytes).with_context(|| format!("{field} is not PEM text"))
}

impl ControlPlane {
    pub fn url(&self) -> String {
        if self.api_server.contains("://") {
            self.api_server.clone()
        } else if self.auth_enabled {
            format!("https://{}", self.api_server)
        } else {
            format!("http://{}", self.api_server)
        }
    }

    pub fn client(&self) -> Result<Client> {
        let tls = if self.auth_enabled {
            let cred = self.credentials.first().with_context(|| {
                format!(
                    "control plane {:?} has AuthEnabled but no Credentials in the config",
                    self.name
                )
            })?;
            Some(ClientTls {
                ca_pem: unb64("CACert", &self.ca_cert)?,
                cert_pem: unb64("ClientCert", &cred.client_cert)?,
                key_pem: unb64("ClientKey", &cred.client_key)?,
            })
        } else {
            None
        };
        Ok(Client::new(&self.url(), tls.as_ref())?)
    }
}

pub fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

/// Where the config lives: `--threeport-config`, else `THREEPORT_CONFIG`, else `~/.threeport/config.yaml`.
pub fn path(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("THREEPORT_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .context("HOME is not set")
        .hint("give the config file with --threeport-config FILE or THREEPORT_CONFIG")?;
    Ok(PathBuf::from(home).join(".threeport").join("config.yaml"))
}

impl ThreeportConfig {
    /// A missing file is an empty config.
    pub fn load(path: &Path) -> Result<ThreeportConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(ThreeportConfig::default()),
            Ok(text) => serde_yaml::from_str(&text)
                .with_context(|| format!("{}: not a valid threeport config", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ThreeportConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Write atomically with mode 0600: it holds client keys and the encryption key.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_yaml::to_string(self)?;
        threeport_pki::write_file(path, text.as_bytes(), true).map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn get(&self, name: &str) -> Option<&ControlPlane> {
        self.control_planes.iter().find(|c| c.name == name)
    }

    /// The control plane commands talk to: `--control-plane`, else `CurrentControlPlane`.
    pub fn select(&self, name: Option<&str>) -> Result<&ControlPlane> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| self.current_control_plane.clone());
        if name.is_empty() {
            return Err(hint::error(
                "no control plane is configured",
                "create one with `tptctl up --provider local`",
            ));
        }
        self.get(&name).ok_or_else(|| {
            let known: Vec<&str> = self.control_planes.iter().map(|c| c.name.as_str()).collect();
            let hint = if known.is_empty() {
                format!("create it with `tptctl up --provider local --name {name}`")
            } else {
                format!(
                    "use one of {} with --control-plane NAME, or switch with `tptctl config current-control-plane NAME`",
                    known.join(", ")
                )
            };
            hint::error(format!("control plane {name:?} is not in the config"), hint)
        })
    }

    /// The entry `name` if it exists with `provider`; an error if the name is taken by another
    /// provider (so `up` never silently replaces a control plane).
    pub fn existing(&self, name: &str, provider: &str) -> Result<Option<&ControlPlane>> {
        match self.get(name) {
            Some(cp) if cp.provider != provider => Err(hint::error(
                format!(
                    "control plane {name:?} already exists with provider {:?}",
                    cp.provider
                ),
                "pick another --name",
            )),
            other => Ok(other),
        }
    }

    pub fn upsert(&mut self, cp: ControlPlane) {
        self.control_planes.retain(|c| c.name != cp.name);
        self.control_planes.push(cp);
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.control_planes.len();
        self.control_planes.retain(|c| c.name != name);
        if self.current_control_plane == name {
            self.current_control_plane = self
                .control_planes
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default();
        }
        before != self.control_planes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_config_round_trips_with_unknown_fields() {
        let text = "CurrentControlPlane: dev\nControlPlanes:\n- Name: dev\n  Provider: kind\n  Genesis: true\n  AuthEnabled: false\n  APIServer: 127.0.0.1:1323\n  CACert: ''\n  Credentials: []\n  EncryptionKey: abc\n  KubeAPI:\n    APIEndpoint: https://127.0.0.1:6443\n    CACertificate: x\n    Certificate: y\n    Key: z\n  SomethingNew: 7\n";
        let cfg: ThreeportConfig = serde_yaml::from_str(text).unwrap();
        let cp = cfg.select(None).unwrap();
        assert_eq!(cp.url(), "http://127.0.0.1:1323");
        assert_eq!(cp.kube_api.api_endpoint, "https://127.0.0.1:6443");
        let again = serde_yaml::to_string(&cfg).unwrap();
        assert!(again.contains("SomethingNew: 7"), "{again}");
        assert!(again.contains("APIServer: 127.0.0.1:1323"));
    }
}
