//! herd's persistence: the SQLite store (agents, credentials, runs, tasks, audit) with its
//! migrations, and the task output log (`herd-outlog`) whose committed position lives in the
//! same rows as each task's last persisted event seq.
//!
//! Architecture invariant: this is the only crate that names sqlx. Callers see plain rows.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod model;
mod secret;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use herd_outlog::{Chunk, Cursor, OutlogError, OutputLog, OutputPos, Record};
pub use model::*;
pub use secret::{Secret, SecretError, hash_secret, verify_secret};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A write that went through a batching writer failed or the writer is gone.
    #[error("{0}")]
    Closed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Rows one multi-row statement carries at most (at most 8 values each, well below
/// SQLite's limit of 32,766 bound values per statement).
const ROWS_PER_STATEMENT: usize = 1000;

/// One record per task, in first-seen order: a later record for the same task moves its
/// seq and output position forward and adds its start and exit.
fn merge_progress(batch: &[TaskProgress]) -> Vec<TaskProgress> {
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(batch.len());
    let mut out: Vec<TaskProgress> = Vec::with_capacity(batch.len());
    for p in batch {
        match at.get(p.task_id.as_str()) {
            Some(&i) => {
                let m = &mut out[i];
                if p.seq > m.seq {
                    m.seq = p.seq;
                    m.out = p.out;
                }
                if m.started.is_none() {
                    m.started = p.started.clone();
                }
                if p.exited.is_some() {
                    m.exited = p.exited.clone();
                }
            }
            None => {
                at.insert(&p.task_id, out.len());
                out.push(p.clone());
            }
        }
    }
    out
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The SQLite store.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

macro_rules! agent_cols {
    () => {
        "id, name, cred_hash, labels, server_labels, facts, metrics, version, created_at, last_seen, revoked_at"
    };
}
macro_rules! task_cols {
    () => {
        "id, run_id, agent_id, agent_name, state, created_at, dispatched_at, started_at, finished_at, pid, exit_code, signal, reason, detail, out_seq, out_total, out_head_len, out_tail_seg, out_tail_len"
    };
}
macro_rules! run_cols {
    () => {
        "id, command, selector, spec, created_by, created_at, cancel_requested, state, finished_at"
    };
}

impl Store {
    /// Opens (creating) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process kill; only power loss may lose the
            // last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool })
    }

    // ---- agents -------------------------------------------------------------------------

    pub async fn insert_agent(&self, a: &AgentRow) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO agents (id, name, cred_hash, labels, server_labels, facts, version, created_at) VALUES (?,?,?,?,?,?,?,?)",
        )
        .bind(&a.id)
        .bind(&a.name)
        .bind(&a.cred_hash)
        .bind(&a.labels)
        .bind(&a.server_labels)
        .bind(&a.facts)
        .bind(&a.version)
        .bind(a.created_at)
        .execute(&self.pool)
        .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("an agent named {:?} already exists", a.name),
            )),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The live (not revoked) agent of that name.
    pub async fn agent_by_name(&self, name: &str) -> Result<Option<AgentRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE name = ? AND revoked_at IS NULL"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn agents(&self, include_revoked: bool) -> Result<Vec<AgentRow>> {
        let sql = if include_revoked {
            concat!("SELECT ", agent_cols!(), " FROM agents ORDER BY name")
        } else {
            concat!(
                "SELECT ",
                agent_cols!(),
                " FROM agents WHERE revoked_at IS NULL ORDER BY name"
            )
        };
        Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
    }

    pub async fn agent_hello(
        &self,
        id: &str,
        labels: &str,
        facts: &str,
        version: &str,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET labels = ?, facts = ?, version = ?, last_seen = ? WHERE id = ?",
        )
        .bind(labels)
        .bind(facts)
        .bind(version)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn agent_seen(&self, id: &str, metrics: Option<&str>, at: i64) -> Result<()> {
        sqlx::query("UPDATE agents SET metrics = COALESCE(?, metrics), last_seen = ? WHERE id = ?")
            .bind(metrics)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes what sessions reported (hello, heartbeats) for many agents in one transaction.
    pub async fn flush_agents(&self, batch: &[AgentFlush]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for a in batch {
            match &a.hello {
                Some(h) => {
                    sqlx::query(
                        "UPDATE agents SET labels = ?, facts = ?, version = ?, metrics = COALESCE(?, metrics), last_seen = ? WHERE id = ?",
                    )
                    .bind(&h.labels)
                    .bind(&h.facts)
                    .bind(&h.version)
                    .bind(&a.metrics)
                    .bind(a.last_seen)
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "UPDATE agents SET metrics = COALESCE(?, metrics), last_seen = ? WHERE id = ?",
                    )
                    .bind(&a.metrics)
                    .bind(a.last_seen)
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_server_labels(&self, id: &str, server_labels: &str) -> Result<()> {
        sqlx::query("UPDATE agents SET server_labels = ? WHERE id = ?")
            .bind(server_labels)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn revoke_agent(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE agents SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- API keys and join tokens -------------------------------------------------------

    pub async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, role, created_at, created_by) VALUES (?,?,?,?,?,?)",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.hash)
        .bind(&k.role)
        .bind(k.created_at)
        .bind(&k.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, hash, role, created_at, created_by, revoked_at FROM api_keys WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, hash, role, created_at, created_by, revoked_at FROM api_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn count_api_keys(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn revoke_api_key(&self, id: &str, at: i64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_join_token(&self, t: &JoinTokenRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO join_tokens (id, hash, created_at, created_by, expires_at, uses_left) VALUES (?,?,?,?,?,?)",
        )
        .bind(&t.id)
        .bind(&t.hash)
        .bind(t.created_at)
        .bind(&t.created_by)
        .bind(t.expires_at)
        .bind(t.uses_left)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn join_token(&self, id: &str) -> Result<Option<JoinTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, hash, created_at, created_by, expires_at, uses_left FROM join_tokens WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, hash, created_at, created_by, expires_at, uses_left FROM join_tokens ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes one use of a token if it has one left and has not expired; false otherwise.
    pub async fn use_join_token(&self, id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0 AND expires_at > ?",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- runs and tasks -----------------------------------------------------------------

    /// Creates a run and its tasks in one transaction.
    pub async fn insert_run(&self, run: &RunRow, tasks: &[NewTask]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO runs (",
            run_cols!(),
            ") VALUES (?,?,?,?,?,?,?,?,?)"
        ))
        .bind(&run.id)
        .bind(&run.command)
        .bind(&run.selector)
        .bind(&run.spec)
        .bind(&run.created_by)
        .bind(run.created_at)
        .bind(run.cancel_requested)
        .bind(&run.state)
        .bind(run.finished_at)
        .execute(&mut *tx)
        .await?;
        for chunk in tasks.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO tasks (id, run_id, agent_id, agent_name, state, reason, created_at, finished_at) ",
            );
            qb.push_values(chunk, |mut b, t| {
                let terminal = !matches!(t.state.as_str(), "queued" | "dispatched" | "running");
                b.push_bind(&t.id)
                    .push_bind(&run.id)
                    .push_bind(&t.agent_id)
                    .push_bind(&t.agent_name)
                    .push_bind(&t.state)
                    .push_bind(&t.reason)
                    .push_bind(run.created_at)
                    .push_bind(terminal.then_some(run.created_at));
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn run(&self, id: &str) -> Result<Option<RunRow>> {
        Ok(
            sqlx::query_as(concat!("SELECT ", run_cols!(), " FROM runs WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn set_run_cancel(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finish_run(&self, id: &str, state: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET state = ?, finished_at = ? WHERE id = ? AND finished_at IS NULL",
        )
        .bind(state)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unfinished_runs(&self) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs WHERE finished_at IS NULL"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        Ok(
            sqlx::query_as(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The tasks with these ids (those that exist, in no particular order).
    pub async fn tasks_by_ids(&self, ids: &[String]) -> Result<Vec<TaskRow>> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(concat!(
                "SELECT ",
                task_cols!(),
                " FROM tasks WHERE id IN ("
            ));
            let mut list = qb.separated(",");
            for id in chunk {
                list.push_bind(id);
            }
            qb.push(")");
            rows.extend(qb.build_query_as::<TaskRow>().fetch_all(&self.pool).await?);
        }
        Ok(rows)
    }

    pub async fn tasks_of_run(&self, run_id: &str) -> Result<Vec<TaskRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE run_id = ? ORDER BY agent_name"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn tasks(&self, limit: i64) -> Result<Vec<TaskRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Tasks of an agent that are not finished (queued, dispatched or running).
    pub async fn open_tasks_of_agent(&self, agent_id: &str) -> Result<Vec<TaskRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE agent_id = ? AND state IN ('queued','dispatched','running')"
        ))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every task not finished, for the lost-task sweeper.
    pub async fn open_tasks(&self) -> Result<Vec<TaskRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE state IN ('queued','dispatched','running')"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn task_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM tasks GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Claims a queued task for sending; false if it was not queued (any more).
    pub async fn mark_dispatched(&self, id: &str, at: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE tasks SET state = 'dispatched', dispatched_at = ? WHERE id = ? AND state = 'queued'",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Claims queued tasks for sending, in one transaction; returns the ids that were
    /// still queued (the others were cancelled or claimed meanwhile).
    pub async fn mark_dispatched_many(&self, ids: &[String], at: i64) -> Result<Vec<String>> {
        self.update_queued(ids, |qb| {
            qb.push("state = 'dispatched', dispatched_at = ")
                .push_bind(at);
        })
        .await
    }

    /// Ends queued tasks with `state` and `reason` in one transaction (skipped once a run's
    /// error budget is spent); returns the ids that changed.
    pub async fn end_queued_many(
        &self,
        ids: &[String],
        state: &str,
        reason: &str,
        at: i64,
    ) -> Result<Vec<String>> {
        self.update_queued(ids, |qb| {
            qb.push("state = ")
                .push_bind(state)
                .push(", reason = ")
                .push_bind(reason)
                .push(", finished_at = ")
                .push_bind(at);
        })
        .await
    }

    /// Applies `set` (the SET list) to those of `ids` that are still queued, in one
    /// transaction of one statement per [`ROWS_PER_STATEMENT`]; returns the ids changed.
    async fn update_queued(
        &self,
        ids: &[String],
        set: impl Fn(&mut QueryBuilder<sqlx::Sqlite>),
    ) -> Result<Vec<String>> {
        let mut changed = Vec::with_capacity(ids.len());
        let mut tx = self.pool.begin().await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new("UPDATE tasks SET ");
            set(&mut qb);
            qb.push(" WHERE state = 'queued' AND id IN (");
            let mut list = qb.separated(",");
            for id in chunk {
                list.push_bind(id);
            }
            qb.push(") RETURNING id");
            let rows: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            changed.extend(rows.into_iter().map(|(id,)| id));
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Ends a task that has not finished (cancelled before start, lost...). Returns whether
    /// the task changed.
    pub async fn end_open_task(
        &self,
        id: &str,
        state: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE tasks SET state = ?, reason = ?, finished_at = ? WHERE id = ? AND state IN ('queued','dispatched','running')",
        )
        .bind(state)
        .bind(reason)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Persists the effect of one batch of agent events in one transaction: last seq, output
    /// position, start and exit. Events are applied only forward (a seq at or below the stored
    /// one changes nothing). Each kind of change is one statement per [`ROWS_PER_STATEMENT`]
    /// tasks, so a group of thousands of results costs a handful of statements.
    pub async fn apply_progress(&self, batch: &[TaskProgress]) -> Result<()> {
        let batch = merge_progress(batch);
        let mut tx = self.pool.begin().await?;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "UPDATE tasks SET out_seq = j.column2, out_total = j.column3, out_head_len = j.column4, out_tail_seg = j.column5, out_tail_len = j.column6 FROM (",
            );
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(&p.task_id)
                    .push_bind(p.seq as i64)
                    .push_bind(p.out.total as i64)
                    .push_bind(p.out.head_len as i64)
                    .push_bind(p.out.tail_seg as i64)
                    .push_bind(p.out.tail_len as i64);
            });
            qb.push(") AS j WHERE tasks.id = j.column1 AND tasks.out_seq < j.column2");
            qb.build().execute(&mut *tx).await?;
        }
        let started: Vec<(&str, &Started)> = batch
            .iter()
            .filter_map(|p| p.started.as_ref().map(|s| (p.task_id.as_str(), s)))
            .collect();
        for chunk in started.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "UPDATE tasks SET state = 'running', pid = j.column2, started_at = j.column3 FROM (",
            );
            qb.push_values(chunk, |mut b, (id, s)| {
                b.push_bind(*id).push_bind(i64::from(s.pid)).push_bind(s.at);
            });
            qb.push(") AS j WHERE tasks.id = j.column1 AND tasks.state IN ('queued','dispatched')");
            qb.build().execute(&mut *tx).await?;
        }
        let exited: Vec<(&str, &Exit)> = batch
            .iter()
            .filter_map(|p| p.exited.as_ref().map(|e| (p.task_id.as_str(), e)))
            .collect();
        for chunk in exited.chunks(ROWS_PER_STATEMENT) {
            // A task marked lost whose agent came back with the real result takes it.
            let mut qb = QueryBuilder::new(
                "UPDATE tasks SET state = j.column2, exit_code = j.column3, signal = j.column4, reason = j.column5, detail = j.column6, finished_at = j.column7 FROM (",
            );
            qb.push_values(chunk, |mut b, (id, e)| {
                b.push_bind(*id)
                    .push_bind(&e.state)
                    .push_bind(e.code)
                    .push_bind(e.signal)
                    .push_bind(&e.reason)
                    .push_bind(&e.detail)
                    .push_bind(e.at);
            });
            qb.push(") AS j WHERE tasks.id = j.column1 AND tasks.state IN ('queued','dispatched','running','lost')");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- audit --------------------------------------------------------------------------

    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<()> {
        sqlx::query("INSERT INTO audit (at, actor, action, target, detail) VALUES (?,?,?,?,?)")
            .bind(now_ms())
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_tasks(n: usize) -> (tempfile::TempDir, Store, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        let run = RunRow {
            id: "r1".into(),
            command: "true".into(),
            selector: "*".into(),
            spec: "{}".into(),
            created_by: "test".into(),
            created_at: 1,
            cancel_requested: false,
            state: "running".into(),
            finished_at: None,
        };
        let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let tasks: Vec<NewTask> = ids
            .iter()
            .map(|id| NewTask {
                id: id.clone(),
                agent_id: format!("a-{id}"),
                agent_name: format!("m-{id}"),
                state: "queued".into(),
                reason: None,
            })
            .collect();
        store.insert_run(&run, &tasks).await.unwrap();
        (dir, store, ids)
    }

    fn exit(code: i32, at: i64) -> Exit {
        Exit {
            state: if code == 0 { "succeeded" } else { "failed" }.into(),
            code: Some(code),
            signal: None,
            reason: "exited".into(),
            detail: String::new(),
            at,
        }
    }

    #[tokio::test]
    async fn progress_of_thousands_of_tasks_lands_in_one_call() {
        // More tasks than one statement carries, so the chunking is exercised.
        let n = ROWS_PER_STATEMENT * 2 + 7;
        let (_dir, store, ids) = store_with_tasks(n).await;
        assert_eq!(store.mark_dispatched_many(&ids, 5).await.unwrap().len(), n);
        let batch: Vec<TaskProgress> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| TaskProgress {
                task_id: id.clone(),
                seq: 3,
                out: herd_outlog::OutputPos {
                    total: i as u64,
                    ..Default::default()
                },
                started: Some(Started {
                    pid: 100 + i as u32,
                    at: 10,
                }),
                exited: Some(exit((i % 2) as i32, 20)),
            })
            .collect();
        store.apply_progress(&batch).await.unwrap();
        let tasks = store.tasks_of_run("r1").await.unwrap();
        assert_eq!(tasks.len(), n);
        for t in &tasks {
            let i: usize = t.id[1..].parse().unwrap();
            assert_eq!(t.out_seq, 3, "{}", t.id);
            assert_eq!(t.out_total, i as i64);
            assert_eq!(t.pid, Some(100 + i as i64));
            assert_eq!(t.started_at, Some(10));
            assert_eq!(t.finished_at, Some(20));
            assert_eq!(t.exit_code, Some((i % 2) as i64));
            assert_eq!(
                t.state,
                if i.is_multiple_of(2) {
                    "succeeded"
                } else {
                    "failed"
                }
            );
        }
    }

    #[tokio::test]
    async fn progress_only_moves_forward_and_ended_tasks_keep_their_end() {
        let (_dir, store, ids) = store_with_tasks(3).await;
        store.mark_dispatched_many(&ids, 5).await.unwrap();
        let at = |id: &str, seq: u64, total: u64| TaskProgress {
            task_id: id.into(),
            seq,
            out: herd_outlog::OutputPos {
                total,
                ..Default::default()
            },
            ..Default::default()
        };
        store.apply_progress(&[at("t0", 5, 50)]).await.unwrap();
        // An older seq changes nothing; two records for one task merge.
        let mut second = at("t1", 2, 20);
        second.exited = Some(exit(0, 30));
        store
            .apply_progress(&[at("t0", 4, 40), at("t1", 1, 10), second])
            .await
            .unwrap();
        // t2 was cancelled before it started; a late exit does not revive it.
        assert!(
            store
                .end_open_task("t2", "cancelled", "cancelled", 7)
                .await
                .unwrap()
        );
        let mut late = at("t2", 1, 1);
        late.started = Some(Started { pid: 9, at: 8 });
        late.exited = Some(exit(0, 9));
        store.apply_progress(&[late]).await.unwrap();

        let t = |id: &str| {
            let store = store.clone();
            let id = id.to_string();
            async move { store.task(&id).await.unwrap().unwrap() }
        };
        let t0 = t("t0").await;
        assert_eq!(
            (t0.out_seq, t0.out_total, t0.state.as_str()),
            (5, 50, "dispatched")
        );
        let t1 = t("t1").await;
        assert_eq!(
            (t1.out_seq, t1.out_total, t1.state.as_str()),
            (2, 20, "succeeded")
        );
        let t2 = t("t2").await;
        assert_eq!(
            (t2.state.as_str(), t2.pid, t2.finished_at),
            ("cancelled", None, Some(7))
        );
    }

    #[tokio::test]
    async fn queued_tasks_are_claimed_or_ended_once() {
        let (_dir, store, ids) = store_with_tasks(5).await;
        let mut first = store.mark_dispatched_many(&ids[..2], 5).await.unwrap();
        first.sort();
        assert_eq!(first, vec!["t0", "t1"]);
        // Claimed ones are not claimed again, nor skipped.
        let mut skipped = store
            .end_queued_many(&ids, "skipped", "error budget spent", 6)
            .await
            .unwrap();
        skipped.sort();
        assert_eq!(skipped, vec!["t2", "t3", "t4"]);
        assert!(
            store
                .mark_dispatched_many(&ids, 7)
                .await
                .unwrap()
                .is_empty()
        );
        let mut some = store
            .tasks_by_ids(&["t3".into(), "nope".into(), "t0".into()])
            .await
            .unwrap();
        some.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            some.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            vec!["t0", "t3"]
        );
        let t3 = store.task("t3").await.unwrap().unwrap();
        assert_eq!(
            (t3.state.as_str(), t3.reason.as_deref(), t3.finished_at),
            ("skipped", Some("error budget spent"), Some(6))
        );
    }
}
