//! Live output for people watching tasks: a **tap** per watcher receives the output chunks
//! of the tasks it watches, pushed right after they are persisted, each with its offset in
//! the task's output. Pushing waits while the watcher is busy (backpressure up to the agent,
//! whose spool absorbs the rest); a watcher stuck longer than `TAP_STALL` loses its tap and
//! reads on from the output log instead. (What changed in a run goes through `events`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::lock;
use bytes::Bytes;
use tokio::sync::mpsc;

/// How long a persist may wait for one watcher before that watcher falls back to the log.
const TAP_STALL: Duration = Duration::from_secs(10);

/// A task's output from one persisted batch: one message per batch, not per chunk, so a
/// watcher wakes (and writes) once per batch.
#[derive(Debug, Clone)]
pub struct LiveChunk {
    pub task_id: Arc<str>,
    /// Offset of the first part's first byte in the task's output (stdout and stderr together).
    pub offset: u64,
    /// (stream, data) in order.
    pub parts: Arc<[(u8, Bytes)]>,
}

#[derive(Clone)]
struct Tap {
    id: u64,
    tx: mpsc::Sender<LiveChunk>,
}

#[derive(Default)]
pub struct Live {
    taps: Mutex<HashMap<String, Vec<Tap>>>,
    next_tap: AtomicU64,
}

impl Live {
    /// Taps the output of `tasks` into `tx`; returns the tap's id for `untap`.
    pub fn tap(&self, tasks: &[String], tx: mpsc::Sender<LiveChunk>) -> u64 {
        let id = self.next_tap.fetch_add(1, Ordering::Relaxed);
        let mut taps = lock(&self.taps);
        for t in tasks {
            taps.entry(t.clone())
                .or_default()
                .push(Tap { id, tx: tx.clone() });
        }
        id
    }

    pub fn untap(&self, tasks: &[String], id: u64) {
        let mut taps = lock(&self.taps);
        for t in tasks {
            if let Some(v) = taps.get_mut(t) {
                v.retain(|tap| tap.id != id);
                if v.is_empty() {
                    taps.remove(t);
                }
            }
        }
    }

    /// Whether tap `id` still receives `task_id`'s output (it is dropped if it stalls).
    pub fn has_tap(&self, task_id: &str, id: u64) -> bool {
        lock(&self.taps)
            .get(task_id)
            .is_some_and(|v| v.iter().any(|t| t.id == id))
    }

    pub fn is_tapped(&self, task_id: &str) -> bool {
        lock(&self.taps).contains_key(task_id)
    }

    /// Pushes persisted output to the task's watchers, waiting for slow ones up to
    /// `TAP_STALL` each; a watcher that does not keep up (or is gone) is untapped.
    pub async fn publish(&self, task_id: &str, chunk: LiveChunk) {
        let taps = match lock(&self.taps).get(task_id) {
            Some(v) => v.clone(),
            None => return,
        };
        for tap in taps {
            let sent = tokio::time::timeout(TAP_STALL, tap.tx.send(chunk.clone())).await;
            if !matches!(sent, Ok(Ok(()))) {
                self.untap(&[task_id.to_string()], tap.id);
            }
        }
    }
}
