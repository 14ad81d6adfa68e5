//! Bulk changes of tasks in SQLite's idiom: multi-row `INSERT … VALUES`,
//! `UPDATE … FROM (VALUES …)` and `UPDATE … WHERE id IN (…) RETURNING id`, at most
//! [`ROWS_PER_STATEMENT`] rows per statement, one transaction per call. Which states an
//! update applies to comes from herd-core's lifecycle ([`Transition::from_states`]); target
//! states are bound, never written into the SQL.

use herd_core::{TaskState, Transition};
use herd_store::{
    NewTask, ROWS_PER_STATEMENT, Result, RunRow, Started, TaskProgress, check_end_state, codec,
    exits_by_from, merge_progress, sql_states,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use crate::db;

/// Inserts a new run's tasks (in the caller's transaction). A task created final (lost,
/// skipped) finishes when it is created; one created dispatched was sent then.
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    run: &RunRow,
    tasks: &[NewTask],
) -> Result<()> {
    let at = run.created_at;
    for chunk in tasks.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO tasks (id, run_id, agent_id, agent_name, state, reason, created_at, dispatched_at, finished_at) ",
        );
        qb.push_values(chunk, |mut b, t| {
            b.push_bind(&t.id)
                .push_bind(&run.id)
                .push_bind(&t.agent_id)
                .push_bind(&t.agent_name)
                .push_bind(t.state.as_str())
                .push_bind(&t.reason)
                .push_bind(at)
                .push_bind((t.state == TaskState::Dispatched).then_some(at))
                .push_bind(t.state.is_terminal().then_some(at));
        });
        qb.build().execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Claims queued tasks for sending ([`Transition::Dispatch`]); returns the ids claimed.
pub(crate) async fn claim_queued(
    pool: &SqlitePool,
    ids: &[String],
    at: i64,
) -> Result<Vec<String>> {
    let t = Transition::Dispatch;
    update_where_in(pool, ids, t.from_states(), |qb| {
        qb.push("state = ")
            .push_bind(t.target().as_str())
            .push(", dispatched_at = ")
            .push_bind(at);
    })
    .await
}

/// Ends tasks with `state` ([`Transition::End`]); returns the ids that changed.
pub(crate) async fn end(
    pool: &SqlitePool,
    ids: &[String],
    state: TaskState,
    reason: &str,
    at: i64,
) -> Result<Vec<String>> {
    check_end_state(state)?;
    update_where_in(pool, ids, Transition::End(state).from_states(), |qb| {
        qb.push("state = ")
            .push_bind(state.as_str())
            .push(", reason = ")
            .push_bind(reason.to_string())
            .push(", finished_at = ")
            .push_bind(at);
    })
    .await
}

/// Applies `set` (the SET list) to those of `ids` in one of the states `from`, in one
/// transaction of one statement per [`ROWS_PER_STATEMENT`] ids; returns the ids changed.
async fn update_where_in(
    pool: &SqlitePool,
    ids: &[String],
    from: &[TaskState],
    set: impl Fn(&mut QueryBuilder<Sqlite>),
) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let from = sql_states(from);
    let mut changed = Vec::with_capacity(ids.len());
    let mut tx = pool.begin().await.map_err(db)?;
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new("UPDATE tasks SET ");
        set(&mut qb);
        qb.push(format_args!(" WHERE state IN ({from}) AND id IN ("));
        let mut list = qb.separated(",");
        for id in chunk {
            list.push_bind(id);
        }
        qb.push(") RETURNING id");
        let rows: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await.map_err(db)?;
        changed.extend(rows.into_iter().map(|(id,)| id));
    }
    tx.commit().await.map_err(db)?;
    Ok(changed)
}

/// Persists a batch of progress in one transaction: one statement per kind of change (seq
/// and output position, start, exit) per [`ROWS_PER_STATEMENT`] tasks, each applied only
/// where it moves the task forward.
pub(crate) async fn apply_progress(
    pool: &SqlitePool,
    batch: &[TaskProgress],
) -> Result<Vec<(String, TaskState)>> {
    let batch = merge_progress(batch);
    let mut ended = Vec::new();
    if batch.is_empty() {
        return Ok(ended);
    }
    let mut tx = pool.begin().await.map_err(db)?;
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(
            "UPDATE tasks SET out_seq = j.column2, out_total = j.column3, out_head_len = j.column4, out_tail_seg = j.column5, out_tail_len = j.column6, supervision = COALESCE(j.column7, tasks.supervision) FROM (",
        );
        qb.push_values(chunk, |mut b, p| {
            b.push_bind(&p.task_id)
                .push_bind(p.seq as i64)
                .push_bind(p.out.total as i64)
                .push_bind(p.out.head_len as i64)
                .push_bind(p.out.tail_seg as i64)
                .push_bind(p.out.tail_len as i64)
                .push_bind(&p.supervision);
        });
        qb.push(") AS j WHERE tasks.id = j.column1 AND tasks.out_seq < j.column2");
        qb.build().execute(&mut *tx).await.map_err(db)?;
    }

    let started: Vec<(&str, &Started)> = batch
        .iter()
        .filter_map(|p| p.started.as_ref().map(|s| (p.task_id.as_str(), s)))
        .collect();
    let start = Transition::Start;
    let start_from = sql_states(start.from_states());
    for chunk in started.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new("UPDATE tasks SET state = ");
        qb.push_bind(start.target().as_str())
            .push(", pid = j.column2, started_at = j.column3 FROM (");
        qb.push_values(chunk, |mut b, (id, s)| {
            b.push_bind(*id).push_bind(i64::from(s.pid)).push_bind(s.at);
        });
        qb.push(format_args!(
            ") AS j WHERE tasks.id = j.column1 AND tasks.state IN ({start_from})"
        ));
        qb.build().execute(&mut *tx).await.map_err(db)?;
    }

    for (from, exits) in exits_by_from(&batch) {
        let from = sql_states(from);
        for chunk in exits.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "UPDATE tasks SET state = j.column2, exit_code = j.column3, signal = j.column4, reason = j.column5, detail = j.column6, finished_at = j.column7, outputs = j.column8 FROM (",
            );
            qb.push_values(chunk, |mut b, (id, e)| {
                b.push_bind(*id)
                    .push_bind(e.state.as_str())
                    .push_bind(e.code)
                    .push_bind(e.signal)
                    .push_bind(&e.reason)
                    .push_bind(&e.detail)
                    .push_bind(e.at)
                    .push_bind(&e.outputs);
            });
            qb.push(format_args!(
                ") AS j WHERE tasks.id = j.column1 AND tasks.state IN ({from}) RETURNING tasks.id, tasks.state"
            ));
            let rows: Vec<(String, String)> =
                qb.build_query_as().fetch_all(&mut *tx).await.map_err(db)?;
            for (id, state) in rows {
                let state = codec::task_state(&id, &state)?;
                ended.push((id, state));
            }
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(ended)
}
