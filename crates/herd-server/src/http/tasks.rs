//! `/api/v1/tasks`: one machine's part of a run, and its stored output.

use std::sync::Arc;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use herd_api::{
    ErrorBody, FETCHED_MODE, FETCHED_SHA256, FETCHED_SIZE, FetchedQuery, ListQuery, OutputQuery,
    Task, TaskInput, TasksQuery,
};
use herd_outlog::{Chunk, Cursor};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::convert;
use crate::error::{Result, ServerError};
use crate::fleet::Actor;

/// Bytes of stored output read at a time.
const READ_CHUNK: usize = 1 << 20;

/// Recent tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks",
    params(TasksQuery),
    responses(
        (status = 200, description = "Tasks", body = Vec<Task>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<TasksQuery>,
) -> Result<Json<Vec<Task>>> {
    let filter = super::list_filter(
        ListQuery {
            limit: q.limit,
            since: q.since,
            machine: q.machine,
            who: q.who,
        },
        q.state.map(|s| s.as_str().to_string()),
    );
    let tasks = app.runs().recent_tasks(&filter).await?;
    Ok(Json(tasks.into_iter().map(convert::task).collect()))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn get(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Task>> {
    Ok(Json(convert::task(app.runs().task(&id).await?)))
}

/// Cancels a task: SIGTERM to its processes, SIGKILL after a grace period.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task as it stands now", body = Task),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn cancel(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Task>> {
    Ok(Json(convert::task(
        app.runs().cancel_task(&actor.name, &id).await?,
    )))
}

/// Writes to a running task's stdin (or terminal): the answer to the prompt its supervision
/// shows. The data is never stored or logged; the audit entry `task.input` records its
/// length only.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/input", tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    request_body = TaskInput,
    responses(
        (status = 200, description = "The input went to the task's agent; the task as it stands", body = Task),
        (status = 400, description = "More than 65,536 bytes, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only)", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not running, runs without stdin (its run is neither interactive nor tty), or its agent is away", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn input(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Body(req): Body<TaskInput>,
) -> Result<Json<Task>> {
    Ok(Json(convert::task(
        app.runs().task_input(&actor.name, &id, req).await?,
    )))
}

/// The stored output of a task as one byte stream (stdout and stderr as written, or one of
/// them); a stretch cut over the storage cap is marked in-line.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/output", tag = "tasks",
    params(("id" = String, Path, description = "The task's id"), OutputQuery),
    responses(
        (status = 200, description = "The output", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "An unknown stream, or a request that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn output(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
) -> Result<Response> {
    let task = app.runs().task(&id).await?;
    let want: Option<u8> = q.stream.map(|s| s.byte());
    let pos = task.output;
    let outlog = app.outlog().clone();
    let body = async_stream::stream! {
        let mut cursor = Cursor::default();
        loop {
            let (ol, tid) = (outlog.clone(), task.id.clone());
            let r = tokio::task::spawn_blocking(move || ol.read(&tid, pos, cursor, READ_CHUNK)).await;
            let (chunks, next) = match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => { yield Err(std::io::Error::other(e.to_string())); break; }
                Err(e) => { yield Err(std::io::Error::other(e.to_string())); break; }
            };
            if chunks.is_empty() {
                break;
            }
            cursor = next;
            for c in chunks {
                match c {
                    Chunk::Data { stream, data } => {
                        if want.is_none_or(|w| w == stream) {
                            yield Ok::<_, std::io::Error>(data);
                        }
                    }
                    Chunk::Omitted { bytes } => {
                        yield Ok(bytes::Bytes::from(format!("\n[herd: {bytes} bytes of output omitted: over the stored-output cap]\n")));
                    }
                }
            }
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        HttpBody::from_stream(body),
    )
        .into_response())
}

/// The file a machine sent for a fetch run (`herd fetch`), from byte `offset`, once it arrived
/// whole and its SHA-256 was verified. Its digest, whole length and mode are in the headers.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/fetched", tag = "tasks",
    params(("id" = String, Path, description = "The task's id"), FetchedQuery),
    responses(
        (status = 200, description = "The file from `offset`", content_type = "application/octet-stream", body = Vec<u8>,
            headers(
                ("x-herd-sha256" = String, description = "SHA-256 of the whole file, 64 lowercase hex digits"),
                ("x-herd-size" = u64, description = "Length of the whole file in bytes"),
                ("x-herd-mode" = String, description = "The file's permission bits on the machine, in octal"),
            )),
        (status = 400, description = "An offset past the file's end, or a request that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such task, or it has no fetched file (not a fetch task, not arrived yet, or pruned)", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn fetched(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<FetchedQuery>,
) -> Result<Response> {
    use tokio::io::AsyncSeekExt as _;
    let task = app.runs().task(&id).await?;
    let Some((mut file, meta)) = app.fetched().open(&task.id).await else {
        return Err(ServerError::NotFound(format!(
            "task {} has no fetched file: it is not a fetch task, its file has not arrived (see `herd tasks show {}`), or retention pruned it",
            task.id, task.id
        )));
    };
    if q.offset > meta.size {
        return Err(ServerError::BadRequest(format!(
            "offset {} is past the end of the {}-byte file",
            q.offset, meta.size
        )));
    }
    file.seek(std::io::SeekFrom::Start(q.offset))
        .await
        .map_err(|e| ServerError::Internal(format!("cannot read the fetched file: {e}")))?;
    let body = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, (meta.size - q.offset).to_string()),
            (
                header::HeaderName::from_static(FETCHED_SHA256),
                meta.digest.clone(),
            ),
            (
                header::HeaderName::from_static(FETCHED_SIZE),
                meta.size.to_string(),
            ),
            (
                header::HeaderName::from_static(FETCHED_MODE),
                format!("{:o}", meta.mode),
            ),
        ],
        HttpBody::from_stream(body),
    )
        .into_response())
}
