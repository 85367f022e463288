//! `tptctl image build`: the control plane image, checked with tools that did not come from us.
//! skopeo reads the archive; umoci unpacks it into a root filesystem; the control plane runs in
//! a chroot of that filesystem, as the image's non-root user, so nothing of the host is used.
//!
//! Needs skopeo, umoci and chroot (root): `apt-get install -y skopeo umoci`. Without them the
//! tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");

fn require(tool: &str, install: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is required by the image tests and was not found. Install it with: {install}");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One build shared by the tests (a build gzips the whole debug executable).
struct Image {
    dir: tempfile::TempDir,
    archive: PathBuf,
    digest: String,
    reference: String,
}

fn build(home: &Path, out: &Path) -> (String, String) {
    let o = run(Command::new(BIN)
        .args(["image", "build", "-o"])
        .arg(out)
        .env("HOME", home)
        .env_remove("SOURCE_DATE_EPOCH"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout.trim(),
        out.display().to_string(),
        "stdout is the path"
    );
    // stderr: `image <reference> (<digest>)`
    let stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
    let rest = stderr
        .strip_prefix("image ")
        .unwrap_or_else(|| panic!("{stderr}"));
    let (reference, digest) = rest.split_once(" (").unwrap();
    (
        reference.to_string(),
        digest.trim_end_matches(')').to_string(),
    )
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("threeport.oci.tar");
        let (reference, digest) = build(dir.path(), &archive);
        Image {
            dir,
            archive,
            digest,
            reference,
        }
    })
}

#[test]
fn the_same_tptctl_builds_the_same_archive_byte_for_byte() {
    let img = image();
    let again = img.dir.path().join("again.oci.tar");
    let (reference, digest) = build(img.dir.path(), &again);
    assert_eq!(
        (reference.as_str(), digest.as_str()),
        (img.reference.as_str(), img.digest.as_str())
    );
    assert!(
        std::fs::read(&img.archive).unwrap() == std::fs::read(&again).unwrap(),
        "two builds differ"
    );
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        reference,
        format!(
            "threeport.local/threeport:{}-{}",
            env!("CARGO_PKG_VERSION"),
            &hex[..12]
        )
    );
}

#[test]
fn skopeo_reads_the_config_the_entry_point_and_the_layers() {
    let skopeo = require("skopeo", "apt-get install -y skopeo");
    let img = image();
    let target = format!("oci-archive:{}", img.archive.display());
    let inspect: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&skopeo).args(["inspect", &target])).stdout)
            .unwrap();
    assert_eq!(inspect["Digest"], img.digest.as_str(), "{inspect}");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(
        inspect["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspect}"
    );
    assert_eq!(
        inspect["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let config: serde_json::Value = serde_json::from_slice(
        &run(Command::new(&skopeo).args(["inspect", "--config", &target])).stdout,
    )
    .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/threeport"])
    );
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1)
    );
}

/// Unpack with umoci into `dir/bundle`; returns the root filesystem.
fn unpack(dir: &Path) -> PathBuf {
    let umoci = require("umoci", "apt-get install -y umoci");
    let img = image();
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&img.archive)
        .arg("-C")
        .arg(&layout));
    let tag = img.reference.rsplit(':').next().unwrap();
    run(Command::new(umoci)
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dir.join("bundle")));
    dir.join("bundle/rootfs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unpacked_image_runs_the_control_plane_in_a_chroot_as_its_user() {
    let chroot = require("chroot", "apt-get install -y coreutils");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = tokio::task::block_in_place(|| unpack(dir.path()));
    // Nothing from the host: the executable, its libraries and its loader come from the image.
    let v = run(Command::new(&chroot)
        .arg(&rootfs)
        .args(["/usr/local/bin/threeport", "--version"]));
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("threeport {}", env!("CARGO_PKG_VERSION"))
    );
    // `threeport serve` on SQLite as the image's user (65532), answering /version.
    let port = threeport_testkit::free_port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut serve = Kill(
        Command::new(&chroot)
            .arg("--userspec=65532:65532")
            .arg(&rootfs)
            .args([
                "/usr/local/bin/threeport",
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                "sqlite:///tmp/threeport.db",
            ])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("THREEPORT_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let api = threeport_api::Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let version = {
        let (api, serve) = (&api, &mut serve);
        let mut exited = None;
        let v = threeport_testkit::eventually(
            Duration::from_secs(30),
            "the API in the chroot to answer /version",
            || {
                if exited.is_none() {
                    exited = serve.0.try_wait().ok().flatten();
                }
                assert!(exited.is_none(), "threeport serve exited: {exited:?}");
                async move { api.version().await.ok() }
            },
        )
        .await;
        v
    };
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // It ran as 65532: the database it created belongs to that user.
    use std::os::unix::fs::MetadataExt;
    let db = std::fs::metadata(rootfs.join("tmp/threeport.db")).unwrap();
    assert_eq!((db.uid(), db.gid()), (65532, 65532));
}

#[test]
fn tptctl_runs_the_control_plane_command_line_by_name_or_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("threeport");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    for mut cmd in [Command::new(&link), {
        let mut c = Command::new(BIN);
        c.arg("threeport");
        c
    }] {
        let out = run(cmd.arg("--version"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("threeport {}", env!("CARGO_PKG_VERSION"))
        );
    }
    let help = run(Command::new(&link).arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout);
    for verb in ["serve", "controllers", "migrate"] {
        assert!(help.contains(verb), "{verb} in:\n{help}");
    }
}

use threeport_testkit::Registry;

#[test]
fn a_pushed_image_has_the_archives_digest_in_a_real_registry() {
    let skopeo = require("skopeo", "apt-get install -y skopeo");
    let img = image();
    let registry = Registry::start();
    let repo = format!("{}/threeport", registry.addr());
    let home = tempfile::tempdir().unwrap();
    let out = run(Command::new(BIN)
        .args(["image", "push", &repo, "--plain-http"])
        .env("HOME", home.path()));
    let tag = img.reference.rsplit(':').next().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{repo}:{tag}@{}", img.digest)
    );
    let inspect: serde_json::Value = serde_json::from_slice(
        &run(Command::new(&skopeo).args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{repo}:{tag}"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(inspect["Digest"], img.digest.as_str(), "{inspect}");
    // A second push finds every blob there and pushes the same manifest.
    let again = run(Command::new(BIN)
        .args(["image", "push", &repo, "--plain-http"])
        .env("HOME", home.path()));
    assert_eq!(again.stdout, out.stdout);
}

/// A network namespace of its own (`ip netns`), so the pods' fixed ports (26257, 4222, 1323)
/// and names cannot collide with anything on this machine. Deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        let name = format!("tpt-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]));
        NetNs(name)
    }
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Processes killed on drop, with their output kept for the failure message.
struct Procs(Vec<(String, std::process::Child, PathBuf)>);

impl Procs {
    fn spawn(&mut self, name: &str, mut cmd: Command, dir: &Path) {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.0.push((name.to_string(), child, log));
    }
    /// Every process still running, or a panic with the output of the one that stopped.
    fn all_running(&mut self) {
        for (name, child, log) in &mut self.0 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
    fn log(&self, name: &str) -> String {
        let (_, _, log) = self.0.iter().find(|p| p.0 == name).unwrap();
        std::fs::read_to_string(log).unwrap_or_default()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the kubelet does with a pod's Secret volumes: for each mount of `container`, the
/// Secret's keys (or the listed items) as files owned by root, with the item's mode or the
/// volume's `defaultMode` (0644 when unset), group-owned by `fsGroup` with group read added
/// when the pod sets one (the kubelet's volume ownership for read-only volumes).
fn lay_secret_volumes(
    rootfs: &Path,
    pod: &serde_json::Value,
    container: &serde_json::Value,
    secrets: &std::collections::BTreeMap<String, serde_json::Value>,
) {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let fs_group = pod["securityContext"]["fsGroup"].as_u64().map(|g| g as u32);
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume {} in the pod", m["name"]));
        let Some(source) = volume.get("secret") else {
            continue;
        };
        let secret = &secrets[source["secretName"].as_str().unwrap()];
        let default_mode = source["defaultMode"].as_u64().unwrap_or(0o644) as u32;
        let files: Vec<(String, String, u32)> = match source["items"].as_array() {
            Some(items) => items
                .iter()
                .map(|i| {
                    let mode = i["mode"].as_u64().map_or(default_mode, |m| m as u32);
                    (
                        i["key"].as_str().unwrap().to_string(),
                        i["path"].as_str().unwrap().to_string(),
                        mode,
                    )
                })
                .collect(),
            None => secret["data"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| (k.clone(), k.clone(), default_mode))
                .collect(),
        };
        let dir = rootfs.join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for (key, path, mode) in files {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(
                    secret["data"][&key]
                        .as_str()
                        .unwrap_or_else(|| panic!("no key {key}")),
                )
                .unwrap();
            let file = dir.join(path);
            std::fs::write(&file, bytes).unwrap();
            let mode = if fs_group.is_some() {
                mode | 0o440
            } else {
                mode
            };
            std::os::unix::fs::chown(&file, Some(0), Some(fs_group.unwrap_or(0))).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// No kubelet runs here, so this does what one would with the pods `up` installs: every
/// control-plane container that runs the image gets its own copy of the unpacked root
/// filesystem, its Secret volumes laid as the kubelet lays them, and an /etc/hosts naming the
/// Services it dials (cluster DNS, here all on one loopback); it then runs its command as the
/// pod's user (`runAsUser`/`runAsGroup`, with `fsGroup` as a supplementary group) with
/// `chroot --userspec`. PostgreSQL stands in for CockroachDB, serving the node certificate and
/// accepting root's client certificate as CockroachDB does. The migrate init container must
/// succeed, the API must answer /livez over mTLS to a controller's certificate, and each
/// controller must register with the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_control_plane_pod_reads_its_mounted_secrets_as_its_user_and_starts() {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    let chroot = require("chroot", "apt-get install -y coreutils");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = tokio::task::block_in_place(|| unpack(dir.path()));
    let img = image();
    // The install, Secrets included, as `up` would apply it with this image.
    let printed = run(Command::new(BIN)
        .args(["up", "--print-manifests", "--include-secrets"])
        .args(["--image-repo", "threeport.local"])
        .args(["--image-tag", img.reference.rsplit(':').next().unwrap()])
        .env("HOME", dir.path()));
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&printed.stdout)
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
        })
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let secrets: BTreeMap<String, serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Secret")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o.clone(),
            )
        })
        .collect();
    let secret_file = |secret: &str, key: &str, to: &Path| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(secrets[secret]["data"][key].as_str().unwrap())
            .unwrap();
        std::fs::write(to, b).unwrap();
    };
    let ns = NetNs::new();
    let mut procs = Procs(Vec::new());

    // CockroachDB's stand-in: PostgreSQL on crdb:26257 with the node's certificate, root by
    // client certificate only.
    let pg = dir.path().join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    for (key, file) in [
        ("node.crt", "server.crt"),
        ("node.key", "server.key"),
        ("ca.crt", "ca.crt"),
    ] {
        secret_file("crdb-tls", key, &pg.join(file));
    }
    std::fs::set_permissions(
        pg.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let bin = threeport_testkit::pg_bin_dir().expect("PostgreSQL (apt-get install -y postgresql)");
    run(Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&pg));
    let data = pg.join("data");
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .args(["-U", "postgres", "--auth=trust", "-D"])
        .arg(&data));
    let conf = format!(
        "listen_addresses = '127.0.0.1'\nport = 26257\nunix_socket_directories = '{d}'\nssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\nssl_ca_file = '{d}/ca.crt'\ndefault_transaction_isolation = serializable\n",
        d = pg.display()
    );
    let mut pgconf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    pgconf.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), pgconf).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all root 127.0.0.1/32 cert\n",
    )
    .unwrap();
    let mut pg_cmd = ns.cmd("runuser");
    pg_cmd
        .args(["-u", "postgres", "--"])
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data);
    procs.spawn("postgres", pg_cmd, dir.path());
    let psql = |sql: &str| {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("psql"))
            .args([
                "-h",
                pg.to_str().unwrap(),
                "-p",
                "26257",
                "-U",
                "postgres",
                "-tAc",
                sql,
            ])
            .output()
            .unwrap()
    };
    threeport_testkit::eventually_blocking(Duration::from_secs(30), "PostgreSQL to start", || {
        psql("SELECT 1").status.success().then_some(())
    });
    assert!(psql("CREATE ROLE root LOGIN SUPERUSER").status.success());

    // NATS on nats:4222.
    let nats_bin = threeport_testkit::nats_server_binary().unwrap();
    let mut nats = ns.cmd(&nats_bin);
    nats.args(["-js", "-a", "127.0.0.1", "-p", "4222", "-sd"])
        .arg(dir.path().join("nats"));
    procs.spawn("nats", nats, dir.path());

    // The pods that run the image, in apply order: the API first, then the controllers.
    let pods: Vec<(String, serde_json::Value)> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o["spec"]["template"]["spec"].clone(),
            )
        })
        .filter(|(_, pod)| {
            pod["containers"][0]["image"]
                .as_str()
                .is_some_and(|i| i == img.reference)
        })
        .collect();
    assert!(
        pods.len() >= 3,
        "the API and the controllers: {:?}",
        pods.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    let hosts = "127.0.0.1 localhost crdb nats threeport-api-server\n";
    let config: serde_json::Value = {
        let inspect = run(
            Command::new(require("skopeo", "apt-get install -y skopeo")).args([
                "inspect",
                "--config",
                &format!("oci-archive:{}", img.archive.display()),
            ]),
        );
        serde_json::from_slice(&inspect.stdout).unwrap()
    };
    let entrypoint: Vec<String> =
        serde_json::from_value(config["config"]["Entrypoint"].clone()).unwrap();
    let image_user = config["config"]["User"].as_str().unwrap().to_string();
    let run_container =
        |name: &str, pod: &serde_json::Value, container: &serde_json::Value| -> Command {
            let root = dir.path().join(format!("pod-{name}"));
            if !root.exists() {
                run(Command::new("cp").arg("-a").arg(&rootfs).arg(&root));
                std::fs::write(root.join("etc/hosts"), hosts).unwrap();
            }
            lay_secret_volumes(&root, pod, container, &secrets);
            let sc = &pod["securityContext"];
            let user = match (sc["runAsUser"].as_u64(), sc["runAsGroup"].as_u64()) {
                (Some(u), Some(g)) => format!("{u}:{g}"),
                (Some(u), None) => format!("{u}:{u}"),
                _ => image_user.clone(),
            };
            let mut cmd = ns.cmd(&chroot);
            cmd.arg(format!("--userspec={user}"));
            if let Some(g) = sc["fsGroup"].as_u64() {
                cmd.arg(format!("--groups={g}"));
            }
            cmd.arg(&root);
            let command: Vec<String> = serde_json::from_value(container["command"].clone())
                .unwrap_or_else(|_| entrypoint.clone());
            let args: Vec<String> =
                serde_json::from_value(container["args"].clone()).unwrap_or_default();
            cmd.args(command)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin");
            for e in container["env"].as_array().into_iter().flatten() {
                cmd.env(
                    e["name"].as_str().unwrap(),
                    e["value"].as_str().unwrap_or_default(),
                );
            }
            cmd
        };
    // GET over mTLS with a controller's client certificate (written to `curl/` below), from
    // inside the namespace, dialling the API by its Service name.
    let mtls_get = |path: &str| -> Option<Vec<u8>> {
        let certs = dir.path().join("curl");
        let out = ns
            .cmd("curl")
            .args(["-sS", "--fail", "--max-time", "2"])
            .args(["--resolve", "threeport-api-server:1323:127.0.0.1"])
            .arg("--cacert")
            .arg(certs.join("ca.crt"))
            .arg("--cert")
            .arg(certs.join("tls.crt"))
            .arg("--key")
            .arg(certs.join("tls.key"))
            .arg(format!("https://threeport-api-server:1323{path}"))
            .output()
            .unwrap();
        out.status.success().then_some(out.stdout)
    };
    for (name, pod) in &pods {
        for init in pod["initContainers"].as_array().into_iter().flatten() {
            let mut c = run_container(name, pod, init);
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "init container {} of {name} failed:\n{}{}",
                init["name"],
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let main = &pod["containers"][0];
        let c = run_container(name, pod, main);
        procs.spawn(name, c, dir.path());
        if name == "threeport-api-server" {
            // /livez over mTLS, with a controller's client certificate.
            let certs = dir.path().join("curl");
            std::fs::create_dir_all(&certs).unwrap();
            let client = secrets
                .keys()
                .find(|k| k.ends_with("-controller-tls"))
                .expect("a controller's client certificate")
                .clone();
            for (key, file) in [
                ("ca.crt", "ca.crt"),
                ("client.crt", "tls.crt"),
                ("client.key", "tls.key"),
            ] {
                secret_file(&client, key, &certs.join(file));
            }
            threeport_testkit::eventually_blocking(
                Duration::from_secs(60),
                "the API to answer /livez over mTLS",
                || {
                    procs.all_running();
                    mtls_get("/livez")
                },
            );
        }
    }
    // Each controller registers with the API: it read its key and reached the API with it.
    let controllers = pods
        .iter()
        .filter(|(n, _)| n != "threeport-api-server")
        .count();
    threeport_testkit::eventually_blocking(
        Duration::from_secs(60),
        "every controller to register",
        || {
            procs.all_running();
            let out = mtls_get("/v0/controllers")?;
            let v: serde_json::Value = serde_json::from_slice(&out).ok()?;
            let n = v["Data"].as_array().map_or(0, Vec::len);
            (n >= controllers).then_some(())
        },
    );
    // And the API, which reads /certs/api and /certs/db as 65532, never holds CockroachDB's key.
    assert!(
        !dir.path()
            .join("pod-threeport-api-server/certs/db/node.key")
            .exists()
    );
    let _ = procs.log("threeport-api-server");
}
