//! `/api/v1/policy`: the command policy, stored as versions (set, show, history), and what it
//! does with a command (check). Setting it takes an admin key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{ErrorBody, PolicyCheck, PolicyQuery, PolicyVersion, PutPolicy, StepCheck};

use super::extract::{Body, Query};
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;

/// What the command policy does with a command: its class (`safe | caution | dangerous |
/// forbidden`), the decision (`allow | approve | deny`) and the reasons, under the current
/// policy for a role (default: the caller's) on the machines `targets` pick. Nothing runs.
#[utoipa::path(post, path = "/api/v1/policy/check", tag = "policy",
    request_body = PolicyCheck,
    responses(
        (status = 200, description = "The class, the decision and the reasons", body = StepCheck),
        (status = 400, description = "A body that does not decode, or targets that do not parse", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn check(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<PolicyCheck>,
) -> Result<Json<StepCheck>> {
    let role = match req.role {
        Some(r) => crate::ask::role(Some(r)),
        None => actor.role,
    };
    let machines = app.policy().machines(&req.targets)?;
    let (_, check) = app.policy().check(role, &req.command, &machines).await?;
    Ok(Json(check))
}

/// Stores a new version of the command policy (YAML or JSON text of a policy set), checked
/// first; audited `policy.set` with its version. Every server of the database uses it
/// within seconds.
#[utoipa::path(put, path = "/api/v1/policy", tag = "policy",
    request_body = PutPolicy,
    responses(
        (status = 200, description = "The version stored", body = PolicyVersion),
        (status = 400, description = "A policy that does not check out (the path of the bad field), or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 409, description = "Another version was stored at the same moment", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn set(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<PutPolicy>,
) -> Result<Json<PolicyVersion>> {
    Ok(Json(app.policy().set(&actor, &req.text).await?))
}

/// The current command policy, or a stored version (`version=0`: the built-in default).
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    params(PolicyQuery),
    responses(
        (status = 200, description = "The policy", body = PolicyVersion),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn show(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<PolicyQuery>,
) -> Result<Json<PolicyVersion>> {
    Ok(Json(app.policy().show(q.version).await?))
}

/// Every stored version of the command policy, newest first.
#[utoipa::path(get, path = "/api/v1/policy/history", tag = "policy",
    responses(
        (status = 200, description = "The versions", body = Vec<PolicyVersion>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn history(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<PolicyVersion>>> {
    Ok(Json(app.policy().history().await?))
}
