//! Schedules and their fires. A schedule's next fire time is a column with an ordered index
//! (what the firing loop asks for is the earliest due, never a scan); a fire is a row under a
//! unique (schedule, fire time) key, written in the transaction that creates its run, so a
//! fire happens once even when two servers or a crash race for it.

use async_trait::async_trait;

use crate::Result;
use crate::flows::{FlowRunRow, FlowStepRow};
use crate::model::{AuditEntry, NewTask, RunRow};

/// A schedule. What it runs and when are JSON the server reads (`spec`, `target`); the store
/// keeps them as given.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub id: String,
    pub name: String,
    /// When it fires (JSON, the server's schedule spec).
    pub spec: String,
    /// What it starts (JSON: a job, a workflow, a flow or a command, with targets and
    /// parameters).
    pub target: String,
    /// `skip | queue | allow`.
    pub overlap: String,
    /// `skip | run-once | run-all`.
    pub misfire: String,
    /// At most this many milliseconds of delay added to each fire.
    pub jitter_ms: i64,
    pub paused: bool,
    /// The next fire time not yet handled (unix ms); `None` once it never fires again.
    pub next_fire_at: Option<i64>,
    /// When that fire is due: `next_fire_at` plus its jitter. The firing loop's order.
    pub due_at: Option<i64>,
    /// The last fire that started something, and what it started (overlap is decided on it).
    pub last_fire_at: Option<i64>,
    pub last_run_id: Option<String>,
    /// Who it acts for: the person who added it, or last edited it (each fire is checked as
    /// them).
    pub created_by: String,
    pub created_at: i64,
    /// How many times it was edited: a fire is written only under the revision it was
    /// planned from.
    pub revision: i64,
}

/// What happened to one fire time.
#[derive(Debug, Clone, PartialEq)]
pub struct FireRow {
    pub schedule_id: String,
    /// The fire time (unix ms), the key with the schedule.
    pub fire_at: i64,
    /// When it was recorded.
    pub at: i64,
    /// `started | skipped | missed | failed`.
    pub outcome: String,
    /// What it started: a run's or a workflow run's id.
    pub run_id: Option<String>,
    /// `run | workflow` (a job's run is a workflow run).
    pub run_kind: Option<String>,
    /// One line: why it was skipped, missed or failed.
    pub detail: Option<String>,
}

/// A fire with the state of what it started (`None` for none, or once retention deleted it).
#[derive(Debug, Clone, PartialEq)]
pub struct FireEntry {
    pub fire: FireRow,
    pub run_state: Option<String>,
    pub run_finished_at: Option<i64>,
}

/// What a fire creates with its row.
pub enum FireStart<'a> {
    Nothing,
    Run {
        run: &'a RunRow,
        tasks: &'a [NewTask],
        audit: &'a AuditEntry,
    },
    FlowRun {
        run: &'a FlowRunRow,
        steps: &'a [FlowStepRow],
        audit: &'a AuditEntry,
    },
}

/// One fire of a schedule, written whole or not at all.
pub struct Fire<'a> {
    pub schedule_id: &'a str,
    /// The schedule's `next_fire_at` as the caller read it: if it moved meanwhile (another
    /// server fired it), nothing is written.
    pub expected: i64,
    /// The schedule's revision as the caller read it: a fire of a definition edited since
    /// (or of a schedule paused since) writes nothing.
    pub revision: i64,
    /// The fire rows (one per fire time handled: the one started, and those skipped or missed).
    pub rows: &'a [FireRow],
    /// The schedule's next fire time and when it is due, after this fire.
    pub next_fire_at: Option<i64>,
    pub next_due_at: Option<i64>,
    pub start: FireStart<'a>,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule with `audit`; [`crate::StoreError::Conflict`] if its name is
    /// taken.
    async fn create_schedule(&self, row: &ScheduleRow, audit: &AuditEntry) -> Result<()>;
    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>>;
    async fn schedule_by_id(&self, id: &str) -> Result<Option<ScheduleRow>>;
    /// Every schedule by name, each with its latest fire.
    async fn schedules(&self) -> Result<Vec<(ScheduleRow, Option<FireEntry>)>>;
    /// Pauses or resumes a schedule and sets its next fire, with `audit`; false (nothing
    /// audited) if there is no such schedule.
    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at: Option<i64>,
        due_at: Option<i64>,
        audit: &AuditEntry,
    ) -> Result<bool>;
    /// Replaces a schedule's definition in place with `audit`: `spec`, `target`, `overlap`,
    /// `misfire`, `jitter_ms`, `paused`, `next_fire_at`, `due_at` and `created_by` from `row`,
    /// only while its revision is still `row.revision`; the revision counts one more, so a
    /// fire planned from the definition before writes nothing. Its id, name, fires and last
    /// fire stay. False, with nothing written, if there is no such schedule or it was edited
    /// meanwhile.
    async fn update_schedule(&self, row: &ScheduleRow, audit: &AuditEntry) -> Result<bool>;
    /// Deletes a schedule and its fires, with `audit`; false if there was none. What its
    /// fires started stays.
    async fn delete_schedule(&self, id: &str, audit: &AuditEntry) -> Result<bool>;
    /// Schedules not paused that are due at `until` or before, earliest first, at most
    /// `limit` (from the ordered index on `due_at`).
    async fn due_schedules(&self, until: i64, limit: i64) -> Result<Vec<ScheduleRow>>;
    /// The earliest `due_at` of the schedules not paused.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Records a fire: its rows, what it starts (with that one's audit entry) and the
    /// schedule's next fire, in one transaction. False, with nothing written, when the
    /// schedule's next fire is no longer `expected` or a fire row's (schedule, time) exists
    /// (it was handled already), or the schedule was edited (its revision is no longer
    /// `revision`) or paused since the caller read it.
    async fn fire(&self, fire: &Fire<'_>) -> Result<bool>;
    /// Sets when a schedule is next looked at (its fire waits, e.g. for the run before it),
    /// if its next fire is still `expected`; false otherwise.
    async fn hold_schedule(&self, id: &str, expected: i64, due_at: i64) -> Result<bool>;
    /// A schedule's fires, newest first, at most `limit`.
    async fn schedule_fires(&self, schedule_id: &str, limit: i64) -> Result<Vec<FireEntry>>;
    /// Deletes up to `limit` fires recorded before `before` (oldest first), keeping each
    /// schedule's latest; answers how many went.
    async fn prune_schedule_fires(&self, before: i64, limit: i64) -> Result<u64>;
}
