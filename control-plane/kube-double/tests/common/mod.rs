#![allow(dead_code)]

use kube_api_double::{KubeDouble, Options};
use std::future::Future;
use std::time::Duration;

pub const READY_DELAY: Duration = Duration::from_millis(200);

pub async fn start() -> KubeDouble {
    // kube (ring) and other crates (aws-lc-rs) both link rustls: install one provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    KubeDouble::start(Options {
        ready_delay: READY_DELAY,
        ..Default::default()
    })
    .await
    .expect("start the double")
}

/// A real kube-rs client built from the double's kubeconfig, as a controller would build one.
pub async fn client(double: &KubeDouble) -> kube::Client {
    threeport_testkit::kube_client(&double.kubeconfig()).await
}

/// The API error's Status, or a panic saying what came back instead.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll `f` (every 20 ms) until it returns Some, or panic after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    threeport_testkit::eventually(Duration::from_secs(secs), what, f).await
}
