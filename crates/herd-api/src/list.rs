//! How much of a list to answer: the query of `GET /api/v1/runs`, `GET /api/v1/tasks` and
//! `GET /api/v1/audit`, which answer the newest entries first.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?limit=N`: at most this many entries, 1 to 10000; default 50.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many entries (clamped to 1..=10000); default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl ListQuery {
    /// The number of entries to answer: the limit asked, clamped, or the default.
    pub fn effective(self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_limit_table() {
        let cases = [
            (None, 50),
            (Some(20), 20),
            (Some(0), 1),
            (Some(-5), 1),
            (Some(10_000), 10_000),
            (Some(10_001), 10_000),
        ];
        for (limit, want) in cases {
            assert_eq!(ListQuery { limit }.effective(), want, "{limit:?}");
        }
    }
}
