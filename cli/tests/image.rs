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

/// The CNCF distribution server (Debian's `docker-registry`) on a free loopback port, with its
/// storage in a temporary directory; killed on drop.
struct Registry {
    _dir: tempfile::TempDir,
    child: std::process::Child,
    addr: String,
}

impl Registry {
    fn start() -> Registry {
        let bin = require("docker-registry", "apt-get install -y docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = threeport_testkit::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        threeport_testkit::eventually_blocking(
            Duration::from_secs(20),
            "docker-registry to listen",
            || std::net::TcpStream::connect(&addr).ok().map(|_| ()),
        );
        Registry {
            _dir: dir,
            child,
            addr,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_pushed_image_has_the_archives_digest_in_a_real_registry() {
    let skopeo = require("skopeo", "apt-get install -y skopeo");
    let img = image();
    let registry = Registry::start();
    let repo = format!("{}/threeport", registry.addr);
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
