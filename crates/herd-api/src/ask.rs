//! The AI operator: `POST /api/v1/ask/plan` (a plain-language request → a plan the model
//! proposes, each step classified by the command policy) and `POST /api/v1/ask/runs` (a
//! reviewed plan → a workflow run, every step checked by the policy again).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/ask/plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AskRequest {
    /// What to do, in plain language.
    pub request: String,
    /// The machines (selectors, OR'ed).
    pub targets: Vec<String>,
    /// Every machine.
    pub all: bool,
}

/// One step of a plan, as written (the model's, or edited by a person).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AskStep {
    pub id: String,
    pub description: String,
    pub command: String,
    /// What success looks like.
    pub expected: String,
    pub depends_on: Vec<String>,
    /// Machines of this step (names or selectors); none: the plan's.
    pub targets: Vec<String>,
}

/// What the command policy says of a step's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepCheck {
    /// `safe | caution | dangerous | forbidden`.
    pub class: String,
    /// `allow | approve | deny`.
    pub decision: String,
    pub reasons: Vec<String>,
}

/// A step with its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedStep {
    #[serde(flatten)]
    pub step: AskStep,
    pub check: StepCheck,
}

/// A plan the model proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AskPlan {
    pub request: String,
    pub summary: String,
    pub steps: Vec<PlannedStep>,
    /// The machines the plan is for (names).
    pub machines: Vec<String>,
    /// The model that wrote it, and the tokens it took.
    pub model: String,
    pub tokens: u64,
    /// The plan's id: its run (`AskRun.plan_id`) and `herd ask log` name it.
    #[serde(default)]
    pub plan_id: String,
}

/// The body of `POST /api/v1/ask/runs`: the plan to run, as reviewed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AskRun {
    pub request: String,
    pub summary: String,
    pub steps: Vec<AskStep>,
    pub targets: Vec<String>,
    pub all: bool,
    /// Ids of the steps a person approved (those whose command the policy sends for
    /// approval). A step the policy denies never runs.
    pub approved: Vec<String>,
    /// The plan this came from (`AskPlan.plan_id`), so its model exchanges are the run's.
    pub plan_id: Option<String>,
    /// Nobody will answer approvals (`--yes`, no terminal): an alternative that needs one
    /// fails its step at once instead of waiting for a person.
    pub unattended: bool,
}

/// One attempt of a step of a plan's run: the plan's command, a retry, or an alternative the
/// model proposed — each checked by the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AskAttempt {
    pub step: String,
    pub attempt: i64,
    /// `plan | retry | alternative`.
    pub origin: String,
    pub command: String,
    pub description: String,
    pub check: StepCheck,
    /// `allowed | approved | awaiting | refused | denied`.
    pub approval: String,
    /// The run of its tasks, once started.
    #[schema(required = true)]
    pub run_id: Option<String>,
    /// How it went, as judged after it ended (`is_valid`, `confidence`, `reason`,
    /// `suggested_fix`, `should_retry`, `by`: `model` or `heuristics`).
    #[schema(value_type = Object, required = true)]
    pub validation: Option<serde_json::Value>,
}

/// A plan's run: its request, summary (once ended) and every attempt of its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AskRunView {
    pub run: crate::FlowRun,
    pub request: String,
    pub plan_id: String,
    pub unattended: bool,
    #[schema(required = true)]
    pub summary: Option<String>,
    pub attempts: Vec<AskAttempt>,
}

/// One exchange with the model (secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AskExchange {
    /// `plan | validation | alternative`.
    pub kind: String,
    #[schema(required = true)]
    pub step: Option<String>,
    pub at: i64,
    pub model: String,
    pub tokens: i64,
    /// The messages sent.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// What the model answered.
    pub answer: String,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// The body of `POST /api/v1/ask/runs/{id}/approve`: a person's decision on an attempt
/// awaiting approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AskApproval {
    pub step: String,
    pub attempt: i64,
    /// true: run it; false: refuse it (the step fails).
    pub approve: bool,
}

/// The body of `POST /api/v1/policy/check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PolicyCheck {
    /// The command line, as a shell reads it.
    pub command: String,
    /// Under this role's policy (default: the caller's own role).
    pub role: Option<KeyRole>,
    /// On these machines (selectors, OR'ed): the policy's label rules that pick one of them
    /// apply too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// The body of `PUT /api/v1/policy`: a policy set as YAML or JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PutPolicy {
    /// `default`, `by_role` (`admin | operator | viewer`) and `by_label` (`[{selector,
    /// roles, policy}]`); a policy is `rules` (per class `allow | approve | deny`),
    /// `allow_patterns` and `deny_patterns`.
    #[schema(required = true, min_length = 1, pattern = r"\S")]
    pub text: String,
}

/// A version of the command policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    /// 1, 2, …; 0: the built-in default (nothing stored yet).
    pub version: i64,
    pub created_at: i64,
    /// Who set it (`key:<name>`; `server` for the built-in default).
    pub created_by: String,
    /// The policy set.
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
}

/// `GET /api/v1/policy?version=N`.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct PolicyQuery {
    /// A stored version; default: the current one.
    #[param(minimum = 0)]
    pub version: Option<i64>,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Admin,
    Operator,
    Viewer,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Admin => "admin",
            KeyRole::Operator => "operator",
            KeyRole::Viewer => "viewer",
        }
    }
}
