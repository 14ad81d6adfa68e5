//! Which entries of a list to answer: the queries of `GET /api/v1/audit` ([`ListQuery`]),
//! `GET /api/v1/runs` ([`RunsQuery`]) and `GET /api/v1/tasks` ([`TasksQuery`]), which answer
//! the newest entries first.

use herd_core::{RunState, TaskState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?limit=N`: at most this many entries, 1 to 10000; default 50.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many entries (clamped to 1..=10000); default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Only entries at or after this time (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only entries about this machine (by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub machine: Option<String>,
    /// Only entries by this actor: an API key's name (`ci`) or an actor as the audit log
    /// writes it (`key:ci`, `agent:web-1`, `server`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub who: Option<String>,
}

impl ListQuery {
    /// The number of entries to answer: the limit asked, clamped, or the default.
    pub fn effective(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 10_000)
    }
}

/// The query of `GET /api/v1/runs`: [`ListQuery`]'s filters and a run state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// At most this many runs (clamped to 1..=10000); default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Only runs created at or after this time (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only runs in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// Only runs with a task on this machine (by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub machine: Option<String>,
    /// Only runs created with this API key (its name, or `key:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub who: Option<String>,
}

/// The query of `GET /api/v1/tasks`: [`ListQuery`]'s filters and a task state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// At most this many tasks (clamped to 1..=10000); default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Only tasks created at or after this time (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only tasks in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    /// Only tasks of this machine (by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub machine: Option<String>,
    /// Only tasks of runs created with this API key (its name, or `key:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub who: Option<String>,
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
            let q = ListQuery {
                limit,
                ..ListQuery::default()
            };
            assert_eq!(q.effective(), want, "{limit:?}");
        }
    }
}
