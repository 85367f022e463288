//! Bearer tokens for an EKS cluster's API server, made the way aws-iam-authenticator (and
//! `aws eks get-token`) make them: a presigned STS `GetCallerIdentity` URL whose signature
//! covers the `x-k8s-aws-id` header naming the cluster, base64url-encoded after `k8s-aws-v1.`.
//! EKS calls STS with that URL to learn who is asking. Nothing here shells out, so the
//! control-plane image needs no `aws` CLI.

use anyhow::{Context, Result};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use std::time::{Duration, SystemTime};

/// The header that binds a token to one cluster.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL is valid for STS (aws-iam-authenticator's value).
const PRESIGN_FOR: Duration = Duration::from_secs(60);
/// How long EKS accepts a token after it was made: 15 minutes, minus a margin so a token is
/// replaced before the API server would refuse it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// A token and the moment to stop using it.
#[derive(Clone)]
pub struct EksToken {
    pub token: String,
    pub expiration: SystemTime,
}

// Never print the token itself.
impl std::fmt::Debug for EksToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken")
            .field("token", &"*** redacted ***")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// STS's endpoint for `cfg`: its endpoint override (`AWS_ENDPOINT_URL`), else the regional one.
fn sts_endpoint(cfg: &aws_config::SdkConfig, region: &str) -> String {
    match cfg.endpoint_url() {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("https://sts.{region}.amazonaws.com"),
    }
}

/// A token for `cluster` with `cfg`'s credentials, made at `now`.
pub async fn token(
    cfg: &aws_config::SdkConfig,
    cluster: &str,
    now: SystemTime,
) -> Result<EksToken> {
    let region = cfg
        .region()
        .map(|r| r.to_string())
        .context("making an EKS token: no AWS region is configured")?;
    let provider = cfg
        .credentials_provider()
        .context("making an EKS token: no AWS credentials are configured")?;
    let creds = provider
        .provide_credentials()
        .await
        .context("making an EKS token: cannot load AWS credentials")?;
    let identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_FOR);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .context("making an EKS token: signing parameters")?
        .into();
    let url = format!(
        "{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_endpoint(cfg, &region)
    );
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::once((CLUSTER_HEADER, cluster)),
        SignableBody::Bytes(&[]),
    )
    .context("making an EKS token: the STS URL")?;
    let (instructions, _) = sign(signable, &params)
        .context("making an EKS token: signing")?
        .into_parts();
    let mut request = http::Request::get(&url)
        .header(CLUSTER_HEADER, cluster)
        .body(())
        .context("making an EKS token: the STS request")?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned);
    Ok(EksToken {
        token: format!("k8s-aws-v1.{encoded}"),
        expiration: now + TOKEN_LIFETIME,
    })
}

/// The presigned URL inside a token (for checks and for tests).
pub fn presigned_url(token: &str) -> Option<String> {
    let encoded = token.strip_prefix("k8s-aws-v1.")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Whether a token made to expire at `expiration` should be replaced at `now`: a minute ahead,
/// so no request is sent with a token that lapses on the way.
pub fn needs_refresh(expiration: SystemTime, now: SystemTime) -> bool {
    now + Duration::from_secs(60) >= expiration
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn config(endpoint: Option<&str>) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region("us-east-1")
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            ));
        if let Some(e) = endpoint {
            loader = loader.endpoint_url(e);
        }
        loader.load().await
    }

    #[tokio::test]
    async fn a_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = token(&config(None).await, "threeport-dev", now)
            .await
            .unwrap();
        assert!(t.token.starts_with("k8s-aws-v1."));
        assert!(!t.token.contains('='), "unpadded base64url");
        let url = presigned_url(&t.token).unwrap();
        assert!(
            url.starts_with(
                "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256"), "{url}");
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        assert!(
            url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
            "{url}"
        );
        assert!(
            url.contains(
                "X-Amz-Credential=AKIDEXAMPLE%2F20270115%2Fus-east-1%2Fsts%2Faws4_request"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert_eq!(t.expiration, now + TOKEN_LIFETIME);
        // Another cluster, another signature.
        let other = token(&config(None).await, "other", now).await.unwrap();
        assert_ne!(presigned_url(&other.token), Some(url));
        assert!(!format!("{t:?}").contains("k8s-aws-v1"));
        // An endpoint override is where the URL points.
        let t = token(&config(Some("http://127.0.0.1:5000")).await, "c", now)
            .await
            .unwrap();
        assert!(
            presigned_url(&t.token)
                .unwrap()
                .starts_with("http://127.0.0.1:5000/?Action=GetCallerIdentity")
        );
    }

    #[test]
    fn a_token_is_refreshed_a_minute_before_it_expires() {
        let made = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let exp = made + TOKEN_LIFETIME;
        assert!(!needs_refresh(exp, made));
        assert!(!needs_refresh(exp, exp - Duration::from_secs(61)));
        assert!(needs_refresh(exp, exp - Duration::from_secs(60)));
        assert!(needs_refresh(exp, exp + Duration::from_secs(1)));
    }
}
