//! Reading connection details from a kubeconfig (server, CA, client certificate or token),
//! shared by `tptctl runtime register` and the installers.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::path::Path;

/// Connection details read from a kubeconfig context.
#[derive(Debug, Default, Clone)]
pub struct Connection {
    pub context: String,
    pub server: String,
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub token: Option<String>,
}

fn data_or_file(
    entry: &Value,
    data_key: &str,
    file_key: &str,
    base: &Path,
) -> Result<Option<String>> {
    if let Some(d) = entry.get(data_key).and_then(Value::as_str) {
        let bytes = B64
            .decode(d.trim())
            .with_context(|| format!("{data_key} is not base64"))?;
        return Ok(Some(
            String::from_utf8(bytes).with_context(|| format!("{data_key} is not PEM"))?,
        ));
    }
    if let Some(f) = entry.get(file_key).and_then(Value::as_str) {
        let p = base.join(f);
        return Ok(Some(std::fs::read_to_string(&p).with_context(|| {
            format!("{file_key}: cannot read {}", p.display())
        })?));
    }
    Ok(None)
}

pub fn read_kubeconfig(path: &Path, context: Option<&str>) -> Result<Connection> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kc: Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a kubeconfig", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let ctx_name = match context {
        Some(c) => c.to_string(),
        None => kc
            .get("current-context")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .context("the kubeconfig has no current-context; pass --context")?
            .to_string(),
    };
    let named = |list: &str, name: &str, inner: &str| -> Result<Value> {
        kc.get(list)
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|e| e.get(inner).cloned())
            .with_context(|| format!("{}: no {inner} named {name:?}", path.display()))
    };
    let ctx = named("contexts", &ctx_name, "context")?;
    let cluster_name = ctx
        .get("cluster")
        .and_then(Value::as_str)
        .context("the context names no cluster")?;
    let cluster = named("clusters", cluster_name, "cluster")?;
    let user = match ctx.get("user").and_then(Value::as_str) {
        Some(u) => named("users", u, "user")?,
        None => json!({}),
    };
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .context("the cluster has no server")?
        .to_string();
    let token = match user.get("token").and_then(Value::as_str) {
        Some(t) => Some(t.to_string()),
        None => match user.get("tokenFile").and_then(Value::as_str) {
            Some(f) => Some(std::fs::read_to_string(base.join(f))?.trim().to_string()),
            None => None,
        },
    };
    let conn = Connection {
        context: ctx_name,
        server,
        ca_pem: data_or_file(
            &cluster,
            "certificate-authority-data",
            "certificate-authority",
            base,
        )?,
        cert_pem: data_or_file(&user, "client-certificate-data", "client-certificate", base)?,
        key_pem: data_or_file(&user, "client-key-data", "client-key", base)?,
        token,
    };
    if conn.token.is_none() && (conn.cert_pem.is_none() || conn.key_pem.is_none()) {
        bail!(
            "context {:?} has neither a client certificate and key nor a token (exec and auth-provider plugins are not supported)",
            conn.context
        );
    }
    Ok(conn)
}
