//! Copy tasks (`herd cp`): each file's blob is read from the server over the agent's own
//! connection (`ReadBlob`, ≤1 MiB chunks) into `DEST.herd-part`, hashed as it arrives, and,
//! once whole and its SHA-256 is the one asked for, given its mode and renamed onto the
//! destination. A broken connection resumes from the part's length once the next session
//! is up; an agent that restarts finds the copy's start in `STATE_DIR/copies` and resumes
//! it the same way. Files of [`DIRECT_MIN`] bytes or more are written with `O_DIRECT` in
//! aligned blocks gathered in a buffer of the copy's own (the tail through the page cache at
//! the end): the copy is fsynced before it counts anyway, and on a fleet-wide copy the page
//! cache path cost several times the CPU of the direct one; a file system that refuses
//! `O_DIRECT` gets the page cache path. File bytes never go through the task's events: the task reports only
//! how it ended (and a one-line reason on stderr when it failed).

use std::io::{Read as _, Seek as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herd_exec::{Control, ExecEvent, ExitInfo, ExitReason, OutStream};
use herd_proto::v1::agent_hub_client::AgentHubClient;
use herd_proto::v1::{self as pb};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// The connection of the current session, for reading blobs; `None` between sessions.
#[derive(Clone)]
pub struct Link {
    pub channel: Channel,
    pub bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

pub type LinkWatch = watch::Receiver<Option<Link>>;

/// Wait before reading again after the connection broke.
pub(crate) const RETRY: Duration = Duration::from_millis(500);

/// Files at least this large are written with `O_DIRECT`.
pub const DIRECT_MIN: u64 = 8 << 20;
/// Alignment of direct writes: file offset, length and buffer address.
const ALIGN: usize = 4096;
/// Bytes gathered before a direct write.
const DIRECT_BUF: usize = 2 << 20;

/// Why a file transfer did not complete.
pub(crate) enum Failed {
    Cancelled,
    Error(String),
}

/// Runs a copy task to its end and reports it as the events of a task: `Started` (unless
/// `resumed`: the previous agent process reported it), then one `Exited`.
pub async fn run(
    files: Vec<pb::CopyFile>,
    link: LinkWatch,
    events: mpsc::Sender<ExecEvent>,
    control: mpsc::Receiver<Control>,
    resumed: bool,
) {
    let work = async move {
        for f in &files {
            copy_one(f, link.clone()).await?;
        }
        Ok(())
    };
    report(work, events, control, resumed).await;
}

/// Reports a file transfer (`work`) as the events of a task: `Started` (unless `resumed`: the
/// previous agent process reported it), then one `Exited` when the work ends or is cancelled
/// (with its one-line reason on stderr when it failed).
pub(crate) async fn report(
    work: impl std::future::Future<Output = Result<(), Failed>>,
    events: mpsc::Sender<ExecEvent>,
    mut control: mpsc::Receiver<Control>,
    resumed: bool,
) {
    let start = Instant::now();
    if !resumed {
        let _ = events
            .send(ExecEvent::Started {
                pid: std::process::id(),
            })
            .await;
    }
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            c = control.recv() => match c {
                Some(Control::Cancel { .. }) | None => break Err(Failed::Cancelled),
                Some(_) => {}
            },
        }
    };
    let duration = start.elapsed();
    let exit = match result {
        Ok(()) => ExitInfo {
            code: Some(0),
            signal: None,
            reason: ExitReason::Exited,
            duration,
            detail: String::new(),
            outputs: Default::default(),
        },
        Err(Failed::Cancelled) => ExitInfo {
            code: None,
            signal: None,
            reason: ExitReason::Cancelled,
            duration,
            detail: "the transfer was cancelled".into(),
            outputs: Default::default(),
        },
        Err(Failed::Error(line)) => {
            let _ = events
                .send(ExecEvent::Output {
                    stream: OutStream::Stderr,
                    data: Bytes::from(format!("{line}\n")),
                })
                .await;
            ExitInfo {
                code: Some(1),
                signal: None,
                reason: ExitReason::Exited,
                duration,
                detail: line,
                outputs: Default::default(),
            }
        }
    };
    let _ = events.send(ExecEvent::Exited(exit)).await;
}

/// Where the file goes: `dest` itself, or `dest/name` when `dest` is a directory.
fn destination(f: &pb::CopyFile) -> PathBuf {
    let dest = Path::new(&f.dest);
    if f.dest.ends_with('/') || dest.is_dir() {
        dest.join(&f.name)
    } else {
        dest.to_path_buf()
    }
}

/// One line for an I/O failure a person can act on.
pub(crate) fn io_line(what: &str, path: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "permission denied — choose a path the agent's user may write".to_string()
        }
        std::io::ErrorKind::NotFound => {
            "no such directory — create it first or choose another destination".to_string()
        }
        std::io::ErrorKind::StorageFull => {
            "no space left on the device — free some space and copy again".to_string()
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            "read-only file system — choose another destination".to_string()
        }
        _ => format!("{e} — check the destination and copy again"),
    };
    format!("herd: cannot {what} {}: {why}", path.display())
}

pub(crate) fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, Failed> {
    r.map_err(|e| Failed::Error(format!("herd: copy failed: {e}")))
}

/// The part file opened for writing, its length, and the hash of what it holds. With
/// `aligned`, a length that is not a multiple of [`ALIGN`] is cut back to one (direct writes
/// continue from there).
fn open_part(
    part: &Path,
    size: u64,
    aligned: bool,
) -> std::io::Result<(std::fs::File, u64, Sha256)> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(part)?;
    let mut len = file.metadata()?.len();
    if len > size {
        len = 0;
    }
    if aligned {
        len -= len % ALIGN as u64;
    }
    if len != file.metadata()?.len() {
        file.set_len(len)?;
    }
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buf[..left.min(1 << 20) as usize])?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((file, len, hash))
}

/// Writes what arrives to the part file from its current length on: straight through the
/// page cache, or, with a direct handle, gathered into aligned blocks written with
/// `O_DIRECT` and the unaligned tail through the page cache at the end.
struct PartWriter {
    /// The part file (the tail, fsync, and everything when not direct).
    file: std::fs::File,
    /// The same file opened with `O_DIRECT`; dropped if the file system refuses a write.
    direct: Option<std::fs::File>,
    /// Bytes of the file written so far.
    pos: u64,
    /// `DIRECT_BUF` bytes starting at `off` are aligned to `ALIGN`; `fill` of them are used.
    buf: Vec<u8>,
    off: usize,
    fill: usize,
}

impl PartWriter {
    fn new(part: &Path, file: std::fs::File, pos: u64, direct: bool) -> PartWriter {
        let mut w = PartWriter {
            file,
            direct: None,
            pos,
            buf: Vec::new(),
            off: 0,
            fill: 0,
        };
        if !direct || !pos.is_multiple_of(ALIGN as u64) {
            return w;
        }
        let buf = vec![0u8; DIRECT_BUF + ALIGN];
        let off = buf.as_ptr().align_offset(ALIGN);
        if off >= ALIGN {
            return w;
        }
        // A file system without O_DIRECT refuses the open (EINVAL): the page cache it is.
        w.direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(part)
            .ok();
        if w.direct.is_some() {
            w.buf = buf;
            w.off = off;
        }
        w
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        if self.direct.is_none() && self.fill == 0 {
            self.file.write_all_at(data, self.pos)?;
            self.pos += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            let n = (DIRECT_BUF - self.fill).min(data.len());
            let at = self.off + self.fill;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == DIRECT_BUF {
                self.write_out(false)?;
            }
        }
        Ok(())
    }

    /// Writes the gathered whole blocks (and with `last`, the tail too).
    fn write_out(&mut self, last: bool) -> std::io::Result<()> {
        let aligned = self.fill - self.fill % ALIGN;
        let n = if last { self.fill } else { aligned };
        let data = &self.buf[self.off..self.off + n];
        let mut done = false;
        if let Some(d) = &self.direct
            && aligned > 0
        {
            match d.write_all_at(&data[..aligned], self.pos) {
                Ok(()) => done = true,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        if !done {
            self.file.write_all_at(&data[..aligned], self.pos)?;
        }
        self.file
            .write_all_at(&data[aligned..], self.pos + aligned as u64)?;
        self.pos += n as u64;
        self.buf
            .copy_within(self.off + n..self.off + self.fill, self.off);
        self.fill -= n;
        Ok(())
    }

    /// Writes what is left; the part file, for fsync.
    fn finish(mut self) -> std::io::Result<std::fs::File> {
        if self.fill > 0 {
            self.write_out(true)?;
        }
        Ok(self.file)
    }
}

async fn copy_one(f: &pb::CopyFile, mut link: LinkWatch) -> Result<(), Failed> {
    let spec = f.clone();
    let (dest, part, opened) = joined(
        tokio::task::spawn_blocking(move || {
            let dest = destination(&spec);
            let mut part = dest.clone().into_os_string();
            part.push(".herd-part");
            let part = PathBuf::from(part);
            let direct = spec.size >= DIRECT_MIN;
            let opened = open_part(&part, spec.size, direct)
                .map(|(file, len, hash)| (PartWriter::new(&part, file, len, direct), len, hash));
            (dest, part, opened)
        })
        .await,
    )?;
    let (mut file, mut len, mut hash) =
        opened.map_err(|e| Failed::Error(io_line("write", &part, &e)))?;
    while len < f.size {
        let current = link.borrow_and_update().clone();
        let Some(l) = current else {
            // Between sessions: wait for the next one.
            if link.changed().await.is_err() {
                return Err(Failed::Error(
                    "herd: copy failed: the agent is stopping".into(),
                ));
            }
            continue;
        };
        let mut client = AgentHubClient::new(l.channel).max_decoding_message_size(4 << 20);
        let mut req = tonic::Request::new(pb::ReadBlobRequest {
            digest: f.digest.clone(),
            offset: len,
        });
        req.metadata_mut().insert("authorization", l.bearer);
        let mut stream = match client.read_blob(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(Failed::Error(format!(
                    "herd: cannot copy {}: the server does not hold its content ({}) — upload it again with herd cp",
                    f.name,
                    s.message()
                )));
            }
            Err(s) if s.code() == tonic::Code::PermissionDenied => {
                return Err(Failed::Error(format!(
                    "herd: cannot copy {}: the server refused it: {}",
                    f.name,
                    s.message()
                )));
            }
            Err(s) => {
                tracing::info!(error = %s.message(), "reading a blob failed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let chunk = match stream.message().await {
                Ok(Some(c)) => c.data,
                Ok(None) => break,
                Err(s) => {
                    tracing::info!(error = %s.message(), "reading a blob broke off; resuming");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            };
            if len + chunk.len() as u64 > f.size {
                return Err(Failed::Error(format!(
                    "herd: cannot copy {}: the server sent more than its {} bytes — upload it again",
                    f.name, f.size
                )));
            }
            let p = part.clone();
            let n = chunk.len() as u64;
            let (fl, h, r) = joined(
                tokio::task::spawn_blocking(move || {
                    let r = file.write(&chunk);
                    hash.update(&chunk);
                    (file, hash, r)
                })
                .await,
            )?;
            (file, hash) = (fl, h);
            r.map_err(|e| Failed::Error(io_line("write", &p, &e)))?;
            len += n;
        }
    }
    let got = hex::encode(hash.finalize());
    if got != f.digest {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Failed::Error(format!(
            "herd: cannot copy {} to {}: checksum mismatch (SHA-256 {got}, expected {}) — copy it again",
            f.name,
            dest.display(),
            f.digest
        )));
    }
    let mode = f.mode & 0o7777;
    let (p, d) = (part.clone(), dest.clone());
    joined(
        tokio::task::spawn_blocking(move || {
            let file = file.finish()?;
            file.sync_all()?;
            drop(file);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&p, &d)
        })
        .await,
    )?
    .map_err(|e| Failed::Error(io_line("write", &dest, &e)))?;
    Ok(())
}

/// Where an agent keeps the start of each copy task until the task is over.
pub fn saved_path(dir: &Path, task_id: &str) -> PathBuf {
    dir.join(format!("{task_id}.start"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn part_writer_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(5 * DIRECT_BUF + 12_345);
        for direct in [true, false] {
            let part = dir.path().join(format!("p-{direct}"));
            let (file, len, _) = open_part(&part, data.len() as u64, direct).unwrap();
            assert_eq!(len, 0);
            let mut w = PartWriter::new(&part, file, len, direct);
            for chunk in data.chunks(777_777) {
                w.write(chunk).unwrap();
            }
            w.finish().unwrap().sync_all().unwrap();
            assert!(std::fs::read(&part).unwrap() == data, "direct {direct}");
        }
    }

    #[test]
    fn a_direct_copy_resumes_from_a_whole_block() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 * ALIGN + 100);
        let part = dir.path().join("p");
        std::fs::write(&part, &data[..2 * ALIGN + 10]).unwrap();
        let (file, len, hash) = open_part(&part, data.len() as u64, true).unwrap();
        assert_eq!(len, 2 * ALIGN as u64);
        assert_eq!(std::fs::metadata(&part).unwrap().len(), len);
        let mut want = Sha256::new();
        want.update(&data[..2 * ALIGN]);
        assert_eq!(hash.finalize(), want.finalize());
        let mut w = PartWriter::new(&part, file, len, true);
        w.write(&data[2 * ALIGN..]).unwrap();
        w.finish().unwrap();
        assert!(std::fs::read(&part).unwrap() == data);
        // Without alignment, the part is kept as it is.
        std::fs::write(&part, &data[..10]).unwrap();
        let (_, len, _) = open_part(&part, data.len() as u64, false).unwrap();
        assert_eq!(len, 10);
    }
}
