//! Validation and recovery of a plan's run: after each attempt of a step ends, it is judged —
//! by the model from its exit, the tail of its output and what the step expected (the output
//! fenced as untrusted data), or by heuristics when the model cannot be asked — and a step
//! judged failed is retried once when the judgement says a retry may help, then given up to
//! `MAX_ALTERNATIVES` other commands the model proposes. Each alternative is classified by
//! the command policy like any step: allowed ones run, denied ones are never run (and count),
//! one that needs approval waits for a person — or fails the step at once when nobody will
//! answer (`--yes`). Every attempt is stored (`ask_attempts`) before its run exists, and every
//! exchange with the model is stored redacted (`ask_exchanges`). When the run ends, its
//! summary is written.
//!
//! **Invariant:** the only commands that run are the plan's reviewed ones and alternatives
//! that passed the policy (or a person's approval); nothing the model writes in a validation
//! (`suggested_fix`, `reason`) is ever run; a judgement never waits on the driver.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herd_ai::Llm;
use herd_ai::prompts::{
    alternative_prompt, alternative_schema, redact_patterns, validation_prompt, validation_schema,
};
use herd_core::StepState;
use herd_outlog::{Chunk, Cursor, OutputLog};
use herd_store::{AskAttemptRow, AskExchangeRow, AuditEntry, Store, now_ms};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Alternatives asked of the model per failed step, at most (denied ones count).
pub const MAX_ALTERNATIVES: usize = 3;
/// Retries of the same command per step, at most (when the judgement says one may help).
pub const MAX_RETRIES: usize = 1;
/// How long an alternative waits for a person's approval.
pub const APPROVAL_WAIT: Duration = Duration::from_secs(600);
/// The most of a step's output kept for the judgement (head and tail).
const TAIL: usize = 8 * 1024;
const HEAD: usize = 1024;
/// The most of a model's answer kept in the exchange log (head and tail).
const KEPT_ANSWER: usize = 64 * 1024;

/// The model (or why there is none) and where attempts, exchanges and output are.
pub struct Recovery {
    llm: std::result::Result<Arc<Llm>, String>,
    store: Arc<dyn Store>,
    outlog: Arc<OutputLog>,
    shutdown: CancellationToken,
    /// The command policy every alternative is checked by.
    policy: Arc<crate::policy::PolicyGate>,
}

/// A plan's run as its workflow driver sees it.
pub(crate) struct AskDriver {
    pub plan_id: String,
    pub unattended: bool,
    /// The plan's steps by id (description, expected, targets).
    pub steps: HashMap<String, herd_api::AskStep>,
    /// The command of each step's current attempt, when it is not the plan's own.
    pub commands: HashMap<String, String>,
}

/// An attempt that ended, to be judged.
pub(crate) struct Judging {
    pub run_id: String,
    pub step: herd_api::AskStep,
    pub attempt: i64,
    pub command: String,
    pub state: StepState,
    pub exit_code: Option<i32>,
    pub detail: Option<String>,
    pub task_run_id: Option<String>,
    pub plan_id: String,
    pub unattended: bool,
}

/// What the step does next.
#[derive(Debug)]
pub(crate) enum Next {
    Succeeded(String),
    Failed(String),
    /// Attempt `number` with `command` (its attempt row is stored).
    Attempt {
        number: i64,
        command: String,
    },
}

/// The judgement of an attempt, as stored.
#[derive(Debug, Clone, serde::Serialize)]
struct Judgement {
    is_valid: bool,
    confidence: f64,
    reason: String,
    suggested_fix: Option<String>,
    should_retry: bool,
    /// `model` or `heuristics`.
    by: &'static str,
}

/// Output that says running the same command again may work.
const TRANSIENT: &[&str] = &[
    "could not get lock",
    "temporary failure",
    "timed out",
    "connection refused",
    "connection reset",
    "try again",
    "resource temporarily unavailable",
    "503 service unavailable",
    "is locked",
];

/// Output that says the same command will fail again (whatever a judgement says).
const PERMANENT: &[&str] = &[
    "command not found",
    "not found in",
    "no such file or directory",
    "permission denied",
    "unable to locate package",
    "invalid option",
    "unrecognized option",
    "syntax error",
];

fn permanent(tail: &str) -> bool {
    let lower = tail.to_ascii_lowercase();
    PERMANENT.iter().any(|p| lower.contains(p))
}

/// A model's "valid" for an attempt that did not succeed stands only when the process ran and
/// exited on its own (not stopped, killed, or a command not found: 126, 127) and the model is
/// sure of it (confidence ≥ 0.8): small models call a failure valid.
fn overrule(mut judgement: Judgement, j: &Judging) -> Judgement {
    let ran = matches!(j.exit_code, Some(c) if c != 126 && c != 127);
    if judgement.is_valid
        && judgement.by == "model"
        && j.state != StepState::Succeeded
        && (!ran || judgement.confidence < 0.8)
    {
        judgement.is_valid = false;
        judgement.reason = format!(
            "{} (not accepted: the step failed{})",
            judgement.reason,
            match j.exit_code {
                Some(c) => format!(" with exit code {c}"),
                None => String::new(),
            }
        );
    }
    judgement
}

/// The judgement when the model cannot be asked: the exit decides.
fn heuristics(state: StepState, exit: Option<i32>, tail: &str, why: &str) -> Judgement {
    let ok = state == StepState::Succeeded;
    let lower = tail.to_ascii_lowercase();
    let transient = !ok && TRANSIENT.iter().any(|t| lower.contains(t)) && !permanent(tail);
    let exit = match exit {
        Some(c) => format!("exit code {c}"),
        None => "no exit code".to_string(),
    };
    Judgement {
        is_valid: ok,
        confidence: 0.5,
        reason: format!("{exit} ({why})"),
        suggested_fix: None,
        should_retry: transient,
        by: "heuristics",
    }
}

pub(crate) fn is_ask_run(run: &herd_store::FlowRunRow) -> bool {
    run.kind == herd_core::DefKind::Workflow && run.name == "ask" && run.version == 0
}

impl Recovery {
    pub fn new(
        llm: std::result::Result<Arc<Llm>, String>,
        store: Arc<dyn Store>,
        outlog: Arc<OutputLog>,
        shutdown: CancellationToken,
        policy: Arc<crate::policy::PolicyGate>,
    ) -> Recovery {
        Recovery {
            llm,
            store,
            outlog,
            shutdown,
            policy,
        }
    }

    /// What the stored policy does with `command` as a next attempt of `j`'s step: for the
    /// role of the key that started the plan's run, on the step's machines (else the run's).
    /// A policy that cannot be read denies (fail closed).
    async fn check(&self, j: &Judging, command: &str) -> herd_api::StepCheck {
        let checked = async {
            let run = self.store.flow_run(&j.run_id).await?;
            let (by, run_targets) = run.map(|r| (r.created_by, r.targets)).unwrap_or_default();
            let actor = self.policy.acting_for(&by, &by).await?;
            let targets = if j.step.targets.is_empty() {
                run_targets
            } else {
                j.step.targets.clone()
            };
            let machines = self.policy.machines(&targets)?;
            self.policy.check(actor.role, command, &machines).await
        };
        match checked.await {
            Ok((_, c)) => c,
            Err(e) => herd_api::StepCheck {
                class: "forbidden".into(),
                decision: "deny".into(),
                reasons: vec![format!("the command policy could not be read: {e}")],
            },
        }
    }

    /// What a plan's run needs to be judged, `None` for any other workflow run (or a plan's
    /// run stored without its record).
    pub(crate) async fn load(&self, run: &herd_store::FlowRunRow) -> Option<AskDriver> {
        if !is_ask_run(run) {
            return None;
        }
        let row = match self.store.ask_run(&run.id).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(flow = %run.id, "cannot read the plan's run: {e}; its steps are not judged");
                return None;
            }
        };
        let steps: Vec<herd_api::AskStep> = serde_json::from_str(&row.plan).unwrap_or_default();
        let mut commands = HashMap::new();
        if let Ok(attempts) = self.store.ask_attempts(&run.id).await {
            // The latest attempt of each step says its current command.
            for a in attempts {
                if a.attempt > 1 {
                    commands.insert(a.step_id.clone(), a.command.clone());
                }
            }
        }
        Some(AskDriver {
            plan_id: row.plan_id,
            unattended: row.unattended,
            steps: steps.into_iter().map(|s| (s.id.clone(), s)).collect(),
            commands,
        })
    }

    /// Records one exchange with the model (its messages and answer redacted).
    async fn record(
        &self,
        plan_id: &str,
        kind: &str,
        step: Option<&str>,
        messages: &[herd_ai::Message],
        answer: std::result::Result<&herd_ai::Reply, String>,
    ) {
        let request = json!(
            messages
                .iter()
                .map(|m| json!({"role": m.role, "content": redact_patterns(&m.content)}))
                .collect::<Vec<_>>()
        );
        let (model, tokens, text, error) = match answer {
            // A long answer is kept by its head and tail (what was parsed is bounded anyway).
            Ok(r) => (
                r.model.clone(),
                r.usage.total() as i64,
                redact_patterns(&herd_ai::prompts::truncate(&r.content, KEPT_ANSWER)),
                None,
            ),
            Err(e) => (String::new(), 0, String::new(), Some(e)),
        };
        let row = AskExchangeRow {
            id: herd_core::new_id(),
            plan_id: plan_id.to_string(),
            kind: kind.to_string(),
            step_id: step.map(str::to_string),
            at: now_ms(),
            model,
            tokens,
            request: request.to_string(),
            answer: text,
            error,
        };
        if let Err(e) = self.store.add_ask_exchange(&row).await {
            tracing::warn!(plan = %plan_id, "cannot store an exchange with the model: {e}");
        }
    }

    /// Records the plan's exchange (`herd ask log`).
    pub async fn record_plan(
        &self,
        plan_id: &str,
        messages: &[herd_ai::Message],
        answer: std::result::Result<&herd_ai::Reply, String>,
    ) {
        self.record(plan_id, "plan", None, messages, answer).await
    }

    /// The tasks of an attempt's run: per machine, how it ended and its output's head and
    /// tail.
    async fn output(&self, run_id: &str) -> String {
        let tasks = match self.store.tasks_of_run(run_id).await {
            Ok(t) => t,
            Err(e) => return format!("(the output could not be read: {e})"),
        };
        let many = tasks.len() > 1;
        let mut text = String::new();
        for t in tasks.into_iter().take(20) {
            if many {
                let exit = t
                    .exit_code
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| t.state.to_string());
                text.push_str(&format!("--- {} ({exit}) ---\n", t.agent_name));
            }
            let (log, id, pos) = (self.outlog.clone(), t.id.clone(), t.output);
            let body = tokio::task::spawn_blocking(move || head_and_tail(&log, &id, pos))
                .await
                .unwrap_or_default();
            text.push_str(&body);
            if let Some(d) = &t.detail {
                text.push_str(&format!("\n[herd: {d}]\n"));
            }
        }
        text
    }

    /// Judges an ended attempt and says what the step does next.
    pub(crate) async fn judge(&self, j: Judging) -> Next {
        let tail = match &j.task_run_id {
            Some(id) => self.output(id).await,
            None => j.detail.clone().unwrap_or_default(),
        };
        let tail = redact_patterns(&tail);
        let plan_step = herd_ai::PlanStep {
            id: j.step.id.clone(),
            description: j.step.description.clone(),
            command: j.command.clone(),
            expected: j.step.expected.clone(),
            depends_on: j.step.depends_on.clone(),
            targets: j.step.targets.clone(),
        };
        let judgement = overrule(self.validate(&j, &plan_step, &tail).await, &j);
        // What this attempt was and how it went.
        let mut attempts = self.attempts(&j.run_id, &j.step.id).await;
        let found = attempts.iter().find(|a| a.attempt == j.attempt).cloned();
        let mut this = match found {
            Some(a) => a,
            None => {
                let check = self.check(&j, &j.command).await;
                self.new_attempt(&j, j.attempt, "plan", &j.command, "", check)
            }
        };
        this.task_run_id = j.task_run_id.clone();
        this.validation = serde_json::to_string(&judgement).ok();
        self.put(&this).await;
        if !attempts.iter().any(|a| a.attempt == j.attempt) {
            attempts.push(this);
        }
        if judgement.is_valid {
            let how = if judgement.by == "model" {
                format!("validated: {}", one_line(&judgement.reason))
            } else {
                judgement.reason.clone()
            };
            return Next::Succeeded(how);
        }
        let failure = format!(
            "{} — {}",
            one_line(&judgement.reason),
            j.detail
                .as_deref()
                .unwrap_or("the step did not do what it should")
        );
        let retries = attempts.iter().filter(|a| a.origin == "retry").count();
        if judgement.should_retry && retries < MAX_RETRIES && !permanent(&tail) {
            let check = self.check(&j, &j.command).await;
            if check.decision == "deny" {
                // The policy changed since the attempt ran: never again.
                return Next::Failed(format!(
                    "{failure}; a retry is denied by the command policy ({})",
                    check.reasons.first().map(String::as_str).unwrap_or("")
                ));
            }
            let next = self.new_attempt(
                &j,
                j.attempt + 1,
                "retry",
                &j.command,
                "the same command again",
                check,
            );
            self.put(&next).await;
            return Next::Attempt {
                number: j.attempt + 1,
                command: j.command.clone(),
            };
        }
        self.alternatives(&j, &plan_step, &attempts, &tail, &failure)
            .await
    }

    /// The model's judgement, else the heuristics'.
    async fn validate(&self, j: &Judging, step: &herd_ai::PlanStep, tail: &str) -> Judgement {
        let llm = match &self.llm {
            Ok(l) => l,
            Err(_) => {
                return heuristics(j.state, j.exit_code, tail, "no model is configured");
            }
        };
        let messages = validation_prompt(step, j.exit_code, tail, &step.expected);
        let reply = llm.chat(&messages, Some(&validation_schema())).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let why = format!("the model could not be asked: {e}");
                self.record(
                    &j.plan_id,
                    "validation",
                    Some(&j.step.id),
                    &messages,
                    Err(why.clone()),
                )
                .await;
                return heuristics(j.state, j.exit_code, tail, &why);
            }
        };
        match herd_ai::parse_validation(&reply.content) {
            Ok(v) => {
                self.record(
                    &j.plan_id,
                    "validation",
                    Some(&j.step.id),
                    &messages,
                    Ok(&reply),
                )
                .await;
                Judgement {
                    is_valid: v.is_valid,
                    confidence: v.confidence,
                    reason: v.reason,
                    suggested_fix: v.suggested_fix,
                    should_retry: v.should_retry,
                    by: "model",
                }
            }
            Err(e) => {
                let why = format!("the model's judgement does not check out: {e}");
                self.record(
                    &j.plan_id,
                    "validation",
                    Some(&j.step.id),
                    &messages,
                    Ok(&reply),
                )
                .await;
                heuristics(j.state, j.exit_code, tail, &why)
            }
        }
    }

    /// Asks for other commands until one may run, or gives up.
    async fn alternatives(
        &self,
        j: &Judging,
        step: &herd_ai::PlanStep,
        attempts: &[AskAttemptRow],
        tail: &str,
        failure: &str,
    ) -> Next {
        // A restart came while an alternative waited for a person: wait for it again.
        if let Some(p) = attempts
            .iter()
            .find(|a| a.approval == "awaiting" && a.attempt > j.attempt)
        {
            return self.approval(j, p.attempt, &p.command, failure).await;
        }
        let Ok(llm) = &self.llm else {
            return Next::Failed(failure.to_string());
        };
        let mut tried: Vec<String> = attempts.iter().map(|a| a.command.clone()).collect();
        tried.dedup();
        let mut asked = attempts
            .iter()
            .filter(|a| a.origin == "alternative")
            .count();
        let mut next_attempt = attempts
            .iter()
            .map(|a| a.attempt)
            .max()
            .unwrap_or(j.attempt)
            + 1;
        let mut last = failure.to_string();
        while asked < MAX_ALTERNATIVES {
            asked += 1;
            let why = format!("{last}\n\nOutput:\n{tail}");
            let messages = alternative_prompt(step, &why, &tried);
            let reply = match llm.chat(&messages, Some(&alternative_schema())).await {
                Ok(r) => r,
                Err(e) => {
                    let why = format!("the model could not be asked for another way: {e}");
                    self.record(
                        &j.plan_id,
                        "alternative",
                        Some(&j.step.id),
                        &messages,
                        Err(why.clone()),
                    )
                    .await;
                    return Next::Failed(format!("{failure}; {why}"));
                }
            };
            self.record(
                &j.plan_id,
                "alternative",
                Some(&j.step.id),
                &messages,
                Ok(&reply),
            )
            .await;
            let alt = match herd_ai::parse_alternative(&reply.content) {
                Ok(a) => a,
                Err(e) => {
                    last = format!("the model's alternative does not check out: {e}");
                    continue;
                }
            };
            if tried.iter().any(|t| t.trim() == alt.command.trim()) {
                last = format!("the model proposed `{}` again", one_line(&alt.command));
                continue;
            }
            tried.push(alt.command.clone());
            let check = self.check(j, &alt.command).await;
            let mut row = self.new_attempt(
                j,
                next_attempt,
                "alternative",
                &alt.command,
                &alt.description,
                check.clone(),
            );
            row.check = serde_json::to_string(&check).unwrap_or_default();
            let reason = check.reasons.first().cloned().unwrap_or_default();
            match check.decision.as_str() {
                "allow" => {
                    row.approval = "allowed".into();
                    self.put(&row).await;
                    return Next::Attempt {
                        number: next_attempt,
                        command: alt.command,
                    };
                }
                "approve" if j.unattended => {
                    row.approval = "refused".into();
                    self.put(&row).await;
                    return Next::Failed(format!(
                        "{failure}; the alternative `{}` needs approval ({}: {reason}) — nobody approves in an unattended run (--yes never approves); run herd ask in a terminal to review it",
                        one_line(&alt.command),
                        check.class
                    ));
                }
                "approve" => {
                    row.approval = "awaiting".into();
                    self.put(&row).await;
                    tracing::info!(flow = %j.run_id, step = %j.step.id, attempt = next_attempt, "ask: an alternative awaits approval");
                    return self.approval(j, next_attempt, &alt.command, failure).await;
                }
                _ => {
                    row.approval = "denied".into();
                    self.put(&row).await;
                    next_attempt += 1;
                    last = format!(
                        "the alternative `{}` is denied by the command policy ({}: {reason}); propose a different one",
                        one_line(&alt.command),
                        check.class
                    );
                }
            }
        }
        Next::Failed(format!(
            "{failure}; {MAX_ALTERNATIVES} alternatives asked, none worked ({})",
            one_line(&last)
        ))
    }

    /// Waits for a person's decision on attempt `number` (`command`) of `j`'s step, awaiting
    /// approval, and says what the step does next.
    async fn approval(&self, j: &Judging, number: i64, command: &str, failure: &str) -> Next {
        match self.await_approval(&j.run_id, &j.step.id, number).await {
            Some(true) => Next::Attempt {
                number,
                command: command.to_string(),
            },
            Some(false) => Next::Failed(format!(
                "{failure}; the alternative `{}` was refused",
                one_line(command)
            )),
            // The server is stopping: the attempt stays awaiting, waited for again after the
            // restart.
            None if self.shutdown.is_cancelled() => {
                Next::Failed(format!("{failure}; the server stopped"))
            }
            None => {
                let cancelled = matches!(
                    self.store.flow_run(&j.run_id).await,
                    Ok(Some(r)) if r.cancel_requested
                );
                let why = if cancelled {
                    "the run was cancelled"
                } else {
                    "nobody approved it in time"
                };
                let e = AuditEntry::new(
                    "herd",
                    "ask.refuse",
                    format!("workflow-run:{}", j.run_id),
                    json!({"step": j.step.id, "attempt": number, "why": why}),
                );
                let _ = self
                    .store
                    .decide_ask_attempt(&j.run_id, &j.step.id, number, "refused", &e)
                    .await;
                Next::Failed(format!(
                    "{failure}; the alternative `{}` was not approved within {} minutes",
                    one_line(command),
                    APPROVAL_WAIT.as_secs() / 60
                ))
            }
        }
    }

    /// Waits for a person's decision on an attempt; `None` when none came in time (or the
    /// run was cancelled, or the server is stopping).
    async fn await_approval(&self, run_id: &str, step: &str, attempt: i64) -> Option<bool> {
        let until = tokio::time::Instant::now() + APPROVAL_WAIT;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Ok(Some(r)) = self.store.flow_run(run_id).await
                && r.cancel_requested
            {
                return None;
            }
            let Ok(all) = self.store.ask_attempts(run_id).await else {
                continue;
            };
            match all
                .iter()
                .find(|a| a.step_id == step && a.attempt == attempt)
                .map(|a| a.approval.as_str())
            {
                Some("approved") => return Some(true),
                Some("refused") => return Some(false),
                _ => {}
            }
        }
        None
    }

    async fn attempts(&self, run_id: &str, step: &str) -> Vec<AskAttemptRow> {
        match self.store.ask_attempts(run_id).await {
            Ok(all) => all.into_iter().filter(|a| a.step_id == step).collect(),
            Err(e) => {
                tracing::warn!(flow = %run_id, "cannot read the plan's attempts: {e}");
                Vec::new()
            }
        }
    }

    fn new_attempt(
        &self,
        j: &Judging,
        attempt: i64,
        origin: &str,
        command: &str,
        description: &str,
        check: herd_api::StepCheck,
    ) -> AskAttemptRow {
        AskAttemptRow {
            run_id: j.run_id.clone(),
            step_id: j.step.id.clone(),
            attempt,
            origin: origin.to_string(),
            command: command.to_string(),
            description: description.to_string(),
            approval: if check.decision == "allow" {
                "allowed"
            } else {
                "approved"
            }
            .into(),
            check: serde_json::to_string(&check).unwrap_or_default(),
            task_run_id: None,
            validation: None,
            created_at: now_ms(),
        }
    }

    /// Stores an attempt, retried while the store fails (an attempt runs only once stored).
    async fn put(&self, row: &AskAttemptRow) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.store.put_ask_attempt(row).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(flow = %row.run_id, "cannot store an attempt (retrying): {e}");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Writes the summary of an ended plan's run: what was done, what failed and why.
    pub(crate) async fn summarize(
        &self,
        run_id: &str,
        state: herd_core::RunState,
        steps: &[(String, StepState, Option<String>)],
    ) {
        let attempts = self.store.ask_attempts(run_id).await.unwrap_or_default();
        let text = summary(state, steps, &attempts);
        if let Err(e) = self.store.set_ask_summary(run_id, &text).await {
            tracing::warn!(flow = %run_id, "cannot store the plan's summary: {e}");
        }
    }
}

/// The summary of a plan's run from its steps' ends and attempts.
fn summary(
    state: herd_core::RunState,
    steps: &[(String, StepState, Option<String>)],
    attempts: &[AskAttemptRow],
) -> String {
    let ok = steps.iter().filter(|s| s.1 == StepState::Succeeded).count();
    let mut text = format!(
        "The plan's run {state}: {ok} of {} steps succeeded.",
        steps.len()
    );
    for (id, st, detail) in steps {
        let mine: Vec<&AskAttemptRow> = attempts.iter().filter(|a| &a.step_id == id).collect();
        text.push_str(&format!("\n- {id}: {st}"));
        let ran: Vec<&&AskAttemptRow> = mine.iter().filter(|a| a.task_run_id.is_some()).collect();
        if ran.len() > 1 {
            text.push_str(&format!(" after {} attempts", ran.len()));
        }
        if let Some(last) = ran.last()
            && last.origin == "alternative"
            && *st == StepState::Succeeded
        {
            text.push_str(&format!(
                " (with the alternative `{}`)",
                one_line(&last.command)
            ));
        }
        if let Some(d) = detail
            && *st != StepState::Succeeded
        {
            text.push_str(&format!(" — {}", one_line(d)));
        }
    }
    text
}

fn one_line(s: &str) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line
    }
}

/// The first `HEAD` and last `TAIL` bytes of a task's stored output (lossy UTF-8).
fn head_and_tail(log: &OutputLog, task: &str, pos: herd_core::OutputPos) -> String {
    let mut head: Vec<u8> = Vec::new();
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut left_out: u64 = 0;
    let mut cursor = Cursor::default();
    // At most 64 MiB read: the stored output's cap keeps it far below that.
    for _ in 0..64 {
        let Ok((chunks, next)) = log.read(task, pos, cursor, 1 << 20) else {
            break;
        };
        if chunks.is_empty() {
            break;
        }
        cursor = next;
        for c in chunks {
            match c {
                Chunk::Data { data, .. } => {
                    let mut d: &[u8] = &data;
                    if head.len() < HEAD {
                        let n = (HEAD - head.len()).min(d.len());
                        head.extend_from_slice(&d[..n]);
                        d = &d[n..];
                    }
                    // Only the last TAIL bytes of what arrives can be kept.
                    let skipped = d.len().saturating_sub(TAIL);
                    left_out += skipped as u64;
                    tail.extend(d[skipped..].iter().copied());
                    if tail.len() > TAIL {
                        let over = tail.len() - TAIL;
                        tail.drain(..over);
                        left_out += over as u64;
                    }
                }
                Chunk::Omitted { bytes } => left_out += bytes,
            }
        }
    }
    let mut out = String::from_utf8_lossy(&head).into_owned();
    if left_out > 0 {
        out.push_str(&format!("\n[… {left_out} bytes left out …]\n"));
    }
    let tail: Vec<u8> = tail.into_iter().collect();
    out.push_str(&String::from_utf8_lossy(&tail));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_judged_output_is_its_head_and_tail_with_what_was_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = OutputLog::new(dir.path(), 64 << 20);
        let mut pos = herd_core::OutputPos::default();
        // 100,000 bytes in chunks: "H" first, "T" last, "m" between.
        let mut all = vec![b'm'; 100_000];
        all[..HEAD].fill(b'H');
        let n = all.len();
        all[n - TAIL..].fill(b'T');
        for chunk in all.chunks(7_000) {
            pos = log
                .append(
                    "t1",
                    pos,
                    &[herd_outlog::Record {
                        stream: 1,
                        data: chunk,
                    }],
                )
                .unwrap();
        }
        let text = head_and_tail(&log, "t1", pos);
        let left = 100_000 - HEAD - TAIL;
        assert!(text.starts_with(&"H".repeat(HEAD)), "{}", &text[..40]);
        assert!(text.contains(&format!("[… {left} bytes left out …]")));
        assert!(text.ends_with(&"T".repeat(TAIL)));
        assert!(!text.contains('m'));
    }

    #[test]
    fn heuristics_follow_the_exit_and_retry_only_transient_failures() {
        let j = heuristics(StepState::Succeeded, Some(0), "done", "no model");
        assert!(j.is_valid && !j.should_retry && j.by == "heuristics");
        let j = heuristics(
            StepState::Failed,
            Some(100),
            "E: Could not get lock /var/lib/dpkg/lock",
            "x",
        );
        assert!(!j.is_valid && j.should_retry);
        let j = heuristics(StepState::Failed, Some(1), "No such file or directory", "x");
        assert!(!j.is_valid && !j.should_retry);
        assert!(permanent("bash: line 1: sudo: command not found"));
        assert!(!permanent("E: Could not get lock /var/lib/dpkg/lock"));
        assert!(j.reason.contains("exit code 1"));
    }

    #[test]
    fn a_models_valid_for_a_failed_step_stands_only_when_sure_and_the_command_ran() {
        let j = |exit: Option<i32>, state| Judging {
            run_id: "r".into(),
            step: herd_api::AskStep::default(),
            attempt: 1,
            command: "x".into(),
            state,
            exit_code: exit,
            detail: None,
            task_run_id: None,
            plan_id: "p".into(),
            unattended: true,
        };
        let said = |confidence| Judgement {
            is_valid: true,
            confidence,
            reason: "fine".into(),
            suggested_fix: None,
            should_retry: false,
            by: "model",
        };
        assert!(overrule(said(0.9), &j(Some(1), StepState::Failed)).is_valid);
        assert!(!overrule(said(0.5), &j(Some(1), StepState::Failed)).is_valid);
        assert!(!overrule(said(0.99), &j(Some(127), StepState::Failed)).is_valid);
        assert!(!overrule(said(0.99), &j(None, StepState::Failed)).is_valid);
        assert!(overrule(said(0.1), &j(Some(0), StepState::Succeeded)).is_valid);
    }

    #[test]
    fn the_summary_names_alternatives_and_failures() {
        let a = |step: &str, n: i64, origin: &str, cmd: &str| AskAttemptRow {
            run_id: "r".into(),
            step_id: step.into(),
            attempt: n,
            origin: origin.into(),
            command: cmd.into(),
            description: String::new(),
            check: String::new(),
            approval: "allowed".into(),
            task_run_id: Some(format!("t{n}")),
            validation: None,
            created_at: 0,
        };
        let text = summary(
            herd_core::RunState::Failed,
            &[
                ("s1".into(), StepState::Succeeded, None),
                ("s2".into(), StepState::Succeeded, None),
                ("s3".into(), StepState::Failed, Some("exit code 2".into())),
                (
                    "s4".into(),
                    StepState::Skipped,
                    Some("needs s3 (failed)".into()),
                ),
            ],
            &[
                a("s1", 1, "plan", "true"),
                a("s2", 1, "plan", "false"),
                a("s2", 2, "alternative", "echo fixed"),
                a("s3", 1, "plan", "exit 2"),
            ],
        );
        assert!(
            text.starts_with("The plan's run failed: 2 of 4 steps succeeded."),
            "{text}"
        );
        assert!(
            text.contains("- s2: succeeded after 2 attempts (with the alternative `echo fixed`)"),
            "{text}"
        );
        assert!(text.contains("- s3: failed — exit code 2"), "{text}");
        assert!(text.contains("- s4: skipped — needs s3 (failed)"), "{text}");
    }
}
