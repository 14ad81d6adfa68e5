//! Schedules: `/api/v1/schedules` (cron in a time zone, a fixed period, or one time), what each
//! fires (a job, a workflow, a LangFlow flow or a command), its fires and its next fire times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a schedule starts at each fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Job,
    Workflow,
    Flow,
    Command,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Job => "job",
            TargetKind::Workflow => "workflow",
            TargetKind::Flow => "flow",
            TargetKind::Command => "command",
        }
    }
}

/// What a schedule fires, as given when it was added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleTarget {
    pub kind: TargetKind,
    /// The job's, workflow's or flow's name (`kind` job, workflow, flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The command (`kind` command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Selectors (OR'ed): the machines of a command, the steps without their own of a job or
    /// workflow, the machine a flow is called from.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Parameters of a job or workflow; a flow's `input` (text), `tweaks`
    /// (`{"Component.param": value}`) and `session`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// The person adding the schedule approves what it runs (commands the command policy
    /// sends for approval); each fire is checked again against the policy of its time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approve: bool,
}

/// What happens to a fire while what the previous one started still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// The fire is recorded `skipped`.
    #[default]
    Skip,
    /// The fire waits for it to end (one fire waits at most; later ones are skipped).
    Queue,
    /// The fire starts anyway.
    Allow,
}

/// What happens to fire times that passed while no server could fire them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MisfirePolicy {
    /// They are recorded `missed`; the schedule goes on from now.
    Skip,
    /// The latest of them fires, once.
    #[default]
    RunOnce,
    /// Each fires, in order (at most 100; older ones are recorded `missed`).
    RunAll,
}

/// The body of `POST /api/v1/schedules`: exactly one of `cron`, `every`, `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewSchedule {
    /// Letters, digits, `_`, `.`, `-` (at most 128, starting with a letter or digit).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    /// A cron expression: 5 fields (minute first), 6 (seconds first), or `@daily`-style.
    /// `L`, `W` and `#` are understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA time zone a cron expression or an `at` time is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// A fixed period (`30s`, `5m`, `1h30m`, `1d`), counted from when the schedule is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// One time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in `tz`, or `+DUR` from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Up to this much delay (a duration) added to each fire, the same for a fire time
    /// whichever server fires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    #[serde(default)]
    pub misfire: MisfirePolicy,
    pub target: ScheduleTarget,
    /// Added paused: it fires once resumed.
    #[serde(default)]
    pub paused: bool,
}

/// The body of `PUT /api/v1/schedules/{name}`: the schedule's new definition, as
/// `POST /api/v1/schedules` takes it, replacing the one stored in place (the same id, its
/// fires kept; its next fire counted from now). What is left out takes its default as in an
/// add, except: with none of `cron`, `every` and `at` the schedule keeps when it fires (a `tz`
/// alone reads its cron expression in that zone), and without `paused` it stays paused or
/// not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleEdit {
    /// The schedule's name, if given: the path's (a schedule keeps its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: Option<String>,
    /// A cron expression: 5 fields (minute first), 6 (seconds first), or `@daily`-style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA time zone a cron expression or an `at` time is read in (default UTC; with no
    /// new time, the current one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// A fixed period (`30s`, `5m`, `1h30m`, `1d`), counted from the edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// One time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in `tz`, or `+DUR` from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Up to this much delay (a duration) added to each fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    #[serde(default)]
    pub misfire: MisfirePolicy,
    pub target: ScheduleTarget,
    /// Paused or not (absent: as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// What a fire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FireOutcome {
    /// It started a run (`run_id`).
    Started,
    /// It started nothing: what the previous fire started still ran (overlap `skip`).
    Skipped,
    /// No server fired it in time; the misfire policy left it out.
    Missed,
    /// It could not start what it names (the answer is in `detail`).
    Failed,
}

/// One fire of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleFire {
    /// The fire time (unix ms).
    pub fire_at: i64,
    /// When it was handled (unix ms): minus `fire_at`, how late it fired (jitter included).
    pub at: i64,
    pub outcome: FireOutcome,
    /// The run (`run_kind` run) or workflow run (`workflow`) it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_kind: Option<String>,
    /// The state of what it started, while retention keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    /// When it fires, in one line (`cron 0 30 2 * * * (Europe/Paris)`, `every 2s`, `at …`).
    pub when: String,
    /// The time zone of its fire times.
    pub tz: String,
    pub target: ScheduleTarget,
    pub overlap: OverlapPolicy,
    pub misfire: MisfirePolicy,
    pub jitter_ms: i64,
    pub paused: bool,
    /// The next fire time (unix ms); none once it never fires again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_at: Option<i64>,
    /// The same in the schedule's zone (RFC 3339 with its offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_local: Option<String>,
    /// Its latest fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ScheduleFire>,
    pub created_by: String,
    pub created_at: i64,
}

/// `GET /api/v1/schedules/{name}/fires`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FiresQuery {
    /// At most this many, newest first (default 50, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// `GET /api/v1/schedules/{name}/next`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// How many (default 10, at most 1000).
    #[param(minimum = 1)]
    pub n: Option<i64>,
}

/// One coming fire time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NextFire {
    /// Unix ms.
    pub at: i64,
    /// In the schedule's zone (RFC 3339 with its offset).
    pub local: String,
}
