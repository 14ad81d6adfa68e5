//! Jobs and workflows: stored definitions (versioned by name) and workflow runs with one row
//! per step, written at every transition so that a run continues after a restart.

use async_trait::async_trait;
use herd_core::{DefKind, RunState, StepState};

use crate::Result;
use crate::model::{AuditEntry, ListFilter};

/// One version of a job's or workflow's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionRow {
    pub kind: DefKind,
    pub name: String,
    /// 1 for the first version, then one more per change.
    pub version: i64,
    /// The definition as checked (JSON), what runs use.
    pub body: String,
    /// The definition as written (YAML or JSON text), for `show`.
    pub source: String,
    pub created_at: i64,
    pub created_by: String,
}

/// A run of a workflow (a job run is a workflow run of one step).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRunRow {
    pub id: String,
    pub kind: DefKind,
    pub name: String,
    pub version: i64,
    /// The definition it runs (JSON), copied at creation: later versions do not change it.
    pub definition: String,
    /// Parameters (JSON object), secret ones left out.
    pub params: String,
    /// Secret parameters, each sealed (JSON object: name → sealed value).
    pub sealed: String,
    /// Selectors the run was given (`-t`), for steps without their own.
    pub targets: Vec<String>,
    pub state: RunState,
    pub created_by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub cancel_requested: bool,
    /// The parent workflow run and step (`RUN/STEP`) when this run is a step of another.
    pub parent: Option<String>,
}

/// One step of a workflow run.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStepRow {
    pub flow_run_id: String,
    pub step_id: String,
    pub state: StepState,
    /// Attempts started (0 before the first).
    pub attempt: i64,
    /// What the current attempt runs: a run's id (steps on machines) or a child workflow
    /// run's id; chosen and stored before it is created, so that a restart finds it.
    pub run_id: Option<String>,
    /// Outputs (JSON object) once the step ended.
    pub outputs: Option<String>,
    /// What a step the server runs itself (http, notify) answered, for people to read.
    pub output: Option<String>,
    /// One line: why it failed or was skipped.
    pub detail: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The next attempt starts no earlier than this (unix ms), while it waits to retry.
    pub not_before: Option<i64>,
}

/// One attempt of a step of a workflow run: keyed by (run, step, attempt number), written by
/// the engine in the transaction that records the step's new attempt, ended when the attempt
/// ends.
#[derive(Debug, Clone, PartialEq)]
pub struct StepAttemptRow {
    pub flow_run_id: String,
    pub step_id: String,
    /// 1 for the first; numbers may skip (a `herd ask` alternative the policy denied).
    pub attempt: i64,
    /// What it ran: a run's id (steps on machines) or a child workflow run's id; none for
    /// steps the server runs itself (http, notify).
    pub run_id: Option<String>,
    /// `running` until it ends, then how it ended (`succeeded`, `failed`, `cancelled`).
    pub state: StepState,
    /// One line: why it failed.
    pub detail: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// Definitions and workflow runs.
#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Stores `def` as its name's next version (its `version` must be the latest stored
    /// plus one, else [`crate::StoreError::Conflict`]), with `audit`, in one transaction.
    async fn put_definition(&self, def: &DefinitionRow, audit: &AuditEntry) -> Result<()>;
    /// The latest version of a definition.
    async fn definition(&self, kind: DefKind, name: &str) -> Result<Option<DefinitionRow>>;
    /// One version of a definition.
    async fn definition_version(
        &self,
        kind: DefKind,
        name: &str,
        version: i64,
    ) -> Result<Option<DefinitionRow>>;
    /// The latest version of every definition of `kind`, by name.
    async fn definitions(&self, kind: DefKind) -> Result<Vec<DefinitionRow>>;
    /// Deletes every version of a definition, with `audit`; false (and no audit entry) if
    /// there was none. Runs keep their copy.
    async fn delete_definition(
        &self,
        kind: DefKind,
        name: &str,
        audit: &AuditEntry,
    ) -> Result<bool>;

    /// Creates a workflow run with its steps (all `pending`) and `audit`, in one transaction.
    async fn create_flow_run(
        &self,
        run: &FlowRunRow,
        steps: &[FlowStepRow],
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRow>>;
    /// Newest first; `state`, `since`, `who` of the filter apply (`machine` does not).
    async fn flow_runs(&self, filter: &ListFilter) -> Result<Vec<FlowRunRow>>;
    /// Ids starting with `prefix`, at most `limit`.
    async fn flow_run_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>>;
    /// Runs not finished, oldest first (what the engine resumes at start).
    async fn unfinished_flow_runs(&self) -> Result<Vec<FlowRunRow>>;
    /// The steps of a run, in the order they were created.
    async fn flow_steps(&self, flow_run_id: &str) -> Result<Vec<FlowStepRow>>;
    /// Writes each step row whole (by run and step id), each attempt row and, with `finish`,
    /// ends the run (state, at), in one transaction. An attempt not stored yet is inserted
    /// whole; one stored already gets its `state`, `detail` and `finished_at` (its run id and
    /// start stay as first written).
    async fn update_flow(
        &self,
        flow_run_id: &str,
        steps: &[FlowStepRow],
        attempts: &[StepAttemptRow],
        finish: Option<(RunState, i64)>,
    ) -> Result<()>;
    /// Every attempt of a run's steps, by step id, then attempt number.
    async fn flow_step_attempts(&self, flow_run_id: &str) -> Result<Vec<StepAttemptRow>>;
    /// Marks a run to be cancelled, with `audit`; `None` if there is no such run. A finished
    /// run is answered unchanged (and nothing audited).
    async fn request_flow_cancel(&self, id: &str, audit: &AuditEntry)
    -> Result<Option<FlowRunRow>>;

    /// Deletes up to `limit` workflow runs that finished before `before` (oldest first), with
    /// their steps and their steps' attempts; answers how many runs went. A run not finished is never deleted.
    async fn prune_flow_runs(&self, before: i64, limit: i64) -> Result<u64>;
}
