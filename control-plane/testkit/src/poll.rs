//! Polling until a condition holds: async (tokio) and blocking (thread sleep).
//!
//! [`eventually`] / [`eventually_blocking`] poll every 20 ms and panic with
//! "timed out after {timeout:?} waiting for {what}". [`until`] /
//! [`until_blocking`] take the interval and return `None` on timeout, for
//! callers that want to say more in their own panic (a screen, a log tail).

use std::future::Future;
use std::time::{Duration, Instant};

/// The interval [`eventually`] and [`eventually_blocking`] poll at.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every `interval` until it returns `Some`, or returns `None` once
/// `timeout` has passed (after one last try).
pub async fn until<T, F, Fut>(timeout: Duration, interval: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls `f` every 20 ms until it returns `Some`; panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match until(timeout, INTERVAL, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// [`until`] for blocking code: sleeps the thread between tries.
pub fn until_blocking<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// [`eventually`] for blocking code: polls `f` every 20 ms until it returns
/// `Some`; panics after `timeout`.
pub fn eventually_blocking<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    match until_blocking(timeout, INTERVAL, f) {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_some() {
        let mut tries = 0;
        let v = eventually(Duration::from_secs(5), "the third try", || {
            tries += 1;
            let t = tries;
            async move { (t == 3).then_some(t) }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for nothing")]
    async fn eventually_panics_naming_what() {
        eventually(Duration::from_millis(50), "nothing", || async {
            None::<()>
        })
        .await;
    }

    #[test]
    fn blocking_polls_until_some_and_tries_once_more_at_the_deadline() {
        let mut tries = 0;
        assert_eq!(
            eventually_blocking(Duration::from_secs(5), "the third try", || {
                tries += 1;
                (tries == 3).then_some("yes")
            }),
            "yes"
        );
        let mut tries = 0;
        let start = Instant::now();
        let none = until_blocking(
            Duration::from_millis(100),
            Duration::from_millis(30),
            || {
                tries += 1;
                None::<()>
            },
        );
        assert!(none.is_none());
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!((2..=6).contains(&tries), "{tries} tries");
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for the moon")]
    fn eventually_blocking_panics_naming_what() {
        eventually_blocking(Duration::from_millis(50), "the moon", || None::<()>);
    }
}
