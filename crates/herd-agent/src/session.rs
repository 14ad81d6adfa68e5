//! One session on the control stream: Hello, then heartbeats, task events from the outbox
//! (a bounded window of batches in flight), and the server's commands (start, cancel, input,
//! acks). Tasks outlive sessions; only the stream is per session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_core::supervise::{ClassLimits, CommandClass};
use herd_exec::{Control, ExecEvent, ExecHandle, ExecSpec, ExitReason, OutStream, Supervise};
use herd_link::{VERSION, heartbeat_period};
use herd_proto::v1::agent_hub_client::AgentHubClient;
use herd_proto::v1::{self as pb, AgentFrame, TaskEvent, agent_frame, server_frame, task_event};
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::spool_thread::{OutboxError, SpoolThread};
use crate::{AgentConfig, Identity};
use crate::{copy, fetch};

/// Messages of events sent but not yet acknowledged.
const WINDOW: usize = 16;
/// Events taken from the outbox at a time.
const BATCH_BYTES: usize = 2 << 20;
/// Events per message, at most (about). The server persists messages that arrive together
/// in one go, so this only bounds the agent's encoding buffer, which the gRPC stream keeps
/// at its largest size for as long as the connection lives.
const MESSAGE_BYTES: usize = 1 << 20;
/// While the outbox's memory is full, a task's output waits this long for an
/// acknowledgement before the spool takes it on disk alone.
const PACE_STALL: Duration = Duration::from_secs(1);
/// At least the encoded size of any one event (output events carry at most 64 KiB): a batch
/// is taken only while memory has this much room left, so none of it falls out of memory.
const EVENT_BOUND: usize = 80 * 1024;
/// Heartbeats in a row that return freed memory to the system once the agent is idle.
const IDLE_TRIMS: u32 = 4;

pub enum SessionEnd {
    Fatal(String),
    /// Another process holds this identity and is connected (FAILED_PRECONDITION).
    Conflict(String),
    Retry(String),
    /// The server said it shuts down cleanly (and is expected back).
    GoingAway,
}

/// State that lives across sessions.
pub struct Shared {
    /// The outbox, on its own thread.
    spool: SpoolThread,
    /// Tasks started in this process that have not ended yet.
    running: Mutex<HashMap<String, Slot>>,
    /// The current session's connection, for copy tasks to read blobs over.
    link: tokio::sync::watch::Sender<Option<copy::Link>>,
    /// The starts of copy tasks not over yet (`<task>.start`), so a restarted agent resumes them.
    copies: PathBuf,
    /// The tasks' runtime directories (`<task>/`: input, output, script; `.bin/herd` shared by
    /// the tasks of the agent's own user), each removed
    /// once its task's end is in the spool.
    tasks: PathBuf,
    /// This executable, linked as `herd` into the tasks' runtime `bin`.
    exe: Option<PathBuf>,
    /// Tasks are supervised.
    supervise: bool,
}

/// A task the agent was told to start.
enum Slot {
    /// Being looked up in the spool (a task it knows was started before and is not run
    /// again); commands for it wait here meanwhile.
    Checking(Vec<Control>),
    Running(ExecHandle),
}

/// Locks a map that is only ever held for a lookup or an insert, never across I/O.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(spool: SpoolThread, copies: PathBuf, tasks: PathBuf, supervise: bool) -> Shared {
        Shared {
            spool,
            running: Mutex::new(HashMap::new()),
            link: tokio::sync::watch::channel(None).0,
            copies,
            tasks,
            exe: std::env::current_exe().ok(),
            supervise,
        }
    }

    /// Tasks of a previous agent process that never finished cannot be re-attached: their
    /// processes are ended and their end is reported, so the server does not wait forever.
    /// Copy tasks are the exception: they resume where their file stopped.
    pub async fn abandon_previous_tasks(self: &Arc<Self>) {
        let tasks = match self.spool.tasks().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the spool's tasks");
                return;
            }
        };
        let mut unfinished: Vec<_> = tasks.into_iter().filter(|t| !t.finished).collect();
        let dir = self.copies.clone();
        let ids: Vec<String> = unfinished.iter().map(|t| t.task_id.clone()).collect();
        let saved = tokio::task::spawn_blocking(move || {
            ids.iter()
                .filter_map(|id| {
                    let bytes = std::fs::read(copy::saved_path(&dir, id)).ok()?;
                    pb::StartTask::decode(bytes.as_slice()).ok()
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for st in saved {
            unfinished.retain(|t| t.task_id != st.task_id);
            if st.fetch.is_empty() {
                tracing::info!(task = %st.task_id, "resuming a copy of the previous agent process");
            } else {
                tracing::info!(task = %st.task_id, "resuming a fetch of the previous agent process");
            }
            lock(&self.running).insert(st.task_id.clone(), Slot::Checking(Vec::new()));
            tokio::spawn(self.clone().start_copy(st, true));
        }
        if unfinished.is_empty() {
            return;
        }
        let ids: Vec<String> = unfinished.iter().map(|t| t.task_id.clone()).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for id in &ids {
                herd_exec::kill_task_processes(id);
            }
        })
        .await;
        for t in unfinished {
            let ev = TaskEvent {
                task_id: t.task_id.clone(),
                seq: t.last_seq + 1,
                kind: Some(task_event::Kind::Exited(pb::Exited {
                    code: None,
                    signal: None,
                    reason: pb::ExitReason::Unspecified as i32,
                    duration_ms: 0,
                    detail: "the agent restarted while the task ran; its processes were ended"
                        .into(),
                    outputs: Default::default(),
                })),
            };
            if let Err(e) = self.spool.append(vec![ev]).await {
                tracing::warn!(task = %t.task_id, error = %e, "cannot record abandoned task");
            }
        }
    }

    /// Starts a task unless it is running or the spool knows it (StartTask is idempotent
    /// by task id). Returns at once: the spool is asked from a task of its own.
    fn start_task(self: &Arc<Self>, st: pb::StartTask) {
        {
            let mut running = lock(&self.running);
            if running.contains_key(&st.task_id) {
                return;
            }
            running.insert(st.task_id.clone(), Slot::Checking(Vec::new()));
        }
        tokio::spawn(self.clone().start_unless_known(st));
    }

    async fn start_unless_known(self: Arc<Self>, st: pb::StartTask) {
        let id = st.task_id.clone();
        match self.spool.knows(&id).await {
            Ok(false) => {}
            Ok(true) => {
                lock(&self.running).remove(&id);
                return;
            }
            Err(e) => {
                tracing::error!(task = %id, error = %e, "cannot look the task up in the spool; not starting it");
                lock(&self.running).remove(&id);
                return;
            }
        }
        if !st.copy.is_empty() || !st.fetch.is_empty() {
            let (dir, bytes, path) = (
                self.copies.clone(),
                st.encode_to_vec(),
                copy::saved_path(&self.copies, &id),
            );
            let saved = tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                herd_link::private_dir(&dir)?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)?
                    .write_all(&bytes)
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                tracing::warn!(task = %id, "cannot save the copy's start; it will not resume after a restart");
            }
            return self.start_copy(st, false).await;
        }
        // A task id names its runtime directory: only one that is a plain name does.
        let files = herd_core::is_valid_id(&id).then(|| herd_exec::TaskFiles {
            dir: self.tasks.join(&id),
            input: st.input,
            herd: self.exe.clone(),
        });
        let dir = files.as_ref().map(|f| f.dir.clone());
        let supervise = self
            .supervise
            .then(|| supervise_of(st.supervise.as_ref(), &st.command));
        let spec = ExecSpec {
            task_id: id.clone(),
            command: st.command,
            shell: st.shell,
            cwd: (!st.cwd.is_empty()).then(|| st.cwd.into()),
            env: st.env.into_iter().collect(),
            timeout: (st.timeout_ms > 0).then(|| Duration::from_millis(st.timeout_ms)),
            interactive: st.interactive,
            tty: st.tty,
            grace: Duration::from_millis(st.grace_ms as u64),
            user: (!st.user.is_empty()).then_some(st.user),
            window: (st.rows > 0 && st.cols > 0).then(|| (clamp16(st.rows), clamp16(st.cols))),
            script: (!st.script.is_empty()).then_some(st.script),
            args: st.args,
            files,
            mask: st.mask,
            supervise,
        };
        let (tx, rx) = mpsc::channel(64);
        let handle = herd_exec::spawn(spec, tx);
        let control = handle.control.clone();
        let waiting = match lock(&self.running).insert(id.clone(), Slot::Running(handle)) {
            Some(Slot::Checking(waiting)) => waiting,
            _ => Vec::new(),
        };
        for c in waiting {
            let _ = control.send(c).await;
        }
        forward_events(self, id, rx, dir).await;
    }

    /// Runs a copy or fetch task (`resumed`: its start was reported by a previous agent
    /// process).
    async fn start_copy(self: Arc<Self>, st: pb::StartTask, resumed: bool) {
        let id = st.task_id.clone();
        let (ctl_tx, ctl_rx) = mpsc::channel(8);
        let (tx, rx) = mpsc::channel(8);
        if st.fetch.is_empty() {
            tokio::spawn(copy::run(
                st.copy,
                self.link.subscribe(),
                tx,
                ctl_rx,
                resumed,
            ));
        } else {
            tokio::spawn(fetch::run(
                id.clone(),
                st.fetch,
                self.link.subscribe(),
                tx,
                ctl_rx,
                resumed,
            ));
        }
        let handle = ExecHandle { control: ctl_tx };
        let control = handle.control.clone();
        let waiting = match lock(&self.running).insert(id.clone(), Slot::Running(handle)) {
            Some(Slot::Checking(waiting)) => waiting,
            _ => Vec::new(),
        };
        for c in waiting {
            let _ = control.send(c).await;
        }
        forward_events(self.clone(), id.clone(), rx, None).await;
        let path = copy::saved_path(&self.copies, &id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }

    async fn control(&self, task_id: &str, c: Control) {
        let tx = match lock(&self.running).get_mut(task_id) {
            Some(Slot::Running(h)) => h.control.clone(),
            Some(Slot::Checking(waiting)) => {
                waiting.push(c);
                return;
            }
            None => return,
        };
        let _ = tx.send(c).await;
    }
}

/// The supervision the server asked for, else the defaults of the command's class.
fn supervise_of(s: Option<&pb::Supervise>, command: &str) -> Supervise {
    match s.and_then(|s| Some((CommandClass::parse(&s.class)?, s))) {
        Some((class, s)) => Supervise {
            class,
            limits: ClassLimits {
                hang_ms: s.hang_ms,
                input_wait_ms: s.input_wait_ms,
                loop_lines: s.loop_lines,
                loop_window_ms: s.loop_window_ms,
            },
        },
        None => Supervise::defaults_for(command),
    }
}

fn clamp16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Numbers a task's events and appends them to the spool, a batch at a time.
///
/// Pacing: while the server keeps acknowledging, a task never runs further ahead of the
/// stream than the outbox's memory holds, so its output is sent from memory, never read
/// back from disk (the task waits on its full pipe meanwhile). Once acknowledgements stop
/// for [`PACE_STALL`] (server away, partition), the spool takes the output on disk alone
/// until memory has room again.
///
/// `dir`, the task's runtime directory, is removed once its end is in the spool.
async fn forward_events(
    shared: Arc<Shared>,
    task_id: String,
    mut rx: mpsc::Receiver<ExecEvent>,
    dir: Option<PathBuf>,
) {
    let mut seq = match shared.spool.last_seq(&task_id).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(task = %task_id, error = %e, "cannot read the spool; ending the task");
            shared
                .control(&task_id, Control::Cancel { grace: None })
                .await;
            lock(&shared.running).remove(&task_id);
            return;
        }
    };
    let mut finished = false;
    let mut spooling = false;
    while !finished {
        let Some(first) = rx.recv().await else { break };
        // Bytes of output this batch may take (within what memory still holds).
        let room = loop {
            let acked = shared.spool.acked().notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            let room = shared.spool.memory_room();
            if room >= EVENT_BOUND {
                spooling = false;
                break room;
            }
            if spooling || tokio::time::timeout(PACE_STALL, acked).await.is_err() {
                spooling = true;
                break usize::MAX;
            }
        };
        // Encoded size, counted generously (task id, seq and framing beside the output).
        let size = |e: &ExecEvent| e.output_len() + 256;
        let mut bytes = size(&first);
        let mut evs = vec![first];
        while evs.len() < 256 && bytes.saturating_add(EVENT_BOUND) <= room {
            match rx.try_recv() {
                Ok(e) => {
                    bytes += size(&e);
                    evs.push(e);
                }
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(evs.len());
        for ev in evs {
            seq += 1;
            let kind = match ev {
                ExecEvent::Started { pid } => task_event::Kind::Started(pb::Started { pid }),
                ExecEvent::Supervision(s) => task_event::Kind::Supervision(pb::Supervision {
                    state: s.state.as_str().to_string(),
                    class: s.class.as_str().to_string(),
                    prompt: s.prompt,
                    secret: s.secret,
                    reason: s.reason,
                }),
                ExecEvent::Output { stream, data } => task_event::Kind::Output(pb::Output {
                    stream: match stream {
                        OutStream::Stdout => pb::Stream::Stdout as i32,
                        OutStream::Stderr => pb::Stream::Stderr as i32,
                    },
                    data,
                }),
                ExecEvent::Exited(x) => {
                    finished = true;
                    task_event::Kind::Exited(pb::Exited {
                        code: x.code,
                        signal: x.signal,
                        reason: match x.reason {
                            ExitReason::Exited => pb::ExitReason::Exited,
                            ExitReason::TimedOut => pb::ExitReason::TimedOut,
                            ExitReason::Cancelled => pb::ExitReason::Cancelled,
                            ExitReason::FailedToStart => pb::ExitReason::FailedToStart,
                            ExitReason::Stopped => pb::ExitReason::Stopped,
                        } as i32,
                        duration_ms: x.duration.as_millis() as u64,
                        detail: x.detail,
                        outputs: x.outputs,
                    })
                }
            };
            batch.push(TaskEvent {
                task_id: task_id.clone(),
                seq,
                kind: Some(kind),
            });
        }
        if let Err(e) = shared.spool.append(batch).await {
            // Disk full or similar: the events are not recorded, so the task cannot be
            // reported faithfully. End it rather than lose output silently.
            tracing::error!(task = %task_id, error = %e, "cannot write to the spool; ending the task");
            shared
                .control(&task_id, Control::Cancel { grace: None })
                .await;
            break;
        }
    }
    lock(&shared.running).remove(&task_id);
    if let Some(dir) = dir {
        // Off the runtime thread; nobody waits for it (a restarted agent removes leftovers).
        tokio::task::spawn_blocking(move || match herd_exec::remove_task_files(&dir) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a task's runtime directory")
            }
        });
    }
}

/// What a server that does not serve herd's agent protocol is told apart by.
fn not_herd(server: &str) -> String {
    format!("{server} is not a herd server (it does not serve the agent protocol) — check --server")
}

pub async fn run(
    cfg: &AgentConfig,
    id: &Identity,
    instance: &str,
    shared: &Arc<Shared>,
) -> Result<(), SessionEnd> {
    let pin = id.ca_sha256.as_deref().or(cfg.ca_sha256.as_deref());
    let channel = herd_link::channel(&id.server, pin).await.map_err(|e| {
        if e.is_retryable() {
            SessionEnd::Retry(e.to_string())
        } else {
            SessionEnd::Fatal(e.to_string())
        }
    })?;
    let channel_for_blobs = channel.clone();
    let mut client = AgentHubClient::new(channel)
        .max_decoding_message_size(32 * 1024 * 1024)
        .max_encoding_message_size(32 * 1024 * 1024);

    let facts = tokio::task::spawn_blocking(herd_facts::collect_facts)
        .await
        .unwrap_or_default();
    let rewound = shared.spool.rewind().await.map_err(|e| {
        SessionEnd::Fatal(format!(
            "{e} — the agent cannot deliver task events; restart it"
        ))
    })?;
    let known: Vec<pb::KnownTask> = {
        let mut known: Vec<pb::KnownTask> = rewound
            .tasks
            .into_iter()
            .map(|t| pb::KnownTask {
                task_id: t.task_id,
                finished: t.finished,
            })
            .collect();
        for id in lock(&shared.running).keys() {
            if !known.iter().any(|k| &k.task_id == id) {
                known.push(pb::KnownTask {
                    task_id: id.clone(),
                    finished: false,
                });
            }
        }
        known
    };
    let (out_tx, out_rx) = mpsc::channel::<AgentFrame>(16);
    let hello = AgentFrame {
        kind: Some(agent_frame::Kind::Hello(pb::Hello {
            version: VERSION.to_string(),
            name: id.name.clone(),
            labels: cfg.labels.clone().into_iter().collect(),
            facts: Some(facts),
            tasks: known,
            instance_id: instance.to_string(),
        })),
    };
    let _ = out_tx.send(hello).await;
    let mut req = tonic::Request::new(ReceiverStream::new(out_rx));
    let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", id.credential).parse().map_err(|_| {
            SessionEnd::Fatal("credential in the state dir is malformed — join again".into())
        })?;
    let bearer_for_blobs = bearer.clone();
    req.metadata_mut().insert("authorization", bearer);
    let mut inbound = match client.session(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            return Err(match s.code() {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                    SessionEnd::Fatal(s.message().to_string())
                }
                tonic::Code::FailedPrecondition => SessionEnd::Conflict(s.message().to_string()),
                tonic::Code::Unimplemented => SessionEnd::Fatal(not_herd(&id.server)),
                _ if herd_link::not_http2(&s) => SessionEnd::Fatal(
                    herd_link::ConnectError::NotHerd(id.server.clone()).to_string(),
                ),
                _ => SessionEnd::Retry(s.message().to_string()),
            });
        }
    };

    shared.link.send_replace(Some(copy::Link {
        channel: channel_for_blobs,
        bearer: bearer_for_blobs,
    }));
    let window = Arc::new(Semaphore::new(WINDOW));
    let sender = tokio::spawn(send_events(
        shared.clone(),
        rewound.session,
        out_tx.clone(),
        window.clone(),
    ));
    // Heartbeats start with the Welcome, at the period the server asks for.
    let mut heartbeat: Option<tokio::task::JoinHandle<()>> = None;
    let result = loop {
        let frame = match inbound.message().await {
            Ok(Some(f)) => f,
            Ok(None) => break Err(SessionEnd::Retry("server closed the stream".into())),
            Err(s) => {
                break Err(match s.code() {
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                        SessionEnd::Fatal(s.message().to_string())
                    }
                    _ => SessionEnd::Retry(s.message().to_string()),
                });
            }
        };
        match frame.kind {
            Some(server_frame::Kind::Welcome(w)) => {
                let period = heartbeat_period(w.heartbeat_secs);
                tracing::info!(agent = %w.agent_id, heartbeat = ?period, "connected to server");
                if heartbeat.is_none() {
                    heartbeat = Some(tokio::spawn(heartbeats(
                        shared.clone(),
                        out_tx.clone(),
                        period,
                        cfg.metrics_disk.clone(),
                    )));
                }
            }
            Some(server_frame::Kind::Start(st)) => shared.start_task(st),
            Some(server_frame::Kind::Cancel(c)) => {
                let grace = (c.grace_ms > 0).then(|| Duration::from_millis(c.grace_ms as u64));
                shared.control(&c.task_id, Control::Cancel { grace }).await;
            }
            Some(server_frame::Kind::Input(i)) => {
                if !i.data.is_empty() {
                    shared.control(&i.task_id, Control::Input(i.data)).await;
                }
                if i.eof {
                    shared.control(&i.task_id, Control::Eof).await;
                }
            }
            Some(server_frame::Kind::Resize(r)) => {
                let (rows, cols) = (clamp16(r.rows), clamp16(r.cols));
                if rows > 0 && cols > 0 {
                    shared
                        .control(&r.task_id, Control::Resize { rows, cols })
                        .await;
                }
            }
            Some(server_frame::Kind::GoingAway(g)) => {
                tracing::info!(reason = %g.reason, "the server is going away; reconnecting shortly");
                break Err(SessionEnd::GoingAway);
            }
            Some(server_frame::Kind::Acks(a)) => {
                window.add_permits(1);
                if !a.acks.is_empty() {
                    // Applied on the spool thread, which wakes paced tasks once done.
                    shared.spool.ack(a.acks);
                }
            }
            None => {}
        }
    };
    shared.link.send_replace(None);
    sender.abort();
    if let Some(h) = heartbeat {
        h.abort();
    }
    result
}

async fn send_events(
    shared: Arc<Shared>,
    session: u64,
    out: mpsc::Sender<AgentFrame>,
    window: Arc<Semaphore>,
) {
    loop {
        let Ok(permit) = window.acquire().await else {
            return;
        };
        permit.forget();
        let batch = loop {
            match shared.spool.next_batch(session, BATCH_BYTES).await {
                Ok(b) if !b.is_empty() => break b,
                Ok(_) => shared.spool.appended().notified().await,
                Err(OutboxError::Spool(e)) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "no more task events can be sent");
                    return;
                }
            }
        };
        let mut events = Vec::new();
        let mut size = 0usize;
        let mut first = true;
        for ev in batch {
            size += ev.encoded_len();
            events.push(ev);
            if size >= MESSAGE_BYTES {
                if !send_message(&out, &window, std::mem::take(&mut events), &mut first).await {
                    return;
                }
                size = 0;
            }
        }
        if !events.is_empty() && !send_message(&out, &window, events, &mut first).await {
            return;
        }
    }
}

/// Sends one message of events, taking a window permit for it unless `first` (whose permit
/// the caller holds). False once the session is gone.
async fn send_message(
    out: &mpsc::Sender<AgentFrame>,
    window: &Semaphore,
    events: Vec<TaskEvent>,
    first: &mut bool,
) -> bool {
    if !std::mem::take(first) {
        match window.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
    }
    let frame = AgentFrame {
        kind: Some(agent_frame::Kind::Events(pb::EventBatch { events })),
    };
    out.send(frame).await.is_ok()
}

async fn heartbeats(
    shared: Arc<Shared>,
    out: mpsc::Sender<AgentFrame>,
    period: Duration,
    disk: Option<PathBuf>,
) {
    let mut sampler = herd_facts::MetricsSampler::new();
    if let Some(d) = disk {
        sampler = sampler.with_disk(d);
    }
    let sampler = Arc::new(Mutex::new(sampler));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (activity seen, idle heartbeats since it that trimmed)
    let mut trims = (u64::MAX, 0u32);
    loop {
        tick.tick().await;
        // Once idle after activity (no task running, nothing held for an acknowledgement),
        // hand the memory that streaming output used back to the system. A few heartbeats
        // in a row, since buffers of the connection and of exiting blocking threads are
        // freed a little later; then nothing until the next activity.
        let activity = shared.spool.activity();
        if trims.0 != activity {
            trims = (activity, 0);
        }
        let trim = trims.1 < IDLE_TRIMS
            && lock(&shared.running).is_empty()
            && shared.spool.holds_nothing_in_memory();
        if trim {
            trims.1 += 1;
        }
        let s = sampler.clone();
        let Ok(metrics) = tokio::task::spawn_blocking(move || {
            if trim {
                herd_link::release_free_memory();
            }
            lock(&s).sample()
        })
        .await
        else {
            return;
        };
        let frame = AgentFrame {
            kind: Some(agent_frame::Kind::Heartbeat(pb::Heartbeat {
                metrics: Some(metrics),
            })),
        };
        if out.send(frame).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
