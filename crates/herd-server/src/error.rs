//! Errors of the control plane and how they look on the HTTP API: a status and a one-line
//! message that says what failed and what to do, as `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("store: {0}")]
    Store(#[from] herd_store::StoreError),
    #[error("output log: {0}")]
    Outlog(#[from] herd_outlog::OutlogError),
    #[error("{0}")]
    Internal(String),
    /// A system the server called (a model) failed or answered what cannot be used.
    #[error("{0}")]
    BadGateway(String),
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        use herd_store::StoreError;
        match self {
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ServerError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            ServerError::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            ServerError::Store(StoreError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ServerError::Store(StoreError::Closed(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Store(_) | ServerError::Outlog(_) | ServerError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %herd_core::Escaped(&self.to_string()), "request failed");
        }
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

pub type Result<T> = std::result::Result<T, ServerError>;
