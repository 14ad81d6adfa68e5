//! Tasks waiting for their machine: a run's task whose machine is offline but was seen
//! within the run's `wait_offline` window (it is expected back, e.g. after a server restart)
//! waits, queued, instead of ending `lost` at once. The run's driver parks such tasks by
//! machine; `Waiters` is which runs wait for which machine, so a machine coming online tells
//! exactly those runs' drivers (one map lookup per connect, no scan over runs or tasks).

use crate::lock;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// Runs waiting for a machine, by agent id.
#[derive(Default)]
pub struct Waiters {
    by_agent: Mutex<HashMap<String, HashSet<String>>>,
}

impl Waiters {
    /// Run `run_id` waits for `agent_id`.
    pub fn add(&self, agent_id: &str, run_id: &str) {
        lock(&self.by_agent)
            .entry(agent_id.to_string())
            .or_default()
            .insert(run_id.to_string());
    }

    /// Run `run_id` no longer waits for `agent_id`.
    pub fn remove(&self, agent_id: &str, run_id: &str) {
        let mut map = lock(&self.by_agent);
        if let Some(runs) = map.get_mut(agent_id) {
            runs.remove(run_id);
            if runs.is_empty() {
                map.remove(agent_id);
            }
        }
    }

    /// `agent_id` came online: the runs that waited for it (no longer registered).
    pub fn take(&self, agent_id: &str) -> HashSet<String> {
        lock(&self.by_agent).remove(agent_id).unwrap_or_default()
    }
}

/// Whether a machine last heard from at `last_seen` (ms) is worth waiting for at `now` (ms):
/// it was seen within `window`.
pub fn worth_waiting(last_seen: Option<i64>, now: i64, window: Duration) -> bool {
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    window > 0 && last_seen.is_some_and(|seen| now.saturating_sub(seen) <= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_seen_within_the_window_are_waited_for() {
        let w = Duration::from_secs(30);
        let table = [
            (Some(100_000), 100_000, w, true),
            (Some(70_000), 100_000, w, true),
            (Some(69_999), 100_000, w, false),
            (None, 100_000, w, false),
            (Some(100_000), 100_000, Duration::ZERO, false),
        ];
        for (seen, now, window, want) in table {
            assert_eq!(
                worth_waiting(seen, now, window),
                want,
                "{seen:?} {now} {window:?}"
            );
        }
    }

    #[test]
    fn a_connect_takes_the_runs_waiting_for_it() {
        let w = Waiters::default();
        w.add("a1", "r1");
        w.add("a1", "r2");
        w.add("a2", "r1");
        w.remove("a2", "r1");
        assert!(w.take("a2").is_empty());
        let mut runs: Vec<String> = w.take("a1").into_iter().collect();
        runs.sort();
        assert_eq!(runs, ["r1", "r2"]);
        assert!(w.take("a1").is_empty());
    }
}
