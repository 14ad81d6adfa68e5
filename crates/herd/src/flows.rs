//! `herd jobs` and `herd workflows`: definitions applied from YAML or JSON files, runs of them
//! started with parameters and followed step by step, and the runs' steps shown.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use herd_api::{ApplyDefinition, Definition, FlowRun, RunWithTasks, StartFlow};
use herd_core::{Escaped, RunState, StepState};

use crate::client::Client;
use crate::cmd::{client, encode, out, outln, print_json};
use crate::table::{render, time};

#[derive(Subcommand)]
pub enum JobsCmd {
    /// Check a job definition (YAML or JSON) and store it as its name's next version.
    Apply(ApplyArgs),
    /// List jobs.
    Ls(JsonArg),
    /// Show a job's definition.
    Show(NameArg),
    /// Delete a job (every version; runs keep their copy).
    Rm(NameArg),
    /// Run a job and follow it: `herd jobs run restart -p svc=nginx -t role=web`.
    Run(RunFlowArgs),
}

#[derive(Subcommand)]
pub enum WorkflowsCmd {
    /// Check a workflow (YAML or JSON) and store it as its name's next version.
    Apply(ApplyArgs),
    /// List workflows.
    Ls(JsonArg),
    /// Show a workflow: its steps drawn level by level, and its definition.
    Show(NameArg),
    /// Delete a workflow (every version; runs keep their copy).
    Rm(NameArg),
    /// Run a workflow and follow it step by step.
    Run(RunFlowArgs),
    /// Runs of jobs and workflows: `herd workflows runs`, `herd workflows runs show ID`.
    Runs {
        #[command(subcommand)]
        cmd: Option<RunsCmd>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Cancel a workflow run: steps under way are cancelled, the rest never start.
    Cancel(IdArg),
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// One run: every step's state, attempts, timing, outputs.
    Show(IdArg),
}

#[derive(Args)]
pub struct ApplyArgs {
    /// The definition file (`-` for standard input).
    #[arg(short = 'f', long = "file")]
    file: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct JsonArg {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NameArg {
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct IdArg {
    /// The run's id (or a unique prefix of at least 6 characters).
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Default)]
pub struct ListArgs {
    /// At most this many runs.
    #[arg(long)]
    limit: Option<i64>,
    /// Only runs in this state (running, succeeded, failed, cancelled).
    #[arg(long)]
    state: Option<RunState>,
    /// Only runs of the job or workflow of this name.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RunFlowArgs {
    name: String,
    /// A parameter: `-p who=world` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Machines for the steps that name none (a selector; repeatable, OR'ed).
    #[arg(short = 't', long = "target", value_name = "SELECTOR")]
    targets: Vec<String>,
    /// Start it and print its id, without following it.
    #[arg(long)]
    detach: bool,
    /// Do not print the output of steps on machines while following.
    #[arg(short = 'q', long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
    /// Approve the steps' commands the command policy sends for approval (recorded in the
    /// run's audit entry).
    #[arg(long)]
    approve: bool,
}

fn read_file(path: &str) -> Result<String> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read the definition from standard input")?;
        s
    } else {
        let meta = std::fs::metadata(path).with_context(|| {
            format!("cannot read {path} — give the path of a YAML or JSON file")
        })?;
        if meta.len() > 1 << 20 {
            bail!(
                "{path} is {} bytes, over the limit of 1 MiB — split it into workflows that use each other",
                meta.len()
            );
        }
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {path} as text — give a YAML or JSON file"))?
    };
    Ok(text)
}

pub async fn jobs(cmd: JobsCmd) -> Result<i32> {
    let c = client()?;
    let base = "/api/v1/jobs";
    match cmd {
        JobsCmd::Apply(a) => apply(&c, base, a).await,
        JobsCmd::Ls(a) => list(&c, base, a.json).await,
        JobsCmd::Show(a) => show(&c, base, a).await,
        JobsCmd::Rm(a) => remove(&c, base, a).await,
        JobsCmd::Run(a) => start(&c, base, a).await,
    }
}

pub async fn workflows(cmd: WorkflowsCmd) -> Result<i32> {
    let c = client()?;
    let base = "/api/v1/workflows";
    match cmd {
        WorkflowsCmd::Apply(a) => apply(&c, base, a).await,
        WorkflowsCmd::Ls(a) => list(&c, base, a.json).await,
        WorkflowsCmd::Show(a) => show(&c, base, a).await,
        WorkflowsCmd::Rm(a) => remove(&c, base, a).await,
        WorkflowsCmd::Run(a) => start(&c, base, a).await,
        WorkflowsCmd::Runs { cmd: None, list } => runs(&c, list).await,
        WorkflowsCmd::Runs {
            cmd: Some(RunsCmd::Show(a)),
            ..
        } => {
            let r: FlowRun = c
                .get(&format!("/api/v1/workflow-runs/{}", encode(&a.id)))
                .await?;
            if a.json {
                return print_json(&r);
            }
            print_run(&r)?;
            Ok(0)
        }
        WorkflowsCmd::Cancel(a) => {
            let r: FlowRun = c
                .post_empty(&format!("/api/v1/workflow-runs/{}/cancel", encode(&a.id)))
                .await?;
            if a.json {
                return print_json(&r);
            }
            outln!(
                "workflow run {} is {}{}",
                r.id,
                r.state,
                if r.state == RunState::Running {
                    " (cancelling)"
                } else {
                    ""
                }
            );
            Ok(0)
        }
    }
}

async fn apply(c: &Client, base: &str, a: ApplyArgs) -> Result<i32> {
    let source = read_file(&a.file)?;
    let d: Definition = c.post(base, &ApplyDefinition { source }).await?;
    if a.json {
        return print_json(&d);
    }
    if d.changed {
        outln!("{} {} version {}", d.kind, Escaped(&d.name), d.version);
    } else {
        outln!(
            "{} {} unchanged (version {})",
            d.kind,
            Escaped(&d.name),
            d.version
        );
    }
    Ok(0)
}

async fn list(c: &Client, base: &str, json: bool) -> Result<i32> {
    let defs: Vec<Definition> = c.get(base).await?;
    if json {
        return print_json(&defs);
    }
    let rows: Vec<Vec<String>> = defs
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.version.to_string(),
                what(d),
                time(Some(d.created_at)),
                d.created_by.clone(),
                d.description.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &["NAME", "VERSION", "DOES", "APPLIED", "BY", "DESCRIPTION"],
            &rows
        )
    );
    Ok(0)
}

/// What a definition does, in a few words.
fn what(d: &Definition) -> String {
    let def = &d.definition;
    match d.kind {
        herd_core::DefKind::Workflow => format!(
            "{} steps",
            def.get("steps")
                .and_then(|s| s.as_array())
                .map_or(0, Vec::len)
        ),
        herd_core::DefKind::Job => ["run", "script", "http", "notify", "workflow"]
            .into_iter()
            .find(|k| def.get(*k).is_some())
            .map(|k| if k == "run" { "command" } else { k })
            .unwrap_or("?")
            .to_string(),
    }
}

async fn show(c: &Client, base: &str, a: NameArg) -> Result<i32> {
    let d: Definition = c.get(&format!("{base}/{}", encode(&a.name))).await?;
    if a.json {
        return print_json(&d);
    }
    outln!(
        "{} {} version {} (applied {} by {})",
        d.kind,
        Escaped(&d.name),
        d.version,
        time(Some(d.created_at)),
        Escaped(&d.created_by)
    );
    if !d.description.is_empty() {
        outln!("{}", Escaped(&d.description));
    }
    if !d.graph.is_empty() {
        outln!();
        for line in d.graph.lines() {
            outln!("{}", Escaped(line));
        }
    }
    outln!();
    for line in d.source.lines() {
        outln!("{}", Escaped(line));
    }
    Ok(0)
}

async fn remove(c: &Client, base: &str, a: NameArg) -> Result<i32> {
    let d: Definition = c.delete(&format!("{base}/{}", encode(&a.name))).await?;
    if a.json {
        return print_json(&d);
    }
    outln!("deleted {} {}", d.kind, Escaped(&d.name));
    Ok(0)
}

async fn start(c: &Client, base: &str, a: RunFlowArgs) -> Result<i32> {
    let mut params = BTreeMap::new();
    for p in &a.params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("-p {p:?}: expected NAME=VALUE");
        };
        params.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    let r: FlowRun = c
        .post(
            &format!("{base}/{}/runs", encode(&a.name)),
            &StartFlow {
                params,
                targets: a.targets.clone(),
                approve: a.approve,
            },
        )
        .await?;
    if a.detach {
        if a.json {
            return print_json(&r);
        }
        outln!("{}", r.id);
        return Ok(0);
    }
    follow(c, r, a.quiet, a.json).await
}

/// Follows a run until it ends: a line per step as it starts and ends (and a machine step's
/// output), then the outcome; the exit code is 0 when it succeeded.
pub(crate) async fn follow(c: &Client, r: FlowRun, quiet: bool, json: bool) -> Result<i32> {
    let started = Instant::now();
    if !json {
        outln!(
            "{} {} v{}: run {}",
            r.kind,
            Escaped(&r.name),
            r.version,
            r.id
        );
    }
    let mut seen: BTreeMap<String, (StepState, i64)> = BTreeMap::new();
    let mut pause = Duration::from_millis(10);
    let path = format!("/api/v1/workflow-runs/{}", r.id);
    loop {
        let run: FlowRun = c.get(&path).await?;
        let mut changed = false;
        for s in &run.steps {
            let now = (s.state, s.attempt);
            if seen.get(&s.id) == Some(&now) {
                continue;
            }
            changed = true;
            seen.insert(s.id.clone(), now);
            if json || s.state == StepState::Pending {
                continue;
            }
            let took = match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => format!(
                    " {}",
                    herd_core::format_duration(Duration::from_millis((b - a).max(0) as u64))
                ),
                _ => String::new(),
            };
            let attempt = if s.attempt > 1 {
                format!(" (attempt {})", s.attempt)
            } else {
                String::new()
            };
            outln!(
                "  {:<16} {:<10}{took}{attempt}{}",
                Escaped(&s.id).to_string(),
                s.state.as_str(),
                s.detail
                    .as_deref()
                    .map(|d| format!("  {}", Escaped(d)))
                    .unwrap_or_default()
            );
            if !quiet && s.state.is_terminal() {
                print_step_output(c, s).await?;
            }
        }
        if run.state.is_terminal() {
            if json {
                return print_json(&run);
            }
            outln!(
                "{} {} {} in {}",
                run.kind,
                Escaped(&run.name),
                run.state,
                herd_core::format_duration(started.elapsed())
            );
            return Ok(match run.state {
                RunState::Succeeded => 0,
                RunState::Cancelled => 130,
                _ => 1,
            });
        }
        pause = if changed {
            Duration::from_millis(10)
        } else {
            (pause * 2).min(Duration::from_millis(500))
        };
        tokio::time::sleep(pause).await;
    }
}

/// The output of a step: a machine step's tasks' output, each under its machine's name; a
/// call's answer.
async fn print_step_output(c: &Client, s: &herd_api::FlowStep) -> Result<()> {
    if let Some(o) = &s.output {
        for line in o.lines().take(20) {
            outln!("    {}", Escaped(line));
        }
        return Ok(());
    }
    let (Some(run), true) = (
        &s.run_id,
        matches!(s.kind.as_str(), "command" | "script" | "uses"),
    ) else {
        return Ok(());
    };
    let Ok(r) = c.get::<RunWithTasks>(&format!("/api/v1/runs/{run}")).await else {
        return Ok(());
    };
    for t in &r.tasks {
        let mut buf = Vec::new();
        if c.download(&format!("/api/v1/tasks/{}/output", t.id), &mut buf)
            .await
            .is_err()
        {
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        for line in text.lines() {
            outln!("    {} │ {}", Escaped(&t.agent_name), Escaped(line));
        }
    }
    Ok(())
}

async fn runs(c: &Client, a: ListArgs) -> Result<i32> {
    let mut q = Vec::new();
    if let Some(l) = a.limit {
        q.push(format!("limit={l}"));
    }
    if let Some(s) = a.state {
        q.push(format!("state={s}"));
    }
    if let Some(n) = &a.name {
        q.push(format!("name={}", encode(n)));
    }
    let path = if q.is_empty() {
        "/api/v1/workflow-runs".to_string()
    } else {
        format!("/api/v1/workflow-runs?{}", q.join("&"))
    };
    let runs: Vec<FlowRun> = c.get(&path).await?;
    if a.json {
        return print_json(&runs);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                format!("{} {}", r.kind, r.name),
                r.state.to_string(),
                time(Some(r.created_at)),
                took(r.created_at, r.finished_at),
                r.created_by.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        render(&["ID", "RUNS", "STATE", "STARTED", "TOOK", "BY"], &rows)
    );
    Ok(0)
}

fn took(a: i64, b: Option<i64>) -> String {
    b.map(|b| herd_core::format_duration(Duration::from_millis((b - a).max(0) as u64)))
        .unwrap_or_default()
}

fn print_run(r: &FlowRun) -> Result<()> {
    outln!(
        "{} {} v{}: run {}",
        r.kind,
        Escaped(&r.name),
        r.version,
        r.id
    );
    outln!(
        "state {}, started {} by {}{}",
        r.state,
        time(Some(r.created_at)),
        Escaped(&r.created_by),
        r.finished_at
            .map(|f| format!(", took {}", took(r.created_at, Some(f))))
            .unwrap_or_default()
    );
    if r.params.as_object().is_some_and(|m| !m.is_empty()) {
        outln!("params {}", Escaped(&r.params.to_string()));
    }
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            let outputs = s
                .outputs
                .get("outputs")
                .and_then(|o| o.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}={}",
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            vec![
                if s.group == "steps" {
                    s.id.clone()
                } else {
                    format!("{} ({})", s.id, s.group.replace('_', " "))
                },
                s.kind.clone(),
                s.state.to_string(),
                s.attempt.to_string(),
                took(
                    s.started_at.unwrap_or(0),
                    s.finished_at.filter(|_| s.started_at.is_some()),
                ),
                s.run_id
                    .as_deref()
                    .map(herd_core::short)
                    .unwrap_or_default()
                    .to_string(),
                outputs,
                s.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "STEP", "KIND", "STATE", "ATTEMPTS", "TOOK", "RUN", "OUTPUTS", "DETAIL"
            ],
            &rows
        )
    );
    // Every attempt of every step, first to last: what each ran and how it ended.
    let attempts: Vec<Vec<String>> = r
        .steps
        .iter()
        .flat_map(|s| {
            s.attempts.iter().map(move |a| {
                vec![
                    s.id.clone(),
                    a.attempt.to_string(),
                    a.state.to_string(),
                    took(a.started_at, a.finished_at),
                    a.run_id
                        .as_deref()
                        .or(a.workflow_run_id.as_deref())
                        .unwrap_or_default()
                        .to_string(),
                    a.detail.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    if !attempts.is_empty() {
        outln!("attempts:");
        out!(
            "{}",
            render(
                &["STEP", "ATTEMPT", "STATE", "TOOK", "RUN", "DETAIL"],
                &attempts
            )
        );
    }
    if let Some(summary) = &r.summary {
        outln!("summary:\n{}", Escaped(summary));
    }
    Ok(())
}
