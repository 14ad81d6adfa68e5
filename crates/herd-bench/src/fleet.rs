//! The throwaway herd deployment spine and fleet measure: one `herd server` on loopback (its
//! records in SQLite in its data dir, or in a PostgreSQL of the bench's own) and one or more
//! separate `herd agent` processes, started with herd-testkit and all killed when the
//! [`Fleet`] is dropped (also on error or Ctrl-C); plus the HTTP client the timed API calls go
//! through.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herd_testkit::{Agent, Database, Server};
use serde_json::Value;

/// The agent of [`Fleet::start`].
pub const AGENT_NAME: &str = "bench";

/// One agent to start: its machine name, labels (`k=v`) and the command it runs under (the
/// program and its arguments before the herd binary; empty for none).
pub struct AgentSpec {
    pub name: String,
    pub labels: Vec<String>,
    pub wrap: Vec<String>,
}

pub struct Fleet {
    pub http: reqwest::Client,
    /// Agents first: dropped (killed) before the server. Never empty.
    pub agents: Vec<Agent>,
    pub server: Server,
}

/// Runs blocking herd-testkit work (starting processes, waiting for them) on this runtime
/// thread, letting the runtime move its other work elsewhere meanwhile.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Which store the measured server keeps its records in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    /// SQLite in the server's data dir (the default of `herd server`).
    Sqlite,
    /// A fresh database in a PostgreSQL cluster the bench starts from the machine's binaries,
    /// with PostgreSQL's own durability settings (fsync, synchronous commit).
    Postgres,
}

/// The store of a benchmark run: what `herd server` is given, and the PostgreSQL cluster (if
/// any) that lives as long as this value.
pub struct Db {
    pub store: Store,
    args: Vec<String>,
    _cluster: Option<herd_testkit::Postgres>,
}

impl Db {
    pub fn new(store: Store) -> Result<Db> {
        match store {
            Store::Sqlite => Ok(Db {
                store,
                args: Vec::new(),
                _cluster: None,
            }),
            Store::Postgres => {
                let pg = herd_testkit::Postgres::start_durable()
                    .context("cannot start PostgreSQL for the benchmark")?;
                let url = pg.create_database().context("cannot create a database")?;
                Ok(Db {
                    store,
                    args: vec!["--database".into(), url],
                    _cluster: Some(pg),
                })
            }
        }
    }

    /// As shown beside the figures.
    pub fn name(&self) -> &'static str {
        match self.store {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

/// `herd server` on `listen` with its data in `dir/server` and its records in `db`.
pub fn start_server(herd: &Path, dir: &Path, listen: &str, db: &Db) -> Result<Server> {
    start_server_with(herd, dir, listen, db, &[])
}

/// [`start_server`] with more arguments for `herd server`.
pub fn start_server_with(
    herd: &Path,
    dir: &Path,
    listen: &str,
    db: &Db,
    extra: &[&str],
) -> Result<Server> {
    let mut args: Vec<&str> = db.args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    blocking(|| Server::start_on(herd, dir, listen, &args, Database::DataDir))
        .with_context(|| format!("cannot start {} server", herd.display()))
}

/// The CLI, configured for `server` through the environment only; killed if dropped.
pub fn cli(server: &Server) -> tokio::process::Command {
    let mut c = tokio::process::Command::from(server.cli());
    c.kill_on_drop(true);
    c
}

impl Fleet {
    /// The server and one agent named [`AGENT_NAME`].
    pub async fn start(herd: &Path, dir: &Path, db: &Db) -> Result<Fleet> {
        let one = AgentSpec {
            name: AGENT_NAME.to_string(),
            labels: Vec::new(),
            wrap: Vec::new(),
        };
        Fleet::start_agents(herd, dir, vec![one], db).await
    }

    /// The server, given `extra` arguments, and one agent named [`AGENT_NAME`].
    pub async fn start_with(herd: &Path, dir: &Path, db: &Db, extra: &[&str]) -> Result<Fleet> {
        let one = AgentSpec {
            name: AGENT_NAME.to_string(),
            labels: Vec::new(),
            wrap: Vec::new(),
        };
        Fleet::start_agents_with(herd, dir, vec![one], db, extra).await
    }

    /// The server and one agent process per spec; returns once every agent is online.
    pub async fn start_agents(
        herd: &Path,
        dir: &Path,
        specs: Vec<AgentSpec>,
        db: &Db,
    ) -> Result<Fleet> {
        Fleet::start_agents_with(herd, dir, specs, db, &[]).await
    }

    async fn start_agents_with(
        herd: &Path,
        dir: &Path,
        specs: Vec<AgentSpec>,
        db: &Db,
        extra: &[&str],
    ) -> Result<Fleet> {
        if specs.is_empty() {
            bail!("a fleet needs at least one agent");
        }
        let server = start_server_with(herd, dir, "127.0.0.1:0", db, extra)?;
        if !server.url.starts_with("http://") {
            bail!("expected a plain-http loopback server, got {}", server.url);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        let agents = blocking(|| -> Result<Vec<Agent>> {
            let token = server.join_token(specs.len())?;
            let mut agents = Vec::with_capacity(specs.len());
            for spec in &specs {
                let labels: Vec<&str> = spec.labels.iter().map(String::as_str).collect();
                let wrap: Vec<&str> = spec.wrap.iter().map(String::as_str).collect();
                let wrap = (!wrap.is_empty()).then_some(wrap.as_slice());
                agents.push(Agent::start(&server, &spec.name, &labels, &token, wrap)?);
            }
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            server.wait_online(&names)?;
            Ok(agents)
        })?;
        Ok(Fleet {
            http,
            agents,
            server,
        })
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// The directory of the server's data and every log.
    pub fn dir(&self) -> &Path {
        &self.server.dir
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.server.url))
            .bearer_auth(&self.server.key)
    }

    /// `POST /api/v1/runs?wait=true` with `body`: the wall time from request to answer, in
    /// seconds, and the finished run (an answer other than 201 is an error).
    pub async fn run_and_wait(&self, body: &Value) -> Result<(f64, Value)> {
        const WHAT: &str = "POST /api/v1/runs?wait=true";
        let t = Instant::now();
        let resp = self
            .req(reqwest::Method::POST, "/api/v1/runs?wait=true")
            .json(body)
            .send()
            .await
            .context(WHAT)?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{WHAT}: reading the answer"))?;
        let secs = t.elapsed().as_secs_f64();
        if status != reqwest::StatusCode::CREATED {
            bail!(
                "{WHAT} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let v = serde_json::from_slice(&bytes).with_context(|| format!("{WHAT}: bad JSON"))?;
        Ok((secs, v))
    }

    /// The first agent (the only one of [`Fleet::start`]).
    pub fn agent(&self) -> &Agent {
        &self.agents[0]
    }

    /// Fails if the server or an agent died.
    pub fn check_alive(&mut self) -> Result<()> {
        self.server.check_alive()?;
        for a in &mut self.agents {
            a.check_alive()?;
        }
        Ok(())
    }
}
