//! Conformance of herd-ws to RFC 6455, server side: a standard client (tokio-tungstenite)
//! for what one can produce, hand-written frames for what one cannot (malformed, oversize,
//! exact header bytes). Every connection is a real loopback TCP connection.
#![allow(clippy::unwrap_used)]

mod handshake;
mod raw_frames;
mod standard_client;
mod support;
