//! Plain text tables and times (local, with the zone) for the CLI.

use std::time::Duration;

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// "12s ago", "3m ago", or "-".
pub fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let now = chrono::Utc::now().timestamp_millis();
    let d = Duration::from_millis(now.saturating_sub(ms).max(0) as u64);
    let secs = d.as_secs();
    if secs < 1 {
        "just now".into()
    } else {
        format!(
            "{} ago",
            herd_core::format_duration(Duration::from_secs(secs))
        )
    }
}

/// A moment in local time with its zone: `2026-12-06 14:03:05 UTC`, `… +01:00`; or "-".
pub fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| local(t.with_timezone(&chrono::Local)))
        .unwrap_or_else(|| "-".into())
}

fn local<Tz: chrono::TimeZone>(t: chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::Offset;
    if t.offset().fix().local_minus_utc() == 0 {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S %:z").to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_their_zone() {
        let t = chrono::DateTime::from_timestamp_millis(1_796_565_785_000).unwrap();
        assert_eq!(local(t), "2026-12-06 14:03:05 UTC");
        let plus1 = chrono::FixedOffset::east_opt(3600).unwrap();
        assert_eq!(local(t.with_timezone(&plus1)), "2026-12-06 15:03:05 +01:00");
        assert_eq!(time(None), "-");
    }
}
