//! `herd run`: its arguments, the run request they make, creating the run and attaching to
//! it. Following the run's output lives beside it: `follow` (the WebSocket loop, also behind
//! `herd tasks logs -f`), `input` (stdin and the terminal), `render` (output, the progress
//! line, JSON event lines) and `summary` (the summary and the exit code).

mod existing;
mod follow;
mod group;
mod input;
mod render;
mod summary;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use herd_api::{RunLimits, RunRequest, RunSpec, RunWithTasks, Script};
use herd_core::Limit;

pub use existing::{RetryOpts, logs, retry};
pub use follow::{FollowOpts, follow};

use crate::client::Client;
use crate::config;

#[derive(Args)]
pub struct RunArgs {
    /// Machines to run on: name glob (web-*), label or fact (role=web, os=debian), with & (AND),
    /// , (OR), ! (NOT). Repeatable (OR).
    #[arg(short = 't', long = "target")]
    targets: Vec<String>,
    /// Every machine.
    #[arg(long, conflicts_with = "targets")]
    all: bool,
    /// End the command after this long (e.g. 500ms, 30s, 5m); exit code 124.
    #[arg(long, value_parser = crate::parse_dur)]
    timeout: Option<Duration>,
    /// Forward this terminal's stdin to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Run the command under a terminal (PTY).
    #[arg(long)]
    tty: bool,
    /// Print the run id and return at once.
    #[arg(long)]
    detach: bool,
    /// Environment for the command, K=V; repeatable. Stored with the run and shown as given
    /// (`herd runs show`, the API): use --secret-env for passwords and tokens.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// A secret environment variable for the command, K=V, or K alone to take the value of K
    /// from this shell's environment (so it is in neither the shell history nor `ps`);
    /// repeatable. The value is never stored, logged or shown (`K=***`); it lives in the
    /// server's memory until the run ends, so a task not started when the server restarts
    /// ends cancelled.
    #[arg(long = "secret-env", value_name = "K[=V]")]
    secret_env: Vec<String>,
    /// Set `K` to the value of the server's variable `VAR` (`herd vars set VAR --secret`),
    /// as --secret-env does: the value never reaches this machine or the run's record.
    #[arg(long = "secret-var", value_name = "K=VAR")]
    secret_var: Vec<String>,
    /// Working directory on the machines.
    #[arg(long)]
    cwd: Option<String>,
    /// Machines running at once: a number or a share of the targets (10%).
    #[arg(long, value_parser = parse_limit)]
    concurrency: Option<Limit>,
    /// Failures tolerated (a number or a share, 10%); once exceeded no new machine starts and
    /// the rest are reported as skipped. Offline machines count as failures.
    #[arg(long, value_parser = parse_limit)]
    max_errors: Option<Limit>,
    /// Pause after a machine finishes before its slot goes to the next one (e.g. 2s).
    #[arg(long, value_parser = crate::parse_dur)]
    batch_wait: Option<Duration>,
    /// How long a task waits for its machine when that machine is offline but was seen within
    /// this long (e.g. it reconnects after a server restart) before it counts as lost
    /// (e.g. 10s; 0: lost at once). Default 30s.
    #[arg(long, value_parser = crate::parse_dur)]
    wait_offline: Option<Duration>,
    /// Run as this user on the machines (their agent must run as root): its groups, HOME,
    /// USER, LOGNAME and SHELL, and its home as the working directory unless --cwd.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Run this local script on the machines instead of a command (any `#!` interpreter;
    /// without a `#!` line, bash runs it); what follows `--` are its arguments. At most 1 MiB.
    #[arg(long, value_name = "PATH")]
    script: Option<std::path::PathBuf>,
    /// One JSON event per line (output, progress, each machine's end, then the run) instead of
    /// plain output (with --detach: the created run).
    #[arg(long)]
    json: bool,
    /// Keep each machine's output until the end, then print each distinct output once under
    /// the list of machines that printed it.
    #[arg(long, conflicts_with = "json")]
    group: bool,
    /// Approve a command the command policy sends for approval (e.g. a dangerous one); the
    /// approval is recorded in the run's audit entry. Without it, herd asks on a terminal.
    #[arg(long)]
    approve: bool,
    /// The command and its arguments (with --script: the script's arguments).
    #[arg(last = true, required_unless_present = "script")]
    command: Vec<String>,
}

fn parse_limit(s: &str) -> Result<Limit, String> {
    Limit::parse(s).map_err(|e| e.to_string())
}

/// Joins argv into one shell command; a single argument is taken as a shell snippet as is.
fn shell_command(argv: &[String]) -> String {
    if argv.len() == 1 {
        return argv[0].clone();
    }
    shell_words(argv)
}

/// Argv as one shell command line, each word quoted when it needs to be.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The run request `a` asks for, or what is wrong with the arguments.
fn request(a: &RunArgs) -> Result<RunRequest> {
    if !a.all && a.targets.is_empty() {
        bail!("no machines chosen — pass -t SELECTOR (e.g. -t web-1, -t role=web) or --all");
    }
    let mut env = std::collections::BTreeMap::new();
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("bad --env {kv:?}: expected KEY=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let mut secret_env = std::collections::BTreeMap::new();
    for kv in &a.secret_env {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = std::env::var(kv).map_err(|_| {
                    anyhow::anyhow!(
                        "bad --secret-env {kv:?}: {kv} is not set in this environment — export it first, or pass {kv}=VALUE"
                    )
                })?;
                (kv.clone(), v)
            }
        };
        if k.is_empty() {
            bail!("bad --secret-env: empty name — pass K=VALUE or K");
        }
        if env.contains_key(&k) {
            bail!("{k} is given both as --env and as --secret-env — give it once");
        }
        secret_env.insert(k, v);
    }
    let mut secret_vars = std::collections::BTreeMap::new();
    for kv in &a.secret_var {
        let Some((k, var)) = kv
            .split_once('=')
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        else {
            bail!("bad --secret-var {kv:?}: expected NAME=VARIABLE (a variable of `herd vars ls`)");
        };
        if env.contains_key(k) || secret_env.contains_key(k) {
            bail!("{k} is given twice (--env, --secret-env, --secret-var) — give it once");
        }
        secret_vars.insert(k.to_string(), var.to_string());
    }
    if a.concurrency == Some(Limit::Count(0)) {
        bail!("--concurrency must be at least 1 (or a share such as 10%)");
    }
    let script = a
        .script
        .as_deref()
        .map(|p| read_script(p, &a.command))
        .transpose()?;
    let command = match &script {
        Some(s) => {
            let mut argv = vec![s.name.clone()];
            argv.extend(s.args.iter().cloned());
            shell_command(&argv)
        }
        None => shell_command(&a.command),
    };
    Ok(RunRequest {
        command,
        targets: a.targets.clone(),
        all: a.all,
        start_on_attach: !a.detach,
        secret_env,
        secret_vars,
        approve: a.approve,
        spec: RunSpec {
            timeout_ms: a.timeout.map(|d| d.as_millis() as u64).unwrap_or(0),
            interactive: a.interactive,
            tty: a.tty,
            env,
            cwd: a.cwd.clone().unwrap_or_default(),
            limits: RunLimits {
                concurrency: a.concurrency,
                max_errors: a.max_errors,
                batch_wait_ms: a.batch_wait.map_or(0, |w| w.as_millis() as u64),
            },
            wait_offline_ms: a.wait_offline.map(|d| d.as_millis() as u64),
            user: a.user.clone().unwrap_or_default(),
            window: if a.tty { input::window_size() } else { None },
            script,
            ..RunSpec::default()
        },
    })
}

/// The local script `path`, to ship with the run, with its arguments.
fn read_script(path: &std::path::Path, args: &[String]) -> Result<Script> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| {
        format!("cannot read the script {shown} — give the path of a local file")
    })?;
    if !meta.is_file() {
        bail!("cannot read the script {shown}: not a file — give the path of a local file");
    }
    if meta.len() > RunSpec::MAX_SCRIPT_BYTES as u64 {
        bail!(
            "cannot send the script {shown}: it is {} bytes, over the limit of {} — copy it to the machines and run it there",
            meta.len(),
            RunSpec::MAX_SCRIPT_BYTES
        );
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!("cannot read the script {shown} — give the path of a local file")
    })?;
    let body = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "cannot send the script {shown}: it is not UTF-8 text — scripts are sent as text; copy binaries to the machines and run them there"
        )
    })?;
    let name = path
        .file_name()
        .map_or_else(|| shown.to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Script {
        name,
        body,
        args: args.to_vec(),
    })
}

pub async fn run(a: RunArgs) -> Result<i32> {
    let mut req = request(&a)?;
    let client = Client::from_config(&config::load()?)?;
    if !req.approve && req.spec.script.is_none() {
        req.approve = confirm(&client, &req).await?;
    }
    start(
        &client,
        &req,
        Show {
            detach: a.detach,
            json: a.json,
            group: a.group,
        },
    )
    .await
}

/// On a terminal, a command the policy sends for approval is shown with its reason and run
/// only when the person says yes (else nothing is asked: the server refuses it, saying
/// `--approve`).
async fn confirm(client: &Client, req: &RunRequest) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    let targets = if req.all {
        vec!["*".to_string()]
    } else {
        req.targets.clone()
    };
    let check: herd_api::StepCheck = client
        .post(
            "/api/v1/policy/check",
            &herd_api::PolicyCheck {
                command: req.command.clone(),
                role: None,
                targets,
            },
        )
        .await?;
    if check.decision != "approve" {
        return Ok(false);
    }
    let reason = check
        .reasons
        .iter()
        .find(|r| r.starts_with(&format!("{}:", check.class)))
        .or(check.reasons.first())
        .cloned()
        .unwrap_or_default();
    eprint!(
        "this command is {} ({}); run it? [y/N] ",
        check.class,
        herd_core::Escaped(&reason)
    );
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(true)
    } else {
        bail!("not run: the command was not approved")
    }
}

/// How a run that is started is shown.
pub struct Show {
    /// Print the run's id (or with `json` the created run) and return.
    pub detach: bool,
    /// JSON event lines.
    pub json: bool,
    /// Identical outputs printed once (`--group`).
    pub group: bool,
}

/// Creates the run `req` asks for and follows it (unless `show.detach`): its id on stderr,
/// its output, its summary; the exit code is the first failing machine's.
pub async fn start(client: &Client, req: &RunRequest, show: Show) -> Result<i32> {
    // Catch Ctrl-C before the run exists, so an early one cancels instead of killing us.
    let sigint = interrupts()?;
    if show.detach {
        let created: RunWithTasks = client.post("/api/v1/runs", req).await?;
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if show.json {
            writeln!(out, "{}", crate::cmd::json_text(&created)?)?;
        } else {
            writeln!(out, "{}", herd_core::Escaped(&created.run.id))?;
        }
        return Ok(0);
    }
    // One connection and no separate request: the run request is the first message of the
    // watcher's WebSocket, and the created run's id comes back in its `hello`.
    let mut ws = client.websocket("/api/v1/runs/start").await?;
    let text = serde_json::to_string(req).context("cannot encode the run request")?;
    {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        ws.send(Message::Text(text.into())).await.map_err(|e| {
            anyhow::Error::new(crate::client::Lost(format!(
                "lost the server at {} before it took the run: {e} — see `herd runs list` whether the run was created",
                client.base
            )))
        })?;
    }
    follow(
        ws,
        FollowOpts {
            interactive: req.spec.interactive,
            tty: req.spec.tty,
            json: show.json,
            summary: true,
            announce: true,
            resume: String::new(),
            run_id: String::new(),
            server: client.base.clone(),
            timeout: client.timeout,
            group: show.group,
        },
        sigint,
    )
    .await
}

pub fn interrupts() -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the Ctrl-C handler")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn request_of(args: &[&str]) -> Result<RunRequest> {
        let cli = Cli::try_parse_from(std::iter::once("herd-run").chain(args.iter().copied()))?;
        request(&cli.run)
    }

    #[test]
    fn arguments_make_the_request() {
        let req = request_of(&[
            "-t",
            "role=web",
            "--timeout",
            "5s",
            "-e",
            "A=1=2",
            "--cwd",
            "/tmp",
            "--concurrency",
            "10%",
            "--max-errors",
            "2",
            "--batch-wait",
            "1500ms",
            "--",
            "echo",
            "a b",
        ])
        .unwrap();
        assert_eq!(
            req,
            RunRequest {
                command: "echo 'a b'".into(),
                targets: vec!["role=web".into()],
                all: false,
                start_on_attach: true,
                secret_env: Default::default(),
                secret_vars: Default::default(),
                approve: false,
                spec: RunSpec {
                    timeout_ms: 5000,
                    env: [("A".to_string(), "1=2".to_string())].into(),
                    cwd: "/tmp".into(),
                    limits: RunLimits {
                        concurrency: Some(Limit::Percent(10)),
                        max_errors: Some(Limit::Count(2)),
                        batch_wait_ms: 1500,
                    },
                    ..RunSpec::default()
                },
            }
        );
        let req = request_of(&["--all", "--detach", "-i", "--tty", "--", "uptime"]).unwrap();
        assert!(req.all && !req.start_on_attach && req.spec.interactive && req.spec.tty);
        assert_eq!(req.command, "uptime");
        let req = request_of(&["--all", "--secret-env", "TOKEN=a=b", "--", "true"]).unwrap();
        assert_eq!(
            req.secret_env,
            [("TOKEN".to_string(), "a=b".to_string())].into()
        );
        assert!(req.spec.env.is_empty() && req.spec.secret_names.is_empty());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let cases: &[(&[&str], &str)] = &[
            (&["--", "true"], "no machines chosen"),
            (
                &["--all", "-e", "NOEQUALS", "--", "true"],
                "bad --env \"NOEQUALS\"",
            ),
            (
                &[
                    "--all",
                    "--secret-env",
                    "HERD_TEST_SURELY_UNSET_VAR",
                    "--",
                    "true",
                ],
                "HERD_TEST_SURELY_UNSET_VAR is not set in this environment",
            ),
            (
                &["--all", "-e", "A=1", "--secret-env", "A=2", "--", "true"],
                "A is given both as --env and as --secret-env",
            ),
            (
                &["--all", "--concurrency", "0", "--", "true"],
                "--concurrency must be at least 1",
            ),
        ];
        for (args, want) in cases {
            let e = request_of(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn shell_command_table() {
        let cases: &[(&[&str], &str)] = &[
            (&["echo hi; ls"], "echo hi; ls"),
            (&["echo", "hi"], "echo hi"),
            (&["echo", "a b"], "echo 'a b'"),
            (&["echo", ""], "echo ''"),
            (&["echo", "it's"], "echo 'it'\\''s'"),
            (&["ls", "-la", "/tmp/x=1,2"], "ls -la /tmp/x=1,2"),
        ];
        for (argv, want) in cases {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            assert_eq!(shell_command(&argv), *want, "{argv:?}");
        }
    }
}
