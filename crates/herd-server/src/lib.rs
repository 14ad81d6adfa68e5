//! herd's control plane: the agent hub (gRPC), runs and their drivers, the fleet and its
//! credentials, the HTTP API with live output, audit and metrics, all served on one port.
//!
//! Architecture invariant: the server resolves targets from its own index, so it always
//! knows which machines must answer; agents only ever dial in. Task events are persisted
//! before they are acknowledged. Modules depend one way: `http` and `watch` → services
//! (`fleet`, `runs`) → shared parts (`registry`, `active`, `events`, `live`); `hub` → services.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod active;
mod alerts;
mod app;
mod ask;
mod blobs;
mod convert;
mod database;
mod error;
mod events;
mod fetched;
mod fleet;
mod flows;
mod http;
mod hub;
mod langflow;
mod listen;
mod live;
mod log_limit;
mod metrics;
pub(crate) mod policy;
mod registry;
mod retention;
mod runs;
mod schedules;
#[cfg(test)]
mod tests;
mod vars;
mod watch;
mod web;
mod ws;

/// A mutex's guard, also after a thread panicked while holding it: what the server keeps
/// behind its mutexes is bookkeeping that every critical section leaves whole.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use database::Database;
pub use error::ServerError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// Where the records live; default: SQLite in the data dir.
    pub database: Option<Database>,
    /// The longest life a join token may be given.
    pub max_token_ttl: Duration,
    /// Finished runs older than this are pruned with their tasks and output.
    pub retention: Duration,
    /// While stored output is over this many bytes, the oldest finished runs are pruned.
    pub retention_size: Option<u64>,
    /// How often retention prunes in the background (and once at start).
    pub retention_interval: Duration,
    /// `/metrics` answers only requests with a valid API key.
    pub metrics_auth: bool,
    /// The agent in this server's own process (`herd up`): steps without targets run there.
    pub local_agent: Option<String>,
    /// `TlsMode::Off` is allowed beyond loopback (behind a TLS-terminating proxy).
    pub allow_plaintext_network: bool,
    /// Consecutive failures that open a called host's circuit breaker (workflow `http` and
    /// `notify` steps).
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before one probe goes.
    pub breaker_cooldown: Duration,
    /// CA certificates (PEM) trusted for HTTPS and SMTP calls besides the system's.
    pub actions_ca: Option<PathBuf>,
    /// The OpenAI-compatible API and model of `herd ask` (the key from `HERD_LLM_API_KEY`);
    /// unset: read from the environment (`HERD_LLM_URL`, `HERD_LLM_MODEL`).
    pub llm_url: Option<String>,
    pub llm_model: Option<String>,
    /// How agents supervise tasks: the limits of each command class (`--supervise`).
    pub supervise: herd_core::supervise::Limits,
    /// Serve the dashboard from this directory (a build of `web/`) instead of the copy built
    /// into the binary.
    pub web_dir: Option<PathBuf>,
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
            database: None,
            max_token_ttl: Duration::from_secs(7 * 24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_size: None,
            retention_interval: Duration::from_secs(3600),
            metrics_auth: false,
            local_agent: None,
            allow_plaintext_network: false,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            actions_ca: None,
            llm_url: None,
            llm_model: None,
            supervise: Default::default(),
            web_dir: None,
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
    /// The admin API key, present only on the very first start of a database.
    pub admin_key: Option<String>,
    /// The database in use, as shown to people.
    pub database: String,
    app: Arc<app::App>,
    store: Arc<dyn herd_store::Store>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    _lock: database::DataDirLock,
}

/// How long a shutdown waits for background work (runs' drivers, the last flush of agent
/// state, commits in flight) before it gives up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Running {
    /// Creates an API key (used by `herd up` when its config holds none for this server).
    pub async fn create_api_key(&self, name: &str) -> Result<String, ServerError> {
        Ok(self
            .app
            .fleet()
            .create_api_key(name, name, herd_policy::Role::Admin, None)
            .await?
            .0)
    }

    /// Whether a presented API key is valid here.
    pub async fn accepts_api_key(&self, token: &str) -> bool {
        self.app.fleet().authenticate_key(token).await.is_ok()
    }

    /// Creates a join token (used by `herd up` for its local agent, which holds whatever
    /// labels it declares: it is the server's own machine).
    pub async fn create_join_token(&self, ttl: Duration, uses: i64) -> Result<String, ServerError> {
        Ok(self
            .app
            .fleet()
            .create_join_token("herd up", ttl, uses, None)
            .await?
            .0)
    }

    /// Serves until the process is asked to stop (SIGINT or SIGTERM), then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        self.shutdown().await;
    }

    /// Stops accepting connections, ends sessions and runs' drivers, writes what is pending
    /// (agent state, progress in flight) and closes the store, which frees the database for
    /// another server.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "background work did not end within {SHUTDOWN_GRACE:?}; stopping anyway"
            );
        }
        self.store.close().await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot create data directory {path}: {err} — pass --data-dir with a writable directory"
    )]
    DataDir { path: String, err: std::io::Error },
    #[error("{0}")]
    Locked(String),
    #[error("cannot open the database {db}: {err}")]
    Store {
        db: String,
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
    #[error(
        "--no-tls on {0} sends API keys, join tokens and agent credentials in clear over the network — listen on 127.0.0.1, drop --no-tls (TLS is the default beyond loopback), or add --allow-plaintext-network if a TLS-terminating proxy is in front"
    )]
    PlaintextNetwork(SocketAddr),
    #[error("{0}")]
    Other(String),
}

/// Opens the store, creates the admin key on first start, and starts serving.
pub async fn start(cfg: ServerConfig) -> Result<Running, StartError> {
    if cfg.tls == TlsMode::Off && !cfg.listen.ip().to_canonical().is_loopback() {
        if !cfg.allow_plaintext_network {
            return Err(StartError::PlaintextNetwork(cfg.listen));
        }
        tracing::warn!(
            listen = %cfg.listen,
            "serving plain HTTP beyond loopback (--allow-plaintext-network): keys and credentials cross the network in clear unless a TLS-terminating proxy is in front"
        );
    }
    let dd = cfg.data_dir.clone();
    let was = database::private_data_dir(&dd).map_err(|err| StartError::DataDir {
        path: dd.display().to_string(),
        err,
    })?;
    if let Some(mode) = was {
        tracing::warn!(
            "the data dir {} was open to others (mode {mode:o}); made it 0700",
            dd.display()
        );
    }
    let lock = database::lock_data_dir(&dd).map_err(StartError::Locked)?;
    let db = cfg
        .database
        .clone()
        .unwrap_or_else(|| Database::Sqlite(dd.join("herd.db")));
    let store = database::open(&db).await.map_err(|err| match err {
        herd_store::StoreError::Locked(m) => StartError::Locked(m),
        err => StartError::Store {
            db: db.display(),
            err,
        },
    })?;

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

    let actions = actions_config(&cfg)?;
    let parts = app::assemble(app::Settings {
        store: store.clone(),
        output_dir: dd.join("output"),
        blob_dir: dd.join("blobs"),
        fetched_dir: dd.join("fetched"),
        secrets_key: dd.join("secrets.key"),
        output_cap: cfg.output_cap,
        lost_after: cfg.lost_after,
        max_token_ttl: cfg.max_token_ttl,
        retention: retention::RetentionPolicy {
            max_age: cfg.retention,
            max_bytes: cfg.retention_size,
            interval: cfg.retention_interval,
        },
        url: url.clone(),
        ca_fingerprint: ca_fingerprint.clone(),
        metrics_auth: cfg.metrics_auth,
        local_agent: cfg.local_agent.clone(),
        actions,
        llm: crate::ask::AskService::model(cfg.llm_url.clone(), cfg.llm_model.clone()),
        supervise: cfg.supervise.clone(),
        web_dir: cfg.web_dir.clone(),
    })
    .await
    .map_err(|e| StartError::Other(e.to_string()))?;
    let app::Parts {
        app,
        hub,
        admin_key,
        tracker,
        shutdown,
    } = parts;
    let router = hub::mount(http::router(app.clone()), hub);
    let stop = shutdown.clone();
    let tls_config = tls.map(|t| t.config);
    tracker.spawn(async move {
        tokio::select! {
            _ = listen::serve(listener, router, tls_config) => {}
            _ = stop.cancelled() => {}
        }
    });
    tracing::info!(%url, database = %db.display(), "herd server listening");
    Ok(Running {
        url,
        addr,
        ca_fingerprint,
        ca_pem,
        admin_key,
        database: db.display(),
        app,
        store,
        tracker,
        shutdown,
        _lock: lock,
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

/// How the server calls other systems, from its config; the extra CA file is read and checked
/// here, so a bad one stops the start.
fn actions_config(cfg: &ServerConfig) -> Result<herd_actions::ActionsConfig, StartError> {
    let extra_ca_pem = match &cfg.actions_ca {
        None => None,
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                StartError::Other(format!(
                    "cannot read --actions-ca {}: {e} — give a PEM file of CA certificates",
                    path.display()
                ))
            })?;
            herd_actions::check_ca_pem(&pem).map_err(|e| {
                StartError::Other(format!(
                    "--actions-ca {}: {e} — give a PEM file of CA certificates",
                    path.display()
                ))
            })?;
            Some(pem)
        }
    };
    Ok(herd_actions::ActionsConfig {
        breaker_threshold: cfg.breaker_threshold.max(1),
        breaker_cooldown: cfg.breaker_cooldown,
        extra_ca_pem,
        ..herd_actions::ActionsConfig::default()
    })
}
