//! What `apply` refuses beyond shape and types: names, one action per step, references to
//! steps, parameters and jobs (with the closest name), cycles, durations, limits, and every
//! expression compiled with what it reads checked.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::DefError;
use crate::def::*;
use crate::expr;
use crate::graph::Graph;
use crate::parse::join;
use crate::suggest::did_you_mean;

/// What a definition refers to outside itself (jobs, workflows), looked up by the caller.
pub trait Lookup {
    /// The parameters of job `name`, if it exists.
    fn job(&self, name: &str) -> Option<BTreeMap<String, Param>>;
    /// The parameters of workflow `name`, if it exists.
    fn workflow(&self, name: &str) -> Option<BTreeMap<String, Param>>;
    /// Known names of jobs and workflows (for suggestions).
    fn job_names(&self) -> Vec<String>;
    fn workflow_names(&self) -> Vec<String>;
}

/// A lookup that knows nothing (references to jobs and workflows are not checked).
pub struct NoLookup;

impl Lookup for NoLookup {
    fn job(&self, _: &str) -> Option<BTreeMap<String, Param>> {
        Some(BTreeMap::new())
    }
    fn workflow(&self, _: &str) -> Option<BTreeMap<String, Param>> {
        Some(BTreeMap::new())
    }
    fn job_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn workflow_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Every problem of a workflow, in order (empty: fine).
pub fn check_workflow(wf: &Workflow, lookup: &dyn Lookup) -> Vec<DefError> {
    let mut e = Errors::default();
    check_name(&wf.name, "name", &mut e);
    check_params(&wf.params, &mut e);
    if wf.steps.is_empty() {
        e.at("steps", "a workflow needs at least one step".into());
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let main: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
    for (list, steps) in [
        ("steps", &wf.steps),
        ("on_failure", &wf.on_failure),
        ("always", &wf.always),
    ] {
        for (i, s) in steps.iter().enumerate() {
            let path = format!("{list}[{i}]");
            if !valid_step_id(&s.id) {
                e.at(
                    &join(&path, "id"),
                    format!(
                        "{:?} is not a step id — use letters, digits, _ and - (at most 64), starting with a letter",
                        s.id
                    ),
                );
            } else if !seen.insert(s.id.as_str()) {
                e.at(
                    &join(&path, "id"),
                    format!("step id {:?} is used twice", s.id),
                );
            }
            if list != "steps" && !s.needs.is_empty() {
                e.at(
                    &join(&path, "needs"),
                    format!("{list} steps run after the others, in order: they take no needs"),
                );
            }
            for n in &s.needs {
                if *n == s.id {
                    e.at(
                        &join(&path, "needs"),
                        format!("step {:?} needs itself", s.id),
                    );
                } else if list == "steps" && !main.contains(&n.as_str()) {
                    e.at(
                        &join(&path, "needs"),
                        format!(
                            "unknown step {n:?}{}",
                            did_you_mean(n, main.iter().copied())
                        ),
                    );
                }
            }
            check_action(&s.action, &path, true, lookup, &mut e);
            check_exec(&s.exec, &path, &mut e);
        }
    }
    let graph = Graph::new(&wf.steps);
    if let Some(cycle) = graph.cycle() {
        let at = wf.steps.iter().position(|s| s.id == cycle[0]).unwrap_or(0);
        e.at(
            &format!("steps[{at}].needs"),
            format!("a cycle: {}", cycle.join(" → ")),
        );
    }
    // Expressions, once the graph is known to have no cycle.
    if e.0.is_empty() {
        for (i, s) in wf.steps.iter().enumerate() {
            let readable: HashSet<&str> = graph
                .ancestors(i)
                .into_iter()
                .map(|a| wf.steps[a].id.as_str())
                .collect();
            let scope = Scope {
                params: &wf.params,
                steps: &main,
                readable: Some(&readable),
                own: &s.id,
                secrets: call_secrets(s),
            };
            check_step_expressions(s, &format!("steps[{i}]"), &scope, &mut e);
        }
        for (list, steps) in [("on_failure", &wf.on_failure), ("always", &wf.always)] {
            for (i, s) in steps.iter().enumerate() {
                let scope = Scope {
                    params: &wf.params,
                    steps: &main,
                    readable: None,
                    own: &s.id,
                    secrets: call_secrets(s),
                };
                check_step_expressions(s, &format!("{list}[{i}]"), &scope, &mut e);
            }
        }
        for (k, v) in &wf.outputs {
            let scope = Scope {
                params: &wf.params,
                steps: &main,
                readable: None,
                own: "",
                secrets: None,
            };
            scope.text(v, &format!("outputs.{k}"), &mut e);
        }
    }
    e.0
}

/// Every problem of a job (empty: fine).
pub fn check_job(job: &Job, lookup: &dyn Lookup) -> Vec<DefError> {
    let mut e = Errors::default();
    check_name(&job.name, "name", &mut e);
    check_params(&job.params, &mut e);
    if job.action.uses.is_some() {
        e.at(
            "uses",
            "a job cannot use another job — write a workflow whose steps use both".into(),
        );
    }
    check_action(&job.action, "", false, lookup, &mut e);
    check_exec(&job.exec, "", &mut e);
    if e.0.is_empty() {
        let calls = job.action.http.is_some() || job.action.notify.is_some();
        let scope = Scope {
            params: &job.params,
            steps: &[],
            readable: Some(&HashSet::new()),
            own: "",
            secrets: calls.then_some(&job.exec.secrets),
        };
        scope.action(&job.action, "", &mut e);
        scope.exec(&job.exec, "", &mut e);
    }
    e.0
}

#[derive(Default)]
struct Errors(Vec<DefError>);

impl Errors {
    fn at(&mut self, path: &str, message: String) {
        self.0.push(DefError::at(path, message));
    }
}

/// Whether `name` can name a job or workflow: 1 to 128 letters, digits, `_`, `.` and `-`,
/// starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

fn check_name(name: &str, path: &str, e: &mut Errors) {
    if !valid_name(name) {
        e.at(
            path,
            format!("{name:?} is not a name — use letters, digits, _ . and - (at most 128)"),
        );
    }
}

pub(crate) fn valid_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_param_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_params(params: &BTreeMap<String, Param>, e: &mut Errors) {
    for (name, p) in params {
        let path = format!("params.{name}");
        if !valid_param_name(name) {
            e.at(
                &path,
                format!("{name:?} is not a parameter name — use letters, digits and _"),
            );
        }
        if p.ty == ParamType::Choice && p.choices.is_empty() {
            e.at(&path, "a choice needs choices: [a, b]".into());
        }
        if p.ty != ParamType::Choice && !p.choices.is_empty() {
            e.at(&path, "choices are for type: choice".into());
        }
        if let Some(d) = &p.default {
            if p.ty == ParamType::Secret {
                e.at(
                    &join(&path, "default"),
                    "a secret has no default in a definition — give it at run time".into(),
                );
            } else if let Err(why) = crate::params::typed(name, p, d) {
                e.at(&join(&path, "default"), why);
            }
        }
    }
}

fn check_action(a: &Action, path: &str, step: bool, lookup: &dyn Lookup, e: &mut Errors) {
    let kinds = a.kinds();
    let names = "run, script, uses, http, notify, workflow or langflow";
    match kinds.as_slice() {
        [] => e.at(path, format!("nothing to do: give one of {names}")),
        [_] => {}
        many => e.at(
            path,
            format!(
                "one action per step: it has {} — keep one of them",
                many.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ),
    }
    if a.lang.is_some() && a.script.is_none() {
        e.at(&join(path, "lang"), "lang goes with script".into());
    }
    if let Some(l) = &a.lang
        && (l.is_empty() || l.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        e.at(
            &join(path, "lang"),
            format!("{l:?} is not an interpreter name (bash, python3, node, …)"),
        );
    }
    if !a.with.is_empty() && a.uses.is_none() && a.workflow.is_none() {
        e.at(
            &join(path, "with"),
            "with goes with uses or workflow".into(),
        );
    }
    // A call written without expressions is checked now; one with them when it runs.
    if let Some(h) = &a.http
        && !has_expression(h)
    {
        match serde_json::from_value::<herd_core::actions::HttpCall>(h.clone()) {
            Err(why) => e.at(
                &join(path, "http"),
                crate::parse::one_line(&why.to_string()),
            ),
            Ok(call) => {
                if let Err(why) = call.check() {
                    e.at(&join(path, "http"), why);
                }
            }
        }
    }
    if let Some(n) = &a.notify
        && !has_expression(n)
    {
        match serde_json::from_value::<herd_core::actions::Notify>(n.clone()) {
            Err(why) => e.at(
                &join(path, "notify"),
                crate::parse::one_line(&why.to_string()),
            ),
            Ok(note) => {
                if let Err(why) = note.check() {
                    e.at(&join(path, "notify"), why);
                }
            }
        }
    }
    if let Some(l) = &a.langflow {
        match serde_json::from_value::<crate::def::LangflowStep>(l.clone()) {
            Err(why) => e.at(
                &join(path, "langflow"),
                crate::parse::one_line(&why.to_string()),
            ),
            Ok(call) => {
                if call.flow.trim().is_empty() {
                    e.at(
                        &join(path, "langflow.flow"),
                        "name the flow (`herd flows ls` lists them)".into(),
                    );
                }
                for (k, p) in &call.outputs {
                    if !p.starts_with('/') {
                        e.at(
                            &join(path, &format!("langflow.outputs.{k}")),
                            format!("{p:?} is not a JSON pointer — e.g. /outputs/0/outputs/0/results/message/text"),
                        );
                    }
                }
            }
        }
    }
    if let Some(r) = &a.run
        && r.trim().is_empty()
    {
        e.at(&join(path, "run"), "empty command".into());
    }
    if let Some(job) = &a.uses {
        if !step {
            return;
        }
        match lookup.job(job) {
            None => {
                let names = lookup.job_names();
                e.at(
                    &join(path, "uses"),
                    format!(
                        "no job {job:?}{}",
                        did_you_mean(job, names.iter().map(String::as_str))
                    ),
                );
            }
            Some(params) => check_with(&a.with, &params, path, "job", e),
        }
    }
    if let Some(wf) = &a.workflow {
        match lookup.workflow(wf) {
            None => {
                let names = lookup.workflow_names();
                e.at(
                    &join(path, "workflow"),
                    format!(
                        "no workflow {wf:?}{}",
                        did_you_mean(wf, names.iter().map(String::as_str))
                    ),
                );
            }
            Some(params) => check_with(&a.with, &params, path, "workflow", e),
        }
    }
}

fn check_with(
    with: &BTreeMap<String, Value>,
    params: &BTreeMap<String, Param>,
    path: &str,
    what: &str,
    e: &mut Errors,
) {
    for k in with.keys() {
        if !params.contains_key(k) {
            e.at(
                &join(path, &format!("with.{k}")),
                format!(
                    "the {what} has no parameter {k:?}{}",
                    did_you_mean(k, params.keys().map(String::as_str))
                ),
            );
        }
    }
    for (k, p) in params {
        if p.required && p.default.is_none() && !with.contains_key(k) {
            e.at(
                &join(path, "with"),
                format!("the {what}'s parameter {k:?} is required"),
            );
        }
    }
}

fn check_exec(x: &Exec, path: &str, e: &mut Errors) {
    if let Some(t) = &x.timeout
        && herd_core::parse_duration(t).is_err()
    {
        e.at(
            &join(path, "timeout"),
            format!("{t:?} is not a duration (30s, 5m, 1h)"),
        );
    }
    if let Some(Retries::Policy(RetryPolicy {
        backoff: Some(b), ..
    })) = &x.retries
        && herd_core::parse_duration(b).is_err()
    {
        e.at(
            &join(path, "retries.backoff"),
            format!("{b:?} is not a duration (1s, 30s)"),
        );
    }
    if let Some(r) = &x.retries
        && r.count() > 100
    {
        e.at(&join(path, "retries"), "at most 100 retries".into());
    }
    for (k, v) in [
        ("concurrency", &x.concurrency),
        ("max_errors", &x.max_errors),
    ] {
        if let Some(v) = v
            && v.parse::<herd_core::Limit>().is_err()
        {
            e.at(
                &join(path, k),
                format!("{v:?} is not a number of machines or a percentage (5, 10%)"),
            );
        }
    }
    for k in x.env.keys().chain(x.secrets.keys()) {
        if !valid_env_name(k) {
            e.at(
                &join(path, "env"),
                format!("{k:?} is not an environment variable name"),
            );
        }
    }
    if let Some(t) = &x.targets
        && t.is_empty()
    {
        e.at(
            &join(path, "targets"),
            "empty targets: leave it out, or give selectors".into(),
        );
    }
}

fn has_expression(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${{"),
        Value::Array(a) => a.iter().any(has_expression),
        Value::Object(m) => m.values().any(has_expression),
        _ => false,
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What an expression of one step may read.
struct Scope<'a> {
    params: &'a BTreeMap<String, Param>,
    steps: &'a [&'a str],
    /// Steps whose results it may read (its ancestors); `None`: any step.
    readable: Option<&'a HashSet<&'a str>>,
    own: &'a str,
    /// The secrets its expressions may read (`http`/`notify` steps: their `secrets`);
    /// `None`: none (a command takes secrets as environment variables).
    secrets: Option<&'a BTreeMap<String, String>>,
}

impl Scope<'_> {
    fn expression(&self, src: &str, path: &str, e: &mut Errors) {
        let names = match expr::names(src) {
            Ok(n) => n,
            Err(why) => return e.at(path, why),
        };
        for name in names {
            let parts: Vec<&str> = name.split('.').collect();
            match parts[0] {
                "params" => {
                    if let Some(p) = parts.get(1)
                        && !self.params.contains_key(*p)
                    {
                        e.at(
                            path,
                            format!(
                                "unknown parameter {p:?}{}",
                                did_you_mean(p, self.params.keys().map(String::as_str))
                            ),
                        );
                    }
                }
                "steps" => {
                    let Some(s) = parts.get(1) else { continue };
                    if *s == self.own {
                        e.at(path, format!("step {s:?} reads its own results"));
                    } else if !self.steps.contains(s) {
                        e.at(
                            path,
                            format!(
                                "unknown step {s:?}{}",
                                did_you_mean(s, self.steps.iter().copied())
                            ),
                        );
                    } else if let Some(r) = self.readable
                        && !r.contains(s)
                    {
                        e.at(
                            path,
                            format!(
                                "step {s:?} is not among the steps this one needs — add it to needs"
                            ),
                        );
                    } else if let Some(field) = parts.get(2)
                        && !["outputs", "status", "condition", "machines", "attempts"]
                            .contains(field)
                    {
                        e.at(
                            path,
                            format!(
                                "a step has outputs, status, condition, machines and attempts, not {field:?}"
                            ),
                        );
                    }
                }
                "secrets" => match (self.secrets, parts.get(1)) {
                    (None, _) => e.at(
                        path,
                        "secrets reach commands and scripts as environment variables (secrets: {NAME: variable}, then $NAME), never in their text".into(),
                    ),
                    (Some(known), Some(n)) if !known.contains_key(*n) => e.at(
                        path,
                        format!(
                            "no secret {n:?} — name it under the step's secrets: {{{n}: variable}}"
                        ),
                    ),
                    _ => {}
                },
                "vars" | "workflow" => {}
                other => e.at(
                    path,
                    format!(
                        "unknown name {other:?}{} — expressions read params, steps, vars, workflow (and secrets, in calls)",
                        did_you_mean(other, expr::ROOTS.iter().copied())
                    ),
                ),
            }
        }
    }

    fn text(&self, s: &str, path: &str, e: &mut Errors) {
        match expr::pieces(s) {
            Err(why) => e.at(path, why),
            Ok(pieces) => {
                for (_, _, src) in pieces {
                    self.expression(src, path, e);
                }
            }
        }
    }

    fn value(&self, v: &Value, path: &str, e: &mut Errors) {
        match v {
            Value::String(s) => self.text(s, path, e),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.value(x, &format!("{path}[{i}]"), e);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.value(x, &join(path, k), e);
                }
            }
            _ => {}
        }
    }

    fn action(&self, a: &Action, path: &str, e: &mut Errors) {
        if let Some(r) = &a.run {
            self.text(r, &join(path, "run"), e);
        }
        if let Some(s) = &a.script {
            self.text(s, &join(path, "script"), e);
        }
        if let Some(h) = &a.http {
            self.value(h, &join(path, "http"), e);
        }
        if let Some(n) = &a.notify {
            self.value(n, &join(path, "notify"), e);
        }
        if let Some(l) = &a.langflow {
            self.value(l, &join(path, "langflow"), e);
        }
        for (k, v) in &a.with {
            self.value(v, &join(path, &format!("with.{k}")), e);
        }
    }

    fn exec(&self, x: &Exec, path: &str, e: &mut Errors) {
        for (k, v) in &x.env {
            self.text(v, &join(path, &format!("env.{k}")), e);
        }
        if let Some(t) = &x.targets {
            for (i, s) in t.iter().enumerate() {
                self.text(s, &format!("{}[{i}]", join(path, "targets")), e);
            }
        }
    }
}

/// The secrets a step's expressions may read: an `http` or `notify` step's own.
fn call_secrets(s: &Step) -> Option<&BTreeMap<String, String>> {
    (s.action.http.is_some() || s.action.notify.is_some()).then_some(&s.exec.secrets)
}

fn check_step_expressions(s: &Step, path: &str, scope: &Scope<'_>, e: &mut Errors) {
    if let Some(c) = &s.condition {
        scope.expression(expr::condition_source(c), &join(path, "if"), e);
    }
    scope.action(&s.action, path, e);
    scope.exec(&s.exec, path, e);
}
