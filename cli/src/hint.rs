//! Errors that say what to do about them. On stderr an error is one `error: <what happened>` line
//! (with its causes, `{e:#}`), then one `hint: <what to do>` line per hint, as uv prints them:
//!
//! ```text
//! error: no control plane is configured
//! hint: create one with `tptctl up --provider local`
//! ```
//!
//! A hint is attached where the fix is known (`.hint("…")` on a `Result`, or [`error`]) and
//! survives any `.context(…)` added above it: [`render`] looks for hints along the whole chain.

use std::error::Error as StdError;
use std::fmt;

/// An error and what the user can do about it.
pub struct Hinted {
    error: anyhow::Error,
    /// Outermost first. Several when `.hint()` is called on an error that already has one: they
    /// are kept together because the inner `Hinted` is not a link of the outer one's chain.
    hints: Vec<String>,
}

impl fmt::Display for Hinted {
    // Only the error's own message: its causes are this error's `source()`, so `{e:#}` on the
    // outer `anyhow::Error` prints each once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl fmt::Debug for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.error)?;
        for h in &self.hints {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl StdError for Hinted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// A new error with a hint: `hint::error("no files given", "tptctl apply -f FILE")`.
pub fn error(
    message: impl fmt::Display + fmt::Debug + Send + Sync + 'static,
    hint: impl Into<String>,
) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error: anyhow::Error::msg(message),
        hints: vec![hint.into()],
    })
}

/// `.hint("…")` on any fallible result: the error keeps its message and causes.
pub trait Hint<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
    fn with_hint<S: Into<String>>(self, hint: impl FnOnce() -> S) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> Hint<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.with_hint(|| hint)
    }
    fn with_hint<S: Into<String>>(self, hint: impl FnOnce() -> S) -> anyhow::Result<T> {
        self.map_err(|e| {
            let error = e.into();
            // Join the hints only when the error itself is a `Hinted`: `downcast` would also find
            // one under a `.context()`, and drop that context.
            let top_is_hinted = error.chain().next().is_some_and(|top| top.is::<Hinted>());
            let hinted = if top_is_hinted {
                let mut h = error.downcast::<Hinted>().expect("checked");
                h.hints.insert(0, hint().into());
                h
            } else {
                Hinted {
                    error,
                    hints: vec![hint().into()],
                }
            };
            anyhow::Error::new(hinted)
        })
    }
}

/// The hints along an error's chain, outermost first.
pub fn hints(e: &anyhow::Error) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for h in e.chain().filter_map(|c| c.downcast_ref::<Hinted>()) {
        for hint in &h.hints {
            if !out.contains(&hint.as_str()) {
                out.push(hint);
            }
        }
    }
    out
}

/// What `main` prints for an error: `error: …` and its `hint: …` lines, newline-terminated.
pub fn render(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e:#}\n");
    for h in hints(e) {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

/// Print a problem that does not end the command (one object of many failed), in the same form.
pub fn eprint(error: impl fmt::Display, hint: Option<&str>) {
    eprintln!("error: {error}");
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn hint_on_its_own_line_and_causes_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Err::<(), _>(io)
            .context("cannot read web.yaml")
            .hint("check the path given with -f")
            .context("apply failed")
            .unwrap_err();
        assert_eq!(
            render(&e),
            "error: apply failed: cannot read web.yaml: no such file\nhint: check the path given with -f\n"
        );
    }

    #[test]
    fn error_without_a_hint_renders_as_before() {
        let e = anyhow::anyhow!("boom").context("outer");
        assert_eq!(render(&e), "error: outer: boom\n");
    }

    #[test]
    fn new_error_with_hint_and_downcast_still_works() {
        let e = error("no control plane is configured", "run `tptctl up`");
        assert_eq!(
            render(&e),
            "error: no control plane is configured\nhint: run `tptctl up`\n"
        );
        // Hints stacked directly or across a context, outermost first; a repeat is shown once.
        let e = Err::<(), _>(e)
            .hint("or pass --control-plane")
            .context("cannot list workloads")
            .hint("run `tptctl up`")
            .unwrap_err();
        assert_eq!(
            hints(&e),
            vec!["run `tptctl up`", "or pass --control-plane"]
        );
        assert_eq!(
            format!("{e:#}"),
            "cannot list workloads: no control plane is configured"
        );
    }
}
