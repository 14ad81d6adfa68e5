//! herd's persistence, by domain: the store's interface (`AgentStore`, `CredentialStore`,
//! `RunStore`, `AuditStore`, `VarStore`, `FlowStore`, `ScheduleStore`, `LangflowStore`, `AskStore`, `AlertStore`, together `Store`), its typed rows, bearer secrets, and the
//! conformance suite every backend passes. Backends live in their own crates
//! (`herd-store-sqlite`, `herd-store-postgres`).
//!
//! Architecture invariant: no SQL and no driver here; callers see typed rows and use-case
//! methods, never a table or a connection.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod alerts;
mod ask;
pub mod bench;
pub mod codec;
pub mod conformance;
mod flows;
mod langflow;
mod model;
mod schedules;
mod secret;
mod store;

pub use alerts::{AlertRow, AlertRuleRow, AlertStore, AlertUpdate};
pub use ask::{AskAttemptRow, AskExchangeRow, AskRunRow, AskStore};
pub use flows::{DefinitionRow, FlowRunRow, FlowStepRow, FlowStore, StepAttemptRow};
pub use langflow::{LangflowRow, LangflowStore, SourceRow, SyncCounts};
pub use model::*;
pub use schedules::{Fire, FireEntry, FireRow, FireStart, ScheduleRow, ScheduleStore};
pub use secret::{Secret, SecretError, hash_secret, verify_secret};
pub use store::{
    AgentStore, AuditStore, CredentialStore, PolicyStore, RunStore, Store, VarStore,
    check_end_state, policy_conflict,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// A stored value that does not decode (a corrupt row): never replaced by a default.
    #[error("corrupt {what} in the database: {why}")]
    Corrupt { what: String, why: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A request the store refuses (e.g. ending a task with a state that is not an end).
    #[error("{0}")]
    Invalid(String),
    /// Another server holds this database: only one may use it at a time.
    #[error("{0}")]
    Locked(String),
    /// The store (or a writer in front of it) was closed.
    #[error("{0}")]
    Closed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Rows one multi-row statement carries at most (bounds statement size in every backend).
pub const ROWS_PER_STATEMENT: usize = 1000;

/// The current time in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One record per task, in first-seen order: a later record for the same task moves its
/// seq and output position forward and adds its start and exit. Backends apply a merged
/// batch, so one statement never names a task twice.
pub fn merge_progress(batch: &[TaskProgress]) -> Vec<TaskProgress> {
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(batch.len());
    let mut out: Vec<TaskProgress> = Vec::with_capacity(batch.len());
    for p in batch {
        match at.get(p.task_id.as_str()) {
            Some(&i) => {
                let m = &mut out[i];
                if p.seq > m.seq {
                    m.seq = p.seq;
                    m.out = p.out;
                }
                if m.started.is_none() {
                    m.started = p.started.clone();
                }
                if p.exited.is_some() {
                    m.exited = p.exited.clone();
                }
                if p.supervision.is_some() {
                    m.supervision = p.supervision.clone();
                }
            }
            None => {
                at.insert(&p.task_id, out.len());
                out.push(p.clone());
            }
        }
    }
    out
}

/// The answer to storing a definition whose version is not its name's latest plus one (another
/// change came first).
pub fn version_conflict(def: &DefinitionRow) -> StoreError {
    StoreError::Conflict(format!(
        "{} {} changed meanwhile: version {} is not its next version",
        def.kind, def.name, def.version
    ))
}

/// The step rows of one write to workflow run `flow_run_id`: one per step id, the last given
/// (as if written one after the other), in first-seen order. Backends write them in one
/// statement, which names a row once. A row of another run is [`StoreError::Invalid`].
pub fn merge_steps<'a>(
    flow_run_id: &str,
    steps: &'a [FlowStepRow],
) -> Result<Vec<&'a FlowStepRow>> {
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(steps.len());
    let mut out: Vec<&FlowStepRow> = Vec::with_capacity(steps.len());
    for s in steps {
        if s.flow_run_id != flow_run_id {
            return Err(StoreError::Invalid(format!(
                "step {}/{} written with workflow run {flow_run_id}",
                s.flow_run_id, s.step_id
            )));
        }
        match at.get(s.step_id.as_str()) {
            Some(&i) => out[i] = s,
            None => {
                at.insert(&s.step_id, out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The attempt rows of one write to workflow run `flow_run_id`: one per (step, attempt), as
/// if written one after the other (the first's run id and start, the last's state, detail and
/// end), in first-seen order. A row of another run is [`StoreError::Invalid`].
pub fn merge_attempts(
    flow_run_id: &str,
    attempts: &[StepAttemptRow],
) -> Result<Vec<StepAttemptRow>> {
    let mut at: std::collections::HashMap<(&str, i64), usize> =
        std::collections::HashMap::with_capacity(attempts.len());
    let mut out: Vec<StepAttemptRow> = Vec::with_capacity(attempts.len());
    for a in attempts {
        if a.flow_run_id != flow_run_id {
            return Err(StoreError::Invalid(format!(
                "attempt {}/{}#{} written with workflow run {flow_run_id}",
                a.flow_run_id, a.step_id, a.attempt
            )));
        }
        match at.get(&(a.step_id.as_str(), a.attempt)) {
            Some(&i) => {
                let o = &mut out[i];
                o.state = a.state;
                o.detail = a.detail.clone();
                o.finished_at = a.finished_at;
            }
            None => {
                at.insert((&a.step_id, a.attempt), out.len());
                out.push(a.clone());
            }
        }
    }
    Ok(out)
}

/// The exits of a (merged) batch, grouped by the states [`herd_core::Transition::Exit`] of
/// their state applies to: one group today, as every exit applies to the open states and
/// `lost`. An exit into a state no exit leads to is in no group (it applies nowhere).
#[allow(clippy::type_complexity)]
pub fn exits_by_from(
    batch: &[TaskProgress],
) -> Vec<(&'static [herd_core::TaskState], Vec<(&str, &Exit)>)> {
    let mut groups: Vec<(&'static [herd_core::TaskState], Vec<(&str, &Exit)>)> = Vec::new();
    for p in batch {
        let Some(e) = &p.exited else { continue };
        let from = herd_core::Transition::Exit(e.state).from_states();
        if from.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(f, _)| *f == from) {
            Some((_, g)) => g.push((&p.task_id, e)),
            None => groups.push((from, vec![(&p.task_id, e)])),
        }
    }
    groups
}

/// One record per agent, in first-seen order: a later record for the same agent moves its
/// last sighting forward and replaces its metrics and hello when it has them. Backends apply
/// a merged batch, so one statement never names an agent twice.
pub fn merge_agent_flushes(batch: &[AgentFlush]) -> Vec<AgentFlush> {
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(batch.len());
    let mut out: Vec<AgentFlush> = Vec::with_capacity(batch.len());
    for a in batch {
        match at.get(a.id.as_str()) {
            Some(&i) => {
                let m = &mut out[i];
                m.last_seen = m.last_seen.max(a.last_seen);
                if a.metrics.is_some() {
                    m.metrics = a.metrics.clone();
                }
                if a.hello.is_some() {
                    m.hello = a.hello.clone();
                }
            }
            None => {
                at.insert(&a.id, out.len());
                out.push(a.clone());
            }
        }
    }
    out
}

/// A SQL `IN (…)` list of state names from the lifecycle's own lists, e.g.
/// `'queued','dispatched','running'` (fixed identifiers, never input).
pub fn sql_states(states: &[herd_core::TaskState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}
