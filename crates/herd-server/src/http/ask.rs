//! `/api/v1/ask`: plans from a plain-language request, and reviewed plans run.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{AskPlan, AskRequest, AskRun, ErrorBody, FlowRun, PolicyCheck, StepCheck};

use super::extract::Body;
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;

/// Asks the model for a plan: the request and the targets' facts go to it; its answer is
/// checked (shape, ids, dependencies) and every step's command classified by the command
/// policy. Nothing runs.
#[utoipa::path(post, path = "/api/v1/ask/plan", tag = "ask",
    request_body = AskRequest,
    responses(
        (status = 200, description = "The plan, each step with what the policy does with it", body = AskPlan),
        (status = 400, description = "An empty request, or targets that do not parse", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, description = "No model configured, or no machine matches", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 502, description = "The model failed or answered no usable plan", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn plan(
    _: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<AskRequest>,
) -> Result<Json<AskPlan>> {
    Ok(Json(app.ask().plan(req).await?))
}

/// Runs a reviewed plan as a workflow run (`ask`): every step's command is checked by the
/// policy again; a denied step stops it, a step that needs approval runs only when its id is
/// in `approved`.
#[utoipa::path(post, path = "/api/v1/ask/runs", tag = "ask",
    request_body = AskRun,
    responses(
        (status = 200, description = "The workflow run, started", body = FlowRun),
        (status = 400, description = "A plan that does not check out (ids, dependencies, cycles)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A step the command policy denies", body = ErrorBody),
        (status = 409, description = "A step that needs approval and was not approved, or no machine matches", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn run(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<AskRun>,
) -> Result<Json<FlowRun>> {
    Ok(Json(app.ask().run(&actor.name, req).await?))
}

/// What the command policy does with a command: its class (`safe | caution | dangerous |
/// forbidden`), the decision (`allow | approve | deny`) and the reasons. Nothing runs.
#[utoipa::path(post, path = "/api/v1/policy/check", tag = "policy",
    request_body = PolicyCheck,
    responses(
        (status = 200, description = "The class, the decision and the reasons", body = StepCheck),
        (status = 400, description = "A body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn policy_check(_: Actor, Body(req): Body<PolicyCheck>) -> Result<Json<StepCheck>> {
    Ok(Json(crate::ask::check_as(
        &req.command,
        crate::ask::role(req.role),
    )))
}
