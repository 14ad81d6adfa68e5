//! `/api/v1/runs`: what people asked for, fanned out over machines.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_api::{ErrorBody, ListQuery, Run, RunQuery, RunRequest, RunWithTasks, RunsQuery};

use super::extract::{Body, Path, Query};
use crate::app::App;
use crate::convert;
use crate::error::{Result, ServerError};
use crate::fleet::Actor;
use crate::runs::NewRunRequest;

/// Runs a command on the machines the targets select. Machines that are offline get a
/// `lost` task at once, so the run names every machine that did not answer.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs",
    params(RunQuery),
    request_body = RunRequest,
    responses(
        (status = 201, description = "The run and its tasks (finished, with `wait=true`)", body = RunWithTasks),
        (status = 400, description = "No command, no target, a copy of a blob the server does not hold whole or to a relative path, a fetch of a relative path or together with a copy or script, a selector that does not parse, a concurrency of 0, a name in both env and secret_env (or secret_vars), a secret_vars variable that does not exist, wait=true with start_on_attach, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The command policy denies the command, the key is a viewer key, or a machine is outside the key's scope", body = ErrorBody),
        (status = 409, description = "No machine matches the targets now (or none has joined yet), or the command needs approval (`approve: true`)", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn create(
    actor: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<RunQuery>,
    Body(req): Body<RunRequest>,
) -> Result<(StatusCode, Json<RunWithTasks>)> {
    let run = create_run(&app, &actor, req, q.wait).await?;
    let tasks = app.runs().tasks_of_run(&run.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(convert::run_with_tasks(run, tasks)),
    ))
}

/// Creates the run `req` asks for (of `POST /api/v1/runs` and of `/api/v1/runs/start`).
pub(crate) async fn create_run(
    app: &App,
    actor: &Actor,
    mut req: RunRequest,
    wait: bool,
) -> Result<herd_store::RunRow> {
    let mut gate = crate::policy::Gate::new(actor, req.approve);
    if !req.spec.copy.is_empty() {
        req.command = copy_command(app, &req).await?;
        gate.commands = req.spec.script.is_some();
    }
    if req.spec.fetch.is_some() {
        req.command = fetch_command(&req)?;
        gate.commands = false;
    }
    // Values of the server's variables join the secret environment here, in memory only.
    for (name, var) in std::mem::take(&mut req.secret_vars) {
        if req.secret_env.contains_key(&name) {
            return Err(ServerError::BadRequest(format!(
                "{name} is given both as secret_env and as secret_vars — give it once"
            )));
        }
        let value = app.vars().reveal(&var).await?;
        req.secret_env.insert(name, value);
    }
    app.runs()
        .create(
            &actor.name,
            NewRunRequest {
                id: None,
                command: req.command,
                targets: req.targets,
                all: req.all,
                start_on_attach: req.start_on_attach,
                secret_env: req.secret_env,
                spec: req.spec,
                gate: Some(gate),
            },
            wait,
        )
        .await
}

/// Checks the files of a copy run (each a blob held whole, to an absolute path; no terminal
/// or stdin) and describes the run as its command, which its audit entry records.
async fn copy_command(app: &App, req: &RunRequest) -> Result<String> {
    if req.spec.interactive || req.spec.tty {
        return Err(ServerError::BadRequest(
            "a copy run takes no stdin and no terminal — drop interactive and tty".into(),
        ));
    }
    let mut parts = Vec::with_capacity(req.spec.copy.len());
    for f in &req.spec.copy {
        f.check().map_err(ServerError::BadRequest)?;
        app.blobs().use_for_run(&f.digest).await?;
        parts.push(format!(
            "{} ({} bytes, sha256 {}, mode {:o})",
            f.name, f.size, f.digest, f.mode
        ));
    }
    let dest = req.spec.copy.first().map(|f| f.dest.as_str()).unwrap_or("");
    Ok(format!("herd cp {} to {dest}", parts.join(", ")))
}

/// Checks the file of a fetch run (an absolute path; nothing else to do, no terminal or
/// stdin) and describes the run as its command, which its audit entry records.
fn fetch_command(req: &RunRequest) -> Result<String> {
    let Some(f) = &req.spec.fetch else {
        return Err(ServerError::Internal("not a fetch run".into()));
    };
    f.check().map_err(ServerError::BadRequest)?;
    if req.spec.interactive || req.spec.tty {
        return Err(ServerError::BadRequest(
            "a fetch run takes no stdin and no terminal — drop interactive and tty".into(),
        ));
    }
    if !req.spec.copy.is_empty() || req.spec.script.is_some() {
        return Err(ServerError::BadRequest(
            "a fetch run only fetches — copy files and run scripts in runs of their own".into(),
        ));
    }
    Ok(format!("herd fetch {}", f.path))
}

/// Recent runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs",
    params(RunsQuery),
    responses(
        (status = 200, description = "Runs, without their tasks", body = Vec<Run>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<Run>>> {
    let filter = super::list_filter(
        ListQuery {
            limit: q.limit,
            since: q.since,
            machine: q.machine,
            who: q.who,
        },
        q.state.map(|s| s.as_str().to_string()),
    );
    let runs = app.runs().runs(&filter).await?;
    Ok(Json(runs.into_iter().map(convert::run).collect()))
}

/// A run with its tasks.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run and its tasks", body = RunWithTasks),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn get(
    _: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<RunWithTasks>> {
    let runs = app.runs();
    let run = runs.run(&id).await?;
    let tasks = runs.tasks_of_run(&run.id).await?;
    Ok(Json(convert::run_with_tasks(run, tasks)))
}

/// Cancels every task of a run: nothing more starts, waiting tasks end `cancelled`, running
/// ones get SIGTERM, then SIGKILL after a grace period.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run, its cancellation requested", body = Run),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn cancel(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Run>> {
    let run = app.runs().cancel_run(&actor.name, &id).await?;
    Ok(Json(convert::run(run)))
}
