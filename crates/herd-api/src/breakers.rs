//! The circuit breakers of the hosts herd calls (`GET /api/v1/breakers`): workflow `http` and
//! `notify` steps. Each server keeps its breakers in memory; a restarted server starts with
//! none open.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One host's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Breaker {
    /// `host:port`.
    pub host: String,
    /// `closed`, `open` or `half_open`.
    pub state: BreakerState,
    /// Failures in a row (connection error, timeout, 5xx, 429) since the last healthy answer.
    pub consecutive_failures: u32,
    /// When it opened (unix ms); null while closed.
    #[schema(required = true)]
    pub opened_at_ms: Option<i64>,
    /// When its next probe may go (unix ms); null while closed.
    #[schema(required = true)]
    pub next_probe_ms: Option<i64>,
}

/// Where a breaker is: `closed` (calls go), `open` (calls fail at once, nothing is sent),
/// `half_open` (one probe is out; its answer closes or re-opens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;

    #[test]
    fn breakers_match_the_server() {
        check(
            r#"{"consecutive_failures":5,"host":"hooks.example.com:443","next_probe_ms":1030000,"opened_at_ms":1000000,"state":"open"}"#,
            &Breaker {
                host: "hooks.example.com:443".into(),
                state: BreakerState::Open,
                consecutive_failures: 5,
                opened_at_ms: Some(1_000_000),
                next_probe_ms: Some(1_030_000),
            },
        );
        check(
            r#"{"consecutive_failures":0,"host":"h:80","next_probe_ms":null,"opened_at_ms":null,"state":"half_open"}"#,
            &Breaker {
                host: "h:80".into(),
                state: BreakerState::HalfOpen,
                consecutive_failures: 0,
                opened_at_ms: None,
                next_probe_ms: None,
            },
        );
    }
}
