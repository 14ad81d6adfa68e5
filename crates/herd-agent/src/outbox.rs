//! The outbox: the spool plus what this session has sent. Every task event is appended to the
//! spool before it is sent; `next_batch` reads what the server has not yet been sent, and a
//! new session starts over from the last acknowledgement.

use std::collections::HashMap;

use herd_proto::v1::TaskEvent;
use herd_spool::{Spool, SpoolError, SpoolTask};
use prost::Message;

pub struct Outbox {
    spool: Spool,
    /// Highest seq sent per task in the current session.
    sent: HashMap<String, u64>,
}

impl Outbox {
    pub fn new(spool: Spool) -> Outbox {
        Outbox {
            spool,
            sent: HashMap::new(),
        }
    }

    pub fn append(&mut self, ev: &TaskEvent) -> Result<(), SpoolError> {
        self.spool.append(ev)
    }

    pub fn ack(&mut self, task_id: &str, seq: u64) -> Result<(), SpoolError> {
        self.spool.ack(task_id, seq)
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

    /// A new session: everything not acknowledged is sent again.
    pub fn rewind(&mut self) {
        self.sent.clear();
    }

    /// Up to about `max_bytes` of events not yet sent in this session, oldest task first.
    pub fn next_batch(&mut self, max_bytes: usize) -> Result<Vec<TaskEvent>, SpoolError> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut tasks = self.spool.tasks();
        tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        for t in tasks {
            let sent = self
                .sent
                .get(&t.task_id)
                .copied()
                .unwrap_or(0)
                .max(t.acked_seq);
            if sent >= t.last_seq {
                continue;
            }
            let before = out.len();
            self.spool.read(
                &t.task_id,
                sent + 1,
                max_bytes.saturating_sub(size).max(1),
                &mut out,
            )?;
            for ev in &out[before..] {
                size += ev.encoded_len();
            }
            if let Some(last) = out[before..].last() {
                self.sent.insert(t.task_id.clone(), last.seq);
            }
            if size >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}
