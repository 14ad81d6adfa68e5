//! The opening handshake, server side: checking an upgrade request's headers and computing
//! `Sec-WebSocket-Accept` (RFC 6455 §4.2). Only what HTTP/1.1 upgrades carry; the response
//! itself is the caller's.

use base64::Engine;
use http::{HeaderMap, header};
use sha1::{Digest, Sha1};

use crate::UpgradeError;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Checks that `h` asks for a WebSocket (version 13) and returns the `Sec-WebSocket-Accept`
/// value to answer with.
pub fn accept_key(h: &HeaderMap) -> Result<String, UpgradeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(UpgradeError::NotWebSocket);
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(UpgradeError::Version);
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::MissingKey)?;
    Ok(accept_for(key.as_bytes()))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of SHA-1 of the key and the
/// protocol's GUID.
pub fn accept_for(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}
