//! Live output over WebSocket: a watcher of a run (or one task) gets every task's output from
//! the start, then as it is persisted, then the final states, then `end`.
//!
//! Server → client: binary frames `[u8 1][u32 BE task index][u8 stream][data]` for output;
//! text frames of JSON: `{"type":"hello","run":…,"tasks":[…]}`, `{"type":"task","index":i,
//! "task":…}`, `{"type":"omitted","index":i,"bytes":n}`, `{"type":"end","run":…}`.
//! Client → server: binary frames are stdin for every task of the run (`-i`); text frames
//! `{"type":"eof"}` and `{"type":"cancel"}`.
//!
//! Output is read from the output log up to the committed position, so the live view and the
//! stored log are the same bytes; a watcher that falls behind only reads further back.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use herd_core::TaskState;
use herd_proto::v1::{self as pb, ServerFrame, server_frame};
use herd_store::{Chunk, Cursor, TaskRow};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::State;
use crate::api::{find_task, run_json};
use crate::auth::Actor;
use crate::error::{Result, ServerError};
use crate::live::Change;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AttachQuery {
    /// Skip output produced before attaching.
    pub from_end: bool,
    /// Only report final states; send no output (for scripted waits).
    pub no_output: bool,
}

pub async fn attach_run(
    actor: Actor,
    AxState(st): AxState<Arc<State>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    let run =
        st.store.run(&id).await?.ok_or_else(|| {
            ServerError::NotFound(format!("run {id} not found — see `herd runs ls`"))
        })?;
    Ok(ws
        .max_message_size(16 << 20)
        .on_upgrade(move |sock| watch(st, actor, run.id, None, q, sock)))
}

pub async fn attach_task(
    actor: Actor,
    AxState(st): AxState<Arc<State>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    let task = find_task(&st, &id).await?;
    Ok(ws
        .max_message_size(16 << 20)
        .on_upgrade(move |sock| watch(st, actor, task.run_id.clone(), Some(task.id), q, sock)))
}

struct Watched {
    task: TaskRow,
    cursor: Cursor,
    /// Output fully sent up to the task's committed position.
    drained: bool,
    announced: Option<String>,
}

async fn watch(
    st: Arc<State>,
    actor: Actor,
    run_id: String,
    only: Option<String>,
    q: AttachQuery,
    mut sock: WebSocket,
) {
    let mut rx = st.live.subscribe(&run_id);
    let res = watch_inner(&st, &actor, &run_id, only, &q, &mut sock, &mut rx).await;
    if let Err(e) = res {
        tracing::debug!(run = %run_id, error = %e, "watcher ended");
        let _ = sock
            .send(Message::Text(
                json!({"type":"error","error": e}).to_string().into(),
            ))
            .await;
    }
    let _ = sock.send(Message::Close(None)).await;
    drop(rx);
    st.live.release(&run_id);
}

async fn watch_inner(
    st: &Arc<State>,
    actor: &Actor,
    run_id: &str,
    only: Option<String>,
    q: &AttachQuery,
    sock: &mut WebSocket,
    rx: &mut tokio::sync::broadcast::Receiver<Change>,
) -> std::result::Result<(), String> {
    let err = |e: herd_store::StoreError| e.to_string();
    let run = st
        .store
        .run(run_id)
        .await
        .map_err(err)?
        .ok_or("run vanished")?;
    let mut tasks: Vec<Watched> = st
        .store
        .tasks_of_run(run_id)
        .await
        .map_err(err)?
        .into_iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == t.id))
        .map(|t| Watched {
            task: t,
            cursor: Cursor::default(),
            drained: false,
            announced: None,
        })
        .collect();
    let index: HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, w)| (w.task.id.clone(), i))
        .collect();
    let hello = json!({
        "type": "hello",
        "run": run_json(&run, None),
        "tasks": tasks.iter().map(|w| &w.task).collect::<Vec<_>>(),
    });
    send_text(sock, hello.to_string()).await?;
    if q.from_end || q.no_output {
        for w in tasks.iter_mut() {
            w.cursor = skip_to_end(st, &w.task).await;
        }
    }
    let mut dirty: Vec<usize> = (0..tasks.len()).collect();
    let mut stdin_open = true;
    loop {
        for i in std::mem::take(&mut dirty) {
            let Some(w) = tasks.get_mut(i) else { continue };
            if let Ok(Some(t)) = st.store.task(&w.task.id).await {
                w.task = t;
            }
            pump_output(st, sock, i, w, q.no_output).await?;
            let state = w.task.state.clone();
            let terminal = state
                .parse::<TaskState>()
                .map(|s| s.is_terminal())
                .unwrap_or(false);
            if terminal && w.announced.as_deref() != Some(state.as_str()) {
                w.announced = Some(state);
                send_text(
                    sock,
                    json!({"type":"task","index": i, "task": &w.task}).to_string(),
                )
                .await?;
            }
        }
        let all_done = tasks.iter().all(|w| w.announced.is_some() && w.drained);
        if all_done
            && let Ok(Some(run)) = st.store.run(run_id).await
            && (run.finished_at.is_some() || only.is_some())
        {
            send_text(
                sock,
                json!({"type":"end","run": run_json(&run, None)}).to_string(),
            )
            .await?;
            return Ok(());
        }
        tokio::select! {
            change = rx.recv() => match change {
                Ok(Change::Task(id)) => {
                    if let Some(&i) = index.get(&id) {
                        dirty.push(i);
                    }
                }
                Ok(Change::Run) => {}
                Err(RecvError::Lagged(_)) => dirty = (0..tasks.len()).collect(),
                Err(RecvError::Closed) => return Err("server shutting down".into()),
            },
            msg = sock.recv() => match msg {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(Message::Binary(data))) => {
                    if stdin_open {
                        forward_input(st, &tasks, data, false).await;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    match v.get("type").and_then(|t| t.as_str()) {
                        Some("eof") => {
                            stdin_open = false;
                            forward_input(st, &tasks, Bytes::new(), true).await;
                        }
                        Some("cancel") => {
                            let r = match &only {
                                Some(id) => match find_task(st, id).await {
                                    Ok(t) => crate::dispatch::cancel_task(st, &actor.name, &t, true).await,
                                    Err(e) => Err(e),
                                },
                                None => crate::dispatch::cancel_run(st, &actor.name, run_id).await,
                            };
                            if let Err(e) = r {
                                return Err(e.to_string());
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
            },
        }
        // A finished run with nothing new pending still needs its last states sent.
        if dirty.is_empty()
            && tasks.iter().any(|w| w.announced.is_none() || !w.drained)
            && let Ok(Some(run)) = st.store.run(run_id).await
            && run.finished_at.is_some()
        {
            dirty = (0..tasks.len()).collect();
        }
    }
}

async fn skip_to_end(st: &Arc<State>, task: &TaskRow) -> Cursor {
    // Read forward without sending; the output log's cursor is opaque.
    let mut cursor = Cursor::default();
    loop {
        let (ol, id, pos) = (st.outlog.clone(), task.id.clone(), task.output_pos());
        match tokio::task::spawn_blocking(move || ol.read(&id, pos, cursor, 8 << 20)).await {
            Ok(Ok((chunks, next))) if !chunks.is_empty() => cursor = next,
            _ => return cursor,
        }
    }
}

async fn pump_output(
    st: &Arc<State>,
    sock: &mut WebSocket,
    index: usize,
    w: &mut Watched,
    no_output: bool,
) -> std::result::Result<(), String> {
    let pos = w.task.output_pos();
    loop {
        let (ol, id, cursor) = (st.outlog.clone(), w.task.id.clone(), w.cursor);
        let (chunks, next) =
            tokio::task::spawn_blocking(move || ol.read(&id, pos, cursor, 1 << 20))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        if chunks.is_empty() {
            w.drained = true;
            return Ok(());
        }
        w.cursor = next;
        if no_output {
            continue;
        }
        for c in chunks {
            match c {
                Chunk::Data { stream, data } => {
                    let mut b = BytesMut::with_capacity(6 + data.len());
                    b.put_u8(1);
                    b.put_u32(index as u32);
                    b.put_u8(stream);
                    b.put_slice(&data);
                    sock.send(Message::Binary(b.freeze()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Chunk::Omitted { bytes } => {
                    send_text(
                        sock,
                        json!({"type":"omitted","index": index, "bytes": bytes}).to_string(),
                    )
                    .await?;
                }
            }
        }
    }
}

async fn forward_input(st: &Arc<State>, tasks: &[Watched], data: Bytes, eof: bool) {
    for w in tasks {
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Input(pb::Input {
                task_id: w.task.id.clone(),
                data: data.clone(),
                eof,
            })),
        };
        st.hub.send(&w.task.agent_id, frame).await;
    }
}

async fn send_text(sock: &mut WebSocket, s: String) -> std::result::Result<(), String> {
    sock.send(Message::Text(s.into()))
        .await
        .map_err(|e| e.to_string())
}
