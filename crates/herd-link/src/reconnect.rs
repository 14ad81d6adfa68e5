//! When an agent dials again after its session ended: the reconnect policy, pure apart from
//! its jitter. A server that said it is going away (a clean restart) is expected back at
//! once, so the agent dials again after a short jittered pause instead of backing off; a
//! session that was healthy (lasted [`Reconnect::HEALTHY`] or more) starts the backoff from
//! its minimum; failures in a row back off exponentially (with full jitter, capped), so a
//! fleet whose server is down spreads its attempts out.

use std::time::Duration;

use rand::Rng;

use crate::Backoff;

/// How a session (or an attempt at one) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server announced a clean shutdown.
    GoingAway,
    /// The connection failed or dropped after lasting this long (zero: never connected).
    Failed(Duration),
}

pub struct Reconnect {
    backoff: Backoff,
}

impl Reconnect {
    /// A session that lasted this long was healthy: the backoff restarts small.
    pub const HEALTHY: Duration = Duration::from_secs(10);
    /// The pause after the server said it is going away, from … to.
    pub const GOING_AWAY: (Duration, Duration) =
        (Duration::from_millis(200), Duration::from_millis(500));

    /// Backoff from `base` (first wait at most `base`) up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Reconnect {
        Reconnect {
            backoff: Backoff::new(base, cap),
        }
    }

    /// How long to wait before dialling again after a session ended `how`.
    pub fn wait_after(&mut self, how: Ended) -> Duration {
        match how {
            Ended::GoingAway => {
                // The next failures (the server is still restarting) back off from the start.
                self.backoff.reset();
                let (lo, hi) = Reconnect::GOING_AWAY;
                let span = (hi - lo).as_millis() as u64;
                lo + Duration::from_millis(rand::rng().random_range(0..=span))
            }
            Ended::Failed(lasted) => {
                if lasted >= Reconnect::HEALTHY {
                    self.backoff.reset();
                }
                self.backoff.next_wait()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Reconnect {
        Reconnect::new(Duration::from_millis(100), Duration::from_secs(30))
    }

    #[test]
    fn going_away_waits_briefly_whatever_failed_before() {
        let mut r = policy();
        for _ in 0..20 {
            r.wait_after(Ended::Failed(Duration::ZERO));
        }
        let w = r.wait_after(Ended::GoingAway);
        let (lo, hi) = Reconnect::GOING_AWAY;
        assert!(w >= lo && w <= hi, "{w:?}");
        // The server still restarting: back off from the minimum, not from where it was.
        let next = r.wait_after(Ended::Failed(Duration::ZERO));
        assert!(next <= Duration::from_millis(100), "{next:?}");
    }

    #[test]
    fn failures_in_a_row_back_off() {
        let mut r = policy();
        let waits: Vec<Duration> = (0..12)
            .map(|_| r.wait_after(Ended::Failed(Duration::from_millis(5))))
            .collect();
        assert!(waits[0] <= Duration::from_millis(100), "{waits:?}");
        assert!(waits[11] >= Duration::from_secs(15), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(30)),
            "{waits:?}"
        );
    }

    #[test]
    fn a_healthy_session_restarts_the_backoff_small() {
        let mut r = policy();
        for _ in 0..12 {
            r.wait_after(Ended::Failed(Duration::ZERO));
        }
        let table = [
            (Reconnect::HEALTHY, Duration::from_millis(100)),
            (Duration::from_secs(3600), Duration::from_millis(100)),
        ];
        for (lasted, at_most) in table {
            for _ in 0..12 {
                r.wait_after(Ended::Failed(Duration::ZERO));
            }
            let w = r.wait_after(Ended::Failed(lasted));
            assert!(w <= at_most, "after a session of {lasted:?}: {w:?}");
        }
        // A short session is not healthy: the backoff goes on growing.
        let w = r.wait_after(Ended::Failed(Reconnect::HEALTHY - Duration::from_millis(1)));
        assert!(w >= Duration::from_millis(100), "{w:?}");
    }
}
