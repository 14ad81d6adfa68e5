//! The read and admin commands: agents, tokens, runs, tasks, keys, audit. Each is a thin
//! typed call to the API; `--json` prints what the API answered.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use herd_api::{
    Agent, ApiKey, AuditEntry, BulkLabelEdit, CreateKey, CreateToken, CreatedKey, CreatedToken,
    GcReport, JoinToken, LabelEdit, Run, RunWithTasks, Task,
};
use herd_core::Escaped;
use serde::Serialize;

use crate::client::Client;
use crate::config;
use crate::table::{ago, render, time};

pub(crate) fn client() -> Result<Client> {
    Client::from_config(&config::load()?)
}

/// `println!` that returns a write error (a closed pipe ends the CLI quietly) instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `print!` that returns a write error instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?;
    }};
}
pub(crate) use {out, outln};

pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<i32> {
    outln!("{}", json_text(v)?);
    Ok(0)
}

/// `v` as pretty JSON that is safe on a terminal: serde_json escapes the C0 controls; the
/// other characters [`herd_core::is_unsafe_char`] names (DEL, C1, bidirectional overrides)
/// only occur inside strings, where `\uXXXX` means the same character.
pub fn json_text<T: Serialize>(v: &T) -> Result<String> {
    let s = serde_json::to_string_pretty(v)?;
    if !s.chars().any(herd_core::is_unsafe_char) {
        return Ok(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        // Every unsafe character is in the basic plane: one `\uXXXX` each.
        if c != '\n' && herd_core::is_unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// A value that may be absent, as a table shows it: `-` when absent.
fn or_dash<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Text as one URL path segment or query value (percent-encoded beyond the unreserved).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Labels as one line, escaped (an agent's labels are its own text).
fn labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{}={}", Escaped(k), Escaped(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels with where each comes from, then what the agent claims beyond its token (matched
/// by no selector): `role=web(agent),tier=gold(server),role=db(claim)`.
fn labels_with_source(a: &Agent) -> String {
    if a.labels.is_empty() && a.claims.is_empty() {
        return "-".into();
    }
    let held = a.labels.iter().map(|(k, v)| {
        let source = match a.label_sources.get(k) {
            Some(herd_api::LabelSource::Server) => "server",
            _ => "agent",
        };
        format!("{k}={v}({source})")
    });
    let claimed = a.claims.iter().map(|(k, v)| format!("{k}={v}(claim)"));
    held.chain(claimed).collect::<Vec<_>>().join(",")
}

#[derive(Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    cmd: Option<AgentsCmd>,
    #[arg(long, global = true)]
    json: bool,
    /// Only the machines this selector picks (`web-*`, `role=web & !web-3`); repeatable
    /// (OR'ed). With `label`: the machines to label.
    #[arg(short = 't', long = "target", global = true)]
    targets: Vec<String>,
    /// List revoked machines too.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand)]
enum AgentsCmd {
    /// List machines (the default).
    Ls,
    /// One machine with its facts and metrics.
    Show { name: String },
    /// Set labels (k=v) or remove them (k-): `label NAME k=v…`, or `label -t SEL k=v…` on
    /// every machine the selector picks, in one change.
    Label {
        /// NAME then the edits, or only the edits with -t.
        #[arg(required = true, value_name = "NAME] [EDITS")]
        args: Vec<String>,
    },
    /// Revoke a machine's credential; it can no longer connect.
    Revoke { name: String },
}

pub async fn agents(a: AgentsArgs) -> Result<i32> {
    let c = client()?;
    match a.cmd.unwrap_or(AgentsCmd::Ls) {
        AgentsCmd::Ls => {
            let mut query = Vec::new();
            if !a.targets.is_empty() {
                query.push(format!("target={}", encode(&a.targets.join(","))));
            }
            if a.all {
                query.push("all=true".to_string());
            }
            let path = if query.is_empty() {
                "/api/v1/agents".to_string()
            } else {
                format!("/api/v1/agents?{}", query.join("&"))
            };
            let agents: Vec<Agent> = c.get(&path).await?;
            if a.json {
                return print_json(&agents);
            }
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    let os = format!("{} {}", a.facts.os, a.facts.os_version);
                    vec![
                        a.name.clone(),
                        a.id.clone(),
                        match (a.revoked_at, a.online) {
                            (Some(_), _) => "revoked",
                            (None, true) => "online",
                            (None, false) => "offline",
                        }
                        .into(),
                        os.trim().to_string(),
                        labels_with_source(a),
                        ago(a.last_seen),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(
                    &["NAME", "ID", "STATUS", "OS", "LABELS", "LAST SEEN"],
                    &rows
                )
            );
            Ok(0)
        }
        AgentsCmd::Show { name } => {
            let agent: Agent = c.get(&format!("/api/v1/agents/{name}")).await?;
            print_json(&agent)
        }
        AgentsCmd::Label { mut args } => {
            let name = if a.targets.is_empty() {
                args.remove(0)
            } else {
                String::new()
            };
            if args.is_empty() {
                bail!(
                    "cannot label {name:?}: no label given — add edits such as role=web or role-"
                );
            }
            let mut edit = LabelEdit::default();
            for e in &args {
                match herd_core::parse_label_edit(e).map_err(|e| anyhow::anyhow!("{e}"))? {
                    (k, Some(v)) => {
                        edit.set.insert(k, v);
                    }
                    (k, None) => edit.remove.push(k),
                }
            }
            if !a.targets.is_empty() {
                let body = BulkLabelEdit {
                    target: a.targets.join(","),
                    set: edit.set,
                    remove: edit.remove,
                };
                let agents: Vec<Agent> = c.post("/api/v1/labels", &body).await?;
                if a.json {
                    return print_json(&agents);
                }
                for agent in &agents {
                    outln!("{}: {}", Escaped(&agent.name), labels(&agent.labels));
                }
                return Ok(0);
            }
            let agent: Agent = c
                .post(&format!("/api/v1/agents/{name}/labels"), &edit)
                .await?;
            if a.json {
                return print_json(&agent);
            }
            outln!("{}: {}", Escaped(&agent.name), labels(&agent.labels));
            Ok(0)
        }
        AgentsCmd::Revoke { name } => {
            let agent: Agent = c
                .post_empty(&format!("/api/v1/agents/{name}/revoke"))
                .await?;
            if a.json {
                return print_json(&agent);
            }
            outln!("revoked {} ({})", Escaped(&agent.name), Escaped(&agent.id));
            Ok(0)
        }
    }
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a join token and print the command that joins a new machine.
    Create {
        /// How long the token stays valid.
        #[arg(long, default_value = "1h", value_parser = crate::parse_dur)]
        ttl: Duration,
        /// How many machines may join with it.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// A label machines joining with it may hold (`role=db`; `rack=*` allows any value
        /// of `rack`). Repeatable. A label a machine declares beyond these is a claim: shown,
        /// never matched until an operator sets it. Without --label or --any-labels, machines
        /// hold none of the labels they declare.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Machines joining with it hold whatever labels they declare.
        #[arg(long, conflicts_with = "labels")]
        any_labels: bool,
        #[arg(long)]
        json: bool,
    },
    /// List join tokens: uses left and expiry (secrets are never shown again).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a join token by id: no machine joins with it any more.
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn token(cmd: TokenCmd) -> Result<i32> {
    let (ttl, uses, labels, any_labels, json) = match cmd {
        TokenCmd::Create {
            ttl,
            uses,
            labels,
            any_labels,
            json,
        } => (ttl, uses, labels, any_labels, json),
        TokenCmd::Revoke { id, json } => {
            let t: JoinToken = client()?
                .post_empty(&format!("/api/v1/tokens/{}/revoke", encode(&id)))
                .await?;
            if json {
                return print_json(&t);
            }
            outln!("revoked join token {}", Escaped(&t.id));
            return Ok(0);
        }
        TokenCmd::Ls { json } => {
            let tokens: Vec<JoinToken> = client()?.get("/api/v1/tokens").await?;
            if json {
                return print_json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.uses_left.to_string(),
                        time(Some(t.expires_at)),
                        if t.usable { "usable" } else { "spent" }.into(),
                        t.created_by.clone(),
                        allowed_labels(t.labels.as_ref()),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(
                    &["ID", "USES LEFT", "EXPIRES", "STATUS", "BY", "LABELS"],
                    &rows
                )
            );
            return Ok(0);
        }
    };
    if uses < 1 {
        bail!("--uses must be at least 1");
    }
    let mut allowed = std::collections::BTreeMap::new();
    for l in &labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!(
                "--label {l:?} is not KEY=VALUE — e.g. --label role=db, or --label rack=* for any value"
            );
        };
        allowed.insert(k.to_string(), v.to_string());
    }
    let body = CreateToken {
        ttl_secs: Some(ttl.as_secs().max(1)),
        uses: Some(uses),
        labels: (!any_labels).then_some(allowed),
        any_labels: any_labels.then_some(true),
    };
    let t: CreatedToken = client()?.post("/api/v1/tokens", &body).await?;
    if json {
        return print_json(&t);
    }
    outln!("{}", t.token);
    eprintln!(
        "valid until {} for {} machine(s), which may hold {}; on the new machine run:\n  {}",
        time(Some(t.expires_at)),
        t.uses,
        match t.labels.as_ref() {
            Some(l) if l.is_empty() => "none of the labels they declare".to_string(),
            l => format!("the labels {}", allowed_labels(l)),
        },
        t.join_command
    );
    Ok(0)
}

/// What a join token lets its machines hold, for a person: `role=db,rack=*`, `any`, `none`.
fn allowed_labels(labels: Option<&std::collections::BTreeMap<String, String>>) -> String {
    match labels {
        None => "any".into(),
        Some(l) if l.is_empty() => "none".into(),
        Some(l) => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Filters of a listing (runs, tasks, audit).
#[derive(Args, Default)]
pub struct Filters {
    /// Only entries since then: a duration back from now (`1h`, `2d`) or an RFC 3339 time
    /// (`2026-01-02T15:04:05Z`).
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// Only entries about this machine (by name).
    #[arg(long)]
    machine: Option<String>,
    /// Only entries by this API key (its name).
    #[arg(long)]
    who: Option<String>,
}

/// `--since`: a duration back from now, or an RFC 3339 time; unix milliseconds.
fn parse_since(s: &str) -> std::result::Result<i64, String> {
    if let Ok(d) = herd_core::parse_duration(s) {
        let back = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(chrono::Utc::now().timestamp_millis().saturating_sub(back));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!(
                "{s:?} is neither a duration such as 1h nor a time such as 2026-01-02T15:04:05Z"
            )
        })
}

impl Filters {
    /// The query string of a listing: `limit`, these filters and a state.
    fn query(&self, limit: u32, state: Option<&str>) -> String {
        let mut q = vec![format!("limit={limit}")];
        if let Some(since) = self.since {
            q.push(format!("since={since}"));
        }
        if let Some(state) = state {
            q.push(format!("state={}", encode(state)));
        }
        if let Some(m) = &self.machine {
            q.push(format!("machine={}", encode(m)));
        }
        if let Some(w) = &self.who {
            q.push(format!("who={}", encode(w)));
        }
        q.join("&")
    }
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// Recent runs, newest first.
    Ls {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only runs in this state (running, succeeded, failed, ...).
        #[arg(long)]
        state: Option<herd_core::RunState>,
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        json: bool,
    },
    /// A run and its tasks.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel every task of a run.
    Cancel { id: String },
    /// Every machine's output of a run; -f follows it live until the run ends.
    Logs {
        id: String,
        #[arg(short = 'f', long)]
        follow: bool,
        /// Print each distinct output once, under the machines that printed it.
        #[arg(long)]
        group: bool,
    },
    /// Run a run's command again, with its settings, on its machines.
    Retry {
        id: String,
        /// Only on the machines whose task did not succeed.
        #[arg(long)]
        failed: bool,
        /// Print the new run's id and return at once.
        #[arg(long)]
        detach: bool,
        /// One JSON event per line (with --detach: the created run).
        #[arg(long)]
        json: bool,
        /// Print each distinct output once, under the machines that printed it.
        #[arg(long, conflicts_with = "json")]
        group: bool,
    },
}

fn task_rows(tasks: &[Task]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.agent_name.clone(),
                t.state.to_string(),
                or_dash(t.exit_code),
                or_dash(t.reason.as_deref()),
            ]
        })
        .collect()
}

pub async fn runs(cmd: RunsCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        RunsCmd::Ls {
            limit,
            state,
            filters,
            json,
        } => {
            let query = filters.query(limit, state.map(|s| s.as_str()));
            let runs: Vec<Run> = c.get(&format!("/api/v1/runs?{query}")).await?;
            if json {
                return print_json(&runs);
            }
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.state.to_string(),
                        time(Some(r.created_at)),
                        r.created_by.clone(),
                        r.selector.clone(),
                        r.command.clone(),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(
                    &["ID", "STATE", "CREATED", "BY", "TARGETS", "COMMAND"],
                    &rows
                )
            );
            Ok(0)
        }
        RunsCmd::Show { id, json } => {
            let r: RunWithTasks = c.get(&format!("/api/v1/runs/{id}")).await?;
            if json {
                return print_json(&r);
            }
            outln!("run      {}", Escaped(&r.run.id));
            outln!("command  {}", Escaped(&r.run.command));
            outln!("targets  {}", Escaped(&r.run.selector));
            outln!("state    {}", r.run.state);
            for (k, v) in &r.run.spec.env {
                outln!("env      {}={}", Escaped(k), Escaped(v));
            }
            for k in &r.run.spec.secret_names {
                outln!("secret   {}=***", Escaped(k));
            }
            outln!(
                "by       {} at {}",
                Escaped(&r.run.created_by),
                time(Some(r.run.created_at))
            );
            out!(
                "{}",
                render(
                    &["TASK", "MACHINE", "STATE", "EXIT", "REASON"],
                    &task_rows(&r.tasks)
                )
            );
            Ok(0)
        }
        RunsCmd::Cancel { id } => {
            let r: Run = c.post_empty(&format!("/api/v1/runs/{id}/cancel")).await?;
            outln!("cancel requested for run {}", Escaped(&r.id));
            Ok(0)
        }
        RunsCmd::Logs { id, follow, group } => crate::run::logs(&c, &id, follow, group).await,
        RunsCmd::Retry {
            id,
            failed,
            detach,
            json,
            group,
        } => {
            let show = crate::run::Show {
                detach,
                json,
                group,
            };
            crate::run::retry(&c, &id, crate::run::RetryOpts { failed, show }).await
        }
    }
}

#[derive(Subcommand)]
pub enum TasksCmd {
    /// Recent tasks, newest first.
    Ls {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only tasks in this state (queued, running, succeeded, failed, lost, ...).
        #[arg(long)]
        state: Option<herd_core::TaskState>,
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        json: bool,
    },
    /// One task.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A task's output; -f follows it live until the task ends.
    Logs {
        id: String,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Cancel a task (SIGTERM to its processes, SIGKILL after a grace period).
    Cancel { id: String },
    /// Answer a running task's prompt (see `herd tasks show`): a line typed here without
    /// echo, or, when stdin is not a terminal, stdin as it is. The answer goes to the task's
    /// stdin and is never stored or logged. The task's run must keep stdin open
    /// (`herd run -i`, e.g. `herd run -i --detach ...`).
    Answer {
        id: String,
        /// Close the task's stdin after the answer.
        #[arg(long)]
        eof: bool,
    },
}

pub async fn tasks(cmd: TasksCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        TasksCmd::Ls {
            limit,
            state,
            filters,
            json,
        } => {
            let query = filters.query(limit, state.map(|s| s.as_str()));
            let tasks: Vec<Task> = c.get(&format!("/api/v1/tasks?{query}")).await?;
            if json {
                return print_json(&tasks);
            }
            out!(
                "{}",
                render(
                    &["TASK", "MACHINE", "STATE", "EXIT", "REASON"],
                    &task_rows(&tasks)
                )
            );
            Ok(0)
        }
        TasksCmd::Show { id, json } => {
            let t: Task = c.get(&format!("/api/v1/tasks/{id}")).await?;
            if json {
                return print_json(&t);
            }
            let fields = [
                ("id", t.id.clone()),
                ("run_id", t.run_id.clone()),
                ("agent_name", t.agent_name.clone()),
                ("state", t.state.to_string()),
                ("exit_code", or_dash(t.exit_code)),
                ("signal", or_dash(t.signal)),
                ("reason", or_dash(t.reason.as_deref())),
                ("detail", or_dash(t.detail.as_deref())),
                ("out_total", t.out_total.to_string()),
                ("started", time(t.started_at)),
                ("finished", time(t.finished_at)),
            ];
            for (k, v) in fields {
                outln!("{k:<11}{}", Escaped(&v));
            }
            if let Some(c) = t.condition {
                outln!("{:<11}{c}", "condition");
            }
            if let Some(s) = &t.supervision {
                outln!("{:<11}{} (class {})", "supervised", s.state, s.class);
                if s.state == herd_api::Health::WaitingForInput {
                    // Quoted, so a prompt's trailing space shows.
                    outln!("{:<11}\"{}\"", "prompt", Escaped(&s.prompt));
                    if s.secret {
                        outln!(
                            "{:<11}secret (answer with `herd tasks answer {}`: not echoed, never kept)",
                            "answer",
                            Escaped(&t.id)
                        );
                    } else {
                        outln!("{:<11}`herd tasks answer {}`", "answer", Escaped(&t.id));
                    }
                }
                if !s.reason.is_empty() {
                    outln!("{:<11}{}", "why", Escaped(&s.reason));
                }
            }
            // What the task set through HERD_OUTPUT: `key=value`, a line each (a value's line
            // breaks and control characters escaped).
            for (i, (k, v)) in t.outputs.iter().enumerate() {
                let label = if i == 0 { "outputs" } else { "" };
                outln!("{label:<11}{}={}", Escaped(k), Escaped(v));
            }
            Ok(0)
        }
        TasksCmd::Logs { id, follow } => {
            if follow {
                let sigint = crate::run::interrupts()?;
                let ws = c.websocket(&format!("/api/v1/tasks/{id}/attach")).await?;
                // The task's own code, as `herd run` would exit with it.
                return crate::run::follow(
                    ws,
                    crate::run::FollowOpts {
                        interactive: false,
                        tty: false,
                        json: false,
                        summary: false,
                        announce: false,
                        resume: format!("herd tasks logs {id} -f"),
                        run_id: id,
                        server: c.base.clone(),
                        timeout: c.timeout,
                        group: false,
                    },
                    sigint,
                )
                .await;
            }
            let mut out = std::io::stdout();
            c.download(&format!("/api/v1/tasks/{id}/output"), &mut out)
                .await?;
            Ok(0)
        }
        TasksCmd::Answer { id, eof } => {
            let data = crate::answer::read(&c, &id).await?;
            let t: Task = c
                .post(
                    &format!("/api/v1/tasks/{id}/input"),
                    &herd_api::TaskInput { data, eof },
                )
                .await?;
            eprintln!(
                "answer sent to task {} on {}",
                Escaped(&t.id),
                Escaped(&t.agent_name)
            );
            Ok(0)
        }
        TasksCmd::Cancel { id } => {
            let t: Task = c.post_empty(&format!("/api/v1/tasks/{id}/cancel")).await?;
            outln!("task {} is {}", Escaped(&t.id), t.state);
            Ok(0)
        }
    }
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create an API key (printed once): `herd keys create ci --role operator --scope role=web`.
    Create {
        /// The key's name (shown in the audit log as `key:NAME`).
        #[arg(value_name = "NAME", conflicts_with = "name")]
        key_name: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// What the key may do: admin (everything), operator (runs, but manages no keys,
        /// tokens or policies), viewer (reads only).
        #[arg(long, value_parser = ["admin", "operator", "viewer"], default_value = "admin")]
        role: String,
        /// A selector every run of the key must stay within (e.g. role=web).
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List API keys.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by name or id (not the key you call with: use another one).
    Revoke {
        key: String,
        #[arg(long)]
        json: bool,
    },
}

/// The API's role of a role's name (checked by clap).
pub fn key_role(r: &str) -> herd_api::KeyRole {
    match r {
        "operator" => herd_api::KeyRole::Operator,
        "viewer" => herd_api::KeyRole::Viewer,
        _ => herd_api::KeyRole::Admin,
    }
}

pub async fn keys(cmd: KeysCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        KeysCmd::Create {
            key_name,
            name,
            role,
            scope,
            json,
        } => {
            let k: CreatedKey = c
                .post(
                    "/api/v1/keys",
                    &CreateKey {
                        name: key_name.or(name),
                        role: Some(key_role(&role)),
                        scope,
                    },
                )
                .await?;
            if json {
                return print_json(&k);
            }
            outln!("{}", k.key);
            eprintln!(
                "API key {:?} ({}{}) created; it is shown only now",
                Escaped(&k.name),
                k.role,
                k.scope
                    .as_deref()
                    .map(|s| format!(", scope {}", Escaped(s)))
                    .unwrap_or_default()
            );
            Ok(0)
        }
        KeysCmd::Revoke { key, json } => {
            let k: ApiKey = c
                .post_empty(&format!("/api/v1/keys/{}/revoke", encode(&key)))
                .await?;
            if json {
                return print_json(&k);
            }
            outln!("revoked API key {} ({})", Escaped(&k.name), Escaped(&k.id));
            Ok(0)
        }
        KeysCmd::Ls { json } => {
            let keys: Vec<ApiKey> = c.get("/api/v1/keys").await?;
            if json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.name.clone(),
                        k.role.clone(),
                        k.scope.clone().unwrap_or_else(|| "-".into()),
                        time(Some(k.created_at)),
                        if k.revoked_at.is_none() {
                            "active"
                        } else {
                            "revoked"
                        }
                        .into(),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(&["ID", "NAME", "ROLE", "SCOPE", "CREATED", "STATUS"], &rows)
            );
            Ok(0)
        }
    }
}

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    filters: Filters,
    #[arg(long)]
    json: bool,
}

pub async fn audit(a: AuditArgs) -> Result<i32> {
    let entries: Vec<AuditEntry> = client()?
        .get(&format!("/api/v1/audit?{}", a.filters.query(a.limit, None)))
        .await?;
    if a.json {
        return print_json(&entries);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                time(Some(e.at)),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                match &e.detail {
                    serde_json::Value::Object(m) if m.is_empty() => String::new(),
                    d => d.to_string(),
                },
            ]
        })
        .collect();
    out!(
        "{}",
        render(&["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"], &rows)
    );
    Ok(0)
}

#[derive(Args)]
pub struct GcArgs {
    #[arg(long)]
    json: bool,
}

/// Prunes now what the server's retention would prune next (finished runs older than
/// `--retention`, then the oldest beyond `--retention-size`) and says what it freed.
pub async fn gc(a: GcArgs) -> Result<i32> {
    let r: GcReport = client()?.post_empty("/api/v1/gc").await?;
    if a.json {
        return print_json(&r);
    }
    println!("{}", gc_line(&r));
    Ok(0)
}

fn gc_line(r: &GcReport) -> String {
    format!(
        "freed {} runs, {} tasks, {} blobs, {} workflow runs, {} schedule fires, {:.1} MB",
        r.runs,
        r.tasks,
        r.blobs,
        r.workflow_runs,
        r.schedule_fires,
        r.bytes as f64 / 1e6
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod gc_tests {
    use super::*;

    #[test]
    fn gc_line_names_what_was_freed() {
        let r = GcReport {
            runs: 3,
            tasks: 7,
            bytes: 2_500_000,
            blobs: 1,
            workflow_runs: 2,
            schedule_fires: 5,
        };
        assert_eq!(
            gc_line(&r),
            "freed 3 runs, 7 tasks, 1 blobs, 2 workflow runs, 5 schedule fires, 2.5 MB"
        );
    }

    #[test]
    fn json_is_printed_without_raw_controls_and_means_the_same() {
        let v = serde_json::json!({
            "os": "debian\u{1b}[2J",
            "detail": "a\u{9b}31m\u{7f}\u{202e}b\r\n",
            "plain": "ok ✓",
        });
        let text = json_text(&v).unwrap();
        assert!(
            text.chars()
                .all(|c| c == '\n' || !herd_core::is_unsafe_char(c)),
            "{text}"
        );
        assert!(text.contains(r#""a\u009b31m\u007f\u202eb\r\n""#), "{text}");
        assert!(text.contains("ok ✓"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn sizes_parse_with_units() {
        use crate::parse_size;
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
    }
}
