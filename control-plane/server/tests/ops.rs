//! Operations: database outages, hostile input, mutual TLS, encryption at rest, the binary.

// Signals a child process / sets PATH for the servers it starts.
#![allow(unsafe_code)]

mod common;

use common::{Harness, KEY_B64};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use threeport_api::{Client, ClientTls};
use threeport_server::ServeConfig;
use threeport_testkit::{Postgres, shared_postgres, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_writes_gives_503_then_recovers_losing_nothing() {
    let pg = Postgres::start().expect("postgres starts");
    let url = pg.create_database("outage").unwrap();
    let h = Harness::start(url, None, tempfile::tempdir().unwrap()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let base = h.base.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t = std::time::Instant::now();
                let r = http
                    .post(format!("{base}/v0/workload-definitions"))
                    .json(&json!({"Name": format!("w-{i}"), "YAMLDocument": "x"}))
                    .send()
                    .await
                    .expect("the API answers, it does not hang or drop the connection");
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                results.push((status, body["Data"][0]["ID"].as_u64(), t.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = h.get("/readyz").await;
    assert_eq!(
        ready.status, 503,
        "readyz reports the outage: {}",
        ready.body
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.restart().unwrap();
    // Recovery happens without restarting the API.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h.get("/readyz").await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "API did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let results = writer.await.unwrap();
    let codes: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert!(
        codes.iter().all(|c| *c == 201 || *c == 503),
        "only 201 or 503: {codes:?}"
    );
    let first_503 = codes
        .iter()
        .position(|c| *c == 503)
        .expect("some writes saw the outage as 503");
    assert!(
        codes[..first_503].contains(&201),
        "writes succeeded before the outage"
    );
    assert!(
        codes[first_503..].contains(&201),
        "writes succeed again after the restart"
    );
    let slowest = results.iter().map(|r| r.2).max().unwrap();
    assert!(
        slowest < Duration::from_secs(10),
        "no request hung: slowest {slowest:?}"
    );
    for (code, id, _) in &results {
        if *code == 201 {
            let id = id.unwrap();
            assert_eq!(
                h.get(&format!("/v0/workload-definitions/{id}"))
                    .await
                    .status,
                200,
                "acknowledged write {id} kept"
            );
        }
    }
    h.server.shutdown().await;
}

async fn hostile_input(h: &Harness) {
    let mut deep = String::new();
    for _ in 0..5000 {
        deep.push('[');
    }
    let raw_bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"}".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"Name\"".to_vec(),
        b"{\"Name\": \"a\", \"YAMLDocument\": \"b\",}".to_vec(),
        b"{\"Name\": 1e400, \"YAMLDocument\": \"b\"}".to_vec(),
        b"{\"Name\": \"\xff\xfe\", \"YAMLDocument\": \"b\"}".to_vec(),
        b"{\"Name\": \"a\\u0000b\", \"YAMLDocument\": \"b\"}".to_vec(),
        deep.into_bytes(),
        b"{\"Name\": \"a\", \"Name\": \"b\", \"YAMLDocument\": \"c\"}".to_vec(),
        b"{\"Name\": {\"$gt\": \"\"}, \"YAMLDocument\": \"b\"}".to_vec(),
        b"{\"Name\": [\"a\"], \"YAMLDocument\": \"b\"}".to_vec(),
        b"{\"Name\": \"x\", \"YAMLDocument\": \"b\", \"Reconciled\": \"true\"}".to_vec(),
        b"{\"Name\": \"x\", \"YAMLDocument\": \"b\", \"DeletionScheduled\": \"yesterday\"}"
            .to_vec(),
    ];
    let targets = [
        "/v0/workload-definitions",
        "/v0/workload-instances",
        "/v0/aws-accounts",
        "/v0/events",
    ];
    for target in targets {
        for body in &raw_bodies {
            for method in [Method::POST, Method::PATCH, Method::PUT] {
                let path = if method == Method::POST {
                    target.to_string()
                } else {
                    format!("{target}/1")
                };
                let r = h.raw(method.clone(), &path, body.clone()).await;
                assert!(
                    r.status.is_client_error(),
                    "{method} {path} {:?} → {} {}",
                    String::from_utf8_lossy(&body[..body.len().min(60)]),
                    r.status,
                    r.body
                );
            }
        }
    }
    // Over the body limit: 413, whatever the method.
    for (method, path) in [
        ("POST", "/v0/workload-definitions"),
        ("PUT", "/v0/workload-definitions/1"),
    ] {
        let (status, _) = h.over_limit_status(method, path).await;
        assert_eq!(status, 413, "{method} {path}");
    }
    // SQL-looking strings are data, stored verbatim and findable by exact match.
    let sneaky = [
        "'; DROP TABLE objects; --",
        "\" OR 1=1 --",
        "x' UNION SELECT body FROM objects --",
        "$1",
        "%",
    ];
    for (i, name) in sneaky.iter().enumerate() {
        let r = h
            .post(
                "workload-definitions",
                json!({"Name": name, "YAMLDocument": format!("doc {i}")}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let q = h
            .http
            .get(format!("{}/v0/workload-definitions", h.base))
            .query(&[("name", *name)])
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = q.json().await.unwrap();
        assert_eq!(v["Meta"]["TotalCount"], 1, "exact match for {name:?}");
        assert_eq!(v["Data"][0]["Name"], *name);
    }
    let odd_paths = [
        "/v0/workload-definitions/-1",
        "/v0/workload-definitions/99999999999999999999",
        "/v0/workload-definitions/1;DROP%20TABLE%20objects",
        "/v0/workload-definitions?name=a%00b",
        "/v0/workload-instances?kubernetesruntimeinstanceid=1&name=%00",
        "/v0/workload-definitions?name=%27%20OR%201%3D1%20--",
        "/v0/workload-definitions?page=-1",
        "/v0/workload-definitions?size=99999999999999999999",
        "/v0/workload-definitions?workloaddefinitionid=1%20OR%201=1",
        "/v0/workload-instances?workloaddefinitionid=18446744073709551615",
        "/v0/watch?kind=nope",
        "/v0/workload-definitions/18446744073709551615",
    ];
    for p in odd_paths {
        let r = h.get(p).await;
        assert!(r.status.as_u16() < 500, "GET {p} → {} {}", r.status, r.body);
    }
    let r = h.get("/v0/workload-definitions").await;
    assert_eq!(r.status, 200, "the table survived");
    assert_eq!(h.get("/livez").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_gives_5xx_sqlite() {
    let h = Harness::sqlite().await;
    hostile_input(&h).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_gives_5xx_postgres() {
    let h = Harness::postgres_nats().await;
    hostile_input(&h).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_missing_and_foreign_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = threeport_pki::TlsBundle::generate(&[]).unwrap();
    bundle.write_dir(dir.path()).unwrap();
    let mut cfg = ServeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        format!("sqlite://{}", dir.path().join("db").display()),
    );
    cfg.tls_dir = Some(dir.path().to_path_buf());
    let server = threeport_server::start(cfg).await.unwrap();
    let url = server.url();
    assert!(url.starts_with("https://"));

    let good = ClientTls {
        ca_pem: bundle.ca.pair.cert_pem.clone(),
        cert_pem: bundle.client.cert_pem.clone(),
        key_pem: bundle.client.key_pem.clone(),
    };
    let client = Client::new(&url, Some(&good)).unwrap();
    assert_eq!(client.version().await.unwrap(), env!("CARGO_PKG_VERSION"));
    let wd = threeport_api::kinds::lookup("workload-definitions").unwrap();
    client
        .create(wd, &json!({"Name": "tls", "YAMLDocument": "x"}))
        .await
        .expect("authorized client can write");

    // No client certificate.
    let anon = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(bundle.ca.pair.cert_pem.as_bytes()).unwrap(),
        ])
        .build()
        .unwrap();
    let err = anon.get(format!("{url}/version")).send().await;
    assert!(
        err.is_err(),
        "a client without a certificate is refused: {err:?}"
    );

    // A certificate from another CA.
    let other = threeport_pki::TlsBundle::generate(&[]).unwrap();
    let foreign = ClientTls {
        ca_pem: bundle.ca.pair.cert_pem.clone(),
        cert_pem: other.client.cert_pem,
        key_pem: other.client.key_pem,
    };
    let err = Client::new(&url, Some(&foreign)).unwrap().version().await;
    assert!(err.is_err(), "a certificate from another CA is refused");

    // Plain HTTP to the TLS port gets nothing useful.
    let plain = reqwest::get(format!("{}/version", url.replace("https://", "http://"))).await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_on_loopback_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServeConfig::new(
        "0.0.0.0:0".parse().unwrap(),
        format!("sqlite://{}", dir.path().join("db").display()),
    );
    let err = threeport_server::start(cfg.clone())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--insecure-no-tls"), "{err}");
    cfg.insecure_no_tls = true;
    let s = threeport_server::start(cfg)
        .await
        .expect("allowed when asked for");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_readable_in_the_database() {
    const PLAIN: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    // SQLite: the file itself.
    let h = Harness::sqlite().await;
    let r = h
        .post(
            "aws-accounts",
            json!({"Name": "a", "AccountID": "1", "SecretAccessKey": PLAIN}),
        )
        .await;
    assert_eq!(r.status, 201);
    let kri = h
        .post(
            "kubernetes-runtime-definitions",
            json!({"Name": "k", "InfraProvider": "kind"}),
        )
        .await;
    let inst = h
        .post("kubernetes-runtime-instances", json!({"Name": "k", "KubernetesRuntimeDefinitionID": kri.id(), "CertificateKey": PLAIN, "ConnectionToken": PLAIN}))
        .await;
    assert_eq!(inst.status, 201, "{}", inst.body);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let hay = String::from_utf8_lossy(&bytes);
    assert!(hay.contains("enc:v1:"), "ciphertext is stored");
    assert!(
        !hay.contains(PLAIN),
        "plaintext secret found in the SQLite files"
    );
    h.server.shutdown().await;

    // PostgreSQL: the table, read with psql.
    let db = unique_name("secrets");
    let url = shared_postgres().create_database(&db).unwrap();
    let h = Harness::start(url, None, tempfile::tempdir().unwrap()).await;
    let r = h
        .post(
            "aws-accounts",
            json!({"Name": "a", "AccountID": "1", "SecretAccessKey": PLAIN}),
        )
        .await;
    assert_eq!(r.status, 201);
    let dump = shared_postgres()
        .psql(&db, "SELECT body FROM objects; SELECT payload FROM outbox;")
        .unwrap();
    assert!(dump.contains("enc:v1:"), "{dump}");
    assert!(
        !dump.contains(PLAIN),
        "plaintext secret found in PostgreSQL: {dump}"
    );
    let revealed = h
        .get(&format!("/v0/aws-accounts/{}?reveal=true", r.id()))
        .await;
    assert_eq!(revealed.object()["SecretAccessKey"], PLAIN);
    h.server.shutdown().await;
}

#[tokio::test]
async fn threeport_binary_migrates_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tp.db").display());
    let bin = env!("CARGO_BIN_EXE_threeport");
    let out = std::process::Command::new(bin)
        .args(["migrate", "--database-url", &db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.path().join("key");
    std::fs::write(&key, KEY_B64).unwrap();
    let port = threeport_testkit::free_port();
    let mut child = std::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &db,
            "--no-migrate",
        ])
        .arg("--encryption-key-file")
        .arg(&key)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "threeport serve became ready");
    unsafe { libc_kill(child.id() as i32, 15) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    // A bad URL is a clear error.
    let out = std::process::Command::new(bin)
        .args(["migrate", "--database-url", "mysql://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres://"));
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn migrate_creates_a_missing_postgres_database() {
    let pg = shared_postgres();
    let db = unique_name("fresh");
    let url = pg.url(&db);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_threeport"))
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg.psql(&db, "SELECT COUNT(*) FROM objects").unwrap(),
        "0",
        "the database exists and is migrated"
    );
    // Running it again is a no-op.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_threeport"))
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
