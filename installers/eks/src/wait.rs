//! Waiting for EKS to reach a state, through a seam: the status comes from a
//! [`StatusSource`] and time from a [`Clock`], so tests never really wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsResultExt, Found};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where time comes from while waiting.
pub trait Clock: Send + Sync {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()>;
}

/// The real clock (tokio timers).
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Where the status of EKS resources comes from. `Ok(None)` means "does not exist".
pub trait StatusSource: Send + Sync {
    fn cluster_status<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Option<String>>>;
    fn nodegroup_status<'a>(
        &'a self,
        cluster: &'a str,
        nodegroup: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>>;
}

/// The real status source: DescribeCluster / DescribeNodegroup.
pub struct EksStatusSource {
    pub client: aws_sdk_eks::Client,
}

impl StatusSource for EksStatusSource {
    fn cluster_status<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let out = (self.client.describe_cluster().name(cluster).send().await)
                .aws("DescribeCluster")
                .found()?;
            Ok(out
                .as_ref()
                .and_then(|o| o.cluster())
                .and_then(|c| c.status())
                .map(|s| s.as_str().to_string()))
        })
    }
    fn nodegroup_status<'a>(
        &'a self,
        cluster: &'a str,
        nodegroup: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let out = (self.client.describe_nodegroup())
                .cluster_name(cluster)
                .nodegroup_name(nodegroup)
                .send()
                .await
                .aws("DescribeNodegroup")
                .found()?;
            Ok(out
                .as_ref()
                .and_then(|o| o.nodegroup())
                .and_then(|n| n.status())
                .map(|s| s.as_str().to_string()))
        })
    }
}

/// How waits behave. The defaults suit real AWS (clusters take 10–15 minutes).
#[derive(Clone)]
pub struct WaitOptions {
    pub interval: Duration,
    pub cluster_timeout: Duration,
    pub nodegroup_timeout: Duration,
    pub clock: Arc<dyn Clock>,
    /// Replaces DescribeCluster/DescribeNodegroup when set (tests).
    pub status: Option<Arc<dyn StatusSource>>,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            cluster_timeout: Duration::from_secs(30 * 60),
            nodegroup_timeout: Duration::from_secs(30 * 60),
            clock: Arc::new(TokioClock::default()),
            status: None,
        }
    }
}

/// What a wait is looking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The status must become this value.
    Status(&'static str),
    /// The resource must disappear.
    Gone,
}

/// Polls `poll` every `interval` until `target` is reached. Fails at once on a
/// `*_FAILED` status, after `timeout`, or when `cancel` fires.
pub async fn wait_until<'a, F>(
    what: &str,
    target: Target,
    mut poll: F,
    clock: &dyn Clock,
    interval: Duration,
    timeout: Duration,
    cancel: Option<&CancellationToken>,
) -> Result<()>
where
    F: FnMut() -> BoxFuture<'a, Result<Option<String>>>,
{
    let start = clock.now();
    loop {
        if cancel.is_some_and(|c| c.is_cancelled()) {
            bail!("cancelled while waiting for {what}");
        }
        let status = poll().await?;
        match (&target, status.as_deref()) {
            (Target::Status(want), Some(s)) if s == *want => return Ok(()),
            (Target::Gone, None) => return Ok(()),
            (Target::Status(_), None) => bail!("{what} does not exist"),
            (_, Some(s))
                if s.ends_with("FAILED")
                    || s == "DEGRADED" && target == Target::Status("ACTIVE") =>
            {
                bail!("{what} is {s}")
            }
            _ => {}
        }
        if clock.now().saturating_sub(start) >= timeout {
            bail!(
                "timed out after {:?} waiting for {what} (last status {})",
                timeout,
                status.as_deref().unwrap_or("none")
            );
        }
        match cancel {
            Some(c) => {
                tokio::select! {
                    _ = c.cancelled() => bail!("cancelled while waiting for {what}"),
                    _ = clock.sleep(interval) => {}
                }
            }
            None => clock.sleep(interval).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock whose sleeps return at once and advance virtual time.
    #[derive(Default)]
    struct FakeClock {
        now: Mutex<Duration>,
        sleeps: Mutex<u32>,
    }
    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.now.lock().unwrap()
        }
        fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
            *self.now.lock().unwrap() += d;
            *self.sleeps.lock().unwrap() += 1;
            Box::pin(async {})
        }
    }

    fn script(states: &[Option<&str>]) -> Mutex<Vec<Option<String>>> {
        Mutex::new(states.iter().rev().map(|s| s.map(str::to_string)).collect())
    }

    async fn run(states: &[Option<&str>], target: Target, timeout: Duration) -> (Result<()>, u32) {
        let clock = FakeClock::default();
        let s = script(states);
        let r = wait_until(
            "cluster x",
            target,
            || {
                let next = {
                    let mut v = s.lock().unwrap();
                    if v.len() > 1 {
                        v.pop().unwrap()
                    } else {
                        v[0].clone()
                    }
                };
                Box::pin(async move { Ok(next) })
            },
            &clock,
            Duration::from_secs(15),
            timeout,
            None,
        )
        .await;
        let n = *clock.sleeps.lock().unwrap();
        (r, n)
    }

    #[tokio::test]
    async fn waits_through_creating_until_active() {
        let (r, sleeps) = run(
            &[
                Some("CREATING"),
                Some("CREATING"),
                Some("CREATING"),
                Some("ACTIVE"),
            ],
            Target::Status("ACTIVE"),
            Duration::from_secs(3600),
        )
        .await;
        r.unwrap();
        assert_eq!(sleeps, 3);
    }

    #[tokio::test]
    async fn fails_fast_on_failed_status() {
        let (r, sleeps) = run(
            &[Some("CREATING"), Some("CREATE_FAILED")],
            Target::Status("ACTIVE"),
            Duration::from_secs(3600),
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("CREATE_FAILED"));
        assert_eq!(sleeps, 1);
    }

    #[tokio::test]
    async fn times_out_in_virtual_time() {
        let (r, sleeps) = run(
            &[Some("CREATING")],
            Target::Status("ACTIVE"),
            Duration::from_secs(60),
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("timed out"));
        assert_eq!(sleeps, 4);
    }

    #[tokio::test]
    async fn waits_until_gone() {
        let (r, sleeps) = run(
            &[Some("DELETING"), Some("DELETING"), None],
            Target::Gone,
            Duration::from_secs(3600),
        )
        .await;
        r.unwrap();
        assert_eq!(sleeps, 2);
    }

    #[tokio::test]
    async fn cancellation_stops_the_wait() {
        let clock = FakeClock::default();
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let mut polls = 0;
        let r = wait_until(
            "cluster x",
            Target::Status("ACTIVE"),
            || {
                polls += 1;
                if polls == 2 {
                    c2.cancel();
                }
                Box::pin(async { Ok(Some("CREATING".to_string())) })
            },
            &clock,
            Duration::from_secs(15),
            Duration::from_secs(3600),
            Some(&cancel),
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("cancelled"));
        assert_eq!(polls, 2);
    }
}
