//! [`Spec`]: when a schedule fires, as a person wrote it and as it is stored (JSON), and its
//! fire times.

use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::{cron, when};

/// [`Spec::upcoming`] lists at most this many fire times.
pub const MAX_UPCOMING: usize = 1_000;

/// When a schedule fires. Build one with [`Spec::cron`], [`Spec::every`] or [`Spec::at`] (or
/// [`Spec::from_json`]), which check it; the fields are public to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Stored", try_from = "Stored")]
pub enum Spec {
    /// A cron expression (5 or 6 fields, or an alias), evaluated in `tz`.
    Cron { expr: String, tz: Tz },
    /// Every `period_ms`, at `anchor_ms + k·period_ms` for k ≥ 1.
    Every { period_ms: i64, anchor_ms: i64 },
    /// Once, at `at_ms`.
    At { at_ms: i64 },
}

/// The stored form: `{"kind":"cron","expr":"0 30 2 * * *","tz":"Europe/Paris"}`,
/// `{"kind":"every","period_ms":2000,"anchor_ms":…}`, `{"kind":"at","at_ms":…}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    Cron { expr: String, tz: String },
    Every { period_ms: i64, anchor_ms: i64 },
    At { at_ms: i64 },
}

impl From<Spec> for Stored {
    fn from(spec: Spec) -> Stored {
        match spec {
            Spec::Cron { expr, tz } => Stored::Cron {
                expr,
                tz: tz.name().to_string(),
            },
            Spec::Every {
                period_ms,
                anchor_ms,
            } => Stored::Every {
                period_ms,
                anchor_ms,
            },
            Spec::At { at_ms } => Stored::At { at_ms },
        }
    }
}

impl TryFrom<Stored> for Spec {
    type Error = String;

    fn try_from(stored: Stored) -> Result<Spec, String> {
        match stored {
            Stored::Cron { expr, tz } => Spec::cron(&expr, &tz),
            Stored::Every {
                period_ms,
                anchor_ms,
            } => {
                when::check_period(period_ms)
                    .map_err(|why| format!("every {}: {why}", when::format_period(period_ms)))?;
                Ok(Spec::Every {
                    period_ms,
                    anchor_ms,
                })
            }
            Stored::At { at_ms } => Ok(Spec::At { at_ms }),
        }
    }
}

impl Spec {
    /// Parses what a person wrote. `expr`: 5 fields (minute first; seconds = 0), 6 fields
    /// (seconds first) or an alias (@yearly @annually @monthly @weekly @daily @midnight
    /// @hourly); `tz`: an IANA name ("UTC" when empty). An expression that never matches
    /// (February 30th) is refused.
    pub fn cron(expr: &str, tz: &str) -> Result<Spec, String> {
        let expr = cron::normalize(expr);
        let parsed = cron::parse(&expr)?;
        let tz = cron::parse_tz(tz)?;
        if !cron::ever_matches(&parsed, tz) {
            return Err(format!(
                "cron {expr:?} never matches a date — check the day and month fields \
                 (there is no February 30th)"
            ));
        }
        Ok(Spec::Cron { expr, tz })
    }

    /// A period like `2s`, `90s`, `5m`, `1h30m`, `1d` (1 s to 366 d), anchored at `now_ms`
    /// (the schedule's creation): it fires at `now_ms + k·period` for k ≥ 1.
    pub fn every(dur: &str, now_ms: i64) -> Result<Spec, String> {
        Ok(Spec::Every {
            period_ms: when::parse_period(dur)?,
            anchor_ms: now_ms,
        })
    }

    /// A one-off time: RFC 3339 (`2027-03-28T02:30:00+01:00`), `YYYY-MM-DD HH:MM[:SS]` read in
    /// `tz` (a time that happens twice is the first; one the clock jumps over is the first
    /// instant after the jump), or `+DURATION` from `now_ms`. A time in the past is accepted
    /// (it never fires).
    pub fn at(when: &str, tz: &str, now_ms: i64) -> Result<Spec, String> {
        let tz = cron::parse_tz(tz)?;
        Ok(Spec::At {
            at_ms: when::parse_at(when, tz, now_ms)?,
        })
    }

    /// The first fire time strictly after `after_ms`, None when there is none (an `at` in the
    /// past, a cron that never matches again).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        Occurrences::new(self).next_after(after_ms)
    }

    /// The next `n` fire times after `after_ms` (at most [`MAX_UPCOMING`]), fewer when the
    /// schedule ends.
    pub fn upcoming(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let occ = Occurrences::new(self);
        let mut out = Vec::new();
        let mut t = after_ms;
        while out.len() < n.min(MAX_UPCOMING) {
            let Some(next) = occ.next_after(t) else { break };
            out.push(next);
            t = next;
        }
        out
    }

    /// One line: `cron 0 30 2 * * * (Europe/Paris)`, `every 2s`, `at 2027-03-28T01:30:00Z`.
    pub fn describe(&self) -> String {
        match self {
            Spec::Cron { expr, tz } => format!("cron {expr} ({})", tz.name()),
            Spec::Every { period_ms, .. } => format!("every {}", when::format_period(*period_ms)),
            Spec::At { at_ms } => format!("at {}", when::format_instant(*at_ms)),
        }
    }

    /// The stored form, JSON text (see [`Spec::from_json`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form back, checking it as the constructors do.
    pub fn from_json(text: &str) -> Result<Spec, String> {
        let stored: Stored = serde_json::from_str(text)
            .map_err(|e| format!("stored schedule is not readable: {e} — recreate the schedule"))?;
        Spec::try_from(stored).map_err(|e| format!("stored schedule: {e}"))
    }
}

/// A spec ready to compute fire times (a cron expression parsed once).
pub(crate) enum Occurrences {
    Cron(Box<Cron>, Tz),
    Every {
        period_ms: i64,
        anchor_ms: i64,
    },
    At(i64),
    /// A stored expression that no longer parses (never for a checked spec): no fire times.
    Never,
}

impl Occurrences {
    pub(crate) fn new(spec: &Spec) -> Occurrences {
        match spec {
            Spec::Cron { expr, tz } => match cron::parse(expr) {
                Ok(c) => Occurrences::Cron(Box::new(c), *tz),
                Err(_) => Occurrences::Never,
            },
            Spec::Every {
                period_ms,
                anchor_ms,
            } if *period_ms > 0 => Occurrences::Every {
                period_ms: *period_ms,
                anchor_ms: *anchor_ms,
            },
            Spec::Every { .. } => Occurrences::Never,
            Spec::At { at_ms } => Occurrences::At(*at_ms),
        }
    }

    /// The first fire time strictly after `after_ms`.
    pub(crate) fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Occurrences::Cron(c, tz) => cron::next_after(c, *tz, after_ms),
            Occurrences::Every {
                period_ms,
                anchor_ms,
            } => {
                let (p, a, after) = (
                    i128::from(*period_ms),
                    i128::from(*anchor_ms),
                    i128::from(after_ms),
                );
                let k = if after < a { 1 } else { (after - a) / p + 1 };
                i64::try_from(a + k * p).ok()
            }
            Occurrences::At(at) => (*at > after_ms).then_some(*at),
            Occurrences::Never => None,
        }
    }

    /// The last fire time strictly before `before_ms`.
    pub(crate) fn prev_before(&self, before_ms: i64) -> Option<i64> {
        match self {
            Occurrences::Cron(c, tz) => cron::prev_before(c, *tz, before_ms),
            Occurrences::Every {
                period_ms,
                anchor_ms,
            } => {
                let (p, a, before) = (
                    i128::from(*period_ms),
                    i128::from(*anchor_ms),
                    i128::from(before_ms),
                );
                let k = (before - a - 1).div_euclid(p);
                if k < 1 {
                    return None;
                }
                i64::try_from(a + k * p).ok()
            }
            Occurrences::At(at) => (*at < before_ms).then_some(*at),
            Occurrences::Never => None,
        }
    }

    /// How many fire times lie in `[from_ms, to_ms)`, and whether the count is exact: exact for
    /// `every` and `at`, and for cron when at most `budget` of them lie there; past that, a
    /// cron's count is extrapolated from the spacing of the first `budget`.
    pub(crate) fn count_between(&self, from_ms: i64, to_ms: i64, budget: usize) -> (u64, bool) {
        if from_ms >= to_ms {
            return (0, true);
        }
        match self {
            Occurrences::Every { .. } | Occurrences::At(_) | Occurrences::Never => {
                // Every: the k ≥ 1 with from ≤ anchor + k·p < to, from the last one before `to`.
                let (Some(first), Some(last)) = (
                    self.next_after(from_ms.saturating_sub(1)),
                    self.prev_before(to_ms),
                ) else {
                    return (0, true);
                };
                if first > last {
                    return (0, true);
                }
                let n = match self {
                    Occurrences::Every { period_ms, .. } => {
                        (i128::from(last) - i128::from(first)) / i128::from(*period_ms) + 1
                    }
                    _ => 1,
                };
                (u64::try_from(n).unwrap_or(u64::MAX), true)
            }
            Occurrences::Cron(..) => {
                let mut count: u64 = 0;
                let mut t = from_ms.saturating_sub(1);
                let first = self.next_after(t);
                while let Some(next) = self.next_after(t).filter(|n| *n < to_ms) {
                    if count as usize == budget {
                        // Extrapolate from the spacing seen so far.
                        let Some(first) = first else { break };
                        let span = (next - first).max(1) as f64;
                        let per_ms = count as f64 / span;
                        let rest = (to_ms - next) as f64 * per_ms;
                        return (count + rest.round().max(1.0) as u64, false);
                    }
                    count += 1;
                    t = next;
                }
                (count, true)
            }
        }
    }
}
