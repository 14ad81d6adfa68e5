//! One attempt of one step: what it runs, prepared from the step and its context (targets,
//! command or script, environment, the `HERD_INPUT` document; a call's rendered request), and
//! running it: a run on machines (found by its recorded id, or created with it), a call the
//! server makes, or a child workflow run.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_core::actions::{HttpCall, Notify};
use herd_core::{RunLimits, RunSpec, RunState, Script, StepState};
use herd_store::{AuditEntry, FlowRunRow, VarRow, now_ms};
use herd_workflow::{ActionKind, Exec, Step, Workflow, expr, params};
use serde_json::{Value, json};

use super::engine::Engine;
use super::result::MachineResult;
use crate::runs::NewRunRequest;

/// What a call to another system answered.
pub struct ActionAnswer {
    pub ok: bool,
    pub outputs: BTreeMap<String, String>,
    /// What an operator reads: status, headers, body.
    pub output: String,
    pub error: Option<String>,
}

/// The calls the server makes for `http` and `notify` steps.
#[async_trait::async_trait]
pub trait ServerActions: Send + Sync {
    async fn http(&self, call: &HttpCall) -> ActionAnswer;
    async fn notify(&self, note: &Notify) -> ActionAnswer;
}

/// An attempt ready to run.
#[derive(Clone)]
pub(crate) enum Prepared {
    Machines {
        req: Box<NewRunRequest>,
        /// Secret environment from the server's variables: name → variable.
        secret_vars: BTreeMap<String, String>,
    },
    Http(HttpCall),
    Notify(Notify),
    /// A call that reads secrets: rendered when it is made, once they are opened.
    SecretCall {
        http: bool,
        value: Value,
        ctx: Value,
        secret_vars: BTreeMap<String, String>,
    },
    Workflow {
        name: String,
        params: BTreeMap<String, Value>,
    },
    /// A LangFlow flow run from a machine (a run of `herd helper langflow`).
    Langflow(Box<crate::langflow::FlowCall>),
}

impl Prepared {
    /// Whether the attempt creates something whose id its row records first.
    pub fn needs_id(&self) -> bool {
        matches!(
            self,
            Prepared::Machines { .. } | Prepared::Workflow { .. } | Prepared::Langflow(_)
        )
    }
}

pub(crate) struct Attempt {
    pub flow_id: String,
    pub actor: String,
    pub step: usize,
    pub step_id: String,
    pub attempt: i64,
    pub run_id: Option<String>,
    pub not_before: Option<i64>,
    /// A retry's machines (those that did not succeed before).
    pub targets: Option<Vec<String>>,
    pub prepared: Prepared,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub state: StepState,
    pub exit_code: Option<i32>,
    pub machines: BTreeMap<String, MachineResult>,
    pub outputs: BTreeMap<String, Value>,
    pub condition: Option<bool>,
    pub events: Vec<Value>,
    pub vars: BTreeMap<String, String>,
    pub output: Option<String>,
    pub detail: Option<String>,
}

impl Default for Outcome {
    fn default() -> Outcome {
        Outcome {
            state: StepState::Failed,
            exit_code: None,
            machines: BTreeMap::new(),
            outputs: BTreeMap::new(),
            condition: None,
            events: Vec::new(),
            vars: BTreeMap::new(),
            output: None,
            detail: None,
        }
    }
}

impl Outcome {
    fn failed(detail: String) -> Outcome {
        Outcome {
            state: StepState::Failed,
            detail: Some(detail),
            ..Outcome::default()
        }
    }
}

/// Prepares step `step` from its context `ctx` (which becomes its `HERD_INPUT`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare(
    engine: &Engine,
    run: &FlowRunRow,
    wf: &Workflow,
    step: &Step,
    ctx: Value,
    secrets: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
) -> Result<Prepared, String> {
    let at = |why: String| format!("step {}: {why}", step.id);
    // A `uses` step runs its job's action with the job's parameters from `with`.
    let (action, exec, ctx, secrets) = match (&step.action.uses, &step.job) {
        (Some(name), None) => {
            return Err(at(format!(
                "job {name:?} was not found when the run was created"
            )));
        }
        (Some(_), Some(job)) => {
            let c = expr::Context::new(&ctx);
            let with = expr::render_value(
                &Value::Object(step.action.with.clone().into_iter().collect()),
                &c,
            )
            .map_err(|e| at(format!("with: {e}")))?;
            let given: BTreeMap<String, Value> = match with {
                Value::Object(m) => m.into_iter().collect(),
                _ => BTreeMap::new(),
            };
            let resolved = params::resolve(&job.params, &given)
                .map_err(|e| at(format!("job {}: {e}", job.name)))?;
            let mut view: serde_json::Map<String, Value> =
                resolved.values.clone().into_iter().collect();
            for k in resolved.secrets.keys() {
                view.insert(k.clone(), Value::String("***".into()));
            }
            let job_ctx = json!({
                "params": view,
                "steps": {},
                "vars": vars,
                "workflow": ctx.get("workflow").cloned().unwrap_or(Value::Null),
            });
            (
                job.action.clone(),
                merge_exec(&job.exec, &step.exec),
                job_ctx,
                resolved.secrets,
            )
        }
        _ => (step.action.clone(), step.exec.clone(), ctx, secrets.clone()),
    };
    let c = expr::Context::new(&ctx);
    let kind = action
        .kind()
        .ok_or_else(|| at("it does not say what to do".into()))?;
    match kind {
        ActionKind::Command | ActionKind::Script => {
            let targets = match &exec.targets {
                Some(t) => t
                    .iter()
                    .map(|s| expr::render_str(s, &c))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(format!("targets: {e}")))?,
                None if !run.targets.is_empty() => run.targets.clone(),
                None if !wf.targets.is_empty() => wf.targets.clone(),
                None => match &engine.local_agent {
                    Some(name) => vec![name.clone()],
                    None => {
                        return Err(at(
                            "no machines: give the step targets, or run the workflow with -t SELECTOR (this server has no local agent)".into(),
                        ));
                    }
                },
            };
            let mut env = BTreeMap::new();
            for (k, v) in &exec.env {
                env.insert(
                    k.clone(),
                    expr::render_str(v, &c).map_err(|e| at(format!("env.{k}: {e}")))?,
                );
            }
            let limit = |v: &Option<String>| v.as_deref().and_then(|s| s.parse().ok());
            let (command, script) = match kind {
                ActionKind::Command => (
                    expr::render_str(action.run.as_deref().unwrap_or_default(), &c)
                        .map_err(|e| at(format!("run: {e}")))?,
                    None,
                ),
                _ => {
                    let body = expr::render_str(action.script.as_deref().unwrap_or_default(), &c)
                        .map_err(|e| at(format!("script: {e}")))?;
                    let body = match &action.lang {
                        Some(lang) if !body.starts_with("#!") => {
                            format!("#!/usr/bin/env {lang}\n{body}")
                        }
                        _ => body,
                    };
                    (
                        format!(
                            "{} script: step {} of {}",
                            action.lang.as_deref().unwrap_or("#!"),
                            step.id,
                            wf.name
                        ),
                        Some(Script {
                            name: step.id.clone(),
                            body,
                            args: Vec::new(),
                        }),
                    )
                }
            };
            let spec = RunSpec {
                timeout_ms: exec
                    .timeout
                    .as_deref()
                    .and_then(|t| herd_core::parse_duration(t).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                env,
                limits: RunLimits {
                    concurrency: limit(&exec.concurrency),
                    max_errors: limit(&exec.max_errors),
                    ..RunLimits::default()
                },
                script,
                input: Some(ctx),
                ..RunSpec::default()
            };
            Ok(Prepared::Machines {
                req: Box::new(NewRunRequest {
                    id: None,
                    command,
                    targets,
                    all: false,
                    start_on_attach: false,
                    secret_env: secrets,
                    spec,
                    gate: None,
                }),
                secret_vars: exec.secrets.clone(),
            })
        }
        ActionKind::Http | ActionKind::Notify if !exec.secrets.is_empty() => {
            Ok(Prepared::SecretCall {
                http: kind == ActionKind::Http,
                value: action
                    .http
                    .clone()
                    .or_else(|| action.notify.clone())
                    .unwrap_or(Value::Null),
                ctx,
                secret_vars: exec.secrets.clone(),
            })
        }
        ActionKind::Http => {
            let v = expr::render_value(action.http.as_ref().unwrap_or(&Value::Null), &c)
                .map_err(|e| at(format!("http: {e}")))?;
            let call: HttpCall = serde_json::from_value(v).map_err(|e| at(format!("http: {e}")))?;
            call.check().map_err(|e| at(format!("http: {e}")))?;
            Ok(Prepared::Http(call))
        }
        ActionKind::Notify => {
            let v = expr::render_value(action.notify.as_ref().unwrap_or(&Value::Null), &c)
                .map_err(|e| at(format!("notify: {e}")))?;
            let note: Notify = serde_json::from_value(v).map_err(|e| at(format!("notify: {e}")))?;
            note.check().map_err(|e| at(format!("notify: {e}")))?;
            Ok(Prepared::Notify(note))
        }
        ActionKind::Workflow => {
            let with = expr::render_value(
                &Value::Object(action.with.clone().into_iter().collect()),
                &c,
            )
            .map_err(|e| at(format!("with: {e}")))?;
            Ok(Prepared::Workflow {
                name: action.workflow.clone().unwrap_or_default(),
                params: match with {
                    Value::Object(m) => m.into_iter().collect(),
                    _ => BTreeMap::new(),
                },
            })
        }
        ActionKind::Langflow => {
            let v = expr::render_value(action.langflow.as_ref().unwrap_or(&Value::Null), &c)
                .map_err(|e| at(format!("langflow: {e}")))?;
            let step_call: herd_workflow::LangflowStep =
                serde_json::from_value(v).map_err(|e| at(format!("langflow: {e}")))?;
            // Targets as a command's, except that none given means the server's choice.
            let targets = match &exec.targets {
                Some(t) => t
                    .iter()
                    .map(|s| expr::render_str(s, &c))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(format!("targets: {e}")))?,
                None if !run.targets.is_empty() => run.targets.clone(),
                None => wf.targets.clone(),
            };
            let mut tweaks = Vec::new();
            for (k, v) in &step_call.tweaks {
                let Some((component, param)) = k.rsplit_once('.') else {
                    return Err(at(format!(
                        "langflow.tweaks.{k}: name a component's parameter as COMPONENT.PARAM"
                    )));
                };
                tweaks.push((component.to_string(), param.to_string(), v.clone()));
            }
            Ok(Prepared::Langflow(Box::new(crate::langflow::FlowCall {
                name: step_call.flow,
                source: step_call.source,
                input: step_call.input,
                tweaks,
                session: step_call.session,
                targets,
                timeout: exec.timeout.clone(),
                fields: step_call.outputs,
            })))
        }
        ActionKind::Uses => Err(at("a job cannot use another job".into())),
    }
}

/// A step's settings over its job's.
fn merge_exec(job: &Exec, step: &Exec) -> Exec {
    let mut env = job.env.clone();
    env.extend(step.env.clone());
    let mut secrets = job.secrets.clone();
    secrets.extend(step.secrets.clone());
    Exec {
        targets: step.targets.clone().or_else(|| job.targets.clone()),
        timeout: step.timeout.clone().or_else(|| job.timeout.clone()),
        retries: step.retries.clone().or_else(|| job.retries.clone()),
        concurrency: step.concurrency.clone().or_else(|| job.concurrency.clone()),
        max_errors: step.max_errors.clone().or_else(|| job.max_errors.clone()),
        env,
        secrets,
    }
}

/// Runs an attempt to its end.
pub(crate) async fn run_attempt(engine: &std::sync::Arc<Engine>, a: &Attempt) -> Outcome {
    if let Some(at) = a.not_before {
        let wait = at - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
    match &a.prepared {
        Prepared::Machines { req, secret_vars } => machines(engine, a, req, secret_vars).await,
        Prepared::Http(call) => match &engine.actions {
            Some(actions) => answer(actions.http(call).await),
            None => Outcome::failed("this server makes no HTTP calls".into()),
        },
        Prepared::Notify(note) => match &engine.actions {
            Some(actions) => answer(actions.notify(note).await),
            None => Outcome::failed("this server sends no notifications".into()),
        },
        Prepared::Workflow { name, params } => child(engine, a, name, params).await,
        Prepared::Langflow(call) => {
            let (req, reservation) = match engine.langflow.prepare(call).await {
                Ok(p) => p,
                Err(e) => return Outcome::failed(e.to_string()),
            };
            let out = machines(engine, a, &req, &BTreeMap::new()).await;
            if let Some(id) = &a.run_id {
                crate::langflow::report(&*engine.store, id, reservation).await;
            }
            out
        }
        Prepared::SecretCall {
            http,
            value,
            ctx,
            secret_vars,
        } => secret_call(engine, *http, value, ctx, secret_vars).await,
    }
}

/// A call whose expressions read secrets: opened, rendered and made in memory; what it
/// answered is kept with every secret's value masked.
async fn secret_call(
    engine: &Engine,
    http: bool,
    value: &Value,
    ctx: &Value,
    secret_vars: &BTreeMap<String, String>,
) -> Outcome {
    let Some(actions) = &engine.actions else {
        return Outcome::failed("this server makes no calls to other systems".into());
    };
    let mut secrets = serde_json::Map::new();
    for (name, var) in secret_vars {
        match engine.vars.reveal(var).await {
            Ok(v) => {
                secrets.insert(name.clone(), Value::String(v));
            }
            Err(e) => return Outcome::failed(format!("secret {name}: {e}")),
        }
    }
    let values: Vec<String> = secrets
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|v| v.len() >= 3)
        .collect();
    let mut ctx = ctx.clone();
    if let Value::Object(m) = &mut ctx {
        m.insert("secrets".into(), Value::Object(secrets));
    }
    let what = if http { "http" } else { "notify" };
    // A rendering error may quote a secret: masked like the answer.
    let rendered = match expr::render_value(value, &expr::Context::new(&ctx)) {
        Ok(v) => v,
        Err(e) => return Outcome::failed(mask(&format!("{what}: {e}"), &values)),
    };
    let answer = if http {
        match serde_json::from_value::<HttpCall>(rendered) {
            Ok(call) => match call.check() {
                Ok(()) => actions.http(&call).await,
                Err(e) => return Outcome::failed(mask(&format!("http: {e}"), &values)),
            },
            Err(e) => return Outcome::failed(mask(&format!("http: {e}"), &values)),
        }
    } else {
        match serde_json::from_value::<Notify>(rendered) {
            Ok(note) => match note.check() {
                Ok(()) => actions.notify(&note).await,
                Err(e) => return Outcome::failed(mask(&format!("notify: {e}"), &values)),
            },
            Err(e) => return Outcome::failed(mask(&format!("notify: {e}"), &values)),
        }
    };
    answer_masked(answer, &values)
}

fn mask(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

fn answer_masked(a: ActionAnswer, secrets: &[String]) -> Outcome {
    answer(ActionAnswer {
        ok: a.ok,
        outputs: a
            .outputs
            .into_iter()
            .map(|(k, v)| (k, mask(&v, secrets)))
            .collect(),
        output: mask(&a.output, secrets),
        error: a.error.map(|e| mask(&e, secrets)),
    })
}

fn answer(a: ActionAnswer) -> Outcome {
    Outcome {
        state: if a.ok {
            StepState::Succeeded
        } else {
            StepState::Failed
        },
        outputs: a
            .outputs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
        output: Some(a.output),
        detail: a.error,
        ..Outcome::default()
    }
}

async fn machines(
    engine: &std::sync::Arc<Engine>,
    a: &Attempt,
    req: &NewRunRequest,
    secret_vars: &BTreeMap<String, String>,
) -> Outcome {
    let Some(id) = a.run_id.clone() else {
        return Outcome::failed("no run id was recorded for the attempt".into());
    };
    // Subscribed before the run can finish (or exist).
    let mut wait = engine.events.wait_finish(&id);
    match engine.store.run(&id).await {
        Ok(Some(run)) => {
            if !run.state.is_terminal() {
                wait.finished().await;
            }
        }
        Ok(None) => {
            let mut req = req.clone();
            req.id = Some(id.clone());
            if let Some(t) = &a.targets {
                req.targets = t.clone();
            }
            for (env, var) in secret_vars {
                match engine.vars.reveal(var).await {
                    Ok(v) => {
                        req.secret_env.insert(env.clone(), v);
                    }
                    Err(e) => return Outcome::failed(format!("secret {env}: {e}")),
                }
            }
            // The command as rendered, checked again as whoever started the workflow run (a
            // key's role and scope; a schedule or the server: admin): what it approved at the
            // start stands, what the policy denies — forbidden, say, once a parameter is in
            // — never runs.
            match engine.runs.policy().acting_for(&a.actor, &a.actor).await {
                Ok(by) => {
                    req.gate = Some(crate::policy::Gate {
                        actor: by,
                        approve: true,
                        commands: true,
                    });
                }
                Err(e) => return Outcome::failed(e.to_string()),
            }
            if let Err(e) = engine.runs.create(&a.actor, req, false).await {
                return Outcome::failed(e.to_string());
            }
            wait.finished().await;
        }
        Err(e) => return Outcome::failed(format!("cannot read run {id}: {e}")),
    }
    drop(wait);
    let (run, tasks) = match (
        engine.store.run(&id).await,
        engine.store.tasks_of_run(&id).await,
    ) {
        (Ok(Some(r)), Ok(t)) => (r, t),
        (Err(e), _) | (_, Err(e)) => return Outcome::failed(format!("cannot read run {id}: {e}")),
        (Ok(None), _) => return Outcome::failed(format!("run {id} is gone")),
    };
    let mut out = Outcome {
        state: match run.state {
            RunState::Succeeded => StepState::Succeeded,
            RunState::Cancelled => StepState::Cancelled,
            _ => StepState::Failed,
        },
        ..Outcome::default()
    };
    let mut failed = Vec::new();
    for t in tasks {
        let parsed = herd_core::outputs::parse(t.outputs.as_deref().unwrap_or_default());
        for ev in &parsed.events {
            out.events
                .push(json!({"machine": t.agent_name, "name": ev.name, "data": ev.data}));
        }
        out.vars.extend(parsed.vars.clone());
        if t.state != herd_core::TaskState::Succeeded {
            if out.exit_code.is_none() {
                out.exit_code = t.exit_code.map(|c| c as i32);
            }
            failed.push(match (t.exit_code, &t.detail) {
                (Some(c), _) => format!("{} exited {c}", t.agent_name),
                (None, Some(d)) => format!("{} {}: {d}", t.agent_name, t.state),
                (None, None) => format!("{} {}", t.agent_name, t.state),
            });
        }
        out.machines.insert(
            t.agent_name.clone(),
            MachineResult {
                state: t.state.as_str().to_string(),
                exit_code: t.exit_code,
                outputs: parsed.values,
                condition: parsed.condition,
            },
        );
    }
    if !failed.is_empty() {
        out.detail = Some(format!(
            "run {}: {}",
            herd_core::short(&id),
            failed.join(", ")
        ));
    }
    out
}

async fn child(
    engine: &std::sync::Arc<Engine>,
    a: &Attempt,
    name: &str,
    params: &BTreeMap<String, Value>,
) -> Outcome {
    let Some(id) = a.run_id.clone() else {
        return Outcome::failed("no run id was recorded for the attempt".into());
    };
    match engine.store.flow_run(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let parent = format!("{}/{}", a.flow_id, a.step_id);
            if let Err(e) = super::start_child(engine, &a.actor, name, params, &id, &parent).await {
                return Outcome::failed(e.to_string());
            }
        }
        Err(e) => return Outcome::failed(format!("cannot read workflow run {id}: {e}")),
    }
    engine.wait_flow(&id).await;
    match super::child_outcome(engine, &id).await {
        Ok((state, outputs)) => Outcome {
            state,
            outputs,
            detail: (state != StepState::Succeeded)
                .then(|| format!("workflow run {} {}", herd_core::short(&id), state)),
            ..Outcome::default()
        },
        Err(e) => Outcome::failed(e.to_string()),
    }
}

/// Sets a variable of a workflow's scope (`herd helper var set`), audited as the workflow run.
pub(crate) async fn set_var(
    engine: &Engine,
    run: &FlowRunRow,
    scope: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    if !crate::vars::valid_key(key) || value.len() > herd_api::SetVar::MAX_VALUE {
        return Err(format!(
            "{key:?} is not a variable name, or its value is too long"
        ));
    }
    let actor = format!("{}:{}/{}", run.kind, run.name, herd_core::short(&run.id));
    let row = VarRow {
        scope: scope.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        secret: false,
        updated_at: now_ms(),
        updated_by: actor.clone(),
    };
    let audit = AuditEntry::new(
        &actor,
        "var.set",
        format!("var:{scope}/{key}"),
        json!({"secret": false}),
    );
    engine
        .store
        .set_var(&row, &audit)
        .await
        .map_err(|e| e.to_string())
}
