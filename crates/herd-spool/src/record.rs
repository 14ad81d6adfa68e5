//! Owns the segment record format: `u32 LE length` followed by that many bytes of a
//! prost-encoded `TaskEvent`. Encoding for appends, strict decoding for reads, and the
//! lenient scan recovery uses to find where a torn tail begins.

use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use herd_proto::v1::TaskEvent;
use prost::Message;

use crate::SpoolError;

pub(crate) const HEADER_LEN: usize = 4;
/// Upper bound on one encoded event. Output chunks are pipe-read sized (KiBs); the bound
/// exists so a corrupted length field cannot make recovery allocate gigabytes.
pub(crate) const MAX_RECORD_LEN: usize = 64 << 20;

/// Encodes `ev` as one record into `buf` (cleared first), so it can be written with a
/// single `write` and never interleaves with another record.
pub(crate) fn encode(ev: &TaskEvent, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
    let len = ev.encoded_len();
    if len > MAX_RECORD_LEN {
        return Err(SpoolError::TooLarge {
            len,
            max: MAX_RECORD_LEN,
        });
    }
    buf.clear();
    buf.reserve(HEADER_LEN + len);
    // `len <= MAX_RECORD_LEN` so it fits in u32.
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    // A Vec grows as needed, so this cannot actually run out of room.
    ev.encode(buf).map_err(|_| SpoolError::TooLarge {
        len,
        max: MAX_RECORD_LEN,
    })?;
    Ok(())
}

/// Like [`encode`], but an Output event's data is left out of `buf` and returned instead:
/// the record is `buf` followed by that slice, written together with one `writev`, so the
/// output bytes are not copied in user space. (Output is the last field of `TaskEvent`
/// and data the last field of `Output`, so the data bytes end the encoding.)
pub(crate) fn encode_split<'e>(
    ev: &'e TaskEvent,
    buf: &mut Vec<u8>,
) -> Result<&'e [u8], SpoolError> {
    use herd_proto::v1::task_event::Kind;
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    let Some(Kind::Output(out)) = &ev.kind else {
        encode(ev, buf)?;
        return Ok(&[]);
    };
    let len = ev.encoded_len();
    if out.data.is_empty() || out.stream < 0 || len > MAX_RECORD_LEN {
        encode(ev, buf)?;
        return Ok(&[]);
    }
    let data = &out.data[..];
    let stream_len = if out.stream != 0 {
        1 + encoded_len_varint(out.stream as u64)
    } else {
        0
    };
    let out_len = stream_len + 1 + encoded_len_varint(data.len() as u64) + data.len();
    buf.clear();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    if !ev.task_id.is_empty() {
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(ev.task_id.len() as u64, buf);
        buf.extend_from_slice(ev.task_id.as_bytes());
    }
    if ev.seq != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(ev.seq, buf);
    }
    encode_key(4, WireType::LengthDelimited, buf);
    encode_varint(out_len as u64, buf);
    if out.stream != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(out.stream as u64, buf);
    }
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(data.len() as u64, buf);
    if buf.len() - HEADER_LEN + data.len() != len {
        // Not the layout assumed above (a field added to the protocol): encode it whole.
        encode(ev, buf)?;
        return Ok(&[]);
    }
    Ok(data)
}

/// Reads the next record of a segment whose contents recovery already validated, and
/// checks it is the event we expect. Returns the event and its encoded length, or why
/// the segment no longer matches the index (the caller adds the path, which is only
/// worth formatting on failure).
pub(crate) fn read_expected<R: Read>(
    r: &mut R,
    task_id: &str,
    seq: u64,
) -> Result<(TaskEvent, usize), String> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|e| format!("reading header of seq {seq}: {e}"))?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_RECORD_LEN {
        return Err(format!("record length {len} for seq {seq}"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| format!("reading body of seq {seq}: {e}"))?;
    // Decoding from `Bytes` lets Output.data share this allocation instead of copying.
    let ev =
        TaskEvent::decode(Bytes::from(body)).map_err(|e| format!("decoding seq {seq}: {e}"))?;
    if ev.seq != seq || ev.task_id != task_id {
        return Err(format!(
            "expected {task_id}#{seq}, found {}#{}",
            ev.task_id, ev.seq
        ));
    }
    Ok((ev, len))
}

/// Skips the next record without decoding it (used when seeking inside a segment).
pub(crate) fn skip<R: Read + io::Seek>(
    r: &mut io::BufReader<R>,
    path: &Path,
) -> Result<(), SpoolError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).map_err(|e| SpoolError::Corrupt {
        path: path.to_owned(),
        reason: format!("reading header while seeking: {e}"),
    })?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_RECORD_LEN {
        return Err(SpoolError::Corrupt {
            path: path.to_owned(),
            reason: format!("record length {len} while seeking"),
        });
    }
    r.seek_relative(len as i64).map_err(SpoolError::io(path))
}

/// What recovery learned from one segment.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Bytes of whole, valid records from the start of the file.
    pub valid_len: u64,
    pub count: u64,
    pub last_seq: u64,
    pub saw_exited: bool,
    /// Why scanning stopped before end of file, if it did (torn or corrupt tail).
    pub torn: Option<String>,
}

/// Walks every record of a segment, decoding each one, and stops at the first record
/// that is partial, undecodable or out of sequence. Only real I/O failures are errors.
pub(crate) fn scan<R: Read>(
    r: &mut R,
    task_id: &str,
    first_seq: u64,
    scratch: &mut Vec<u8>,
) -> io::Result<Scan> {
    let mut out = Scan::default();
    let mut header = [0u8; HEADER_LEN];
    loop {
        let n = read_up_to(r, &mut header)?;
        if n == 0 {
            return Ok(out);
        }
        if n < HEADER_LEN {
            out.torn = Some(format!("partial header ({n} bytes)"));
            return Ok(out);
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_RECORD_LEN {
            out.torn = Some(format!("implausible record length {len}"));
            return Ok(out);
        }
        scratch.clear();
        scratch.resize(len, 0);
        let got = read_up_to(r, scratch)?;
        if got < len {
            out.torn = Some(format!("partial record ({got} of {len} bytes)"));
            return Ok(out);
        }
        let expected = first_seq + out.count;
        let ev = match TaskEvent::decode(&scratch[..]) {
            Ok(ev) => ev,
            Err(e) => {
                out.torn = Some(format!("undecodable record for seq {expected}: {e}"));
                return Ok(out);
            }
        };
        if ev.seq != expected || ev.task_id != task_id {
            out.torn = Some(format!(
                "expected {task_id}#{expected}, found {}#{}",
                ev.task_id, ev.seq
            ));
            return Ok(out);
        }
        if matches!(ev.kind, Some(herd_proto::v1::task_event::Kind::Exited(_))) {
            out.saw_exited = true;
        }
        out.count += 1;
        out.last_seq = ev.seq;
        out.valid_len += (HEADER_LEN + len) as u64;
    }
}

/// Like `read_exact`, but reports how much was read instead of failing at end of file.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use herd_proto::v1::{self as pb, task_event};

    #[test]
    fn split_encoding_matches_prost() {
        let mut evs = Vec::new();
        for (task, seq, stream, n) in [
            ("t", 1u64, 1i32, 1usize),
            ("0190a1b2-c3d4", 300, 2, 70_000),
            ("x", u64::MAX, 0, 5),
            ("", 7, 1, 200),
            ("task", 2, 1, 0),
        ] {
            evs.push(TaskEvent {
                task_id: task.into(),
                seq,
                kind: Some(task_event::Kind::Output(pb::Output {
                    stream,
                    data: vec![7u8; n].into(),
                })),
            });
        }
        evs.push(TaskEvent {
            task_id: "t".into(),
            seq: 9,
            kind: Some(task_event::Kind::Started(pb::Started { pid: 42 })),
        });
        for ev in &evs {
            let mut whole = Vec::new();
            encode(ev, &mut whole).unwrap();
            let mut split = Vec::new();
            let data = encode_split(ev, &mut split).unwrap();
            split.extend_from_slice(data);
            assert_eq!(split, whole, "{ev:?}");
        }
    }
}
