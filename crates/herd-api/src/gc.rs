//! Pruning old runs now: `POST /api/v1/gc`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a pruning pass freed: finished runs older than the server's `--retention`, and the
/// oldest finished runs beyond its `--retention-size`, with their tasks and stored output.
/// Unfinished runs are never pruned; the audit log is kept whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GcReport {
    /// Runs deleted.
    pub runs: u64,
    /// Tasks of those runs deleted.
    pub tasks: u64,
    /// Bytes of output files deleted (with the fetched files of those tasks, and the blobs).
    pub bytes: u64,
    /// Blobs of copy runs deleted: unused for longer than the retention age.
    #[serde(default)]
    pub blobs: u64,
    /// Workflow and job runs deleted (with their steps): finished longer ago than the
    /// retention age.
    #[serde(default)]
    pub workflow_runs: u64,
    /// Schedule fires deleted: recorded longer ago than the retention age (each schedule
    /// keeps its latest).
    #[serde(default)]
    pub schedule_fires: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_report_matches_the_server() {
        crate::golden::check(
            r#"{"blobs":1,"bytes":2048,"runs":2,"schedule_fires":4,"tasks":5,"workflow_runs":3}"#,
            &GcReport {
                runs: 2,
                tasks: 5,
                bytes: 2048,
                blobs: 1,
                workflow_runs: 3,
                schedule_fires: 4,
            },
        );
    }
}
