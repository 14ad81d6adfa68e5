//! Change notifications for people watching runs: a broadcast per watched run that carries
//! "this task changed" (new output persisted, new state) and "the run finished". Watchers read
//! the actual data from the store; a watcher that lags re-reads everything, so nothing is lost.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Task(String),
    Run,
}

#[derive(Default)]
pub struct Live {
    runs: Mutex<HashMap<String, broadcast::Sender<Change>>>,
}

impl Live {
    pub fn subscribe(&self, run_id: &str) -> broadcast::Receiver<Change> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.entry(run_id.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    /// Cheap when nobody watches the run: one map lookup.
    pub fn notify(&self, run_id: &str, change: Change) {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = runs.get(run_id) {
            let _ = tx.send(change);
        }
    }

    /// Called by a watcher when it stops; forgets the run once nobody watches it.
    pub fn release(&self, run_id: &str) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.get(run_id).is_some_and(|tx| tx.receiver_count() == 0) {
            runs.remove(run_id);
        }
    }
}
