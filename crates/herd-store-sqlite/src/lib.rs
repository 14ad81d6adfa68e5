//! herd's SQLite store: [`SqliteStore`] implements every domain of [`herd_store::Store`] on
//! one database file (WAL, `synchronous=NORMAL`, foreign keys), with its migrations in
//! `migrations/sqlite`. Bulk changes are multi-row statements in SQLite's idiom
//! (`UPDATE … FROM (VALUES …)`, `UPDATE … RETURNING`), at most
//! [`herd_store::ROWS_PER_STATEMENT`] rows each, in one transaction per call.
//!
//! Architecture invariant: with `herd-store-postgres`, the only crates that name sqlx.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod agents;
mod alerts;
mod ask;
mod audit;
mod credentials;
mod flows;
mod langflow;
mod policies;
mod rows;
mod runs;
mod schedules;
mod tasks;
mod vars;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use herd_store::{Result, Store, StoreError};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The SQLite store. Clones share one pool.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads: several connections (WAL readers never wait for the writer).
    pool: SqlitePool,
    /// Every write, on one connection: writers queue for it without sleeping, where several
    /// connections contending for SQLite's write lock would spin in its busy handler (1 ms
    /// sleeps, measured on a run's creation).
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file (creating it) and applies the migrations.
    /// The database file and its `-wal` and `-shm` companions are readable by their owner
    /// only (0600; SQLite gives the companions the database file's mode).
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let cannot = |e: &dyn std::fmt::Display| {
            StoreError::Db(
                format!(
                    "cannot open the SQLite database {}: {e} — check that its directory exists and is writable",
                    path.display()
                )
                .into(),
            )
        };
        private_files(path).map_err(|e| cannot(&e))?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| cannot(&e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process kill; only power loss may lose the
            // last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await
            .map_err(|e| cannot(&e))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Migrate(format!("{}: {e}", path.display())))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| cannot(&e))?;
        Ok(SqliteStore { pool, writer })
    }

    /// Executes `sql` behind the store's back: only tests use it, to write rows the store
    /// never writes.
    #[doc(hidden)]
    pub async fn exec_raw(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// A driver error as the store's error.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed("the store is closed".into()),
        e => StoreError::Db(Box::new(e)),
    }
}

/// Creates the database file 0600 if it is missing, and sets 0600 on it and on its `-wal`
/// and `-shm` files where they exist with a wider mode.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let companions = ["", "-wal", "-shm"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    });
    for p in companions {
        match std::fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
