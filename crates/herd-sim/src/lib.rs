//! A simulated fleet for load tests: many agents in one process. Each simulated agent is a
//! real agent as far as the server can tell: its own identity (joined once with a join
//! token), its own HTTP/2 connection and `Session` stream, `Hello` with its own hostname and
//! machine id, heartbeats, and real processes for the tasks it is sent.
//!
//! Built to be light (one tokio task per agent when idle, no per-agent thread or large
//! buffer), so ten thousand fit beside a server on a small machine. Where it differs from
//! the real agent (`herd-agent`'s session):
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
//!
//! The fleet speaks the real agent protocol and shares no code with the server; what it
//! shares with the real agent (dialling, backoff, heartbeat period, state files) comes from
//! `herd-link`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd_proto::v1 as pb;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::agent::run_agent;
use crate::identity::{ensure_identities, same_server};

mod agent;
mod codec;
mod frame;
mod identity;
mod runner;
mod runner_process;

pub use identity::{FleetFile, SimIdentity};
pub use runner_process::{OUTPUT_CAP, plain_words, serve as serve_runner};

/// Sessions being established at once (dial, Hello, Welcome): a fleet (re)connecting queues
/// instead of opening thousands of handshakes together.
const CONNECTING: usize = 64;
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

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{0}")]
    Config(String),
    #[error("joining {server} failed: {msg}")]
    Join { server: String, msg: String },
    #[error("{0}")]
    Rejected(String),
}

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
) -> Result<(), FleetError> {
    herd_link::limit_malloc_arenas();
    if cfg.agents == 0 {
        return Err(FleetError::Config("--agents must be at least 1".into()));
    }
    if !valid_prefix(&cfg.prefix) {
        return Err(FleetError::Config(format!(
            "bad --prefix {:?}: use 1-48 letters, digits, '.', '_' or '-'",
            cfg.prefix
        )));
    }
    if cfg
        .heartbeat
        .is_some_and(|h| h < Duration::from_millis(100))
    {
        return Err(FleetError::Config(
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
        return Err(FleetError::Config(format!(
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
    let channel = herd_link::channel(&cfg.server, pin.as_deref())
        .await
        .map_err(|e| FleetError::Config(e.to_string()))?;
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
                let _ = tokio::task::spawn_blocking(herd_link::release_free_memory).await;
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
            why = &mut runner_io => return Err(FleetError::Config(why)),
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
    Err(FleetError::Rejected(format!(
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
                herd_link::release_free_memory();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
