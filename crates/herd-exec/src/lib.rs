//! herd-exec: runs one task's process on an agent machine.
//!
//! This crate owns the whole life of a single task process: starting it
//! (`<shell> -c <command>`) in its own process group or, in TTY mode, its own
//! session on a fresh pseudo-terminal; streaming its output as coalesced
//! events; feeding its stdin; enforcing the timeout; cancelling it; and making
//! sure nothing it started is left behind when it is cancelled or times out.
//!
//! The entry point is [`spawn`]; everything else is the vocabulary of its
//! inputs ([`ExecSpec`], [`Control`]) and outputs ([`ExecEvent`]). A task may get runtime
//! files ([`TaskFiles`]: `HERD_INPUT`, `HERD_OUTPUT`) and values to mask ([`Masker`]:
//! every occurrence becomes `***` in its output and outputs before they leave this crate).
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod child;
mod coalesce;
mod files;
mod kill;
pub mod mask;
mod probe;
mod pty;
mod spawn;
mod tap;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use herd_core::supervise::{ClassLimits, CommandClass, Supervision};
use tokio::sync::mpsc;

pub use files::{INPUT_ENV, MAX_OUTPUTS, OUTPUT_ENV, TaskFiles, remove as remove_task_files};
pub use mask::{MASK, MIN_MASKED, Masker};

/// Name of the environment variable every task process (and, by inheritance,
/// every descendant) carries; it is how escaped descendants are found.
pub const TASK_ID_ENV: &str = "HERD_TASK_ID";

/// The agent's join token in its environment (`herd agent`); removed from every task's.
pub const JOIN_TOKEN_ENV: &str = "HERD_JOIN_TOKEN";

/// What to run and how.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// Task identifier; exported to the process as `HERD_TASK_ID`.
    /// Should be unique per running task: descendant cleanup matches on it.
    pub task_id: String,
    /// Run as `<shell> -c <command>`.
    pub command: String,
    /// `""` means `bash`, falling back to `/bin/sh` if bash is not on `PATH`.
    pub shell: String,
    /// Working directory; must exist.
    pub cwd: Option<PathBuf>,
    /// Added to the agent's own environment.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit; on expiry the task is terminated (SIGTERM, grace, SIGKILL).
    pub timeout: Option<Duration>,
    /// stdin is a pipe fed by [`Control::Input`]/[`Control::Eof`]; otherwise `/dev/null`.
    pub interactive: bool,
    /// Run under a new pseudo-terminal; stdout and stderr both arrive as [`OutStream::Stdout`].
    pub tty: bool,
    /// SIGTERM -> SIGKILL delay on cancel/timeout (zero means 5 s).
    pub grace: Duration,
    /// Run as this user instead of the agent's own (needs an agent running as root): its
    /// groups, gid and uid, `HOME`, `USER`, `LOGNAME` and `SHELL` set, and its home as the
    /// working directory unless `cwd` says otherwise.
    pub user: Option<String>,
    /// The terminal's size (rows, columns) in TTY mode; `None`: `LINES`/`COLUMNS` from `env`,
    /// else 24x80.
    pub window: Option<(u16, u16)>,
    /// Run this script instead of `command`: executed directly (the kernel honours its
    /// `#!` line) with `args`; one without a `#!` line is run by the shell. It is handed to
    /// the process as an in-memory file (`/dev/fd/N`), so nothing is written to disk.
    pub script: Option<Bytes>,
    /// The script's arguments.
    pub args: Vec<String>,
    /// The task's runtime files (`HERD_INPUT`, `HERD_OUTPUT`, `herd` on `PATH`); what it
    /// wrote to `HERD_OUTPUT` comes back in [`ExitInfo::outputs`].
    pub files: Option<TaskFiles>,
    /// Values replaced by `***` in the task's output and outputs (those of [`MIN_MASKED`]
    /// bytes or more).
    pub mask: Vec<Bytes>,
    /// Watch the task while it runs (output, CPU of its processes, reads of its input): its
    /// state changes come as [`ExecEvent::Supervision`], and a hang, an error loop or a wait
    /// for input past its limit stops it ([`ExitReason::Stopped`]). `None`: not watched.
    pub supervise: Option<Supervise>,
}

/// How a task is supervised: its command's class and that class's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervise {
    pub class: CommandClass,
    pub limits: ClassLimits,
}

impl Supervise {
    /// herd's defaults for `command`'s class.
    pub fn defaults_for(command: &str) -> Supervise {
        let class = herd_core::supervise::classify(command);
        Supervise {
            class,
            limits: ClassLimits::default_for(class),
        }
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutStream {
    Stdout,
    Stderr,
}

/// Why the task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The process ended on its own (any exit code or signal).
    Exited,
    /// `ExecSpec::timeout` elapsed and the task was terminated.
    TimedOut,
    /// A [`Control::Cancel`] arrived and the task was terminated.
    Cancelled,
    /// The process could not be started; `ExitInfo::detail` says why.
    FailedToStart,
    /// Supervision stopped it (a hang, an error loop, a wait for input past its limit);
    /// `ExitInfo::detail` starts with why, in one line.
    Stopped,
}

/// Final report of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfo {
    /// Exit code, if the process exited normally.
    pub code: Option<i32>,
    /// Signal number, if the process was killed by a signal.
    pub signal: Option<i32>,
    pub reason: ExitReason,
    /// From start to the main process's exit.
    pub duration: Duration,
    /// Human-readable summary (why it failed to start, truncated output, ...).
    pub detail: String,
    /// What the task wrote to `HERD_OUTPUT` (at most [`MAX_OUTPUTS`] bytes, masked); empty
    /// without [`ExecSpec::files`].
    pub outputs: Bytes,
}

/// Events of one task, in order: `Started`, any number of `Output` and `Supervision`, exactly
/// one `Exited`.
#[derive(Debug, Clone)]
pub enum ExecEvent {
    Started {
        pid: u32,
    },
    Output {
        stream: OutStream,
        data: Bytes,
    },
    /// The task's supervision state changed (only changes are sent).
    Supervision(Supervision),
    Exited(ExitInfo),
}

impl ExecEvent {
    /// Bytes of data the event carries: output, or an exit's outputs (0 for `Started`).
    pub fn output_len(&self) -> usize {
        match self {
            ExecEvent::Output { data, .. } => data.len(),
            ExecEvent::Exited(x) => x.outputs.len(),
            ExecEvent::Started { .. } | ExecEvent::Supervision(_) => 0,
        }
    }
}

/// Messages to a running task.
#[derive(Debug)]
pub enum Control {
    /// Bytes for the process's stdin (or the terminal in TTY mode), written in order.
    Input(Bytes),
    /// Close stdin; in TTY mode, type `^D` instead.
    Eof,
    /// Terminate the task: SIGTERM now, SIGKILL after the grace period.
    /// `None` uses `ExecSpec::grace`; `Some(Duration::ZERO)` kills at once.
    Cancel { grace: Option<Duration> },
    /// The person's terminal changed size (rows, columns): the task's terminal follows (TTY
    /// mode only; the kernel tells the task with SIGWINCH).
    Resize { rows: u16, cols: u16 },
}

/// Handle to a running task. Sending fails once the task's main process has
/// exited (the receiver is gone), so callers learn cheaply that it is over.
#[derive(Debug, Clone)]
pub struct ExecHandle {
    pub control: mpsc::Sender<Control>,
}

pub use spawn::spawn;

/// Ends (SIGKILL) every process still carrying the task's marker. Blocking: it scans /proc.
/// Used by an agent that restarted and finds a task of its previous life unfinished.
pub fn kill_task_processes(task_id: &str) -> usize {
    if task_id.is_empty() {
        return 0;
    }
    kill::TaskTree::new(0, task_id).signal(nix::sys::signal::Signal::SIGKILL)
}
