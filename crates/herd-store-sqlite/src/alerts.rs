//! Alert rules and the alerts they raised.

use herd_store::{
    AlertRow, AlertRuleRow, AlertStore, AlertUpdate, AuditEntry, Result, StoreError, codec,
};

use crate::rows::Cols;
use crate::{SqliteStore, audit, db};

const RULE_COLS: &str = "name, spec, created_by, created_at";
const ALERT_COLS: &str = "id, rule, agent_id, agent_name, metric, level, value, threshold, raised_at, changed_at, cleared_at, escalated, notified, runbook_run, runbook_state";

/// A number as the `value` and `threshold` columns keep it (text that reads back exactly).
fn number(v: f64) -> String {
    format!("{v:?}")
}

#[async_trait::async_trait]
impl AlertStore for SqliteStore {
    async fn create_alert_rule(&self, r: &AlertRuleRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let res = sqlx::query(
            "INSERT INTO alert_rules (name, spec, created_by, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&r.name)
        .bind(&r.spec)
        .bind(&r.created_by)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await;
        match res {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "an alert rule named {:?} exists",
                    r.name
                )));
            }
            Err(e) => return Err(db(e)),
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLS} FROM alert_rules ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::alert_rule(&Cols(r))).collect()
    }

    async fn delete_alert_rule(&self, name: &str, at: i64, entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let n = sqlx::query("DELETE FROM alert_rules WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE alerts SET cleared_at = ? WHERE rule = ? AND cleared_at IS NULL")
            .bind(at)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn raise_alert(&self, a: &AlertRow) -> Result<bool> {
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO alerts ({ALERT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (rule, agent_id) WHERE cleared_at IS NULL DO NOTHING"
        )))
        .bind(&a.id)
        .bind(&a.rule)
        .bind(&a.agent_id)
        .bind(&a.agent_name)
        .bind(&a.metric)
        .bind(&a.level)
        .bind(number(a.value))
        .bind(number(a.threshold))
        .bind(a.raised_at)
        .bind(a.changed_at)
        .bind(a.cleared_at)
        .bind(a.escalated)
        .bind(&a.notified)
        .bind(&a.runbook_run)
        .bind(&a.runbook_state)
        .execute(&self.writer)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn update_alert(&self, id: &str, u: &AlertUpdate) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let mut changed = false;
        if u.notified.is_some() || u.runbook_run.is_some() || u.runbook_state.is_some() {
            changed |= sqlx::query(
                "UPDATE alerts SET notified = COALESCE(?, notified), \
                 runbook_run = COALESCE(?, runbook_run), runbook_state = COALESCE(?, runbook_state) \
                 WHERE id = ?",
            )
            .bind(&u.notified)
            .bind(&u.runbook_run)
            .bind(&u.runbook_state)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                > 0;
        }
        if u.changes_state() {
            changed |= sqlx::query(
                "UPDATE alerts SET level = COALESCE(?, level), value = COALESCE(?, value), \
                 threshold = COALESCE(?, threshold), changed_at = COALESCE(?, changed_at), \
                 escalated = COALESCE(?, escalated), cleared_at = ? \
                 WHERE id = ? AND cleared_at IS NULL",
            )
            .bind(&u.level)
            .bind(u.value.map(number))
            .bind(u.threshold.map(number))
            .bind(u.changed_at)
            .bind(u.escalated)
            .bind(u.cleared_at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                > 0;
        }
        tx.commit().await.map_err(db)?;
        Ok(changed)
    }

    async fn alerts(&self, all: bool, limit: i64) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE (? OR cleared_at IS NULL) \
             ORDER BY raised_at DESC, id DESC LIMIT ?"
        )))
        .bind(all)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::alert(&Cols(r))).collect()
    }
}
