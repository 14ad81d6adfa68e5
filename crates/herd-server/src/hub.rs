//! The agent hub: the gRPC service agents dial (join, then one session stream each), the
//! registry of connected agents, and the persistence of task events (persist, then ack).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream};
use herd_proto::v1::agent_hub_server::{AgentHub, AgentHubServer};
use herd_proto::v1::{
    self as pb, AgentFrame, JoinRequest, JoinResponse, ServerFrame, agent_frame, server_frame,
    task_event,
};
use herd_store::{AgentRow, OutputPos, Record, Secret, TaskProgress, now_ms, verify_secret};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::State;
use crate::live::{Change, LiveChunk};
use herd_core::TaskState;

/// Heartbeats the whole fleet sends per second at most: agents of a large fleet are asked
/// to beat less often (every 5 s up to 2,500 machines, every 20 s at 10,000), so the idle
/// cost of the server stays flat as the fleet grows.
const MAX_BEATS_PER_SEC: u64 = 500;
const MIN_HEARTBEAT_SECS: u64 = 5;
const MAX_HEARTBEAT_SECS: u64 = 60;

/// The heartbeat period asked of agents when `agents` are registered.
fn heartbeat_for(agents: usize) -> Duration {
    Duration::from_secs(
        (agents as u64)
            .div_ceil(MAX_BEATS_PER_SEC)
            .clamp(MIN_HEARTBEAT_SECS, MAX_HEARTBEAT_SECS),
    )
}

/// A session that sends nothing (not even a heartbeat) for three periods and a second is
/// dropped: its agent is offline until it reconnects.
fn silence_limit(heartbeat: Duration) -> Duration {
    heartbeat * 3 + Duration::from_secs(1)
}

/// Connected agents and the tasks whose events are being persisted.
#[derive(Default)]
pub struct Hub {
    conns: Mutex<HashMap<String, Conn>>,
    /// When each agent went away (absent: never seen since the server started).
    gone_since: Mutex<HashMap<String, Instant>>,
    active: Mutex<HashMap<String, ActiveTask>>,
    /// StartTask send times, for the dispatch latency histogram.
    sent_at: Mutex<HashMap<String, Instant>>,
    /// One persist at a time per agent: an old session revived after a partition and the new
    /// one may both deliver the same events.
    persist_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_conn: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<ServerFrame>,
    /// Tells the session to end (replaced by a newer one, or the agent was revoked).
    stop: Arc<tokio::sync::Notify>,
}

/// What the persist path keeps of a task between batches.
#[derive(Clone)]
struct ActiveTask {
    run_id: String,
    agent_id: String,
    seq: u64,
    pos: OutputPos,
}

impl Hub {
    pub fn is_online(&self, agent_id: &str) -> bool {
        lock(&self.conns).contains_key(agent_id)
    }

    pub fn online_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// How long the agent has been away, counting from server start if it never came.
    pub fn away_for(&self, agent_id: &str, server_started: Instant) -> Option<Duration> {
        if self.is_online(agent_id) {
            return None;
        }
        let since = lock(&self.gone_since)
            .get(agent_id)
            .copied()
            .unwrap_or(server_started);
        Some(since.elapsed())
    }

    /// Sends a frame to a connected agent; false if it is not connected or its queue is stuck.
    pub async fn send(&self, agent_id: &str, frame: ServerFrame) -> bool {
        let conn = lock(&self.conns).get(agent_id).cloned();
        match conn {
            Some(c) => {
                matches!(
                    tokio::time::timeout(Duration::from_secs(5), c.tx.send(frame)).await,
                    Ok(Ok(()))
                )
            }
            None => false,
        }
    }

    /// Drops what the hub keeps of a task once it has ended, however it ended; returns the
    /// output position last persisted for it, if it was active.
    pub fn forget_task(&self, task_id: &str) -> Option<OutputPos> {
        lock(&self.sent_at).remove(task_id);
        lock(&self.active).remove(task_id).map(|a| a.pos)
    }

    /// A task's first StartTask is going out: nothing of it is persisted yet, so its first
    /// events need no lookup in the store.
    pub fn note_sent(&self, run_id: &str, task_id: &str, agent_id: &str) {
        lock(&self.sent_at).insert(task_id.to_string(), Instant::now());
        lock(&self.active)
            .entry(task_id.to_string())
            .or_insert_with(|| ActiveTask {
                run_id: run_id.to_string(),
                agent_id: agent_id.to_string(),
                seq: 0,
                pos: OutputPos::default(),
            });
    }

    /// Drops the connection of a revoked agent.
    pub fn disconnect(&self, agent_id: &str) {
        if let Some(c) = lock(&self.conns).remove(agent_id) {
            c.stop.notify_one();
        }
    }

    fn persist_lock(&self, agent_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.persist_locks)
            .entry(agent_id.to_string())
            .or_default()
            .clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The gRPC service, mounted by the HTTP router under its path prefix.
pub fn service(state: Arc<State>) -> AgentHubServer<HubService> {
    AgentHubServer::new(HubService { state })
        .max_decoding_message_size(32 * 1024 * 1024)
        .max_encoding_message_size(32 * 1024 * 1024)
}

pub struct HubService {
    state: Arc<State>,
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<ServerFrame, Status>> + Send>>;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[tonic::async_trait]
impl AgentHub for HubService {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let st = &self.state;
        let req = req.into_inner();
        let bad = || {
            Status::unauthenticated("join token is not valid — create one with `herd token create`")
        };
        let (id, secret) = Secret::parse(&req.token, "hj", "join token").map_err(|_| bad())?;
        let tok = st
            .store
            .join_token(id)
            .await
            .map_err(internal)?
            .ok_or_else(bad)?;
        if !verify_secret(secret, &tok.hash) {
            return Err(bad());
        }
        let now = now_ms();
        if tok.expires_at <= now {
            return Err(Status::unauthenticated(
                "join token has expired — create a new one with `herd token create`",
            ));
        }
        if tok.uses_left <= 0 {
            return Err(Status::unauthenticated(
                "join token has been used up — create a new one with `herd token create --uses N`",
            ));
        }
        if !valid_name(&req.name) {
            return Err(Status::invalid_argument(format!(
                "agent name {:?} is not valid: use 1-64 letters, digits, '.', '_' or '-'",
                req.name
            )));
        }
        if st.agents.by_name(&req.name).is_some() {
            return Err(Status::already_exists(format!(
                "an agent named {:?} already exists — pick another --name, or revoke the old one with `herd agents revoke {}`",
                req.name, req.name
            )));
        }
        if !st.store.use_join_token(id, now).await.map_err(internal)? {
            return Err(Status::unauthenticated(
                "join token has been used up or expired — create a new one with `herd token create`",
            ));
        }
        let cred = Secret::generate("ha");
        let agent = AgentRow {
            id: cred.id.clone(),
            name: req.name.clone(),
            cred_hash: cred.hash.clone(),
            labels: serde_json::to_string(&req.labels).unwrap_or_else(|_| "{}".into()),
            server_labels: "{}".into(),
            facts: req
                .facts
                .as_ref()
                .map(facts_json)
                .unwrap_or_else(|| "{}".into()),
            metrics: None,
            version: String::new(),
            created_at: now,
            last_seen: None,
            revoked_at: None,
        };
        st.store.insert_agent(&agent).await.map_err(|e| match e {
            herd_store::StoreError::Conflict(m) => Status::already_exists(m),
            e => internal(e),
        })?;
        st.agents.insert(agent.clone());
        let _ = st
            .store
            .audit(
                &format!("agent:{}", req.name),
                "agent.join",
                &format!("agent:{}", agent.id),
                &serde_json::json!({"name": req.name, "token": id}).to_string(),
            )
            .await;
        Ok(Response::new(JoinResponse {
            agent_id: cred.id,
            credential: cred.token,
        }))
    }

    type SessionStream = FrameStream;

    async fn session(
        &self,
        req: Request<Streaming<AgentFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let st = self.state.clone();
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string();
        let bad = || {
            Status::unauthenticated(
                "agent credential is not valid — join again with a new token (`herd token create`)",
            )
        };
        let (id, secret) = Secret::parse(&token, "ha", "agent credential").map_err(|_| bad())?;
        // Live agents authenticate from memory; only an unknown id costs a lookup (to tell
        // a revoked agent why it is refused).
        let agent = match st.agents.get(id) {
            Some(a) => a,
            None => st
                .store
                .agent(id)
                .await
                .map_err(internal)?
                .ok_or_else(bad)?,
        };
        if !verify_secret(secret, &agent.cred_hash) {
            return Err(bad());
        }
        if agent.revoked_at.is_some() {
            return Err(Status::permission_denied(format!(
                "agent {:?} has been revoked — join again with a new token (`herd token create`) and a fresh --state-dir",
                agent.name
            )));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<ServerFrame>(1024);
        let conn_id = st
            .hub
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let agent_id = agent.id.clone();
            if let Err(e) = run_session(&st, agent, conn_id, &tx, &mut inbound).await {
                tracing::info!(agent = %agent_id, error = %e, "agent session ended");
            }
            let mut conns = lock(&st.hub.conns);
            if conns.get(&agent_id).is_some_and(|c| c.id == conn_id) {
                conns.remove(&agent_id);
            }
            // Gone unless a newer session of the same agent took over.
            let gone = !conns.contains_key(&agent_id);
            drop(conns);
            if gone {
                lock(&st.hub.gone_since)
                    .entry(agent_id)
                    .or_insert_with(Instant::now);
            }
            st.metrics
                .agents_connected
                .set(st.hub.online_count() as i64);
        });
        let out = ReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "hub request failed");
    Status::internal(format!("server error: {e}"))
}

fn facts_json(f: &pb::Facts) -> String {
    serde_json::json!({
        "machine_id": f.machine_id,
        "hostname": f.hostname,
        "os": f.os_id,
        "os_name": f.os_name,
        "os_version": f.os_version,
        "kernel": f.kernel,
        "arch": f.arch,
        "cpus": f.cpus,
        "memory_bytes": f.memory_bytes,
        "disks": f.disks.iter().map(|d| serde_json::json!({
            "mount": d.mount, "fs": d.fs, "total_bytes": d.total_bytes, "available_bytes": d.available_bytes
        })).collect::<Vec<_>>(),
        "ips": f.ips,
        "macs": f.macs,
    })
    .to_string()
}

/// In memory; the index writes it to the store with everyone else's every few seconds.
fn record_heartbeat(st: &State, agent_id: &str, hb: &pb::Heartbeat) {
    let m = hb.metrics.as_ref().map(metrics_json);
    st.agents.seen(agent_id, m, now_ms());
}

fn metrics_json(m: &pb::Metrics) -> String {
    serde_json::json!({
        "cpu_percent": m.cpu_percent,
        "memory_used_bytes": m.memory_used_bytes,
        "memory_total_bytes": m.memory_total_bytes,
        "disk_used_bytes": m.disk_used_bytes,
        "disk_total_bytes": m.disk_total_bytes,
        "load1": m.load1, "load5": m.load5, "load15": m.load15,
    })
    .to_string()
}

async fn run_session(
    st: &Arc<State>,
    agent: AgentRow,
    conn_id: u64,
    tx: &mpsc::Sender<ServerFrame>,
    inbound: &mut Streaming<AgentFrame>,
) -> Result<(), String> {
    let first = tokio::time::timeout(Duration::from_secs(30), inbound.message())
        .await
        .map_err(|_| "no hello within 30 s".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("stream closed before hello")?;
    let Some(agent_frame::Kind::Hello(hello)) = first.kind else {
        return Err("first frame was not a hello".into());
    };
    let labels = serde_json::to_string(&hello.labels).unwrap_or_else(|_| "{}".into());
    let facts = hello
        .facts
        .as_ref()
        .map(facts_json)
        .unwrap_or_else(|| agent.facts.clone());
    st.agents
        .hello(&agent.id, labels, facts, hello.version.clone(), now_ms());
    // Register; a newer session replaces an older one of the same agent.
    let stop = Arc::new(tokio::sync::Notify::new());
    let old = lock(&st.hub.conns).insert(
        agent.id.clone(),
        Conn {
            id: conn_id,
            tx: tx.clone(),
            stop: stop.clone(),
        },
    );
    if let Some(old) = old {
        old.stop.notify_one();
    }
    lock(&st.hub.gone_since).remove(&agent.id);
    st.metrics
        .agents_connected
        .set(st.hub.online_count() as i64);
    let heartbeat = heartbeat_for(st.agents.len());
    let silence = silence_limit(heartbeat);
    let welcome = ServerFrame {
        kind: Some(server_frame::Kind::Welcome(pb::Welcome {
            agent_id: agent.id.clone(),
            heartbeat_secs: heartbeat.as_secs() as u32,
        })),
    };
    tx.send(welcome).await.map_err(|_| "agent went away")?;
    reconcile(st, &agent, &hello.tasks, tx).await?;

    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(silence, inbound.message()) => match f {
                Err(_) => {
                    return Err(format!(
                        "no heartbeat for {} (network partition or a stuck agent)",
                        herd_core::format_duration(silence)
                    ));
                }
                Ok(f) => match f.map_err(|e| e.to_string())? {
                    Some(f) => f,
                    None => break,
                },
            },
            _ = stop.notified() => {
                return Err("connection dropped (agent revoked or reconnected)".into());
            }
        };
        // Revoked (hub.disconnect) or replaced by a newer session: end this stream, so the
        // agent reconnects and is told why.
        if lock(&st.hub.conns)
            .get(&agent.id)
            .is_none_or(|c| c.id != conn_id)
        {
            return Err("connection dropped (agent revoked or reconnected)".into());
        }
        match frame.kind {
            Some(agent_frame::Kind::Heartbeat(hb)) => record_heartbeat(st, &agent.id, &hb),
            Some(agent_frame::Kind::Events(mut batch)) => {
                // Batches already waiting are persisted together (one pass over the output
                // log, one transaction): a server that falls behind catches up in bigger steps.
                let mut batches = 1usize;
                while batch.events.len() < 4096 {
                    match inbound.message().now_or_never() {
                        Some(Ok(Some(AgentFrame {
                            kind: Some(agent_frame::Kind::Events(more)),
                        }))) => {
                            batch.events.extend(more.events);
                            batches += 1;
                        }
                        Some(Ok(Some(AgentFrame {
                            kind: Some(agent_frame::Kind::Heartbeat(hb)),
                        }))) => record_heartbeat(st, &agent.id, &hb),
                        Some(Ok(Some(_))) => {}
                        Some(Ok(None)) | None => break,
                        Some(Err(e)) => return Err(e.to_string()),
                    }
                }
                let guard = st.hub.persist_lock(&agent.id);
                let _held = guard.lock().await;
                let acks = persist(st, &agent.id, batch)
                    .await
                    .map_err(|e| e.to_string())?;
                // Exactly one Acks frame per batch received, even an empty one: the agent
                // counts them to size its window of batches in flight.
                for _ in 1..batches {
                    let empty = ServerFrame {
                        kind: Some(server_frame::Kind::Acks(pb::Acks { acks: Vec::new() })),
                    };
                    tx.send(empty).await.map_err(|_| "agent went away")?;
                }
                let frame = ServerFrame {
                    kind: Some(server_frame::Kind::Acks(pb::Acks { acks })),
                };
                tx.send(frame).await.map_err(|_| "agent went away")?;
            }
            Some(agent_frame::Kind::Hello(_)) | None => {}
        }
    }
    Ok(())
}

/// Brings server and agent to agreement after a (re)connect: resend tasks the agent never
/// received, cancel tasks cancelled while it was away, and mark lost the running tasks the
/// agent no longer has.
async fn reconcile(
    st: &Arc<State>,
    agent: &AgentRow,
    known: &[pb::KnownTask],
    tx: &mpsc::Sender<ServerFrame>,
) -> Result<(), String> {
    let known: HashMap<&str, bool> = known
        .iter()
        .map(|k| (k.task_id.as_str(), k.finished))
        .collect();
    let open = st
        .store
        .open_tasks_of_agent(&agent.id)
        .await
        .map_err(|e| e.to_string())?;
    for task in open {
        if known.contains_key(task.id.as_str()) {
            continue;
        }
        match task.state.as_str() {
            // Waiting for a slot (or for its watcher): the run's scheduler starts it.
            "queued" => {}
            "dispatched" => {
                if let Some(frame) = crate::dispatch::start_frame(st, &task).await {
                    tx.send(frame).await.map_err(|_| "agent went away")?;
                }
            }
            _ => {
                if st
                    .store
                    .end_open_task(
                        &task.id,
                        "lost",
                        "the agent came back without this task (it restarted or lost its state)",
                        now_ms(),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                {
                    crate::dispatch::task_ended(st, &task.run_id, &task.id, TaskState::Lost).await;
                }
            }
        }
    }
    // Tasks the agent still runs that the server already ended (cancelled while away).
    for (task_id, finished) in known {
        if finished {
            continue;
        }
        if let Ok(Some(t)) = st.store.task(task_id).await
            && t.state == "cancelled"
            && t.agent_id == agent.id
        {
            let frame = ServerFrame {
                kind: Some(server_frame::Kind::Cancel(pb::CancelTask {
                    task_id: t.id.clone(),
                    grace_ms: 5000,
                })),
            };
            tx.send(frame).await.map_err(|_| "agent went away")?;
        }
    }
    Ok(())
}

async fn active_task(
    st: &State,
    task_id: &str,
) -> Result<Option<ActiveTask>, herd_store::StoreError> {
    if let Some(a) = lock(&st.hub.active).get(task_id) {
        return Ok(Some(a.clone()));
    }
    let Some(row) = st.store.task(task_id).await? else {
        return Ok(None);
    };
    let a = ActiveTask {
        run_id: row.run_id.clone(),
        agent_id: row.agent_id.clone(),
        seq: row.out_seq.max(0) as u64,
        pos: row.output_pos(),
    };
    // The output files may hold writes that were never committed (the server died between
    // writing and committing); cut them back before appending.
    let outlog = st.outlog.clone();
    let (id, pos) = (task_id.to_string(), a.pos);
    match tokio::task::spawn_blocking(move || outlog.recover(&id, pos)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(task = task_id, error = %e, "output recovery failed"),
        Err(e) => tracing::warn!(task = task_id, error = %e, "output recovery panicked"),
    }
    if !matches!(
        row.state.as_str(),
        "succeeded" | "failed" | "cancelled" | "timed_out"
    ) {
        lock(&st.hub.active).insert(task_id.to_string(), a.clone());
    }
    Ok(Some(a))
}

struct Pending {
    task_id: String,
    active: ActiveTask,
    records: Vec<(u8, bytes::Bytes)>,
    progress: TaskProgress,
}

/// Persists one batch (output to the log files, then state and positions in one
/// transaction) and returns the acknowledgements to send.
async fn persist(
    st: &Arc<State>,
    agent_id: &str,
    batch: pb::EventBatch,
) -> Result<Vec<pb::Ack>, crate::ServerError> {
    let mut order: Vec<String> = Vec::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let now = now_ms();
    for ev in batch.events {
        if !pending.contains_key(&ev.task_id) {
            let Some(active) = active_task(st, &ev.task_id).await? else {
                // Unknown task (e.g. database replaced): acknowledge so the agent lets go.
                tracing::warn!(task = %ev.task_id, "event for unknown task dropped");
                order.push(ev.task_id.clone());
                pending.insert(
                    ev.task_id.clone(),
                    Pending {
                        task_id: ev.task_id.clone(),
                        active: ActiveTask {
                            run_id: String::new(),
                            agent_id: agent_id.to_string(),
                            seq: ev.seq,
                            pos: OutputPos::default(),
                        },
                        records: Vec::new(),
                        progress: TaskProgress {
                            task_id: ev.task_id.clone(),
                            seq: ev.seq,
                            ..Default::default()
                        },
                    },
                );
                continue;
            };
            if active.agent_id != agent_id {
                tracing::warn!(task = %ev.task_id, agent = agent_id, "agent sent events for another agent's task");
                continue;
            }
            order.push(ev.task_id.clone());
            pending.insert(
                ev.task_id.clone(),
                Pending {
                    task_id: ev.task_id.clone(),
                    progress: TaskProgress {
                        task_id: ev.task_id.clone(),
                        seq: active.seq,
                        out: active.pos,
                        ..Default::default()
                    },
                    active,
                    records: Vec::new(),
                },
            );
        }
        let Some(p) = pending.get_mut(&ev.task_id) else {
            continue;
        };
        if p.active.run_id.is_empty() {
            p.progress.seq = p.progress.seq.max(ev.seq);
            continue;
        }
        // Exactly once: drop what is already persisted; stop at a gap (the agent replays).
        if ev.seq != p.progress.seq + 1 {
            continue;
        }
        p.progress.seq = ev.seq;
        match ev.kind {
            Some(task_event::Kind::Started(s)) => {
                p.progress.started = Some(herd_store::Started {
                    pid: s.pid,
                    at: now,
                });
                if let Some(t) = lock(&st.hub.sent_at).remove(&ev.task_id) {
                    st.metrics
                        .dispatch_latency
                        .observe(t.elapsed().as_secs_f64());
                }
            }
            Some(task_event::Kind::Output(o)) => {
                let stream = if o.stream == pb::Stream::Stderr as i32 {
                    2
                } else {
                    1
                };
                p.records.push((stream, o.data));
            }
            Some(task_event::Kind::Exited(x)) => {
                p.progress.exited = Some(exit_record(&x, now));
            }
            None => {}
        }
    }

    // Output first (blocking file I/O off the async threads), then one transaction. Most
    // batches of a large fan-out carry no output at all: no hand-off to a thread for those.
    let outlog = st.outlog.clone();
    let mut work: Vec<Pending> = order.iter().filter_map(|id| pending.remove(id)).collect();
    let work = if work.iter().all(|p| p.records.is_empty()) {
        work
    } else {
        tokio::task::spawn_blocking(move || -> Result<Vec<Pending>, herd_store::OutlogError> {
            for p in work.iter_mut() {
                if p.records.is_empty() {
                    continue;
                }
                let recs: Vec<Record<'_>> = p
                    .records
                    .iter()
                    .map(|(s, d)| Record {
                        stream: *s,
                        data: d,
                    })
                    .collect();
                p.progress.out = outlog.append(&p.task_id, p.progress.out, &recs)?;
            }
            Ok(work)
        })
        .await
        .map_err(|e| crate::ServerError::Internal(e.to_string()))??
    };

    let changed: Vec<TaskProgress> = work
        .iter()
        .filter(|p| !p.active.run_id.is_empty() && p.progress.seq > p.active.seq)
        .map(|p| p.progress.clone())
        .collect();
    if !changed.is_empty() {
        st.progress.apply(changed).await?;
    }
    let mut acks = Vec::with_capacity(work.len());
    for p in work {
        acks.push(pb::Ack {
            task_id: p.task_id.clone(),
            seq: p.progress.seq,
        });
        if p.active.run_id.is_empty() || p.progress.seq == p.active.seq {
            continue;
        }
        // Watchers get the output now, before the ack: a slow watcher slows the agent's
        // stream (its spool absorbs the rest) instead of losing output.
        if !p.records.is_empty() && st.live.is_tapped(&p.task_id) {
            let chunk = LiveChunk {
                task_id: Arc::from(p.task_id.as_str()),
                offset: p.active.pos.total,
                parts: p.records.iter().cloned().collect(),
            };
            st.live.publish(&p.task_id, chunk).await;
        }
        let bytes: u64 = p.records.iter().map(|(_, d)| d.len() as u64).sum();
        st.metrics.output_bytes.inc_by(bytes);
        st.metrics.events.inc_by(p.progress.seq - p.active.seq);
        // Recorded for an ended task too: `task_ended` finishes its output log at this position.
        if let Some(a) = lock(&st.hub.active).get_mut(&p.task_id) {
            a.seq = p.progress.seq;
            a.pos = p.progress.out;
        }
        if let Some(x) = &p.progress.exited {
            // `task_ended` tells the watchers.
            let state = x.state.parse::<TaskState>().unwrap_or(TaskState::Failed);
            crate::dispatch::task_ended(st, &p.active.run_id, &p.task_id, state).await;
        } else {
            st.live
                .notify(&p.active.run_id, Change::Task(p.task_id.clone()));
        }
    }
    Ok(acks)
}

fn exit_record(x: &pb::Exited, at: i64) -> herd_store::Exit {
    use herd_core::{ExitKind, TaskState};
    let reason = pb::ExitReason::try_from(x.reason).unwrap_or(pb::ExitReason::Unspecified);
    let (state, reason_s) = match reason {
        pb::ExitReason::Exited => (
            herd_core::task_state_for_exit(x.code, ExitKind::Exited),
            if x.signal.is_some() {
                "killed by signal"
            } else {
                "exited"
            },
        ),
        pb::ExitReason::TimedOut => (TaskState::TimedOut, "timed out"),
        pb::ExitReason::Cancelled => (TaskState::Cancelled, "cancelled"),
        pb::ExitReason::FailedToStart => (TaskState::Failed, "failed to start"),
        pb::ExitReason::Unspecified => (TaskState::Lost, "lost"),
    };
    // A signal death without a code is a failure, not a success.
    let state = if reason == pb::ExitReason::Exited && x.code.is_none() {
        TaskState::Failed
    } else {
        state
    };
    herd_store::Exit {
        state: state.as_str().to_string(),
        code: x.code,
        signal: x.signal,
        reason: reason_s.to_string(),
        detail: x.detail.clone(),
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fleets_beat_less_often() {
        assert_eq!(heartbeat_for(0), Duration::from_secs(5));
        assert_eq!(heartbeat_for(2_500), Duration::from_secs(5));
        assert_eq!(heartbeat_for(2_501), Duration::from_secs(6));
        assert_eq!(heartbeat_for(10_000), Duration::from_secs(20));
        assert_eq!(heartbeat_for(1_000_000), Duration::from_secs(60));
        // The fleet's heartbeat rate stays bounded.
        for n in [1_000usize, 5_000, 10_000, 30_000] {
            assert!(n as f64 / heartbeat_for(n).as_secs_f64() <= MAX_BEATS_PER_SEC as f64);
        }
        assert_eq!(
            silence_limit(Duration::from_secs(5)),
            Duration::from_secs(16)
        );
    }
}
