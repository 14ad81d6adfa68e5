//! `/api/v1/runs/{id}/attach` and `/api/v1/tasks/{id}/attach`: the WebSocket upgrade of a
//! watcher (see `watch`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use herd_api::{AttachQuery, ErrorBody};

use super::extract::{Path, Query};
use crate::app::App;
use crate::error::Result;
use crate::fleet::Actor;
use crate::watch;

/// `Upgrade: websocket`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // it only describes a header in the document
enum UpgradeTo {
    #[serde(rename = "websocket")]
    Websocket,
}

/// `Connection: Upgrade`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // it only describes a header in the document
enum ConnectionUpgrade {
    Upgrade,
}

/// `Sec-WebSocket-Version: 13`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // it only describes a header in the document
enum WebSocketVersion {
    #[serde(rename = "13")]
    V13,
}

/// Watches a run: its tasks' output and final states; stdin goes to every task.
#[utoipa::path(get, path = "/api/v1/runs/{id}/attach", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        AttachQuery,
        ("Upgrade" = inline(UpgradeTo), Header, description = "A WebSocket upgrade"),
        ("Connection" = inline(ConnectionUpgrade), Header, description = "A WebSocket upgrade"),
        ("Sec-WebSocket-Version" = inline(WebSocketVersion), Header, description = "WebSocket version 13"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's handshake nonce"),
    ),
    responses(
        (status = 101, description = "WebSocket: hello, output frames, task, progress, omitted, end (see herd-api's ServerMessage); send stdin as binary frames, {\"type\":\"eof\"} and {\"type\":\"cancel\"} as text"),
        (status = 400, description = "Not a WebSocket upgrade, or a request that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn attach_run(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    req: Request,
) -> Result<Response> {
    let run = app.runs().run(&id).await?;
    Ok(crate::ws::upgrade(req, move |sock| {
        watch::watch(app, actor, run.id, None, q, sock)
    }))
}

/// Watches one task: its output and final state; stdin goes to it.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/attach", tag = "tasks",
    params(
        ("id" = String, Path, description = "The task's id"),
        AttachQuery,
        ("Upgrade" = inline(UpgradeTo), Header, description = "A WebSocket upgrade"),
        ("Connection" = inline(ConnectionUpgrade), Header, description = "A WebSocket upgrade"),
        ("Sec-WebSocket-Version" = inline(WebSocketVersion), Header, description = "WebSocket version 13"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's handshake nonce"),
    ),
    responses(
        (status = 101, description = "WebSocket, as for a run, with the one task"),
        (status = 400, description = "Not a WebSocket upgrade, or a request that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn attach_task(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    req: Request,
) -> Result<Response> {
    let task = app.runs().task(&id).await?;
    Ok(crate::ws::upgrade(req, move |sock| {
        watch::watch(app, actor, task.run_id, Some(task.id), q, sock)
    }))
}
