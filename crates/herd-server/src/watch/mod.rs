//! Live output over WebSocket: a watcher of a run (or of one task) gets every task's output
//! from the start, then as it is persisted, then the final states, then `end` (messages and
//! frames are herd-api's `ServerMessage` and output frames). Stdin and control messages
//! come the other way. The watcher itself is `watcher.rs`; the arithmetic of what part of
//! the output a watcher still needs is `offsets.rs`.
//!
//! Output is read from the output log up to the committed position, so the live view and
//! the stored log are the same bytes; a watcher that falls behind only reads further back.

mod offsets;
mod watcher;

pub use watcher::{refuse, watch};
