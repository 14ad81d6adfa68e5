//! `herd ask "REQUEST" -t SEL`: the server asks the model for a plan, every step classified by
//! the command policy; the plan is shown with each step's class; a person approves it (and
//! each step the policy sends for approval) in a terminal, or `--yes` runs it when the policy
//! allows every step as it stands — `--yes` never approves a step. The approved plan runs as a
//! workflow run, followed here step by step.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use clap::Args;
use herd_api::{
    AskApproval, AskExchange, AskPlan, AskRequest, AskRun, AskRunView, AskStep, FlowRun,
};
use herd_core::Escaped;

use crate::cmd::{client, out, outln, print_json};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AskArgs {
    #[command(subcommand)]
    cmd: Option<AskCmd>,
    /// What to do, in plain language.
    #[arg(required = true)]
    request: Option<String>,
    /// The machines (a selector; repeatable, OR'ed).
    #[arg(
        short = 't',
        long = "target",
        value_name = "SELECTOR",
        required_unless_present = "all"
    )]
    targets: Vec<String>,
    /// Every machine.
    #[arg(long, conflicts_with = "targets")]
    all: bool,
    /// Run the plan without asking when the policy allows every step as it stands (a step
    /// that needs approval stops it: --yes never approves one).
    #[arg(short = 'y', long)]
    yes: bool,
    /// Print the plan (JSON) and stop.
    #[arg(long)]
    plan_only: bool,
    /// Do not print the output of steps while following.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Start the plan's run and print its id, without following it.
    #[arg(long)]
    detach: bool,
}

#[derive(clap::Subcommand)]
pub enum AskCmd {
    /// A plan's run: its request, every attempt of every step (the plan's command, retries,
    /// alternatives) with the policy's check and how it was judged, and its summary.
    Show {
        /// The workflow run's id (or a unique prefix).
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Every exchange with the model that led to and ran a plan (secrets redacted).
    Log {
        /// The workflow run's id (or a unique prefix).
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve (or refuse) an alternative command that awaits approval.
    Approve {
        run: String,
        step: String,
        attempt: i64,
        /// Refuse it instead: the step fails.
        #[arg(long)]
        refuse: bool,
    },
}

fn badge(class: &str) -> String {
    format!("[{class}]")
}

fn ask_yes(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// How long a call that waits for the model (a plan) may take: a small model on a CPU takes
/// minutes.
const MODEL_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub async fn ask(a: AskArgs) -> Result<i32> {
    let c = client()?;
    match a.cmd {
        Some(AskCmd::Show { run, json }) => return show(&c, &run, json).await,
        Some(AskCmd::Log { run, json }) => return log(&c, &run, json).await,
        Some(AskCmd::Approve {
            run,
            step,
            attempt,
            refuse,
        }) => {
            let v: AskRunView = c
                .post(
                    &format!("/api/v1/ask/runs/{}/approve", enc(&run)),
                    &AskApproval {
                        step: step.clone(),
                        attempt,
                        approve: !refuse,
                    },
                )
                .await?;
            let cmd = v
                .attempts
                .iter()
                .find(|a| a.step == step && a.attempt == attempt)
                .map(|a| a.command.clone())
                .unwrap_or_default();
            outln!(
                "attempt {attempt} of step {} ({}) {} in run {}",
                Escaped(&step),
                Escaped(&cmd),
                if refuse { "refused" } else { "approved" },
                v.run.id
            );
            return Ok(0);
        }
        None => {}
    }
    let request = a.request.clone().unwrap_or_default();
    // The plan waits for the model: a client of its own with a longer wait.
    let mut slow = client()?;
    slow.timeout = slow.timeout.max(MODEL_WAIT);
    let plan: AskPlan = slow
        .post(
            "/api/v1/ask/plan",
            &AskRequest {
                request,
                targets: a.targets.clone(),
                all: a.all,
            },
        )
        .await?;
    if a.plan_only {
        print_json(&plan)?;
        return Ok(0);
    }
    outln!(
        "plan for {} machine(s) ({}): {}",
        plan.machines.len(),
        Escaped(&plan.machines.join(", ")),
        Escaped(&plan.summary)
    );
    for (i, s) in plan.steps.iter().enumerate() {
        outln!(
            "{:>2}. {:<11} {}: {}",
            i + 1,
            badge(&s.check.class),
            Escaped(&s.step.id),
            Escaped(&s.step.description)
        );
        outln!("      $ {}", Escaped(&s.step.command));
        if !s.step.depends_on.is_empty() {
            outln!("      after: {}", Escaped(&s.step.depends_on.join(", ")));
        }
        if !s.step.targets.is_empty() {
            outln!("      on: {}", Escaped(&s.step.targets.join(", ")));
        }
        if s.check.class != "safe" {
            for r in &s.check.reasons {
                outln!("      {} {}", s.check.decision, Escaped(r));
            }
        }
    }
    outln!("(model {}, {} tokens)", Escaped(&plan.model), plan.tokens);
    let terminal = std::io::stdin().is_terminal();
    let unattended = a.yes || !terminal;
    let deny = |s: &herd_api::PlannedStep| {
        anyhow::anyhow!(
            "step {} is denied by the command policy ({}) — the plan does not run; ask again differently",
            s.step.id,
            s.check
                .reasons
                .first()
                .map(String::as_str)
                .unwrap_or(&s.check.class)
        )
    };
    let (steps, approved) = if a.yes {
        if let Some(s) = plan.steps.iter().find(|s| s.check.decision == "deny") {
            return Err(deny(s));
        }
        if let Some(s) = plan.steps.iter().find(|s| s.check.decision != "allow") {
            bail!(
                "step {} needs approval ({}: {}) — --yes never approves a step; run without --yes in a terminal to review it",
                s.step.id,
                s.check.class,
                s.check.reasons.first().map(String::as_str).unwrap_or("")
            );
        }
        (
            plan.steps.iter().map(|s| s.step.clone()).collect(),
            Vec::new(),
        )
    } else {
        if !terminal {
            if let Some(s) = plan.steps.iter().find(|s| s.check.decision == "deny") {
                return Err(deny(s));
            }
            bail!(
                "the plan needs a review — run herd ask in a terminal, or with --yes when the policy allows every step"
            );
        }
        match review(&c, &plan).await? {
            Some(r) => r,
            None => {
                eprintln!("herd: the plan does not run");
                return Ok(1);
            }
        }
    };
    let run: FlowRun = c
        .post(
            "/api/v1/ask/runs",
            &AskRun {
                request: plan.request.clone(),
                summary: plan.summary.clone(),
                steps,
                targets: a.targets.clone(),
                all: a.all,
                approved,
                plan_id: Some(plan.plan_id.clone()),
                unattended,
            },
        )
        .await?;
    if a.detach {
        outln!("{}", run.id);
        return Ok(0);
    }
    let id = run.id.clone();
    // A person at the terminal is asked about alternatives that need approval while the
    // run goes on.
    let approvals = match unattended {
        false => Some(tokio::spawn(approvals(client()?, id.clone()))),
        true => None,
    };
    let code = crate::flows::follow(&c, run, a.quiet, false).await;
    if let Some(t) = approvals {
        t.abort();
    }
    let code = code?;
    if let Ok(v) = c
        .get::<AskRunView>(&format!("/api/v1/ask/runs/{}", enc(&id)))
        .await
        && let Some(s) = &v.summary
    {
        outln!("summary:\n{}", Escaped(s));
    }
    Ok(code)
}

/// A person's review in a terminal: each step run as it is (a step the policy gates is
/// approved by saying so), edited (its new command checked by the server's policy again) or
/// rejected (with the steps that need it); then the whole plan. `None`: not run.
async fn review(
    c: &crate::client::Client,
    plan: &AskPlan,
) -> Result<Option<(Vec<AskStep>, Vec<String>)>> {
    let mut steps = Vec::new();
    let mut approved = Vec::new();
    let mut rejected: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for planned in &plan.steps {
        let mut step = planned.step.clone();
        if let Some(d) = step.depends_on.iter().find(|d| rejected.contains(*d)) {
            eprintln!("step {}: dropped, it needs step {d}", step.id);
            rejected.insert(step.id.clone());
            continue;
        }
        let mut check = planned.check.clone();
        loop {
            let gated = check.decision != "allow";
            let choices = if check.decision == "deny" {
                "[e]dit / [r]eject / [q]uit"
            } else {
                "[y]es / [e]dit / [r]eject / [q]uit"
            };
            let q = format!(
                "step {} {} $ {}{}\n  {choices}?",
                step.id,
                badge(&check.class),
                step.command,
                if gated {
                    format!(
                        "\n  {} ({})",
                        check.decision,
                        check.reasons.first().map(String::as_str).unwrap_or("")
                    )
                } else {
                    String::new()
                }
            );
            let answer = {
                let q = q.clone();
                tokio::task::spawn_blocking(move || ask_line(&q)).await??
            };
            match answer.as_str() {
                "y" | "yes" if check.decision != "deny" => {
                    if gated {
                        approved.push(step.id.clone());
                    }
                    steps.push(step.clone());
                    break;
                }
                "e" | "edit" => {
                    let new = tokio::task::spawn_blocking(|| ask_line("  new command:")).await??;
                    if new.is_empty() {
                        continue;
                    }
                    check = c
                        .post(
                            "/api/v1/policy/check",
                            &herd_api::PolicyCheck {
                                command: new.clone(),
                                ..herd_api::PolicyCheck::default()
                            },
                        )
                        .await?;
                    step.command = new;
                }
                "r" | "reject" => {
                    rejected.insert(step.id.clone());
                    break;
                }
                "q" | "quit" => return Ok(None),
                _ => {}
            }
        }
    }
    if steps.is_empty() {
        eprintln!("herd: every step was rejected");
        return Ok(None);
    }
    if !ask_yes(&format!("Run the plan ({} steps)?", steps.len()))? {
        return Ok(None);
    }
    Ok(Some((steps, approved)))
}

/// One trimmed line from this terminal after `question`.
fn ask_line(question: &str) -> Result<String> {
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

fn enc(s: &str) -> String {
    crate::cmd::encode(s)
}

/// Asks this terminal's person about each attempt that awaits approval, and each prompt a
/// step's task waits at (the answer read without echo and sent to its stdin, never kept),
/// once each.
async fn approvals(c: crate::client::Client, id: String) {
    let mut asked = std::collections::BTreeSet::new();
    let mut answered = std::collections::BTreeSet::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Ok(v) = c
            .get::<AskRunView>(&format!("/api/v1/ask/runs/{}", enc(&id)))
            .await
        else {
            continue;
        };
        for step in v
            .run
            .steps
            .iter()
            .filter(|s| s.state == herd_core::StepState::Running)
        {
            let Some(run) = &step.run_id else { continue };
            let Ok(r) = c
                .get::<herd_api::RunWithTasks>(&format!("/api/v1/runs/{}", enc(run)))
                .await
            else {
                continue;
            };
            for t in r.tasks {
                let Some(sup) = &t.supervision else { continue };
                if sup.state != herd_api::Health::WaitingForInput
                    || !answered.insert((t.id.clone(), sup.prompt.clone()))
                {
                    continue;
                }
                eprint!(
                    "step {} on {} asks: {} ",
                    Escaped(&step.id),
                    Escaped(&t.agent_name),
                    Escaped(sup.prompt.trim_end())
                );
                let _ = std::io::stderr().flush();
                let line = tokio::task::spawn_blocking(crate::answer::read_line_without_echo)
                    .await
                    .ok()
                    .and_then(|r| r.ok());
                eprintln!();
                let Some(line) = line else { continue };
                let _: Result<herd_api::Task> = c
                    .post(
                        &format!("/api/v1/tasks/{}/input", enc(&t.id)),
                        &herd_api::TaskInput {
                            data: format!("{line}\n"),
                            eof: false,
                        },
                    )
                    .await;
            }
        }
        for a in v.attempts.iter().filter(|a| a.approval == "awaiting") {
            if !asked.insert((a.step.clone(), a.attempt)) {
                continue;
            }
            let q = format!(
                "step {} failed; the model proposes `{}` ({}: {}). Run it?",
                a.step,
                a.command,
                a.check.class,
                a.check.reasons.first().map(String::as_str).unwrap_or("")
            );
            let yes = tokio::task::spawn_blocking(move || ask_yes(&q).unwrap_or(false))
                .await
                .unwrap_or(false);
            let _: Result<AskRunView> = c
                .post(
                    &format!("/api/v1/ask/runs/{}/approve", enc(&id)),
                    &AskApproval {
                        step: a.step.clone(),
                        attempt: a.attempt,
                        approve: yes,
                    },
                )
                .await;
        }
    }
}

async fn show(c: &crate::client::Client, run: &str, json: bool) -> Result<i32> {
    let v: AskRunView = c.get(&format!("/api/v1/ask/runs/{}", enc(run))).await?;
    if json {
        print_json(&v)?;
        return Ok(0);
    }
    outln!("ask run {}: {}", v.run.id, Escaped(&v.request));
    outln!("state {}", v.run.state);
    let rows: Vec<Vec<String>> = v
        .attempts
        .iter()
        .map(|a| {
            let verdict = a
                .validation
                .as_ref()
                .map(|j| {
                    let ok = j.get("is_valid").and_then(|x| x.as_bool()) == Some(true);
                    let reason = j.get("reason").and_then(|x| x.as_str()).unwrap_or("");
                    format!("{} {reason}", if ok { "valid:" } else { "invalid:" })
                })
                .unwrap_or_default();
            vec![
                a.step.clone(),
                a.attempt.to_string(),
                a.origin.clone(),
                a.check.class.clone(),
                a.approval.clone(),
                a.command.clone(),
                a.run_id
                    .as_deref()
                    .map(herd_core::short)
                    .unwrap_or_default()
                    .to_string(),
                verdict,
            ]
        })
        .collect();
    crate::cmd::out!(
        "{}",
        crate::table::render(
            &[
                "STEP", "ATTEMPT", "ORIGIN", "CLASS", "APPROVAL", "COMMAND", "RUN", "JUDGED"
            ],
            &rows
        )
    );
    if let Some(s) = &v.summary {
        outln!("summary:\n{}", Escaped(s));
    }
    Ok(0)
}

async fn log(c: &crate::client::Client, run: &str, json: bool) -> Result<i32> {
    let x: Vec<AskExchange> = c.get(&format!("/api/v1/ask/runs/{}/log", enc(run))).await?;
    if json {
        print_json(&x)?;
        return Ok(0);
    }
    for e in &x {
        outln!(
            "== {} {}{} (model {}, {} tokens){}",
            crate::table::time(Some(e.at)),
            e.kind,
            e.step
                .as_deref()
                .map(|s| format!(" of step {s}"))
                .unwrap_or_default(),
            Escaped(&e.model),
            e.tokens,
            e.error
                .as_deref()
                .map(|err| format!(" — {err}"))
                .unwrap_or_default()
        );
        if let Some(msgs) = e.request.as_array() {
            for m in msgs {
                outln!(
                    "-- {}:\n{}",
                    m.get("role").and_then(|r| r.as_str()).unwrap_or("?"),
                    Escaped(m.get("content").and_then(|r| r.as_str()).unwrap_or(""))
                );
            }
        }
        outln!("-- answer:\n{}", Escaped(&e.answer));
    }
    Ok(0)
}

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// What the command policy does with a command: `herd policy check -t role=web -- rm -rf /tmp/x`.
    Check {
        /// Under this role's policy (default: your key's role).
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: Option<String>,
        /// On the machines these selectors pick (the policy's label rules for them apply).
        #[arg(short = 't', long = "target")]
        targets: Vec<String>,
        #[arg(long)]
        json: bool,
        /// The command (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Store a new version of the command policy from a YAML or JSON file (admin keys only).
    Set {
        /// The policy set: `default`, `by_role`, `by_label` (`-`: stdin).
        file: String,
        #[arg(long)]
        json: bool,
    },
    /// The current policy (or version N; 0: the built-in default), as YAML-ready JSON.
    Show {
        #[arg(long)]
        version: Option<i64>,
    },
    /// Every stored version, newest first.
    History {
        #[arg(long)]
        json: bool,
    },
}

pub async fn policy(cmd: PolicyCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        PolicyCmd::Check {
            role,
            targets,
            json,
            command,
        } => {
            let check: herd_api::StepCheck = c
                .post(
                    "/api/v1/policy/check",
                    &herd_api::PolicyCheck {
                        command: command.join(" "),
                        role: role.as_deref().map(crate::cmd::key_role),
                        targets,
                    },
                )
                .await?;
            if json {
                print_json(&check)?;
            } else {
                outln!("{} → {}", check.class, check.decision);
                for r in &check.reasons {
                    outln!("  {}", Escaped(r));
                }
            }
            Ok(0)
        }
        PolicyCmd::Set { file, json } => {
            let text = if file == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                    .map_err(|e| anyhow::anyhow!("reading the policy from stdin: {e}"))?;
                t
            } else {
                std::fs::read_to_string(&file).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read {file}: {e} — give the path of a YAML or JSON policy file"
                    )
                })?
            };
            let v: herd_api::PolicyVersion = c
                .put("/api/v1/policy", &herd_api::PutPolicy { text })
                .await?;
            if json {
                return print_json(&v);
            }
            outln!("policy version {} stored", v.version);
            Ok(0)
        }
        PolicyCmd::Show { version } => {
            let path = match version {
                Some(v) => format!("/api/v1/policy?version={v}"),
                None => "/api/v1/policy".into(),
            };
            let v: herd_api::PolicyVersion = c.get(&path).await?;
            print_json(&v)
        }
        PolicyCmd::History { json } => {
            let versions: Vec<herd_api::PolicyVersion> = c.get("/api/v1/policy/history").await?;
            if json {
                return print_json(&versions);
            }
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        crate::table::time(Some(v.created_at)),
                        v.created_by.clone(),
                    ]
                })
                .collect();
            out!("{}", crate::table::render(&["VERSION", "SET", "BY"], &rows));
            Ok(0)
        }
    }
}
