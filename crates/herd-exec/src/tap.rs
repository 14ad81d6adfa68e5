//! What a task's output looks like to its supervision, kept small.
//!
//! Owns a bounded summary of the output the pumps send (after masking): bytes so far, the
//! whole lines since the supervisor last looked (consecutive repeats counted, at most
//! [`MAX_LINES`] distinct ones, each cut to [`MAX_LINE`] bytes), the unfinished last line (a
//! prompt) and the last whole line. Only the last [`SCAN`] bytes of an output event are
//! looked at, so a fast stream costs a bounded scan per 64 KiB event, never one allocation
//! per line.

use std::sync::Mutex;

/// Distinct lines kept between two samples.
pub(crate) const MAX_LINES: usize = 16;
/// Bytes kept of a line.
pub(crate) const MAX_LINE: usize = 512;
/// Bytes of an output event looked at (its end).
const SCAN: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Tap(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    bytes: u64,
    lines: Vec<(String, u32)>,
    partial: Vec<u8>,
    last_line: Vec<u8>,
}

/// What the tap holds, taken by a sample.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) bytes: u64,
    pub(crate) lines: Vec<(String, u32)>,
    pub(crate) partial: String,
    pub(crate) last_line: String,
}

impl Tap {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Output the task printed.
    pub(crate) fn record(&self, data: &[u8]) {
        let mut st = self.state();
        st.bytes += data.len() as u64;
        let data = if data.len() > SCAN {
            // The start of the line the scan begins in is not seen.
            st.partial.clear();
            let from = data.len() - SCAN;
            let cut = memchr::memchr(b'\n', &data[from..]).map_or(data.len(), |i| from + i + 1);
            &data[cut..]
        } else {
            data
        };
        let mut rest = data;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (piece, after) = (&rest[..i], &rest[i + 1..]);
            let room = MAX_LINE.saturating_sub(st.partial.len());
            st.partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            st.line_done();
            rest = after;
        }
        let room = MAX_LINE.saturating_sub(st.partial.len());
        st.partial.extend_from_slice(&rest[..rest.len().min(room)]);
    }

    /// What was seen; the lines are taken (the next sample gets the lines after this one).
    pub(crate) fn take(&self) -> Seen {
        let mut st = self.state();
        Seen {
            bytes: st.bytes,
            lines: std::mem::take(&mut st.lines),
            partial: String::from_utf8_lossy(&st.partial).into_owned(),
            last_line: String::from_utf8_lossy(&st.last_line).into_owned(),
        }
    }
}

impl State {
    /// `partial` is a whole line now.
    fn line_done(&mut self) {
        let mut line = std::mem::take(&mut self.partial);
        while line.last() == Some(&b'\r') {
            line.pop();
        }
        // A terminal redraws a line with \r: what is left after the last one shows.
        if let Some(i) = memchr::memrchr(b'\r', &line) {
            line.drain(..=i);
        }
        let same = self
            .lines
            .last()
            .is_some_and(|(l, _)| l.as_bytes() == line.as_slice());
        if same {
            if let Some((_, n)) = self.lines.last_mut() {
                *n = n.saturating_add(1);
            }
        } else if self.lines.len() < MAX_LINES {
            self.lines
                .push((String::from_utf8_lossy(&line).into_owned(), 1));
        }
        self.last_line.clear();
        self.last_line.extend_from_slice(&line);
        // Reuse the allocation for the next line.
        line.clear();
        self.partial = line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_repeats_and_the_unfinished_line_are_kept() {
        let tap = Tap::default();
        tap.record(b"E: lock\nE: lock\r\nE: lo");
        tap.record(b"ck\nother\nPassword: ");
        let seen = tap.take();
        assert_eq!(seen.bytes, 41);
        assert_eq!(
            seen.lines,
            vec![("E: lock".to_string(), 3), ("other".to_string(), 1)]
        );
        assert_eq!(seen.partial, "Password: ");
        assert_eq!(seen.last_line, "other");
        // Lines are taken; the rest stays.
        let again = tap.take();
        assert!(again.lines.is_empty());
        assert_eq!(again.partial, "Password: ");
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let tap = Tap::default();
        let mut big = Vec::new();
        for i in 0..10_000 {
            big.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        big.extend_from_slice(&[b'x'; 300]);
        tap.record(&big);
        let seen = tap.take();
        assert_eq!(seen.bytes, big.len() as u64);
        assert_eq!(seen.lines.len(), MAX_LINES);
        assert_eq!(seen.partial.len(), 300);
        assert_eq!(seen.last_line, "line 9999");
        tap.record(&[b'y'; 1000]);
        assert_eq!(tap.take().partial.len(), MAX_LINE);
    }
}
