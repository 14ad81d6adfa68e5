//! The herd agent: dials the server, exchanges a join token once for its own credential,
//! reports facts and heartbeats, runs tasks, and delivers every task event exactly once
//! through the on-disk spool (replayed after any reconnect).
//!
//! Architecture invariant: the agent only ever dials out; the spool is appended before an
//! event is sent and trimmed only by the server's acknowledgement.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backoff;
mod connect;
mod outbox;
mod session;
pub mod sim;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_proto::v1::JoinRequest;
use herd_proto::v1::agent_hub_client::AgentHubClient;
use serde::{Deserialize, Serialize};

pub use backoff::Backoff;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    /// Pin of the server's CA (hex SHA-256), for https servers.
    pub ca_sha256: Option<String>,
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
    Spool(#[from] herd_spool::SpoolError),
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

/// The heartbeat period a server asks for in its Welcome (whole seconds; 0 from an older
/// server means the default of 5 s), kept within 1 s … 5 min.
pub(crate) fn heartbeat_period(secs: u32) -> std::time::Duration {
    let secs = if secs == 0 { 5 } else { secs.clamp(1, 300) };
    std::time::Duration::from_secs(u64::from(secs))
}

/// Replaces `path` atomically (temporary file beside it, fsync, rename) with `body`,
/// readable by the owner only: state files hold credentials.
pub(crate) fn write_private(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a JSON state file; `None` when it does not exist. A damaged one is an error that
/// says what to do (`fix`).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    fix: &str,
) -> Result<Option<T>, AgentError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            AgentError::Config(format!("{} is damaged ({e}) — {fix}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

impl Identity {
    fn path(dir: &std::path::Path) -> PathBuf {
        dir.join("identity.json")
    }

    fn load(dir: &std::path::Path) -> Result<Option<Identity>, AgentError> {
        read_json(
            &Identity::path(dir),
            "remove it and join again with a new token",
        )
    }

    fn save(&self, dir: &std::path::Path) -> Result<(), AgentError> {
        let p = Identity::path(dir);
        let body =
            serde_json::to_vec_pretty(self).map_err(|e| AgentError::Config(e.to_string()))?;
        write_private(&p, &body)
            .map_err(|e| AgentError::Config(format!("cannot write {}: {e}", p.display())))
    }
}

/// Runs the agent until a fatal error (revoked, bad token, unusable state dir).
pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    limit_malloc_arenas();
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
        AgentError::Config(format!(
            "cannot create state dir {}: {e} — pass a writable --state-dir",
            cfg.state_dir.display()
        ))
    })?;
    let identity = match Identity::load(&cfg.state_dir)? {
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
    let spool = herd_spool::Spool::open(&cfg.state_dir.join("spool"))?;
    let shared = Arc::new(session::Shared::new(outbox::Outbox::new(spool)));
    shared.abandon_previous_tasks().await;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        let started = Instant::now();
        match session::run(&cfg, &identity, &shared).await {
            Err(session::SessionEnd::Fatal(msg)) => return Err(AgentError::Rejected(msg)),
            Err(session::SessionEnd::Retry(msg)) => {
                if started.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                tracing::warn!(server = %identity.server, error = %msg, retry_in = ?wait, "connection to server lost");
                tokio::time::sleep(wait).await;
            }
            Ok(()) => {
                backoff.reset();
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}

/// glibc gives threads their own malloc arenas (up to 8 per core) and keeps what they freed:
/// after streaming output through the runtime's workers, an idle agent would hold tens of
/// MiB. One arena is plenty for the agent's little contention (one runtime thread and a
/// few blocking ones), and `malloc_trim` then has one heap to return to the system.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only adjusts a malloc tunable; glibc takes its own lock for it, and
    // M_ARENA_MAX with a positive value is a documented, valid setting.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns memory that malloc holds but nobody uses to the system. Walks the heap, so it
/// belongs on the blocking pool; cheap on an idle agent's small heap.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes the arena locks itself and only releases free pages; it
    // touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn join(cfg: &AgentConfig, token: &str) -> Result<Identity, AgentError> {
    let facts = tokio::task::spawn_blocking(herd_facts::collect_facts)
        .await
        .unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let attempt = async {
            let channel = connect::channel(&cfg.server, cfg.ca_sha256.as_deref()).await?;
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
                .map_err(connect::ConnectError::Status)
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
