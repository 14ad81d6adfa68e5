//! The registry of connected agents: one entry per agent with an open session (its frame
//! queue and a signal that ends the session), and since when each agent has been away.
//! Anything that sends a frame to an agent goes through here; nothing here touches the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herd_proto::v1::ServerFrame;
use tokio::sync::{Notify, mpsc};

/// How long a send waits for room in an agent's frame queue before that agent counts as
/// unreachable (it gets the frame again when it reconnects, where that applies).
const SEND_STALL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Away {
    since: Instant,
    /// No task of the agent can be open and sent any more (the sweep ended them; a task is
    /// only sent to a connected agent), until it connects again.
    swept: bool,
}

impl Away {
    fn now() -> Away {
        Away {
            since: Instant::now(),
            swept: false,
        }
    }
}

#[derive(Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<ServerFrame>,
    /// Tells the session to end (replaced by a newer one, or the agent was revoked).
    stop: Arc<Notify>,
}

pub struct Registry {
    conns: Mutex<HashMap<String, Conn>>,
    /// Agents away: since when, and whether the lost-task sweep has dealt with them.
    away: Mutex<HashMap<String, Away>>,
    next_conn: AtomicU64,
}

/// A session's place in the registry.
pub struct Registration {
    pub conn_id: u64,
    pub stop: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// A registry where every known agent counts as away since now (the server's start),
    /// until it connects.
    pub fn new(known: impl IntoIterator<Item = String>) -> Registry {
        let away = Away::now();
        Registry {
            conns: Mutex::default(),
            away: Mutex::new(known.into_iter().map(|id| (id, away)).collect()),
            next_conn: AtomicU64::new(0),
        }
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        lock(&self.conns).contains_key(agent_id)
    }

    pub fn online_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Registers a session of `agent_id`; a newer session replaces an older one, which is
    /// told to stop.
    pub fn connect(&self, agent_id: &str, tx: mpsc::Sender<ServerFrame>) -> Registration {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(Notify::new());
        let old = lock(&self.conns).insert(
            agent_id.to_string(),
            Conn {
                id,
                tx,
                stop: stop.clone(),
            },
        );
        if let Some(old) = old {
            old.stop.notify_one();
        }
        lock(&self.away).remove(agent_id);
        Registration { conn_id: id, stop }
    }

    /// Whether `conn_id` is still the agent's current session.
    pub fn is_current(&self, agent_id: &str, conn_id: u64) -> bool {
        lock(&self.conns)
            .get(agent_id)
            .is_some_and(|c| c.id == conn_id)
    }

    /// A session ended: the agent is away unless a newer session took over.
    pub fn disconnected(&self, agent_id: &str, conn_id: u64) {
        let mut conns = lock(&self.conns);
        if conns.get(agent_id).is_some_and(|c| c.id == conn_id) {
            conns.remove(agent_id);
        }
        let gone = !conns.contains_key(agent_id);
        drop(conns);
        if gone {
            lock(&self.away)
                .entry(agent_id.to_string())
                .or_insert_with(Away::now);
        }
    }

    /// Ends the session of a revoked agent.
    pub fn disconnect(&self, agent_id: &str) {
        if let Some(c) = lock(&self.conns).remove(agent_id) {
            c.stop.notify_one();
        }
        lock(&self.away)
            .entry(agent_id.to_string())
            .or_insert_with(Away::now);
    }

    /// Sends a frame to a connected agent; false if it is not connected or its queue stays
    /// full for [`SEND_STALL`].
    pub async fn send(&self, agent_id: &str, frame: ServerFrame) -> bool {
        let conn = lock(&self.conns).get(agent_id).cloned();
        match conn {
            Some(c) => matches!(
                tokio::time::timeout(SEND_STALL, c.tx.send(frame)).await,
                Ok(Ok(()))
            ),
            None => false,
        }
    }

    /// Agents away for at least `limit` that the sweep has not dealt with yet (one not seen
    /// since the server started counts from the start), by id, with the mark to pass to
    /// [`Registry::mark_swept`].
    pub fn away_unswept(&self, limit: Duration) -> Vec<(String, Instant)> {
        let conns = lock(&self.conns);
        let away = lock(&self.away);
        let mut out: Vec<(String, Instant)> = away
            .iter()
            .filter(|(id, a)| !a.swept && a.since.elapsed() >= limit && !conns.contains_key(*id))
            .map(|(id, a)| (id.clone(), a.since))
            .collect();
        out.sort();
        out
    }

    /// The sweep ended the open tasks of these agents. An agent that came and went again
    /// meanwhile (another mark) stays unswept.
    pub fn mark_swept(&self, agents: &[(String, Instant)]) {
        let mut away = lock(&self.away);
        for (id, since) in agents {
            if let Some(a) = away.get_mut(id)
                && a.since == *since
            {
                a.swept = true;
            }
        }
    }
}
