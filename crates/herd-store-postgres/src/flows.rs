//! Jobs and workflows: definitions by version, workflow runs and their steps, each change a
//! person makes with its audit entry.

use herd_core::{DefKind, RunState};
use herd_store::{
    AuditEntry, DefinitionRow, FlowRunRow, FlowStepRow, FlowStore, ListFilter, Result,
    StepAttemptRow, StoreError, codec, merge_attempts, merge_steps, version_conflict,
};
use sqlx::PgConnection;

use crate::rows::Cols;
use crate::{PgStore, audit, chunks, db};

macro_rules! def_cols {
    () => {
        "kind, name, version, body, source, created_at, created_by"
    };
}
macro_rules! flow_run_cols {
    () => {
        "id, kind, name, version, definition, params, sealed, targets::text AS targets, state, created_by, created_at, finished_at, cancel_requested, parent"
    };
}
macro_rules! step_cols {
    () => {
        "flow_run_id, step_id, state, attempt, run_id, outputs, output, detail, started_at, finished_at, not_before"
    };
}

fn def_row(r: &sqlx::postgres::PgRow) -> Result<DefinitionRow> {
    codec::definition(&Cols(r))
}

fn flow_run_row(r: &sqlx::postgres::PgRow) -> Result<FlowRunRow> {
    codec::flow_run(&Cols(r))
}

fn step_row(r: &sqlx::postgres::PgRow) -> Result<FlowStepRow> {
    codec::flow_step(&Cols(r))
}

/// Writes attempt rows: a new one whole, a stored one's state, detail and end.
async fn write_attempts(
    conn: &mut PgConnection,
    flow_run_id: &str,
    attempts: &[StepAttemptRow],
) -> Result<()> {
    for r in chunks(attempts.len()) {
        let attempts = &attempts[r];
        let steps: Vec<&str> = attempts.iter().map(|a| a.step_id.as_str()).collect();
        let numbers: Vec<i64> = attempts.iter().map(|a| a.attempt).collect();
        let run_ids: Vec<Option<&str>> = attempts.iter().map(|a| a.run_id.as_deref()).collect();
        let states: Vec<&str> = attempts.iter().map(|a| a.state.as_str()).collect();
        let details: Vec<Option<&str>> = attempts.iter().map(|a| a.detail.as_deref()).collect();
        let started: Vec<i64> = attempts.iter().map(|a| a.started_at).collect();
        let finished: Vec<Option<i64>> = attempts.iter().map(|a| a.finished_at).collect();
        sqlx::query(
            "INSERT INTO flow_step_attempts (flow_run_id, step_id, attempt, run_id, state, detail, started_at, finished_at) \
             SELECT $1, a.step_id, a.attempt, a.run_id, a.state, a.detail, a.started_at, a.finished_at \
             FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[]) \
             AS a(step_id, attempt, run_id, state, detail, started_at, finished_at) \
             ON CONFLICT (flow_run_id, step_id, attempt) DO UPDATE SET \
             state = excluded.state, detail = excluded.detail, finished_at = excluded.finished_at",
        )
        .bind(flow_run_id)
        .bind(steps)
        .bind(numbers)
        .bind(run_ids)
        .bind(states)
        .bind(details)
        .bind(started)
        .bind(finished)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Takes the transaction's lock on one definition's name: its changes (a new version, a
/// delete) are made one at a time, by every server of the database, each reading what the
/// one before committed.
async fn lock_name(conn: &mut PgConnection, kind: DefKind, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(kind.as_str())
        .bind(name)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Writes step rows whole (inserted, or replacing the row of their run and step id), one
/// statement per [`herd_store::ROWS_PER_STATEMENT`] rows. New rows are inserted in the order
/// given, so their `seq` (an identity) keeps the order the run's steps were created in.
async fn write_steps(
    conn: &mut PgConnection,
    flow_run_id: &str,
    steps: &[&FlowStepRow],
) -> Result<()> {
    for r in chunks(steps.len()) {
        let steps = &steps[r];
        let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
        let states: Vec<&str> = steps.iter().map(|s| s.state.as_str()).collect();
        let attempts: Vec<i64> = steps.iter().map(|s| s.attempt).collect();
        let run_ids: Vec<Option<&str>> = steps.iter().map(|s| s.run_id.as_deref()).collect();
        let outputs: Vec<Option<&str>> = steps.iter().map(|s| s.outputs.as_deref()).collect();
        let output: Vec<Option<&str>> = steps.iter().map(|s| s.output.as_deref()).collect();
        let details: Vec<Option<&str>> = steps.iter().map(|s| s.detail.as_deref()).collect();
        let started: Vec<Option<i64>> = steps.iter().map(|s| s.started_at).collect();
        let finished: Vec<Option<i64>> = steps.iter().map(|s| s.finished_at).collect();
        let not_before: Vec<Option<i64>> = steps.iter().map(|s| s.not_before).collect();
        sqlx::query(
            "INSERT INTO flow_steps (flow_run_id, step_id, state, attempt, run_id, outputs, output, detail, started_at, finished_at, not_before) \
             SELECT $1, s.step_id, s.state, s.attempt, s.run_id, s.outputs, s.output, s.detail, s.started_at, s.finished_at, s.not_before \
             FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[]) \
             WITH ORDINALITY AS s(step_id, state, attempt, run_id, outputs, output, detail, started_at, finished_at, not_before, ord) \
             ORDER BY s.ord \
             ON CONFLICT (flow_run_id, step_id) DO UPDATE SET \
             state = excluded.state, attempt = excluded.attempt, run_id = excluded.run_id, \
             outputs = excluded.outputs, output = excluded.output, detail = excluded.detail, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             not_before = excluded.not_before",
        )
        .bind(flow_run_id)
        .bind(ids)
        .bind(states)
        .bind(attempts)
        .bind(run_ids)
        .bind(outputs)
        .bind(output)
        .bind(details)
        .bind(started)
        .bind(finished)
        .bind(not_before)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Inserts a workflow run with its steps and its audit entry in the caller's transaction.
pub(crate) async fn insert_flow_run(
    conn: &mut PgConnection,
    run: &FlowRunRow,
    steps: &[FlowStepRow],
    entry: &AuditEntry,
) -> Result<()> {
    let steps = merge_steps(&run.id, steps)?;
    let targets = codec::json(&run.targets)?;
    let r = sqlx::query(concat!(
        "INSERT INTO flow_runs (",
        "id, kind, name, version, definition, params, sealed, targets, state, created_by, created_at, finished_at, cancel_requested, parent",
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14)"
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
impl FlowStore for PgStore {
    async fn put_definition(&self, def: &DefinitionRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_name(&mut tx, def.kind, &def.name).await?;
        // Inserted only as the next version; the primary key refuses a second version N
        // whatever happens.
        let r = sqlx::query(concat!(
            "INSERT INTO definitions (",
            def_cols!(),
            ") SELECT $1, $2, $3, $4, $5, $6, $7 WHERE $3 = ",
            "(SELECT COALESCE(MAX(version), 0) + 1 FROM definitions WHERE kind = $1 AND name = $2)"
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
            " FROM definitions WHERE kind = $1 AND name = $2 ORDER BY version DESC LIMIT 1"
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
            " FROM definitions WHERE kind = $1 AND name = $2 AND version = $3"
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
            "SELECT DISTINCT ON (name) ",
            def_cols!(),
            " FROM definitions WHERE kind = $1 ORDER BY name, version DESC"
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_name(&mut tx, kind, name).await?;
        let r = sqlx::query("DELETE FROM definitions WHERE kind = $1 AND name = $2")
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_flow_run(&mut tx, run, steps, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            flow_run_cols!(),
            " FROM flow_runs WHERE id = $1"
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
            " FROM flow_runs WHERE ($1::bigint IS NULL OR created_at >= $1)",
            " AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR created_by = $3)",
            " AND ($5::text IS NULL OR name = $5)",
            " ORDER BY created_at DESC, id DESC LIMIT $4"
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
        // `starts_with`: no wildcards, no collation.
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM flow_runs WHERE starts_with(id, $1) ORDER BY id LIMIT $2",
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
            " FROM flow_steps WHERE flow_run_id = $1 ORDER BY seq"
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        write_steps(&mut tx, flow_run_id, &steps).await?;
        write_attempts(&mut tx, flow_run_id, &attempts).await?;
        if let Some((state, at)) = finish {
            let r = sqlx::query("UPDATE flow_runs SET state = $1, finished_at = $2 WHERE id = $3")
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
             FROM flow_step_attempts WHERE flow_run_id = $1 ORDER BY step_id COLLATE \"C\", attempt",
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "UPDATE flow_runs SET cancel_requested = TRUE WHERE id = $1 AND finished_at IS NULL RETURNING ",
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
            " FROM flow_runs WHERE id = $1"
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Locked, so that what is chosen is what is deleted (a run another transaction holds
        // is left for the next pass).
        let chosen: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM flow_runs WHERE finished_at IS NOT NULL AND finished_at < $1 \
             ORDER BY finished_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        // Exchanges of plans that never ran, as old.
        sqlx::query(
            "DELETE FROM ask_exchanges WHERE id IN (SELECT id FROM ask_exchanges WHERE at < $1 \
             AND plan_id NOT IN (SELECT plan_id FROM ask_runs) LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if chosen.is_empty() {
            tx.commit().await.map_err(db)?;
            return Ok(0);
        }
        // `herd ask`'s records of those runs (attempts, the plan's exchanges with the model).
        for q in [
            "DELETE FROM ask_attempts WHERE run_id = ANY($1)",
            "DELETE FROM ask_exchanges WHERE plan_id IN \
             (SELECT plan_id FROM ask_runs WHERE run_id = ANY($1))",
            "DELETE FROM ask_runs WHERE run_id = ANY($1)",
        ] {
            sqlx::query(q)
                .bind(&chosen)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for q in [
            "DELETE FROM flow_steps WHERE flow_run_id = ANY($1)",
            "DELETE FROM flow_step_attempts WHERE flow_run_id = ANY($1)",
        ] {
            sqlx::query(q)
                .bind(&chosen)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let runs = sqlx::query("DELETE FROM flow_runs WHERE id = ANY($1)")
            .bind(&chosen)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(runs.rows_affected())
    }
}
