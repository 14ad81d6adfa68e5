//! Schedules, pure: what a person wrote (`--cron`, `--every`, `--at`) as a [`Spec`], its fire
//! times in a time zone ([`Spec::next_after`], [`Spec::upcoming`]), a deterministic start delay
//! per fire ([`jitter_ms`]), and what the firing loop does when it wakes ([`plan`]: fire, count
//! as missed, or wait; [`overlap`]: start, skip or queue beside a run still going).
//!
//! No I/O, no store, no clock: every "now" is passed in as unix milliseconds. Fire times are
//! strictly increasing (`next_after(t) > t`), and [`plan`] does a bounded amount of work
//! whatever the length of an outage.
//!
//! Time zones and daylight saving time (cron only; `every` and `at` are absolute): the cron
//! crate (croner) walks the wall clock and resolves it in the zone.
//! - A fixed-time job (one second, one minute and one hour, e.g. `30 2 * * *`) whose time does
//!   not exist that day (the clock jumps over it) fires once, at the first real instant after
//!   the jump (02:30 on a 02:00→03:00 day fires at 03:00); one whose time happens twice fires
//!   once, at the first of the two.
//! - Any other job (a wildcard, a step, a list or a range in the second, minute or hour
//!   field, e.g. `*/15 * * * *`, `30 * * * *`, `0 0,30 2 * * *`) follows absolute time: it
//!   fires at each instant whose wall clock matches, so through a repeated hour it fires in
//!   both passes (never twice at one instant), and wall times that do not exist are skipped.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cron;
mod jitter;
mod plan;
mod spec;
mod when;

pub use jitter::jitter_ms;
pub use plan::{MAX_CATCH_UP, Misfire, Missed, Overlap, OverlapDecision, Plan, overlap, plan};
pub use spec::{MAX_UPCOMING, Spec};

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod spec_tests;
