//! The REST API under `/api/v1`, plus `/healthz` and `/metrics`. Every `/api/v1` call except
//! the OpenAPI document needs an API key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herd_store::{AgentRow, Chunk, Cursor, RunRow, TaskRow, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::State;
use crate::auth::Actor;
use crate::dispatch::{self, RunRequest};
use crate::error::{Result, ServerError};
use crate::live::Change;

type St = AxState<Arc<State>>;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/{agent}", get(get_agent))
        .route("/api/v1/agents/{agent}/labels", post(label_agent))
        .route("/api/v1/agents/{agent}/revoke", post(revoke_agent))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/runs", get(list_runs).post(create_run))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/attach", get(crate::attach::attach_run))
        .route("/api/v1/tasks", get(list_tasks))
        .route("/api/v1/tasks/{id}", get(get_task))
        .route("/api/v1/tasks/{id}/cancel", post(cancel_task))
        .route("/api/v1/tasks/{id}/output", get(task_output))
        .route("/api/v1/tasks/{id}/attach", get(crate::attach::attach_task))
        .route("/api/v1/audit", get(audit))
        .fallback(|| async {
            ServerError::NotFound("no such API endpoint — see /api/v1/openapi.json".into())
        })
        .with_state(state)
}

async fn metrics(AxState(st): St) -> Response {
    let counts = st.store.task_counts().await.unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&counts),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Limit {
    limit: Option<i64>,
}

fn limit(q: &Limit) -> i64 {
    q.limit.unwrap_or(50).clamp(1, 10_000)
}

pub fn agent_json(st: &State, a: &AgentRow) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "online": st.hub.is_online(&a.id),
        "version": a.version,
        "labels": a.effective_labels(),
        "facts": a.facts_json(),
        "metrics": a.metrics_json(),
        "created_at": a.created_at,
        "last_seen": a.last_seen,
        "revoked_at": a.revoked_at,
    })
}

async fn find_agent(st: &State, key: &str) -> Result<AgentRow> {
    if let Some(a) = st.agents.by_name(key).or_else(|| st.agents.get(key)) {
        return Ok(a);
    }
    // Revoked agents are only in the store.
    if let Some(a) = st.store.agent(key).await? {
        return Ok(a);
    }
    Err(ServerError::NotFound(format!(
        "no agent named {key:?} — see `herd agents`"
    )))
}

async fn list_agents(_: Actor, AxState(st): St) -> Result<Json<Value>> {
    let agents = st.agents.list();
    Ok(Json(Value::Array(
        agents.iter().map(|a| agent_json(&st, a)).collect(),
    )))
}

async fn get_agent(_: Actor, AxState(st): St, Path(key): Path<String>) -> Result<Json<Value>> {
    let a = find_agent(&st, &key).await?;
    Ok(Json(agent_json(&st, &a)))
}

#[derive(Deserialize)]
struct LabelEdit {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn label_agent(
    actor: Actor,
    AxState(st): St,
    Path(key): Path<String>,
    Json(edit): Json<LabelEdit>,
) -> Result<Json<Value>> {
    let a = find_agent(&st, &key).await?;
    for (k, v) in &edit.set {
        herd_core::parse_label(&format!("{k}={v}"))
            .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    }
    let mut edits: BTreeMap<String, Option<String>> =
        serde_json::from_str(&a.server_labels).unwrap_or_default();
    for (k, v) in &edit.set {
        edits.insert(k.clone(), Some(v.clone()));
    }
    for k in &edit.remove {
        edits.insert(k.clone(), None);
    }
    let s = serde_json::to_string(&edits).map_err(|e| ServerError::Internal(e.to_string()))?;
    st.store.set_server_labels(&a.id, &s).await?;
    st.agents.set_server_labels(&a.id, s);
    st.store
        .audit(
            &actor.name,
            "agent.label",
            &format!("agent:{}", a.name),
            &json!({"set": edit.set, "remove": edit.remove}).to_string(),
        )
        .await?;
    let a = find_agent(&st, &a.id).await?;
    Ok(Json(agent_json(&st, &a)))
}

async fn revoke_agent(
    actor: Actor,
    AxState(st): St,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    let a = find_agent(&st, &key).await?;
    st.store.revoke_agent(&a.id, now_ms()).await?;
    st.agents.remove(&a.id);
    st.hub.disconnect(&a.id);
    st.store
        .audit(
            &actor.name,
            "agent.revoke",
            &format!("agent:{}", a.name),
            "{}",
        )
        .await?;
    let a = st
        .store
        .agent(&a.id)
        .await?
        .ok_or_else(|| ServerError::NotFound("agent".into()))?;
    Ok(Json(agent_json(&st, &a)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenReq {
    ttl_secs: Option<u64>,
    uses: Option<i64>,
}

async fn create_token(
    actor: Actor,
    AxState(st): St,
    Json(req): Json<TokenReq>,
) -> Result<Json<Value>> {
    let ttl = Duration::from_secs(req.ttl_secs.unwrap_or(3600));
    let uses = req.uses.unwrap_or(1);
    let (token, row) = crate::auth::create_join_token(&st, &actor.name, ttl, uses).await?;
    let mut cmd = format!("herd agent --server {} --token {token}", st.url);
    if let Some(fp) = &st.ca_fingerprint {
        cmd.push_str(&format!(" --ca-sha256 {fp}"));
    }
    cmd.push_str(" --name NAME --state-dir /var/lib/herd-agent");
    Ok(Json(json!({
        "token": token,
        "id": row.id,
        "expires_at": row.expires_at,
        "uses": row.uses_left,
        "server": st.url,
        "ca_sha256": st.ca_fingerprint,
        "join_command": cmd,
    })))
}

/// Join tokens without their secrets (shown only when created).
async fn list_tokens(_: Actor, AxState(st): St) -> Result<Json<Value>> {
    let now = now_ms();
    let rows = st.store.join_tokens().await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|t| {
                json!({
                    "id": t.id, "created_at": t.created_at, "created_by": t.created_by,
                    "expires_at": t.expires_at, "uses_left": t.uses_left,
                    "usable": t.uses_left > 0 && t.expires_at > now,
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyReq {
    name: Option<String>,
}

async fn create_key(actor: Actor, AxState(st): St, Json(req): Json<KeyReq>) -> Result<Json<Value>> {
    let name = req.name.unwrap_or_else(|| "unnamed".into());
    let (key, row) = crate::auth::create_api_key(&st, &actor.name, &name).await?;
    Ok(Json(
        json!({"key": key, "id": row.id, "name": row.name, "created_at": row.created_at}),
    ))
}

async fn list_keys(_: Actor, AxState(st): St) -> Result<Json<Value>> {
    Ok(Json(
        serde_json::to_value(st.store.api_keys().await?).unwrap_or(Value::Null),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunQuery {
    /// Answer only once every task has finished.
    wait: bool,
}

pub fn run_json(run: &RunRow, tasks: Option<&[TaskRow]>) -> Value {
    let spec: Value = serde_json::from_str(&run.spec).unwrap_or(Value::Null);
    let mut v = serde_json::to_value(run).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("spec".into(), spec);
        if let Some(tasks) = tasks {
            m.insert(
                "tasks".into(),
                serde_json::to_value(tasks).unwrap_or(Value::Null),
            );
        }
    }
    v
}

async fn create_run(
    actor: Actor,
    AxState(st): St,
    Query(q): Query<RunQuery>,
    Json(req): Json<RunRequest>,
) -> Result<Response> {
    let run_id = herd_core::new_id();
    // Subscribe before dispatching so a fast task cannot finish unseen.
    let rx = q.wait.then(|| st.live.watch_finish(&run_id));
    let res = dispatch::create_run(&st, &actor.name, req, run_id.clone()).await;
    let mut run = match res {
        Ok(r) => r,
        Err(e) => {
            drop(rx);
            st.live.release(&run_id);
            return Err(e);
        }
    };
    if let Some(mut rx) = rx {
        loop {
            if let Some(r) = st.store.run(&run_id).await?
                && r.finished_at.is_some()
            {
                run = r;
                break;
            }
            // Woken once, when the run finishes (or the server shuts down).
            if rx.changed().await.is_err() {
                break;
            }
        }
        drop(rx);
        st.live.release(&run_id);
    }
    let tasks = st.store.tasks_of_run(&run.id).await?;
    Ok((StatusCode::CREATED, Json(run_json(&run, Some(&tasks)))).into_response())
}

async fn list_runs(_: Actor, AxState(st): St, Query(q): Query<Limit>) -> Result<Json<Value>> {
    let runs = st.store.runs(limit(&q)).await?;
    Ok(Json(Value::Array(
        runs.iter().map(|r| run_json(r, None)).collect(),
    )))
}

pub async fn find_run(st: &State, id: &str) -> Result<RunRow> {
    st.store
        .run(id)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("run {id} not found — see `herd runs ls`")))
}

async fn get_run(_: Actor, AxState(st): St, Path(id): Path<String>) -> Result<Json<Value>> {
    let run = find_run(&st, &id).await?;
    let tasks = st.store.tasks_of_run(&run.id).await?;
    Ok(Json(run_json(&run, Some(&tasks))))
}

async fn cancel_run(actor: Actor, AxState(st): St, Path(id): Path<String>) -> Result<Json<Value>> {
    dispatch::cancel_run(&st, &actor.name, &id).await?;
    let run = find_run(&st, &id).await?;
    Ok(Json(run_json(&run, None)))
}

async fn list_tasks(_: Actor, AxState(st): St, Query(q): Query<Limit>) -> Result<Json<Value>> {
    Ok(Json(
        serde_json::to_value(st.store.tasks(limit(&q)).await?).unwrap_or(Value::Null),
    ))
}

pub async fn find_task(st: &State, id: &str) -> Result<TaskRow> {
    st.store
        .task(id)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("task {id} not found — see `herd tasks ls`")))
}

async fn get_task(_: Actor, AxState(st): St, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(
        serde_json::to_value(find_task(&st, &id).await?).unwrap_or(Value::Null),
    ))
}

async fn cancel_task(actor: Actor, AxState(st): St, Path(id): Path<String>) -> Result<Json<Value>> {
    let t = find_task(&st, &id).await?;
    dispatch::cancel_task(&st, &actor.name, &t, true).await?;
    st.live.notify(&t.run_id, Change::Task(t.id.clone()));
    Ok(Json(
        serde_json::to_value(find_task(&st, &id).await?).unwrap_or(Value::Null),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutputQuery {
    /// `stdout`, `stderr`, or both when absent.
    stream: Option<String>,
}

/// The stored output of a task as one byte stream; a cut is marked in-line.
async fn task_output(
    _: Actor,
    AxState(st): St,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
) -> Result<Response> {
    let task = find_task(&st, &id).await?;
    let want: Option<u8> = match q.stream.as_deref() {
        None | Some("") | Some("all") => None,
        Some("stdout") => Some(1),
        Some("stderr") => Some(2),
        Some(other) => {
            return Err(ServerError::BadRequest(format!(
                "unknown stream {other:?}: use stdout or stderr"
            )));
        }
    };
    let pos = task.output_pos();
    let outlog = st.outlog.clone();
    let body = async_stream::stream! {
        let mut cursor = Cursor::default();
        loop {
            let ol = outlog.clone();
            let tid = task.id.clone();
            let r = tokio::task::spawn_blocking(move || ol.read(&tid, pos, cursor, 1 << 20)).await;
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
        Body::from_stream(body),
    )
        .into_response())
}

async fn audit(_: Actor, AxState(st): St, Query(q): Query<Limit>) -> Result<Json<Value>> {
    let rows = st.store.audit_log(limit(&q)).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.id, "at": r.at, "actor": r.actor, "action": r.action,
                    "target": r.target,
                    "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
                })
            })
            .collect(),
    )))
}
