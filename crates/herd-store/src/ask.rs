//! What `herd ask` keeps beside the workflow run a plan runs as: the request and its summary,
//! every attempt of every step (the plan's command, a retry, an alternative the model
//! proposed) with the policy's check, the approval and the validation, and every exchange
//! with the model (redacted before it gets here).

use async_trait::async_trait;

use crate::Result;
use crate::model::AuditEntry;

/// A plan's run: the workflow run `run_id` and what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskRunRow {
    pub run_id: String,
    /// The plan whose model exchanges lead to this run.
    pub plan_id: String,
    pub request: String,
    /// The plan's steps as reviewed (JSON).
    pub plan: String,
    /// Nobody waits for approvals (`--yes`, no terminal): an alternative that needs one fails
    /// its step instead of waiting.
    pub unattended: bool,
    /// What was done, what failed and why; written when the run ends.
    pub summary: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// One attempt of one step of a plan's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskAttemptRow {
    pub run_id: String,
    pub step_id: String,
    /// 1 for the plan's own command, then one more per retry or alternative.
    pub attempt: i64,
    /// `plan`, `retry` or `alternative`.
    pub origin: String,
    pub command: String,
    pub description: String,
    /// The policy's check of `command` (JSON: class, decision, reasons).
    pub check: String,
    /// `allowed`, `approved`, `awaiting`, `refused` or `denied`.
    pub approval: String,
    /// The run of the attempt's tasks, once started.
    pub task_run_id: Option<String>,
    /// The judgement of how it went (JSON), once it ended.
    pub validation: Option<String>,
    pub created_at: i64,
}

/// One request to the model and its answer, secrets redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskExchangeRow {
    pub id: String,
    pub plan_id: String,
    /// `plan`, `validation` or `alternative`.
    pub kind: String,
    pub step_id: Option<String>,
    pub at: i64,
    pub model: String,
    pub tokens: i64,
    /// The messages sent (JSON).
    pub request: String,
    /// What the model answered (text), empty when it did not answer.
    pub answer: String,
    pub error: Option<String>,
}

#[async_trait]
pub trait AskStore: Send + Sync {
    /// Stores a plan's run and its first attempts, before the workflow run exists.
    async fn create_ask_run(&self, run: &AskRunRow, attempts: &[AskAttemptRow]) -> Result<()>;
    async fn ask_run(&self, run_id: &str) -> Result<Option<AskRunRow>>;
    /// Stores an attempt, or replaces the one with its run, step and number.
    async fn put_ask_attempt(&self, attempt: &AskAttemptRow) -> Result<()>;
    /// The run's attempts by step and number.
    async fn ask_attempts(&self, run_id: &str) -> Result<Vec<AskAttemptRow>>;
    async fn set_ask_summary(&self, run_id: &str, summary: &str) -> Result<()>;
    /// Sets an attempt `awaiting` approval to `approval`, with `audit`, in one transaction;
    /// false when it was not awaiting one.
    async fn decide_ask_attempt(
        &self,
        run_id: &str,
        step_id: &str,
        attempt: i64,
        approval: &str,
        audit: &AuditEntry,
    ) -> Result<bool>;
    async fn add_ask_exchange(&self, exchange: &AskExchangeRow) -> Result<()>;
    /// A plan's exchanges, oldest first.
    async fn ask_exchanges(&self, plan_id: &str) -> Result<Vec<AskExchangeRow>>;
}
