//! The firing loop: one per server. It sleeps until the earliest `due_at` of the schedules
//! not paused (one ordered index read; at most a second, so that schedules another server of
//! the database added are seen), or until a schedule changes here, then handles what is due:
//! [`herd_schedule::plan`] says which fire times fire and which were missed (the server was
//! down or busy longer than the grace), [`herd_schedule::overlap`] whether a fire starts
//! beside what the previous one started. Each fire is one store transaction (its rows, what
//! it starts, the schedule's next fire); a fire another server recorded first writes nothing.

use std::sync::Arc;
use std::time::Duration;

use herd_api::{MisfirePolicy, OverlapPolicy, ScheduleTarget, TargetKind};
use herd_core::{DefKind, RunSpec, RunState};
use herd_schedule::{Misfire, Overlap, OverlapDecision};
use herd_store::{Fire, FireRow, FireStart, ScheduleRow, Store, now_ms};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Firing, policy, target, when};
use crate::error::{Result, ServerError};
use crate::flows::Engine;
use crate::runs::NewRunRequest;

/// Schedules handled per store read; more due means another read at once.
const BATCH: i64 = 256;
/// The longest the loop sleeps without looking at the store.
const MAX_SLEEP_MS: i64 = 1000;
/// A fire handled later than this after it was due is a misfire (its policy applies).
pub(crate) const GRACE_MS: i64 = 1000;
/// How long a fire waits (overlap `queue`) before it looks again at the run before it.
const QUEUE_RECHECK_MS: i64 = 1000;

pub(crate) struct Firer {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    langflow: Arc<crate::langflow::LangflowService>,
    changed: Arc<Notify>,
}

impl Firer {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        langflow: Arc<crate::langflow::LangflowService>,
        changed: Arc<Notify>,
    ) -> Firer {
        Firer {
            store,
            engine,
            langflow,
            changed,
        }
    }

    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let now = now_ms();
            let mut again = false;
            let mut failed = false;
            match self.store.due_schedules(now, BATCH).await {
                Ok(due) => {
                    again = due.len() as i64 == BATCH;
                    for s in due {
                        if shutdown.is_cancelled() {
                            return;
                        }
                        if let Err(e) = self.handle(&s, now_ms()).await {
                            failed = true;
                            tracing::warn!(schedule = %s.name, "cannot fire schedule {}: {e}", s.name);
                        }
                    }
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!("cannot read the schedules that are due: {e}");
                }
            }
            let wait = if failed {
                MAX_SLEEP_MS
            } else if again {
                0
            } else {
                match self.store.next_due().await {
                    Ok(Some(d)) => (d - now_ms()).clamp(0, MAX_SLEEP_MS),
                    Ok(None) => MAX_SLEEP_MS,
                    Err(_) => MAX_SLEEP_MS,
                }
            };
            if wait == 0 {
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = self.changed.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Handles one due schedule. An error leaves it as it was (it is due again next time);
    /// what cannot start is recorded `failed` and the schedule goes on.
    async fn handle(&self, s: &ScheduleRow, now: i64) -> Result<()> {
        let Some(due) = s.next_fire_at else {
            return Ok(());
        };
        let w = when(s)?;
        let misfire = match policy::<MisfirePolicy>(&s.misfire)? {
            MisfirePolicy::Skip => Misfire::Skip,
            MisfirePolicy::RunOnce => Misfire::RunOnce,
            MisfirePolicy::RunAll => Misfire::RunAll,
        };
        let plan = herd_schedule::plan(&w.spec, due, now, GRACE_MS + s.jitter_ms, misfire);
        let jittered =
            |t: Option<i64>| t.map(|t| t + herd_schedule::jitter_ms(&s.id, t, s.jitter_ms));
        let mut rows = missed_rows(s, &plan.missed, now, &s.misfire);
        let Some(&first) = plan.fire.first() else {
            // Every passed fire time was missed: recorded, and the schedule goes on.
            self.record(s, due, rows, plan.next, jittered(plan.next))
                .await?;
            return Ok(());
        };
        // Catching up (run-all): the next missed time is due at once.
        let (next, next_due) = match plan.fire.get(1) {
            Some(&t) => (Some(t), Some(t)),
            None => (plan.next, jittered(plan.next)),
        };
        let running = match &s.last_run_id {
            Some(id) => self.still_running(id).await?,
            None => false,
        };
        let overlap = match policy::<OverlapPolicy>(&s.overlap)? {
            OverlapPolicy::Skip => Overlap::Skip,
            OverlapPolicy::Queue => Overlap::Queue,
            OverlapPolicy::Allow => Overlap::Allow,
        };
        match herd_schedule::overlap(overlap, running) {
            OverlapDecision::Skip => {
                rows.push(FireRow {
                    schedule_id: s.id.clone(),
                    fire_at: first,
                    at: now_ms(),
                    outcome: "skipped".into(),
                    run_id: None,
                    run_kind: None,
                    detail: Some(format!(
                        "what the previous fire started ({}) was still running (overlap skip)",
                        s.last_run_id.as_deref().unwrap_or("?")
                    )),
                });
                self.record(s, due, rows, next, next_due).await?;
            }
            OverlapDecision::Queue => {
                self.store
                    .hold_schedule(&s.id, due, now_ms() + QUEUE_RECHECK_MS)
                    .await?;
            }
            OverlapDecision::Start => {
                let firing = Firing {
                    schedule_id: s.id.clone(),
                    expected: due,
                    revision: s.revision,
                    fire_at: first,
                    others: rows.clone(),
                    next_fire_at: next,
                    next_due_at: next_due,
                };
                match self.start(s, &firing).await {
                    Ok(true) => {}
                    Ok(false) => self.not_written(s, due).await?,
                    Err(e @ ServerError::Store(_)) | Err(e @ ServerError::Internal(_)) => {
                        return Err(e);
                    }
                    Err(e) => {
                        tracing::warn!(schedule = %s.name, "schedule {} could not start what it fires: {e}", s.name);
                        rows.push(FireRow {
                            schedule_id: s.id.clone(),
                            fire_at: first,
                            at: now_ms(),
                            outcome: "failed".into(),
                            run_id: None,
                            run_kind: None,
                            detail: Some(e.to_string()),
                        });
                        self.record(s, due, rows, next, next_due).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records fire rows that start nothing and moves the schedule on.
    async fn record(
        &self,
        s: &ScheduleRow,
        expected: i64,
        rows: Vec<FireRow>,
        next_fire_at: Option<i64>,
        next_due_at: Option<i64>,
    ) -> Result<()> {
        let written = self
            .store
            .fire(&Fire {
                schedule_id: &s.id,
                expected,
                revision: s.revision,
                rows: &rows,
                next_fire_at,
                next_due_at,
                start: FireStart::Nothing,
            })
            .await?;
        if !written {
            self.not_written(s, expected).await?;
        }
        Ok(())
    }

    /// A fire that wrote nothing: another server handled it (the schedule moved on), the
    /// schedule was edited or paused meanwhile (nothing to do: an edit set its next fire), or
    /// its fire time was recorded already while the schedule still names it (a clock that
    /// went back): then the schedule moves past it without firing, so the loop never spins on
    /// it.
    async fn not_written(&self, s: &ScheduleRow, due: i64) -> Result<()> {
        let current = self.store.schedule_by_id(&s.id).await?;
        if current
            .is_some_and(|c| c.next_fire_at == Some(due) && c.revision == s.revision && !c.paused)
        {
            tracing::warn!(
                schedule = %s.name,
                fire_at = due,
                "a fire time of schedule {} was recorded already; going on to the next",
                s.name
            );
            let next = when(s)?.spec.next_after(due.max(now_ms()));
            self.store
                .fire(&Fire {
                    schedule_id: &s.id,
                    expected: due,
                    revision: s.revision,
                    rows: &[],
                    next_fire_at: next,
                    next_due_at: next.map(|t| t + herd_schedule::jitter_ms(&s.id, t, s.jitter_ms)),
                    start: FireStart::Nothing,
                })
                .await?;
        }
        Ok(())
    }

    async fn still_running(&self, id: &str) -> Result<bool> {
        if let Some(r) = self.store.run(id).await? {
            return Ok(r.state == RunState::Running);
        }
        if let Some(r) = self.store.flow_run(id).await? {
            return Ok(r.state == RunState::Running);
        }
        Ok(false)
    }

    /// Starts what `s` fires, recorded with `firing`. False: the fire had been recorded.
    async fn start(&self, s: &ScheduleRow, firing: &Firing) -> Result<bool> {
        let t: ScheduleTarget = target(s)?;
        let actor = format!("schedule:{}", s.name);
        // Checked again against the policy of now, as the person who added it (with the
        // approval they gave then).
        let by = self
            .engine
            .runs
            .policy()
            .acting_for(&actor, &s.created_by)
            .await?;
        let gate = crate::policy::Gate::new(&by, t.approve);
        let name = || {
            t.name
                .clone()
                .ok_or_else(|| ServerError::BadRequest("the schedule names nothing to run".into()))
        };
        match t.kind {
            TargetKind::Command => {
                let req = NewRunRequest {
                    id: None,
                    command: t.command.clone().unwrap_or_default(),
                    targets: t.targets.clone(),
                    all: false,
                    start_on_attach: false,
                    secret_env: Default::default(),
                    spec: RunSpec::default(),
                    gate: Some(gate),
                };
                Ok(self
                    .engine
                    .runs
                    .create_fired(&actor, req, false, Some(firing))
                    .await?
                    .is_some())
            }
            TargetKind::Job | TargetKind::Workflow => {
                let kind = if t.kind == TargetKind::Job {
                    DefKind::Job
                } else {
                    DefKind::Workflow
                };
                Ok(crate::flows::create(
                    &self.engine,
                    &actor,
                    kind,
                    &name()?,
                    &t.params,
                    t.targets.clone(),
                    herd_core::new_id(),
                    None,
                    Some(firing),
                    Some(&gate),
                )
                .await?
                .is_some())
            }
            TargetKind::Flow => Ok(self
                .langflow
                .start(
                    &actor,
                    &name()?,
                    crate::langflow::run_flow_of(&t.params, &t.targets),
                    Some(firing),
                    Some(gate),
                )
                .await?
                .is_some()),
        }
    }
}

/// The rows of missed fire times: the earliest, and the latest when there are more (the
/// earliest's detail says how many), so an outage of any length is two rows.
fn missed_rows(
    s: &ScheduleRow,
    missed: &herd_schedule::Missed,
    now: i64,
    policy: &str,
) -> Vec<FireRow> {
    let row = |t: i64, detail: String| FireRow {
        schedule_id: s.id.clone(),
        fire_at: t,
        at: now,
        outcome: "missed".into(),
        run_id: None,
        run_kind: None,
        detail: Some(detail),
    };
    let why = format!("no server fired it in time (misfire {policy})");
    match (missed.first, missed.last) {
        (Some(first), Some(last)) if last != first => vec![
            row(
                first,
                format!(
                    "{why}; {}{} fire times missed up to {last}",
                    if missed.exact { "" } else { "about " },
                    missed.count
                ),
            ),
            row(last, why),
        ],
        (Some(first), _) => vec![row(first, why)],
        _ => Vec::new(),
    }
}
