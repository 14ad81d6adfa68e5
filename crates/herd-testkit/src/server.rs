//! A `herd server` process: started on a listen address with its data in a directory, what it
//! prints first (URL, CA fingerprint, admin key) read back, restarted on the same port, killed
//! with SIGKILL; and the CLI configured for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::error::{self, Error, Result};
use crate::http;
use crate::pg::Postgres;
use crate::process::{Proc, herd_command, line_reader, log_file, tail};

/// How long a server may take to print its URL.
const START_TIMEOUT: Duration = Duration::from_secs(60);

const URL_LINE: &str = "herd server listening on ";
const CA_LINE: &str = "CA fingerprint (pin with --ca-sha256 / HERD_CA_SHA256): ";
const KEY_LINE: &str = "admin API key (shown once; keep it safe): ";

/// Where a server keeps its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// No `--database`: the server's default, SQLite in its data dir.
    DataDir,
    /// A fresh database of the shared PostgreSQL ([`Postgres::shared`]), passed as
    /// `--database postgres://…`; restarts keep it.
    Postgres,
}

impl Database {
    /// `HERD_TEST_DATABASE`: unset, empty or `sqlite` is [`Database::DataDir`], `postgres`
    /// is [`Database::Postgres`].
    pub fn from_env() -> Result<Database> {
        match std::env::var("HERD_TEST_DATABASE").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Ok(Database::DataDir),
            Ok("postgres") => Ok(Database::Postgres),
            Ok(other) => Err(Error::Unexpected(format!(
                "HERD_TEST_DATABASE={other:?}: set it to sqlite or postgres"
            ))),
        }
    }
}

pub struct Server {
    /// The directory the server's data, log and agents live in.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    /// What it listens on; after the first start, with the port it got, so that a restart
    /// takes the same one.
    pub listen: String,
    pub url: String,
    /// The admin API key printed at the first start.
    pub key: String,
    /// The CA fingerprint it prints when it serves TLS (beyond loopback).
    pub ca_sha256: Option<String>,
    pub extra_args: Vec<String>,
    /// The `--database` URL, when not the data dir's default.
    pub database: Option<String>,
    herd: PathBuf,
    proc: Option<Proc>,
    /// The process id of the last start.
    pid: u32,
}

impl Server {
    /// A server on 127.0.0.1 with a free port, data in `dir/server`, its database chosen by
    /// `HERD_TEST_DATABASE`.
    pub fn start(herd: impl AsRef<Path>, dir: &Path) -> Result<Server> {
        Server::start_with(herd, dir, "127.0.0.1:0", &[])
    }

    /// A server on `listen` with `extra` arguments, its database chosen by
    /// `HERD_TEST_DATABASE`.
    pub fn start_with(
        herd: impl AsRef<Path>,
        dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> Result<Server> {
        Server::start_on(herd, dir, listen, extra, Database::from_env()?)
    }

    /// A server on `listen` with `extra` arguments and the given database. Returns once it
    /// printed its URL (and CA fingerprint and admin key).
    pub fn start_on(
        herd: impl AsRef<Path>,
        dir: &Path,
        listen: &str,
        extra: &[&str],
        database: Database,
    ) -> Result<Server> {
        let database = match database {
            Database::DataDir => None,
            Database::Postgres => Some(Postgres::shared()?.create_database()?),
        };
        let mut s = Server {
            dir: dir.to_path_buf(),
            data_dir: dir.join("server"),
            listen: listen.to_string(),
            url: String::new(),
            key: String::new(),
            ca_sha256: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            database,
            herd: herd.as_ref().to_path_buf(),
            proc: None,
            pid: 0,
        };
        s.spawn(true)?;
        Ok(s)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn spawn(&mut self, first: bool) -> Result<()> {
        let log = self.log_path();
        let mut cmd = herd_command(&self.herd);
        cmd.arg("server")
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(&self.data_dir);
        if let Some(db) = &self.database {
            cmd.arg("--database").arg(db);
        }
        let mut child = cmd
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&log, true)?)
            .spawn()
            .map_err(error::spawn(format!("{} server", self.herd.display())))?;
        let stdout = child.stdout.take();
        let mut proc = Proc::new(child, "herd server", &log);
        self.pid = proc.pid();
        let Some(stdout) = stdout else {
            return Err(Error::Unexpected("no stdout of herd server".into()));
        };
        let lines = line_reader(stdout);
        let deadline = Instant::now() + START_TIMEOUT;
        let first_line = next_line(&lines, deadline, &mut proc, &log)?;
        let url = first_line
            .strip_prefix(URL_LINE)
            .ok_or_else(|| {
                Error::Unexpected(format!(
                    "herd server printed {first_line:?} first, expected {URL_LINE:?}…"
                ))
            })?
            .trim()
            .to_string();
        // Later restarts reuse the same port.
        if let (Some((host, _)), Some((_, port))) =
            (self.listen.rsplit_once(':'), url.rsplit_once(':'))
        {
            self.listen = format!("{host}:{port}");
        }
        // Right after the URL: the CA fingerprint when it serves TLS, then the admin key when
        // its database is new.
        let mut want_ca = url.starts_with("https://");
        let mut want_key = first;
        while want_ca || want_key {
            let line = next_line(&lines, deadline, &mut proc, &log)?;
            if let Some(fp) = line.strip_prefix(CA_LINE) {
                self.ca_sha256 = Some(fp.trim().to_string());
                want_ca = false;
            } else if let Some(k) = line.strip_prefix(KEY_LINE) {
                self.key = k.trim().to_string();
                want_key = false;
            }
        }
        self.url = url;
        self.proc = Some(proc);
        Ok(())
    }

    /// The server's log so far (every start appends to it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path())
    }

    /// The process id of the last start.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Stops it cleanly (SIGTERM, as an operator or systemd would; SIGKILL after 30 s) and
    /// starts it again on the same address, data and database.
    pub fn restart_clean(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(30));
        }
        self.spawn(false)
    }

    /// Kills it (if it runs) and starts it again on the same address, data and database.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn(false)
    }

    /// Fails if the server process has ended.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.check_alive(),
            None => Err(Error::Unexpected("herd server is not running".into())),
        }
    }

    /// The CLI, configured for this server through the environment only (no config file).
    pub fn cli(&self) -> Command {
        let mut c = herd_command(&self.herd);
        c.env("HERD_CONFIG", self.dir.join("no-config.toml"))
            .env("HERD_SERVER", &self.url)
            .env("HERD_API_KEY", &self.key);
        if let Some(fp) = &self.ca_sha256 {
            c.env("HERD_CA_SHA256", fp);
        }
        c
    }

    /// Runs the CLI with `args` and parses what it prints as JSON; fails if it fails.
    pub fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let out = self
            .cli()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(error::spawn(format!("herd {}", args.join(" "))))?;
        if !out.status.success() {
            return Err(Error::Unexpected(format!(
                "herd {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::Unexpected(format!(
                "herd {} printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ))
        })
    }

    /// A join token good for `uses` agents, which hold whatever labels they declare.
    pub fn join_token(&self, uses: usize) -> Result<String> {
        self.join_token_with(uses, &["--any-labels"])
    }

    /// A join token good for `uses` agents, created with `extra` arguments
    /// (`--label role=db`).
    pub fn join_token_with(&self, uses: usize, extra: &[&str]) -> Result<String> {
        let uses = uses.to_string();
        let mut args = vec!["token", "create", "--uses", &uses, "--json"];
        args.extend_from_slice(extra);
        let v = self.cli_json(&args)?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Unexpected(format!("herd token create printed no token: {v}")))
    }

    /// Starts an agent named `name` with `labels` (`k=v`), joined with a token of its own.
    pub fn agent(&self, name: &str, labels: &[&str]) -> Result<Agent> {
        let token = self.join_token(1)?;
        Agent::start(self, name, labels, &token, None)
    }

    /// Waits until every agent in `names` is online (30 s, plus 0.5 s per agent); fails at
    /// once if the server ends.
    pub fn wait_online(&self, names: &[&str]) -> Result<()> {
        let timeout = Duration::from_secs(30) + Duration::from_millis(500) * names.len() as u32;
        let start = Instant::now();
        let mut missing: Vec<&str> = names.to_vec();
        loop {
            if let Some(p) = &self.proc
                && !p.running()
            {
                return Err(p.exited("while agents were joining"));
            }
            if let Ok(v) = self.cli_json(&["agents", "--json"])
                && let Some(list) = v.as_array()
            {
                missing.retain(|n| {
                    !list
                        .iter()
                        .any(|x| x["name"] == *n && x["online"].as_bool() == Some(true))
                });
                if missing.is_empty() {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                let first = missing.first().copied().unwrap_or_default();
                return Err(Error::Timeout {
                    what: format!(
                        "{} of {} agents online (missing: {}); the first one's log",
                        missing.len(),
                        names.len(),
                        missing
                            .iter()
                            .take(5)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    after: timeout,
                    log: tail(&Agent::log_path_in(&self.dir, first)),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET an API path with the admin key: status and raw body (plain-http servers only).
    pub fn api_get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        http::http_get(&self.url, path, Some(&self.key))
    }

    pub(crate) fn herd(&self) -> &Path {
        &self.herd
    }
}

/// The next line the server prints, before `deadline`; fails with its log if it ends.
fn next_line(
    lines: &Receiver<String>,
    deadline: Instant,
    proc: &mut Proc,
    log: &Path,
) -> Result<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match lines.recv_timeout(left) {
        Ok(line) => Ok(line),
        Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
            what: "herd server to print its URL, CA fingerprint and admin key".into(),
            after: START_TIMEOUT,
            log: tail(log),
        }),
        Err(RecvTimeoutError::Disconnected) => {
            // Its stdout closed: it is ending; give it a moment to be reaped with a status.
            let st = proc.wait_exit(Duration::from_secs(5));
            Err(proc.exited(&st.map_or("still running".into(), |s| s.to_string())))
        }
    }
}
