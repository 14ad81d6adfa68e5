//! Secret masking of a task's output: every occurrence of a secret value becomes `***` before
//! the output leaves the task's pump.
//!
//! Owns the streaming rule: a secret may arrive split across reads, so the pump holds back
//! only the tail of what it read that is the start of some secret (or a match that such a
//! start overlaps), and lets it go with the next read or at the stream's end. Output that
//! cannot be the start of a secret is never held, so live output stays live.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// What a secret becomes in output.
pub const MASK: &[u8] = b"***";
/// Values shorter than this are not masked (replacing every `a` or `42` of an output would
/// wreck it and hide nothing).
pub const MIN_MASKED: usize = 3;

/// The masking state of one output stream.
#[derive(Debug)]
pub struct Masker {
    finders: Arc<[memmem::Finder<'static>]>,
    /// The longest secret's length.
    longest: usize,
    /// Read but not let go yet: it may be the start of a secret.
    held: BytesMut,
}

impl Masker {
    /// A masker for `secrets` (those of [`MIN_MASKED`] bytes or more); `None` when there is
    /// nothing to mask.
    pub fn new(secrets: &[Bytes]) -> Option<Masker> {
        let mut values: Vec<&Bytes> = secrets.iter().filter(|s| s.len() >= MIN_MASKED).collect();
        values.sort();
        values.dedup();
        if values.is_empty() {
            return None;
        }
        let longest = values.iter().map(|s| s.len()).max().unwrap_or(0);
        let finders = values
            .iter()
            .map(|s| memmem::Finder::new(s.as_ref()).into_owned())
            .collect();
        Some(Masker {
            finders,
            longest,
            held: BytesMut::new(),
        })
    }

    /// Another masker for the same secrets (for another stream), holding nothing.
    pub fn fresh(&self) -> Masker {
        Masker {
            finders: Arc::clone(&self.finders),
            longest: self.longest,
            held: BytesMut::new(),
        }
    }

    /// Masks `data` read after what came before; returns what may go out now (possibly
    /// empty). Without a match or a held tail, `data` itself comes back (no copy).
    pub fn push(&mut self, data: Bytes) -> Bytes {
        let buf: Bytes = if self.held.is_empty() {
            data
        } else {
            self.held.extend_from_slice(&data);
            self.held.split().freeze()
        };
        let ranges = self.matches(&buf);
        let cut = self.hold_from(&buf, &ranges);
        if ranges.is_empty() && cut == buf.len() {
            return buf;
        }
        let out = replace(&buf[..cut], ranges.iter().filter(|r| r.1 <= cut));
        self.held.extend_from_slice(&buf[cut..]);
        out
    }

    /// Masks and lets go of whatever is held (the stream ended).
    pub fn finish(&mut self) -> Bytes {
        if self.held.is_empty() {
            return Bytes::new();
        }
        let buf = self.held.split().freeze();
        let ranges = self.matches(&buf);
        replace(&buf, ranges.iter())
    }

    /// Masks a whole text at once.
    pub fn mask_all(&self, data: &[u8]) -> Bytes {
        let ranges = self.matches(data);
        replace(data, ranges.iter())
    }

    /// Every occurrence of every secret (overlapping ones too), merged where they overlap,
    /// in order.
    fn matches(&self, buf: &[u8]) -> Vec<(usize, usize)> {
        let mut ranges = Vec::new();
        for f in self.finders.iter() {
            let len = f.needle().len();
            let mut at = 0;
            while let Some(i) = f.find(&buf[at..]) {
                ranges.push((at + i, at + i + len));
                at += i + 1;
            }
        }
        if ranges.len() < 2 {
            return ranges;
        }
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a < last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// Where the tail to hold back starts: the earliest position whose rest is a proper
    /// start of some secret, moved back to the start of a match it falls inside.
    fn hold_from(&self, buf: &[u8], ranges: &[(usize, usize)]) -> usize {
        let len = buf.len();
        let from = len.saturating_sub(self.longest - 1);
        let mut cut = (from..len)
            .find(|&i| {
                let rest = &buf[i..];
                self.finders.iter().any(|f| {
                    let s = f.needle();
                    s.len() > rest.len() && s.starts_with(rest)
                })
            })
            .unwrap_or(len);
        if let Some(r) = ranges.iter().find(|r| r.0 < cut && cut < r.1) {
            cut = r.0;
        }
        cut
    }
}

/// `buf` with each of `ranges` (in order, disjoint) replaced by [`MASK`].
fn replace<'a>(buf: &[u8], ranges: impl Iterator<Item = &'a (usize, usize)>) -> Bytes {
    let mut out = Vec::with_capacity(buf.len());
    let mut at = 0;
    for &(a, b) in ranges {
        out.extend_from_slice(&buf[at..a]);
        out.extend_from_slice(MASK);
        at = b;
    }
    out.extend_from_slice(&buf[at..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        let s: Vec<Bytes> = secrets
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        Masker::new(&s).unwrap()
    }

    /// Pushes `parts` one by one; returns what went out after each, and at the end.
    fn stream(m: &mut Masker, parts: &[&str]) -> (Vec<String>, String) {
        let outs = parts
            .iter()
            .map(|p| {
                String::from_utf8(m.push(Bytes::copy_from_slice(p.as_bytes())).to_vec()).unwrap()
            })
            .collect();
        let end = String::from_utf8(m.finish().to_vec()).unwrap();
        (outs, end)
    }

    #[test]
    fn whole_secrets() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["hunter2"], "pw=hunter2\n", "pw=***\n"),
            (&["hunter2"], "hunter2 hunter2", "*** ***"),
            (&["hunter2"], "nothing here\n", "nothing here\n"),
            (&["abc", "xyz"], "abc-xyz", "***-***"),
            (&["hunter2"], "hunter2hunter2", "******"),
        ];
        for (secrets, input, want) in cases {
            let mut m = masker(secrets);
            let (outs, end) = stream(&mut m, &[input]);
            assert_eq!(format!("{}{end}", outs[0]), *want, "{input:?}");
        }
    }

    #[test]
    fn split_secret_is_held_then_masked() {
        let mut m = masker(&["s3cr3t-value"]);
        let (outs, end) = stream(&mut m, &["token: s3cr", "3t-val", "ue done\n"]);
        assert_eq!(outs, vec!["token: ", "", "*** done\n"]);
        assert_eq!(end, "");
    }

    #[test]
    fn a_false_start_goes_out_with_the_next_read() {
        let mut m = masker(&["s3cr3t"]);
        let (outs, end) = stream(&mut m, &["say s3", "x and more"]);
        assert_eq!(outs, vec!["say ", "s3x and more"]);
        assert_eq!(end, "");
    }

    #[test]
    fn output_that_cannot_start_a_secret_is_never_held() {
        let mut m = masker(&["s3cr3t"]);
        for part in ["line 1\n", "s", "3", "x\n", "plain"] {
            let out = m.push(Bytes::copy_from_slice(part.as_bytes()));
            let held = !part.ends_with('\n') && part != "plain";
            assert_eq!(out.is_empty(), held, "{part:?}");
        }
    }

    #[test]
    fn overlapping_secrets() {
        // One secret inside another, and two that overlap.
        let mut m = masker(&["secret", "secret-long"]);
        let (outs, end) = stream(&mut m, &["a secret-long b secret c"]);
        assert_eq!(format!("{}{end}", outs[0]), "a *** b *** c");
        let mut m = masker(&["abcd", "cdef"]);
        let (outs, end) = stream(&mut m, &["xabcd", "efy"]);
        assert_eq!(format!("{}{}{end}", outs[0], outs[1]), "x***y");
        // A whole match that may grow into a longer secret waits for the next read.
        let mut m = masker(&["abc", "abcdef"]);
        let (outs, end) = stream(&mut m, &["1 abc", "def 2"]);
        assert_eq!(outs, vec!["1 ", "*** 2"]);
        assert_eq!(end, "");
        let m = masker(&["aaa"]);
        assert_eq!(m.mask_all(b"aaaa"), Bytes::from_static(b"***"));
    }

    #[test]
    fn at_the_end() {
        // A secret that ends the stream, and a start of one that never completes.
        let mut m = masker(&["topsecret"]);
        let (outs, end) = stream(&mut m, &["x topsec", "ret"]);
        assert_eq!(outs, vec!["x ", ""]);
        assert_eq!(end, "***");
        let mut m = masker(&["topsecret"]);
        let (outs, end) = stream(&mut m, &["x topsec"]);
        assert_eq!(outs, vec!["x "]);
        assert_eq!(end, "topsec");
    }

    #[test]
    fn short_values_are_not_masked() {
        assert!(Masker::new(&[Bytes::from_static(b"ab"), Bytes::new()]).is_none());
        let m = Masker::new(&[Bytes::from_static(b"ab"), Bytes::from_static(b"abc")]).unwrap();
        assert_eq!(m.mask_all(b"ab abc"), Bytes::from_static(b"ab ***"));
    }

    #[test]
    fn no_match_is_not_copied() {
        let mut m = masker(&["secret"]);
        let data = Bytes::from_static(b"plain output\n");
        let out = m.push(data.clone());
        assert_eq!(out.as_ptr(), data.as_ptr());
    }

    #[test]
    fn byte_at_a_time() {
        let mut m = masker(&["p4ssw0rd", "w0rd-2"]);
        let input = "user p4ssw0rd and w0rd-2 and p4ss";
        let mut out = Vec::new();
        for b in input.bytes() {
            out.extend_from_slice(&m.push(Bytes::copy_from_slice(&[b])));
        }
        out.extend_from_slice(&m.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "user *** and *** and p4ss");
    }
}
