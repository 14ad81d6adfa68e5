//! What happens to runs, for whoever follows them: per run, a broadcast of `TaskChanged`
//! (a task's row changed: progress, output, an end) and `RunFinished`, and a flag set once
//! the run finished (for waiters that care about nothing else).
//!
//! Publishing is cheap when nobody follows a run (one map lookup) and never waits: a
//! follower that lags is told so and re-reads everything, so nothing is lost.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::lock;
use tokio::sync::{broadcast, watch};

/// Changes queued per follower of a run before it is told it lagged.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The task's row changed (progress, output committed, or it ended).
    TaskChanged(String),
    /// Every task ended; the run's final state is stored.
    RunFinished,
}

struct Followers {
    events: broadcast::Sender<RunEvent>,
    finished: watch::Sender<bool>,
}

impl Followers {
    fn new() -> Followers {
        Followers {
            events: broadcast::channel(BACKLOG).0,
            finished: watch::channel(false).0,
        }
    }

    fn unfollowed(&self) -> bool {
        self.events.receiver_count() == 0 && self.finished.receiver_count() == 0
    }
}

#[derive(Default)]
pub struct Events {
    runs: Mutex<HashMap<String, Followers>>,
}

/// A follower's hold on a run's events; the run is forgotten once nobody holds one.
pub struct Follow<'a> {
    events: &'a Events,
    run_id: String,
    rx: Option<broadcast::Receiver<RunEvent>>,
}

/// What a follower missed: it lagged (re-read everything) or the server is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    Lagged,
    Closed,
}

impl Follow<'_> {
    /// The next event; cancel-safe.
    pub async fn recv(&mut self) -> Result<RunEvent, Missed> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(Missed::Closed);
        };
        rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(_) => Missed::Lagged,
            broadcast::error::RecvError::Closed => Missed::Closed,
        })
    }

    /// An event already queued, if any (`Ok(None)`: none now).
    pub fn try_recv(&mut self) -> Result<Option<RunEvent>, Missed> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(Missed::Closed);
        };
        match rx.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Err(Missed::Lagged),
            Err(broadcast::error::TryRecvError::Closed) => Err(Missed::Closed),
        }
    }
}

impl Drop for Follow<'_> {
    fn drop(&mut self) {
        // The receiver goes before the count of followers is checked.
        drop(self.rx.take());
        self.events.release(&self.run_id);
    }
}

/// A waiter for a run's end; forgets the run once nobody waits or follows.
pub struct FinishWait<'a> {
    events: &'a Events,
    run_id: String,
    rx: Option<watch::Receiver<bool>>,
}

impl FinishWait<'_> {
    /// Returns once the run finished (or the server shuts down); wakes only then, however
    /// many of the run's tasks change meanwhile.
    pub async fn finished(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            let _ = rx.wait_for(|f| *f).await;
        }
    }
}

impl Drop for FinishWait<'_> {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.events.release(&self.run_id);
    }
}

impl Events {
    pub fn follow(&self, run_id: &str) -> Follow<'_> {
        let rx = lock(&self.runs)
            .entry(run_id.to_string())
            .or_insert_with(Followers::new)
            .events
            .subscribe();
        Follow {
            events: self,
            run_id: run_id.to_string(),
            rx: Some(rx),
        }
    }

    /// Subscribe before the run can finish, then await [`FinishWait::finished`].
    pub fn wait_finish(&self, run_id: &str) -> FinishWait<'_> {
        let rx = lock(&self.runs)
            .entry(run_id.to_string())
            .or_insert_with(Followers::new)
            .finished
            .subscribe();
        FinishWait {
            events: self,
            run_id: run_id.to_string(),
            rx: Some(rx),
        }
    }

    pub fn task_changed(&self, run_id: &str, task_id: &str) {
        if let Some(f) = lock(&self.runs).get(run_id) {
            // Without followers this keeps nothing.
            let _ = f.events.send(RunEvent::TaskChanged(task_id.to_string()));
        }
    }

    pub fn run_finished(&self, run_id: &str) {
        if let Some(f) = lock(&self.runs).get(run_id) {
            f.finished.send_replace(true);
            let _ = f.events.send(RunEvent::RunFinished);
        }
    }

    fn release(&self, run_id: &str) {
        let mut runs = lock(&self.runs);
        if runs.get(run_id).is_some_and(Followers::unfollowed) {
            runs.remove(run_id);
        }
    }

    /// Runs someone follows.
    #[cfg(test)]
    fn followed(&self) -> usize {
        lock(&self.runs).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_changes_and_the_run_is_forgotten_after_them() {
        let ev = Events::default();
        ev.task_changed("r", "t0"); // nobody follows: kept nowhere
        assert_eq!(ev.followed(), 0);
        let mut f = ev.follow("r");
        let mut w = ev.wait_finish("r");
        ev.task_changed("r", "t1");
        ev.run_finished("r");
        assert_eq!(f.recv().await, Ok(RunEvent::TaskChanged("t1".into())));
        assert_eq!(f.try_recv(), Ok(Some(RunEvent::RunFinished)));
        assert_eq!(f.try_recv(), Ok(None));
        w.finished().await;
        drop(f);
        assert_eq!(ev.followed(), 1, "the waiter still holds the run");
        drop(w);
        assert_eq!(ev.followed(), 0);
    }
}
