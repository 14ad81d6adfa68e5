//! `herd ask`'s runs, attempts and model exchanges.

use herd_store::{
    AskAttemptRow, AskExchangeRow, AskRunRow, AskStore, AuditEntry, Result, StoreError, codec,
};

use crate::rows::Cols;
use crate::{PgStore, audit, db};

const RUN_COLS: &str =
    "run_id, plan_id, request, plan, unattended, summary, created_by, created_at";
const ATTEMPT_COLS: &str = "run_id, step_id, attempt, origin, command, description, check_json, \
                            approval, task_run_id, validation, created_at";
const EXCHANGE_COLS: &str = "id, plan_id, kind, step_id, at, model, tokens, request, answer, error";

async fn put_attempt(conn: &mut sqlx::PgConnection, a: &AskAttemptRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO ask_attempts (run_id, step_id, attempt, origin, command, description, \
         check_json, approval, task_run_id, validation, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET origin = excluded.origin, \
         command = excluded.command, description = excluded.description, \
         check_json = excluded.check_json, approval = excluded.approval, \
         task_run_id = excluded.task_run_id, validation = excluded.validation",
    )
    .bind(&a.run_id)
    .bind(&a.step_id)
    .bind(a.attempt)
    .bind(&a.origin)
    .bind(&a.command)
    .bind(&a.description)
    .bind(&a.check)
    .bind(&a.approval)
    .bind(&a.task_run_id)
    .bind(&a.validation)
    .bind(a.created_at)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait::async_trait]
impl AskStore for PgStore {
    async fn create_ask_run(&self, run: &AskRunRow, attempts: &[AskAttemptRow]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "INSERT INTO ask_runs (run_id, plan_id, request, plan, unattended, summary, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&run.run_id)
        .bind(&run.plan_id)
        .bind(&run.request)
        .bind(&run.plan)
        .bind(run.unattended)
        .bind(&run.summary)
        .bind(&run.created_by)
        .bind(run.created_at)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "a plan's run {} exists",
                    run.run_id
                )));
            }
            Err(e) => return Err(db(e)),
        }
        for a in attempts {
            put_attempt(&mut tx, a).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn ask_run(&self, run_id: &str) -> Result<Option<AskRunRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLS} FROM ask_runs WHERE run_id = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| codec::ask_run(&Cols(&r))).transpose()
    }

    async fn put_ask_attempt(&self, attempt: &AskAttemptRow) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        put_attempt(&mut conn, attempt).await
    }

    async fn ask_attempts(&self, run_id: &str) -> Result<Vec<AskAttemptRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLS} FROM ask_attempts WHERE run_id = $1 ORDER BY step_id, attempt"
        )))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::ask_attempt(&Cols(r))).collect()
    }

    async fn set_ask_summary(&self, run_id: &str, summary: &str) -> Result<()> {
        sqlx::query("UPDATE ask_runs SET summary = $1 WHERE run_id = $2")
            .bind(summary)
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn decide_ask_attempt(
        &self,
        run_id: &str,
        step_id: &str,
        attempt: i64,
        approval: &str,
        entry: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE ask_attempts SET approval = $1 \
             WHERE run_id = $2 AND step_id = $3 AND attempt = $4 AND approval = 'awaiting'",
        )
        .bind(approval)
        .bind(run_id)
        .bind(step_id)
        .bind(attempt)
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

    async fn add_ask_exchange(&self, e: &AskExchangeRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO ask_exchanges (id, plan_id, kind, step_id, at, model, tokens, request, \
             answer, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.id)
        .bind(&e.plan_id)
        .bind(&e.kind)
        .bind(&e.step_id)
        .bind(e.at)
        .bind(&e.model)
        .bind(e.tokens)
        .bind(&e.request)
        .bind(&e.answer)
        .bind(&e.error)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn ask_exchanges(&self, plan_id: &str) -> Result<Vec<AskExchangeRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EXCHANGE_COLS} FROM ask_exchanges WHERE plan_id = $1 ORDER BY at, id"
        )))
        .bind(plan_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::ask_exchange(&Cols(r))).collect()
    }
}
