//! Rate control of fan-outs: per unfinished run, which tasks wait for a slot, how many are
//! in flight, how many failed, and how many ended in each state. Pure bookkeeping (no I/O,
//! no await under its lock); `dispatch` acts on what it answers.
//!
//! Invariants, per run: `pending + in_flight + ended == total` (a slot held during
//! `batch_wait` counts as in flight); a task is counted as ended once (a later end of the
//! same task, e.g. `lost` then its real exit, moves it between states); nothing is admitted
//! while the run is held for its watcher or halted (error budget spent, or cancelled).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use herd_core::{RunState, TaskState};
use serde::Serialize;

/// A task waiting for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub task_id: String,
    pub agent_id: String,
}

/// The limits of one run, resolved against its number of targets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tasks in flight at most.
    pub concurrency: usize,
    /// Failures tolerated; one more halts the run.
    pub max_errors: Option<usize>,
    /// A finished task's slot is freed only this long after it ended.
    pub batch_wait: Duration,
}

/// Where a run stands, for progress displays.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Progress {
    pub total: usize,
    pub pending: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
}

struct RunCtl {
    total: usize,
    limits: Limits,
    /// In start order; may hold tasks that ended while waiting (not in `waiting`).
    pending: VecDeque<Queued>,
    /// Ids of the tasks still waiting.
    waiting: HashSet<String>,
    in_flight: usize,
    ended: HashMap<String, TaskState>,
    errors: usize,
    held: bool,
    halted: bool,
    cancel_requested: bool,
}

/// A run as registered: its tasks split by where they stand.
pub struct NewRun {
    pub limits: Limits,
    /// Nothing starts until `release` (the run waits for its watcher).
    pub held: bool,
    pub cancel_requested: bool,
    /// Queued tasks, in the order they should start.
    pub pending: Vec<Queued>,
    /// Tasks already sent.
    pub in_flight: usize,
    /// Tasks already in a final state.
    pub ended: HashMap<String, TaskState>,
}

/// What an ended task means for its run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AfterEnd {
    /// The error budget ran out just now: these queued tasks are to be skipped.
    pub skip: Vec<Queued>,
    /// The slot frees after this wait (then `release_slot`), or now if `None`.
    pub wait: Option<Duration>,
    /// Every task has ended: the run's final state.
    pub finished: Option<RunState>,
}

#[derive(Default)]
pub struct Scheduler {
    runs: Mutex<HashMap<String, RunCtl>>,
}

fn is_error(s: TaskState) -> bool {
    matches!(s, TaskState::Failed | TaskState::TimedOut | TaskState::Lost)
}

impl Scheduler {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunCtl>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a run.
    pub fn add(&self, run_id: &str, run: NewRun) {
        let NewRun {
            limits,
            held,
            cancel_requested,
            pending,
            in_flight,
            ended,
        } = run;
        let errors = ended.values().filter(|s| is_error(**s)).count();
        let halted = cancel_requested || limits.max_errors.is_some_and(|max| errors > max);
        let ctl = RunCtl {
            total: pending.len() + in_flight + ended.len(),
            limits,
            waiting: pending.iter().map(|q| q.task_id.clone()).collect(),
            pending: pending.into(),
            in_flight,
            ended,
            errors,
            held,
            halted,
            cancel_requested,
        };
        self.lock().insert(run_id.to_string(), ctl);
    }

    pub fn knows(&self, run_id: &str) -> bool {
        self.lock().contains_key(run_id)
    }

    /// Lets a held run start (its watcher attached, or the wait for one ran out).
    pub fn release(&self, run_id: &str) {
        if let Some(r) = self.lock().get_mut(run_id) {
            r.held = false;
        }
    }

    /// Takes the tasks that may start now and counts them in flight.
    pub fn admit(&self, run_id: &str) -> Vec<Queued> {
        let mut runs = self.lock();
        let Some(r) = runs.get_mut(run_id) else {
            return Vec::new();
        };
        if r.held || r.halted {
            return Vec::new();
        }
        let mut room = r.limits.concurrency.saturating_sub(r.in_flight);
        let mut out = Vec::new();
        while room > 0 {
            let Some(q) = r.pending.pop_front() else {
                break;
            };
            if r.waiting.remove(&q.task_id) {
                out.push(q);
                room -= 1;
            }
        }
        r.in_flight += out.len();
        out
    }

    /// The run was cancelled: nothing more starts. Returns the tasks that were waiting
    /// (the caller ends them as cancelled).
    pub fn cancel(&self, run_id: &str) -> Vec<Queued> {
        let mut runs = self.lock();
        let Some(r) = runs.get_mut(run_id) else {
            return Vec::new();
        };
        r.halted = true;
        r.cancel_requested = true;
        // They stay counted: each ends through `ended` like any other task.
        let waiting = r.take_waiting();
        r.in_flight += waiting.len();
        waiting
    }

    /// A task reached a final state (possibly again, with a different one).
    pub fn ended(&self, run_id: &str, task_id: &str, state: TaskState) -> AfterEnd {
        let mut runs = self.lock();
        let Some(r) = runs.get_mut(run_id) else {
            return AfterEnd::default();
        };
        let mut out = AfterEnd::default();
        match r.ended.insert(task_id.to_string(), state) {
            Some(old) => {
                // Re-ended (lost, then its real result arrived): only the tally moves.
                r.errors -= usize::from(is_error(old));
                r.errors += usize::from(is_error(state));
            }
            None => {
                if r.waiting.remove(task_id) {
                    // Ended while waiting (cancelled, or its agent went away).
                } else if r.limits.batch_wait.is_zero() || r.halted || state == TaskState::Skipped {
                    r.in_flight = r.in_flight.saturating_sub(1);
                } else {
                    out.wait = Some(r.limits.batch_wait);
                }
                r.errors += usize::from(is_error(state));
            }
        }
        if !r.halted && r.limits.max_errors.is_some_and(|max| r.errors > max) {
            r.halted = true;
            out.skip = r.take_waiting();
            // Counted in flight until their skip is recorded through `ended`.
            r.in_flight += out.skip.len();
        }
        if r.ended.len() == r.total {
            let mut states: Vec<TaskState> = r.ended.values().copied().collect();
            states.sort_by_key(|s| s.as_str());
            states.dedup();
            out.finished = Some(herd_core::run_state(states, r.cancel_requested));
            out.wait = None;
            runs.remove(run_id);
        }
        out
    }

    /// Frees a slot held for `batch_wait`.
    pub fn release_slot(&self, run_id: &str) {
        if let Some(r) = self.lock().get_mut(run_id) {
            r.in_flight = r.in_flight.saturating_sub(1);
        }
    }

    pub fn progress(&self, run_id: &str) -> Option<Progress> {
        let runs = self.lock();
        let r = runs.get(run_id)?;
        let mut p = Progress {
            total: r.total,
            pending: r.waiting.len(),
            running: r.total - r.waiting.len() - r.ended.len(),
            ..Progress::default()
        };
        for s in r.ended.values() {
            match s {
                TaskState::Succeeded => p.succeeded += 1,
                TaskState::Skipped => p.skipped += 1,
                TaskState::Cancelled => p.cancelled += 1,
                _ => p.failed += 1,
            }
        }
        Some(p)
    }
}

impl RunCtl {
    /// Empties the queue, in start order.
    fn take_waiting(&mut self) -> Vec<Queued> {
        let waiting = std::mem::take(&mut self.waiting);
        self.pending
            .drain(..)
            .filter(|q| waiting.contains(&q.task_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: usize) -> Vec<Queued> {
        (0..n)
            .map(|i| Queued {
                task_id: format!("t{i}"),
                agent_id: format!("a{i}"),
            })
            .collect()
    }

    fn limits(concurrency: usize, max_errors: Option<usize>) -> Limits {
        Limits {
            concurrency,
            max_errors,
            batch_wait: Duration::ZERO,
        }
    }

    #[test]
    fn concurrency_bounds_what_is_in_flight() {
        let s = Scheduler::default();
        s.add(
            "r",
            NewRun {
                limits: limits(2, None),
                held: false,
                cancel_requested: false,
                pending: q(5),
                in_flight: 0,
                ended: HashMap::new(),
            },
        );
        let first = s.admit("r");
        assert_eq!(first.len(), 2);
        assert!(s.admit("r").is_empty());
        assert_eq!(
            s.ended("r", "t0", TaskState::Succeeded),
            AfterEnd::default()
        );
        let next = s.admit("r");
        assert_eq!(
            next.iter().map(|q| q.task_id.as_str()).collect::<Vec<_>>(),
            ["t2"]
        );
        let p = s.progress("r").unwrap();
        assert_eq!((p.pending, p.running, p.succeeded), (2, 2, 1));
    }

    #[test]
    fn max_errors_halts_and_skips_the_rest() {
        let s = Scheduler::default();
        s.add(
            "r",
            NewRun {
                limits: limits(1, Some(1)),
                held: false,
                cancel_requested: false,
                pending: q(5),
                in_flight: 0,
                ended: HashMap::new(),
            },
        );
        assert_eq!(s.admit("r").len(), 1);
        assert!(s.ended("r", "t0", TaskState::Failed).skip.is_empty());
        assert_eq!(s.admit("r")[0].task_id, "t1");
        let after = s.ended("r", "t1", TaskState::Failed);
        assert_eq!(after.skip.len(), 3);
        assert!(s.admit("r").is_empty());
        for t in ["t2", "t3"] {
            assert_eq!(s.ended("r", t, TaskState::Skipped).finished, None);
        }
        assert_eq!(
            s.ended("r", "t4", TaskState::Skipped).finished,
            Some(RunState::Failed)
        );
        assert!(!s.knows("r"));
    }

    #[test]
    fn held_runs_wait_and_batch_wait_keeps_the_slot() {
        let s = Scheduler::default();
        let l = Limits {
            concurrency: 1,
            max_errors: None,
            batch_wait: Duration::from_secs(1),
        };
        s.add(
            "r",
            NewRun {
                limits: l,
                held: true,
                cancel_requested: false,
                pending: q(2),
                in_flight: 0,
                ended: HashMap::new(),
            },
        );
        assert!(s.admit("r").is_empty());
        s.release("r");
        assert_eq!(s.admit("r").len(), 1);
        let after = s.ended("r", "t0", TaskState::Succeeded);
        assert_eq!(after.wait, Some(Duration::from_secs(1)));
        assert!(s.admit("r").is_empty(), "slot still held during the wait");
        s.release_slot("r");
        assert_eq!(s.admit("r").len(), 1);
        assert_eq!(
            s.ended("r", "t1", TaskState::Succeeded).finished,
            Some(RunState::Succeeded)
        );
    }

    #[test]
    fn a_task_re_ended_is_counted_once() {
        let s = Scheduler::default();
        s.add(
            "r",
            NewRun {
                limits: limits(usize::MAX, None),
                held: false,
                cancel_requested: false,
                pending: q(2),
                in_flight: 0,
                ended: HashMap::new(),
            },
        );
        assert_eq!(s.admit("r").len(), 2);
        assert_eq!(s.ended("r", "t0", TaskState::Lost).finished, None);
        assert_eq!(s.ended("r", "t0", TaskState::Succeeded).finished, None);
        assert_eq!(
            s.ended("r", "t1", TaskState::Succeeded).finished,
            Some(RunState::Succeeded)
        );
    }

    #[test]
    fn cancel_stops_admission() {
        let s = Scheduler::default();
        s.add(
            "r",
            NewRun {
                limits: limits(1, None),
                held: false,
                cancel_requested: false,
                pending: q(3),
                in_flight: 0,
                ended: HashMap::new(),
            },
        );
        assert_eq!(s.admit("r").len(), 1);
        let waiting = s.cancel("r");
        assert_eq!(waiting.len(), 2);
        assert!(s.admit("r").is_empty());
        s.ended("r", "t1", TaskState::Cancelled);
        s.ended("r", "t2", TaskState::Cancelled);
        assert_eq!(
            s.ended("r", "t0", TaskState::Cancelled).finished,
            Some(RunState::Cancelled)
        );
    }
}
