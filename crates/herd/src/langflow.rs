//! `herd flows`: LangFlow sources (`sources add|ls|rm`), `sync`, the flows found (`ls`,
//! `show`), and `run` — a flow run is a task on a machine (the server's own agent unless
//! `-t` says), followed here until it ends; its answer text is printed (`--json`: the whole
//! answer).

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use herd_api::{LangFlow, NewSource, Run, RunFlow, RunWithTasks, Source, SyncReport};
use herd_core::{Escaped, RunState};

use crate::client::Client;
use crate::cmd::{client, encode, out, outln, print_json};
use crate::table::{render, time};

#[derive(Subcommand)]
pub enum FlowsCmd {
    /// LangFlow servers flows come from.
    Sources {
        #[command(subcommand)]
        cmd: SourcesCmd,
    },
    /// List the flows of one source (or of every source) again; flows gone upstream are
    /// marked removed.
    Sync {
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The flows syncs found.
    Ls {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A flow's inputs, outputs, components and the parameters a tweak may set.
    Show {
        name: String,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a flow and print its answer: `herd flows run echo --input hello --tweak ChatInput.sender_name=ops`.
    Run(RunArgs),
}

#[derive(Subcommand)]
pub enum SourcesCmd {
    /// Add a LangFlow server; its URL and API key are checked at once (the key is kept
    /// encrypted), then its flows are listed.
    Add {
        name: String,
        /// LangFlow's address, e.g. http://127.0.0.1:7860.
        #[arg(long)]
        url: String,
        /// A LangFlow API key (or set HERD_LANGFLOW_API_KEY, which keeps it off the command line).
        #[arg(long, env = "HERD_LANGFLOW_API_KEY", hide_env_values = true)]
        api_key: String,
        #[arg(long)]
        json: bool,
    },
    /// List sources.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a source and its flows.
    Rm {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RunArgs {
    name: String,
    /// The chat input's text.
    #[arg(long, default_value = "")]
    input: String,
    /// A tweak: `--tweak Component.param=value` (the component by id, type or name;
    /// repeatable).
    #[arg(long = "tweak", value_name = "COMPONENT.PARAM=VALUE")]
    tweaks: Vec<String>,
    /// LangFlow's session id (chat memory).
    #[arg(long)]
    session: Option<String>,
    /// The source, when the flow's name is on several.
    #[arg(long)]
    source: Option<String>,
    /// The machine the call is made from (a selector; default the server's own agent).
    #[arg(short = 't', long = "target", value_name = "SELECTOR")]
    targets: Vec<String>,
    /// The call's budget (default 5m).
    #[arg(long)]
    timeout: Option<String>,
    /// Start it and print the run's id, without waiting.
    #[arg(long)]
    detach: bool,
    /// Print LangFlow's whole answer (JSON).
    #[arg(long)]
    json: bool,
}

pub async fn flows(cmd: FlowsCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        FlowsCmd::Sources { cmd } => sources(&c, cmd).await,
        FlowsCmd::Sync { source, json } => sync(&c, source, json).await,
        FlowsCmd::Ls { source, json } => list(&c, source, json).await,
        FlowsCmd::Show { name, source, json } => show(&c, &name, source, json).await,
        FlowsCmd::Run(a) => run(&c, a).await,
    }
}

fn with_source(path: String, source: &Option<String>) -> String {
    match source {
        Some(s) => format!("{path}?source={}", encode(s)),
        None => path,
    }
}

async fn sources(c: &Client, cmd: SourcesCmd) -> Result<i32> {
    match cmd {
        SourcesCmd::Add {
            name,
            url,
            api_key,
            json,
        } => {
            let s: Source = c
                .post(
                    "/api/v1/langflow/sources",
                    &NewSource { name, url, api_key },
                )
                .await?;
            if json {
                return print_json(&s);
            }
            outln!(
                "source {} added: {} ({} flows)",
                Escaped(&s.name),
                Escaped(&s.url),
                s.flows
            );
            Ok(0)
        }
        SourcesCmd::Ls { json } => {
            let all: Vec<Source> = c.get("/api/v1/langflow/sources").await?;
            if json {
                return print_json(&all);
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.url.clone(),
                        s.flows.to_string(),
                        time(s.synced_at),
                        s.created_by.clone(),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(&["NAME", "URL", "FLOWS", "SYNCED", "ADDED BY"], &rows)
            );
            Ok(0)
        }
        SourcesCmd::Rm { name, json } => {
            let s: Source = c
                .delete(&format!("/api/v1/langflow/sources/{}", encode(&name)))
                .await?;
            if json {
                return print_json(&s);
            }
            outln!("source {} removed", Escaped(&s.name));
            Ok(0)
        }
    }
}

async fn sync(c: &Client, source: Option<String>, json: bool) -> Result<i32> {
    let reports: Vec<SyncReport> = c
        .post_empty(&with_source("/api/v1/langflow/sync".into(), &source))
        .await?;
    if json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            match &r.error {
                None => outln!(
                    "{}: {} added, {} updated, {} removed upstream, {} unchanged",
                    Escaped(&r.source),
                    r.added,
                    r.updated,
                    r.removed,
                    r.unchanged
                ),
                Some(e) => eprintln!("herd: sync {}: {}", Escaped(&r.source), Escaped(e)),
            }
        }
    }
    Ok(if reports.iter().any(|r| r.error.is_some()) {
        1
    } else {
        0
    })
}

async fn list(c: &Client, source: Option<String>, json: bool) -> Result<i32> {
    let all: Vec<LangFlow> = c
        .get(&with_source("/api/v1/langflow/flows".into(), &source))
        .await?;
    if json {
        return print_json(&all);
    }
    let names = |cs: &[herd_api::FlowComponent]| {
        cs.iter()
            .map(|c| c.display_name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.source.clone(),
                f.id.clone(),
                names(&f.inputs),
                names(&f.outputs),
                match f.removed_at {
                    Some(at) => format!("removed upstream {}", time(Some(at))),
                    None => String::new(),
                },
            ]
        })
        .collect();
    out!(
        "{}",
        render(&["NAME", "SOURCE", "ID", "INPUTS", "OUTPUTS", ""], &rows)
    );
    Ok(0)
}

async fn show(c: &Client, name: &str, source: Option<String>, json: bool) -> Result<i32> {
    let f: LangFlow = c
        .get(&with_source(
            format!("/api/v1/langflow/flows/{}", encode(name)),
            &source,
        ))
        .await?;
    if json {
        return print_json(&f);
    }
    outln!(
        "flow {} ({}) on source {}",
        Escaped(&f.name),
        f.id,
        Escaped(&f.source)
    );
    if !f.description.is_empty() {
        outln!("{}", Escaped(&f.description));
    }
    if let Some(at) = f.removed_at {
        outln!("removed upstream (found missing {})", time(Some(at)));
    }
    let ids = |cs: &[herd_api::FlowComponent]| {
        cs.iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("inputs:  {}", ids(&f.inputs));
    outln!("outputs: {}", ids(&f.outputs));
    outln!("components (tweak as COMPONENT.PARAM=VALUE):");
    for comp in &f.components {
        outln!("  {} ({})", comp.id, Escaped(&comp.display_name));
        for p in &comp.params {
            outln!(
                "    {:<24} {:<8} {}{}",
                p.name,
                p.kind,
                Escaped(p.value.as_deref().unwrap_or("")),
                if p.advanced { "  (advanced)" } else { "" }
            );
        }
    }
    Ok(0)
}

async fn run(c: &Client, a: RunArgs) -> Result<i32> {
    let run: Run = c
        .post(
            &format!("/api/v1/langflow/flows/{}/runs", encode(&a.name)),
            &RunFlow {
                input: a.input.clone(),
                tweaks: a.tweaks.clone(),
                session: a.session.clone(),
                targets: a.targets.clone(),
                timeout: a.timeout.clone(),
                source: a.source.clone(),
            },
        )
        .await?;
    if a.detach {
        outln!("{}", run.id);
        return Ok(0);
    }
    let done: RunWithTasks = loop {
        let r: RunWithTasks = c.get(&format!("/api/v1/runs/{}", run.id)).await?;
        if r.run.state != RunState::Running {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some(task) = done.tasks.first() else {
        bail!("flow {}: run {} has no task", a.name, run.id);
    };
    if done.run.state == RunState::Succeeded {
        if a.json {
            let whole: serde_json::Value = task
                .outputs
                .get("response")
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(serde_json::Value::Null);
            return print_json(&whole);
        }
        match task.outputs.get("text") {
            Some(t) => outln!("{t}"),
            None => eprintln!(
                "herd: flow {}: the answer has no text — `herd flows run {} --json` shows all of it",
                a.name, a.name
            ),
        }
        return Ok(0);
    }
    // The task's own line says what failed; else its state.
    let mut buf = Vec::new();
    let why = match c
        .download(&format!("/api/v1/tasks/{}/output", task.id), &mut buf)
        .await
    {
        Ok(()) => String::from_utf8_lossy(&buf)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("herd: langflow: ").map(str::to_string)),
        Err(_) => None,
    };
    match why {
        Some(line) => eprintln!("herd: {}", Escaped(&line)),
        None => eprintln!(
            "herd: flow {}: the run {} ended {} ({}) — `herd runs logs {}` shows its output",
            a.name,
            run.id,
            task.state,
            task.reason.as_deref().unwrap_or(""),
            run.id
        ),
    }
    Ok(1)
}
