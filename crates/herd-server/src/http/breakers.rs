//! `/api/v1/breakers`: the circuit breakers of the hosts herd calls (workflow `http` and
//! `notify` steps), from this server's memory.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{Breaker, BreakerState, ErrorBody};

use crate::app::App;
use crate::fleet::Actor;

/// Every host this server has called since it started, by host, with its breaker. Kept in
/// memory: a restarted server starts with every breaker closed.
#[utoipa::path(get, path = "/api/v1/breakers", tag = "breakers",
    responses(
        (status = 200, description = "Every host's breaker, by host", body = Vec<Breaker>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(_: Actor, State(app): State<Arc<App>>) -> Json<Vec<Breaker>> {
    Json(app.actions().breakers().into_iter().map(breaker).collect())
}

fn breaker(b: herd_actions::BreakerState) -> Breaker {
    let ms = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    Breaker {
        host: b.host,
        state: match b.phase {
            herd_actions::BreakerPhase::Closed => BreakerState::Closed,
            herd_actions::BreakerPhase::Open => BreakerState::Open,
            herd_actions::BreakerPhase::HalfOpen => BreakerState::HalfOpen,
        },
        consecutive_failures: b.consecutive_failures,
        opened_at_ms: ms(b.opened_at_ms),
        next_probe_ms: ms(b.next_probe_ms),
    }
}
