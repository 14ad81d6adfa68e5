//! On-disk layout of one task's output: file names, the frame and segment-header formats,
//! size limits, and validation of the names and positions that lead to those files.
//!
//! ```text
//! root/<task_id>/head      frames, data offsets 0.. ; at most cap/2 bytes
//! root/<task_id>/tail.<k>  [start u64 LE] frames... ; at most cap/8 bytes each, k = 1, 2, ...
//! root/<task_id>/spare     a retired tail segment, reused as the next one (any contents)
//! frame = [stream u8][len u32 LE][len data bytes]   stream 1 = stdout, 2 = stderr
//! a single 0 byte where a frame would start is padding (1 byte, no data)
//! ```
//!
//! `start` is the stream offset (`OutputPos::total` when the segment was created) of the
//! segment's first data byte; it is what makes `Chunk::Omitted` exact after old segments
//! are deleted. Zero bytes are padding so that a hole (a file extended by `set_len`, or a
//! write past the end of a file that lost its tail in a power cut) still parses.

use std::path::{Path, PathBuf};

use crate::{OutlogError, OutputPos};

/// `[stream u8][len u32]`.
pub(crate) const FRAME_HDR: u64 = 5;
/// `[start u64]` at the beginning of every tail segment.
pub(crate) const SEG_HDR: u64 = 8;
/// Records are split into frames of at most this much data, so a reader never needs more
/// than this (plus its budget) in memory for one frame and frame lengths fit in a u32.
pub(crate) const MAX_FRAME_DATA: usize = 64 * 1024;
/// Tail segments kept: the current one plus the three before it.
pub(crate) const KEEP_SEGMENTS: u64 = 4;
/// Below this a tail segment could not hold a header plus a useful frame.
pub(crate) const MIN_CAP: u64 = 1024;
pub(crate) const PADDING: u8 = 0;
/// A retired tail segment kept for reuse as the task's next one (`write::create_segment`);
/// deleted by `OutputLog::finish`.
pub(crate) const SPARE: &str = "spare";

pub(crate) fn validate_task_id(id: &str) -> Result<(), OutlogError> {
    // Ids come from the network and name files: the one rule of herd-core.
    if herd_core::is_valid_id(id) {
        Ok(())
    } else {
        Err(OutlogError::InvalidTaskId(id.to_owned()))
    }
}

pub(crate) fn validate_stream(stream: u8) -> Result<(), OutlogError> {
    match stream {
        1 | 2 => Ok(()),
        other => Err(OutlogError::InvalidStream(other)),
    }
}

/// Positions come from the caller's database; one whose current tail segment is shorter
/// than its header cannot have been produced by `append`, and writing at it would
/// overwrite the header.
pub(crate) fn validate_pos(pos: OutputPos) -> Result<(), OutlogError> {
    if pos.tail_seg > 0 && pos.tail_len < SEG_HDR {
        return Err(OutlogError::InvalidPos {
            pos,
            reason: "tail segment shorter than its header",
        });
    }
    Ok(())
}

/// Segment 0 is the head; k >= 1 is `tail.<k>`.
pub(crate) fn seg_path(dir: &Path, seg: u64) -> PathBuf {
    if seg == 0 {
        dir.join("head")
    } else {
        dir.join(format!("tail.{seg}"))
    }
}

/// Parses `tail.<k>` back to k (for recovery's directory scan).
pub(crate) fn parse_tail_name(name: &str) -> Option<u64> {
    let k: u64 = name.strip_prefix("tail.")?.parse().ok()?;
    (k > 0).then_some(k)
}

/// Oldest tail segment that is kept while `current` is the newest.
pub(crate) fn oldest_kept(current: u64) -> u64 {
    current.saturating_sub(KEEP_SEGMENTS - 1).max(1)
}

/// The committed end of `pos` as (segment, byte offset in that segment's file).
pub(crate) fn end_of(pos: OutputPos) -> (u64, u64) {
    if pos.tail_seg == 0 {
        (0, pos.head_len)
    } else {
        (pos.tail_seg, pos.tail_len)
    }
}

/// Sizes derived from the per-task cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Max bytes of the head file.
    pub(crate) head_cap: u64,
    /// Max bytes of one tail segment file, header included.
    pub(crate) seg_cap: u64,
}

impl Limits {
    pub(crate) fn new(cap_bytes: u64) -> Limits {
        let cap = cap_bytes.max(MIN_CAP);
        Limits {
            head_cap: cap / 2,
            seg_cap: cap / (2 * KEEP_SEGMENTS),
        }
    }
}
