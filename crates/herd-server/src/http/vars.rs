//! `/api/v1/vars`: variables and secrets. A secret is written and never answered (its value
//! is null in every answer).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{ErrorBody, SetVar, Var, VarsQuery};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;

/// Every variable of a scope (global unless asked), by key; secrets without their values.
#[utoipa::path(get, path = "/api/v1/vars", tag = "vars",
    params(VarsQuery),
    responses(
        (status = 200, description = "Every variable", body = Vec<Var>),
        (status = 400, description = "Not a scope", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<VarsQuery>,
) -> Result<Json<Vec<Var>>> {
    Ok(Json(app.vars().list(q.scope.as_deref()).await?))
}

/// One variable; a secret without its value.
#[utoipa::path(get, path = "/api/v1/vars/{key}", tag = "vars",
    params(("key" = String, Path, description = "The variable's name", pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    responses(
        (status = 200, description = "The variable", body = Var),
        (status = 400, description = "Not a variable name", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such variable", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn get(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<Var>> {
    Ok(Json(app.vars().get(&key).await?))
}

/// Sets a variable (a secret is sealed before it is stored); audited without its value.
#[utoipa::path(put, path = "/api/v1/vars/{key}", tag = "vars",
    params(("key" = String, Path, description = "The variable's name: 1 to 128 letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    request_body = SetVar,
    responses(
        (status = 200, description = "The variable as set (a secret without its value)", body = Var),
        (status = 400, description = "Not a variable name, a value over 64 KiB, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn set(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    Body(req): Body<SetVar>,
) -> Result<Json<Var>> {
    Ok(Json(app.vars().set(&actor, &key, req).await?))
}

/// Deletes a variable; answers it as it was (a secret without its value).
#[utoipa::path(delete, path = "/api/v1/vars/{key}", tag = "vars",
    params(("key" = String, Path, description = "The variable's name", pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    responses(
        (status = 200, description = "The variable, deleted", body = Var),
        (status = 400, description = "Not a variable name", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such variable", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn delete(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<Var>> {
    Ok(Json(app.vars().delete(&actor, &key).await?))
}
