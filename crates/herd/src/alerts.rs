//! `herd alerts`: the open alerts (`--all`: cleared ones too), and the rules that raise them
//! (`rules add|ls|rm`).

use anyhow::Result;
use clap::{Args, Subcommand};
use herd_api::{Alert, AlertMetric, AlertNotify, AlertNotifyKind, AlertRule, NewAlertRule};
use herd_core::Escaped;

use crate::cmd::{client, encode, out, outln, print_json};
use crate::table::{render, time};

#[derive(Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    cmd: Option<AlertsCmd>,
    /// Cleared alerts too.
    #[arg(long)]
    all: bool,
    /// At most this many, newest first.
    #[arg(short = 'n', long, default_value_t = 100)]
    limit: i64,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AlertsCmd {
    /// List alerts (the default): open ones, or every one with `--all`.
    Ls(LsArgs),
    /// The rules that raise alerts.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
}

#[derive(Args)]
struct LsArgs {
    /// Cleared alerts too.
    #[arg(long)]
    all: bool,
    /// At most this many, newest first.
    #[arg(short = 'n', long, default_value_t = 100)]
    limit: i64,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Add a rule: `herd alerts rules add disk --metric disk --warning 80 --critical 90 -t role=db --notify https://hooks.example.com/x --runbook clean-tmp`.
    Add(Box<AddArgs>),
    /// List the rules.
    Ls(JsonArg),
    /// Remove a rule (its open alerts clear).
    Rm(NameArg),
}

#[derive(Args)]
struct JsonArg {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct NameArg {
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AddArgs {
    name: String,
    /// What it watches: cpu, memory, disk (percent used), load1, load5, load15, or offline
    /// (seconds away).
    #[arg(long, value_parser = ["cpu", "memory", "disk", "load1", "load5", "load15", "offline"])]
    metric: String,
    /// A value at or above this raises a warning.
    #[arg(long)]
    warning: Option<f64>,
    /// A value at or above this raises a critical alert.
    #[arg(long)]
    critical: Option<f64>,
    /// A level ends when the value falls below its threshold less this (default 5 for
    /// percentages, a tenth of the lowest threshold for loads, 0 for offline).
    #[arg(long)]
    margin: Option<f64>,
    /// How long a value must stay over a threshold before it raises (e.g. `30s`).
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// The machines it watches (a selector); every machine without.
    #[arg(short = 't', long = "target", value_name = "SELECTOR")]
    target: Option<String>,
    /// A webhook that gets a JSON POST of each change (repeatable).
    #[arg(long = "notify", value_name = "URL")]
    notify: Vec<String>,
    /// A Slack incoming webhook (repeatable).
    #[arg(long = "notify-slack", value_name = "URL")]
    slack: Vec<String>,
    /// A Discord webhook (repeatable).
    #[arg(long = "notify-discord", value_name = "URL")]
    discord: Vec<String>,
    /// A job started on the machine when an alert is raised; when it fails the alert is
    /// escalated to critical.
    #[arg(long, value_name = "JOB")]
    runbook: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn alerts(a: AlertsArgs) -> Result<i32> {
    match a.cmd {
        None => list(a.all, a.limit, a.json).await,
        Some(AlertsCmd::Ls(l)) => list(l.all || a.all, l.limit, l.json || a.json).await,
        Some(AlertsCmd::Rules { cmd }) => rules(cmd).await,
    }
}

fn unit(m: AlertMetric) -> &'static str {
    match m {
        AlertMetric::Cpu | AlertMetric::Memory | AlertMetric::Disk => "%",
        AlertMetric::Offline => "s",
        _ => "",
    }
}

fn metric(m: AlertMetric) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn number(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    format!("{r}")
}

async fn list(all: bool, limit: i64, json: bool) -> Result<i32> {
    let c = client()?;
    let alerts: Vec<Alert> = c
        .get(&format!("/api/v1/alerts?all={all}&limit={limit}"))
        .await?;
    if json {
        return print_json(&alerts);
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let u = unit(a.metric);
            let level = serde_json::to_value(a.level)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            vec![
                a.rule.clone(),
                a.agent.clone(),
                if a.escalated {
                    format!("{level} (escalated)")
                } else {
                    level
                },
                format!(
                    "{} {}{u} (≥ {}{u})",
                    metric(a.metric),
                    number(a.value),
                    number(a.threshold)
                ),
                time(Some(a.raised_at)),
                match a.cleared_at {
                    Some(t) => format!("cleared {}", time(Some(t))),
                    None => "open".into(),
                },
                match (&a.runbook_run, &a.runbook_state) {
                    (Some(r), Some(s)) => format!("{s} ({})", herd_core::short(r)),
                    (None, Some(s)) => s.clone(),
                    _ => "-".into(),
                },
                a.notified.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!("no {}alerts", if all { "" } else { "open " });
        return Ok(0);
    }
    out!(
        "{}",
        render(
            &[
                "RULE", "MACHINE", "LEVEL", "VALUE", "RAISED", "STATE", "RUNBOOK", "NOTIFIED"
            ],
            &rows
        )
    );
    Ok(0)
}

async fn rules(cmd: RulesCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        RulesCmd::Add(a) => {
            let metric: AlertMetric = serde_json::from_value(serde_json::Value::String(a.metric))?;
            let notify = a
                .notify
                .into_iter()
                .map(|url| (AlertNotifyKind::Webhook, url))
                .chain(a.slack.into_iter().map(|u| (AlertNotifyKind::Slack, u)))
                .chain(a.discord.into_iter().map(|u| (AlertNotifyKind::Discord, u)))
                .map(|(kind, url)| AlertNotify { kind, url })
                .collect();
            let req = NewAlertRule {
                name: a.name,
                metric,
                target: a.target,
                warning: a.warning,
                critical: a.critical,
                margin: a.margin,
                for_: a.for_,
                notify,
                runbook: a.runbook,
            };
            let r: AlertRule = c.post("/api/v1/alerts/rules", &req).await?;
            if a.json {
                return print_json(&r);
            }
            outln!(
                "alert rule {}: {}",
                Escaped(&r.name),
                Escaped(&describe(&r))
            );
            Ok(0)
        }
        RulesCmd::Ls(a) => {
            let all: Vec<AlertRule> = c.get("/api/v1/alerts/rules").await?;
            if a.json {
                return print_json(&all);
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.target.clone().unwrap_or_else(|| "(every machine)".into()),
                        describe(r),
                        r.runbook.clone().unwrap_or_else(|| "-".into()),
                        if r.notify.is_empty() {
                            "-".into()
                        } else {
                            r.notify.len().to_string()
                        },
                    ]
                })
                .collect();
            out!(
                "{}",
                render(&["NAME", "MACHINES", "WHEN", "RUNBOOK", "NOTIFY"], &rows)
            );
            Ok(0)
        }
        RulesCmd::Rm(a) => {
            let r: AlertRule = c
                .delete(&format!("/api/v1/alerts/rules/{}", encode(&a.name)))
                .await?;
            if a.json {
                return print_json(&r);
            }
            outln!("alert rule {} removed", Escaped(&r.name));
            Ok(0)
        }
    }
}

/// `disk ≥ 80% warning, ≥ 90% critical (clear 5 below, for 30s)`.
fn describe(r: &AlertRule) -> String {
    let u = unit(r.metric);
    let mut levels = Vec::new();
    if let Some(w) = r.warning {
        levels.push(format!("≥ {}{u} warning", number(w)));
    }
    if let Some(c) = r.critical {
        levels.push(format!("≥ {}{u} critical", number(c)));
    }
    let mut s = format!(
        "{} {} (clears {}{u} below",
        metric(r.metric),
        levels.join(", "),
        number(r.margin)
    );
    if r.for_ms > 0 {
        s.push_str(&format!(
            ", for {}",
            herd_core::format_duration(std::time::Duration::from_millis(r.for_ms as u64))
        ));
    }
    s.push(')');
    s
}
