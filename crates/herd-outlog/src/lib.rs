//! herd-outlog: the server's durable, capped store of task output.
//!
//! Each task's output lives in `root/<task_id>/` as a head file (the first half of the cap)
//! and a ring of tail segments (the most recent part); see `layout` for the format. The
//! caller commits an [`OutputPos`] to its database together with the events it covers, and
//! that committed position, not the files, decides what is valid: appends continue from it,
//! reads stop at it, and [`OutputLog::recover`] cuts the files back to it after a crash.
//!
//! All methods do blocking file I/O; async callers should use `spawn_blocking`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod handles;
mod layout;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::OutlogError;

use handles::{HandleCache, lock};
use layout::{Limits, validate_task_id};

/// Open append handles kept across calls (one per task).
const HANDLE_CACHE: usize = 256;

/// How much of a task's output is valid: what the caller commits after each append.
pub use herd_core::OutputPos;

/// One piece of output to append.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// 1 = stdout, 2 = stderr.
    pub stream: u8,
    pub data: &'a [u8],
}

/// What a read returns, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Output of one stream (1 = stdout, 2 = stderr). Adjacent records of the same stream
    /// may come back merged or split differently than they were appended.
    Data { stream: u8, data: bytes::Bytes },
    /// This many data bytes were cut away (the cap's middle part, or tail data deleted
    /// while a slow reader was behind).
    Omitted { bytes: u64 },
}

/// A reader's place in a task's log. `Default` is the beginning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// 0 = head, k = `tail.<k>`.
    seg: u64,
    /// Byte offset in that file (at a frame boundary).
    off: u64,
    /// Stream offset (data bytes before this point), for computing `Omitted`.
    data: u64,
    /// Stream offset where the tail segment `seg` starts (its header); a reader checks it
    /// after reading, since a retired segment's file is reused. 0 = unknown.
    seg_start: u64,
}

/// The output store. Cheap to share (`Send + Sync`); callers serialize appends per task
/// (positions chain, so concurrent appends to one task make no sense) but may read, and
/// append to different tasks, concurrently.
#[derive(Debug)]
pub struct OutputLog {
    root: PathBuf,
    limits: Limits,
    handles: HandleCache,
}

impl OutputLog {
    /// `cap_bytes` is the per-task storage cap (at least 1 KiB is used): half for the head,
    /// the other half for four tail segments of cap/8 each.
    pub fn new(root: impl Into<PathBuf>, cap_bytes: u64) -> OutputLog {
        OutputLog {
            root: root.into(),
            limits: Limits::new(cap_bytes),
            handles: HandleCache::new(HANDLE_CACHE),
        }
    }

    fn task_dir(&self, task_id: &str) -> Result<PathBuf, OutlogError> {
        validate_task_id(task_id)?;
        Ok(self.root.join(task_id))
    }

    /// Runs `f` with the task's directory and its file handles, locked against other
    /// writers of the same task.
    fn with_files<T>(
        &self,
        task_id: &str,
        f: impl FnOnce(&Path, &mut handles::TaskFiles) -> Result<T, OutlogError>,
    ) -> Result<T, OutlogError> {
        let dir = self.task_dir(task_id)?;
        let slot = self.handles.slot(task_id);
        let mut files = lock(&slot);
        f(&dir, &mut files)
    }

    /// Appends records to the task's log, continuing from `pos` (the committed position),
    /// and returns the new position to commit. Blocking I/O (caller uses spawn_blocking).
    ///
    /// Nothing is fsynced: data survives a server crash (it is in the page cache), not a
    /// power cut. If the returned position is never committed, appending again from the
    /// old `pos` overwrites what this call wrote.
    pub fn append(
        &self,
        task_id: &str,
        pos: OutputPos,
        records: &[Record<'_>],
    ) -> Result<OutputPos, OutlogError> {
        self.with_files(task_id, |dir, files| {
            write::append(dir, self.limits, files, pos, records)
        })
    }

    /// Makes the files agree with a committed `pos` (truncate longer files, remove newer
    /// segments). Called for a task before its first append after a server start; calling
    /// it again with the same `pos` is harmless.
    pub fn recover(&self, task_id: &str, pos: OutputPos) -> Result<(), OutlogError> {
        self.with_files(task_id, |dir, files| {
            // The files are about to change length under the handle; start fresh.
            files.open = None;
            write::recover(dir, pos)
        })
    }

    /// Reads from `cursor` up to the committed `pos`, at most ~`max_bytes` of data (at least
    /// one frame, at most 64 KiB, when any is left), returning chunks and the new cursor.
    /// Data cut away before the cursor got there comes back as `Chunk::Omitted`. Returns
    /// no chunks when the cursor is at `pos`.
    pub fn read(
        &self,
        task_id: &str,
        pos: OutputPos,
        cursor: Cursor,
        max_bytes: usize,
    ) -> Result<(Vec<Chunk>, Cursor), OutlogError> {
        let dir = self.task_dir(task_id)?;
        read::read(&dir, pos, cursor, max_bytes)
    }

    /// Whether the task may hold files that `finish` should delete once it has ended (only
    /// a log whose tail retired segments has any).
    pub fn needs_finish(pos: OutputPos) -> bool {
        pos.tail_seg > layout::KEEP_SEGMENTS
    }

    /// The task ended at `pos` (or later): deletes its spare segment file and the retired
    /// segments kept for an older committed window, so what stays is the head and the kept
    /// tail. Harmless when there is nothing to delete.
    pub fn finish(&self, task_id: &str, pos: OutputPos) -> Result<(), OutlogError> {
        self.with_files(task_id, |dir, files| {
            files.open = None;
            write::finish(dir, pos)
        })
    }

    /// Deletes the task's files and returns how many bytes they held. Must not race with
    /// an append to the same task (the append would recreate them).
    pub fn remove(&self, task_id: &str) -> Result<u64, OutlogError> {
        let dir = self.task_dir(task_id)?;
        if let Some(slot) = self.handles.take(task_id) {
            // Wait for an in-flight append and close its handle.
            lock(&slot).open = None;
        }
        let bytes = dir_bytes(&dir)?;
        remove_dir(&dir)?;
        Ok(bytes)
    }

    /// Bytes held by every task's files (what retention's size budget counts).
    pub fn usage(&self) -> Result<u64, OutlogError> {
        use error::IoContext;
        let entries = match std::fs::read_dir(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            other => other.at(&self.root)?,
        };
        let mut total = 0;
        for entry in entries {
            let entry = entry.at(&self.root)?;
            if entry.file_type().at(&entry.path())?.is_dir() {
                total += dir_bytes(&entry.path())?;
            }
        }
        Ok(total)
    }
}

/// Bytes of the files directly in `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> Result<u64, OutlogError> {
    use error::IoContext;
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        other => other.at(dir)?,
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.at(dir)?;
        match entry.metadata() {
            Ok(m) if m.is_file() => total += m.len(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&entry.path()),
        }
    }
    Ok(total)
}

fn remove_dir(dir: &Path) -> Result<(), OutlogError> {
    use error::IoContext;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.at(dir),
    }
}
