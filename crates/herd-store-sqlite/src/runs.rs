//! Runs and the reads of tasks; the bulk changes of tasks are in `tasks`.

use herd_core::{RunState, TaskState};
use std::sync::LazyLock;

use herd_store::{
    AuditEntry, ListFilter, NewTask, PrunedRuns, ROWS_PER_STATEMENT, Result, RunRow, RunStore,
    TaskProgress, TaskRow, codec, sql_states,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, SqliteConnection, SqlitePool};

use crate::rows::{self, Cols, run_cols, task_cols};
use crate::{SqliteStore, audit, db, tasks};

/// The tasks whose `column` is one of `values` (and, if given, whose state is open), one
/// statement per [`ROWS_PER_STATEMENT`] values.
async fn tasks_where_in(
    pool: &SqlitePool,
    column: &str,
    values: &[String],
    open_only: bool,
) -> Result<Vec<TaskRow>> {
    let mut out = Vec::new();
    for chunk in values.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(concat!("SELECT ", task_cols!(), " FROM tasks WHERE "));
        if open_only {
            qb.push(format_args!(
                "state IN ({}) AND ",
                sql_states(&TaskState::OPEN)
            ));
        }
        qb.push(format_args!("{column} IN ("));
        let mut list = qb.separated(",");
        for v in chunk {
            list.push_bind(v);
        }
        qb.push(")");
        let rows = qb.build().fetch_all(pool).await.map_err(db)?;
        for r in &rows {
            out.push(rows::task(r)?);
        }
    }
    Ok(out)
}

/// The runs `prune_runs` deletes (`?1` finished before, `?2` at most): finished, with no
/// open task, oldest finished first. Named twice in one transaction (tasks, then runs), the
/// first statement a write, so the transaction holds the write lock and both name the same runs.
static PRUNABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1 AND state <> '{}' \
         AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = runs.id AND tasks.state IN ({})) \
         ORDER BY finished_at, id LIMIT ?2",
        RunState::Running.as_str(),
        sql_states(&TaskState::OPEN)
    )
});
static PRUNE_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM tasks WHERE run_id IN ({}) RETURNING id",
        PRUNABLE.as_str()
    )
});
static PRUNE_RUNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM runs WHERE id IN ({}) RETURNING id",
        PRUNABLE.as_str()
    )
});

/// Inserts a run with its tasks and its audit entry in the caller's transaction.
pub(crate) async fn insert_run(
    conn: &mut SqliteConnection,
    run: &RunRow,
    tasks: &[NewTask],
    entry: &AuditEntry,
) -> Result<()> {
    let spec = codec::json(&run.spec)?;
    sqlx::query(concat!(
        "INSERT INTO runs (",
        run_cols!(),
        ") VALUES (?,?,?,?,?,?,?,?,?)"
    ))
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
impl RunStore for SqliteStore {
    async fn create_run(&self, run: &RunRow, tasks: &[NewTask], entry: &AuditEntry) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        insert_run(&mut tx, run, tasks, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn run(&self, id: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM runs WHERE id = ?"))
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
            " FROM runs WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR state = ?2)",
            " AND (?3 IS NULL OR created_by = ?3)",
            " AND (?4 IS NULL OR id IN (SELECT run_id FROM tasks WHERE agent_name = ?4))",
            " ORDER BY created_at DESC, id DESC LIMIT ?5"
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
            " FROM tasks WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR state = ?2)",
            " AND (?3 IS NULL OR run_id IN (SELECT id FROM runs WHERE created_by = ?3))",
            " AND (?4 IS NULL OR agent_name = ?4)",
            " ORDER BY created_at DESC, id DESC LIMIT ?5"
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
        let limit = limit.clamp(0, ROWS_PER_STATEMENT as i64);
        let mut tx = self.writer.begin().await.map_err(db)?;
        let tasks = sqlx::query(AssertSqlSafe(PRUNE_TASKS.as_str()))
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let runs = sqlx::query(AssertSqlSafe(PRUNE_RUNS.as_str()))
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let ids = |rows: Vec<sqlx::sqlite::SqliteRow>| -> Result<Vec<String>> {
            rows.iter()
                .map(|r| r.try_get::<String, _>("id").map_err(db))
                .collect()
        };
        Ok(PrunedRuns {
            runs: ids(runs)?,
            tasks: ids(tasks)?,
        })
    }

    async fn request_cancel(&self, run_id: &str, entry: &AuditEntry) -> Result<Option<RunRow>> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE runs SET cancel_requested = 1 WHERE id = ? RETURNING ",
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
            "UPDATE runs SET state = ?, finished_at = COALESCE(finished_at, ?) WHERE id = ? AND (state <> ? OR finished_at IS NULL)",
        )
        .bind(state.as_str())
        .bind(at)
        .bind(id)
        .bind(state.as_str())
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let row = sqlx::query(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::task).transpose()
    }

    async fn run_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        ids_with_prefix(
            &self.pool,
            "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
            prefix,
            limit,
        )
        .await
    }

    async fn task_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        ids_with_prefix(
            &self.pool,
            "SELECT id FROM tasks WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
            prefix,
            limit,
        )
        .await
    }

    async fn tasks_by_ids(&self, ids: &[String]) -> Result<Vec<TaskRow>> {
        tasks_where_in(&self.pool, "id", ids, false).await
    }

    async fn tasks_of_run(&self, run_id: &str) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE run_id = ? ORDER BY agent_name, id"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::task).collect()
    }

    async fn open_tasks_of_agents(&self, agent_ids: &[String]) -> Result<Vec<TaskRow>> {
        tasks_where_in(&self.pool, "agent_id", agent_ids, true).await
    }

    async fn task_counts(&self) -> Result<Vec<(TaskState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS count FROM tasks GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| codec::state_count(&Cols(r))).collect()
    }

    async fn claim_queued(&self, ids: &[String], at: i64) -> Result<Vec<String>> {
        tasks::claim_queued(&self.writer, ids, at).await
    }

    async fn end_tasks(
        &self,
        ids: &[String],
        state: TaskState,
        reason: &str,
        at: i64,
    ) -> Result<Vec<String>> {
        tasks::end(&self.writer, ids, state, reason, at).await
    }

    async fn apply_progress(&self, batch: &[TaskProgress]) -> Result<Vec<(String, TaskState)>> {
        tasks::apply_progress(&self.writer, batch).await
    }
}

/// Ids starting with `prefix` by `sql`: compared as text (`substr`), so `_` and `%` in it
/// are not wildcards.
async fn ids_with_prefix(
    pool: &SqlitePool,
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
