//! The crate's error type: what callers can get back from `OutputLog`.

use std::io;
use std::path::PathBuf;

use crate::OutputPos;

#[derive(Debug, thiserror::Error)]
pub enum OutlogError {
    /// Task ids name directories, so anything outside `[A-Za-z0-9_-]` (or empty, or absurdly
    /// long) is refused before it reaches the filesystem.
    #[error("invalid task id {0:?} (expected 1-128 characters of [A-Za-z0-9_-])")]
    InvalidTaskId(String),
    #[error("invalid output stream {0} (expected 1 = stdout or 2 = stderr)")]
    InvalidStream(u8),
    #[error("invalid output position {pos:?}: {reason}")]
    InvalidPos {
        pos: OutputPos,
        reason: &'static str,
    },
    #[error("output log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Attaches the path an I/O error happened on, so server logs say which task file failed.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, OutlogError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, OutlogError> {
        self.map_err(|source| OutlogError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
