//! `/api/v1/runs/{id}/attach` and `/api/v1/tasks/{id}/attach`: the WebSocket upgrade of a
//! watcher (see `watch`); `/api/v1/runs/start`: a run created by the first message of its
//! watcher's WebSocket, so `herd run` makes one connection and no separate request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use herd_api::{AttachQuery, ErrorBody, RunRequest};
use herd_ws::Incoming;

use super::extract::{Path, Query};
use crate::app::App;
use crate::error::{Result, ServerError};
use crate::fleet::Actor;
use crate::watch;
use crate::ws::Sock;

/// How long `/api/v1/runs/start` waits for its run request.
const REQUEST_WAIT: Duration = Duration::from_secs(30);

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
    security(("bearer" = []), ("api_key" = [])),
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
    security(("bearer" = []), ("api_key" = [])),
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

/// Creates a run and watches it, over one WebSocket: the run request is its first message.
#[utoipa::path(get, path = "/api/v1/runs/start", tag = "runs",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("Upgrade" = inline(UpgradeTo), Header, description = "A WebSocket upgrade"),
        ("Connection" = inline(ConnectionUpgrade), Header, description = "A WebSocket upgrade"),
        ("Sec-WebSocket-Version" = inline(WebSocketVersion), Header, description = "WebSocket version 13"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's handshake nonce"),
    ),
    responses(
        (status = 101, description = "WebSocket: send the run request first, as one text message (a RunRequest, the body of POST /api/v1/runs; start_on_attach is taken as true: the tasks start once this watcher is attached). Then as for /api/v1/runs/{id}/attach: hello (the created run and its tasks), output frames, task, progress, omitted, end; stdin as binary frames, eof, cancel and resize as text. A run that cannot be created gets one error message (what POST /api/v1/runs would answer), then the connection closes"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn start_run(
    actor: Actor,
    State(app): State<Arc<App>>,
    req: Request,
) -> Result<Response> {
    Ok(crate::ws::upgrade(req, move |mut sock| async move {
        let req = match run_request(&mut sock).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let _ = sock.close().await;
                return;
            }
            Err(e) => return watch::refuse(sock, e.to_string()).await,
        };
        match super::runs::create_run(&app, &actor, req, false).await {
            Ok(run) => watch::watch(app, actor, run.id, None, AttachQuery::default(), sock).await,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(error = %herd_core::Escaped(&e.to_string()), "creating a run failed");
                }
                watch::refuse(sock, e.to_string()).await
            }
        }
    }))
}

/// The run request that opens `/api/v1/runs/start` (held for its watcher); `None` when the
/// client went away first.
async fn run_request(sock: &mut Sock) -> Result<Option<RunRequest>> {
    let deadline = tokio::time::Instant::now() + REQUEST_WAIT;
    loop {
        let Ok(msg) = tokio::time::timeout_at(deadline, sock.recv()).await else {
            return Err(ServerError::BadRequest(format!(
                "no run request within {}s — send it as the first message",
                REQUEST_WAIT.as_secs()
            )));
        };
        match msg {
            None | Some(Err(_)) | Some(Ok(Incoming::Close)) => return Ok(None),
            Some(Ok(Incoming::Ping(p))) => {
                if sock.send_pong(&p).await.is_err() {
                    return Ok(None);
                }
            }
            Some(Ok(Incoming::Text(t))) => {
                let mut req: RunRequest = super::extract::decode_text(&t)?;
                req.start_on_attach = true;
                return Ok(Some(req));
            }
            Some(Ok(Incoming::Binary(_))) => {
                return Err(ServerError::BadRequest(
                    "the first message must be the run request, as JSON text — see /api/v1/openapi.json".into(),
                ));
            }
        }
    }
}
