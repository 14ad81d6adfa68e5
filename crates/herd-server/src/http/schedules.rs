//! `/api/v1/schedules`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_api::{
    ErrorBody, FiresQuery, NewSchedule, NextFire, NextQuery, Schedule, ScheduleEdit, ScheduleFire,
};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;

/// Every schedule by name, with its next fire and its latest fire.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    responses(
        (status = 200, description = "Every schedule", body = Vec<Schedule>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<Schedule>>> {
    Ok(Json(app.schedules().list().await?))
}

/// Adds a schedule: when it fires (exactly one of `cron`, `every`, `at`) and what it starts.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules",
    request_body = NewSchedule,
    responses(
        (status = 200, description = "The schedule, added", body = Schedule),
        (status = 400, description = "A time that does not read, a zone that does not exist, or a job or workflow that does not", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 409, description = "A schedule of that name exists, or what it runs needs approval (`target.approve`)", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn add(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<NewSchedule>,
) -> Result<Json<Schedule>> {
    Ok(Json(app.schedules().add(&actor, req).await?))
}

/// Edits a schedule in place: the body replaces its definition (as an add takes it; with no
/// `cron`, `every` or `at` it keeps when it fires, without `paused` it stays as it is). The
/// same id, its fires kept; its next fire is the first after now under the new definition.
#[utoipa::path(put, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    request_body = ScheduleEdit,
    responses(
        (status = 200, description = "The schedule, edited", body = Schedule),
        (status = 400, description = "Not a name, a body naming another schedule, a time that does not read, a zone that does not exist, or a job or workflow that does not", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or what it runs is outside the key's scope or forbidden by the command policy", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "What it runs needs approval (`target.approve`), or the schedule was edited meanwhile", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn edit(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Body(req): Body<ScheduleEdit>,
) -> Result<Json<Schedule>> {
    Ok(Json(app.schedules().edit(&actor, &name, req).await?))
}

macro_rules! named_route {
    ($method:ident, $fn:ident, $path:literal, $doc:literal, $ok:literal, $out:ty, |$actor:ident, $app:ident, $name:ident| $body:expr) => {
        #[doc = $doc]
        #[utoipa::path($method, path = $path, tag = "schedules",
            params(("name" = String, Path, description = "The schedule's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
            responses(
                (status = 200, description = $ok, body = $out),
                (status = 400, description = "Not a name", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 404, description = "No such schedule", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $fn(
            $actor: Actor,
            State($app): State<Arc<App>>,
            Path($name): Path<String>,
        ) -> Result<Json<$out>> {
            Ok(Json($body))
        }
    };
    (changes $method:ident, $fn:ident, $path:literal, $doc:literal, $ok:literal, $out:ty, |$actor:ident, $app:ident, $name:ident| $body:expr) => {
        #[doc = $doc]
        #[utoipa::path($method, path = $path, tag = "schedules",
            params(("name" = String, Path, description = "The schedule's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
            responses(
                (status = 200, description = $ok, body = $out),
                (status = 400, description = "Not a name", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 403, description = "A viewer key (it reads only)", body = ErrorBody),
                (status = 404, description = "No such schedule", body = ErrorBody),
                (status = 500, description = "The server failed", body = ErrorBody),
                (status = 503, description = "The server is shutting down", body = ErrorBody),
            ))]
        pub async fn $fn(
            $actor: Actor,
            State($app): State<Arc<App>>,
            Path($name): Path<String>,
        ) -> Result<Json<$out>> {
            Ok(Json($body))
        }
    };
}

named_route!(
    get,
    get,
    "/api/v1/schedules/{name}",
    "One schedule.",
    "The schedule",
    Schedule,
    |_actor, app, name| app.schedules().get(&name).await?
);
named_route!(
    changes delete,
    remove,
    "/api/v1/schedules/{name}",
    "Removes a schedule and its fires; what they started stays.",
    "The schedule, removed",
    Schedule,
    |actor, app, name| app.schedules().remove(&actor, &name).await?
);
named_route!(
    changes post,
    pause,
    "/api/v1/schedules/{name}/pause",
    "Pauses a schedule: it does not fire until resumed.",
    "The schedule",
    Schedule,
    |actor, app, name| app.schedules().set_paused(&actor, &name, true).await?
);
named_route!(
    changes post,
    resume,
    "/api/v1/schedules/{name}/resume",
    "Resumes a schedule: it fires next at its first fire time after now (times passed while paused are not misfires).",
    "The schedule",
    Schedule,
    |actor, app, name| app.schedules().set_paused(&actor, &name, false).await?
);

/// A schedule's fires, newest first: when each was due and handled, what it started and
/// that one's state, or why it started nothing.
#[utoipa::path(get, path = "/api/v1/schedules/{name}/fires", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), FiresQuery),
    responses(
        (status = 200, description = "Fires, newest first", body = Vec<ScheduleFire>),
        (status = 400, description = "Not a name, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn fires(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<FiresQuery>,
) -> Result<Json<Vec<ScheduleFire>>> {
    Ok(Json(app.schedules().fires(&name, q.limit).await?))
}

/// A schedule's next fire times, in unix ms and in its zone.
#[utoipa::path(get, path = "/api/v1/schedules/{name}/next", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), NextQuery),
    responses(
        (status = 200, description = "The next fire times, earliest first", body = Vec<NextFire>),
        (status = 400, description = "Not a name, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn next(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<NextQuery>,
) -> Result<Json<Vec<NextFire>>> {
    Ok(Json(app.schedules().next(&name, q.n).await?))
}
