//! HTTPS serving and request routing.
//!
//! Routing is done by hand on the path segments rather than with an axum route table: the
//! Kubernetes URL space is ambiguous without the registry (`/api/v1/namespaces/x` is a
//! namespace, `/api/v1/namespaces/x/configmaps` a collection, and CRDs add resources at run
//! time), so the registry decides, under the same lock as the operation itself.

use crate::discovery::{self, ResourceType};
use crate::errors::ApiError;
use crate::ops::{self, DeleteOpts, PatchType, WriteCtx, present};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Inner, Store, meta_str};
use crate::table::table;
use crate::watch::{self, Epoch, Render, WatchRequest, partial_metadata};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 64 << 20;

pub struct App {
    pub store: Arc<Store>,
    pub epoch: Epoch,
    /// `host:port`, for `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// See `Options::write_latency`.
    pub write_latency: std::time::Duration,
}

// ---------------------------------------------------------------------------------------------
// TLS and the listener
// ---------------------------------------------------------------------------------------------

/// Server TLS: the bundle's server certificate; client certificates signed by the bundle's CA
/// are requested but optional, so both kubeconfig client certificates and bearer tokens work.
/// The provider is explicit (aws-lc-rs), so serving never depends on the process default.
pub fn tls_config(bundle: &threeport_pki::TlsBundle) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle.ca.pair.cert_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let chain = CertificateDer::pem_slice_iter(bundle.server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(bundle.server.key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Bind with SO_REUSEADDR so `resume()` can take the same port again right after `pause()`,
/// even with connections of the previous period still in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// One period of serving (between `start`/`resume` and `pause`/`shutdown`).
pub struct Serving {
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    pub fn start(
        app: Arc<App>,
        tls: Arc<rustls::ServerConfig>,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Serving> {
        let handle = axum_server::Handle::new();
        let server = axum_server::tls_rustls::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )?
        .handle(handle.clone());
        let router = router(app);
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(router.into_make_service()).await {
                tracing::error!(error = %e, "kube-double stopped serving");
            }
        });
        Ok(Serving { handle, task })
    }

    /// Close the listener and every connection (not gracefully: an unreachable cluster does
    /// not finish in-flight requests either).
    pub async fn stop(self) {
        self.handle.shutdown();
        let _ = self.task.await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.handle.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn abort(&self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

// ---------------------------------------------------------------------------------------------
// Request plumbing
// ---------------------------------------------------------------------------------------------

fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(x) = u8::from_str_radix(hex, 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !app.write_latency.is_zero()
        && matches!(
            parts.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        tokio::time::sleep(app.write_latency).await;
    }
    let params = Params(
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default(),
    );
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            ));
        }
    };
    let segs: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let resp = match route(&app, &parts.method, &segs, &params, &parts.headers, &body) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(method = %parts.method, uri = %parts.uri, status = resp.status().as_u16(), "request");
    resp
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn route(
    app: &Arc<App>,
    method: &Method,
    segs: &[&str],
    q: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let accept = header_str(headers, header::ACCEPT);
    let discovery_get = |v: Option<Value>| -> Result<Response, ApiError> {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        v.map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(ApiError::no_route)
    };
    match segs {
        [] => discovery_get(Some(
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}),
        )),
        ["version"] => discovery_get(Some(discovery::version_info())),
        ["healthz" | "livez" | "readyz", ..] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => {
            if discovery::wants_aggregated(accept) {
                let g = app.store.lock();
                Ok(aggregated_response(discovery::aggregated(
                    &g.registry,
                    true,
                )))
            } else {
                discovery_get(Some(discovery::api_versions(&app.server_address)))
            }
        }
        ["apis"] => {
            let g = app.store.lock();
            if discovery::wants_aggregated(accept) {
                Ok(aggregated_response(discovery::aggregated(
                    &g.registry,
                    false,
                )))
            } else {
                discovery_get(Some(discovery::api_group_list(&g.registry)))
            }
        }
        ["api", "v1"] => {
            let g = app.store.lock();
            discovery_get(discovery::resource_list(&g.registry, "", "v1"))
        }
        ["apis", group] => {
            let g = app.store.lock();
            discovery_get(discovery::api_group(&g.registry, group))
        }
        ["apis", group, version] => {
            let g = app.store.lock();
            discovery_get(discovery::resource_list(&g.registry, group, version))
        }
        ["openapi", "v3"] => {
            let g = app.store.lock();
            discovery_get(Some(discovery::openapi_v3_root(&g.registry)))
        }
        ["openapi", "v3", "api", version] => {
            let g = app.store.lock();
            discovery_get(discovery::openapi_v3_gv(&g.registry, "", version))
        }
        ["openapi", "v3", "apis", group, version] => {
            let g = app.store.lock();
            discovery_get(discovery::openapi_v3_gv(&g.registry, group, version))
        }
        ["api", "v1", rest @ ..] => resource(app, method, "", "v1", rest, q, headers, body),
        ["apis", group, version, rest @ ..] => {
            resource(app, method, group, version, rest, q, headers, body)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn aggregated_response(v: Value) -> Response {
    let mut r = json_response(StatusCode::OK, &v);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    r
}

#[derive(Clone, Copy, PartialEq)]
enum Sub {
    None,
    Status,
    Scale,
}

/// What a resource path designates.
struct Target {
    rt: ResourceType,
    /// `None`: all namespaces (lists/watches of namespaced resources), or cluster-scoped.
    ns: Option<String>,
    name: Option<String>,
    sub: Sub,
}

fn resolve(inner: &Inner, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let core = group.is_empty();
    // `/namespaces/{ns}/{plural}...` — except `/api/v1/namespaces/{name}/status`, the namespace's
    // own status subresource.
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, ..] if !(core && *plural == "status" && rest.len() == 3) => {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, tail) = rest.split_first().ok_or_else(ApiError::no_route)?;
    let rt = inner
        .registry
        .find(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    if ns.is_some() && !rt.namespaced {
        return Err(ApiError::no_route());
    }
    let (name, sub) = match tail {
        [] => (None, Sub::None),
        [name] => (Some(name.to_string()), Sub::None),
        [name, "status"] if rt.status => (Some(name.to_string()), Sub::Status),
        [name, "scale"] if rt.scale => (Some(name.to_string()), Sub::Scale),
        _ => return Err(ApiError::no_route()),
    };
    if name.is_some() && rt.namespaced && ns.is_none() {
        return Err(ApiError::no_route());
    }
    Ok(Target { rt, ns, name, sub })
}

#[derive(Clone, Copy, PartialEq)]
enum Repr {
    Full,
    Metadata,
    Table,
}

fn representation(accept: &str) -> Repr {
    // Only the client's first preference counts; it always lists plain JSON as a fallback.
    let first = accept.split(',').next().unwrap_or_default();
    if first.contains("as=Table") {
        Repr::Table
    } else if first.contains("as=PartialObjectMetadata") {
        Repr::Metadata
    } else {
        Repr::Full
    }
}

fn manager(q: &Params, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager") {
        return m.to_string();
    }
    // The real server's fallback: the product part of the User-Agent.
    let ua = header_str(headers, header::USER_AGENT);
    match ua.split('/').next().map(str::trim) {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "unknown".to_string(),
    }
}

fn selectors(q: &Params) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

#[allow(clippy::too_many_arguments)]
fn resource(
    app: &Arc<App>,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let accept = header_str(headers, header::ACCEPT);
    let content_type = header_str(headers, header::CONTENT_TYPE);
    // Bodies are JSON or YAML, plus the few protobuf kinds kubectl's typed clients send.
    let decoded;
    let body = if body.is_empty() {
        body
    } else if content_type.contains("protobuf") {
        let v = crate::proto::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(content_type);
            err.message = format!("{}: {e}", err.message);
            err
        })?;
        decoded = serde_json::to_vec(&v).unwrap_or_default();
        &decoded[..]
    } else if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    } else {
        body
    };
    let mut g = app.store.lock();
    let t = resolve(&g, group, version, rest)?;
    let rt = &t.rt;
    let ns = t.ns.clone().unwrap_or_default();
    let dry_run = q.get("dryRun") == Some("All");
    let ctx = WriteCtx {
        manager: manager(q, headers),
        dry_run,
    };
    let ok = |v: &Value| Ok(json_response(StatusCode::OK, &present(rt, v)));
    match (&t.name, method.clone()) {
        // ---- collections ----
        (None, Method::GET) => {
            let (labels, fields) = selectors(q)?;
            if q.flag("watch") {
                drop(g);
                return watch_response(app, t, labels, fields, q, accept);
            }
            let items: Vec<_> = g
                .list(&rt.key(), t.ns.as_deref())
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            Ok(list_response(rt, items, g.rv(), q, accept))
        }
        (None, Method::POST) => {
            if rt.namespaced && t.ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let obj = ops::parse_body(body)?;
            let created = ops::create(&mut g, rt, &ns, obj, &ctx)?;
            Ok(json_response(StatusCode::CREATED, &present(rt, &created)))
        }
        (None, Method::DELETE) => {
            if rt.namespaced && t.ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let (labels, fields) = selectors(q)?;
            let opts = delete_opts(q, body)?;
            let mut deleted = Vec::new();
            for o in g.list(&rt.key(), t.ns.as_deref()) {
                if labels.matches(&o)
                    && fields.matches(&o)
                    && let Ok(d) = ops::delete(&mut g, rt, &ns, meta_str(&o, "name"), &opts)
                {
                    deleted.push(list_item(rt, &d));
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": g.rv().to_string()}, "items": deleted}),
            ))
        }
        // ---- /scale ----
        (Some(name), m) if t.sub == Sub::Scale => {
            scale(&mut g, rt, &ns, name, m, headers, body, &ctx)
        }
        // ---- objects and /status ----
        (Some(name), Method::GET) => {
            let obj = g
                .get(&rt.key(), &ns, name)
                .ok_or_else(|| ApiError::not_found(rt, name))?;
            match representation(accept) {
                Repr::Table => Ok(json_response(
                    StatusCode::OK,
                    &table(rt, &[obj], g.rv(), include(q)),
                )),
                Repr::Metadata => Ok(json_response(StatusCode::OK, &partial_metadata(&obj))),
                Repr::Full => ok(&obj),
            }
        }
        (Some(name), Method::PUT) => {
            let obj = ops::parse_body(body)?;
            ok(&ops::replace(
                &mut g,
                rt,
                &ns,
                name,
                obj,
                &ctx,
                t.sub == Sub::Status,
            )?)
        }
        (Some(name), Method::PATCH) => {
            let ct = header_str(headers, header::CONTENT_TYPE);
            let ptype = PatchType::from_content_type(ct, q.flag("force"))
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let ctx = if matches!(ptype, PatchType::Apply { .. }) {
                // Apply has no User-Agent fallback: the manager must be explicit.
                WriteCtx {
                    manager: q.get("fieldManager").unwrap_or_default().to_string(),
                    dry_run,
                }
            } else {
                ctx
            };
            let (obj, created) = ops::patch(
                &mut g,
                rt,
                &ns,
                name,
                ptype,
                body,
                &ctx,
                t.sub == Sub::Status,
            )?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &present(rt, &obj)))
        }
        (Some(name), Method::DELETE) if t.sub == Sub::None => {
            let opts = delete_opts(q, body)?;
            ok(&ops::delete(&mut g, rt, &ns, name, &opts)?)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn include(q: &Params) -> &str {
    q.get("includeObject").unwrap_or("Metadata")
}

/// The `autoscaling/v1` Scale view of a workload (what `kubectl scale` and HPAs use).
fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let md = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                     "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// GET/PUT/PATCH on `/scale`: read or change `spec.replicas` through the Scale view.
/// (An apply patch on `/scale` is treated as a merge patch.)
#[allow(clippy::too_many_arguments)]
fn scale(
    g: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    method: Method,
    headers: &HeaderMap,
    body: &[u8],
    ctx: &WriteCtx,
) -> Result<Response, ApiError> {
    let obj = g
        .get(&rt.key(), ns, name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let mut sc = scale_of(&obj);
    match method {
        Method::GET => return Ok(json_response(StatusCode::OK, &sc)),
        Method::PUT => {
            let b = ops::parse_body(body)?;
            let rv = b
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !rv.is_empty() && rv != meta_str(&obj, "resourceVersion") {
                return Err(ApiError::stale(rt, name));
            }
            sc["spec"] = b.get("spec").cloned().unwrap_or(json!({}));
        }
        Method::PATCH => {
            let ct = header_str(headers, header::CONTENT_TYPE);
            let mut p = ops::parse_body(body)?;
            match PatchType::from_content_type(ct, false)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?
            {
                PatchType::Json => crate::apply::json_patch(&mut sc, &p)
                    .map_err(|e| ApiError::new(422, "Invalid", e))?,
                _ => {
                    crate::apply::strip_directives(&mut p);
                    crate::apply::merge_patch(&mut sc, &p)
                }
            }
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    let replicas = sc
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::invalid(rt, name, "spec.replicas: Required value"))?;
    let patch = serde_json::to_vec(&json!({"spec": {"replicas": replicas}})).unwrap_or_default();
    let (updated, _) = ops::patch(g, rt, ns, name, PatchType::Merge, &patch, ctx, false)?;
    Ok(json_response(StatusCode::OK, &scale_of(&updated)))
}

fn delete_opts(q: &Params, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        ops::parse_body(body)?
    };
    let s = |p: &str| b.pointer(p).and_then(Value::as_str).map(String::from);
    let dry_run = q.get("dryRun") == Some("All")
        || b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    Ok(DeleteOpts {
        propagation: q
            .get("propagationPolicy")
            .map(String::from)
            .or_else(|| s("/propagationPolicy")),
        precondition_uid: s("/preconditions/uid"),
        precondition_rv: s("/preconditions/resourceVersion"),
        dry_run,
    })
}

/// An item of a list: the real server leaves `kind` and `apiVersion` off the items of
/// built-in lists (the list says them once) and keeps them on custom resources.
fn list_item(rt: &ResourceType, o: &Value) -> Value {
    let mut v = present(rt, o);
    if rt.crd.is_none()
        && let Some(m) = v.as_object_mut()
    {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

fn list_response(
    rt: &ResourceType,
    mut items: Vec<Arc<Value>>,
    rv: u64,
    q: &Params,
    accept: &str,
) -> Response {
    // Pagination over the current state (the real server pages over a snapshot).
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if let Some(token) = q.get("continue")
        && let Some(after) = b64
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    {
        items.retain(|o| format!("{}\n{}", meta_str(o, "namespace"), meta_str(o, "name")) > after);
    }
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().expect("limit > 0");
        list_meta["continue"] = json!(b64.encode(format!(
            "{}\n{}",
            meta_str(last, "namespace"),
            meta_str(last, "name")
        )));
        list_meta["remainingItemCount"] = json!(remaining);
    }
    match representation(accept) {
        Repr::Table => {
            let mut t = table(rt, &items, rv, include(q));
            t["metadata"] = list_meta;
            json_response(StatusCode::OK, &t)
        }
        Repr::Metadata => json_response(
            StatusCode::OK,
            &json!({
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
                "items": items.iter().map(|o| partial_metadata(o)).collect::<Vec<_>>(),
            }),
        ),
        Repr::Full => json_response(
            StatusCode::OK,
            &json!({
                "kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": list_meta,
                "items": items.iter().map(|o| list_item(rt, o)).collect::<Vec<_>>(),
            }),
        ),
    }
}

fn watch_response(
    app: &Arc<App>,
    t: Target,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &Params,
    accept: &str,
) -> Result<Response, ApiError> {
    let resource_version = match q.get("resourceVersion") {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let req = WatchRequest {
        rt: t.rt,
        namespace: t.ns,
        labels,
        fields,
        resource_version,
        send_initial_events: q.flag("sendInitialEvents"),
        bookmarks: q.flag("allowWatchBookmarks"),
        timeout: q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs),
        render: match representation(accept) {
            Repr::Metadata => Render::Metadata,
            Repr::Table => Render::Table(include(q).to_string()),
            Repr::Full => Render::Full,
        },
    };
    let body: Body = watch::stream(app.store.clone(), req, app.epoch.clone());
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab"), "a:b");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }

    #[test]
    fn representation_uses_first_preference() {
        assert!(
            representation("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
                == Repr::Table
        );
        assert!(representation("application/json, application/json;as=Table") == Repr::Full);
        assert!(
            representation("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
                == Repr::Metadata
        );
    }
}
