//! `/api/v1/ask`: plans from a plain-language request, and reviewed plans run.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use herd_api::{
    AskApproval, AskExchange, AskPlan, AskRequest, AskRun, AskRunView, ErrorBody, FlowRun,
};

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
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<AskRequest>,
) -> Result<Json<AskPlan>> {
    Ok(Json(app.ask().plan(&actor, req).await?))
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
        (status = 403, description = "A step the command policy denies, a viewer key, or a machine outside the key's scope", body = ErrorBody),
        (status = 409, description = "A step that needs approval and was not approved, or no machine matches", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn run(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<AskRun>,
) -> Result<Json<FlowRun>> {
    Ok(Json(app.ask().run(&actor, req).await?))
}

/// A plan's run: its request, its summary once it ended, and every attempt of every step —
/// the plan's command, retries and the model's alternatives, each with the policy's check,
/// its approval, its run and how it was judged.
#[utoipa::path(get, path = "/api/v1/ask/runs/{id}", tag = "ask",
    params(("id" = String, Path, description = "The workflow run's id, or a unique prefix of at least 6 characters")),
    responses(
        (status = 200, description = "The plan's run with its attempts", body = AskRunView),
        (status = 400, description = "A prefix too short or matching several runs", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run, or not a plan's run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn show(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<AskRunView>> {
    Ok(Json(app.ask().view(app.flows(), &id).await?))
}

/// Every exchange with the model that led to and ran a plan (plan, validations,
/// alternatives), oldest first, with secrets redacted.
#[utoipa::path(get, path = "/api/v1/ask/runs/{id}/log", tag = "ask",
    params(("id" = String, Path, description = "The workflow run's id, or a unique prefix of at least 6 characters")),
    responses(
        (status = 200, description = "The exchanges, oldest first", body = Vec<AskExchange>),
        (status = 400, description = "A prefix too short or matching several runs", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run, or not a plan's run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn log(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<AskExchange>>> {
    Ok(Json(app.ask().log(app.flows(), &id).await?))
}

/// A person's decision on an alternative command that awaits approval: approved, it runs as
/// the step's next attempt; refused, the step fails.
#[utoipa::path(post, path = "/api/v1/ask/runs/{id}/approve", tag = "ask",
    params(("id" = String, Path, description = "The workflow run's id, or a unique prefix of at least 6 characters")),
    request_body = AskApproval,
    responses(
        (status = 200, description = "The plan's run, with the decision", body = AskRunView),
        (status = 400, description = "A prefix too short or matching several runs, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The attempt's command is denied by the policy", body = ErrorBody),
        (status = 404, description = "No such run or attempt", body = ErrorBody),
        (status = 409, description = "The attempt is not awaiting approval", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn approve(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Body(req): Body<AskApproval>,
) -> Result<Json<AskRunView>> {
    Ok(Json(
        app.ask()
            .approve(app.flows(), &actor.name, &id, req)
            .await?,
    ))
}
