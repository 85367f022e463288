//! Installing control planes: the manifests (typed), the kind provider (through the `kind`
//! CLI, with duct), installing into any cluster through kube-rs server-side apply, and the
//! progress display shared by `tptctl up` and `down`.

pub mod install;
pub mod kind;
pub mod kubeconfig;
pub mod manifests;

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per phase: a spinner then ✓/✗ with the time taken on a terminal; plain
/// ` • phase …` lines otherwise (as kind prints them), so logs and CI output stay readable.
pub struct Progress {
    tty: bool,
    current: Mutex<Option<(String, Instant, Option<ProgressBar>)>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        let tty = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Progress {
            tty,
            current: Mutex::new(None),
        }
    }

    pub fn start(&self, phase: &str) {
        let bar = if self.tty {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template(" {spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            );
            b.set_message(phase.to_string());
            b.enable_steady_tick(Duration::from_millis(100));
            Some(b)
        } else {
            eprintln!(" • {phase} …");
            None
        };
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((phase.to_string(), Instant::now(), bar));
    }

    fn finish(&self, ok: bool, detail: &str) {
        if let Some((phase, t, bar)) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let mark = if ok { "✓" } else { "✗" };
            let line = format!(
                " {mark} {phase} ({:.1}s){detail}",
                t.elapsed().as_secs_f64()
            );
            match bar {
                Some(b) => b.finish_with_message(String::new()),
                None => {}
            }
            if self.tty {
                eprint!("\r\x1b[2K");
            }
            eprintln!("{line}");
        }
    }

    pub fn done(&self) {
        self.finish(true, "");
    }

    pub fn failed(&self, error: &str) {
        self.finish(false, &format!(": {error}"));
    }

    /// Run `f` as a phase.
    pub async fn phase<T, F: std::future::Future<Output = anyhow::Result<T>>>(
        &self,
        name: &str,
        f: F,
    ) -> anyhow::Result<T> {
        self.start(name);
        match f.await {
            Ok(v) => {
                self.done();
                Ok(v)
            }
            Err(e) => {
                self.failed(&format!("{e:#}"));
                Err(e)
            }
        }
    }
}
