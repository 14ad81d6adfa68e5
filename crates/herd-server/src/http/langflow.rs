//! `/api/v1/langflow`: sources, syncs, flows and flow runs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{
    ErrorBody, FlowsQuery, LangFlow, NewSource, Run, RunFlow, Source, SyncQuery, SyncReport,
};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::convert;
use crate::error::{Result, ServerError};
use crate::fleet::Actor;

/// Every LangFlow source, with how many flows its last sync found.
#[utoipa::path(get, path = "/api/v1/langflow/sources", tag = "langflow",
    responses(
        (status = 200, description = "Every source", body = Vec<Source>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn sources(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<Source>>> {
    Ok(Json(app.langflow().sources().await?))
}

/// Adds a LangFlow source once its URL and API key work (the key is kept encrypted), then
/// lists its flows.
#[utoipa::path(post, path = "/api/v1/langflow/sources", tag = "langflow",
    request_body = NewSource,
    responses(
        (status = 200, description = "The source, added", body = Source),
        (status = 400, description = "Not a name or URL, or LangFlow refused the key or cannot be reached (the answer names the source)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 409, description = "A source of that name exists", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn add_source(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<NewSource>,
) -> Result<Json<Source>> {
    Ok(Json(app.langflow().add_source(&actor.name, req).await?))
}

/// Removes a source and the flows listed from it.
#[utoipa::path(delete, path = "/api/v1/langflow/sources/{name}", tag = "langflow",
    params(("name" = String, Path, description = "The source's name")),
    responses(
        (status = 200, description = "The source, removed", body = Source),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn remove_source(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<Source>> {
    Ok(Json(
        app.langflow().remove_source(&actor.name, &name).await?,
    ))
}

/// Lists the flows of one source (or of every source) over LangFlow's API and records what
/// changed; a flow no longer listed is marked removed. A source that cannot be listed says
/// why in its report.
#[utoipa::path(post, path = "/api/v1/langflow/sync", tag = "langflow",
    params(SyncQuery),
    responses(
        (status = 200, description = "One report per source", body = Vec<SyncReport>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn sync(
    actor: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<SyncQuery>,
) -> Result<Json<Vec<SyncReport>>> {
    Ok(Json(
        app.langflow()
            .sync(&actor.name, q.source.as_deref())
            .await?,
    ))
}

/// The flows syncs found (removed ones with when), by source and name.
#[utoipa::path(get, path = "/api/v1/langflow/flows", tag = "langflow",
    params(FlowsQuery),
    responses(
        (status = 200, description = "Flows", body = Vec<LangFlow>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn flows(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<FlowsQuery>,
) -> Result<Json<Vec<LangFlow>>> {
    Ok(Json(app.langflow().flows(q.source.as_deref()).await?))
}

/// One flow (by name, id or endpoint name): its inputs, outputs, components and the
/// parameters a tweak may set.
#[utoipa::path(get, path = "/api/v1/langflow/flows/{name}", tag = "langflow",
    params(("name" = String, Path, description = "The flow's name, id or endpoint name"), FlowsQuery),
    responses(
        (status = 200, description = "The flow", body = LangFlow),
        (status = 400, description = "A name found on several sources (give source)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn flow(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<FlowsQuery>,
) -> Result<Json<LangFlow>> {
    Ok(Json(app.langflow().flow(&name, q.source.as_deref()).await?))
}

/// Runs a flow: a run of `herd helper langflow` on a machine (the server's own agent unless
/// `targets` says), whose task makes the call, prints its request and answer, and outputs the
/// answer's text (`text`), its session (`session_id`) and the whole answer (`response`).
#[utoipa::path(post, path = "/api/v1/langflow/flows/{name}/runs", tag = "langflow",
    params(("name" = String, Path, description = "The flow's name, id or endpoint name")),
    request_body = RunFlow,
    responses(
        (status = 200, description = "The run, started", body = Run),
        (status = 400, description = "Tweaks that name no component or parameter, a timeout that does not read, a name on several sources, or no machine to call from", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 409, description = "The flow was removed upstream, the source's circuit is open, or no machine matches", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn run(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Body(req): Body<RunFlow>,
) -> Result<Json<Run>> {
    let run = app
        .langflow()
        .start(
            &actor.name,
            &name,
            req,
            None,
            Some(crate::policy::Gate::new(&actor, false)),
        )
        .await?
        .ok_or_else(|| ServerError::Internal("a flow run without a fire was not created".into()))?;
    Ok(Json(convert::run(run)))
}
