//! Failed joins per source address: a source that keeps presenting bad join tokens is
//! refused for a while before its token is even looked at, so join tokens cannot be guessed
//! at network speed.
//!
//! **Invariant:** at most [`MAX_FAILURES`] failed joins per source address per [`WINDOW`]
//! are looked at; the table holds at most [`MAX_SOURCES`] addresses (expired entries go
//! first, then the whole table if it is still full: memory stays bounded whatever the number
//! of sources).

use crate::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed joins a source may make per window.
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered at once.
const MAX_SOURCES: usize = 10_000;

#[derive(Default)]
pub struct JoinLimit {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl JoinLimit {
    /// Whether `source` may try a join now; `Err(wait)` says how long until it may.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        match lock(&self.failures).get(&source) {
            Some((since, n)) if *n >= MAX_FAILURES && now.duration_since(*since) < WINDOW => {
                Err(WINDOW - now.duration_since(*since))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed join of `source`.
    pub fn failed(&self, source: IpAddr) {
        let now = Instant::now();
        let mut map = lock(&self.failures);
        if map.len() >= MAX_SOURCES && !map.contains_key(&source) {
            map.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_SOURCES {
                map.clear();
            }
        }
        let entry = map.entry(source).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_refused_after_its_failures_and_others_are_not() {
        let limit = JoinLimit::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(limit.check(a).is_ok());
            limit.failed(a);
        }
        let wait = limit.check(a).unwrap_err();
        assert!(wait <= WINDOW && wait > Duration::ZERO);
        assert!(limit.check(b).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let limit = JoinLimit::default();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            limit.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(lock(&limit.failures).len() <= MAX_SOURCES);
    }
}
