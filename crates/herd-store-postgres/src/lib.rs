//! herd's PostgreSQL store: [`PgStore`] implements every domain of [`herd_store::Store`] with
//! sqlx's PostgreSQL driver (no TLS: the server reaches its database on loopback or a private
//! network), its migrations in `migrations/postgres`. Bulk changes are statements in
//! PostgreSQL's idiom: `UNNEST($1::text[], …)` for many rows of values, `= ANY($1)` with
//! `RETURNING` for claims and ends, `FOR UPDATE SKIP LOCKED` where queued tasks are claimed;
//! one transaction per call.
//!
//! One active server per database: [`PgStore::connect`] takes a session-level advisory lock on
//! a connection of its own, kept for the store's whole life, and fails with
//! [`StoreError::Locked`] while another server holds it.
//!
//! Architecture invariant: with `herd-store-sqlite`, the only crates that name sqlx.
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
#[doc(hidden)]
pub mod testdb;
mod vars;

use std::str::FromStr;
use std::sync::Arc;

use herd_store::{Result, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

/// The advisory lock key of "the herd server using this database" (`herd_srv` in ASCII).
/// Advisory locks are per database, so servers on other databases of one cluster do not
/// meet.
const SERVER_LOCK_KEY: i64 = 0x6865_7264_5f73_7276;

/// Connections of the pool: enough for the server's writer, dispatcher, API and sweeper at
/// once on a small machine, few enough to leave the database room for others.
const POOL_SIZE: u32 = 8;

/// The PostgreSQL store. Clones share the pool and the server lock.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The connection holding the server lock; `None` once closed.
    lock: Arc<Mutex<Option<PgConnection>>>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`),
    /// becomes its one active herd server, and applies the migrations.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Db(
                format!(
                    "invalid PostgreSQL URL: {e} — expected postgres://user[:password]@host[:port]/database"
                )
                .into(),
            )
        })?
        .application_name("herd");
        let shown = shown_url(&opts);
        let cannot = |e: sqlx::Error| {
            StoreError::Db(
                format!(
                    "cannot connect to PostgreSQL at {shown}: {e} — is it running? check --database"
                )
                .into(),
            )
        };

        let mut lock = PgConnection::connect_with(&opts).await.map_err(cannot)?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SERVER_LOCK_KEY)
            .fetch_one(&mut lock)
            .await
            .map_err(db)?;
        if !held {
            let _ = lock.close().await;
            return Err(StoreError::Locked(format!(
                "another herd server is using the database {shown} — stop it, or point this one at another database"
            )));
        }
        // Under the lock, so two servers starting at once never migrate together.
        sqlx::migrate!("./migrations/postgres")
            .run(&mut lock)
            .await
            .map_err(|e| StoreError::Migrate(format!("{shown}: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(opts)
            .await
            .map_err(cannot)?;
        Ok(PgStore {
            pool,
            lock: Arc::new(Mutex::new(Some(lock))),
        })
    }

    /// Executes `sql` behind the store's back: only tests use it, to write rows the store
    /// never writes.
    #[doc(hidden)]
    pub async fn exec_raw(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn close(&self) {
        self.pool.close().await;
        if let Some(mut conn) = self.lock.lock().await.take() {
            // Closing the session would release the lock too; unlocking first says so.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SERVER_LOCK_KEY)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}

/// The URL without its password, for messages.
fn shown_url(opts: &PgConnectOptions) -> String {
    let user = opts.get_username();
    let db = opts.get_database().unwrap_or(user);
    match opts.get_socket() {
        Some(dir) => format!("postgres://{user}@{}/{db}", dir.display()),
        None => format!(
            "postgres://{user}@{}:{}/{db}",
            opts.get_host(),
            opts.get_port()
        ),
    }
}

/// The row ranges of `n` rows, [`herd_store::ROWS_PER_STATEMENT`] at most each.
pub(crate) fn chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n)
        .step_by(herd_store::ROWS_PER_STATEMENT)
        .map(move |start| start..(start + herd_store::ROWS_PER_STATEMENT).min(n))
}

/// A driver error as the store's error.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed("the store is closed".into()),
        e => StoreError::Db(Box::new(e)),
    }
}
