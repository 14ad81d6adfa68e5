//! Plain text tables and times (local, with the zone) for the CLI.

use std::io::IsTerminal;
use std::time::Duration;

/// Where a table goes: wide cells wrap to a terminal's width; through a pipe nothing wraps.
#[derive(Clone, Copy)]
enum To {
    Stdout,
    Stderr,
    #[cfg(test)]
    Pipe,
    #[cfg(test)]
    Terminal(u16),
}

/// Narrower terminals than this get tables unwrapped.
const MIN_WRAP_WIDTH: u16 = 40;

/// Spaces left and right of a cell: two between columns.
const PADDING: (u16, u16) = (0, 2);

/// The width the last column keeps on a narrow terminal (or its content's, if less).
const MIN_LAST_WIDTH: u16 = 30;

/// A table for stdout: header row first, one row per line, columns separated by spaces, no
/// trailing spaces; on a terminal the last column wraps to its width.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    build(header, rows, To::Stdout)
}

/// [`render`] for a table printed on stderr.
pub fn render_stderr(header: &[&str], rows: &[Vec<String>]) -> String {
    build(header, rows, To::Stderr)
}

fn build(header: &[&str], rows: &[Vec<String>], to: To) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    let tty = match to {
        To::Stdout => std::io::stdout().is_terminal(),
        To::Stderr => {
            t.use_stderr();
            std::io::stderr().is_terminal()
        }
        #[cfg(test)]
        To::Pipe => false,
        #[cfg(test)]
        To::Terminal(w) => {
            t.set_width(w);
            true
        }
    };
    // A terminal that gives no sensible width (0 under some emulators) gets no wrapping.
    if tty && t.width().is_some_and(|w| w >= MIN_WRAP_WIDTH) {
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    } else {
        t.force_no_tty();
        t.set_content_arrangement(comfy_table::ContentArrangement::Disabled);
    }
    t.set_header(header.to_vec());
    t.add_rows(
        rows.iter()
            .map(|r| r.iter().map(|c| cell(c)).collect::<Vec<_>>()),
    );
    // Only the last column wraps: names and IDs stay whole, to be copied.
    let last = header.len().saturating_sub(1);
    let min_last = t
        .column_max_content_widths()
        .get(last)
        .map_or(0, |w| (*w).min(MIN_LAST_WIDTH))
        + PADDING.0
        + PADDING.1;
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding(PADDING);
        if i < last {
            c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
        } else {
            // Never narrower than its content up to this: a line the terminal wraps reads
            // better than a column a few characters wide.
            c.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
                comfy_table::Width::Fixed(min_last),
            ));
        }
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// A cell as printed: a line break would split its row over lines, so it is a space; any
/// other control character (an agent's or a person's text may hold escape sequences that
/// would clear the screen and draw a forged table) is shown escaped.
fn cell(c: &str) -> String {
    herd_core::escape_controls(&c.replace(['\n', '\r'], " ")).into_owned()
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
    fn tables_read_well_through_grep() {
        let wide = "x".repeat(300);
        let rows = vec![
            vec!["web-1".to_string(), "online".to_string(), wide.clone()],
            vec!["db".to_string(), "offline".to_string(), "-".to_string()],
            vec!["a\nb".to_string(), String::new(), String::new()],
        ];
        let out = build(&["NAME", "STATUS", "DETAIL"], &rows, To::Pipe);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "header and one line per row: {out:?}");
        assert!(out.ends_with('\n'));
        assert_eq!(lines[0], "NAME   STATUS   DETAIL");
        assert_eq!(lines[1], format!("web-1  online   {wide}"), "not wrapped");
        assert_eq!(lines[2], "db     offline  -");
        assert_eq!(lines[3], "a b");
        for l in &lines {
            assert_eq!(*l, l.trim_end(), "no trailing spaces: {l:?}");
            assert_eq!(*l, l.trim_start(), "no leading spaces: {l:?}");
        }
        // Columns split on spaces as awk does.
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["db", "offline", "-"]
        );
        assert_eq!(build(&["ID", "NAME"], &[], To::Pipe), "ID  NAME\n");
    }

    #[test]
    fn escape_sequences_in_cells_are_shown_not_run() {
        let rows = vec![
            vec![
                "evil\u{1b}[2J\u{1b}[H".to_string(),
                "x\r\nweb-9  online".to_string(),
                "\u{9b}31m\u{202e}gnp.exe\t|".to_string(),
            ],
            vec!["db".to_string(), "ok".to_string(), "-".to_string()],
        ];
        for to in [To::Pipe, To::Terminal(200)] {
            let out = build(&["NAME", "STATUS", "DETAIL"], &rows, to);
            assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
            assert!(
                out.chars()
                    .all(|c| c == '\n' || !herd_core::is_unsafe_char(c)),
                "{out:?}"
            );
            assert_eq!(out.lines().count(), 3, "{out}");
            assert!(out.contains("evil\\e[2J\\e[H"), "{out}");
            assert!(out.contains("x  web-9  online"), "{out}");
            assert!(out.contains("\\u{9b}31m\\u{202e}gnp.exe\\t|"), "{out}");
        }
    }

    #[test]
    fn on_a_terminal_only_the_last_column_wraps() {
        let id = "0123456789abcdef0123456789abcdef".to_string();
        let rows = vec![vec![id.clone(), "word ".repeat(12).trim_end().to_string()]];
        let out = build(&["ID", "DETAIL"], &rows, To::Terminal(70));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 2, "the detail wraps: {out}");
        assert!(lines[1].starts_with(&format!("{id}  word")), "{out}");
        for l in &lines {
            assert!(l.chars().count() <= 70, "{out}");
            assert_eq!(*l, l.trim_end(), "no trailing spaces: {l:?}");
        }
        // Too narrow for the rest: the last column keeps its width, the terminal wraps.
        let rows = vec![vec![id.clone(), "just now".to_string()]];
        let out = build(&["ID", "LAST SEEN"], &rows, To::Terminal(40));
        assert_eq!(
            out,
            format!("ID                                LAST SEEN\n{id}  just now\n")
        );
    }

    #[test]
    fn times_carry_their_zone() {
        let t = chrono::DateTime::from_timestamp_millis(1_796_565_785_000).unwrap();
        assert_eq!(local(t), "2026-12-06 14:03:05 UTC");
        let plus1 = chrono::FixedOffset::east_opt(3600).unwrap();
        assert_eq!(local(t.with_timezone(&plus1)), "2026-12-06 15:03:05 +01:00");
        assert_eq!(time(None), "-");
    }
}
