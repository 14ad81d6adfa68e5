//! What can go wrong: a request that is not a valid upgrade, and a client breaking the
//! framing rules.

use std::io;

/// Why a request cannot be upgraded; the message is meant for the person at the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("this endpoint speaks WebSocket: connect with a WebSocket client")]
    NotWebSocket,
    #[error("WebSocket version 13 is required")]
    Version,
    #[error("Sec-WebSocket-Key header is missing")]
    MissingKey,
}

/// A client frame or message that breaks RFC 6455 (or herd's limit). [`crate::WsConn::recv`]
/// yields it inside an [`io::Error`] of kind `InvalidData`, after which the client sends
/// nothing more; [`crate::WsConn::close`] then tells the client with the matching status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("client frames must be masked")]
    Unmasked,
    #[error("reserved bits set: WebSocket extensions are not supported")]
    ReservedBits,
    #[error("unknown WebSocket opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("fragmented WebSocket control frame")]
    FragmentedControl,
    #[error("WebSocket control frame longer than 125 bytes")]
    ControlTooLong,
    #[error("WebSocket continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new WebSocket message before the previous one ended")]
    UnfinishedMessage,
    #[error("WebSocket message larger than {} bytes", crate::MAX_INCOMING)]
    TooLarge,
    #[error("WebSocket text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed WebSocket close frame")]
    BadClose,
}

impl ProtocolError {
    /// The status code a close frame answering this error carries (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::TooLarge => 1009,
            ProtocolError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }

    /// The protocol error inside `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<ProtocolError> {
        e.get_ref()?.downcast_ref::<ProtocolError>().copied()
    }
}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}
