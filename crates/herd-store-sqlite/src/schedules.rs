//! Schedules and their fires: the firing loop's ordered read of what is due, and a fire
//! written whole (its rows, what it starts, the schedule's next fire) or not at all.

use herd_store::{
    AuditEntry, Fire, FireEntry, FireStart, Result, ScheduleRow, ScheduleStore, StoreError, codec,
};
use sqlx::Row;

use crate::rows::Cols;
use crate::{SqliteStore, audit, db, flows, runs};

macro_rules! schedule_cols {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "name, ",
            $p,
            "spec, ",
            $p,
            "target, ",
            $p,
            "overlap, ",
            $p,
            "misfire, ",
            $p,
            "jitter_ms, ",
            $p,
            "paused, ",
            $p,
            "next_fire_at, ",
            $p,
            "due_at, ",
            $p,
            "last_fire_at, ",
            $p,
            "last_run_id, ",
            $p,
            "created_by, ",
            $p,
            "created_at, ",
            $p,
            "revision"
        )
    };
}

/// A fire's columns (prefixed `fire_`) and the state of what it started.
macro_rules! fire_cols {
    () => {
        "f.schedule_id AS fire_schedule_id, f.fire_at AS fire_fire_at, f.at AS fire_at_ms, \
         f.outcome AS fire_outcome, f.run_id AS fire_run_id, f.run_kind AS fire_run_kind, \
         f.detail AS fire_detail, COALESCE(r.state, fr.state) AS run_state, \
         COALESCE(r.finished_at, fr.finished_at) AS run_finished_at"
    };
}
macro_rules! fire_runs {
    () => {
        " LEFT JOIN runs r ON f.run_kind = 'run' AND r.id = f.run_id \
          LEFT JOIN flow_runs fr ON f.run_kind = 'workflow' AND fr.id = f.run_id"
    };
}

fn schedule_row(r: &sqlx::sqlite::SqliteRow) -> Result<ScheduleRow> {
    codec::schedule(&Cols(r))
}

fn is_unique(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait::async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_schedule(&self, s: &ScheduleRow, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(concat!(
            "INSERT INTO schedules (",
            schedule_cols!(""),
            ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        ))
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.spec)
        .bind(&s.target)
        .bind(&s.overlap)
        .bind(&s.misfire)
        .bind(s.jitter_ms)
        .bind(s.paused)
        .bind(s.next_fire_at)
        .bind(s.due_at)
        .bind(s.last_fire_at)
        .bind(&s.last_run_id)
        .bind(&s.created_by)
        .bind(s.created_at)
        .bind(s.revision)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique(&e) => {
                return Err(StoreError::Conflict(format!(
                    "a schedule named {:?} exists",
                    s.name
                )));
            }
            Err(e) => return Err(db(e)),
        }
        audit::record(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(""),
            " FROM schedules WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(schedule_row).transpose()
    }

    async fn schedule_by_id(&self, id: &str) -> Result<Option<ScheduleRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(""),
            " FROM schedules WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(schedule_row).transpose()
    }

    async fn schedules(&self) -> Result<Vec<(ScheduleRow, Option<FireEntry>)>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!("s."),
            ", ",
            fire_cols!(),
            " FROM schedules s LEFT JOIN schedule_fires f ON f.schedule_id = s.id AND f.fire_at = \
             (SELECT MAX(g.fire_at) FROM schedule_fires g WHERE g.schedule_id = s.id)",
            fire_runs!(),
            " ORDER BY s.name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let fired: Option<String> = r.try_get("fire_schedule_id").map_err(db)?;
            let fire = match fired {
                Some(_) => Some(codec::fire_entry(&Cols(r))?),
                None => None,
            };
            out.push((schedule_row(r)?, fire));
        }
        Ok(out)
    }

    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at: Option<i64>,
        due_at: Option<i64>,
        entry: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE schedules SET paused = ?, next_fire_at = ?, due_at = ? WHERE id = ?",
        )
        .bind(paused)
        .bind(next_fire_at)
        .bind(due_at)
        .bind(id)
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

    async fn update_schedule(&self, s: &ScheduleRow, entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE schedules SET spec = ?, target = ?, overlap = ?, misfire = ?, jitter_ms = ?, \
             paused = ?, next_fire_at = ?, due_at = ?, created_by = ?, revision = revision + 1 \
             WHERE id = ? AND revision = ?",
        )
        .bind(&s.spec)
        .bind(&s.target)
        .bind(&s.overlap)
        .bind(&s.misfire)
        .bind(s.jitter_ms)
        .bind(s.paused)
        .bind(s.next_fire_at)
        .bind(s.due_at)
        .bind(&s.created_by)
        .bind(&s.id)
        .bind(s.revision)
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

    async fn delete_schedule(&self, id: &str, entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM schedule_fires WHERE schedule_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let n = sqlx::query("DELETE FROM schedules WHERE id = ?")
            .bind(id)
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

    async fn due_schedules(&self, until: i64, limit: i64) -> Result<Vec<ScheduleRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(""),
            " FROM schedules WHERE paused = 0 AND due_at IS NOT NULL AND due_at <= ? \
             ORDER BY due_at LIMIT ?"
        ))
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(schedule_row).collect()
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT due_at FROM schedules WHERE paused = 0 AND due_at IS NOT NULL \
             ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(r) => r.try_get(0).map_err(db),
            None => Ok(None),
        }
    }

    async fn fire(&self, f: &Fire<'_>) -> Result<bool> {
        let started = match &f.start {
            FireStart::Nothing => None,
            FireStart::Run { run, .. } => Some(run.id.as_str()),
            FireStart::FlowRun { run, .. } => Some(run.id.as_str()),
        };
        let last_fire = started.and(
            f.rows
                .iter()
                .find(|r| r.run_id.is_some())
                .map(|r| r.fire_at),
        );
        let mut tx = self.writer.begin().await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE schedules SET next_fire_at = ?, due_at = ?, \
             last_fire_at = COALESCE(?, last_fire_at), last_run_id = COALESCE(?, last_run_id) \
             WHERE id = ? AND next_fire_at = ? AND revision = ? AND paused = 0",
        )
        .bind(f.next_fire_at)
        .bind(f.next_due_at)
        .bind(last_fire)
        .bind(started)
        .bind(f.schedule_id)
        .bind(f.expected)
        .bind(f.revision)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for r in f.rows {
            let done = sqlx::query(
                "INSERT INTO schedule_fires (schedule_id, fire_at, at, outcome, run_id, run_kind, detail) \
                 VALUES (?,?,?,?,?,?,?)",
            )
            .bind(&r.schedule_id)
            .bind(r.fire_at)
            .bind(r.at)
            .bind(&r.outcome)
            .bind(&r.run_id)
            .bind(&r.run_kind)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await;
            match done {
                Ok(_) => {}
                Err(e) if is_unique(&e) => return Ok(false),
                Err(e) => return Err(db(e)),
            }
        }
        match &f.start {
            FireStart::Nothing => {}
            FireStart::Run { run, tasks, audit } => {
                runs::insert_run(&mut tx, run, tasks, audit).await?
            }
            FireStart::FlowRun { run, steps, audit } => {
                flows::insert_flow_run(&mut tx, run, steps, audit).await?
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn hold_schedule(&self, id: &str, expected: i64, due_at: i64) -> Result<bool> {
        let n = sqlx::query("UPDATE schedules SET due_at = ? WHERE id = ? AND next_fire_at = ?")
            .bind(due_at)
            .bind(id)
            .bind(expected)
            .execute(&self.writer)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn schedule_fires(&self, schedule_id: &str, limit: i64) -> Result<Vec<FireEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            fire_cols!(),
            " FROM schedule_fires f",
            fire_runs!(),
            " WHERE f.schedule_id = ? ORDER BY f.fire_at DESC LIMIT ?"
        ))
        .bind(schedule_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| codec::fire_entry(&Cols(r))).collect()
    }

    async fn prune_schedule_fires(&self, before: i64, limit: i64) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM schedule_fires WHERE (schedule_id, fire_at) IN (\
             SELECT f.schedule_id, f.fire_at FROM schedule_fires f WHERE f.at < ? AND EXISTS \
             (SELECT 1 FROM schedule_fires g WHERE g.schedule_id = f.schedule_id AND g.fire_at > f.fire_at) \
             ORDER BY f.at LIMIT ?)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.writer)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(n)
    }
}
