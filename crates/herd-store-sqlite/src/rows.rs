//! The columns each row type is selected with, and fetched rows shown to
//! [`herd_store::codec`] as plain columns.

use herd_store::codec::{self, StoredRow};
use herd_store::{AgentRow, AuditRow, Result, RunRow, TaskRow};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

macro_rules! agent_cols {
    () => {
        "id, name, cred_hash, labels, server_labels, facts, metrics, version, created_at, last_seen, revoked_at, allowed_labels"
    };
}
macro_rules! task_cols {
    () => {
        "id, run_id, agent_id, agent_name, state, created_at, dispatched_at, started_at, finished_at, pid, exit_code, signal, reason, detail, outputs, supervision, out_seq, out_total, out_head_len, out_tail_seg, out_tail_len"
    };
}
macro_rules! run_cols {
    () => {
        "id, command, selector, spec, created_by, created_at, cancel_requested, state, finished_at"
    };
}
pub(crate) use {agent_cols, run_cols, task_cols};

/// A fetched row, read by column name.
pub(crate) struct Cols<'r>(pub &'r SqliteRow);

fn why(e: sqlx::Error) -> String {
    match e {
        sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
        e => e.to_string(),
    }
}

impl StoredRow for Cols<'_> {
    fn text(&self, col: &str) -> std::result::Result<String, String> {
        self.0.try_get(col).map_err(why)
    }
    fn opt_text(&self, col: &str) -> std::result::Result<Option<String>, String> {
        self.0.try_get(col).map_err(why)
    }
    fn int(&self, col: &str) -> std::result::Result<i64, String> {
        self.0.try_get(col).map_err(why)
    }
    fn opt_int(&self, col: &str) -> std::result::Result<Option<i64>, String> {
        self.0.try_get(col).map_err(why)
    }
    fn flag(&self, col: &str) -> std::result::Result<bool, String> {
        self.0.try_get(col).map_err(why)
    }
}

pub(crate) fn agent(row: &SqliteRow) -> Result<AgentRow> {
    codec::agent(&Cols(row))
}

pub(crate) fn run(row: &SqliteRow) -> Result<RunRow> {
    codec::run(&Cols(row))
}

pub(crate) fn task(row: &SqliteRow) -> Result<TaskRow> {
    codec::task(&Cols(row))
}

pub(crate) fn audit(row: &SqliteRow) -> Result<AuditRow> {
    codec::audit(&Cols(row))
}
