//! Jobs and workflows on the server: definitions applied and versioned by name
//! (`FlowService::apply`), runs of them created with their parameters checked (secret ones
//! sealed before the store sees them) and driven by the engine (`engine`), one attempt of a
//! step at a time each (`exec`). A step on machines is an ordinary run: live output, delivery,
//! cancellation and rate control are the runs' own.

mod calls;
mod engine;
pub mod exec;
mod result;

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_api::{Definition, FlowRun, FlowRunsQuery, FlowStep, StartFlow};
use herd_core::{DefKind, RunState, StepState};
use herd_store::{AuditEntry, DefinitionRow, FlowRunRow, FlowStepRow, Store, StoreError, now_ms};
use herd_workflow::{Job, Lookup, Param, Workflow, expr, params};
use serde_json::{Value, json};

pub use calls::Calls;
pub use engine::Engine;
pub use exec::ServerActions;

use crate::error::{Result, ServerError};
use crate::fleet::Actor;
use crate::runs::{MATCHES_NAMED, unique_prefix};
use result::StepResult;

pub struct FlowService {
    engine: Arc<Engine>,
}

pub use herd_workflow::valid_name;

fn check_name(kind: DefKind, name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ServerError::BadRequest(format!(
            "{kind} name {:?} is not valid: use letters, digits, '_', '.' and '-' (at most 128)",
            herd_core::escape_controls(name)
        )))
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Store(StoreError::Corrupt {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// What a definition may refer to: every stored job and workflow, read once per apply.
struct Known {
    jobs: BTreeMap<String, BTreeMap<String, Param>>,
    workflows: BTreeMap<String, BTreeMap<String, Param>>,
}

impl Lookup for Known {
    fn job(&self, name: &str) -> Option<BTreeMap<String, Param>> {
        self.jobs.get(name).cloned()
    }
    fn workflow(&self, name: &str) -> Option<BTreeMap<String, Param>> {
        self.workflows.get(name).cloned()
    }
    fn job_names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }
    fn workflow_names(&self) -> Vec<String> {
        self.workflows.keys().cloned().collect()
    }
}

pub(crate) fn workflow_of(kind: DefKind, body: &str) -> std::result::Result<Workflow, String> {
    match kind {
        DefKind::Workflow => serde_json::from_str::<Workflow>(body).map_err(|e| e.to_string()),
        DefKind::Job => serde_json::from_str::<Job>(body)
            .map(|j| j.as_workflow())
            .map_err(|e| e.to_string()),
    }
}

impl FlowService {
    pub fn new(engine: Arc<Engine>) -> FlowService {
        FlowService { engine }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.engine.store
    }

    async fn known(&self) -> Result<Known> {
        let mut k = Known {
            jobs: BTreeMap::new(),
            workflows: BTreeMap::new(),
        };
        for d in self.store().definitions(DefKind::Job).await? {
            if let Ok(j) = serde_json::from_str::<Job>(&d.body) {
                k.jobs.insert(d.name, j.params);
            }
        }
        for d in self.store().definitions(DefKind::Workflow).await? {
            if let Ok(w) = serde_json::from_str::<Workflow>(&d.body) {
                k.workflows.insert(d.name, w.params);
            }
        }
        Ok(k)
    }

    /// Checks a definition and stores it as its name's next version (unless it is the same
    /// as the latest).
    pub async fn apply(&self, actor: &Actor, kind: DefKind, source: &str) -> Result<Definition> {
        let known = self.known().await?;
        let (name, body) = match kind {
            DefKind::Workflow => {
                let wf =
                    herd_workflow::workflow(source, &known).map_err(ServerError::BadRequest)?;
                (wf.name.clone(), serde_json::to_string(&wf))
            }
            DefKind::Job => {
                let job = herd_workflow::job(source, &known).map_err(ServerError::BadRequest)?;
                (job.name.clone(), serde_json::to_string(&job))
            }
        };
        let body = body.map_err(|e| ServerError::Internal(e.to_string()))?;
        let latest = self.store().definition(kind, &name).await?;
        if let Some(l) = &latest
            && l.body == body
            && l.source == source
        {
            return answer_definition(l.clone(), false);
        }
        let row = DefinitionRow {
            kind,
            name: name.clone(),
            version: latest.map(|l| l.version + 1).unwrap_or(1),
            body,
            source: source.to_string(),
            created_at: now_ms(),
            created_by: actor.name.clone(),
        };
        let audit = AuditEntry::new(
            &actor.name,
            format!("{kind}.apply"),
            format!("{kind}:{name}"),
            json!({"version": row.version}),
        );
        match self.store().put_definition(&row, &audit).await {
            Err(StoreError::Conflict(_)) => Err(ServerError::Conflict(format!(
                "{kind} {name:?} changed while this was applied — apply it again"
            ))),
            other => other.map_err(ServerError::from),
        }?;
        answer_definition(row, true)
    }

    pub async fn list(&self, kind: DefKind) -> Result<Vec<Definition>> {
        self.store()
            .definitions(kind)
            .await?
            .into_iter()
            .map(|d| answer_definition(d, false))
            .collect()
    }

    pub async fn get(&self, kind: DefKind, name: &str) -> Result<Definition> {
        check_name(kind, name)?;
        let d = self
            .store()
            .definition(kind, name)
            .await?
            .ok_or_else(|| not_found(kind, name))?;
        answer_definition(d, false)
    }

    pub async fn delete(&self, actor: &Actor, kind: DefKind, name: &str) -> Result<Definition> {
        let d = self.get(kind, name).await?;
        let audit = AuditEntry::new(
            &actor.name,
            format!("{kind}.rm"),
            format!("{kind}:{name}"),
            json!({"version": d.version}),
        );
        if !self.store().delete_definition(kind, name, &audit).await? {
            return Err(not_found(kind, name));
        }
        Ok(d)
    }

    /// Starts a run of a job or workflow.
    pub async fn start(
        &self,
        actor: &Actor,
        kind: DefKind,
        name: &str,
        req: StartFlow,
    ) -> Result<FlowRun> {
        check_name(kind, name)?;
        let id = herd_core::new_id();
        let gate = crate::policy::Gate::new(actor, req.approve);
        let row = create(
            &self.engine,
            &actor.name,
            kind,
            name,
            &req.params,
            req.targets,
            id,
            None,
            None,
            Some(&gate),
        )
        .await?
        .ok_or_else(|| ServerError::Internal("a run without a fire was not created".into()))?;
        Ok(answer_run(row, None))
    }

    /// A run (by id or a unique prefix) with its steps.
    pub async fn run(&self, id: &str) -> Result<FlowRun> {
        let row = self.find(id).await?;
        let steps = self.store().flow_steps(&row.id).await?;
        let summary = if crate::ask::is_ask_run(&row) {
            self.store().ask_run(&row.id).await?.and_then(|a| a.summary)
        } else {
            None
        };
        let attempts = self.store().flow_step_attempts(&row.id).await?;
        let mut answer = answer_run(row, Some(steps));
        answer.summary = summary;
        attach_attempts(&mut answer, attempts);
        Ok(answer)
    }

    async fn find(&self, id: &str) -> Result<FlowRunRow> {
        if let Some(r) = self.store().flow_run(id).await? {
            return Ok(r);
        }
        let found = self
            .store()
            .flow_run_ids_with_prefix(id, MATCHES_NAMED + 1)
            .await?;
        let full = unique_prefix("workflow run", id, found, "herd workflows runs")?;
        self.store().flow_run(&full).await?.ok_or_else(|| {
            ServerError::NotFound(format!(
                "workflow run {id} not found — see `herd workflows runs`"
            ))
        })
    }

    pub async fn runs(&self, q: FlowRunsQuery) -> Result<Vec<FlowRun>> {
        let filter = crate::http::list_filter(
            herd_api::ListQuery {
                limit: q.limit,
                since: q.since,
                machine: None,
                who: q.who,
            },
            q.state.map(|s| s.as_str().to_string()),
        );
        let filter = herd_store::ListFilter {
            name: q.name,
            ..filter
        };
        Ok(self
            .store()
            .flow_runs(&filter)
            .await?
            .into_iter()
            .map(|r| answer_run(r, None))
            .collect())
    }

    /// Cancels a run: its steps under way are cancelled, the ones not started never start,
    /// its `always` steps still run.
    pub async fn cancel(&self, actor: &Actor, id: &str) -> Result<FlowRun> {
        let row = self.find(id).await?;
        request_cancel(&self.engine, &actor.name, &row.id).await?;
        self.run(&row.id).await
    }

    /// Rebuilds the drivers of unfinished runs (after the runs' own drivers).
    pub async fn recover(&self) -> Result<()> {
        for run in self.store().unfinished_flow_runs().await? {
            let wf: Workflow = serde_json::from_str(&run.definition)
                .map_err(|e| corrupt("workflow run definition", e))?;
            let rows = self.store().flow_steps(&run.id).await?;
            let sealed: BTreeMap<String, String> = serde_json::from_str(&run.sealed)
                .map_err(|e| corrupt("workflow run secrets", e))?;
            let mut secrets = BTreeMap::new();
            for (k, v) in sealed {
                secrets.insert(
                    k.clone(),
                    self.engine
                        .vars
                        .open_value(&format!("flow:{}", run.id), &k, &v)?,
                );
            }
            let vars = self.engine.vars.for_flow(run.kind, &run.name).await?;
            self.engine.launch(run, wf, rows, secrets, vars);
        }
        Ok(())
    }
}

fn not_found(kind: DefKind, name: &str) -> ServerError {
    ServerError::NotFound(format!("no {kind} {name:?} — `herd {kind}s ls` lists them"))
}

/// Creates a run of `kind` `name` with id `id` and starts its driver. With `fire` (a
/// schedule's), the fire is recorded with the run in one transaction; `None` answers that it
/// had been recorded already, and nothing was made.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create(
    engine: &Arc<Engine>,
    actor: &str,
    kind: DefKind,
    name: &str,
    given: &BTreeMap<String, Value>,
    targets: Vec<String>,
    id: String,
    parent: Option<String>,
    fire: Option<&crate::schedules::Firing>,
    gate: Option<&crate::policy::Gate>,
) -> Result<Option<FlowRunRow>> {
    let store = &engine.store;
    let def = store
        .definition(kind, name)
        .await?
        .ok_or_else(|| not_found(kind, name))?;
    let wf = workflow_of(kind, &def.body).map_err(|e| corrupt("definition", e))?;
    create_from(
        engine,
        actor,
        kind,
        name,
        def.version,
        wf,
        given,
        targets,
        id,
        parent,
        fire,
        gate,
    )
    .await
}

/// [`create`] for a workflow given whole (not a stored definition: a plan of `herd ask`,
/// version 0).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_from(
    engine: &Arc<Engine>,
    actor: &str,
    kind: DefKind,
    name: &str,
    version: i64,
    mut wf: Workflow,
    given: &BTreeMap<String, Value>,
    targets: Vec<String>,
    id: String,
    parent: Option<String>,
    fire: Option<&crate::schedules::Firing>,
    gate: Option<&crate::policy::Gate>,
) -> Result<Option<FlowRunRow>> {
    let store = &engine.store;
    copy_jobs(store, &mut wf).await?;
    let resolved = params::resolve(&wf.params, given).map_err(ServerError::BadRequest)?;
    let policy = match gate {
        Some(g) => Some(check_policy(engine, g, &wf, &targets, 0).await?),
        None => None,
    };
    let mut sealed = BTreeMap::new();
    for (k, v) in &resolved.secrets {
        sealed.insert(
            k.clone(),
            engine.vars.seal_value(&format!("flow:{id}"), k, v)?,
        );
    }
    let row = FlowRunRow {
        id: id.clone(),
        kind,
        name: name.to_string(),
        version,
        definition: serde_json::to_string(&wf).map_err(|e| ServerError::Internal(e.to_string()))?,
        params: serde_json::to_string(&resolved.values).unwrap_or_else(|_| "{}".into()),
        sealed: serde_json::to_string(&sealed).unwrap_or_else(|_| "{}".into()),
        targets: targets.clone(),
        state: RunState::Running,
        created_by: actor.to_string(),
        created_at: now_ms(),
        finished_at: None,
        cancel_requested: false,
        parent: parent.clone(),
    };
    let rows: Vec<FlowStepRow> = wf
        .steps
        .iter()
        .chain(&wf.on_failure)
        .chain(&wf.always)
        .map(|s| FlowStepRow {
            flow_run_id: id.clone(),
            step_id: s.id.clone(),
            state: StepState::Pending,
            attempt: 0,
            run_id: None,
            outputs: None,
            output: None,
            detail: None,
            started_at: None,
            finished_at: None,
            not_before: None,
        })
        .collect();
    let audit = AuditEntry::new(
        actor,
        format!("{kind}.run"),
        format!("{kind}:{name}"),
        json!({
            "run": id,
            "version": version,
            "params": resolved.values,
            "secret_params": resolved.secrets.keys().collect::<Vec<_>>(),
            "targets": targets,
            "parent": parent,
            "policy": policy,
        }),
    );
    match fire {
        None => store.create_flow_run(&row, &rows, &audit).await?,
        Some(f) => {
            let fired = f.rows(&row.id, "workflow");
            let start = herd_store::FireStart::FlowRun {
                run: &row,
                steps: &rows,
                audit: &audit,
            };
            if !store.fire(&f.fire(&fired, start)).await? {
                return Ok(None);
            }
        }
    }
    let vars = engine.vars.for_flow(kind, name).await?;
    engine.launch(row.clone(), wf, rows, resolved.secrets, vars);
    Ok(Some(row))
}

/// A `uses` step runs the job as it is now, for the whole run: copied into the step.
pub(crate) async fn copy_jobs(store: &Arc<dyn Store>, wf: &mut Workflow) -> Result<()> {
    for step in wf
        .steps
        .iter_mut()
        .chain(wf.on_failure.iter_mut())
        .chain(wf.always.iter_mut())
    {
        if let Some(job) = step.action.uses.clone() {
            let d = store.definition(DefKind::Job, &job).await?.ok_or_else(|| {
                ServerError::Conflict(format!(
                    "step {} uses job {job:?}, which does not exist — apply it (`herd jobs apply`) or change the step",
                    step.id
                ))
            })?;
            let j: Job = serde_json::from_str(&d.body).map_err(|e| corrupt("job definition", e))?;
            step.job = Some(Box::new(j));
        }
    }
    Ok(())
}

/// The command policy and the caller's scope on every step of `wf` that runs on machines
/// (a `uses` step's job, a child workflow's steps), on the machines its targets pick now: a
/// step the policy denies, or one needing an approval not given, refuses the whole run
/// before anything of it exists. A workflow expression in a command reads as a value known
/// only at run time (`crate::policy::without_expressions`); a step whose targets hold one is
/// checked on every machine, and refused to a scoped key. Answers each step's check, for the
/// run's audit entry.
pub(crate) fn check_policy<'a>(
    engine: &'a Arc<Engine>,
    gate: &'a crate::policy::Gate,
    wf: &'a Workflow,
    run_targets: &'a [String],
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Value>>> + Send + 'a>> {
    Box::pin(async move {
        let policy = engine.runs.policy();
        let mut checks = Vec::new();
        for step in wf.steps.iter().chain(&wf.on_failure).chain(&wf.always) {
            let (action, targets) = match &step.job {
                Some(job) if step.action.uses.is_some() => (
                    &job.action,
                    step.exec
                        .targets
                        .clone()
                        .or_else(|| job.exec.targets.clone()),
                ),
                _ => (&step.action, step.exec.targets.clone()),
            };
            let what = format!("step {} of {}", step.id, wf.name);
            if let Some(child) = &action.workflow {
                if depth >= 8 {
                    return Err(ServerError::BadRequest(format!(
                        "{what}: workflows nest more than 8 deep"
                    )));
                }
                let Some(def) = engine.store.definition(DefKind::Workflow, child).await? else {
                    continue;
                };
                let mut cwf = workflow_of(DefKind::Workflow, &def.body)
                    .map_err(|e| corrupt("definition", e))?;
                copy_jobs(&engine.store, &mut cwf).await?;
                checks.extend(check_policy(engine, gate, &cwf, run_targets, depth + 1).await?);
                continue;
            }
            let (command, script) = match (&action.run, &action.script) {
                (Some(run), _) => (crate::policy::without_expressions(run), None),
                (None, Some(body)) => {
                    let body = crate::policy::without_expressions(body);
                    let body = match &action.lang {
                        Some(lang) if !body.starts_with("#!") => {
                            format!("#!/usr/bin/env {lang}\n{body}")
                        }
                        _ => body,
                    };
                    (String::new(), Some(body))
                }
                _ => continue,
            };
            let selectors: Vec<String> = match targets {
                Some(t) if t.iter().any(|t| t.contains("${{")) => {
                    if gate.actor.scope.is_some() {
                        return Err(ServerError::Forbidden(format!(
                            "{what} picks its machines only when it runs (an expression in its targets), which a scoped API key cannot do — name the machines"
                        )));
                    }
                    vec!["*".into()]
                }
                Some(t) => t,
                None if !run_targets.is_empty() => run_targets.to_vec(),
                None if !wf.targets.is_empty() => wf.targets.clone(),
                None => engine.local_agent.iter().cloned().collect(),
            };
            let machines = policy.machines(&selectors)?;
            let checked = policy
                .gate(gate, &what, &command, script.as_deref(), &machines)
                .await?;
            checks.push(json!({"step": step.id, "workflow": wf.name, "policy": checked}));
        }
        Ok(checks)
    })
}

/// Starts a workflow run as a step of another (its id chosen and recorded by the parent).
pub(crate) async fn start_child(
    engine: &Arc<Engine>,
    actor: &str,
    name: &str,
    params: &BTreeMap<String, Value>,
    id: &str,
    parent: &str,
) -> Result<()> {
    let parent_targets = match parent.split_once('/') {
        Some((p, _)) => engine
            .store
            .flow_run(p)
            .await?
            .map(|r| r.targets)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    create(
        engine,
        actor,
        DefKind::Workflow,
        name,
        params,
        parent_targets,
        id.to_string(),
        Some(parent.to_string()),
        None,
        None,
    )
    .await
    .map(|_| ())
}

/// How a child workflow run ended, and its outputs (its `outputs:` over its steps).
pub(crate) async fn child_outcome(
    engine: &Arc<Engine>,
    id: &str,
) -> Result<(StepState, BTreeMap<String, Value>)> {
    let run = engine
        .store
        .flow_run(id)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("workflow run {id} is gone")))?;
    let state = match run.state {
        RunState::Succeeded => StepState::Succeeded,
        RunState::Cancelled => StepState::Cancelled,
        _ => StepState::Failed,
    };
    let wf: Workflow =
        serde_json::from_str(&run.definition).map_err(|e| corrupt("workflow run definition", e))?;
    if wf.outputs.is_empty() {
        return Ok((state, BTreeMap::new()));
    }
    let rows = engine.store.flow_steps(id).await?;
    let steps: serde_json::Map<String, Value> = rows
        .iter()
        .map(|r| {
            (
                r.step_id.clone(),
                StepResult::from_column(r.outputs.as_deref()).view(r.state.as_str(), r.attempt),
            )
        })
        .collect();
    let ctx = expr::Context::new(
        &json!({"steps": steps, "params": serde_json::from_str::<Value>(&run.params).unwrap_or(Value::Null)}),
    );
    let mut outputs = BTreeMap::new();
    for (k, v) in &wf.outputs {
        match expr::render_value(&Value::String(v.clone()), &ctx) {
            Ok(val) => {
                outputs.insert(k.clone(), val);
            }
            Err(e) => {
                return Ok((
                    StepState::Failed,
                    BTreeMap::from([(
                        "error".to_string(),
                        Value::String(format!("outputs.{k}: {e}")),
                    )]),
                ));
            }
        }
    }
    Ok((state, outputs))
}

pub(crate) async fn request_cancel(
    engine: &Arc<Engine>,
    actor: &str,
    id: &str,
) -> Result<Option<FlowRunRow>> {
    let audit = AuditEntry::new(
        actor,
        "workflow.cancel",
        format!("workflow-run:{id}"),
        json!({}),
    );
    let row = engine.store.request_flow_cancel(id, &audit).await?;
    if row.as_ref().is_some_and(|r| !r.state.is_terminal()) {
        engine.cancel(id).await;
    }
    Ok(row)
}

fn answer_definition(d: DefinitionRow, changed: bool) -> Result<Definition> {
    let definition: Value = serde_json::from_str(&d.body).map_err(|e| corrupt("definition", e))?;
    let graph = match d.kind {
        DefKind::Workflow => serde_json::from_str::<Workflow>(&d.body)
            .map(|w| herd_workflow::draw(&w))
            .unwrap_or_default(),
        DefKind::Job => String::new(),
    };
    Ok(Definition {
        kind: d.kind,
        description: definition
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        name: d.name,
        version: d.version,
        changed,
        created_at: d.created_at,
        created_by: d.created_by,
        definition,
        source: d.source,
        graph,
    })
}

/// Puts each attempt under its step: what it ran is a workflow run for `workflow` steps, a run
/// otherwise.
fn attach_attempts(run: &mut FlowRun, attempts: Vec<herd_store::StepAttemptRow>) {
    let mut by_step: BTreeMap<String, Vec<herd_store::StepAttemptRow>> = BTreeMap::new();
    for a in attempts {
        by_step.entry(a.step_id.clone()).or_default().push(a);
    }
    for step in &mut run.steps {
        let child = step.kind == "workflow";
        step.attempts = by_step
            .remove(&step.id)
            .unwrap_or_default()
            .into_iter()
            .map(|a| herd_api::StepAttempt {
                attempt: a.attempt,
                run_id: if child { None } else { a.run_id.clone() },
                workflow_run_id: if child { a.run_id } else { None },
                state: a.state,
                detail: a.detail,
                started_at: a.started_at,
                finished_at: a.finished_at,
            })
            .collect();
        step.attempts.sort_by_key(|a| a.attempt);
    }
}

pub(crate) fn answer_run(r: FlowRunRow, steps: Option<Vec<FlowStepRow>>) -> FlowRun {
    // The definition says what each step is; a listing (no steps) does not read it.
    let wf: Option<Workflow> = steps
        .as_ref()
        .and_then(|_| serde_json::from_str(&r.definition).ok());
    let secret_params = serde_json::from_str::<BTreeMap<String, String>>(&r.sealed)
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    let steps = steps
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let (kind, group, needs) = wf
                .as_ref()
                .and_then(|w| {
                    [
                        ("steps", &w.steps),
                        ("on_failure", &w.on_failure),
                        ("always", &w.always),
                    ]
                    .into_iter()
                    .find_map(|(g, list)| {
                        list.iter().find(|s| s.id == row.step_id).map(|s| {
                            (
                                s.action
                                    .kind()
                                    .map(|k| k.as_str())
                                    .unwrap_or("?")
                                    .to_string(),
                                g.to_string(),
                                s.needs.clone(),
                            )
                        })
                    })
                })
                .unwrap_or_else(|| ("?".into(), "steps".into(), Vec::new()));
            FlowStep {
                id: row.step_id,
                kind,
                group,
                needs,
                state: row.state,
                attempt: row.attempt,
                run_id: row.run_id,
                outputs: row
                    .outputs
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_else(|| json!({})),
                output: row.output,
                detail: row.detail,
                started_at: row.started_at,
                finished_at: row.finished_at,
                attempts: Vec::new(),
            }
        })
        .collect();
    FlowRun {
        id: r.id,
        kind: r.kind,
        name: r.name,
        version: r.version,
        state: r.state,
        params: serde_json::from_str(&r.params).unwrap_or_else(|_| json!({})),
        secret_params,
        targets: r.targets,
        created_by: r.created_by,
        created_at: r.created_at,
        finished_at: r.finished_at,
        cancel_requested: r.cancel_requested,
        parent: r.parent,
        steps,
        summary: None,
    }
}
