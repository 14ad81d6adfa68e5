//! The read side: walking the head and the kept tail segments from a cursor up to a
//! committed position, turning frames back into chunks and cut-away data into `Omitted`.
//!
//! Reads never go past `pos`, so bytes written by an append that is not yet committed
//! (or never will be) are invisible. Readers run concurrently with appends and with the
//! deletion of old segments; a segment that vanishes is treated as cut away.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::error::IoContext;
use crate::layout::{
    FRAME_HDR, MAX_FRAME_DATA, PADDING, SEG_HDR, end_of, oldest_kept, seg_path, validate_pos,
};
use crate::{Chunk, Cursor, OutlogError, OutputPos};

pub(crate) fn read(
    dir: &Path,
    pos: OutputPos,
    cursor: Cursor,
    max_bytes: usize,
) -> Result<(Vec<Chunk>, Cursor), OutlogError> {
    validate_pos(pos)?;
    let mut out = Out::new(max_bytes.max(1));
    let mut c = cursor;
    let (end_seg, end_off) = end_of(pos);
    loop {
        if out.full() || c.seg > end_seg || (c.seg == end_seg && c.off >= end_off) {
            break;
        }
        // Segments older than the kept window may still exist for a moment (or after a
        // crash mid-roll) but are not part of the log any more.
        // A tail cursor whose segment's start is unknown (see `skip_to_next`) cannot tell
        // that segment from a reuse of its file, so it treats it as cut away.
        let dropped = c.seg > 0 && (c.seg < oldest_kept(pos.tail_seg) || c.seg_start == 0);
        let path = seg_path(dir, c.seg);
        let file = if dropped {
            None
        } else {
            match File::open(&path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e).at(&path),
            }
        };
        let Some(file) = file else {
            if c.seg == 0 && pos.head_len > 0 {
                tracing::warn!(path = %path.display(), "committed output head missing");
            }
            if !skip_to_next(dir, pos, &mut c, &mut out)? {
                break;
            }
            continue;
        };
        // The current file's committed length is in `pos` (the file may hold more); a
        // finished tail segment is trimmed to its exact length when the tail rolls.
        let limit = if c.seg == end_seg {
            end_off
        } else if c.seg == 0 {
            pos.head_len
        } else {
            file.metadata().at(&path)?.len()
        };
        if c.seg > 0 && c.off < SEG_HDR {
            c.off = SEG_HDR;
        }
        if c.off < limit {
            let before = c;
            if c.seg > 0 {
                out.flush();
            }
            let mark = out.mark();
            read_frames(&file, &path, limit, &mut c, &mut out)?;
            if c.seg > 0 && !same_segment(&file, &path, before.seg_start)? {
                // The segment was retired and its file reused while we read it: what we
                // read may be another segment's bytes. Its data counts as cut away.
                out.rollback(mark);
                c = before;
                if !skip_to_next(dir, pos, &mut c, &mut out)? {
                    break;
                }
                continue;
            }
            if c.off < limit {
                break; // budget used up
            }
        }
        if c.seg == end_seg {
            break;
        }
        if !skip_to_next(dir, pos, &mut c, &mut out)? {
            break;
        }
    }
    Ok((out.finish(), c))
}

/// Moves the cursor to the oldest available segment after its current one (up to the
/// committed one), reporting the data in between as omitted. If nothing is left (the
/// caller's `pos` is older than what was since deleted), the rest up to `pos` is omitted
/// and the cursor ends at `pos`. Returns whether there is a segment to continue in.
fn skip_to_next(
    dir: &Path,
    pos: OutputPos,
    c: &mut Cursor,
    out: &mut Out,
) -> Result<bool, OutlogError> {
    let from = c.seg + 1;
    if pos.tail_seg > 0 {
        for seg in from.max(oldest_kept(pos.tail_seg))..=pos.tail_seg {
            let path = seg_path(dir, seg);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&path),
            };
            let mut hdr = [0u8; SEG_HDR as usize];
            match file.read_exact_at(&mut hdr, 0) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => continue,
                Err(e) => return Err(e).at(&path),
            }
            let start = u64::from_le_bytes(hdr);
            out.omitted(start.saturating_sub(c.data));
            *c = Cursor {
                seg,
                off: SEG_HDR,
                data: start,
                seg_start: start,
            };
            return Ok(true);
        }
    }
    out.omitted(pos.total.saturating_sub(c.data));
    let (seg, off) = end_of(pos);
    *c = Cursor {
        seg,
        off,
        data: pos.total.max(c.data),
        // Unknown: whatever that segment holds now is treated as cut away.
        seg_start: 0,
    };
    Ok(false)
}

/// Reads frames from `c.off` up to `limit` while the budget lasts. Damage (bad stream
/// byte, frame running past `limit`, file shorter than committed) skips the rest of the
/// file up to `limit`: that data is unreadable, and the next segment's header puts the
/// data offset right again.
/// Whether the tail segment `file` still starts at stream offset `start` (its header is
/// rewritten when the file is reused for a later segment).
fn same_segment(file: &File, path: &Path, start: u64) -> Result<bool, OutlogError> {
    let mut hdr = [0u8; SEG_HDR as usize];
    match file.read_exact_at(&mut hdr, 0) {
        Ok(()) => Ok(u64::from_le_bytes(hdr) == start),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e).at(path),
    }
}

fn read_frames(
    file: &File,
    path: &Path,
    limit: u64,
    c: &mut Cursor,
    out: &mut Out,
) -> Result<(), OutlogError> {
    let cap = usize::try_from(limit - c.off)
        .unwrap_or(usize::MAX)
        .clamp(64, 256 * 1024);
    let mut r = BufReader::with_capacity(cap, file);
    r.seek(SeekFrom::Start(c.off)).at(path)?;
    while c.off < limit && !out.full() {
        let mut hdr = [0u8; FRAME_HDR as usize];
        match r.read_exact(&mut hdr[..1]) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return cut_short(path, limit, c),
            Err(e) => return Err(e).at(path),
        }
        if hdr[0] == PADDING {
            c.off += 1;
            skip_padding(&mut r, path, limit, c)?;
            continue;
        }
        if !matches!(hdr[0], 1 | 2) || c.off + FRAME_HDR > limit {
            return damaged(path, limit, c);
        }
        match r.read_exact(&mut hdr[1..]) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return cut_short(path, limit, c),
            Err(e) => return Err(e).at(path),
        }
        let len = u32::from_le_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
        let end = c.off + FRAME_HDR + len as u64;
        if len > MAX_FRAME_DATA || end > limit {
            return damaged(path, limit, c);
        }
        if out.data_bytes > 0 && out.data_bytes + len > out.max {
            break; // leave the frame for the next read
        }
        let mut data = vec![0u8; len];
        match r.read_exact(&mut data) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return cut_short(path, limit, c),
            Err(e) => return Err(e).at(path),
        }
        out.data(hdr[0], data);
        c.off = end;
        c.data += len as u64;
    }
    Ok(())
}

/// Skips a run of padding bytes in bulk (a hole can be large).
fn skip_padding(
    r: &mut BufReader<&File>,
    path: &Path,
    limit: u64,
    c: &mut Cursor,
) -> Result<(), OutlogError> {
    while c.off < limit {
        let buf = r.fill_buf().at(path)?;
        if buf.is_empty() {
            break;
        }
        let max = buf
            .len()
            .min(usize::try_from(limit - c.off).unwrap_or(usize::MAX));
        let zeros = buf[..max].iter().take_while(|&&b| b == PADDING).count();
        r.consume(zeros);
        c.off += zeros as u64;
        if zeros < max {
            break;
        }
    }
    Ok(())
}

/// The file ended before `limit`: a tail segment cut down to its header while we read it
/// (the tail moved on), or bytes lost in a power cut. Either way the rest is gone.
fn cut_short(path: &Path, limit: u64, c: &mut Cursor) -> Result<(), OutlogError> {
    tracing::debug!(path = %path.display(), offset = c.off, limit, "output log file ends early; skipping the rest of it");
    c.off = limit;
    Ok(())
}

fn damaged(path: &Path, limit: u64, c: &mut Cursor) -> Result<(), OutlogError> {
    tracing::warn!(path = %path.display(), offset = c.off, limit, "damaged output log file; skipping the rest of it");
    c.off = limit;
    Ok(())
}

/// Collects chunks, merging adjacent data of the same stream (records are split at file
/// boundaries and agents send small chunks; callers want few, large chunks).
struct Out {
    chunks: Vec<Chunk>,
    pending: Option<(u8, Vec<u8>)>,
    data_bytes: usize,
    max: usize,
}

impl Out {
    fn new(max: usize) -> Out {
        Out {
            chunks: Vec::new(),
            pending: None,
            data_bytes: 0,
            max,
        }
    }

    fn full(&self) -> bool {
        self.data_bytes >= self.max
    }

    fn data(&mut self, stream: u8, data: Vec<u8>) {
        self.data_bytes += data.len();
        match &mut self.pending {
            Some((s, buf)) if *s == stream => buf.extend_from_slice(&data),
            _ => {
                self.flush();
                self.pending = Some((stream, data));
            }
        }
    }

    /// Where `rollback` returns to (call after `flush`).
    fn mark(&self) -> (usize, usize) {
        (self.chunks.len(), self.data_bytes)
    }

    /// Forgets what was collected since `mark`.
    fn rollback(&mut self, mark: (usize, usize)) {
        self.pending = None;
        self.chunks.truncate(mark.0);
        self.data_bytes = mark.1;
    }

    fn omitted(&mut self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.flush();
        if let Some(Chunk::Omitted { bytes: prev }) = self.chunks.last_mut() {
            *prev += bytes;
        } else {
            self.chunks.push(Chunk::Omitted { bytes });
        }
    }

    fn flush(&mut self) {
        if let Some((stream, data)) = self.pending.take() {
            self.chunks.push(Chunk::Data {
                stream,
                data: Bytes::from(data),
            });
        }
    }

    fn finish(mut self) -> Vec<Chunk> {
        self.flush();
        self.chunks
    }
}
