//! The controller runtime owns the lifecycle protocol. A reconciler written only as `apply` and
//! `cleanup`, which writes none of the bookkeeping, still gets `CreationAcknowledged`,
//! `Reconciled`, `CreationConfirmed`, `DeletionAcknowledged`, `DeletionConfirmed` (the row goes)
//! and, when it fails for good, `CreationFailed` with the reason and an Event. And an object of a
//! kind no controller serves is `Pending` until such a controller starts, then leaves `Pending`
//! by itself.

mod common;

use common::Harness;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use threeport_api::kinds::{HELM_WORKLOAD_DEFINITION, HELM_WORKLOAD_INSTANCE};
use threeport_api::{Client, Kind};
use threeport_controllers::runtime::{Options, Outcome, ReconcileError, Reconciler};
use tokio_util::sync::CancellationToken;

/// A Helm controller stand-in: records what it was asked, writes only its own status.
#[derive(Default)]
struct FakeHelm {
    applied: AtomicUsize,
    cleaned: AtomicUsize,
    /// `ValuesDocument` of every apply of the object named "changes".
    seen: std::sync::Mutex<Vec<String>>,
}

impl Reconciler for FakeHelm {
    fn name(&self) -> &'static str {
        "fake-helm"
    }
    fn kinds(&self) -> Vec<&'static Kind> {
        vec![HELM_WORKLOAD_DEFINITION, HELM_WORKLOAD_INSTANCE]
    }
    async fn apply(
        &self,
        api: &Client,
        kind: &'static Kind,
        o: Value,
    ) -> Result<Outcome, ReconcileError> {
        self.applied.fetch_add(1, Ordering::SeqCst);
        if o["Name"] == "changes" {
            let values = o["ValuesDocument"].as_str().unwrap_or("").to_string();
            let first = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(values);
                seen.len() == 1
            };
            if first {
                // Someone changes the spec while this reconcile is still running.
                api.patch(
                    kind,
                    o["ID"].as_u64().unwrap(),
                    &json!({"ValuesDocument": "v: 2"}),
                )
                .await?;
            }
        }
        if o["ReleaseNamespace"] == "broken" {
            return Err(ReconcileError::Permanent(
                "chart redis 0.0.0 not found in https://charts.example.com".into(),
            ));
        }
        if std::ptr::eq(kind, HELM_WORKLOAD_INSTANCE) {
            return Ok(Outcome::DoneWith(
                json!({"Status": "Healthy", "StatusReason": "release deployed"}),
            ));
        }
        Ok(Outcome::Done)
    }
    async fn cleanup(
        &self,
        _api: &Client,
        _kind: &'static Kind,
        _o: Value,
    ) -> Result<Outcome, ReconcileError> {
        self.cleaned.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::Done)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_of_apply_and_cleanup_gets_the_bookkeeping_from_the_runtime() {
    let h = Harness::sqlite().await;
    // 1. No controller serves Helm kinds yet: both objects are Pending, and say why.
    let def = h
        .post(
            "helm-workload-definitions",
            json!({"Name": "redis", "Repo": "https://charts.example.com", "Chart": "redis"}),
        )
        .await;
    assert_eq!(def.status, 201, "{}", def.body);
    let inst = h
        .post(
            "helm-workload-instances",
            json!({"Name": "redis", "HelmWorkloadDefinitionID": def.id()}),
        )
        .await;
    assert_eq!(inst.object()["Status"], "Pending");
    assert_eq!(
        inst.object()["StatusReason"],
        "no controller for HelmWorkloadInstance is running in this control plane; this release has no controller for it"
    );
    let broken = h
        .post(
            "helm-workload-instances",
            json!({"Name": "broken", "HelmWorkloadDefinitionID": def.id(), "ReleaseNamespace": "broken"}),
        )
        .await;
    assert_eq!(broken.object()["Status"], "Pending");

    // 2. The controller starts: its registration shows, and the objects leave Pending by
    // themselves (the runtime's resync), with the bookkeeping written for the reconciler.
    let stop = CancellationToken::new();
    let bus = h.server.local_bus.as_ref().unwrap().forward(stop.clone());
    let fake = Arc::new(FakeHelm::default());
    let ctl = tokio::spawn(threeport_controllers::run_registered(
        fake.clone(),
        Client::new(&h.base, None).unwrap(),
        threeport_controllers::Notifications::Local(bus),
        Options {
            backoff_base: Duration::from_millis(100),
            ..Options::default()
        },
        stop.clone(),
    ));
    let d = h
        .wait_for(
            "helm-workload-definitions",
            def.id(),
            "reconciled",
            20,
            |o| o["Reconciled"] == true,
        )
        .await;
    assert!(d["CreationAcknowledged"].is_string(), "{d}");
    assert!(d["CreationConfirmed"].is_string(), "{d}");
    assert!(
        d["Status"].is_null(),
        "the runtime's own status is cleared: {d}"
    );
    let i = h
        .wait_for("helm-workload-instances", inst.id(), "Healthy", 20, |o| {
            o["Reconciled"] == true
        })
        .await;
    assert_eq!(i["Status"], "Healthy", "{i}");
    assert_eq!(i["StatusReason"], "release deployed");
    assert!(i["CreationAcknowledged"].is_string() && i["CreationConfirmed"].is_string());
    assert!(i["CreationFailed"].is_null());
    let regs = h.get("/v0/controllers").await;
    let reg = regs.body["Data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Controllers"] == json!(["fake-helm"]))
        .cloned()
        .expect("the controller registered");
    assert_eq!(
        reg["Kinds"],
        json!(["HelmWorkloadDefinition", "HelmWorkloadInstance"])
    );
    assert_eq!(reg["Status"], "Running");

    // A spec change made while a reconcile ran is reconciled again, not lost.
    let ch = h
        .post(
            "helm-workload-instances",
            json!({"Name": "changes", "HelmWorkloadDefinitionID": def.id(), "ValuesDocument": "v: 1"}),
        )
        .await;
    assert_eq!(ch.status, 201, "{}", ch.body);
    let c = h
        .wait_for("helm-workload-instances", ch.id(), "reconciled", 20, |o| {
            o["Reconciled"] == true
        })
        .await;
    assert_eq!(c["ValuesDocument"], "v: 2");
    assert_eq!(
        *fake.seen.lock().unwrap(),
        ["v: 1", "v: 2"],
        "applied again with the change"
    );

    // 3. A permanent failure ends visible: Failed with the reason, CreationFailed, an Event.
    let b = h
        .wait_for("helm-workload-instances", broken.id(), "Failed", 20, |o| {
            o["Status"] == "Failed"
        })
        .await;
    assert!(b["CreationFailed"].is_string(), "{b}");
    assert_eq!(
        b["StatusReason"],
        "chart redis 0.0.0 not found in https://charts.example.com"
    );
    let events = h.get(&format!("/v0/events?objectid={}", broken.id())).await;
    let ev = &events.body["Data"][0];
    assert_eq!(ev["Reason"], "ReconcileFailed", "{}", events.body);
    assert_eq!(ev["ReportingController"], "fake-helm");

    // 4. Delete: two-phase, and the runtime acknowledges and confirms; the row goes.
    let r = h.delete("helm-workload-instances", inst.id()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.object()["DeletionScheduled"].is_string());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h
        .get(&format!("/v0/helm-workload-instances/{}", inst.id()))
        .await
        .status
        != 404
    {
        assert!(tokio::time::Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.cleaned.load(Ordering::SeqCst), 1);

    // 5. A clean stop removes the registration; new objects are Pending again.
    stop.cancel();
    ctl.await.unwrap().unwrap();
    let regs = h.get("/v0/controllers").await;
    assert_eq!(regs.body["Meta"]["TotalCount"], 0, "{}", regs.body);
    let later = h
        .post(
            "helm-workload-instances",
            json!({"Name": "later", "HelmWorkloadDefinitionID": def.id()}),
        )
        .await;
    assert_eq!(later.object()["Status"], "Pending", "{}", later.body);
    h.server.shutdown().await;
}

/// A controller that dies without a word is shown as gone, and what it served goes back to
/// Pending, within 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_controller_is_shown_gone_and_its_kinds_pending() {
    let h = Harness::sqlite().await;
    let stale = (time::OffsetDateTime::now_utc() - time::Duration::seconds(15))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Last heard from 15 s ago: still live for a few seconds.
    let reg = h
        .post(
            "controllers",
            json!({"Name": "crashed-1", "Controllers": ["fake-helm"],
                   "Kinds": ["HelmWorkloadDefinition"], "HeartbeatAt": stale, "Status": "Running"}),
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    let def = h
        .post(
            "helm-workload-definitions",
            json!({"Name": "redis", "Repo": "https://charts.example.com", "Chart": "redis"}),
        )
        .await;
    assert!(
        def.object()["Status"].is_null(),
        "served at create: {}",
        def.body
    );
    // wait_for gives up after 20 s: 35 s after the last heartbeat at most.
    let r = h
        .wait_for("controllers", reg.id(), "Gone", 20, |o| {
            o["Status"] == "Gone"
        })
        .await;
    assert!(
        r["StatusReason"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat since"),
        "{r}"
    );
    h.wait_for("helm-workload-definitions", def.id(), "Pending", 20, |o| {
        o["Status"] == "Pending"
    })
    .await;
    h.server.shutdown().await;
}

/// A reconciler that waits (`RequeueAfter`) many times, then hits one retryable error, then
/// succeeds. Waiting is not failing: with two attempts allowed, the object still ends
/// reconciled, whether notifications come from the in-process bus or from JetStream (which
/// counts every delivery, waits included).
#[derive(Default)]
struct Patient {
    calls: AtomicUsize,
}

const WAITS: usize = 6;

impl Reconciler for Patient {
    fn name(&self) -> &'static str {
        "patient-helm"
    }
    fn kinds(&self) -> Vec<&'static Kind> {
        vec![HELM_WORKLOAD_DEFINITION, HELM_WORKLOAD_INSTANCE]
    }
    async fn apply(
        &self,
        _api: &Client,
        _kind: &'static Kind,
        _o: Value,
    ) -> Result<Outcome, ReconcileError> {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            n if n < WAITS => Ok(Outcome::RequeueAfter(Duration::from_millis(1))),
            n if n == WAITS => Err(ReconcileError::Retryable("the cluster blinked".into())),
            _ => Ok(Outcome::Done),
        }
    }
    async fn cleanup(
        &self,
        _api: &Client,
        _kind: &'static Kind,
        _o: Value,
    ) -> Result<Outcome, ReconcileError> {
        Ok(Outcome::Done)
    }
}

async fn waiting_does_not_use_up_attempts(h: Harness, jetstream: bool) {
    let def = h
        .post(
            "helm-workload-definitions",
            json!({"Name": "patient", "Repo": "https://charts.example.com", "Chart": "redis"}),
        )
        .await;
    assert_eq!(def.status, 201, "{}", def.body);
    let stop = CancellationToken::new();
    let notifications = if jetstream {
        threeport_controllers::Notifications::JetStream(
            async_nats::connect(h.nats.as_ref().unwrap().url())
                .await
                .unwrap(),
        )
    } else {
        threeport_controllers::Notifications::Local(
            h.server.local_bus.as_ref().unwrap().forward(stop.clone()),
        )
    };
    let patient = Arc::new(Patient::default());
    let ctl = tokio::spawn(threeport_controllers::run_registered(
        patient.clone(),
        Client::new(&h.base, None).unwrap(),
        notifications,
        Options {
            backoff_base: Duration::from_millis(50),
            max_attempts: 2,
            ..Options::default()
        },
        stop.clone(),
    ));
    let d = h
        .wait_for(
            "helm-workload-definitions",
            def.id(),
            "reconciled after its waits",
            30,
            |o| o["Reconciled"] == true,
        )
        .await;
    assert!(d["CreationFailed"].is_null(), "{d}");
    assert!(patient.calls.load(Ordering::SeqCst) > WAITS, "{d}");
    stop.cancel();
    ctl.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_does_not_use_up_attempts_on_the_in_process_bus() {
    waiting_does_not_use_up_attempts(Harness::sqlite().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_does_not_use_up_attempts_on_jetstream() {
    waiting_does_not_use_up_attempts(Harness::postgres_nats().await, true).await;
}
