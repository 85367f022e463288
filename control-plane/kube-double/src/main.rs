//! `kube-api-double`: run the Kubernetes API server double by hand.
//!
//! ```text
//! kube-api-double --kubeconfig-out /tmp/kd.yaml &
//! KUBECONFIG=/tmp/kd.yaml kubectl get ns
//! ```

use clap::Parser;
use kube_api_double::{KubeDouble, Options};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A test-only Kubernetes API server double (never for production use).
#[derive(Parser, Debug)]
#[command(name = "kube-api-double", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Milliseconds until a new Pod is ready (or fails).
    #[arg(long, default_value_t = 300)]
    ready_delay_ms: u64,
    /// Where to write the kubeconfig (mode 0600; it holds the client key).
    #[arg(long)]
    kubeconfig_out: PathBuf,
    /// A container image (or `*` pattern) whose Pods never become ready; repeatable.
    #[arg(long = "never-ready-image", value_name = "PATTERN")]
    never_ready_images: Vec<String>,
    /// Gateways of the simulated Gateway API implementation get no address
    /// (`Programmed=False`, `AddressNotAssigned`).
    #[arg(long)]
    no_gateway_programming: bool,
    /// Gateway addresses are load-balancer host names instead of IPs.
    #[arg(long)]
    gateway_hostname_addresses: bool,
    /// The simulated cert-manager fails every issuance (an unreachable HTTP-01 challenge).
    #[arg(long)]
    no_certificate_issuance: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // kube/async-nats (ring) and reqwest/aws-sdk (aws-lc-rs) both link rustls; pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let double = KubeDouble::start(Options {
        ready_delay: Duration::from_millis(args.ready_delay_ms),
        listen: args.listen,
        never_ready_images: args.never_ready_images,
        gateway_programming: !args.no_gateway_programming,
        gateway_hostname_addresses: args.gateway_hostname_addresses,
        certificate_issuance: !args.no_certificate_issuance,
        ..Options::default()
    })
    .await?;
    double.write_kubeconfig(&args.kubeconfig_out)?;
    println!("{}", double.url());
    eprintln!(
        "kube-api-double: kubeconfig written to {0}; try: KUBECONFIG={0} kubectl get ns  (Ctrl-C to stop)",
        args.kubeconfig_out.display()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    double.shutdown().await;
    Ok(())
}
