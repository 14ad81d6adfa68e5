//! A simulated fleet for load tests: many agents in one process. Each simulated agent is a
//! real agent as far as the server can tell: its own identity (joined once with a join
//! token), its own HTTP/2 connection and `Session` stream, `Hello` with its own hostname and
//! machine id, heartbeats, and real processes for the tasks it is sent.
//!
//! Built to be light (one tokio task per agent when idle, no per-agent thread or large
//! buffer), so ten thousand fit beside a server on a small machine. Where it differs from
//! the real agent (`session.rs`):
//! - no on-disk spool: task events stay in memory until the server acknowledges them, are
//!   sent again after a reconnect, and are lost if the fleet process ends;
//! - a command that is a plain word list (no shell syntax) is executed directly, its first
//!   word looked up in `PATH`; anything else runs as `sh -c COMMAND` (or the task's shell);
//! - no PTY and no stdin (`Input` is ignored); at most 64 KiB of each output stream is kept
//!   per task, and output is reported when the process ends, not streamed (a process that
//!   ends within 20 ms is reported in one batch, start included);
//! - at most 4 processes per CPU run at once across the whole fleet; further tasks queue;
//! - heartbeats carry one metrics sample taken by the fleet once per period.
//!
//! Identities are kept in one JSON state file (0600, replaced atomically), so a restarted
//! fleet reconnects as the same machines without a join token.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use herd_proto::v1::agent_hub_client::AgentHubClient;
use herd_proto::v1::{
    self as pb, AgentFrame, JoinRequest, ServerFrame, TaskEvent, agent_frame, server_frame,
    task_event,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::{AgentError, Backoff, VERSION, connect};

/// Joins in flight at once while a new fleet registers.
const JOINS_IN_FLIGHT: usize = 32;
/// Attempts per join when the server answers "try again later".
const JOIN_ATTEMPTS: u32 = 8;
/// Sessions being established at once (dial, Hello, Welcome): a fleet (re)connecting queues
/// instead of opening thousands of handshakes together.
const CONNECTING: usize = 64;
/// How long a session may take from dialling to the Welcome.
const WELCOME_WAIT: Duration = Duration::from_secs(30);
/// Frames queued for one agent's stream.
const OUT_QUEUE: usize = 4;
/// Output kept per stream per task; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Processes running at once per CPU, across the fleet, so a 10,000-machine fan-out queues
/// instead of forking 10,000 processes at once (128 at once on 2 cores was 4-7x slower).
const PROCS_PER_CPU: usize = 4;
/// After the main process exited, how long its output pipes may stay open (held by
/// processes it left behind) before those are killed and the task reported.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// SIGTERM → SIGKILL delay on cancel or timeout when the server gives none.
const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// How often the fleet returns freed memory to the system.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// How long a new process may take to exit and still be reported in one batch with its
/// start (most benchmark commands are this quick); longer ones report their start then.
const START_REPORT_DELAY: Duration = Duration::from_millis(20);
/// Label every simulated agent carries (unless configured otherwise).
const SIM_LABEL: &str = "sim";

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub server: String,
    pub token: Option<String>,
    /// Pin of the server's CA (hex SHA-256), for https servers.
    pub ca_sha256: Option<String>,
    pub agents: usize,
    /// Agent i (1-based) is named `{prefix}{i:05}`.
    pub prefix: String,
    pub labels: BTreeMap<String, String>,
    pub state_file: PathBuf,
    pub heartbeat: Duration,
}

/// Name of simulated agent `i` (1-based).
pub fn agent_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:05}")
}

fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 48
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

// ---------------------------------------------------------------------------------------
// Identities

/// One simulated agent's credential, as kept in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimIdentity {
    pub name: String,
    pub agent_id: String,
    pub credential: String,
}

/// The state file: the server the identities belong to, and the identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetFile {
    pub server: String,
    #[serde(default)]
    pub ca_sha256: Option<String>,
    pub agents: Vec<SimIdentity>,
}

impl FleetFile {
    /// Reads the state file; `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<FleetFile>, AgentError> {
        crate::read_json(
            path,
            "it is not a fleet state file; pass another --state-file",
        )
    }

    /// Writes the state file atomically (temporary file, fsync, rename), readable by the
    /// owner only: it holds credentials.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let body = serde_json::to_vec(self).map_err(|e| AgentError::Config(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            AgentError::Config(format!(
                "cannot write the fleet state file {}: {e}",
                path.display()
            ))
        })
    }
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Facts of simulated agent `name`: the host's facts with a hostname and machine id of its own.
fn facts_for(base: &pb::Facts, name: &str) -> pb::Facts {
    let mut h1 = std::collections::hash_map::DefaultHasher::new();
    (base.machine_id.as_str(), name, 1u8).hash(&mut h1);
    let mut h2 = std::collections::hash_map::DefaultHasher::new();
    (base.machine_id.as_str(), name, 2u8).hash(&mut h2);
    pb::Facts {
        machine_id: format!("{:016x}{:016x}", h1.finish(), h2.finish()),
        hostname: name.to_string(),
        ..base.clone()
    }
}

/// Joins every agent of the fleet that has no identity yet, saving progress to the state file
/// as it goes, and returns the identities of agents 1..=n in order.
async fn ensure_identities(
    cfg: &FleetConfig,
    file: Option<FleetFile>,
    channel: tonic::transport::Channel,
    facts: &pb::Facts,
    labels: &HashMap<String, String>,
) -> Result<Vec<Arc<SimIdentity>>, AgentError> {
    let mut file = file.unwrap_or_else(|| FleetFile {
        server: cfg.server.clone(),
        ca_sha256: cfg.ca_sha256.clone(),
        agents: Vec::new(),
    });
    if cfg.ca_sha256.is_some() {
        file.ca_sha256 = cfg.ca_sha256.clone();
    }
    let mut known: HashMap<String, Arc<SimIdentity>> = file
        .agents
        .iter()
        .map(|a| (a.name.clone(), Arc::new(a.clone())))
        .collect();
    let missing: Vec<String> = (1..=cfg.agents)
        .map(|i| agent_name(&cfg.prefix, i))
        .filter(|n| !known.contains_key(n))
        .collect();
    if !missing.is_empty() {
        let token = cfg.token.as_deref().ok_or_else(|| {
            AgentError::Config(format!(
                "{} of the {} agents have no identity in {} and no --token was given — create a join token with `herd token create --uses {}`",
                missing.len(),
                cfg.agents,
                cfg.state_file.display(),
                missing.len()
            ))
        })?;
        // The state file must be writable before any name is taken on the server.
        save_file(&file, &cfg.state_file).await?;
        let client = AgentHubClient::new(channel);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let mut joins = futures::stream::iter(missing.iter().cloned())
            .map(|name| {
                let client = client.clone();
                let failed = &failed;
                async move {
                    if failed.load(Ordering::Relaxed) {
                        return None;
                    }
                    let res = join_one(client, cfg, token, &name, facts, labels).await;
                    if res.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    Some(res)
                }
            })
            .buffer_unordered(JOINS_IN_FLIGHT);
        let mut first_error = None;
        let mut last_save = Instant::now();
        let mut unsaved = 0usize;
        // Every join that succeeded is saved, even when another failed: the server knows
        // those names now, and only the state file can reconnect them.
        while let Some(res) = joins.next().await {
            match res {
                Some(Ok(id)) => {
                    known.insert(id.name.clone(), Arc::new(id.clone()));
                    file.agents.push(id);
                    unsaved += 1;
                    if last_save.elapsed() > Duration::from_secs(1) {
                        save_file(&file, &cfg.state_file).await?;
                        last_save = Instant::now();
                        unsaved = 0;
                    }
                }
                Some(Err(e)) if first_error.is_none() => first_error = Some(e),
                Some(Err(_)) | None => {}
            }
        }
        if unsaved > 0 {
            save_file(&file, &cfg.state_file).await?;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    (1..=cfg.agents)
        .map(|i| {
            let name = agent_name(&cfg.prefix, i);
            known
                .get(&name)
                .cloned()
                .ok_or_else(|| AgentError::Config(format!("no identity for {name} after joining")))
        })
        .collect()
}

async fn save_file(file: &FleetFile, path: &Path) -> Result<(), AgentError> {
    let (file, path) = (file.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || file.save(&path))
        .await
        .map_err(|e| AgentError::Config(format!("saving the fleet state failed: {e}")))?
}

async fn join_one(
    mut client: AgentHubClient<tonic::transport::Channel>,
    cfg: &FleetConfig,
    token: &str,
    name: &str,
    facts: &pb::Facts,
    labels: &HashMap<String, String>,
) -> Result<SimIdentity, AgentError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = client
            .join(JoinRequest {
                token: token.to_string(),
                name: name.to_string(),
                labels: labels.clone(),
                facts: Some(facts_for(facts, name)),
            })
            .await;
        let status = match res {
            Ok(r) => {
                let r = r.into_inner();
                return Ok(SimIdentity {
                    name: name.to_string(),
                    agent_id: r.agent_id,
                    credential: r.credential,
                });
            }
            Err(s) => s,
        };
        let msg = match status.code() {
            tonic::Code::AlreadyExists => format!(
                "an agent named {name:?} already exists on the server but {} holds no identity for it — pass another --prefix, or the state file of the fleet that created it",
                cfg.state_file.display()
            ),
            _ => status.message().to_string(),
        };
        let retryable = connect::ConnectError::Status(status).is_retryable();
        if !retryable || attempt >= JOIN_ATTEMPTS {
            return Err(AgentError::Join {
                server: cfg.server.clone(),
                msg,
            });
        }
        let wait = backoff.next_wait();
        tracing::warn!(agent = name, error = %msg, retry_in = ?wait, "join failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

// ---------------------------------------------------------------------------------------
// The fleet

/// What all simulated agents share.
struct Fleet {
    server: String,
    pin: Option<String>,
    labels: HashMap<String, String>,
    facts: pb::Facts,
    heartbeat: Duration,
    /// The latest metrics sample, sent in every agent's heartbeat.
    metrics: Mutex<pb::Metrics>,
    /// Processes running at once across the fleet.
    procs: Semaphore,
    connecting: Semaphore,
    /// Agents welcomed at least once, plus agents that ended before their first Welcome.
    settled: AtomicUsize,
    welcomed: AtomicUsize,
    settled_changed: Notify,
    /// Agents with a session up right now.
    connected: AtomicUsize,
}

impl Fleet {
    fn settle(&self, welcomed: bool) {
        if welcomed {
            self.welcomed.fetch_add(1, Ordering::Relaxed);
        }
        self.settled.fetch_add(1, Ordering::Relaxed);
        self.settled_changed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cfg.agents` simulated agents until every one of them has been rejected (revoked).
/// `ready(n)` is called once every agent had its first session (or was rejected), with the
/// number of agents that connected.
pub async fn run_fleet(
    cfg: FleetConfig,
    ready: impl FnOnce(usize) + Send,
) -> Result<(), AgentError> {
    crate::limit_malloc_arenas();
    if cfg.agents == 0 {
        return Err(AgentError::Config("--agents must be at least 1".into()));
    }
    if !valid_prefix(&cfg.prefix) {
        return Err(AgentError::Config(format!(
            "bad --prefix {:?}: use 1-48 letters, digits, '.', '_' or '-'",
            cfg.prefix
        )));
    }
    if cfg.heartbeat < Duration::from_millis(100) {
        return Err(AgentError::Config(
            "--heartbeat must be at least 100ms".into(),
        ));
    }
    let file = FleetFile::load(&cfg.state_file)?;
    if let Some(f) = &file
        && !same_server(&f.server, &cfg.server)
    {
        return Err(AgentError::Config(format!(
            "{} holds identities for the server {}, not {} — pass another --state-file",
            cfg.state_file.display(),
            f.server,
            cfg.server
        )));
    }
    let pin = cfg
        .ca_sha256
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.ca_sha256.clone()));
    // Fail at once, with the reason, when the server cannot be reached at all; later
    // disconnects are retried.
    let channel = connect::channel(&cfg.server, pin.as_deref())
        .await
        .map_err(|e| AgentError::Config(e.to_string()))?;
    let facts = tokio::task::spawn_blocking(herd_facts::collect_facts)
        .await
        .unwrap_or_default();
    let mut labels: HashMap<String, String> = cfg.labels.clone().into_iter().collect();
    labels
        .entry(SIM_LABEL.to_string())
        .or_insert_with(|| "true".to_string());
    let identities = ensure_identities(&cfg, file, channel, &facts, &labels).await?;

    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let fleet = Arc::new(Fleet {
        server: cfg.server.clone(),
        pin,
        labels,
        facts,
        heartbeat: cfg.heartbeat,
        metrics: Mutex::new(pb::Metrics::default()),
        procs: Semaphore::new(PROCS_PER_CPU * cpus),
        connecting: Semaphore::new(CONNECTING),
        settled: AtomicUsize::new(0),
        welcomed: AtomicUsize::new(0),
        settled_changed: Notify::new(),
        connected: AtomicUsize::new(0),
    });
    let n = identities.len();
    let mut agents = JoinSet::new();
    agents.spawn(sample_metrics(fleet.clone()));
    for id in identities {
        agents.spawn(run_agent(fleet.clone(), id));
    }
    let mut ready = Some(ready);
    let mut alive = n;
    let mut last_rejection = None::<String>;
    let mut down_reported = 0usize;
    let mut check = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if ready.is_some() && fleet.settled.load(Ordering::Relaxed) >= n {
            let welcomed = fleet.welcomed.load(Ordering::Relaxed);
            if welcomed == 0 {
                break;
            }
            if let Some(r) = ready.take() {
                // Connection setup leaves much freed memory behind; hand it back.
                let _ = tokio::task::spawn_blocking(crate::release_free_memory).await;
                r(welcomed);
            }
        }
        tokio::select! {
            ended = agents.join_next() => match ended {
                Some(Ok(Some(msg))) => {
                    last_rejection = Some(msg);
                    alive -= 1;
                    if alive == 0 {
                        break;
                    }
                }
                Some(Ok(None)) => {}
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a simulated agent failed");
                    alive = alive.saturating_sub(1);
                    if alive == 0 {
                        break;
                    }
                }
                None => break,
            },
            _ = fleet.settled_changed.notified() => {}
            _ = check.tick(), if ready.is_none() => {
                let down = alive.saturating_sub(fleet.connected.load(Ordering::Relaxed));
                if down != down_reported {
                    if down > 0 {
                        tracing::warn!("{down} of {alive} simulated agents are disconnected (reconnecting)");
                    } else {
                        tracing::warn!("all {alive} simulated agents are connected again");
                    }
                    down_reported = down;
                }
            }
        }
    }
    Err(AgentError::Rejected(format!(
        "every simulated agent was rejected by the server: {}",
        last_rejection.unwrap_or_else(|| "no reason given".into())
    )))
}

/// Takes one metrics sample per heartbeat period for the whole fleet, and returns freed
/// memory to the system about once a minute (tasks and reconnects leave some behind). Never
/// ends.
async fn sample_metrics(fleet: Arc<Fleet>) -> Option<String> {
    let mut sampler = Some(herd_facts::MetricsSampler::new());
    let mut tick = tokio::time::interval(fleet.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trim = Instant::now();
    loop {
        tick.tick().await;
        let mut s = sampler.take()?;
        let trim = last_trim.elapsed() >= TRIM_EVERY;
        if trim {
            last_trim = Instant::now();
        }
        match tokio::task::spawn_blocking(move || {
            if trim {
                crate::release_free_memory();
            }
            let m = s.sample();
            (s, m)
        })
        .await
        {
            Ok((s, m)) => {
                sampler = Some(s);
                *lock(&fleet.metrics) = m;
            }
            Err(_) => sampler = Some(herd_facts::MetricsSampler::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// One simulated agent

enum End {
    Fatal(String),
    Retry(String),
}

fn status_end(s: &tonic::Status) -> End {
    match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            End::Fatal(s.message().to_string())
        }
        _ => End::Retry(s.message().to_string()),
    }
}

/// What a task's runner reports to its agent.
struct RunnerMsg {
    task_id: String,
    events: Vec<task_event::Kind>,
    done: bool,
}

/// Runner reports waiting for the agent's task.
#[derive(Default)]
struct Inbox {
    queue: Mutex<Vec<RunnerMsg>>,
    notify: Notify,
}

impl Inbox {
    fn push(&self, msg: RunnerMsg) {
        lock(&self.queue).push(msg);
        self.notify.notify_one();
    }
}

/// A task the agent holds: running, or finished with events not yet acknowledged.
struct SimTask {
    id: String,
    last_seq: u64,
    /// Events sent (or to send) and not yet acknowledged, in seq order.
    unacked: Vec<TaskEvent>,
    /// Ends the process early; `None` once the task finished (or was cancelled).
    cancel: Option<oneshot::Sender<Duration>>,
    finished: bool,
}

/// An agent's state across sessions.
struct AgentState {
    tasks: Vec<SimTask>,
    inbox: Arc<Inbox>,
}

impl AgentState {
    /// Numbers what the runners reported and returns the new events.
    fn drain_inbox(&mut self) -> Vec<TaskEvent> {
        let msgs = std::mem::take(&mut *lock(&self.inbox.queue));
        let mut out = Vec::new();
        for msg in msgs {
            let Some(t) = self.tasks.iter_mut().find(|t| t.id == msg.task_id) else {
                continue;
            };
            for kind in msg.events {
                t.last_seq += 1;
                let ev = TaskEvent {
                    task_id: t.id.clone(),
                    seq: t.last_seq,
                    kind: Some(kind),
                };
                out.push(ev.clone());
                t.unacked.push(ev);
            }
            if msg.done {
                t.finished = true;
                t.cancel = None;
            }
        }
        out
    }

    fn unacked(&self) -> Vec<TaskEvent> {
        self.tasks
            .iter()
            .flat_map(|t| t.unacked.iter().cloned())
            .collect()
    }

    fn known(&self) -> Vec<pb::KnownTask> {
        self.tasks
            .iter()
            .map(|t| pb::KnownTask {
                task_id: t.id.clone(),
                finished: t.finished,
            })
            .collect()
    }

    fn ack(&mut self, acks: Vec<pb::Ack>) {
        for a in acks {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == a.task_id) {
                t.unacked.retain(|e| e.seq > a.seq);
            }
        }
        self.tasks.retain(|t| !(t.finished && t.unacked.is_empty()));
        if self.tasks.is_empty() {
            // Give back what a burst of tasks used.
            self.tasks = Vec::new();
        }
    }

    fn start(&mut self, fleet: &Arc<Fleet>, st: pb::StartTask) {
        // StartTask is idempotent by task id.
        if self.tasks.iter().any(|t| t.id == st.task_id) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.tasks.push(SimTask {
            id: st.task_id.clone(),
            last_seq: 0,
            unacked: Vec::new(),
            cancel: Some(tx),
            finished: false,
        });
        tokio::spawn(run_task(fleet.clone(), self.inbox.clone(), st, rx));
    }

    fn cancel(&mut self, c: &pb::CancelTask) {
        if let Some(tx) = self
            .tasks
            .iter_mut()
            .find(|t| t.id == c.task_id)
            .and_then(|t| t.cancel.take())
        {
            let grace = if c.grace_ms > 0 {
                Duration::from_millis(u64::from(c.grace_ms))
            } else {
                DEFAULT_GRACE
            };
            let _ = tx.send(grace);
        }
    }
}

/// One simulated agent: sessions forever, with backoff. Returns the reason when the server
/// rejects its credential (revoked).
async fn run_agent(fleet: Arc<Fleet>, id: Arc<SimIdentity>) -> Option<String> {
    let mut st = AgentState {
        tasks: Vec::new(),
        inbox: Arc::new(Inbox::default()),
    };
    let mut welcomed = false;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        let started = Instant::now();
        // Boxed: the dial and handshake futures are large, and only live while connecting.
        let end = match Box::pin(open(&fleet, &id, &mut st)).await {
            Ok(mut link) => {
                fleet.connected.fetch_add(1, Ordering::Relaxed);
                if !welcomed {
                    welcomed = true;
                    fleet.settle(true);
                }
                let end = connected(&fleet, &mut st, &mut link).await;
                fleet.connected.fetch_sub(1, Ordering::Relaxed);
                end
            }
            Err(end) => end,
        };
        match end {
            End::Fatal(msg) => {
                tracing::warn!(agent = %id.name, error = %msg, "simulated agent stopped: the server rejected it");
                if !welcomed {
                    fleet.settle(false);
                }
                return Some(msg);
            }
            End::Retry(msg) => {
                if started.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                tracing::info!(agent = %id.name, error = %msg, retry_in = ?wait, "simulated agent lost its connection");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// An established session: the stream both ways, and the client that keeps its connection.
struct Link {
    _client: tonic::client::Grpc<tonic::transport::Channel>,
    out: futures::channel::mpsc::Sender<AgentFrame>,
    inbound: tonic::Streaming<ServerFrame>,
}

/// Dials, says Hello and waits for the Welcome.
async fn open(fleet: &Fleet, id: &SimIdentity, st: &mut AgentState) -> Result<Link, End> {
    let Ok(_permit) = fleet.connecting.acquire().await else {
        return Err(End::Retry("the fleet is shutting down".into()));
    };
    let channel = match connect::channel(&fleet.server, fleet.pin.as_deref()).await {
        Ok(c) => c,
        Err(e) if e.is_retryable() => return Err(End::Retry(e.to_string())),
        Err(e) => return Err(End::Fatal(e.to_string())),
    };
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return Err(End::Retry(format!("connection not ready: {e}")));
    }
    let Ok(bearer) = format!("Bearer {}", id.credential).parse() else {
        return Err(End::Fatal(
            "credential in the fleet state file is malformed".into(),
        ));
    };
    // What finished while disconnected is numbered before Hello lists the tasks.
    let _ = st.drain_inbox();
    let (mut out, out_rx) = futures::channel::mpsc::channel::<AgentFrame>(OUT_QUEUE);
    let hello = AgentFrame {
        kind: Some(agent_frame::Kind::Hello(pb::Hello {
            version: VERSION.to_string(),
            name: id.name.clone(),
            labels: fleet.labels.clone(),
            facts: Some(facts_for(&fleet.facts, &id.name)),
            tasks: st.known(),
        })),
    };
    if out.try_send(hello).is_err() {
        return Err(End::Retry("cannot queue the hello".into()));
    }
    let mut req = tonic::Request::new(out_rx);
    req.metadata_mut().insert("authorization", bearer);
    let call = client.streaming(
        req,
        http::uri::PathAndQuery::from_static(SESSION_PATH),
        SessionCodec,
    );
    let mut inbound = match tokio::time::timeout(WELCOME_WAIT, call).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return Err(status_end(&s)),
        Err(_) => return Err(End::Retry("no answer to the session request".into())),
    };
    match tokio::time::timeout(WELCOME_WAIT, inbound.message()).await {
        Ok(Ok(Some(ServerFrame {
            kind: Some(server_frame::Kind::Welcome(_)),
        }))) => Ok(Link {
            _client: client,
            out,
            inbound,
        }),
        Ok(Ok(Some(_))) => Err(End::Retry("the server did not start with a welcome".into())),
        Ok(Ok(None)) => Err(End::Retry("server closed the stream".into())),
        Ok(Err(s)) => Err(status_end(&s)),
        Err(_) => Err(End::Retry("no welcome from the server".into())),
    }
}

/// The `Session` method of the agent hub (what the generated client calls).
const SESSION_PATH: &str = "/herd.agent.v1.AgentHub/Session";
/// Initial size of the session stream's encode and decode buffers. tonic's default is 8 KiB
/// each way; a simulated agent's frames are far smaller (the buffers grow when one is not),
/// and ten thousand idle streams would otherwise end up holding 160 MiB of them.
const CODEC_BUFFER: usize = 1024;

/// The generated client's protobuf codec, with small buffers.
struct SessionCodec;
struct FrameEncoder;
struct FrameDecoder;

impl tonic::codec::Codec for SessionCodec {
    type Encode = AgentFrame;
    type Decode = ServerFrame;
    type Encoder = FrameEncoder;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> FrameDecoder {
        FrameDecoder
    }
}

impl tonic::codec::Encoder for FrameEncoder {
    type Item = AgentFrame;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: AgentFrame,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::Message::encode(&item, buf)
            .map_err(|e| tonic::Status::internal(format!("cannot encode a frame: {e}")))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(CODEC_BUFFER, CODEC_BUFFER)
    }
}

impl tonic::codec::Decoder for FrameDecoder {
    type Item = ServerFrame;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ServerFrame>, tonic::Status> {
        <ServerFrame as prost::Message>::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("cannot decode a frame: {e}")))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(CODEC_BUFFER, CODEC_BUFFER)
    }
}

/// A session after its Welcome: commands in, heartbeats and task events out.
async fn connected(fleet: &Arc<Fleet>, st: &mut AgentState, link: &mut Link) -> End {
    let Link { out, inbound, .. } = link;
    // Everything not acknowledged is sent again; the server drops what it already has.
    let resend = st.unacked();
    if !resend.is_empty() && out.send(events_frame(resend)).await.is_err() {
        return End::Retry("the stream closed".into());
    }
    // The first heartbeat at a random point of the period, so a fleet does not beat in step.
    let period = fleet.heartbeat;
    let offset = rand::rng().random_range(0..period.as_millis().max(1) as u64);
    let mut next_beat = tokio::time::Instant::now() + Duration::from_millis(offset);
    loop {
        tokio::select! {
            frame = inbound.message() => {
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return End::Retry("server closed the stream".into()),
                    Err(s) => return status_end(&s),
                };
                match frame.kind {
                    Some(server_frame::Kind::Start(t)) => st.start(fleet, t),
                    Some(server_frame::Kind::Cancel(c)) => st.cancel(&c),
                    Some(server_frame::Kind::Acks(a)) => st.ack(a.acks),
                    Some(server_frame::Kind::Welcome(_))
                    | Some(server_frame::Kind::Input(_))
                    | None => {}
                }
            }
            _ = sleep_until(next_beat) => {
                next_beat += period;
                let metrics = *lock(&fleet.metrics);
                let beat = AgentFrame {
                    kind: Some(agent_frame::Kind::Heartbeat(pb::Heartbeat {
                        metrics: Some(metrics),
                    })),
                };
                // A stream too slow to take a heartbeat skips it.
                match out.try_send(beat) {
                    Err(e) if e.is_disconnected() => return End::Retry("the stream closed".into()),
                    _ => {}
                }
            }
            _ = st.inbox.notify.notified() => {
                let events = st.drain_inbox();
                if !events.is_empty() && out.send(events_frame(events)).await.is_err() {
                    return End::Retry("the stream closed".into());
                }
            }
        }
    }
}

fn events_frame(events: Vec<TaskEvent>) -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Events(pb::EventBatch { events })),
    }
}

// ---------------------------------------------------------------------------------------
// Running a task

/// Characters that make a command need a shell.
const SHELL_CHARS: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
    '=', '{', '}', '!', '%', '\n', '\r',
];

/// Words that are shell syntax or builtins without a program of their own.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "alias", "break", "case", "cd", "command", "continue", "do", "done", "elif", "else",
    "esac", "eval", "exec", "exit", "export", "fi", "for", "function", "getopts", "hash", "if",
    "local", "read", "readonly", "return", "set", "shift", "source", "then", "times", "trap",
    "type", "ulimit", "umask", "unset", "until", "wait", "while",
];

/// The words of `command` when it is a plain word list that can run without a shell: no
/// shell syntax, and a first word that is not shell syntax or a builtin.
pub fn plain_words(command: &str) -> Option<Vec<&str>> {
    if command.contains(SHELL_CHARS) {
        return None;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let first = words.first()?;
    if SHELL_WORDS.contains(first) {
        return None;
    }
    Some(words)
}

/// The program `name` resolves to through `path` (a `PATH` value); names with a `/` are
/// taken as they are.
fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs one task and reports it to the agent's inbox.
async fn run_task(
    fleet: Arc<Fleet>,
    inbox: Arc<Inbox>,
    st: pb::StartTask,
    mut cancel: oneshot::Receiver<Duration>,
) {
    let task_id = st.task_id.clone();
    // Queued behind the fleet's process limit; a cancel while queued ends it unrun.
    let permit = tokio::select! {
        p = fleet.procs.acquire() => p.ok(),
        _ = &mut cancel => None,
    };
    let events = match permit {
        Some(_permit) => Box::pin(execute(&inbox, st, cancel)).await,
        None => vec![task_event::Kind::Exited(pb::Exited {
            code: None,
            signal: None,
            reason: pb::ExitReason::Cancelled as i32,
            duration_ms: 0,
            detail: "cancelled before it started".into(),
        })],
    };
    inbox.push(RunnerMsg {
        task_id,
        events,
        done: true,
    });
}

fn exited(reason: pb::ExitReason, detail: String, since: Instant) -> task_event::Kind {
    task_event::Kind::Exited(pb::Exited {
        code: None,
        signal: None,
        reason: reason as i32,
        duration_ms: since.elapsed().as_millis() as u64,
        detail,
    })
}

/// Signals the task's process group; errors (the group is gone) do not matter.
fn signal_group(pgid: Option<u32>, sig: nix::sys::signal::Signal) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Starts the process, reports Started, waits for it (timeout, cancel), and returns the
/// Output and Exited events.
async fn execute(
    inbox: &Inbox,
    st: pb::StartTask,
    mut cancel: oneshot::Receiver<Duration>,
) -> Vec<task_event::Kind> {
    use nix::sys::signal::Signal;
    use std::process::Stdio;

    let since = Instant::now();
    let path = st
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let direct = plain_words(&st.command).and_then(|w| find_program(w[0], &path).map(|p| (p, w)));
    let mut cmd = match direct {
        Some((program, words)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(&words[1..]);
            c
        }
        None => {
            let shell = if st.shell.is_empty() { "sh" } else { &st.shell };
            let mut c = tokio::process::Command::new(shell);
            c.arg("-c").arg(&st.command);
            c
        }
    };
    cmd.env(herd_exec::TASK_ID_ENV, &st.task_id)
        .envs(&st.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !st.cwd.is_empty() {
        cmd.current_dir(&st.cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return vec![exited(
                pb::ExitReason::FailedToStart,
                if st.cwd.is_empty() {
                    format!("cannot start {:?}: {e}", st.command)
                } else {
                    format!("cannot start {:?} in {}: {e}", st.command, st.cwd)
                },
                since,
            )];
        }
    };
    let pgid = child.id();
    let started = task_event::Kind::Started(pb::Started {
        pid: pgid.unwrap_or(0),
    });
    // Reported with the exit when the process is quick, else on its own after a moment.
    let mut start_report = Some(started);
    let report_start_at = tokio::time::Instant::now() + START_REPORT_DELAY;

    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let (mut out_dropped, mut err_dropped) = (0u64, 0u64);
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let deadline = (st.timeout_ms > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_millis(st.timeout_ms));
    let grace = if st.grace_ms > 0 {
        Duration::from_millis(u64::from(st.grace_ms))
    } else {
        DEFAULT_GRACE
    };
    let mut reason = pb::ExitReason::Exited;
    let mut status = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut cancel_open = true;
    {
        let stdout = read_bounded(child.stdout.take(), &mut out_buf, &mut out_dropped);
        let stderr = read_bounded(child.stderr.take(), &mut err_buf, &mut err_dropped);
        tokio::pin!(stdout, stderr);
        let (mut out_done, mut err_done) = (false, false);
        while !(status.is_some() && out_done && err_done) {
            tokio::select! {
                _ = &mut stdout, if !out_done => out_done = true,
                _ = &mut stderr, if !err_done => err_done = true,
                s = child.wait(), if status.is_none() => {
                    status = Some(s);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_WAIT);
                }
                _ = sleep_until(deadline.unwrap_or(far)),
                    if deadline.is_some() && reason == pb::ExitReason::Exited && status.is_none() => {
                    reason = pb::ExitReason::TimedOut;
                    signal_group(pgid, Signal::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + grace);
                }
                g = &mut cancel, if cancel_open => {
                    cancel_open = false;
                    // A dropped sender (the agent went away) is no cancel.
                    if let Ok(g) = g && reason == pb::ExitReason::Exited && status.is_none() {
                        reason = pb::ExitReason::Cancelled;
                        signal_group(pgid, Signal::SIGTERM);
                        kill_at = Some(tokio::time::Instant::now() + g);
                    }
                }
                _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    kill_at = None;
                    signal_group(pgid, Signal::SIGKILL);
                }
                _ = sleep_until(report_start_at), if start_report.is_some() && status.is_none() => {
                    if let Some(started) = start_report.take() {
                        inbox.push(RunnerMsg {
                            task_id: st.task_id.clone(),
                            events: vec![started],
                            done: false,
                        });
                    }
                }
                _ = sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                    // Processes left behind hold the output open: end them and report.
                    signal_group(pgid, Signal::SIGKILL);
                    break;
                }
            }
        }
    }
    if kill_at.is_some() {
        signal_group(pgid, Signal::SIGKILL);
    }
    let mut events = Vec::with_capacity(4);
    events.extend(start_report);
    for (buf, stream) in [(out_buf, pb::Stream::Stdout), (err_buf, pb::Stream::Stderr)] {
        if !buf.is_empty() {
            events.push(task_event::Kind::Output(pb::Output {
                stream: stream as i32,
                data: Bytes::from(buf),
            }));
        }
    }
    let mut detail = String::new();
    if out_dropped + err_dropped > 0 {
        detail = format!(
            "the simulated agent kept {} KiB per stream and dropped {} bytes of output",
            OUTPUT_CAP / 1024,
            out_dropped + err_dropped
        );
    }
    let exit = match status {
        Some(Ok(s)) => {
            use std::os::unix::process::ExitStatusExt;
            pb::Exited {
                code: s.code(),
                signal: s.signal(),
                reason: reason as i32,
                duration_ms: since.elapsed().as_millis() as u64,
                detail,
            }
        }
        Some(Err(e)) => pb::Exited {
            code: None,
            signal: None,
            reason: pb::ExitReason::Unspecified as i32,
            duration_ms: since.elapsed().as_millis() as u64,
            detail: format!("cannot wait for the process: {e}"),
        },
        None => pb::Exited {
            code: None,
            signal: None,
            reason: pb::ExitReason::Unspecified as i32,
            duration_ms: since.elapsed().as_millis() as u64,
            detail: "the process could not be waited for".into(),
        },
    };
    events.push(task_event::Kind::Exited(exit));
    events
}

/// Reads `r` to its end, keeping the first [`OUTPUT_CAP`] bytes in `keep` and counting the
/// rest in `dropped`.
async fn read_bounded<R: AsyncRead + Unpin>(r: Option<R>, keep: &mut Vec<u8>, dropped: &mut u64) {
    let Some(mut r) = r else { return };
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let take = n.min(OUTPUT_CAP - keep.len());
                keep.extend_from_slice(&chunk[..take]);
                *dropped += (n - take) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_word_lists() {
        assert_eq!(plain_words("true"), Some(vec!["true"]));
        assert_eq!(
            plain_words("  echo  hi\tthere "),
            Some(vec!["echo", "hi", "there"])
        );
        assert_eq!(
            plain_words("/bin/ls -l /tmp"),
            Some(vec!["/bin/ls", "-l", "/tmp"])
        );
        assert_eq!(plain_words("sleep 0.5"), Some(vec!["sleep", "0.5"]));
        for shell in [
            "",
            "   ",
            "echo hi | wc",
            "true && false",
            "a; b",
            "cat < f",
            "echo > f",
            "(true)",
            "echo $HOME",
            "echo `id`",
            "echo a\\ b",
            "echo \"x\"",
            "echo 'x'",
            "ls *.rs",
            "ls ?",
            "ls [ab]",
            "echo # c",
            "ls ~",
            "FOO=1 env",
            "echo {a,b}",
            "! true",
            "echo a\nb",
            "cd /tmp",
            "exit 3",
            "export A",
        ] {
            assert_eq!(plain_words(shell), None, "{shell:?}");
        }
    }

    #[test]
    fn session_path_matches_the_service() {
        assert_eq!(
            SESSION_PATH,
            format!(
                "/{}/Session",
                herd_proto::v1::agent_hub_server::SERVICE_NAME
            )
        );
    }

    #[test]
    fn names_and_prefixes() {
        assert_eq!(agent_name("sim-", 1), "sim-00001");
        assert_eq!(agent_name("sim-", 10000), "sim-10000");
        assert_eq!(agent_name("x", 123456), "x123456");
        assert!(valid_prefix("sim-"));
        assert!(valid_prefix("load.test_1-"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a b"));
        assert!(!valid_prefix("sim/"));
    }

    #[test]
    fn programs_are_found_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_program("tool", &path), Some(exe));
        assert_eq!(find_program("data", &path), None);
        assert_eq!(find_program("missing", &path), None);
        assert_eq!(
            find_program("./rel/tool", &path),
            Some(PathBuf::from("./rel/tool"))
        );
    }

    #[test]
    fn state_file_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.json");
        assert_eq!(FleetFile::load(&path).unwrap(), None);
        let file = FleetFile {
            server: "http://127.0.0.1:7700".into(),
            ca_sha256: Some("ab".repeat(32)),
            agents: (1..=3)
                .map(|i| SimIdentity {
                    name: agent_name("sim-", i),
                    agent_id: format!("id{i}"),
                    credential: format!("ha_id{i}_secret"),
                })
                .collect(),
        };
        file.save(&path).unwrap();
        assert_eq!(FleetFile::load(&path).unwrap(), Some(file.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("fleet.json.tmp").exists());
        // Saving again replaces the file.
        let mut fewer = file.clone();
        fewer.agents.truncate(1);
        fewer.save(&path).unwrap();
        assert_eq!(FleetFile::load(&path).unwrap(), Some(fewer));

        std::fs::write(&path, "not json").unwrap();
        let err = FleetFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a fleet state file"), "{err}");
    }

    #[test]
    fn facts_are_distinct_per_agent() {
        let base = pb::Facts {
            machine_id: "m".into(),
            hostname: "host".into(),
            cpus: 2,
            ..Default::default()
        };
        let a = facts_for(&base, "sim-00001");
        let b = facts_for(&base, "sim-00002");
        assert_eq!(a.hostname, "sim-00001");
        assert_eq!(a.machine_id.len(), 32);
        assert_ne!(a.machine_id, b.machine_id);
        assert_eq!(a.machine_id, facts_for(&base, "sim-00001").machine_id);
        assert_eq!(a.cpus, 2);
    }

    #[test]
    fn events_are_numbered_and_forgotten_once_acknowledged() {
        let inbox = Arc::new(Inbox::default());
        let (tx, _rx) = oneshot::channel();
        let mut st = AgentState {
            tasks: vec![SimTask {
                id: "t1".into(),
                last_seq: 0,
                unacked: Vec::new(),
                cancel: Some(tx),
                finished: false,
            }],
            inbox: inbox.clone(),
        };
        inbox.push(RunnerMsg {
            task_id: "t1".into(),
            events: vec![task_event::Kind::Started(pb::Started { pid: 1 })],
            done: false,
        });
        inbox.push(RunnerMsg {
            task_id: "t1".into(),
            events: vec![
                task_event::Kind::Output(pb::Output {
                    stream: pb::Stream::Stdout as i32,
                    data: Bytes::from_static(b"hi\n"),
                }),
                exited(pb::ExitReason::Exited, String::new(), Instant::now()),
            ],
            done: true,
        });
        let evs = st.drain_inbox();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            st.known(),
            vec![pb::KnownTask {
                task_id: "t1".into(),
                finished: true
            }]
        );
        st.ack(vec![pb::Ack {
            task_id: "t1".into(),
            seq: 2,
        }]);
        assert_eq!(st.unacked().len(), 1);
        st.ack(vec![pb::Ack {
            task_id: "t1".into(),
            seq: 3,
        }]);
        assert!(st.tasks.is_empty());
    }
}
