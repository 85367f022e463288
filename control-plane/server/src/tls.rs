//! The API's TLS: a server certificate, and a client certificate signed by the control plane's
//! CA required on every connection (mutual TLS, as upstream's `AuthEnabled`).

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;
use threeport_pki::files;

fn read(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let p = dir.join(name);
    std::fs::read(&p)
        .map_err(|e| anyhow::anyhow!("{}: {e} (expected {} in --tls-dir)", p.display(), name))
}

/// Build the rustls configuration from `dir` (`ca.crt`, `server.crt`, `server.key`).
pub fn server_config(dir: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let ca = read(dir, files::CA_CERT)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.map_err(|e| anyhow::anyhow!("{}: {e}", files::CA_CERT))?)?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
    let chain = CertificateDer::pem_slice_iter(&read(dir, files::SERVER_CERT)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", files::SERVER_CERT))?;
    let key = PrivateKeyDer::from_pem_slice(&read(dir, files::SERVER_KEY)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files::SERVER_KEY))?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Both kube-rs (ring) and reqwest/aws-sdk (aws-lc-rs) link rustls; with two providers compiled
/// in, rustls refuses to pick one, so every binary and test installs this one first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
