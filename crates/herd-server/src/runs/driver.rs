//! The driver of each unfinished run: one task per run that owns the run's pacing and is
//! the only place its queued tasks start. Whoever ends a task (the persist path of its
//! agent, a cancel, the lost-task sweep, a reconnect) tells the run's driver with a message
//! that never waits, so no agent's persist path and no watcher does another run's or agent's
//! work. The driver claims what its pacing admits, sends StartTask frames, skips what an
//! exhausted error budget leaves, cancels what waits when the run is cancelled, and
//! finishes the run after its last task.
//!
//! A result that arrives after its run finished (a `lost` task whose agent came back) finds
//! no driver: the run's final state is derived again from its stored tasks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_core::{RunState, TaskState};
use herd_outlog::OutputLog;
use herd_store::{RunRow, Store, now_ms};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frames::{SECRETS_GONE, SecretEnv, cancel_frame, start_frame};
use super::pace::{Pacer, Progress, Queued};
use super::waiting::{Waiters, worth_waiting};
use crate::active::ActiveTasks;
use crate::events::Events;
use crate::fleet::AgentIndex;
use crate::lock;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// A run held for its watcher starts anyway after this long.
pub const HOLD_FOR_WATCHER: Duration = Duration::from_secs(30);
/// After a store error while claiming tasks, the driver tries again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum Msg {
    /// A task reached a final state (stored already, and announced to followers).
    TaskEnded { task_id: String, state: TaskState },
    /// The run's watcher is in place (or it was never held): queued tasks may start. The
    /// sender learns once the StartTask frames of what may start now are out.
    Release(Option<tokio::sync::oneshot::Sender<()>>),
    /// The run's cancellation is stored: nothing more starts, the rest is cancelled.
    Cancel,
    /// A machine this run waits for came online: its parked tasks start.
    AgentOnline(String),
}

/// What the drivers share: the store, the agents, the persist path's task table, the output
/// log and the followers.
pub struct DriverCtx {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub active: Arc<ActiveTasks>,
    pub outlog: Arc<OutputLog>,
    pub events: Arc<Events>,
    /// When each machine was last heard from (whether a run waits for it).
    pub index: Arc<AgentIndex>,
    /// Which runs wait for which offline machine.
    pub waiters: Waiters,
    /// Counts the tasks that end.
    pub metrics: Arc<Metrics>,
    /// The limits of each command class, sent with every StartTask.
    pub supervise: herd_core::supervise::Limits,
}

struct Entry {
    tx: mpsc::UnboundedSender<Msg>,
    progress: watch::Receiver<Progress>,
    /// The run's secret values, while it runs (a reconnecting agent's StartTask needs them).
    secrets: Option<SecretEnv>,
}

/// The drivers of unfinished runs, by run id.
pub struct Drivers {
    ctx: Arc<DriverCtx>,
    runs: Mutex<HashMap<String, Entry>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// A run whose driver is to start.
pub struct Launch {
    pub run: RunRow,
    pub pacer: Pacer,
    /// Tasks created already dispatched: their StartTask goes out now.
    pub send_now: Vec<Queued>,
    /// Held until a watcher attaches, at most [`HOLD_FOR_WATCHER`].
    pub held: bool,
    /// The values of the run's secret environment variables (none after a restart).
    pub secrets: Option<SecretEnv>,
}

impl Drivers {
    pub fn new(ctx: Arc<DriverCtx>, tracker: TaskTracker, shutdown: CancellationToken) -> Drivers {
        Drivers {
            ctx,
            runs: Mutex::default(),
            tracker,
            shutdown,
        }
    }

    /// Starts a run's driver (or, if every task already ended, finishes the run now).
    pub async fn launch(self: &Arc<Self>, launch: Launch) {
        let run_id = launch.run.id.clone();
        if let Some(state) = launch.pacer.finished() {
            finish(&self.ctx, &run_id, state).await;
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(launch.pacer.progress());
        lock(&self.runs).insert(
            run_id.clone(),
            Entry {
                tx,
                progress,
                secrets: launch.secrets.clone(),
            },
        );
        let driver = Driver {
            ctx: self.ctx.clone(),
            run: launch.run,
            secrets: launch.secrets,
            pacer: launch.pacer,
            rx,
            progress: progress_tx,
            hold_until: launch.held.then(|| Instant::now() + HOLD_FOR_WATCHER),
            slot_frees: VecDeque::new(),
            retry: Vec::new(),
            retry_at: None,
            ends: VecDeque::new(),
            parked: HashMap::new(),
            park_order: VecDeque::new(),
            parked_tasks: 0,
        };
        let (drivers, shutdown) = (self.clone(), self.shutdown.clone());
        self.tracker.spawn(async move {
            let run_id = driver.run.id.clone();
            let leftover = driver.drive(launch.send_now, shutdown).await;
            drivers.retire(&run_id, leftover);
        });
    }

    /// A task of `run_id` ended (its row is stored and announced). Drops what the persist
    /// path held of it, and tells the run's driver, or (the run already finished) derives
    /// the run's final state again. Never waits.
    pub fn task_ended(self: &Arc<Self>, run_id: &str, task_id: &str, state: TaskState) {
        self.ctx.metrics.task_ended(state);
        self.ctx.active.finish(task_id, &self.ctx.outlog);
        let msg = Msg::TaskEnded {
            task_id: task_id.to_string(),
            state,
        };
        let sent = lock(&self.runs)
            .get(run_id)
            .map(|e| e.tx.send(msg).is_ok())
            .unwrap_or(false);
        if !sent {
            self.refinish(run_id);
        }
    }

    /// The run's watcher is in place: its held tasks may start. Completes once the driver
    /// has sent what may start now (so the watcher's stdin follows the StartTask frames on
    /// each agent's stream), or at once for a run without a driver.
    pub async fn release(&self, run_id: &str) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.post(run_id, Msg::Release(Some(tx)));
        let _ = rx.await;
    }

    /// The run's cancellation is stored: its driver stops starting tasks and cancels the
    /// rest. A run without a driver has finished: nothing to do.
    pub fn cancel(&self, run_id: &str) {
        self.post(run_id, Msg::Cancel);
    }

    /// The values of a run's secret environment variables, while its driver runs.
    /// The limits of each command class, for StartTask frames.
    pub fn supervise(&self) -> &herd_core::supervise::Limits {
        &self.ctx.supervise
    }

    pub fn secrets(&self, run_id: &str) -> Option<SecretEnv> {
        lock(&self.runs).get(run_id).and_then(|e| e.secrets.clone())
    }

    /// An agent connected (and was reconciled): the runs waiting for it start its tasks.
    /// One lookup; only the runs that wait for this machine hear of it.
    pub fn agent_online(&self, agent_id: &str) {
        for run_id in self.ctx.waiters.take(agent_id) {
            self.post(&run_id, Msg::AgentOnline(agent_id.to_string()));
        }
    }

    /// Where the run stands, while it has a driver.
    pub fn progress(&self, run_id: &str) -> Option<watch::Receiver<Progress>> {
        lock(&self.runs).get(run_id).map(|e| e.progress.clone())
    }

    fn post(&self, run_id: &str, msg: Msg) {
        if let Some(e) = lock(&self.runs).get(run_id) {
            let _ = e.tx.send(msg);
        }
    }

    /// A driver stopped: its entry goes, and ends that reached it too late are handled
    /// like late results.
    fn retire(self: &Arc<Self>, run_id: &str, leftover: Vec<Msg>) {
        lock(&self.runs).remove(run_id);
        if leftover.iter().any(|m| matches!(m, Msg::TaskEnded { .. })) {
            self.refinish(run_id);
        }
    }

    fn refinish(&self, run_id: &str) {
        let (ctx, run_id) = (self.ctx.clone(), run_id.to_string());
        self.tracker.spawn(async move {
            let tasks = match ctx.store.tasks_of_run(&run_id).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(run = %run_id, error = %e, "cannot read a finished run's tasks");
                    return;
                }
            };
            let Ok(Some(run)) = ctx.store.run(&run_id).await else {
                return;
            };
            let states: Vec<TaskState> = tasks.iter().map(|t| t.state).collect();
            if states.iter().any(|s| s.is_open()) {
                return;
            }
            finish(&ctx, &run_id, herd_core::run_state(states, run.cancel_requested)).await;
        });
    }
}

/// Stores a run's final state and tells its followers.
async fn finish(ctx: &DriverCtx, run_id: &str, state: RunState) {
    match ctx.store.finish_run(run_id, state, now_ms()).await {
        Ok(_) => ctx.events.run_finished(run_id),
        Err(e) => tracing::error!(run = run_id, error = %e, "cannot record the end of a run"),
    }
}

struct Driver {
    ctx: Arc<DriverCtx>,
    run: RunRow,
    secrets: Option<SecretEnv>,
    pacer: Pacer,
    rx: mpsc::UnboundedReceiver<Msg>,
    progress: watch::Sender<Progress>,
    hold_until: Option<Instant>,
    /// When slots held for `batch_wait` free up, in order.
    slot_frees: VecDeque<Instant>,
    /// Admitted tasks not claimed yet (the store failed), and when to try again.
    retry: Vec<Queued>,
    retry_at: Option<Instant>,
    /// Ends found by the driver itself (skips, machines offline), handled like messages.
    ends: VecDeque<(String, TaskState)>,
    /// Admitted tasks whose machine is offline but expected back, by agent, with when they
    /// give up on it (they hold their slots meanwhile).
    parked: HashMap<String, (Instant, Vec<Queued>)>,
    /// Parked machines in the order they were parked (their deadlines in order).
    park_order: VecDeque<(Instant, String)>,
    parked_tasks: usize,
}

impl Driver {
    /// Runs until the run finishes or the server shuts down; returns the messages that
    /// were still queued.
    async fn drive(mut self, send_now: Vec<Queued>, shutdown: CancellationToken) -> Vec<Msg> {
        self.send_starts(send_now).await;
        self.pump().await;
        loop {
            let deadline = [
                self.hold_until,
                self.slot_frees.front().copied(),
                self.retry_at,
                self.park_order.front().map(|(t, _)| *t),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                m = self.rx.recv() => match m {
                    Some(m) => self.handle(m).await,
                    // Every sender is gone: the server is shutting down.
                    None => break,
                },
                _ = sleep_until(deadline) => self.on_timer().await,
                _ = shutdown.cancelled() => break,
            }
            // Ends the driver found itself are handled as if they had arrived.
            while let Some((task_id, state)) = self.ends.pop_front() {
                self.on_ended(&task_id, state).await;
            }
            let waiting = self.parked_tasks;
            self.progress.send_if_modified(|p| {
                let mut now = self.pacer.progress();
                now.waiting = waiting;
                let changed = *p != now;
                *p = now;
                changed
            });
            if let Some(state) = self.pacer.finished() {
                finish(&self.ctx, &self.run.id, state).await;
                break;
            }
        }
        self.unpark_all();
        self.rx.close();
        let mut left = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            left.push(m);
        }
        left
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::TaskEnded { task_id, state } => self.on_ended(&task_id, state).await,
            Msg::Release(done) => {
                self.hold_until = None;
                self.pacer.release();
                self.pump().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Msg::Cancel => self.cancel().await,
            Msg::AgentOnline(agent_id) => self.agent_online(&agent_id).await,
        }
    }

    /// A machine this run waits for is online: its parked tasks start.
    async fn agent_online(&mut self, agent_id: &str) {
        let Some((_, tasks)) = self.parked.remove(agent_id) else {
            return;
        };
        self.parked_tasks -= tasks.len();
        self.dispatch(tasks).await;
    }

    /// Parks tasks whose machine is offline but expected back; the others end `lost` now.
    async fn park_or_lose(&mut self, offline: Vec<Queued>) {
        let window = self.run.spec.wait_offline();
        let now = now_ms();
        let (park, lose): (Vec<Queued>, Vec<Queued>) = offline
            .into_iter()
            .partition(|q| worth_waiting(self.ctx.index.last_seen(&q.agent_id), now, window));
        if !lose.is_empty() {
            let ids: Vec<String> = lose.iter().map(|q| q.task_id.clone()).collect();
            self.end(&ids, TaskState::Lost, "agent offline").await;
        }
        let deadline = Instant::now() + window;
        let mut agents = Vec::new();
        for q in park {
            let agent = q.agent_id.clone();
            let entry = self.parked.entry(agent.clone()).or_insert_with(|| {
                agents.push(agent.clone());
                (deadline, Vec::new())
            });
            entry.1.push(q);
            self.parked_tasks += 1;
        }
        for agent in agents {
            self.ctx.waiters.add(&agent, &self.run.id);
            self.park_order.push_back((deadline, agent.clone()));
            // It may have connected between the look and the registration.
            if self.ctx.registry.is_online(&agent) {
                self.ctx.waiters.remove(&agent, &self.run.id);
                self.agent_online(&agent).await;
            }
        }
    }

    /// Machines that did not come back in time: their parked tasks end `lost`.
    async fn give_up_on_machines(&mut self, now: Instant) {
        while let Some((deadline, agent)) = self.park_order.front().cloned() {
            if deadline > now {
                break;
            }
            self.park_order.pop_front();
            let due = self.parked.get(&agent).is_some_and(|(d, _)| *d == deadline);
            if !due {
                continue;
            }
            if let Some((_, tasks)) = self.parked.remove(&agent) {
                self.parked_tasks -= tasks.len();
                self.ctx.waiters.remove(&agent, &self.run.id);
                let ids: Vec<String> = tasks.into_iter().map(|q| q.task_id).collect();
                let reason = format!(
                    "agent offline: it did not come back within {} (--wait-offline)",
                    herd_core::format_duration(self.run.spec.wait_offline())
                );
                self.end(&ids, TaskState::Lost, &reason).await;
            }
        }
    }

    /// Forgets every parked task (the run is cancelled or over).
    fn unpark_all(&mut self) {
        for agent in self.parked.keys() {
            self.ctx.waiters.remove(agent, &self.run.id);
        }
        self.parked.clear();
        self.park_order.clear();
        self.parked_tasks = 0;
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.hold_until.is_some_and(|t| t <= now) {
            self.hold_until = None;
            self.pacer.release();
        }
        while self.slot_frees.front().is_some_and(|t| *t <= now) {
            self.slot_frees.pop_front();
            self.pacer.release_slot();
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
        }
        self.give_up_on_machines(now).await;
        self.pump().await;
    }

    async fn on_ended(&mut self, task_id: &str, state: TaskState) {
        if self.parked_tasks > 0 {
            // Ended while parked (cancelled on its own): it no longer waits.
            for (_, tasks) in self.parked.values_mut() {
                if let Some(i) = tasks.iter().position(|q| q.task_id == task_id) {
                    tasks.remove(i);
                    self.parked_tasks -= 1;
                    break;
                }
            }
        }
        let after = self.pacer.ended(task_id, state);
        if !after.skip.is_empty() {
            let ids: Vec<String> = after.skip.iter().map(|q| q.task_id.clone()).collect();
            self.end(
                &ids,
                TaskState::Skipped,
                "not started: the run's --max-errors was exceeded",
            )
            .await;
        }
        if after.finished.is_some() {
            return;
        }
        match after.wait {
            Some(wait) => self.slot_frees.push_back(Instant::now() + wait),
            None => self.pump().await,
        }
    }

    /// Ends tasks with `state`, announces those that changed and queues their ends.
    async fn end(&mut self, ids: &[String], state: TaskState, reason: &str) {
        match self.ctx.store.end_tasks(ids, state, reason, now_ms()).await {
            Ok(changed) => {
                for id in changed {
                    self.ctx.metrics.task_ended(state);
                    self.ctx.events.task_changed(&self.run.id, &id);
                    self.ctx.active.finish(&id, &self.ctx.outlog);
                    self.ends.push_back((id, state));
                }
            }
            Err(e) => {
                tracing::error!(run = %self.run.id, error = %e, "cannot end tasks as {state}")
            }
        }
    }

    /// Starts as many waiting tasks as the pacing allows now.
    async fn pump(&mut self) {
        if self.retry_at.is_some() {
            return;
        }
        let mut admitted = std::mem::take(&mut self.retry);
        admitted.extend(self.pacer.admit());
        if admitted.is_empty() {
            return;
        }
        // Machines that are away: their tasks wait for them if they are expected back.
        let (online, offline): (Vec<Queued>, Vec<Queued>) = admitted
            .into_iter()
            .partition(|q| self.ctx.registry.is_online(&q.agent_id));
        if !offline.is_empty() {
            self.park_or_lose(offline).await;
        }
        self.dispatch(online).await;
    }

    /// Claims admitted tasks of online machines and sends them.
    async fn dispatch(&mut self, online: Vec<Queued>) {
        if online.is_empty() {
            return;
        }
        let ids: Vec<String> = online.iter().map(|q| q.task_id.clone()).collect();
        if !self.run.spec.secret_names.is_empty() && self.secrets.is_none() {
            // Never run without the secrets it was given.
            self.end(&ids, TaskState::Cancelled, SECRETS_GONE).await;
            return;
        }
        let claimed: HashSet<String> = match self.ctx.store.claim_queued(&ids, now_ms()).await {
            Ok(c) => c.into_iter().collect(),
            Err(e) => {
                tracing::error!(run = %self.run.id, error = %e, "cannot dispatch queued tasks; trying again");
                self.retry.extend(online);
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                return;
            }
        };
        // Those not claimed ended meanwhile (e.g. cancelled); their ends come as messages.
        let sends: Vec<Queued> = online
            .into_iter()
            .filter(|q| claimed.contains(&q.task_id))
            .collect();
        for q in &sends {
            self.ctx.events.task_changed(&self.run.id, &q.task_id);
        }
        self.send_starts(sends).await;
    }

    /// Sends StartTask frames. An agent that went away since gets its task again when it
    /// reconnects (StartTask is idempotent), or the task is marked lost by the sweep.
    async fn send_starts(&mut self, tasks: Vec<Queued>) {
        let mut gone = Vec::new();
        for q in tasks {
            let Some(frame) = start_frame(
                &q.task_id,
                &self.run.command,
                &self.run.spec,
                self.secrets.as_ref(),
                &self.ctx.supervise,
            ) else {
                gone.push(q.task_id);
                continue;
            };
            self.ctx.active.sent(&self.run.id, &q.task_id, &q.agent_id);
            if !self.ctx.registry.send(&q.agent_id, frame).await {
                tracing::info!(task = %q.task_id, agent = %q.agent_id, "agent unreachable at dispatch");
            }
        }
        if !gone.is_empty() {
            self.end(&gone, TaskState::Cancelled, SECRETS_GONE).await;
        }
    }

    /// Nothing more starts; what waits is cancelled here, what runs is cancelled on its
    /// agent (or here, when its agent is away).
    async fn cancel(&mut self) {
        let waiting: Vec<String> = self.pacer.cancel().into_iter().map(|q| q.task_id).collect();
        self.retry.clear();
        // Parked tasks are still queued in the store: cancelled below as unstarted.
        self.unpark_all();
        if !waiting.is_empty() {
            self.end(
                &waiting,
                TaskState::Cancelled,
                "cancelled before it started",
            )
            .await;
        }
        let tasks = match self.ctx.store.tasks_of_run(&self.run.id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(run = %self.run.id, error = %e, "cannot read the run's tasks to cancel them");
                return;
            }
        };
        let (mut unstarted, mut away) = (Vec::new(), Vec::new());
        for t in tasks.into_iter().filter(|t| t.state.is_open()) {
            if t.state == TaskState::Queued {
                // Admitted but not claimed yet (a retry after a store error).
                unstarted.push(t.id);
            } else if !self
                .ctx
                .registry
                .send(&t.agent_id, cancel_frame(&t.id))
                .await
            {
                away.push(t.id);
            }
        }
        if !unstarted.is_empty() {
            self.end(
                &unstarted,
                TaskState::Cancelled,
                "cancelled before it started",
            )
            .await;
        }
        if !away.is_empty() {
            self.end(
                &away,
                TaskState::Cancelled,
                "cancelled while its agent was away",
            )
            .await;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
