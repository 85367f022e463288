//! Typed-by-registry REST client. Every call goes through the kind table, so one client serves
//! every kind, and lists always page to the end (upstream's client silently stopped at 50).

use crate::envelope::{Envelope, Meta, WatchEvent};
use crate::kinds::Kind;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::time::Duration;

/// Page size used when listing everything.
pub const LIST_PAGE_SIZE: u64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status; `message` is the envelope's `Status.error`.
    #[error("{code} {message}")]
    Http { code: u16, message: String },
    #[error("cannot reach the threeport API at {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("unexpected response from the threeport API: {0}")]
    Decode(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl ApiError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Http { code, .. } => Some(*code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

/// Client-side mTLS material, PEM encoded.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// `base_url` is `http://host:port` or `https://host:port`. With `tls`, only the given CA is
    /// trusted and the client certificate is presented.
    pub fn new(base_url: &str, tls: Option<&ClientTls>) -> Result<Client, ApiError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        if let Some(tls) = tls {
            let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes())
                .map_err(|e| ApiError::Tls(e.to_string()))?;
            let identity = reqwest::Identity::from_pem(
                format!("{}\n{}", tls.cert_pem, tls.key_pem).as_bytes(),
            )
            .map_err(|e| ApiError::Tls(e.to_string()))?;
            b = b.tls_certs_only([ca]).identity(identity);
        }
        let http = b.build().map_err(|e| ApiError::Tls(e.to_string()))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Envelope, ApiError> {
        let resp = req.send().await.map_err(|e| ApiError::Transport {
            url: self.base.clone(),
            source: e,
        })?;
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ApiError::Transport {
            url: self.base.clone(),
            source: e,
        })?;
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(env) if (200..300).contains(&code) => Ok(env),
            Ok(env) => Err(ApiError::Http {
                code,
                message: env.status.error,
            }),
            Err(_) if !(200..300).contains(&code) => Err(ApiError::Http {
                code,
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
            }),
            Err(e) => Err(ApiError::Decode(e.to_string())),
        }
    }

    fn one(env: Envelope) -> Result<Value, ApiError> {
        env.data
            .and_then(|d| d.into_iter().next())
            .ok_or_else(|| ApiError::Decode("the response carried no object".into()))
    }

    pub async fn create(&self, kind: &Kind, object: &Value) -> Result<Value, ApiError> {
        Self::one(
            self.send(
                self.http
                    .post(self.url(&format!("/v0/{}", kind.plural)))
                    .json(object),
            )
            .await?,
        )
    }

    pub async fn get(&self, kind: &Kind, id: u64) -> Result<Value, ApiError> {
        Self::one(
            self.send(
                self.http
                    .get(self.url(&format!("/v0/{}/{id}", kind.plural))),
            )
            .await?,
        )
    }

    /// Like [`Client::get`] but with secret fields decrypted (controllers need them).
    pub async fn get_revealed(&self, kind: &Kind, id: u64) -> Result<Value, ApiError> {
        let url = self.url(&format!("/v0/{}/{id}?reveal=true", kind.plural));
        Self::one(self.send(self.http.get(url)).await?)
    }

    /// One page. `filters` are (lower-cased field name, value) pairs.
    pub async fn list_page(
        &self,
        kind: &Kind,
        filters: &[(&str, String)],
        page: u64,
        size: u64,
    ) -> Result<(Vec<Value>, Meta), ApiError> {
        let mut query: Vec<(&str, String)> = filters.to_vec();
        query.push(("page", page.to_string()));
        query.push(("size", size.to_string()));
        self.get_page(kind, &query).await
    }

    /// `GET /v0/<plural>?<query>`: one page and its `Meta`.
    async fn get_page(
        &self,
        kind: &Kind,
        query: &[(&str, String)],
    ) -> Result<(Vec<Value>, Meta), ApiError> {
        let env = self
            .send(
                self.http
                    .get(self.url(&format!("/v0/{}", kind.plural)))
                    .query(query),
            )
            .await?;
        Ok((env.data.unwrap_or_default(), env.meta))
    }

    /// Every object matching `filters`, in ID order, by cursor: each page asks for the objects
    /// after the last ID of the one before, so objects created or deleted meanwhile never make
    /// it skip or repeat one, and every page costs the same however far into the list it is.
    pub async fn list(
        &self,
        kind: &Kind,
        filters: &[(&str, String)],
    ) -> Result<Vec<Value>, ApiError> {
        let mut all: Vec<Value> = Vec::new();
        let mut after = None;
        loop {
            let (items, next) = self.list_after(kind, filters, after).await?;
            all.extend(items);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(all)
    }

    /// One page of `list`: the objects after ID `after` (from the start when `None`), and the
    /// cursor for the next page (`None` after the last). `tptctl get` prints each page as it
    /// arrives instead of waiting for the whole list.
    pub async fn list_after(
        &self,
        kind: &Kind,
        filters: &[(&str, String)],
        after: Option<u64>,
    ) -> Result<(Vec<Value>, Option<u64>), ApiError> {
        let mut query: Vec<(&str, String)> = filters.to_vec();
        if let Some(id) = after {
            query.push(("after", id.to_string()));
        }
        query.push(("size", LIST_PAGE_SIZE.to_string()));
        let (items, _) = self.get_page(kind, &query).await?;
        let next = match items.last() {
            Some(last) if items.len() as u64 >= LIST_PAGE_SIZE => Some(
                crate::object_id(last)
                    .ok_or_else(|| ApiError::Decode("a listed object has no ID".into()))?,
            ),
            _ => None,
        };
        Ok((items, next))
    }

    pub async fn find_by_name(&self, kind: &Kind, name: &str) -> Result<Option<Value>, ApiError> {
        let (items, _) = self
            .list_page(kind, &[("name", name.to_string())], 1, 1)
            .await?;
        Ok(items.into_iter().next())
    }

    pub async fn patch(&self, kind: &Kind, id: u64, patch: &Value) -> Result<Value, ApiError> {
        Self::one(
            self.send(
                self.http
                    .patch(self.url(&format!("/v0/{}/{id}", kind.plural)))
                    .json(patch),
            )
            .await?,
        )
    }

    pub async fn put(&self, kind: &Kind, id: u64, object: &Value) -> Result<Value, ApiError> {
        Self::one(
            self.send(
                self.http
                    .put(self.url(&format!("/v0/{}/{id}", kind.plural)))
                    .json(object),
            )
            .await?,
        )
    }

    /// For reconciled kinds this schedules the deletion (the object stays until a controller
    /// confirms); for others it removes the object. Returns the object as it was.
    pub async fn delete(&self, kind: &Kind, id: u64) -> Result<Value, ApiError> {
        Self::one(
            self.send(
                self.http
                    .delete(self.url(&format!("/v0/{}/{id}", kind.plural))),
            )
            .await?,
        )
    }

    pub async fn version(&self) -> Result<String, ApiError> {
        #[derive(serde::Deserialize)]
        struct V {
            #[serde(rename = "Version")]
            version: String,
        }
        let resp = self
            .http
            .get(self.url("/version"))
            .send()
            .await
            .map_err(|e| ApiError::Transport {
                url: self.base.clone(),
                source: e,
            })?;
        let v: V = resp
            .json()
            .await
            .map_err(|e| ApiError::Decode(e.to_string()))?;
        Ok(v.version)
    }

    /// Subscribe to the server's watch stream (server-sent events). `kinds` empty means all.
    /// Each item is `(event id, event)`; pass the last id back as `last_event_id` to resume.
    pub async fn watch(
        &self,
        kinds: &[&Kind],
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<(String, WatchEvent), ApiError>> + use<>, ApiError> {
        use eventsource_stream::Eventsource;
        let mut query = Vec::new();
        if !kinds.is_empty() {
            query.push((
                "kind",
                kinds.iter().map(|k| k.plural).collect::<Vec<_>>().join(","),
            ));
        }
        // A watch lives for hours: no overall timeout, only the connect timeout.
        let mut req = self
            .http
            .get(self.url("/v0/watch"))
            .query(&query)
            .timeout(Duration::from_secs(u32::MAX as u64));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.map_err(|e| ApiError::Transport {
            url: self.base.clone(),
            source: e,
        })?;
        if !resp.status().is_success() {
            let code = resp.status().as_u16();
            return Err(ApiError::Http {
                code,
                message: resp.text().await.unwrap_or_default(),
            });
        }
        Ok(resp
            .bytes_stream()
            .eventsource()
            .filter_map(|ev| async move {
                match ev {
                    Ok(ev) if ev.event == "keepalive" || ev.data.is_empty() => None,
                    Ok(ev) => Some(
                        serde_json::from_str::<WatchEvent>(&ev.data)
                            .map(|we| (ev.id, we))
                            .map_err(|e| ApiError::Decode(e.to_string())),
                    ),
                    Err(e) => Some(Err(ApiError::Decode(e.to_string()))),
                }
            }))
    }
}

/// The `ID` of an object as returned by the API.
pub fn object_id(object: &Value) -> Option<u64> {
    object.get("ID").and_then(Value::as_u64)
}
