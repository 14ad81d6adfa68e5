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

use axum::extract::{Path, Query, Request, State as AxState};
use axum::response::Response;
use bytes::Bytes;
use herd_core::TaskState;
use herd_proto::v1::{self as pb, ServerFrame, server_frame};
use herd_store::{Chunk, Cursor, TaskRow};
use herd_ws::Incoming;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::State;
use crate::api::{find_run, find_task, run_json};
use crate::auth::Actor;
use crate::error::Result;
use crate::live::{Change, LiveChunk};
use crate::ws::Sock;

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
    req: Request,
) -> Result<Response> {
    let run = find_run(&st, &id).await?;
    Ok(crate::ws::upgrade(req, move |sock| {
        watch(st, actor, run.id, None, q, sock)
    }))
}

pub async fn attach_task(
    actor: Actor,
    AxState(st): AxState<Arc<State>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    req: Request,
) -> Result<Response> {
    let task = find_task(&st, &id).await?;
    Ok(crate::ws::upgrade(req, move |sock| {
        watch(st, actor, task.run_id.clone(), Some(task.id), q, sock)
    }))
}

struct Watched {
    task: TaskRow,
    /// Output bytes delivered (an omitted stretch counts as delivered).
    sent: u64,
    /// Where reading the output log resumes, and the output offset it corresponds to.
    cursor: Cursor,
    cursor_at: u64,
    /// The task's output size right after the tap was set: what the tap delivers starts at
    /// or before it, so the log is read only below it (unless the tap was dropped).
    live_from: Option<u64>,
    announced: Option<String>,
}

impl Watched {
    fn drained(&self) -> bool {
        self.sent >= self.task.out_total.max(0) as u64
    }
}

async fn watch(
    st: Arc<State>,
    actor: Actor,
    run_id: String,
    only: Option<String>,
    q: AttachQuery,
    mut sock: Sock,
) {
    let mut rx = st.live.subscribe(&run_id);
    let res = watch_inner(&st, &actor, &run_id, only, &q, &mut sock, &mut rx).await;
    if let Err(e) = res {
        tracing::debug!(run = %run_id, error = %e, "watcher ended");
        let _ = sock
            .send_text(&json!({"type":"error","error": e}).to_string())
            .await;
    }
    let _ = sock.close().await;
    drop(rx);
    st.live.release(&run_id);
}

/// Untaps when the watcher ends, however it ends.
struct TapGuard<'a> {
    st: &'a State,
    tasks: Vec<String>,
    id: u64,
}

impl Drop for TapGuard<'_> {
    fn drop(&mut self) {
        self.st.live.untap(&self.tasks, self.id);
    }
}

async fn watch_inner(
    st: &Arc<State>,
    actor: &Actor,
    run_id: &str,
    only: Option<String>,
    q: &AttachQuery,
    sock: &mut Sock,
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
            sent: 0,
            cursor: Cursor::default(),
            cursor_at: 0,
            live_from: None,
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

    // Tap first, then read what was persisted before: an overlap is dropped by offset.
    let (tap_tx, mut tap_rx) = tokio::sync::mpsc::channel::<LiveChunk>(16);
    let tap = if q.no_output {
        None
    } else {
        let ids: Vec<String> = tasks.iter().map(|w| w.task.id.clone()).collect();
        let id = st.live.tap(&ids, tap_tx);
        Some(TapGuard { st, tasks: ids, id })
    };
    // A run held for its watcher starts now that the tap is in place.
    crate::dispatch::start_queued(st, run_id).await;
    if q.from_end || q.no_output {
        for w in tasks.iter_mut() {
            w.sent = w.task.out_total.max(0) as u64;
        }
    }
    let mut dirty: Vec<usize> = (0..tasks.len()).collect();
    let mut stdin_open = true;
    // A fan-out's counts (pending / running / done), sent when they change, at most 4 times
    // a second; watchers of a single task do not get them.
    let mut progress_tick = tokio::time::interval(std::time::Duration::from_millis(250));
    progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress_sent: Option<crate::sched::Progress> = None;
    loop {
        // Every change already queued is taken now, and the changed tasks are read back in
        // one query: a fan-out's thousands of results cost a few reads, not one each.
        loop {
            match rx.try_recv() {
                Ok(Change::Task(id)) => {
                    if let Some(&i) = index.get(&id) {
                        dirty.push(i);
                    }
                }
                Ok(Change::Run) => {}
                Err(TryRecvError::Lagged(_)) => dirty = (0..tasks.len()).collect(),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        if !dirty.is_empty() {
            let ids: Vec<String> = dirty
                .iter()
                .filter_map(|&i| tasks.get(i).map(|w| w.task.id.clone()))
                .collect();
            if let Ok(rows) = st.store.tasks_by_ids(&ids).await {
                for t in rows {
                    if let Some(w) = index.get(&t.id).and_then(|&i| tasks.get_mut(i)) {
                        w.task = t;
                    }
                }
            }
        }
        for i in std::mem::take(&mut dirty) {
            // Chunks already queued for us come first: they save reading the log.
            while let Ok(c) = tap_rx.try_recv() {
                deliver_live(st, sock, &mut tasks, &index, c, q.no_output).await?;
            }
            let Some(w) = tasks.get_mut(i) else { continue };
            if w.live_from.is_none() {
                w.live_from = Some(w.task.out_total.max(0) as u64);
            }
            if !q.no_output {
                let tapped = tap
                    .as_ref()
                    .is_some_and(|g| st.live.has_tap(&w.task.id, g.id));
                let limit = match (tapped, w.live_from) {
                    (true, Some(from)) => from,
                    _ => u64::MAX,
                };
                catch_up(st, sock, i, w, limit).await?;
            } else {
                w.sent = w.task.out_total.max(0) as u64;
            }
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
        let all_done = tasks.iter().all(|w| w.announced.is_some() && w.drained());
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
            _ = progress_tick.tick(), if only.is_none() => {
                if let Some(p) = st.sched.progress(run_id)
                    && progress_sent.as_ref() != Some(&p)
                {
                    let mut msg = serde_json::to_value(&p).unwrap_or_default();
                    if let serde_json::Value::Object(m) = &mut msg {
                        m.insert("type".into(), "progress".into());
                    }
                    send_text(sock, msg.to_string()).await?;
                    progress_sent = Some(p);
                }
            }
            chunk = tap_rx.recv(), if !q.no_output => {
                if let Some(c) = chunk {
                    deliver_live(st, sock, &mut tasks, &index, c, q.no_output).await?;
                }
            }
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
                None | Some(Ok(Incoming::Close)) => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(Incoming::Ping(p))) => {
                    sock.send_pong(&p).await.map_err(|e| e.to_string())?;
                }
                Some(Ok(Incoming::Binary(data))) => {
                    if stdin_open {
                        forward_input(st, &tasks, data, false).await;
                    }
                }
                Some(Ok(Incoming::Text(t))) => {
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
            },
        }
        // A finished run with nothing new pending still needs its last states sent.
        if dirty.is_empty()
            && tasks.iter().any(|w| w.announced.is_none() || !w.drained())
            && let Ok(Some(run)) = st.store.run(run_id).await
            && run.finished_at.is_some()
        {
            dirty = (0..tasks.len()).collect();
        }
    }
}

/// Sends the part of a live chunk the watcher has not had yet. A gap (the watcher lost its
/// tap for a while) is filled from the output log first.
async fn deliver_live(
    st: &Arc<State>,
    sock: &mut Sock,
    tasks: &mut [Watched],
    index: &HashMap<String, usize>,
    c: LiveChunk,
    no_output: bool,
) -> std::result::Result<(), String> {
    let Some(&i) = index.get(c.task_id.as_ref()) else {
        return Ok(());
    };
    let Some(w) = tasks.get_mut(i) else {
        return Ok(());
    };
    let end = c.offset + c.len();
    if no_output || end <= w.sent {
        return Ok(());
    }
    if c.offset > w.sent {
        // Persisted before it was pushed, so the log has it.
        if let Ok(Some(t)) = st.store.task(&w.task.id).await {
            w.task = t;
        }
        catch_up(st, sock, i, w, c.offset).await?;
        if end <= w.sent {
            return Ok(());
        }
    }
    // One frame per run of the same stream, starting where the watcher is, written from
    // the batch's own buffers.
    let mut at = c.offset;
    let mut run: Option<(u8, Vec<&[u8]>)> = None;
    for (stream, data) in c.parts.iter() {
        let part_end = at + data.len() as u64;
        if part_end > w.sent {
            let skip = w.sent.saturating_sub(at) as usize;
            let piece = &data[skip.min(data.len())..];
            match &mut run {
                Some((s, pieces)) if s == stream => pieces.push(piece),
                _ => {
                    if let Some((s, pieces)) = run.take() {
                        send_output(sock, i, s, &pieces).await?;
                    }
                    run = Some((*stream, vec![piece]));
                }
            }
        }
        at = part_end;
    }
    if let Some((s, pieces)) = run {
        send_output(sock, i, s, &pieces).await?;
    }
    w.sent = end;
    Ok(())
}

/// Reads the output log from what the watcher has up to `limit` (at most the task's
/// committed position).
async fn catch_up(
    st: &Arc<State>,
    sock: &mut Sock,
    index: usize,
    w: &mut Watched,
    limit: u64,
) -> std::result::Result<(), String> {
    let pos = w.task.output_pos();
    let limit = limit.min(pos.total);
    if w.sent >= limit {
        return Ok(());
    }
    // Live delivery may have moved `sent` past the log cursor: skip forward, not resend.
    if w.cursor_at > w.sent {
        w.cursor = Cursor::default();
        w.cursor_at = 0;
    }
    while w.sent < limit {
        let (ol, id, cursor) = (st.outlog.clone(), w.task.id.clone(), w.cursor);
        let (chunks, next) =
            tokio::task::spawn_blocking(move || ol.read(&id, pos, cursor, 1 << 20))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        if chunks.is_empty() {
            return Ok(());
        }
        w.cursor = next;
        for c in chunks {
            if w.sent >= limit {
                // The rest of this read arrives live; re-read it if ever needed.
                w.cursor = Cursor::default();
                w.cursor_at = 0;
                return Ok(());
            }
            let (len, data) = match &c {
                Chunk::Data { data, .. } => (data.len() as u64, Some(data)),
                Chunk::Omitted { bytes } => (*bytes, None),
            };
            let start = w.cursor_at;
            w.cursor_at += len;
            if w.cursor_at <= w.sent {
                continue;
            }
            let skip = w.sent.saturating_sub(start) as usize;
            let take = (w.cursor_at.min(limit) - start) as usize;
            match (&c, data) {
                (Chunk::Data { stream, .. }, Some(d)) => {
                    let d = &d[..take.min(d.len())];
                    send_output(sock, index, *stream, &[&d[skip.min(d.len())..]]).await?;
                    w.sent = start + d.len() as u64;
                    continue;
                }
                (Chunk::Omitted { bytes }, _) => {
                    send_text(
                        sock,
                        json!({"type":"omitted","index": index, "bytes": bytes - skip as u64})
                            .to_string(),
                    )
                    .await?;
                }
                _ => {}
            }
            w.sent = w.cursor_at;
        }
    }
    Ok(())
}

/// One binary frame of output: `[1][u32 BE task index][u8 stream]`, then `pieces`.
async fn send_output(
    sock: &mut Sock,
    index: usize,
    stream: u8,
    pieces: &[&[u8]],
) -> std::result::Result<(), String> {
    if pieces.iter().all(|p| p.is_empty()) {
        return Ok(());
    }
    let mut hdr = [0u8; 6];
    hdr[0] = 1;
    hdr[1..5].copy_from_slice(&(index as u32).to_be_bytes());
    hdr[5] = stream;
    let mut parts: Vec<&[u8]> = Vec::with_capacity(pieces.len() + 1);
    parts.push(&hdr);
    parts.extend_from_slice(pieces);
    sock.send_binary(&parts).await.map_err(|e| e.to_string())
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

async fn send_text(sock: &mut Sock, s: String) -> std::result::Result<(), String> {
    sock.send_text(&s).await.map_err(|e| e.to_string())
}
