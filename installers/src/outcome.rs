//! What a provider's `up` ends with. Every provider (local, kind, EKS) returns one [`Installed`],
//! which the caller turns into its config entry; every failed `up` returns an error whose context
//! is an [`UpFailed`] saying what it was doing and what the failure left behind.

use crate::kubeconfig::Connection;
use std::fmt;
use std::path::PathBuf;
use threeport_api::ClientTls;

pub const LOCAL: &str = "local";
pub const KIND: &str = "kind";
pub const EKS: &str = "eks";
pub const KUBERNETES: &str = "kubernetes";

/// A control plane that is up and answers.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The control plane's name (its config entry's).
    pub name: String,
    /// `host:port` of the API (served over mTLS).
    pub api_server: String,
    /// The API's CA and a client certificate it accepts.
    pub tls: ClientTls,
    /// The key the API encrypts secret fields with (base64).
    pub encryption_key: String,
    /// The cluster the control plane runs in, as seen from this machine (none when local).
    pub kube_api: Option<KubeApi>,
    pub provider: ProviderConfig,
}

/// How to reach the cluster a control plane runs in.
#[derive(Debug, Clone)]
pub struct KubeApi {
    pub connection: Connection,
    /// The kubeconfig the install saved for it.
    pub kubeconfig: PathBuf,
}

/// What only one provider knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// The embedded control plane, a process on this machine.
    Local,
    Kind {
        cluster: String,
    },
    Eks {
        cluster: String,
        region: String,
        /// The AWS config profile the install used; `None` for the default credential chain.
        profile: Option<String>,
        account_id: String,
    },
    /// A cluster the user already had, by its kubeconfig context.
    Kubernetes {
        context: String,
    },
}

impl ProviderConfig {
    /// The provider's name, as the config entry and `--provider` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Local => LOCAL,
            ProviderConfig::Kind { .. } => KIND,
            ProviderConfig::Eks { .. } => EKS,
            ProviderConfig::Kubernetes { .. } => KUBERNETES,
        }
    }
}

impl Installed {
    pub fn url(&self) -> String {
        format!("https://{}", self.api_server)
    }

    /// A client of the API, with this install's client certificate.
    pub fn client(&self) -> anyhow::Result<threeport_api::Client> {
        Ok(threeport_api::Client::new(&self.url(), Some(&self.tls))?)
    }
}

/// The context of a failed `up`: `{e:#}` reads "<doing>: <cause>", and [`UpFailed::summary`]
/// says what was rolled back or left. Find it with `e.downcast_ref::<UpFailed>()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpFailed {
    /// What failed, e.g. `creating EKS control plane prod`.
    pub doing: String,
    /// What this run had created and deleted again.
    pub rolled_back: Vec<String>,
    /// What still exists: kept on purpose (`retained`), or not deletable.
    pub left_behind: Vec<String>,
    /// Kept for debugging on request, rather than rolled back.
    pub retained: bool,
    /// The file that lists what is left (the install state, the EKS inventory).
    pub listed_in: Option<PathBuf>,
}

impl fmt::Display for UpFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.doing)
    }
}

impl UpFailed {
    pub fn new(doing: impl Into<String>) -> UpFailed {
        UpFailed {
            doing: doing.into(),
            ..Default::default()
        }
    }

    /// One sentence on what the failure left: `nothing was left behind`, or what was.
    pub fn summary(&self) -> String {
        // Name a few; count many (an EKS inventory holds about twenty).
        let items = |items: &[String]| match items.len() {
            1..=3 => items.join(", "),
            n => format!("{n} resources"),
        };
        let rolled_back = match self.rolled_back.len() {
            0 => String::new(),
            1..=3 => format!("rolled back {}; ", items(&self.rolled_back)),
            n => format!("rolled back {n} resources; "),
        };
        let listed = match &self.listed_in {
            Some(p) => format!(" (listed in {})", p.display()),
            None => String::new(),
        };
        if self.left_behind.is_empty() {
            format!("{rolled_back}nothing was left behind")
        } else if self.retained {
            format!("kept for debugging: {}{listed}", items(&self.left_behind))
        } else {
            format!(
                "{rolled_back}left behind: {}{listed}",
                items(&self.left_behind)
            )
        }
    }

    /// Record the outcome of one rollback step: `what` rolled back, or left behind with why.
    pub fn undo(&mut self, what: String, result: anyhow::Result<()>) {
        match result {
            Ok(()) => self.rolled_back.push(what),
            Err(err) => self.left_behind.push(format!("{what} ({err:#})")),
        }
    }

    /// The last rollback step of every provider: the control plane's data dir goes (a missing
    /// one is nothing to undo), then the "Rolling back" line ends done or failed.
    pub fn finish_rollback(&mut self, data_dir: &std::path::Path, progress: &crate::Progress) {
        match std::fs::remove_dir_all(data_dir) {
            Ok(()) => self.rolled_back.push(data_dir.display().to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => self
                .left_behind
                .push(format!("{} ({err})", data_dir.display())),
        }
        if self.left_behind.is_empty() {
            progress.done();
        } else {
            progress.failed();
        }
    }

    /// The `UpFailed` along `e`'s chain, if any.
    pub fn of(e: &anyhow::Error) -> Option<&UpFailed> {
        e.downcast_ref::<UpFailed>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn context_reads_doing_then_cause_and_summary_says_what_is_left() {
        let mut f = UpFailed::new("creating control plane dev on kind");
        f.rolled_back = vec!["kind cluster threeport-dev".into()];
        let e = Err::<(), _>(anyhow::anyhow!("boom"))
            .context(f.clone())
            .context("outer")
            .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "outer: creating control plane dev on kind: boom"
        );
        assert_eq!(UpFailed::of(&e), Some(&f));
        assert_eq!(
            f.summary(),
            "rolled back kind cluster threeport-dev; nothing was left behind"
        );
        f.rolled_back = (0..7).map(|i| format!("r{i}")).collect();
        f.left_behind = vec!["Vpc vpc-1".into()];
        assert_eq!(
            f.summary(),
            "rolled back 7 resources; left behind: Vpc vpc-1"
        );
        f.retained = true;
        assert_eq!(f.summary(), "kept for debugging: Vpc vpc-1");
        f.left_behind = (0..17).map(|i| format!("r{i}")).collect();
        f.listed_in = Some("/x/inventory.json".into());
        assert_eq!(
            f.summary(),
            "kept for debugging: 17 resources (listed in /x/inventory.json)"
        );
        assert_eq!(UpFailed::new("x").summary(), "nothing was left behind");
    }
}
