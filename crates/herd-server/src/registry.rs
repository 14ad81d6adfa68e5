//! The registry of connected agents: one entry per agent with an open session (its frame
//! queue and a signal that ends the session), and since when each agent has been away.
//! Anything that sends a frame to an agent goes through here; nothing here touches the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lock;
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
    /// The agent process's instance id (empty: unknown) and where it connected from.
    instance: String,
    addr: String,
    heard: Heard,
}

/// When a session last heard from its agent, updated without a lock on every frame.
#[derive(Clone)]
pub struct Heard {
    epoch: Instant,
    ms: Arc<AtomicU64>,
}

impl Heard {
    fn new(epoch: Instant) -> Heard {
        let h = Heard {
            epoch,
            ms: Arc::default(),
        };
        h.now();
        h
    }

    /// The agent was heard from just now.
    pub fn now(&self) {
        self.ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn ago(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.ms.load(Ordering::Relaxed)))
    }
}

/// Why a session was not registered: another process holding the same identity has a
/// session that is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Where the live session connected from.
    pub addr: String,
}

pub struct Registry {
    conns: Mutex<HashMap<String, Conn>>,
    /// Agents away: since when, and whether the lost-task sweep has dealt with them.
    away: Mutex<HashMap<String, Away>>,
    next_conn: AtomicU64,
    epoch: Instant,
}

/// A session's place in the registry.
pub struct Registration {
    pub conn_id: u64,
    pub stop: Arc<Notify>,
    /// Mark it on every frame from the agent.
    pub heard: Heard,
}

/// Who a session is: the agent process's instance id (empty: not told) and its address.
pub struct Peer<'a> {
    pub instance: &'a str,
    pub addr: &'a str,
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
            epoch: Instant::now(),
        }
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        lock(&self.conns).contains_key(agent_id)
    }

    pub fn online_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Registers a session of `agent_id`; a newer session replaces an older one, which is
    /// told to stop, unless the older one belongs to another process holding the same
    /// identity (another instance id) and was heard from within `live`: then the newer one
    /// is refused. Both sides must name their instance for that; a session that names none
    /// always replaces.
    pub fn connect(
        &self,
        agent_id: &str,
        tx: mpsc::Sender<ServerFrame>,
        peer: Peer<'_>,
        live: Duration,
    ) -> Result<Registration, Conflict> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(Notify::new());
        let heard = Heard::new(self.epoch);
        let conn = Conn {
            id,
            tx,
            stop: stop.clone(),
            instance: peer.instance.to_string(),
            addr: peer.addr.to_string(),
            heard: heard.clone(),
        };
        let mut conns = lock(&self.conns);
        if let Some(old) = conns.get(agent_id)
            && !old.instance.is_empty()
            && !peer.instance.is_empty()
            && old.instance != peer.instance
            && old.heard.ago() < live
        {
            return Err(Conflict {
                addr: old.addr.clone(),
            });
        }
        let old = conns.insert(agent_id.to_string(), conn);
        drop(conns);
        if let Some(old) = old {
            old.stop.notify_one();
        }
        lock(&self.away).remove(agent_id);
        Ok(Registration {
            conn_id: id,
            stop,
            heard,
        })
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

    /// Every agent away (not connected), with since when, by id.
    pub fn away(&self) -> Vec<(String, Instant)> {
        let conns = lock(&self.conns);
        let away = lock(&self.away);
        let mut out: Vec<(String, Instant)> = away
            .iter()
            .filter(|(id, _)| !conns.contains_key(*id))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer<'a>(instance: &'a str, addr: &'a str) -> Peer<'a> {
        Peer { instance, addr }
    }

    #[test]
    fn a_live_session_of_another_instance_refuses_a_copy() {
        let r = Registry::new([]);
        let (tx, _rx) = mpsc::channel(1);
        let live = Duration::from_secs(60);
        let first = r
            .connect("a", tx.clone(), peer("one", "10.0.0.1:1"), live)
            .unwrap();
        // A copy (another instance) is refused, naming where the live one is.
        let e = r
            .connect("a", tx.clone(), peer("two", "10.0.0.2:1"), live)
            .err()
            .unwrap();
        assert_eq!(e.addr, "10.0.0.1:1");
        assert!(r.is_current("a", first.conn_id));
        // The same process reconnecting replaces its session.
        let again = r
            .connect("a", tx.clone(), peer("one", "10.0.0.1:2"), live)
            .unwrap();
        assert!(r.is_current("a", again.conn_id));
        // A session not heard from within `live` is replaced by another instance.
        let other = r
            .connect("a", tx.clone(), peer("two", "10.0.0.2:1"), Duration::ZERO)
            .unwrap();
        assert!(r.is_current("a", other.conn_id));
        // Without instance ids, the newer session replaces.
        r.connect("b", tx.clone(), peer("", "x"), live).unwrap();
        r.connect("b", tx, peer("three", "y"), live).unwrap();
    }
}
