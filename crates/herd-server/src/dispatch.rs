//! The dispatcher: turns a run request into tasks on the machines its selectors resolve to,
//! sends them to their agents, cancels them, finishes runs, and marks lost the tasks whose
//! agents stay away.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use herd_core::{Limit, RunState, Selector, TaskState};
use herd_proto::v1::{self as pb, ServerFrame, server_frame};
use herd_store::{NewTask, RunRow, TaskRow, now_ms};
use serde::{Deserialize, Serialize};

use crate::State;
use crate::error::{Result, ServerError};
use crate::live::Change;
use crate::sched::{Limits, NewRun, Queued};

/// How every task of a run executes; stored with the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSpec {
    pub timeout_ms: u64,
    pub interactive: bool,
    pub tty: bool,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub shell: String,
    pub grace_ms: u32,
    pub limits: RunLimits,
}

/// Rate control of a run's fan-out, as asked (counts or percentages of its targets).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunLimits {
    /// Machines running at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Limit>,
    /// Failures tolerated; once exceeded no new machine starts and the rest are skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<Limit>,
    /// Pause after a machine finishes before its slot goes to the next one.
    #[serde(skip_serializing_if = "is_zero")]
    pub batch_wait_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl RunLimits {
    pub fn resolve(&self, targets: usize) -> Limits {
        Limits {
            concurrency: self.concurrency.map_or(usize::MAX, |c| c.ceil_of(targets)),
            max_errors: self.max_errors.map(|m| m.floor_of(targets)),
            batch_wait: Duration::from_millis(self.batch_wait_ms),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunRequest {
    pub command: String,
    /// Selectors, OR'ed together.
    pub targets: Vec<String>,
    /// Every machine.
    pub all: bool,
    /// Hold the tasks until a watcher attaches (or 30 s pass), so it sees every byte live.
    pub start_on_attach: bool,
    #[serde(flatten)]
    pub spec: RunSpec,
}

/// Parses the selectors of a request and returns the live agents they pick, as
/// `(id, name)` by name, from the in-memory index.
pub fn resolve(
    st: &State,
    targets: &[String],
    all: bool,
) -> Result<(String, Vec<(String, String)>)> {
    if all {
        let agents = st.agents.resolve(&[], true);
        if agents.is_empty() {
            return Err(ServerError::BadRequest(
                "no machine has joined yet — start an agent with the command `herd token create` prints".into(),
            ));
        }
        return Ok(("--all".into(), agents));
    }
    if targets.is_empty() {
        return Err(ServerError::BadRequest(
            "no target given — pass -t SELECTOR (e.g. -t web-1, -t role=web) or --all".into(),
        ));
    }
    let mut sels = Vec::with_capacity(targets.len());
    for t in targets {
        sels.push(Selector::parse(t).map_err(|e| ServerError::BadRequest(e.to_string()))?);
    }
    let label = targets.join(" , ");
    let picked = st.agents.resolve(&sels, false);
    if picked.is_empty() {
        return Err(ServerError::BadRequest(format!(
            "no machine matches {label:?} ({} known) — see `herd agents` for names and labels",
            st.agents.len()
        )));
    }
    Ok((label, picked))
}

/// Creates a run and dispatches its tasks. Tasks for agents that are not connected are
/// created already `lost`, so the run reports exactly which machines did not answer; the
/// others start at once or, under rate control, as slots free up.
pub async fn create_run(
    st: &Arc<State>,
    actor: &str,
    req: RunRequest,
    run_id: String,
) -> Result<RunRow> {
    if req.command.trim().is_empty() {
        return Err(ServerError::BadRequest(
            "empty command — give it after `--`".into(),
        ));
    }
    if req.spec.limits.concurrency == Some(herd_core::Limit::Count(0)) {
        return Err(ServerError::BadRequest(
            "concurrency must be at least 1 (or a percentage such as 10%)".into(),
        ));
    }
    let (label, agents) = resolve(st, &req.targets, req.all)?;
    let now = now_ms();
    let spec_json =
        serde_json::to_string(&req.spec).map_err(|e| ServerError::Internal(e.to_string()))?;
    let limits = req.spec.limits.resolve(agents.len());
    // One look per agent: the budget check and the tasks agree even if one comes or goes.
    let online: Vec<bool> = agents.iter().map(|(id, _)| st.hub.is_online(id)).collect();
    let offline = online.iter().filter(|o| !**o).count();
    // Offline machines count against the error budget like any other failure.
    let halted = limits.max_errors.is_some_and(|max| offline > max);
    let mut start_now = if req.start_on_attach || halted {
        0
    } else {
        limits.concurrency
    };
    let mut tasks = Vec::with_capacity(agents.len());
    for ((agent_id, agent_name), online) in agents.into_iter().zip(online) {
        let (state, reason) = if !online {
            (TaskState::Lost, Some("agent offline".to_string()))
        } else if halted {
            (
                TaskState::Skipped,
                Some("not started: too many machines were offline".to_string()),
            )
        } else if start_now > 0 {
            start_now -= 1;
            (TaskState::Dispatched, None)
        } else {
            (TaskState::Queued, None)
        };
        tasks.push(NewTask {
            id: herd_core::new_id(),
            agent_id,
            agent_name,
            state: state.as_str().to_string(),
            reason,
        });
    }
    let run = RunRow {
        id: run_id,
        command: req.command.clone(),
        selector: label.clone(),
        spec: spec_json,
        created_by: actor.to_string(),
        created_at: now,
        cancel_requested: false,
        state: "running".into(),
        finished_at: None,
    };
    st.store.insert_run(&run, &tasks).await?;
    st.metrics.runs_created.inc();
    let _ = st
        .store
        .audit(
            actor,
            "run.create",
            &format!("run:{}", run.id),
            &serde_json::json!({"command": req.command, "targets": label, "machines": tasks.len()})
                .to_string(),
        )
        .await;

    let mut pending = Vec::new();
    let mut ended = HashMap::new();
    let mut in_flight = 0;
    for t in &tasks {
        match t.state.as_str() {
            "queued" => pending.push(Queued {
                task_id: t.id.clone(),
                agent_id: t.agent_id.clone(),
            }),
            "dispatched" => in_flight += 1,
            other => {
                if let Ok(s) = other.parse::<TaskState>() {
                    ended.insert(t.id.clone(), s);
                }
            }
        }
    }
    let all_ended = ended.len() == tasks.len();
    st.sched.add(
        &run.id,
        NewRun {
            limits,
            held: req.start_on_attach,
            cancel_requested: false,
            pending,
            in_flight,
            ended,
        },
    );
    if all_ended {
        finish_run(
            st,
            &run.id,
            herd_core::run_state(tasks_states(&tasks), false),
        )
        .await;
        return Ok(run);
    }
    if req.start_on_attach {
        let (st2, run_id) = (st.clone(), run.id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            start_queued(&st2, &run_id).await;
        });
    }
    let spec = Arc::new(req.spec);
    let sends: Vec<(String, String)> = tasks
        .iter()
        .filter(|t| t.state == "dispatched")
        .map(|t| (t.id.clone(), t.agent_id.clone()))
        .collect();
    send_starts(st, &run, &spec, sends).await;
    Ok(run)
}

fn tasks_states(tasks: &[NewTask]) -> Vec<TaskState> {
    tasks
        .iter()
        .filter_map(|t| t.state.parse::<TaskState>().ok())
        .collect()
}

/// Sends StartTask frames. An agent that went away between resolution and send gets the
/// task again when it reconnects (StartTask is idempotent), or the task is marked lost.
async fn send_starts(st: &State, run: &RunRow, spec: &RunSpec, tasks: Vec<(String, String)>) {
    for (task_id, agent_id) in tasks {
        let frame = start_frame_for(&task_id, &run.command, spec);
        st.hub.note_sent(&run.id, &task_id, &agent_id);
        if !st.hub.send(&agent_id, frame).await {
            tracing::info!(task = %task_id, agent = %agent_id, "agent unreachable at dispatch");
        }
    }
}

/// A run held for its watcher may start (the watcher attached, or the wait ran out).
pub async fn start_queued(st: &Arc<State>, run_id: &str) {
    st.sched.release(run_id);
    pump(st, run_id).await;
}

/// Starts as many waiting tasks of the run as its limits allow now.
pub async fn pump(st: &Arc<State>, run_id: &str) {
    let admitted = st.sched.admit(run_id);
    if admitted.is_empty() {
        return;
    }
    let Ok(Some(run)) = st.store.run(run_id).await else {
        return;
    };
    let spec: RunSpec = serde_json::from_str(&run.spec).unwrap_or_default();
    // Machines that went away while their task waited are not reached: lost, now.
    let (online, offline): (Vec<Queued>, Vec<Queued>) = admitted
        .into_iter()
        .partition(|q| st.hub.is_online(&q.agent_id));
    let ids: Vec<String> = online.iter().map(|q| q.task_id.clone()).collect();
    let claimed = match st.store.mark_dispatched_many(&ids, now_ms()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(run = run_id, error = %e, "cannot dispatch queued tasks");
            Vec::new()
        }
    };
    let claimed: std::collections::HashSet<String> = claimed.into_iter().collect();
    let mut sends = Vec::with_capacity(claimed.len());
    let mut unclaimed = Vec::new();
    for q in online {
        if claimed.contains(&q.task_id) {
            sends.push((q.task_id, q.agent_id));
        } else {
            unclaimed.push(q.task_id);
        }
    }
    for q in offline {
        if let Ok(true) = st
            .store
            .end_open_task(&q.task_id, "lost", "agent offline", now_ms())
            .await
        {
            task_ended_boxed(st, run_id, &q.task_id, TaskState::Lost).await;
        }
    }
    send_starts(st, &run, &spec, sends).await;
    // Tasks that were no longer queued (ended meanwhile) free their slots.
    for task_id in unclaimed {
        if let Ok(Some(t)) = st.store.task(&task_id).await
            && let Ok(state) = t.state.parse::<TaskState>()
            && state.is_terminal()
        {
            task_ended_boxed(st, run_id, &task_id, state).await;
        }
    }
}

fn start_frame_for(task_id: &str, command: &str, spec: &RunSpec) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Start(pb::StartTask {
            task_id: task_id.to_string(),
            command: command.to_string(),
            shell: spec.shell.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone().into_iter().collect::<HashMap<_, _>>(),
            timeout_ms: spec.timeout_ms,
            interactive: spec.interactive,
            tty: spec.tty,
            grace_ms: spec.grace_ms,
        })),
    }
}

/// The StartTask frame of an existing task (for resending after a reconnect).
pub async fn start_frame(st: &State, task: &TaskRow) -> Option<ServerFrame> {
    let run = st.store.run(&task.run_id).await.ok()??;
    let spec: RunSpec = serde_json::from_str(&run.spec).unwrap_or_default();
    Some(start_frame_for(&task.id, &run.command, &spec))
}

/// Called whenever a task reaches a final state: frees its slot, spends the run's error
/// budget (skipping what waits once it is spent), and finishes the run after its last task.
pub async fn task_ended(st: &Arc<State>, run_id: &str, task_id: &str, state: TaskState) {
    if let Some(pos) = st.hub.forget_task(task_id)
        && herd_store::OutputLog::needs_finish(pos)
    {
        // However it ended (exited, lost, cancelled while away), its retired output
        // segments go.
        let (outlog, id) = (st.outlog.clone(), task_id.to_string());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = outlog.finish(&id, pos) {
                tracing::warn!(task = %id, error = %e, "cannot delete retired output segments");
            }
        });
    }
    st.live.notify(run_id, Change::Task(task_id.to_string()));
    if !st.sched.knows(run_id) {
        // A late result for a run already finished (a lost task whose agent came back):
        // its final state is derived again from the stored tasks.
        refinish_run(st, run_id).await;
        return;
    }
    let after = st.sched.ended(run_id, task_id, state);
    if !after.skip.is_empty() {
        let ids: Vec<String> = after.skip.iter().map(|q| q.task_id.clone()).collect();
        let reason = "not started: the run's --max-errors was exceeded";
        match st
            .store
            .end_queued_many(&ids, TaskState::Skipped.as_str(), reason, now_ms())
            .await
        {
            Ok(skipped) => {
                for id in skipped {
                    task_ended_boxed(st, run_id, &id, TaskState::Skipped).await;
                }
            }
            Err(e) => tracing::error!(run = run_id, error = %e, "cannot skip queued tasks"),
        }
    }
    if let Some(run_state) = after.finished {
        finish_run(st, run_id, run_state).await;
        return;
    }
    match after.wait {
        Some(wait) => {
            let (st, run_id) = (st.clone(), run_id.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                st.sched.release_slot(&run_id);
                pump(&st, &run_id).await;
            });
        }
        None => pump_boxed(st, run_id).await,
    }
}

// The two call each other (an end frees a slot, a start may find a machine gone); boxing
// at the recursion points gives the futures a nameable, `Send` type.
fn task_ended_boxed<'a>(
    st: &'a Arc<State>,
    run_id: &'a str,
    task_id: &'a str,
    state: TaskState,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(task_ended(st, run_id, task_id, state))
}

fn pump_boxed<'a>(
    st: &'a Arc<State>,
    run_id: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(pump(st, run_id))
}

async fn finish_run(st: &State, run_id: &str, state: RunState) {
    if st
        .store
        .finish_run(run_id, state.as_str(), now_ms())
        .await
        .is_ok()
    {
        st.live.notify(run_id, Change::Run);
    }
}

/// The final state of a finished run from its stored tasks (rare: late results).
async fn refinish_run(st: &State, run_id: &str) {
    let Ok(tasks) = st.store.tasks_of_run(run_id).await else {
        return;
    };
    let Ok(Some(run)) = st.store.run(run_id).await else {
        return;
    };
    let states: Vec<TaskState> = tasks
        .iter()
        .filter_map(|t| t.state.parse::<TaskState>().ok())
        .collect();
    if states.iter().any(|s| !s.is_terminal()) {
        return;
    }
    finish_run(
        st,
        run_id,
        herd_core::run_state(states, run.cancel_requested),
    )
    .await;
}

/// Rebuilds the rate control of every unfinished run after a restart and starts what may
/// start; runs whose tasks have all ended are finished.
pub async fn recover_runs(st: &Arc<State>) {
    let runs = match st.store.unfinished_runs().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot load unfinished runs");
            return;
        }
    };
    for run in runs {
        let Ok(tasks) = st.store.tasks_of_run(&run.id).await else {
            continue;
        };
        let spec: RunSpec = serde_json::from_str(&run.spec).unwrap_or_default();
        let limits = spec.limits.resolve(tasks.len());
        let mut pending = Vec::new();
        let mut ended = HashMap::new();
        let mut in_flight = 0;
        for t in &tasks {
            match t.state.parse::<TaskState>() {
                Ok(TaskState::Queued) => pending.push(Queued {
                    task_id: t.id.clone(),
                    agent_id: t.agent_id.clone(),
                }),
                Ok(s) if s.is_terminal() => {
                    ended.insert(t.id.clone(), s);
                }
                _ => in_flight += 1,
            }
        }
        let all_ended = ended.len() == tasks.len();
        st.sched.add(
            &run.id,
            NewRun {
                limits,
                held: false,
                cancel_requested: run.cancel_requested,
                pending,
                in_flight,
                ended,
            },
        );
        if all_ended {
            refinish_run(st, &run.id).await;
        } else {
            pump(st, &run.id).await;
        }
    }
}

/// Cancels one task: the agent ends it (SIGTERM, then SIGKILL after the grace); a task whose
/// agent is away is ended here and cancelled on the agent when it returns.
pub async fn cancel_task(st: &Arc<State>, actor: &str, task: &TaskRow, audit: bool) -> Result<()> {
    if audit {
        let _ = st
            .store
            .audit(actor, "task.cancel", &format!("task:{}", task.id), "{}")
            .await;
    }
    if task
        .state
        .parse::<TaskState>()
        .map(|s| s.is_terminal())
        .unwrap_or(true)
    {
        return Ok(());
    }
    let frame = ServerFrame {
        kind: Some(server_frame::Kind::Cancel(pb::CancelTask {
            task_id: task.id.clone(),
            grace_ms: 5000,
        })),
    };
    if task.state == "queued" || !st.hub.send(&task.agent_id, frame).await {
        let reason = if task.state == "queued" {
            "cancelled before it started"
        } else {
            "cancelled while its agent was away"
        };
        if st
            .store
            .end_open_task(&task.id, "cancelled", reason, now_ms())
            .await?
        {
            task_ended(st, &task.run_id, &task.id, TaskState::Cancelled).await;
        }
    }
    Ok(())
}

pub async fn cancel_run(st: &Arc<State>, actor: &str, run_id: &str) -> Result<()> {
    let run = st.store.run(run_id).await?.ok_or_else(|| {
        ServerError::NotFound(format!("run {run_id} not found — see `herd runs ls`"))
    })?;
    st.store.set_run_cancel(&run.id).await?;
    let _ = st
        .store
        .audit(actor, "run.cancel", &format!("run:{}", run.id), "{}")
        .await;
    // Nothing more starts; what waited is cancelled below with the rest.
    st.sched.cancel(&run.id);
    for t in st.store.tasks_of_run(&run.id).await? {
        cancel_task(st, actor, &t, false).await?;
    }
    Ok(())
}

/// Marks lost the open tasks whose agent has been away longer than `lost_after`.
pub async fn sweep_lost(st: Arc<State>) {
    let period = (st.cfg.lost_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        tokio::time::sleep(period).await;
        let Ok(open) = st.store.open_tasks().await else {
            continue;
        };
        for t in open {
            // Waiting for a slot is not being lost: the scheduler reaches it in its turn.
            if t.state == "queued" {
                continue;
            }
            let Some(away) = st.hub.away_for(&t.agent_id, st.started) else {
                continue;
            };
            if away < st.cfg.lost_after {
                continue;
            }
            let reason = format!(
                "its agent {} did not come back within {}",
                t.agent_name,
                herd_core::format_duration(st.cfg.lost_after)
            );
            if let Ok(true) = st
                .store
                .end_open_task(&t.id, "lost", &reason, now_ms())
                .await
            {
                task_ended(&st, &t.run_id, &t.id, TaskState::Lost).await;
            }
        }
    }
}
