//! The simulated agents' identities: each joins once with a join token, and its credential
//! is kept in the fleet's state file (0600, replaced atomically), so a restarted fleet
//! reconnects as the same machines. Each agent reports the host's facts under a hostname and
//! machine id of its own.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herd_link::Backoff;
use herd_proto::v1::agent_hub_client::AgentHubClient;
use herd_proto::v1::{self as pb, JoinRequest};
use serde::{Deserialize, Serialize};

use crate::{FleetConfig, FleetError, agent_name};

/// Joins in flight at once while a new fleet registers. They share one connection, which
/// has not authenticated: the server takes at most 8 requests in flight on such a
/// connection (and answers the rest RESOURCE_EXHAUSTED).
const JOINS_IN_FLIGHT: usize = 8;
/// Attempts per join when the server answers "try again later".
const JOIN_ATTEMPTS: u32 = 8;

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
    pub fn load(path: &Path) -> Result<Option<FleetFile>, FleetError> {
        herd_link::read_json(
            path,
            "it is not a fleet state file; pass another --state-file",
        )
        .map_err(|e| FleetError::Config(e.to_string()))
    }

    /// Writes the state file atomically (temporary file, fsync, rename), readable by the
    /// owner only: it holds credentials.
    pub fn save(&self, path: &Path) -> Result<(), FleetError> {
        let body = serde_json::to_vec(self).map_err(|e| FleetError::Config(e.to_string()))?;
        herd_link::write_private(path, &body).map_err(|e| {
            FleetError::Config(format!(
                "cannot write the fleet state file {}: {e}",
                path.display()
            ))
        })
    }
}

pub(crate) fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Facts of simulated agent `name`: the host's facts with a hostname and machine id of its own.
pub(crate) fn facts_for(base: &pb::Facts, name: &str) -> pb::Facts {
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
pub(crate) async fn ensure_identities(
    cfg: &FleetConfig,
    file: Option<FleetFile>,
    channel: tonic::transport::Channel,
    facts: &pb::Facts,
    labels: &HashMap<String, String>,
) -> Result<Vec<Arc<SimIdentity>>, FleetError> {
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
            FleetError::Config(format!(
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
                .ok_or_else(|| FleetError::Config(format!("no identity for {name} after joining")))
        })
        .collect()
}

async fn save_file(file: &FleetFile, path: &Path) -> Result<(), FleetError> {
    let (file, path) = (file.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || file.save(&path))
        .await
        .map_err(|e| FleetError::Config(format!("saving the fleet state failed: {e}")))?
}

async fn join_one(
    mut client: AgentHubClient<tonic::transport::Channel>,
    cfg: &FleetConfig,
    token: &str,
    name: &str,
    facts: &pb::Facts,
    labels: &HashMap<String, String>,
) -> Result<SimIdentity, FleetError> {
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
        let retryable = herd_link::ConnectError::Status(status).is_retryable();
        if !retryable || attempt >= JOIN_ATTEMPTS {
            return Err(FleetError::Join {
                server: cfg.server.clone(),
                msg,
            });
        }
        let wait = backoff.next_wait();
        tracing::warn!(agent = name, error = %msg, retry_in = ?wait, "join failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
