//! herd-api: what a person or program can send to and receive from a herd server, as types.
//!
//! Every endpoint of the HTTP API under `/api/v1` has its request body, query and response
//! here; so do the messages of the live-output WebSocket (`attach`) and the binary frame that
//! carries output on it, and the error body every failed call answers with. Everything derives
//! `serde` (the JSON on the wire) and `utoipa::ToSchema` (the OpenAPI document); queries also
//! derive `utoipa::IntoParams`. Domain types the API shares with the rest of herd (task and run
//! states, the run spec and its limits, machine facts and metrics) are herd-core's own.
//!
//! Types and codecs only: no I/O, no HTTP client or server. Times are unix milliseconds
//! (`i64`). Authentication is `Authorization: Bearer <API key>` on every call (or
//! `?api_key=<key>` on a WebSocket upgrade, where a browser cannot set headers; refused
//! anywhere else).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent;
pub mod alerts;
pub mod ask;
pub mod attach;
pub mod audit;
pub mod blob;
pub mod breakers;
pub mod error;
pub mod fetched;
pub mod flows;
pub mod frame;
pub mod gc;
pub mod keys;
pub mod langflow;
pub mod list;
pub mod run;
pub mod schedules;
pub mod task;
pub mod tokens;
pub mod vars;

#[cfg(test)]
mod schema_tests;

pub use agent::{
    Agent, AgentsQuery, BulkLabelEdit, FleetSummary, LabelEdit, LabelSource, SummaryQuery,
};
pub use alerts::{
    Alert, AlertLevel, AlertMetric, AlertNotify, AlertNotifyKind, AlertRule, AlertsQuery,
    NewAlertRule,
};
pub use ask::{
    AskApproval, AskAttempt, AskExchange, AskPlan, AskRequest, AskRun, AskRunView, AskStep,
    KeyRole, PlannedStep, PolicyCheck, PolicyQuery, PolicyVersion, PutPolicy, StepCheck,
};
pub use attach::{AttachQuery, ClientMessage, Progress, ServerMessage};
pub use audit::AuditEntry;
pub use blob::{Blob, BlobQuery};
pub use breakers::{Breaker, BreakerState};
pub use error::ErrorBody;
pub use fetched::{FETCHED_MODE, FETCHED_SHA256, FETCHED_SIZE, FetchedQuery};
pub use flows::{
    ApplyDefinition, Definition, FlowRun, FlowRunsQuery, FlowStep, StartFlow, StepAttempt,
};
pub use frame::{
    FrameError, OUTPUT_HEADER_LEN, OUTPUT_TAG, OutputFrame, OutputStream, decode_output,
    encode_output, output_header,
};
pub use gc::GcReport;
pub use herd_core::{
    CopyFile, DefKind, Disk, Facts, FetchFile, Limit, Metrics, RunLimits, RunSpec, RunState,
    Script, StepState, TaskState, WindowSize,
};
pub use keys::{ApiKey, CreateKey, CreatedKey, Me};
pub use langflow::{
    FlowComponent, FlowParam, FlowsQuery, LangFlow, NewSource, RunFlow, Source, SyncQuery,
    SyncReport,
};
pub use list::{ListQuery, RunsQuery, TasksQuery};
pub use run::{Run, RunQuery, RunRequest, RunWithTasks};
pub use schedules::{
    FireOutcome, FiresQuery, MisfirePolicy, NewSchedule, NextFire, NextQuery, OverlapPolicy,
    Schedule, ScheduleEdit, ScheduleFire, ScheduleTarget, TargetKind,
};
pub use task::{CommandClass, Health, OutputQuery, Supervision, Task, TaskInput};
pub use tokens::{CreateToken, CreatedToken, JoinToken};
pub use vars::{SetVar, Var, VarsQuery};

/// Reads `null` as the type's default: a few objects are stored as JSON text and answered as
/// `null` when that text does not parse.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod golden {
    //! Helpers of the tests that hold the types to the JSON the server writes.

    /// `v` as the server writes JSON today: built as a `serde_json::Value`, whose objects
    /// keep their keys sorted, then printed compactly.
    pub fn canonical<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_value(v).unwrap().to_string()
    }

    /// Asserts that `golden` (the server's JSON) reads as `want` and that `want` writes
    /// exactly `golden`.
    pub fn check<T>(golden: &str, want: &T)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let read: T = serde_json::from_str(golden)
            .unwrap_or_else(|e| panic!("{golden} does not read as the type: {e}"));
        assert_eq!(&read, want, "read from {golden}");
        assert_eq!(canonical(want), golden);
    }
}
