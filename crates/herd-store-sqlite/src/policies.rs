//! The command policy's versions, each stored with its audit entry.

use herd_store::{AuditEntry, PolicyRow, PolicyStore, Result, codec, policy_conflict};
use sqlx::Row;

use crate::rows::Cols;
use crate::{SqliteStore, audit, db};

fn policy_row(r: &sqlx::sqlite::SqliteRow) -> Result<PolicyRow> {
    codec::policy(&Cols(r))
}

#[async_trait::async_trait]
impl PolicyStore for SqliteStore {
    async fn put_policy(&self, policy: &PolicyRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let latest: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM policies")
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        if policy.version != latest + 1 {
            return Err(policy_conflict(policy.version));
        }
        sqlx::query(
            "INSERT INTO policies (version, body, created_at, created_by) VALUES (?,?,?,?)",
        )
        .bind(policy.version)
        .bind(&policy.body)
        .bind(policy.created_at)
        .bind(&policy.created_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => policy_conflict(policy.version),
            e => db(e),
        })?;
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn policy(&self, version: Option<i64>) -> Result<Option<PolicyRow>> {
        let q = match version {
            Some(v) => sqlx::query(
                "SELECT version, body, created_at, created_by FROM policies WHERE version = ?",
            )
            .bind(v),
            None => sqlx::query(
                "SELECT version, body, created_at, created_by FROM policies ORDER BY version DESC LIMIT 1",
            ),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(policy_row).transpose()
    }

    async fn policies(&self) -> Result<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT version, body, created_at, created_by FROM policies ORDER BY version DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(policy_row).collect()
    }

    async fn policy_version(&self) -> Result<i64> {
        sqlx::query("SELECT COALESCE(MAX(version), 0) FROM policies")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)
    }
}
