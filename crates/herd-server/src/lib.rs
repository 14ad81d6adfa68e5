//! herd's control plane: the agent hub (gRPC), the dispatcher, the HTTP API with live output,
//! audit and metrics, all served on one port.
//!
//! Architecture invariant: the server resolves targets from its own store, so it always knows
//! which machines must answer; agents only ever dial in. Task events are persisted before they
//! are acknowledged.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod attach;
mod auth;
mod dispatch;
mod error;
mod hub;
mod index;
mod listen;
mod live;
mod metrics;
mod openapi;
mod sched;
mod writer;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::ServerError;
use herd_store::{ApiKeyRow, OutputLog, Secret, Store, now_ms};

/// How the server listens and where it keeps its data.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: TlsMode,
    /// Per-task cap of stored output (head and tail kept).
    pub output_cap: u64,
    /// A running task whose agent stays away this long is marked lost.
    pub lost_after: Duration,
    /// Address agents and people use to reach this server, for printed join commands.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS when listening beyond loopback, from a CA generated in the data dir.
    Auto,
    Off,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServerConfig {
            listen,
            data_dir,
            tls: TlsMode::Auto,
            output_cap: 64 * 1024 * 1024,
            lost_after: Duration::from_secs(600),
            public_url: None,
        }
    }
}

/// A running server.
pub struct Running {
    /// Base URL, e.g. `http://127.0.0.1:7700`.
    pub url: String,
    pub addr: SocketAddr,
    /// SHA-256 of the CA that agents and clients pin, when serving TLS.
    pub ca_fingerprint: Option<String>,
    pub ca_pem: Option<String>,
    /// The admin API key, present only on the very first start of a data dir.
    pub admin_key: Option<String>,
    pub task: tokio::task::JoinHandle<()>,
    pub(crate) state: Arc<State>,
}

impl Running {
    /// Creates an API key (used by `herd up` when its config holds none for this server).
    pub async fn create_api_key(&self, name: &str) -> Result<String, ServerError> {
        Ok(auth::create_api_key(&self.state, name, name).await?.0)
    }

    /// Whether a presented API key is valid here.
    pub async fn accepts_api_key(&self, token: &str) -> bool {
        auth::check_api_key(&self.state, token).await.is_ok()
    }

    /// Creates a join token (used by `herd up` for its local agent).
    pub async fn create_join_token(&self, ttl: Duration, uses: i64) -> Result<String, ServerError> {
        Ok(auth::create_join_token(&self.state, "herd up", ttl, uses)
            .await?
            .0)
    }
}

pub(crate) struct State {
    pub store: Store,
    /// Live agents in memory: targets, session auth and listings read this, not the store.
    pub agents: index::AgentIndex,
    /// Rate control of unfinished runs.
    pub sched: sched::Scheduler,
    /// Group commit of task progress.
    pub progress: writer::ProgressWriter,
    pub outlog: Arc<OutputLog>,
    pub hub: hub::Hub,
    pub live: live::Live,
    pub metrics: metrics::Metrics,
    pub cfg: ServerConfig,
    pub url: String,
    pub ca_fingerprint: Option<String>,
    pub started: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot create data directory {path}: {err} — pass --data-dir with a writable directory"
    )]
    DataDir { path: String, err: std::io::Error },
    #[error("cannot open the database in {path}: {err}")]
    Store {
        path: String,
        err: herd_store::StoreError,
    },
    #[error("{0}")]
    Tls(#[from] herd_tls::TlsError),
    #[error(
        "cannot listen on {addr}: {err} — is another herd server running? choose another --listen address"
    )]
    Listen {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Opens the store, creates the admin key on first start, and starts serving.
pub async fn start(cfg: ServerConfig) -> Result<Running, StartError> {
    let dd = cfg.data_dir.clone();
    std::fs::create_dir_all(&dd).map_err(|err| StartError::DataDir {
        path: dd.display().to_string(),
        err,
    })?;
    let db = dd.join("herd.db");
    let store = Store::open(&db).await.map_err(|err| StartError::Store {
        path: db.display().to_string(),
        err,
    })?;
    let admin_key = if store
        .count_api_keys()
        .await
        .map_err(|e| StartError::Other(e.to_string()))?
        == 0
    {
        let s = Secret::generate("hk");
        store
            .insert_api_key(&ApiKeyRow {
                id: s.id.clone(),
                name: "admin".into(),
                hash: s.hash.clone(),
                role: "admin".into(),
                created_at: now_ms(),
                created_by: "server".into(),
                revoked_at: None,
            })
            .await
            .map_err(|e| StartError::Other(e.to_string()))?;
        let _ = store
            .audit(
                "server",
                "key.create",
                &format!("key:{}", s.id),
                r#"{"name":"admin"}"#,
            )
            .await;
        Some(s.token)
    } else {
        None
    };

    let tls = match &cfg.tls {
        TlsMode::Off => None,
        TlsMode::Auto if cfg.listen.ip().is_loopback() => None,
        TlsMode::Auto => {
            let mut sans = Vec::new();
            if !cfg.listen.ip().is_unspecified() {
                sans.push(cfg.listen.ip().to_string());
            }
            if let Some(u) = &cfg.public_url
                && let Some(host) = host_of(u)
            {
                sans.push(host);
            }
            Some(herd_tls::server_tls_generated(&dd.join("tls"), &sans)?)
        }
        TlsMode::Files { cert, key } => Some(herd_tls::server_tls_from_files(cert, key)?),
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|err| StartError::Listen {
            addr: cfg.listen,
            err,
        })?;
    let addr = listener.local_addr().map_err(|err| StartError::Listen {
        addr: cfg.listen,
        err,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = cfg.public_url.clone().unwrap_or_else(|| {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        if addr.is_ipv6() && !addr.ip().is_unspecified() {
            format!("{scheme}://[{host}]:{}", addr.port())
        } else {
            format!("{scheme}://{host}:{}", addr.port())
        }
    });
    let ca_fingerprint = tls.as_ref().and_then(|t| {
        t.ca_fingerprint.clone().or_else(|| {
            t.ca_pem
                .as_deref()
                .and_then(|p| herd_tls::pem_fingerprint(p).ok())
        })
    });
    let ca_pem = tls.as_ref().and_then(|t| t.ca_pem.clone());
    let agents = store
        .agents(false)
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    let state = Arc::new(State {
        agents: index::AgentIndex::load(agents),
        sched: sched::Scheduler::default(),
        progress: writer::ProgressWriter::start(store.clone()),
        outlog: Arc::new(OutputLog::new(dd.join("output"), cfg.output_cap)),
        store,
        hub: hub::Hub::default(),
        live: live::Live::default(),
        metrics: metrics::Metrics::default(),
        cfg,
        url: url.clone(),
        ca_fingerprint: ca_fingerprint.clone(),
        started: Instant::now(),
    });
    dispatch::recover_runs(&state).await;
    tokio::spawn(dispatch::sweep_lost(state.clone()));
    tokio::spawn(index::flush_loop(state.clone()));
    let app = api::router(state.clone()).route_service(
        "/herd.agent.v1.AgentHub/{*method}",
        hub::service(state.clone()),
    );
    let task = tokio::spawn(listen::serve(listener, app, tls.map(|t| t.config)));
    tracing::info!(%url, "herd server listening");
    Ok(Running {
        url,
        addr,
        ca_fingerprint,
        ca_pem,
        admin_key,
        task,
        state,
    })
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next()?
    } else {
        hostport
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(hostport)
    };
    (!host.is_empty()).then(|| host.to_string())
}
