//! The outbox: the spool plus what this session has sent. Every task event is appended to the
//! spool before it is sent; `next_batch` reads what the server has not yet been sent, and a
//! new session starts over from the last acknowledgement. Plain blocking code, owned and
//! driven by the spool thread (`spool_thread`).
//!
//! Recently appended events are also kept in memory (their output is shared `Bytes`, so this
//! costs a refcount, not a copy), bounded by [`MEMORY_BYTES`]. `next_batch` serves from memory
//! when the next event to send is there and reads the spool otherwise, so the common case
//! never decodes what it has just encoded. Memory is only a cache: an event is remembered
//! after it was appended to the spool, and is forgotten once acknowledged.

use std::collections::{HashMap, VecDeque};

use herd_proto::v1::TaskEvent;
use herd_spool::{Spool, SpoolError, SpoolTask};
use prost::Message;

/// Encoded size of the events kept in memory, across tasks.
pub(crate) const MEMORY_BYTES: usize = 32 << 20;

pub struct Outbox {
    spool: Spool,
    /// Highest seq sent per task in the current session.
    sent: HashMap<String, u64>,
    /// Per task, a contiguous run of appended, unacknowledged events and their encoded sizes.
    recent: HashMap<String, VecDeque<(TaskEvent, usize)>>,
    /// Sum of the encoded sizes in `recent`.
    recent_bytes: usize,
    memory_limit: usize,
}

impl Outbox {
    pub fn new(spool: Spool) -> Outbox {
        Outbox::with_memory_limit(spool, MEMORY_BYTES)
    }

    pub(crate) fn with_memory_limit(spool: Spool, memory_limit: usize) -> Outbox {
        Outbox {
            spool,
            sent: HashMap::new(),
            recent: HashMap::new(),
            recent_bytes: 0,
            memory_limit,
        }
    }

    /// Appends `ev` to the spool, then remembers it if there is room (and it continues the
    /// task's run in memory; after a gap, that task is served from disk until its run drains).
    pub fn append(&mut self, ev: TaskEvent) -> Result<(), SpoolError> {
        self.spool.append(&ev)?;
        let len = ev.encoded_len();
        if self.recent_bytes + len > self.memory_limit {
            return Ok(());
        }
        match self.recent.get_mut(&ev.task_id) {
            Some(run) => {
                if run.back().is_some_and(|(b, _)| b.seq + 1 == ev.seq) {
                    run.push_back((ev, len));
                    self.recent_bytes += len;
                }
            }
            None => {
                let mut run = VecDeque::new();
                let id = ev.task_id.clone();
                run.push_back((ev, len));
                self.recent.insert(id, run);
                self.recent_bytes += len;
            }
        }
        Ok(())
    }

    pub fn ack(&mut self, task_id: &str, seq: u64) -> Result<(), SpoolError> {
        self.spool.ack(task_id, seq)?;
        if let Some(run) = self.recent.get_mut(task_id) {
            while let Some((front, len)) = run.front() {
                if front.seq > seq {
                    break;
                }
                self.recent_bytes -= len;
                run.pop_front();
            }
            if run.is_empty() {
                self.recent.remove(task_id);
            }
        }
        Ok(())
    }

    pub fn tasks(&self) -> Vec<SpoolTask> {
        self.spool.tasks()
    }

    pub fn knows(&self, task_id: &str) -> bool {
        self.spool.is_done(task_id) || self.spool.last_seq(task_id) > 0
    }

    pub fn last_seq(&self, task_id: &str) -> u64 {
        self.spool.last_seq(task_id)
    }

    /// Encoded bytes that can still be appended and kept in memory; at 0, events appended
    /// now would be on disk only (and would have to be read back to be sent).
    pub fn memory_room(&self) -> usize {
        self.memory_limit.saturating_sub(self.recent_bytes)
    }

    /// True when no event waits in memory for its acknowledgement.
    pub fn holds_nothing_in_memory(&self) -> bool {
        self.recent.is_empty()
    }

    /// A new session: everything not acknowledged is sent again.
    pub fn rewind(&mut self) {
        self.sent.clear();
    }

    /// Up to about `max_bytes` of events not yet sent in this session, oldest task first
    /// (task ids order the spool's tasks).
    pub fn next_batch(&mut self, max_bytes: usize) -> Result<Vec<TaskEvent>, SpoolError> {
        let mut out = Vec::new();
        let mut size = 0usize;
        for t in self.spool.tasks() {
            let sent = self
                .sent
                .get(&t.task_id)
                .copied()
                .unwrap_or(0)
                .max(t.acked_seq);
            let mut next = sent + 1;
            while next <= t.last_seq && size < max_bytes {
                let run = self.recent.get(&t.task_id);
                let span = run
                    .and_then(|r| Some((r.front()?.0.seq, r.back()?.0.seq)))
                    .filter(|&(_, last)| last >= next);
                match (run, span) {
                    (Some(run), Some((first, _))) if first <= next => {
                        // In memory: take events from `next` on, within the budget.
                        let skip = (next - first) as usize;
                        for (ev, len) in run.iter().skip(skip) {
                            if size >= max_bytes {
                                break;
                            }
                            out.push(ev.clone());
                            size += len;
                            next = ev.seq + 1;
                        }
                    }
                    _ => {
                        // On disk only. When memory resumes further on, read one event at a
                        // time so the spool does not decode what memory holds.
                        let budget = if span.is_some() {
                            1
                        } else {
                            max_bytes.saturating_sub(size).max(1)
                        };
                        let before = out.len();
                        self.spool.read(&t.task_id, next, budget, &mut out)?;
                        for ev in &out[before..] {
                            size += ev.encoded_len();
                        }
                        match out[before..].last() {
                            Some(last) => next = last.seq + 1,
                            None => break,
                        }
                    }
                }
            }
            if next > sent + 1 {
                match self.sent.get_mut(&t.task_id) {
                    Some(s) => *s = next - 1,
                    None => {
                        self.sent.insert(t.task_id.clone(), next - 1);
                    }
                }
            }
            if size >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::v1::{self as pb, task_event};

    fn output(task: &str, seq: u64, n: usize) -> TaskEvent {
        TaskEvent {
            task_id: task.into(),
            seq,
            kind: Some(task_event::Kind::Output(pb::Output {
                stream: pb::Stream::Stdout as i32,
                data: vec![seq as u8; n].into(),
            })),
        }
    }

    fn seqs(evs: &[TaskEvent]) -> Vec<(String, u64)> {
        evs.iter().map(|e| (e.task_id.clone(), e.seq)).collect()
    }

    /// Whatever the memory limit, batches are the same: in order, each event once per
    /// session, everything unacknowledged again after a rewind.
    #[test]
    fn memory_and_disk_serve_the_same_events() {
        for limit in [0, 1, 3000, 10_000, 1 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let mut ob = Outbox::with_memory_limit(Spool::open(dir.path()).unwrap(), limit);
            for seq in 1..=20 {
                ob.append(output("a", seq, 1000)).unwrap();
                if seq <= 5 {
                    ob.append(output("b", seq, 500)).unwrap();
                }
            }
            let mut got = Vec::new();
            loop {
                let b = ob.next_batch(4000).unwrap();
                if b.is_empty() {
                    break;
                }
                let before_last: usize = b[..b.len() - 1].iter().map(|e| e.encoded_len()).sum();
                assert!(before_last < 4000, "limit {limit}: batch of {}", b.len());
                got.extend(b);
            }
            let mut want: Vec<(String, u64)> = (1..=20).map(|s| ("a".to_string(), s)).collect();
            want.extend((1..=5).map(|s| ("b".to_string(), s)));
            assert_eq!(seqs(&got), want, "limit {limit}");
            for ev in &got {
                assert_eq!(
                    *ev,
                    output(&ev.task_id, ev.seq, ev_len(ev)),
                    "limit {limit}"
                );
            }

            // More appended after a partial ack, then a new session.
            ob.ack("a", 12).unwrap();
            ob.ack("b", 5).unwrap();
            for seq in 21..=25 {
                ob.append(output("a", seq, 1000)).unwrap();
            }
            ob.rewind();
            let mut again = Vec::new();
            loop {
                let b = ob.next_batch(2500).unwrap();
                if b.is_empty() {
                    break;
                }
                again.extend(b);
            }
            let want: Vec<(String, u64)> = (13..=25).map(|s| ("a".to_string(), s)).collect();
            assert_eq!(seqs(&again), want, "limit {limit}");
            ob.ack("a", 25).unwrap();
            assert!(ob.holds_nothing_in_memory(), "limit {limit}");
            assert!(ob.recent_bytes == 0, "limit {limit}");
        }
    }

    fn ev_len(ev: &TaskEvent) -> usize {
        match &ev.kind {
            Some(task_event::Kind::Output(o)) => o.data.len(),
            _ => 0,
        }
    }

    #[test]
    fn memory_is_bounded_and_released_by_acks() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::with_memory_limit(Spool::open(dir.path()).unwrap(), 10_000);
        for seq in 1..=50 {
            ob.append(output("t", seq, 1000)).unwrap();
            assert!(ob.recent_bytes <= 10_000);
        }
        let first = ob.next_batch(1 << 20).unwrap();
        assert_eq!(first.len(), 50);
        ob.ack("t", 50).unwrap();
        assert!(ob.holds_nothing_in_memory());
        // Appends after the run drained are remembered again.
        ob.append(output("t", 51, 1000)).unwrap();
        assert!(!ob.holds_nothing_in_memory());
        assert_eq!(seqs(&ob.next_batch(1 << 20).unwrap()), [("t".into(), 51)]);
    }
}
