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
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&double.kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig is usable");
    kube::Client::try_from(config).expect("client")
}

/// The API error's Status, or a panic saying what came back instead.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll `f` until it returns Some, or panic after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
