//! The response envelope every endpoint uses (upstream's wire format, kept exactly).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    pub page: u64,
    pub size: u64,
    pub total_count: u64,
}

/// Upstream spells these keys in lower case, unlike everything else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub message: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    pub meta: Meta,
    #[serde(rename = "Type")]
    pub kind: String,
    /// Always an array, even for one object; `null` on errors.
    pub data: Option<Vec<Value>>,
    pub status: Status,
}

impl Envelope {
    pub fn ok(kind: &str, code: u16, data: Vec<Value>, meta: Meta) -> Envelope {
        Envelope {
            meta,
            kind: kind.to_string(),
            data: Some(data),
            status: Status {
                code,
                message: reason(code).to_string(),
                error: String::new(),
            },
        }
    }

    pub fn error(kind: &str, code: u16, error: impl Into<String>) -> Envelope {
        Envelope {
            meta: Meta::default(),
            kind: kind.to_string(),
            data: None,
            status: Status {
                code,
                message: reason(code).to_string(),
                error: error.into(),
            },
        }
    }
}

/// The HTTP reason phrase, as Go's `http.StatusText` gives it (upstream fills `message` with it).
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// One event of the watch stream (`GET /v0/watch`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct WatchEvent {
    /// `created`, `updated` or `deleted`; also the SSE event name.
    pub operation: String,
    /// PascalCase kind name.
    pub kind: String,
    pub object: Value,
}
