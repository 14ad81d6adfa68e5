//! The write side: appending records from a committed position, and recovery that makes
//! the files agree with a committed position after a crash.
//!
//! Appends never trust what is on disk beyond `pos`: every write goes to an explicit offset
//! derived from `pos` (pwrite), and every new tail segment is created truncated. So a retry
//! from the same `pos` after an uncommitted append (crash, failed DB transaction) simply
//! overwrites the stale bytes, with or without `recover` in between.
//!
//! Retention: the head is frozen once full; the tail rolls to a new segment when the
//! current one is full and retires the one four back (see `retire` for how that stays
//! safe for the still-committed position).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, IoSlice};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::handles::TaskFiles;
use crate::layout::{
    FRAME_HDR, KEEP_SEGMENTS, Limits, MAX_FRAME_DATA, PADDING, SEG_HDR, SPARE, end_of, oldest_kept,
    parse_tail_name, seg_path, validate_pos, validate_stream,
};
use crate::{OutlogError, OutputPos, Record};

/// Frames are gathered and written in blocks of about this size: large enough that a
/// stream of small records costs few syscalls, small enough to bound the copy buffer.
const FLUSH_AT: usize = 1 << 20;
/// Frame data at least this long is written from the caller's buffer (`pwritev`); shorter
/// data is copied next to its header, so many small records make few iovecs.
const BORROW_AT: usize = 4096;
/// iovecs per `pwritev` (Linux accepts 1024).
const MAX_IOVECS: usize = 512;

pub(crate) fn append(
    dir: &Path,
    limits: Limits,
    files: &mut TaskFiles,
    pos: OutputPos,
    records: &[Record<'_>],
) -> Result<OutputPos, OutlogError> {
    validate_pos(pos)?;
    let mut data_len = 0usize;
    for r in records {
        validate_stream(r.stream)?;
        data_len = data_len.saturating_add(r.data.len());
    }
    if data_len == 0 {
        return Ok(pos);
    }
    let (seg, off) = end_of(pos);
    let mut w = Writer {
        dir,
        files,
        seg,
        base: off,
        buf: Vec::new(),
        pieces: Vec::new(),
        pending: 0,
    };
    let result = append_records(&mut w, limits, pos, records);
    if result.is_err() {
        // The handle may be mid-roll or for a half-created segment; reopen next time.
        w.files.open = None;
    }
    result
}

fn append_records<'r>(
    w: &mut Writer<'_, 'r>,
    limits: Limits,
    pos: OutputPos,
    records: &[Record<'r>],
) -> Result<OutputPos, OutlogError> {
    let mut p = pos;
    let mut cleaned = false;
    for r in records {
        let mut rest = r.data;
        while !rest.is_empty() {
            let (used, cap) = if p.tail_seg == 0 {
                (p.head_len, limits.head_cap)
            } else {
                (p.tail_len, limits.seg_cap)
            };
            let room = cap.saturating_sub(used);
            if room > FRAME_HDR {
                // Split the record's data where the file fills up so files never exceed
                // their cap; the reader merges adjacent same-stream frames again.
                let n = rest
                    .len()
                    .min(MAX_FRAME_DATA)
                    .min(usize::try_from(room - FRAME_HDR).unwrap_or(usize::MAX));
                let (now, later) = rest.split_at(n);
                w.push_frame(r.stream, now)?;
                let framed = FRAME_HDR + now.len() as u64;
                if p.tail_seg == 0 {
                    p.head_len += framed;
                } else {
                    p.tail_len += framed;
                }
                p.total += now.len() as u64;
                rest = later;
                continue;
            }
            // The current file is full: the head is frozen for good, or the tail rolls.
            let next = p.tail_seg + 1;
            w.flush()?;
            if p.tail_seg > 0 {
                // Cut stale bytes an earlier uncommitted attempt may have left past this
                // point: readers take a finished segment's length from the file itself.
                let path = seg_path(w.dir, p.tail_seg);
                handle(w.dir, w.files, p.tail_seg)?
                    .set_len(p.tail_len)
                    .at(&path)?;
            }
            if !cleaned {
                drop_leftovers(w.dir, pos)?;
                cleaned = true;
            }
            w.create_segment(next, p.total)?;
            p.tail_seg = next;
            p.tail_len = SEG_HDR;
            if let Some(victim) = next.checked_sub(KEEP_SEGMENTS).filter(|v| *v > 0) {
                retire(w.dir, pos, victim)?;
            }
        }
    }
    w.flush()?;
    Ok(p)
}

/// Takes segment `victim` out of the kept window after a roll. Until the caller commits
/// the new position, the committed `pos` still refers to its own window, and a crash now
/// must leave that window readable with exact accounting: a victim inside it stays whole
/// until the first roll of a later append (`drop_leftovers`), whose committed window no
/// longer holds it. Everything else is retired now.
fn retire(dir: &Path, pos: OutputPos, victim: u64) -> Result<(), OutlogError> {
    let committed = pos.tail_seg > 0 && victim >= oldest_kept(pos.tail_seg);
    if committed && victim <= pos.tail_seg {
        return Ok(());
    }
    recycle(dir, &seg_path(dir, victim))
}

/// Retires tail segments older than the committed window (what `retire` kept for an
/// earlier append's sake, or what a crash mid-roll left behind).
fn drop_leftovers(dir: &Path, pos: OutputPos) -> Result<(), OutlogError> {
    for path in segments_before_window(dir, pos)? {
        recycle(dir, &path)?;
    }
    Ok(())
}

/// The task ended: the spare and every tail segment older than `pos`'s window are deleted.
pub(crate) fn finish(dir: &Path, pos: OutputPos) -> Result<(), OutlogError> {
    remove_if_exists(&dir.join(SPARE))?;
    for path in segments_before_window(dir, pos)? {
        remove_if_exists(&path)?;
    }
    Ok(())
}

/// Tail segment files older than the window kept for `pos`.
fn segments_before_window(dir: &Path, pos: OutputPos) -> Result<Vec<PathBuf>, OutlogError> {
    if pos.tail_seg == 0 {
        return Ok(Vec::new());
    }
    let oldest = oldest_kept(pos.tail_seg);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(dir),
    };
    let mut old = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        if entry
            .file_name()
            .to_str()
            .and_then(parse_tail_name)
            .is_some_and(|k| k < oldest)
        {
            old.push(entry.path());
        }
    }
    Ok(old)
}

/// Retires a tail segment file: it becomes the task's spare (see `create_segment`) when
/// there is none, else it is deleted.
fn recycle(dir: &Path, path: &Path) -> Result<(), OutlogError> {
    let spare = dir.join(SPARE);
    if !spare.exists() {
        match fs::rename(path, &spare) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot keep a spare output segment")
            }
        }
    }
    remove_if_exists(path)
}

/// One piece of what a flush writes: a range of the writer's own buffer (headers, short
/// data) or the caller's data itself.
enum Piece<'r> {
    Own(usize, usize),
    Data(&'r [u8]),
}

/// Gathers frames for the file being appended to and writes them at explicit offsets, with
/// one `pwritev` per block: frame headers come from a small buffer, long data straight from
/// the caller's records (no copy in user space).
struct Writer<'a, 'r> {
    dir: &'a Path,
    files: &'a mut TaskFiles,
    /// Segment the pending pieces belong to (0 = head).
    seg: u64,
    /// File offset where the pending pieces go.
    base: u64,
    buf: Vec<u8>,
    pieces: Vec<Piece<'r>>,
    /// Bytes in `pieces`.
    pending: usize,
}

impl<'r> Writer<'_, 'r> {
    fn push_frame(&mut self, stream: u8, data: &'r [u8]) -> Result<(), OutlogError> {
        if self.pending + data.len() > FLUSH_AT || self.pieces.len() + 2 > MAX_IOVECS {
            self.flush()?;
        }
        // Frames are at most MAX_FRAME_DATA bytes, so the length always fits.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut hdr = [0u8; FRAME_HDR as usize];
        hdr[0] = stream;
        hdr[1..].copy_from_slice(&len.to_le_bytes());
        self.push_own(&hdr);
        if data.len() >= BORROW_AT {
            self.pieces.push(Piece::Data(data));
            self.pending += data.len();
        } else {
            self.push_own(data);
        }
        Ok(())
    }

    /// Copies `bytes` into the buffer, extending the last piece when it ends there.
    fn push_own(&mut self, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let end = self.buf.len();
        match self.pieces.last_mut() {
            Some(Piece::Own(_, e)) if *e == start => *e = end,
            _ => self.pieces.push(Piece::Own(start, end)),
        }
        self.pending += bytes.len();
    }

    fn flush(&mut self) -> Result<(), OutlogError> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let path = seg_path(self.dir, self.seg);
        let (seg, base) = (self.seg, self.base);
        let file = handle(self.dir, self.files, seg)?;
        let buf = &self.buf;
        let mut slices: Vec<IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Own(s, e) => IoSlice::new(&buf[*s..*e]),
                Piece::Data(d) => IoSlice::new(d),
            })
            .collect();
        pwrite_all_vectored(file, &mut slices, base).at(&path)?;
        self.base += self.pending as u64;
        self.pending = 0;
        self.pieces.clear();
        self.buf.clear();
        Ok(())
    }

    /// Starts tail segment `seg` (a stale file from an uncommitted attempt is replaced) and
    /// queues its header. The task's spare, a retired segment, becomes the new file when
    /// there is one: writing over pages a file already has costs the file system far less
    /// than growing a new file and freeing an old one. Its stale bytes past what is written
    /// are never read: the current segment is read up to the committed position, and a
    /// finished one is cut to its length when the tail rolls on. A reader still inside the
    /// retired segment notices the new header (`read`).
    fn create_segment(&mut self, seg: u64, start: u64) -> Result<(), OutlogError> {
        debug_assert!(self.pieces.is_empty());
        let path = seg_path(self.dir, seg);
        let reused = fs::rename(self.dir.join(SPARE), &path).is_ok();
        let file = open_in_dir(self.dir, &path, !reused)?;
        self.files.open = Some((seg, file));
        self.seg = seg;
        self.base = 0;
        self.push_own(&start.to_le_bytes());
        Ok(())
    }
}

/// Writes all of `slices` at `offset`, repeating after short writes.
fn pwrite_all_vectored(
    file: &File,
    mut slices: &mut [IoSlice<'_>],
    mut offset: u64,
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let at =
            i64::try_from(offset).map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
        match nix::sys::uio::pwritev(file, slices, at) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut slices, n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The cached handle for `seg`, opening (and creating) the file if the cache holds another
/// one. Existing contents are kept: writes go to offsets derived from `pos`.
fn handle<'f>(dir: &Path, files: &'f mut TaskFiles, seg: u64) -> Result<&'f File, OutlogError> {
    let file = match files.open.take() {
        Some((s, f)) if s == seg => f,
        _ => open_in_dir(dir, &seg_path(dir, seg), false)?,
    };
    Ok(&files.open.insert((seg, file)).1)
}

/// Opens `path` for writing, creating the task directory on first use.
fn open_in_dir(dir: &Path, path: &Path, truncate: bool) -> Result<File, OutlogError> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(truncate)
            .mode(0o600)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .at(dir)?;
            open().at(path)
        }
        other => other.at(path),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), OutlogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other.at(path),
    }
}

/// Truncates files longer than the committed `pos`, removes tail segments newer than it
/// (and ones older than the kept window, e.g. left by a crash mid-roll), and pads files
/// that came up short (lost writes after a power cut) with zeros, which parse as padding,
/// so later appends at `pos` offsets stay aligned.
pub(crate) fn recover(dir: &Path, pos: OutputPos) -> Result<(), OutlogError> {
    validate_pos(pos)?;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if pos != OutputPos::default() {
                tracing::warn!(dir = %dir.display(), ?pos, "output log directory missing for a non-empty committed position");
            }
            return Ok(());
        }
        Err(e) => return Err(e).at(dir),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(k) = name.to_str().and_then(parse_tail_name) else {
            continue;
        };
        if pos.tail_seg == 0 || k > pos.tail_seg || k < oldest_kept(pos.tail_seg) {
            remove_if_exists(&entry.path())?;
        }
    }
    set_len_exact(&seg_path(dir, 0), 0, pos.head_len)?;
    if pos.tail_seg > 0 {
        set_len_exact(&seg_path(dir, pos.tail_seg), SEG_HDR, pos.tail_len)?;
    }
    Ok(())
}

/// Sets the file's length to the committed `len`. A file that came up short may end in a
/// torn frame, which zero padding after it would turn into a valid-looking frame full of
/// zeros; so it is first cut back to its last whole frame (frames start at `first`).
fn set_len_exact(path: &Path, first: u64, len: u64) -> Result<(), OutlogError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if len > 0 {
                tracing::warn!(path = %path.display(), len, "committed output file missing; its data is lost");
            }
            return Ok(());
        }
        Err(e) => return Err(e).at(path),
    };
    let have = file.metadata().at(path)?.len();
    if have < len {
        tracing::warn!(path = %path.display(), have, committed = len, "output file shorter than committed; padding the gap");
        let whole = whole_frames_end(&file, first, have).at(path)?;
        file.set_len(whole).at(path)?;
    }
    if have != len {
        file.set_len(len).at(path)?;
    }
    Ok(())
}

/// End of the last complete frame (or padding run) in `file[first..have]`.
fn whole_frames_end(file: &File, first: u64, have: u64) -> std::io::Result<u64> {
    if have < first {
        return Ok(0);
    }
    let mut off = first;
    loop {
        let mut hdr = [0u8; FRAME_HDR as usize];
        if off >= have {
            return Ok(off);
        }
        if off + FRAME_HDR > have {
            // Room for padding bytes only.
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, off)?;
            if b[0] != PADDING {
                return Ok(off);
            }
            off += 1;
            continue;
        }
        file.read_exact_at(&mut hdr, off)?;
        if hdr[0] == PADDING {
            off += 1;
            continue;
        }
        let len = u64::from(u32::from_le_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]));
        let end = off + FRAME_HDR + len;
        if !matches!(hdr[0], 1 | 2) || len > MAX_FRAME_DATA as u64 || end > have {
            return Ok(off);
        }
        off = end;
    }
}
