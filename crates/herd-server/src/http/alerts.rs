//! `/api/v1/alerts`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{Alert, AlertRule, AlertsQuery, ErrorBody, NewAlertRule};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;

/// Open alerts, newest first (`?all=true`: cleared ones too).
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts, newest first", body = Vec<Alert>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<AlertsQuery>,
) -> Result<Json<Vec<Alert>>> {
    Ok(Json(
        app.alerts().list(q.all.unwrap_or(false), q.limit).await?,
    ))
}

/// Every alert rule, by name.
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts",
    responses(
        (status = 200, description = "Every rule", body = Vec<AlertRule>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn rules(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<AlertRule>>> {
    Ok(Json(app.alerts().rules()))
}

/// Adds an alert rule: thresholds on one metric of the machines a selector picks, where its
/// alerts are sent, and the runbook job started when one is raised.
#[utoipa::path(post, path = "/api/v1/alerts/rules", tag = "alerts",
    request_body = NewAlertRule,
    responses(
        (status = 200, description = "The rule, added", body = AlertRule),
        (status = 400, description = "Thresholds, a margin, a duration, a selector or a notification URL that does not check out, or a runbook job that does not exist", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only)", body = ErrorBody),
        (status = 409, description = "A rule of that name exists, or the server holds as many rules as it keeps", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn add_rule(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<NewAlertRule>,
) -> Result<Json<AlertRule>> {
    Ok(Json(app.alerts().add_rule(&actor, req).await?))
}

/// Removes an alert rule; its open alerts clear.
#[utoipa::path(delete, path = "/api/v1/alerts/rules/{name}", tag = "alerts",
    params(("name" = String, Path, description = "The rule's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses(
        (status = 200, description = "The rule, removed", body = AlertRule),
        (status = 400, description = "Not a name", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only)", body = ErrorBody),
        (status = 404, description = "No such rule", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn remove_rule(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<AlertRule>> {
    Ok(Json(app.alerts().remove_rule(&actor, &name).await?))
}
