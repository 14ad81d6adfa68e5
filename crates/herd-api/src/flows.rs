//! Jobs and workflows: `/api/v1/jobs`, `/api/v1/workflows` (definitions, applied as YAML or
//! JSON text and versioned by name), their runs (`POST …/{name}/runs`) and
//! `/api/v1/workflow-runs` (a job's run is a workflow run of one step, `main`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herd_core::{DefKind, RunState, StepState};

/// The body of `POST /api/v1/jobs` and `POST /api/v1/workflows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyDefinition {
    /// The definition as YAML or JSON text (at most 1 MiB).
    pub source: String,
}

/// A stored definition (its latest version unless said otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Definition {
    pub kind: DefKind,
    pub name: String,
    /// 1, then one more per change.
    pub version: i64,
    #[serde(default)]
    pub description: String,
    /// Whether this apply stored a new version (false: it was the same as the latest).
    #[serde(default)]
    pub changed: bool,
    pub created_at: i64,
    pub created_by: String,
    /// The definition as checked.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    /// The definition as written.
    pub source: String,
    /// A workflow's steps drawn as text (level by level, with what each needs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub graph: String,
}

/// The body of `POST /api/v1/jobs/{name}/runs` and `POST /api/v1/workflows/{name}/runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct StartFlow {
    /// Parameters: strings are read as their declared type (`"3"` for an int).
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Selectors for the steps that name no targets (OR'ed).
    pub targets: Vec<String>,
    /// A person approves the steps' commands the command policy sends for approval.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub approve: bool,
}

/// A run of a workflow or a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowRun {
    pub id: String,
    pub kind: DefKind,
    pub name: String,
    pub version: i64,
    pub state: RunState,
    /// Parameters (secret ones are named in `secret_params`, never shown).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_params: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    #[schema(required = true)]
    pub finished_at: Option<i64>,
    pub cancel_requested: bool,
    /// The workflow run and step this run is a step of (`RUN/STEP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its steps, in the order written (`steps`, then `on_failure`, then `always`); empty in
    /// listings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<FlowStep>,
    /// What was done, what failed and why (a plan's run of `herd ask`, once ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// One step of a workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowStep {
    pub id: String,
    /// command, script, uses, http, notify or workflow.
    pub kind: String,
    /// `steps`, `on_failure` or `always`.
    pub group: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    pub state: StepState,
    /// Attempts started.
    pub attempt: i64,
    /// The run (steps on machines) or the workflow run (`workflow` steps) of its current
    /// attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Outputs merged over its machines, its helper condition, per-machine outputs, events.
    #[schema(value_type = Object)]
    pub outputs: serde_json::Value,
    /// What a step the server ran itself (http, notify) answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Every attempt, first to last (a retry's, or for a plan's run of `herd ask`, an
    /// alternative's); empty before the first, and for runs recorded before herd kept them.
    #[serde(default)]
    pub attempts: Vec<StepAttempt>,
}

/// One attempt of a workflow run's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepAttempt {
    /// 1 for the first.
    pub attempt: i64,
    /// The run it ran (steps on machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The child workflow run it ran (`workflow` steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_run_id: Option<String>,
    /// `running` until it ends, then how it ended.
    pub state: StepState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub started_at: i64,
    #[schema(required = true)]
    pub finished_at: Option<i64>,
}

/// The query of `GET /api/v1/workflow-runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FlowRunsQuery {
    /// At most this many runs (clamped to 1..=10000); default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Only runs created at or after this time (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only runs in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// Only runs started with this API key (its name, or `key:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub who: Option<String>,
    /// Only runs of the job or workflow of this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub name: Option<String>,
}
