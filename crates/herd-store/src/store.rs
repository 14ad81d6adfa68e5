//! The store's interface, by domain. Each method is shaped by what the server does with it
//! (`claim_queued`, `apply_progress`, `join_agent`), not by tables; every change a person
//! makes is applied together with its audit entry in one transaction.

use async_trait::async_trait;
use herd_core::{LabelEdits, Labels, RunState, TaskState};

use crate::model::*;
use crate::{Result, StoreError};

/// Machines of the fleet.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Takes one use of join token `token_id` (if it has one left and has not expired at
    /// `now`) and records `agent`, with `audit`, in one transaction.
    async fn join_agent(
        &self,
        token_id: &str,
        now: i64,
        agent: &AgentRow,
        audit: &AuditEntry,
    ) -> Result<JoinOutcome>;

    async fn agent(&self, id: &str) -> Result<Option<AgentRow>>;

    /// Every agent by name; revoked ones too if `include_revoked`.
    async fn agents(&self, include_revoked: bool) -> Result<Vec<AgentRow>>;

    /// Writes what sessions reported (hello, heartbeats) for many agents in one transaction.
    async fn flush_agents(&self, batch: &[AgentFlush]) -> Result<()>;

    /// Replaces the labels an agent declares (a start with other `--label`s), with the audit
    /// entry of the change, in one transaction; returns the agent as it is now.
    async fn set_declared_labels(
        &self,
        id: &str,
        labels: &Labels,
        audit: &AuditEntry,
    ) -> Result<Option<AgentRow>>;

    /// Replaces an agent's operator label edits; returns the agent as it is now.
    async fn set_label_edits(
        &self,
        id: &str,
        edits: &LabelEdits,
        audit: &AuditEntry,
    ) -> Result<Option<AgentRow>>;

    /// Replaces the operator label edits of many agents, each with its audit entry, in one
    /// transaction; returns the agents as they are now (an unknown id is left out, and its
    /// entry is not recorded).
    async fn set_many_label_edits(
        &self,
        changes: &[(String, LabelEdits, AuditEntry)],
    ) -> Result<Vec<AgentRow>>;

    /// Revokes an agent (a revoked one stays revoked); returns the agent as it is now.
    async fn revoke_agent(&self, id: &str, at: i64, audit: &AuditEntry)
    -> Result<Option<AgentRow>>;
}

/// API keys and join tokens (stored hashed).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Records a new key with `audit`; a name another key (revoked or not) has is
    /// [`StoreError::Conflict`].
    async fn create_api_key(&self, key: &ApiKeyRow, audit: &AuditEntry) -> Result<()>;
    /// Revokes a key at `at` (a revoked one keeps its first revocation), with `audit`, in one
    /// transaction; returns the key as it is now, `None` (and no audit entry) if there is none.
    async fn revoke_api_key(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKeyRow>>;
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>>;
    /// Every API key, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRow>>;
    async fn count_api_keys(&self) -> Result<i64>;
    async fn create_join_token(&self, token: &JoinTokenRow, audit: &AuditEntry) -> Result<()>;
    async fn join_token(&self, id: &str) -> Result<Option<JoinTokenRow>>;
    /// Takes every use left of a join token (no machine joins with it after this), with
    /// `audit`, in one transaction; returns the token as it is now, `None` if there is none.
    async fn revoke_join_token(&self, id: &str, audit: &AuditEntry)
    -> Result<Option<JoinTokenRow>>;
    /// Every join token, newest first.
    async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>>;
}

/// Runs and their tasks. Task states change only along [`herd_core::Transition`]s: each
/// update applies to the states the transition applies to and changes nothing otherwise.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates a run and its tasks, with `audit`, in one transaction.
    async fn create_run(&self, run: &RunRow, tasks: &[NewTask], audit: &AuditEntry) -> Result<()>;

    async fn run(&self, id: &str) -> Result<Option<RunRow>>;

    /// The most recent runs, newest first.
    async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        self.runs_filtered(&ListFilter {
            limit,
            ..ListFilter::default()
        })
        .await
    }

    /// The most recent runs `filter` lets through, newest first.
    async fn runs_filtered(&self, filter: &ListFilter) -> Result<Vec<RunRow>>;

    /// The most recent tasks `filter` lets through, newest first.
    async fn tasks_filtered(&self, filter: &ListFilter) -> Result<Vec<TaskRow>>;

    async fn unfinished_runs(&self) -> Result<Vec<RunRow>>;

    /// Deletes, with their tasks, at most `limit` (≤ `ROWS_PER_STATEMENT`) of the runs that
    /// finished before `before` (unix ms), oldest finished first, in one transaction. A run
    /// that has not finished, or that has a task still queued, dispatched or running, is
    /// never deleted. Audit entries stay.
    async fn prune_runs(&self, before: i64, limit: i64) -> Result<PrunedRuns>;

    /// Marks a run's cancellation as requested, with `audit`; returns the run as it is now.
    async fn request_cancel(&self, run_id: &str, audit: &AuditEntry) -> Result<Option<RunRow>>;

    /// Sets a run's final state; the first call also sets when it finished (a late result
    /// may revise the state of a finished run). Returns whether the run changed.
    async fn finish_run(&self, id: &str, state: RunState, at: i64) -> Result<bool>;

    async fn task(&self, id: &str) -> Result<Option<TaskRow>>;

    /// Ids of the runs whose id starts with `prefix` (taken literally, no wildcards), at most
    /// `limit`, in id order.
    async fn run_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>>;

    /// Ids of the tasks whose id starts with `prefix` (taken literally), at most `limit`, in
    /// id order.
    async fn task_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>>;

    /// The tasks with these ids (those that exist, in no particular order).
    async fn tasks_by_ids(&self, ids: &[String]) -> Result<Vec<TaskRow>>;

    /// A run's tasks, by machine name.
    async fn tasks_of_run(&self, run_id: &str) -> Result<Vec<TaskRow>>;

    /// The most recent tasks, newest first.
    async fn recent_tasks(&self, limit: i64) -> Result<Vec<TaskRow>> {
        self.tasks_filtered(&ListFilter {
            limit,
            ..ListFilter::default()
        })
        .await
    }

    /// The open tasks (queued, dispatched, running) of these agents.
    async fn open_tasks_of_agents(&self, agent_ids: &[String]) -> Result<Vec<TaskRow>>;

    /// How many tasks are in each state (states without tasks may be absent).
    async fn task_counts(&self) -> Result<Vec<(TaskState, i64)>>;

    /// Claims queued tasks for sending ([`herd_core::Transition::Dispatch`]), in one
    /// transaction; returns the ids that were still queued.
    async fn claim_queued(&self, ids: &[String], at: i64) -> Result<Vec<String>>;

    /// Ends tasks with `state` (`lost`, `cancelled` or `skipped`:
    /// [`herd_core::Transition::End`]) and `reason`, in one transaction; returns the ids
    /// that changed (a task the transition does not apply to is left as it is).
    async fn end_tasks(
        &self,
        ids: &[String],
        state: TaskState,
        reason: &str,
        at: i64,
    ) -> Result<Vec<String>>;

    /// Persists the effect of agent events on many tasks in one transaction: last seq,
    /// output position, start and exit. Applied only forward: a seq at or below the stored
    /// one changes nothing; a start and an exit apply only where their transitions do
    /// (an exit revives a `lost` task). Several records for one task merge. Returns the
    /// tasks whose exit took effect, with the state each has now (an exit that did not apply
    /// — the task had ended otherwise — is not among them).
    async fn apply_progress(&self, batch: &[TaskProgress]) -> Result<Vec<(String, TaskState)>>;
}

/// Who did what, where.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records an entry that goes with no stored change (e.g. a cancel sent to an agent).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// The most recent entries, newest first.
    async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        self.audit_filtered(&ListFilter {
            limit,
            ..ListFilter::default()
        })
        .await
    }
    /// The newest entries `filter` lets through (its `state` is not used), newest first.
    async fn audit_filtered(&self, filter: &ListFilter) -> Result<Vec<AuditRow>>;
}

/// Variables and secrets (`herd vars`), each change with its audit entry.
#[async_trait]
pub trait VarStore: Send + Sync {
    /// Sets a variable (replacing the value of its scope and key), with `audit`, in one
    /// transaction.
    async fn set_var(&self, var: &VarRow, audit: &AuditEntry) -> Result<()>;
    async fn var(&self, scope: &str, key: &str) -> Result<Option<VarRow>>;
    /// The variables of `scope`, by key.
    async fn vars(&self, scope: &str) -> Result<Vec<VarRow>>;
    /// Deletes a variable, with `audit`; `None` (and no audit entry) if there was none.
    async fn delete_var(
        &self,
        scope: &str,
        key: &str,
        audit: &AuditEntry,
    ) -> Result<Option<VarRow>>;
}

/// The command policy's versions (`herd policy set|show|history`).
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Stores `policy` with `audit` in one transaction, only as the latest version plus one
    /// (checked inside the transaction; else [`StoreError::Conflict`]).
    async fn put_policy(&self, policy: &PolicyRow, audit: &AuditEntry) -> Result<()>;
    /// Version `version`, or the latest for `None`.
    async fn policy(&self, version: Option<i64>) -> Result<Option<PolicyRow>>;
    /// Every version, newest first.
    async fn policies(&self) -> Result<Vec<PolicyRow>>;
    /// The latest version's number; 0 while none is stored.
    async fn policy_version(&self) -> Result<i64>;
}

/// The conflict of a policy version that is not the latest plus one.
pub fn policy_conflict(version: i64) -> StoreError {
    StoreError::Conflict(format!(
        "the policy changed meanwhile: version {version} is not its next version"
    ))
}

/// A whole store: one backend (SQLite, PostgreSQL) implements every domain.
#[async_trait]
pub trait Store:
    AgentStore
    + CredentialStore
    + RunStore
    + AuditStore
    + VarStore
    + crate::FlowStore
    + crate::ScheduleStore
    + crate::LangflowStore
    + crate::AskStore
    + PolicyStore
    + crate::AlertStore
{
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Closes the connections (and gives up what makes this server the database's only
    /// one). The store answers [`StoreError::Closed`] afterwards.
    async fn close(&self);
}

/// Checks that `state` is one a server may end a task with.
pub fn check_end_state(state: TaskState) -> Result<()> {
    if herd_core::Transition::End(state).from_states().is_empty() {
        return Err(StoreError::Invalid(format!(
            "a task cannot be ended as {state}"
        )));
    }
    Ok(())
}
