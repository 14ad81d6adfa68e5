//! Runs, one command over the machines its targets select: `POST /api/v1/runs` creates one,
//! `GET /api/v1/runs` lists the recent ones, `GET /api/v1/runs/{id}` answers one with its
//! tasks, `POST /api/v1/runs/{id}/cancel` cancels every task of one.

use std::collections::BTreeMap;

use herd_core::{RunSpec, RunState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Task;

/// The body of `POST /api/v1/runs`: what to run, where, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RunRequest {
    /// The shell command, run as `bash -c` (or the spec's `shell`); not blank.
    #[schema(required = true, min_length = 1, pattern = r"\S")]
    pub command: String,
    /// Selectors, OR'ed together: a name glob (`web-*`), a label or fact (`role=web`,
    /// `os=debian`), combined with `&` (AND), `,` (OR) and `!` (NOT).
    pub targets: Vec<String>,
    /// Every machine, instead of `targets`.
    pub all: bool,
    /// Hold the tasks until a watcher attaches to the run (or 30 s pass), so the watcher
    /// sees every byte of output live.
    pub start_on_attach: bool,
    /// Secret environment variables, `NAME: value`, set for the command like `env`. The
    /// values are never stored, logged or answered: the run keeps only their names (the
    /// spec's `secret_names`, shown as `NAME=***`), and the values live in the server's
    /// memory until the run ends. A task that has not started when the server restarts ends
    /// `cancelled`, as its values are gone; such a run cannot be run again from the store.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Secret environment variables from the server's variables, `NAME: variable`
    /// (`herd vars set KEY --secret`): each variable's value is set as `NAME`, as
    /// `secret_env` would (never stored with the run, shown as `NAME=***`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_vars: BTreeMap<String, String>,
    /// A person approves the command (one the command policy sends for approval, such as a
    /// dangerous one); recorded in the run's audit entry. A denied command is refused
    /// whatever this says.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub approve: bool,
    /// How every task executes.
    #[serde(flatten)]
    pub spec: RunSpec,
}

/// `POST /api/v1/runs?wait=true` answers only once every task has finished.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Answer only once every task has finished.
    pub wait: bool,
}

/// A run: what was asked, by whom, and how it stands. Lists and cancels answer it without
/// its tasks; see [`RunWithTasks`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// The run's id.
    pub id: String,
    /// The shell command.
    pub command: String,
    /// The targets as asked, joined by ` , ` (or `--all`).
    pub selector: String,
    /// How every task executes.
    #[serde(deserialize_with = "crate::null_as_default")]
    pub spec: RunSpec,
    /// Who created it (`key:<name>` of the API key).
    pub created_by: String,
    /// When it was created.
    pub created_at: i64,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
    /// How it stands, from its tasks' states.
    pub state: RunState,
    /// When its last task ended; null while it runs.
    #[schema(required = true)]
    pub finished_at: Option<i64>,
}

/// A run with every one of its tasks (one per machine), in the order the tasks were created.
/// The answer of `POST /api/v1/runs` and `GET /api/v1/runs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunWithTasks {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Its tasks.
    pub tasks: Vec<Task>,
}

#[cfg(test)]
pub(crate) mod tests {
    use herd_core::{FetchFile, Limit, RunLimits, Script, WindowSize};

    use super::*;
    use crate::golden::check;

    pub(crate) fn run() -> Run {
        Run {
            id: "r1".into(),
            command: "uptime".into(),
            selector: "role=web , web-*".into(),
            spec: RunSpec::default(),
            created_by: "key:admin".into(),
            created_at: 1_700_000_000_000,
            cancel_requested: false,
            state: RunState::Running,
            finished_at: None,
        }
    }

    /// The run's JSON inside every run answer and attach message: `run_json` in the server,
    /// the row without its stored spec text, and the spec as an object.
    pub(crate) const RUN_JSON: &str = concat!(
        r#"{"cancel_requested":false,"command":"uptime","created_at":1700000000000,"#,
        r#""created_by":"key:admin","finished_at":null,"id":"r1","selector":"role=web , web-*","#,
        r#""spec":{"cwd":"","env":{},"grace_ms":0,"interactive":false,"limits":{},"shell":"","#,
        r#""timeout_ms":0,"tty":false},"state":"running"}"#
    );

    #[test]
    fn run_matches_the_server() {
        check(RUN_JSON, &run());
        let done = Run {
            spec: RunSpec {
                timeout_ms: 5000,
                interactive: true,
                tty: true,
                env: [("A".to_string(), "1".to_string())].into(),
                secret_names: vec![],
                cwd: "/tmp".into(),
                shell: "sh".into(),
                grace_ms: 300,
                limits: RunLimits {
                    concurrency: Some(Limit::Count(2)),
                    max_errors: Some(Limit::Percent(10)),
                    batch_wait_ms: 1500,
                },
                copy: Vec::new(),
                wait_offline_ms: Some(10_000),
                user: "deploy".into(),
                window: Some(WindowSize {
                    rows: 40,
                    cols: 132,
                }),
                script: Some(Script {
                    name: "a.sh".into(),
                    body: "#!/bin/sh\necho $1\n".into(),
                    args: vec!["x y".into()],
                }),
                fetch: Some(FetchFile {
                    path: "/var/log/app.log".into(),
                }),
                input: Some(serde_json::json!({"params": {"who": "web"}})),
            },
            cancel_requested: true,
            state: RunState::Cancelled,
            finished_at: Some(1_700_000_009_000),
            ..run()
        };
        check(
            concat!(
                r#"{"cancel_requested":true,"command":"uptime","created_at":1700000000000,"#,
                r#""created_by":"key:admin","finished_at":1700000009000,"id":"r1","#,
                r#""selector":"role=web , web-*","spec":{"cwd":"/tmp","env":{"A":"1"},"#,
                r#""fetch":{"path":"/var/log/app.log"},"#,
                r#""grace_ms":300,"input":{"params":{"who":"web"}},"interactive":true,"#,
                r#""limits":{"batch_wait_ms":1500,"#,
                r#""concurrency":2,"max_errors":"10%"},"script":{"args":["x y"],"#,
                r##""body":"#!/bin/sh\necho $1\n","name":"a.sh"},"shell":"sh","timeout_ms":5000,"##,
                r#""tty":true,"user":"deploy","wait_offline_ms":10000,"#,
                r#""window":{"cols":132,"rows":40}},"state":"cancelled"}"#
            ),
            &done,
        );
    }

    /// `run_json` with tasks: the task rows (without their output-log position) under
    /// `tasks`, which sorts after every key of the run.
    #[test]
    fn run_with_tasks_matches_the_server() {
        let golden = format!(
            "{},\"tasks\":[{}]}}",
            RUN_JSON.strip_suffix('}').unwrap(),
            crate::task::tests::TASK_JSON
        );
        check(
            &golden,
            &RunWithTasks {
                run: run(),
                tasks: vec![crate::task::tests::task()],
            },
        );
        let none = format!("{},\"tasks\":[]}}", RUN_JSON.strip_suffix('}').unwrap());
        check(
            &none,
            &RunWithTasks {
                run: run(),
                tasks: vec![],
            },
        );
    }

    /// What `herd run` sends: the spec's fields sit beside the request's own.
    #[test]
    fn run_request_flattens_the_spec() {
        let req = RunRequest {
            command: "echo hi".into(),
            targets: vec!["role=web".into()],
            all: false,
            start_on_attach: true,
            secret_env: BTreeMap::new(),
            secret_vars: BTreeMap::new(),
            approve: false,
            spec: RunSpec {
                timeout_ms: 1000,
                limits: RunLimits {
                    concurrency: Some(Limit::Percent(50)),
                    ..RunLimits::default()
                },
                ..RunSpec::default()
            },
        };
        check(
            concat!(
                r#"{"all":false,"command":"echo hi","cwd":"","env":{},"grace_ms":0,"#,
                r#""interactive":false,"limits":{"concurrency":"50%"},"shell":"","#,
                r#""start_on_attach":true,"targets":["role=web"],"timeout_ms":1000,"tty":false}"#
            ),
            &req,
        );
        // The server defaults whatever is left out.
        let short: RunRequest = serde_json::from_str(r#"{"command":"true","all":true}"#).unwrap();
        assert_eq!(
            short,
            RunRequest {
                command: "true".into(),
                all: true,
                ..RunRequest::default()
            }
        );
    }

    #[test]
    fn run_query_reads_wait() {
        let q: RunQuery = serde_json::from_str(r#"{"wait":true}"#).unwrap();
        assert!(q.wait);
        let q: RunQuery = serde_json::from_str("{}").unwrap();
        assert!(!q.wait);
    }
}
