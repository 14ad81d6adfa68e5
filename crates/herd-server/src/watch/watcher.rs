//! One watcher: the loop that feeds a WebSocket from the run's events, the output taps and
//! the output log, and forwards stdin and control messages.
//!
//! Order of delivery per task: first **tap** (live chunks from now on are pushed to us),
//! then read from the output log what was committed before the tap; every later chunk
//! carries its offset, so an overlap is cut and a gap (the tap was dropped while we were
//! stuck) is filled from the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herd_api::{AttachQuery, ClientMessage, OutputStream, ServerMessage, output_header};
use herd_outlog::Cursor;
use herd_store::TaskRow;

use super::offsets::{Piece, live_slice, log_piece};
use crate::app::App;
use crate::convert;
use crate::events::{Missed, RunEvent};
use crate::fleet::Actor;
use crate::live::LiveChunk;
use crate::ws::Sock;
use herd_ws::Incoming;

/// Live chunks queued for one watcher before the persist path waits for it.
const TAP_QUEUE: usize = 16;
/// Stored output read at a time when catching up.
const READ_CHUNK: usize = 1 << 20;
/// A fan-out's counts go out at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

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
    /// The final state last announced.
    announced: Option<herd_core::TaskState>,
}

impl Watched {
    fn total(&self) -> u64 {
        self.task.output.total
    }

    fn drained(&self) -> bool {
        self.sent >= self.total()
    }
}

pub async fn watch(
    app: Arc<App>,
    actor: Actor,
    run_id: String,
    only: Option<String>,
    q: AttachQuery,
    mut sock: Sock,
) {
    if let Err(e) = serve(&app, &actor, &run_id, only, &q, &mut sock).await {
        tracing::debug!(run = %herd_core::Escaped(&run_id), error = %herd_core::Escaped(&e), "watcher ended");
        let _ = send(&mut sock, &ServerMessage::Error { error: e }).await;
    }
    let _ = sock.close().await;
}

/// Tells a watcher why there is nothing to watch (an `error` message), then closes.
pub async fn refuse(mut sock: Sock, error: String) {
    let _ = send(&mut sock, &ServerMessage::Error { error }).await;
    let _ = sock.close().await;
}

/// Untaps when the watcher ends, however it ends.
struct TapGuard<'a> {
    app: &'a App,
    tasks: Vec<String>,
    id: u64,
}

impl Drop for TapGuard<'_> {
    fn drop(&mut self) {
        self.app.live().untap(&self.tasks, self.id);
    }
}

struct Watcher<'a> {
    app: &'a Arc<App>,
    tasks: Vec<Watched>,
    index: HashMap<String, usize>,
    no_output: bool,
}

async fn serve(
    app: &Arc<App>,
    actor: &Actor,
    run_id: &str,
    only: Option<String>,
    q: &AttachQuery,
    sock: &mut Sock,
) -> Result<(), String> {
    let runs = app.runs();
    let viewer = actor.role == herd_policy::Role::Viewer;
    // Followed before anything is read, so no change is missed.
    let mut events = app.events().follow(run_id);
    let run = runs.run(run_id).await.map_err(|e| e.to_string())?;
    let rows = runs.tasks_of_run(run_id).await.map_err(|e| e.to_string())?;
    let tasks: Vec<Watched> = rows
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
    let hello = ServerMessage::Hello {
        run: Box::new(convert::run(run)),
        tasks: tasks
            .iter()
            .map(|w| convert::task(w.task.clone()))
            .collect(),
    };
    send(sock, &hello).await?;
    let mut w = Watcher {
        app,
        tasks,
        index,
        no_output: q.no_output,
    };
    let all: Vec<usize> = (0..w.tasks.len()).collect();

    // Tap first, then read what was persisted before: an overlap is dropped by offset.
    let (tap_tx, mut tap_rx) = tokio::sync::mpsc::channel::<LiveChunk>(TAP_QUEUE);
    let tap = if q.no_output {
        None
    } else {
        let ids: Vec<String> = w.tasks.iter().map(|t| t.task.id.clone()).collect();
        let id = app.live().tap(&ids, tap_tx);
        Some(TapGuard {
            app: app.as_ref(),
            tasks: ids,
            id,
        })
    };
    // A run held for its watcher starts now that the tap is in place.
    runs.release(run_id).await;
    if q.from_end || q.no_output {
        for t in w.tasks.iter_mut() {
            t.sent = t.total();
        }
    }
    let mut dirty: Vec<usize> = all.clone();
    let mut stdin_open = true;
    // A fan-out's counts, sent when they change; watchers of a single task do not get them.
    let mut progress = if only.is_none() {
        runs.progress(run_id)
    } else {
        None
    };
    let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
    progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress_sent: Option<herd_api::Progress> = None;
    loop {
        // Every change already queued is taken now, and the changed tasks are read back in
        // one query: a fan-out's thousands of results cost a few reads, not one each.
        loop {
            match events.try_recv() {
                Ok(Some(RunEvent::TaskChanged(id))) => {
                    if let Some(&i) = w.index.get(&id) {
                        dirty.push(i);
                    }
                }
                Ok(Some(RunEvent::RunFinished)) => {}
                Ok(None) => break,
                Err(Missed::Lagged) => dirty.clone_from(&all),
                Err(Missed::Closed) => return Err("server shutting down".into()),
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        w.reread(&dirty).await;
        for i in std::mem::take(&mut dirty) {
            // Chunks already queued for us come first: they save reading the log.
            while let Ok(c) = tap_rx.try_recv() {
                w.deliver_live(sock, c).await?;
            }
            let tapped = tap.as_ref().map(|g| g.id);
            w.refresh(sock, i, tapped).await?;
        }
        let all_done = w.tasks.iter().all(|t| t.announced.is_some() && t.drained());
        if all_done
            && let Ok(run) = runs.run(run_id).await
            && (run.finished_at.is_some() || only.is_some())
        {
            send(
                sock,
                &ServerMessage::End {
                    run: Box::new(convert::run(run)),
                },
            )
            .await?;
            return Ok(());
        }
        tokio::select! {
            _ = progress_tick.tick(), if progress.is_some() => {
                if let Some(rx) = progress.as_ref() {
                    let p = to_api(&rx.borrow());
                    if progress_sent != Some(p) {
                        send(sock, &ServerMessage::Progress(p)).await?;
                        progress_sent = Some(p);
                    }
                }
            }
            chunk = tap_rx.recv(), if !q.no_output => {
                if let Some(c) = chunk {
                    w.deliver_live(sock, c).await?;
                }
            }
            ev = events.recv() => match ev {
                Ok(RunEvent::TaskChanged(id)) => {
                    if let Some(&i) = w.index.get(&id) {
                        dirty.push(i);
                    }
                }
                Ok(RunEvent::RunFinished) => {
                    progress = None;
                    // The last states may have been read before the end was stored.
                    dirty.clone_from(&all);
                }
                Err(Missed::Lagged) => dirty.clone_from(&all),
                Err(Missed::Closed) => return Err("server shutting down".into()),
            },
            msg = sock.recv() => match msg {
                None | Some(Ok(Incoming::Close)) => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(Incoming::Ping(p))) => {
                    sock.send_pong(&p).await.map_err(|e| e.to_string())?;
                }
                Some(Ok(Incoming::Binary(_))) if viewer => {
                    return Err("a viewer key only watches — use an operator or admin key to send input".into());
                }
                Some(Ok(Incoming::Binary(data))) => {
                    if stdin_open {
                        w.input(data, false).await;
                    }
                }
                Some(Ok(Incoming::Text(t))) => match serde_json::from_str::<ClientMessage>(&t) {
                    Ok(ClientMessage::Cancel) if viewer => {
                        return Err("a viewer key only watches — use an operator or admin key to cancel".into());
                    }
                    // A viewer's end of input and terminal size change nothing.
                    Ok(ClientMessage::Eof | ClientMessage::Resize { .. }) if viewer => {}
                    Ok(ClientMessage::Eof) => {
                        stdin_open = false;
                        w.input(Bytes::new(), true).await;
                    }
                    Ok(ClientMessage::Cancel) => {
                        let r = match &only {
                            Some(id) => runs.cancel_task(&actor.name, id).await.map(|_| ()),
                            None => runs.cancel_run(&actor.name, run_id).await.map(|_| ()),
                        };
                        r.map_err(|e| e.to_string())?;
                    }
                    Ok(ClientMessage::Resize { rows, cols }) => w.resize(rows, cols).await,
                    // Unknown messages (a newer client) are ignored.
                    Err(_) => {}
                },
            },
        }
        // A finished run with nothing new pending still needs its last states sent.
        if dirty.is_empty()
            && w.tasks
                .iter()
                .any(|t| t.announced.is_none() || !t.drained())
            && let Ok(run) = runs.run(run_id).await
            && run.finished_at.is_some()
        {
            dirty.clone_from(&all);
        }
    }
}

fn to_api(p: &crate::runs::Progress) -> herd_api::Progress {
    herd_api::Progress {
        total: p.total as u64,
        pending: p.pending as u64,
        running: p.running as u64,
        waiting: p.waiting as u64,
        succeeded: p.succeeded as u64,
        failed: p.failed as u64,
        skipped: p.skipped as u64,
        cancelled: p.cancelled as u64,
    }
}

impl Watcher<'_> {
    /// Reads the rows of tasks that changed, in one query.
    async fn reread(&mut self, which: &[usize]) {
        if which.is_empty() {
            return;
        }
        let ids: Vec<String> = which
            .iter()
            .filter_map(|&i| self.tasks.get(i).map(|t| t.task.id.clone()))
            .collect();
        if let Ok(rows) = self.app.runs().tasks_by_ids(&ids).await {
            for row in rows {
                if let Some(t) = self.index.get(&row.id).and_then(|&i| self.tasks.get_mut(i)) {
                    t.task = row;
                }
            }
        }
    }

    /// Brings task `i` up to date: output not yet delivered (from the log, below what the
    /// tap delivers), and its final state once it has one.
    async fn refresh(&mut self, sock: &mut Sock, i: usize, tap: Option<u64>) -> Result<(), String> {
        let no_output = self.no_output;
        let app = self.app;
        let Some(t) = self.tasks.get_mut(i) else {
            return Ok(());
        };
        if t.live_from.is_none() {
            t.live_from = Some(t.total());
        }
        if no_output {
            t.sent = t.total();
        } else {
            let tapped = tap.is_some_and(|id| app.live().has_tap(&t.task.id, id));
            let limit = match (tapped, t.live_from) {
                (true, Some(from)) => from,
                _ => u64::MAX,
            };
            catch_up(app, sock, i, t, limit).await?;
        }
        let state = t.task.state;
        if state.is_terminal() && t.announced != Some(state) {
            t.announced = Some(state);
            let msg = ServerMessage::Task {
                index: i as u32,
                task: Box::new(convert::task(t.task.clone())),
            };
            send(sock, &msg).await?;
        }
        Ok(())
    }

    /// Sends the part of a live chunk the watcher has not had yet. A gap (the watcher lost
    /// its tap for a while) is filled from the output log first.
    async fn deliver_live(&mut self, sock: &mut Sock, c: LiveChunk) -> Result<(), String> {
        if self.no_output {
            return Ok(());
        }
        let Some(&i) = self.index.get(c.task_id.as_ref()) else {
            return Ok(());
        };
        let app = self.app;
        let Some(t) = self.tasks.get_mut(i) else {
            return Ok(());
        };
        if live_slice(t.sent, c.offset, &c.parts).gap {
            // Persisted before it was pushed, so the log has it.
            if let Ok(row) = app.runs().task(&t.task.id).await {
                t.task = row;
            }
            catch_up(app, sock, i, t, c.offset).await?;
        }
        let slice = live_slice(t.sent, c.offset, &c.parts);
        for (stream, pieces) in &slice.frames {
            send_output(sock, i, *stream, pieces).await?;
        }
        t.sent = slice.sent;
        Ok(())
    }

    async fn input(&self, data: Bytes, eof: bool) {
        let tasks: Vec<(String, String)> = self
            .tasks
            .iter()
            .map(|t| (t.task.id.clone(), t.task.agent_id.clone()))
            .collect();
        self.app.runs().input(&tasks, data, eof).await;
    }

    /// The watcher's terminal changed size: so do the watched tasks' terminals.
    async fn resize(&self, rows: u16, cols: u16) {
        let tasks: Vec<(String, String)> = self
            .tasks
            .iter()
            .filter(|t| t.task.state.is_open())
            .map(|t| (t.task.id.clone(), t.task.agent_id.clone()))
            .collect();
        self.app.runs().resize(&tasks, rows, cols).await;
    }
}

/// Reads the output log from what the watcher has up to `limit` (at most the task's
/// committed position).
async fn catch_up(
    app: &App,
    sock: &mut Sock,
    index: usize,
    t: &mut Watched,
    limit: u64,
) -> Result<(), String> {
    let pos = t.task.output;
    let limit = limit.min(pos.total);
    if t.sent >= limit {
        return Ok(());
    }
    // Live delivery may have moved `sent` past the log cursor: skip forward, not resend.
    if t.cursor_at > t.sent {
        t.cursor = Cursor::default();
        t.cursor_at = 0;
    }
    while t.sent < limit {
        let (ol, id, cursor) = (app.outlog().clone(), t.task.id.clone(), t.cursor);
        let (chunks, next) =
            tokio::task::spawn_blocking(move || ol.read(&id, pos, cursor, READ_CHUNK))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        if chunks.is_empty() {
            return Ok(());
        }
        t.cursor = next;
        for c in &chunks {
            if t.sent >= limit {
                // The rest of this read arrives live; re-read it if ever needed.
                t.cursor = Cursor::default();
                t.cursor_at = 0;
                return Ok(());
            }
            let start = t.cursor_at;
            t.cursor_at += match c {
                herd_outlog::Chunk::Data { data, .. } => data.len() as u64,
                herd_outlog::Chunk::Omitted { bytes } => *bytes,
            };
            let Some((piece, sent)) = log_piece(t.sent, start, c, limit) else {
                continue;
            };
            match piece {
                Piece::Data { stream, data } => send_output(sock, index, stream, &[data]).await?,
                Piece::Omitted { bytes } => {
                    let msg = ServerMessage::Omitted {
                        index: index as u32,
                        bytes,
                    };
                    send(sock, &msg).await?;
                }
            }
            t.sent = sent;
        }
    }
    Ok(())
}

/// The most output bytes in one frame: a browser handles a message whole on its one
/// thread, so a large read (stored output caught up, live chunks gathered while the watcher
/// was busy) goes out as several frames.
const FRAME_MAX: usize = 256 << 10;

/// Output as binary frames (the herd-api header, then up to [`FRAME_MAX`] bytes of
/// `pieces`), each in one vectored write.
async fn send_output(
    sock: &mut Sock,
    index: usize,
    stream: u8,
    pieces: &[&[u8]],
) -> Result<(), String> {
    let stream = OutputStream::from_byte(stream).unwrap_or(OutputStream::Stdout);
    let hdr = output_header(index as u32, stream);
    for frame in frames(pieces, FRAME_MAX) {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(frame.len() + 1);
        parts.push(&hdr);
        parts.extend_from_slice(&frame);
        sock.send_binary(&parts).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `pieces` regrouped into frames of at most `max` bytes (none empty), in order, without
/// copying.
fn frames<'a>(pieces: &[&'a [u8]], max: usize) -> Vec<Vec<&'a [u8]>> {
    let mut out = Vec::new();
    let mut cur: Vec<&'a [u8]> = Vec::new();
    let mut len = 0;
    for &p in pieces {
        let mut rest = p;
        while !rest.is_empty() {
            let (take, after) = rest.split_at(rest.len().min(max - len));
            cur.push(take);
            len += take.len();
            rest = after;
            if len == max {
                out.push(std::mem::take(&mut cur));
                len = 0;
            }
        }
    }
    if len > 0 {
        out.push(cur);
    }
    out
}

async fn send(sock: &mut Sock, msg: &ServerMessage) -> Result<(), String> {
    let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
    sock.send_text(&text).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::frames;

    #[test]
    fn output_is_cut_into_bounded_frames_in_order() {
        let a = vec![1u8; 10];
        let b = vec![2u8; 25];
        let got = frames(&[&a, &[], &b], 8);
        let sizes: Vec<usize> = got
            .iter()
            .map(|f| f.iter().map(|p| p.len()).sum())
            .collect();
        assert_eq!(sizes, vec![8, 8, 8, 8, 3]);
        let joined: Vec<u8> = got.concat().concat();
        assert_eq!(joined, [a.clone(), b.clone()].concat());
        assert!(frames(&[&[], &[]], 8).is_empty());
        assert_eq!(frames(&[&a], 10).len(), 1);
    }
}
