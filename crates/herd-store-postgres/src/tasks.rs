//! Bulk changes of tasks in PostgreSQL's idiom: columns bound as arrays and joined with
//! `UNNEST($1::text[], …)`, ids matched with `= ANY($1)` and returned with `RETURNING`, at
//! most [`herd_store::ROWS_PER_STATEMENT`] rows per statement, one transaction per call.
//! Which states an update applies to comes from herd-core's lifecycle
//! ([`Transition::from_states`]); target states are bound, never written into the SQL. Rows
//! are named in id order, so two transactions changing the same tasks lock them in the same
//! order (no deadlock).

use std::sync::LazyLock;

use herd_core::{TaskState, Transition};
use herd_store::{
    Exit, NewTask, Result, RunRow, Started, TaskProgress, check_end_state, codec, exits_by_from,
    merge_progress, sql_states,
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

/// `ids` sorted, each once.
fn in_order(ids: &[String]) -> Vec<&str> {
    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
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
    let ids = in_order(ids);
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
    let ids = in_order(ids);
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

/// The one statement that applies seq and output position, start and exit of many tasks:
/// each row changes once (one new row version), and each part only where it applies — the
/// position where the seq moves forward, the start where [`Transition::Start`] applies, the
/// exit where [`Transition::Exit`] applies to the state after the start.
static PROGRESS: LazyLock<String> = LazyLock::new(|| {
    let forward = "j.out_seq > tasks.out_seq";
    let starts = format!(
        "(j.started_at IS NOT NULL AND tasks.state IN ({}))",
        sql_states(Transition::Start.from_states())
    );
    let exits = format!(
        "(j.exit_state IS NOT NULL AND (CASE WHEN {starts} THEN $1::text ELSE tasks.state END) IN ({}))",
        sql_states(&Transition::EXIT_FROM)
    );
    let when = |cond: &str, col: &str| {
        format!("{col} = CASE WHEN {cond} THEN j.{col} ELSE tasks.{col} END")
    };
    let out = [
        "out_seq",
        "out_total",
        "out_head_len",
        "out_tail_seg",
        "out_tail_len",
    ]
    .map(|c| when(forward, c))
    .join(", ");
    let start = ["pid", "started_at"].map(|c| when(&starts, c)).join(", ");
    let exit = [
        "exit_code",
        "signal",
        "reason",
        "detail",
        "finished_at",
        "outputs",
    ]
    .map(|c| when(&exits, c))
    .join(", ");
    let supervision = when(
        &format!("j.supervision IS NOT NULL AND {forward}"),
        "supervision",
    );
    format!(
        "UPDATE tasks SET {out}, {start}, {exit}, {supervision}, \
         state = CASE WHEN {exits} THEN j.exit_state WHEN {starts} THEN $1::text ELSE tasks.state END \
         FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], \
                     $8::bigint[], $9::bigint[], \
                     $10::text[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::bigint[], \
                     $16::text[], $17::text[]) \
         AS j(id, out_seq, out_total, out_head_len, out_tail_seg, out_tail_len, pid, started_at, \
              exit_state, exit_code, signal, reason, detail, finished_at, outputs, supervision) \
         WHERE tasks.id = j.id AND ({forward} OR {starts} OR {exits}) \
         RETURNING tasks.id, tasks.state, \
           (j.exit_state IS NOT NULL AND tasks.state = j.exit_state AND tasks.finished_at = j.finished_at)"
    )
});

/// Persists a batch of progress in one transaction, one statement per
/// [`herd_store::ROWS_PER_STATEMENT`] tasks (see [`PROGRESS`]), applied only where it moves
/// a task forward.
pub(crate) async fn apply_progress(
    pool: &PgPool,
    batch: &[TaskProgress],
) -> Result<Vec<(String, TaskState)>> {
    let mut batch = merge_progress(batch);
    let mut ended = Vec::new();
    if batch.is_empty() {
        return Ok(ended);
    }
    batch.sort_unstable_by(|a, b| a.task_id.cmp(&b.task_id));
    // Exits that apply where herd-core says every exit applies go in the one statement; an
    // exit of any other kind (none today) is applied after it, by its own statement.
    let together = |e: &&Exit| Transition::Exit(e.state).from_states() == Transition::EXIT_FROM;
    let mut tx = pool.begin().await.map_err(db)?;
    for r in chunks(batch.len()) {
        let part = &batch[r];
        let out = |f: fn(&TaskProgress) -> u64| -> Vec<i64> {
            part.iter().map(|p| f(p) as i64).collect()
        };
        let start = |f: fn(&Started) -> i64| -> Vec<Option<i64>> {
            part.iter().map(|p| p.started.as_ref().map(f)).collect()
        };
        let exits: Vec<Option<&Exit>> = part
            .iter()
            .map(|p| p.exited.as_ref().filter(together))
            .collect();
        let exit_int = |f: fn(&Exit) -> Option<i64>| -> Vec<Option<i64>> {
            exits.iter().map(|e| e.and_then(f)).collect()
        };
        let exit_text = |f: fn(&Exit) -> &str| -> Vec<Option<&str>> {
            exits.iter().map(|e| e.map(f)).collect()
        };
        let rows: Vec<(String, String, bool)> = sqlx::query_as(AssertSqlSafe(PROGRESS.as_str()))
            .bind(Transition::Start.target().as_str())
            .bind(part.iter().map(|p| p.task_id.as_str()).collect::<Vec<_>>())
            .bind(out(|p| p.seq))
            .bind(out(|p| p.out.total))
            .bind(out(|p| p.out.head_len))
            .bind(out(|p| p.out.tail_seg))
            .bind(out(|p| p.out.tail_len))
            .bind(start(|s| i64::from(s.pid)))
            .bind(start(|s| s.at))
            .bind(exit_text(|e| e.state.as_str()))
            .bind(exit_int(|e| e.code.map(i64::from)))
            .bind(exit_int(|e| e.signal.map(i64::from)))
            .bind(exit_text(|e| e.reason.as_str()))
            .bind(exit_text(|e| e.detail.as_str()))
            .bind(exit_int(|e| Some(e.at)))
            .bind(
                exits
                    .iter()
                    .map(|e| e.and_then(|e| e.outputs.as_deref()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                part.iter()
                    .map(|p| p.supervision.as_deref())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        // After the update a row shows its exit when the exit took effect (PostgreSQL's
        // RETURNING sees the new row only).
        for (id, state, exited) in rows {
            if exited {
                ended.push((id.clone(), codec::task_state(&id, &state)?));
            }
        }
    }

    for (from, exits) in exits_by_from(&batch) {
        if from == Transition::EXIT_FROM {
            continue;
        }
        let sql = format!(
            "UPDATE tasks SET state = j.state, exit_code = j.code, signal = j.signal, \
             reason = j.reason, detail = j.detail, finished_at = j.at, outputs = j.outputs \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::text[]) \
             AS j(id, state, code, signal, reason, detail, at, outputs) \
             WHERE tasks.id = j.id AND tasks.state IN ({}) RETURNING tasks.id, tasks.state",
            sql_states(from)
        );
        for r in chunks(exits.len()) {
            let part = &exits[r];
            let rows: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(sql.as_str()))
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
                .bind(
                    part.iter()
                        .map(|(_, e)| e.outputs.as_deref())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            for (id, state) in rows {
                ended.push((id.clone(), codec::task_state(&id, &state)?));
            }
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(ended)
}
