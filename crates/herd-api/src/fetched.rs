//! `/api/v1/tasks/{id}/fetched`: the file a machine sent for a fetch run (`herd fetch`).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Response header: SHA-256 of the whole fetched file, 64 lowercase hex digits.
pub const FETCHED_SHA256: &str = "x-herd-sha256";
/// Response header: the whole fetched file's length in bytes.
pub const FETCHED_SIZE: &str = "x-herd-size";
/// Response header: the file's permission bits on the machine, in octal (e.g. `644`).
pub const FETCHED_MODE: &str = "x-herd-mode";

/// `GET /api/v1/tasks/{id}/fetched?offset=N`: the content from byte `offset` (to continue an
/// interrupted download).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FetchedQuery {
    /// Where the answer starts in the file; 0 for all of it.
    pub offset: u64,
}
