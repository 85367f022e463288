//! AWS clients, and [`AwsError`]: every failed AWS call as `<Operation>: <Code>: <message>`
//! (`CreateSubnet: InvalidSubnet.Range: The CIDR '10.0.0.0/20' is invalid.`), or, when no
//! answer came, `<Operation>: <what went wrong on the way>`. Never the SDK's Debug dump of
//! the raw HTTP response.
//!
//! Every call site converts with [`AwsResultExt::aws`], naming the operation:
//!
//! ```text
//! let out = ec2.create_vpc().cidr_block(cidr).send().await.aws("CreateVpc")?;
//! let found = eks.describe_cluster().name(n).send().await.aws("DescribeCluster").found()?;
//! ```

use aws_sdk_eks::config::http::HttpResponse;
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use std::fmt;

/// The tag every resource carries: `threeport.io/control-plane=<name>`.
pub const CONTROL_PLANE_TAG: &str = "threeport.io/control-plane";

pub(crate) struct Clients {
    pub sts: aws_sdk_sts::Client,
    pub iam: aws_sdk_iam::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
    pub ecr: aws_sdk_ecr::Client,
}

impl Clients {
    /// Clients for `region`, whatever region `cfg` was loaded with.
    pub fn new(cfg: &aws_config::SdkConfig, region: &str) -> Self {
        let cfg = cfg
            .to_builder()
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Self {
            sts: aws_sdk_sts::Client::new(&cfg),
            iam: aws_sdk_iam::Client::new(&cfg),
            ec2: aws_sdk_ec2::Client::new(&cfg),
            eks: aws_sdk_eks::Client::new(&cfg),
            ecr: aws_sdk_ecr::Client::new(&cfg),
        }
    }
}

/// How an AWS call failed, for callers that branch on it (retry, hint, treat as gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// AWS answered with an error; [`AwsError::code`] says which.
    Service,
    /// No answer in time.
    Timeout,
    /// The request did not reach AWS (DNS, connection refused, TLS).
    Unreachable,
    /// AWS answered with something the SDK could not read.
    BadResponse,
    /// The request could not be built or signed (no region, no credentials, a bad parameter).
    Request,
}

/// One failed AWS call.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The API operation, as AWS names it: `CreateSubnet`.
    pub operation: String,
    pub kind: AwsErrorKind,
    /// AWS's error code (`InvalidParameterValue`); set for [`AwsErrorKind::Service`].
    pub code: Option<String>,
    /// AWS's message, or a sentence on what went wrong before an answer came.
    pub message: String,
    /// The HTTP status of AWS's answer, when there was one.
    pub status: Option<u16>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{}: {code}: {}", self.operation, self.message),
            None => write!(f, "{}: {}", self.operation, self.message),
        }
    }
}

// Debug as Display: an `AwsError` in a panic or `{:?}` must not bring the SDK's dump back.
impl fmt::Debug for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwsError({self})")
    }
}

// No `source()`: the SDK error's chain is what printed the raw response. Its root cause is
// folded into `message` instead.
impl std::error::Error for AwsError {}

/// The innermost cause's text, e.g. `Connection refused (os error 111)`.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl AwsError {
    /// `operation` failed with `e`.
    pub fn from_sdk<E>(operation: &str, e: &SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let (kind, code, message) = match e {
            SdkError::ServiceError(se) => {
                let err = se.err();
                let code = err
                    .code()
                    .map(str::to_string)
                    .or_else(|| status.map(|s| format!("HTTP {s}")));
                let message = err
                    .message()
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "AWS sent no message".to_string());
                (AwsErrorKind::Service, code, message)
            }
            SdkError::TimeoutError(_) => (
                AwsErrorKind::Timeout,
                None,
                "no answer from the AWS endpoint in time".to_string(),
            ),
            SdkError::DispatchFailure(df) => {
                let cause = df
                    .as_connector_error()
                    .map(|c| root_cause(c))
                    .unwrap_or_else(|| root_cause(e));
                if df.is_timeout() {
                    (
                        AwsErrorKind::Timeout,
                        None,
                        format!("no answer from the AWS endpoint in time ({cause})"),
                    )
                } else if df.is_user() {
                    (
                        AwsErrorKind::Request,
                        None,
                        format!("the request could not be sent: {cause}"),
                    )
                } else {
                    (
                        AwsErrorKind::Unreachable,
                        None,
                        format!("cannot reach the AWS endpoint: {cause}"),
                    )
                }
            }
            SdkError::ResponseError(_) => (
                AwsErrorKind::BadResponse,
                None,
                match status {
                    Some(s) => format!(
                        "the AWS endpoint answered HTTP {s} with a response that is not AWS's"
                    ),
                    None => "the AWS endpoint answered with a response that is not AWS's".into(),
                },
            ),
            SdkError::ConstructionFailure(_) => (
                AwsErrorKind::Request,
                None,
                format!("the request could not be built: {}", root_cause(e)),
            ),
            _ => (AwsErrorKind::Request, None, root_cause(e)),
        };
        AwsError {
            operation: operation.to_string(),
            kind,
            code,
            message,
            status,
        }
    }

    /// True when AWS says the resource (or attachment) is already gone.
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|code| {
            code == "NoSuchEntity"
                || code == "ResourceNotFoundException"
                || code == "RepositoryNotFoundException"
                || code.ends_with(".NotFound")
                || code == "Gateway.NotAttached"
        })
    }

    /// True when AWS answered with this error code.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// `.aws("Operation")` on an SDK call's result.
pub trait AwsResultExt<T> {
    fn aws(self, operation: &str) -> Result<T, AwsError>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn aws(self, operation: &str) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(operation, &e))
    }
}

/// `.found()` on a converted result: "not found" becomes `Ok(None)`.
pub trait Found<T> {
    fn found(self) -> Result<Option<T>, AwsError>;
}

impl<T> Found<T> for Result<T, AwsError> {
    fn found(self) -> Result<Option<T>, AwsError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eks::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_eks::operation::describe_cluster::DescribeClusterError;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(
            status.try_into().unwrap(),
            SdkBody::from("<Error><Code>X</Code></Error>"),
        )
    }

    #[test]
    fn a_service_error_reads_operation_code_message() {
        let meta = ErrorMetadata::builder()
            .code("InvalidParameterValue")
            .message("Invalid DB instance class: db.x1\n")
            .build();
        let e: SdkError<DescribeClusterError, HttpResponse> =
            SdkError::service_error(DescribeClusterError::generic(meta), response(400));
        let a = AwsError::from_sdk("CreateDBInstance", &e);
        assert_eq!(
            a.to_string(),
            "CreateDBInstance: InvalidParameterValue: Invalid DB instance class: db.x1"
        );
        assert_eq!(a.kind, AwsErrorKind::Service);
        assert_eq!(a.status, Some(400));
        assert!(!a.is_not_found());
        let dump = format!("{a:?} {:#}", anyhow::Error::new(a.clone()));
        for raw in ["ServiceError", "raw:", "SdkBody", "<Error>"] {
            assert!(!dump.contains(raw), "{dump}");
        }

        let gone = SdkError::<DescribeClusterError, HttpResponse>::service_error(
            DescribeClusterError::generic(
                ErrorMetadata::builder()
                    .code("ResourceNotFoundException")
                    .build(),
            ),
            response(404),
        );
        let a = AwsError::from_sdk("DescribeCluster", &gone);
        assert!(a.is_not_found());
        assert_eq!(
            a.to_string(),
            "DescribeCluster: ResourceNotFoundException: AWS sent no message"
        );
        assert_eq!(Err::<(), _>(a).found(), Ok(None));
    }

    #[test]
    fn no_answer_is_a_sentence_naming_the_operation() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = SdkError::<DescribeClusterError, HttpResponse>::dispatch_failure(
            ConnectorError::io(Box::new(refused)),
        );
        let a = AwsError::from_sdk("GetCallerIdentity", &e);
        assert_eq!(
            a.to_string(),
            "GetCallerIdentity: cannot reach the AWS endpoint: Connection refused"
        );
        assert_eq!(
            (a.kind, a.code.as_deref()),
            (AwsErrorKind::Unreachable, None)
        );

        let e = SdkError::<DescribeClusterError, HttpResponse>::timeout_error("slow");
        let a = AwsError::from_sdk("CreateCluster", &e);
        assert_eq!(
            a.to_string(),
            "CreateCluster: no answer from the AWS endpoint in time"
        );
        assert_eq!(a.kind, AwsErrorKind::Timeout);
    }
}
