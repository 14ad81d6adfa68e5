//! A real `herd agent` process joined to a [`Server`]: its state in `DIR/agents/NAME`, its log
//! in `DIR/agents/NAME.log`, optionally started through a wrapper command (`ip netns exec NS`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{self, Result};
use crate::process::{Proc, clean_env, herd_command, log_file};
use crate::server::Server;

pub struct Agent {
    pub name: String,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    proc: Proc,
}

impl Agent {
    /// Starts agent `name` with `labels` (`k=v`) and join `token` (empty: none, to restart
    /// from an existing state dir). `wrap` is a command prefix the agent runs under, e.g.
    /// `["ip", "netns", "exec", NS]`. Returns at once; see [`Server::wait_online`].
    pub fn start(
        server: &Server,
        name: &str,
        labels: &[&str],
        token: &str,
        wrap: Option<&[&str]>,
    ) -> Result<Agent> {
        let state_dir = server.dir.join("agents").join(name);
        std::fs::create_dir_all(&state_dir)
            .map_err(error::io(format!("cannot create {}", state_dir.display())))?;
        let log_path = Agent::log_path_in(&server.dir, name);
        let mut cmd = match wrap {
            Some([prog, args @ ..]) => {
                let mut c = Command::new(prog);
                clean_env(&mut c);
                c.args(args).arg(server.herd());
                c
            }
            _ => herd_command(server.herd()),
        };
        cmd.arg("agent")
            .arg("--server")
            .arg(&server.url)
            .arg("--name")
            .arg(name)
            .arg("--state-dir")
            .arg(&state_dir);
        if let Some(fp) = &server.ca_sha256 {
            cmd.arg("--ca-sha256").arg(fp);
        }
        for l in labels {
            cmd.arg("--label").arg(l);
        }
        // As the printed join command does: in the environment, off the command line.
        cmd.env("HERD_JOIN_TOKEN", token);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&log_path, false)?)
            .spawn()
            .map_err(error::spawn(format!("{} agent", server.herd().display())))?;
        Ok(Agent {
            name: name.to_string(),
            state_dir,
            proc: Proc::new(child, format!("herd agent {name}"), &log_path),
            log_path,
        })
    }

    /// Where the agent `name` of a server in `dir` logs.
    pub(crate) fn log_path_in(dir: &Path, name: &str) -> PathBuf {
        dir.join("agents").join(format!("{name}.log"))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits up to `timeout` for the agent to exit on its own; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.wait_exit(timeout)?.code()
    }

    /// Fails if the agent process has ended.
    pub fn check_alive(&mut self) -> Result<()> {
        self.proc.check_alive()
    }

    /// SIGTERM, then up to `timeout` for it to end (SIGKILL after).
    pub fn stop(&mut self, timeout: Duration) {
        self.proc.terminate(timeout);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}
