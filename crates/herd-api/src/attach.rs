//! The live-output WebSocket: `GET /api/v1/runs/{id}/attach` watches a run,
//! `GET /api/v1/tasks/{id}/attach` one task.
//!
//! The server sends text frames of JSON, one [`ServerMessage`] each, and binary frames of
//! output (see [`crate::frame`]): first `hello`, then every task's output from its start (or
//! from now with `from_end`), an `omitted` where stored output was cut, each task's final
//! state as `task`, `progress` counts of a fan-out while they change, and `end` once the run
//! (or the one task) has finished and all its output was sent. The client sends text frames
//! of [`ClientMessage`] and binary frames of stdin, forwarded to every watched task.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{Run, Task};

/// The query of both attach endpoints.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AttachQuery {
    /// Skip output produced before attaching.
    pub from_end: bool,
    /// Send no output, only the final states (for scripted waits).
    pub no_output: bool,
}

/// How a fan-out stands: its tasks counted by where they are. Sent while the counts change,
/// at most four times a second, to watchers of a run (not of a single task).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Tasks of the run.
    pub total: u64,
    /// Waiting for a slot (under `concurrency`), or for the watcher to attach.
    pub pending: u64,
    /// Sent to their machines or running there.
    pub running: u64,
    /// Of `running`, those waiting for their machine to come back (it was online shortly
    /// before; see the run's `wait_offline_ms`).
    #[serde(default)]
    pub waiting: u64,
    /// Ended with exit code 0.
    pub succeeded: u64,
    /// Ended otherwise: failed, timed out, lost (including offline machines).
    pub failed: u64,
    /// Never started: the run's `max_errors` was exceeded first.
    pub skipped: u64,
    /// Ended by a cancel.
    pub cancelled: u64,
}

impl Progress {
    /// Tasks that have ended, however they ended.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.skipped + self.cancelled
    }
}

/// A text frame from the server, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First: the run and the watched tasks. A task's position in `tasks` is its `index` in
    /// every later message and output frame.
    Hello {
        /// The run (without tasks).
        run: Box<Run>,
        /// The watched tasks: every task of the run, or the one attached to.
        tasks: Vec<Task>,
    },
    /// A watched task reached a final state (sent again if it changes, e.g. a `lost` task
    /// whose agent came back with its result).
    Task {
        /// The task's position in `hello`'s `tasks`.
        index: u32,
        /// The task as it ended.
        task: Box<Task>,
    },
    /// Output of a task was cut from storage (over the server's per-task cap) before the
    /// watcher read it.
    Omitted {
        /// The task's position in `hello`'s `tasks`.
        index: u32,
        /// How many bytes were left out here.
        bytes: u64,
    },
    /// The counts of a fan-out changed.
    Progress(Progress),
    /// Last: the run has finished (or the one task has) and all output was sent.
    End {
        /// The run (without tasks).
        run: Box<Run>,
    },
    /// The watch failed; the server closes the connection after it.
    Error {
        /// What failed.
        error: String,
    },
}

impl ServerMessage {
    /// Every `type` of a server message.
    pub const TYPES: [&'static str; 6] = ["hello", "task", "omitted", "progress", "end", "error"];

    /// Reads a text frame. `Ok(None)` for a message of a type this version does not know (a
    /// newer server may send more); an error for a known type that does not read, or for a
    /// frame that is not a JSON object with a `type`.
    pub fn from_text(text: &str) -> Result<Option<ServerMessage>, serde_json::Error> {
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                #[derive(Deserialize)]
                struct Tagged {
                    #[serde(rename = "type")]
                    kind: String,
                }
                let tagged: Tagged = serde_json::from_str(text)?;
                if ServerMessage::TYPES.contains(&tagged.kind.as_str()) {
                    Err(e)
                } else {
                    Ok(None)
                }
            }
        }
    }
}

/// A text frame from the client, tagged by `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// End of stdin: the watched tasks' stdin is closed.
    Eof,
    /// Cancel the run (or the one watched task).
    Cancel,
    /// The watcher's terminal changed size: the watched tasks' terminals follow (`tty` runs).
    Resize {
        /// Lines.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

impl ClientMessage {
    /// The message as the text of a frame.
    pub fn to_text(self) -> String {
        match self {
            ClientMessage::Eof => r#"{"type":"eof"}"#.to_string(),
            ClientMessage::Cancel => r#"{"type":"cancel"}"#.to_string(),
            ClientMessage::Resize { rows, cols } => {
                format!(r#"{{"cols":{cols},"rows":{rows},"type":"resize"}}"#)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;
    use crate::run::tests::{RUN_JSON, run};
    use crate::task::tests::{TASK_JSON, task};

    #[test]
    fn hello_matches_the_server() {
        check(
            &format!(r#"{{"run":{RUN_JSON},"tasks":[{TASK_JSON},{TASK_JSON}],"type":"hello"}}"#),
            &ServerMessage::Hello {
                run: Box::new(run()),
                tasks: vec![task(), task()],
            },
        );
    }

    #[test]
    fn task_matches_the_server() {
        check(
            &format!(r#"{{"index":3,"task":{TASK_JSON},"type":"task"}}"#),
            &ServerMessage::Task {
                index: 3,
                task: Box::new(task()),
            },
        );
    }

    #[test]
    fn omitted_matches_the_server() {
        check(
            r#"{"bytes":1048576,"index":1,"type":"omitted"}"#,
            &ServerMessage::Omitted {
                index: 1,
                bytes: 1 << 20,
            },
        );
    }

    /// The scheduler's counts with `type` added.
    #[test]
    fn progress_matches_the_server() {
        let p = Progress {
            total: 10,
            pending: 2,
            running: 3,
            waiting: 1,
            succeeded: 4,
            failed: 1,
            skipped: 0,
            cancelled: 0,
        };
        check(
            concat!(
                r#"{"cancelled":0,"failed":1,"pending":2,"running":3,"skipped":0,"#,
                r#""succeeded":4,"total":10,"type":"progress","waiting":1}"#
            ),
            &ServerMessage::Progress(p),
        );
        assert_eq!(p.done(), 5);
    }

    #[test]
    fn end_and_error_match_the_server() {
        check(
            &format!(r#"{{"run":{RUN_JSON},"type":"end"}}"#),
            &ServerMessage::End {
                run: Box::new(run()),
            },
        );
        check(
            r#"{"error":"server shutting down","type":"error"}"#,
            &ServerMessage::Error {
                error: "server shutting down".into(),
            },
        );
    }

    #[test]
    fn from_text_skips_unknown_types_only() {
        let m = ServerMessage::from_text(r#"{"type":"omitted","index":0,"bytes":5}"#).unwrap();
        assert_eq!(m, Some(ServerMessage::Omitted { index: 0, bytes: 5 }));
        assert_eq!(
            ServerMessage::from_text(r#"{"type":"heartbeat","at":1}"#).unwrap(),
            None
        );
        // A known type that does not read is an error, never skipped.
        assert!(ServerMessage::from_text(r#"{"type":"task","index":0}"#).is_err());
        assert!(ServerMessage::from_text(r#"{"index":0}"#).is_err());
        assert!(ServerMessage::from_text("not json").is_err());
        for t in ServerMessage::TYPES {
            let text = format!(r#"{{"type":"{t}"}}"#);
            assert!(
                ServerMessage::from_text(&text).is_err(),
                "{t} is a known type"
            );
        }
    }

    #[test]
    fn client_messages_match_the_server() {
        for (m, text) in [
            (ClientMessage::Eof, r#"{"type":"eof"}"#),
            (ClientMessage::Cancel, r#"{"type":"cancel"}"#),
            (
                ClientMessage::Resize {
                    rows: 40,
                    cols: 132,
                },
                r#"{"cols":132,"rows":40,"type":"resize"}"#,
            ),
        ] {
            check(text, &m);
            assert_eq!(m.to_text(), text);
        }
    }

    #[test]
    fn attach_query_defaults() {
        let q: AttachQuery = serde_json::from_str("{}").unwrap();
        assert_eq!(q, AttachQuery::default());
        let q: AttachQuery = serde_json::from_str(r#"{"from_end":true}"#).unwrap();
        assert!(q.from_end && !q.no_output);
    }
}
