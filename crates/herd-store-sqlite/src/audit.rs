//! The audit log: entries written with the change they describe, in its transaction.

use herd_store::{AuditEntry, AuditRow, AuditStore, ListFilter, Result, codec, now_ms};
use sqlx::SqliteConnection;

use crate::{SqliteStore, db, rows};

/// Records `e` on `conn` (inside the caller's transaction), stamped with the current time.
pub(crate) async fn record(conn: &mut SqliteConnection, e: &AuditEntry) -> Result<()> {
    sqlx::query("INSERT INTO audit (at, actor, action, target, detail) VALUES (?,?,?,?,?)")
        .bind(now_ms())
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(codec::json(&e.detail)?)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Ends a change that returned its row, if one matched: decodes it, records `entry` in the
/// same transaction and commits; with no row nothing changed, the transaction is rolled back
/// and the answer is `None`.
pub(crate) async fn commit_change<T>(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    row: Option<sqlx::sqlite::SqliteRow>,
    decode: fn(&sqlx::sqlite::SqliteRow) -> Result<T>,
    entry: &AuditEntry,
) -> Result<Option<T>> {
    let Some(row) = row else {
        tx.rollback().await.map_err(db)?;
        return Ok(None);
    };
    let changed = decode(&row)?;
    record(&mut tx, entry).await?;
    tx.commit().await.map_err(db)?;
    Ok(Some(changed))
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.writer.acquire().await.map_err(db)?;
        record(&mut conn, entry).await
    }

    async fn audit_filtered(&self, f: &ListFilter) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR target = 'agent:' || ?3 OR actor = 'agent:' || ?3) ORDER BY id DESC LIMIT ?4",
        )
        .bind(f.since)
        .bind(&f.who)
        .bind(&f.machine)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::audit).collect()
    }
}
