//! Tasks whose events are being persisted: per task, its run and agent, the last event seq
//! and output position committed, and when its StartTask went out. The persist path reads
//! these instead of the store; an entry is made when a task is first sent (nothing of it is
//! persisted yet) or loaded from the store when an event arrives for a task not held here
//! (after a restart), and dropped when the task ends, however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::lock;
use herd_core::OutputPos;
use herd_outlog::OutputLog;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTask {
    pub run_id: String,
    pub agent_id: String,
    /// Last event seq committed.
    pub seq: u64,
    /// Output log position committed with it.
    pub pos: OutputPos,
    /// The task has ended for good (its agent's exit is persisted, or it ended otherwise and
    /// no result of its agent can change it any more): events after `seq` are refused.
    pub closed: bool,
}

#[derive(Default)]
pub struct ActiveTasks {
    tasks: Mutex<HashMap<String, (ActiveTask, Option<Instant>)>>,
}

impl ActiveTasks {
    pub fn get(&self, task_id: &str) -> Option<ActiveTask> {
        lock(&self.tasks).get(task_id).map(|(a, _)| a.clone())
    }

    /// A task's StartTask is going out. Its first send: nothing of it is persisted yet.
    pub fn sent(&self, run_id: &str, task_id: &str, agent_id: &str) {
        lock(&self.tasks)
            .entry(task_id.to_string())
            .or_insert_with(|| {
                (
                    ActiveTask {
                        run_id: run_id.to_string(),
                        agent_id: agent_id.to_string(),
                        seq: 0,
                        pos: OutputPos::default(),
                        closed: false,
                    },
                    None,
                )
            })
            .1 = Some(Instant::now());
    }

    /// Holds a task loaded from the store (unless an entry appeared meanwhile).
    pub fn load(&self, task_id: &str, task: ActiveTask) {
        lock(&self.tasks)
            .entry(task_id.to_string())
            .or_insert((task, None));
    }

    /// Records what was just committed for the task; `closed` once its exit is.
    pub fn advance(&self, task_id: &str, seq: u64, pos: OutputPos, closed: bool) {
        if let Some((a, _)) = lock(&self.tasks).get_mut(task_id) {
            a.seq = seq;
            a.pos = pos;
            a.closed |= closed;
        }
    }

    /// When the task's StartTask went out, once (for the dispatch latency).
    pub fn take_sent_at(&self, task_id: &str) -> Option<Instant> {
        lock(&self.tasks)
            .get_mut(task_id)
            .and_then(|(_, t)| t.take())
    }

    /// The task ended: drops its entry and deletes the output log's retired segments and
    /// spare (on the blocking pool), whatever ended it.
    pub fn finish(&self, task_id: &str, outlog: &Arc<OutputLog>) {
        let Some((a, _)) = lock(&self.tasks).remove(task_id) else {
            return;
        };
        if OutputLog::needs_finish(a.pos) {
            let (outlog, id) = (outlog.clone(), task_id.to_string());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = outlog.finish(&id, a.pos) {
                    tracing::warn!(task = %id, error = %e, "cannot delete retired output segments");
                }
            });
        }
    }
}
