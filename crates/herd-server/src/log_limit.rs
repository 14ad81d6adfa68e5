//! Log lines about an agent's mistakes (events for tasks it does not hold, events after a
//! task's end, a session that breaks the protocol), limited per agent: a broken or hostile
//! agent can repeat a mistake at network speed, and each would be a line in the server's
//! log. Past [`PER_WINDOW`] lines in a [`WINDOW`], an agent's lines are counted instead of
//! written, and its next line after the window says how many were left out. The listener
//! limits its lines about refused connections the same way, under one name.
//!
//! **Invariant:** at most [`PER_WINDOW`] + 1 lines per agent per window; the table holds at
//! most [`MAX_AGENTS`] agents (expired entries go first, then the whole table if it is
//! still full: memory stays bounded whatever the number of agents).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines about one agent's mistakes per window.
pub const PER_WINDOW: u32 = 10;
/// The window lines are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Agents remembered at once.
const MAX_AGENTS: usize = 10_000;

struct Entry {
    since: Instant,
    logged: u32,
    /// Lines left out since the last one written.
    suppressed: u64,
}

#[derive(Default)]
pub struct LogLimit {
    agents: Mutex<HashMap<String, Entry>>,
}

impl LogLimit {
    /// Whether a line about `agent`'s mistake (or of another kind of repeated event, named
    /// by `agent`) may be written now; when it may and lines were left out before it, a line
    /// saying how many is written first.
    pub fn admit(&self, agent: &str) -> bool {
        match self.admit_at(agent, Instant::now()) {
            Some(0) => true,
            Some(n) => {
                tracing::warn!(
                    about = %herd_core::Escaped(agent),
                    suppressed = n,
                    "{n} earlier lines like the next were left out"
                );
                true
            }
            None => false,
        }
    }

    /// `Some(lines left out before this one)` if a line about `agent` may be written at
    /// `now`, `None` if it is left out.
    fn admit_at(&self, agent: &str, now: Instant) -> Option<u64> {
        let mut map = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_AGENTS && !map.contains_key(agent) {
            map.retain(|_, e| now.duration_since(e.since) < WINDOW);
            if map.len() >= MAX_AGENTS {
                map.clear();
            }
        }
        let e = map.entry(agent.to_string()).or_insert(Entry {
            since: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(e.since) >= WINDOW {
            e.since = now;
            e.logged = 0;
        }
        if e.logged >= PER_WINDOW {
            e.suppressed += 1;
            return None;
        }
        e.logged += 1;
        Some(std::mem::take(&mut e.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_gets_its_lines_per_window_then_a_count() {
        let limit = LogLimit::default();
        let t0 = Instant::now();
        for i in 0..PER_WINDOW {
            assert_eq!(limit.admit_at("a", t0), Some(0), "line {i}");
        }
        for _ in 0..25 {
            assert_eq!(limit.admit_at("a", t0 + WINDOW / 2), None);
        }
        // Another agent is not held back by the first one's mistakes.
        assert_eq!(limit.admit_at("b", t0 + WINDOW / 2), Some(0));
        // The next window: the first line carries the count of those left out.
        let t1 = t0 + WINDOW;
        assert_eq!(limit.admit_at("a", t1), Some(25));
        assert_eq!(limit.admit_at("a", t1), Some(0));
    }

    #[test]
    fn the_table_stays_bounded() {
        let limit = LogLimit::default();
        let now = Instant::now();
        for i in 0..(MAX_AGENTS + 10) {
            assert_eq!(limit.admit_at(&format!("agent-{i}"), now), Some(0));
        }
        assert!(limit.agents.lock().unwrap().len() <= MAX_AGENTS);
    }
}
