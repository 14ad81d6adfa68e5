//! `/api/v1/jobs`, `/api/v1/workflows` and `/api/v1/workflow-runs`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{ApplyDefinition, Definition, ErrorBody, FlowRun, FlowRunsQuery, StartFlow};
use herd_core::DefKind;

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;

macro_rules! definition_routes {
    ($kind:expr, $list:ident, $apply:ident, $get:ident, $delete:ident, $start:ident,
     $base:literal, $item:literal, $runs:literal, $tag:literal, $what:literal) => {
        #[doc = concat!("Every ", $what, " (its latest version).")]
        #[utoipa::path(get, path = $base, tag = $tag,
            responses(
                (status = 200, description = "Every definition", body = Vec<Definition>),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $list(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<Definition>>> {
            Ok(Json(app.flows().list($kind).await?))
        }

        #[doc = concat!("Checks a ", $what, " (YAML or JSON text) and stores it as its name's next version; the same text as the latest stores nothing (`changed: false`).")]
        #[utoipa::path(post, path = $base, tag = $tag,
            request_body = ApplyDefinition,
            responses(
                (status = 200, description = "The definition as stored", body = Definition),
                (status = 400, description = "A definition that does not check out (the answer names the path of the first problem)", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
                (status = 409, description = "Changed by someone else meanwhile", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $apply(
            actor: Actor,
            State(app): State<Arc<App>>,
            Body(req): Body<ApplyDefinition>,
        ) -> Result<Json<Definition>> {
            Ok(Json(app.flows().apply(&actor, $kind, &req.source).await?))
        }

        #[doc = concat!("One ", $what, " (its latest version).")]
        #[utoipa::path(get, path = $item, tag = $tag,
            params(("name" = String, Path, description = "Its name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
            responses(
                (status = 200, description = "The definition", body = Definition),
                (status = 400, description = "Not a name", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 404, description = "No such definition", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $get(
            _: Actor,
            State(app): State<Arc<App>>,
            Path(name): Path<String>,
        ) -> Result<Json<Definition>> {
            Ok(Json(app.flows().get($kind, &name).await?))
        }

        #[doc = concat!("Deletes every version of a ", $what, "; its runs keep their copy.")]
        #[utoipa::path(delete, path = $item, tag = $tag,
            params(("name" = String, Path, description = "Its name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
            responses(
                (status = 200, description = "The definition, deleted", body = Definition),
                (status = 400, description = "Not a name", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
                (status = 404, description = "No such definition", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $delete(
            actor: Actor,
            State(app): State<Arc<App>>,
            Path(name): Path<String>,
        ) -> Result<Json<Definition>> {
            Ok(Json(app.flows().delete(&actor, $kind, &name).await?))
        }

        #[doc = concat!("Starts a run of a ", $what, " with parameters (checked against their declaration) and, for steps that name none, targets.")]
        #[utoipa::path(post, path = $runs, tag = $tag,
            params(("name" = String, Path, description = "Its name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
            request_body = StartFlow,
            responses(
                (status = 200, description = "The run, started", body = FlowRun),
                (status = 400, description = "Parameters that do not check out, or not a name", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
                (status = 404, description = "No such definition", body = ErrorBody),
                (status = 409, description = "A job a step uses does not exist, or a step's command needs approval (`approve: true`)", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $start(
            actor: Actor,
            State(app): State<Arc<App>>,
            Path(name): Path<String>,
            Body(req): Body<StartFlow>,
        ) -> Result<Json<FlowRun>> {
            Ok(Json(app.flows().start(&actor, $kind, &name, req).await?))
        }
    };
}

definition_routes!(
    DefKind::Job,
    list_jobs,
    apply_job,
    get_job,
    delete_job,
    start_job,
    "/api/v1/jobs",
    "/api/v1/jobs/{name}",
    "/api/v1/jobs/{name}/runs",
    "jobs",
    "job"
);
definition_routes!(
    DefKind::Workflow,
    list_workflows,
    apply_workflow,
    get_workflow,
    delete_workflow,
    start_workflow,
    "/api/v1/workflows",
    "/api/v1/workflows/{name}",
    "/api/v1/workflows/{name}/runs",
    "workflows",
    "workflow"
);

/// Runs of jobs and workflows, newest first.
#[utoipa::path(get, path = "/api/v1/workflow-runs", tag = "workflows",
    params(FlowRunsQuery),
    responses(
        (status = 200, description = "Runs, newest first (without their steps)", body = Vec<FlowRun>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list_runs(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<FlowRunsQuery>,
) -> Result<Json<Vec<FlowRun>>> {
    Ok(Json(app.flows().runs(q).await?))
}

/// One run with every step's state, attempts, timing, outputs.
#[utoipa::path(get, path = "/api/v1/workflow-runs/{id}", tag = "workflows",
    params(("id" = String, Path, description = "The run's id, or a unique prefix of at least 6 characters")),
    responses(
        (status = 200, description = "The run with its steps and their attempts", body = FlowRun),
        (status = 400, description = "A prefix too short or matching several runs", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn get_run(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<FlowRun>> {
    Ok(Json(app.flows().run(&id).await?))
}

/// Cancels a run: steps under way are cancelled, steps not started never start; `always`
/// steps still run.
#[utoipa::path(post, path = "/api/v1/workflow-runs/{id}/cancel", tag = "workflows",
    params(("id" = String, Path, description = "The run's id, or a unique prefix of at least 6 characters")),
    responses(
        (status = 200, description = "The run", body = FlowRun),
        (status = 400, description = "A prefix too short or matching several runs", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn cancel_run(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<FlowRun>> {
    Ok(Json(app.flows().cancel(&actor, &id).await?))
}
