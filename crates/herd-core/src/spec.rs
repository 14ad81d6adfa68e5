//! How the tasks of a run execute: the spec a run is created with and stored with.

use std::collections::BTreeMap;

use crate::Limit;

/// How every task of a run executes; stored with the run and sent with each task.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunSpec {
    /// 0: no timeout.
    pub timeout_ms: u64,
    /// The person's stdin is forwarded to the tasks.
    pub interactive: bool,
    /// The command runs under a terminal (PTY).
    pub tty: bool,
    /// Environment variables set for the command, on top of the agent's. Stored and shown
    /// as given: secrets go in the request's `secret_env`.
    pub env: BTreeMap<String, String>,
    /// Names of the secret environment variables the run was created with (the request's
    /// `secret_env`). Only the names are stored and shown; the values live in the server's
    /// memory until the run ends. Set by the server, never by a request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_names: Vec<String>,
    /// Empty: the agent's working directory.
    pub cwd: String,
    /// Empty: `bash`.
    pub shell: String,
    /// Between SIGTERM and SIGKILL on cancel or timeout; 0: the agent's default.
    pub grace_ms: u32,
    /// Rate control of the fan-out.
    pub limits: RunLimits,
}

/// Rate control of a run's fan-out, as asked (counts or percentages of its targets).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunLimits {
    /// Machines running at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Limit>,
    /// Failures tolerated; once exceeded no new machine starts and the rest are skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<Limit>,
    /// Pause after a machine finishes before its slot goes to the next one.
    #[serde(skip_serializing_if = "is_zero")]
    pub batch_wait_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
