//! A throwaway herd deployment: one `herd server` on loopback and one separate `herd agent`
//! process, both killed when the [`Fleet`] is dropped (also on error or Ctrl-C).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const AGENT_NAME: &str = "bench";

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
    // Agent first: dropped (killed) before the server.
    pub agent: Proc,
    pub server: Proc,
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
    pub async fn start(herd: &Path, dir: &Path) -> Result<Fleet> {
        let server_log = dir.join("server.log");
        let mut child = herd_cmd(herd)
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while url.is_none() || key.is_none() {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "herd server printed no URL and admin key within 30 s; log:\n{}",
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
            } else if let Some(k) = line.strip_prefix("admin API key (shown once; keep it safe): ")
            {
                key = Some(k.trim().to_string());
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (url, key) = (url.unwrap_or_default(), key.unwrap_or_default());
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
            .json(&json!({"uses": 1}))
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

        let state_dir = dir.join("agent");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let agent_log = dir.join("agent.log");
        let child = herd_cmd(herd)
            .arg("agent")
            .arg("--server")
            .arg(&url)
            .arg("--token")
            .arg(&token)
            .arg("--name")
            .arg(AGENT_NAME)
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&agent_log)?)
            .spawn()
            .with_context(|| format!("cannot start {} agent", herd.display()))?;
        let apid = child.id().context("herd agent exited at once")?;
        let agent = Proc { child, pid: apid };
        let mut fleet = Fleet {
            url,
            key,
            http,
            dir: dir.to_path_buf(),
            agent,
            server,
        };
        fleet.wait_online(Duration::from_secs(30)).await?;
        Ok(fleet)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        api(&self.http, &self.url, &self.key, method, path)
    }

    async fn wait_online(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.agent.child.try_wait() {
                bail!(
                    "herd agent exited ({st}); log:\n{}",
                    tail(&self.dir.join("agent.log"))
                );
            }
            let r = self
                .req(reqwest::Method::GET, "/api/v1/agents")
                .send()
                .await;
            if let Ok(r) = r
                && let Ok(v) = r.json::<Value>().await
                && v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["name"] == AGENT_NAME && x["online"].as_bool() == Some(true))
                })
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "agent {AGENT_NAME} not online after {timeout:?}; agent log:\n{}",
                    tail(&self.dir.join("agent.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if the server or agent died.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(st)) = self.server.child.try_wait() {
            bail!(
                "herd server exited ({st}); log:\n{}",
                tail(&self.dir.join("server.log"))
            );
        }
        if let Ok(Some(st)) = self.agent.child.try_wait() {
            bail!(
                "herd agent exited ({st}); log:\n{}",
                tail(&self.dir.join("agent.log"))
            );
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
