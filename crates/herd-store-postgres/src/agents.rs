//! Machines of the fleet: joins (token use, agent and audit in one transaction), label
//! edits, revocation, and flushes of what sessions reported (`UNNEST` of arrays).

use herd_core::{LabelEdits, Labels};
use herd_store::{
    AgentFlush, AgentRow, AgentStore, AuditEntry, JoinOutcome, Result, StoreError, codec,
    merge_agent_flushes,
};

use crate::rows::{self, agent_cols};
use crate::{PgStore, audit, chunks, db};

/// The index that keeps live agents' names unique.
const LIVE_NAME_INDEX: &str = "agents_live_name";

#[async_trait::async_trait]
impl AgentStore for PgStore {
    async fn join_agent(
        &self,
        token_id: &str,
        now: i64,
        agent: &AgentRow,
        entry: &AuditEntry,
    ) -> Result<JoinOutcome> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let used = sqlx::query(
            "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0 AND expires_at > $2",
        )
        .bind(token_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if used.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(JoinOutcome::TokenSpent);
        }
        let inserted = sqlx::query(
            "INSERT INTO agents (id, name, cred_hash, labels, server_labels, facts, metrics, version, created_at, last_seen, revoked_at, allowed_labels) \
             VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12::jsonb)",
        )
        .bind(&agent.id)
        .bind(&agent.name)
        .bind(&agent.cred_hash)
        .bind(codec::json(&agent.labels)?)
        .bind(codec::json(&agent.label_edits)?)
        .bind(codec::json(&agent.facts)?)
        .bind(agent.metrics.as_ref().map(codec::metrics_json).transpose()?)
        .bind(&agent.version)
        .bind(agent.created_at)
        .bind(agent.last_seen)
        .bind(agent.revoked_at)
        .bind(agent.allowed_labels.as_ref().map(codec::json).transpose()?)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The live-name index refused it: the token use goes back.
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && e.constraint() == Some(LIVE_NAME_INDEX) =>
            {
                tx.rollback().await.map_err(db)?;
                return Ok(JoinOutcome::NameTaken);
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "an agent with id {} already exists",
                    agent.id
                )));
            }
            Err(e) => return Err(db(e)),
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)?;
        Ok(JoinOutcome::Joined)
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::agent).transpose()
    }

    async fn agents(&self, include_revoked: bool) -> Result<Vec<AgentRow>> {
        let sql = if include_revoked {
            concat!(
                "SELECT ",
                agent_cols!(),
                " FROM agents ORDER BY name, created_at, id"
            )
        } else {
            concat!(
                "SELECT ",
                agent_cols!(),
                " FROM agents WHERE revoked_at IS NULL ORDER BY name"
            )
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(rows::agent).collect()
    }

    async fn flush_agents(&self, batch: &[AgentFlush]) -> Result<()> {
        let mut batch = merge_agent_flushes(batch);
        if batch.is_empty() {
            return Ok(());
        }
        // In id order, as every bulk change names its rows (no deadlock between two).
        batch.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        // Columns as arrays, encoded up front: a value that cannot be stored fails the call
        // before it writes.
        let (mut hello_ids, mut labels, mut facts, mut versions, mut hello_metrics, mut hello_seen) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut seen_ids, mut seen_metrics, mut seen_at) = (vec![], vec![], vec![]);
        for a in &batch {
            let metrics = a.metrics.as_ref().map(codec::metrics_json).transpose()?;
            match &a.hello {
                Some(h) => {
                    hello_ids.push(a.id.as_str());
                    labels.push(codec::json(&h.labels)?);
                    facts.push(codec::json(&h.facts)?);
                    versions.push(h.version.as_str());
                    hello_metrics.push(metrics);
                    hello_seen.push(a.last_seen);
                }
                None => {
                    seen_ids.push(a.id.as_str());
                    seen_metrics.push(metrics);
                    seen_at.push(a.last_seen);
                }
            }
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        for r in chunks(hello_ids.len()) {
            sqlx::query(
                "UPDATE agents SET labels = j.labels::jsonb, facts = j.facts::jsonb, version = j.version, \
                 metrics = COALESCE(j.metrics::jsonb, agents.metrics), last_seen = j.last_seen \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                 AS j(id, labels, facts, version, metrics, last_seen) WHERE agents.id = j.id",
            )
            .bind(&hello_ids[r.clone()])
            .bind(&labels[r.clone()])
            .bind(&facts[r.clone()])
            .bind(&versions[r.clone()])
            .bind(&hello_metrics[r.clone()])
            .bind(&hello_seen[r])
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for r in chunks(seen_ids.len()) {
            sqlx::query(
                "UPDATE agents SET metrics = COALESCE(j.metrics::jsonb, agents.metrics), last_seen = j.last_seen \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS j(id, metrics, last_seen) \
                 WHERE agents.id = j.id",
            )
            .bind(&seen_ids[r.clone()])
            .bind(&seen_metrics[r.clone()])
            .bind(&seen_at[r])
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn set_declared_labels(
        &self,
        id: &str,
        labels: &Labels,
        entry: &AuditEntry,
    ) -> Result<Option<AgentRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET labels = $1::jsonb WHERE id = $2 RETURNING ",
            agent_cols!()
        ))
        .bind(codec::json(labels)?)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, rows::agent, entry).await
    }

    async fn set_label_edits(
        &self,
        id: &str,
        edits: &LabelEdits,
        entry: &AuditEntry,
    ) -> Result<Option<AgentRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET server_labels = $1::jsonb WHERE id = $2 RETURNING ",
            agent_cols!()
        ))
        .bind(codec::json(edits)?)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, rows::agent, entry).await
    }

    async fn set_many_label_edits(
        &self,
        changes: &[(String, LabelEdits, AuditEntry)],
    ) -> Result<Vec<AgentRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut out = Vec::with_capacity(changes.len());
        for (id, edits, entry) in changes {
            let row = sqlx::query(concat!(
                "UPDATE agents SET server_labels = $1::jsonb WHERE id = $2 RETURNING ",
                agent_cols!()
            ))
            .bind(codec::json(edits)?)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(row) = row {
                out.push(rows::agent(&row)?);
                audit::record(&mut tx, entry).await?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn revoke_agent(
        &self,
        id: &str,
        at: i64,
        entry: &AuditEntry,
    ) -> Result<Option<AgentRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING ",
            agent_cols!()
        ))
        .bind(at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, rows::agent, entry).await
    }
}
