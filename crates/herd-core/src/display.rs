//! Text that came from an agent or a person, made harmless to print on a terminal or in a
//! log line: control characters (C0, DEL, C1), line and paragraph separators and the
//! bidirectional overrides are shown as escapes instead of acting, so such text can neither
//! drive the terminal (clear it, move the cursor, retitle the window), nor start a line of its
//! own, nor reorder what is shown around it. Everything else is kept as it is, backslashes
//! included (so `\e` typed by someone reads the same as an escaped ESC: harmless either way).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` must not reach a terminal or a log as it is.
pub fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        // Arabic letter mark, left-to-right and right-to-left marks.
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        // Line and paragraph separators: a line break to some terminals and log viewers.
        | '\u{2028}' | '\u{2029}'
        // Bidirectional embeddings, overrides and isolates.
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// How `c` is shown: `\t`, `\n`, `\r`, `\e` (ESC), `\xNN` for the other C0 characters and
/// DEL, `\u{NNNN}` for the rest.
fn write_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\t' => out.write_str("\\t"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\u{1b}' => out.write_str("\\e"),
        '\u{0}'..='\u{1f}' | '\u{7f}' => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

/// `s` with every [unsafe](is_unsafe_char) character shown as an escape; borrowed when
/// there is none (the common case).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let _ = Escaped(s).write_to(&mut out);
    Cow::Owned(out)
}

/// Displays a string as [`escape_controls`] would, without allocating: for `format!`,
/// `println!` and log fields (`%Escaped(&name)`).
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl Escaped<'_> {
    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(is_unsafe_char) {
            out.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            write_escaped(out, c)?;
            rest = &rest[i + c.len_utf8()..];
        }
        out.write_str(rest)
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        self.write_to(f)?;
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_acted_on() {
        let cases = [
            ("web-1", "web-1"),
            ("", ""),
            ("ünïcode ✓ 名前", "ünïcode ✓ 名前"),
            ("a\\eb", "a\\eb"),
            ("\u{1b}[2J\u{1b}[H", "\\e[2J\\e[H"),
            ("one\r\ntwo\n", "one\\r\\ntwo\\n"),
            ("tab\there", "tab\\there"),
            ("\u{0}\u{7}\u{8}\u{7f}", "\\x00\\x07\\x08\\x7f"),
            // C1: CSI and OSC of 8-bit terminals.
            (
                "\u{9b}2J\u{9d}0;title\u{9c}",
                "\\u{9b}2J\\u{9d}0;title\\u{9c}",
            ),
            ("x\u{85}y", "x\\u{85}y"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("\u{2066}a\u{2069}\u{200f}", "\\u{2066}a\\u{2069}\\u{200f}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape_controls(raw), shown, "{raw:?}");
            assert_eq!(Escaped(raw).to_string(), shown, "{raw:?}");
            assert_eq!(format!("{:?}", Escaped(raw)), format!("\"{shown}\""));
            assert!(!escape_controls(raw).chars().any(is_unsafe_char), "{raw:?}");
        }
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(escape_controls("db-2 ok"), Cow::Borrowed(_)));
        assert!(matches!(escape_controls("a\u{1b}"), Cow::Owned(_)));
    }

    #[test]
    fn every_control_is_unsafe() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        for c in [' ', '~', '\u{a0}', 'é', '\u{200b}'] {
            assert!(!is_unsafe_char(c), "{c:?}");
        }
    }
}
