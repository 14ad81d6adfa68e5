//! Definitions as written: a workflow (steps in a graph) and a job (one reusable action).
//! Deserialized from JSON values (YAML is read into one first), so both formats take the same
//! shape; unknown keys are refused before these types are read (`parse::check_keys`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A workflow: named steps whose `needs` make a graph without cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    /// Selectors for steps that name none (a run's `-t` replaces them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub steps: Vec<Step>,
    /// Run after the steps when one of them failed (in order, each after the previous).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Step>,
    /// Run last, whatever happened (also after a cancel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub always: Vec<Step>,
    /// The workflow's outputs (expressions over `steps`), for a workflow that is a step of
    /// another.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

/// A job: one action with typed parameters, run by name (`herd jobs run`) or as a step
/// (`uses:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    #[serde(flatten)]
    pub action: Action,
    #[serde(flatten)]
    pub exec: Exec,
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    #[serde(rename = "type", default)]
    pub ty: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The values a `choice` takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    #[default]
    String,
    Int,
    Bool,
    Choice,
    /// Never stored or shown in clear; reaches commands as an environment variable of the
    /// parameter's name, and reads `***` in expressions.
    Secret,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Choice => "choice",
            ParamType::Secret => "secret",
        }
    }
}

/// What a step or job does: exactly one of the fields is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// A shell command on the machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// A script on the machines, run by `lang` (or its `#!` line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// A stored job, by name (steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// An HTTP call made by the server (`herd_core::actions::HttpCall`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Value>,
    /// A notification sent by the server (`herd_core::actions::Notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Value>,
    /// A stored workflow run as this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// A LangFlow flow run from a machine ([`LangflowStep`]; values may hold expressions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub langflow: Option<Value>,
    /// Parameters of `uses` or `workflow` (values may hold expressions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, Value>,
}

/// The kind an [`Action`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Command,
    Script,
    Uses,
    Http,
    Notify,
    Workflow,
    Langflow,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Command => "command",
            ActionKind::Script => "script",
            ActionKind::Uses => "uses",
            ActionKind::Http => "http",
            ActionKind::Notify => "notify",
            ActionKind::Workflow => "workflow",
            ActionKind::Langflow => "langflow",
        }
    }

    /// Whether it runs on machines (as a run with tasks).
    pub fn on_machines(self) -> bool {
        matches!(self, ActionKind::Command | ActionKind::Script)
    }
}

impl Action {
    /// The kinds set (a valid action has exactly one).
    pub fn kinds(&self) -> Vec<ActionKind> {
        let mut k = Vec::new();
        if self.run.is_some() {
            k.push(ActionKind::Command);
        }
        if self.script.is_some() {
            k.push(ActionKind::Script);
        }
        if self.uses.is_some() {
            k.push(ActionKind::Uses);
        }
        if self.http.is_some() {
            k.push(ActionKind::Http);
        }
        if self.notify.is_some() {
            k.push(ActionKind::Notify);
        }
        if self.workflow.is_some() {
            k.push(ActionKind::Workflow);
        }
        if self.langflow.is_some() {
            k.push(ActionKind::Langflow);
        }
        k
    }

    /// The one kind of a checked action.
    pub fn kind(&self) -> Option<ActionKind> {
        match self.kinds().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// How an action executes on machines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// Selectors (OR'ed); absent: the workflow run's targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// `30s`, `5m`: the whole attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Machines at a time (`5`, `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<String>,
    /// Failures before the rest of the machines are skipped (`1`, `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: name → a secret variable of the server (`herd vars`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// Retries of a failed attempt: a count, or the whole form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Retries {
    Count(u32),
    Policy(RetryPolicy),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub count: u32,
    /// Wait before the first retry (`2s`), doubled for each next one; absent: 1 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Only these exit codes retry; empty: any failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_exit_codes: Vec<i32>,
}

impl Retries {
    pub fn count(&self) -> u32 {
        match self {
            Retries::Count(n) => *n,
            Retries::Policy(p) => p.count,
        }
    }

    /// The first wait, in ms.
    pub fn backoff_ms(&self) -> u64 {
        match self {
            Retries::Policy(RetryPolicy {
                backoff: Some(b), ..
            }) => herd_core::parse_duration(b)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(1000),
            _ => 1000,
        }
    }

    /// Whether an attempt that exited with `code` (None: did not exit by itself) retries.
    pub fn retries_exit(&self, code: Option<i32>) -> bool {
        match self {
            Retries::Policy(p) if !p.on_exit_codes.is_empty() => {
                code.is_some_and(|c| p.on_exit_codes.contains(&c))
            }
            _ => true,
        }
    }
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// An expression (with or without `${{ }}`): false skips the step and its dependants.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    #[serde(flatten)]
    pub action: Action,
    #[serde(flatten)]
    pub exec: Exec,
    /// The job a `uses` step runs, copied in when a run is created (never written by people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<Job>>,
}

/// Keys each object may have (checked before the typed read, with suggestions).
pub(crate) const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "params",
    "targets",
    "steps",
    "on_failure",
    "always",
    "outputs",
];
pub(crate) const ACTION_KEYS: &[&str] = &[
    "run", "script", "lang", "uses", "http", "notify", "workflow", "langflow", "with",
];
pub(crate) const EXEC_KEYS: &[&str] = &[
    "targets",
    "timeout",
    "retries",
    "concurrency",
    "max_errors",
    "env",
    "secrets",
];
pub(crate) const STEP_KEYS: &[&str] = &["id", "name", "needs", "if", "continue_on_error"];
pub(crate) const JOB_KEYS: &[&str] = &["name", "description", "params"];
pub(crate) const PARAM_KEYS: &[&str] = &["type", "default", "required", "choices", "description"];
pub(crate) const RETRY_KEYS: &[&str] = &["count", "backoff", "on_exit_codes"];

/// A `langflow` step: the flow's answer text is its output `text` (with `session_id`,
/// `response`, and each of `outputs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LangflowStep {
    /// The flow's name, id or endpoint name (`herd flows ls`).
    pub flow: String,
    /// Its source, when the name is on several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The chat input's text.
    #[serde(default)]
    pub input: String,
    /// `Component.param: value` (the component by id, type or name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tweaks: BTreeMap<String, Value>,
    /// LangFlow's session id (chat memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// More outputs: name → JSON pointer into LangFlow's answer
    /// (`/outputs/0/outputs/0/results/message/sender`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}
