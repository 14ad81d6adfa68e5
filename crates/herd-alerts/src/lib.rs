//! Fleet health alerts, pure: what a rule on an agent's metrics says about each new value.
//!
//! A [`Rule`] watches one [`Metric`] with a `warning` and/or a `critical` threshold (a value
//! at or above it raises that level), a clear `margin` (hysteresis: a level raised at `T`
//! holds until the value falls below `T - margin`, so a value between the clear level and the
//! raise level never flaps) and a `for` duration (a higher level is raised only once the
//! value has stayed over its threshold that long). [`evaluate`] moves the [`State`] of one
//! (rule, agent) pair along `ok → warning ⇄ critical → ok` for a value at a time and says
//! what changed; [`escalate`] holds an open alert at `critical` (its runbook failed) until it
//! clears.
//!
//! Invariant: pure — no I/O, no clock (times are passed in as unix milliseconds), no store;
//! every level change is reported once, as one [`Change`]; no input panics.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use herd_core::Metrics;

/// What a rule watches. Percentages for CPU, memory and disk; the load averages as the
/// kernel reports them; `offline` is how long the agent has been away, in seconds (0 while
/// connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Cpu,
    Memory,
    Disk,
    Load1,
    Load5,
    Load15,
    Offline,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::Disk,
        Metric::Load1,
        Metric::Load5,
        Metric::Load15,
        Metric::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Disk => "disk",
            Metric::Load1 => "load1",
            Metric::Load5 => "load5",
            Metric::Load15 => "load15",
            Metric::Offline => "offline",
        }
    }

    /// A metric by name; an unknown one is refused with the known names.
    pub fn parse(s: &str) -> Result<Metric, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown metric {s:?} — use one of {}",
                    Metric::ALL.map(Metric::as_str).join(", ")
                )
            })
    }

    /// Whether its values are percentages (0 to 100).
    pub fn is_percent(self) -> bool {
        matches!(self, Metric::Cpu | Metric::Memory | Metric::Disk)
    }

    /// The unit its values are written with: `%`, `s` or nothing.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::Memory | Metric::Disk => "%",
            Metric::Offline => "s",
            _ => "",
        }
    }

    /// Its value in what a heartbeat reported; `None` for `offline` (not a reported value)
    /// and for a size the agent could not read (a total of 0).
    pub fn value(self, m: &Metrics) -> Option<f64> {
        let percent = |used: u64, total: u64| {
            (total > 0).then(|| (used.min(total) as f64) * 100.0 / total as f64)
        };
        let v = match self {
            Metric::Cpu => Some(m.cpu_percent),
            Metric::Memory => percent(m.memory_used_bytes, m.memory_total_bytes),
            Metric::Disk => percent(m.disk_used_bytes, m.disk_total_bytes),
            Metric::Load1 => Some(m.load1),
            Metric::Load5 => Some(m.load5),
            Metric::Load15 => Some(m.load15),
            Metric::Offline => None,
        };
        v.filter(|v| v.is_finite())
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a value is. Ordered: `Ok < Warning < Critical`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    #[default]
    Ok,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Ok, Level::Warning, Level::Critical]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest `for` a rule takes (a day).
pub const MAX_FOR_MS: i64 = 24 * 3600 * 1000;
/// The largest threshold of a metric that is not a percentage.
pub const MAX_THRESHOLD: f64 = 1e9;

/// A rule's thresholds, checked ([`Rule::new`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub metric: Metric,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// How far below a level's threshold the value must fall for that level to end.
    pub margin: f64,
    /// How long a value must stay over a higher threshold before that level is raised.
    pub for_ms: i64,
}

impl Rule {
    /// Checks thresholds and margin (one line naming what is wrong); without a margin, the
    /// default: 5 points for percentages (at most half the lowest threshold), a tenth of
    /// the lowest threshold for load averages, 0 for `offline` (back online clears it).
    pub fn new(
        metric: Metric,
        warning: Option<f64>,
        critical: Option<f64>,
        margin: Option<f64>,
        for_ms: i64,
    ) -> Result<Rule, String> {
        let max = if metric.is_percent() {
            100.0
        } else {
            MAX_THRESHOLD
        };
        for (name, t) in [("warning", warning), ("critical", critical)] {
            if let Some(t) = t
                && !(t.is_finite() && t > 0.0 && t <= max)
            {
                return Err(format!(
                    "{name} threshold {t} of {metric} is out of range — give a number above 0 and at most {max}{}",
                    metric.unit()
                ));
            }
        }
        let lowest = match (warning, critical) {
            (None, None) => {
                return Err(format!(
                    "a rule on {metric} needs a threshold — give --warning, --critical or both"
                ));
            }
            (Some(w), Some(c)) if w >= c => {
                return Err(format!(
                    "the warning threshold ({w}) must be below the critical one ({c})"
                ));
            }
            (Some(w), _) => w,
            (None, Some(c)) => c,
        };
        let margin = match margin {
            Some(m) => {
                if !(m.is_finite() && m >= 0.0 && m < lowest) {
                    return Err(format!(
                        "clear margin {m} is out of range — give a number from 0 to below the lowest threshold ({lowest})"
                    ));
                }
                m
            }
            None if metric.is_percent() => (lowest / 2.0).min(5.0),
            None if metric == Metric::Offline => 0.0,
            None => lowest / 10.0,
        };
        if !(0..=MAX_FOR_MS).contains(&for_ms) {
            return Err(format!(
                "--for {} is out of range — give at most a day",
                herd_core::format_duration(std::time::Duration::from_millis(for_ms.unsigned_abs()))
            ));
        }
        Ok(Rule {
            metric,
            warning,
            critical,
            margin,
            for_ms,
        })
    }

    /// The threshold that raises `level` (none for `Ok`).
    pub fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::Ok => None,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }

    /// The level a value raises: the highest whose threshold it reaches.
    pub fn raise_level(&self, v: f64) -> Level {
        if self.critical.is_some_and(|c| v >= c) {
            Level::Critical
        } else if self.warning.is_some_and(|w| v >= w) {
            Level::Warning
        } else {
            Level::Ok
        }
    }

    /// The highest level a value keeps once raised: the highest whose threshold less the
    /// margin it reaches.
    pub fn hold_level(&self, v: f64) -> Level {
        if self.critical.is_some_and(|c| v >= c - self.margin) {
            Level::Critical
        } else if self.warning.is_some_and(|w| v >= w - self.margin) {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

/// Where one (rule, agent) pair stands.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct State {
    pub level: Level,
    /// Since when values have been over a higher threshold than `level` (waiting out `for`).
    pub pending_since: Option<i64>,
    /// Held at `critical` until it clears (its runbook failed).
    pub escalated: bool,
}

impl State {
    /// The state of an alert that is open at `level`.
    pub fn open(level: Level, escalated: bool) -> State {
        State {
            level,
            pending_since: None,
            escalated,
        }
    }
}

/// What a value (or an escalation) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// From `ok` to a level: an alert opens.
    Raised { to: Level },
    /// From one level to another while the alert stays open.
    Changed { from: Level, to: Level },
    /// Held at `critical` from `from` (its runbook failed).
    Escalated { from: Level },
    /// Back to `ok`: the alert closes.
    Cleared { from: Level },
}

impl Change {
    /// `raised`, `changed`, `escalated` or `cleared`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Raised { .. } => "raised",
            Change::Changed { .. } => "changed",
            Change::Escalated { .. } => "escalated",
            Change::Cleared { .. } => "cleared",
        }
    }

    /// The level after the change.
    pub fn level(self) -> Level {
        match self {
            Change::Raised { to } | Change::Changed { to, .. } => to,
            Change::Escalated { .. } => Level::Critical,
            Change::Cleared { .. } => Level::Ok,
        }
    }
}

/// Takes value `v` seen at `now` (unix ms) into `state`; answers the change it makes, if any.
///
/// A value over a threshold above the current level raises that level once it has stayed
/// over one for the rule's `for` (from the first such value). Otherwise the level falls to
/// the highest one the value holds ([`Rule::hold_level`]) — never rises — and an escalated
/// alert stays `critical` until the value holds no level at all.
pub fn evaluate(rule: &Rule, state: &mut State, v: f64, now: i64) -> Option<Change> {
    if !v.is_finite() {
        return None;
    }
    let raise = rule.raise_level(v);
    if raise > state.level {
        let since = *state.pending_since.get_or_insert(now);
        if now.saturating_sub(since) < rule.for_ms {
            return None;
        }
        let from = state.level;
        state.level = raise;
        state.pending_since = None;
        return Some(if from == Level::Ok {
            Change::Raised { to: raise }
        } else {
            Change::Changed { from, to: raise }
        });
    }
    state.pending_since = None;
    if state.level == Level::Ok {
        return None;
    }
    let hold = rule.hold_level(v);
    let to = if state.escalated && hold != Level::Ok {
        state.level
    } else {
        hold.min(state.level)
    };
    if to == state.level {
        return None;
    }
    let from = state.level;
    state.level = to;
    if to == Level::Ok {
        state.escalated = false;
        Some(Change::Cleared { from })
    } else {
        Some(Change::Changed { from, to })
    }
}

/// Holds an open alert at `critical` until it clears (its runbook failed); nothing for an
/// alert that is not open, or that is already escalated.
pub fn escalate(state: &mut State) -> Option<Change> {
    if state.level == Level::Ok || state.escalated {
        return None;
    }
    let from = state.level;
    state.level = Level::Critical;
    state.escalated = true;
    Some(Change::Escalated { from })
}

#[cfg(test)]
mod tests;
