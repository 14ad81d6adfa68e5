//! Task events as an agent sends them, written short, for the persist path's tests.

use bytes::Bytes;
use herd_proto::v1::{self as pb, task_event};

/// One task event, in short.
pub(crate) enum E {
    Start,
    Out(&'static str),
    Err(&'static str),
    Exit(i32),
    /// An exit with what the task wrote to `HERD_OUTPUT`.
    ExitWith(i32, &'static [u8]),
}

/// A task event of `task` numbered `seq`.
pub(crate) fn ev(task: &str, seq: u64, e: E) -> pb::TaskEvent {
    let kind = match e {
        E::Start => task_event::Kind::Started(pb::Started { pid: 42 }),
        E::Out(s) => task_event::Kind::Output(pb::Output {
            stream: pb::Stream::Stdout as i32,
            data: Bytes::from(s),
        }),
        E::Err(s) => task_event::Kind::Output(pb::Output {
            stream: pb::Stream::Stderr as i32,
            data: Bytes::from(s),
        }),
        E::Exit(code) => task_event::Kind::Exited(pb::Exited {
            code: Some(code),
            signal: None,
            reason: pb::ExitReason::Exited as i32,
            duration_ms: 1,
            detail: String::new(),
            outputs: Default::default(),
        }),
        E::ExitWith(code, outputs) => task_event::Kind::Exited(pb::Exited {
            code: Some(code),
            signal: None,
            reason: pb::ExitReason::Exited as i32,
            duration_ms: 1,
            detail: String::new(),
            outputs: Bytes::from_static(outputs),
        }),
    };
    pb::TaskEvent {
        task_id: task.into(),
        seq,
        kind: Some(kind),
    }
}
