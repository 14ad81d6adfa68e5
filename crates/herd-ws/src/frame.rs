//! Frames on the wire (RFC 6455 §5.2): encoding the header of a server frame, reading and
//! checking the header of a client frame, reading its payload and unmasking it.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ProtocolError;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Longest payload of a control frame (ping, pong, close).
pub(crate) const MAX_CONTROL: usize = 125;

/// Room reserved at a time while a payload arrives, so a header claiming a large payload
/// costs memory only as its bytes come in (the buffer then grows by doubling).
const READ_CHUNK: usize = 64 * 1024;

/// A final, unmasked frame header for `len` payload bytes (server frames are never masked),
/// with the shortest length encoding.
pub(crate) fn header(opcode: u8, len: usize, buf: &mut [u8; 10]) -> &[u8] {
    buf[0] = 0x80 | opcode;
    if len <= 125 {
        buf[1] = len as u8;
        &buf[..2]
    } else if let Ok(short) = u16::try_from(len) {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&short.to_be_bytes());
        &buf[..4]
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        &buf[..10]
    }
}

/// The header of a client frame, checked against the rules that need no other context.
#[derive(Debug)]
pub(crate) struct Head {
    pub fin: bool,
    pub opcode: u8,
    pub len: u64,
    pub mask: [u8; 4],
}

impl Head {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads the next frame header; `None` at end of stream between frames. Refuses reserved
/// bits, unknown opcodes, unmasked frames and malformed control frames.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Head>> {
    let b0 = match r.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let b1 = r.read_u8().await?;
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits.into());
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(ProtocolError::UnknownOpcode(opcode).into());
    }
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked.into());
    }
    let len = match b1 & 0x7F {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    let head = Head {
        fin,
        opcode,
        len,
        mask: [0; 4],
    };
    if head.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl.into());
        }
        if len > MAX_CONTROL as u64 {
            return Err(ProtocolError::ControlTooLong.into());
        }
    }
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask).await?;
    Ok(Some(Head { mask, ..head }))
}

/// Appends the `len` payload bytes of a frame to `buf`, unmasked. The caller has checked
/// `len` against its limit; room is reserved as bytes arrive, not for `len` up front.
pub(crate) async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    mask: [u8; 4],
    buf: &mut BytesMut,
) -> io::Result<()> {
    let start = buf.len();
    let end = start + len;
    while buf.len() < end {
        let want = end - buf.len();
        buf.reserve(want.min(READ_CHUNK));
        if r.read_buf(&mut (&mut *buf).limit(want)).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    unmask(&mut buf[start..], mask);
    Ok(())
}

/// XORs `data` with the frame's mask, starting at the mask's first byte.
pub(crate) fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // Whole 8-byte chunks keep the mask's phase: the rest starts at mask[0] again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_uses_the_shortest_length_encoding() {
        let cases: &[(u8, usize, &[u8])] = &[
            (OP_TEXT, 0, &[0x81, 0]),
            (OP_BINARY, 125, &[0x82, 125]),
            (OP_BINARY, 126, &[0x82, 126, 0, 126]),
            (OP_BINARY, 65_535, &[0x82, 126, 0xFF, 0xFF]),
            (OP_BINARY, 65_536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (OP_CLOSE, 2, &[0x88, 2]),
            (OP_PONG, 5, &[0x8A, 5]),
        ];
        for &(op, len, want) in cases {
            let mut buf = [0u8; 10];
            assert_eq!(header(op, len, &mut buf), want, "opcode {op} length {len}");
        }
    }

    #[test]
    fn unmask_matches_the_bytewise_definition() {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        for len in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 100] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut data: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            unmask(&mut data, mask);
            assert_eq!(data, plain, "length {len}");
        }
    }
}
