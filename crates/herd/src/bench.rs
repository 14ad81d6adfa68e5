//! `herd bench`: load generators. `herd bench fleet` runs many simulated agents in this one
//! process (see `herd_sim`), each a real connection to the server with its own
//! identity, so a server can be tried with thousands of machines from one host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Run N simulated agents in this process until interrupted.
    Fleet(FleetArgs),
    /// The process a simulated fleet runs its tasks in (started by `herd bench fleet`).
    #[command(hide = true)]
    FleetRunner,
}

#[derive(Args)]
pub struct FleetArgs {
    /// Server URL, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "HERD_SERVER")]
    server: String,
    /// Join token, needed for agents that have no identity in the state file yet.
    #[arg(long, env = "HERD_JOIN_TOKEN")]
    token: Option<String>,
    /// How many simulated agents to run.
    #[arg(long)]
    agents: usize,
    /// Agent i is named PREFIX followed by i on five digits (sim-00001, sim-00002, ...).
    #[arg(long, default_value = "sim-")]
    prefix: String,
    /// Labels of every simulated agent, k=v; repeatable (sim=true is added).
    #[arg(long = "label", short = 'l', value_parser = crate::parse_label)]
    labels: Vec<(String, String)>,
    /// Where the simulated agents' identities are kept, so a restart reuses them.
    #[arg(long, default_value = "./herd-fleet.json")]
    state_file: PathBuf,
    /// SHA-256 of the server's CA (printed by `herd token create`), for https servers.
    #[arg(long, env = "HERD_CA_SHA256")]
    ca_sha256: Option<String>,
    /// Time between heartbeats of each agent (default: the period the server asks for).
    #[arg(long, value_parser = crate::parse_dur)]
    heartbeat: Option<Duration>,
    /// Answer every task at once with exit code 0 without running anything: measures what
    /// the server takes (dispatch, results persisted), not what machines run.
    #[arg(long)]
    no_process: bool,
}

pub async fn bench(cmd: BenchCmd) -> Result<i32> {
    match cmd {
        BenchCmd::Fleet(a) => fleet(a).await,
        BenchCmd::FleetRunner => {
            herd_sim::serve_runner().await?;
            Ok(0)
        }
    }
}

/// Descriptors the fleet needs beside one connection per agent (runtime, logs, pipes of the
/// few processes running at once).
const SPARE_FDS: u64 = 100;

async fn fleet(a: FleetArgs) -> Result<i32> {
    crate::init_tracing("warn");
    if a.agents == 0 {
        bail!("--agents must be at least 1");
    }
    raise_fd_limit(a.agents as u64 + SPARE_FDS)?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let cfg = herd_sim::FleetConfig {
        server: a.server,
        token: a.token,
        ca_sha256: a.ca_sha256,
        agents: a.agents,
        prefix: a.prefix,
        labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
        state_file: a.state_file,
        heartbeat: a.heartbeat,
        runner: vec![
            std::env::current_exe()
                .context("cannot find this program to start the fleet's process runner")?
                .into_os_string(),
            "bench".into(),
            "fleet-runner".into(),
        ],
        no_process: a.no_process,
    };
    let ready = |n: usize| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "fleet: {n} agents connected");
        let _ = out.flush();
    };
    tokio::select! {
        r = herd_sim::run_fleet(cfg, ready) => {
            r?;
            Ok(0)
        }
        _ = sigint.recv() => Ok(0),
        _ = sigterm.recv() => Ok(0),
    }
}

/// Raises the soft limit on open files to the hard limit, and fails when even that is below
/// `needed`.
fn raise_fd_limit(needed: u64) -> Result<()> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let (mut soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(lim) => lim,
        Err(e) => bail!("cannot read the open files limit: {e}"),
    };
    let target = if hard == RLIM_INFINITY {
        soft.max(needed)
    } else {
        hard
    };
    // Raising the soft limit up to the hard limit is always permitted.
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        soft = target;
    }
    if soft < needed {
        bail!(
            "{} agents need about {needed} open files but this process may open only {soft} — raise the limit (`ulimit -n {needed}`, as root if the hard limit is lower) or pass fewer --agents",
            needed - SPARE_FDS,
        );
    }
    Ok(())
}
