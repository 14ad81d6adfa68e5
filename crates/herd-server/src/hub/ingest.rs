//! The persist path: one batch of an agent's task events in, acknowledgements out. Output
//! goes to the output log, then the new seq and log position (with starts and exits) are
//! committed together through the group-commit writer, then watchers get the output, then
//! the agent gets its acks. Exactly once: an event at or below a task's persisted seq is
//! dropped, and a gap stops a task's batch (the agent replays from its last ack). Nothing
//! counts after a task's end: events after its exit (in the same batch or later), or after
//! it ended otherwise for good, are acknowledged so the agent lets go, and dropped.
//!
//! Which events of a batch count is decided by [`plan`], a pure function of what is known
//! of each task and the events, so the rules are tested with plain values. What happens
//! next to a task that ended is its run's driver's business: the persist path only posts
//! a message, it never waits on other agents' work.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use herd_outlog::{OutputLog, Record};
use herd_proto::v1::{self as pb, task_event};
use herd_store::{Started, Store, TaskProgress, now_ms};

use herd_core::Escaped;

use super::convert;
use super::writer::ProgressWriter;
use crate::active::{ActiveTask, ActiveTasks};
use crate::events::Events;
use crate::live::{Live, LiveChunk};
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::runs::Drivers;

/// Output stream numbers in the output log.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// Output to append for one task of a batch: (its place in the batch, task id, position
/// committed before, records).
type OutputJob = (usize, String, herd_core::OutputPos, Vec<(u8, Bytes)>);

/// One task's part of a batch, as decided by [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub task_id: String,
    /// What was persisted before; `None` for a task this server does not know (e.g. the
    /// database was replaced): it is acknowledged so the agent lets go, nothing is stored.
    pub before: Option<ActiveTask>,
    /// The seq persisted once this batch is.
    pub seq: u64,
    /// What the acknowledgement says: `seq`, or more when events after the task's end (or of
    /// a task this server does not know) are let go without being stored.
    pub ack: u64,
    /// How many events came after the task's end and were dropped.
    pub late: u64,
    /// (stream, data) of the output events that count, in order.
    pub records: Vec<(u8, Bytes)>,
    /// The pid of a start that counts.
    pub started: Option<u32>,
    pub exited: Option<pb::Exited>,
    /// The latest supervision state that counts.
    pub supervision: Option<pb::Supervision>,
}

impl Planned {
    /// Whether this batch changes anything stored.
    pub fn changes(&self) -> bool {
        self.before.as_ref().is_some_and(|b| self.seq > b.seq)
    }
}

/// Decides which events of `agent_id`'s batch count, given what is persisted of each task
/// (`known`: absent = unknown task). Tasks come out in the order of their first event; a
/// task of another agent is left out (not acknowledged).
pub fn plan(
    agent_id: &str,
    events: Vec<pb::TaskEvent>,
    known: &HashMap<String, ActiveTask>,
) -> Vec<Planned> {
    let mut order: Vec<Planned> = Vec::new();
    let mut at: HashMap<String, Option<usize>> = HashMap::new();
    for ev in events {
        let slot = match at.get(&ev.task_id) {
            Some(s) => *s,
            None => {
                let before = known.get(&ev.task_id).cloned();
                let slot = match &before {
                    Some(b) if b.agent_id != agent_id => None,
                    _ => {
                        let seq = before.as_ref().map_or(0, |b| b.seq);
                        order.push(Planned {
                            task_id: ev.task_id.clone(),
                            seq,
                            ack: seq,
                            late: 0,
                            before,
                            records: Vec::new(),
                            started: None,
                            exited: None,
                            supervision: None,
                        });
                        Some(order.len() - 1)
                    }
                };
                at.insert(ev.task_id.clone(), slot);
                slot
            }
        };
        let Some(p) = slot.and_then(|i| order.get_mut(i)) else {
            continue;
        };
        let closed = p.exited.is_some() || p.before.as_ref().is_some_and(|b| b.closed);
        if p.before.is_none() {
            p.seq = p.seq.max(ev.seq);
            p.ack = p.seq;
            continue;
        }
        if closed {
            // After the end: let it go (acknowledged), store nothing of it.
            if ev.seq > p.seq {
                p.late += 1;
                p.ack = p.ack.max(ev.seq);
            }
            continue;
        }
        // Exactly once: drop what is already persisted; stop at a gap (the agent replays).
        if ev.seq != p.seq + 1 {
            continue;
        }
        p.seq = ev.seq;
        p.ack = ev.seq;
        match ev.kind {
            Some(task_event::Kind::Started(s)) => p.started = Some(s.pid),
            Some(task_event::Kind::Output(o)) => {
                let stream = if o.stream == pb::Stream::Stderr as i32 {
                    STDERR
                } else {
                    STDOUT
                };
                p.records.push((stream, o.data));
            }
            Some(task_event::Kind::Exited(x)) => p.exited = Some(x),
            Some(task_event::Kind::Supervision(s)) => p.supervision = Some(s),
            None => {}
        }
    }
    order
}

pub struct Ingest {
    store: Arc<dyn Store>,
    writer: ProgressWriter,
    outlog: Arc<OutputLog>,
    active: Arc<ActiveTasks>,
    live: Arc<Live>,
    events: Arc<Events>,
    drivers: Arc<Drivers>,
    metrics: Arc<Metrics>,
    /// One persist at a time per agent: an old session revived after a partition and its
    /// replacement may deliver the same events.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Tasks already warned about for events after their end.
    warned_late: Mutex<HashSet<String>>,
    /// Lines about an agent's mistakes (task ids it sent are its own text: escaped); the
    /// session's lines count here too.
    pub(crate) mistakes: LogLimit,
}

/// How many tasks [`Ingest`] remembers having warned about.
const WARNED_LATE_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("store: {0}")]
    Store(#[from] herd_store::StoreError),
    #[error("output log: {0}")]
    Outlog(#[from] herd_outlog::OutlogError),
    #[error("output log writer: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Ingest {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        writer: ProgressWriter,
        outlog: Arc<OutputLog>,
        active: Arc<ActiveTasks>,
        live: Arc<Live>,
        events: Arc<Events>,
        drivers: Arc<Drivers>,
        metrics: Arc<Metrics>,
    ) -> Ingest {
        Ingest {
            store,
            writer,
            outlog,
            active,
            live,
            events,
            drivers,
            metrics,
            locks: Mutex::default(),
            warned_late: Mutex::default(),
            mistakes: LogLimit::default(),
        }
    }

    fn lock_of(&self, agent_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(agent_id.to_string())
            .or_default()
            .clone()
    }

    /// Persists one batch of `agent_id`'s events and returns the acknowledgements to send.
    pub async fn persist(
        &self,
        agent_id: &str,
        batch: pb::EventBatch,
    ) -> Result<Vec<pb::Ack>, IngestError> {
        let lock = self.lock_of(agent_id);
        let _held = lock.lock().await;
        let mut known = HashMap::new();
        let mut unknown = HashSet::new();
        for ev in &batch.events {
            if known.contains_key(&ev.task_id) || unknown.contains(&ev.task_id) {
                continue;
            }
            match self.known_task(&ev.task_id).await? {
                Some(t) => {
                    if t.agent_id != agent_id && self.mistakes.admit(agent_id) {
                        tracing::warn!(task = %Escaped(&ev.task_id), agent = %agent_id, "agent sent events for another agent's task; ignored");
                    }
                    known.insert(ev.task_id.clone(), t);
                }
                None => {
                    if self.mistakes.admit(agent_id) {
                        tracing::warn!(task = %Escaped(&ev.task_id), agent = %agent_id, "agent sent events for an unknown task; acknowledged and dropped");
                    }
                    unknown.insert(ev.task_id.clone());
                }
            }
        }
        let now = now_ms();
        let mut work = plan(agent_id, batch.events, &known);

        // Output first (blocking file I/O off the async threads), then one commit. Most
        // batches of a large fan-out carry no output at all: no hand-off for those.
        let mut outs: Vec<(usize, herd_core::OutputPos)> = Vec::new();
        if work.iter().any(|p| p.changes() && !p.records.is_empty()) {
            let outlog = self.outlog.clone();
            let jobs: Vec<OutputJob> = work
                .iter()
                .enumerate()
                .filter(|(_, p)| p.changes() && !p.records.is_empty())
                .filter_map(|(i, p)| {
                    let b = p.before.as_ref()?;
                    Some((i, p.task_id.clone(), b.pos, p.records.clone()))
                })
                .collect();
            outs = tokio::task::spawn_blocking(move || {
                let mut outs = Vec::with_capacity(jobs.len());
                for (i, task_id, pos, records) in jobs {
                    let recs: Vec<Record<'_>> = records
                        .iter()
                        .map(|(s, d)| Record {
                            stream: *s,
                            data: d,
                        })
                        .collect();
                    outs.push((i, outlog.append(&task_id, pos, &recs)?));
                }
                Ok::<_, herd_outlog::OutlogError>(outs)
            })
            .await??;
        }
        let mut progress: Vec<TaskProgress> = Vec::new();
        let mut positions: HashMap<usize, herd_core::OutputPos> = outs.into_iter().collect();
        for (i, p) in work.iter().enumerate() {
            let Some(before) = p.before.as_ref().filter(|_| p.changes()) else {
                continue;
            };
            let out = *positions.entry(i).or_insert(before.pos);
            progress.push(TaskProgress {
                task_id: p.task_id.clone(),
                seq: p.seq,
                out,
                started: p.started.map(|pid| Started { pid, at: now }),
                exited: p.exited.as_ref().map(|x| convert::exit(x, now)),
                supervision: p.supervision.as_ref().and_then(convert::supervision),
            });
        }
        let ended = if progress.is_empty() {
            None
        } else {
            Some(self.writer.apply(progress.clone()).await?)
        };

        let acks = work
            .iter()
            .map(|p| pb::Ack {
                task_id: p.task_id.clone(),
                seq: p.ack,
            })
            .collect();
        for p in work.iter().filter(|p| p.late > 0) {
            self.warn_late(agent_id, &p.task_id, p.late);
        }
        for (p, committed) in work.iter_mut().filter(|p| p.changes()).zip(progress) {
            let Some(before) = p.before.as_ref() else {
                continue;
            };
            if p.started.is_some()
                && let Some(t) = self.active.take_sent_at(&p.task_id)
            {
                self.metrics
                    .dispatch_latency
                    .observe(t.elapsed().as_secs_f64());
            }
            // Watchers get the output now, before the ack: a slow watcher slows the agent's
            // stream (its spool absorbs the rest) instead of losing output.
            if !p.records.is_empty() && self.live.is_tapped(&p.task_id) {
                let chunk = LiveChunk {
                    task_id: Arc::from(p.task_id.as_str()),
                    offset: before.pos.total,
                    parts: std::mem::take(&mut p.records).into(),
                };
                self.live.publish(&p.task_id, chunk).await;
            }
            self.metrics
                .output_bytes
                .inc_by(committed.out.total - before.pos.total);
            self.metrics.events.inc_by(p.seq - before.seq);
            self.active.advance(
                &p.task_id,
                committed.seq,
                committed.out,
                committed.exited.is_some(),
            );
            self.events.task_changed(&before.run_id, &p.task_id);
            // An exit the store did not apply (the task had ended otherwise: cancelled while
            // its agent was away) is no end: whoever ended it told the driver.
            if committed.exited.is_some()
                && let Some(state) = ended.as_ref().and_then(|e| e.get(&p.task_id))
            {
                self.drivers.task_ended(&before.run_id, &p.task_id, *state);
            }
        }
        Ok(acks)
    }

    /// Logs, once per task, that its agent sent events after its end (they were dropped).
    fn warn_late(&self, agent_id: &str, task_id: &str, n: u64) {
        let mut warned = self.warned_late.lock().unwrap_or_else(|e| e.into_inner());
        if warned.contains(task_id) {
            return;
        }
        // Bounded: at worst a task is warned about again.
        if warned.len() >= WARNED_LATE_MAX {
            warned.clear();
        }
        warned.insert(task_id.to_string());
        drop(warned);
        if self.mistakes.admit(agent_id) {
            tracing::warn!(
                task = %Escaped(task_id),
                agent = %agent_id,
                events = n,
                "agent sent events after the task's end; acknowledged and dropped"
            );
        }
    }

    /// What is persisted of a task: from memory while it is active, else from the store
    /// (after a restart), cutting its output log back to the committed position first.
    async fn known_task(&self, task_id: &str) -> Result<Option<ActiveTask>, IngestError> {
        if let Some(a) = self.active.get(task_id) {
            return Ok(Some(a));
        }
        let Some(row) = self.store.task(task_id).await? else {
            return Ok(None);
        };
        let a = ActiveTask {
            run_id: row.run_id.clone(),
            agent_id: row.agent_id.clone(),
            seq: row.out_seq,
            pos: row.output,
            // Ended, and no result of its agent can change it any more (a `lost` task may
            // still take its real result).
            closed: row.state.is_terminal()
                && !herd_core::Transition::EXIT_FROM.contains(&row.state),
        };
        // The output files may hold writes that were never committed (the server died between
        // writing and committing); cut them back before appending.
        let (outlog, id, pos) = (self.outlog.clone(), task_id.to_string(), a.pos);
        match tokio::task::spawn_blocking(move || outlog.recover(&id, pos)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(task = %Escaped(task_id), error = %e, "output recovery failed")
            }
            Err(e) => {
                tracing::warn!(task = %Escaped(task_id), error = %e, "output recovery failed")
            }
        }
        // An open task, or a lost one that may still get its real result.
        if herd_core::Transition::EXIT_FROM.contains(&row.state) {
            self.active.load(task_id, a.clone());
        }
        Ok(Some(a))
    }
}

#[cfg(test)]
mod tests;
