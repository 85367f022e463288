//! A cert-manager stand-in (group `cert-manager.io`, v1): what cert-manager's controllers write
//! back, once its CRDs are registered:
//!
//! * Issuer and ClusterIssuer: `Ready=True` (`ACMEAccountRegistered` and `status.acme.uri` for
//!   ACME issuers, whose account key Secret is created as cert-manager does);
//! * Certificate whose `spec.issuerRef` names a Ready cert-manager issuer: at once the trigger
//!   (`Issuing=True`, `Ready=False` with the reason the Secret needs issuing), a temporary
//!   private-key Secret and a CertificateRequest `<name>-<revision>`; `ready_delay` later a
//!   `kubernetes.io/tls` Secret with a real PEM certificate for `spec.dnsNames` (and
//!   `ipAddresses`, `uris`), the annotations cert-manager puts on it, and `Ready=True` with
//!   `notBefore`/`notAfter`/`renewalTime`/`revision`; the Events cert-manager files on the way.
//!   With the issuance switch off the attempt fails instead, as an ACME order whose HTTP-01
//!   challenge cannot be reached does (`Issuing=False`/`Failed`, `failedIssuanceAttempts`,
//!   a Warning Event); it is retried when the switch is back on or the spec changes.
//!
//! Certificates are signed by one throw-away CA per double (ACME: the chain `tls.crt` carries
//! it as a Let's Encrypt chain carries its intermediate; CA issuers: also as `ca.crt`),
//! self-signed for `selfSigned` issuers; keys are ECDSA P-256. Whether a Secret needs issuing
//! is decided from its data and cert-manager's annotations, not by parsing the certificate.

use crate::discovery::{ResKey, ResourceType};
use crate::ops::{self, DeleteOpts, WriteCtx};
use crate::sim::{
    self, Dirty, SECRETS, Sim, annotation, event, generation, i, live, merge_patch, owner_ref, rt,
    s, write_status_as,
};
use crate::store::{Inner, Store, format_time, meta_str, random_suffix};
use base64::Engine;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use threeport_pki::CertAuthority;
use tokio::time::Instant;

pub const GROUP: &str = "cert-manager.io";
pub const CERTIFICATES: (&str, &str) = (GROUP, "certificates");
pub const ISSUERS: (&str, &str) = (GROUP, "issuers");
pub const CLUSTER_ISSUERS: (&str, &str) = (GROUP, "clusterissuers");
pub const CERTIFICATE_REQUESTS: (&str, &str) = (GROUP, "certificaterequests");
/// Where cert-manager keeps the Secrets of ClusterIssuers (`--cluster-resource-namespace`,
/// by default the namespace it runs in).
const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";

// cert-manager's controllers, as they name themselves in Events and managedFields.
const TRIGGER: &str = "cert-manager-certificates-trigger";
const KEY_MANAGER: &str = "cert-manager-certificates-key-manager";
const REQUEST_MANAGER: &str = "cert-manager-certificates-request-manager";
const ISSUING: &str = "cert-manager-certificates-issuing";
const READINESS: &str = "cert-manager-certificates-readiness";
const APPROVER: &str = "cert-manager-certificaterequests-approver";
const ISSUERS_CONTROLLER: &str = "cert-manager-issuers";
const CLUSTER_ISSUERS_CONTROLLER: &str = "cert-manager-clusterissuers";

const READY_MESSAGE: &str = "Certificate is up to date and has not expired";
/// Let's Encrypt issues 90-day certificates whatever the request asks for.
const ACME_DAYS: i64 = 90;

/// What cert-manager remembers between passes.
#[derive(Default)]
pub struct State {
    /// Issuance attempts in flight or failed, by Certificate uid.
    attempts: HashMap<String, Attempt>,
    /// The CA that signs every issued certificate (made on first use).
    ca: Option<CertAuthority>,
    /// The issuance switch as of the last pass; a change re-evaluates every Certificate.
    seen: Option<bool>,
}

struct Attempt {
    ns: String,
    name: String,
    /// The Certificate generation it was started for; a spec change starts a new one.
    generation: i64,
    /// When the issuer answers (`None`: answered, i.e. failed).
    due: Option<Instant>,
    /// `<name>-<revision>`.
    request: String,
    /// The temporary Secret holding the new private key (`status.nextPrivateKeySecretName`).
    key_secret: String,
    key_pem: String,
    failure: Option<Failure>,
}

struct Failure {
    message: String,
    time: String,
    attempts: i64,
}

impl State {
    /// Certificates whose issuer answers now.
    pub fn due(&self, now: Instant) -> Vec<(String, String)> {
        self.attempts
            .values()
            .filter(|a| a.due.is_some_and(|d| d <= now))
            .map(|a| (a.ns.clone(), a.name.clone()))
            .collect()
    }

    pub fn next(&self, now: Instant) -> Option<Instant> {
        self.attempts
            .values()
            .filter_map(|a| a.due)
            .filter(|d| *d > now)
            .min()
    }

    fn ca(&mut self) -> anyhow::Result<&CertAuthority> {
        if self.ca.is_none() {
            self.ca = Some(CertAuthority::generate("kube-double issuer CA")?);
        }
        Ok(self.ca.as_ref().expect("just set"))
    }
}

/// A cert-manager condition (`observedGeneration` included), keeping `lastTransitionTime`
/// while the status does not change.
fn cond(old: Option<&Value>, t: &str, status: &str, reason: &str, msg: &str, gen_: i64) -> Value {
    let mut c = sim::condition(old, t, status, reason, msg, false, false);
    c["observedGeneration"] = json!(gen_);
    c
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn strings(o: &Value, p: &str) -> Vec<String> {
    o.pointer(p)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A Go duration (`2160h`, `1h30m`, `90s`, `1.5h`) as `time::Duration`.
fn go_duration(v: &str) -> Option<time::Duration> {
    let mut total = 0f64;
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * secs;
        rest = &rest[u..];
    }
    Some(time::Duration::seconds_f64(total))
}

/// The issuer a Certificate names: (kind, namespace, name); `None` for issuers of other API
/// groups (an external issuer's controller answers those, not cert-manager).
fn issuer_ref(c: &Value) -> Option<(&'static str, String, String)> {
    let group = s(c, "/spec/issuerRef/group");
    if !group.is_empty() && group != GROUP {
        return None;
    }
    let name = s(c, "/spec/issuerRef/name").to_string();
    match s(c, "/spec/issuerRef/kind") {
        "" | "Issuer" => Some(("Issuer", meta_str(c, "namespace").to_string(), name)),
        "ClusterIssuer" => Some(("ClusterIssuer", String::new(), name)),
        _ => None,
    }
}

fn issuer_key(kind: &str) -> ResKey {
    match kind {
        "ClusterIssuer" => ResKey::new(CLUSTER_ISSUERS.0, CLUSTER_ISSUERS.1),
        _ => ResKey::new(ISSUERS.0, ISSUERS.1),
    }
}

fn ready(o: &Value) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Why the Certificate's Secret needs (re)issuing — cert-manager's trigger policies, reason
/// and message — or `None` when it is up to date.
fn trigger(c: &Value, secret: Option<&Value>) -> Option<(&'static str, String)> {
    let Some(secret) = secret else {
        return Some((
            "DoesNotExist",
            "Issuing certificate as Secret does not exist".into(),
        ));
    };
    let data = |k: &str| {
        secret
            .pointer("/data")
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if data("tls.key").is_empty() {
        return Some((
            "MissingData",
            "Issuing certificate as Secret does not contain a private key".into(),
        ));
    }
    if data("tls.crt").is_empty() {
        return Some((
            "MissingData",
            "Issuing certificate as Secret does not contain a certificate".into(),
        ));
    }
    let (a_name, a_kind, a_group) = (
        annotation(secret, "cert-manager.io/issuer-name"),
        annotation(secret, "cert-manager.io/issuer-kind"),
        annotation(secret, "cert-manager.io/issuer-group"),
    );
    let kind = match s(c, "/spec/issuerRef/kind") {
        "" => "Issuer",
        k => k,
    };
    if (!a_name.is_empty() || !a_kind.is_empty())
        && (a_name != s(c, "/spec/issuerRef/name") || a_kind != kind)
    {
        let group = if a_group.is_empty() { GROUP } else { a_group };
        return Some((
            "IncorrectIssuer",
            format!(
                "Issuing certificate as Secret was previously issued by \"{a_kind}.{group}/{a_name}\""
            ),
        ));
    }
    let mut fields = Vec::new();
    if annotation(secret, "cert-manager.io/alt-names") != strings(c, "/spec/dnsNames").join(",") {
        fields.push("spec.dnsNames");
    }
    if annotation(secret, "cert-manager.io/ip-sans") != strings(c, "/spec/ipAddresses").join(",") {
        fields.push("spec.ipAddresses");
    }
    if annotation(secret, "cert-manager.io/common-name") != s(c, "/spec/commonName") {
        fields.push("spec.commonName");
    }
    if !fields.is_empty() {
        return Some((
            "SecretMismatch",
            format!(
                "Existing issued Secret is not up to date for spec: [{}]",
                fields.join(", ")
            ),
        ));
    }
    None
}

fn issuer_status(g: &mut Inner, issuer: &Value, kind: &str) -> Value {
    let gen_ = generation(issuer);
    let old = issuer.get("status");
    if let Some(acme) = issuer.pointer("/spec/acme") {
        let ns = match kind {
            "ClusterIssuer" => CLUSTER_RESOURCE_NAMESPACE,
            _ => meta_str(issuer, "namespace"),
        };
        account_key_secret(g, ns, s(acme, "/privateKeySecretRef/name"), kind);
        // The account URL the ACME server returned for the registration.
        let server = s(acme, "/server");
        let base = server
            .strip_suffix("/directory")
            .unwrap_or(server)
            .trim_end_matches('/');
        let account = sim::hex64(meta_str(issuer, "uid"))
            .chars()
            .filter(char::is_ascii_digit)
            .take(9)
            .collect::<String>();
        let mut acme_status = json!({"uri": format!("{base}/acme/acct/{account}")});
        let email = s(acme, "/email");
        if !email.is_empty() {
            acme_status["lastRegisteredEmail"] = json!(email);
        }
        return json!({
            "acme": acme_status,
            "conditions": [cond(old, "Ready", "True", "ACMEAccountRegistered",
                                "The ACME account was registered with the ACME server", gen_)],
        });
    }
    let (reason, msg) = if issuer.pointer("/spec/ca").is_some() {
        ("KeyPairVerified", "Signing CA verified")
    } else {
        ("IsReady", "")
    };
    json!({"conditions": [cond(old, "Ready", "True", reason, msg, gen_)]})
}

/// The ACME account's private key Secret, which cert-manager creates when it registers.
fn account_key_secret(g: &mut Inner, ns: &str, name: &str, kind: &str) {
    let Some(secret_rt) = rt(g, SECRETS.0, SECRETS.1) else {
        return;
    };
    if name.is_empty() || g.get(&secret_rt.key(), ns, name).is_some() {
        return;
    }
    let Ok(key) = KeyPair::generate() else {
        return;
    };
    let manager = match kind {
        "ClusterIssuer" => CLUSTER_ISSUERS_CONTROLLER,
        _ => ISSUERS_CONTROLLER,
    };
    // Fails (and is retried on the issuer's next change) when the namespace does not exist.
    let _ = ops::create(
        g,
        &secret_rt,
        ns,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": name, "namespace": ns},
               "data": {"tls.key": b64(&key.serialize_pem())}}),
        &WriteCtx::new(manager),
    );
}

/// A certificate issued for `c` with the private key `key_pem`.
struct Issued {
    chain_pem: String,
    ca_pem: Option<String>,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

/// The requested certificate: subject alternative names from `dnsNames`, `ipAddresses` and
/// `uris`; the common name from `commonName`, or (`cn_from_names`, as Let's Encrypt does) the
/// first name.
fn leaf_params(c: &Value, cn_from_names: bool) -> anyhow::Result<CertificateParams> {
    let mut sans = strings(c, "/spec/dnsNames");
    sans.extend(strings(c, "/spec/ipAddresses"));
    let mut params = CertificateParams::new(sans.clone())?;
    for u in strings(c, "/spec/uris") {
        params.subject_alt_names.push(SanType::URI(u.try_into()?));
    }
    // Not rcgen's default subject ("rcgen self signed cert").
    let mut dn = DistinguishedName::new();
    let cn = match s(c, "/spec/commonName") {
        "" if cn_from_names => sans.first().cloned().unwrap_or_default(),
        x => x.to_string(),
    };
    if !cn.is_empty() {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    Ok(params)
}

fn issue(ca: &CertAuthority, c: &Value, issuer: &Value, key_pem: &str) -> anyhow::Result<Issued> {
    let key = KeyPair::from_pem(key_pem)?;
    let acme = issuer.pointer("/spec/acme").is_some();
    let mut params = leaf_params(c, acme)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let (not_before, not_after) = if acme {
        // Let's Encrypt back-dates by an hour and ignores the requested duration.
        let nb = now - time::Duration::hours(1);
        (nb, nb + time::Duration::days(ACME_DAYS))
    } else {
        let d = go_duration(s(c, "/spec/duration")).unwrap_or(time::Duration::hours(2160));
        (now, now + d)
    };
    params.not_before = not_before;
    params.not_after = not_after;
    let (chain_pem, ca_pem) = if issuer.pointer("/spec/selfSigned").is_some() {
        let pem = params.self_signed(&key)?.pem();
        (pem.clone(), Some(pem))
    } else {
        let ca_key = KeyPair::from_pem(&ca.pair.key_pem)?;
        let signer = Issuer::from_ca_cert_pem(&ca.pair.cert_pem, ca_key)?;
        let leaf = params.signed_by(&key, &signer)?.pem();
        if acme {
            (format!("{leaf}{}", ca.pair.cert_pem), None)
        } else {
            (leaf, Some(ca.pair.cert_pem.clone()))
        }
    };
    Ok(Issued {
        chain_pem,
        ca_pem,
        not_before,
        not_after,
    })
}

/// `renewalTime`: `spec.renewBefore` (or `renewBeforePercentage`) before `notAfter`, by
/// default a third of the lifetime.
fn renewal_time(c: &Value, issued: &Issued) -> time::OffsetDateTime {
    let life = issued.not_after - issued.not_before;
    let before = go_duration(s(c, "/spec/renewBefore"))
        .or_else(|| {
            c.pointer("/spec/renewBeforePercentage")
                .and_then(Value::as_i64)
                .map(|p| life * (p as f64 / 100.0))
        })
        .filter(|b| *b < life)
        .unwrap_or(life / 3);
    issued.not_after - before
}

fn secret_rt(g: &Inner) -> Option<ResourceType> {
    rt(g, SECRETS.0, SECRETS.1)
}

/// Write the issued Secret (created, or updated in place as cert-manager does).
fn write_secret(
    g: &mut Inner,
    c: &Value,
    existing: Option<&Value>,
    key_pem: &str,
    issued: &Issued,
) {
    let Some(secret_rt) = secret_rt(g) else {
        return;
    };
    let (ns, name) = (meta_str(c, "namespace"), s(c, "/spec/secretName"));
    let kind = match s(c, "/spec/issuerRef/kind") {
        "" => "Issuer",
        k => k,
    };
    let mut annotations = json!({
        "cert-manager.io/alt-names": strings(c, "/spec/dnsNames").join(","),
        "cert-manager.io/certificate-name": meta_str(c, "name"),
        "cert-manager.io/common-name": s(c, "/spec/commonName"),
        "cert-manager.io/ip-sans": strings(c, "/spec/ipAddresses").join(","),
        "cert-manager.io/issuer-group": s(c, "/spec/issuerRef/group"),
        "cert-manager.io/issuer-kind": kind,
        "cert-manager.io/issuer-name": s(c, "/spec/issuerRef/name"),
        "cert-manager.io/uri-sans": strings(c, "/spec/uris").join(","),
    });
    let mut labels = json!({"controller.cert-manager.io/fao": "true"});
    for (target, from) in [(&mut annotations, "annotations"), (&mut labels, "labels")] {
        if let Some(m) = c
            .pointer(&format!("/spec/secretTemplate/{from}"))
            .and_then(Value::as_object)
        {
            for (k, v) in m {
                target[k] = v.clone();
            }
        }
    }
    let mut data = json!({"tls.crt": b64(&issued.chain_pem), "tls.key": b64(key_pem)});
    if let Some(ca) = &issued.ca_pem {
        data["ca.crt"] = json!(b64(ca));
    }
    match existing {
        Some(old) => {
            merge_patch(
                g,
                &secret_rt,
                old,
                json!({"metadata": {"annotations": annotations, "labels": labels}, "data": data}),
                ISSUING,
            );
        }
        None => {
            let _ = ops::create(
                g,
                &secret_rt,
                ns,
                json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                       "metadata": {"name": name, "namespace": ns,
                                    "annotations": annotations, "labels": labels},
                       "data": data}),
                &WriteCtx::new(ISSUING),
            );
        }
    }
}

/// The CertificateRequest of an attempt, created as the request manager does (a previous one
/// of the same name, a failed try, is replaced), approved at once.
fn create_request(g: &mut Inner, c: &Value, a: &Attempt, revision: i64) {
    let Some(cr_rt) = rt(g, CERTIFICATE_REQUESTS.0, CERTIFICATE_REQUESTS.1) else {
        return;
    };
    let ns = meta_str(c, "namespace");
    if g.get(&cr_rt.key(), ns, &a.request).is_some() {
        let _ = ops::delete(g, &cr_rt, ns, &a.request, &DeleteOpts::default());
    }
    let csr = KeyPair::from_pem(&a.key_pem).ok().and_then(|key| {
        let params = leaf_params(c, false).ok()?;
        params.serialize_request(&key).ok()?.pem().ok()
    });
    let mut spec = json!({
        "request": b64(&csr.unwrap_or_default()),
        "issuerRef": c.pointer("/spec/issuerRef").cloned().unwrap_or(json!({})),
        "usages": ["digital signature", "key encipherment"],
    });
    if let Some(d) = c.pointer("/spec/duration") {
        spec["duration"] = d.clone();
    }
    let obj = json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "metadata": {
            "name": a.request, "namespace": ns,
            "annotations": {
                "cert-manager.io/certificate-name": meta_str(c, "name"),
                "cert-manager.io/certificate-revision": revision.to_string(),
                "cert-manager.io/private-key-secret-name": a.key_secret,
            },
            "ownerReferences": [owner_ref(c)],
        },
        "spec": spec,
    });
    if ops::create(g, &cr_rt, ns, obj, &WriteCtx::new(REQUEST_MANAGER)).is_ok() {
        let now = crate::store::now_rfc3339();
        let _ = ops::set_status(
            g,
            &cr_rt,
            ns,
            &a.request,
            json!({"conditions": [{"type": "Approved", "status": "True", "reason": "cert-manager.io",
                    "message": "Certificate request has been approved by cert-manager.io",
                    "lastTransitionTime": now}]}),
            APPROVER,
        );
    }
}

/// Record the issuer's answer on the CertificateRequest: `Ready=True`/`Issued` with the
/// certificate, or `Ready=False`/`Failed`.
fn finish_request(g: &mut Inner, c: &Value, a: &Attempt, issued: Option<&Issued>) {
    let Some(cr_rt) = rt(g, CERTIFICATE_REQUESTS.0, CERTIFICATE_REQUESTS.1) else {
        return;
    };
    let Some(cr) = g.get(&cr_rt.key(), meta_str(c, "namespace"), &a.request) else {
        return;
    };
    let mut status = cr.get("status").cloned().unwrap_or(json!({}));
    let mut conds: Vec<Value> = status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "Ready")
        .collect();
    let old = cr.get("status");
    match issued {
        Some(i) => {
            conds.push(sim::condition(
                old,
                "Ready",
                "True",
                "Issued",
                "Certificate fetched from issuer successfully",
                false,
                false,
            ));
            status["certificate"] = json!(b64(&i.chain_pem));
            if let Some(ca) = &i.ca_pem {
                status["ca"] = json!(b64(ca));
            }
        }
        None => {
            let f = a.failure.as_ref().map(|f| f.message.as_str()).unwrap_or("");
            let msg = f
                .strip_prefix(
                    "The certificate request has failed to complete and will be retried: ",
                )
                .unwrap_or(f);
            conds.push(sim::condition(
                old, "Ready", "False", "Failed", msg, false, false,
            ));
            status["failureTime"] = json!(crate::store::now_rfc3339());
        }
    }
    status["conditions"] = json!(conds);
    write_status_as(g, &cr_rt, &cr, status, ISSUING);
}

/// One pass: issuers, then the Certificates that changed, whose issuer or Secret changed, or
/// whose issuance is due.
pub fn pass(sim: &mut Sim, store: &Store, now: Instant, dirty: &Dirty) {
    let delay = sim.opts.ready_delay;
    let issuance = sim.switches.certificate_issuance;
    let st = &mut sim.certs;
    let mut guard = store.lock();
    let g: &mut Inner = &mut guard;
    let Some(cert_rt) = rt(g, CERTIFICATES.0, CERTIFICATES.1) else {
        st.attempts.clear();
        return;
    };
    let full = dirty.full || st.seen != Some(issuance) || dirty.crd_changed(GROUP);
    st.seen = Some(issuance);
    for uid in &dirty.deleted {
        st.attempts.remove(uid);
    }

    // Issuers.
    let mut issuers = Vec::new();
    for (kind, k) in [("Issuer", ISSUERS), ("ClusterIssuer", CLUSTER_ISSUERS)] {
        if let Some(irt) = rt(g, k.0, k.1) {
            for o in sim::list(g, k.0, k.1) {
                if live(&o) && (full || dirty.has(k, &o)) {
                    issuers.push((irt.clone(), kind, o));
                }
            }
        }
    }
    drop(guard);
    for (irt, kind, o) in issuers {
        let mut guard = store.lock();
        let g: &mut Inner = &mut guard;
        let status = issuer_status(g, &o, kind);
        let manager = match kind {
            "ClusterIssuer" => CLUSTER_ISSUERS_CONTROLLER,
            _ => ISSUERS_CONTROLLER,
        };
        write_status_as(g, &irt, &o, status, manager);
    }

    // Certificates.
    let guard = store.lock();
    let changed_issuers: HashSet<(&str, &str, &str)> = dirty
        .changed(ISSUERS)
        .map(|(ns, n)| ("Issuer", ns, n))
        .chain(
            dirty
                .changed(CLUSTER_ISSUERS)
                .map(|(_, n)| ("ClusterIssuer", "", n)),
        )
        .collect();
    let changed_secrets: HashSet<(&str, &str)> = dirty.changed(SECRETS).collect();
    let certs: Vec<Arc<Value>> = sim::list(&guard, CERTIFICATES.0, CERTIFICATES.1)
        .into_iter()
        .filter(|c| {
            live(c)
                && (full
                    || dirty.has(CERTIFICATES, c)
                    || issuer_ref(c).is_some_and(|(k, ns, n)| {
                        changed_issuers.contains(&(k, ns.as_str(), n.as_str()))
                    })
                    || changed_secrets
                        .contains(&(meta_str(c, "namespace"), s(c, "/spec/secretName"))))
        })
        .collect();
    drop(guard);
    for c in certs {
        let mut guard = store.lock();
        certificate(st, &mut guard, &cert_rt, &c, now, delay, issuance);
    }
}

#[allow(clippy::too_many_arguments)]
fn certificate(
    st: &mut State,
    g: &mut Inner,
    cert_rt: &ResourceType,
    c: &Value,
    now: Instant,
    delay: std::time::Duration,
    issuance: bool,
) {
    let uid = meta_str(c, "uid").to_string();
    let (ns, name) = (meta_str(c, "namespace"), meta_str(c, "name"));
    let secret_name = s(c, "/spec/secretName");
    let Some((ikind, ins, iname)) = issuer_ref(c) else {
        return;
    };
    if secret_name.is_empty() || iname.is_empty() {
        return;
    }
    let gen_ = generation(c);
    let old = c.get("status");
    let secret = secret_rt(g).and_then(|r| g.get(&r.key(), ns, secret_name));
    let Some((reason, msg)) = trigger(c, secret.as_deref()) else {
        // Up to date.
        st.attempts.remove(&uid);
        let mut status = keep(old, &["notBefore", "notAfter", "renewalTime", "revision"]);
        status.insert(
            "conditions".into(),
            json!([cond(old, "Ready", "True", "Ready", READY_MESSAGE, gen_)]),
        );
        write_status_as(g, cert_rt, c, Value::Object(status), READINESS);
        return;
    };
    let issuer = g
        .get(&issuer_key(ikind), &ins, &iname)
        .filter(|i| live(i) && ready(i));
    let mut status = keep(
        old,
        &[
            "notBefore",
            "notAfter",
            "renewalTime",
            "revision",
            "failedIssuanceAttempts",
            "lastFailureTime",
        ],
    );
    let waiting = |status: &mut Map<String, Value>, a: Option<&Attempt>| {
        status.insert(
            "conditions".into(),
            json!([
                cond(old, "Ready", "False", reason, &msg, gen_),
                cond(old, "Issuing", "True", reason, &msg, gen_),
            ]),
        );
        if let Some(a) = a {
            status.insert("nextPrivateKeySecretName".into(), json!(a.key_secret));
        }
    };
    let Some(issuer) = issuer else {
        // Triggered, but nobody can sign yet: the request would wait for the issuer.
        st.attempts.remove(&uid);
        waiting(&mut status, None);
        write_status_as(g, cert_rt, c, Value::Object(status), TRIGGER);
        return;
    };
    let revision = i(c, "/status/revision") + 1;
    let stale = st
        .attempts
        .get(&uid)
        .is_some_and(|a| a.generation != gen_ || (a.failure.is_some() && issuance));
    if stale || !st.attempts.contains_key(&uid) {
        // A new attempt: the trigger, a private key, a CertificateRequest.
        let previous = st.attempts.remove(&uid);
        let key_pem = match &previous {
            Some(p) => p.key_pem.clone(),
            None => match KeyPair::generate() {
                Ok(k) => k.serialize_pem(),
                Err(_) => return,
            },
        };
        let key_secret = previous
            .as_ref()
            .map(|p| p.key_secret.clone())
            .unwrap_or_else(|| format!("{name}-{}", random_suffix(5)));
        let a = Attempt {
            ns: ns.to_string(),
            name: name.to_string(),
            generation: gen_,
            due: Some(now + delay),
            request: format!("{name}-{revision}"),
            key_secret,
            key_pem,
            failure: None,
        };
        event(g, c, TRIGGER, "Normal", "Issuing", &msg, None);
        if let Some(secret_rt) = secret_rt(g)
            && g.get(&secret_rt.key(), ns, &a.key_secret).is_none()
        {
            let _ = ops::create(
                g,
                &secret_rt,
                ns,
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"name": a.key_secret, "namespace": ns,
                                    "labels": {"cert-manager.io/next-private-key": "true",
                                               "controller.cert-manager.io/fao": "true"},
                                    "ownerReferences": [owner_ref(c)]},
                       "data": {"tls.key": b64(&a.key_pem)}}),
                &WriteCtx::new(KEY_MANAGER),
            );
        }
        event(
            g,
            c,
            KEY_MANAGER,
            "Normal",
            "Generated",
            &format!(
                "Stored new private key in temporary Secret resource \"{}\"",
                a.key_secret
            ),
            None,
        );
        create_request(g, c, &a, revision);
        event(
            g,
            c,
            REQUEST_MANAGER,
            "Normal",
            "Requested",
            &format!("Created new CertificateRequest resource \"{}\"", a.request),
            None,
        );
        st.attempts.insert(uid.clone(), a);
    }
    let due = st.attempts[&uid].due.is_some_and(|d| now >= d);
    if due {
        let mut a = st.attempts.remove(&uid).expect("present");
        a.due = None;
        // The issuer answers: a certificate, or (issuance off) the ACME order goes invalid
        // because the HTTP-01 challenge could not be reached.
        let outcome = if issuance {
            st.ca()
                .and_then(|ca| issue(ca, c, &issuer, &a.key_pem))
                .map_err(|e| format!("Failed to sign certificate: {e}"))
        } else {
            let order = format!(
                "{}-{}",
                a.request,
                u32::from_str_radix(&sim::hex64(&format!("{uid}/{}", a.request))[..8], 16)
                    .unwrap_or(0)
            );
            Err(format!(
                "Failed to wait for order resource \"{order}\" to become ready: order is in \"invalid\" state: "
            ))
        };
        match outcome {
            Ok(issued) => {
                write_secret(g, c, secret.as_deref(), &a.key_pem, &issued);
                finish_request(g, c, &a, Some(&issued));
                if let Some(secret_rt) = secret_rt(g)
                    && let Some(tmp) = g.get(&secret_rt.key(), ns, &a.key_secret)
                {
                    sim::delete(g, &secret_rt, &tmp);
                }
                let mut status = keep(old, &[]);
                status.insert(
                    "conditions".into(),
                    json!([cond(old, "Ready", "True", "Ready", READY_MESSAGE, gen_)]),
                );
                status.insert("notBefore".into(), json!(format_time(issued.not_before)));
                status.insert("notAfter".into(), json!(format_time(issued.not_after)));
                status.insert(
                    "renewalTime".into(),
                    json!(format_time(renewal_time(c, &issued))),
                );
                status.insert("revision".into(), json!(revision));
                write_status_as(g, cert_rt, c, Value::Object(status), ISSUING);
                event(
                    g,
                    c,
                    ISSUING,
                    "Normal",
                    "Issuing",
                    "The certificate has been successfully issued",
                    None,
                );
                return;
            }
            Err(reason) => {
                a.failure = Some(Failure {
                    message: format!(
                        "The certificate request has failed to complete and will be retried: {reason}"
                    ),
                    time: crate::store::now_rfc3339(),
                    attempts: i(c, "/status/failedIssuanceAttempts") + 1,
                });
                finish_request(g, c, &a, None);
                let message = a.failure.as_ref().map(|f| f.message.clone());
                event(
                    g,
                    c,
                    ISSUING,
                    "Warning",
                    "Failed",
                    &message.unwrap_or_default(),
                    None,
                );
                st.attempts.insert(uid.clone(), a);
            }
        }
    }
    let a = st.attempts.get(&uid).expect("present");
    match &a.failure {
        Some(f) => {
            status.insert(
                "conditions".into(),
                json!([
                    cond(old, "Ready", "False", reason, &msg, gen_),
                    cond(old, "Issuing", "False", "Failed", &f.message, gen_),
                ]),
            );
            status.insert("failedIssuanceAttempts".into(), json!(f.attempts));
            status.insert("lastFailureTime".into(), json!(f.time));
            status.insert("nextPrivateKeySecretName".into(), json!(a.key_secret));
        }
        None => waiting(&mut status, Some(a)),
    }
    write_status_as(g, cert_rt, c, Value::Object(status), ISSUING);
}

/// The fields of `old` (a status) named in `fields`.
fn keep(old: Option<&Value>, fields: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = old.and_then(|o| o.get(*f)) {
            m.insert((*f).to_string(), v.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("2160h"), Some(time::Duration::hours(2160)));
        assert_eq!(go_duration("1h30m"), Some(time::Duration::minutes(90)));
        assert_eq!(go_duration("2160h0m0s"), Some(time::Duration::hours(2160)));
        assert_eq!(go_duration("1.5h"), Some(time::Duration::minutes(90)));
        assert_eq!(go_duration("90d"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn trigger_policies() {
        let c = json!({"spec": {"secretName": "tls", "dnsNames": ["a.example", "b.example"],
                                 "issuerRef": {"name": "le", "kind": "ClusterIssuer"}}});
        assert_eq!(trigger(&c, None).unwrap().0, "DoesNotExist");
        let mut secret = json!({"metadata": {"annotations": {
            "cert-manager.io/alt-names": "a.example,b.example", "cert-manager.io/issuer-name": "le",
            "cert-manager.io/issuer-kind": "ClusterIssuer", "cert-manager.io/common-name": "",
            "cert-manager.io/ip-sans": ""}},
            "data": {"tls.crt": "eA==", "tls.key": "eA=="}});
        assert_eq!(trigger(&c, Some(&secret)), None);
        secret["metadata"]["annotations"]["cert-manager.io/alt-names"] = json!("a.example");
        assert_eq!(
            trigger(&c, Some(&secret)),
            Some((
                "SecretMismatch",
                "Existing issued Secret is not up to date for spec: [spec.dnsNames]".into()
            ))
        );
        secret["metadata"]["annotations"]["cert-manager.io/issuer-name"] = json!("other");
        assert_eq!(trigger(&c, Some(&secret)).unwrap().0, "IncorrectIssuer");
        secret["data"] = json!({"tls.key": "eA=="});
        assert_eq!(trigger(&c, Some(&secret)).unwrap().0, "MissingData");
    }
}
