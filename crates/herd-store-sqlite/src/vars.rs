//! Variables and secrets (`herd vars`), each change with its audit entry.

use herd_store::{AuditEntry, Result, VarRow, VarStore, codec};

use crate::rows::Cols;
use crate::{SqliteStore, audit, db};

fn var_row(r: &sqlx::sqlite::SqliteRow) -> Result<VarRow> {
    codec::var(&Cols(r))
}

#[async_trait::async_trait]
impl VarStore for SqliteStore {
    async fn set_var(&self, var: &VarRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO vars (scope, key, value, secret, updated_at, updated_by) VALUES (?,?,?,?,?,?) \
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, secret = excluded.secret, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&var.scope)
        .bind(&var.key)
        .bind(&var.value)
        .bind(var.secret)
        .bind(var.updated_at)
        .bind(&var.updated_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn var(&self, scope: &str, key: &str) -> Result<Option<VarRow>> {
        let row = sqlx::query(
            "SELECT scope, key, value, secret, updated_at, updated_by FROM vars WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(var_row).transpose()
    }

    async fn vars(&self, scope: &str) -> Result<Vec<VarRow>> {
        let rows = sqlx::query(
            "SELECT scope, key, value, secret, updated_at, updated_by FROM vars WHERE scope = ? ORDER BY key",
        )
        .bind(scope)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(var_row).collect()
    }

    async fn delete_var(
        &self,
        scope: &str,
        key: &str,
        entry: &AuditEntry,
    ) -> Result<Option<VarRow>> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = sqlx::query(
            "DELETE FROM vars WHERE scope = ? AND key = ? RETURNING scope, key, value, secret, updated_at, updated_by",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, var_row, entry).await
    }
}
