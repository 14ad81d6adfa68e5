//! The AI operator (`herd ask`, `/api/v1/ask`): a plain-language request and the targets'
//! facts go to the model (`herd-ai`), whose plan is parsed and checked (`herd_ai::Plan`), every
//! step's command classified by the command policy (`herd-policy`; the model's own labels are
//! never read), and shown. A reviewed plan comes back with the ids of the steps a person
//! approved; the server checks every step again (a denied step never runs, a step needing
//! approval runs only when approved) and runs the plan as a workflow run (`ask`, version 0),
//! each step a command with its `needs`. **Invariant:** nothing the model wrote runs unless
//! the policy allows it as it stands or a person approved it; a command holding a workflow
//! expression (`${{`) is refused, so a plan cannot read variables or secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use herd_ai::Llm;
use herd_ai::prompts::{MachineFacts, plan_prompt, plan_schema};
use herd_api::{AskPlan, AskRequest, AskRun, AskStep, FlowRun, PlannedStep, StepCheck};
use herd_core::DefKind;
use herd_store::Store;
use herd_workflow::{Action, Exec, Step, Workflow};
use serde_json::json;

pub(crate) mod recover;

pub(crate) use recover::is_ask_run;

use crate::error::{Result, ServerError};
use crate::fleet::{Actor, AgentIndex};
use crate::flows::Engine;

pub struct AskService {
    /// The model, or why there is none (one line).
    llm: std::result::Result<Arc<Llm>, String>,
    store: Arc<dyn Store>,
    index: Arc<AgentIndex>,
    engine: Arc<Engine>,
    recovery: Arc<recover::Recovery>,
}

fn distro_tools(os_name: &str) -> (&'static str, &'static str) {
    let n = os_name.to_ascii_lowercase();
    let pm = if n.contains("debian") || n.contains("ubuntu") || n.contains("mint") {
        "apt"
    } else if n.contains("fedora")
        || n.contains("red hat")
        || n.contains("rhel")
        || n.contains("centos")
        || n.contains("rocky")
        || n.contains("alma")
    {
        "dnf"
    } else if n.contains("alpine") {
        "apk"
    } else if n.contains("arch") {
        "pacman"
    } else if n.contains("suse") {
        "zypper"
    } else {
        "unknown"
    };
    let init = if n.contains("alpine") {
        "openrc"
    } else {
        "systemd"
    };
    (pm, init)
}

impl AskService {
    pub fn new(
        llm: std::result::Result<Arc<Llm>, String>,
        store: Arc<dyn Store>,
        index: Arc<AgentIndex>,
        engine: Arc<Engine>,
        recovery: Arc<recover::Recovery>,
    ) -> AskService {
        AskService {
            llm,
            store,
            index,
            engine,
            recovery,
        }
    }

    fn llm(&self) -> Result<&Llm> {
        match &self.llm {
            Ok(l) => Ok(l),
            Err(why) => Err(ServerError::Conflict(why.clone())),
        }
    }

    /// The model at `url` named `model` (else from the server's environment:
    /// `HERD_LLM_URL`, `HERD_LLM_MODEL`), its key from `HERD_LLM_API_KEY`; or why there is
    /// none.
    pub fn model(
        url: Option<String>,
        model: Option<String>,
    ) -> std::result::Result<Arc<Llm>, String> {
        let settings = herd_ai::LlmSettings::from_lookup(|k| match k {
            "HERD_LLM_URL" if url.is_some() => url.clone(),
            "HERD_LLM_MODEL" if model.is_some() => model.clone(),
            _ => std::env::var(k).ok(),
        });
        match settings.and_then(|s| s.into_config()) {
            Ok(Some(config)) => Llm::new(config)
                .map(Arc::new)
                .map_err(|e| format!("the model cannot be used: {e}")),
            Ok(None) => Err(format!(
                "no model is configured on the server — {}",
                herd_ai::not_configured_help()
            )),
            Err(e) => Err(format!("the server's model settings are wrong: {e}")),
        }
    }

    pub async fn plan(&self, actor: &Actor, req: AskRequest) -> Result<AskPlan> {
        let request = req.request.trim();
        if request.is_empty() {
            return Err(ServerError::BadRequest(
                "say what to do, e.g. herd ask \"install nginx\" -t role=web".into(),
            ));
        }
        let llm = self.llm()?;
        let (_, machines) = crate::runs::resolve::resolve(&self.index, &req.targets, req.all)?;
        let mut facts = Vec::with_capacity(machines.len().min(20));
        for (id, name) in machines.iter().take(20) {
            let mut f = MachineFacts {
                name: name.clone(),
                ..MachineFacts::default()
            };
            if let Some(a) = self.store.agent(id).await? {
                let (pm, init) = distro_tools(&a.facts.os_name);
                f.os = a.facts.os.clone();
                f.distro = format!("{} {}", a.facts.os_name, a.facts.os_version)
                    .trim()
                    .into();
                f.package_manager = pm.into();
                f.init = init.into();
                f.arch = a.facts.arch.clone();
            }
            facts.push(f);
        }
        let messages = plan_prompt(request, &facts);
        let plan_id = herd_core::new_id();
        let reply = match llm.chat(&messages, Some(&plan_schema())).await {
            Ok(r) => r,
            Err(e) => {
                self.recovery
                    .record_plan(&plan_id, &messages, Err(e.to_string()))
                    .await;
                return Err(ServerError::BadGateway(format!("the model: {e}")));
            }
        };
        self.recovery
            .record_plan(&plan_id, &messages, Ok(&reply))
            .await;
        let plan = herd_ai::parse_plan(&reply.content).map_err(|e| {
            ServerError::BadGateway(format!(
                "the model's plan does not check out: {e} — ask again, or rephrase the request"
            ))
        })?;
        let policy = self.engine.runs.policy();
        let mut steps = Vec::with_capacity(plan.steps.len());
        // A step's id becomes a workflow step's, which starts with a letter: a model's `1`
        // becomes `s1` (and so wherever a step names it).
        let ids = workflow_ids(plan.steps.iter().map(|s| s.id.as_str()));
        let id_of = |id: String| ids.get(&id).cloned().unwrap_or(id);
        for s in plan.steps {
            let step = AskStep {
                id: id_of(s.id),
                description: s.description,
                command: s.command,
                expected: s.expected,
                depends_on: s.depends_on.into_iter().map(id_of).collect(),
                targets: s.targets,
            };
            let on = step_machines(&machines, &step.targets);
            let (_, check) = policy.check(actor.role, &step.command, &on).await?;
            steps.push(PlannedStep { check, step });
        }
        Ok(AskPlan {
            request: request.to_string(),
            summary: plan.summary,
            steps,
            machines: machines.into_iter().map(|(_, n)| n).collect(),
            model: reply.model,
            tokens: reply.usage.total(),
            plan_id,
        })
    }

    /// Runs a reviewed plan as a workflow run.
    pub async fn run(&self, actor: &Actor, req: AskRun) -> Result<FlowRun> {
        if req.steps.is_empty() {
            return Err(ServerError::BadRequest("the plan has no steps".into()));
        }
        let approved: BTreeSet<&str> = req.approved.iter().map(String::as_str).collect();
        // The plan's machines: what the selectors pick now.
        let (_, plan_machines) = crate::runs::resolve::resolve(&self.index, &req.targets, req.all)?;
        let policy = self.engine.runs.policy();
        let mut checks = BTreeMap::new();
        for s in &req.steps {
            // Each step on its machines, under the stored policy for the caller's role, with
            // the caller's scope: denied → 403, needing an approval not given → 409.
            let gate = crate::policy::Gate::new(actor, approved.contains(s.id.as_str()));
            let on = step_machines(&plan_machines, &s.targets);
            let c = policy
                .gate(&gate, &format!("step {}", s.id), &s.command, None, &on)
                .await?
                .ok_or_else(|| ServerError::Internal("a step's command was not checked".into()))?;
            checks.insert(
                s.id.clone(),
                StepCheck {
                    class: c.class,
                    decision: c.decision,
                    reasons: c.reasons,
                },
            );
        }
        let actor = actor.name.as_str();
        let steps: Vec<Step> = req
            .steps
            .iter()
            .map(|s| Step {
                id: s.id.clone(),
                name: (!s.description.is_empty()).then(|| s.description.clone()),
                needs: s.depends_on.clone(),
                condition: None,
                continue_on_error: false,
                action: Action {
                    run: Some(s.command.clone()),
                    ..Action::default()
                },
                exec: Exec {
                    targets: (!s.targets.is_empty()).then(|| s.targets.clone()),
                    ..Exec::default()
                },
                job: None,
            })
            .collect();
        let wf = Workflow {
            name: "ask".into(),
            description: req.summary.clone(),
            params: BTreeMap::new(),
            targets: Vec::new(),
            steps,
            on_failure: Vec::new(),
            always: Vec::new(),
            outputs: BTreeMap::new(),
        };
        if let Some(e) = herd_workflow::check_workflow(&wf, &herd_workflow::NoLookup).first() {
            return Err(ServerError::BadRequest(format!(
                "the plan does not check out: {e}"
            )));
        }
        // The plan's machines, by name. A step may name some of them, never another machine.
        let targets: Vec<String> = plan_machines.into_iter().map(|(_, n)| n).collect();
        let known: BTreeSet<&str> = targets.iter().map(String::as_str).collect();
        for s in &req.steps {
            if let Some(t) = s.targets.iter().find(|t| !known.contains(t.as_str())) {
                return Err(ServerError::BadRequest(format!(
                    "step {} is for {t:?}, which is not one of the plan's machines ({}) — a step names some of them or none",
                    s.id,
                    targets.join(", ")
                )));
            }
        }
        let id = herd_core::new_id();
        tracing::info!(run = %id, actor, request = %req.request, "ask: running a reviewed plan");
        // The plan's record and first attempts, before the run exists: its driver judges the
        // steps of a run it finds recorded.
        let now = herd_store::now_ms();
        let attempts: Vec<herd_store::AskAttemptRow> = req
            .steps
            .iter()
            .map(|s| {
                let c = &checks[&s.id];
                herd_store::AskAttemptRow {
                    run_id: id.clone(),
                    step_id: s.id.clone(),
                    attempt: 1,
                    origin: "plan".into(),
                    command: s.command.clone(),
                    description: s.description.clone(),
                    check: serde_json::to_string(c).unwrap_or_default(),
                    approval: if c.decision == "allow" {
                        "allowed"
                    } else {
                        "approved"
                    }
                    .into(),
                    task_run_id: None,
                    validation: None,
                    created_at: now,
                }
            })
            .collect();
        let plan_id = req
            .plan_id
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(herd_core::new_id);
        self.store
            .create_ask_run(
                &herd_store::AskRunRow {
                    run_id: id.clone(),
                    plan_id,
                    request: req.request.clone(),
                    plan: serde_json::to_string(&req.steps).unwrap_or_else(|_| "[]".into()),
                    unattended: req.unattended,
                    summary: None,
                    created_by: actor.to_string(),
                    created_at: now,
                },
                &attempts,
            )
            .await?;
        let audit_note =
            json!({"request": req.request, "approved": req.approved, "checks": checks});
        let row = crate::flows::create_from(
            &self.engine,
            actor,
            DefKind::Workflow,
            "ask",
            0,
            wf,
            &BTreeMap::new(),
            targets,
            id,
            None,
            None,
            None,
        )
        .await?
        .ok_or_else(|| ServerError::Internal("a plan's run was not created".into()))?;
        self.store
            .append_audit(&herd_store::AuditEntry::new(
                actor,
                "ask.run",
                format!("workflow-run:{}", row.id),
                audit_note,
            ))
            .await?;
        Ok(crate::flows::answer_run(row, None))
    }

    /// A plan's run with its request, summary and every attempt of its steps.
    pub async fn view(
        &self,
        flows: &crate::flows::FlowService,
        id: &str,
    ) -> Result<herd_api::AskRunView> {
        let run = flows.run(id).await?;
        let Some(row) = self.store.ask_run(&run.id).await? else {
            return Err(ServerError::NotFound(format!(
                "workflow run {} is not a plan's run of herd ask",
                run.id
            )));
        };
        let attempts = self
            .store
            .ask_attempts(&run.id)
            .await?
            .into_iter()
            .map(|a| herd_api::AskAttempt {
                step: a.step_id,
                attempt: a.attempt,
                origin: a.origin,
                command: a.command,
                description: a.description,
                check: serde_json::from_str(&a.check).unwrap_or(StepCheck {
                    class: "dangerous".into(),
                    decision: "approve".into(),
                    reasons: vec!["the stored check could not be read".into()],
                }),
                approval: a.approval,
                run_id: a.task_run_id,
                validation: a.validation.and_then(|v| serde_json::from_str(&v).ok()),
            })
            .collect();
        Ok(herd_api::AskRunView {
            request: row.request,
            plan_id: row.plan_id,
            unattended: row.unattended,
            summary: row.summary,
            attempts,
            run,
        })
    }

    /// Every exchange with the model of a plan's run, oldest first.
    pub async fn log(
        &self,
        flows: &crate::flows::FlowService,
        id: &str,
    ) -> Result<Vec<herd_api::AskExchange>> {
        let view = self.view(flows, id).await?;
        Ok(self
            .store
            .ask_exchanges(&view.plan_id)
            .await?
            .into_iter()
            .map(|e| herd_api::AskExchange {
                kind: e.kind,
                step: e.step_id,
                at: e.at,
                model: e.model,
                tokens: e.tokens,
                request: serde_json::from_str(&e.request).unwrap_or(serde_json::Value::Null),
                answer: e.answer,
                error: e.error,
            })
            .collect())
    }

    /// A person's decision on an alternative awaiting approval (audited `ask.approve` or
    /// `ask.refuse`).
    pub async fn approve(
        &self,
        flows: &crate::flows::FlowService,
        actor: &str,
        id: &str,
        a: herd_api::AskApproval,
    ) -> Result<herd_api::AskRunView> {
        let view = self.view(flows, id).await?;
        let Some(attempt) = view
            .attempts
            .iter()
            .find(|x| x.step == a.step && x.attempt == a.attempt)
        else {
            return Err(ServerError::NotFound(format!(
                "step {} of run {} has no attempt {}",
                a.step, view.run.id, a.attempt
            )));
        };
        if a.approve && attempt.check.decision == "deny" {
            return Err(ServerError::Forbidden(format!(
                "attempt {} of step {} is denied by the command policy — it cannot be approved",
                a.attempt, a.step
            )));
        }
        let (approval, action) = if a.approve {
            ("approved", "ask.approve")
        } else {
            ("refused", "ask.refuse")
        };
        let entry = herd_store::AuditEntry::new(
            actor,
            action,
            format!("workflow-run:{}", view.run.id),
            json!({"step": a.step, "attempt": a.attempt, "command": attempt.command, "check": attempt.check}),
        );
        if !self
            .store
            .decide_ask_attempt(&view.run.id, &a.step, a.attempt, approval, &entry)
            .await?
        {
            return Err(ServerError::Conflict(format!(
                "attempt {} of step {} is not awaiting approval (it is {})",
                a.attempt, a.step, attempt.approval
            )));
        }
        self.view(flows, &view.run.id).await
    }
}

/// The command policy's role of an API key's role.
pub fn role(r: Option<herd_api::KeyRole>) -> herd_policy::Role {
    match r.unwrap_or(herd_api::KeyRole::Admin) {
        herd_api::KeyRole::Admin => herd_policy::Role::Admin,
        herd_api::KeyRole::Operator => herd_policy::Role::Operator,
        herd_api::KeyRole::Viewer => herd_policy::Role::Viewer,
    }
}

/// The machines of a step: those of the plan it names (by name), or all of the plan's.
fn step_machines(plan: &[(String, String)], targets: &[String]) -> Vec<(String, String)> {
    if targets.is_empty() {
        return plan.to_vec();
    }
    plan.iter()
        .filter(|(_, n)| targets.iter().any(|t| t == n))
        .cloned()
        .collect()
}

/// Each plan step id → the id its workflow step gets: itself when it starts with a letter,
/// else with an `s` before it (made unique).
fn workflow_ids<'a>(ids: impl Iterator<Item = &'a str> + Clone) -> BTreeMap<String, String> {
    let mut used: BTreeSet<String> = ids.clone().map(str::to_string).collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let new = if id.starts_with(|c: char| c.is_ascii_alphabetic()) {
            id.to_string()
        } else {
            let mut n = format!("s{id}");
            while used.contains(&n) {
                n.push('_');
            }
            used.insert(n.clone());
            n
        };
        out.insert(id.to_string(), new);
    }
    out
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn step_ids_that_do_not_start_with_a_letter_get_an_s() {
        let ids = super::workflow_ids(["1", "2", "s1", "install", "_x"].into_iter());
        assert_eq!(ids["1"], "s1_");
        assert_eq!(ids["2"], "s2");
        assert_eq!(ids["s1"], "s1");
        assert_eq!(ids["install"], "install");
        assert_eq!(ids["_x"], "s_x");
    }
}
