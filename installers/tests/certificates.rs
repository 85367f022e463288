//! The certificates in the install's Secrets, read the way an operator would read them: with
//! `openssl x509`, not with our own PKI code. They must meet what their consumers document:
//! CockroachDB's node certificate carries serverAuth and clientAuth and the principal `node`;
//! `client.root` is CN=root with clientAuth; the API's certificate names every Service address
//! its clients dial.

use base64::Engine;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use threeport_installers::manifests::{self, Exposure, Images, Secrets};

/// `openssl x509 -noout -subject -ext …` of one PEM certificate, as text.
fn x509(pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-ext",
            "extendedKeyUsage,subjectAltName,keyUsage",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs (apt-get install -y openssl)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl x509: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One key of a Secret among the install's objects, decoded.
fn secret_file(objects: &[Value], secret: &str, key: &str) -> String {
    let s = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == secret)
        .unwrap_or_else(|| panic!("Secret {secret} in the install"));
    let b64 = s["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{secret} has {key}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

fn install() -> Vec<Value> {
    let secrets = Secrets::generate(&[], "k".repeat(44)).unwrap();
    manifests::control_plane(&Images::default(), &secrets, Exposure::NodePort)
}

#[test]
fn cockroachdb_node_certificate_has_both_usages_and_the_node_principal() {
    let objects = install();
    let node = x509(&secret_file(&objects, "crdb-tls", "node.crt"));
    assert!(node.contains("subject=CN=node"), "{node}");
    assert!(
        node.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{node}"
    );
    for name in [
        "DNS:crdb,",
        "DNS:crdb.threeport-control-plane.svc.cluster.local",
        "DNS:crdb-0.crdb.threeport-control-plane.svc.cluster.local",
        "DNS:localhost",
    ] {
        assert!(node.contains(name), "{name} in:\n{node}");
    }
}

#[test]
fn cockroachdb_root_client_certificate_is_cn_root_with_client_auth() {
    let objects = install();
    let root = x509(&secret_file(&objects, "crdb-tls", "client.root.crt"));
    assert!(root.contains("subject=CN=root"), "{root}");
    assert!(root.contains("TLS Web Client Authentication"), "{root}");
    assert!(!root.contains("TLS Web Server Authentication"), "{root}");
}

#[test]
fn api_certificate_names_every_address_its_clients_dial() {
    let objects = install();
    let api = x509(&secret_file(&objects, "threeport-api-tls", "server.crt"));
    assert!(api.contains("TLS Web Server Authentication"), "{api}");
    // The controllers dial the address in their --api-url; tptctl dials loopback (kind's
    // port mapping).
    let dialled = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d.pointer("/spec/template/spec/containers/0/args")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(str::to_string))
        .filter(|a| a.starts_with("https://"))
        .map(|u| {
            u.trim_start_matches("https://")
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect::<Vec<_>>();
    assert!(!dialled.is_empty(), "the controllers' --api-url is found");
    for host in dialled.iter().map(String::as_str).chain([
        "threeport-api-server.threeport-control-plane.svc.cluster.local",
        "localhost",
    ]) {
        assert!(api.contains(&format!("DNS:{host}")), "{host} in:\n{api}");
    }
    assert!(api.contains("IP Address:127.0.0.1"), "{api}");
}
