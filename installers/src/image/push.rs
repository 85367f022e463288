//! Pushing a built image archive to a registry through the OCI distribution protocol
//! (oci-client). The manifest is pushed as the archive's exact bytes, so the registry's digest
//! is the archive's digest: what `up` deploys by tag is provably what was built.

use anyhow::{Context, Result, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// How to log in to the registry.
#[derive(Clone)]
pub enum Auth {
    Anonymous,
    /// User name and password or token (ECR: `AWS` and the authorization token's password).
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic(user, _) => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// Push `archive` as `target` (`registry/repository:tag`). `plain_http` talks HTTP to that
/// registry (a local one); otherwise HTTPS. Returns the pushed manifest's digest.
pub async fn push(archive: &Path, target: &str, auth: &Auth, plain_http: bool) -> Result<String> {
    let reference: Reference = target.parse().with_context(|| {
        format!("{target:?} is not an image reference (registry/repository:tag)")
    })?;
    let blobs = read_blobs(archive)?;
    let index: Value = serde_json::from_slice(
        blobs
            .get("index.json")
            .context("the archive has no index.json: not an OCI image layout")?,
    )?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?
        .to_string();
    let manifest_bytes = blob(&blobs, &digest)?.clone();
    let manifest: Value = serde_json::from_slice(&manifest_bytes)?;
    let registry = reference.resolve_registry().to_string();
    let client = Client::new(ClientConfig {
        protocol: if plain_http {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        },
        ..Default::default()
    });
    let auth = match auth {
        Auth::Anonymous => RegistryAuth::Anonymous,
        Auth::Basic(u, p) => RegistryAuth::Basic(u.clone(), p.clone()),
    };
    client
        .auth(&reference, &auth, oci_client::RegistryOperation::Push)
        .await
        .with_context(|| format!("logging in to {registry}"))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let config = &manifest["config"];
    for d in layers.iter().chain(std::iter::once(config)) {
        let d = d["digest"]
            .as_str()
            .context("a descriptor without a digest")?;
        if client.blob_exists(&reference, d).await.unwrap_or(false) {
            continue;
        }
        client
            .push_blob(&reference, blob(&blobs, d)?.clone(), d)
            .await
            .with_context(|| format!("pushing blob {d} to {registry}"))?;
    }
    client
        .push_manifest_raw(
            &reference,
            manifest_bytes,
            oci_client::manifest::OCI_IMAGE_MEDIA_TYPE
                .parse()
                .expect("a valid header value"),
        )
        .await
        .with_context(|| format!("pushing the manifest to {target}"))?;
    Ok(digest)
}

fn blob<'a>(blobs: &'a HashMap<String, Vec<u8>>, digest: &str) -> Result<&'a Vec<u8>> {
    let path = format!("blobs/{}", digest.replacen(':', "/", 1));
    blobs
        .get(&path)
        .with_context(|| format!("the archive has no {path}"))
}

/// Every file of the archive by path. The image is one layer of tens of megabytes, so reading
/// it whole is simpler than seeking in a tar.
fn read_blobs(archive: &Path) -> Result<HashMap<String, Vec<u8>>> {
    let f =
        std::fs::File::open(archive).with_context(|| format!("reading {}", archive.display()))?;
    let mut tar = tar::Archive::new(f);
    let mut out = HashMap::new();
    for e in tar.entries()? {
        let mut e = e?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut data)?;
        out.insert(path, data);
    }
    if out.is_empty() {
        bail!("{} is empty or not a tar archive", archive.display());
    }
    Ok(out)
}
