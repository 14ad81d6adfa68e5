//! herd-agent
#![cfg_attr(test, allow(clippy::unwrap_used))]
