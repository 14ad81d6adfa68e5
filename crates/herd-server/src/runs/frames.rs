//! The frames the server sends about tasks (start one, cancel one, its input, its terminal's
//! size) and the one that says the server is going away.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use herd_core::RunSpec;
use herd_proto::v1::{self as pb, ServerFrame, server_frame};

/// Between SIGTERM and SIGKILL when a person cancels a task.
pub const CANCEL_GRACE_MS: u32 = 5000;

/// The values of a run's secret environment variables, by name: held in memory only, by
/// the run's driver, until the run ends.
pub type SecretEnv = Arc<BTreeMap<String, String>>;

/// Secret values shorter than this are not masked in output (the agent would replace every
/// `a` or `42` of it and hide nothing).
pub const MIN_MASKED: usize = 3;

/// Why a task of a run with secrets ends without starting after a server restart.
pub const SECRETS_GONE: &str = "not started: the values of its --secret-env were lost when the server restarted (they are never stored) — run it again with --secret-env";

/// The StartTask frame of a task: the spec's environment with the run's secret values on
/// top, the spec's input as JSON text, and every secret value of the run (of
/// [`MIN_MASKED`] bytes or more) for the agent to mask in the task's output and
/// outputs. None when the run has secrets whose values are gone (the server restarted): such
/// a task must not run without them.
pub fn start_frame(
    task_id: &str,
    command: &str,
    spec: &RunSpec,
    secrets: Option<&SecretEnv>,
    supervise: &herd_core::supervise::Limits,
) -> Option<ServerFrame> {
    let class = herd_core::supervise::classify(command);
    let limits = supervise.get(class);
    let mut env: HashMap<String, String> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !spec.secret_names.is_empty() {
        let secrets = secrets?;
        for name in &spec.secret_names {
            env.insert(name.clone(), secrets.get(name)?.clone());
        }
    }
    let mask = secrets
        .map(|s| {
            s.values()
                .filter(|v| v.len() >= MIN_MASKED)
                .map(|v| bytes::Bytes::copy_from_slice(v.as_bytes()))
                .collect()
        })
        .unwrap_or_default();
    let input = spec
        .input
        .as_ref()
        .map(|v| bytes::Bytes::from(v.to_string()))
        .unwrap_or_default();
    Some(ServerFrame {
        kind: Some(server_frame::Kind::Start(pb::StartTask {
            task_id: task_id.to_string(),
            command: command.to_string(),
            shell: spec.shell.clone(),
            cwd: spec.cwd.clone(),
            env,
            timeout_ms: spec.timeout_ms,
            interactive: spec.interactive,
            tty: spec.tty,
            grace_ms: spec.grace_ms,
            copy: spec
                .copy
                .iter()
                .map(|f| pb::CopyFile {
                    digest: f.digest.clone(),
                    size: f.size,
                    dest: f.dest.clone(),
                    name: f.name.clone(),
                    mode: f.mode,
                })
                .collect(),
            user: spec.user.clone(),
            rows: spec.window.map_or(0, |w| u32::from(w.rows)),
            cols: spec.window.map_or(0, |w| u32::from(w.cols)),
            script: spec
                .script
                .as_ref()
                .map(|s| bytes::Bytes::copy_from_slice(s.body.as_bytes()))
                .unwrap_or_default(),
            args: spec
                .script
                .as_ref()
                .map(|s| s.args.clone())
                .unwrap_or_default(),
            fetch: spec
                .fetch
                .as_ref()
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            input,
            mask,
            supervise: Some(pb::Supervise {
                class: class.as_str().to_string(),
                hang_ms: limits.hang_ms,
                input_wait_ms: limits.input_wait_ms,
                loop_lines: limits.loop_lines,
                loop_window_ms: limits.loop_window_ms,
            }),
        })),
    })
}

pub fn resize_frame(task_id: &str, rows: u16, cols: u16) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Resize(pb::Resize {
            task_id: task_id.to_string(),
            rows: u32::from(rows),
            cols: u32::from(cols),
        })),
    }
}

/// Sent on every session when the server shuts down cleanly: the agent reconnects soon.
pub fn going_away_frame() -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::GoingAway(pb::GoingAway {
            reason: "server shutting down".to_string(),
        })),
    }
}

pub fn cancel_frame(task_id: &str) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Cancel(pb::CancelTask {
            task_id: task_id.to_string(),
            grace_ms: CANCEL_GRACE_MS,
        })),
    }
}

pub fn input_frame(task_id: &str, data: bytes::Bytes, eof: bool) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Input(pb::Input {
            task_id: task_id.to_string(),
            data,
            eof,
        })),
    }
}
