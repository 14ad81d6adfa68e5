//! Fetched files: what each machine of a fetch run (`herd fetch`) sent, kept under
//! `DATA_DIR/fetched` (0700) by task id until retention prunes the run: `<task>.json` says
//! which content is coming (SHA-256, size, mode), `<task>.part` holds what arrived so far (its
//! length is where the agent continues after a broken connection or a restart), `<task>` the
//! whole file once its digest was verified (0600).
//!
//! **Invariant:** a file is served only once whole and verified; a content that differs from
//! the one announced (the file changed on the machine) restarts from byte 0, never appends.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use tokio::io::AsyncWriteExt as _;

use crate::blobs::InFlight;

/// What the machine announced before sending the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchedMeta {
    pub digest: String,
    pub size: u64,
    pub mode: u32,
}

/// How much of a task's file the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub bytes: u64,
    pub complete: bool,
}

/// Why a write was refused.
#[derive(Debug)]
pub enum FetchError {
    /// The agent sent something that does not fit what it announced (resend from `Held`).
    Refused(String),
    /// The whole content arrived but its SHA-256 is not the announced one; dropped.
    Mismatch(String),
    /// Another upload of the task is under way.
    Busy,
    Io(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Refused(m) | FetchError::Mismatch(m) | FetchError::Io(m) => f.write_str(m),
            FetchError::Busy => f.write_str("another upload of this file is under way"),
        }
    }
}

fn io(what: &str, e: std::io::Error) -> FetchError {
    FetchError::Io(format!("{what}: {e}"))
}

pub struct Fetched {
    dir: PathBuf,
    /// Tasks with an upload in progress (one at a time per task).
    uploading: InFlight,
}

async fn len_of(path: &std::path::Path) -> u64 {
    tokio::fs::metadata(path).await.map_or(0, |m| m.len())
}

impl Fetched {
    pub fn new(dir: PathBuf) -> Fetched {
        Fetched {
            dir,
            uploading: InFlight::default(),
        }
    }

    /// Task ids are server-made ids; anything else never names a file here.
    fn check(task_id: &str) -> Result<(), FetchError> {
        if herd_core::is_valid_id(task_id) {
            Ok(())
        } else {
            Err(FetchError::Refused(format!("bad task id {task_id:?}")))
        }
    }

    fn path(&self, task_id: &str) -> PathBuf {
        self.dir.join(task_id)
    }

    fn part(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.part"))
    }

    fn meta_path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.json"))
    }

    /// What the machine announced for the task, if anything.
    pub async fn meta(&self, task_id: &str) -> Option<FetchedMeta> {
        Fetched::check(task_id).ok()?;
        let bytes = tokio::fs::read(self.meta_path(task_id)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    async fn held_of(&self, task_id: &str) -> Held {
        if let Ok(m) = tokio::fs::metadata(self.path(task_id)).await {
            return Held {
                bytes: m.len(),
                complete: true,
            };
        }
        Held {
            bytes: len_of(&self.part(task_id)).await,
            complete: false,
        }
    }

    /// The machine is about to send `meta`'s content: how much of it is held. A content other
    /// than the one held (the file changed since) drops what was held and starts at 0.
    pub async fn begin(&self, task_id: &str, meta: FetchedMeta) -> Result<Held, FetchError> {
        Fetched::check(task_id)?;
        if !herd_core::is_digest(&meta.digest) {
            return Err(FetchError::Refused(format!(
                "bad digest {:?}: expected 64 lowercase hex digits",
                meta.digest
            )));
        }
        let Some(_guard) = self.uploading.enter(task_id) else {
            return Err(FetchError::Busy);
        };
        if self.meta(task_id).await.as_ref() == Some(&meta) {
            return Ok(self.held_of(task_id).await);
        }
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true).mode(0o700);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || dirs.create(&dir))
            .await
            .map_err(|e| FetchError::Io(e.to_string()))?
            .map_err(|e| io("cannot create the fetched-file directory", e))?;
        for p in [self.path(task_id), self.part(task_id)] {
            match tokio::fs::remove_file(&p).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("cannot drop an older fetched file", e));
                }
                _ => {}
            }
        }
        let json = serde_json::to_vec(&meta).map_err(|e| FetchError::Io(e.to_string()))?;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(self.meta_path(task_id))
            .await
            .map_err(|e| io("cannot write the fetched file's description", e))?;
        f.write_all(&json)
            .await
            .map_err(|e| io("cannot write the fetched file's description", e))?;
        f.sync_all()
            .await
            .map_err(|e| io("cannot write the fetched file's description", e))?;
        Ok(Held {
            bytes: 0,
            complete: false,
        })
    }

    /// Appends `body` to the task's file from `offset` (what the server holds). Once the
    /// announced size is held, the digest is checked and the file is whole, or dropped.
    pub async fn append<S>(&self, task_id: &str, offset: u64, body: S) -> Result<Held, FetchError>
    where
        S: Stream<Item = Result<Bytes, String>> + Unpin,
    {
        Fetched::check(task_id)?;
        let Some(meta) = self.meta(task_id).await else {
            return Err(FetchError::Refused(
                "nothing announced for this task: call FetchOffset first".into(),
            ));
        };
        let Some(_guard) = self.uploading.enter(task_id) else {
            return Err(FetchError::Busy);
        };
        let held = self.held_of(task_id).await;
        if held.complete {
            return Ok(held);
        }
        if offset != held.bytes {
            return Err(FetchError::Refused(format!(
                "the upload starts at byte {offset} but the server holds {}",
                held.bytes
            )));
        }
        let part = self.part(task_id);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&part)
            .await
            .map_err(|e| io("cannot write the fetched file", e))?;
        let mut len = held.bytes;
        let mut body = body;
        let mut broke = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // Interrupted: what arrived stays for the continuation.
                    broke = Some(e);
                    break;
                }
            };
            if len + chunk.len() as u64 > meta.size {
                let _ = file.flush().await;
                return Err(FetchError::Refused(format!(
                    "more than the announced {} bytes",
                    meta.size
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| io("cannot write the fetched file", e))?;
            len += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| io("cannot write the fetched file", e))?;
        if let Some(e) = broke {
            return Err(FetchError::Refused(format!("the upload broke off: {e}")));
        }
        if len < meta.size {
            return Ok(Held {
                bytes: len,
                complete: false,
            });
        }
        file.sync_all()
            .await
            .map_err(|e| io("cannot write the fetched file", e))?;
        drop(file);
        let p = part.clone();
        let got = tokio::task::spawn_blocking(move || crate::blobs::file_digest(&p))
            .await
            .map_err(|e| FetchError::Io(e.to_string()))?
            .map_err(|e| io("cannot read the fetched file back", e))?;
        if got != meta.digest {
            let _ = tokio::fs::remove_file(&part).await;
            let _ = tokio::fs::remove_file(self.meta_path(task_id)).await;
            return Err(FetchError::Mismatch(format!(
                "checksum mismatch: the content sent has SHA-256 {got}, not the announced {}",
                meta.digest
            )));
        }
        tokio::fs::rename(&part, self.path(task_id))
            .await
            .map_err(|e| io("cannot store the fetched file", e))?;
        Ok(self.held_of(task_id).await)
    }

    /// The whole file of a task and its description, if it arrived.
    pub async fn open(&self, task_id: &str) -> Option<(tokio::fs::File, FetchedMeta)> {
        Fetched::check(task_id).ok()?;
        let meta = self.meta(task_id).await?;
        let file = tokio::fs::File::open(self.path(task_id)).await.ok()?;
        Some((file, meta))
    }

    /// Deletes a task's files; how many bytes they held. Blocking.
    pub fn remove(&self, task_id: &str) -> u64 {
        if Fetched::check(task_id).is_err() {
            return 0;
        }
        let mut freed = 0;
        for p in [
            self.path(task_id),
            self.part(task_id),
            self.meta_path(task_id),
        ] {
            if let Ok(m) = std::fs::metadata(&p)
                && std::fs::remove_file(&p).is_ok()
            {
                freed += m.len();
            }
        }
        freed
    }

    /// Bytes held by every fetched file. Blocking.
    pub fn usage(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn body(parts: &[&[u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::copy_from_slice(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_file_arrives_in_pieces_and_a_changed_one_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fetched::new(dir.path().join("fetched"));
        let id = herd_core::new_id();
        let data = b"hello, fetched world".to_vec();
        let meta = FetchedMeta {
            digest: sha(&data),
            size: data.len() as u64,
            mode: 0o640,
        };
        assert_eq!(f.begin(&id, meta.clone()).await.unwrap().bytes, 0);
        let held = f.append(&id, 0, body(&[&data[..5]])).await.unwrap();
        assert_eq!((held.bytes, held.complete), (5, false));
        // Resumed: the same content continues where it stopped; a wrong offset is refused.
        assert_eq!(f.begin(&id, meta.clone()).await.unwrap().bytes, 5);
        assert!(matches!(
            f.append(&id, 0, body(&[&data[..]])).await,
            Err(FetchError::Refused(_))
        ));
        let held = f.append(&id, 5, body(&[&data[5..]])).await.unwrap();
        assert!(held.complete);
        let (_, m) = f.open(&id).await.unwrap();
        assert_eq!(m, meta);
        assert_eq!(
            std::fs::read(dir.path().join("fetched").join(&id)).unwrap(),
            data
        );

        // The file changed on the machine: a new announcement drops the old content.
        let other = b"another content".to_vec();
        let meta2 = FetchedMeta {
            digest: sha(&other),
            size: other.len() as u64,
            mode: 0o600,
        };
        assert_eq!(f.begin(&id, meta2).await.unwrap().bytes, 0);
        assert!(f.open(&id).await.is_none());
        // Content that does not match what was announced is dropped.
        let held = f.append(&id, 0, body(&[b"another CONTENT"])).await;
        assert!(matches!(held, Err(FetchError::Mismatch(_))), "{held:?}");
        assert!(f.open(&id).await.is_none());
        assert!(f.meta(&id).await.is_none());
        // More than announced is refused.
        let meta3 = FetchedMeta {
            digest: sha(b"ab"),
            size: 2,
            mode: 0o600,
        };
        f.begin(&id, meta3).await.unwrap();
        assert!(matches!(
            f.append(&id, 0, body(&[b"abc"])).await,
            Err(FetchError::Refused(_))
        ));
        assert!(f.remove(&id) > 0);
        assert_eq!(f.usage(), 0);
        // A name that is not a task id never reaches the file system.
        assert!(f.begin("../x", meta.clone()).await.is_err());
    }
}
