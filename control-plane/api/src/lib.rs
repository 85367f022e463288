//! Threeport's object model and REST client: the crate `tptctl`, the dashboard and the
//! controllers share. It stays light (no server or database dependencies).

#![forbid(unsafe_code)]

pub mod client;
pub mod envelope;
pub mod kinds;
pub mod manifest;
pub mod object;
pub mod services;
pub mod status;
pub mod validate;

pub use client::{ApiError, Client, ClientTls, object_id};
pub use envelope::{Envelope, Meta, WatchEvent};
pub use kinds::{Field, FieldType, KINDS, Kind, Operation};
pub use object::{ObjectExt, Reconciliation};

/// The API version segment in every path (`/v0/...`).
pub const API_VERSION: &str = "v0";

/// Placeholder shown instead of a secret value. Sending it back in a write keeps the stored value.
pub const REDACTED: &str = "*** redacted ***";
