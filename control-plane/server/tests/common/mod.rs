//! Harness: a real control plane on a real backend, reached over real HTTP.

#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use threeport_server::{ServeConfig, Server};
use threeport_testkit::{Nats, shared_postgres, unique_name};

pub const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub struct Harness {
    pub server: Server,
    pub http: reqwest::Client,
    pub base: String,
    pub database_url: String,
    pub nats: Option<Nats>,
    pub dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
}

impl Resp {
    pub fn error(&self) -> &str {
        self.body["Status"]["error"].as_str().unwrap_or("")
    }
    pub fn object(&self) -> &Value {
        &self.body["Data"][0]
    }
    pub fn id(&self) -> u64 {
        self.object()["ID"]
            .as_u64()
            .unwrap_or_else(|| panic!("no ID in {}", self.body))
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

impl Harness {
    pub async fn start(
        database_url: String,
        nats: Option<Nats>,
        dir: tempfile::TempDir,
    ) -> Harness {
        let mut cfg = ServeConfig::new(loopback(), database_url.clone());
        cfg.nats_url = nats.as_ref().map(|n| n.url());
        cfg.encryption_key = Some(KEY_B64.as_bytes().to_vec());
        cfg.body_limit = 1024 * 1024;
        let server = threeport_server::start(cfg)
            .await
            .expect("control plane starts");
        let base = server.url();
        Harness {
            server,
            http: reqwest::Client::new(),
            base,
            database_url,
            nats,
            dir,
        }
    }

    /// Embedded mode: SQLite and the in-process bus.
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("threeport.db").display());
        Harness::start(url, None, dir).await
    }

    /// PostgreSQL (standing in for CockroachDB's wire protocol) and NATS JetStream.
    pub async fn postgres_nats() -> Harness {
        let url = shared_postgres()
            .create_database(&unique_name("api"))
            .expect("create database");
        let nats = Nats::start().expect("nats-server starts");
        Harness::start(url, Some(nats), tempfile::tempdir().unwrap()).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body }
    }

    pub async fn raw(&self, method: Method, path: &str, body: impl Into<reqwest::Body>) -> Resp {
        let resp = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body }
    }

    pub async fn post(&self, plural: &str, body: Value) -> Resp {
        self.call(Method::POST, &format!("/v0/{plural}"), Some(body))
            .await
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn patch(&self, plural: &str, id: u64, body: Value) -> Resp {
        self.call(Method::PATCH, &format!("/v0/{plural}/{id}"), Some(body))
            .await
    }
    pub async fn delete(&self, plural: &str, id: u64) -> Resp {
        self.call(Method::DELETE, &format!("/v0/{plural}/{id}"), None)
            .await
    }

    /// A runtime and a workload definition, which most tests need.
    /// Poll `GET /v0/{plural}/{id}` until `pred` holds (at most `secs`), returning the object.
    pub async fn wait_for(
        &self,
        plural: &str,
        id: u64,
        what: &str,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let r = self.get(&format!("/v0/{plural}/{id}")).await;
            if r.status == 200 {
                last = r.object().clone();
                if pred(&last) {
                    return last;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {plural}/{id} to be {what}; last seen: {last}");
    }

    /// The status a body over the limit gets, read deterministically: the server answers 413 as
    /// soon as the body passes the limit and then closes, while the client is still sending, so
    /// the response is read while the body is written (a client that reads only after writing
    /// can lose it to the reset).
    pub async fn over_limit_status(&self, method: &str, path: &str) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://").to_string();
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut rx, mut tx) = tokio::io::split(tcp);
        let size = 6 * 1024 * 1024;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {size}\r\nConnection: close\r\n\r\n"
        );
        let writer = tokio::spawn(async move {
            if tx.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..size / chunk.len() {
                // The server may stop reading at any point: that is the point.
                if tx.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let n = match tokio::time::timeout_at(deadline, rx.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => break,
            };
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            // Enough read once the whole JSON body is in.
            if let Some((_, b)) = text.split_once("\r\n\r\n") {
                if serde_json::from_str::<Value>(b.trim()).is_ok() {
                    break;
                }
            }
        }
        writer.abort();
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }

    /// Register a controller for `kinds`, as a controller process does (heartbeat now).
    pub async fn register_controller(&self, name: &str, kinds: &[&str]) -> u64 {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let r = self
            .post(
                "controllers",
                json!({"Name": name, "Controllers": [name], "Kinds": kinds, "HeartbeatAt": now}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.id();
        // Heartbeat as a controller process does, until the registration is deleted (or the
        // server is gone), so a slow test never outlives it.
        let (http, url) = (
            self.http.clone(),
            format!("{}/v0/controllers/{id}", self.base),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                let now = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                match http
                    .patch(&url)
                    .json(&json!({"HeartbeatAt": now}))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {}
                    _ => return,
                }
            }
        });
        id
    }

    pub async fn seed_definition(&self, name: &str) -> u64 {
        let r = self
            .post(
                "workload-definitions",
                json!({"Name": name, "YAMLDocument": "kind: ConfigMap\n"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }
}
