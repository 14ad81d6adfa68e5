//! The HTTP API (pending).
use std::sync::Arc;

pub fn router(_app: Arc<crate::app::App>) -> axum::Router {
    axum::Router::new()
}
