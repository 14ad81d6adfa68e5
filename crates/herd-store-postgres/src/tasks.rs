//! Bulk changes of tasks in PostgreSQL's idiom: columns bound as arrays and joined with
//! `UNNEST($1::text[], …)`, ids matched with `= ANY($1)` and returned with `RETURNING`,
//! at most [`herd_store::ROWS_PER_STATEMENT`] rows per statement, one transaction per call. Which states
//! an update applies to comes from herd-core's lifecycle ([`Transition::from_states`]);
//! target states are bound, never written into the SQL.

use std::sync::LazyLock;

use herd_core::{TaskState, Transition};
use herd_store::{
    NewTask, Result, RunRow, TaskProgress, check_end_state, exits_by_from, merge_progress,
    sql_states,
};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::{chunks, db};

/// Inserts a new run's tasks (in the caller's transaction). A task created final (lost,
/// skipped) finishes when it is created; one created dispatched was sent then.
pub(crate) async fn insert(conn: &mut PgConnection, run: &RunRow, tasks: &[NewTask]) -> Result<()> {
    let at = run.created_at;
    for r in chunks(tasks.len()) {
        let tasks = &tasks[r];
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        let agent_ids: Vec<&str> = tasks.iter().map(|t| t.agent_id.as_str()).collect();
        let names: Vec<&str> = tasks.iter().map(|t| t.agent_name.as_str()).collect();
        let states: Vec<&str> = tasks.iter().map(|t| t.state.as_str()).collect();
        let reasons: Vec<Option<&str>> = tasks.iter().map(|t| t.reason.as_deref()).collect();
        let dispatched: Vec<Option<i64>> = tasks
            .iter()
            .map(|t| (t.state == TaskState::Dispatched).then_some(at))
            .collect();
        let finished: Vec<Option<i64>> = tasks
            .iter()
            .map(|t| t.state.is_terminal().then_some(at))
            .collect();
        sqlx::query(
            "INSERT INTO tasks (id, run_id, agent_id, agent_name, state, reason, created_at, dispatched_at, finished_at) \
             SELECT t.id, $1, t.agent_id, t.agent_name, t.state, t.reason, $2, t.dispatched_at, t.finished_at \
             FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[]) \
             AS t(id, agent_id, agent_name, state, reason, dispatched_at, finished_at)",
        )
        .bind(&run.id)
        .bind(at)
        .bind(ids)
        .bind(agent_ids)
        .bind(names)
        .bind(states)
        .bind(reasons)
        .bind(dispatched)
        .bind(finished)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Claims queued tasks for sending ([`Transition::Dispatch`]); returns the ids claimed. Rows
/// another transaction holds (being ended or claimed at that moment) are skipped, not
/// waited for: whoever holds them decides their fate.
pub(crate) async fn claim_queued(pool: &PgPool, ids: &[String], at: i64) -> Result<Vec<String>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let from = sql_states(Transition::Dispatch.from_states());
        format!(
            "UPDATE tasks SET state = $1, dispatched_at = $2 WHERE id IN \
             (SELECT id FROM tasks WHERE id = ANY($3) AND state IN ({from}) FOR UPDATE SKIP LOCKED) \
             AND state IN ({from}) RETURNING id"
        )
    });
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::with_capacity(ids.len());
    let mut tx = pool.begin().await.map_err(db)?;
    for r in chunks(ids.len()) {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(SQL.as_str()))
            .bind(Transition::Dispatch.target().as_str())
            .bind(at)
            .bind(&ids[r])
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        claimed.extend(rows);
    }
    tx.commit().await.map_err(db)?;
    Ok(claimed)
}

/// Ends tasks with `state` ([`Transition::End`]); returns the ids that changed.
pub(crate) async fn end(
    pool: &PgPool,
    ids: &[String],
    state: TaskState,
    reason: &str,
    at: i64,
) -> Result<Vec<String>> {
    check_end_state(state)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE tasks SET state = $1, reason = $2, finished_at = $3 \
         WHERE id = ANY($4) AND state IN ({}) RETURNING id",
        sql_states(Transition::End(state).from_states())
    );
    let mut ended = Vec::with_capacity(ids.len());
    let mut tx = pool.begin().await.map_err(db)?;
    for r in chunks(ids.len()) {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
            .bind(state.as_str())
            .bind(reason)
            .bind(at)
            .bind(&ids[r])
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        ended.extend(rows);
    }
    tx.commit().await.map_err(db)?;
    Ok(ended)
}

/// Persists a batch of progress in one transaction: one statement per kind of change (seq
/// and output position, start, exit) per [`herd_store::ROWS_PER_STATEMENT`] tasks, each applied only
/// where it moves the task forward.
pub(crate) async fn apply_progress(pool: &PgPool, batch: &[TaskProgress]) -> Result<()> {
    static START: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE tasks SET state = $1, pid = j.pid, started_at = j.at \
             FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) AS j(id, pid, at) \
             WHERE tasks.id = j.id AND tasks.state IN ({})",
            sql_states(Transition::Start.from_states())
        )
    });
    let batch = merge_progress(batch);
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(db)?;
    for r in chunks(batch.len()) {
        let part = &batch[r];
        let col = |f: fn(&TaskProgress) -> u64| -> Vec<i64> {
            part.iter().map(|p| f(p) as i64).collect()
        };
        let ids: Vec<&str> = part.iter().map(|p| p.task_id.as_str()).collect();
        sqlx::query(
            "UPDATE tasks SET out_seq = j.seq, out_total = j.total, out_head_len = j.head_len, \
             out_tail_seg = j.tail_seg, out_tail_len = j.tail_len \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
             AS j(id, seq, total, head_len, tail_seg, tail_len) \
             WHERE tasks.id = j.id AND tasks.out_seq < j.seq",
        )
        .bind(ids)
        .bind(col(|p| p.seq))
        .bind(col(|p| p.out.total))
        .bind(col(|p| p.out.head_len))
        .bind(col(|p| p.out.tail_seg))
        .bind(col(|p| p.out.tail_len))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }

    let started: Vec<(&str, i64, i64)> = batch
        .iter()
        .filter_map(|p| {
            let s = p.started.as_ref()?;
            Some((p.task_id.as_str(), i64::from(s.pid), s.at))
        })
        .collect();
    for r in chunks(started.len()) {
        let part = &started[r];
        sqlx::query(AssertSqlSafe(START.as_str()))
            .bind(Transition::Start.target().as_str())
            .bind(part.iter().map(|s| s.0).collect::<Vec<_>>())
            .bind(part.iter().map(|s| s.1).collect::<Vec<_>>())
            .bind(part.iter().map(|s| s.2).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }

    for (from, exits) in exits_by_from(&batch) {
        let sql = format!(
            "UPDATE tasks SET state = j.state, exit_code = j.code, signal = j.signal, \
             reason = j.reason, detail = j.detail, finished_at = j.at \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[]) \
             AS j(id, state, code, signal, reason, detail, at) \
             WHERE tasks.id = j.id AND tasks.state IN ({})",
            sql_states(from)
        );
        for r in chunks(exits.len()) {
            let part = &exits[r];
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(part.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .bind(
                    part.iter()
                        .map(|(_, e)| e.state.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    part.iter()
                        .map(|(_, e)| e.code.map(i64::from))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    part.iter()
                        .map(|(_, e)| e.signal.map(i64::from))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    part.iter()
                        .map(|(_, e)| e.reason.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    part.iter()
                        .map(|(_, e)| e.detail.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(part.iter().map(|(_, e)| e.at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}
