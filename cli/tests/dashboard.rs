//! End to end: the real `tptctl dashboard` in tmux against a real local control plane
//! (`tptctl up --provider local`) in a temporary HOME. The screen is read with `capture-pane`.
//!
//! tmux is required: without it the test fails (it never skips) and says how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use threeport_testkit::{Tptctl, poll, sh_quote};

const BIN: &str = env!("CARGO_BIN_EXE_tptctl");
const COLS: u16 = 120;
const ROWS: u16 = 40;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real `tptctl` in a temporary HOME, run in the repository root.
fn tptctl() -> Tptctl {
    Tptctl::new(BIN, repo())
}

// ---- tmux -------------------------------------------------------------------------------------

fn tmux_bin() -> PathBuf {
    let fixed = Path::new("/usr/bin/tmux");
    if fixed.exists() {
        return fixed.to_path_buf();
    }
    if Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success())
    {
        return PathBuf::from("tmux");
    }
    panic!(
        "tmux is required by the dashboard end-to-end test and was not found.\n\
         Install it with: apt-get install -y tmux"
    );
}

/// One tmux server on its own socket; killed on drop, even when the test fails.
struct Tmux {
    bin: PathBuf,
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Tmux {
            bin: tmux_bin(),
            socket: format!("tptctl-dash-{}-{nanos}", std::process::id()),
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Run `tptctl <args>` in a new session of a fixed size. When it exits, the pane says so
    /// and stays, so the exit code and any message can be read.
    fn start(&self, session: &str, env: &Tptctl, args: &[&str]) -> Pane<'_> {
        self.start_with(session, env, "", args)
    }

    fn start_with(&self, session: &str, env: &Tptctl, extra_env: &str, args: &[&str]) -> Pane<'_> {
        let script = format!(
            "env HOME={} NO_COLOR=1 TERM=xterm-256color {extra_env} {} {}; echo \"[dashboard exited with $?]\"; sleep 3600",
            sh_quote(env.home().to_str().unwrap()),
            sh_quote(BIN),
            args.iter()
                .map(|a| sh_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = self.tmux(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            &COLS.to_string(),
            "-y",
            &ROWS.to_string(),
            &script,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pane {
            tmux: self,
            target: session.to_string(),
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

struct Pane<'a> {
    tmux: &'a Tmux,
    target: String,
}

impl Pane<'_> {
    fn screen(&self) -> String {
        let out = self.tmux.tmux(&["capture-pane", "-p", "-t", &self.target]);
        String::from_utf8_lossy(&out.stdout).into()
    }

    /// The screen with its SGR escape sequences (`capture-pane -e`).
    fn screen_with_attributes(&self) -> String {
        let out = self
            .tmux
            .tmux(&["capture-pane", "-p", "-e", "-t", &self.target]);
        String::from_utf8_lossy(&out.stdout).into()
    }

    fn resize(&self, cols: u16, rows: u16) {
        let out = self.tmux.tmux(&[
            "resize-window",
            "-t",
            &self.target,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Named keys (`Enter`, `Escape`, `C-d`), one at a time: two Escapes sent together would
    /// read as one Alt-Escape.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.tmux.tmux(&["send-keys", "-t", &self.target, k]);
            assert!(out.status.success());
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Text typed as is.
    fn type_text(&self, text: &str) {
        let out = self
            .tmux
            .tmux(&["send-keys", "-t", &self.target, "-l", text]);
        assert!(out.status.success());
    }

    /// Poll the screen until `pred` holds; fail with the last screen after `timeout`.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (String, Duration) {
        let start = Instant::now();
        let mut last = String::new();
        let found = poll::until_blocking(timeout, Duration::from_millis(40), || {
            let s = self.screen();
            if pred(&s) {
                return Some(s);
            }
            last = s;
            None
        });
        match found {
            Some(s) => (s, start.elapsed()),
            None => {
                panic!("timed out after {timeout:?} waiting for {what}; the screen shows:\n{last}")
            }
        }
    }

    fn wait_text(&self, text: &str, timeout: Duration) -> (String, Duration) {
        self.wait_for(&format!("{text:?}"), timeout, |s| s.contains(text))
    }
}

/// SGR parameters that set a colour (foreground, background, 256-colour, RGB, bright).
fn colour_codes(screen: &str) -> Vec<String> {
    let mut found = Vec::new();
    for seq in screen.split("\x1b[").skip(1) {
        let Some(end) = seq.find('m') else { continue };
        let params = &seq[..end];
        if params.split(';').any(|p| {
            p.parse::<u16>()
                .is_ok_and(|n| matches!(n, 30..=37 | 38 | 40..=47 | 48 | 90..=97 | 100..=107))
        }) {
            found.push(params.to_string());
        }
    }
    found
}

/// Lines of the list (between the list's borders), without the why pane.
fn list_lines(screen: &str) -> Vec<&str> {
    let lines: Vec<&str> = screen.lines().collect();
    let start = lines.iter().position(|l| l.starts_with('┌')).unwrap_or(0);
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('└'))
        .map_or(lines.len(), |p| start + 1 + p);
    lines[start..end].to_vec()
}

// ---- test data ----------------------------------------------------------------------------------

fn write_workload(dir: &Path, name: &str) -> String {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "Workload:\n  Name: {name}\n  YAMLDocument: web-manifest.yaml\n  KubernetesRuntimeInstance:\n    Name: dev-0\n"
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

#[test]
fn dashboard_end_to_end() {
    let tmux = Tmux::new();
    let env = tptctl();
    let port = threeport_testkit::free_port();
    env.up_local_on("dash", port);

    let work = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("testdata/samples/web-manifest.yaml"),
        work.path().join("web-manifest.yaml"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("testdata/samples/runtime.yaml"),
        work.path().join("runtime.yaml"),
    )
    .unwrap();
    let web = write_workload(work.path(), "web");
    env.ok(&[
        "apply",
        "-f",
        work.path().join("runtime.yaml").to_str().unwrap(),
        "-f",
        &web,
    ]);

    // (a) The workloads view appears, with the header.
    let main = tmux.start("main", &env, &["dashboard"]);
    let (s, _) = main.wait_for("the workloads view", Duration::from_secs(20), |s| {
        s.contains("workloads (2)") && s.contains("● connected")
    });
    assert!(s.contains("control plane: dash"), "{s}");
    assert!(s.contains(&format!("API: https://127.0.0.1:{port}")), "{s}");
    assert!(s.contains("└ web") && s.contains("dev-0"), "{s}");
    // NO_COLOR: attributes (reverse, bold) but no colour.
    let attrs = main.screen_with_attributes();
    assert!(attrs.contains("\x1b["), "capture-pane -e shows attributes");
    assert_eq!(
        colour_codes(&attrs),
        Vec::<String>::new(),
        "NO_COLOR is set"
    );
    // A tiny window and back: nothing breaks.
    main.resize(20, 5);
    main.wait_for("the 20x5 frame", Duration::from_secs(5), |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.starts_with(" Threeport") && l.trim_end().len() <= 20)
    });
    main.resize(COLS, ROWS);
    main.wait_text("workloads (2)", Duration::from_secs(5));

    // (b) A workload applied by another process shows up without a keypress (the watch stream
    // pushes it; how fast is the render benchmark's business, not a timed assertion's).
    let blog = write_workload(work.path(), "blog");
    env.ok(&["apply", "-f", &blog]);
    let (s, took) = main.wait_for(
        "blog pushed by the watch stream",
        Duration::from_secs(10),
        |s| s.contains("workloads (4)") && s.contains("└ blog"),
    );
    eprintln!("blog appeared {took:?} after `tptctl apply` returned");
    assert!(s.contains("└ blog"), "{s}");

    // (c) `/` filters…
    main.keys(&["/"]);
    main.type_text("blog");
    main.keys(&["Enter"]);
    let (s, _) = main.wait_text("workloads (2/4) /blog", Duration::from_secs(5));
    let list = list_lines(&s).join("\n");
    assert!(list.contains("└ blog") && !list.contains("web"), "{s}");
    // …Enter drills down from the definition to its instances…
    main.keys(&["g", "Enter"]);
    let (s, _) = main.wait_text(
        "workload-instances of workload-definition/blog (1)",
        Duration::from_secs(5),
    );
    assert!(s.contains("> blog"), "{s}");
    // …and delete asks for the name: a wrong one deletes nothing, the right one does.
    main.keys(&["C-d"]);
    main.wait_text("Type its name (blog) to confirm", Duration::from_secs(5));
    main.type_text("blo");
    main.keys(&["Enter"]);
    main.wait_text("does not match", Duration::from_secs(5));
    let wi = env.json(&["get", "workload-instances", "blog", "-o", "json"]);
    assert!(
        wi.get("DeletionScheduled").is_none_or(|v| v.is_null()),
        "{wi}"
    );
    main.type_text("g");
    main.keys(&["Enter"]);
    // The row shows the deletion, or is already gone when the local controllers confirmed it.
    let (s, _) = main.wait_for("the deletion", Duration::from_secs(10), |s| {
        s.contains("workload-instance/blog deletion scheduled")
            && (s.contains("⊘ Deleting") || s.contains("of workload-definition/blog (0)"))
    });
    assert!(!s.contains("Type its name"), "the dialog closed:\n{s}");
    let after = env.run(&["get", "workload-instances", "blog", "-o", "json"]);
    if after.code == 0 {
        let wi: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
        assert!(wi["DeletionScheduled"].is_string(), "{wi}");
    } else {
        assert!(after.stderr.contains("not found"), "{}", after.stderr);
    }

    // With --readonly, the delete is refused and nothing changes.
    let ro = tmux.start("ro", &env, &["dashboard", "--readonly"]);
    ro.wait_for("the read-only dashboard", Duration::from_secs(20), |s| {
        s.contains("[read-only]") && s.contains("● connected") && s.contains("└ web")
    });
    ro.keys(&["G", "C-d"]);
    let (s, _) = ro.wait_text(
        "read-only mode (--readonly): deleting is disabled",
        Duration::from_secs(5),
    );
    assert!(!s.contains("Type its name"), "{s}");
    let wi = env.json(&["get", "workload-instances", "web", "-o", "json"]);
    assert!(
        wi.get("DeletionScheduled").is_none_or(|v| v.is_null()),
        "{wi}"
    );
    // Ctrl-C always quits, and the terminal is given back.
    ro.keys(&["C-c"]);
    ro.wait_text("[dashboard exited with 0]", Duration::from_secs(5));

    // (d) Stopping the control plane shows the banner and keeps the data…
    main.keys(&["Escape", "Escape"]);
    main.wait_for(
        "the unfiltered workloads view",
        Duration::from_secs(5),
        |s| {
            s.lines()
                .any(|l| l.starts_with("┌ workloads (") && !l.contains("/blog"))
        },
    );
    env.ok(&["down", "--name", "dash"]);
    let (s, _) = main.wait_text("disconnected — retrying", Duration::from_secs(10));
    assert!(
        s.contains("└ web") && s.contains(" blog "),
        "last data kept:\n{s}"
    );
    // …the UI stays responsive while it is down…
    main.keys(&["j"]);
    main.keys(&["?"]);
    main.wait_text("help: keys", Duration::from_secs(5));
    main.keys(&["Escape"]);
    // …and it recovers by itself once the control plane is back (same data, same port).
    env.ok(&["up", "--provider", "local", "--name", "dash"]);
    let (s, took) = main.wait_for("the reconnection", Duration::from_secs(15), |s| {
        s.contains("● connected") && !s.contains("disconnected")
    });
    eprintln!("reconnected {took:?} after `tptctl up` returned");
    assert!(s.contains("└ web"), "{s}");
    // Live again: a change after the restart is pushed too.
    let shop = write_workload(work.path(), "shop");
    env.ok(&["apply", "-f", &shop]);
    let (_, took) = main.wait_text("└ shop", Duration::from_secs(10));
    eprintln!("shop appeared {took:?} after `tptctl apply` returned");

    main.keys(&["C-c"]);
    let (s, _) = main.wait_text("[dashboard exited with 0]", Duration::from_secs(5));
    assert!(
        !s.contains("┌ workloads"),
        "the alternate screen is gone:\n{s}"
    );

    // A panic (here on the network task) gives the terminal back before the message is printed.
    let crash = tmux.start_with(
        "crash",
        &env,
        "RUST_BACKTRACE=0 THREEPORT_DASHBOARD_TEST_PANIC=1",
        &["dashboard"],
    );
    let (s, _) = crash.wait_text("[dashboard exited with 1]", Duration::from_secs(15));
    assert!(
        s.contains("test panic") && s.contains("internal error"),
        "{s}"
    );
    assert!(
        !s.contains("┌ workloads"),
        "the alternate screen is gone:\n{s}"
    );
    // Raw mode is off again: the shell's newline handling is back to normal (no staircase).
    let exit_line = s.lines().find(|l| l.contains("[dashboard exited")).unwrap();
    assert!(exit_line.starts_with("[dashboard exited"), "{s}");

    env.ok(&["down", "--name", "dash", "--purge"]);
}

#[test]
fn dashboard_outside_a_terminal_says_so() {
    let env = tptctl();
    env.up_local("pipe");
    let r = env.run(&["dashboard"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("needs a terminal"), "{}", r.stderr);
    let bad = env.home().join(".threeport").join("dashboard.yaml");
    std::fs::write(&bad, "keys:\n  explode: x\n").unwrap();
    let r = env.run(&["dashboard"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("dashboard.yaml") && r.stderr.contains("unknown action"),
        "{}",
        r.stderr
    );
    let _ = r.stdout;
}
