//! Jobs and workflows: definitions by version, workflow runs and their steps, each change a
//! person makes with its audit entry.

use herd_core::{DefKind, RunState};
use herd_store::{
    AuditEntry, DefinitionRow, FlowRunRow, FlowStepRow, FlowStore, ListFilter, ROWS_PER_STATEMENT,
    Result, StepAttemptRow, StoreError, codec, merge_attempts, merge_steps, version_conflict,
};
use sqlx::{AssertSqlSafe, QueryBuilder, SqliteConnection};

use crate::rows::Cols;
use crate::{SqliteStore, audit, db};

macro_rules! def_cols {
    () => {
        "kind, name, version, body, source, created_at, created_by"
    };
}
macro_rules! flow_run_cols {
    () => {
        "id, kind, name, version, definition, params, sealed, targets, state, created_by, created_at, finished_at, cancel_requested, parent"
    };
}
macro_rules! step_cols {
    () => {
        "flow_run_id, step_id, state, attempt, run_id, outputs, output, detail, started_at, finished_at, not_before"
    };
}

fn def_row(r: &sqlx::sqlite::SqliteRow) -> Result<DefinitionRow> {
    codec::definition(&Cols(r))
}

fn flow_run_row(r: &sqlx::sqlite::SqliteRow) -> Result<FlowRunRow> {
    codec::flow_run(&Cols(r))
}

fn step_row(r: &sqlx::sqlite::SqliteRow) -> Result<FlowStepRow> {
    codec::flow_step(&Cols(r))
}

/// Writes attempt rows: a new one whole, a stored one's state, detail and end.
async fn write_attempts(
    conn: &mut SqliteConnection,
    flow_run_id: &str,
    attempts: &[StepAttemptRow],
) -> Result<()> {
    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO flow_step_attempts (flow_run_id, step_id, attempt, run_id, state, detail, started_at, finished_at) ",
        );
        qb.push_values(chunk, |mut b, a| {
            b.push_bind(flow_run_id)
                .push_bind(&a.step_id)
                .push_bind(a.attempt)
                .push_bind(&a.run_id)
                .push_bind(a.state.as_str())
                .push_bind(&a.detail)
                .push_bind(a.started_at)
                .push_bind(a.finished_at);
        });
        qb.push(
            " ON CONFLICT (flow_run_id, step_id, attempt) DO UPDATE SET \
             state = excluded.state, detail = excluded.detail, finished_at = excluded.finished_at",
        );
        qb.build().execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Writes step rows whole (inserted, or replacing the row of their run and step id), one
/// statement per [`ROWS_PER_STATEMENT`] rows. A new step's `seq` is the run's highest plus its
/// place among the rows given, so the run's steps read back in the order they were created.
async fn write_steps(
    conn: &mut SqliteConnection,
    flow_run_id: &str,
    steps: &[&FlowStepRow],
) -> Result<()> {
    for chunk in steps.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO flow_steps (flow_run_id, seq, step_id, state, attempt, run_id, outputs, output, detail, started_at, finished_at, not_before) \
             SELECT r.run, r.top + v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9, v.column10, v.column11 FROM (",
        );
        qb.push_values(chunk.iter().enumerate(), |mut b, (i, s)| {
            b.push_bind(i as i64 + 1)
                .push_bind(&s.step_id)
                .push_bind(s.state.as_str())
                .push_bind(s.attempt)
                .push_bind(&s.run_id)
                .push_bind(&s.outputs)
                .push_bind(&s.output)
                .push_bind(&s.detail)
                .push_bind(s.started_at)
                .push_bind(s.finished_at)
                .push_bind(s.not_before);
        });
        qb.push(") AS v CROSS JOIN (SELECT ")
            .push_bind(flow_run_id)
            .push(" AS run, COALESCE(MAX(seq), 0) AS top FROM flow_steps WHERE flow_run_id = ")
            .push_bind(flow_run_id)
            .push(
                ") AS r WHERE true ON CONFLICT (flow_run_id, step_id) DO UPDATE SET \
                 state = excluded.state, attempt = excluded.attempt, run_id = excluded.run_id, \
                 outputs = excluded.outputs, output = excluded.output, detail = excluded.detail, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at, \
                 not_before = excluded.not_before",
            );
        qb.build().execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Inserts a workflow run with its steps and its audit entry in the caller's transaction.
pub(crate) async fn insert_flow_run(
    conn: &mut SqliteConnection,
    run: &FlowRunRow,
    steps: &[FlowStepRow],
    entry: &AuditEntry,
) -> Result<()> {
    let steps = merge_steps(&run.id, steps)?;
    let targets = codec::json(&run.targets)?;
    let r = sqlx::query(concat!(
        "INSERT INTO flow_runs (",
        flow_run_cols!(),
        ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    ))
    .bind(&run.id)
    .bind(run.kind.as_str())
    .bind(&run.name)
    .bind(run.version)
    .bind(&run.definition)
    .bind(&run.params)
    .bind(&run.sealed)
    .bind(targets)
    .bind(run.state.as_str())
    .bind(&run.created_by)
    .bind(run.created_at)
    .bind(run.finished_at)
    .bind(run.cancel_requested)
    .bind(&run.parent)
    .execute(&mut *conn)
    .await;
    match r {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::Conflict(format!(
                "a workflow run {} already exists",
                run.id
            )));
        }
        Err(e) => return Err(db(e)),
    }
    write_steps(&mut *conn, &run.id, &steps).await?;
    audit::record(&mut *conn, entry).await?;
    Ok(())
}

#[async_trait::async_trait]
impl FlowStore for SqliteStore {
    async fn put_definition(&self, def: &DefinitionRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        // Inserted only as the next version: checked and written by one statement.
        let r = sqlx::query(concat!(
            "INSERT INTO definitions (",
            def_cols!(),
            ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE ?3 = ",
            "(SELECT COALESCE(MAX(version), 0) + 1 FROM definitions WHERE kind = ?1 AND name = ?2)"
        ))
        .bind(def.kind.as_str())
        .bind(&def.name)
        .bind(def.version)
        .bind(&def.body)
        .bind(&def.source)
        .bind(def.created_at)
        .bind(&def.created_by)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => return Err(version_conflict(def)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(version_conflict(def));
            }
            Err(e) => return Err(db(e)),
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn definition(&self, kind: DefKind, name: &str) -> Result<Option<DefinitionRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            def_cols!(),
            " FROM definitions WHERE kind = ? AND name = ? ORDER BY version DESC LIMIT 1"
        ))
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(def_row).transpose()
    }

    async fn definition_version(
        &self,
        kind: DefKind,
        name: &str,
        version: i64,
    ) -> Result<Option<DefinitionRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            def_cols!(),
            " FROM definitions WHERE kind = ? AND name = ? AND version = ?"
        ))
        .bind(kind.as_str())
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(def_row).transpose()
    }

    async fn definitions(&self, kind: DefKind) -> Result<Vec<DefinitionRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            def_cols!(),
            " FROM definitions AS d WHERE kind = ?1 AND version = ",
            "(SELECT MAX(version) FROM definitions WHERE kind = ?1 AND name = d.name) ORDER BY name"
        ))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(def_row).collect()
    }

    async fn delete_definition(
        &self,
        kind: DefKind,
        name: &str,
        entry: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("DELETE FROM definitions WHERE kind = ? AND name = ?")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn create_flow_run(
        &self,
        run: &FlowRunRow,
        steps: &[FlowStepRow],
        entry: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        insert_flow_run(&mut tx, run, steps, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            flow_run_cols!(),
            " FROM flow_runs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(flow_run_row).transpose()
    }

    async fn flow_runs(&self, f: &ListFilter) -> Result<Vec<FlowRunRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            flow_run_cols!(),
            " FROM flow_runs WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR state = ?2)",
            " AND (?3 IS NULL OR created_by = ?3) AND (?5 IS NULL OR name = ?5)",
            " ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .bind(f.since)
        .bind(&f.state)
        .bind(&f.who)
        .bind(f.limit)
        .bind(&f.name)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(flow_run_row).collect()
    }

    async fn flow_run_ids_with_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        // Compared as text (`substr`), so `_` and `%` in the prefix are not wildcards.
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM flow_runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
        )
        .bind(prefix)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn unfinished_flow_runs(&self) -> Result<Vec<FlowRunRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            flow_run_cols!(),
            " FROM flow_runs WHERE finished_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(flow_run_row).collect()
    }

    async fn flow_steps(&self, flow_run_id: &str) -> Result<Vec<FlowStepRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_cols!(),
            " FROM flow_steps WHERE flow_run_id = ? ORDER BY seq"
        ))
        .bind(flow_run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(step_row).collect()
    }

    async fn update_flow(
        &self,
        flow_run_id: &str,
        steps: &[FlowStepRow],
        attempts: &[StepAttemptRow],
        finish: Option<(RunState, i64)>,
    ) -> Result<()> {
        let steps = merge_steps(flow_run_id, steps)?;
        let attempts = merge_attempts(flow_run_id, attempts)?;
        if steps.is_empty() && attempts.is_empty() && finish.is_none() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(db)?;
        write_steps(&mut tx, flow_run_id, &steps).await?;
        write_attempts(&mut tx, flow_run_id, &attempts).await?;
        if let Some((state, at)) = finish {
            let r = sqlx::query("UPDATE flow_runs SET state = ?, finished_at = ? WHERE id = ?")
                .bind(state.as_str())
                .bind(at)
                .bind(flow_run_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("workflow run {flow_run_id}")));
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn flow_step_attempts(&self, flow_run_id: &str) -> Result<Vec<StepAttemptRow>> {
        let rows = sqlx::query(
            "SELECT flow_run_id, step_id, attempt, run_id, state, detail, started_at, finished_at \
             FROM flow_step_attempts WHERE flow_run_id = ? ORDER BY step_id, attempt",
        )
        .bind(flow_run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::step_attempt(&Cols(r))).collect()
    }

    async fn request_flow_cancel(
        &self,
        id: &str,
        entry: &AuditEntry,
    ) -> Result<Option<FlowRunRow>> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE flow_runs SET cancel_requested = 1 WHERE id = ? AND finished_at IS NULL RETURNING ",
            flow_run_cols!()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if row.is_some() {
            return audit::commit_change(tx, row, flow_run_row, entry).await;
        }
        // Finished (answered as it is) or not there.
        let row = sqlx::query(concat!(
            "SELECT ",
            flow_run_cols!(),
            " FROM flow_runs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        tx.rollback().await.map_err(db)?;
        row.as_ref().map(flow_run_row).transpose()
    }

    async fn prune_flow_runs(&self, before: i64, limit: i64) -> Result<u64> {
        let limit = limit.clamp(0, herd_store::ROWS_PER_STATEMENT as i64);
        let mut tx = self.writer.begin().await.map_err(db)?;
        // The one writer: what is chosen here is what is deleted.
        let chosen = "SELECT id FROM flow_runs WHERE finished_at IS NOT NULL AND finished_at < ? \
                      ORDER BY finished_at, id LIMIT ?";
        for table in ["flow_steps", "flow_step_attempts"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE flow_run_id IN ({chosen})"
            )))
            .bind(before)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // `herd ask`'s records of those runs (attempts, the plan's exchanges with the model).
        for q in [
            format!("DELETE FROM ask_attempts WHERE run_id IN ({chosen})"),
            format!(
                "DELETE FROM ask_exchanges WHERE plan_id IN \
                 (SELECT plan_id FROM ask_runs WHERE run_id IN ({chosen}))"
            ),
            format!("DELETE FROM ask_runs WHERE run_id IN ({chosen})"),
        ] {
            sqlx::query(AssertSqlSafe(q))
                .bind(before)
                .bind(limit)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // Exchanges of plans that never ran, as old.
        sqlx::query(
            "DELETE FROM ask_exchanges WHERE id IN (SELECT id FROM ask_exchanges WHERE at < ? \
             AND plan_id NOT IN (SELECT plan_id FROM ask_runs) LIMIT ?)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let runs = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM flow_runs WHERE id IN ({chosen})"
        )))
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(runs.rows_affected())
    }
}
