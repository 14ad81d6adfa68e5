//! Blobs: the files of copy runs, uploaded once by the CLI and read by every agent of the
//! run. Stored under `DATA_DIR/blobs` (0700) by SHA-256: `<digest>.part` while an upload is
//! under way (its length is what the server holds, so an interrupted upload continues from
//! there), `<digest>` (0600) once the whole content arrived and its digest was verified.
//! A blob's modification time is its last use (an upload, or a copy run created with it):
//! retention deletes blobs unused for longer than `--retention`, and a run created since
//! keeps its blob.

use std::collections::HashSet;
use std::io::Read as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::error::{Result, ServerError};
use crate::lock;

/// How much of a blob the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub bytes: u64,
    pub complete: bool,
}

pub struct Blobs {
    dir: PathBuf,
    /// Digests with an upload in progress (one at a time per digest).
    uploading: InFlight,
}

/// Keys (a blob's digest, a fetched file's task) with an upload in progress: one at a time.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<String>>);

/// Holds a key of an [`InFlight`] until dropped, however the upload ends.
pub struct InFlightGuard<'a>(&'a InFlight, String);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.0).remove(&self.1);
    }
}

impl InFlight {
    /// Marks `key` in progress until the guard drops; `None` when it already is.
    pub fn enter(&self, key: &str) -> Option<InFlightGuard<'_>> {
        lock(&self.0)
            .insert(key.to_string())
            .then(|| InFlightGuard(self, key.to_string()))
    }

    pub fn contains(&self, key: &str) -> bool {
        lock(&self.0).contains(key)
    }
}

fn check_digest(digest: &str) -> Result<()> {
    if herd_core::is_digest(digest) {
        Ok(())
    } else {
        Err(ServerError::BadRequest(format!(
            "bad blob digest {digest:?}: expected a SHA-256 as 64 lowercase hex digits"
        )))
    }
}

fn io(what: &str, e: std::io::Error) -> ServerError {
    ServerError::Internal(format!("{what}: {e}"))
}

/// SHA-256 of a file, as 64 lowercase hex digits. Blocking.
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Blobs {
    pub fn new(dir: PathBuf) -> Blobs {
        Blobs {
            dir,
            uploading: InFlight::default(),
        }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    fn part(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.part"))
    }

    /// How much of `digest` is held.
    pub async fn held(&self, digest: &str) -> Result<Held> {
        check_digest(digest)?;
        if let Ok(m) = tokio::fs::metadata(self.path(digest)).await {
            return Ok(Held {
                bytes: m.len(),
                complete: true,
            });
        }
        let bytes = match tokio::fs::metadata(self.part(digest)).await {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        Ok(Held {
            bytes,
            complete: false,
        })
    }

    /// The path of a blob held whole, or why it cannot be used.
    pub async fn complete(&self, digest: &str) -> Result<PathBuf> {
        let held = self.held(digest).await?;
        if !held.complete {
            return Err(ServerError::BadRequest(format!(
                "blob {digest} is not on the server (it holds {} bytes of it) — upload it first (PUT /api/v1/blobs/{digest})",
                held.bytes
            )));
        }
        Ok(self.path(digest))
    }

    /// A blob held whole that a new run uses: marked used now, so retention keeps it.
    pub async fn use_for_run(&self, digest: &str) -> Result<()> {
        let path = self.complete(digest).await?;
        tokio::task::spawn_blocking(move || {
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(std::time::SystemTime::now())
        })
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(|e| io("cannot mark the blob used", e))
    }

    /// Deletes blobs (whole or partly uploaded) last used before `before`; how many and how
    /// many bytes. Blocking.
    pub fn prune(&self, before: std::time::SystemTime) -> (u64, u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (0, 0);
        };
        let (mut count, mut bytes) = (0, 0);
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let Some(digest) = name.to_str().map(|n| n.trim_end_matches(".part")) else {
                continue;
            };
            if !herd_core::is_digest(digest) || self.uploading.contains(digest) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_file()
                && meta.modified().is_ok_and(|m| m < before)
                && std::fs::remove_file(e.path()).is_ok()
            {
                count += 1;
                bytes += meta.len();
            }
        }
        (count, bytes)
    }

    /// Appends `body` to the blob from `offset` (which must be what the server holds); once the
    /// body ends, the content must have the digest, or the upload is discarded.
    pub async fn upload<S, E>(&self, digest: &str, offset: u64, body: S) -> Result<Held>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_digest(digest)?;
        let held = self.held(digest).await?;
        if held.complete {
            return Ok(held);
        }
        let Some(_guard) = self.uploading.enter(digest) else {
            return Err(ServerError::Conflict(format!(
                "blob {digest} is being uploaded by another request — wait for it to finish"
            )));
        };
        let held = self.held(digest).await?;
        if held.complete {
            return Ok(held);
        }
        if offset != held.bytes {
            return Err(ServerError::Conflict(format!(
                "upload of blob {digest} starts at byte {offset} but the server holds {} — continue from offset={}",
                held.bytes, held.bytes
            )));
        }
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true).mode(0o700);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || dirs.create(&dir))
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .map_err(|e| io("cannot create the blob directory", e))?;
        let part = self.part(digest);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&part)
            .await
            .map_err(|e| io("cannot write the blob", e))?;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // The upload was interrupted: what arrived stays for a later continuation.
                    let _ = file.flush().await;
                    return Err(ServerError::BadRequest(format!(
                        "upload of blob {digest} was interrupted: {e} — upload again; it continues where it stopped"
                    )));
                }
            };
            file.write_all(&chunk)
                .await
                .map_err(|e| io("cannot write the blob", e))?;
        }
        file.flush()
            .await
            .map_err(|e| io("cannot write the blob", e))?;
        file.sync_all()
            .await
            .map_err(|e| io("cannot write the blob", e))?;
        drop(file);
        let p = part.clone();
        let got = tokio::task::spawn_blocking(move || file_digest(&p))
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .map_err(|e| io("cannot read the blob back", e))?;
        if got != digest {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(ServerError::BadRequest(format!(
                "checksum mismatch: the uploaded content's SHA-256 is {got}, not {digest}; the upload was discarded — upload the file again"
            )));
        }
        tokio::fs::rename(&part, self.path(digest))
            .await
            .map_err(|e| io("cannot store the blob", e))?;
        self.held(digest).await
    }
}
