//! The REST API. Routes come from the kind registry: one set of generic handlers serves every
//! kind, with no per-kind code.

use crate::crypto::{Cipher, seal};
use crate::lifecycle::{self, DeletePlan, WritePlan};
use crate::store::{Store, StoreError, Stored, index_value, now_rfc3339};
use crate::watch::Watcher;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use threeport_api::envelope::{Envelope, Meta};
use threeport_api::kinds::{self, KINDS};
use threeport_api::validate::{Mode, check_body};
use threeport_api::{Kind, Operation};

pub use crate::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub cipher: Option<Arc<Cipher>>,
    /// Poked after every commit so the relay and the watch tailer do not wait for their poll.
    pub wake: Arc<crate::Wake>,
    pub watcher: Watcher,
    pub nats: Option<async_nats::Client>,
    /// Ends watch streams so a graceful shutdown does not wait on them forever.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Which kinds live controllers serve (objects of the others are stored `Pending`).
    pub registry: Arc<crate::registrations::Registry>,
}

/// An error response in upstream's envelope. (The REST client's error type is
/// `threeport_api::ApiError`; this is the server's side of it.)
#[derive(Debug)]
pub struct ErrorResponse {
    kind: &'static str,
    code: StatusCode,
    message: String,
}

impl ErrorResponse {
    fn new(kind: &'static str, code: StatusCode, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            kind,
            code,
            message: message.into(),
        }
    }
    fn bad(kind: &Kind, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse::new(kind.name, StatusCode::BAD_REQUEST, message)
    }
    fn conflict(kind: &Kind, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse::new(kind.name, StatusCode::CONFLICT, message)
    }
    fn store(kind: &Kind, id: i64, e: StoreError) -> ErrorResponse {
        let code = match &e {
            StoreError::Unavailable(_) | StoreError::Retry => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Conflict(_) | StoreError::StaleVersion { .. } => StatusCode::CONFLICT,
            StoreError::NotFound => StatusCode::NOT_FOUND,
            StoreError::BadReference { .. } => StatusCode::BAD_REQUEST,
            StoreError::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e {
            StoreError::NotFound => format!("{} with ID {} not found", kind.name, id as u64),
            StoreError::StaleVersion { current } => format!(
                "field \"ResourceVersion\": {} {} was changed by someone else (it is now at version {current}); read it again and retry",
                kind.name, id as u64
            ),
            StoreError::Other(m) => {
                tracing::error!(kind = kind.name, error = %m, "database error");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        ErrorResponse::new(kind.name, code, message)
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let env = Envelope::error(self.kind, self.code.as_u16(), self.message);
        (self.code, Json(env)).into_response()
    }
}

type ApiResult = Result<Response, ErrorResponse>;

fn respond(kind: &Kind, code: StatusCode, data: Vec<Value>, meta: Meta) -> Response {
    (
        code,
        Json(Envelope::ok(kind.name, code.as_u16(), data, meta)),
    )
        .into_response()
}

fn one(kind: &Kind, code: StatusCode, object: Value) -> ApiResult {
    Ok(respond(
        kind,
        code,
        vec![object],
        Meta {
            page: 1,
            size: 1,
            total_count: 1,
        },
    ))
}

pub fn router(state: AppState, body_limit: usize) -> Router {
    let mut r = Router::new()
        .route("/version", get(version))
        .route("/livez", get(|| async { Json(json!({"Status": "alive"})) }))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/v0/watch", get(watch));
    for kind in KINDS.iter() {
        let collection = format!("/v0/{}", kind.plural);
        r = r
            .route(
                &collection,
                get(move |s: State<AppState>, q: Query<Vec<(String, String)>>| list(s, kind, q))
                    .post(
                        move |s: State<AppState>, b: Result<Bytes, BytesRejection>| {
                            create(s, kind, b)
                        },
                    ),
            )
            .route(
                &format!("{collection}/{{id}}"),
                get(
                    move |s: State<AppState>, p: Path<String>, q: Query<Vec<(String, String)>>| {
                        get_one(s, kind, p, q)
                    },
                )
                .patch(
                    move |s: State<AppState>, p: Path<String>, b: Result<Bytes, BytesRejection>| {
                        write(s, kind, p, b, Mode::Patch)
                    },
                )
                .put(
                    move |s: State<AppState>, p: Path<String>, b: Result<Bytes, BytesRejection>| {
                        write(s, kind, p, b, Mode::Replace)
                    },
                )
                .delete(move |s: State<AppState>, p: Path<String>| delete(s, kind, p)),
            )
            .route(
                &format!("/{}/versions", kind.plural),
                get(move || async move {
                    Json(json!({"API": kind.name, "Versions": [threeport_api::API_VERSION]}))
                }),
            );
    }
    r.fallback(|| async {
        ErrorResponse::new(
            "",
            StatusCode::NOT_FOUND,
            "no such endpoint; see /openapi.json for the API",
        )
    })
    .layer(DefaultBodyLimit::max(body_limit))
    // Every log line of a request carries its method and path.
    .layer(
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
            .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
    )
    .with_state(state)
}

async fn version() -> Json<Value> {
    Json(json!({"Version": env!("CARGO_PKG_VERSION")}))
}

async fn readyz(State(st): State<AppState>) -> Response {
    let db = tokio::time::timeout(std::time::Duration::from_secs(2), st.store.ping()).await;
    let nats = st
        .nats
        .as_ref()
        .map(|c| format!("{:?}", c.connection_state()).to_lowercase());
    match db {
        Ok(Ok(())) => {
            Json(json!({"Status": "ready", "Database": "ok", "Nats": nats})).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"Status": "not ready", "Database": e.to_string(), "Nats": nats})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"Status": "not ready", "Database": "timed out", "Nats": nats})),
        )
            .into_response(),
    }
}

async fn watch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let mut selected = Vec::new();
    for (k, v) in &q {
        if k != "kind" {
            return ErrorResponse::new(
                "",
                StatusCode::BAD_REQUEST,
                format!("unknown watch parameter {k:?}; use ?kind=workload-instances,…"),
            )
            .into_response();
        }
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match kinds::lookup(name) {
                Some(kind) => selected.push(kind),
                None => {
                    return ErrorResponse::new(
                        "",
                        StatusCode::BAD_REQUEST,
                        format!("unknown kind {name:?} in ?kind="),
                    )
                    .into_response();
                }
            }
        }
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<i64>().ok());
    crate::watch::stream(
        st.store.clone(),
        st.watcher.clone(),
        selected,
        last,
        st.shutdown.clone(),
    )
    .await
    .into_response()
}

fn parse_id(kind: &Kind, raw: &str) -> Result<i64, ErrorResponse> {
    match raw.parse::<u64>() {
        Ok(id) if id <= i64::MAX as u64 => Ok(id as i64),
        Ok(id) => Err(ErrorResponse::new(
            kind.name,
            StatusCode::NOT_FOUND,
            format!("{} with ID {id} not found", kind.name),
        )),
        Err(_) => Err(ErrorResponse::bad(
            kind,
            format!("invalid ID {raw:?}: IDs are unsigned 64-bit integers"),
        )),
    }
}

/// Turn the raw body into a JSON value, with messages that say what to fix.
fn parse_body(kind: &Kind, body: Result<Bytes, BytesRejection>) -> Result<Value, ErrorResponse> {
    let bytes = body.map_err(|rej| ErrorResponse::new(kind.name, rej.status(), rej.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ErrorResponse::bad(
            kind,
            format!(
                "the request body is empty; send a JSON object describing a {}",
                kind.name
            ),
        ));
    }
    threeport_api::validate::parse_json_strict(&bytes)
        .map_err(|e| ErrorResponse::bad(kind, format!("malformed JSON: {e}")))
}

fn is_set(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

fn is_true(v: Option<&Value>) -> bool {
    v == Some(&Value::Bool(true))
}

impl AppState {
    /// After every commit: wake the relay and the watch tailer, and when a controller
    /// registration changed, re-read which kinds are served before answering, so a controller
    /// that has registered is never told its kinds are unserved.
    async fn committed(&self, kind: &'static Kind) {
        self.wake.poke();
        if std::ptr::eq(kind, kinds::CONTROLLER)
            && let Err(e) = self.registry.refresh(&self.store).await
        {
            tracing::warn!(error = %e, "cannot re-read controller registrations");
        }
    }

    /// A part of another object's spec (a gateway's port) was written or deleted: that object
    /// is reconciled again (`Reconciled: false` and an update notification), as a change to
    /// its own fields would be. Done after the part's commit; a crash in between loses only
    /// this nudge, which the next write of the object or its parts makes again.
    async fn touch_wholes(&self, kind: &'static Kind, body: &serde_json::Map<String, Value>) {
        for f in kind.fields().filter(|f| f.part) {
            let (Some(whole), Some(id)) = (
                f.references.and_then(kinds::by_name),
                body.get(f.name).and_then(Value::as_i64),
            ) else {
                continue;
            };
            for _attempt in 0..5 {
                let Ok(cur) = self.store.fetch(whole, id).await else {
                    break;
                };
                // Not reconciled yet (or going away): its controller reads the parts anyway.
                if !is_true(cur.body.get("Reconciled")) || is_set(cur.body.get("DeletionScheduled"))
                {
                    break;
                }
                let mut b = cur.body.clone();
                b.insert("Reconciled".into(), Value::Bool(false));
                match self
                    .store
                    .update(whole, id, cur.version, &b, Some(Operation::Updated))
                    .await
                {
                    Ok(_) => {
                        self.wake.poke();
                        break;
                    }
                    Err(StoreError::StaleVersion { .. }) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, kind = whole.name, id, "cannot ask for a reconcile after a change to its parts");
                        break;
                    }
                }
            }
        }
    }

    fn render(&self, s: &Stored, reveal: bool) -> Value {
        s.render(self.cipher.as_deref(), reveal)
    }

    /// Encrypt secret fields; refuse them if this server was started without a key.
    fn seal(
        &self,
        kind: &'static Kind,
        body: &mut Map<String, Value>,
    ) -> Result<(), ErrorResponse> {
        let present: Vec<&str> = kind
            .secret_fields()
            .filter(|f| is_set(body.get(f.name)))
            .map(|f| f.name)
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        match &self.cipher {
            Some(c) => {
                seal(kind, body, c);
                Ok(())
            }
            None => Err(ErrorResponse::bad(
                kind,
                format!(
                    "field \"{}\" is a secret, and this server has no encryption key (start it with --encryption-key-file)",
                    present[0]
                ),
            )),
        }
    }
}

async fn create(
    State(st): State<AppState>,
    kind: &'static Kind,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = parse_body(kind, body)?;
    let mut body = check_body(kind, &value, Mode::Create)
        .map_err(|e| ErrorResponse::bad(kind, e.to_string()))?
        .clone();
    st.seal(kind, &mut body)?;
    let (body, notify) = lifecycle::plan_create(kind, body, st.registry.served(kind));
    let stored = st
        .store
        .insert(kind, &body, notify)
        .await
        .map_err(|e| ErrorResponse::store(kind, 0, e))?;
    st.committed(kind).await;
    st.touch_wholes(kind, &stored.body).await;
    one(kind, StatusCode::CREATED, st.render(&stored, false))
}

async fn get_one(
    State(st): State<AppState>,
    kind: &'static Kind,
    Path(raw): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let id = parse_id(kind, &raw)?;
    let reveal = reveal_param(kind, &q)?;
    let stored = st
        .store
        .fetch(kind, id)
        .await
        .map_err(|e| ErrorResponse::store(kind, id, e))?;
    one(kind, StatusCode::OK, st.render(&stored, reveal))
}

fn reveal_param(kind: &Kind, q: &[(String, String)]) -> Result<bool, ErrorResponse> {
    match q
        .iter()
        .find(|(k, _)| k == "reveal")
        .map(|(_, v)| v.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ErrorResponse::bad(
            kind,
            format!("reveal must be true or false, got {other:?}"),
        )),
    }
}

async fn list(
    State(st): State<AppState>,
    kind: &'static Kind,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut page = 1u64;
    let mut after: Option<u64> = None;
    let mut size = DEFAULT_PAGE_SIZE;
    let mut name = None;
    let mut filters: Vec<(&'static str, String)> = Vec::new();
    for (key, value) in &q {
        // No stored value holds U+0000 (writes refuse it), and PostgreSQL cannot even compare
        // against one: say so instead of failing with a database error.
        if value.contains('\0') {
            return Err(ErrorResponse::bad(
                kind,
                format!("query parameter \"{key}\" may not contain a NUL character"),
            ));
        }
        match key.as_str() {
            "page" => {
                page = value.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                    ErrorResponse::bad(
                        kind,
                        format!("page must be a whole number from 1, got {value:?}"),
                    )
                })?
            }
            "size" => {
                size = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
                    .ok_or_else(|| {
                        ErrorResponse::bad(
                            kind,
                            format!("size must be between 1 and {MAX_PAGE_SIZE}, got {value:?}"),
                        )
                    })?
            }
            "after" => {
                after = Some(value.parse().map_err(|_| {
                    ErrorResponse::bad(
                        kind,
                        format!("after must be an object ID (a whole number), got {value:?}"),
                    )
                })?)
            }
            "reveal" => {}
            "name" => name = Some(value.as_str()),
            _ => filters.push(filter(kind, key, value)?),
        }
    }
    let reveal = reveal_param(kind, &q)?;
    let cursor = crate::store::Page {
        // IDs are below 2^63: a larger cursor is past every object.
        after: after.map(|id| id.min(i64::MAX as u64) as i64),
        page,
    };
    let (items, total) = st
        .store
        .list(kind, name, &filters, cursor, size)
        .await
        .map_err(|e| ErrorResponse::store(kind, 0, e))?;
    let data = items.iter().map(|s| st.render(s, reveal)).collect();
    Ok(respond(
        kind,
        StatusCode::OK,
        data,
        Meta {
            page,
            size,
            total_count: total,
        },
    ))
}

/// Resolve `?lowercasedfield=value` to an indexed field and the value as the index holds it.
fn filter(
    kind: &'static Kind,
    key: &str,
    value: &str,
) -> Result<(&'static str, String), ErrorResponse> {
    let Some(field) = kind
        .fields()
        .find(|f| f.filter_key() == key.to_ascii_lowercase())
    else {
        let hint = threeport_api::validate::did_you_mean(kind, key)
            .map(|n| format!("; did you mean \"{}\"?", n.to_ascii_lowercase()))
            .unwrap_or_default();
        return Err(ErrorResponse::bad(
            kind,
            format!("unknown filter \"{key}\" for {}{hint}", kind.name),
        ));
    };
    if !field.ty.filterable() || field.secret || matches!(field.name, "ID" | "ResourceVersion") {
        return Err(ErrorResponse::bad(
            kind,
            format!("field \"{}\" cannot be used as a filter", field.name),
        ));
    }
    let parsed: Value = match field.ty {
        threeport_api::FieldType::Bool => value.parse::<bool>().map(Value::Bool).ok(),
        threeport_api::FieldType::Id => value.parse::<u64>().map(Value::from).ok(),
        threeport_api::FieldType::Int => value.parse::<i64>().map(Value::from).ok(),
        _ => Some(Value::String(value.to_string())),
    }
    .ok_or_else(|| {
        ErrorResponse::bad(
            kind,
            format!(
                "filter \"{key}\" must be {}, got {value:?}",
                field.ty.describe()
            ),
        )
    })?;
    Ok((field.name, index_value(&parsed).unwrap_or_default()))
}

/// PATCH (merge the given fields) and PUT (replace the object; status fields are kept unless
/// given). Both honour `ResourceVersion` as a precondition; without it the write is retried on
/// concurrent changes, as upstream clients expect. The rules are `lifecycle::plan_write`.
async fn write(
    State(st): State<AppState>,
    kind: &'static Kind,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
    mode: Mode,
) -> ApiResult {
    let id = parse_id(kind, &raw)?;
    let value = parse_body(kind, body)?;
    let patch =
        check_body(kind, &value, mode).map_err(|e| ErrorResponse::bad(kind, e.to_string()))?;
    let expected = patch.get("ResourceVersion").and_then(Value::as_i64);
    for _attempt in 0..20 {
        let current = st
            .store
            .fetch(kind, id)
            .await
            .map_err(|e| ErrorResponse::store(kind, id, e))?;
        if expected.is_some_and(|v| v != current.version) {
            return Err(ErrorResponse::store(
                kind,
                id,
                StoreError::StaleVersion {
                    current: current.version,
                },
            ));
        }
        let mut incoming = lifecycle::incoming_fields(kind, &current.body, patch)
            .map_err(|m| ErrorResponse::bad(kind, m))?;
        st.seal(kind, &mut incoming.fields)?;
        let plan = lifecycle::plan_write(
            kind,
            mode,
            &current.body,
            incoming,
            st.registry.served(kind),
        );
        let result = match plan {
            WritePlan::Remove => st.store.remove(kind, id, Some(current.version)).await,
            WritePlan::Store { body, notify } => {
                // Rules across fields see the merged object, not only what this PATCH sent.
                threeport_api::services::check_object(kind, &body)
                    .map_err(|e| ErrorResponse::bad(kind, e.to_string()))?;
                st.store
                    .update(kind, id, current.version, &body, notify)
                    .await
            }
        };
        match result {
            Ok(stored) => {
                st.committed(kind).await;
                st.touch_wholes(kind, &stored.body).await;
                return one(kind, StatusCode::OK, st.render(&stored, false));
            }
            // Someone wrote in between: plan again on what is there now.
            Err(StoreError::StaleVersion { .. }) if expected.is_none() => continue,
            Err(e) => return Err(ErrorResponse::store(kind, id, e)),
        }
    }
    Err(ErrorResponse::store(
        kind,
        id,
        StoreError::Unavailable("the object kept changing; retry".into()),
    ))
}

/// DELETE: immediate for plain kinds; two-phase for reconciled ones (schedule, notify, and the
/// controller confirms with `DeletionConfirmed`, which removes the row). The rules are
/// `lifecycle::plan_delete`.
async fn delete(
    State(st): State<AppState>,
    kind: &'static Kind,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = parse_id(kind, &raw)?;
    for _attempt in 0..20 {
        let current = st
            .store
            .fetch(kind, id)
            .await
            .map_err(|e| ErrorResponse::store(kind, id, e))?;
        let blockers = if kind.reconciled {
            st.store
                .blockers(kind, id, &current.body)
                .await
                .map_err(|e| ErrorResponse::store(kind, id, e))?
        } else {
            Vec::new()
        };
        let plan = lifecycle::plan_delete(
            kind,
            &current.body,
            &blockers,
            st.registry.served(kind),
            &now_rfc3339(),
        );
        let result = match plan {
            DeletePlan::Refuse(m) => return Err(ErrorResponse::conflict(kind, m)),
            DeletePlan::Remove => st.store.remove(kind, id, Some(current.version)).await,
            DeletePlan::Schedule { body } => {
                st.store
                    .update(kind, id, current.version, &body, Some(Operation::Deleted))
                    .await
            }
        };
        match result {
            Ok(stored) => {
                st.committed(kind).await;
                st.touch_wholes(kind, &current.body).await;
                return one(kind, StatusCode::OK, st.render(&stored, false));
            }
            Err(StoreError::StaleVersion { .. }) => continue,
            Err(e) => return Err(ErrorResponse::store(kind, id, e)),
        }
    }
    Err(ErrorResponse::store(
        kind,
        id,
        StoreError::Unavailable("the object kept changing; retry".into()),
    ))
}
