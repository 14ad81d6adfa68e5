//! Schedules (`/api/v1/schedules`, `herd schedules`): what fires when ([`herd_schedule::Spec`],
//! in a time zone), what each fire starts (a job, a workflow, a LangFlow flow or a command),
//! and the firing loop ([`fire`]). A fire is recorded with what it starts in one transaction
//! under the unique (schedule, fire time) key, and moves the schedule's next fire on in the
//! same transaction, only if no one moved it meanwhile: every fire time is handled once,
//! whichever server of a database fires it and whenever one crashes.
//! An edit replaces a schedule's definition in place (its id and fires kept) under its next
//! revision, and a fire is written only under the revision it was planned from: once an edit
//! is stored, nothing of the definition before it fires.

mod fire;

use std::sync::Arc;

use chrono::TimeZone;
use herd_api::{
    FireOutcome, MisfirePolicy, NewSchedule, NextFire, OverlapPolicy, Schedule, ScheduleEdit,
    ScheduleFire, ScheduleTarget, TargetKind,
};
use herd_core::DefKind;
use herd_schedule::Spec;
use herd_store::{AuditEntry, Fire, FireEntry, FireRow, FireStart, ScheduleRow, Store, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::error::{Result, ServerError};
use crate::fleet::Actor;

pub(crate) use fire::Firer;

/// What the `spec` column holds: when, and the zone its times are shown in.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct When {
    spec: Spec,
    tz: String,
}

/// A fire under way: what [`herd_store::ScheduleStore::fire`] records with what it starts.
#[derive(Debug, Clone)]
pub(crate) struct Firing {
    pub schedule_id: String,
    /// The schedule's next fire time as read: the fire is written only if it is still that.
    pub expected: i64,
    /// The schedule's revision as read: an edit since means the fire is not written.
    pub revision: i64,
    /// The fire time being started.
    pub fire_at: i64,
    /// Fire times recorded with it (missed ones).
    pub others: Vec<FireRow>,
    pub next_fire_at: Option<i64>,
    pub next_due_at: Option<i64>,
}

impl Firing {
    /// The fire rows when it starts `run_id` (a `run` or a `workflow` run).
    pub(crate) fn rows(&self, run_id: &str, kind: &str) -> Vec<FireRow> {
        let mut rows = self.others.clone();
        rows.push(FireRow {
            schedule_id: self.schedule_id.clone(),
            fire_at: self.fire_at,
            at: now_ms(),
            outcome: "started".into(),
            run_id: Some(run_id.into()),
            run_kind: Some(kind.into()),
            detail: None,
        });
        rows
    }

    pub(crate) fn fire<'a>(&'a self, rows: &'a [FireRow], start: FireStart<'a>) -> Fire<'a> {
        Fire {
            schedule_id: &self.schedule_id,
            expected: self.expected,
            revision: self.revision,
            rows,
            next_fire_at: self.next_fire_at,
            next_due_at: self.next_due_at,
            start,
        }
    }
}

pub struct ScheduleService {
    store: Arc<dyn Store>,
    /// Wakes the firing loop when a schedule changes.
    changed: Arc<Notify>,
    engine: Arc<crate::flows::Engine>,
}

const MAX_FIRES_LISTED: i64 = 1000;
const MAX_NEXT: i64 = 1000;

impl ScheduleService {
    pub fn new(
        store: Arc<dyn Store>,
        changed: Arc<Notify>,
        engine: Arc<crate::flows::Engine>,
    ) -> ScheduleService {
        ScheduleService {
            store,
            changed,
            engine,
        }
    }

    /// What the schedule runs, checked by the command policy and the key's scope as the
    /// person adding it (whose approval it records); each fire is checked again.
    async fn check_policy(&self, actor: &Actor, t: &ScheduleTarget) -> Result<serde_json::Value> {
        let policy = self.engine.runs.policy();
        let mut gate = crate::policy::Gate::new(actor, t.approve);
        match t.kind {
            TargetKind::Command => {
                let machines = policy.machines(&t.targets)?;
                let c = policy
                    .gate(
                        &gate,
                        "the command",
                        t.command.as_deref().unwrap_or_default(),
                        None,
                        &machines,
                    )
                    .await?;
                Ok(json!(c))
            }
            TargetKind::Job | TargetKind::Workflow => {
                let kind = if t.kind == TargetKind::Job {
                    DefKind::Job
                } else {
                    DefKind::Workflow
                };
                let name = t.name.as_deref().unwrap_or_default();
                let Some(def) = self.store.definition(kind, name).await? else {
                    return Ok(serde_json::Value::Null);
                };
                let mut wf = crate::flows::workflow_of(kind, &def.body)
                    .map_err(|e| ServerError::Internal(format!("{kind} {name}: {e}")))?;
                crate::flows::copy_jobs(&self.store, &mut wf).await?;
                Ok(json!(
                    crate::flows::check_policy(&self.engine, &gate, &wf, &t.targets, 0).await?
                ))
            }
            TargetKind::Flow => {
                gate.commands = false;
                let machines = policy.machines(&t.targets)?;
                policy.gate(&gate, "the flow", "", None, &machines).await?;
                Ok(serde_json::Value::Null)
            }
        }
    }

    pub async fn add(&self, actor: &Actor, req: NewSchedule) -> Result<Schedule> {
        if !herd_workflow::valid_name(&req.name) {
            return Err(ServerError::BadRequest(format!(
                "{:?} is not a schedule name — use letters, digits, `_`, `.` and `-` (at most 128, starting with a letter or digit)",
                req.name
            )));
        }
        let now = now_ms();
        let (spec, tz) = parse_when(&req.cron, &req.every, &req.at, &req.tz, now)?;
        let jitter_ms = parse_jitter(&req.jitter)?;
        check_target(&*self.store, &req.target).await?;
        let checked = self.check_policy(actor, &req.target).await?;
        let id = herd_core::new_id();
        let next = first_fire(&spec, now)?;
        let row = ScheduleRow {
            id: id.clone(),
            name: req.name.clone(),
            spec: serde_json::to_string(&When {
                spec: spec.clone(),
                tz: tz.clone(),
            })
            .map_err(|e| ServerError::Internal(e.to_string()))?,
            target: serde_json::to_string(&req.target)
                .map_err(|e| ServerError::Internal(e.to_string()))?,
            overlap: policy_text(&req.overlap),
            misfire: policy_text(&req.misfire),
            jitter_ms,
            paused: req.paused,
            next_fire_at: next,
            due_at: next.map(|n| n + herd_schedule::jitter_ms(&id, n, jitter_ms)),
            last_fire_at: None,
            last_run_id: None,
            created_by: actor.name.clone(),
            created_at: now,
            revision: 0,
        };
        let audit = AuditEntry::new(
            &actor.name,
            "schedule.add",
            format!("schedule:{}", req.name),
            json!({"when": spec.describe(), "target": req.target, "overlap": row.overlap,
                   "misfire": row.misfire, "jitter_ms": jitter_ms, "paused": req.paused,
                   "policy": checked}),
        );
        self.store
            .create_schedule(&row, &audit)
            .await
            .map_err(|e| match e {
                herd_store::StoreError::Conflict(_) => ServerError::Conflict(format!(
                    "a schedule named {:?} exists — remove it first (`herd schedules rm {}`) or pick another name",
                    req.name, req.name
                )),
                e => e.into(),
            })?;
        self.changed.notify_one();
        answer(row, None)
    }

    /// Replaces a schedule's definition in place, checked as [`ScheduleService::add`] checks
    /// a new one (as the person editing it, who it then acts for): the same id, its fires
    /// kept, its next fire the first after now under the new definition (no fire time before
    /// the edit is caught up). One store transaction with its audit entry; a fire of the
    /// definition before, under way meanwhile, is not written once the edit is (the
    /// schedule's revision moved).
    pub async fn edit(&self, actor: &Actor, name: &str, req: ScheduleEdit) -> Result<Schedule> {
        if let Some(n) = req.name.as_deref().filter(|n| *n != name) {
            return Err(ServerError::BadRequest(format!(
                "the body names schedule {n:?} and the path {name:?} — a schedule keeps its name: add it under the new one and remove this one"
            )));
        }
        let row = self.find(name).await?;
        let before = when(&row)?;
        let now = now_ms();
        let (spec, tz) = if req.cron.is_some() || req.every.is_some() || req.at.is_some() {
            parse_when(&req.cron, &req.every, &req.at, &req.tz, now)?
        } else {
            match (&req.tz, &before.spec) {
                (None, spec) => (spec.clone(), before.tz.clone()),
                (Some(tz), Spec::Cron { expr, .. }) => (
                    Spec::cron(expr, tz).map_err(ServerError::BadRequest)?,
                    tz.clone(),
                ),
                (Some(tz), spec) => {
                    Spec::cron("0 0 * * *", tz).map_err(ServerError::BadRequest)?;
                    (spec.clone(), tz.clone())
                }
            }
        };
        let jitter_ms = parse_jitter(&req.jitter)?;
        check_target(&*self.store, &req.target).await?;
        let checked = self.check_policy(actor, &req.target).await?;
        let next = first_fire(&spec, now)?;
        let paused = req.paused.unwrap_or(row.paused);
        let edited = ScheduleRow {
            spec: serde_json::to_string(&When {
                spec: spec.clone(),
                tz,
            })
            .map_err(|e| ServerError::Internal(e.to_string()))?,
            target: serde_json::to_string(&req.target)
                .map_err(|e| ServerError::Internal(e.to_string()))?,
            overlap: policy_text(&req.overlap),
            misfire: policy_text(&req.misfire),
            jitter_ms,
            paused,
            next_fire_at: next,
            due_at: next.map(|n| n + herd_schedule::jitter_ms(&row.id, n, jitter_ms)),
            created_by: actor.name.clone(),
            ..row.clone()
        };
        let audit = AuditEntry::new(
            &actor.name,
            "schedule.edit",
            format!("schedule:{name}"),
            json!({"when": spec.describe(), "target": req.target, "overlap": edited.overlap,
                   "misfire": edited.misfire, "jitter_ms": jitter_ms, "paused": paused,
                   "policy": checked,
                   "before": {"when": before.spec.describe(), "target": target(&row)?,
                              "overlap": row.overlap, "misfire": row.misfire,
                              "jitter_ms": row.jitter_ms, "paused": row.paused,
                              "by": row.created_by}}),
        );
        if !self.store.update_schedule(&edited, &audit).await? {
            self.find(name).await?;
            return Err(ServerError::Conflict(format!(
                "schedule {name:?} was edited meanwhile — look at it again (`herd schedules show {name}`) and edit it again"
            )));
        }
        self.changed.notify_one();
        self.get(name).await
    }

    pub async fn list(&self) -> Result<Vec<Schedule>> {
        self.store
            .schedules()
            .await?
            .into_iter()
            .map(|(row, last)| answer(row, last))
            .collect()
    }

    async fn find(&self, name: &str) -> Result<ScheduleRow> {
        if !herd_workflow::valid_name(name) {
            return Err(ServerError::BadRequest(format!(
                "{name:?} is not a schedule name — `herd schedules ls` lists them"
            )));
        }
        self.store.schedule(name).await?.ok_or_else(|| {
            ServerError::NotFound(format!(
                "no schedule {name:?} — `herd schedules ls` lists them"
            ))
        })
    }

    pub async fn get(&self, name: &str) -> Result<Schedule> {
        let row = self.find(name).await?;
        let last = self
            .store
            .schedule_fires(&row.id, 1)
            .await?
            .into_iter()
            .next();
        answer(row, last)
    }

    /// Pauses (`true`) or resumes a schedule. Resumed, it fires next at its first fire time
    /// after now: the times that passed while it was paused are not misfires.
    pub async fn set_paused(&self, actor: &Actor, name: &str, paused: bool) -> Result<Schedule> {
        let row = self.find(name).await?;
        if row.paused == paused {
            return self.get(name).await;
        }
        let (next, due) = if paused {
            (row.next_fire_at, row.due_at)
        } else {
            let spec = when(&row)?.spec;
            let next = spec.next_after(now_ms());
            (
                next,
                next.map(|n| n + herd_schedule::jitter_ms(&row.id, n, row.jitter_ms)),
            )
        };
        let audit = AuditEntry::new(
            &actor.name,
            if paused {
                "schedule.pause"
            } else {
                "schedule.resume"
            },
            format!("schedule:{name}"),
            json!({}),
        );
        if !self
            .store
            .set_schedule_paused(&row.id, paused, next, due, &audit)
            .await?
        {
            return Err(ServerError::NotFound(format!(
                "no schedule {name:?} — it was removed meanwhile"
            )));
        }
        self.changed.notify_one();
        self.get(name).await
    }

    pub async fn remove(&self, actor: &Actor, name: &str) -> Result<Schedule> {
        let row = self.find(name).await?;
        let audit = AuditEntry::new(
            &actor.name,
            "schedule.rm",
            format!("schedule:{name}"),
            json!({}),
        );
        if !self.store.delete_schedule(&row.id, &audit).await? {
            return Err(ServerError::NotFound(format!(
                "no schedule {name:?} — it was removed meanwhile"
            )));
        }
        self.changed.notify_one();
        answer(row, None)
    }

    pub async fn fires(&self, name: &str, limit: Option<i64>) -> Result<Vec<ScheduleFire>> {
        let row = self.find(name).await?;
        let limit = limit.unwrap_or(50).clamp(1, MAX_FIRES_LISTED);
        Ok(self
            .store
            .schedule_fires(&row.id, limit)
            .await?
            .into_iter()
            .map(fire_answer)
            .collect())
    }

    /// The next `n` fire times after now (after the stored next fire's predecessor, so a
    /// fire due but not yet handled is among them).
    pub async fn next(&self, name: &str, n: Option<i64>) -> Result<Vec<NextFire>> {
        let row = self.find(name).await?;
        let w = when(&row)?;
        let n = n.unwrap_or(10).clamp(1, MAX_NEXT) as usize;
        let from = row
            .next_fire_at
            .map_or_else(now_ms, |t| t.saturating_sub(1).min(now_ms()));
        Ok(w.spec
            .upcoming(from, n)
            .into_iter()
            .map(|at| NextFire {
                at,
                local: local_time(at, &w.tz),
            })
            .collect())
    }
}

/// When a schedule fires, from exactly one of `cron`, `every` and `at` (with its zone, UTC if
/// none is given).
fn parse_when(
    cron: &Option<String>,
    every: &Option<String>,
    at: &Option<String>,
    tz_given: &Option<String>,
    now: i64,
) -> Result<(Spec, String)> {
    let tz = tz_given.clone().unwrap_or_else(|| "UTC".into());
    let spec = match (cron, every, at) {
        (Some(c), None, None) => Spec::cron(c, &tz),
        (None, Some(e), None) => {
            if tz_given.is_some() {
                // Checked all the same, so that a typo is not kept silently.
                Spec::cron("0 0 * * *", &tz).map_err(ServerError::BadRequest)?;
            }
            Spec::every(e, now)
        }
        (None, None, Some(a)) => Spec::at(a, &tz, now),
        _ => Err(
            "give exactly one of cron, every and at — e.g. --cron '0 30 2 * * *', --every 5m or --at '+10m'"
                .into(),
        ),
    }
    .map_err(ServerError::BadRequest)?;
    Ok((spec, tz))
}

fn parse_jitter(jitter: &Option<String>) -> Result<i64> {
    Ok(match jitter {
        None => 0,
        Some(j) => {
            let d = herd_core::parse_duration(j).map_err(|e| {
                ServerError::BadRequest(format!("jitter {j:?}: {e} — e.g. 30s or 5m"))
            })?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
    })
}

/// The first fire time after `now`; refused when there is none.
fn first_fire(spec: &Spec, now: i64) -> Result<Option<i64>> {
    let next = spec.next_after(now);
    if next.is_none() {
        return Err(ServerError::BadRequest(format!(
            "{} never fires after now — give a time to come",
            spec.describe()
        )));
    }
    Ok(next)
}

fn policy_text<T: Serialize>(p: &T) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn when(row: &ScheduleRow) -> Result<When> {
    serde_json::from_str(&row.spec).map_err(|e| {
        ServerError::Internal(format!(
            "the stored spec of schedule {} does not read: {e}",
            row.name
        ))
    })
}

fn target(row: &ScheduleRow) -> Result<ScheduleTarget> {
    serde_json::from_str(&row.target).map_err(|e| {
        ServerError::Internal(format!(
            "the stored target of schedule {} does not read: {e}",
            row.name
        ))
    })
}

fn policy<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|e| ServerError::Internal(format!("a stored schedule policy {text:?}: {e}")))
}

/// `at` (unix ms) in zone `tz` as RFC 3339 with its offset (UTC for a zone that does not
/// read).
fn local_time(at: i64, tz: &str) -> String {
    let utc = chrono::Utc.timestamp_millis_opt(at).single();
    match (utc, tz.parse::<chrono_tz::Tz>()) {
        (Some(t), Ok(z)) => t.with_timezone(&z).to_rfc3339(),
        (Some(t), Err(_)) => t.to_rfc3339(),
        (None, _) => at.to_string(),
    }
}

/// Checks that what a schedule fires exists and is complete.
async fn check_target(store: &dyn Store, t: &ScheduleTarget) -> Result<()> {
    let named = || {
        t.name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
            ServerError::BadRequest(format!("a {} schedule needs its name", t.kind.as_str()))
        })
    };
    match t.kind {
        TargetKind::Command => {
            if t.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(ServerError::BadRequest(
                    "a command schedule needs its command — give it after `--`".into(),
                ));
            }
        }
        TargetKind::Job | TargetKind::Workflow => {
            let kind = if t.kind == TargetKind::Job {
                DefKind::Job
            } else {
                DefKind::Workflow
            };
            let name = named()?;
            let Some(def) = store.definition(kind, name).await? else {
                return Err(ServerError::BadRequest(format!(
                    "no {kind} {name:?} — apply it first (`herd {kind}s apply -f FILE`)"
                )));
            };
            // A schedule keeps its parameters as given: a secret one would be stored in clear.
            let wf = crate::flows::workflow_of(kind, &def.body)
                .map_err(|e| ServerError::Internal(format!("{kind} {name}: {e}")))?;
            if let Some(p) = t.params.keys().find(|p| {
                wf.params
                    .get(*p)
                    .is_some_and(|d| d.ty == herd_workflow::ParamType::Secret)
            }) {
                return Err(ServerError::BadRequest(format!(
                    "parameter {p} of {kind} {name} is a secret, which a schedule would keep in clear — keep it in a secret variable (`herd vars set NAME --secret`) and give it to the {kind} through `secrets:`"
                )));
            }
        }
        TargetKind::Flow => {
            let name = named()?;
            let source = t.params.get("source").and_then(|v| v.as_str());
            let known = store.langflows(source).await?.into_iter().any(|f| {
                f.removed_at.is_none()
                    && (f.name == name || f.id == name || f.endpoint_name.as_deref() == Some(name))
            });
            if !known {
                return Err(ServerError::BadRequest(format!(
                    "no flow {name:?} — `herd flows sync` lists the sources' flows, `herd flows ls` shows them"
                )));
            }
        }
    }
    Ok(())
}

fn fire_answer(e: FireEntry) -> ScheduleFire {
    ScheduleFire {
        fire_at: e.fire.fire_at,
        at: e.fire.at,
        outcome: match e.fire.outcome.as_str() {
            "started" => FireOutcome::Started,
            "skipped" => FireOutcome::Skipped,
            "missed" => FireOutcome::Missed,
            _ => FireOutcome::Failed,
        },
        run_id: e.fire.run_id,
        run_kind: e.fire.run_kind,
        run_state: e.run_state,
        detail: e.fire.detail,
    }
}

fn answer(row: ScheduleRow, last: Option<FireEntry>) -> Result<Schedule> {
    let w = when(&row)?;
    Ok(Schedule {
        when: w.spec.describe(),
        target: target(&row)?,
        overlap: policy::<OverlapPolicy>(&row.overlap)?,
        misfire: policy::<MisfirePolicy>(&row.misfire)?,
        next_fire_local: row.next_fire_at.map(|t| local_time(t, &w.tz)),
        tz: w.tz,
        id: row.id,
        name: row.name,
        jitter_ms: row.jitter_ms,
        paused: row.paused,
        next_fire_at: row.next_fire_at,
        last: last.map(fire_answer),
        created_by: row.created_by,
        created_at: row.created_at,
    })
}
