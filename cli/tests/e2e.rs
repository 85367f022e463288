//! End to end: the real `tptctl` binary, a real `up --provider local` in a temporary HOME, and
//! the same apply/get flow against a control plane on PostgreSQL + NATS.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use threeport_testkit::Tptctl;

/// The sample set (every kind) copied somewhere it can be edited.
fn samples_copy(dir: &Path) -> PathBuf {
    let dst = dir.join("samples");
    copy_dir(&repo().join("testdata/samples"), &dst);
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn apply_and_check(env: &Tptctl, samples: &str) {
    let r = env.ok(&["apply", "-f", samples, "-R"]);
    let lines = r.lines();
    assert!(lines.len() >= 30, "{}", r.stdout);
    assert!(
        lines.iter().all(|l| l.ends_with(" created")),
        "{}",
        r.stdout
    );
    for label in [
        "aws-account/default-account",
        "workload-definition/web",
        "workload-instance/web",
        "gateway-http-port/web-gateway-443",
        "terraform-instance/s3-logs",
    ] {
        assert!(
            lines.contains(&format!("{label} created").as_str()),
            "{label} in\n{}",
            r.stdout
        );
    }
    // Dependency order: runtime before the workload that uses it, definition before instance.
    let pos = |l: &str| lines.iter().position(|x| x.starts_with(l)).unwrap();
    assert!(pos("kubernetes-runtime-instance/dev-0") < pos("workload-instance/web"));
    assert!(pos("workload-definition/web") < pos("workload-instance/web"));
    // Re-applying changes nothing.
    let again = env.ok(&["apply", "-f", samples, "-R"]);
    assert!(
        again.lines().iter().all(|l| l.ends_with(" unchanged")),
        "{}",
        again.stdout
    );
    assert_eq!(again.lines().len(), lines.len());
}

/// Every object of a kind that no controller in this control plane serves says so: `Pending`
/// with the reason, in `get -o json`, `get`, `describe` and `why`.
fn pending_where_no_controller_runs(env: &Tptctl) {
    let mut seen = Vec::new();
    for kind in threeport_api::KINDS.iter() {
        if !kind.reconciled || kind.controller().is_some() {
            continue;
        }
        let json = env.ok(&["get", kind.plural, "-o", "json"]);
        let objects: Vec<Value> = match serde_json::from_str(&json.stdout) {
            Ok(Value::Array(a)) => a,
            Ok(one @ Value::Object(_)) => vec![one],
            _ => continue,
        };
        let reason = format!(
            "no controller for {} is running in this control plane; this release has no controller for it",
            kind.name
        );
        for o in &objects {
            assert_eq!(o["Status"], "Pending", "{}: {o}", kind.name);
            assert_eq!(o["StatusReason"], reason.as_str(), "{}: {o}", kind.name);
        }
        if !objects.is_empty() {
            seen.push(kind.name);
        }
    }
    for k in [
        "HelmWorkloadInstance",
        "TerraformInstance",
        "ObservabilityStackInstance",
    ] {
        assert!(seen.contains(&k), "the samples have a {k}: {seen:?}");
    }
    let table = env.ok(&["get", "helm-workload-instances"]);
    assert!(table.lines()[1].contains("Pending"), "{}", table.stdout);
    let d = env.ok(&["describe", "helm-workload-instance", "wordpress"]);
    let reason = "no controller for HelmWorkloadInstance is running in this control plane; this release has no controller for it";
    assert!(
        d.stdout
            .lines()
            .any(|l| l.starts_with("Status:") && l.ends_with(" Pending")),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout
            .lines()
            .any(|l| l.starts_with("StatusReason:") && l.ends_with(reason)),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout.contains(&format!("Why:\n  {reason}")),
        "{}",
        d.stdout
    );
    let w = env.ok(&["why", "helm-workload-instance", "wordpress"]);
    assert_eq!(
        w.lines()[..3],
        [
            "helm-workload-instance/wordpress: ○ Pending",
            format!("  reason: {reason}").as_str(),
            format!("  cause:  {reason}").as_str(),
        ],
        "{}",
        w.stdout
    );
    // The served kinds are not Pending: the local control plane runs every controller of this
    // release, in the registry's order, and it registered.
    let ctl = env.ok(&["get", "controllers"]);
    assert!(ctl.lines()[0].starts_with("NAME") && ctl.lines()[0].contains("CONTROLLERS"));
    let every = threeport_api::kinds::controllers().join(",");
    assert!(
        ctl.lines()[1..]
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some(every.as_str()) && l.contains("Running")),
        "expected one Running process serving {every}:\n{}",
        ctl.stdout
    );
}

fn get_forms(env: &Tptctl) {
    let t = env.ok(&["get", "workload-instances"]);
    let header = t.lines()[0];
    for col in [
        "NAME",
        "WORKLOAD-DEFINITION",
        "KUBERNETES-RUNTIME-INSTANCE",
        "STATUS",
        "AGE",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        t.stdout.contains("api-staging") && t.stdout.contains("dev-0"),
        "default runtime used:\n{}",
        t.stdout
    );
    let wide = env.ok(&["get", "workloads", "-o", "wide"]);
    assert!(wide.lines()[0].contains("ID"));
    let json = env.ok(&["get", "wi", "web", "-o", "json"]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["Name"], "web");
    let yaml = env.ok(&["get", "aws-accounts", "-o", "yaml"]);
    assert!(
        yaml.stdout.contains("SecretAccessKey: '*** redacted ***'"),
        "{}",
        yaml.stdout
    );
    assert!(
        !yaml.stdout.contains("wJalrXUtnFEMI"),
        "secrets never printed"
    );
    // Listed in creation (ID) order; apply writes independent objects concurrently, so that
    // order is not the file's.
    let names = env.ok(&["get", "workload-definitions", "-o", "name"]);
    let mut names = names.lines();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["workload-definition/api", "workload-definition/web"]
    );
    let missing = env.run(&["get", "workload-definitions", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not found"));
    let bad_kind = env.run(&["get", "workloadz"]);
    assert_eq!(bad_kind.code, 1);
    assert!(bad_kind.stderr.contains("unknown kind"));
}

#[test]
fn local_control_plane_lifecycle() {
    let env = tptctl();
    let took = env.up_local("e2e");
    eprintln!("up --provider local took {took:?}");
    // Mode 0600: the config holds keys.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(env.config_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let again = env.ok(&["up", "--provider", "local", "--name", "e2e"]);
    assert!(again.stderr.contains("already running"), "{}", again.stderr);
    let v = env.ok(&["version"]);
    assert!(
        v.stdout.contains("Client: ") && v.stdout.contains("Server: "),
        "{}",
        v.stdout
    );
    let cps = env.ok(&["config", "get-control-planes"]);
    assert!(cps.stdout.contains("e2e") && cps.stdout.contains("*"));
    assert_eq!(
        env.ok(&["config", "current-control-plane"]).stdout.trim(),
        "e2e"
    );

    let work = tempfile::tempdir().unwrap();
    let samples = samples_copy(work.path());
    let samples = samples.to_str().unwrap();
    // Dry run writes nothing.
    let dry = env.ok(&["apply", "-f", samples, "-R", "--dry-run"]);
    assert!(
        dry.lines().iter().all(|l| l.ends_with("created (dry run)")),
        "{}",
        dry.stdout
    );
    assert!(
        env.ok(&["get", "workload-definitions", "-o", "name"])
            .stdout
            .is_empty()
    );

    apply_and_check(&env, samples);
    get_forms(&env);
    pending_where_no_controller_runs(&env);

    // A change to the manifest reconfigures exactly the definition that uses it… and `api`,
    // which shares the manifest.
    let manifest = Path::new(samples).join("web-manifest.yaml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("nginx:1.27", "nginx:1.28");
    std::fs::write(&manifest, text).unwrap();
    let changed = env.ok(&["apply", "-f", samples, "-R"]);
    let configured: Vec<&str> = changed
        .lines()
        .into_iter()
        .filter(|l| l.ends_with(" configured"))
        .collect();
    assert_eq!(
        configured,
        vec![
            "workload-definition/api configured",
            "workload-definition/web configured"
        ],
        "{}",
        changed.stdout
    );
    let wd = env.ok(&["get", "workload-definitions", "web", "-o", "json"]);
    assert!(wd.stdout.contains("nginx:1.28"));

    // describe shows related objects and status; secrets stay redacted.
    let d = env.ok(&["describe", "workload-definition", "web"]);
    assert!(
        d.stdout.contains("WorkloadInstance:") && d.stdout.contains("Events:"),
        "{}",
        d.stdout
    );
    let d = env.ok(&["describe", "aws-account", "default-account"]);
    assert!(d.stdout.contains("*** redacted ***") && !d.stdout.contains("wJalrXUtnFEMI"));

    // Delete: plain kinds go at once, reconciled kinds are scheduled (two-phase).
    let del = env.ok(&["delete", "workload-instance", "api-staging"]);
    assert_eq!(
        del.stdout.trim(),
        "workload-instance/api-staging deletion scheduled"
    );
    let del = env.ok(&["delete", "gateway-http-port", "web-gateway-80"]);
    assert_eq!(
        del.stdout.trim(),
        "gateway-http-port/web-gateway-80 deleted"
    );
    let blocked = env.run(&["delete", "workload-definition", "web"]);
    assert_eq!(blocked.code, 1);
    assert!(
        blocked
            .stderr
            .contains("still referenced by 1 workload-instances (web; via WorkloadDefinitionID)"),
        "{}",
        blocked.stderr
    );

    // Upstream's spellings keep working.
    let file = work.path().join("extra.yaml");
    std::fs::write(
        &file,
        "WorkloadDefinition:\n  Name: extra\n  YAMLDocument: samples/web-manifest.yaml\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(
        env.ok(&["create", "workload-definition", "-c", f])
            .stdout
            .trim(),
        "workload-definition/extra created"
    );
    let dup = env.run(&["create", "workload-definition", "-c", f]);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("already exists"));
    assert!(
        env.ok(&["describe", "workload-definition", "-c", f])
            .stdout
            .contains("extra")
    );
    assert_eq!(
        env.ok(&["delete", "workload-definition", "-c", f])
            .stdout
            .trim(),
        "workload-definition/extra deletion scheduled"
    );

    // stdin, with document paths relative to the current directory.
    let mut child = env
        .cmd(&["apply", "-f", "-", "-o", "name"])
        .current_dir(work.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"WorkloadDefinition:\n  Name: from-stdin\n  YAMLDocument: samples/web-manifest.yaml\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "workload-definition/from-stdin"
    );

    // --wait on an object nothing will reconcile (no controller serves its kind) does not sit
    // out the timeout: it fails at once and says why.
    let tf = work.path().join("tf.yaml");
    std::fs::write(
        &tf,
        "TerraformDefinition:\n  Name: waits\n  ConfigDir: samples/terraform\n",
    )
    .unwrap();
    let w = env.run(&[
        "apply",
        "-f",
        tf.to_str().unwrap(),
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert_eq!(w.code, 1, "{}", w.stderr);
    assert!(
        w.stderr.contains(
            "terraform-definition/waits: Pending: no controller for TerraformDefinition is running"
        ),
        "{}",
        w.stderr
    );

    let down = env.ok(&["down", "--name", "e2e", "--purge"]);
    assert!(down.stderr.contains("stopped"), "{}", down.stderr);
    let cfg = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(!cfg.contains("e2e"), "entry removed: {cfg}");
    assert!(!env.home().join(".threeport/e2e").exists(), "purged");
    assert_eq!(
        env.run(&["version"]).stdout.lines().last().unwrap(),
        "Server: no control plane configured"
    );
}

/// Upstream's composite documents (a `Workload` carrying all five dependency kinds, the EKS
/// runtime in both spellings, HelmWorkload values files, ObservabilityStack, ControlPlane) are
/// accepted as written; each dependency is created after what it refers to and says why it
/// waits; `delete -f` removes all of it, each object only after what refers to it is gone.
#[test]
fn upstream_composites_apply_and_delete_whole() {
    let env = tptctl();
    let v = env.ok(&["validate", "-f", "testdata/upstream", "-R"]);
    assert_eq!(v.stdout.trim(), "35 objects valid", "{}", v.stdout);
    env.up_local("composite");
    let r = env.ok(&["apply", "-f", "testdata/upstream", "-R"]);
    let lines = r.lines();
    assert_eq!(lines.len(), 35, "{}", r.stdout);
    let pos = |l: &str| {
        lines
            .iter()
            .position(|x| *x == format!("{l} created"))
            .unwrap_or_else(|| panic!("{l} in\n{}", r.stdout))
    };
    for dep in [
        "aws-relational-database-instance/wordpress-db",
        "aws-object-storage-bucket-instance/s3-client-bucket",
        "secret-instance/wordpress-secret",
        "domain-name-instance/example-domain",
        "gateway-instance/web-service-gateway",
    ] {
        assert!(pos("workload-instance/wordpress") < pos(dep), "{dep}");
    }
    assert!(
        pos("domain-name-definition/example-domain")
            < pos("gateway-definition/web-service-gateway")
    );
    // Unnamed dependencies take the workload's name.
    pos("domain-name-instance/wordpress-guide");
    pos("gateway-http-port/wordpress-guide-443");

    // The nested objects refer to the workload's instance and to each other.
    let get = |kind: &str, name: &str| -> Value {
        serde_json::from_str(&env.ok(&["get", kind, name, "-o", "json"]).stdout).unwrap()
    };
    let wi = get("workload-instance", "wordpress");
    let db = get("aws-relational-database-instance", "wordpress-db");
    assert_eq!(db["WorkloadInstanceID"], wi["ID"], "{db}");
    // A database of a workload that cannot run says so (the aws controller serves it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let db = get("aws-relational-database-instance", "wordpress-guide-db");
        if db["Status"] == "Failed" {
            let reason = db["StatusReason"].as_str().unwrap();
            assert!(
                reason.starts_with(
                    "its WorkloadInstance \"wordpress-guide\" failed: no Kubernetes runtime"
                ),
                "{reason}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{db}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The gateway says why it cannot be served: its workload's runtime (an EKS runtime that
    // was never provisioned here) cannot be reached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let gateway = get("gateway-instance", "web-service-gateway");
        if gateway["Status"] == "Failed" {
            let reason = gateway["StatusReason"].as_str().unwrap();
            assert!(
                reason.starts_with("its WorkloadInstance \"wordpress\" failed: "),
                "{reason}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{gateway}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let gw = get("gateway-definition", "web-service-gateway");
    let dn = get("domain-name-definition", "example-domain");
    assert_eq!(gw["DomainNameDefinitionID"], dn["ID"], "{gw}");
    // Values files and inline values are stored as the YAML text upstream's API holds.
    let hd = get("helm-workload-definition", "wordpress-helm");
    assert_eq!(hd["ValuesDocument"], "wordpressUsername: admin\n", "{hd}");
    let hi = get("helm-workload-instance", "wordpress-helm");
    let values = hi["ValuesDocument"].as_str().unwrap();
    assert!(
        values.contains("replicaCount: 2") && values.contains("type: ClusterIP"),
        "{values}"
    );
    let obs = get("observability-stack-instance", "observability");
    assert_eq!(
        (obs["MetricsEnabled"].clone(), obs["LoggingEnabled"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let cp = get("control-plane-instance", "child");
    assert_eq!(
        cp["CustomComponentInfo"][0]["Name"], "wordpress-controller",
        "{cp}"
    );

    let del = env.ok(&[
        "delete",
        "-f",
        "testdata/upstream",
        "-R",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let out = del.lines();
    assert_eq!(out.len(), 35, "{}", del.stdout);
    let at = |l: &str| {
        out.iter()
            .position(|x| x.starts_with(&format!("{l} ")))
            .unwrap()
    };
    assert!(
        at("aws-relational-database-instance/wordpress-db") < at("workload-instance/wordpress")
    );
    assert!(at("workload-instance/wordpress") < at("workload-definition/wordpress"));
    assert!(
        at("gateway-definition/web-service-gateway") < at("domain-name-definition/example-domain")
    );
    assert!(at("workload-instance/wordpress") < at("kubernetes-runtime-instance/eks-k8s-runtime"));
    // Everything the files made is gone; what the control plane keeps on its own (controller
    // registrations, the event log) is not the files' to delete.
    for kind in threeport_api::KINDS.iter() {
        if ["controllers", "events"].contains(&kind.plural) {
            continue;
        }
        let left = env.ok(&["get", kind.plural, "-o", "name"]);
        assert_eq!(left.stdout, "", "{}", kind.plural);
    }
}

#[test]
fn bad_files_give_one_clear_error_and_write_nothing_that_depends_on_them() {
    let env = tptctl();
    env.up_local("bad");
    let bad = repo().join("testdata/bad");
    let f = |n: &str| bad.join(n).to_str().unwrap().to_string();
    let cases: Vec<(&str, &str, Vec<&str>, Vec<(&str, &str)>)> = vec![
        (
            "syntax.yaml",
            "syntax.yaml:4: YAML syntax error",
            vec![],
            vec![("workload-definitions", "broken")],
        ),
        (
            "unknown-kind.yaml",
            "unknown kind \"Workloud\"; did you mean \"Workload\"?",
            vec![],
            vec![],
        ),
        (
            "unknown-field.yaml",
            "unknown-field.yaml:9: WorkloadInstance \"typo-field\": unknown field \"KubernetesRuntime\"; did you mean \"KubernetesRuntimeInstance\"?",
            vec!["workload-definition/typo-field"],
            vec![("workload-instances", "typo-field")],
        ),
        (
            "missing-reference.yaml",
            "refers to WorkloadDefinition \"ghost\", which is neither in these files nor on the control plane",
            vec!["workload-definition/fine"],
            vec![("workload-instances", "orphan")],
        ),
        (
            "missing-document.yaml",
            "does-not-exist.yaml",
            vec!["workload-definition/independent"],
            vec![
                ("workload-definitions", "no-manifest"),
                ("workload-instances", "no-manifest"),
                ("workload-instances", "depends-on-broken"),
            ],
        ),
        (
            "cycle.yaml",
            "dependency cycle",
            vec!["control-plane-definition/cyc"],
            vec![
                ("control-plane-instances", "cyc-a"),
                ("control-plane-instances", "cyc-b"),
            ],
        ),
    ];
    for (file, message, applied, absent) in cases {
        // Offline validation finds the same problem (except unresolvable references: those need the server).
        let v = env.run(&["validate", "-f", &f(file)]);
        if file != "missing-reference.yaml" {
            assert_eq!(v.code, 1, "{file}: {}", v.stderr);
            assert!(v.stderr.contains(message), "validate {file}: {}", v.stderr);
        }
        let r = env.run(&["apply", "-f", &f(file)]);
        assert_eq!(r.code, 1, "{file}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{file}: {}", r.stderr);
        assert!(
            r.stderr.contains("failed"),
            "{file}: summary missing: {}",
            r.stderr
        );
        // One clear error: the problem is reported once, on one `error:` line that names it;
        // the other `error:` lines only name the objects not applied because of it.
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        let (named, others): (Vec<&str>, Vec<&str>) =
            errors.iter().partition(|l| l.contains(message));
        assert_eq!(named.len(), 1, "{file}: {}", r.stderr);
        assert!(
            others.iter().all(|l| l.contains("not applied")),
            "{file}: {}",
            r.stderr
        );
        for a in applied {
            assert!(
                r.stdout.contains(&format!("{a} created")),
                "{file}: {a} should be applied:\n{}",
                r.stdout
            );
        }
        for (kind, name) in absent {
            let g = env.run(&["get", kind, name]);
            assert_eq!(g.code, 1, "{file}: {kind}/{name} must not exist");
        }
    }
}

/// `apply` writes independent objects concurrently, yet an object is written only after what it
/// refers to (a chain of 30 instances, each naming the one before as its parent, among 40
/// independent accounts), and the lines come out in the same order as a sequential apply's. When one object fails,
/// nothing that refers to it, directly or through another, is written, and the rest is.
#[test]
fn pipelined_apply_keeps_dependency_order_and_writes_nothing_behind_a_failure() {
    let env = tptctl();
    env.up_local("pipe");
    let work = tempfile::tempdir().unwrap();
    let mut yaml = String::from("ControlPlaneDefinition:\n  Name: chain\n---\n");
    let mut expected = vec!["control-plane-definition/chain created".to_string()];
    for i in 0..40 {
        yaml.push_str(&format!(
            "AwsAccount:\n  Name: ind-{i:02}\n  AccountID: \"{i}\"\n---\n"
        ));
        expected.push(format!("aws-account/ind-{i:02} created"));
        if i < 30 {
            yaml.push_str(&format!(
                "ControlPlaneInstance:\n  Name: cp-{i:02}\n  ControlPlaneDefinition:\n    Name: chain\n"
            ));
            if i > 0 {
                yaml.push_str(&format!(
                    "  ParentControlPlaneInstance:\n    Name: cp-{:02}\n",
                    i - 1
                ));
            }
            yaml.push_str("---\n");
            expected.push(format!("control-plane-instance/cp-{i:02} created"));
        }
    }
    let file = work.path().join("chain.yaml");
    std::fs::write(&file, &yaml).unwrap();
    // The loader orders objects by kind (what is referred to first), then as the files have
    // them; the lines keep that order however the writes interleave.
    expected.sort_by_key(|l| match l.split('/').next().unwrap() {
        "aws-account" => 0,
        "control-plane-definition" => 1,
        _ => 2,
    });
    let r = env.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        r.lines(),
        expected,
        "one line per object, in the loader's order"
    );
    let cps = env.json(&["get", "control-plane-instances", "-o", "json"]);
    let id_of = |name: &str| {
        cps.as_array()
            .unwrap()
            .iter()
            .find(|o| o["Name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))["ID"]
            .clone()
    };
    for i in 1..30 {
        let o = cps
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["Name"] == format!("cp-{i:02}"))
            .unwrap();
        assert_eq!(
            o["ParentControlPlaneInstanceID"],
            id_of(&format!("cp-{:02}", i - 1)),
            "{o}"
        );
    }

    // `create` refuses an object that exists: `taken` fails at the server, so t-0 (which names
    // it) and t-1..t-9 (which name t-0, t-1, …) are skipped, and the accounts are written.
    let pre = work.path().join("pre.yaml");
    std::fs::write(&pre, "ControlPlaneDefinition:\n  Name: taken\n").unwrap();
    env.ok(&["apply", "-f", pre.to_str().unwrap()]);
    let mut yaml = String::from("ControlPlaneDefinition:\n  Name: taken\n---\n");
    for i in 0..10 {
        // t-0 names `taken`; each later one names the one before as its parent.
        let (definition, parent) = match i {
            0 => ("taken", String::new()),
            _ => (
                "chain",
                format!("  ParentControlPlaneInstance:\n    Name: t-{}\n", i - 1),
            ),
        };
        yaml.push_str(&format!(
            "ControlPlaneInstance:\n  Name: t-{i}\n  ControlPlaneDefinition:\n    Name: {definition}\n{parent}---\n"
        ));
        yaml.push_str(&format!(
            "AwsAccount:\n  Name: more-{i}\n  AccountID: \"{}\"\n---\n",
            100 + i
        ));
    }
    let file = work.path().join("taken.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let r = env.run(&["create", "-f", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("already exists").count(),
        1,
        "the failure is reported once:\n{}",
        r.stderr
    );
    for i in 0..10 {
        assert!(
            r.stderr.contains(&format!(
                "ControlPlaneInstance \"t-{i}\": skipped: it refers to"
            )),
            "t-{i}:\n{}",
            r.stderr
        );
        assert_eq!(
            env.run(&["get", "control-plane-instances", &format!("t-{i}")])
                .code,
            1,
            "t-{i} must not be written"
        );
        assert!(
            r.stdout.contains(&format!("aws-account/more-{i} created")),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn get_lists_all_of_a_thousand_objects() {
    let env = tptctl();
    env.up_local("many");
    let work = tempfile::tempdir().unwrap();
    let mut yaml = String::new();
    for i in 0..1000 {
        yaml.push_str(&format!(
            "AwsAccount:\n  Name: acct-{i:04}\n  AccountID: \"{i}\"\n---\n"
        ));
    }
    let file = work.path().join("many.yaml");
    std::fs::write(&file, yaml).unwrap();
    let r = env.ok(&["apply", "-f", file.to_str().unwrap(), "-o", "name"]);
    assert_eq!(r.lines().len(), 1000);
    let names = env.ok(&["get", "aws-accounts", "-o", "name"]);
    assert_eq!(names.lines().len(), 1000, "no silent stop at 50");
    let table = env.ok(&["get", "aws-accounts"]);
    assert_eq!(table.lines().len(), 1001);
    assert!(table.stdout.contains("acct-0999"));
    // Streamed page by page (500 each): one document per object, separated across pages too.
    let yaml = env.ok(&["get", "aws-accounts", "-o", "yaml"]);
    assert_eq!(yaml.lines().iter().filter(|l| **l == "---").count(), 999);
    assert_eq!(
        yaml.lines()
            .iter()
            .filter(|l| l.starts_with("Name: acct-"))
            .count(),
        1000
    );
    // `| head -1` with more than a pipe's buffer to print: a quiet success.
    let r = env.run_with_closed_stdout(&["get", "aws-accounts", "-o", "yaml"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "get");
    // apply goes on with its work when the reader has gone, and says how it went.
    let r = env.run_with_closed_stdout(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "apply");
}

/// Eight `tptctl apply -f` of the same 50-object file at once, five times over, each round
/// changing a field: every run exits 0 (a create that loses the race carries on as an update, a
/// stale PATCH re-reads and re-diffs), and the objects end as the file declares.
fn concurrent_applies_converge(env: &Tptctl) {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("par.yaml");
    let f = file.to_str().unwrap().to_string();
    for round in 0..5 {
        let mut yaml = String::new();
        for i in 0..50 {
            yaml.push_str(&format!(
                "AwsAccount:\n  Name: par-{i:02}\n  AccountID: \"{i}\"\n  DefaultRegion: region-{round}\n---\n"
            ));
        }
        std::fs::write(&file, yaml).unwrap();
        let runs: Vec<_> = (0..8)
            .map(|_| {
                env.cmd(&["apply", "-f", &f])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (n, run) in runs.into_iter().enumerate() {
            let out = run.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}, apply {n} exited {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let all = env.json(&["get", "aws-accounts", "-o", "json"]);
        let pars: Vec<&serde_json::Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["Name"].as_str().is_some_and(|n| n.starts_with("par-")))
            .collect();
        assert_eq!(
            pars.len(),
            50,
            "round {round}: exactly the declared objects"
        );
        for o in pars {
            assert_eq!(
                o["DefaultRegion"],
                format!("region-{round}"),
                "round {round}: {o}"
            );
        }
    }
}

#[test]
fn concurrent_applies_of_one_file_all_succeed_and_converge() {
    let env = tptctl();
    env.up_local("par");
    concurrent_applies_converge(&env);
}

#[test]
fn failed_up_leaves_no_entry_and_no_process() {
    let env = tptctl();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = env.run(&[
        "up",
        "--provider",
        "local",
        "--name",
        "fails",
        "--port",
        &port,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("exited") || r.stderr.contains("not ready"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("cannot listen"),
        "the log tail explains why: {}",
        r.stderr
    );
    let cfg = std::fs::read_to_string(env.config_path()).unwrap_or_default();
    assert!(!cfg.contains("fails"), "no config entry: {cfg}");
    assert!(
        !env.home().join(".threeport/fails").exists(),
        "no half-made data dir"
    );
    let ps = Command::new("pgrep")
        .args(["-f", "serve-local --dir .*fails"])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "no stray process");
}

#[test]
fn shell_completion_and_help() {
    let env = tptctl();
    let c = env.ok(&["completion", "bash"]);
    assert!(c.stdout.contains("tptctl"));
    let h = env.ok(&["--help"]);
    assert!(h.stdout.contains("Exit codes") && h.stdout.contains("3  --wait timed out"));
    assert_eq!(
        env.run(&["apply", "--bogus"]).code,
        2,
        "usage errors exit 2"
    );
}

/// `tptctl … | head -1` exits 0 without a word once the reader has gone: no panic from
/// `println!`, no "Broken pipe" error (as ripgrep does).
#[test]
fn a_closed_stdout_is_a_quiet_success() {
    let env = tptctl();
    for args in [
        &["get", "kinds"][..],
        &["completion", "bash"],
        &["version"],
        &["config", "get-control-planes"],
    ] {
        let r = env.run_with_closed_stdout(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
    }
}

/// Errors are `error: <what happened>`, then `hint: <what to do>` on its own line.
#[test]
fn errors_put_the_fix_on_a_hint_line() {
    let env = tptctl();
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["get", "workloads"],
            "error: no control plane is configured",
            "hint: create one with `tptctl up --provider local`",
        ),
        (
            &["get", "workloadz"],
            "error: unknown kind \"workloadz\"",
            "hint: did you mean \"workloads\"? `tptctl get kinds` lists every kind",
        ),
        (
            &["get", "workloads", "--control-plane", "nope"],
            "error: control plane \"nope\" is not in the config",
            "hint: create it with `tptctl up --provider local --name nope`",
        ),
        (
            &["apply"],
            "error: no files given",
            "hint: tptctl apply -f FILE|DIR|- [-R]",
        ),
        (
            &["down", "--name", "nope"],
            "error: no control plane named \"nope\"",
            "hint: `tptctl config get-control-planes` lists them",
        ),
    ];
    for (args, error, hint) in cases {
        let r = env.run(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, format!("{error}\n{hint}\n"), "{args:?}");
    }
    // --provider lists the real choices.
    let r = env.run(&["up", "--provider", "docker"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("[possible values: local, kind, eks, kubernetes]"),
        "{}",
        r.stderr
    );
}

/// Every `Next:` command `up` prints runs as printed, from the repository root.
#[test]
fn next_commands_printed_by_up_run_as_printed() {
    let env = tptctl();
    let port = threeport_testkit::free_port().to_string();
    let up = env.ok(&[
        "up",
        "--provider",
        "local",
        "--name",
        "next",
        "--port",
        &port,
    ]);
    let next: Vec<&str> = up
        .stderr
        .lines()
        .skip_while(|l| l.trim() != "Next:")
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.starts_with("tptctl "))
        .collect();
    assert!(!next.is_empty(), "no Next: commands in\n{}", up.stderr);
    for line in next {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        if args == ["dashboard"] {
            continue; // needs a terminal: tests/dashboard.rs runs it in tmux
        }
        env.ok(&args);
    }
}

/// The same apply/get flow against a control plane on PostgreSQL + NATS with mTLS, configured
/// through an upstream-format config entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_get_against_postgres_and_nats() {
    let env = tptctl();
    let plane = PgPlane::start(&env).await;
    let work = tempfile::tempdir().unwrap();
    let samples = samples_copy(work.path());
    let samples = samples.to_str().unwrap().to_string();
    let env = tokio::task::spawn_blocking(move || {
        apply_and_check(&env, &samples);
        get_forms(&env);
        concurrent_applies_converge(&env);
        // Not ours to stop: the entry is a "kind" plane, so no `down` from Drop either.
        std::fs::remove_file(env.config_path()).unwrap();
        env
    })
    .await
    .unwrap();
    drop(env);
    plane.server.shutdown().await;
}

/// The production shape (PostgreSQL + NATS, two controller processes) with a controller killed
/// while a hundred workloads' two-phase deletes are in flight: `delete -f --wait` still deletes
/// each definition only after its instance is gone, exits 0 and leaves nothing, in the API or
/// in the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_f_of_a_hundred_workloads_survives_a_controller_kill() {
    use k8s_openapi::api::apps::v1::Deployment;
    const N: usize = 100;
    let env = tptctl();
    let plane = PgPlane::start(&env).await;
    let double = kube_api_double::KubeDouble::start(kube_api_double::Options {
        ready_delay: std::time::Duration::from_millis(50),
        // A remote API server's write round trip, so a delete (two resources) takes a while.
        write_latency: std::time::Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let kube = threeport_testkit::kube_client(&double.kubeconfig()).await;
    let mut first = Controllers::spawn(&plane);
    let _second = Controllers::spawn(&plane);
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).unwrap();
    std::fs::write(
        work.path().join("manifest.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - port: 80\n",
    )
    .unwrap();
    let file = work.path().join("workloads.yaml");
    let docs: Vec<String> = (0..N)
        .map(|i| format!("Workload:\n  Name: w-{i:03}\n  YAMLDocument: manifest.yaml\n"))
        .collect();
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let file = file.to_str().unwrap().to_string();
    let kc = kubeconfig.to_str().unwrap().to_string();
    let (env, file) = tokio::task::spawn_blocking(move || {
        env.ok(&[
            "runtime",
            "register",
            "chaos",
            "--kubeconfig",
            &kc,
            "--default",
        ]);
        env.ok(&["apply", "-f", &file, "--wait", "--timeout", "300s"]);
        (env, file)
    })
    .await
    .unwrap();
    let deployments = |kube: kube::Client| async move {
        kube::Api::<Deployment>::all(kube)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(deployments(kube.clone()).await, N);

    let delete = env
        .cmd(&["delete", "-f", &file, "--wait", "--timeout", "300s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill one controller once the first deletes are under way and most are still to come.
    threeport_testkit::eventually(
        std::time::Duration::from_secs(60),
        "the first workload removed from the cluster",
        || {
            let kube = kube.clone();
            async move { (deployments(kube).await < N).then_some(()) }
        },
    )
    .await;
    first.0.kill().unwrap(); // SIGKILL: its locks and unacknowledged messages stay behind
    first.0.wait().unwrap();
    let at_kill = deployments(kube.clone()).await;
    eprintln!("killed a controller with {at_kill} of {N} workloads still in the cluster");
    assert!(at_kill > 0, "the kill came after every delete had finished");
    let out = tokio::task::spawn_blocking(move || delete.wait_with_output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("still referenced"), "{stderr}");
    for plural in ["workload-instances", "workload-definitions"] {
        assert_eq!(
            env.ok(&["get", plural, "-o", "name"]).stdout,
            "",
            "{plural}"
        );
    }
    assert_eq!(deployments(kube).await, 0);
    std::fs::remove_file(env.config_path()).unwrap();
    drop(env);
    plane.server.shutdown().await;
}

/// A composite `Workload` with a `Secret` on PostgreSQL + NATS, with the controllers in their own
/// process reaching moto through `AWS_ENDPOINT_URL` alone: the data goes to Secrets Manager and
/// out of the control plane's database, into the workload's namespace as a Kubernetes Secret,
/// follows an update, and `delete -f` leaves no secret in either place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_secret_lives_in_secrets_manager_and_in_the_cluster() {
    use k8s_openapi::api::core::v1::Secret;
    // The endpoint and the controller's own credentials (for the role) come from its
    // environment, as they would in a cluster (see `AwsWorld`).
    let (env, world) = AwsWorld::start(tptctl()).await;
    let kube = world.kube.clone();
    let sm = aws_sdk_secretsmanager::Client::new(&world.aws);
    world.file(
        "manifest.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n          envFrom:\n            - secretRef: {name: web-credentials}\n",
    );
    let app = |password: &str| {
        format!(
            // One account with access keys, one with a role to assume (from the controller's
            // own credentials), each holding one secret.
            "AwsAccount:\n  Name: moto-keys\n  AccountID: \"123456789012\"\n  DefaultRegion: us-east-1\n  AccessKeyID: AKIAEXAMPLEKEY\n  SecretAccessKey: wJalrXUtnFEMIEXAMPLE\n---\nAwsAccount:\n  Name: moto-role\n  AccountID: \"123456789012\"\n  DefaultRegion: us-east-1\n  RoleArn: arn:aws:iam::123456789012:role/threeport\n  ExternalId: tp-external\n---\nWorkload:\n  Name: web\n  YAMLDocument: manifest.yaml\n  Secret:\n    Name: web-credentials\n    AwsAccountName: moto-role\n    Data:\n      username: admin\n      password: {password}\n---\nSecret:\n  Name: web-extra\n  AwsAccountName: moto-keys\n  WorkloadInstance:\n    Name: web\n  Data:\n    token: t0ken\n"
        )
    };
    let file = world.file("app.yaml", &app("first-password"));
    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;

    let stored = sm.list_secrets().send().await.unwrap();
    assert_eq!(stored.secret_list().len(), 2, "{stored:?}");
    let value = |sm: aws_sdk_secretsmanager::Client| async move {
        let v = sm
            .get_secret_value()
            .secret_id("web-credentials")
            .send()
            .await
            .unwrap();
        serde_json::from_str::<Value>(v.secret_string().unwrap()).unwrap()
    };
    assert_eq!(
        value(sm.clone()).await,
        serde_json::json!({"username": "admin", "password": "first-password"})
    );
    // Out of the control plane's database, even revealed.
    let (env, def) = tp(
        env,
        &["get", "secret-definition", "web-credentials", "-o", "json"],
        true,
    )
    .await;
    let def: Value = serde_json::from_str(&def.stdout).unwrap();
    assert!(def["Data"].is_null(), "{def}");
    assert!(
        def["AwsSecretArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:secretsmanager:"),
        "{def}"
    );
    assert_eq!(def["Status"], "Healthy", "{def}");
    let (env, table) = tp(env, &["get", "secret-instances"], true).await;
    assert!(table.lines()[1].contains("Healthy"), "{}", table.stdout);

    let secrets = kube::Api::<Secret>::namespaced(kube.clone(), "web");
    let password = |secrets: kube::Api<Secret>| async move {
        let s = secrets.get("web-credentials").await.unwrap();
        let data = s.data.unwrap();
        assert_eq!(data["username"].0, b"admin");
        String::from_utf8(data["password"].0.clone()).unwrap()
    };
    assert_eq!(password(secrets.clone()).await, "first-password");
    let extra = secrets.get("web-extra").await.unwrap().data.unwrap();
    assert_eq!(extra["token"].0, b"t0ken");

    // An update reaches both.
    std::fs::write(&file, app("second-password")).unwrap();
    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    assert_eq!(value(sm.clone()).await["password"], "second-password");
    threeport_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the cluster Secret updated",
        || {
            let secrets = secrets.clone();
            async move { (password(secrets).await == "second-password").then_some(()) }
        },
    )
    .await;

    // A dependency that fails says why on the workload it belongs to.
    let broken = world.work.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "AwsAccount:\n  Name: no-credentials\n  AccountID: \"123456789012\"\n  DefaultRegion: us-east-1\n---\nSecret:\n  Name: web-broken\n  AwsAccountName: no-credentials\n  WorkloadInstance:\n    Name: web\n  Data:\n    a: b\n",
    )
    .unwrap();
    let broken = broken.to_str().unwrap().to_string();
    let (env, r) = {
        let broken = broken.clone();
        tokio::task::spawn_blocking(move || {
            let r = env.run(&["apply", "-f", &broken, "--wait", "--timeout", "30s"]);
            (env, r)
        })
        .await
        .unwrap()
    };
    assert_eq!(r.code, 1, "{}", r.stderr);
    let reason = "AwsAccount \"no-credentials\" has no credentials";
    assert!(r.stderr.contains(reason), "{}", r.stderr);
    // Within 10 s (the instance fails once it sees its definition failed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut env = env;
    loop {
        let (e, why) = tp(env, &["why", "workload-instance", "web"], true).await;
        env = e;
        let cause = why
            .lines()
            .into_iter()
            .find(|l| l.starts_with("  cause:"))
            .unwrap_or_default()
            .to_string();
        if cause.starts_with("  cause:  secret-instance/web-broken") {
            assert!(cause.contains(reason), "{}", why.stdout);
            assert!(
                why.stdout.contains("  failing: secret-instance/web-broken"),
                "{}",
                why.stdout
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", why.stdout);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let (env, _) = tp(
        env,
        &["delete", "-f", &broken, "--wait", "--timeout", "60s"],
        true,
    )
    .await;

    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    assert_eq!(
        sm.list_secrets().send().await.unwrap().secret_list().len(),
        0
    );
    for name in ["web-credentials", "web-extra"] {
        assert!(secrets.get_opt(name).await.unwrap().is_none(), "{name}");
    }
    let mut env = env;
    for plural in [
        "secret-definitions",
        "secret-instances",
        "workload-instances",
    ] {
        let (e, r) = tp(env, &["get", plural, "-o", "name"], true).await;
        assert_eq!(r.stdout, "", "{plural}");
        env = e;
    }
    world.stop(env).await;
}

/// A composite `Workload` with an `AwsRelationalDatabase`, on a runtime whose VPC is recorded
/// in its EKS instance's inventory (made here in moto, as the EKS installer records it): the
/// database is created in that VPC behind its own security group, its connection lands in the
/// workload's namespace, a taken identifier fails with AWS's own error on the workload, and
/// `delete -f` removes what it made (leaving a final snapshot) and nothing it did not make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_database_is_created_in_its_runtimes_vpc_and_connected() {
    use aws_sdk_ec2::types::Filter;
    use k8s_openapi::api::core::v1::Secret;
    let (env, world) = AwsWorld::start(tptctl()).await;
    let (api, aws, kube) = (&world.api, &world.aws, world.kube.clone());
    let (ec2, rds) = (aws_sdk_ec2::Client::new(aws), aws_sdk_rds::Client::new(aws));
    std::fs::write(
        world.work.path().join("manifest.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: wordpress:6.5-apache\n",
    )
    .unwrap();
    let workload = |name: &str, db: &str| {
        format!(
            "Workload:\n  Name: {name}\n  YAMLDocument: manifest.yaml\n  AwsRelationalDatabase:\n    Name: {db}\n    AwsAccountName: moto\n    Engine: mariadb\n    EngineVersion: \"10.11\"\n    DatabaseName: wordpress\n    DatabasePort: 3306\n    StorageGb: 20\n    MachineSize: XSmall\n    WorkloadSecretName: wordpress-db-conn\n"
        )
    };
    let file = world.file("app.yaml", &workload("web", "wordpress-db"));
    let seed = seed_eks_runtime(api, aws, "moto", "double", false).await;
    let (vpc, subnets, cluster_sg) = (seed.vpc, seed.subnets, seed.cluster_sg);

    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    let dbs = rds.describe_db_instances().send().await.unwrap();
    assert_eq!(dbs.db_instances().len(), 1, "{dbs:?}");
    let db = &dbs.db_instances()[0];
    assert_eq!(db.db_instance_identifier(), Some("wordpress-db"));
    assert_eq!(db.db_instance_class(), Some("db.t3.micro"));
    assert_eq!(db.engine(), Some("mariadb"));
    let group = db.db_subnet_group().unwrap();
    assert_eq!(group.vpc_id(), Some(vpc.as_str()));
    assert_eq!(group.subnets().len(), 2);
    // Its security group admits the cluster's group on the database port, and nothing else.
    let db_sg = db.vpc_security_groups()[0]
        .vpc_security_group_id()
        .unwrap()
        .to_string();
    let sg = ec2
        .describe_security_groups()
        .group_ids(&db_sg)
        .send()
        .await
        .unwrap();
    let rules = sg.security_groups()[0].ip_permissions();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        (rules[0].from_port(), rules[0].to_port()),
        (Some(3306), Some(3306))
    );
    assert_eq!(
        rules[0].user_id_group_pairs()[0].group_id(),
        Some(cluster_sg.as_str())
    );
    assert!(rules[0].ip_ranges().is_empty());

    // The connection, in the workload's namespace.
    let secrets = kube::Api::<Secret>::namespaced(kube.clone(), "web");
    let conn = secrets
        .get("wordpress-db-conn")
        .await
        .unwrap()
        .data
        .unwrap();
    let keys: Vec<&str> = conn.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "db-endpoint",
            "db-name",
            "db-password",
            "db-port",
            "db-user"
        ]
    );
    assert_eq!(conn["db-port"].0, b"3306");
    assert_eq!(conn["db-name"].0, b"wordpress");
    let password = String::from_utf8(conn["db-password"].0.clone()).unwrap();
    assert_eq!(password.len(), 32);
    let (env, inst) = tp(
        env,
        &[
            "get",
            "aws-relational-database-instance",
            "wordpress-db",
            "-o",
            "json",
        ],
        true,
    )
    .await;
    assert!(
        !inst.stdout.contains(&password),
        "the password stays redacted: {}",
        inst.stdout
    );
    let inst: Value = serde_json::from_str(&inst.stdout).unwrap();
    assert_eq!(inst["Status"], "Healthy", "{inst}");

    // An identifier someone else already uses in the account: AWS's refusal, on the workload.
    rds.create_db_subnet_group()
        .db_subnet_group_name("theirs")
        .db_subnet_group_description("not ours")
        .set_subnet_ids(Some(subnets.clone()))
        .send()
        .await
        .unwrap();
    rds.create_db_instance()
        .db_subnet_group_name("theirs")
        .db_instance_identifier("taken-db")
        .engine("mariadb")
        .engine_version("10.11")
        .port(3306)
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-ours-password")
        .send()
        .await
        .unwrap();
    let taken = world.work.path().join("taken.yaml");
    std::fs::write(&taken, workload("other", "taken-db")).unwrap();
    let taken = taken.to_str().unwrap().to_string();
    let (env, r) = tp(
        env,
        &["apply", "-f", &taken, "--wait", "--timeout", "60s"],
        false,
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("CreateDBInstance: DBInstanceAlreadyExists: "),
        "{}",
        r.stderr
    );
    let (env, why) = tp(env, &["why", "workload-instance", "other"], true).await;
    assert!(
        why.stdout
            .contains("cause:  aws-relational-database-instance/taken-db › ")
            && why
                .stdout
                .contains("CreateDBInstance: DBInstanceAlreadyExists"),
        "{}",
        why.stdout
    );
    let (env, _) = tp(
        env,
        &["delete", "-f", &taken, "--wait", "--timeout", "60s"],
        true,
    )
    .await;

    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    let left: Vec<String> = rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier().map(str::to_string))
        .collect();
    assert_eq!(left, ["taken-db"], "ours gone, theirs kept");
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier("wordpress-db")
        .send()
        .await
        .unwrap();
    assert_eq!(snapshots.db_snapshots().len(), 1, "a final snapshot");
    assert!(
        rds.describe_db_subnet_groups()
            .send()
            .await
            .unwrap()
            .db_subnet_groups()
            .iter()
            .all(|g| g.db_subnet_group_name() == Some("theirs"))
    );
    let groups = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = groups
        .security_groups()
        .iter()
        .filter_map(|g| g.group_name())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("threeport-wordpress-db") || n.starts_with("threeport-taken-db")), "{names:?}");
    assert!(
        secrets
            .get_opt("wordpress-db-conn")
            .await
            .unwrap()
            .is_none()
    );
    world.stop(env).await;
}

/// What [`seed_eks_runtime`] made in moto.
struct EksSeed {
    vpc: String,
    subnets: Vec<String>,
    cluster_sg: String,
}

/// Make runtime `runtime` an EKS runtime of account `account` as `installers/eks` leaves one:
/// a VPC with two subnets and a cluster security group in moto (and, with `cluster`, the EKS
/// cluster), recorded in an `AwsEksKubernetesRuntimeInstance`'s inventory. There is no EKS
/// runtime controller yet, so this stands in for its provisioning.
async fn seed_eks_runtime(
    api: &threeport_api::Client,
    aws: &aws_config::SdkConfig,
    account: &str,
    runtime: &str,
    cluster: bool,
) -> EksSeed {
    use threeport_api::kinds;
    let ec2 = aws_sdk_ec2::Client::new(aws);
    // The runtime's network, as `installers/eks` leaves it.
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .availability_zone(zone)
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    let cluster_sg = ec2
        .create_security_group()
        .group_name("threeport-eks-cluster-sg")
        .description("cluster")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let account_id = api
        .find_by_name(kinds::AWS_ACCOUNT, account)
        .await
        .unwrap()
        .unwrap()["ID"]
        .clone();
    let runtime_id = api
        .find_by_name(kinds::KUBERNETES_RUNTIME_INSTANCE, runtime)
        .await
        .unwrap()
        .unwrap()["ID"]
        .clone();
    let eks_def = api
        .create(
            kinds::AWS_EKS_KUBERNETES_RUNTIME_DEFINITION,
            &serde_json::json!({"Name": runtime, "AwsAccountID": account_id}),
        )
        .await
        .unwrap();
    let mut resources =
        vec![serde_json::json!({"kind": "Vpc", "id": vpc, "extra": {"step": "vpc"}})];
    for s in &subnets {
        resources
            .push(serde_json::json!({"kind": "Subnet", "id": s, "extra": {"step": "subnets"}}));
    }
    resources.push(serde_json::json!({"kind": "SecurityGroup", "id": cluster_sg, "extra": {"step": "security-group"}}));
    if cluster {
        let name = format!("threeport-{runtime}");
        let iam = aws_sdk_iam::Client::new(aws);
        let role = iam
            .create_role()
            .role_name(format!("{name}-cluster-role"))
            .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
            .send()
            .await
            .unwrap();
        aws_sdk_eks::Client::new(aws)
            .create_cluster()
            .name(&name)
            .role_arn(role.role().unwrap().arn())
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets.clone()))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        resources.push(
            serde_json::json!({"kind": "EksCluster", "id": name, "extra": {"step": "cluster"}}),
        );
    }
    api.create(
        kinds::AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
        &serde_json::json!({"Name": runtime, "Region": "us-east-1",
            "AwsEksKubernetesRuntimeDefinitionID": eks_def["ID"], "KubernetesRuntimeInstanceID": runtime_id,
            // Seeded as provisioned: the EKS controller is not to make it again.
            "Reconciled": true, "Status": "Healthy",
            "ResourceInventory": {"name": runtime, "region": "us-east-1", "resources": resources}}),
    )
    .await
    .unwrap();
    EksSeed {
        vpc,
        subnets,
        cluster_sg,
    }
}

/// A composite `Workload` with an `AwsObjectStorageBucket` on an EKS runtime (seeded in moto,
/// cluster included): a private bucket, a role only the workload's ServiceAccount can assume
/// through the cluster's OIDC provider, scoped to the bucket; the ServiceAccount annotated and
/// the env var in the Deployment that runs as it; a non-empty bucket refuses deletion until
/// `ForceDelete`, and then nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_bucket_is_private_and_reachable_only_by_its_service_account() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let (env, world) = AwsWorld::start(tptctl()).await;
    let (api, aws, kube) = (&world.api, &world.aws, world.kube.clone());
    let (s3, iam) = (aws_sdk_s3::Client::new(aws), aws_sdk_iam::Client::new(aws));
    std::fs::write(
        world.work.path().join("manifest.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: s3-client\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      serviceAccountName: s3-client\n      containers:\n        - name: web\n          image: nginx:1.27\n",
    )
    .unwrap();
    let file = world.file("app.yaml", "Workload:\n  Name: web\n  YAMLDocument: manifest.yaml\n  AwsObjectStorageBucket:\n    Name: s3-client-bucket\n    AwsAccountName: moto\n    PublicReadAccess: false\n    WorkloadServiceAccountName: s3-client\n    WorkloadBucketEnvVar: S3_BUCKET_NAME\n");
    seed_eks_runtime(api, aws, "moto", "double", true).await;
    // The workload runs first and the bucket comes later, so the workload has already recorded
    // its ServiceAccount without the role: the bucket waits until the record shows it.
    let alone = world.file(
        "workload.yaml",
        "Workload:\n  Name: web\n  YAMLDocument: manifest.yaml\n",
    );
    let (env, _) = tp(
        env,
        &["apply", "-f", &alone, "--wait", "--timeout", "60s"],
        true,
    )
    .await;
    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "60s"],
        true,
    )
    .await;

    let buckets: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(buckets, ["s3-client-bucket"]);
    let block = s3
        .get_public_access_block()
        .bucket("s3-client-bucket")
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.block_public_policy(),
            block.ignore_public_acls(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let role = iam
        .get_role()
        .role_name("threeport-s3-client-bucket")
        .send()
        .await
        .unwrap();
    let role = role.role().unwrap();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .unwrap()
            .to_string()
    };
    let trust = decode(role.assume_role_policy_document().unwrap());
    assert!(
        trust.contains("system:serviceaccount:web:s3-client"),
        "{trust}"
    );
    assert!(
        trust.contains(":oidc-provider/") && trust.contains("AssumeRoleWithWebIdentity"),
        "{trust}"
    );
    let policy = iam
        .get_role_policy()
        .role_name("threeport-s3-client-bucket")
        .policy_name("bucket-access")
        .send()
        .await
        .unwrap();
    let policy = decode(policy.policy_document());
    assert!(
        policy.contains("arn:aws:s3:::s3-client-bucket/*"),
        "{policy}"
    );
    assert!(
        !policy.contains("\"Resource\":\"*\"") && !policy.contains("arn:aws:s3:::*"),
        "{policy}"
    );
    assert_eq!(
        iam.list_open_id_connect_providers()
            .send()
            .await
            .unwrap()
            .open_id_connect_provider_list()
            .len(),
        1
    );

    // The workload runs as the role, and knows its bucket.
    let role_arn = role.arn().to_string();
    let (sas, deployments) = (
        kube::Api::<ServiceAccount>::namespaced(kube.clone(), "web"),
        kube::Api::<Deployment>::namespaced(kube.clone(), "web"),
    );
    threeport_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the role on the ServiceAccount and the bucket in the Deployment",
        || {
            let (sas, deployments, role_arn) = (sas.clone(), deployments.clone(), role_arn.clone());
            async move {
                let sa = sas.get("s3-client").await.ok()?;
                let annotated = sa
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .get("eks.amazonaws.com/role-arn")
                    == Some(&role_arn);
                let d = deployments.get("web").await.ok()?;
                let env = d.spec.template.spec?.containers[0]
                    .env
                    .clone()
                    .unwrap_or_default();
                let has_env = env.iter().any(|e| {
                    e.name == "S3_BUCKET_NAME" && e.value.as_deref() == Some("s3-client-bucket")
                });
                (annotated && has_env).then_some(())
            }
        },
    )
    .await;
    let (env, table) = tp(env, &["get", "aws-object-storage-bucket-instances"], true).await;
    assert!(table.lines()[1].contains("Healthy"), "{}", table.stdout);

    // Not empty: the delete says so and waits for ForceDelete.
    s3.put_object()
        .bucket("s3-client-bucket")
        .key("uploads/a.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let (env, r) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "10s"],
        false,
    )
    .await;
    assert_ne!(r.code, 0, "{}", r.stdout);
    let bucket = api
        .find_by_name(
            threeport_api::kinds::AWS_OBJECT_STORAGE_BUCKET_INSTANCE,
            "s3-client-bucket",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bucket["Status"], "Failed", "{bucket}");
    assert!(
        bucket["StatusReason"]
            .as_str()
            .unwrap()
            .starts_with("DeleteBucket: BucketNotEmpty: "),
        "{bucket}"
    );
    assert_eq!(s3.list_buckets().send().await.unwrap().buckets().len(), 1);
    api.patch(
        threeport_api::kinds::AWS_OBJECT_STORAGE_BUCKET_INSTANCE,
        bucket["ID"].as_u64().unwrap(),
        &serde_json::json!({"ForceDelete": true}),
    )
    .await
    .unwrap();
    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    assert!(s3.list_buckets().send().await.unwrap().buckets().is_empty());
    assert!(
        iam.get_role()
            .role_name("threeport-s3-client-bucket")
            .send()
            .await
            .is_err()
    );
    world.stop(env).await;
}

/// `tptctl ARGS` off the async runtime (the API runs on it); `ok` asserts success. The
/// environment is handed back for the next call.
/// Upstream's shape: one composite `Workload` with a database, a bucket and a secret, applied
/// with `--wait`. moto then holds exactly one of each (and one role for the bucket), the
/// cluster holds the connection Secret, the synced Secret, the annotated ServiceAccount and
/// the env var; every dependency is `Healthy`; `delete -f` leaves none of them. A bucket for a
/// ServiceAccount the workload does not have fails, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_workload_gets_its_database_bucket_and_secret_and_loses_them_on_delete() {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let (env, world) = AwsWorld::start(tptctl()).await;
    let (api, aws, kube) = (&world.api, &world.aws, world.kube.clone());
    let rds = aws_sdk_rds::Client::new(aws);
    let s3 = aws_sdk_s3::Client::new(aws);
    let iam = aws_sdk_iam::Client::new(aws);
    let sm = aws_sdk_secretsmanager::Client::new(aws);
    seed_eks_runtime(api, aws, "moto", "double", true).await;
    world.file(
        "manifest.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: s3-client\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: getting-started-wordpress\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: wordpress}\n  template:\n    metadata:\n      labels: {app: wordpress}\n    spec:\n      serviceAccountName: s3-client\n      containers:\n        - name: wordpress\n          image: wordpress:6.5-apache\n",
    );
    let file = world.file(
        "wordpress.yaml",
        "Workload:\n  Name: wordpress\n  YAMLDocument: manifest.yaml\n  AwsRelationalDatabase:\n    Name: wordpress-db\n    AwsAccountName: moto\n    Engine: mariadb\n    EngineVersion: \"10.11\"\n    DatabaseName: wordpress\n    DatabasePort: 3306\n    StorageGb: 20\n    MachineSize: XSmall\n    WorkloadSecretName: wordpress-db-conn\n    SkipFinalSnapshot: true\n  AwsObjectStorageBucket:\n    Name: s3-client-bucket\n    AwsAccountName: moto\n    PublicReadAccess: false\n    WorkloadServiceAccountName: s3-client\n    WorkloadBucketEnvVar: S3_BUCKET_NAME\n  Secret:\n    Name: wordpress-secret\n    AwsAccountName: moto\n    Data:\n      WORDPRESS_PASSWORD: admin_password\n",
    );
    let (env, _) = tp(
        env,
        &["apply", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    let counts = || async {
        let dbs = rds
            .describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .len();
        let buckets = s3.list_buckets().send().await.unwrap().buckets().len();
        let roles = iam
            .list_roles()
            .send()
            .await
            .unwrap()
            .roles()
            .iter()
            .filter(|r| r.role_name().starts_with("threeport-s3"))
            .count();
        let secrets = sm.list_secrets().send().await.unwrap().secret_list().len();
        (dbs, buckets, roles, secrets)
    };
    assert_eq!(counts().await, (1, 1, 1, 1));
    let secrets = kube::Api::<Secret>::namespaced(kube.clone(), "wordpress");
    let conn = secrets
        .get("wordpress-db-conn")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(conn.len(), 5, "{:?}", conn.keys());
    let synced = secrets.get("wordpress-secret").await.unwrap().data.unwrap();
    assert_eq!(synced["WORDPRESS_PASSWORD"].0, b"admin_password");
    let sa = kube::Api::<ServiceAccount>::namespaced(kube.clone(), "wordpress")
        .get("s3-client")
        .await
        .unwrap();
    assert!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("eks.amazonaws.com/role-arn")
    );
    let mut env = env;
    for plural in [
        "aws-relational-database-instances",
        "aws-object-storage-bucket-instances",
        "secret-instances",
    ] {
        let (e, table) = tp(env, &["get", plural], true).await;
        env = e;
        assert!(
            table.lines()[1].contains("Healthy"),
            "{plural}: {}",
            table.stdout
        );
    }

    // A ServiceAccount the workload does not have.
    let wrong = world.file(
        "wrong.yaml",
        "Workload:\n  Name: nosa\n  YAMLDocument: manifest.yaml\n  AwsObjectStorageBucket:\n    Name: nosa-bucket\n    AwsAccountName: moto\n    WorkloadServiceAccountName: missing-sa\n    WorkloadBucketEnvVar: S3_BUCKET_NAME\n",
    );
    let (env, r) = tp(
        env,
        &["apply", "-f", &wrong, "--wait", "--timeout", "30s"],
        false,
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "ServiceAccount \"missing-sa\" is not among WorkloadInstance \"nosa\"'s objects"
        ),
        "{}",
        r.stderr
    );
    let (env, _) = tp(
        env,
        &["delete", "-f", &wrong, "--wait", "--timeout", "60s"],
        true,
    )
    .await;

    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    assert_eq!(counts().await, (0, 0, 0, 0));
    for name in ["wordpress-db-conn", "wordpress-secret"] {
        assert!(secrets.get_opt(name).await.unwrap().is_none(), "{name}");
    }
    world.stop(env).await;
}

/// `runtime register` of a name that exists updates its connection (a rotated credential, a
/// moved API server) rather than failing or making a second runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_runtime_again_updates_its_connection() {
    let env = tptctl();
    let plane = PgPlane::start(&env).await;
    let work = tempfile::tempdir().unwrap();
    let (first, second) = (
        kube_api_double::KubeDouble::start(Default::default())
            .await
            .unwrap(),
        kube_api_double::KubeDouble::start(Default::default())
            .await
            .unwrap(),
    );
    let (k1, k2) = (work.path().join("k1"), work.path().join("k2"));
    first.write_kubeconfig(&k1).unwrap();
    second.write_kubeconfig(&k2).unwrap();
    let (k1, k2) = (k1.to_str().unwrap(), k2.to_str().unwrap());
    let (env, r) = tp(
        env,
        &["runtime", "register", "prod", "--kubeconfig", k1],
        true,
    )
    .await;
    assert!(
        r.stdout
            .contains("kubernetes-runtime-instance/prod created"),
        "{}",
        r.stdout
    );
    let (env, r) = tp(
        env,
        &["runtime", "register", "prod", "--kubeconfig", k2],
        true,
    )
    .await;
    assert!(
        r.stdout
            .contains("kubernetes-runtime-instance/prod configured"),
        "{}",
        r.stdout
    );
    let (env, r) = tp(
        env,
        &["get", "kubernetes-runtime-instances", "-o", "json"],
        true,
    )
    .await;
    let runtime: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(runtime["Name"], "prod", "one runtime: {runtime}");
    assert_eq!(runtime["APIEndpoint"], second.url().as_str(), "{runtime}");
    std::fs::remove_file(env.config_path()).unwrap();
    drop(env);
    plane.server.shutdown().await;
}

/// An EKS runtime applied from YAML is provisioned by the aws controller through
/// `installers/eks`, with the inventory in its `ResourceInventory`. The controllers process is
/// killed with `kill -9` five times, at different steps (seen in the inventory), and the end is
/// still exactly one VPC, one cluster and one node group; the cluster is registered as a
/// runtime with a token that is a presigned `GetCallerIdentity` URL signing `x-k8s-aws-id`.
/// Delete leaves none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_runtime_survives_five_kills_mid_provisioning_with_one_vpc_and_cluster() {
    use threeport_api::kinds::{AWS_EKS_KUBERNETES_RUNTIME_INSTANCE, KUBERNETES_RUNTIME_INSTANCE};
    let pause = (
        threeport_controllers::eks_runtime::STEP_PAUSE_ENV,
        "700".to_string(),
    );
    let (env, mut world) = AwsWorld::start_with(tptctl(), &[pause]).await;
    let file = world.file(
        "eks.yaml",
        "AwsEksKubernetesRuntime:\n  Name: eks-one\n  AwsAccountName: moto\n  Region: us-east-1\n  ZoneCount: 2\n  DefaultNodeGroupInstanceType: t3.medium\n  DefaultNodeGroupInitialSize: 2\n  DefaultNodeGroupMinimumSize: 1\n  DefaultNodeGroupMaximumSize: 3\n",
    );
    let (env, _) = tp(env, &["apply", "-f", &file], true).await;
    let api = world.api.clone();
    let instance = || async {
        api.find_by_name(AWS_EKS_KUBERNETES_RUNTIME_INSTANCE, "eks-one")
            .await
            .unwrap()
            .expect("the EKS runtime instance exists")
    };
    let recorded = |inst: &serde_json::Value| {
        inst["ResourceInventory"]["resources"]
            .as_array()
            .map_or(0, Vec::len)
    };
    // Kill after the roles, mid-network, after the route table, after the security group and
    // after the cluster (the count is what the inventory holds at that moment).
    for at in [2, 6, 10, 13, 15] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let inst = instance().await;
            if recorded(&inst) >= at {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the inventory never reached {at} resources: {inst:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        world.kill_and_respawn_controllers();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let inst = loop {
        let inst = instance().await;
        if inst["Status"] == "Healthy" {
            break inst;
        }
        assert!(
            std::time::Instant::now() < deadline && inst["Status"] != "Failed",
            "not Healthy: {inst:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let ec2 = aws_sdk_ec2::Client::new(&world.aws);
    let eks = aws_sdk_eks::Client::new(&world.aws);
    let ours = |name: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:Name")
            .values(name)
            .build()
    };
    let vpcs = || async {
        ec2.describe_vpcs()
            .filters(ours("threeport-eks-one-vpc"))
            .send()
            .await
            .unwrap()
            .vpcs()
            .len()
    };
    let clusters = || async {
        eks.list_clusters()
            .send()
            .await
            .unwrap()
            .clusters()
            .to_vec()
    };
    assert_eq!(vpcs().await, 1, "exactly one VPC after five kills");
    assert_eq!(clusters().await, vec!["threeport-eks-one".to_string()]);
    let groups = eks
        .list_nodegroups()
        .cluster_name("threeport-eks-one")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.nodegroups().len(), 1, "{groups:?}");
    let inv: threeport_eks::Inventory =
        serde_json::from_value(inst["ResourceInventory"].clone()).unwrap();
    assert_eq!(inv.resources.iter().filter(|r| r.kind == "Vpc").count(), 1);
    assert!(
        !inv.resources.iter().any(|r| r.kind == "EcrRepository"),
        "a runtime needs no ECR repository: {inv:?}"
    );

    // Registered as a runtime, with a token made by the controller.
    let rid = inst["KubernetesRuntimeInstanceID"]
        .as_u64()
        .expect("linked");
    let runtime = api
        .get_revealed(KUBERNETES_RUNTIME_INSTANCE, rid)
        .await
        .unwrap();
    assert_eq!(runtime["Name"], "eks-one");
    assert!(
        runtime["APIEndpoint"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{runtime:#}"
    );
    let url = threeport_eks::token::presigned_url(runtime["ConnectionToken"].as_str().unwrap())
        .expect("a k8s-aws-v1 token");
    assert!(url.contains("Action=GetCallerIdentity"), "{url}");
    assert!(
        url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
        "{url}"
    );
    let expires = time::OffsetDateTime::parse(
        runtime["ConnectionTokenExpiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expires > time::OffsetDateTime::now_utc() + time::Duration::minutes(10));
    let listed = api.get(KUBERNETES_RUNTIME_INSTANCE, rid).await.unwrap();
    assert_eq!(listed["ConnectionToken"], threeport_api::REDACTED);

    // Delete tears it all down, and the runtime it registered with it.
    let (env, _) = tp(
        env,
        &["delete", "-f", &file, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    assert_eq!(vpcs().await, 0);
    assert!(clusters().await.is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api
        .find_by_name(KUBERNETES_RUNTIME_INSTANCE, "eks-one")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "runtime eks-one stays"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    world.stop(env).await;
}

/// Upstream's other spelling of an EKS runtime: a `KubernetesRuntime` with `InfraProvider: eks`.
/// The kubernetes-runtime controller makes its `AwsEksKubernetesRuntimeDefinition` (2 zones, in
/// the named account) and `AwsEksKubernetesRuntimeInstance` (in the region of its `Location`),
/// which the aws controller provisions in moto and registers. Deleting the EKS instance, or the
/// runtime, is refused with a 409 naming the workload that runs there; once it is gone,
/// `delete -f` of the runtime tears the cluster down and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_runtime_with_infra_provider_eks_is_provisioned_and_torn_down_with_it() {
    use threeport_api::kinds::{
        AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
        KUBERNETES_RUNTIME_DEFINITION, KUBERNETES_RUNTIME_INSTANCE,
    };
    // Tokens are looked at every second here (every minute by default).
    let refresh = ("THREEPORT_TOKEN_REFRESH_CHECK_SECS", "1".to_string());
    let (env, world) = AwsWorld::start_with(tptctl(), &[refresh]).await;
    let api = world.api.clone();
    let runtime = world.file(
        "runtime.yaml",
        "KubernetesRuntime:\n  Name: eks-k8s\n  InfraProvider: eks\n  InfraProviderAccountName: moto\n  HighAvailability: false\n  Location: NorthAmerica:NewYork\n",
    );
    let (env, _) = tp(env, &["apply", "-f", &runtime], true).await;
    let wait_for = |what: &'static str| {
        let api = api.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
            loop {
                let eks = api
                    .find_by_name(AWS_EKS_KUBERNETES_RUNTIME_INSTANCE, "eks-k8s")
                    .await
                    .unwrap();
                if let Some(e) = eks.filter(|e| e["Status"] == what) {
                    return e;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the EKS instance never became {what}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    let eks = wait_for("Healthy").await;
    assert_eq!(eks["Region"], "us-east-1", "{eks:#}");
    let kri = api
        .find_by_name(KUBERNETES_RUNTIME_INSTANCE, "eks-k8s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(eks["KubernetesRuntimeInstanceID"], kri["ID"], "bound to it");
    let def = api
        .find_by_name(AWS_EKS_KUBERNETES_RUNTIME_DEFINITION, "eks-k8s")
        .await
        .unwrap()
        .expect("the EKS definition made for it");
    assert_eq!(def["ZoneCount"], 2);
    assert_eq!(def["DefaultNodeGroupInstanceType"], "t3.medium");
    let eks_api = aws_sdk_eks::Client::new(&world.aws);
    let clusters = || async {
        eks_api
            .list_clusters()
            .send()
            .await
            .unwrap()
            .clusters()
            .to_vec()
    };
    assert_eq!(clusters().await, vec!["threeport-eks-k8s".to_string()]);

    // A token about to lapse is replaced by a fresh one before it does.
    let kri_id = kri["ID"].as_u64().unwrap();
    let before = api
        .get_revealed(KUBERNETES_RUNTIME_INSTANCE, kri_id)
        .await
        .unwrap();
    // A token is signed to the second: let one pass, so the fresh one differs.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    api.patch(
        KUBERNETES_RUNTIME_INSTANCE,
        kri_id,
        &serde_json::json!({"ConnectionTokenExpiration": soon}),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let refreshed = loop {
        let now = api
            .get_revealed(KUBERNETES_RUNTIME_INSTANCE, kri_id)
            .await
            .unwrap();
        if now["ConnectionTokenExpiration"] != soon.as_str() {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token was not refreshed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let expires = time::OffsetDateTime::parse(
        refreshed["ConnectionTokenExpiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expires > time::OffsetDateTime::now_utc() + time::Duration::minutes(10));
    assert_ne!(refreshed["ConnectionToken"], before["ConnectionToken"]);
    assert!(
        threeport_eks::token::presigned_url(refreshed["ConnectionToken"].as_str().unwrap())
            .is_some(),
        "a k8s-aws-v1 token"
    );

    // moto's cluster has no Kubernetes API: point the runtime at the double (rotation), then
    // run a workload there.
    let kc = world.work.path().join("kubeconfig");
    let (env, _) = tp(
        env,
        &[
            "runtime",
            "register",
            "eks-k8s",
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
        true,
    )
    .await;
    let kri = api
        .get(KUBERNETES_RUNTIME_INSTANCE, kri["ID"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(kri["Location"], "NorthAmerica:NewYork", "rotation keeps it");
    world.file(
        "web.yaml.manifest",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: b\n",
    );
    let web = world.file(
        "web.yaml",
        "Workload:\n  Name: web\n  YAMLDocument: web.yaml.manifest\n  KubernetesRuntimeInstance:\n    Name: eks-k8s\n",
    );
    let (env, _) = tp(
        env,
        &["apply", "-f", &web, "--wait", "--timeout", "60s"],
        true,
    )
    .await;

    // A workload runs there: neither the EKS instance nor the runtime can go.
    let (env, r) = tp(
        env,
        &["delete", "aws-eks-kubernetes-runtime-instance", "eks-k8s"],
        false,
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("still referenced by 1 workload-instances (web; via KubernetesRuntimeInstanceID) on its KubernetesRuntimeInstance \"eks-k8s\""),
        "{}",
        r.stderr
    );
    let (env, r) = tp(
        env,
        &["delete", "kubernetes-runtime-instance", "eks-k8s"],
        false,
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("still referenced by 1 workload-instances (web;"),
        "{}",
        r.stderr
    );
    assert_eq!(clusters().await.len(), 1, "nothing was torn down");

    // Without it, deleting the runtime tears the cluster down, and nothing is left.
    let (env, _) = tp(
        env,
        &["delete", "-f", &web, "--wait", "--timeout", "60s"],
        true,
    )
    .await;
    let (env, _) = tp(
        env,
        &["delete", "-f", &runtime, "--wait", "--timeout", "120s"],
        true,
    )
    .await;
    assert!(clusters().await.is_empty());
    let ec2 = aws_sdk_ec2::Client::new(&world.aws);
    let vpcs = ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:Name")
                .values("threeport-eks-k8s-vpc")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty(), "{vpcs:?}");
    for kind in [
        KUBERNETES_RUNTIME_INSTANCE,
        KUBERNETES_RUNTIME_DEFINITION,
        AWS_EKS_KUBERNETES_RUNTIME_INSTANCE,
        AWS_EKS_KUBERNETES_RUNTIME_DEFINITION,
    ] {
        assert!(
            api.find_by_name(kind, "eks-k8s").await.unwrap().is_none(),
            "{} eks-k8s is left",
            kind.name
        );
    }
    world.stop(env).await;
}
