//! `/api/v1/agents`: the machines of the fleet.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{
    Agent, AgentsQuery, BulkLabelEdit, ErrorBody, FleetSummary, LabelEdit, SummaryQuery,
};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::convert;
use crate::error::Result;
use crate::fleet::Actor;

fn answer(app: &App, a: herd_store::AgentRow) -> Agent {
    let online = app.fleet().is_online(&a.id);
    convert::agent(a, online)
}

/// Machines of the fleet, by name, with their online state, labels, facts and metrics:
/// those a selector picks, revoked ones too with `all=true`.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    params(AgentsQuery),
    responses(
        (status = 200, description = "The machines (revoked ones only with all=true)", body = Vec<Agent>),
        (status = 400, description = "A selector that does not parse, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<AgentsQuery>,
) -> Result<Json<Vec<Agent>>> {
    let agents = app
        .fleet()
        .list(q.target.as_deref(), q.all.unwrap_or(false))
        .await?;
    Ok(Json(agents.into_iter().map(|a| answer(&app, a)).collect()))
}

/// Sets and removes labels of every machine a selector picks, in one change (one audit
/// entry per machine).
#[utoipa::path(post, path = "/api/v1/labels", tag = "agents",
    request_body = BulkLabelEdit,
    responses(
        (status = 200, description = "The machines with their labels now", body = Vec<Agent>),
        (status = 400, description = "A selector or label that does not parse, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 409, description = "No machine matches the selector", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn label_many(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(edit): Body<BulkLabelEdit>,
) -> Result<Json<Vec<Agent>>> {
    // A scoped key edits only machines within its scope.
    if actor.scope.is_some() {
        let picked = app.policy().machines(std::slice::from_ref(&edit.target))?;
        app.policy().within_scope(&actor, &picked)?;
    }
    let agents = app
        .fleet()
        .label_many(&actor, &edit.target, &edit.set, &edit.remove)
        .await?;
    Ok(Json(agents.into_iter().map(|a| answer(&app, a)).collect()))
}

/// One machine, by name or id (revoked ones too).
#[utoipa::path(get, path = "/api/v1/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "The machine's name or agent id")),
    responses(
        (status = 200, description = "The machine", body = Agent),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn get(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<Agent>> {
    let a = app.fleet().agent(&key).await?;
    Ok(Json(answer(&app, a)))
}

/// Sets and removes a machine's labels (operator edits win over what its agent reports).
#[utoipa::path(post, path = "/api/v1/agents/{agent}/labels", tag = "agents",
    params(("agent" = String, Path, description = "The machine's name or agent id")),
    request_body = LabelEdit,
    responses(
        (status = 200, description = "The machine with its labels now", body = Agent),
        (status = 400, description = "A label that does not follow key=value, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn label(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    Body(edit): Body<LabelEdit>,
) -> Result<Json<Agent>> {
    app.policy().machine_within_scope(&actor, &key)?;
    let a = app
        .fleet()
        .label(&actor, &key, &edit.set, &edit.remove)
        .await?;
    Ok(Json(answer(&app, a)))
}

/// Revokes a machine's credential: its session ends and it can no longer connect.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/revoke", tag = "agents",
    params(("agent" = String, Path, description = "The machine's name or agent id")),
    responses(
        (status = 200, description = "The machine, revoked", body = Agent),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn revoke(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<Agent>> {
    app.policy().machine_within_scope(&actor, &key)?;
    let a = app.fleet().revoke(&actor, &key).await?;
    Ok(Json(answer(&app, a)))
}

/// Counts of the fleet: every machine, those online, and those a selector picks (what a run
/// with it would target) — without listing them.
#[utoipa::path(get, path = "/api/v1/fleet/summary", tag = "agents",
    params(SummaryQuery),
    responses(
        (status = 200, description = "The counts", body = FleetSummary),
        (status = 400, description = "A selector that does not parse, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn summary(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<SummaryQuery>,
) -> Result<Json<FleetSummary>> {
    Ok(Json(app.fleet().summary(q.target.as_deref())?))
}
