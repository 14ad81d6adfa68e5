//! The binary frame that carries a task's output on the attach WebSocket:
//! `[u8 1][u32 big-endian task index][u8 stream: 1 stdout, 2 stderr][data]`.
//!
//! The header is its own value ([`output_header`]) so that a writer can send header and data
//! with one vectored write, without copying the data behind the header.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The first byte of an output frame.
pub const OUTPUT_TAG: u8 = 1;

/// Bytes before the data of an output frame.
pub const OUTPUT_HEADER_LEN: usize = 6;

/// Which of a task's output streams bytes were written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output (byte 1 in a frame).
    Stdout,
    /// Standard error (byte 2 in a frame).
    Stderr,
}

impl OutputStream {
    /// The stream's byte in an output frame (and in the server's output log).
    pub fn byte(self) -> u8 {
        match self {
            OutputStream::Stdout => 1,
            OutputStream::Stderr => 2,
        }
    }

    /// The stream a frame's byte names, if any.
    pub fn from_byte(b: u8) -> Option<OutputStream> {
        match b {
            1 => Some(OutputStream::Stdout),
            2 => Some(OutputStream::Stderr),
            _ => None,
        }
    }
}

/// A binary frame that is not an output frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("output frame of {0} bytes is shorter than its {OUTPUT_HEADER_LEN}-byte header")]
    Short(usize),
    #[error("binary frame with unknown tag {0} (an output frame starts with {OUTPUT_TAG})")]
    UnknownTag(u8),
    #[error("output frame names unknown stream {0} (1 is stdout, 2 is stderr)")]
    UnknownStream(u8),
}

/// One decoded output frame: which task, which stream, and the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFrame<'a> {
    /// The task's position in the `hello` message's `tasks`.
    pub index: u32,
    pub stream: OutputStream,
    /// The output, as the task wrote it (not necessarily whole lines or UTF-8).
    pub data: &'a [u8],
}

/// The header of an output frame of task `index` on `stream`; the data follows it.
pub fn output_header(index: u32, stream: OutputStream) -> [u8; OUTPUT_HEADER_LEN] {
    let i = index.to_be_bytes();
    [OUTPUT_TAG, i[0], i[1], i[2], i[3], stream.byte()]
}

/// A whole output frame in one buffer (header, then `data`).
pub fn encode_output(index: u32, stream: OutputStream, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(OUTPUT_HEADER_LEN + data.len());
    frame.extend_from_slice(&output_header(index, stream));
    frame.extend_from_slice(data);
    frame
}

/// Reads an output frame; its data borrows from `frame`.
pub fn decode_output(frame: &[u8]) -> Result<OutputFrame<'_>, FrameError> {
    let Some((header, data)) = frame.split_first_chunk::<OUTPUT_HEADER_LEN>() else {
        return Err(FrameError::Short(frame.len()));
    };
    let [tag, i0, i1, i2, i3, stream] = *header;
    if tag != OUTPUT_TAG {
        return Err(FrameError::UnknownTag(tag));
    }
    let stream = OutputStream::from_byte(stream).ok_or(FrameError::UnknownStream(stream))?;
    Ok(OutputFrame {
        index: u32::from_be_bytes([i0, i1, i2, i3]),
        stream,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_the_servers() {
        assert_eq!(
            output_header(0x0102_0304, OutputStream::Stderr),
            [1, 1, 2, 3, 4, 2]
        );
        assert_eq!(output_header(0, OutputStream::Stdout), [1, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn frames_round_trip() {
        let cases: &[(u32, OutputStream, &[u8])] = &[
            (0, OutputStream::Stdout, b"hello\n"),
            (7, OutputStream::Stderr, b"oops"),
            (u32::MAX, OutputStream::Stdout, b""),
            (65_536, OutputStream::Stderr, &[0xff, 0, 1, 0xfe]),
        ];
        for &(index, stream, data) in cases {
            let frame = encode_output(index, stream, data);
            assert_eq!(frame.len(), OUTPUT_HEADER_LEN + data.len());
            let got = decode_output(&frame).unwrap();
            assert_eq!(
                got,
                OutputFrame {
                    index,
                    stream,
                    data
                }
            );
        }
    }

    #[test]
    fn malformed_frames_are_rejected() {
        let cases: &[(&[u8], FrameError)] = &[
            (&[], FrameError::Short(0)),
            (&[1], FrameError::Short(1)),
            (&[1, 0, 0, 0, 0], FrameError::Short(5)),
            (&[2, 0, 0, 0, 0, 1, b'x'], FrameError::UnknownTag(2)),
            (&[0, 0, 0, 0, 0, 1], FrameError::UnknownTag(0)),
            (&[1, 0, 0, 0, 0, 0], FrameError::UnknownStream(0)),
            (&[1, 0, 0, 0, 0, 3, b'x'], FrameError::UnknownStream(3)),
        ];
        for (frame, want) in cases {
            assert_eq!(decode_output(frame), Err(want.clone()), "{frame:?}");
        }
    }

    #[test]
    fn stream_bytes_and_names() {
        for s in [OutputStream::Stdout, OutputStream::Stderr] {
            assert_eq!(OutputStream::from_byte(s.byte()), Some(s));
        }
        assert_eq!(
            serde_json::to_string(&OutputStream::Stderr).unwrap(),
            r#""stderr""#
        );
    }
}
