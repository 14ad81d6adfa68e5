//! `herd`: the server, the agent and the CLI in one binary. Subcommands are thin wrappers
//! over `herd-server`, `herd-agent` and the HTTP API.

mod alerts;
mod answer;
mod ask;
mod bench;
mod breakers;
mod client;
mod cmd;
mod config;
mod copy;
mod fetch;
mod flows;
mod helper;
mod install;
mod langflow;
mod langflow_call;
mod plaintext;
mod run;
mod schedules;
mod style;
mod table;
mod up;
mod vars;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herd",
    version,
    about = "Run commands on one machine or ten thousand, with live output"
)]
struct Cli {
    /// Color machine prefixes and failed states: auto (on a terminal, unless NO_COLOR is set),
    /// always, never.
    #[arg(long, global = true, value_enum, default_value_t = style::ColorWhen::Auto)]
    color: style::ColorWhen,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Server(ServerArgs),
    /// Run the agent on a machine; it dials the server.
    Agent(AgentArgs),
    /// Start a server and a local agent in one process, and write the client config.
    Up(UpArgs),
    /// Run a command on the machines the selectors pick, streaming its output.
    Run(run::RunArgs),
    /// Copy files to the machines the selector picks (uploaded once, checksum verified, mode kept).
    Cp(copy::CpArgs),
    /// Fetch a file from the machines the selectors pick into LOCAL_DIR/<machine>/ (checksum verified, mode kept).
    Fetch(fetch::FetchArgs),
    /// List machines, label them, revoke them.
    Agents(cmd::AgentsArgs),
    /// Join tokens for new machines.
    Token {
        #[command(subcommand)]
        cmd: cmd::TokenCmd,
    },
    /// Variables and secrets (a secret is encrypted at rest and never shown).
    Vars {
        #[command(subcommand)]
        cmd: vars::VarsCmd,
    },
    /// Jobs: named, versioned actions with parameters (`herd jobs apply -f job.yaml`).
    Jobs {
        #[command(subcommand)]
        cmd: flows::JobsCmd,
    },
    /// Ask in plain language: a model proposes a plan, the command policy checks each step, you
    /// review it, it runs as a workflow run: `herd ask "install nginx" -t role=web`.
    Ask(ask::AskArgs),
    /// The command policy every command herd runs goes through.
    Policy {
        #[command(subcommand)]
        cmd: ask::PolicyCmd,
    },
    /// Fleet health alerts: the open ones (`--all`: cleared too), and the rules that raise
    /// them (`herd alerts rules add disk --metric disk --warning 80 --critical 90`).
    Alerts(alerts::AlertsArgs),
    /// Schedules: cron in a time zone, a period or one time, firing a job, a workflow, a
    /// LangFlow flow or a command, exactly once per fire time.
    Schedules {
        #[command(subcommand)]
        cmd: schedules::SchedulesCmd,
    },
    /// LangFlow flows: sources, sync, list, show, run with an input and tweaks.
    Flows {
        #[command(subcommand)]
        cmd: langflow::FlowsCmd,
    },
    /// Workflows: steps in a graph, with conditions, retries and data between steps.
    Workflows {
        #[command(subcommand)]
        cmd: flows::WorkflowsCmd,
    },
    /// Runs: what was asked, on which machines.
    Runs {
        #[command(subcommand)]
        cmd: cmd::RunsCmd,
    },
    /// Tasks: one machine's part of a run.
    Tasks {
        #[command(subcommand)]
        cmd: cmd::TasksCmd,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        cmd: cmd::KeysCmd,
    },
    /// Who ran what where.
    Audit(cmd::AuditArgs),
    /// Circuit breakers of the hosts the server calls (workflow http and notify steps).
    Breakers {
        #[command(subcommand)]
        cmd: breakers::BreakersCmd,
    },
    /// Prune now what retention would (old finished runs, their tasks and output) and say
    /// what was freed.
    Gc(cmd::GcArgs),
    /// Load generators, e.g. a simulated fleet of thousands of agents.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Print a shell completion script (e.g. `herd completions bash > /etc/bash_completion.d/herd`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (e.g. `herd man > /usr/local/share/man/man1/herd.1`).
    Man,
    /// Inside a task: read its input, report outputs, a condition, events and variables
    /// (HERD_INPUT, HERD_OUTPUT).
    #[command(hide = true)]
    Helper {
        #[command(subcommand)]
        cmd: helper::HelperCmd,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on (HTTP API and agent gRPC on one port).
    #[arg(long, default_value = "127.0.0.1:7700", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Where the database, output logs and TLS material live.
    #[arg(long, env = "HERD_DATA_DIR")]
    data_dir: PathBuf,
    /// TLS certificate chain (PEM); default: a CA generated in the data dir when listening beyond loopback.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP. Beyond loopback it is refused unless --allow-plaintext-network is
    /// given too (behind a TLS-terminating proxy only).
    #[arg(long, conflicts_with = "tls_cert")]
    no_tls: bool,
    /// Allow --no-tls on an address beyond loopback: API keys, join tokens and agent
    /// credentials cross the network in clear unless a TLS-terminating proxy is in front.
    #[arg(long, requires = "no_tls")]
    allow_plaintext_network: bool,
    /// URL agents and people use to reach this server (for printed join commands).
    #[arg(long)]
    public_url: Option<String>,
    /// Stored output per task (head and tail kept), e.g. 64MiB as bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    output_cap: u64,
    /// Mark a running task lost when its agent stays away this long.
    #[arg(long, default_value = "10m", value_parser = parse_dur)]
    lost_after: Duration,
    /// The longest life a join token may be given (`herd token create --ttl`).
    #[arg(long, default_value = "7d", value_parser = parse_dur)]
    max_token_ttl: Duration,
    /// Prune finished runs (their tasks and output) older than this, e.g. 30d, 12h.
    #[arg(long, default_value = "30d", value_parser = parse_dur)]
    retention: Duration,
    /// Also prune the oldest finished runs while stored output is over this size, e.g. 10GiB
    /// (default: no size budget).
    #[arg(long, value_parser = parse_size)]
    retention_size: Option<u64>,
    /// How often retention prunes in the background.
    #[arg(long, default_value = "1h", value_parser = parse_dur, hide = true)]
    retention_interval: Duration,
    /// Where the records live: sqlite:PATH or postgres://USER@HOST:PORT/DB (default: SQLite
    /// in the data dir). One server at a time uses a database.
    #[arg(long, env = "HERD_DATABASE", value_parser = parse_database)]
    database: Option<herd_server::Database>,
    /// Answer /metrics only with a valid API key (`Authorization: Bearer <key>`, e.g. one
    /// made for the scraper with `herd keys create --name prometheus`).
    #[arg(long)]
    metrics_auth: bool,
    /// Consecutive failures (connection error, timeout, 5xx, 429) that open the circuit
    /// breaker of a host that workflow http and notify steps call.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    breaker_threshold: u32,
    /// How long an open breaker refuses calls to its host before one probe goes.
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    breaker_cooldown: Duration,
    /// CA certificates (PEM) trusted for the HTTPS and SMTP calls of workflow steps, besides
    /// the system's.
    #[arg(long, value_name = "FILE")]
    actions_ca: Option<PathBuf>,
    /// The OpenAI-compatible API `herd ask` uses (e.g. http://127.0.0.1:8080/v1); its key
    /// comes from HERD_LLM_API_KEY only.
    #[arg(long, env = "HERD_LLM_URL")]
    llm_url: Option<String>,
    /// The model `herd ask` asks.
    #[arg(long, env = "HERD_LLM_MODEL")]
    llm_model: Option<String>,
    /// A limit of task supervision, CLASS.KEY=VALUE; repeatable. CLASS: info, package,
    /// build, download, service, unknown or all; KEY: hang (no output and no CPU this long
    /// stops the task), input (the longest wait for an answer), loop (repeats of one error
    /// line that stop it) and loop-window; 0 turns a limit off (e.g. info.hang=2m,
    /// all.loop=20).
    #[arg(long = "supervise", value_name = "CLASS.KEY=VALUE", value_parser = parse_supervise)]
    supervise: Vec<String>,
    /// Serve the web dashboard from this directory (a build of web/, `npm run build`)
    /// instead of the copy built into herd.
    #[arg(long, env = "HERD_WEB_DIR", value_name = "DIR")]
    web_dir: Option<PathBuf>,
}

fn parse_supervise(s: &str) -> Result<String, String> {
    herd_core::supervise::Limits::default()
        .set(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Args)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct AgentArgs {
    #[command(subcommand)]
    cmd: Option<AgentCmd>,
    #[command(flatten)]
    run: AgentRunArgs,
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Install the agent as a systemd service (herd-agent.service) with these agent arguments,
    /// enable and start it.
    Install(install::InstallArgs),
}

#[derive(Args)]
pub struct AgentRunArgs {
    /// Server URL, e.g. https://herd.example:7700.
    #[arg(long, env = "HERD_SERVER")]
    server: Option<String>,
    /// Join token (needed only the first time; the credential is kept in the state dir).
    /// Prefer HERD_JOIN_TOKEN or --token-file: a token given here is moved off the command
    /// line at start (the agent re-executes itself with it in its environment).
    #[arg(long, env = "HERD_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the join token from this file (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Set when the agent re-executed itself to move --token into its environment.
    #[arg(long, hide = true)]
    token_moved: bool,
    /// This machine's name in the fleet (default: hostname).
    #[arg(long)]
    name: Option<String>,
    /// Labels, k=v; repeatable. They replace the labels kept in the state dir; without
    /// --label the kept ones (those of the last start that gave any) are declared.
    #[arg(long = "label", short = 'l', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Declare no labels (forgets the ones kept in the state dir).
    #[arg(long, conflicts_with = "labels")]
    clear_labels: bool,
    /// Where the agent keeps its credential and spool.
    #[arg(long, default_value = "/var/lib/herd-agent")]
    state_dir: PathBuf,
    /// SHA-256 of the server's CA (printed by `herd token create`), for https servers.
    #[arg(long)]
    ca_sha256: Option<String>,
    /// Do not supervise tasks (no hang, error-loop or input detection; for measuring its
    /// cost).
    #[arg(long)]
    no_supervise: bool,
    /// A directory on the filesystem whose usage heartbeats report as `disk` (what `disk`
    /// alert rules watch); default `/`.
    #[arg(long, value_name = "DIR")]
    metrics_disk: Option<PathBuf>,
}

#[derive(Args)]
pub struct UpArgs {
    #[arg(long, env = "HERD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:7700", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Name of the local agent (default: hostname).
    #[arg(long)]
    name: Option<String>,
    /// Prune finished runs (their tasks and output) older than this, e.g. 30d, 12h.
    #[arg(long, default_value = "30d", value_parser = parse_dur)]
    retention: Duration,
    /// Also prune the oldest finished runs while stored output is over this size, e.g. 10GiB
    /// (default: no size budget).
    #[arg(long, value_parser = parse_size)]
    retention_size: Option<u64>,
    /// How often retention prunes in the background.
    #[arg(long, default_value = "1h", value_parser = parse_dur, hide = true)]
    retention_interval: Duration,
    /// Where the records live: sqlite:PATH or postgres://USER@HOST:PORT/DB (default: SQLite
    /// in the data dir).
    #[arg(long, env = "HERD_DATABASE", value_parser = parse_database)]
    database: Option<herd_server::Database>,
    /// Answer /metrics only with a valid API key.
    #[arg(long)]
    metrics_auth: bool,
    /// Serve the web dashboard from this directory (a build of web/, `npm run build`)
    /// instead of the copy built into herd.
    #[arg(long, env = "HERD_WEB_DIR", value_name = "DIR")]
    web_dir: Option<PathBuf>,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("bad address {s:?}: expected IP:PORT, e.g. 127.0.0.1:7700 or 0.0.0.0:7700")
    })
}

fn parse_database(s: &str) -> Result<herd_server::Database, String> {
    herd_server::Database::parse(s)
}

pub fn parse_dur(s: &str) -> Result<Duration, String> {
    herd_core::parse_duration(s).map_err(|e| e.to_string())
}

/// A size in bytes: a number with an optional unit, B, KB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024), e.g. `10GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("bad size {s:?}: expected a number and a unit, e.g. 500MB or 10GiB");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    herd_core::parse_label(s).map_err(|e| e.to_string())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log file or journal gets plain lines.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A server holds one connection per agent: lift the soft limit on open files to the hard
/// one (commonly 1024 → far more), so a fleet of thousands can connect. Best effort.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// `herd run -t x ls -la`: the command's words taken as herd's own. The line to suggest
/// instead, with `--` before the command, if that is what went wrong.
fn forgotten_dashes(argv: &[String], e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument || argv.iter().any(|a| a == "--") {
        return None;
    }
    let run = argv.iter().position(|a| a == "run")?;
    let Some(ContextValue::String(bad)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let bad_at = run + 1 + argv[run + 1..].iter().position(|a| a == bad)?;
    // The command starts at the first word that is neither an option nor an option's value.
    let mut at = run + 1;
    while at < bad_at {
        let a = &argv[at];
        if !a.starts_with('-') {
            break;
        }
        let takes_value = !a.contains('=')
            && !matches!(
                a.as_str(),
                "--all" | "-i" | "--interactive" | "--tty" | "--detach" | "--json"
            );
        at += if takes_value { 2 } else { 1 };
    }
    let at = at.min(bad_at);
    let mut fixed: Vec<&str> = argv.iter().map(String::as_str).collect();
    fixed[0] = "herd";
    fixed.insert(at, "--");
    Some(format!(
        "herd: {bad:?} is not an option of herd run: the command goes after -- — run: {}",
        fixed.join(" ")
    ))
}

fn parse_cli() -> Cli {
    let argv: Vec<String> = std::env::args().collect();
    match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(hint) = forgotten_dashes(&argv, &e) {
                eprintln!("{hint}");
                std::process::exit(2);
            }
            e.exit()
        }
    }
}

/// `herd agent … --token VALUE`: any local user reads a process's command line, so before
/// anything else (no runtime, no threads yet) the agent re-executes itself with the same
/// arguments minus the token, and the token in `HERD_JOIN_TOKEN` (a process's environment is
/// readable only by its owner and root). Returns only when there is nothing to move.
fn move_token_off_argv() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((rest, token)) = strip_token_arg(&argv) {
        reexec_with_secret(
            &argv[0],
            &rest,
            Some("--token-moved"),
            ("HERD_JOIN_TOKEN", token),
            "the join token",
            "pass the token in HERD_JOIN_TOKEN or --token-file instead",
        );
    }
}

/// `herd server|up … --database URL` with a password in the URL: as for the join token, the
/// process re-executes itself with the same arguments minus the URL, and the URL in
/// `HERD_DATABASE`, so other local users do not read the password in `/proc/PID/cmdline`.
/// Returns only when there is nothing to move.
fn move_database_password_off_argv() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((rest, url)) = strip_database_arg(&argv) {
        reexec_with_secret(
            &argv[0],
            &rest,
            None,
            ("HERD_DATABASE", url),
            "the database password",
            "pass the URL in HERD_DATABASE instead",
        );
    }
}

/// Re-executes this binary with `rest` (argv without the secret; `rest[0]` is the program),
/// `marker` appended, and the secret in the environment variable `env`. Never returns: if
/// the exec fails, says so in one line and exits 1.
fn reexec_with_secret(
    argv0: &std::ffi::OsStr,
    rest: &[std::ffi::OsString],
    marker: Option<&str>,
    env: (&str, std::ffi::OsString),
    what: &str,
    instead: &str,
) {
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(&rest[1..])
        .args(marker)
        .env(env.0, env.1)
        .exec();
    eprintln!(
        "herd: cannot move {what} off the command line: re-executing /proc/self/exe failed: {err} — {instead}"
    );
    std::process::exit(1);
}

/// Where the subcommand is in `herd [--color X] SUBCOMMAND …`.
fn subcommand_at(argv: &[std::ffi::OsString]) -> usize {
    let mut at = 1;
    while at < argv.len() {
        match argv[at].to_str() {
            Some("--color") => at += 2,
            Some(a) if a.starts_with("--color=") => at += 1,
            _ => break,
        }
    }
    at
}

/// The arguments without every `FLAG VALUE` / `FLAG=VALUE` after position `at` (the
/// subcommand), and the last such value.
fn take_flag(
    argv: &[std::ffi::OsString],
    at: usize,
    flag: &str,
) -> (Vec<std::ffi::OsString>, Option<std::ffi::OsString>) {
    use std::os::unix::ffi::OsStrExt;
    let with_eq = format!("{flag}=");
    let mut rest = argv[..=at].to_vec();
    let mut value = None;
    let mut i = at + 1;
    while i < argv.len() {
        let a = argv[i].as_bytes();
        if a == flag.as_bytes() && i + 1 < argv.len() {
            value = Some(argv[i + 1].clone());
            i += 2;
        } else if let Some(v) = a.strip_prefix(with_eq.as_bytes()) {
            value = Some(std::ffi::OsStr::from_bytes(v).to_os_string());
            i += 1;
        } else {
            rest.push(argv[i].clone());
            i += 1;
        }
    }
    (rest, value)
}

/// For `herd [--color X] agent … --token VALUE|--token=VALUE …` (not `agent install`, whose
/// arguments are the service's): the arguments without the token, and the token.
fn strip_token_arg(
    argv: &[std::ffi::OsString],
) -> Option<(Vec<std::ffi::OsString>, std::ffi::OsString)> {
    let at = subcommand_at(argv);
    if argv.get(at).and_then(|a| a.to_str()) != Some("agent")
        || argv.get(at + 1).and_then(|a| a.to_str()) == Some("install")
    {
        return None;
    }
    let (rest, token) = take_flag(argv, at, "--token");
    token.map(|t| (rest, t))
}

/// For `herd [--color X] server|up … --database URL|--database=URL …` whose URL holds a
/// password: the arguments without the URL, and the URL.
fn strip_database_arg(
    argv: &[std::ffi::OsString],
) -> Option<(Vec<std::ffi::OsString>, std::ffi::OsString)> {
    let at = subcommand_at(argv);
    if !matches!(argv.get(at).and_then(|a| a.to_str()), Some("server" | "up")) {
        return None;
    }
    let (rest, url) = take_flag(argv, at, "--database");
    url.filter(|u| u.to_str().is_some_and(holds_password))
        .map(|u| (rest, u))
}

/// Whether a database URL holds a password (`scheme://user:password@…` or a `password=`
/// parameter).
fn holds_password(url: &str) -> bool {
    let Some((_, after)) = url.split_once("://") else {
        return false;
    };
    let authority = after.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
        || url.contains("password=")
}

fn main() {
    move_token_off_argv();
    move_database_password_off_argv();
    let cli = parse_cli();
    // A task's helper: a few file reads and an append, no runtime.
    let cli = match cli {
        Cli {
            cmd: Command::Helper { cmd },
            ..
        } => std::process::exit(helper::main(cmd)),
        cli => cli,
    };
    style::init(cli.color);
    if matches!(cli.cmd, Command::Server(_) | Command::Up(_)) {
        raise_open_files_limit();
    }
    // One TLS crypto provider for every client and server in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The server (also in `herd up`) and the load generators get the multi-threaded runtime.
    // An agent idles for days: one thread (plus the blocking pool for disk and /proc work)
    // keeps its footprint small; a CLI command waits on one server: one thread starts
    // sooner and wakes without a hand-off between threads.
    let mut builder = match cli.cmd {
        Command::Server(_) | Command::Up(_) | Command::Bench { .. } => {
            tokio::runtime::Builder::new_multi_thread()
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        match dispatch(cli).await {
            Ok(code) => code,
            Err(e) if closed_pipe(&e) => 141,
            Err(e) => {
                // One line: the outermost context, then its causes.
                let mut msg = e.to_string();
                for cause in e.chain().skip(1) {
                    let c = cause.to_string();
                    if !msg.contains(&c) {
                        msg = format!("{msg}: {c}");
                    }
                }
                // Shown escaped: it may quote what a server, an agent or a file name held.
                eprintln!("herd: {}", herd_core::Escaped(&msg));
                // A server that could not be reached or was lost: 255, as ssh does, apart
                // from any code a remote command ends with.
                if e.chain().any(|c| c.is::<client::Lost>()) {
                    255
                } else {
                    1
                }
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}

/// Whether `e` is a write to a closed pipe (`herd … | head`): the CLI then ends quietly.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Command::Server(a) => {
            init_tracing("info");
            let mut cfg = herd_server::ServerConfig::new(a.listen, a.data_dir);
            cfg.tls = match (a.tls_cert, a.tls_key, a.no_tls) {
                (Some(cert), Some(key), _) => herd_server::TlsMode::Files { cert, key },
                (_, _, true) => herd_server::TlsMode::Off,
                _ => herd_server::TlsMode::Auto,
            };
            cfg.output_cap = a.output_cap;
            cfg.lost_after = a.lost_after;
            cfg.max_token_ttl = a.max_token_ttl;
            cfg.retention = a.retention;
            cfg.retention_size = a.retention_size;
            cfg.retention_interval = a.retention_interval;
            cfg.public_url = a.public_url;
            cfg.database = a.database;
            cfg.metrics_auth = a.metrics_auth;
            cfg.allow_plaintext_network = a.allow_plaintext_network;
            cfg.breaker_threshold = a.breaker_threshold;
            cfg.breaker_cooldown = a.breaker_cooldown;
            cfg.actions_ca = a.actions_ca;
            cfg.llm_url = a.llm_url;
            cfg.llm_model = a.llm_model;
            cfg.web_dir = a.web_dir;
            for s in &a.supervise {
                cfg.supervise.set(s)?;
            }
            let running = herd_server::start(cfg).await?;
            let mut said = format!("herd server listening on {}\n", running.url);
            if let Some(fp) = &running.ca_fingerprint {
                said += &format!("CA fingerprint (pin with --ca-sha256 / HERD_CA_SHA256): {fp}\n");
            }
            if let Some(key) = &running.admin_key {
                said += &format!("admin API key (shown once; keep it safe): {key}\n");
            }
            said += &format!("dashboard: {}/ (log in with an API key)\n", running.url);
            say(&said);
            running.run_until_signal().await;
            Ok(0)
        }
        Command::Agent(AgentArgs {
            cmd: Some(AgentCmd::Install(i)),
            ..
        }) => install::install(i),
        Command::Agent(AgentArgs { run: a, .. }) => {
            let Some(server) = a.server else {
                anyhow::bail!(
                    "no server given — pass --server https://HOST:7700 (or set HERD_SERVER)"
                );
            };
            let token = match &a.token_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| {
                            format!(
                                "cannot read the join token from {} — check --token-file",
                                path.display()
                            )
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                None => a.token,
            };
            // An empty token is none (a restart from a state dir that holds a credential).
            let token = token.filter(|t| !t.is_empty());
            init_tracing("info");
            if a.token_moved {
                tracing::info!(
                    "moved the join token off the command line into the environment (pass it in HERD_JOIN_TOKEN or --token-file to begin with)"
                );
            }
            let cfg = herd_agent::AgentConfig {
                server,
                token,
                name_given: a.name.is_some(),
                name: a.name.unwrap_or_else(hostname),
                labels_given: !a.labels.is_empty() || a.clear_labels,
                labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
                state_dir: a.state_dir,
                ca_sha256: a.ca_sha256,
                supervise: !a.no_supervise,
                metrics_disk: a.metrics_disk,
            };
            plaintext::warn(&cfg.server, "the agent's credential (and join token)");
            herd_agent::run(cfg).await?;
            Ok(0)
        }
        Command::Up(a) => up::up(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Cp(a) => copy::cp(a).await,
        Command::Fetch(a) => fetch::fetch(a).await,
        Command::Agents(a) => cmd::agents(a).await,
        Command::Token { cmd } => cmd::token(cmd).await,
        Command::Vars { cmd } => vars::vars(cmd).await,
        Command::Jobs { cmd } => flows::jobs(cmd).await,
        Command::Workflows { cmd } => flows::workflows(cmd).await,
        Command::Schedules { cmd } => schedules::schedules(cmd).await,
        Command::Alerts(a) => alerts::alerts(a).await,
        Command::Flows { cmd } => langflow::flows(cmd).await,
        Command::Ask(a) => ask::ask(a).await,
        Command::Policy { cmd } => ask::policy(cmd).await,
        Command::Runs { cmd } => cmd::runs(cmd).await,
        Command::Tasks { cmd } => cmd::tasks(cmd).await,
        Command::Keys { cmd } => cmd::keys(cmd).await,
        Command::Audit(a) => cmd::audit(a).await,
        Command::Breakers { cmd } => breakers::breakers(cmd).await,
        Command::Gc(a) => cmd::gc(a).await,
        Command::Bench { cmd } => bench::bench(cmd).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "herd", &mut out);
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .context("cannot write the completion script")?;
            Ok(0)
        }
        Command::Helper { cmd } => Ok(helper::main(cmd)),
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .context("cannot write the manual page")?;
            Ok(0)
        }
    }
}

/// Writes a server's start-up lines to stdout in one write, and goes on whatever happens to
/// them: a server must not stop because whoever started it closed its stdout (a pipe read for
/// its first line only, a terminal gone).
pub(crate) fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{strip_database_arg, strip_token_arg};
    use std::ffi::OsString;

    fn args(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn the_token_is_taken_out_of_agent_arguments_only() {
        let (rest, t) =
            strip_token_arg(&args("herd agent --server u --token hj_1 --name n")).unwrap();
        assert_eq!(rest, args("herd agent --server u --name n"));
        assert_eq!(t, "hj_1");
        let (rest, t) = strip_token_arg(&args("herd --color never agent --token=hj_2")).unwrap();
        assert_eq!(rest, args("herd --color never agent"));
        assert_eq!(t, "hj_2");
        assert!(strip_token_arg(&args("herd agent --server u")).is_none());
        assert!(strip_token_arg(&args("herd agent install --token hj_3")).is_none());
        assert!(strip_token_arg(&args("herd bench fleet --token hj_4")).is_none());
        assert!(strip_token_arg(&args("herd agent --token")).is_none());
    }

    #[test]
    fn a_database_password_is_taken_out_of_server_arguments() {
        let (rest, u) = strip_database_arg(&args(
            "herd server --listen a --database postgres://u:pw@h:5/d --data-dir x",
        ))
        .unwrap();
        assert_eq!(rest, args("herd server --listen a --data-dir x"));
        assert_eq!(u, "postgres://u:pw@h:5/d");
        let (rest, u) = strip_database_arg(&args(
            "herd --color never up --database=postgres://u@h/d?password=pw",
        ))
        .unwrap();
        assert_eq!(rest, args("herd --color never up"));
        assert_eq!(u, "postgres://u@h/d?password=pw");
        // Nothing to hide: left where it is.
        assert!(strip_database_arg(&args("herd server --database postgres://u@h:5/d")).is_none());
        assert!(strip_database_arg(&args("herd server --database sqlite:/x:y@z")).is_none());
        assert!(strip_database_arg(&args("herd server")).is_none());
        assert!(strip_database_arg(&args("herd runs ls --database postgres://u:pw@h/d")).is_none());
    }
}
