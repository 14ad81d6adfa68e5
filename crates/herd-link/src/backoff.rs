//! Exponential backoff with full jitter, capped, so a fleet reconnecting after a server
//! restart spreads out instead of arriving at once.

use std::time::Duration;

use rand::Rng;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next wait: uniform in [ceiling/2, ceiling], ceiling = min(cap, base·2^attempt).
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let lo = ceiling / 2;
        let span = (ceiling - lo).as_millis() as u64;
        lo + Duration::from_millis(rand::rng().random_range(0..=span))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let first = b.next_wait();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..30 {
            let d = b.next_wait();
            assert!(d <= Duration::from_secs(30), "{d:?}");
        }
        let late = b.next_wait();
        assert!(late >= Duration::from_secs(15), "{late:?}");
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
