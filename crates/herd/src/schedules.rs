//! `herd schedules`: add a schedule (cron in a zone, a period, or one time) that fires a job,
//! a workflow, a LangFlow flow or a command; edit one in place; list them with their next and
//! last fire; pause, resume, remove; a schedule's fires; its next fire times.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use herd_api::{
    FireOutcome, MisfirePolicy, NewSchedule, NextFire, OverlapPolicy, Schedule, ScheduleEdit,
    ScheduleFire, ScheduleTarget, TargetKind,
};
use herd_core::Escaped;

use crate::client::Client;
use crate::cmd::{client, encode, out, outln, print_json};
use crate::table::{render, time};

#[derive(Subcommand)]
pub enum SchedulesCmd {
    /// Add a schedule: `herd schedules add nightly --cron '0 30 2 * * *' --tz Europe/Paris --job backup`,
    /// `herd schedules add ping --every 30s -t role=web -- uptime`.
    Add(Box<AddArgs>),
    /// Edit a schedule in place: the same id, its fire history kept, its next fire counted
    /// from now.
    ///
    /// The flags given replace those parts of it; the others keep their value (`--approve`
    /// excepted: give it again for what the policy asks approval for). `herd schedules edit
    /// ping -- df -h` changes only the command; `--cron/--every/--at` change when (`--tz`
    /// alone reads the cron expression in that zone); `-t` replaces the machines, `-p` all
    /// the parameters; `--paused` pauses it (`herd schedules resume` resumes it).
    Edit(Box<AddArgs>),
    /// List schedules: next fire (in the schedule's zone and here), last fire and its result.
    Ls(JsonArg),
    /// Show a schedule.
    Show(NameArg),
    /// Pause a schedule: it does not fire until resumed.
    Pause(NameArg),
    /// Resume a schedule: it fires next at its first fire time after now.
    Resume(NameArg),
    /// Remove a schedule and its fires (what they started stays).
    Rm(NameArg),
    /// A schedule's fires, newest first: when, what each started and how that ended.
    History(HistoryArgs),
    /// The next fire times of a schedule, to check its expression: `herd schedules next nightly -n 10`.
    Next(NextArgs),
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
pub struct HistoryArgs {
    name: String,
    /// At most this many fires.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: i64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NextArgs {
    name: String,
    /// How many fire times.
    #[arg(short = 'n', default_value_t = 10)]
    n: i64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    /// A cron expression: 5 fields (minute first), 6 (seconds first) or `@daily`-style;
    /// `L`, `W` and `#` are understood.
    #[arg(long, group = "when")]
    cron: Option<String>,
    /// The IANA time zone of `--cron` and `--at` (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// A fixed period: `30s`, `5m`, `1h30m`, `1d`.
    #[arg(long, group = "when")]
    every: Option<String>,
    /// One time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (in `--tz`), or `+DUR` from now.
    #[arg(long, group = "when")]
    at: Option<String>,
    /// Fire a job.
    #[arg(long, group = "what")]
    job: Option<String>,
    /// Fire a workflow.
    #[arg(long, group = "what")]
    workflow: Option<String>,
    /// Fire a LangFlow flow (`herd flows ls`).
    #[arg(long, group = "what")]
    flow: Option<String>,
    /// The machines: of a command, of the steps that name none, or the one a flow is
    /// called from (a selector; repeatable, OR'ed).
    #[arg(short = 't', long = "target", value_name = "SELECTOR")]
    targets: Vec<String>,
    /// A parameter of the job or workflow: `-p who=world` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The flow's input text.
    #[arg(long)]
    input: Option<String>,
    /// A tweak of the flow: `--tweak Component.param=value` (repeatable).
    #[arg(long = "tweak", value_name = "COMPONENT.PARAM=VALUE")]
    tweaks: Vec<String>,
    /// Up to this much delay added to each fire (e.g. `30s`), to spread load.
    #[arg(long)]
    jitter: Option<String>,
    /// While what the previous fire started still runs: skip this fire, queue it (one
    /// waits at most), or allow it [default when added: skip].
    #[arg(long, value_parser = ["skip", "queue", "allow"])]
    overlap: Option<String>,
    /// Fire times that passed while no server ran: skip them, run the latest once, or run
    /// each (at most 100) [default when added: run-once].
    #[arg(long, value_parser = ["skip", "run-once", "run-all"])]
    misfire: Option<String>,
    /// Add it paused (`edit`: pause it).
    #[arg(long)]
    paused: bool,
    /// Approve what it runs when the command policy asks for approval (recorded with the
    /// schedule; each fire is checked again against the policy of its time).
    #[arg(long)]
    approve: bool,
    #[arg(long)]
    json: bool,
    /// The command to run (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

pub async fn schedules(cmd: SchedulesCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        SchedulesCmd::Add(a) => add(&c, *a).await,
        SchedulesCmd::Edit(a) => edit(&c, *a).await,
        SchedulesCmd::Ls(a) => list(&c, a.json).await,
        SchedulesCmd::Show(a) => {
            let s: Schedule = c.get(&path(&a.name, "")).await?;
            show(&s, a.json)
        }
        SchedulesCmd::Pause(a) => {
            let s: Schedule = c.post_empty(&path(&a.name, "/pause")).await?;
            show(&s, a.json)
        }
        SchedulesCmd::Resume(a) => {
            let s: Schedule = c.post_empty(&path(&a.name, "/resume")).await?;
            show(&s, a.json)
        }
        SchedulesCmd::Rm(a) => {
            let s: Schedule = c.delete(&path(&a.name, "")).await?;
            if a.json {
                return print_json(&s);
            }
            outln!("schedule {} removed", Escaped(&s.name));
            Ok(0)
        }
        SchedulesCmd::History(a) => history(&c, a).await,
        SchedulesCmd::Next(a) => next(&c, a).await,
    }
}

fn path(name: &str, tail: &str) -> String {
    format!("/api/v1/schedules/{}{tail}", encode(name))
}

/// What a schedule fires as its flags name it: the kind, the name and the command.
type Named = (TargetKind, Option<String>, Option<String>);

/// What `--job/--workflow/--flow/-- COMMAND` name, if one is given.
fn target_of(verb: &str, a: &AddArgs) -> Result<Option<Named>> {
    let command = (!a.command.is_empty()).then(|| a.command.join(" "));
    Ok(match (&a.job, &a.workflow, &a.flow, &command) {
        (Some(j), None, None, None) => Some((TargetKind::Job, Some(j.clone()), None)),
        (None, Some(w), None, None) => Some((TargetKind::Workflow, Some(w.clone()), None)),
        (None, None, Some(f), None) => Some((TargetKind::Flow, Some(f.clone()), None)),
        (None, None, None, Some(_)) => Some((TargetKind::Command, None, command)),
        (None, None, None, None) => None,
        _ => bail!(
            "schedules {verb} {}: give one of --job, --workflow, --flow and `-- COMMAND`",
            a.name
        ),
    })
}

/// `-p NAME=VALUE` as parameters.
fn params_of(a: &AddArgs) -> Result<BTreeMap<String, serde_json::Value>> {
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
    Ok(params)
}

/// A flow's `--input` and `--tweak` into its parameters (refused for anything else).
fn flow_params(
    a: &AddArgs,
    kind: TargetKind,
    params: &mut BTreeMap<String, serde_json::Value>,
) -> Result<()> {
    if kind == TargetKind::Flow {
        if let Some(i) = &a.input {
            params.insert("input".into(), serde_json::Value::String(i.clone()));
        }
        if !a.tweaks.is_empty() {
            params.insert(
                "tweaks".into(),
                serde_json::Value::Array(
                    a.tweaks
                        .iter()
                        .map(|t| serde_json::Value::String(t.clone()))
                        .collect(),
                ),
            );
        }
    } else if a.input.is_some() || !a.tweaks.is_empty() {
        bail!("--input and --tweak are for --flow schedules");
    }
    Ok(())
}

fn overlap_of(text: &str) -> OverlapPolicy {
    match text {
        "queue" => OverlapPolicy::Queue,
        "allow" => OverlapPolicy::Allow,
        _ => OverlapPolicy::Skip,
    }
}

fn misfire_of(text: &str) -> MisfirePolicy {
    match text {
        "skip" => MisfirePolicy::Skip,
        "run-all" => MisfirePolicy::RunAll,
        _ => MisfirePolicy::RunOnce,
    }
}

async fn add(c: &Client, a: AddArgs) -> Result<i32> {
    let Some((kind, name, command)) = target_of("add", &a)? else {
        bail!(
            "schedules add {}: what does it fire? — give --job NAME, --workflow NAME, --flow NAME or `-- COMMAND`",
            a.name
        );
    };
    if a.cron.is_none() && a.every.is_none() && a.at.is_none() {
        bail!(
            "schedules add {}: when does it fire? — give --cron EXPR, --every DUR or --at TIME",
            a.name
        );
    }
    let mut params = params_of(&a)?;
    flow_params(&a, kind, &mut params)?;
    let req = NewSchedule {
        name: a.name.clone(),
        cron: a.cron,
        tz: a.tz,
        every: a.every,
        at: a.at,
        jitter: a.jitter,
        overlap: overlap_of(a.overlap.as_deref().unwrap_or("skip")),
        misfire: misfire_of(a.misfire.as_deref().unwrap_or("run-once")),
        target: ScheduleTarget {
            kind,
            name,
            command,
            targets: a.targets,
            params,
            approve: a.approve,
        },
        paused: a.paused,
    };
    let s: Schedule = c.post("/api/v1/schedules", &req).await?;
    if a.json {
        return print_json(&s);
    }
    outln!(
        "schedule {}: {}, next {}",
        Escaped(&s.name),
        s.when,
        next_text(&s)
    );
    Ok(0)
}

/// `herd schedules edit`: the schedule as it is, with what the flags give replacing its parts.
async fn edit(c: &Client, a: AddArgs) -> Result<i32> {
    let was: Schedule = c.get(&path(&a.name, "")).await?;
    let given = target_of("edit", &a)?;
    let same_target = given.as_ref().is_none_or(|(kind, name, _)| {
        *kind == was.target.kind && (*kind == TargetKind::Command || *name == was.target.name)
    });
    let (kind, name, command) = given.unwrap_or_else(|| {
        (
            was.target.kind,
            was.target.name.clone(),
            was.target.command.clone(),
        )
    });
    let mut params = if !a.params.is_empty() {
        params_of(&a)?
    } else if same_target {
        was.target.params.clone()
    } else {
        BTreeMap::new()
    };
    flow_params(&a, kind, &mut params)?;
    let targets = if a.targets.is_empty() {
        was.target.targets.clone()
    } else {
        a.targets
    };
    let jitter = a
        .jitter
        .or_else(|| (was.jitter_ms > 0).then(|| format!("{}ms", was.jitter_ms)));
    let req = ScheduleEdit {
        name: None,
        cron: a.cron,
        tz: a.tz,
        every: a.every,
        at: a.at,
        jitter,
        overlap: a.overlap.as_deref().map_or(was.overlap, overlap_of),
        misfire: a.misfire.as_deref().map_or(was.misfire, misfire_of),
        target: ScheduleTarget {
            kind,
            name,
            command,
            targets,
            params,
            approve: a.approve,
        },
        paused: a.paused.then_some(true),
    };
    let s: Schedule = c.put(&path(&a.name, ""), &req).await?;
    if a.json {
        return print_json(&s);
    }
    outln!(
        "schedule {} edited: {}, {}, next {}",
        Escaped(&s.name),
        s.when,
        Escaped(&what(&s.target)),
        next_text(&s)
    );
    Ok(0)
}

fn what(t: &ScheduleTarget) -> String {
    let on = if t.targets.is_empty() {
        String::new()
    } else {
        format!(" on {}", t.targets.join(" | "))
    };
    match t.kind {
        TargetKind::Command => format!("run {}{on}", t.command.as_deref().unwrap_or("")),
        k => format!("{} {}{on}", k.as_str(), t.name.as_deref().unwrap_or("")),
    }
}

fn next_text(s: &Schedule) -> String {
    if s.paused {
        return "paused".into();
    }
    match (&s.next_fire_local, s.next_fire_at) {
        (Some(zoned), Some(at)) => {
            let here = time(Some(at));
            if s.tz == "UTC" {
                here
            } else {
                format!("{} ({} here)", zoned, here)
            }
        }
        _ => "never".into(),
    }
}

fn last_text(f: &Option<ScheduleFire>) -> String {
    match f {
        None => "-".into(),
        Some(f) => format!("{} {}", time(Some(f.fire_at)), result(f)),
    }
}

fn result(f: &ScheduleFire) -> String {
    match f.outcome {
        FireOutcome::Started => f.run_state.clone().unwrap_or_else(|| "started".into()),
        FireOutcome::Skipped => "skipped".into(),
        FireOutcome::Missed => "missed".into(),
        FireOutcome::Failed => "failed to start".into(),
    }
}

async fn list(c: &Client, json: bool) -> Result<i32> {
    let all: Vec<Schedule> = c.get("/api/v1/schedules").await?;
    if json {
        return print_json(&all);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.when.clone(),
                what(&s.target),
                next_text(s),
                last_text(&s.last),
            ]
        })
        .collect();
    out!(
        "{}",
        render(&["NAME", "WHEN", "FIRES", "NEXT", "LAST"], &rows)
    );
    Ok(0)
}

fn show(s: &Schedule, json: bool) -> Result<i32> {
    if json {
        return print_json(s);
    }
    outln!("schedule {} ({})", Escaped(&s.name), s.id);
    outln!("when:    {}", s.when);
    outln!("fires:   {}", Escaped(&what(&s.target)));
    if !s.target.params.is_empty() {
        outln!(
            "params:  {}",
            Escaped(&serde_json::to_string(&s.target.params)?)
        );
    }
    outln!(
        "policy:  overlap {}, misfire {}, jitter {}",
        serde_json::to_value(s.overlap)?.as_str().unwrap_or("?"),
        serde_json::to_value(s.misfire)?.as_str().unwrap_or("?"),
        herd_core::format_duration(std::time::Duration::from_millis(s.jitter_ms.max(0) as u64))
    );
    outln!("next:    {}", next_text(s));
    outln!("last:    {}", last_text(&s.last));
    outln!(
        "added:   {} by {}",
        time(Some(s.created_at)),
        Escaped(&s.created_by)
    );
    Ok(0)
}

async fn history(c: &Client, a: HistoryArgs) -> Result<i32> {
    let fires: Vec<ScheduleFire> = c
        .get(&format!(
            "{}?limit={}",
            path(&a.name, "/fires"),
            a.limit.max(1)
        ))
        .await?;
    if a.json {
        return print_json(&fires);
    }
    let rows: Vec<Vec<String>> = fires
        .iter()
        .map(|f| {
            vec![
                time(Some(f.fire_at)),
                format!("+{} ms", f.at - f.fire_at),
                result(f),
                f.run_id.clone().unwrap_or_default(),
                f.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out!(
        "{}",
        render(&["FIRE TIME", "HANDLED", "RESULT", "RUN", "DETAIL"], &rows)
    );
    Ok(0)
}

async fn next(c: &Client, a: NextArgs) -> Result<i32> {
    let times: Vec<NextFire> = c
        .get(&format!("{}?n={}", path(&a.name, "/next"), a.n.max(1)))
        .await?;
    if a.json {
        return print_json(&times);
    }
    let rows: Vec<Vec<String>> = times
        .iter()
        .map(|t| vec![t.local.clone(), time(Some(t.at))])
        .collect();
    out!("{}", render(&["IN ITS ZONE", "HERE"], &rows));
    Ok(0)
}
