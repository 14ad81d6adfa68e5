//! Where the server keeps its records: `--database sqlite:PATH` or `postgres://…` (default:
//! SQLite in the data dir), and the guarantee that one server at a time uses them — the
//! data dir is locked (it holds the output logs, and the SQLite file by default) and a
//! PostgreSQL database is held with an advisory lock by its backend.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herd_store::Store;
use nix::fcntl::{Flock, FlockArg};

/// A database as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// Parses `sqlite:PATH`, `sqlite://PATH` or a `postgres://` / `postgresql://` URL.
    pub fn parse(s: &str) -> Result<Database, String> {
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(format!(
                    "bad --database {s:?}: give a file after sqlite:, e.g. sqlite:/var/lib/herd/herd.db"
                ));
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Database::Postgres(s.to_string()));
        }
        Err(format!(
            "bad --database {s:?}: expected sqlite:PATH or postgres://USER@HOST:PORT/DB"
        ))
    }

    /// The database shown to people: a URL without its password.
    pub fn display(&self) -> String {
        match self {
            Database::Sqlite(p) => format!("sqlite:{}", p.display()),
            Database::Postgres(url) => redact(url),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((creds, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Creates the data dir (and its parents) if missing and makes it accessible to its owner
/// only (0700): it holds the database, the output of every task and the CA's key. Answers
/// the mode it had when that was wider, so the caller can say it fixed it.
pub fn private_data_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    Ok(Some(mode))
}

/// The data dir's lock, held while the server runs.
pub struct DataDirLock {
    _lock: Flock<File>,
}

/// Locks `dir` for this server: a second server on the same data dir is refused, and told
/// the holder's PID (written into the lock file once the lock is held).
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            write_pid(&lock, std::process::id())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(DataDirLock { _lock: lock })
        }
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            let holder = match read_pid(&file) {
                Some(pid) => format!(" (PID {pid})"),
                None => String::new(),
            };
            Err(format!(
                "another herd server{holder} is using the data dir {} — stop it, or pass another --data-dir",
                dir.display()
            ))
        }
        Err((_, e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Replaces the lock file's content with `pid` (only while holding the lock).
fn write_pid(mut file: &File, pid: u32) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(format!("{pid}\n").as_bytes())
}

/// The PID the lock's holder wrote, if it wrote one yet.
fn read_pid(mut file: &File) -> Option<u32> {
    use std::io::Read;
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Opens the store (creating and migrating it as needed).
pub async fn open(db: &Database) -> Result<Arc<dyn Store>, herd_store::StoreError> {
    Ok(match db {
        Database::Sqlite(path) => Arc::new(herd_store_sqlite::SqliteStore::open(path).await?),
        Database::Postgres(url) => Arc::new(herd_store_postgres::PgStore::connect(url).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        let cases = [
            (
                "sqlite:/var/lib/herd/herd.db",
                Ok(Database::Sqlite("/var/lib/herd/herd.db".into())),
            ),
            (
                "sqlite:///tmp/h.db",
                Ok(Database::Sqlite("/tmp/h.db".into())),
            ),
            ("sqlite:rel.db", Ok(Database::Sqlite("rel.db".into()))),
            (
                "postgres://herd@db:5432/herd",
                Ok(Database::Postgres("postgres://herd@db:5432/herd".into())),
            ),
            (
                "postgresql://h/x",
                Ok(Database::Postgres("postgresql://h/x".into())),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(Database::parse(s), want, "{s}");
        }
        for bad in ["", "sqlite:", "mysql://x", "/tmp/herd.db"] {
            let e = Database::parse(bad).unwrap_err();
            assert!(e.starts_with("bad --database"), "{bad}: {e}");
        }
        assert_eq!(redact("postgres://u:pw@h:5/d"), "postgres://u:***@h:5/d");
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[test]
    fn one_server_per_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let e = lock_data_dir(dir.path()).err().unwrap();
        let pid = std::process::id();
        assert!(
            e.contains(&format!(
                "another herd server (PID {pid}) is using the data dir"
            )),
            "{e}"
        );
        drop(first);
        assert!(lock_data_dir(dir.path()).is_ok());
    }
}
