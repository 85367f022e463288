//! Certificates for Threeport's mutual TLS: one self-signed CA per control plane, a server
//! certificate for the API and client certificates for `tptctl` and the controllers.
//!
//! Keys are ECDSA P-256 (rcgen's default) rather than upstream's RSA-4096: generation takes
//! microseconds instead of seconds, which keeps `tptctl up --provider local` under 2 s.

#![forbid(unsafe_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The certificate authority of one control plane.
#[derive(Clone, Debug)]
pub struct CertAuthority {
    pub pair: CertPair,
}

const VALIDITY_DAYS: i64 = 3650;

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // Back-date a little so a client clock slightly behind still accepts a fresh certificate.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Threeport");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl CertAuthority {
    pub fn generate(common_name: &str) -> Result<CertAuthority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(CertAuthority {
            pair: CertPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> CertAuthority {
        CertAuthority {
            pair: CertPair {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
        }
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertPair, PkiError> {
        let ca_key = KeyPair::from_pem(&self.pair.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.pair.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        validity(&mut params);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate valid for every host name or IP address in `hosts`.
    pub fn issue_server(&self, hosts: &[&str]) -> Result<CertPair, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*h).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.distinguished_name = dn(hosts.first().copied().unwrap_or("threeport-api"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A certificate that is both a server and a client, as a database node needs one: it
    /// serves SQL and dials its peers with the same certificate. CockroachDB requires both
    /// usages and the principal `node` as the common name.
    pub fn issue_node(&self, common_name: &str, hosts: &[&str]) -> Result<CertPair, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*h).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.distinguished_name = dn(common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(params)
    }

    /// A client certificate; `common_name` identifies the client (`tptctl`, `workload-controller`).
    pub fn issue_client(&self, common_name: &str) -> Result<CertPair, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }
}

/// Host names every server certificate carries: loopback for local use and the in-cluster
/// service name for the kind and EKS installs.
pub const DEFAULT_SERVER_HOSTS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "threeport-api-server",
    "threeport-api-server.threeport-control-plane",
    "threeport-api-server.threeport-control-plane.svc",
    "threeport-api-server.threeport-control-plane.svc.cluster.local",
];

/// The files of a TLS directory, as `threeport serve --tls-dir` reads them.
pub mod files {
    pub const CA_CERT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const SERVER_CERT: &str = "server.crt";
    pub const SERVER_KEY: &str = "server.key";
    pub const CLIENT_CERT: &str = "client.crt";
    pub const CLIENT_KEY: &str = "client.key";
}

/// Everything one control plane needs for mTLS.
#[derive(Clone, Debug)]
pub struct TlsBundle {
    pub ca: CertAuthority,
    pub server: CertPair,
    pub client: CertPair,
}

impl TlsBundle {
    pub fn generate(extra_server_hosts: &[&str]) -> Result<TlsBundle, PkiError> {
        let ca = CertAuthority::generate("Threeport CA")?;
        let mut hosts: Vec<&str> = DEFAULT_SERVER_HOSTS.to_vec();
        hosts.extend_from_slice(extra_server_hosts);
        let server = ca.issue_server(&hosts)?;
        let client = ca.issue_client("tptctl")?;
        Ok(TlsBundle { ca, server, client })
    }

    /// Write the bundle into `dir` (created if needed). Private keys get mode 0600.
    pub fn write_dir(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let entries = [
            (files::CA_CERT, &self.ca.pair.cert_pem, false),
            (files::CA_KEY, &self.ca.pair.key_pem, true),
            (files::SERVER_CERT, &self.server.cert_pem, false),
            (files::SERVER_KEY, &self.server.key_pem, true),
            (files::CLIENT_CERT, &self.client.cert_pem, false),
            (files::CLIENT_KEY, &self.client.key_pem, true),
        ];
        for (name, content, private) in entries {
            write_file(&dir.join(name), content.as_bytes(), private)?;
        }
        Ok(())
    }
}

/// Write a file atomically (temp file + rename) so a crash never leaves half a key behind.
pub fn write_file(path: &Path, content: &[u8], private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(content)
        .and_then(|_| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_is_pem_and_keys_are_private() {
        let b = TlsBundle::generate(&["api.example.com"]).unwrap();
        assert!(
            b.ca.pair
                .cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(b.client.key_pem.contains("PRIVATE KEY"));
        let dir = std::env::temp_dir().join(format!("pki-test-{}", std::process::id()));
        b.write_dir(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(files::SERVER_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
