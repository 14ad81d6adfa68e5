//! The audit log: entries written with the change they describe, in its transaction.

use herd_store::{AuditEntry, AuditRow, AuditStore, Result, codec, now_ms};
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

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        record(&mut conn, entry).await
    }

    async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::audit).collect()
    }
}
