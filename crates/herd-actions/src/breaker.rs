//! The circuit breaker of one host, as a plain state machine: the caller passes the clock.
//!
//! Closed: calls go through; `threshold` consecutive failures open it. Open: calls are refused
//! without touching the network until `cooldown` has passed since it opened; then exactly one
//! call is let through as the half-open probe (others are still refused). The probe's success
//! closes the breaker, its failure opens it again for another cooldown; a probe that never
//! reports (its call was dropped) counts as a failure.

use std::time::{Duration, Instant};

/// What the breaker lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go ahead.
    Go,
    /// The one half-open probe: go ahead, and report how it went.
    Probe,
    /// Open (or a probe is already out): fail at once.
    Refuse {
        opened_at: Instant,
        next_probe: Instant,
    },
}

/// How an attempt ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The host answered (any status but 5xx and 429).
    Healthy,
    /// Connection error, timeout, 5xx, 429.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open { since: Instant },
    HalfOpen { since: Instant },
}

/// One host's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    phase: Phase,
    consecutive_failures: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            phase: Phase::Closed,
            consecutive_failures: 0,
        }
    }
}

impl Breaker {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// When the next probe may go (open or half-open breakers).
    pub fn next_probe(&self, cooldown: Duration) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            Phase::Open { since } | Phase::HalfOpen { since } => Some(since + cooldown),
        }
    }

    /// Whether a call may go now.
    pub fn admit(&mut self, now: Instant, cooldown: Duration) -> Admit {
        match self.phase {
            Phase::Closed => Admit::Go,
            Phase::Open { since } if now >= since + cooldown => {
                self.phase = Phase::HalfOpen { since };
                Admit::Probe
            }
            Phase::Open { since } | Phase::HalfOpen { since } => Admit::Refuse {
                opened_at: since,
                next_probe: since + cooldown,
            },
        }
    }

    /// The probe was admitted but never sent (its call gave up before the network, e.g. on
    /// the rate limit): the next call may probe instead, nothing is counted.
    pub fn release_probe(&mut self) {
        if let Phase::HalfOpen { since } = self.phase {
            self.phase = Phase::Open { since };
        }
    }

    /// Whether this breaker holds nothing worth keeping (closed, no failures counted).
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Closed && self.consecutive_failures == 0
    }

    /// How an admitted attempt ended. `probe`: it was admitted as the probe.
    pub fn record(&mut self, now: Instant, outcome: Outcome, probe: bool, threshold: u32) {
        match outcome {
            Outcome::Healthy => {
                // Any answer from the host shows it is back; a call admitted before the
                // breaker opened may also report it.
                if probe || matches!(self.phase, Phase::Closed | Phase::Open { .. }) {
                    self.phase = Phase::Closed;
                    self.consecutive_failures = 0;
                }
            }
            Outcome::Failed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                match self.phase {
                    Phase::HalfOpen { .. } if probe => self.phase = Phase::Open { since: now },
                    Phase::Closed if self.consecutive_failures >= threshold.max(1) => {
                        self.phase = Phase::Open { since: now }
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for i in 0..4 {
            assert_eq!(b.admit(t0, COOL), Admit::Go, "call {i}");
            b.record(t0, Outcome::Failed, false, 5);
        }
        // A healthy answer resets the count.
        b.record(t0, Outcome::Healthy, false, 5);
        assert_eq!(b.consecutive_failures(), 0);
        for _ in 0..5 {
            assert_eq!(b.admit(t0, COOL), Admit::Go);
            b.record(t0, Outcome::Failed, false, 5);
        }
        assert_eq!(b.phase(), Phase::Open { since: t0 });
        assert_eq!(
            b.admit(t0 + Duration::from_secs(29), COOL),
            Admit::Refuse {
                opened_at: t0,
                next_probe: t0 + COOL
            }
        );
    }

    #[test]
    fn one_probe_after_cooldown_then_close_or_reopen() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(t0, Outcome::Failed, false, 1);
        assert!(matches!(b.phase(), Phase::Open { .. }));
        let t1 = t0 + COOL;
        assert_eq!(b.admit(t1, COOL), Admit::Probe);
        // While the probe is out, everyone else is refused.
        assert!(matches!(b.admit(t1, COOL), Admit::Refuse { .. }));
        // The probe fails: open again, from now.
        b.record(t1, Outcome::Failed, true, 1);
        assert_eq!(b.phase(), Phase::Open { since: t1 });
        assert!(matches!(
            b.admit(t1 + COOL - Duration::from_millis(1), COOL),
            Admit::Refuse { .. }
        ));
        let t2 = t1 + COOL;
        assert_eq!(b.admit(t2, COOL), Admit::Probe);
        b.record(t2, Outcome::Healthy, true, 1);
        assert_eq!(b.phase(), Phase::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.admit(t2, COOL), Admit::Go);
    }

    #[test]
    fn a_probe_never_sent_lets_the_next_call_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(t0, Outcome::Failed, false, 1);
        assert_eq!(b.admit(t0 + COOL, COOL), Admit::Probe);
        b.release_probe();
        assert_eq!(b.phase(), Phase::Open { since: t0 });
        assert_eq!(b.admit(t0 + COOL, COOL), Admit::Probe);
        assert!(!b.is_idle());
    }

    #[test]
    fn a_late_failure_does_not_extend_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(t0, Outcome::Failed, false, 1);
        b.record(t0 + Duration::from_secs(10), Outcome::Failed, false, 1);
        assert_eq!(b.phase(), Phase::Open { since: t0 });
        assert_eq!(b.next_probe(COOL), Some(t0 + COOL));
    }

    #[test]
    fn a_late_success_from_before_the_probe_does_not_close_a_half_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(t0, Outcome::Failed, false, 1);
        assert_eq!(b.admit(t0 + COOL, COOL), Admit::Probe);
        b.record(t0 + COOL, Outcome::Healthy, false, 1);
        assert!(matches!(b.phase(), Phase::HalfOpen { .. }));
    }
}
