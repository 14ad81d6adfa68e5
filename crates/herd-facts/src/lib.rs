//! herd-facts: what an agent reports about the Linux machine it runs on.
//!
//! Owns collection of static facts (identity, OS, kernel, hardware, filesystems,
//! addresses) sent once at registration, and cheap periodic metrics (CPU, memory,
//! root filesystem, load) sent with every heartbeat. Everything here is
//! best-effort: a value that cannot be read is left empty or zero, never an error.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod disks;
mod facts;
mod metrics;

pub use facts::collect_facts;
pub use metrics::MetricsSampler;
