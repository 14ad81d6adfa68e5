//! Machines of the fleet: joins (token use, agent and audit in one transaction), label
//! edits, revocation, and flushes of what sessions reported.

use herd_core::{LabelEdits, Labels};
use herd_store::{
    AgentFlush, AgentRow, AgentStore, AuditEntry, JoinOutcome, ROWS_PER_STATEMENT, Result,
    StoreError, codec, merge_agent_flushes,
};
use sqlx::QueryBuilder;

use crate::rows::{self, agent_cols};
use crate::{SqliteStore, audit, db};

#[async_trait::async_trait]
impl AgentStore for SqliteStore {
    async fn join_agent(
        &self,
        token_id: &str,
        now: i64,
        agent: &AgentRow,
        entry: &AuditEntry,
    ) -> Result<JoinOutcome> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let used = sqlx::query(
            "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0 AND expires_at > ?",
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
        let inserted = sqlx::query(concat!(
            "INSERT INTO agents (",
            agent_cols!(),
            ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        ))
        .bind(&agent.id)
        .bind(&agent.name)
        .bind(&agent.cred_hash)
        .bind(codec::json(&agent.labels)?)
        .bind(codec::json(&agent.label_edits)?)
        .bind(codec::json(&agent.facts)?)
        .bind(
            agent
                .metrics
                .as_ref()
                .map(codec::metrics_json)
                .transpose()?,
        )
        .bind(&agent.version)
        .bind(agent.created_at)
        .bind(agent.last_seen)
        .bind(agent.revoked_at)
        .bind(agent.allowed_labels.as_ref().map(codec::json).transpose()?)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The live-name index (`agents_live_name`) refused it: the token use goes back.
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && e.message().contains("agents.name") =>
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
            " FROM agents WHERE id = ?"
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
        let batch = merge_agent_flushes(batch);
        if batch.is_empty() {
            return Ok(());
        }
        // Encoded up front: a value that cannot be stored fails the call before it writes.
        let mut hellos = Vec::new();
        let mut seen = Vec::new();
        for a in &batch {
            let metrics = a.metrics.as_ref().map(codec::metrics_json).transpose()?;
            match &a.hello {
                Some(h) => hellos.push((
                    a,
                    metrics,
                    codec::json(&h.labels)?,
                    codec::json(&h.facts)?,
                    h.version.as_str(),
                )),
                None => seen.push((a, metrics)),
            }
        }
        let mut tx = self.writer.begin().await.map_err(db)?;
        for chunk in hellos.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "UPDATE agents SET labels = j.column2, facts = j.column3, version = j.column4, metrics = COALESCE(j.column5, agents.metrics), last_seen = j.column6 FROM (",
            );
            qb.push_values(chunk, |mut b, (a, metrics, labels, facts, version)| {
                b.push_bind(&a.id)
                    .push_bind(labels)
                    .push_bind(facts)
                    .push_bind(*version)
                    .push_bind(metrics)
                    .push_bind(a.last_seen);
            });
            qb.push(") AS j WHERE agents.id = j.column1");
            qb.build().execute(&mut *tx).await.map_err(db)?;
        }
        for chunk in seen.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "UPDATE agents SET metrics = COALESCE(j.column2, agents.metrics), last_seen = j.column3 FROM (",
            );
            qb.push_values(chunk, |mut b, (a, metrics)| {
                b.push_bind(&a.id).push_bind(metrics).push_bind(a.last_seen);
            });
            qb.push(") AS j WHERE agents.id = j.column1");
            qb.build().execute(&mut *tx).await.map_err(db)?;
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
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET labels = ? WHERE id = ? RETURNING ",
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
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET server_labels = ? WHERE id = ? RETURNING ",
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
        let mut tx = self.writer.begin().await.map_err(db)?;
        let mut out = Vec::with_capacity(changes.len());
        for (id, edits, entry) in changes {
            let row = sqlx::query(concat!(
                "UPDATE agents SET server_labels = ? WHERE id = ? RETURNING ",
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
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING ",
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
