//! AWS access for the controllers: an SDK config from an `AwsAccount`, and AWS failures as
//! reconcile errors that read `<Operation>: <Code>: <message>`.
//!
//! An account holds either access keys (encrypted at rest; the runtime reads them revealed) or
//! a `RoleArn` (with its `ExternalId`) that is assumed through STS, starting from the
//! controller's own credentials (its environment, profile or instance role). Every client
//! honours `AWS_ENDPOINT_URL`, the SDK's standard, so any compatible endpoint works; tests
//! set [`AwsAccess::endpoint_url`] instead of the process environment.

use crate::runtime::ReconcileError;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde_json::Value;
use threeport_api::kinds::AWS_ACCOUNT;
use threeport_api::{Client, ObjectExt};
use threeport_eks::{AwsError, AwsErrorKind};

/// How the controllers reach AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsAccess {
    /// Overrides `AWS_ENDPOINT_URL` (tests point every client at moto with it).
    pub endpoint_url: Option<String>,
}

/// An account's SDK config, and its name for messages.
pub struct Account {
    pub name: String,
    pub config: SdkConfig,
}

impl AwsAccess {
    /// The SDK config for the `AwsAccount` with this ID.
    pub async fn account(&self, api: &Client, id: u64) -> Result<Account, ReconcileError> {
        let account = match api.get_revealed(AWS_ACCOUNT, id).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => {
                return Err(ReconcileError::Permanent(format!(
                    "AwsAccount {id} does not exist; create it or name another account"
                )));
            }
            Err(e) => return Err(ReconcileError::Api(e)),
        };
        let name = account.name().to_string();
        let text = |f: &str| {
            account
                .get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = text("DefaultRegion") {
            loader = loader.region(Region::new(region));
        }
        let keys = text("AccessKeyID").zip(text("SecretAccessKey"));
        if let Some((key, secret)) = &keys {
            loader = loader.credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                key,
                secret,
                None,
                None,
                "threeport-aws-account",
            ));
        }
        let base = loader.load().await;
        if base.region().is_none() {
            return Err(ReconcileError::Permanent(format!(
                "AwsAccount {name:?} has no DefaultRegion, and AWS_REGION is not set for the controller; set the account's DefaultRegion"
            )));
        }
        let config = match text("RoleArn") {
            Some(role) => {
                let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
                    .session_name("threeport-controller");
                if let Some(external) = text("ExternalId") {
                    provider = provider.external_id(external);
                }
                let provider = provider.configure(&base).build().await;
                base.to_builder()
                    .credentials_provider(
                        aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(provider),
                    )
                    .build()
            }
            None if keys.is_none() => {
                return Err(ReconcileError::Permanent(format!(
                    "AwsAccount {name:?} has no credentials: set AccessKeyID and SecretAccessKey, or RoleArn (with ExternalId) to assume"
                )));
            }
            None => base,
        };
        Ok(Account { name, config })
    }
}

/// A failed AWS call as a reconcile error: AWS's refusal is permanent (retrying sends the same
/// request), except throttling and AWS's own 5xx; no answer at all is retried.
pub fn reconcile_error(e: AwsError) -> ReconcileError {
    let transient = match e.kind {
        AwsErrorKind::Service => {
            e.status.is_some_and(|s| s >= 500)
                || e.code.as_deref().is_some_and(|c| {
                    c.contains("Throttl") || c == "RequestLimitExceeded" || c == "TooManyRequests"
                })
        }
        AwsErrorKind::Timeout | AwsErrorKind::Unreachable | AwsErrorKind::BadResponse => true,
        AwsErrorKind::Request => false,
    };
    if transient {
        ReconcileError::Retryable(e.to_string())
    } else {
        ReconcileError::Permanent(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: AwsErrorKind, code: Option<&str>, status: Option<u16>) -> AwsError {
        AwsError {
            operation: "CreateSecret".into(),
            kind,
            code: code.map(str::to_string),
            message: "m".into(),
            status,
        }
    }

    #[test]
    fn refusals_fail_and_outages_retry() {
        let e = reconcile_error(err(
            AwsErrorKind::Service,
            Some("ResourceExistsException"),
            Some(400),
        ));
        assert!(e.is_permanent());
        assert_eq!(e.to_string(), "CreateSecret: ResourceExistsException: m");
        for e in [
            err(
                AwsErrorKind::Service,
                Some("ThrottlingException"),
                Some(400),
            ),
            err(AwsErrorKind::Service, Some("InternalFailure"), Some(500)),
            err(AwsErrorKind::Unreachable, None, None),
            err(AwsErrorKind::Timeout, None, None),
        ] {
            assert!(!reconcile_error(e).is_permanent());
        }
    }
}
