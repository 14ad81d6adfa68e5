//! LangFlow sources and the flows their syncs listed.

use std::collections::{BTreeMap, BTreeSet};

use herd_store::{
    AuditEntry, LangflowRow, LangflowStore, Result, SourceRow, StoreError, SyncCounts, codec,
};

use crate::rows::Cols;
use crate::{PgStore, audit, db};

const SOURCE_COLS: &str = "name, url, key_sealed, created_by, created_at, synced_at";
const FLOW_COLS: &str =
    "source, id, name, description, endpoint_name, updated_at, summary, removed_at, synced_at";

fn flow_row(r: &sqlx::postgres::PgRow) -> Result<LangflowRow> {
    codec::langflow(&Cols(r))
}

fn source_row(r: &sqlx::postgres::PgRow) -> Result<SourceRow> {
    codec::langflow_source(&Cols(r))
}

#[async_trait::async_trait]
impl LangflowStore for PgStore {
    async fn create_source(&self, s: &SourceRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "INSERT INTO langflow_sources (name, url, key_sealed, created_by, created_at, synced_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.name)
        .bind(&s.url)
        .bind(&s.key_sealed)
        .bind(&s.created_by)
        .bind(s.created_at)
        .bind(s.synced_at)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "a LangFlow source named {:?} exists",
                    s.name
                )));
            }
            Err(e) => return Err(db(e)),
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn source(&self, name: &str) -> Result<Option<SourceRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SOURCE_COLS} FROM langflow_sources WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(source_row).transpose()
    }

    async fn sources(&self) -> Result<Vec<SourceRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SOURCE_COLS} FROM langflow_sources ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(source_row).collect()
    }

    async fn delete_source(&self, name: &str, entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM langflows WHERE source = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let n = sqlx::query("DELETE FROM langflow_sources WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn sync_flows(
        &self,
        source: &str,
        flows: &[LangflowRow],
        at: i64,
        entry: &AuditEntry,
    ) -> Result<SyncCounts> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let n = sqlx::query("UPDATE langflow_sources SET synced_at = $1 WHERE name = $2")
            .bind(at)
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("LangFlow source {source:?}")));
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FLOW_COLS} FROM langflows WHERE source = $1"
        )))
        .bind(source)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut before: BTreeMap<String, LangflowRow> = BTreeMap::new();
        for r in &rows {
            let f = flow_row(r)?;
            before.insert(f.id.clone(), f);
        }
        let mut counts = SyncCounts::default();
        let listed: BTreeSet<&str> = flows.iter().map(|f| f.id.as_str()).collect();
        for f in flows {
            match before.get(&f.id) {
                None => counts.added += 1,
                Some(b)
                    if b.name == f.name
                        && b.description == f.description
                        && b.endpoint_name == f.endpoint_name
                        && b.updated_at == f.updated_at
                        && b.summary == f.summary
                        && b.removed_at.is_none() =>
                {
                    counts.unchanged += 1
                }
                Some(_) => counts.updated += 1,
            }
            sqlx::query(
                "INSERT INTO langflows (source, id, name, description, endpoint_name, updated_at, summary, removed_at, synced_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8) ON CONFLICT (source, id) DO UPDATE SET \
                 name = excluded.name, description = excluded.description, \
                 endpoint_name = excluded.endpoint_name, updated_at = excluded.updated_at, \
                 summary = excluded.summary, removed_at = NULL, synced_at = excluded.synced_at",
            )
            .bind(source)
            .bind(&f.id)
            .bind(&f.name)
            .bind(&f.description)
            .bind(&f.endpoint_name)
            .bind(&f.updated_at)
            .bind(&f.summary)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for b in before.values() {
            if b.removed_at.is_none() && !listed.contains(b.id.as_str()) {
                counts.removed += 1;
                sqlx::query("UPDATE langflows SET removed_at = $1 WHERE source = $2 AND id = $3")
                    .bind(at)
                    .bind(source)
                    .bind(&b.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)?;
        Ok(counts)
    }

    async fn langflows(&self, source: Option<&str>) -> Result<Vec<LangflowRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FLOW_COLS} FROM langflows WHERE ($1::text IS NULL OR source = $2) ORDER BY source, name, id"
        )))
        .bind(source)
        .bind(source)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(flow_row).collect()
    }
}
