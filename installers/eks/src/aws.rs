//! AWS clients and error helpers shared by `up` and `down`.

use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata};

/// The tag every resource carries: `threeport.io/control-plane=<name>`.
pub const CONTROL_PLANE_TAG: &str = "threeport.io/control-plane";

pub(crate) struct Clients {
    pub sts: aws_sdk_sts::Client,
    pub iam: aws_sdk_iam::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
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
        }
    }
}

/// True when the error says the resource (or attachment) is already gone.
pub(crate) fn is_not_found<E: ProvideErrorMetadata>(e: &E) -> bool {
    match e.code() {
        Some(code) => {
            code == "NoSuchEntity"
                || code == "ResourceNotFoundException"
                || code.ends_with(".NotFound")
                || code == "Gateway.NotAttached"
        }
        None => false,
    }
}

/// The error code, if any.
pub(crate) fn code<E: ProvideErrorMetadata>(e: &E) -> &str {
    e.code().unwrap_or("")
}

/// An anyhow error that names the operation and shows the whole AWS error chain.
pub(crate) fn err<E: std::error::Error>(e: E, op: &str) -> anyhow::Error {
    anyhow::anyhow!("{op} failed: {}", DisplayErrorContext(&e))
}
