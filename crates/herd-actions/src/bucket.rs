//! A token bucket, as plain arithmetic: the caller passes the clock.
//!
//! A call reserves its token: when none is saved up it is given the instant its token will
//! exist (the bucket goes into debt), so waiters queue in order and each sleeps exactly once —
//! no polling. A reservation further away than the caller can wait is refused and leaves the
//! bucket as it was.

use std::time::{Duration, Instant};

use herd_core::actions::Rate;

#[derive(Debug, Clone)]
pub struct Bucket {
    rate: Rate,
    /// Saved tokens; negative: reservations not yet covered.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Takes the rate of the latest call to this host (saved tokens stay within its burst).
    pub fn set_rate(&mut self, rate: Rate, now: Instant) {
        if rate != self.rate {
            self.refill(now);
            self.rate = rate;
            self.tokens = self.tokens.min(f64::from(rate.burst));
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        self.at = self.at.max(now);
    }

    /// Reserves one token: `Ok(wait)` (zero when one was saved up) or, when the token would
    /// come later than `max_wait`, `Err(wait it would have needed)` without reserving.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(Duration::ZERO);
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second);
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens -= 1.0;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn burst_then_one_token_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(2.0, 3), t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0, LONG), Ok(Duration::ZERO));
        }
        // Queued waiters get successive slots, 0.5 s apart.
        assert_eq!(b.reserve(t0, LONG), Ok(Duration::from_millis(500)));
        assert_eq!(b.reserve(t0, LONG), Ok(Duration::from_millis(1000)));
        // After 1 s both reservations are covered and the bucket is empty again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.reserve(t1, LONG), Ok(Duration::from_millis(500)));
        // A long pause refills up to the burst, no more.
        let t2 = t1 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(b.reserve(t2, LONG), Ok(Duration::ZERO));
        }
        assert_eq!(b.reserve(t2, LONG), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn a_wait_beyond_the_bound_is_refused_and_reserves_nothing() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(1.0, 1), t0);
        assert_eq!(b.reserve(t0, Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(
            b.reserve(t0, Duration::from_millis(100)),
            Err(Duration::from_secs(1))
        );
        // The refusal left no debt: the next token is still 1 s after t0.
        assert_eq!(
            b.reserve(t0 + Duration::from_millis(500), LONG),
            Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn a_lower_burst_caps_saved_tokens() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(10.0, 10), t0);
        b.set_rate(rate(1.0, 2), t0);
        assert_eq!(b.reserve(t0, LONG), Ok(Duration::ZERO));
        assert_eq!(b.reserve(t0, LONG), Ok(Duration::ZERO));
        assert_eq!(b.reserve(t0, LONG), Ok(Duration::from_secs(1)));
    }
}
