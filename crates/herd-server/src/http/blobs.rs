//! `/api/v1/blobs/{digest}`: the files of copy runs, uploaded once by SHA-256 (resumable)
//! and read by the agents of the run over their own connection.

use std::sync::Arc;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::State;
use herd_api::{Blob, BlobQuery, ErrorBody};

use super::extract::{Path, Query};
use crate::app::App;
use crate::blobs::Held;
use crate::error::Result;
use crate::fleet::Actor;

fn blob(digest: String, h: Held) -> Blob {
    Blob {
        digest,
        size: h.bytes,
        complete: h.complete,
    }
}

/// How much of a blob the server holds (0 bytes of one it never saw).
#[utoipa::path(get, path = "/api/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "SHA-256 of the content, 64 lowercase hex digits", pattern = "^[0-9a-f]{64}$")),
    responses(
        (status = 200, description = "What the server holds", body = Blob),
        (status = 400, description = "A digest that is not 64 lowercase hex digits", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn get(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(digest): Path<String>,
) -> Result<Json<Blob>> {
    let h = app.blobs().held(&digest).await?;
    Ok(Json(blob(digest, h)))
}

/// Uploads a blob's content from `offset` (what the server holds) to its end. Once the body
/// ends, the content's SHA-256 must be the digest, or the upload is discarded. An interrupted
/// upload keeps what arrived; continue it from the length `GET` tells.
#[utoipa::path(put, path = "/api/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "SHA-256 of the content, 64 lowercase hex digits", pattern = "^[0-9a-f]{64}$"), BlobQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The content from `offset` to its end"),
    responses(
        (status = 200, description = "The blob, held whole", body = Blob),
        (status = 400, description = "A bad digest, content whose SHA-256 is not the digest (discarded), an interrupted body, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 409, description = "`offset` is not what the server holds, or another upload of the blob is under way", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn put(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(digest): Path<String>,
    Query(q): Query<BlobQuery>,
    body: HttpBody,
) -> Result<Json<Blob>> {
    let h = app
        .blobs()
        .upload(&digest, q.offset, body.into_data_stream())
        .await?;
    tracing::info!(by = %herd_core::Escaped(&actor.name), digest = %digest, bytes = h.bytes, "blob uploaded");
    Ok(Json(blob(digest, h)))
}
