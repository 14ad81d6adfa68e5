//! API keys and join tokens (stored hashed), each created with its audit entry.

use herd_store::{ApiKeyRow, AuditEntry, CredentialStore, JoinTokenRow, Result, StoreError, codec};

use crate::rows::Cols;
use crate::{PgStore, audit, db};

/// Whether a unique violation is the key-name index's (`api_keys_name`).
fn key_name_taken(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.constraint() == Some("api_keys_name")
}

fn api_key_row(r: &sqlx::postgres::PgRow) -> Result<ApiKeyRow> {
    codec::api_key(&Cols(r))
}

fn join_token_row(r: &sqlx::postgres::PgRow) -> Result<JoinTokenRow> {
    codec::join_token(&Cols(r))
}

#[async_trait::async_trait]
impl CredentialStore for PgStore {
    async fn create_api_key(&self, key: &ApiKeyRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, role, scope, created_at, created_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.hash)
        .bind(&key.role)
        .bind(&key.scope)
        .bind(key.created_at)
        .bind(&key.created_by)
        .bind(key.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() && key_name_taken(&*d) => {
                StoreError::Conflict(format!("an API key named {:?} already exists", key.name))
            }
            e => db(e),
        })?;
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query(
            "SELECT id, name, hash, role, scope, created_at, created_by, revoked_at FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| codec::api_key(&Cols(&r))).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let rows = sqlx::query(
            "SELECT id, name, hash, role, scope, created_at, created_by, revoked_at FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::api_key(&Cols(r))).collect()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        at: i64,
        entry: &AuditEntry,
    ) -> Result<Option<ApiKeyRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING id, name, hash, role, scope, created_at, created_by, revoked_at",
        )
        .bind(at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, api_key_row, entry).await
    }

    async fn revoke_join_token(
        &self,
        id: &str,
        entry: &AuditEntry,
    ) -> Result<Option<JoinTokenRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(
            "UPDATE join_tokens SET uses_left = 0 WHERE id = $1 RETURNING id, hash, created_at, created_by, expires_at, uses_left, labels::text AS labels",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, join_token_row, entry).await
    }

    async fn count_api_keys(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn create_join_token(&self, token: &JoinTokenRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO join_tokens (id, hash, created_at, created_by, expires_at, uses_left, labels) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        )
        .bind(&token.id)
        .bind(&token.hash)
        .bind(token.created_at)
        .bind(&token.created_by)
        .bind(token.expires_at)
        .bind(token.uses_left)
        .bind(token.labels.as_ref().map(codec::json).transpose()?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn join_token(&self, id: &str) -> Result<Option<JoinTokenRow>> {
        let row = sqlx::query(
            "SELECT id, hash, created_at, created_by, expires_at, uses_left, labels::text AS labels FROM join_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| codec::join_token(&Cols(&r))).transpose()
    }

    async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>> {
        let rows = sqlx::query(
            "SELECT id, hash, created_at, created_by, expires_at, uses_left, labels::text AS labels FROM join_tokens ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::join_token(&Cols(r))).collect()
    }
}
