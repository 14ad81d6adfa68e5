//! Tasks, one machine's part of a run: `GET /api/v1/tasks` lists the recent ones,
//! `GET /api/v1/tasks/{id}` answers one, `POST /api/v1/tasks/{id}/cancel` cancels one, and
//! `GET /api/v1/tasks/{id}/output` answers its stored output as bytes.

use std::collections::BTreeMap;

use herd_core::TaskState;
pub use herd_core::supervise::{CommandClass, Health, Supervision};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::OutputStream;

/// The `reason` of a task whose process exited on its own (its `exit_code` or `signal` says
/// how).
pub const REASON_EXITED: &str = "exited";

/// The `reason` of a task whose machine was offline when the run was created: it is `lost`
/// at once, never sent.
pub const REASON_AGENT_OFFLINE: &str = "agent offline";

/// One command on one machine: where it stands, how it ended, how much output it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// The task's id.
    pub id: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The machine's agent id.
    pub agent_id: String,
    /// The machine's name when the run was created.
    pub agent_name: String,
    /// Where the task stands.
    pub state: TaskState,
    /// When it was created.
    pub created_at: i64,
    /// When it was sent to its agent; null until then.
    #[schema(required = true)]
    pub dispatched_at: Option<i64>,
    /// When its process started; null until then (or if it never did).
    #[schema(required = true)]
    pub started_at: Option<i64>,
    /// When it ended; null while it is open.
    #[schema(required = true)]
    pub finished_at: Option<i64>,
    /// Process id of the command on its machine; null until it started.
    #[schema(required = true)]
    pub pid: Option<i64>,
    /// The exit code, if the process exited with one.
    #[schema(required = true)]
    pub exit_code: Option<i64>,
    /// The signal that ended the process, if one did.
    #[schema(required = true)]
    pub signal: Option<i64>,
    /// Why it ended, in a few words (e.g. `exited`, `timed out`, `agent offline`); null
    /// while it is open.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// The agent's own words on how it ended (e.g. why the process could not start).
    #[schema(required = true)]
    pub detail: Option<String>,
    /// The last event of the task the server has stored (events are numbered from 1).
    pub out_seq: i64,
    /// Bytes of output the task wrote (stdout and stderr), including any no longer stored.
    pub out_total: i64,
    /// The values the task set through the file named by `HERD_OUTPUT` (`key=value`
    /// entries; the run's secrets masked as `***`); absent when it set none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// The condition the task set (`herd.condition=true|false` in `HERD_OUTPUT`); absent when
    /// it set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<bool>,
    /// What supervision makes of the task (the latest change its agent reported): `state`
    /// (healthy, idle, hanging, waiting_for_input, error_loop), the command's `class`, while
    /// waiting for input the `prompt` line and whether the answer is `secret`, and a one-line
    /// `reason`; absent until its agent reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<Supervision>,
}

/// `GET /api/v1/tasks/{id}/output?stream=stdout|stderr`: one stream of the stored output, or
/// both interleaved as written.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// `stdout` or `stderr`; both, as written, when absent.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "stream_filter"
    )]
    pub stream: Option<OutputStream>,
}

/// Reads `stdout` and `stderr` as that stream, and `all` or an empty value as both.
fn stream_filter<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OutputStream>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref() {
        None => Ok(None),
        Some("stdout") => Ok(Some(OutputStream::Stdout)),
        Some("stderr") => Ok(Some(OutputStream::Stderr)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "unknown stream {other:?}: use stdout or stderr"
        ))),
    }
}

/// Input for a running task's stdin (or terminal): `POST /api/v1/tasks/{id}/input`, e.g. the
/// answer to the prompt its `supervision` shows. The data is written as given (add the `\n`
/// a line needs); it is never stored or logged (the audit entry `task.input` records its
/// length only), so a password may travel here. The task must run with stdin open (its run
/// `interactive`, or `tty`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskInput {
    /// Bytes for the task's stdin, as UTF-8 text; at most 65,536 bytes.
    #[serde(default)]
    pub data: String,
    /// Close stdin after the data (on a terminal: type ^D).
    #[serde(default)]
    pub eof: bool,
}

impl TaskInput {
    /// The most data one request carries.
    pub const MAX_DATA: usize = 64 * 1024;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::golden::check;

    pub(crate) fn task() -> Task {
        Task {
            id: "t1".into(),
            run_id: "r1".into(),
            agent_id: "a1".into(),
            agent_name: "web-1".into(),
            state: TaskState::Succeeded,
            created_at: 1_700_000_000_000,
            dispatched_at: Some(1_700_000_000_010),
            started_at: Some(1_700_000_000_020),
            finished_at: Some(1_700_000_000_500),
            pid: Some(4242),
            exit_code: Some(0),
            signal: None,
            reason: Some(REASON_EXITED.into()),
            detail: None,
            out_seq: 3,
            out_total: 12,
            outputs: BTreeMap::new(),
            condition: None,
            supervision: None,
        }
    }

    /// A task row as the server writes it: without its output-log position.
    pub(crate) const TASK_JSON: &str = concat!(
        r#"{"agent_id":"a1","agent_name":"web-1","created_at":1700000000000,"detail":null,"#,
        r#""dispatched_at":1700000000010,"exit_code":0,"finished_at":1700000000500,"id":"t1","#,
        r#""out_seq":3,"out_total":12,"pid":4242,"reason":"exited","run_id":"r1","signal":null,"#,
        r#""started_at":1700000000020,"state":"succeeded"}"#
    );

    #[test]
    fn task_matches_the_server() {
        check(TASK_JSON, &task());
        let lost = Task {
            state: TaskState::Lost,
            dispatched_at: None,
            started_at: None,
            finished_at: Some(1_700_000_000_000),
            pid: None,
            exit_code: None,
            reason: Some(REASON_AGENT_OFFLINE.into()),
            out_seq: 0,
            out_total: 0,
            ..task()
        };
        check(
            concat!(
                r#"{"agent_id":"a1","agent_name":"web-1","created_at":1700000000000,"#,
                r#""detail":null,"dispatched_at":null,"exit_code":null,"#,
                r#""finished_at":1700000000000,"id":"t1","out_seq":0,"out_total":0,"pid":null,"#,
                r#""reason":"agent offline","run_id":"r1","signal":null,"started_at":null,"#,
                r#""state":"lost"}"#
            ),
            &lost,
        );
        let killed = Task {
            state: TaskState::Failed,
            exit_code: None,
            signal: Some(9),
            detail: Some("killed by signal 9".into()),
            ..task()
        };
        let golden = crate::golden::canonical(&killed);
        assert!(golden.contains(r#""signal":9"#), "{golden}");
        assert!(golden.contains(r#""state":"failed""#), "{golden}");
        check(&golden, &killed);
    }

    #[test]
    fn supervision_and_input_shapes() {
        let with = Task {
            supervision: Some(Supervision {
                state: Health::WaitingForInput,
                class: CommandClass::Unknown,
                prompt: "Password: ".into(),
                secret: true,
                reason: String::new(),
            }),
            ..task()
        };
        let json = crate::golden::canonical(&with);
        assert!(
            json.contains(r#""supervision":{"class":"unknown","prompt":"Password: ","secret":true,"state":"waiting_for_input"}"#),
            "{json}"
        );
        check(&json, &with);
        let input: TaskInput = serde_json::from_str(r#"{"data":"yes\n"}"#).unwrap();
        assert_eq!(
            input,
            TaskInput {
                data: "yes\n".into(),
                eof: false
            }
        );
    }

    #[test]
    fn outputs_and_condition_only_when_set() {
        let with = Task {
            outputs: [("a".to_string(), "1".to_string())].into(),
            condition: Some(false),
            ..task()
        };
        check(
            concat!(
                r#"{"agent_id":"a1","agent_name":"web-1","condition":false,"#,
                r#""created_at":1700000000000,"detail":null,"#,
                r#""dispatched_at":1700000000010,"exit_code":0,"finished_at":1700000000500,"id":"t1","#,
                r#""out_seq":3,"out_total":12,"outputs":{"a":"1"},"pid":4242,"reason":"exited","#,
                r#""run_id":"r1","signal":null,"started_at":1700000000020,"state":"succeeded"}"#
            ),
            &with,
        );
    }

    /// Absent is both streams; anything but the two stream names is refused.
    #[test]
    fn output_query_table() {
        let cases = [
            ("{}", Some(None)),
            (r#"{"stream":""}"#, None),
            (r#"{"stream":"all"}"#, None),
            (r#"{"stream":"stdout"}"#, Some(Some(OutputStream::Stdout))),
            (r#"{"stream":"stderr"}"#, Some(Some(OutputStream::Stderr))),
            (r#"{"stream":"both"}"#, None),
        ];
        for (text, want) in cases {
            let got = serde_json::from_str::<OutputQuery>(text)
                .ok()
                .map(|q| q.stream);
            assert_eq!(got, want, "{text}");
        }
        assert_eq!(
            serde_json::to_string(&OutputQuery {
                stream: Some(OutputStream::Stderr)
            })
            .unwrap(),
            r#"{"stream":"stderr"}"#
        );
    }
}
