//! Installing control planes: the manifests (typed), the kind provider (through the `kind`
//! CLI, with duct), the kubernetes provider (a cluster the user already has), installing into any cluster through kube-rs server-side apply, and what
//! every provider shares: the [`Progress`] display, the saved secrets, and the outcome of `up`
//! ([`Installed`], or an error with an [`UpFailed`] context).

#![forbid(unsafe_code)]

pub mod image;
pub mod install;
pub mod kind;
pub mod kubeconfig;
pub mod kubernetes;
pub mod manifests;
pub mod outcome;
pub mod progress;
pub mod secrets;

pub use outcome::{Installed, KubeApi, ProviderConfig, UpFailed};
pub use progress::{Event, Progress};
