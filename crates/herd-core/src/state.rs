//! Task and run states: the task lifecycle enum, how a run's state derives from
//! its tasks, how a process outcome maps to a task state, and the exit code the
//! CLI returns for a task.

use std::fmt;
use std::str::FromStr;

/// Lifecycle of one task (one command on one host).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a slot of the run's fan-out, or for its watcher to attach.
    Queued,
    /// Sent to its agent; not started yet.
    Dispatched,
    /// The command's process runs.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited with another code, was killed by a signal, or could not start.
    Failed,
    /// Ended by a cancel.
    Cancelled,
    /// Killed when its timeout expired.
    TimedOut,
    /// Its agent was offline or stayed away; its real result replaces this if the agent
    /// comes back with one.
    Lost,
    /// Never started: the run's error budget (`max_errors`) ran out first.
    Skipped,
}

/// A state name that is not one of the known states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} state {input:?}: expected one of {expected}")]
pub struct ParseStateError {
    /// `"task"` or `"run"`.
    pub kind: &'static str,
    pub input: String,
    /// The accepted names, comma separated.
    pub expected: String,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 9] = [
        TaskState::Queued,
        TaskState::Dispatched,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::TimedOut,
        TaskState::Lost,
        TaskState::Skipped,
    ];

    /// The snake_case name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Dispatched => "dispatched",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
            TaskState::Lost => "lost",
            TaskState::Skipped => "skipped",
        }
    }

    /// States of a task that has not ended: waiting for a slot, sent, or running.
    pub const OPEN: [TaskState; 3] = [TaskState::Queued, TaskState::Dispatched, TaskState::Running];

    /// Whether the task has ended. An ended task changes state again only if it is `lost`
    /// and its agent comes back with the real result (see [`Transition::Exit`]).
    pub fn is_terminal(self) -> bool {
        !self.is_open()
    }

    /// Whether the task has not ended yet.
    pub fn is_open(self) -> bool {
        TaskState::OPEN.contains(&self)
    }

    /// Whether some transition takes a task from `self` to `next`.
    pub fn may_become(self, next: TaskState) -> bool {
        Transition::ALL
            .iter()
            .any(|t| t.target() == next && t.from_states().contains(&self))
    }

    /// The state after `t`, or `None` when `t` does not apply to a task in this state (it
    /// changes nothing: e.g. a late exit of a task cancelled before it started).
    pub fn after(self, t: Transition) -> Option<TaskState> {
        t.from_states().contains(&self).then(|| t.target())
    }
}

/// What can happen to a task. Each transition applies only to the states in
/// [`Transition::from_states`]; the store builds its conditional updates from those lists,
/// so a transition that does not apply changes nothing, whoever tries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The server sent the task to its agent (claimed it from the queue).
    Dispatch,
    /// The agent started the task's process.
    Start,
    /// The agent reported how the task ended (succeeded, failed, cancelled, timed out, or
    /// lost when the agent itself lost track of it). A task marked `lost` while its agent was
    /// away takes this real result when the agent returns with it: `lost` is revivable.
    Exit(TaskState),
    /// The server ended a task that has not ended: `lost` (its agent is offline or stayed
    /// away), `cancelled` (before it started, or while its agent was away) or `skipped` (a
    /// queued task of a run whose error budget is spent).
    End(TaskState),
}

impl Transition {
    /// Every transition of the lifecycle.
    pub const ALL: [Transition; 10] = [
        Transition::Dispatch,
        Transition::Start,
        Transition::Exit(TaskState::Succeeded),
        Transition::Exit(TaskState::Failed),
        Transition::Exit(TaskState::Cancelled),
        Transition::Exit(TaskState::TimedOut),
        Transition::Exit(TaskState::Lost),
        Transition::End(TaskState::Lost),
        Transition::End(TaskState::Cancelled),
        Transition::End(TaskState::Skipped),
    ];

    /// States an agent's report of an end applies to: every open state, and `lost`.
    pub const EXIT_FROM: [TaskState; 4] = [
        TaskState::Queued,
        TaskState::Dispatched,
        TaskState::Running,
        TaskState::Lost,
    ];

    /// The state a task is in afterwards.
    pub fn target(self) -> TaskState {
        match self {
            Transition::Dispatch => TaskState::Dispatched,
            Transition::Start => TaskState::Running,
            Transition::Exit(s) | Transition::End(s) => s,
        }
    }

    /// The states this transition applies to; empty when it is not a transition of the
    /// lifecycle (an exit or end into a state it cannot lead to).
    pub fn from_states(self) -> &'static [TaskState] {
        use TaskState::*;
        match self {
            Transition::Dispatch => &[Queued],
            Transition::Start => &[Queued, Dispatched],
            Transition::Exit(Succeeded | Failed | Cancelled | TimedOut | Lost) => {
                &Transition::EXIT_FROM
            }
            Transition::End(Lost | Cancelled) => &TaskState::OPEN,
            Transition::End(Skipped) => &[Queued],
            Transition::Exit(_) | Transition::End(_) => &[],
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError {
                kind: "task",
                input: s.to_string(),
                expected: names(TaskState::ALL.map(TaskState::as_str)),
            })
    }
}

/// State of a run (one command over all selected hosts), derived from its tasks
/// by [`run_state`].
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Some task has not ended.
    Running,
    /// Every task succeeded.
    Succeeded,
    /// Some task did not succeed.
    Failed,
    /// The run was cancelled and some task ended cancelled.
    Cancelled,
}

impl RunState {
    /// Every state.
    pub const ALL: [RunState; 4] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ];

    /// The snake_case name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Whether the run has finished.
    pub fn is_terminal(self) -> bool {
        self != RunState::Running
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError {
                kind: "run",
                input: s.to_string(),
                expected: names(RunState::ALL.map(RunState::as_str)),
            })
    }
}

fn names<const N: usize>(all: [&str; N]) -> String {
    all.join(", ")
}

/// The state of a run given its tasks' states and whether cancellation was
/// requested:
/// - `Running` while any task is not terminal;
/// - `Cancelled` if cancellation was requested and at least one task ended
///   `Cancelled`;
/// - `Succeeded` if every task succeeded (vacuously true for a run without tasks);
/// - `Failed` otherwise (including tasks cancelled without a run-level cancel).
pub fn run_state(tasks: impl IntoIterator<Item = TaskState>, cancelled: bool) -> RunState {
    let mut all_succeeded = true;
    let mut any_cancelled = false;
    for t in tasks {
        if !t.is_terminal() {
            return RunState::Running;
        }
        all_succeeded &= t == TaskState::Succeeded;
        any_cancelled |= t == TaskState::Cancelled;
    }
    if cancelled && any_cancelled {
        RunState::Cancelled
    } else if all_succeeded {
        RunState::Succeeded
    } else {
        RunState::Failed
    }
}

/// How a task's process ended, as seen by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// The process exited on its own (or was killed by a signal not sent by herd).
    Exited,
    /// herd killed it because its timeout expired.
    TimedOut,
    /// herd killed it because the task was cancelled.
    Cancelled,
    /// The process could not be started at all.
    FailedToStart,
}

/// The terminal task state for a process outcome: `Exited` with code 0 is
/// `Succeeded`, any other exit (non-zero code, or no code because of a signal) is
/// `Failed`; the other kinds map to `TimedOut`, `Cancelled` and `Failed`.
pub fn task_state_for_exit(code: Option<i32>, reason: ExitKind) -> TaskState {
    match reason {
        ExitKind::Exited if code == Some(0) => TaskState::Succeeded,
        ExitKind::Exited | ExitKind::FailedToStart => TaskState::Failed,
        ExitKind::TimedOut => TaskState::TimedOut,
        ExitKind::Cancelled => TaskState::Cancelled,
    }
}

/// The exit code the CLI returns for a task (shell conventions):
/// `Succeeded` → 0; `Failed` → the exit code if it is 1..=255, else 128+signal if
/// killed by a signal (1..=127), else 1; `TimedOut` → 124 (like `timeout(1)`);
/// `Cancelled` → 130 (like Ctrl-C); `Lost` → 255; `Skipped` and not yet terminal → 1.
pub fn cli_exit_code(state: TaskState, code: Option<i32>, signal: Option<i32>) -> i32 {
    match state {
        TaskState::Succeeded => 0,
        TaskState::Failed => match (code, signal) {
            (Some(c), _) if (1..=255).contains(&c) => c,
            (_, Some(s)) if (1..=127).contains(&s) => 128 + s,
            _ => 1,
        },
        TaskState::TimedOut => 124,
        TaskState::Cancelled => 130,
        TaskState::Lost => 255,
        TaskState::Skipped => 1,
        TaskState::Queued | TaskState::Dispatched | TaskState::Running => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;
    use super::*;

    #[test]
    fn task_state_names_round_trip() {
        let names = [
            "queued",
            "dispatched",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "timed_out",
            "lost",
            "skipped",
        ];
        for (st, name) in TaskState::ALL.into_iter().zip(names) {
            assert_eq!(st.as_str(), name);
            assert_eq!(st.to_string(), name);
            assert_eq!(name.parse::<TaskState>(), Ok(st));
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<TaskState>(&format!("\"{name}\"")).unwrap(),
                st
            );
        }
        let e = "TimedOut".parse::<TaskState>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown task state \"TimedOut\": expected one of queued, dispatched, running, \
             succeeded, failed, cancelled, timed_out, lost, skipped"
        );
    }

    #[test]
    fn run_state_names_round_trip() {
        for st in RunState::ALL {
            assert_eq!(st.as_str().parse::<RunState>(), Ok(st));
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("done".parse::<RunState>().is_err());
        assert!(!RunState::Running.is_terminal());
        assert!(RunState::Cancelled.is_terminal());
    }

    #[test]
    fn terminal_table() {
        let cases = [
            (Queued, false),
            (Dispatched, false),
            (Running, false),
            (Succeeded, true),
            (Failed, true),
            (Cancelled, true),
            (TimedOut, true),
            (Lost, true),
        ];
        for (st, want) in cases {
            assert_eq!(st.is_terminal(), want, "{st}");
        }
    }

    #[test]
    fn lifecycle_table() {
        // (from, to, allowed)
        let cases = [
            (Queued, Dispatched, true),
            (Queued, Running, true),
            (Queued, Skipped, true),
            (Queued, Lost, true),
            (Queued, Cancelled, true),
            (Queued, Succeeded, true),
            (Dispatched, Running, true),
            (Dispatched, Queued, false),
            (Dispatched, Skipped, false),
            (Dispatched, Failed, true),
            (Running, Dispatched, false),
            (Running, Succeeded, true),
            (Running, TimedOut, true),
            (Running, Lost, true),
            (Running, Skipped, false),
            // Lost is revivable by the agent's real result, by nothing else.
            (Lost, Succeeded, true),
            (Lost, Failed, true),
            (Lost, Running, false),
            (Lost, Skipped, false),
            // Every other final state is final.
            (Succeeded, Failed, false),
            (Cancelled, Succeeded, false),
            (Skipped, Running, false),
            (TimedOut, Lost, false),
        ];
        for (from, to, want) in cases {
            assert_eq!(from.may_become(to), want, "{from} -> {to}");
        }
        for from in TaskState::ALL {
            assert!(!from.may_become(Queued), "nothing goes back to queued");
            if from.is_terminal() && from != Lost {
                for to in TaskState::ALL {
                    assert!(!from.may_become(to), "{from} is final, not {to}");
                }
            }
        }
    }

    #[test]
    fn transitions_apply_only_where_they_may() {
        use Transition::*;
        let cases = [
            (Queued, Dispatch, Some(Dispatched)),
            (Dispatched, Dispatch, None),
            (Dispatched, Start, Some(Running)),
            (Running, Start, None),
            (Cancelled, Exit(Succeeded), None),
            (Lost, Exit(Succeeded), Some(Succeeded)),
            (Running, Exit(Lost), Some(Lost)),
            (Running, End(Skipped), None),
            (Queued, End(Skipped), Some(Skipped)),
            (Lost, End(Cancelled), None),
            (Running, Exit(Running), None),
            (Running, End(Succeeded), None),
        ];
        for (from, t, want) in cases {
            assert_eq!(from.after(t), want, "{from} {t:?}");
        }
        for t in Transition::ALL {
            assert!(!t.from_states().is_empty(), "{t:?}");
            assert!(t.target() != Queued);
        }
    }

    #[test]
    fn run_state_table() {
        let cases: &[(&[TaskState], bool, RunState)] = &[
            (&[], false, RunState::Succeeded),
            (&[Succeeded], false, RunState::Succeeded),
            (&[Succeeded, Succeeded], true, RunState::Succeeded),
            (&[Succeeded, Queued], false, RunState::Running),
            (&[Failed, Dispatched], false, RunState::Running),
            (&[Cancelled, Running], true, RunState::Running),
            (&[Succeeded, Failed], false, RunState::Failed),
            (&[Succeeded, TimedOut], false, RunState::Failed),
            (&[Succeeded, Lost], false, RunState::Failed),
            (&[Succeeded, Cancelled], false, RunState::Failed),
            (&[Succeeded, Cancelled], true, RunState::Cancelled),
            (&[Failed, Cancelled], true, RunState::Cancelled),
            (&[Cancelled], true, RunState::Cancelled),
            (&[Succeeded, Failed], true, RunState::Failed),
            (&[Succeeded], true, RunState::Succeeded),
        ];
        for &(tasks, cancelled, want) in cases {
            assert_eq!(
                run_state(tasks.iter().copied(), cancelled),
                want,
                "{tasks:?} cancelled={cancelled}"
            );
        }
    }

    #[test]
    fn task_state_for_exit_table() {
        let cases = [
            (Some(0), ExitKind::Exited, Succeeded),
            (Some(1), ExitKind::Exited, Failed),
            (Some(-1), ExitKind::Exited, Failed),
            (None, ExitKind::Exited, Failed),
            (None, ExitKind::TimedOut, TimedOut),
            (Some(0), ExitKind::TimedOut, TimedOut),
            (None, ExitKind::Cancelled, Cancelled),
            (Some(0), ExitKind::Cancelled, Cancelled),
            (None, ExitKind::FailedToStart, Failed),
            (Some(0), ExitKind::FailedToStart, Failed),
        ];
        for (code, kind, want) in cases {
            assert_eq!(task_state_for_exit(code, kind), want, "{code:?} {kind:?}");
        }
    }

    #[test]
    fn cli_exit_code_table() {
        let cases = [
            (Succeeded, Some(0), None, 0),
            (Succeeded, None, None, 0),
            (Failed, Some(3), None, 3),
            (Failed, Some(255), None, 255),
            (Failed, Some(0), None, 1),
            (Failed, Some(-1), None, 1),
            (Failed, Some(256), None, 1),
            (Failed, None, Some(9), 137),
            (Failed, None, Some(15), 143),
            (Failed, Some(0), Some(9), 137),
            (Failed, Some(2), Some(9), 2),
            (Failed, None, Some(0), 1),
            (Failed, None, Some(200), 1),
            (Failed, None, None, 1),
            (TimedOut, None, Some(9), 124),
            (Cancelled, None, Some(15), 130),
            (Lost, None, None, 255),
            (Queued, None, None, 1),
            (Dispatched, None, None, 1),
            (Running, None, None, 1),
        ];
        for (st, code, sig, want) in cases {
            assert_eq!(cli_exit_code(st, code, sig), want, "{st} {code:?} {sig:?}");
        }
    }
}
