//! The read and admin commands: agents, tokens, runs, tasks, keys, audit. Each is a thin
//! call to the API; `--json` prints what the API answered.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::Client;
use crate::config;
use crate::table::{ago, render, time};

fn client() -> Result<Client> {
    Client::from_config(&config::load()?)
}

fn print_json(v: &Value) -> Result<i32> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// One table row per element of a JSON array.
fn rows_of(v: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    v.as_array()
        .map(|a| a.iter().map(row).collect())
        .unwrap_or_default()
}

fn labels(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", s(v)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

#[derive(Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    cmd: Option<AgentsCmd>,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum AgentsCmd {
    /// List machines (the default).
    Ls,
    /// One machine with its facts and metrics.
    Show { name: String },
    /// Set labels (k=v) or remove them (k-).
    Label {
        name: String,
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Revoke a machine's credential; it can no longer connect.
    Revoke { name: String },
}

pub async fn agents(a: AgentsArgs) -> Result<i32> {
    let c = client()?;
    match a.cmd.unwrap_or(AgentsCmd::Ls) {
        AgentsCmd::Ls => {
            let v = c.get("/api/v1/agents").await?;
            if a.json {
                return print_json(&v);
            }
            let rows = rows_of(&v, |a| {
                let os = format!(
                    "{} {}",
                    a["facts"]["os"].as_str().unwrap_or(""),
                    a["facts"]["os_version"].as_str().unwrap_or("")
                );
                vec![
                    s(&a["name"]),
                    s(&a["id"]),
                    if a["online"].as_bool() == Some(true) {
                        "online"
                    } else {
                        "offline"
                    }
                    .into(),
                    os.trim().to_string(),
                    labels(&a["labels"]),
                    ago(a["last_seen"].as_i64()),
                ]
            });
            print!(
                "{}",
                render(
                    &["NAME", "ID", "STATUS", "OS", "LABELS", "LAST SEEN"],
                    &rows
                )
            );
            Ok(0)
        }
        AgentsCmd::Show { name } => {
            let v = c.get(&format!("/api/v1/agents/{name}")).await?;
            print_json(&v)
        }
        AgentsCmd::Label {
            name,
            labels: edits,
        } => {
            let mut set = serde_json::Map::new();
            let mut remove = Vec::new();
            for e in &edits {
                match herd_core::parse_label_edit(e).map_err(|e| anyhow::anyhow!("{e}"))? {
                    (k, Some(v)) => {
                        set.insert(k, Value::String(v));
                    }
                    (k, None) => remove.push(k),
                }
            }
            let v = c
                .post(
                    &format!("/api/v1/agents/{name}/labels"),
                    json!({"set": set, "remove": remove}),
                )
                .await?;
            if a.json {
                return print_json(&v);
            }
            println!("{}: {}", s(&v["name"]), labels(&v["labels"]));
            Ok(0)
        }
        AgentsCmd::Revoke { name } => {
            let v = c
                .post(&format!("/api/v1/agents/{name}/revoke"), json!({}))
                .await?;
            if a.json {
                return print_json(&v);
            }
            println!("revoked {} ({})", s(&v["name"]), s(&v["id"]));
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
        #[arg(long)]
        json: bool,
    },
    /// List join tokens: uses left and expiry (secrets are never shown again).
    Ls {
        #[arg(long)]
        json: bool,
    },
}

pub async fn token(cmd: TokenCmd) -> Result<i32> {
    let (ttl, uses, json) = match cmd {
        TokenCmd::Create { ttl, uses, json } => (ttl, uses, json),
        TokenCmd::Ls { json } => {
            let v = client()?.get("/api/v1/tokens").await?;
            if json {
                return print_json(&v);
            }
            let rows = rows_of(&v, |t| {
                vec![
                    s(&t["id"]),
                    s(&t["uses_left"]),
                    time(t["expires_at"].as_i64()),
                    if t["usable"].as_bool() == Some(true) {
                        "usable"
                    } else {
                        "spent"
                    }
                    .into(),
                    s(&t["created_by"]),
                ]
            });
            print!(
                "{}",
                render(&["ID", "USES LEFT", "EXPIRES", "STATUS", "BY"], &rows)
            );
            return Ok(0);
        }
    };
    if uses < 1 {
        bail!("--uses must be at least 1");
    }
    let v = client()?
        .post(
            "/api/v1/tokens",
            json!({"ttl_secs": ttl.as_secs().max(1), "uses": uses}),
        )
        .await?;
    if json {
        return print_json(&v);
    }
    println!("{}", s(&v["token"]));
    eprintln!(
        "valid until {} for {} machine(s); on the new machine run:\n  {}",
        time(v["expires_at"].as_i64()),
        s(&v["uses"]),
        s(&v["join_command"])
    );
    Ok(0)
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// Recent runs.
    Ls {
        #[arg(long, default_value_t = 20)]
        limit: u32,
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
}

fn task_rows(tasks: &[Value]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            vec![
                s(&t["id"]),
                s(&t["agent_name"]),
                s(&t["state"]),
                t["exit_code"]
                    .as_i64()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                t["reason"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .collect()
}

pub async fn runs(cmd: RunsCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        RunsCmd::Ls { limit, json } => {
            let v = c.get(&format!("/api/v1/runs?limit={limit}")).await?;
            if json {
                return print_json(&v);
            }
            let rows = rows_of(&v, |r| {
                vec![
                    s(&r["id"]),
                    s(&r["state"]),
                    time(r["created_at"].as_i64()),
                    s(&r["created_by"]),
                    s(&r["selector"]),
                    s(&r["command"]),
                ]
            });
            print!(
                "{}",
                render(
                    &["ID", "STATE", "CREATED", "BY", "TARGETS", "COMMAND"],
                    &rows
                )
            );
            Ok(0)
        }
        RunsCmd::Show { id, json } => {
            let v = c.get(&format!("/api/v1/runs/{id}")).await?;
            if json {
                return print_json(&v);
            }
            println!("run      {}", s(&v["id"]));
            println!("command  {}", s(&v["command"]));
            println!("targets  {}", s(&v["selector"]));
            println!("state    {}", s(&v["state"]));
            println!(
                "by       {} at {}",
                s(&v["created_by"]),
                time(v["created_at"].as_i64())
            );
            let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
            print!(
                "{}",
                render(
                    &["TASK", "MACHINE", "STATE", "EXIT", "REASON"],
                    &task_rows(&tasks)
                )
            );
            Ok(0)
        }
        RunsCmd::Cancel { id } => {
            let v = c
                .post(&format!("/api/v1/runs/{id}/cancel"), json!({}))
                .await?;
            println!("cancel requested for run {}", s(&v["id"]));
            Ok(0)
        }
    }
}

#[derive(Subcommand)]
pub enum TasksCmd {
    /// Recent tasks.
    Ls {
        #[arg(long, default_value_t = 20)]
        limit: u32,
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
}

pub async fn tasks(cmd: TasksCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        TasksCmd::Ls { limit, json } => {
            let v = c.get(&format!("/api/v1/tasks?limit={limit}")).await?;
            if json {
                return print_json(&v);
            }
            let tasks = v.as_array().cloned().unwrap_or_default();
            print!(
                "{}",
                render(
                    &["TASK", "MACHINE", "STATE", "EXIT", "REASON"],
                    &task_rows(&tasks)
                )
            );
            Ok(0)
        }
        TasksCmd::Show { id, json } => {
            let v = c.get(&format!("/api/v1/tasks/{id}")).await?;
            if json {
                return print_json(&v);
            }
            for k in [
                "id",
                "run_id",
                "agent_name",
                "state",
                "exit_code",
                "signal",
                "reason",
                "detail",
                "out_total",
            ] {
                println!("{k:<11}{}", s(&v[k]));
            }
            println!("{:<11}{}", "started", time(v["started_at"].as_i64()));
            println!("{:<11}{}", "finished", time(v["finished_at"].as_i64()));
            Ok(0)
        }
        TasksCmd::Logs { id, follow } => {
            if follow {
                let sigint = crate::run::interrupts()?;
                let ws = c.websocket(&format!("/api/v1/tasks/{id}/attach")).await?;
                crate::run::follow(
                    ws,
                    crate::run::FollowOpts {
                        interactive: false,
                        tty: false,
                        json: false,
                        summary: false,
                        run_id: id,
                    },
                    sigint,
                )
                .await?;
                return Ok(0);
            }
            let mut out = std::io::stdout();
            c.download(&format!("/api/v1/tasks/{id}/output"), &mut out)
                .await?;
            Ok(0)
        }
        TasksCmd::Cancel { id } => {
            let v = c
                .post(&format!("/api/v1/tasks/{id}/cancel"), json!({}))
                .await?;
            println!("task {} is {}", s(&v["id"]), s(&v["state"]));
            Ok(0)
        }
    }
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create an API key (printed once).
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List API keys.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

pub async fn keys(cmd: KeysCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        KeysCmd::Create { name, json } => {
            let v = c.post("/api/v1/keys", json!({"name": name})).await?;
            if json {
                return print_json(&v);
            }
            println!("{}", s(&v["key"]));
            eprintln!("API key {:?} created; it is shown only now", s(&v["name"]));
            Ok(0)
        }
        KeysCmd::Ls { json } => {
            let v = c.get("/api/v1/keys").await?;
            if json {
                return print_json(&v);
            }
            let rows = rows_of(&v, |k| {
                vec![
                    s(&k["id"]),
                    s(&k["name"]),
                    s(&k["role"]),
                    time(k["created_at"].as_i64()),
                    if k["revoked_at"].is_null() {
                        "active"
                    } else {
                        "revoked"
                    }
                    .into(),
                ]
            });
            print!(
                "{}",
                render(&["ID", "NAME", "ROLE", "CREATED", "STATUS"], &rows)
            );
            Ok(0)
        }
    }
}

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

pub async fn audit(a: AuditArgs) -> Result<i32> {
    let v = client()?
        .get(&format!("/api/v1/audit?limit={}", a.limit))
        .await?;
    if a.json {
        return print_json(&v);
    }
    let rows = rows_of(&v, |e| {
        vec![
            time(e["at"].as_i64()),
            s(&e["actor"]),
            s(&e["action"]),
            s(&e["target"]),
            match &e["detail"] {
                Value::Object(m) if m.is_empty() => String::new(),
                d => d.to_string(),
            },
        ]
    });
    print!(
        "{}",
        render(&["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"], &rows)
    );
    Ok(0)
}
