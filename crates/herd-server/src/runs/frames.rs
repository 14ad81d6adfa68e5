//! The frames the server sends about tasks: start one, cancel one.

use std::collections::HashMap;

use herd_core::RunSpec;
use herd_proto::v1::{self as pb, ServerFrame, server_frame};

/// Between SIGTERM and SIGKILL when a person cancels a task.
pub const CANCEL_GRACE_MS: u32 = 5000;

pub fn start_frame(task_id: &str, command: &str, spec: &RunSpec) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Start(pb::StartTask {
            task_id: task_id.to_string(),
            command: command.to_string(),
            shell: spec.shell.clone(),
            cwd: spec.cwd.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
            timeout_ms: spec.timeout_ms,
            interactive: spec.interactive,
            tty: spec.tty,
            grace_ms: spec.grace_ms,
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
