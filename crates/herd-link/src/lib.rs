//! What every agent process needs to hold its link to the server, whether it is the real
//! agent (`herd-agent`) or the simulated fleet (`herd-sim`): dialling (HTTP/2, TLS pinned
//! to the server's CA, keepalive pings), the reconnect policy (backoff with jitter, a short
//! pause after a clean server shutdown), the heartbeat period
//! a `Welcome` asks for, the version an agent reports in its `Hello`, the credential state
//! files an agent keeps, and the malloc settings of a long-lived process with a small
//! footprint.
//!
//! Architecture invariant: nothing here knows about tasks, the spool or sessions; both
//! kinds of agent assemble their own session from these pieces.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backoff;
mod dial;
mod memory;
mod reconnect;
mod state_file;

use std::time::Duration;

pub use backoff::Backoff;
pub use dial::{ConnectError, channel, not_http2};
pub use memory::{limit_malloc_arenas, release_free_memory};
pub use reconnect::{Ended, Reconnect};
pub use state_file::{StateFileError, private_dir, read_json, write_private};

/// The version an agent reports in its `Hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The heartbeat period a server asks for in its Welcome (whole seconds; 0 from an older
/// server means the default of 5 s), kept within 1 s … 5 min.
pub fn heartbeat_period(secs: u32) -> Duration {
    let secs = if secs == 0 { 5 } else { secs.clamp(1, 300) };
    Duration::from_secs(u64::from(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_periods() {
        for (asked, want) in [(0, 5), (1, 1), (5, 5), (20, 20), (300, 300), (301, 300)] {
            assert_eq!(
                heartbeat_period(asked),
                Duration::from_secs(want),
                "{asked}"
            );
        }
    }
}
