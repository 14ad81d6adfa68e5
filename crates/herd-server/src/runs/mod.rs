//! Runs: what a person asked for, fanned out into one task per machine. `RunService` is the
//! only way in: create (resolve selectors, store the run, its tasks and its audit entry in
//! one transaction, start its driver), cancel a run or a task, read them back. Each run's
//! driver (`driver.rs`) starts its queued tasks under its pacing (`pace.rs`); the sweep
//! (`sweep.rs`) ends the tasks of agents that stay away.

mod driver;
mod frames;
mod pace;
pub(crate) mod resolve;
mod sweep;
mod waiting;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use herd_core::{RunSpec, RunState, TaskState};
use herd_store::{AuditEntry, NewTask, RunRow, Store, TaskRow, now_ms};
use serde_json::json;

pub use driver::{DriverCtx, Drivers};
pub use frames::{
    SECRETS_GONE, SecretEnv, cancel_frame, going_away_frame, input_frame, resize_frame, start_frame,
};
pub use pace::Progress;
pub use sweep::sweep_lost;
pub use waiting::Waiters;

use crate::error::{Result, ServerError};
use crate::events::Events;
use crate::fleet::AgentIndex;
use crate::metrics::Metrics;
use crate::registry::Registry;
use driver::Launch;
use pace::{Limits, NewRun, Pacer, Queued};

/// A run as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewRunRequest {
    /// The run's id when the caller chose it beforehand (a workflow step records the id
    /// before the run exists, so that after a restart it finds the run or makes it once);
    /// `None`: a new one.
    pub id: Option<String>,
    pub command: String,
    /// Selectors, OR'ed together.
    pub targets: Vec<String>,
    /// Every machine.
    pub all: bool,
    /// Hold the tasks until a watcher attaches (or 30 s pass), so it sees every byte live.
    pub start_on_attach: bool,
    /// Secret environment variables: only their names are stored (in the spec).
    pub secret_env: BTreeMap<String, String>,
    pub spec: RunSpec,
    /// Who asks, checked by the command policy and their key's scope on the machines the
    /// targets pick (`crate::policy`); `None`: a run whose command herd made or checked
    /// already (a workflow step, checked when its run started; a LangFlow call).
    pub gate: Option<crate::policy::Gate>,
}

/// Whether a machine can be reached when its run is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Online,
    /// Offline, but seen within the run's `wait_offline` window: its task waits for it.
    Expected,
    Offline,
}

pub struct RunService {
    store: Arc<dyn Store>,
    index: Arc<AgentIndex>,
    registry: Arc<Registry>,
    drivers: Arc<Drivers>,
    events: Arc<Events>,
    metrics: Arc<Metrics>,
    policy: Arc<crate::policy::PolicyGate>,
}

impl RunService {
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<AgentIndex>,
        registry: Arc<Registry>,
        drivers: Arc<Drivers>,
        events: Arc<Events>,
        metrics: Arc<Metrics>,
        policy: Arc<crate::policy::PolicyGate>,
    ) -> RunService {
        RunService {
            store,
            index,
            registry,
            drivers,
            events,
            metrics,
            policy,
        }
    }

    /// The command policy and key scopes.
    pub fn policy(&self) -> &Arc<crate::policy::PolicyGate> {
        &self.policy
    }

    /// Creates a run and starts its driver. Tasks for machines that are not connected are
    /// created already `lost`, so the run names exactly who did not answer; the first
    /// `concurrency` start at once, the rest wait `queued`. With `wait`, answers once the run
    /// has finished.
    pub async fn create(&self, actor: &str, req: NewRunRequest, wait: bool) -> Result<RunRow> {
        self.create_fired(actor, req, wait, None)
            .await?
            .ok_or_else(|| ServerError::Internal("a run without a fire was not created".into()))
    }

    /// [`create`](Self::create), for a schedule's fire when `fire` is given: the fire is
    /// recorded with the run in one transaction, and `None` answers that the fire had been
    /// recorded already (another server, or before a restart): no run was made.
    pub(crate) async fn create_fired(
        &self,
        actor: &str,
        req: NewRunRequest,
        wait: bool,
        fire: Option<&crate::schedules::Firing>,
    ) -> Result<Option<RunRow>> {
        if req.command.trim().is_empty() {
            return Err(ServerError::BadRequest(
                "empty command — give it after `--`".into(),
            ));
        }
        if wait && req.start_on_attach {
            return Err(ServerError::BadRequest(
                "start_on_attach holds the run for a watcher, who cannot attach before this answer: drop wait=true or start_on_attach".into(),
            ));
        }
        if let Some(script) = &req.spec.script
            && script.body.len() > RunSpec::MAX_SCRIPT_BYTES
        {
            return Err(ServerError::BadRequest(format!(
                "the script is {} bytes, over the limit of {} — copy it to the machines and run it there",
                script.body.len(),
                RunSpec::MAX_SCRIPT_BYTES
            )));
        }
        if req.spec.user.trim() != req.spec.user || req.spec.user.contains(char::is_control) {
            return Err(ServerError::BadRequest(format!(
                "user {:?} is not a user name — give the name of a user on the machines",
                req.spec.user
            )));
        }
        if req.spec.limits.concurrency == Some(herd_core::Limit::Count(0)) {
            return Err(ServerError::BadRequest(
                "concurrency must be at least 1 (or a percentage such as 10%)".into(),
            ));
        }
        if let Some(k) = req
            .secret_env
            .keys()
            .find(|k| req.spec.env.contains_key(*k))
        {
            return Err(ServerError::BadRequest(format!(
                "{k} is given both as env and as secret_env — give it once"
            )));
        }
        let mut req = req;
        // Only the names are stored; the values stay in memory with the run's driver.
        req.spec.secret_names = req.secret_env.keys().cloned().collect();
        let secrets: Option<SecretEnv> =
            (!req.secret_env.is_empty()).then(|| Arc::new(std::mem::take(&mut req.secret_env)));
        let (label, agents) = match resolve::resolve(&self.index, &req.targets, req.all) {
            Err(ServerError::Conflict(why)) if !req.all => {
                // Nothing live matches: a revoked machine the selector names is said so.
                let revoked =
                    resolve::revoked_matches(&*self.store, &self.index, &req.targets).await?;
                return Err(ServerError::Conflict(match revoked.as_slice() {
                    [] => why,
                    names => format!(
                        "{} revoked (see `herd agents --all`) — join it again with a new token (`herd token create`)",
                        match names {
                            [one] => format!("machine {one:?} is"),
                            many => format!("machines {} are", many.join(", ")),
                        }
                    ),
                }));
            }
            other => other?,
        };
        let checked = match &req.gate {
            Some(g) => {
                self.policy
                    .gate(
                        g,
                        "the command",
                        &req.command,
                        req.spec.script.as_ref().map(|s| s.body.as_str()),
                        &agents,
                    )
                    .await?
            }
            None => None,
        };
        let run_id = req.id.clone().unwrap_or_else(herd_core::new_id);
        // Subscribed before the run exists, so a fast run cannot finish unseen.
        let mut finish = wait.then(|| self.events.wait_finish(&run_id));
        let limits = Limits::resolve(&req.spec.limits, agents.len());
        // One look per agent: the budget check and the tasks agree even if one comes or goes.
        // An offline machine seen within the run's `wait_offline` window is waited for (its
        // task is queued, and its run's driver starts it when it connects); any other is
        // `lost` at once, so the run names who did not answer.
        let (now, window) = (now_ms(), req.spec.wait_offline());
        let reach: Vec<Reach> = agents
            .iter()
            .map(|(id, _)| {
                if self.registry.is_online(id) {
                    Reach::Online
                } else if waiting::worth_waiting(self.index.last_seen(id), now, window) {
                    Reach::Expected
                } else {
                    Reach::Offline
                }
            })
            .collect();
        let offline = reach.iter().filter(|r| **r == Reach::Offline).count();
        // Offline machines count against the error budget like any other failure.
        let halted = limits.max_errors.is_some_and(|max| offline > max);
        let mut start_now = if req.start_on_attach || halted {
            0
        } else {
            limits.concurrency
        };
        let mut tasks = Vec::with_capacity(agents.len());
        for ((agent_id, agent_name), reach) in agents.into_iter().zip(reach) {
            let (state, reason) = if reach == Reach::Offline {
                (TaskState::Lost, Some("agent offline".to_string()))
            } else if halted {
                (
                    TaskState::Skipped,
                    Some("not started: too many machines were offline".to_string()),
                )
            } else if start_now > 0 && reach == Reach::Online {
                start_now -= 1;
                (TaskState::Dispatched, None)
            } else {
                (TaskState::Queued, None)
            };
            tasks.push(NewTask {
                id: herd_core::new_id(),
                agent_id,
                agent_name,
                state,
                reason,
            });
        }
        let run = RunRow {
            id: run_id,
            command: req.command.clone(),
            selector: label.clone(),
            spec: req.spec,
            created_by: actor.to_string(),
            created_at: now_ms(),
            cancel_requested: false,
            state: RunState::Running,
            finished_at: None,
        };
        let audit = AuditEntry::new(
            actor,
            "run.create",
            format!("run:{}", run.id),
            match &checked {
                None => json!({"command": req.command, "targets": label, "machines": tasks.len()}),
                Some(c) => json!({"command": req.command, "targets": label,
                                  "machines": tasks.len(), "policy": c}),
            },
        );
        match fire {
            None => self.store.create_run(&run, &tasks, &audit).await?,
            Some(f) => {
                let rows = f.rows(&run.id, "run");
                let start = herd_store::FireStart::Run {
                    run: &run,
                    tasks: &tasks,
                    audit: &audit,
                };
                if !self.store.fire(&f.fire(&rows, start)).await? {
                    return Ok(None);
                }
            }
        }
        self.metrics.runs_created.inc();

        let mut pending = Vec::new();
        let mut send_now = Vec::new();
        let mut ended = HashMap::new();
        for t in &tasks {
            let q = Queued {
                task_id: t.id.clone(),
                agent_id: t.agent_id.clone(),
            };
            match t.state {
                TaskState::Queued => pending.push(q),
                TaskState::Dispatched => send_now.push(q),
                s => {
                    ended.insert(t.id.clone(), s);
                }
            }
        }
        let pacer = Pacer::new(NewRun {
            limits,
            held: req.start_on_attach,
            cancel_requested: false,
            pending,
            in_flight: send_now.len(),
            ended,
        });
        self.drivers
            .launch(Launch {
                run: run.clone(),
                pacer,
                send_now,
                held: req.start_on_attach,
                secrets,
            })
            .await;
        match finish.as_mut() {
            Some(f) => {
                f.finished().await;
                drop(finish);
                self.run(&run.id).await.map(Some)
            }
            None => Ok(Some(run)),
        }
    }

    /// The run `id` names: its whole id or a unique prefix of at least
    /// [`MIN_ID_PREFIX`] characters.
    pub async fn run(&self, id: &str) -> Result<RunRow> {
        if let Some(run) = self.store.run(id).await? {
            return Ok(run);
        }
        let found = self
            .store
            .run_ids_with_prefix(id, MATCHES_NAMED + 1)
            .await?;
        let full = unique_prefix("run", id, found, "herd runs ls")?;
        self.store.run(&full).await?.ok_or_else(|| {
            ServerError::NotFound(format!("run {id} not found — see `herd runs ls`"))
        })
    }

    pub async fn tasks_of_run(&self, run_id: &str) -> Result<Vec<TaskRow>> {
        Ok(self.store.tasks_of_run(run_id).await?)
    }

    pub async fn runs(&self, filter: &herd_store::ListFilter) -> Result<Vec<RunRow>> {
        Ok(self.store.runs_filtered(filter).await?)
    }

    /// The task `id` names: its whole id or a unique prefix of at least
    /// [`MIN_ID_PREFIX`] characters.
    pub async fn task(&self, id: &str) -> Result<TaskRow> {
        if let Some(task) = self.store.task(id).await? {
            return Ok(task);
        }
        let found = self
            .store
            .task_ids_with_prefix(id, MATCHES_NAMED + 1)
            .await?;
        let full = unique_prefix("task", id, found, "herd tasks ls")?;
        self.store.task(&full).await?.ok_or_else(|| {
            ServerError::NotFound(format!("task {id} not found — see `herd tasks ls`"))
        })
    }

    pub async fn tasks_by_ids(&self, ids: &[String]) -> Result<Vec<TaskRow>> {
        Ok(self.store.tasks_by_ids(ids).await?)
    }

    pub async fn recent_tasks(&self, filter: &herd_store::ListFilter) -> Result<Vec<TaskRow>> {
        Ok(self.store.tasks_filtered(filter).await?)
    }

    /// Cancels every task of a run: nothing more starts, queued tasks end `cancelled`, the
    /// others are cancelled on their agents.
    pub async fn cancel_run(&self, actor: &str, run_id: &str) -> Result<RunRow> {
        let run_id = &self.run(run_id).await?.id;
        let audit = AuditEntry::new(actor, "run.cancel", format!("run:{run_id}"), json!({}));
        let run = self
            .store
            .request_cancel(run_id, &audit)
            .await?
            .ok_or_else(|| {
                ServerError::NotFound(format!("run {run_id} not found — see `herd runs ls`"))
            })?;
        self.drivers.cancel(&run.id);
        Ok(run)
    }

    /// Cancels one task: the agent ends it (SIGTERM, then SIGKILL after the grace); a task
    /// that has not started, or whose agent is away, is ended here (and cancelled on the
    /// agent if it returns with it).
    pub async fn cancel_task(&self, actor: &str, task_id: &str) -> Result<TaskRow> {
        let task = self.task(task_id).await?;
        self.store
            .append_audit(&AuditEntry::new(
                actor,
                "task.cancel",
                format!("task:{}", task.id),
                json!({}),
            ))
            .await?;
        if task.state.is_terminal() {
            return Ok(task);
        }
        let reason = if task.state == TaskState::Queued {
            Some("cancelled before it started")
        } else if !self
            .registry
            .send(&task.agent_id, cancel_frame(&task.id))
            .await
        {
            Some("cancelled while its agent was away")
        } else {
            None
        };
        if let Some(reason) = reason {
            let ids = [task.id.clone()];
            let changed = self
                .store
                .end_tasks(&ids, TaskState::Cancelled, reason, now_ms())
                .await?;
            if !changed.is_empty() {
                self.events.task_changed(&task.run_id, &task.id);
                self.drivers
                    .task_ended(&task.run_id, &task.id, TaskState::Cancelled);
            }
        }
        self.task(task_id).await
    }

    /// A watcher is in place: a run held for it starts now. Returns once what may start
    /// now has been sent.
    pub async fn release(&self, run_id: &str) {
        self.drivers.release(run_id).await;
    }

    /// Where an unfinished run stands.
    pub fn progress(&self, run_id: &str) -> Option<tokio::sync::watch::Receiver<Progress>> {
        self.drivers.progress(run_id)
    }

    /// Writes a person's answer to one running task's stdin (`POST /api/v1/tasks/{id}/input`).
    /// The data is never stored or logged: the audit entry has its length only.
    pub async fn task_input(
        &self,
        actor: &str,
        task_id: &str,
        input: herd_api::TaskInput,
    ) -> Result<TaskRow> {
        if input.data.len() > herd_api::TaskInput::MAX_DATA {
            return Err(ServerError::BadRequest(format!(
                "input of {} bytes is over the limit of {} — send it in parts",
                input.data.len(),
                herd_api::TaskInput::MAX_DATA
            )));
        }
        let task = self.task(task_id).await?;
        if task.state != TaskState::Running {
            return Err(ServerError::Conflict(format!(
                "task {} is {}, not running: it takes no input — see `herd tasks show {}`",
                task.id, task.state, task.id
            )));
        }
        let run = self.store.run(&task.run_id).await?.ok_or_else(|| {
            ServerError::NotFound(format!("run {} of task {} not found", task.run_id, task.id))
        })?;
        if !run.spec.interactive && !run.spec.tty {
            return Err(ServerError::Conflict(format!(
                "task {} runs without stdin (its run is neither interactive nor tty) — start it with `herd run -i` to answer it",
                task.id
            )));
        }
        let secret = task
            .supervision
            .as_deref()
            .and_then(|s| serde_json::from_str::<herd_core::supervise::Supervision>(s).ok())
            .is_some_and(|s| s.secret);
        self.store
            .append_audit(&AuditEntry::new(
                actor,
                "task.input",
                format!("task:{}", task.id),
                json!({"bytes": input.data.len(), "eof": input.eof, "secret": secret}),
            ))
            .await?;
        let frame = input_frame(&task.id, bytes::Bytes::from(input.data), input.eof);
        if !self.registry.send(&task.agent_id, frame).await {
            return Err(ServerError::Conflict(format!(
                "the agent of task {} is away: the input was not delivered — try again once it is back (`herd agents ls`)",
                task.id
            )));
        }
        Ok(task)
    }

    /// Forwards a person's stdin to these tasks' agents.
    pub async fn input(&self, tasks: &[(String, String)], data: bytes::Bytes, eof: bool) {
        for (task_id, agent_id) in tasks {
            self.registry
                .send(agent_id, input_frame(task_id, data.clone(), eof))
                .await;
        }
    }

    /// The watcher's terminal changed size: so do these tasks' terminals.
    pub async fn resize(&self, tasks: &[(String, String)], rows: u16, cols: u16) {
        if rows == 0 || cols == 0 {
            return;
        }
        for (task_id, agent_id) in tasks {
            self.registry
                .send(agent_id, resize_frame(task_id, rows, cols))
                .await;
        }
    }

    /// Rebuilds the driver of every unfinished run after a start; runs whose tasks have all
    /// ended are finished.
    pub async fn recover(&self) -> Result<()> {
        for run in self.store.unfinished_runs().await? {
            let tasks = self.store.tasks_of_run(&run.id).await?;
            let limits = Limits::resolve(&run.spec.limits, tasks.len());
            let mut pending = Vec::new();
            let mut ended = HashMap::new();
            let mut in_flight = 0;
            for t in &tasks {
                match t.state {
                    TaskState::Queued => pending.push(Queued {
                        task_id: t.id.clone(),
                        agent_id: t.agent_id.clone(),
                    }),
                    s if s.is_terminal() => {
                        ended.insert(t.id.clone(), s);
                    }
                    _ => in_flight += 1,
                }
            }
            let pacer = Pacer::new(NewRun {
                limits,
                held: false,
                cancel_requested: run.cancel_requested,
                pending,
                in_flight,
                ended,
            });
            self.drivers
                .launch(Launch {
                    run,
                    pacer,
                    send_now: Vec::new(),
                    held: false,
                    // Secret values are never stored: a restarted server has none.
                    secrets: None,
                })
                .await;
        }
        Ok(())
    }
}

/// The shortest id prefix a run or task is named by (ids are time-ordered: shorter ones
/// would match most recent ids).
pub const MIN_ID_PREFIX: usize = 6;

/// How many matches of an ambiguous prefix are counted exactly.
pub(crate) const MATCHES_NAMED: i64 = 99;

/// The one id `prefix` names among the ids that start with it (`found`, at most
/// `MATCHES_NAMED + 1` of them), or why it names none: not found, too short, ambiguous.
pub(crate) fn unique_prefix(
    kind: &str,
    prefix: &str,
    found: Vec<String>,
    list: &str,
) -> Result<String> {
    let n = found.len();
    match found.into_iter().next() {
        None => Err(ServerError::NotFound(format!(
            "{kind} {prefix} not found — see `{list}`"
        ))),
        Some(_) if prefix.chars().count() < MIN_ID_PREFIX => Err(ServerError::BadRequest(format!(
            "{kind} id {prefix:?} is too short: give at least {MIN_ID_PREFIX} characters of it (see `{list}`)"
        ))),
        Some(id) if n == 1 => Ok(id),
        Some(_) => {
            let count = if n as i64 > MATCHES_NAMED {
                format!("more than {MATCHES_NAMED}")
            } else {
                n.to_string()
            };
            Err(ServerError::BadRequest(format!(
                "{kind} id prefix {prefix} matches {count} {kind}s — give more of the id (see `{list}`)"
            )))
        }
    }
}
