//! Live output over WebSocket (pending).
mod offsets;
