//! A kube-rs client from a kubeconfig, built the way a controller builds one.

/// A [`kube::Client`] for the kubeconfig in `kubeconfig_yaml` (its current
/// context), via `Kubeconfig::from_yaml` and `Config::from_custom_kubeconfig`.
///
/// Installs the aws-lc-rs rustls provider first unless one is installed
/// (kube and other crates all link rustls, so a process must pick one).
/// Panics, saying which step failed, if the kubeconfig is unusable.
pub async fn client(kubeconfig_yaml: &str) -> ::kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kubeconfig = ::kube::config::Kubeconfig::from_yaml(kubeconfig_yaml)
        .unwrap_or_else(|e| panic!("the kubeconfig does not parse: {e}"));
    let config = ::kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("the kubeconfig is not usable: {e}"));
    ::kube::Client::try_from(config)
        .unwrap_or_else(|e| panic!("cannot build a kube client from the kubeconfig: {e}"))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    #[should_panic(expected = "the kubeconfig does not parse")]
    async fn a_bad_kubeconfig_says_so() {
        super::client("clusters: [").await;
    }

    #[tokio::test]
    #[should_panic(expected = "the kubeconfig is not usable")]
    async fn a_kubeconfig_without_a_context_says_so() {
        super::client("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
            .await;
    }

    /// The client is built from the kubeconfig's server, without contacting it.
    #[tokio::test]
    async fn builds_a_client_for_the_current_context() {
        let yaml = "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
            clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n\
            contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: ns1\n\
            users:\n- name: u\n  user:\n    token: t\n";
        let client = super::client(yaml).await;
        assert_eq!(client.default_namespace(), "ns1");
    }
}
