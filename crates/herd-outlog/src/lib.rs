//! herd-outlog
#![cfg_attr(test, allow(clippy::unwrap_used))]
