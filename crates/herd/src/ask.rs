//! `herd ask "REQUEST" -t SEL`: the server asks the model for a plan, every step classified by
//! the command policy; the plan is shown with each step's class; a person approves it (and
//! each step the policy sends for approval) in a terminal, or `--yes` runs it when the policy
//! allows every step as it stands — `--yes` never approves a step. The approved plan runs as a
//! workflow run, followed here step by step.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use clap::Args;
use herd_api::{AskPlan, AskRequest, AskRun, AskStep, FlowRun};
use herd_core::Escaped;

use crate::cmd::{client, outln, print_json};

#[derive(Args)]
pub struct AskArgs {
    /// What to do, in plain language.
    request: String,
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

pub async fn ask(a: AskArgs) -> Result<i32> {
    let c = client()?;
    let plan: AskPlan = c
        .post(
            "/api/v1/ask/plan",
            &AskRequest {
                request: a.request.clone(),
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
    if let Some(s) = plan.steps.iter().find(|s| s.check.decision == "deny") {
        bail!(
            "step {} is denied by the command policy ({}) — the plan does not run; ask again differently",
            s.step.id,
            s.check
                .reasons
                .first()
                .map(String::as_str)
                .unwrap_or(&s.check.class)
        );
    }
    let gated: Vec<&herd_api::PlannedStep> = plan
        .steps
        .iter()
        .filter(|s| s.check.decision != "allow")
        .collect();
    let terminal = std::io::stdin().is_terminal();
    let mut approved = Vec::new();
    if a.yes {
        if let Some(s) = gated.first() {
            bail!(
                "step {} needs approval ({}: {}) — --yes never approves a step; run without --yes in a terminal to review it",
                s.step.id,
                s.check.class,
                s.check.reasons.first().map(String::as_str).unwrap_or("")
            );
        }
    } else {
        if !terminal {
            bail!(
                "the plan needs a review — run herd ask in a terminal, or with --yes when the policy allows every step"
            );
        }
        for s in &gated {
            if !ask_yes(&format!(
                "step {} is {} ({}). Approve it?",
                s.step.id,
                s.check.class,
                s.check.reasons.first().map(String::as_str).unwrap_or("")
            ))? {
                eprintln!("herd: not approved — the plan does not run");
                return Ok(1);
            }
            approved.push(s.step.id.clone());
        }
        if !ask_yes("Run the plan?")? {
            eprintln!("herd: the plan does not run");
            return Ok(1);
        }
    }
    let run: FlowRun = c
        .post(
            "/api/v1/ask/runs",
            &AskRun {
                request: plan.request.clone(),
                summary: plan.summary.clone(),
                steps: plan
                    .steps
                    .iter()
                    .map(|s| s.step.clone())
                    .collect::<Vec<AskStep>>(),
                targets: a.targets.clone(),
                all: a.all,
                approved,
            },
        )
        .await?;
    if a.detach {
        outln!("{}", run.id);
        return Ok(0);
    }
    crate::flows::follow(&c, run, a.quiet, false).await
}

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// What the command policy does with a command: `herd policy check -- rm -rf /tmp/x`.
    Check {
        /// Under this role's policy: admin (default), operator, viewer.
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: Option<String>,
        #[arg(long)]
        json: bool,
        /// The command (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

pub async fn policy(cmd: PolicyCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        PolicyCmd::Check {
            role,
            json,
            command,
        } => {
            let check: herd_api::StepCheck = c
                .post(
                    "/api/v1/policy/check",
                    &herd_api::PolicyCheck {
                        command: command.join(" "),
                        role: role.as_deref().map(|r| match r {
                            "operator" => herd_api::KeyRole::Operator,
                            "viewer" => herd_api::KeyRole::Viewer,
                            _ => herd_api::KeyRole::Admin,
                        }),
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
    }
}
