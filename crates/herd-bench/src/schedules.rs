//! `herd-bench schedules`: how late a schedule's runs start, and what schedules that are not
//! due cost the server, each beside its floor in the same run. One release server and one
//! local agent.
//!
//! 1. **Fire jitter**: a schedule firing `true` every second (no jitter of its own) for
//!    `--duration`; for each fire, the start of its task (the task's `started_at`) minus the
//!    fire time, and the server's own part (the fire's `at`, when it was handled, minus the
//!    fire time). Beside it, the floor: a plain `POST /api/v1/runs` of `true` on the same agent
//!    sent half a second after each fire, its task's start minus when the request was sent.
//! 2. **Idle cost**: the server's CPU (utime+stime) over `--idle-secs` with no schedule, then
//!    the time to add `--schedules` schedules that are not due (concurrent API calls), then the
//!    server's CPU over `--idle-secs` again with them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::fleet::Fleet;
use crate::stats::{self, Summary};
use crate::workflows::{answer, get};

/// Fire jitter: task start − fire time, p99 at most this, ms.
const JITTER_P99_TARGET_MS: f64 = 50.0;
/// The server's CPU with the schedules that are not due: at most this, % of one core.
const IDLE_CPU_TARGET_PCT: f64 = 5.0;
/// The name of the one-second schedule.
const TICK: &str = "bench-tick";
/// A cron expression with no fire in the run (midnight on January 1st).
const NOT_DUE_CRON: &str = "0 0 1 1 *";
/// The fires read at once (the API's most).
const FIRES_PAGE: usize = 1000;

#[derive(Args, Clone)]
pub struct SchedulesArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// How long the one-second schedule fires, in seconds.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// How long the idle server is sampled, with no schedule and with `--schedules`, in
    /// seconds each.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// The idle CPU is also read over windows of this many seconds (their median and spread).
    #[arg(long, default_value_t = 5)]
    pub idle_window_secs: u64,
    /// How long the server is left alone before each idle sample, in seconds.
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Schedules that are not due to add for the idle figure.
    #[arg(long, default_value_t = 10_000)]
    pub schedules: usize,
    /// `POST /api/v1/schedules` calls under way at once while adding them.
    #[arg(long, default_value_t = 32)]
    pub add_concurrency: usize,
    /// Measure the fire jitter only.
    #[arg(long, conflicts_with = "skip_jitter")]
    pub skip_idle: bool,
    /// Measure the idle cost only.
    #[arg(long)]
    pub skip_jitter: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir (server data, logs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Where the server keeps its records.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: crate::fleet::Store,
}

/// Where one run's time went, ms from its start instant (the fire time, or when the request
/// was sent): its run created, its task sent to the agent, the agent's report that the
/// process started handled (the task's `started_at`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
struct RunTimes {
    created: f64,
    dispatched: f64,
    started: f64,
}

/// The [`RunTimes`] of `run` (`GET /api/v1/runs/{id}`, one task) from `t0` (unix ms); none
/// while its task has not started.
fn run_times(t0: f64, run: &Value) -> Option<RunTimes> {
    let ms = |v: &Value| v.as_i64().map(|x| x as f64 - t0);
    let task = &run["tasks"][0];
    Some(RunTimes {
        created: ms(&run["created_at"])?,
        dispatched: ms(&task["dispatched_at"])?,
        started: ms(&task["started_at"])?,
    })
}

/// A path's samples taken apart: start → run created → task sent → started, ms.
#[derive(Default, Serialize)]
struct Samples {
    /// Start → the task started (the figure).
    total_ms: Vec<f64>,
    to_created_ms: Vec<f64>,
    created_to_sent_ms: Vec<f64>,
    sent_to_started_ms: Vec<f64>,
}

impl Samples {
    fn push(&mut self, t: RunTimes) {
        self.total_ms.push(t.started);
        self.to_created_ms.push(t.created);
        self.created_to_sent_ms.push(t.dispatched - t.created);
        self.sent_to_started_ms.push(t.started - t.dispatched);
    }

    fn summary(&self) -> PathSummary {
        PathSummary {
            total_ms: stats::summarize(&self.total_ms),
            to_created_ms: stats::summarize(&self.to_created_ms),
            created_to_sent_ms: stats::summarize(&self.created_to_sent_ms),
            sent_to_started_ms: stats::summarize(&self.sent_to_started_ms),
        }
    }
}

#[derive(Serialize)]
struct PathSummary {
    total_ms: Summary,
    to_created_ms: Summary,
    created_to_sent_ms: Summary,
    sent_to_started_ms: Summary,
}

/// The fires of the tick schedule, taken apart.
#[derive(Default)]
struct FireSamples {
    /// The fire's `at` − its fire time, ms.
    handled_ms: Vec<f64>,
    path: Samples,
    /// Fires by outcome (`started`, `skipped`, `missed`, `failed`).
    outcomes: BTreeMap<String, usize>,
    /// Started fires whose task has no `started_at`.
    not_started: usize,
}

/// The fires with fire time in `[from, to)` (`GET …/fires`), with their runs by id.
fn fire_samples(
    fires: &BTreeMap<i64, Value>,
    runs: &BTreeMap<String, Value>,
    from: i64,
    to: i64,
) -> FireSamples {
    let mut s = FireSamples::default();
    for (&fire_at, f) in fires.range(from..to) {
        let outcome = f["outcome"].as_str().unwrap_or("?").to_string();
        *s.outcomes.entry(outcome).or_default() += 1;
        if let Some(at) = f["at"].as_i64() {
            s.handled_ms.push((at - fire_at) as f64);
        }
        let Some(id) = f["run_id"].as_str() else {
            continue;
        };
        match runs.get(id).and_then(|r| run_times(fire_at as f64, r)) {
            Some(t) => s.path.push(t),
            None => s.not_started += 1,
        }
    }
    s
}

/// The server's (or any process's) CPU over a stretch of time.
#[derive(Serialize)]
struct IdleCpu {
    secs: f64,
    /// utime+stime over the whole stretch, % of one core.
    pct_one_core: f64,
    /// The same over each window.
    windows_pct: Summary,
    window_secs: u64,
    rss_mb: f64,
}

#[derive(Serialize)]
struct Adding {
    schedules: usize,
    concurrency: usize,
    secs: f64,
    per_sec: f64,
    /// Each call's latency, ms.
    call_ms: Summary,
    server_rss_mb_before: f64,
    server_rss_mb_after: f64,
}

#[derive(Serialize)]
struct Jitter {
    duration_s: u64,
    /// Fires with their fire time in the window, by outcome.
    outcomes: BTreeMap<String, usize>,
    /// Task start − fire time.
    fire: PathSummary,
    /// The fire's `at` (handled) − fire time.
    handled_ms: Summary,
    fires_not_started: usize,
    /// Task start − request sent, `POST /api/v1/runs`.
    floor: PathSummary,
    floor_not_started: usize,
    /// CPU over the window, % of one core.
    server_cpu_pct: f64,
    agent_cpu_pct: f64,
    fire_samples_ms: Vec<f64>,
    handled_samples_ms: Vec<f64>,
    floor_samples_ms: Vec<f64>,
}

pub async fn run(a: SchedulesArgs) -> Result<()> {
    let herd = crate::spine::resolve_herd(a.herd.as_deref())?;
    if a.duration == 0 || a.idle_secs == 0 || a.idle_window_secs == 0 {
        bail!("--duration, --idle-secs and --idle-window-secs must be at least 1");
    }
    if a.add_concurrency == 0 {
        bail!("--add-concurrency must be at least 1");
    }
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let dir = tmp.path().to_path_buf();
    let res = bench(&a, &herd, &dir).await;
    if res.is_err() || a.keep {
        let kept = tmp.keep();
        eprintln!("herd-bench: logs and data kept in {}", kept.display());
    }
    res
}

async fn bench(a: &SchedulesArgs, herd: &Path, dir: &Path) -> Result<()> {
    eprintln!("herd-bench: herd binary {}", herd.display());
    let load_start = crate::spine::loadavg();
    let db = crate::fleet::Db::new(a.database)?;
    let mut fleet = Fleet::start(herd, dir, &db).await?;
    eprintln!(
        "herd-bench: server {} (pid {}, records in {}), agent {} (pid {}) online",
        fleet.url(),
        fleet.server.pid(),
        db.name(),
        fleet.agent().name,
        fleet.agent().pid()
    );
    // Warm the path (the agent's first process, the store's first writes).
    for _ in 0..3 {
        fleet
            .run_and_wait(&json!({"command": "true", "targets": [fleet.agent().name]}))
            .await?;
    }

    let jitter = if a.skip_jitter {
        None
    } else {
        Some(jitter(a, &fleet).await?)
    };
    fleet.check_alive()?;
    let idle = if a.skip_idle {
        None
    } else {
        let pid = fleet.server.pid();
        eprintln!(
            "herd-bench: idle server, no schedule: settle {} s, sample {} s",
            a.settle_secs, a.idle_secs
        );
        tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
        let empty = idle_cpu(pid, a.idle_secs, a.idle_window_secs).await?;
        eprintln!("herd-bench:   {:.2} % of one core", empty.pct_one_core);
        let adding = add_schedules(a, &fleet).await?;
        eprintln!(
            "herd-bench: idle server, {} schedules: settle {} s, sample {} s",
            a.schedules, a.settle_secs, a.idle_secs
        );
        tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
        let full = idle_cpu(pid, a.idle_secs, a.idle_window_secs).await?;
        eprintln!("herd-bench:   {:.2} % of one core", full.pct_one_core);
        fleet.check_alive()?;
        Some((empty, adding, full))
    };

    let env = crate::spine::environment(herd, &load_start);
    let md = markdown(a, &env, db.name(), jitter.as_ref(), idle.as_ref());
    println!("{md}");
    if let Some(out) = &a.out {
        let v = json!({
            "bench": "schedules",
            "environment": env,
            "database": db.name(),
            "targets": {
                "fire_jitter_p99_ms_max": JITTER_P99_TARGET_MS,
                "idle_cpu_pct_max": IDLE_CPU_TARGET_PCT,
            },
            "met": {
                "fire_jitter": jitter.as_ref().map(|j| j.fire.total_ms.p99 <= JITTER_P99_TARGET_MS),
                "idle_cpu": idle.as_ref().map(|(_, _, full)| full.pct_one_core <= IDLE_CPU_TARGET_PCT),
            },
            "jitter": jitter,
            "idle": idle.as_ref().map(|(empty, adding, full)| json!({
                "no_schedules": empty,
                "adding": adding,
                "with_schedules": full,
            })),
            "markdown": md,
        });
        crate::write_results(out, &v)?;
    }
    Ok(())
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn post(fleet: &Fleet, path: &str, body: &Value) -> Result<Value> {
    let what = format!("POST {path}");
    let resp = fleet
        .req(reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .with_context(|| what.clone())?;
    answer(resp, &what).await
}

/// The tick schedule's fires so far (the newest [`FIRES_PAGE`]), added to `into` by fire time.
async fn read_fires(fleet: &Fleet, into: &mut BTreeMap<i64, Value>) -> Result<()> {
    let v = get(
        fleet,
        &format!("/api/v1/schedules/{TICK}/fires?limit={FIRES_PAGE}"),
    )
    .await?;
    for f in v.as_array().context("fires: not a list")? {
        if let Some(t) = f["fire_at"].as_i64() {
            into.insert(t, f.clone());
        }
    }
    Ok(())
}

async fn jitter(a: &SchedulesArgs, fleet: &Fleet) -> Result<Jitter> {
    let agent = fleet.agent().name.clone();
    let tick = post(
        fleet,
        "/api/v1/schedules",
        &json!({
            "name": TICK,
            "every": "1s",
            "target": {"kind": "command", "command": "true", "targets": [agent]},
        }),
    )
    .await?;
    let first = tick["next_fire_at"]
        .as_i64()
        .with_context(|| format!("schedule {TICK} without a next fire: {tick}"))?;
    let end = first + a.duration as i64 * 1000;
    eprintln!(
        "herd-bench: fire jitter: `true` every second for {} s, a `POST /api/v1/runs` of `true` half a second after each fire",
        a.duration
    );
    let (spid, apid) = (fleet.server.pid(), fleet.agent().pid());
    let (s0, a0) = (stats::proc_cpu_secs(spid)?, stats::proc_cpu_secs(apid)?);
    let t0 = Instant::now();
    let mut fires = BTreeMap::new();
    // (sent at, run id) of the floor's runs.
    let mut floor_runs: Vec<(f64, String)> = Vec::new();
    let body = json!({"command": "true", "targets": [agent]});
    let mut k = 0i64;
    loop {
        let at = first + k * 1000 + 500;
        if at >= end {
            break;
        }
        let wait = at as f64 - now_ms();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait / 1e3)).await;
        }
        let sent = now_ms();
        let run = post(fleet, "/api/v1/runs", &body).await?;
        let id = run["id"]
            .as_str()
            .with_context(|| format!("POST /api/v1/runs: no id in {run}"))?;
        floor_runs.push((sent, id.to_string()));
        k += 1;
        // Well within the fires the API lists at once.
        if k % 300 == 0 {
            read_fires(fleet, &mut fires).await?;
            eprintln!(
                "herd-bench:   {k} s: {} fires",
                fires.range(first..end).count()
            );
        }
    }
    // The last fire in the window is handled, and its task started.
    let wait = end as f64 + 1500.0 - now_ms();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait / 1e3)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (s1, a1) = (stats::proc_cpu_secs(spid)?, stats::proc_cpu_secs(apid)?);
    post(
        fleet,
        &format!("/api/v1/schedules/{TICK}/pause"),
        &json!({}),
    )
    .await?;
    read_fires(fleet, &mut fires).await?;

    let mut runs = BTreeMap::new();
    let ids = fires
        .range(first..end)
        .filter_map(|(_, f)| f["run_id"].as_str().map(str::to_string))
        .chain(floor_runs.iter().map(|(_, id)| id.clone()));
    for id in ids {
        let r = get(fleet, &format!("/api/v1/runs/{id}")).await?;
        runs.insert(id, r);
    }
    let fired = fire_samples(&fires, &runs, first, end);
    let mut floor = Samples::default();
    let mut floor_not_started = 0;
    for (sent, id) in &floor_runs {
        // The server's clock counts whole ms; so does the send time here.
        match runs.get(id).and_then(|r| run_times(sent.floor(), r)) {
            Some(t) => floor.push(t),
            None => floor_not_started += 1,
        }
    }
    // The fires' rows go with the schedule; what they started stays.
    let resp = fleet
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/schedules/{TICK}"),
        )
        .send()
        .await
        .context("DELETE the tick schedule")?;
    answer(resp, "DELETE /api/v1/schedules/{name}").await?;
    let j = Jitter {
        duration_s: a.duration,
        outcomes: fired.outcomes,
        fire: fired.path.summary(),
        handled_ms: stats::summarize(&fired.handled_ms),
        fires_not_started: fired.not_started,
        floor: floor.summary(),
        floor_not_started,
        server_cpu_pct: (s1 - s0) / secs * 100.0,
        agent_cpu_pct: (a1 - a0) / secs * 100.0,
        fire_samples_ms: fired.path.total_ms,
        handled_samples_ms: fired.handled_ms,
        floor_samples_ms: floor.total_ms,
    };
    eprintln!(
        "herd-bench:   fires {:?}; task start − fire time p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; floor p50 {:.1} ms, p99 {:.1} ms",
        j.outcomes,
        j.fire.total_ms.p50,
        j.fire.total_ms.p99,
        j.fire.total_ms.max,
        j.floor.total_ms.p50,
        j.floor.total_ms.p99
    );
    Ok(j)
}

/// CPU of `pid` over `secs`, whole and per window of `window` seconds.
async fn idle_cpu(pid: u32, secs: u64, window: u64) -> Result<IdleCpu> {
    let window = window.min(secs);
    let t0 = Instant::now();
    let c0 = stats::proc_cpu_secs(pid)?;
    let mut pcts = Vec::new();
    let (mut t, mut c) = (t0, c0);
    let end = t0 + Duration::from_secs(secs);
    while t < end {
        let next = (t + Duration::from_secs(window)).min(end);
        tokio::time::sleep_until(next.into()).await;
        let (t1, c1) = (Instant::now(), stats::proc_cpu_secs(pid)?);
        pcts.push((c1 - c) / (t1 - t).as_secs_f64() * 100.0);
        (t, c) = (t1, c1);
    }
    let total = t.duration_since(t0).as_secs_f64();
    Ok(IdleCpu {
        secs: total,
        pct_one_core: (c - c0) / total * 100.0,
        windows_pct: stats::summarize(&pcts),
        window_secs: window,
        rss_mb: stats::proc_status_bytes(pid, "VmRSS")? as f64 / 1048576.0,
    })
}

/// Adds `--schedules` schedules that are not due (cron, once a year), firing `true` on the
/// agent, `--add-concurrency` calls at once.
async fn add_schedules(a: &SchedulesArgs, fleet: &Fleet) -> Result<Adding> {
    eprintln!(
        "herd-bench: adding {} schedules ({NOT_DUE_CRON:?}), {} calls at once",
        a.schedules, a.add_concurrency
    );
    let pid = fleet.server.pid();
    let rss = || -> Result<f64> { Ok(stats::proc_status_bytes(pid, "VmRSS")? as f64 / 1048576.0) };
    let before = rss()?;
    let agent = fleet.agent().name.clone();
    let t0 = Instant::now();
    let mut calls = futures::stream::iter(0..a.schedules)
        .map(|i| {
            let body = json!({
                "name": format!("bench-idle-{i:05}"),
                "cron": NOT_DUE_CRON,
                "target": {"kind": "command", "command": "true", "targets": [agent]},
            });
            async move {
                let t = Instant::now();
                post(fleet, "/api/v1/schedules", &body).await?;
                Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1e3)
            }
        })
        .buffer_unordered(a.add_concurrency);
    let mut lat = Vec::with_capacity(a.schedules);
    while let Some(r) = calls.next().await {
        lat.push(r?);
    }
    let secs = t0.elapsed().as_secs_f64();
    let adding = Adding {
        schedules: a.schedules,
        concurrency: a.add_concurrency,
        secs,
        per_sec: a.schedules as f64 / secs,
        call_ms: stats::summarize(&lat),
        server_rss_mb_before: before,
        server_rss_mb_after: rss()?,
    };
    eprintln!(
        "herd-bench:   {:.2} s ({:.0} a second; a call p50 {:.1} ms, p99 {:.1} ms)",
        adding.secs, adding.per_sec, adding.call_ms.p50, adding.call_ms.p99
    );
    Ok(adding)
}

/// `n` with a comma between each group of three digits.
fn thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "**MISSED**" }
}

/// **median** (p10–p90; min–max), p99, ms.
fn cell(s: &Summary) -> String {
    format!(
        "**{:.1}** ({:.1}–{:.1}; {:.1}–{:.1}), p99 **{:.1}**",
        s.p50, s.p10, s.p90, s.min, s.max, s.p99
    )
}

fn cpu_cell(c: &IdleCpu) -> String {
    format!(
        "**{:.2}** ({} s windows: {:.2}; {:.2}–{:.2}; {:.2}–{:.2})",
        c.pct_one_core,
        c.window_secs,
        c.windows_pct.p50,
        c.windows_pct.p10,
        c.windows_pct.p90,
        c.windows_pct.min,
        c.windows_pct.max
    )
}

fn markdown(
    a: &SchedulesArgs,
    env: &Value,
    db: &str,
    jitter: Option<&Jitter>,
    idle: Option<&(IdleCpu, Adding, IdleCpu)>,
) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        "## herd schedules benchmark\n\n{} CPUs ({}), load average (1/5/15 min) at start {} and end {}, Linux {}; records in {db}; herd: `{}`\n\n",
        env["cpus"],
        env["cpu_model"].as_str().unwrap_or(""),
        env["loadavg_at_start"].as_str().unwrap_or(""),
        env["loadavg_at_end"].as_str().unwrap_or(""),
        env["kernel"].as_str().unwrap_or(""),
        env["herd"].as_str().unwrap_or(""),
    ));
    m.push_str("| Figure | herd | floor (same server, same run) | herd − floor (median) | Target | Result |\n");
    m.push_str("|---|---|---|---|---|---|\n");
    if let Some(j) = jitter {
        let n = j.fire.total_ms.n;
        m.push_str(&format!(
            "| Fire jitter, ms: a schedule firing `true` every second for {} s ({n} fires), the task's start (`started_at`) − the fire time; floor: `POST /api/v1/runs` of `true`, its task's start − the request sent | {} | {} | {:.1} | p99 ≤ {JITTER_P99_TARGET_MS} ms | {} |\n",
            j.duration_s,
            cell(&j.fire.total_ms),
            cell(&j.floor.total_ms),
            j.fire.total_ms.p50 - j.floor.total_ms.p50,
            ok(j.fire.total_ms.p99 <= JITTER_P99_TARGET_MS),
        ));
        m.push_str(&format!(
            "| The server's part, ms: the fire handled (its `at`) − the fire time; floor: the request sent → its run created | {} | {} | {:.1} | — | — |\n",
            cell(&j.handled_ms),
            cell(&j.floor.to_created_ms),
            j.handled_ms.p50 - j.floor.to_created_ms.p50,
        ));
    }
    if let Some((empty, adding, full)) = idle {
        m.push_str(&format!(
            "| Idle server CPU with {} schedules not due (`--cron '{NOT_DUE_CRON}'`), % of one core over {:.0} s; floor: the same server with none, just before | {} | {} | {:.2} | ≤ {IDLE_CPU_TARGET_PCT} % | {} |\n",
            thousands(adding.schedules),
            full.secs,
            cpu_cell(full),
            cpu_cell(empty),
            full.pct_one_core - empty.pct_one_core,
            ok(full.pct_one_core <= IDLE_CPU_TARGET_PCT),
        ));
        m.push_str(&format!(
            "| Adding them: {} `POST /api/v1/schedules`, {} at once | {:.2} s ({:.0} a second; a call {}) | — | — | seconds | — |\n",
            thousands(adding.schedules),
            adding.concurrency,
            adding.secs,
            adding.per_sec,
            cell(&adding.call_ms),
        ));
    }
    m.push_str("\nms cells: **median** (p10–p90; min–max), p99. CPU cells: **the whole stretch** (median of its windows; p10–p90; min–max). Times are the server's millisecond clock (a task's `started_at` is when the server handled the agent's report that the process started).\n");
    if let Some(j) = jitter {
        m.push_str(&format!(
            "\nFires in the window: {}{}. Floor runs whose task did not start: {}. CPU over the window, % of one core: server {:.2}, agent {:.2}.\n",
            j.outcomes
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            if j.fires_not_started > 0 {
                format!(" ({} started without a task start)", j.fires_not_started)
            } else {
                String::new()
            },
            j.floor_not_started,
            j.server_cpu_pct,
            j.agent_cpu_pct,
        ));
        m.push_str("\nWhere the time goes, ms, median / p99 / max (a task for an online agent is recorded sent when its run is created; the commit, the send, the agent starting the process and the server handling its report are all in the third column):\n\n");
        m.push_str("| Path | start → run created | run created → task sent | task sent → started on the agent | start → task started |\n");
        m.push_str("|---|---|---|---|---|\n");
        let three = |s: &Summary| format!("{:.1} / {:.1} / {:.1}", s.p50, s.p99, s.max);
        for (what, p) in [
            ("schedule (start = fire time)", &j.fire),
            ("`POST /api/v1/runs` (start = request sent)", &j.floor),
        ] {
            m.push_str(&format!(
                "| {what} | {} | {} | {} | {} |\n",
                three(&p.to_created_ms),
                three(&p.created_to_sent_ms),
                three(&p.sent_to_started_ms),
                three(&p.total_ms),
            ));
        }
    }
    if let Some((empty, adding, full)) = idle {
        m.push_str(&format!(
            "\nServer resident memory (VmRSS), MB: {:.1} idle with no schedule, {:.1} before adding, {:.1} after, {:.1} idle with them. Settled {} s before each idle sample.\n",
            empty.rss_mb,
            adding.server_rss_mb_before,
            adding.server_rss_mb_after,
            full.rss_mb,
            a.settle_secs,
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(created: i64, dispatched: i64, started: Option<i64>) -> Value {
        json!({"created_at": created, "tasks": [
            {"dispatched_at": dispatched, "started_at": started}
        ]})
    }

    #[test]
    fn fires_are_taken_apart_from_their_fire_time() {
        let mut fires = BTreeMap::new();
        fires.insert(
            1000,
            json!({"fire_at": 1000, "at": 1002, "outcome": "started", "run_id": "a"}),
        );
        fires.insert(
            2000,
            json!({"fire_at": 2000, "at": 2001, "outcome": "started", "run_id": "b"}),
        );
        fires.insert(
            3000,
            json!({"fire_at": 3000, "at": 3000, "outcome": "skipped"}),
        );
        // Outside the window.
        fires.insert(
            4000,
            json!({"fire_at": 4000, "at": 4001, "outcome": "started", "run_id": "c"}),
        );
        let mut runs = BTreeMap::new();
        runs.insert("a".to_string(), run(1003, 1003, Some(1010)));
        runs.insert("b".to_string(), run(2001, 2002, None));
        runs.insert("c".to_string(), run(4001, 4001, Some(4005)));
        let s = fire_samples(&fires, &runs, 1000, 4000);
        assert_eq!(s.handled_ms, vec![2.0, 1.0, 0.0]);
        assert_eq!(s.path.total_ms, vec![10.0]);
        assert_eq!(s.path.to_created_ms, vec![3.0]);
        assert_eq!(s.path.created_to_sent_ms, vec![0.0]);
        assert_eq!(s.path.sent_to_started_ms, vec![7.0]);
        assert_eq!(s.not_started, 1);
        assert_eq!(s.outcomes.get("started"), Some(&2));
        assert_eq!(s.outcomes.get("skipped"), Some(&1));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn run_times_need_a_started_task() {
        assert_eq!(
            run_times(100.0, &run(101, 102, Some(105))),
            Some(RunTimes {
                created: 1.0,
                dispatched: 2.0,
                started: 5.0
            })
        );
        assert_eq!(run_times(100.0, &run(101, 102, None)), None);
        assert_eq!(
            run_times(100.0, &json!({"created_at": 101, "tasks": []})),
            None
        );
    }
}
