//! The one progress display of every install and teardown (local, kind, EKS infrastructure and
//! the control-plane install): one line per phase, a spinner then ✓/✗ with the time taken on a
//! terminal, plain ` • phase …` lines otherwise (as kind prints them), so logs and CI output
//! stay readable. Tests observe the same events instead of printing them.
//!
//! An error is printed once, by whoever receives it. A phase whose error is returned ends with a
//! bare ` ✗ phase (1.2s)` ([`Progress::failed`]); the caller prints the error itself. Only a
//! failure that does not stop the command (one resource of many that `down` could not delete)
//! shows its reason on the ✗ line ([`Progress::failed_because`]).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a [`Progress`] reports, as an observer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Start {
        phase: String,
    },
    Done {
        phase: String,
        elapsed: Duration,
    },
    Failed {
        phase: String,
        elapsed: Duration,
        /// Set only for failures that do not stop the command.
        reason: Option<String>,
    },
    /// A line between phases.
    Note(String),
}

type Observer = Box<dyn Fn(&Event) + Send + Sync>;

enum Output {
    /// A spinner per phase on stderr.
    Terminal,
    /// ` • phase …` and ` ✓ phase (0.1s)` lines on stderr.
    Lines,
    /// Events to a function, nothing printed.
    Observer(Observer),
}

struct Current {
    phase: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

pub struct Progress {
    out: Output,
    current: Mutex<Option<Current>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A spinner on a terminal (unless `NO_COLOR`), plain lines otherwise.
    pub fn new() -> Progress {
        let tty = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Progress::with(if tty { Output::Terminal } else { Output::Lines })
    }

    /// Plain ` • phase …` lines, terminal or not.
    pub fn lines() -> Progress {
        Progress::with(Output::Lines)
    }

    /// Every event to `f` and nothing printed (tests, or a caller with its own display).
    pub fn observed(f: impl Fn(&Event) + Send + Sync + 'static) -> Progress {
        Progress::with(Output::Observer(Box::new(f)))
    }

    fn with(out: Output) -> Progress {
        Progress {
            out,
            current: Mutex::new(None),
        }
    }

    fn emit(&self, event: Event, bar: Option<ProgressBar>) {
        match &self.out {
            Output::Observer(f) => f(&event),
            Output::Terminal | Output::Lines => {
                let line = match &event {
                    Event::Start { phase } => format!(" • {phase} …"),
                    Event::Done { phase, elapsed } => {
                        format!(" ✓ {phase} ({:.1}s)", elapsed.as_secs_f64())
                    }
                    Event::Failed {
                        phase,
                        elapsed,
                        reason,
                    } => {
                        let reason = reason.as_deref().map(|r| format!(": {r}"));
                        format!(
                            " ✗ {phase} ({:.1}s){}",
                            elapsed.as_secs_f64(),
                            reason.unwrap_or_default()
                        )
                    }
                    Event::Note(text) => text.clone(),
                };
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                eprintln!("{line}");
            }
        }
    }

    /// A phase begins (ending, unreported, any phase still open).
    pub fn start(&self, phase: &str) {
        let bar = match self.out {
            Output::Terminal => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template(" {spinner} {msg} ({elapsed})")
                        .expect("valid template"),
                );
                b.set_message(phase.to_string());
                b.enable_steady_tick(Duration::from_millis(100));
                Some(b)
            }
            Output::Lines | Output::Observer(_) => {
                self.emit(
                    Event::Start {
                        phase: phase.to_string(),
                    },
                    None,
                );
                None
            }
        };
        let old = self.lock().replace(Current {
            phase: phase.to_string(),
            started: Instant::now(),
            bar,
        });
        if let Some(Current { bar: Some(b), .. }) = old {
            b.finish_and_clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, ok: bool, reason: Option<&str>) {
        let Some(c) = self.lock().take() else {
            return;
        };
        let elapsed = c.started.elapsed();
        let event = if ok {
            Event::Done {
                phase: c.phase,
                elapsed,
            }
        } else {
            Event::Failed {
                phase: c.phase,
                elapsed,
                reason: reason.map(str::to_string),
            }
        };
        self.emit(event, c.bar);
    }

    /// The current phase succeeded.
    pub fn done(&self) {
        self.finish(true, None);
    }

    /// The current phase failed and its error is returned: the caller reports it.
    pub fn failed(&self) {
        self.finish(false, None);
    }

    /// The current phase failed and the command carries on: the reason goes on the ✗ line.
    pub fn failed_because(&self, reason: &str) {
        self.finish(false, Some(reason));
    }

    /// A line of its own between phases.
    pub fn note(&self, text: &str) {
        self.emit(Event::Note(text.to_string()), None);
    }

    /// Run `f` as a phase; its error is returned, not printed.
    pub async fn phase<T, F: std::future::Future<Output = anyhow::Result<T>>>(
        &self,
        name: &str,
        f: F,
    ) -> anyhow::Result<T> {
        self.start(name);
        let r = f.await;
        match &r {
            Ok(_) => self.done(),
            Err(_) => self.failed(),
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_returned_error_is_not_on_the_failed_line() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let p = Progress::observed(move |e| s.lock().unwrap().push(e.clone()));
        p.phase("one", async { Ok(()) }).await.unwrap();
        let e = p
            .phase("two", async {
                anyhow::Result::<()>::Err(anyhow::anyhow!("boom"))
            })
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "boom");
        p.start("three");
        p.failed_because("still there");
        p.note("a note");
        let seen = seen.lock().unwrap();
        let names: Vec<String> = seen
            .iter()
            .map(|e| match e {
                Event::Start { phase } => format!("start {phase}"),
                Event::Done { phase, .. } => format!("done {phase}"),
                Event::Failed { phase, reason, .. } => format!("failed {phase} {reason:?}"),
                Event::Note(t) => format!("note {t}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "start one",
                "done one",
                "start two",
                "failed two None",
                "start three",
                "failed three Some(\"still there\")",
                "note a note",
            ]
        );
    }
}
