//! Durations (`every 90s`, `at +10m`) and one-off times (`at 2027-03-28T02:30:00+01:00`,
//! `at "2027-03-28 02:30"` read in a zone) as unix milliseconds.

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone};
use chrono_tz::Tz;

pub(crate) const SECOND_MS: i64 = 1_000;
pub(crate) const MAX_PERIOD_MS: i64 = 366 * 86_400 * SECOND_MS;

const AT_HOW: &str = "write an RFC 3339 time (2027-03-28T02:30:00+01:00), \"YYYY-MM-DD HH:MM[:SS]\" \
                      (read in the schedule's time zone) or +DURATION (e.g. +10m)";

/// A period for `every`: 1 s to 366 d.
pub(crate) fn parse_period(text: &str) -> Result<i64, String> {
    let d = herd_core::duration::parse_duration(text).map_err(|e| {
        format!(
            "every {text:?}: {} — write e.g. 30s, 5m, 1h30m or 1d",
            e.reason
        )
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    check_period(ms).map_err(|why| format!("every {text:?}: {why}"))?;
    Ok(ms)
}

/// Why a period is refused, if it is.
pub(crate) fn check_period(ms: i64) -> Result<(), String> {
    if ms < SECOND_MS {
        return Err("the period is shorter than 1s — give at least 1s".to_string());
    }
    if ms > MAX_PERIOD_MS {
        return Err("the period is longer than 366d — use a cron expression or --at".to_string());
    }
    Ok(())
}

/// A period as written back: `2s`, `1h30m`, `1d2h`, `1500ms` → `1s500ms` (exact, every unit
/// that is not zero).
pub(crate) fn format_period(ms: i64) -> String {
    let units = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = ms.max(0);
    let mut out = String::new();
    for (name, size) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
        }
    }
    if out.is_empty() {
        "0s".to_string()
    } else {
        out
    }
}

/// An instant as shown: RFC 3339 in UTC, milliseconds only when there are some.
pub(crate) fn format_instant(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{ms} ms after 1970"),
    }
}

/// A one-off time: RFC 3339, a local date and time read in `tz`, or `+DURATION` from now.
pub(crate) fn parse_at(text: &str, tz: Tz, now_ms: i64) -> Result<i64, String> {
    let trimmed = text.trim();
    if let Some(rel) = trimmed.strip_prefix('+') {
        let d = herd_core::duration::parse_duration(rel)
            .map_err(|e| format!("at {text:?}: {} — {AT_HOW}", e.reason))?;
        let ms = i64::try_from(d.as_millis()).ok().filter(|ms| *ms > 0).ok_or_else(|| {
            format!("at {text:?}: the delay must be more than 0 and at most a few centuries — {AT_HOW}")
        })?;
        return now_ms
            .checked_add(ms)
            .ok_or_else(|| format!("at {text:?}: too far in the future — {AT_HOW}"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(t.timestamp_millis());
    }
    const LOCAL: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ];
    let Some(naive) = LOCAL
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(trimmed, f).ok())
    else {
        return Err(format!("at {text:?}: not a time — {AT_HOW}"));
    };
    resolve_local(naive, tz)
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("at {text:?}: no such time in {} — {AT_HOW}", tz.name()))
}

/// A wall clock time in `tz` as an instant, by the zone's rules: a time that happens twice is
/// its first occurrence; a time the clock jumps over is the first real instant after the
/// jump (as cron's fixed-time jobs do).
fn resolve_local(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Tz>> {
    let mut wall = naive;
    // The longest jumps on record skip a day (Pacific/Apia, 2011): two days of seconds bound
    // the walk.
    for _ in 0..=2 * 86_400 {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => return Some(t),
            LocalResult::Ambiguous(first, _) => return Some(first),
            LocalResult::None => wall = wall.checked_add_signed(TimeDelta::seconds(1))?,
        }
    }
    None
}
