//! Runs and the reads of tasks; the bulk changes of tasks are in `tasks`.

use std::sync::LazyLock;

use herd_core::{RunState, TaskState};
use herd_store::{
    AuditEntry, ListFilter, NewTask, PrunedRuns, ROWS_PER_STATEMENT, Result, RunRow, RunStore,
    TaskProgress, TaskRow, codec, sql_states,
};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::rows::{self, Cols, run_cols, task_cols};
use crate::{PgStore, audit, chunks, db, tasks};

/// Inserts a run with its tasks and its audit entry in the caller's transaction.
pub(crate) async fn insert_run(
    conn: &mut PgConnection,
    run: &RunRow,
    tasks: &[NewTask],
    entry: &AuditEntry,
) -> Result<()> {
    let spec = codec::json(&run.spec)?;
    sqlx::query(
        "INSERT INTO runs (id, command, selector, spec, created_by, created_at, cancel_requested, state, finished_at) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)",
    )
    .bind(&run.id)
    .bind(&run.command)
    .bind(&run.selector)
    .bind(spec)
    .bind(&run.created_by)
    .bind(run.created_at)
    .bind(run.cancel_requested)
    .bind(run.state.as_str())
    .bind(run.finished_at)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    tasks::insert(&mut *conn, run, tasks).await?;
    audit::record(&mut *conn, entry).await?;
    Ok(())
}

#[async_trait::async_trait]
impl RunStore for PgStore {
    async fn create_run(&self, run: &RunRow, tasks: &[NewTask], entry: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_run(&mut tx, run, tasks, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn run(&self, id: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::run).transpose()
    }

    async fn runs_filtered(&self, f: &ListFilter) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs WHERE ($1::bigint IS NULL OR created_at >= $1)",
            " AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR created_by = $3)",
            " AND ($4::text IS NULL OR id IN (SELECT run_id FROM tasks WHERE agent_name = $4))",
            " ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(f.since)
        .bind(&f.state)
        .bind(&f.who)
        .bind(&f.machine)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::run).collect()
    }

    async fn tasks_filtered(&self, f: &ListFilter) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE ($1::bigint IS NULL OR created_at >= $1)",
            " AND ($2::text IS NULL OR state = $2)",
            " AND ($3::text IS NULL OR run_id IN (SELECT id FROM runs WHERE created_by = $3))",
            " AND ($4::text IS NULL OR agent_name = $4)",
            " ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(f.since)
        .bind(&f.state)
        .bind(&f.who)
        .bind(&f.machine)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::task).collect()
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs WHERE finished_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::run).collect()
    }

    async fn prune_runs(&self, before: i64, limit: i64) -> Result<PrunedRuns> {
        // Finished, with no open task, oldest finished first; locked so that what is chosen
        // is what is deleted (a run another transaction holds is left for the next pass).
        static PRUNABLE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1 AND state <> '{}' \
                 AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = runs.id AND tasks.state IN ({})) \
                 ORDER BY finished_at, id LIMIT $2 FOR UPDATE OF runs SKIP LOCKED",
                RunState::Running.as_str(),
                sql_states(&TaskState::OPEN)
            )
        });
        let limit = limit.clamp(0, ROWS_PER_STATEMENT as i64);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let chosen = sqlx::query(AssertSqlSafe(PRUNABLE.as_str()))
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let ids = |rows: &[sqlx::postgres::PgRow]| -> Result<Vec<String>> {
            rows.iter()
                .map(|r| r.try_get::<String, _>("id").map_err(db))
                .collect()
        };
        let chosen = ids(&chosen)?;
        if chosen.is_empty() {
            return Ok(PrunedRuns::default());
        }
        let tasks = sqlx::query("DELETE FROM tasks WHERE run_id = ANY($1) RETURNING id")
            .bind(&chosen)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let runs = sqlx::query("DELETE FROM runs WHERE id = ANY($1) RETURNING id")
            .bind(&chosen)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(PrunedRuns {
            runs: ids(&runs)?,
            tasks: ids(&tasks)?,
        })
    }

    async fn request_cancel(&self, run_id: &str, entry: &AuditEntry) -> Result<Option<RunRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE runs SET cancel_requested = TRUE WHERE id = $1 RETURNING ",
            run_cols!()
        ))
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        audit::commit_change(tx, row, rows::run, entry).await
    }

    async fn finish_run(&self, id: &str, state: RunState, at: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE runs SET state = $1, finished_at = COALESCE(finished_at, $2) \
             WHERE id = $3 AND (state <> $1 OR finished_at IS NULL)",
        )
        .bind(state.as_str())
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::task).transpose()
    }

    async fn run_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        ids_with_prefix(
            &self.pool,
            "SELECT id FROM runs WHERE starts_with(id, $1) ORDER BY id LIMIT $2",
            prefix,
            limit,
        )
        .await
    }

    async fn task_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        ids_with_prefix(
            &self.pool,
            "SELECT id FROM tasks WHERE starts_with(id, $1) ORDER BY id LIMIT $2",
            prefix,
            limit,
        )
        .await
    }

    async fn tasks_by_ids(&self, ids: &[String]) -> Result<Vec<TaskRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for r in chunks(ids.len()) {
            let rows = sqlx::query(concat!(
                "SELECT ",
                task_cols!(),
                " FROM tasks WHERE id = ANY($1)"
            ))
            .bind(&ids[r])
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            for row in &rows {
                out.push(rows::task(row)?);
            }
        }
        Ok(out)
    }

    async fn tasks_of_run(&self, run_id: &str) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE run_id = $1 ORDER BY agent_name, id"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::task).collect()
    }

    async fn open_tasks_of_agents(&self, agent_ids: &[String]) -> Result<Vec<TaskRow>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                concat!(
                    "SELECT ",
                    task_cols!(),
                    " FROM tasks WHERE agent_id = ANY($1) AND state IN ({})"
                ),
                sql_states(&TaskState::OPEN)
            )
        });
        let mut out = Vec::new();
        for r in chunks(agent_ids.len()) {
            let rows = sqlx::query(AssertSqlSafe(SQL.as_str()))
                .bind(&agent_ids[r])
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            for row in &rows {
                out.push(rows::task(row)?);
            }
        }
        Ok(out)
    }

    async fn task_counts(&self) -> Result<Vec<(TaskState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS count FROM tasks GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| codec::state_count(&Cols(r))).collect()
    }

    async fn claim_queued(&self, ids: &[String], at: i64) -> Result<Vec<String>> {
        tasks::claim_queued(&self.pool, ids, at).await
    }

    async fn end_tasks(
        &self,
        ids: &[String],
        state: TaskState,
        reason: &str,
        at: i64,
    ) -> Result<Vec<String>> {
        tasks::end(&self.pool, ids, state, reason, at).await
    }

    async fn apply_progress(&self, batch: &[TaskProgress]) -> Result<Vec<(String, TaskState)>> {
        tasks::apply_progress(&self.pool, batch).await
    }
}

/// Ids starting with `prefix` by `sql` (`starts_with`: no wildcards, no collation).
async fn ids_with_prefix(
    pool: &sqlx::PgPool,
    sql: &'static str,
    prefix: &str,
    limit: i64,
) -> Result<Vec<String>> {
    sqlx::query_scalar::<_, String>(sql)
        .bind(prefix)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db)
}
