//! Rows of the store as the rest of herd sees them: typed (states are `TaskState` and
//! `RunState`, JSON columns are their domain types). Times are unix milliseconds.

use herd_core::{
    Facts, LabelEdits, Labels, Metrics, OutputPos, RunSpec, RunState, TaskState, effective_labels,
    label_claims,
};

/// A machine that joined the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    /// SHA-256 of the agent's credential secret.
    pub cred_hash: String,
    /// Labels the agent reports (`--label`).
    pub labels: Labels,
    /// Operator edits of those labels (a `None` removes a reported label).
    pub label_edits: LabelEdits,
    /// The labels its join token let it hold (`None`: any).
    pub allowed_labels: Option<Labels>,
    pub facts: Facts,
    pub metrics: Option<Metrics>,
    pub version: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl AgentRow {
    /// Reported labels as far as its token allowed, with operator edits applied: what
    /// selectors match.
    pub fn effective_labels(&self) -> Labels {
        effective_labels(
            &self.labels,
            self.allowed_labels.as_ref(),
            &self.label_edits,
        )
    }

    /// Reported labels beyond what its token allowed that no operator edit settled.
    pub fn label_claims(&self) -> Labels {
        label_claims(
            &self.labels,
            self.allowed_labels.as_ref(),
            &self.label_edits,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    /// SHA-256 of the key's secret.
    pub hash: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// A selector the key's runs stay within; `None`: every machine.
    pub scope: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
}

/// One stored version of the command policy (`herd policy set`): its text as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// 1, 2, …: each set stores the latest version plus one.
    pub version: i64,
    /// The policy set, as JSON.
    pub body: String,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRow {
    pub id: String,
    /// SHA-256 of the token's secret.
    pub hash: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: i64,
    pub uses_left: i64,
    /// The labels its agents may hold (a value `*`: any value of its key); `None`: any.
    pub labels: Option<Labels>,
}

/// A variable (`herd vars`): a value by scope and key. A secret's value is stored sealed (the
/// server encrypts it before the store sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRow {
    /// `global` (later also a workflow's or a job's).
    pub scope: String,
    pub key: String,
    /// The value, or for a secret its sealed form.
    pub value: String,
    pub secret: bool,
    pub updated_at: i64,
    pub updated_by: String,
}

/// What a person asked for: a command on the machines a selector picked.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub command: String,
    /// The selectors as given (for display).
    pub selector: String,
    pub spec: RunSpec,
    pub created_by: String,
    pub created_at: i64,
    pub cancel_requested: bool,
    pub state: RunState,
    pub finished_at: Option<i64>,
}

/// One machine's part of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub run_id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub state: TaskState,
    pub created_at: i64,
    pub dispatched_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub pid: Option<i64>,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// What the task wrote to `HERD_OUTPUT`, as its agent reported it with its exit (secrets
    /// masked); read with `herd_core::outputs::parse`. None: nothing.
    pub outputs: Option<String>,
    /// The latest supervision state its agent reported (JSON text of
    /// `herd_core::supervise::Supervision`). None: none yet.
    pub supervision: Option<String>,
    /// The last event seq persisted.
    pub out_seq: u64,
    /// The output log position committed with `out_seq`.
    pub output: OutputPos,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// An audit entry to record with the change it describes (in the same transaction). The
/// store stamps it with the time of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who: `key:<name>`, `agent:<name>`, `server`.
    pub actor: String,
    /// What: `run.create`, `agent.revoke`, ...
    pub action: String,
    /// On what: `run:<id>`, `agent:<name>`, ...
    pub target: String,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail,
        }
    }
}

/// A new task of a run, as created by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: String,
    pub agent_id: String,
    pub agent_name: String,
    /// `queued` or `dispatched`, or already final (`lost`: agent offline; `skipped`).
    pub state: TaskState,
    pub reason: Option<String>,
}

/// What one persisted batch of agent events changes on one task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskProgress {
    pub task_id: String,
    /// The highest event seq now persisted.
    pub seq: u64,
    pub out: OutputPos,
    pub started: Option<Started>,
    pub exited: Option<Exit>,
    /// The latest supervision state of the batch (JSON text), stored with the seq.
    pub supervision: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub at: i64,
}

/// How a task ended, as its agent reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// A state [`herd_core::Transition::Exit`] may lead to.
    pub state: TaskState,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: String,
    pub detail: String,
    pub at: i64,
    /// What the task wrote to `HERD_OUTPUT` (stored with the exit, in its transaction);
    /// None: nothing.
    pub outputs: Option<String>,
}

/// What sessions reported for one agent since the last flush.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFlush {
    pub id: String,
    pub last_seen: i64,
    pub metrics: Option<Metrics>,
    /// Set when the agent said hello.
    pub hello: Option<AgentHello>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentHello {
    pub labels: Labels,
    pub facts: Facts,
    pub version: String,
}

/// The answer to [`crate::AgentStore::join_agent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    /// The token has no use left or has expired (checked again inside the transaction).
    TokenSpent,
    /// A live agent already has that name.
    NameTaken,
}

/// Which entries a listing answers (runs, tasks, audit), newest first. Each `None` filter
/// lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// At most this many entries.
    pub limit: i64,
    /// Created (audit: written) at or after this time, unix ms.
    pub since: Option<i64>,
    /// A run's or task's state, by its name (`succeeded`); not used by the audit log.
    pub state: Option<String>,
    /// A machine's name: tasks on it, runs with a task on it, audit entries targeting
    /// `agent:NAME`.
    pub machine: Option<String>,
    /// An actor exactly as stored (`key:ci`): who created the run (tasks: their run), who
    /// did the audited change.
    pub who: Option<String>,
    /// A workflow run's job or workflow name, exactly; workflow runs only.
    pub name: Option<String>,
}

impl ListFilter {
    /// The newest `limit` entries, unfiltered.
    pub fn newest(limit: i64) -> ListFilter {
        ListFilter {
            limit,
            ..ListFilter::default()
        }
    }
}

/// What one call of `RunStore::prune_runs` deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedRuns {
    /// The runs deleted.
    pub runs: Vec<String>,
    /// Their tasks (whose output files the caller deletes).
    pub tasks: Vec<String>,
}
