//! herd-spool: the agent's on-disk spool of task events the server has not acknowledged.
//!
//! Owns everything under the directory passed to [`Spool::open`]:
//!
//! ```text
//! dir/tasks/<task_id>/<first_seq:020>.seg   records: u32 LE length + prost TaskEvent
//! dir/tasks/<task_id>/acked                 highest acknowledged seq (decimal; may lag)
//! dir/done/<task_id>                        tombstone: finished and fully acknowledged
//! ```
//!
//! Every event is appended before it is sent; after a reconnect the agent replays from
//! `acked_seq + 1`. Cost model: one `write` per append (no fsync: the spool protects
//! against agent restarts, and the page cache survives those), sequential reads through a
//! per-task cursor, and per-task memory of one small index entry per ~16 MiB segment.
//! The `acked` file may lag the real acknowledgement: replaying a few acknowledged
//! events is harmless (the server drops duplicates), losing an unacknowledged one is not,
//! so segments are only deleted after the acknowledgement that covers them is recorded.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod record;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use herd_proto::v1::{TaskEvent, task_event};

pub use error::SpoolError;

/// Roll to a new segment once the current one reaches this size; acknowledged data is
/// reclaimed in units of whole segments.
const SEGMENT_TARGET_BYTES: u64 = 16 << 20;
/// Tombstones answer `is_done` for this long; StartTask retries arrive well within it.
const TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Read cursors each hold a file descriptor; a backlog of many finished tasks must not
/// exhaust them. The least recently used cursor is closed beyond this many.
const MAX_READ_CURSORS: usize = 64;
/// Without a segment deletion or catching up, persist `acked` at most every this many
/// events; a lagging value only costs a bounded replay.
const ACK_PERSIST_EVERY: u64 = 4096;
const READ_BUF_BYTES: usize = 64 << 10;
const SCAN_BUF_BYTES: usize = 1 << 20;
const ACKED_FILE: &str = "acked";
const ACKED_TMP_FILE: &str = "acked.tmp";
/// A released segment kept for reuse as the task's next segment: writing over pages the
/// file already has costs the file system far less than growing a new file and freeing an
/// old one, for every few MiB of output.
const SPARE_FILE: &str = "spare";
const SEGMENT_EXT: &str = "seg";

/// What the spool knows about one task that still has files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolTask {
    pub task_id: String,
    /// Highest seq appended.
    pub last_seq: u64,
    pub acked_seq: u64,
    /// An `Exited` event was appended.
    pub finished: bool,
}

/// The spool. Not internally synchronized: the agent owns it behind one lock.
pub struct Spool {
    tasks_dir: PathBuf,
    done_dir: PathBuf,
    tasks: BTreeMap<String, TaskState>,
    tombstones: HashMap<String, SystemTime>,
    segment_target: u64,
    /// Reused for every append so encoding does not allocate per event.
    encode_buf: Vec<u8>,
    /// Monotonic counter to find the least recently used read cursor.
    tick: u64,
}

struct TaskState {
    dir: PathBuf,
    /// first_seq -> bytes of valid records. A segment's last seq is the next key - 1,
    /// or the task's `last_seq` for the final segment.
    segments: BTreeMap<u64, u64>,
    last_seq: u64,
    acked_seq: u64,
    /// Value last written to the `acked` file.
    persisted_acked: u64,
    finished: bool,
    /// Write handle of the final segment, opened lazily (recovered tasks that never
    /// append again, e.g. finished ones, hold no descriptor for writing). Records are
    /// written at the segment's indexed length: a reused file may hold stale bytes past it.
    writer: Option<File>,
    /// A released segment file waits as `spare` for reuse.
    spare: bool,
    /// The final segment is a reused file that may hold stale bytes past its indexed
    /// length; it is cut to that length once no more records go into it, so that recovery
    /// sees every earlier segment end cleanly.
    stale_tail: bool,
    cursor: Option<Cursor>,
}

/// Where the next sequential `read` continues, so it never re-scans.
struct Cursor {
    seg_first: u64,
    next_seq: u64,
    /// Never reads past the segment's indexed length (a reused file holds stale bytes
    /// there); the limit is raised as records are appended.
    reader: BufReader<io::Take<File>>,
    last_used: u64,
}

/// Creates `dir` and its missing parents for the owner only (0700): the spool holds the
/// output of tasks.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Takes group and others' rights off an existing `dir` (made by an earlier version, or
/// opened since).
fn owner_only(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Writes a small mark file (`acked`, a tombstone) readable by the owner only (0600).
fn write_private(path: &Path, body: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body)
}

impl Spool {
    /// Opens (creating) the spool in `dir`, recovering every task found; a torn last
    /// record (partial write) is truncated away. Tombstones older than 24 h are pruned.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        Self::open_with_segment_target(dir, SEGMENT_TARGET_BYTES)
    }

    fn open_with_segment_target(dir: &Path, segment_target: u64) -> Result<Spool, SpoolError> {
        let tasks_dir = dir.join("tasks");
        let done_dir = dir.join("done");
        for d in [&tasks_dir, &done_dir] {
            private_dir(d).map_err(SpoolError::io(d))?;
        }
        for d in [dir, &tasks_dir, &done_dir] {
            owner_only(d).map_err(SpoolError::io(d))?;
        }
        let mut spool = Spool {
            tasks_dir,
            done_dir,
            tasks: BTreeMap::new(),
            tombstones: HashMap::new(),
            segment_target,
            encode_buf: Vec::new(),
            tick: 0,
        };
        spool.load_tombstones()?;
        spool.recover_tasks()?;
        Ok(spool)
    }

    pub fn tasks(&self) -> Vec<SpoolTask> {
        self.tasks
            .iter()
            .map(|(id, t)| SpoolTask {
                task_id: id.clone(),
                last_seq: t.last_seq,
                acked_seq: t.acked_seq,
                finished: t.finished,
            })
            .collect()
    }

    /// Appends `ev`; `ev.seq` must equal last_seq + 1 for its task (else an error).
    /// Creates the task on its first event.
    pub fn append(&mut self, ev: &TaskEvent) -> Result<(), SpoolError> {
        let id = ev.task_id.as_str();
        if !self.tasks.contains_key(id) {
            validate_task_id(id)?;
            if self.is_done(id) {
                return Err(SpoolError::AlreadyDone(id.to_owned()));
            }
            if ev.seq != 1 {
                return Err(SpoolError::SeqGap {
                    task_id: id.to_owned(),
                    expected: 1,
                    got: ev.seq,
                });
            }
            let dir = self.tasks_dir.join(id);
            private_dir(&dir).map_err(SpoolError::io(&dir))?;
            self.tasks.insert(id.to_owned(), TaskState::new(dir));
        }
        let target = self.segment_target;
        let Some(task) = self.tasks.get_mut(id) else {
            unreachable!("task inserted above");
        };
        task.append(id, ev, target, &mut self.encode_buf)
    }

    /// Cumulative acknowledgement. Deletes segments whose events are all acknowledged.
    /// When the task is finished and everything is acknowledged, removes the task's files
    /// and leaves a tombstone (so `is_done` answers true).
    pub fn ack(&mut self, task_id: &str, seq: u64) -> Result<(), SpoolError> {
        let Some(task) = self.tasks.get_mut(task_id) else {
            // Duplicate ack after the task was tombstoned, or a task this agent never
            // spooled: nothing to release either way.
            tracing::debug!(task_id, seq, "spool: ack for unknown task ignored");
            return Ok(());
        };
        let mut seq = seq;
        if seq > task.last_seq {
            // Acknowledging more than exists releases everything we have; clamping
            // keeps `acked_seq <= last_seq` so later appends stay contiguous.
            tracing::warn!(
                task_id,
                seq,
                last_seq = task.last_seq,
                "spool: ack beyond last appended seq"
            );
            seq = task.last_seq;
        }
        if seq <= task.acked_seq {
            return Ok(());
        }
        task.acked_seq = seq;
        if task.finished && seq == task.last_seq {
            return self.retire(task_id);
        }
        task.release_acked()
    }

    /// Pushes events of `task_id` with seq >= from_seq, in order, stopping once their
    /// encoded size reaches max_bytes (always at least one event if any is available).
    /// Sequential calls continue from the task's read cursor; any other `from_seq` seeks
    /// via the segment index and scans only within one segment. Events below the oldest
    /// retained segment were acknowledged and deleted; reading starts after them.
    pub fn read(
        &mut self,
        task_id: &str,
        from_seq: u64,
        max_bytes: usize,
        out: &mut Vec<TaskEvent>,
    ) -> Result<(), SpoolError> {
        self.tick += 1;
        let tick = self.tick;
        let Some(task) = self.tasks.get_mut(task_id) else {
            return Ok(());
        };
        let Some((&oldest, _)) = task.segments.first_key_value() else {
            return Ok(());
        };
        let from = from_seq.max(oldest);
        if from > task.last_seq {
            return Ok(());
        }
        let reusable = task
            .cursor
            .as_ref()
            .is_some_and(|c| c.next_seq == from && task.segments.contains_key(&c.seg_first));
        if !reusable {
            task.cursor = None;
            self.evict_cursors(task_id);
        }
        let Some(task) = self.tasks.get_mut(task_id) else {
            return Ok(());
        };
        let mut cursor = match task.cursor.take() {
            Some(c) => c,
            None => task.seek(from, tick)?,
        };
        cursor.last_used = tick;
        // The cursor is only put back on success: after an error its position is unknown.
        task.read_into(task_id, &mut cursor, max_bytes, out)?;
        task.cursor = Some(cursor);
        Ok(())
    }

    /// True if the task finished and was fully acknowledged within the last 24 h
    /// (tombstone present). Used to make StartTask idempotent.
    pub fn is_done(&self, task_id: &str) -> bool {
        self.tombstones
            .get(task_id)
            .is_some_and(|at| age(*at) <= TOMBSTONE_TTL)
    }

    /// Highest seq appended for `task_id`; 0 if unknown.
    pub fn last_seq(&self, task_id: &str) -> u64 {
        self.tasks.get(task_id).map_or(0, |t| t.last_seq)
    }

    /// Closes least recently used read cursors (other than `keep`'s) so that opening one
    /// more stays within `MAX_READ_CURSORS`. Linear, but only runs when a cursor is
    /// (re)created, i.e. on reconnect or non-sequential reads.
    fn evict_cursors(&mut self, keep: &str) {
        loop {
            let open = self.tasks.values().filter(|t| t.cursor.is_some()).count();
            if open < MAX_READ_CURSORS {
                return;
            }
            let lru = self
                .tasks
                .iter_mut()
                .filter(|(id, t)| id.as_str() != keep && t.cursor.is_some())
                .min_by_key(|(_, t)| t.cursor.as_ref().map_or(u64::MAX, |c| c.last_used));
            match lru {
                Some((_, t)) => t.cursor = None,
                None => return,
            }
        }
    }

    /// Finished and fully acknowledged: tombstone first, then delete, so a crash in
    /// between is completed by the next `open` instead of resurrecting the task.
    fn retire(&mut self, task_id: &str) -> Result<(), SpoolError> {
        let path = self.done_dir.join(task_id);
        write_private(&path, b"done\n").map_err(SpoolError::io(&path))?;
        let now = SystemTime::now();
        self.tombstones.retain(|_, at| age(*at) <= TOMBSTONE_TTL);
        self.tombstones.insert(task_id.to_owned(), now);
        if let Some(task) = self.tasks.remove(task_id) {
            let dir = task.dir.clone();
            drop(task); // close descriptors before unlinking
            if let Err(e) = fs::remove_dir_all(&dir) {
                // The tombstone is written, so `open` finishes this removal later.
                tracing::warn!(task_id, error = %e, "spool: removing finished task dir");
            }
        }
        Ok(())
    }

    fn load_tombstones(&mut self) -> Result<(), SpoolError> {
        let entries = fs::read_dir(&self.done_dir).map_err(SpoolError::io(&self.done_dir))?;
        for entry in entries {
            let entry = entry.map_err(SpoolError::io(&self.done_dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_task_id(&name).is_err() {
                continue;
            }
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(SpoolError::io(&path))?;
            if age(mtime) > TOMBSTONE_TTL {
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "spool: pruning tombstone");
                }
            } else {
                self.tombstones.insert(name, mtime);
            }
        }
        Ok(())
    }

    fn recover_tasks(&mut self) -> Result<(), SpoolError> {
        let entries = fs::read_dir(&self.tasks_dir).map_err(SpoolError::io(&self.tasks_dir))?;
        let mut scratch = Vec::new();
        let mut to_retire = Vec::new();
        for entry in entries {
            let entry = entry.map_err(SpoolError::io(&self.tasks_dir))?;
            let path = entry.path();
            let name = entry.file_name().to_str().map(str::to_owned);
            let Some(id) = name.filter(|n| validate_task_id(n).is_ok()) else {
                tracing::warn!(path = %path.display(), "spool: ignoring unexpected entry");
                continue;
            };
            if !entry.file_type().map_err(SpoolError::io(&path))?.is_dir() {
                continue;
            }
            if self.tombstones.contains_key(&id) {
                // Crashed between writing the tombstone and deleting the task.
                fs::remove_dir_all(&path).map_err(SpoolError::io(&path))?;
                continue;
            }
            let Some(mut task) = TaskState::recover(&id, path, &mut scratch)? else {
                continue;
            };
            if task.finished && task.acked_seq == task.last_seq {
                to_retire.push(id.clone());
            } else {
                task.release_acked()?;
            }
            self.tasks.insert(id, task);
        }
        for id in to_retire {
            self.retire(&id)?;
        }
        Ok(())
    }
}

impl Drop for Spool {
    /// Best effort: record acknowledgements not yet persisted so a clean restart replays
    /// nothing twice. Failure only means a longer (harmless) replay.
    fn drop(&mut self) {
        for (id, task) in &mut self.tasks {
            if task.acked_seq > task.persisted_acked
                && let Err(e) = task.persist_acked()
            {
                tracing::warn!(task_id = %id, error = %e, "spool: persisting acked on drop");
            }
        }
    }
}

impl TaskState {
    fn new(dir: PathBuf) -> TaskState {
        TaskState {
            dir,
            segments: BTreeMap::new(),
            last_seq: 0,
            acked_seq: 0,
            persisted_acked: 0,
            finished: false,
            writer: None,
            spare: false,
            stale_tail: false,
            cursor: None,
        }
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(format!("{first_seq:020}.{SEGMENT_EXT}"))
    }

    /// Last seq stored in the segment starting at `first`.
    fn segment_last_seq(&self, first: u64) -> u64 {
        self.segments
            .range(first + 1..)
            .next()
            .map_or(self.last_seq, |(&next, _)| next - 1)
    }

    fn append(
        &mut self,
        task_id: &str,
        ev: &TaskEvent,
        segment_target: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), SpoolError> {
        if self.finished {
            return Err(SpoolError::Finished(task_id.to_owned()));
        }
        if ev.seq != self.last_seq + 1 {
            return Err(SpoolError::SeqGap {
                task_id: task_id.to_owned(),
                expected: self.last_seq + 1,
                got: ev.seq,
            });
        }
        let data = record::encode_split(ev, buf)?;
        let first = self.prepare_writer(ev.seq, segment_target)?;
        let seg_len = self.segments.get(&first).copied().unwrap_or(0);
        let Some(file) = self.writer.as_mut() else {
            unreachable!("prepare_writer opened the writer");
        };
        // One write per record: the data is in the page cache (and visible to readers)
        // when this returns, without the cost of an fsync.
        let record_len = buf.len() + data.len();
        let slices = &mut [IoSlice::new(buf), IoSlice::new(data)];
        if let Err(e) = pwrite_all_vectored(file, slices, seg_len) {
            // Cut off whatever part of the record made it, so the segment stays a clean
            // sequence of records; reopen the writer on the next append.
            let _ = file.set_len(seg_len);
            self.writer = None;
            self.stale_tail = false;
            return Err(SpoolError::Io {
                path: self.segment_path(first),
                source: e,
            });
        }
        self.segments.insert(first, seg_len + record_len as u64);
        self.last_seq = ev.seq;
        if matches!(ev.kind, Some(task_event::Kind::Exited(_))) {
            self.finished = true;
            self.cut_stale_tail()?;
            // Nothing may follow Exited, so the descriptor is no longer needed.
            self.writer = None;
        }
        Ok(())
    }

    /// Makes `self.writer` the append handle of the segment `seq` goes into, rolling to
    /// a new segment when the current one is full. Returns that segment's first seq.
    fn prepare_writer(&mut self, seq: u64, segment_target: u64) -> Result<u64, SpoolError> {
        let last = self.segments.last_key_value().map(|(&f, &len)| (f, len));
        if let Some((first, len)) = last
            && len < segment_target
        {
            if self.writer.is_none() {
                let path = self.segment_path(first);
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(SpoolError::io(&path))?;
                self.writer = Some(file);
            }
            return Ok(first);
        }
        self.cut_stale_tail()?;
        self.writer = None;
        let path = self.segment_path(seq);
        // Reuse the spare: its stale records all precede `seq`, so recovery, which checks
        // every record's seq against the segment's, stops at them as at a torn tail.
        let reused = self.spare && fs::rename(self.dir.join(SPARE_FILE), &path).is_ok();
        self.spare = false;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(SpoolError::io(&path))?;
        // A leftover file of this name can only hold events we no longer account for. Truncate
        // only then: on ext4 a truncate to zero makes close() write the file back, which
        // would push every segment to disk just before it is deleted.
        if !reused && file.metadata().map_err(SpoolError::io(&path))?.len() > 0 {
            file.set_len(0).map_err(SpoolError::io(&path))?;
        }
        self.stale_tail = reused;
        self.segments.insert(seq, 0);
        self.writer = Some(file);
        Ok(seq)
    }

    /// Cuts a reused final segment to its indexed length (see `stale_tail`).
    fn cut_stale_tail(&mut self) -> Result<(), SpoolError> {
        if !self.stale_tail {
            return Ok(());
        }
        if let (Some(file), Some((&first, &len))) = (&self.writer, self.segments.last_key_value()) {
            file.set_len(len)
                .map_err(SpoolError::io(&self.segment_path(first)))?;
        }
        self.stale_tail = false;
        Ok(())
    }

    /// Deletes every segment, except the final one that appends go to, whose events are
    /// all acknowledged, and persists `acked` when worthwhile.
    fn release_acked(&mut self) -> Result<(), SpoolError> {
        let mut doomed = Vec::new();
        let mut firsts = self.segments.keys().copied();
        let mut cur = firsts.next();
        for next in firsts {
            match cur {
                Some(first) if next - 1 <= self.acked_seq => doomed.push(first),
                _ => break,
            }
            cur = Some(next);
        }
        let caught_up = self.acked_seq == self.last_seq;
        let lag = self.acked_seq - self.persisted_acked;
        if !doomed.is_empty() || (caught_up && lag > 0) || lag >= ACK_PERSIST_EVERY {
            // Recorded before deleting; recovery also derives acked from the oldest
            // remaining segment, so either order would be safe, but this one is obvious.
            self.persist_acked()?;
        }
        for first in doomed {
            let path = self.segment_path(first);
            let gone = if self.spare {
                fs::remove_file(&path)
            } else {
                fs::rename(&path, self.dir.join(SPARE_FILE)).map(|()| self.spare = true)
            };
            match gone {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::Io { path, source: e }),
            }
            self.segments.remove(&first);
            if self.cursor.as_ref().is_some_and(|c| c.seg_first == first) {
                self.cursor = None;
            }
        }
        Ok(())
    }

    fn persist_acked(&mut self) -> Result<(), SpoolError> {
        let tmp = self.dir.join(ACKED_TMP_FILE);
        let dst = self.dir.join(ACKED_FILE);
        write_private(&tmp, format!("{}\n", self.acked_seq).as_bytes())
            .map_err(SpoolError::io(&tmp))?;
        fs::rename(&tmp, &dst).map_err(SpoolError::io(&dst))?;
        self.persisted_acked = self.acked_seq;
        Ok(())
    }

    /// Opens a cursor at `seq`: find the segment by index, skip records by their length
    /// headers (no decoding) up to `seq`.
    fn seek(&self, seq: u64, tick: u64) -> Result<Cursor, SpoolError> {
        let Some((&first, _)) = self.segments.range(..=seq).next_back() else {
            unreachable!("caller clamps seq to the oldest segment");
        };
        let path = self.segment_path(first);
        let mut file = File::open(&path).map_err(SpoolError::io(&path))?;
        let mut skipper = BufReader::with_capacity(READ_BUF_BYTES, &file);
        for _ in first..seq {
            record::skip(&mut skipper, &path)?;
        }
        let at = skipper.stream_position().map_err(SpoolError::io(&path))?;
        drop(skipper);
        file.seek(SeekFrom::Start(at))
            .map_err(SpoolError::io(&path))?;
        Ok(Cursor {
            seg_first: first,
            next_seq: seq,
            reader: BufReader::with_capacity(READ_BUF_BYTES, file.take(0)),
            last_used: tick,
        })
    }

    /// Lets the cursor's reader read up to its segment's indexed length, no further.
    fn bound_reader(&self, cursor: &mut Cursor) -> Result<(), SpoolError> {
        let valid = self.segments.get(&cursor.seg_first).copied().unwrap_or(0);
        let path = || self.segment_path(cursor.seg_first);
        let take = cursor.reader.get_mut();
        let pulled = take
            .get_mut()
            .stream_position()
            .map_err(|e| SpoolError::Io {
                path: path(),
                source: e,
            })?;
        take.set_limit(valid.saturating_sub(pulled));
        Ok(())
    }

    fn read_into(
        &self,
        task_id: &str,
        cursor: &mut Cursor,
        max_bytes: usize,
        out: &mut Vec<TaskEvent>,
    ) -> Result<(), SpoolError> {
        let mut total = 0usize;
        let mut pushed = false;
        self.bound_reader(cursor)?;
        while cursor.next_seq <= self.last_seq && !(pushed && total >= max_bytes) {
            if cursor.next_seq > self.segment_last_seq(cursor.seg_first) {
                // Segments are contiguous, so the next one starts exactly here.
                let next = cursor.next_seq;
                let path = self.segment_path(next);
                let file = File::open(&path).map_err(SpoolError::io(&path))?;
                cursor.reader = BufReader::with_capacity(READ_BUF_BYTES, file.take(0));
                cursor.seg_first = next;
                self.bound_reader(cursor)?;
            }
            let (ev, len) = record::read_expected(&mut cursor.reader, task_id, cursor.next_seq)
                .map_err(|reason| SpoolError::Corrupt {
                    path: self.segment_path(cursor.seg_first),
                    reason,
                })?;
            out.push(ev);
            pushed = true;
            total += len;
            cursor.next_seq += 1;
        }
        Ok(())
    }

    /// Rebuilds a task from its directory. Segments are validated record by record; the
    /// first bad record is where the file is cut, and anything after it (including later
    /// segments, which could no longer be contiguous) is dropped. Returns `None` when
    /// there is nothing worth tracking.
    fn recover(
        task_id: &str,
        dir: PathBuf,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<TaskState>, SpoolError> {
        let mut task = TaskState::new(dir);
        let mut firsts = Vec::new();
        let entries = fs::read_dir(&task.dir).map_err(SpoolError::io(&task.dir))?;
        for entry in entries {
            let entry = entry.map_err(SpoolError::io(&task.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".seg")
                && stem.len() == 20
                && let Ok(first) = stem.parse::<u64>()
                && first > 0
            {
                firsts.push(first);
            } else if name == ACKED_TMP_FILE {
                let _ = fs::remove_file(entry.path());
            } else if name == SPARE_FILE {
                task.spare = true;
            }
        }
        firsts.sort_unstable();

        let acked_path = task.dir.join(ACKED_FILE);
        let acked_file = match fs::read_to_string(&acked_path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or_else(|_| {
                tracing::warn!(task_id, "spool: unreadable acked file, assuming 0");
                0
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(SpoolError::Io {
                    path: acked_path,
                    source: e,
                });
            }
        };

        let mut expected_first: Option<u64> = None;
        let mut broken = false;
        for first in firsts {
            let path = task.segment_path(first);
            if broken || expected_first.is_some_and(|e| e != first) {
                if !broken {
                    tracing::warn!(task_id, path = %path.display(), "spool: gap before segment, dropping it and later ones");
                }
                broken = true;
                fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                continue;
            }
            let file = File::open(&path).map_err(SpoolError::io(&path))?;
            let mut reader = BufReader::with_capacity(SCAN_BUF_BYTES, file);
            let scan = record::scan(&mut reader, task_id, first, scratch)
                .map_err(SpoolError::io(&path))?;
            if let Some(reason) = &scan.torn {
                tracing::warn!(task_id, path = %path.display(), reason, valid_len = scan.valid_len, "spool: truncating torn segment");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(SpoolError::io(&path))?;
                f.set_len(scan.valid_len).map_err(SpoolError::io(&path))?;
                broken = true;
            }
            if scan.count == 0 {
                fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                continue;
            }
            task.segments.insert(first, scan.valid_len);
            task.last_seq = scan.last_seq;
            task.finished |= scan.saw_exited;
            expected_first = Some(scan.last_seq + 1);
        }
        scratch.clear();
        scratch.shrink_to(SCAN_BUF_BYTES);

        if task.segments.is_empty() && acked_file == 0 {
            let _ = fs::remove_dir_all(&task.dir);
            return Ok(None);
        }
        if acked_file > task.last_seq {
            // The acknowledgement outlived segment data (e.g. page cache lost in a power
            // cut): what is left is all acknowledged, and the index must not claim the
            // final segment reaches `last_seq`.
            for first in std::mem::take(&mut task.segments).into_keys() {
                let path = task.segment_path(first);
                fs::remove_file(&path).map_err(SpoolError::io(&path))?;
            }
            task.finished = false;
        }
        // Segments are deleted only once acknowledged, so everything before the oldest
        // one was acknowledged even if the `acked` file lags.
        let oldest = task.segments.first_key_value().map_or(0, |(&f, _)| f);
        task.last_seq = task.last_seq.max(acked_file);
        task.acked_seq = acked_file.max(oldest.saturating_sub(1)).min(task.last_seq);
        task.persisted_acked = acked_file.min(task.acked_seq);
        Ok(Some(task))
    }
}

/// Writes all of `bufs` at `offset` (one `pwritev` per call, repeated after a short write).
fn pwrite_all_vectored(
    file: &File,
    mut bufs: &mut [IoSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let at = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match nix::sys::uio::pwritev(file, bufs, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn validate_task_id(id: &str) -> Result<(), SpoolError> {
    // Ids come from the network and name files: the one rule of herd-core.
    if herd_core::is_valid_id(id) {
        Ok(())
    } else {
        Err(SpoolError::InvalidTaskId(id.to_owned()))
    }
}

/// How long ago `t` was; a timestamp in the future (clock stepped back) counts as now.
fn age(t: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
}
