//! The spool's error type: every failure `Spool` can report, with the path involved
//! for I/O so an operator can find the offending file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O error at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Task ids become directory and file names, and they come from the network.
    #[error("invalid task id {0:?}: must be 1..=128 characters of [A-Za-z0-9_-]")]
    InvalidTaskId(String),
    #[error("task {task_id}: expected seq {expected}, got {got}")]
    SeqGap {
        task_id: String,
        expected: u64,
        got: u64,
    },
    /// An event was appended after the task's `Exited` event.
    #[error("task {0} already has an Exited event; nothing may follow it")]
    Finished(String),
    /// The task finished and was fully acknowledged (tombstone present).
    #[error("task {0} is done (tombstoned); it cannot be spooled again")]
    AlreadyDone(String),
    #[error("event of {len} bytes exceeds the spool record limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// A segment that recovery had validated no longer matches what the index says.
    #[error("corrupt spool segment {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl SpoolError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SpoolError {
        let path = path.into();
        move |source| SpoolError::Io { path, source }
    }
}
