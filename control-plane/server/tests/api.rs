//! API conformance, run unchanged on both backends: embedded (SQLite + in-process bus) and
//! PostgreSQL + NATS JetStream.

mod common;

use common::Harness;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;

async fn conformance(h: &Harness) {
    crud(h).await;
    filters_and_pages(h).await;
    bad_requests(h).await;
    no_controller_means_pending(h).await;
    conflicts_and_two_phase_delete(h).await;
    optimistic_concurrency(h).await;
    secrets(h).await;
    misc_endpoints(h).await;
}

async fn crud(h: &Harness) {
    let def = h.seed_definition("crud-web").await;
    assert!(
        def > (1u64 << 53),
        "IDs are 64-bit and beyond f64 precision: {def}"
    );
    let r = h
        .post(
            "workload-instances",
            json!({"Name": "crud-web", "WorkloadDefinitionID": def}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["Type"], "WorkloadInstance");
    assert_eq!(
        r.body["Status"],
        json!({"code": 201, "message": "Created", "error": ""})
    );
    assert!(r.body["Data"].is_array());
    let inst = r.id();
    assert_eq!(r.object()["Reconciled"], false);
    assert_eq!(r.object()["ResourceVersion"], 1);
    assert_eq!(
        r.object()["WorkloadDefinitionID"].as_u64(),
        Some(def),
        "IDs round-trip exactly"
    );

    let g = h.get(&format!("/v0/workload-instances/{inst}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.body["Meta"],
        json!({"Page": 1, "Size": 1, "TotalCount": 1})
    );
    assert_eq!(g.object()["Name"], "crud-web");

    // PATCH a status field: no spec change, version moves.
    let p = h
        .patch(
            "workload-instances",
            inst,
            json!({"Status": "Healthy", "StatusReason": "all replicas ready"}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.object()["ResourceVersion"], 2);
    assert_eq!(p.object()["Status"], "Healthy");

    // PUT replaces the spec and keeps status fields.
    let put = h
        .call(
            Method::PUT,
            &format!("/v0/workload-definitions/{def}"),
            Some(json!({"Name": "crud-web", "YAMLDocument": "kind: Secret\n"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.object()["YAMLDocument"], "kind: Secret\n");
    assert_eq!(put.object()["Reconciled"], false);

    // Non-reconciled kinds are removed at once.
    let port_def = h
        .post("gateway-definitions", json!({"Name": "crud-gw"}))
        .await;
    let port = h
        .post(
            "gateway-http-ports",
            json!({"Port": 443, "GatewayDefinitionID": port_def.id()}),
        )
        .await;
    assert_eq!(port.status, 201, "{}", port.body);
    let d = h.delete("gateway-http-ports", port.id()).await;
    assert_eq!(d.status, 200);
    assert_eq!(
        h.get(&format!("/v0/gateway-http-ports/{}", port.id()))
            .await
            .status,
        404
    );
}

async fn filters_and_pages(h: &Harness) {
    let def = h.seed_definition("page-def").await;
    let other = h.seed_definition("page-other").await;
    for i in 0..120 {
        let d = if i % 4 == 0 { other } else { def };
        let r = h
            .post(
                "workload-instances",
                json!({"Name": format!("page-{i:03}"), "WorkloadDefinitionID": d}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut seen = HashSet::new();
    for page in 1..=3 {
        let r = h
            .get(&format!(
                "/v0/workload-instances?workloaddefinitionid={def}&page={page}&size=50"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["Meta"]["TotalCount"], 90);
        assert_eq!(r.body["Meta"]["Page"], page);
        let items = r.body["Data"].as_array().unwrap();
        assert_eq!(items.len(), [50, 40, 0][page as usize - 1]);
        for it in items {
            assert_eq!(it["WorkloadDefinitionID"].as_u64(), Some(def));
            assert!(
                seen.insert(it["ID"].as_u64().unwrap()),
                "no object twice across pages"
            );
        }
    }
    assert_eq!(seen.len(), 90);
    // Default page size is 50.
    let r = h
        .get(&format!(
            "/v0/workload-instances?workloaddefinitionid={other}"
        ))
        .await;
    assert_eq!(r.body["Meta"]["TotalCount"], 30);
    assert_eq!(r.body["Meta"]["Size"], 50);
    // Name, bool filters and combinations.
    let r = h.get("/v0/workload-instances?name=page-007").await;
    assert_eq!(r.body["Data"].as_array().unwrap().len(), 1);
    let r = h
        .get(&format!(
            "/v0/workload-instances?workloaddefinitionid={other}&name=page-004"
        ))
        .await;
    assert_eq!(r.body["Meta"]["TotalCount"], 1);
    let r = h
        .get(&format!(
            "/v0/workload-instances?workloaddefinitionid={def}&name=page-004"
        ))
        .await;
    assert_eq!(r.body["Meta"]["TotalCount"], 0);
    assert_eq!(r.body["Data"], json!([]));
    let r = h
        .get("/v0/workload-instances?reconciled=false&size=1")
        .await;
    assert!(r.body["Meta"]["TotalCount"].as_u64().unwrap() >= 120);
    // Filter errors name the filter.
    let r = h
        .get("/v0/workload-instances?workloaddefinitionid=abc")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("workloaddefinitionid"), "{}", r.error());
    let r = h.get("/v0/workload-instances?colour=blue").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("colour"), "{}", r.error());
    assert_eq!(h.get("/v0/workload-instances?size=0").await.status, 400);
    assert_eq!(h.get("/v0/workload-instances?page=x").await.status, 400);
}

async fn bad_requests(h: &Harness) {
    let account = h
        .post(
            "aws-accounts",
            json!({"Name": "bad-requests", "AccountID": "111122223333", "AccessKeyID": "AKIAEXAMPLEKEY", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG"}),
        )
        .await;
    assert_eq!(account.status, 201, "{}", account.body);
    let account = account.id();
    // A valid database definition but for one field.
    let rds = |field: &str, value: Value| {
        let mut body = json!({"Name": "db", "AwsAccountID": account, "Engine": "mariadb",
            "EngineVersion": "10.11", "DatabaseName": "d", "DatabasePort": 3306, "StorageGb": 20,
            "MachineSize": "XSmall", "WorkloadSecretName": "s"});
        body[field] = value;
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("workload-definitions", json!({"Name": "x"}), "YAMLDocument"),
        (
            "workload-definitions",
            json!({"Name": "x", "YAMLDocument": "a", "ID": 5}),
            "ID",
        ),
        (
            "workload-definitions",
            json!({"Name": "x", "YAMLDocument": "a", "CreatedAt": "2020-01-01T00:00:00Z"}),
            "CreatedAt",
        ),
        (
            "workload-definitions",
            json!({"Name": "x", "YAMLDocument": "a", "Colour": "red"}),
            "Colour",
        ),
        (
            "workload-definitions",
            json!({"Name": 7, "YAMLDocument": "a"}),
            "Name",
        ),
        (
            "workload-definitions",
            json!({"Name": "", "YAMLDocument": "a"}),
            "Name",
        ),
        ("workload-definitions", json!({"YAMLDocument": "a"}), "Name"),
        (
            "workload-instances",
            json!({"Name": "x", "WorkloadDefinitionID": -1}),
            "WorkloadDefinitionID",
        ),
        (
            "workload-instances",
            json!({"Name": "x", "WorkloadDefinitionID": 12345}),
            "WorkloadDefinitionID",
        ),
        (
            "kubernetes-runtime-definitions",
            json!({"Name": "x", "InfraProvider": "kind", "HighAvailability": "yes"}),
            "HighAvailability",
        ),
        // Managed services: the engine, its version and the machine size come from upstream's
        // supported lists, so a typo is refused here rather than failing later in AWS.
        (
            "aws-relational-database-definitions",
            rds("Engine", json!("oracle")),
            "Engine",
        ),
        (
            "aws-relational-database-definitions",
            rds("EngineVersion", json!("9.1")),
            "EngineVersion",
        ),
        (
            "aws-relational-database-definitions",
            rds("MachineSize", json!("Huge")),
            "MachineSize",
        ),
        (
            "aws-relational-database-definitions",
            rds("DatabasePort", json!(70000)),
            "DatabasePort",
        ),
    ];
    for (plural, body, field) in cases {
        let r = h.post(plural, body.clone()).await;
        assert_eq!(r.status, 400, "{plural} {body}: {}", r.body);
        assert!(
            r.error().contains(field),
            "{plural} {body}: error {:?} should name {field}",
            r.error()
        );
        assert_eq!(r.body["Data"], Value::Null);
        assert_eq!(
            r.body["Meta"],
            json!({"Page": 0, "Size": 0, "TotalCount": 0})
        );
    }
    // …and the same body with every field right is taken.
    let ok = h
        .post(
            "aws-relational-database-definitions",
            rds("Name", json!("good-db")),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let r = h.raw(Method::POST, "/v0/workload-definitions", "").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("empty"), "{}", r.error());
    let r = h
        .raw(Method::POST, "/v0/workload-definitions", "{\"Name\": ")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("malformed JSON"), "{}", r.error());
    // Unknown-field hint.
    let r = h
        .post(
            "workload-instances",
            json!({"Name": "x", "KubernetesRuntime": 1}),
        )
        .await;
    assert!(
        r.error()
            .contains("did you mean \"KubernetesRuntimeInstanceID\""),
        "{}",
        r.error()
    );
    // 404s.
    assert_eq!(h.get("/v0/workload-definitions/42").await.status, 404);
    assert_eq!(
        h.patch("workload-definitions", 42, json!({"YAMLDocument": "b"}))
            .await
            .status,
        404
    );
    assert_eq!(h.delete("workload-definitions", 42).await.status, 404);
    assert_eq!(h.get("/v0/no-such-kind").await.status, 404);
    assert_eq!(
        h.get("/v0/workload-definitions/notanumber").await.status,
        400
    );
    // Immutable field.
    let krd = h
        .post(
            "kubernetes-runtime-definitions",
            json!({"Name": "imm", "InfraProvider": "kind"}),
        )
        .await;
    let kri = h
        .post(
            "kubernetes-runtime-instances",
            json!({"Name": "imm", "Location": "Local", "KubernetesRuntimeDefinitionID": krd.id()}),
        )
        .await;
    assert_eq!(kri.status, 201, "{}", kri.body);
    let r = h
        .patch(
            "kubernetes-runtime-instances",
            kri.id(),
            json!({"Location": "NorthAmerica:NewYork"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("Location"));
}

/// Objects of a kind that no live controller serves are `Pending` with the reason, not
/// `Reconciling` forever; a registration changes that at once.
async fn no_controller_means_pending(h: &Harness) {
    let hd = h
        .post(
            "helm-workload-definitions",
            json!({"Name": "pend", "Repo": "https://charts.example.com", "Chart": "redis"}),
        )
        .await;
    assert_eq!(hd.status, 201, "{}", hd.body);
    assert_eq!(hd.object()["Status"], "Pending");
    assert_eq!(
        hd.object()["StatusReason"],
        "no controller for HelmWorkloadDefinition is running in this control plane; this release has no controller for it"
    );
    // Never touched by a controller, and none serves it: a delete has nothing to wait for.
    let r = h.delete("helm-workload-definitions", hd.id()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.get(&format!("/v0/helm-workload-definitions/{}", hd.id()))
            .await
            .status,
        404
    );
    // A live registration for the kind: new objects are not Pending, and deletes are two-phase.
    let reg = h
        .register_controller("test-helm", &["HelmWorkloadDefinition"])
        .await;
    let hd = h
        .post(
            "helm-workload-definitions",
            json!({"Name": "pend2", "Repo": "https://charts.example.com", "Chart": "redis"}),
        )
        .await;
    assert_eq!(hd.status, 201, "{}", hd.body);
    assert!(hd.object()["Status"].is_null(), "{}", hd.body);
    let r = h.delete("helm-workload-definitions", hd.id()).await;
    assert!(r.object()["DeletionScheduled"].is_string(), "{}", r.body);
    // The registration goes: the pending deletion says what it waits for (within a sweep).
    assert_eq!(h.delete("controllers", reg).await.status, 200);
    let mut reason = String::new();
    for _ in 0..100 {
        let g = h
            .get(&format!("/v0/helm-workload-definitions/{}", hd.id()))
            .await;
        reason = g.object()["StatusReason"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if g.object()["Status"] == "Pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        reason.starts_with(
            "deletion waits for a controller: no controller for HelmWorkloadDefinition"
        ),
        "{reason}"
    );
}

async fn conflicts_and_two_phase_delete(h: &Harness) {
    // This test plays the workload controller, so it registers as one.
    let reg = h
        .register_controller("test-workload", &["WorkloadDefinition", "WorkloadInstance"])
        .await;
    let def = h.seed_definition("tp-web").await;
    let dup = h
        .post(
            "workload-definitions",
            json!({"Name": "tp-web", "YAMLDocument": "x"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert!(dup.error().contains("Name"), "{}", dup.error());
    let inst = h
        .post(
            "workload-instances",
            json!({"Name": "tp-web", "WorkloadDefinitionID": def}),
        )
        .await
        .id();
    // A definition with instances cannot be deleted.
    let r = h.delete("workload-definitions", def).await;
    assert_eq!(r.status, 409);
    // …and the refusal names what to delete first.
    assert!(
        r.error()
            .contains("1 workload-instances (tp-web; via WorkloadDefinitionID)"),
        "{}",
        r.error()
    );
    // Two-phase: the first DELETE schedules and keeps the object.
    let r = h.delete("workload-instances", inst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.object()["DeletionScheduled"].is_string());
    let g = h.get(&format!("/v0/workload-instances/{inst}")).await;
    assert_eq!(g.status, 200);
    // A second DELETE while pending is a conflict.
    let r = h.delete("workload-instances", inst).await;
    assert_eq!(r.status, 409);
    assert!(r.error().contains("pending"), "{}", r.error());
    // The controller acknowledges, then confirms: the row goes.
    let r = h
        .patch(
            "workload-instances",
            inst,
            json!({"DeletionAcknowledged": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = h
        .patch(
            "workload-instances",
            inst,
            json!({"DeletionConfirmed": "2026-01-01T00:00:01Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.get(&format!("/v0/workload-instances/{inst}"))
            .await
            .status,
        404
    );
    // Now the definition can go (two-phase too), and its resource definitions cascade.
    let wrd = h
        .post(
            "workload-resource-definitions",
            json!({"JSONDefinition": {"kind": "ConfigMap"}, "WorkloadDefinitionID": def}),
        )
        .await;
    assert_eq!(wrd.status, 201, "{}", wrd.body);
    assert_eq!(h.delete("workload-definitions", def).await.status, 200);
    assert_eq!(
        h.patch(
            "workload-definitions",
            def,
            json!({"DeletionConfirmed": "2026-01-01T00:00:01Z"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        h.get(&format!("/v0/workload-definitions/{def}"))
            .await
            .status,
        404
    );
    assert_eq!(
        h.get(&format!("/v0/workload-resource-definitions/{}", wrd.id()))
            .await
            .status,
        404
    );
    assert_eq!(h.delete("controllers", reg).await.status, 200);
}

async fn optimistic_concurrency(h: &Harness) {
    let def = h.seed_definition("occ").await;
    let stale = h
        .patch(
            "workload-definitions",
            def,
            json!({"YAMLDocument": "v2", "ResourceVersion": 1}),
        )
        .await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    let r = h
        .patch(
            "workload-definitions",
            def,
            json!({"YAMLDocument": "v3", "ResourceVersion": 1}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.error().contains("ResourceVersion"), "{}", r.error());
    let r = h
        .call(
            Method::PUT,
            &format!("/v0/workload-definitions/{def}"),
            Some(json!({"Name": "occ", "YAMLDocument": "v3", "ResourceVersion": 1})),
        )
        .await;
    assert_eq!(r.status, 409);

    // 50 concurrent PATCHes with the same version: exactly one wins.
    let version = h
        .get(&format!("/v0/workload-definitions/{def}"))
        .await
        .object()["ResourceVersion"]
        .as_i64()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = h.http.clone();
        let url = format!("{}/v0/workload-definitions/{def}", h.base);
        tasks.push(tokio::spawn(async move {
            http.patch(url)
                .json(&json!({"YAMLDocument": format!("race-{i}"), "ResourceVersion": version}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    let mut conflict = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            200 => ok += 1,
            409 => conflict += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, conflict), (1, 49));
    let after = h.get(&format!("/v0/workload-definitions/{def}")).await;
    assert_eq!(
        after.object()["ResourceVersion"].as_i64(),
        Some(version + 1)
    );
}

async fn secrets(h: &Harness) {
    let r = h
        .post("aws-accounts", json!({"Name": "sec", "AccountID": "111122223333", "AccessKeyID": "AKIAEXAMPLEKEY", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.object()["SecretAccessKey"], threeport_api::REDACTED);
    let id = r.id();
    let g = h.get(&format!("/v0/aws-accounts/{id}")).await;
    assert_eq!(g.object()["AccessKeyID"], threeport_api::REDACTED);
    let g = h.get(&format!("/v0/aws-accounts/{id}?reveal=true")).await;
    assert_eq!(g.object()["SecretAccessKey"], "wJalrXUtnFEMI/K7MDENG");
    // Writing the redacted marker back keeps the secret.
    let mut obj = h
        .get(&format!("/v0/aws-accounts/{id}"))
        .await
        .object()
        .clone();
    for k in ["ID", "CreatedAt", "UpdatedAt"] {
        obj.as_object_mut().unwrap().remove(k);
    }
    obj["DefaultRegion"] = json!("us-east-1");
    let put = h
        .call(Method::PUT, &format!("/v0/aws-accounts/{id}"), Some(obj))
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let g = h.get(&format!("/v0/aws-accounts/{id}?reveal=true")).await;
    assert_eq!(g.object()["SecretAccessKey"], "wJalrXUtnFEMI/K7MDENG");
    assert_eq!(g.object()["DefaultRegion"], "us-east-1");
    // Secrets are never filters.
    assert_eq!(
        h.get("/v0/aws-accounts?secretaccesskey=x").await.status,
        400
    );
}

async fn misc_endpoints(h: &Harness) {
    let v = h.get("/version").await;
    assert!(v.body["Version"].is_string());
    let v = h.get("/workload-instances/versions").await;
    assert_eq!(
        v.body,
        json!({"API": "WorkloadInstance", "Versions": ["v0"]})
    );
    assert_eq!(h.get("/livez").await.status, 200);
    assert_eq!(h.get("/readyz").await.status, 200);
    let doc = h.get("/openapi.json").await;
    assert_eq!(doc.body["openapi"], "3.1.0");
    for kind in threeport_api::KINDS.iter() {
        assert!(
            doc.body["paths"][format!("/v0/{}", kind.plural)].is_object(),
            "{} in OpenAPI",
            kind.plural
        );
        assert!(doc.body["components"]["schemas"][kind.name].is_object());
    }
    // A body over the limit is refused with 413, in the envelope.
    let (status, env) = h
        .over_limit_status("POST", "/v0/workload-definitions")
        .await;
    assert_eq!(status, 413);
    assert_eq!(env["Status"]["code"], 413, "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sqlite_embedded() {
    let h = Harness::sqlite().await;
    conformance(&h).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_postgres_nats() {
    let h = Harness::postgres_nats().await;
    conformance(&h).await;
    h.server.shutdown().await;
}
