//! Fetch tasks (`herd fetch`): the agent sends one file of its machine to the server over its
//! own connection. It hashes the whole file first (SHA-256), announces the content
//! (`FetchOffset`: digest, size, mode) and learns how much of it the server already holds,
//! then streams the rest in ≤1 MiB chunks (`WriteFetched`). A broken connection resumes from
//! what the server holds once the next session is up; an agent that restarts finds the task's
//! start in `STATE_DIR/copies` and resumes it the same way (a file that changed meanwhile has
//! another digest, and starts over). The server verifies the digest once it holds the whole
//! length; the task ends `0` only then.

use std::io::{Read as _, Seek as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use herd_exec::{Control, ExecEvent};
use herd_proto::v1::agent_hub_client::AgentHubClient;
use herd_proto::v1::{self as pb};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::copy::{Failed, LinkWatch, RETRY, joined, report};

/// Bytes per chunk sent.
const CHUNK: usize = 1 << 20;

/// Runs a fetch task to its end and reports it (see [`crate::copy::report`]).
pub async fn run(
    task_id: String,
    path: String,
    link: LinkWatch,
    events: mpsc::Sender<ExecEvent>,
    control: mpsc::Receiver<Control>,
    resumed: bool,
) {
    report(
        send(task_id, PathBuf::from(path), link),
        events,
        control,
        resumed,
    )
    .await;
}

/// One line for a file this machine cannot send.
fn read_line(path: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file on this machine — check the path".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied — the agent's user may not read it".to_string()
        }
        std::io::ErrorKind::IsADirectory => "it is a directory — name a file".to_string(),
        _ => format!("{e} — check the file and fetch again"),
    };
    format!("herd: cannot fetch {}: {why}", path.display())
}

/// What the server is told about the file before it is sent.
struct Content {
    digest: String,
    size: u64,
    mode: u32,
}

/// Reads the whole file once: its digest, length and mode. Blocking.
fn describe(path: &Path) -> Result<Content, String> {
    let mut f = std::fs::File::open(path).map_err(|e| read_line(path, &e))?;
    let meta = f.metadata().map_err(|e| read_line(path, &e))?;
    if !meta.is_file() {
        return Err(format!(
            "herd: cannot fetch {}: not a regular file — name a file",
            path.display()
        ));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| read_line(path, &e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Content {
        digest: hex::encode(h.finalize()),
        size,
        mode: meta.permissions().mode() & 0o7777,
    })
}

fn changed(path: &Path) -> Failed {
    Failed::Error(format!(
        "herd: cannot fetch {}: the file changed while it was sent — fetch it again once it stays put",
        path.display()
    ))
}

async fn send(task_id: String, path: PathBuf, mut link: LinkWatch) -> Result<(), Failed> {
    let p = path.clone();
    let content =
        joined(tokio::task::spawn_blocking(move || describe(&p)).await)?.map_err(Failed::Error)?;
    loop {
        let current = link.borrow_and_update().clone();
        let Some(l) = current else {
            // Between sessions: wait for the next one.
            if link.changed().await.is_err() {
                return Err(Failed::Error(
                    "herd: fetch failed: the agent is stopping".into(),
                ));
            }
            continue;
        };
        let mut client = AgentHubClient::new(l.channel);
        let mut req = tonic::Request::new(pb::FetchOffsetRequest {
            task_id: task_id.clone(),
            digest: content.digest.clone(),
            size: content.size,
            mode: content.mode,
        });
        req.metadata_mut().insert("authorization", l.bearer.clone());
        let held = match client.fetch_offset(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if permanent(&s) => {
                return Err(Failed::Error(format!(
                    "herd: cannot fetch {}: the server refused it: {}",
                    path.display(),
                    s.message()
                )));
            }
            Err(s) => {
                tracing::info!(error = %s.message(), "announcing a fetched file failed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if held.complete {
            return Ok(());
        }
        if held.offset > content.size {
            return Err(changed(&path));
        }
        let (tx, rx) = mpsc::channel::<pb::FetchChunk>(4);
        let reader = tokio::task::spawn_blocking({
            let (path, task_id, size) = (path.clone(), task_id.clone(), content.size);
            move || read_from(&path, &task_id, held.offset, size, tx)
        });
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        req.metadata_mut().insert("authorization", l.bearer);
        let answer = client.write_fetched(req).await;
        // The reader ends once its chunks are taken or the stream is dropped.
        if let Err(ReadEnd::Failed(e)) = joined(reader.await)? {
            return Err(e);
        }
        match answer {
            Ok(r) if r.get_ref().complete => return Ok(()),
            // The stream ended short (the connection broke): continue from what is held.
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::InvalidArgument => return Err(changed(&path)),
            Err(s) if permanent(&s) => {
                return Err(Failed::Error(format!(
                    "herd: cannot fetch {}: the server refused it: {}",
                    path.display(),
                    s.message()
                )));
            }
            Err(s) => {
                tracing::info!(error = %s.message(), "sending a fetched file broke off; resuming");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Why the reader of a fetched file stopped early.
enum ReadEnd {
    /// The stream was dropped (the connection broke): the caller resumes.
    Dropped,
    /// The file could not be read, or it changed.
    Failed(Failed),
}

/// Statuses that another attempt would get again.
fn permanent(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::FailedPrecondition
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::Unimplemented
    )
}

/// Sends the file from `offset` as chunks into `tx` until its end or until the receiver is
/// gone. Blocking. A file that is shorter than it was is an error (it changed).
fn read_from(
    path: &Path,
    task_id: &str,
    offset: u64,
    size: u64,
    tx: mpsc::Sender<pb::FetchChunk>,
) -> Result<(), ReadEnd> {
    let failed = |e: std::io::Error| ReadEnd::Failed(Failed::Error(read_line(path, &e)));
    let mut f = std::fs::File::open(path).map_err(failed)?;
    f.seek(std::io::SeekFrom::Start(offset)).map_err(failed)?;
    let mut at = offset;
    let mut first = true;
    while at < size {
        let want = (size - at).min(CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut got = 0;
        while got < want {
            let n = f.read(&mut buf[got..]).map_err(failed)?;
            if n == 0 {
                return Err(ReadEnd::Failed(changed(path)));
            }
            got += n;
        }
        let chunk = pb::FetchChunk {
            task_id: if first {
                task_id.to_string()
            } else {
                String::new()
            },
            offset: at,
            data: Bytes::from(buf),
        };
        first = false;
        if tx.blocking_send(chunk).is_err() {
            return Err(ReadEnd::Dropped);
        }
        at += want as u64;
    }
    Ok(())
}
