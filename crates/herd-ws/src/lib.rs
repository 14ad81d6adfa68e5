//! herd-ws: the server side of WebSocket (RFC 6455), written for bulk output.
//!
//! An output frame goes to the socket as one vectored write of its header and the caller's
//! own buffers: no copy in user space on the way out. Frames from the client are read by a
//! task of their own, which joins fragments and queues whole messages, so waiting for one is
//! cancel-safe; a client message is refused as soon as its frame headers say it would pass
//! [`MAX_INCOMING`], before its bytes are read.
//!
//! Knows no HTTP server: [`accept_key`] checks an upgrade request's headers and computes
//! `Sec-WebSocket-Accept`; the caller answers `101 Switching Protocols` its own way and hands
//! the upgraded stream's halves to [`WsConn::new`]. No extensions, no subprotocols.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod conn;
mod error;
mod frame;
mod handshake;

pub use conn::{Incoming, WsConn};
pub use error::{ProtocolError, UpgradeError};
pub use handshake::{accept_for, accept_key};

/// Largest message a client may send, whole or in fragments. The largest herd's clients send
/// is the run request that opens `/api/v1/runs/start`, with a script of at most 1 MiB (up to
/// 6 MiB once JSON-escaped); stdin goes in chunks of 32 KiB. A frame whose header claims more
/// is refused (close 1009) before any of it is read or allocated.
pub const MAX_INCOMING: usize = 8 << 20;
