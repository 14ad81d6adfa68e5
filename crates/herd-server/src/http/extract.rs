//! Request extractors that answer every rejection the way the rest of the API does: a
//! status and `{"error": "one line"}` (the framework's own rejections are plain text). The
//! caller's API key comes first, so an unauthenticated request is refused before its body
//! is looked at.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::error::ServerError;
use crate::fleet::Actor;

impl FromRequestParts<Arc<App>> for Actor {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // Browsers cannot set headers on a WebSocket; accept the key as a query parameter too.
        let from_query = || {
            parts.uri.query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("api_key="))
                    .map(str::to_string)
            })
        };
        let token = match header.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(t) => t.trim().to_string(),
            None => from_query().ok_or_else(|| {
                ServerError::Unauthorized(
                    "missing API key — send `Authorization: Bearer <key>` (the CLI reads it from its config or HERD_API_KEY)".into(),
                )
            })?,
        };
        app.fleet().authenticate_key(&token).await
    }
}

/// A JSON body; a body that is not JSON of the expected shape is a 400 with a one-line error.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(ServerError::BadRequest(format!(
                "bad request body: {} — send JSON as described at /api/v1/openapi.json",
                e.body_text()
            ))),
        }
    }
}

/// Query parameters; ones that do not parse are a 400 with a one-line error.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ServerError::BadRequest(format!(
                "bad query: {} — see /api/v1/openapi.json",
                e.body_text()
            ))),
        }
    }
}

/// A path parameter; one that does not decode is a 400 with a one-line error.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ServerError::BadRequest(format!(
                "bad path: {}",
                e.body_text()
            ))),
        }
    }
}
