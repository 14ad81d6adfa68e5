//! `herd-bench`: benchmarks of a release `herd` binary beside ssh-based baselines measured
//! in the same run. `herd-bench spine` covers the spine: round trip of `true`, streaming
//! 1 GiB of stdout, and the cost of an idle agent (see `bench/spine.sh`). `herd-bench fleet`
//! runs `true` on N machines through herd, parallel-ssh and Ansible (see `bench/fleet.sh`).
//! `herd-bench copy` copies one file to N machines through `herd cp` and parallel-scp (see
//! `bench/copy.sh`). `herd-bench preauth` measures the server's memory and API latency under
//! stalled unauthenticated `Join` streams and 10,000 idle sockets, beside the same at rest.
//! `herd-bench workflows` times workflow runs end to end (chains of 40 steps, fan-ins) beside
//! the floor of the same processes started in a row (see `bench/workflows.sh`).
//! `herd-bench schedules` measures how late a one-second schedule's runs start beside a plain
//! API run, and the idle server's CPU with 10,000 schedules not due beside none (see
//! `bench/schedules.sh`).

mod ask;
mod copy;
mod fanout;
mod fleet;
mod preauth;
mod scale;
mod schedules;
mod spine;
mod ssh;
mod stats;
mod workflows;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herd-bench",
    about = "Benchmarks of herd beside ssh-based tools"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Round trip of `true`, 1 GiB stdout throughput and idle agent cost, beside ssh.
    Spine(SpineArgs),
    /// A simulated fleet of N agents on one server: connect, `true` on all, idle cost,
    /// reconnect storm, soak.
    Scale(scale::ScaleArgs),
    /// `true` on N machines through herd (API and CLI), parallel-ssh and Ansible ad hoc.
    Fleet(FleetArgs),
    /// A file to N machines through `herd cp` and parallel-scp.
    Copy(copy::CopyArgs),
    /// Server memory and API latency under stalled unauthenticated `Join` streams and
    /// 10,000 idle sockets, beside the same figures at rest.
    Preauth(preauth::PreauthArgs),
    /// Workflow runs end to end on one agent: 40 sequential `true` steps, 40 python3 fibo(10)
    /// steps and fan-ins of N parallel steps, beside the floor of the same processes.
    Workflows(workflows::WorkflowsArgs),
    /// Fire jitter of a one-second schedule beside a plain API run, and the idle server's CPU
    /// with 10,000 schedules not due beside none.
    Schedules(schedules::SchedulesArgs),
    /// `herd ask --yes` on a table of plain-language administration tasks with a real model:
    /// success (each task's check on the machine), steps, alternatives, policy stops, time.
    Ask(ask::AskArgs),
}

#[derive(Args, Clone)]
pub struct FleetArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// Machines: herd agents, and loopback sshd addresses (127.0.0.2 …) for the baselines.
    #[arg(long, default_value_t = 50)]
    pub machines: usize,
    /// Timed runs through herd, for the API and for the CLI each.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Untimed runs through herd before the timed ones, for the API and the CLI each.
    #[arg(long, default_value_t = 3)]
    pub warmups: usize,
    /// Timed runs of each baseline (parallel-ssh, Ansible raw, Ansible command), the first
    /// one included.
    #[arg(long, default_value_t = 5)]
    pub ssh_rounds: usize,
    /// Measure herd only.
    #[arg(long)]
    pub skip_ssh: bool,
    /// Where bench/setup-fleet-ssh.sh keeps the key, hosts file and Ansible inventory.
    #[arg(long, default_value = "/tmp/herd-bench-fleet-ssh")]
    pub fleet_dir: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir (server data, logs) after the run.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Clone)]
pub struct SpineArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// Timed round trips of `true` through the API.
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    /// Untimed round trips before the timed ones.
    #[arg(long, default_value_t = 10)]
    pub warmups: usize,
    /// Timed round trips of `ssh ... true` over the multiplexed connection.
    #[arg(long, default_value_t = 30)]
    pub ssh_rounds: usize,
    /// Timed runs of the 1 GiB stream, for herd and for ssh each.
    #[arg(long, default_value_t = 3)]
    pub gib_runs: usize,
    /// Bytes the streaming task writes (default 1 GiB).
    #[arg(long, default_value_t = 1 << 30)]
    pub bytes: u64,
    /// How long to sample the idle agent, in seconds.
    #[arg(long, default_value_t = 20)]
    pub idle_secs: u64,
    /// How long the agent must have been idle before sampling starts, in seconds.
    #[arg(long, default_value_t = 5)]
    pub idle_settle_secs: u64,
    /// Measure herd only.
    #[arg(long)]
    pub skip_ssh: bool,
    /// Port of the baseline sshd (bench/setup-ssh.sh).
    #[arg(long, default_value_t = 2222)]
    pub ssh_port: u16,
    /// Private key for root on the baseline sshd.
    #[arg(long, default_value = "/tmp/herd-bench-ssh/id_ed25519")]
    pub ssh_key: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir (server data, logs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Where the server keeps its records.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: crate::fleet::Store,
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd-bench: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let res: Result<()> = rt.block_on(async move {
        match cli.cmd {
            Cmd::Scale(a) => {
                let herd = spine::resolve_herd(a.herd.as_deref())?;
                tokio::select! {
                    r = scale::run(a, herd) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Spine(a) => {
                // Dropping the bench future on Ctrl-C kills the server, agent and any
                // timed child (they are all kill-on-drop).
                tokio::select! {
                    r = spine::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Fleet(a) => {
                tokio::select! {
                    r = fanout::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Copy(a) => {
                tokio::select! {
                    r = copy::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Preauth(a) => {
                tokio::select! {
                    r = preauth::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Workflows(a) => {
                tokio::select! {
                    r = workflows::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Schedules(a) => {
                tokio::select! {
                    r = schedules::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
            Cmd::Ask(a) => {
                tokio::select! {
                    r = ask::run(a) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    if let Err(e) = res {
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg = format!("{msg}: {c}");
            }
        }
        eprintln!("herd-bench: {msg}");
        std::process::exit(1);
    }
}

/// Writes a benchmark's results (`--out`) as pretty JSON and says where.
fn write_results(out: &std::path::Path, v: &serde_json::Value) -> Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(v).context("cannot encode results")?;
    std::fs::write(out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("herd-bench: wrote {}", out.display());
    Ok(())
}
