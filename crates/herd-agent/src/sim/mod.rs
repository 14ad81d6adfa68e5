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
//! - the processes are started by one small runner process for the whole fleet (see
//!   `runner`), at most 4 per CPU at once; further tasks queue;
//! - with `no_process`, every task is answered at once with exit code 0 and nothing runs
//!   (to measure the server alone);
//! - heartbeats (at the period the server's Welcome asks for, unless overridden) carry one
//!   metrics sample the fleet takes every 5 s.
//!
//! Identities are kept in one JSON state file (0600, replaced atomically), so a restarted
//! fleet reconnects as the same machines without a join token.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use herd_proto::v1::agent_hub_client::AgentHubClient;
use herd_proto::v1::{
    self as pb, AgentFrame, JoinRequest, ServerFrame, TaskEvent, agent_frame, server_frame,
    task_event,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::{AgentError, Backoff, VERSION, connect};

mod runner;
pub use runner::{OUTPUT_CAP, plain_words, serve as serve_runner};

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
/// How often the fleet samples the machine's metrics for its heartbeats.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How often the fleet returns freed memory to the system.
const TRIM_EVERY: Duration = Duration::from_secs(60);
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
    /// Time between heartbeats; `None`: what the server asks for.
    pub heartbeat: Option<Duration>,
    /// The command (program and arguments) that starts the process runner, `serve`.
    pub runner: Vec<std::ffi::OsString>,
    /// Answer every task at once with exit code 0 instead of running it: measures what the
    /// server can take (dispatch, results persisted), not what machines can run.
    pub no_process: bool,
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
        let body = serde_json::to_vec(self).map_err(|e| AgentError::Config(e.to_string()))?;
        crate::write_private(path, &body).map_err(|e| {
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
    heartbeat: Option<Duration>,
    /// The latest metrics sample, sent in every agent's heartbeat.
    metrics: Mutex<pb::Metrics>,
    /// Where the tasks run.
    runner: Arc<runner::Runner>,
    no_process: bool,
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
    if cfg
        .heartbeat
        .is_some_and(|h| h < Duration::from_millis(100))
    {
        return Err(AgentError::Config(
            "--heartbeat must be at least 100ms".into(),
        ));
    }
    // Before any connection is open, so the runner holds no more descriptors than it needs.
    let (runner, runner_io) = runner::spawn(&cfg.runner)?;
    let mut runner_io = std::pin::pin!(runner_io);
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

    let fleet = Arc::new(Fleet {
        server: cfg.server.clone(),
        pin,
        labels,
        facts,
        heartbeat: cfg.heartbeat,
        metrics: Mutex::new(pb::Metrics::default()),
        runner,
        no_process: cfg.no_process,
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
            why = &mut runner_io => return Err(AgentError::Config(why)),
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

/// Takes one metrics sample every [`SAMPLE_EVERY`] for the whole fleet, and returns freed
/// memory to the system about once a minute (tasks and reconnects leave some behind). Never
/// ends.
async fn sample_metrics(fleet: Arc<Fleet>) -> Option<String> {
    let mut sampler = Some(herd_facts::MetricsSampler::new());
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
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
    /// The process may still be running and was not asked to stop.
    cancellable: bool,
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
                t.cancellable = false;
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
        self.tasks.push(SimTask {
            id: st.task_id.clone(),
            last_seq: 0,
            unacked: Vec::new(),
            cancellable: true,
            finished: false,
        });
        if fleet.no_process {
            self.inbox.push(RunnerMsg {
                task_id: st.task_id,
                events: vec![
                    task_event::Kind::Started(pb::Started { pid: 0 }),
                    task_event::Kind::Exited(pb::Exited {
                        code: Some(0),
                        signal: None,
                        reason: pb::ExitReason::Exited as i32,
                        duration_ms: 0,
                        detail: "answered by the simulated fleet without running it".into(),
                    }),
                ],
                done: true,
            });
        } else {
            fleet.runner.start_task(self.inbox.clone(), st);
        }
    }

    fn cancel(&mut self, fleet: &Fleet, c: pb::CancelTask) {
        if let Some(t) = self
            .tasks
            .iter_mut()
            .find(|t| t.id == c.task_id && t.cancellable)
        {
            t.cancellable = false;
            fleet.runner.cancel(c);
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
    /// The heartbeat period the server asked for.
    heartbeat: Duration,
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
            kind: Some(server_frame::Kind::Welcome(w)),
        }))) => Ok(Link {
            _client: client,
            out,
            inbound,
            heartbeat: crate::heartbeat_period(w.heartbeat_secs),
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
    let Link {
        out,
        inbound,
        heartbeat,
        ..
    } = link;
    // Everything not acknowledged is sent again; the server drops what it already has.
    let resend = st.unacked();
    if !resend.is_empty() && out.send(events_frame(resend)).await.is_err() {
        return End::Retry("the stream closed".into());
    }
    // The first heartbeat at a random point of the period, so a fleet does not beat in step.
    let period = fleet.heartbeat.unwrap_or(*heartbeat);
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
                    Some(server_frame::Kind::Cancel(c)) => st.cancel(fleet, c),
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

#[cfg(test)]
mod tests {
    use super::runner::{exited, find_program};
    use super::*;
    use bytes::Bytes;

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
        let mut st = AgentState {
            tasks: vec![SimTask {
                id: "t1".into(),
                last_seq: 0,
                unacked: Vec::new(),
                cancellable: true,
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
