//! Plain text tables and times for the CLI.

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

pub fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}
