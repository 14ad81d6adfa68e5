//! What the firing loop does each time it wakes: which fire times to run now, which count as
//! missed, when to wake next ([`plan`]); and what to do when the previous run still goes
//! ([`overlap`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::{Occurrences, Spec};

/// The most fire times one [`plan`] runs; older ones are reported missed (and a run-all
/// schedule after a long outage catches up on the latest this many).
pub const MAX_CATCH_UP: usize = 100;

/// What to do with a fire time while the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Do not start; the fire counts as skipped.
    #[default]
    Skip,
    /// Start when the previous run ends; at most one waits (later fires join it).
    Queue,
    /// Start anyway, beside it.
    Allow,
}

/// What to do with fire times that passed while the server was down or busy (older than
/// `now - grace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Misfire {
    /// Run none of them.
    Skip,
    /// Run once, for the latest of them (unless a fire time within grace runs anyway).
    #[default]
    RunOnce,
    /// Run each of them, oldest first, at most [`MAX_CATCH_UP`] in one plan.
    RunAll,
}

impl Overlap {
    pub const ALL: [Overlap; 3] = [Overlap::Skip, Overlap::Queue, Overlap::Allow];

    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
        }
    }
}

impl Misfire {
    pub const ALL: [Misfire; 3] = [Misfire::Skip, Misfire::RunOnce, Misfire::RunAll];

    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run-once",
            Misfire::RunAll => "run-all",
        }
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Misfire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Overlap {
    type Err = String;

    fn from_str(s: &str) -> Result<Overlap, String> {
        Overlap::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown overlap policy {s:?} — use skip, queue or allow"))
    }
}

impl FromStr for Misfire {
    type Err = String;

    fn from_str(s: &str) -> Result<Misfire, String> {
        Misfire::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown misfire policy {s:?} — use skip, run-once or run-all"))
    }
}

/// Fire times that were not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    pub count: u64,
    /// False when `count` is an estimate: a cron schedule with more than [`MAX_CATCH_UP`]
    /// fire times beyond those looked at one by one (a long outage); the estimate follows the
    /// spacing of the first ones.
    pub exact: bool,
    /// The oldest and the latest missed fire time.
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl Default for Missed {
    fn default() -> Missed {
        Missed {
            count: 0,
            exact: true,
            first: None,
            last: None,
        }
    }
}

/// What one wake of the firing loop does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The fire times to run now, oldest first (at most [`MAX_CATCH_UP`]).
    pub fire: Vec<i64>,
    /// The fire times given up.
    pub missed: Missed,
    /// The next fire time to store (after `now`), None when the schedule is over.
    pub next: Option<i64>,
}

/// Decides the fire times from `due_ms` (the stored next fire time, the first not yet
/// handled) up to `now_ms`. A fire time at or after `now_ms - grace_ms` is on time and runs;
/// an older one is a misfire, handled by `misfire`. At most [`MAX_CATCH_UP`] + 1 fire times
/// are looked at one by one (the latest ones, walking back from now); older ones are counted
/// as missed, so a one-second schedule after a year's outage plans in bounded time.
pub fn plan(spec: &Spec, due_ms: i64, now_ms: i64, grace_ms: i64, misfire: Misfire) -> Plan {
    if due_ms > now_ms {
        return Plan {
            fire: Vec::new(),
            missed: Missed::default(),
            next: Some(due_ms),
        };
    }
    let occ = Occurrences::new(spec);
    let cutoff = now_ms.saturating_sub(grace_ms.max(0));

    // The latest fire times in [due, now], newest first.
    let mut recent = Vec::new();
    let mut older = None; // the newest fire time in [due, now] not in `recent`
    let mut cursor = now_ms.saturating_add(1);
    while let Some(t) = occ.prev_before(cursor).filter(|t| *t >= due_ms) {
        if recent.len() == MAX_CATCH_UP {
            older = Some(t);
            break;
        }
        recent.push(t);
        cursor = t;
    }
    recent.reverse();
    let split = recent.partition_point(|t| *t < cutoff);
    let (late, on_time) = recent.split_at(split);

    let (fire, not_run): (Vec<i64>, &[i64]) = match misfire {
        Misfire::Skip => (on_time.to_vec(), late),
        Misfire::RunOnce if on_time.is_empty() => match late.split_last() {
            Some((last, rest)) => (vec![*last], rest),
            None => (Vec::new(), late),
        },
        Misfire::RunOnce => (on_time.to_vec(), late),
        Misfire::RunAll => (recent.clone(), &[]),
    };

    let mut missed = Missed {
        count: not_run.len() as u64,
        exact: true,
        first: not_run.first().copied(),
        last: not_run.last().copied(),
    };
    if let (Some(newest_older), Some(oldest_recent)) = (older, recent.first()) {
        let (count, exact) = occ.count_between(due_ms, *oldest_recent, MAX_CATCH_UP);
        missed.count += count;
        missed.exact = exact;
        missed.first = occ.next_after(due_ms.saturating_sub(1));
        missed.last = missed.last.or(Some(newest_older));
    }

    Plan {
        fire,
        missed,
        next: occ.next_after(now_ms),
    }
}

/// What to do with a fire time under `policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapDecision {
    /// Start a run now.
    Start,
    /// Do not run this fire time.
    Skip,
    /// Start when the previous run ends (the caller keeps at most one waiting).
    Queue,
}

/// Whether a fire time starts now, given whether the schedule's previous run still goes.
pub fn overlap(policy: Overlap, previous_running: bool) -> OverlapDecision {
    match (previous_running, policy) {
        (false, _) | (true, Overlap::Allow) => OverlapDecision::Start,
        (true, Overlap::Skip) => OverlapDecision::Skip,
        (true, Overlap::Queue) => OverlapDecision::Queue,
    }
}
