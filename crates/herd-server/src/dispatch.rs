//! The dispatcher: turns a run request into tasks on the machines its selectors resolve to,
//! sends them to their agents, cancels them, finishes runs, and marks lost the tasks whose
//! agents stay away.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use herd_core::{Selector, Target, TaskState};
use herd_proto::v1::{self as pb, ServerFrame, server_frame};
use herd_store::{AgentRow, NewTask, RunRow, TaskRow, now_ms};
use serde::{Deserialize, Serialize};

use crate::State;
use crate::error::{Result, ServerError};
use crate::live::Change;

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

/// An agent as selectors see it: its name, labels, then facts.
pub struct AgentView {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
}

impl AgentView {
    pub fn new(a: &AgentRow) -> AgentView {
        let mut attrs = BTreeMap::new();
        if let serde_json::Value::Object(facts) = a.facts_json() {
            for (k, v) in facts {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                attrs.insert(k, v);
            }
        }
        // Labels win over facts of the same name.
        attrs.extend(a.effective_labels());
        AgentView {
            name: a.name.clone(),
            attrs,
        }
    }
}

impl Target for AgentView {
    fn name(&self) -> &str {
        &self.name
    }
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

/// Parses the selectors of a request and returns the live agents they pick.
pub async fn resolve(st: &State, targets: &[String], all: bool) -> Result<(String, Vec<AgentRow>)> {
    let agents = st.store.agents(false).await?;
    if all {
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
    let picked: Vec<AgentRow> = agents
        .iter()
        .filter(|a| {
            let v = AgentView::new(a);
            sels.iter().any(|s| s.matches(&v))
        })
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(ServerError::BadRequest(format!(
            "no machine matches {label:?} ({} known) — see `herd agents` for names and labels",
            agents.len()
        )));
    }
    Ok((label, picked))
}

/// Creates a run and dispatches its tasks. Tasks for agents that are not connected are
/// created already `lost`, so the run reports exactly which machines did not answer.
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
    let (label, agents) = resolve(st, &req.targets, req.all).await?;
    let now = now_ms();
    let spec_json =
        serde_json::to_string(&req.spec).map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut tasks = Vec::with_capacity(agents.len());
    for a in &agents {
        let online = st.hub.is_online(&a.id);
        tasks.push(NewTask {
            id: herd_core::new_id(),
            agent_id: a.id.clone(),
            agent_name: a.name.clone(),
            state: match (online, req.start_on_attach) {
                (false, _) => TaskState::Lost,
                (true, true) => TaskState::Queued,
                (true, false) => TaskState::Dispatched,
            }
            .as_str()
            .to_string(),
            reason: (!online).then(|| "agent offline".to_string()),
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
    let mut any_open = tasks.iter().any(|t| t.state == "queued");
    if any_open {
        let (st2, run_id) = (st.clone(), run.id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            start_queued(&st2, &run_id).await;
        });
    }
    for t in &tasks {
        if t.state != "dispatched" {
            continue;
        }
        any_open = true;
        let frame = start_frame_for(&t.id, &req.command, &req.spec);
        st.hub.note_sent(&t.id);
        if !st.hub.send(&t.agent_id, frame).await {
            // The agent went away between resolution and send; it gets the task again when
            // it reconnects (StartTask is idempotent), or the task is marked lost.
            tracing::info!(task = %t.id, agent = %t.agent_name, "agent unreachable at dispatch");
        }
    }
    if !any_open {
        finish_run_if_done(st, &run.id).await;
    }
    Ok(run)
}

/// Sends the run's queued tasks to their agents (once: the queued → dispatched step is the
/// claim). Called when a watcher has attached, or when the wait for one ran out.
pub async fn start_queued(st: &Arc<State>, run_id: &str) {
    let Ok(tasks) = st.store.tasks_of_run(run_id).await else {
        return;
    };
    for t in tasks.iter().filter(|t| t.state == "queued") {
        if !st.hub.is_online(&t.agent_id) {
            continue;
        }
        let Some(frame) = start_frame(st, t).await else {
            continue;
        };
        if let Ok(true) = st.store.mark_dispatched(&t.id, now_ms()).await {
            st.hub.note_sent(&t.id);
            st.hub.send(&t.agent_id, frame).await;
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

/// Called whenever a task reaches a final state.
pub async fn task_ended(st: &Arc<State>, run_id: &str, task_id: &str) {
    st.hub.forget_task(task_id);
    st.live.notify(run_id, Change::Task(task_id.to_string()));
    finish_run_if_done(st, run_id).await;
}

async fn finish_run_if_done(st: &Arc<State>, run_id: &str) {
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
    let state = herd_core::run_state(states, run.cancel_requested);
    let state = serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "failed".into());
    if st.store.finish_run(run_id, &state, now_ms()).await.is_ok() {
        st.live.notify(run_id, Change::Run);
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
            task_ended(st, &task.run_id, &task.id).await;
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
                task_ended(&st, &t.run_id, &t.id).await;
            }
        }
    }
}
