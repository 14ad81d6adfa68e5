//! The engine: one driver task per unfinished workflow run. A driver owns its run's state
//! (step rows, results, what each step still waits for), decides which steps start, skip or
//! retry, and writes every transition to the store before acting on it: a step's row records
//! the id of the run (or child workflow run) of its attempt before that run is created, so a
//! driver rebuilt after a restart finds the run and waits for it, or creates it once.
//!
//! Steps run in parallel as soon as what they need has ended; each attempt is a task of its
//! own (`exec`) that reports back on the driver's channel. Transitions that arrive together
//! are written in one store transaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_core::{RunState, StepState};
use herd_store::{FlowRunRow, FlowStepRow, StepAttemptRow, Store, now_ms};
use herd_workflow::{Graph, Step, Workflow, expr};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::exec::{self, Outcome, Prepared};
use super::result::StepResult;
use crate::ask::recover::{AskDriver, Judging, Next, Recovery};
use crate::events::Events;
use crate::lock;
use crate::runs::RunService;
use crate::vars::VarService;

pub(crate) enum Msg {
    Done {
        step: usize,
        attempt: i64,
        outcome: Outcome,
    },
    /// A plan's step was judged (`ask::recover`) after attempt `attempt` ended.
    Judged {
        step: usize,
        attempt: i64,
        next: Next,
    },
    Cancel,
}

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runs: Arc<RunService>,
    pub(crate) vars: Arc<VarService>,
    pub(crate) events: Arc<Events>,
    pub(crate) actions: Option<Arc<dyn exec::ServerActions>>,
    pub(crate) local_agent: Option<String>,
    pub(crate) langflow: Arc<crate::langflow::LangflowService>,
    tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    drivers: Mutex<HashMap<String, mpsc::Sender<Msg>>>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// Judges the steps of `herd ask`'s plans (set once at assembly, before recovery).
    recovery: std::sync::OnceLock<Arc<Recovery>>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        runs: Arc<RunService>,
        vars: Arc<VarService>,
        events: Arc<Events>,
        actions: Option<Arc<dyn exec::ServerActions>>,
        local_agent: Option<String>,
        langflow: Arc<crate::langflow::LangflowService>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Engine {
        Engine {
            store,
            runs,
            vars,
            events,
            actions,
            local_agent,
            langflow,
            tracker,
            shutdown,
            drivers: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            recovery: std::sync::OnceLock::new(),
        }
    }

    /// Sets what judges the steps of plans' runs (once).
    pub(crate) fn set_recovery(&self, recovery: Arc<Recovery>) {
        let _ = self.recovery.set(recovery);
    }

    /// Starts the driver of a run (new, or found unfinished at start).
    pub(crate) fn launch(
        self: &Arc<Self>,
        run: FlowRunRow,
        wf: Workflow,
        rows: Vec<FlowStepRow>,
        secrets: BTreeMap<String, String>,
        vars: BTreeMap<String, String>,
    ) {
        let steps: Vec<Step> = wf
            .steps
            .iter()
            .chain(&wf.on_failure)
            .chain(&wf.always)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(steps.len() + 8);
        lock(&self.drivers).insert(run.id.clone(), tx.clone());
        let driver = Driver::new(self.clone(), run, wf, steps, rows, secrets, vars, tx, rx);
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = driver.run() => {}
            }
        });
    }

    /// Asks a run's driver to cancel (the store already records the request).
    pub(crate) async fn cancel(&self, id: &str) {
        let tx = lock(&self.drivers).get(id).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(Msg::Cancel).await;
        }
    }

    /// Resolves once workflow run `id` has finished (as the store says).
    pub(crate) async fn wait_flow(&self, id: &str) {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters)
            .entry(id.to_string())
            .or_default()
            .push(tx);
        match self.store.flow_run(id).await {
            Ok(Some(r)) if r.state.is_terminal() => {}
            _ => {
                let _ = rx.await;
            }
        }
    }

    fn finished(&self, id: &str) {
        lock(&self.drivers).remove(id);
        for w in lock(&self.waiters).remove(id).unwrap_or_default() {
            let _ = w.send(());
        }
    }

    pub(crate) fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = f => {}
            }
        });
    }
}

struct Driver {
    engine: Arc<Engine>,
    run: FlowRunRow,
    wf: Workflow,
    /// `steps`, then `on_failure`, then `always`.
    steps: Vec<Step>,
    /// Where `on_failure` and `always` start in `steps`.
    fail_at: usize,
    always_at: usize,
    graph: Graph,
    rows: Vec<FlowStepRow>,
    results: Vec<StepResult>,
    /// Per main step: how many of the steps it needs have not ended.
    waiting: Vec<usize>,
    /// Main steps not ended.
    main_left: usize,
    running: usize,
    /// The next `on_failure`/`always` step, once the main steps have ended.
    tail: Option<usize>,
    failed: bool,
    cancelled: bool,
    params_view: Value,
    secrets: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
    dirty: Vec<bool>,
    /// Attempt rows to write with the next step rows (started, or ended).
    attempts: Vec<StepAttemptRow>,
    /// Per step: whether its current attempt's row is stored as under way.
    open: Vec<bool>,
    spawn: Vec<(usize, Prepared, Option<Vec<String>>)>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// A plan's run of `herd ask`: its steps are judged after each attempt.
    ask: Option<AskDriver>,
}

fn ok_for_dependants(state: StepState, step: &Step) -> bool {
    state == StepState::Succeeded || (state == StepState::Failed && step.continue_on_error)
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        engine: Arc<Engine>,
        run: FlowRunRow,
        wf: Workflow,
        steps: Vec<Step>,
        rows: Vec<FlowStepRow>,
        secrets: BTreeMap<String, String>,
        vars: BTreeMap<String, String>,
        tx: mpsc::Sender<Msg>,
        rx: mpsc::Receiver<Msg>,
    ) -> Driver {
        let fail_at = wf.steps.len();
        let always_at = fail_at + wf.on_failure.len();
        let graph = Graph::new(&wf.steps);
        let results: Vec<StepResult> = rows
            .iter()
            .map(|r| StepResult::from_column(r.outputs.as_deref()))
            .collect();
        let mut params_view: serde_json::Map<String, Value> =
            serde_json::from_str(&run.params).unwrap_or_default();
        for k in secrets.keys() {
            params_view.insert(k.clone(), Value::String("***".into()));
        }
        let n = steps.len();
        Driver {
            dirty: vec![false; n],
            attempts: Vec::new(),
            open: vec![false; n],
            waiting: vec![0; fail_at],
            main_left: fail_at,
            running: 0,
            tail: None,
            failed: false,
            cancelled: run.cancel_requested,
            params_view: Value::Object(params_view),
            engine,
            run,
            wf,
            steps,
            fail_at,
            always_at,
            graph,
            rows,
            results,
            secrets,
            vars,
            spawn: Vec::new(),
            tx,
            rx,
            ask: None,
        }
    }

    async fn run(mut self) {
        if let Some(r) = self.engine.recovery.get() {
            self.ask = r.load(&self.run).await;
        }
        let mut ready = VecDeque::new();
        self.resume(&mut ready);
        loop {
            self.advance(&mut ready);
            let done = self.tail.is_some_and(|t| t >= self.steps.len()) && self.running == 0;
            let finish = done.then(|| self.final_state());
            if !self.persist(finish).await {
                return;
            }
            for (i, prepared, targets) in std::mem::take(&mut self.spawn) {
                self.start_attempt(i, prepared, targets);
            }
            if done {
                if self.ask.is_some()
                    && let (Some(r), Some(state)) = (self.engine.recovery.get(), finish)
                {
                    let steps: Vec<_> = (0..self.fail_at)
                        .map(|i| {
                            (
                                self.steps[i].id.clone(),
                                self.rows[i].state,
                                self.rows[i].detail.clone(),
                            )
                        })
                        .collect();
                    r.summarize(&self.run.id, state, &steps).await;
                }
                self.engine.finished(&self.run.id);
                return;
            }
            let Some(msg) = self.rx.recv().await else {
                return;
            };
            self.handle(msg, &mut ready).await;
            while let Ok(msg) = self.rx.try_recv() {
                self.handle(msg, &mut ready).await;
            }
        }
    }

    fn final_state(&self) -> RunState {
        if self.cancelled {
            RunState::Cancelled
        } else if self.failed {
            RunState::Failed
        } else {
            RunState::Succeeded
        }
    }

    /// Rebuilds what waits for what from the rows, and picks up attempts under way.
    fn resume(&mut self, ready: &mut VecDeque<usize>) {
        for i in 0..self.fail_at {
            self.waiting[i] = self.graph.needs[i]
                .iter()
                .filter(|&&j| !self.rows[j].state.is_terminal())
                .count();
            if self.rows[i].state.is_terminal() {
                self.main_left -= 1;
                if self.rows[i].state == StepState::Failed && !self.steps[i].continue_on_error {
                    self.failed = true;
                }
            }
        }
        for i in 0..self.steps.len() {
            match self.rows[i].state {
                StepState::Pending if i < self.fail_at && self.waiting[i] == 0 => {
                    ready.push_back(i)
                }
                StepState::Running => {
                    // Its attempt was under way: prepare it again (same inputs, same run id)
                    // and let the attempt find or create its run.
                    self.running += 1;
                    self.open[i] = true;
                    match self.prepare(i) {
                        Ok(p) => {
                            let targets = self.retry_targets(i);
                            self.spawn.push((i, p, targets));
                        }
                        Err(why) => {
                            self.running -= 1;
                            self.end(i, StepState::Failed, Some(why), ready);
                        }
                    }
                    if i >= self.fail_at {
                        self.tail = Some(i);
                    }
                }
                _ => {}
            }
        }
    }

    /// Starts or skips what is ready; moves on to `on_failure`/`always` at the end.
    fn advance(&mut self, ready: &mut VecDeque<usize>) {
        while let Some(i) = ready.pop_front() {
            if self.rows[i].state != StepState::Pending {
                continue;
            }
            if self.cancelled {
                self.end(
                    i,
                    StepState::Cancelled,
                    Some("the workflow run was cancelled".into()),
                    ready,
                );
                continue;
            }
            if let Some(j) = self.graph.needs[i]
                .iter()
                .copied()
                .find(|&j| !ok_for_dependants(self.rows[j].state, &self.steps[j]))
            {
                let why = format!("needs {} ({})", self.steps[j].id, self.rows[j].state);
                self.end(i, StepState::Skipped, Some(why), ready);
                continue;
            }
            self.start(i, ready);
        }
        if self.main_left > 0 || self.running > 0 {
            return;
        }
        loop {
            let t = self.tail.unwrap_or(self.fail_at);
            if t >= self.steps.len() {
                self.tail = Some(t);
                return;
            }
            match self.rows[t].state {
                StepState::Running => {
                    self.tail = Some(t);
                    return;
                }
                s if s.is_terminal() => {
                    self.tail = Some(t + 1);
                    continue;
                }
                _ => {}
            }
            self.tail = Some(t);
            if t < self.always_at && !self.failed {
                self.end(t, StepState::Skipped, Some("no step failed".into()), ready);
                continue;
            }
            self.start(t, ready);
            if self.rows[t].state == StepState::Running {
                return;
            }
        }
    }

    /// Evaluates the step's condition and starts its first attempt.
    fn start(&mut self, i: usize, ready: &mut VecDeque<usize>) {
        if let Some(cond) = self.steps[i].condition.clone() {
            let ctx = expr::Context::new(&self.context(i));
            match expr::eval_condition(&cond, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let why = format!("if {} was false", expr::condition_source(&cond));
                    return self.end(i, StepState::Skipped, Some(why), ready);
                }
                Err(why) => {
                    return self.end(i, StepState::Failed, Some(format!("if: {why}")), ready);
                }
            }
        }
        match self.prepare(i) {
            Err(why) => self.end(i, StepState::Failed, Some(why), ready),
            Ok(p) => {
                let row = &mut self.rows[i];
                row.state = StepState::Running;
                row.attempt += 1;
                row.run_id = p.needs_id().then(herd_core::new_id);
                row.started_at = Some(now_ms());
                row.not_before = None;
                self.dirty[i] = true;
                self.begin_attempt(i);
                self.running += 1;
                self.spawn.push((i, p, None));
            }
        }
    }

    fn prepare(&self, i: usize) -> Result<Prepared, String> {
        let ctx = self.context(i);
        let mut p = exec::prepare(
            &self.engine,
            &self.run,
            &self.wf,
            &self.steps[i],
            ctx,
            &self.secrets,
            &self.vars,
        )?;
        // A plan's step runs its current attempt's command (a retry's or an alternative's),
        // with stdin open when a person follows the run (a prompt can be answered).
        if let (Some(ask), Prepared::Machines { req, .. }) = (&self.ask, &mut p) {
            if let Some(c) = ask.commands.get(&self.steps[i].id) {
                req.command = c.clone();
            }
            req.spec.interactive = !ask.unattended;
        }
        Ok(p)
    }

    /// Hands an ended attempt of a plan's step to the judge; its answer comes back as
    /// `Msg::Judged`.
    fn judge(&self, step: usize, attempt: i64, outcome: &Outcome) {
        let (Some(ask), Some(recovery)) = (&self.ask, self.engine.recovery.get()) else {
            return;
        };
        let id = &self.steps[step].id;
        let plan_step = ask
            .steps
            .get(id)
            .cloned()
            .unwrap_or_else(|| herd_api::AskStep {
                id: id.clone(),
                command: self.steps[step].action.run.clone().unwrap_or_default(),
                ..herd_api::AskStep::default()
            });
        let j = Judging {
            run_id: self.run.id.clone(),
            command: ask
                .commands
                .get(id)
                .cloned()
                .unwrap_or_else(|| plan_step.command.clone()),
            step: plan_step,
            attempt,
            state: outcome.state,
            // An attempt's outcome names the exit code of a machine that failed; one that
            // succeeded everywhere exited 0.
            exit_code: outcome
                .exit_code
                .or((outcome.state == StepState::Succeeded).then_some(0)),
            detail: outcome.detail.clone(),
            task_run_id: self.rows[step].run_id.clone(),
            plan_id: ask.plan_id.clone(),
            unattended: ask.unattended,
        };
        let (recovery, tx) = (recovery.clone(), self.tx.clone());
        self.engine.spawn(async move {
            let next = recovery.judge(j).await;
            let _ = tx
                .send(Msg::Judged {
                    step,
                    attempt,
                    next,
                })
                .await;
        });
    }

    /// Machines a retry runs on: those whose part of the step did not succeed.
    fn retry_targets(&self, i: usize) -> Option<Vec<String>> {
        (self.rows[i].attempt > 1 && !self.results[i].machines.is_empty())
            .then(|| self.results[i].failed_machines())
    }

    fn start_attempt(&self, i: usize, prepared: Prepared, targets: Option<Vec<String>>) {
        let row = &self.rows[i];
        let attempt = exec::Attempt {
            flow_id: self.run.id.clone(),
            actor: self.run.created_by.clone(),
            step: i,
            step_id: self.steps[i].id.clone(),
            attempt: row.attempt,
            run_id: row.run_id.clone(),
            not_before: row.not_before,
            targets,
            prepared,
        };
        let engine = self.engine.clone();
        let tx = self.tx.clone();
        self.engine.spawn(async move {
            let outcome = exec::run_attempt(&engine, &attempt).await;
            let _ = tx
                .send(Msg::Done {
                    step: attempt.step,
                    attempt: attempt.attempt,
                    outcome,
                })
                .await;
        });
    }

    async fn handle(&mut self, msg: Msg, ready: &mut VecDeque<usize>) {
        match msg {
            Msg::Cancel => self.cancel(ready).await,
            Msg::Judged {
                step,
                attempt,
                next,
            } => {
                if self.rows[step].attempt != attempt || self.rows[step].state != StepState::Running
                {
                    return;
                }
                self.running -= 1;
                if self.cancelled {
                    return self.end(
                        step,
                        StepState::Cancelled,
                        Some("the workflow run was cancelled".into()),
                        ready,
                    );
                }
                match next {
                    Next::Succeeded(why) => self.end(step, StepState::Succeeded, Some(why), ready),
                    Next::Failed(why) => self.end(step, StepState::Failed, Some(why), ready),
                    Next::Attempt { number, command } => {
                        if let Some(ask) = &mut self.ask {
                            ask.commands.insert(self.steps[step].id.clone(), command);
                        }
                        let prepared = match self.prepare(step) {
                            Ok(p) => p,
                            Err(why) => {
                                return self.end(step, StepState::Failed, Some(why), ready);
                            }
                        };
                        let row = &mut self.rows[step];
                        // Attempts the policy denied never ran, but keep their numbers.
                        row.attempt = number.max(row.attempt + 1);
                        row.run_id = prepared.needs_id().then(herd_core::new_id);
                        row.not_before = None;
                        row.detail = Some(format!("attempt {attempt} failed; trying another way"));
                        self.dirty[step] = true;
                        self.begin_attempt(step);
                        self.running += 1;
                        // The machines that did not succeed, as a retry's.
                        let targets = self.retry_targets(step);
                        self.spawn.push((step, prepared, targets));
                    }
                }
            }
            Msg::Done {
                step,
                attempt,
                outcome,
            } => {
                if self.rows[step].attempt != attempt || self.rows[step].state != StepState::Running
                {
                    return;
                }
                self.running -= 1;
                self.end_attempt(step, outcome.state, outcome.detail.clone());
                self.record(step, &outcome).await;
                // A plan's step is judged before it ends (validation, retry, alternatives).
                if self.ask.is_some()
                    && !self.cancelled
                    && outcome.state != StepState::Cancelled
                    && step < self.fail_at
                {
                    self.running += 1;
                    self.judge(step, attempt, &outcome);
                    return;
                }
                let retries = self.steps[step].exec.retries.clone().or_else(|| {
                    self.steps[step]
                        .job
                        .as_ref()
                        .and_then(|j| j.exec.retries.clone())
                });
                match outcome.state {
                    StepState::Succeeded => self.end(step, StepState::Succeeded, None, ready),
                    StepState::Failed
                        if !self.cancelled
                            && retries.as_ref().is_some_and(|r| {
                                (attempt as u64) <= u64::from(r.count())
                                    && r.retries_exit(outcome.exit_code)
                            }) =>
                    {
                        let backoff = retries.as_ref().map(|r| r.backoff_ms()).unwrap_or(1000);
                        let wait = backoff
                            .saturating_mul(1 << (attempt - 1).clamp(0, 16))
                            .min(300_000);
                        let prepared = match self.prepare(step) {
                            Ok(p) => p,
                            Err(why) => {
                                return self.end(step, StepState::Failed, Some(why), ready);
                            }
                        };
                        let row = &mut self.rows[step];
                        row.attempt += 1;
                        row.run_id = prepared.needs_id().then(herd_core::new_id);
                        row.not_before = Some(now_ms() + wait as i64);
                        row.detail = outcome
                            .detail
                            .clone()
                            .map(|d| format!("attempt {attempt} failed: {d}; retrying"));
                        self.dirty[step] = true;
                        self.begin_attempt(step);
                        self.running += 1;
                        let targets = self.retry_targets(step);
                        self.spawn.push((step, prepared, targets));
                    }
                    state => self.end(step, state, outcome.detail.clone(), ready),
                }
            }
        }
    }

    /// Keeps an attempt's results (a retry's machines replace theirs).
    async fn record(&mut self, i: usize, outcome: &Outcome) {
        let r = &mut self.results[i];
        if outcome.machines.is_empty() {
            r.outputs = outcome.outputs.clone();
            r.condition = outcome.condition;
        } else {
            for (name, m) in &outcome.machines {
                r.machines.insert(name.clone(), m.clone());
            }
            r.merge_machines();
        }
        r.events.extend(outcome.events.iter().cloned());
        self.rows[i].outputs = Some(r.to_column());
        if outcome.output.is_some() {
            self.rows[i].output = outcome.output.clone();
        }
        self.dirty[i] = true;
        // `herd helper var set`: variables of the workflow's scope.
        if !outcome.vars.is_empty() {
            let scope = format!("{}:{}", self.run.kind, self.run.name);
            for (k, v) in &outcome.vars {
                match exec::set_var(&self.engine, &self.run, &scope, k, v).await {
                    Ok(()) => {
                        self.vars.insert(k.clone(), v.clone());
                    }
                    Err(e) => {
                        tracing::warn!(flow = %self.run.id, key = %k, "cannot set a workflow variable: {e}")
                    }
                }
            }
        }
    }

    /// Records that step `i`'s current attempt (its row's number and run id) starts: written
    /// with the step's row, before what it runs exists. A retry starts when its backoff ends.
    fn begin_attempt(&mut self, i: usize) {
        let row = &self.rows[i];
        let now = now_ms();
        self.attempts.push(StepAttemptRow {
            flow_run_id: self.run.id.clone(),
            step_id: row.step_id.clone(),
            attempt: row.attempt,
            run_id: row.run_id.clone(),
            state: StepState::Running,
            detail: None,
            started_at: row.not_before.map_or(now, |t| t.max(now)),
            finished_at: None,
        });
        self.open[i] = true;
    }

    /// Records that step `i`'s current attempt ended (`state`, why), once.
    fn end_attempt(&mut self, i: usize, state: StepState, detail: Option<String>) {
        if !std::mem::take(&mut self.open[i]) {
            return;
        }
        let row = &self.rows[i];
        let now = now_ms();
        self.attempts.push(StepAttemptRow {
            flow_run_id: self.run.id.clone(),
            step_id: row.step_id.clone(),
            attempt: row.attempt,
            run_id: row.run_id.clone(),
            state,
            detail,
            // Used only if its start was never stored (a run from before attempts were).
            started_at: row.started_at.unwrap_or(now),
            finished_at: Some(now),
        });
    }

    /// Ends step `i`; its dependants that no longer wait become ready.
    fn end(
        &mut self,
        i: usize,
        state: StepState,
        detail: Option<String>,
        ready: &mut VecDeque<usize>,
    ) {
        // An attempt under way ends with its step (an attempt that reported ended already).
        self.end_attempt(i, state, detail.clone());
        let row = &mut self.rows[i];
        row.state = state;
        row.detail = detail;
        row.finished_at = Some(now_ms());
        row.not_before = None;
        self.dirty[i] = true;
        if state == StepState::Failed && !self.steps[i].continue_on_error {
            self.failed = true;
        }
        if i < self.fail_at {
            self.main_left -= 1;
            for &d in &self.graph.dependants[i] {
                self.waiting[d] -= 1;
                if self.waiting[d] == 0 {
                    ready.push_back(d);
                }
            }
        }
    }

    async fn cancel(&mut self, ready: &mut VecDeque<usize>) {
        if self.cancelled {
            return;
        }
        self.cancelled = true;
        for i in 0..self.steps.len() {
            let row = &self.rows[i];
            if row.state == StepState::Running
                && let Some(id) = row.run_id.clone()
            {
                let engine = self.engine.clone();
                let actor = self.run.created_by.clone();
                let child = self.steps[i].action.workflow.is_some();
                self.engine.spawn(async move {
                    if child {
                        let _ = super::request_cancel(&engine, &actor, &id).await;
                    } else {
                        let _ = engine.runs.cancel_run(&actor, &id).await;
                    }
                });
            }
        }
        for i in 0..self.fail_at {
            if self.rows[i].state == StepState::Pending {
                ready.push_back(i);
            }
        }
    }

    /// The context of step `i`'s expressions and `HERD_INPUT`: parameters, the steps it
    /// may read (its ancestors; every main step for `on_failure`/`always`), variables.
    fn context(&self, i: usize) -> Value {
        let readable: Vec<usize> = if i < self.fail_at {
            self.graph.ancestors(i)
        } else {
            (0..self.fail_at).collect()
        };
        let steps: serde_json::Map<String, Value> = readable
            .into_iter()
            .map(|j| {
                (
                    self.steps[j].id.clone(),
                    self.results[j].view(self.rows[j].state.as_str(), self.rows[j].attempt),
                )
            })
            .collect();
        json!({
            "params": self.params_view,
            "steps": steps,
            "vars": self.vars,
            "workflow": {"name": self.run.name, "run": self.run.id, "version": self.run.version},
        })
    }

    /// Writes the changed rows (and the run's end); retried while the store fails, so no
    /// transition is acted on before it is stored. False: the server is shutting down.
    async fn persist(&mut self, finish: Option<RunState>) -> bool {
        let changed: Vec<FlowStepRow> = self
            .rows
            .iter()
            .zip(&self.dirty)
            .filter(|(_, d)| **d)
            .map(|(r, _)| r.clone())
            .collect();
        if changed.is_empty() && self.attempts.is_empty() && finish.is_none() {
            return true;
        }
        let finish = finish.map(|s| (s, now_ms()));
        let mut delay = Duration::from_millis(100);
        loop {
            match self
                .engine
                .store
                .update_flow(&self.run.id, &changed, &self.attempts, finish)
                .await
            {
                Ok(()) => {
                    self.dirty.iter_mut().for_each(|d| *d = false);
                    self.attempts.clear();
                    return true;
                }
                Err(e) => {
                    tracing::warn!(flow = %self.run.id, "cannot store the workflow run's progress (retrying): {e}");
                    tokio::select! {
                        _ = self.engine.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
