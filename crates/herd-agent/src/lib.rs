//! The herd agent: dials the server, exchanges a join token once for its own credential,
//! reports facts and heartbeats, runs tasks, and delivers every task event exactly once
//! through the on-disk spool (replayed after any reconnect).
//!
//! Architecture invariant: the agent only ever dials out; the spool is appended before an
//! event is sent and trimmed only by the server's acknowledgement; all spool I/O happens on
//! the spool thread, so the runtime thread never waits on the disk.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod copy;
mod fetch;
mod outbox;
mod session;
mod spool_thread;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_link::{Backoff, ConnectError, Ended, Reconnect};
use herd_proto::v1::JoinRequest;
use herd_proto::v1::agent_hub_client::AgentHubClient;
use serde::{Deserialize, Serialize};

/// How long an agent refused for a live session of its identity waits before it tries once
/// more: past the window in which the server counts a session heard from at the smallest
/// heartbeat period.
const CONFLICT_RETRY: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: Option<String>,
    /// The name to join with.
    pub name: String,
    /// Whether `name` was asked for (`--name`) rather than defaulted: then a state dir that
    /// holds an identity under another name is refused instead of used.
    pub name_given: bool,
    /// The labels this agent declares. Kept in the state dir (`labels.json`): when
    /// `labels_given` is false, the kept set is declared instead.
    pub labels: BTreeMap<String, String>,
    /// Whether `labels` were asked for (`--label`, `--clear-labels`): they replace the set kept
    /// in the state dir. Otherwise the kept set is used (`labels` when there is none yet).
    pub labels_given: bool,
    pub state_dir: PathBuf,
    /// Pin of the server's CA (hex SHA-256), for https servers.
    pub ca_sha256: Option<String>,
    /// Supervise tasks (hangs, error loops, waits for input: herd-exec's `supervise`).
    pub supervise: bool,
    /// A directory on the filesystem whose usage heartbeats report (`/` when `None`).
    pub metrics_disk: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error("joining {server} failed: {msg}")]
    Join { server: String, msg: String },
    #[error("{0}")]
    Rejected(String),
    #[error("spool: {0}")]
    Spool(#[from] spool_thread::OutboxError),
}

/// What the agent keeps in its state dir after joining.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub agent_id: String,
    pub credential: String,
    pub server: String,
    pub name: String,
    #[serde(default)]
    pub ca_sha256: Option<String>,
}

impl Identity {
    fn path(dir: &std::path::Path) -> PathBuf {
        dir.join("identity.json")
    }

    fn load(dir: &std::path::Path) -> Result<Option<Identity>, AgentError> {
        herd_link::read_json(
            &Identity::path(dir),
            "remove it and join again with a new token",
        )
        .map_err(|e| AgentError::Config(e.to_string()))
    }

    fn save(&self, dir: &std::path::Path) -> Result<(), AgentError> {
        let p = Identity::path(dir);
        let body =
            serde_json::to_vec_pretty(self).map_err(|e| AgentError::Config(e.to_string()))?;
        herd_link::write_private(&p, &body)
            .map_err(|e| AgentError::Config(format!("cannot write {}: {e}", p.display())))
    }
}

/// The labels an agent declares, kept in its state dir so that a restart without `--label`
/// does not drop them.
fn labels_path(dir: &std::path::Path) -> PathBuf {
    dir.join("labels.json")
}

/// The labels to declare: `cfg.labels` when given (then kept for the next start), else the
/// kept set, else `cfg.labels`.
fn resolve_labels(cfg: &AgentConfig) -> Result<BTreeMap<String, String>, AgentError> {
    let p = labels_path(&cfg.state_dir);
    if !cfg.labels_given {
        let kept: Option<BTreeMap<String, String>> = herd_link::read_json(
            &p,
            "fix it, or start the agent with --label k=v (or --clear-labels) to replace it",
        )
        .map_err(|e| AgentError::Config(e.to_string()))?;
        if let Some(kept) = kept {
            for (k, v) in &kept {
                herd_core::parse_label(&format!("{k}={v}")).map_err(|e| {
                    AgentError::Config(format!(
                        "{} holds a label herd no longer accepts: {e} — start the agent with --label k=v (or --clear-labels) to replace the set",
                        p.display()
                    ))
                })?;
            }
            return Ok(kept);
        }
    }
    if cfg.labels.len() > herd_core::MAX_LABELS {
        return Err(AgentError::Config(format!(
            "{} labels given; a machine declares at most {} — drop some --label",
            cfg.labels.len(),
            herd_core::MAX_LABELS
        )));
    }
    let body =
        serde_json::to_vec_pretty(&cfg.labels).map_err(|e| AgentError::Config(e.to_string()))?;
    herd_link::write_private(&p, &body).map_err(|e| {
        AgentError::Config(format!(
            "cannot write {}: {e} — pass a writable --state-dir",
            p.display()
        ))
    })?;
    Ok(cfg.labels.clone())
}

/// Runs the agent until a fatal error (revoked, bad token, unusable state dir).
pub async fn run(mut cfg: AgentConfig) -> Result<(), AgentError> {
    herd_link::limit_malloc_arenas();
    // The state dir holds the credential and the spooled output: its owner's only.
    let was = herd_link::private_dir(&cfg.state_dir).map_err(|e| {
        AgentError::Config(format!(
            "cannot create state dir {}: {e} — pass a writable --state-dir",
            cfg.state_dir.display()
        ))
    })?;
    if let Some(mode) = was {
        tracing::warn!(
            "the state dir {} was open to others (mode {mode:o}); made it 0700",
            cfg.state_dir.display()
        );
    }
    cfg.labels = resolve_labels(&cfg)?;
    if let Some(d) = &cfg.metrics_disk
        && let Err(e) = std::fs::read_dir(d)
    {
        return Err(AgentError::Config(format!(
            "--metrics-disk {}: {e} — give a directory on the filesystem to report",
            d.display()
        )));
    }
    let identity = match Identity::load(&cfg.state_dir)? {
        Some(id) if cfg.name_given && id.name != cfg.name => {
            return Err(AgentError::Config(format!(
                "--name {:?} does not match this state dir's identity: {} joined as {:?} — drop --name (or pass --name {:?}), or give a fresh --state-dir to join as {:?}",
                cfg.name,
                cfg.state_dir.display(),
                id.name,
                id.name,
                cfg.name
            )));
        }
        Some(id) => id,
        None => {
            let token = cfg.token.clone().ok_or_else(|| {
                AgentError::Config(format!(
                    "{} holds no credential and no --token was given — create a join token with `herd token create`",
                    cfg.state_dir.display()
                ))
            })?;
            let id = join(&cfg, &token).await?;
            id.save(&cfg.state_dir)?;
            tracing::info!(agent = %id.agent_id, name = %id.name, "joined");
            id
        }
    };
    let tasks = task_dirs(&cfg.state_dir)?;
    let spool = spool_thread::SpoolThread::open(cfg.state_dir.join("spool")).await?;
    let shared = Arc::new(session::Shared::new(
        spool,
        cfg.state_dir.join("copies"),
        tasks,
        cfg.supervise,
    ));
    shared.abandon_previous_tasks().await;
    // Random per process: the server tells a copy of this identity (another process holding
    // it) from this process reconnecting.
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut reconnect = Reconnect::new(Duration::from_millis(100), Duration::from_secs(30));
    let mut conflicts = 0u32;
    loop {
        let started = Instant::now();
        let res = session::run(&cfg, &identity, &instance, &shared).await;
        if !matches!(res, Err(session::SessionEnd::Conflict(_))) {
            conflicts = 0;
        }
        match res {
            Err(session::SessionEnd::Fatal(msg)) => return Err(AgentError::Rejected(msg)),
            Err(session::SessionEnd::Conflict(msg)) => {
                // Once more after a while: the live session may be this machine's own,
                // half-dead after a crash, which the server lets go once it falls silent.
                conflicts += 1;
                if conflicts > 1 {
                    return Err(AgentError::Rejected(msg));
                }
                tracing::warn!(error = %msg, retry_in = ?CONFLICT_RETRY, "refused by the server");
                tokio::time::sleep(CONFLICT_RETRY).await;
            }
            Err(session::SessionEnd::GoingAway) => {
                let wait = reconnect.wait_after(Ended::GoingAway);
                tracing::info!(server = %identity.server, retry_in = ?wait, "server going away; reconnecting");
                tokio::time::sleep(wait).await;
            }
            Err(session::SessionEnd::Retry(msg)) => {
                let wait = reconnect.wait_after(Ended::Failed(started.elapsed()));
                tracing::warn!(server = %identity.server, error = %msg, retry_in = ?wait, "connection to server lost");
                tokio::time::sleep(wait).await;
            }
            Ok(()) => {
                tokio::time::sleep(reconnect.wait_after(Ended::Failed(started.elapsed()))).await;
            }
        }
    }
}

/// The directory of the tasks' runtime directories (`STATE_DIR/tasks`, 0700), emptied: no
/// task of a previous agent process runs on (see `abandon_previous_tasks`), so what is left
/// there is leftovers.
fn task_dirs(state_dir: &std::path::Path) -> Result<PathBuf, AgentError> {
    let dir = state_dir.join("tasks");
    // Each one (and the directory it links to, for a task run as another user), then the rest.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if let Err(e) = herd_exec::remove_task_files(&entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove the runtime directory of an earlier task");
            }
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the runtime directories of earlier tasks")
        }
    }
    herd_link::private_dir(&dir).map_err(|e| {
        AgentError::Config(format!(
            "cannot create {}: {e} — pass a writable --state-dir",
            dir.display()
        ))
    })?;
    Ok(dir)
}

async fn join(cfg: &AgentConfig, token: &str) -> Result<Identity, AgentError> {
    let facts = tokio::task::spawn_blocking(herd_facts::collect_facts)
        .await
        .unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let attempt = async {
            let channel = herd_link::channel(&cfg.server, cfg.ca_sha256.as_deref()).await?;
            let mut client = AgentHubClient::new(channel);
            client
                .join(JoinRequest {
                    token: token.to_string(),
                    name: cfg.name.clone(),
                    labels: cfg.labels.clone().into_iter().collect(),
                    facts: Some(facts.clone()),
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| ConnectError::from_status(&cfg.server, s))
        };
        match attempt.await {
            Ok(resp) => {
                return Ok(Identity {
                    agent_id: resp.agent_id,
                    credential: resp.credential,
                    server: cfg.server.clone(),
                    name: cfg.name.clone(),
                    ca_sha256: cfg.ca_sha256.clone(),
                });
            }
            Err(e) if e.is_retryable() => {
                let wait = backoff.next_wait();
                tracing::warn!(server = %cfg.server, error = %e, retry_in = ?wait, "cannot reach server to join");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                return Err(AgentError::Join {
                    server: cfg.server.clone(),
                    msg: e.to_string(),
                });
            }
        }
    }
}
