//! A throwaway herd deployment: one `herd server` on loopback and one or more separate
//! `herd agent` processes (each with its own state dir), all killed when the [`Fleet`] is
//! dropped (also on error or Ctrl-C).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The agent of [`Fleet::start`].
pub const AGENT_NAME: &str = "bench";

/// One agent to start: its machine name and labels (`k=v`).
pub struct AgentSpec {
    pub name: String,
    pub labels: Vec<String>,
}

/// A child process that is SIGKILLed and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Reap it now so no zombie or stray process outlives the bench.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

pub struct Fleet {
    pub url: String,
    pub key: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    /// Agents first: dropped (killed) before the server. Never empty.
    pub agents: Vec<Agent>,
    pub server: Proc,
}

pub struct Agent {
    pub name: String,
    pub proc: Proc,
    pub log: PathBuf,
}

fn herd_cmd(herd: &Path) -> Command {
    let mut c = Command::new(herd);
    c.env_remove("HERD_SERVER")
        .env_remove("HERD_API_KEY")
        .env_remove("HERD_CA_SHA256")
        .env_remove("HERD_JOIN_TOKEN")
        .env_remove("HERD_DATA_DIR")
        .env_remove("HERD_LOG")
        .env("HERD_CONFIG", "/nonexistent")
        .kill_on_drop(true);
    c
}

/// The CLI, configured for `fleet` through the environment only.
pub fn cli(herd: &Path, fleet: &Fleet) -> Command {
    let mut c = herd_cmd(herd);
    c.env("HERD_SERVER", &fleet.url)
        .env("HERD_API_KEY", &fleet.key);
    c
}

/// Starts `herd server` on `listen` with its data in `dir/server`; returns it with its URL
/// and, when `want_key` (a fresh data dir prints one), the admin key. Its stdout is drained
/// afterwards so it never blocks on a full pipe.
pub async fn start_server(
    herd: &Path,
    dir: &Path,
    listen: &str,
    want_key: bool,
) -> Result<(Proc, String, Option<String>)> {
    let server_log = dir.join("server.log");
    let mut child = herd_cmd(herd)
        .arg("server")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(dir.join("server"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(&server_log)?)
        .spawn()
        .with_context(|| format!("cannot start {} server", herd.display()))?;
    let pid = child.id().context("herd server exited at once")?;
    let stdout = child.stdout.take().context("no stdout of herd server")?;
    let server = Proc { child, pid };
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut key) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while url.is_none() || (want_key && key.is_none()) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "herd server printed no URL (or admin key) within 60 s; log:\n{}",
                    tail(&server_log)
                )
            })?
            .context("cannot read herd server output")?;
        let Some(line) = line else {
            bail!(
                "herd server exited during start; log:\n{}",
                tail(&server_log)
            );
        };
        if let Some(u) = line.strip_prefix("herd server listening on ") {
            url = Some(u.trim().to_string());
        } else if let Some(k) = line.strip_prefix("admin API key (shown once; keep it safe): ") {
            key = Some(k.trim().to_string());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((server, url.unwrap_or_default(), key))
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(15);
    lines[from..].join("\n")
}

impl Fleet {
    /// The server and one agent named [`AGENT_NAME`].
    pub async fn start(herd: &Path, dir: &Path) -> Result<Fleet> {
        let one = AgentSpec {
            name: AGENT_NAME.to_string(),
            labels: Vec::new(),
        };
        Fleet::start_agents(herd, dir, vec![one]).await
    }

    /// The server and one agent process per spec; returns once every agent is online.
    pub async fn start_agents(herd: &Path, dir: &Path, specs: Vec<AgentSpec>) -> Result<Fleet> {
        if specs.is_empty() {
            bail!("a fleet needs at least one agent");
        }
        let (server, url, key) = start_server(herd, dir, "127.0.0.1:0", true).await?;
        let key = key.unwrap_or_default();
        if !url.starts_with("http://") {
            bail!("expected a plain-http loopback server, got {url}");
        }

        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;

        let tok: Value = api(&http, &url, &key, reqwest::Method::POST, "/api/v1/tokens")
            .json(&json!({"uses": specs.len()}))
            .send()
            .await
            .context("POST /api/v1/tokens")?
            .error_for_status()
            .context("POST /api/v1/tokens")?
            .json()
            .await
            .context("POST /api/v1/tokens: bad JSON")?;
        let token = tok["token"]
            .as_str()
            .context("POST /api/v1/tokens: no token in answer")?
            .to_string();

        let mut fleet = Fleet {
            url,
            key,
            http,
            dir: dir.to_path_buf(),
            agents: Vec::with_capacity(specs.len()),
            server,
        };
        let single = specs.len() == 1;
        for spec in specs {
            // The single agent keeps the historical layout (dir/agent, dir/agent.log).
            let (state_dir, log) = if single {
                (dir.join("agent"), dir.join("agent.log"))
            } else {
                (
                    dir.join("agents").join(&spec.name),
                    dir.join("agents").join(format!("{}.log", spec.name)),
                )
            };
            std::fs::create_dir_all(&state_dir)
                .with_context(|| format!("cannot create {}", state_dir.display()))?;
            let mut cmd = herd_cmd(herd);
            cmd.arg("agent")
                .arg("--server")
                .arg(&fleet.url)
                .arg("--token")
                .arg(&token)
                .arg("--name")
                .arg(&spec.name)
                .arg("--state-dir")
                .arg(&state_dir);
            for l in &spec.labels {
                cmd.arg("--label").arg(l);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(&log)?)
                .spawn()
                .with_context(|| format!("cannot start {} agent", herd.display()))?;
            let pid = child.id().context("herd agent exited at once")?;
            fleet.agents.push(Agent {
                name: spec.name,
                proc: Proc { child, pid },
                log,
            });
        }
        let timeout =
            Duration::from_secs(30) + Duration::from_millis(500) * fleet.agents.len() as u32;
        fleet.wait_online(timeout).await?;
        Ok(fleet)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        api(&self.http, &self.url, &self.key, method, path)
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
    pub fn agent(&self) -> &Proc {
        &self.agents[0].proc
    }

    async fn wait_online(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut missing: Vec<String> = self.agents.iter().map(|a| a.name.clone()).collect();
        loop {
            self.check_alive()?;
            let r = self
                .req(reqwest::Method::GET, "/api/v1/agents")
                .send()
                .await;
            if let Ok(r) = r
                && let Ok(v) = r.json::<Value>().await
                && let Some(list) = v.as_array()
            {
                let online: HashSet<&str> = list
                    .iter()
                    .filter(|x| x["online"].as_bool() == Some(true))
                    .filter_map(|x| x["name"].as_str())
                    .collect();
                missing = self
                    .agents
                    .iter()
                    .filter(|a| !online.contains(a.name.as_str()))
                    .map(|a| a.name.clone())
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                let log = self
                    .agents
                    .iter()
                    .find(|a| missing.first() == Some(&a.name))
                    .map(|a| tail(&a.log))
                    .unwrap_or_default();
                bail!(
                    "{} of {} agents not online after {timeout:?} ({}); log of the first:\n{log}",
                    missing.len(),
                    self.agents.len(),
                    missing
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if the server or an agent died.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(st)) = self.server.child.try_wait() {
            bail!(
                "herd server exited ({st}); log:\n{}",
                tail(&self.dir.join("server.log"))
            );
        }
        for a in &mut self.agents {
            if let Ok(Some(st)) = a.proc.child.try_wait() {
                bail!(
                    "herd agent {} exited ({st}); log:\n{}",
                    a.name,
                    tail(&a.log)
                );
            }
        }
        Ok(())
    }
}

fn api(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    http.request(method, format!("{url}{path}"))
        .bearer_auth(key)
}
