//! `/api/v1/blobs/{digest}`: the files of copy runs (`herd cp`), uploaded once to the server
//! by their SHA-256 and read by every machine of the run.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How much of a blob the server holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Blob {
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub digest: String,
    /// Bytes held: the whole length once complete, else where an upload continues.
    pub size: u64,
    /// The whole content arrived and has the digest.
    pub complete: bool,
}

/// `PUT /api/v1/blobs/{digest}?offset=N`: the body continues the content from byte `offset`,
/// which must be what the server holds (`GET` tells).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct BlobQuery {
    /// Where the body starts in the content; 0 for a new upload.
    pub offset: u64,
}
