//! A simulated fleet (`herd bench fleet`): N light agents in one process, each with its own
//! identity and connection, joined to a [`Server`]. Killed on drop.

use std::process::Stdio;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::error::{self, Error, Result};
use crate::process::{Proc, herd_command, line_reader, log_file, tail};
use crate::server::Server;

pub struct Fleet {
    proc: Proc,
    /// Lines the fleet prints (progress; "fleet: N agents connected" once all are).
    lines: Receiver<String>,
    agents: usize,
    log: std::path::PathBuf,
}

impl Fleet {
    /// `agents` simulated agents joining with `token`, their identities in `DIR/fleet.json`,
    /// their log in `DIR/fleet.log`.
    pub fn start(server: &Server, agents: usize, token: &str) -> Result<Fleet> {
        Fleet::start_with(server, agents, token, &[])
    }

    /// The same, with extra arguments to `herd bench fleet` (e.g. `--no-process`).
    pub fn start_with(
        server: &Server,
        agents: usize,
        token: &str,
        extra: &[&str],
    ) -> Result<Fleet> {
        let log = server.dir.join("fleet.log");
        let mut cmd = herd_command(server.herd());
        cmd.args(["bench", "fleet", "--server", &server.url, "--token", token])
            .args(["--agents", &agents.to_string(), "--state-file"])
            .arg(server.dir.join("fleet.json"));
        if let Some(fp) = &server.ca_sha256 {
            cmd.arg("--ca-sha256").arg(fp);
        }
        let mut child = cmd
            .args(extra)
            .env("HERD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&log, false)?)
            .spawn()
            .map_err(error::spawn(format!(
                "{} bench fleet",
                server.herd().display()
            )))?;
        let stdout = child.stdout.take();
        let proc = Proc::new(child, "herd bench fleet", &log);
        let lines = stdout
            .map(line_reader)
            .ok_or_else(|| Error::Unexpected("no stdout of herd bench fleet".into()))?;
        Ok(Fleet {
            proc,
            lines,
            agents,
            log,
        })
    }

    /// Waits until every simulated agent has its session.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let want = format!("fleet: {} agents connected", self.agents);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(&want) => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        what: format!("{} simulated agents to connect", self.agents),
                        after: timeout,
                        log: tail(&self.log),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.proc.exited("before all its agents connected"));
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}
