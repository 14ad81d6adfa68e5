//! The pacing of one run's fan-out: which tasks wait for a slot, how many are in flight, how
//! many failed, and how many ended in each state. Pure bookkeeping, owned by the run's
//! driver (`driver.rs`), which acts on what it answers.
//!
//! Invariants: `pending + in_flight + ended == total` (a slot held during `batch_wait`
//! counts as in flight); a task is counted as ended once (a later end of the same task, e.g.
//! `lost` then its real exit, moves it between states); nothing is admitted while the run is
//! held for its watcher or halted (error budget spent, or cancelled).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use herd_core::{RunLimits, RunState, TaskState};

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

impl Limits {
    /// The limits of a run with `targets` tasks, as asked.
    pub fn resolve(asked: &RunLimits, targets: usize) -> Limits {
        Limits {
            concurrency: asked.concurrency.map_or(usize::MAX, |c| c.ceil_of(targets)),
            max_errors: asked.max_errors.map(|m| m.floor_of(targets)),
            batch_wait: Duration::from_millis(asked.batch_wait_ms),
        }
    }
}

/// Where a run stands, for progress displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: usize,
    pub pending: usize,
    pub running: usize,
    /// Of `running`, parked until their machine comes back (the driver fills it in).
    pub waiting: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
}

pub struct Pacer {
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

fn is_error(s: TaskState) -> bool {
    matches!(s, TaskState::Failed | TaskState::TimedOut | TaskState::Lost)
}

impl Pacer {
    pub fn new(run: NewRun) -> Pacer {
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
        Pacer {
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
        }
    }

    /// Every task has ended: the run's final state.
    pub fn finished(&self) -> Option<RunState> {
        (self.ended.len() == self.total).then(|| {
            let mut states: Vec<TaskState> = self.ended.values().copied().collect();
            states.sort_by_key(|s| s.as_str());
            states.dedup();
            herd_core::run_state(states, self.cancel_requested)
        })
    }

    /// Lets a held run start (its watcher attached, or the wait for one ran out).
    pub fn release(&mut self) {
        self.held = false;
    }

    /// Takes the tasks that may start now and counts them in flight.
    pub fn admit(&mut self) -> Vec<Queued> {
        if self.held || self.halted {
            return Vec::new();
        }
        let mut room = self.limits.concurrency.saturating_sub(self.in_flight);
        let mut out = Vec::new();
        while room > 0 {
            let Some(q) = self.pending.pop_front() else {
                break;
            };
            if self.waiting.remove(&q.task_id) {
                out.push(q);
                room -= 1;
            }
        }
        self.in_flight += out.len();
        out
    }

    /// The run was cancelled: nothing more starts. Returns the tasks that were waiting
    /// (the caller ends them as cancelled).
    pub fn cancel(&mut self) -> Vec<Queued> {
        self.halted = true;
        self.cancel_requested = true;
        // They stay counted: each ends through `ended` like any other task.
        let waiting = self.take_waiting();
        self.in_flight += waiting.len();
        waiting
    }

    /// A task reached a final state (possibly again, with a different one).
    pub fn ended(&mut self, task_id: &str, state: TaskState) -> AfterEnd {
        let mut out = AfterEnd::default();
        match self.ended.insert(task_id.to_string(), state) {
            Some(old) => {
                // Re-ended (lost, then its real result arrived): only the tally moves.
                self.errors -= usize::from(is_error(old));
                self.errors += usize::from(is_error(state));
            }
            None => {
                if self.waiting.remove(task_id) {
                    // Ended while waiting (cancelled, or its agent went away).
                } else if self.limits.batch_wait.is_zero()
                    || self.halted
                    || state == TaskState::Skipped
                {
                    self.in_flight = self.in_flight.saturating_sub(1);
                } else {
                    out.wait = Some(self.limits.batch_wait);
                }
                self.errors += usize::from(is_error(state));
            }
        }
        if !self.halted && self.limits.max_errors.is_some_and(|max| self.errors > max) {
            self.halted = true;
            out.skip = self.take_waiting();
            // Counted in flight until their skip is recorded through `ended`.
            self.in_flight += out.skip.len();
        }
        out.finished = self.finished();
        if out.finished.is_some() {
            out.wait = None;
        }
        out
    }

    /// Frees a slot held for `batch_wait`.
    pub fn release_slot(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            total: self.total,
            pending: self.waiting.len(),
            running: self.total - self.waiting.len() - self.ended.len(),
            ..Progress::default()
        };
        for s in self.ended.values() {
            match s {
                TaskState::Succeeded => p.succeeded += 1,
                TaskState::Skipped => p.skipped += 1,
                TaskState::Cancelled => p.cancelled += 1,
                _ => p.failed += 1,
            }
        }
        p
    }

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
        let mut s = Pacer::new(NewRun {
            limits: limits(2, None),
            held: false,
            cancel_requested: false,
            pending: q(5),
            in_flight: 0,
            ended: HashMap::new(),
        });
        let first = s.admit();
        assert_eq!(first.len(), 2);
        assert!(s.admit().is_empty());
        assert_eq!(s.ended("t0", TaskState::Succeeded), AfterEnd::default());
        let next = s.admit();
        assert_eq!(
            next.iter().map(|q| q.task_id.as_str()).collect::<Vec<_>>(),
            ["t2"]
        );
        let p = s.progress();
        assert_eq!((p.pending, p.running, p.succeeded), (2, 2, 1));
    }

    #[test]
    fn max_errors_halts_and_skips_the_rest() {
        let mut s = Pacer::new(NewRun {
            limits: limits(1, Some(1)),
            held: false,
            cancel_requested: false,
            pending: q(5),
            in_flight: 0,
            ended: HashMap::new(),
        });
        assert_eq!(s.admit().len(), 1);
        assert!(s.ended("t0", TaskState::Failed).skip.is_empty());
        assert_eq!(s.admit()[0].task_id, "t1");
        let after = s.ended("t1", TaskState::Failed);
        assert_eq!(after.skip.len(), 3);
        assert!(s.admit().is_empty());
        for t in ["t2", "t3"] {
            assert_eq!(s.ended(t, TaskState::Skipped).finished, None);
        }
        assert_eq!(
            s.ended("t4", TaskState::Skipped).finished,
            Some(RunState::Failed)
        );
    }

    #[test]
    fn held_runs_wait_and_batch_wait_keeps_the_slot() {
        let l = Limits {
            concurrency: 1,
            max_errors: None,
            batch_wait: Duration::from_secs(1),
        };
        let mut s = Pacer::new(NewRun {
            limits: l,
            held: true,
            cancel_requested: false,
            pending: q(2),
            in_flight: 0,
            ended: HashMap::new(),
        });
        assert!(s.admit().is_empty());
        s.release();
        assert_eq!(s.admit().len(), 1);
        let after = s.ended("t0", TaskState::Succeeded);
        assert_eq!(after.wait, Some(Duration::from_secs(1)));
        assert!(s.admit().is_empty(), "slot still held during the wait");
        s.release_slot();
        assert_eq!(s.admit().len(), 1);
        assert_eq!(
            s.ended("t1", TaskState::Succeeded).finished,
            Some(RunState::Succeeded)
        );
    }

    #[test]
    fn a_task_re_ended_is_counted_once() {
        let mut s = Pacer::new(NewRun {
            limits: limits(usize::MAX, None),
            held: false,
            cancel_requested: false,
            pending: q(2),
            in_flight: 0,
            ended: HashMap::new(),
        });
        assert_eq!(s.admit().len(), 2);
        assert_eq!(s.ended("t0", TaskState::Lost).finished, None);
        assert_eq!(s.ended("t0", TaskState::Succeeded).finished, None);
        assert_eq!(
            s.ended("t1", TaskState::Succeeded).finished,
            Some(RunState::Succeeded)
        );
    }

    #[test]
    fn cancel_stops_admission() {
        let mut s = Pacer::new(NewRun {
            limits: limits(1, None),
            held: false,
            cancel_requested: false,
            pending: q(3),
            in_flight: 0,
            ended: HashMap::new(),
        });
        assert_eq!(s.admit().len(), 1);
        let waiting = s.cancel();
        assert_eq!(waiting.len(), 2);
        assert!(s.admit().is_empty());
        s.ended("t1", TaskState::Cancelled);
        s.ended("t2", TaskState::Cancelled);
        assert_eq!(
            s.ended("t0", TaskState::Cancelled).finished,
            Some(RunState::Cancelled)
        );
    }
}
