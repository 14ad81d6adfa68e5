//! The one error type of the testkit: what failed, and the tail of the log that says why.

use std::time::Duration;

/// Why starting or driving a process failed. `Debug` prints the same text as `Display`, so a
/// test's `unwrap()` shows the message and the log tail, not a struct dump.
#[derive(thiserror::Error)]
pub enum Error {
    /// A program could not be started at all (missing binary, bad path).
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    /// A file or pipe could not be created, read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A process ended when it should still run (or ended unsuccessfully).
    #[error("{what} exited ({status}){}", with_log(log))]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}{}", with_log(log))]
    Timeout {
        what: String,
        after: Duration,
        log: String,
    },
    /// A program answered, but not what herd (or the tool) prints when it works.
    #[error("{0}")]
    Unexpected(String),
    /// The PostgreSQL binaries are not installed.
    #[error(
        "PostgreSQL not found: no initdb, postgres and psql in /usr/lib/postgresql/*/bin or on \
         PATH — install them (Debian: apt-get install postgresql)"
    )]
    PostgresMissing,
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn with_log(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("; log:\n{log}")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(crate) fn spawn(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Spawn { what, source }
}
