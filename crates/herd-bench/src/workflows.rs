//! `herd-bench workflows`: the workflow engine end to end on one agent, beside the floor of
//! the same processes started in a row on the same machine. Three workloads: a chain of 40
//! `true` steps (each `needs` the one before), a chain of 40 python3 steps each computing
//! fibo(10) by naive recursion (Windmill's benchmark flow), and a fan-in of N parallel `true`
//! steps into one step that needs them all. Each workflow run is timed by the server's own
//! clock (`created_at` → `finished_at`); the chains are also timed as whole
//! `herd workflows run NAME -q -t AGENT` processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use crate::fleet::{self, Fleet};
use crate::stats::{self, Summary};

/// The chain of `true` steps, whole run: at most this, in seconds.
const CHAIN_TARGET_S: f64 = 0.4;
/// The python chain: at most its floor plus this, in seconds.
const FIBO_OVER_FLOOR_S: f64 = 0.4;
/// Windmill's published figure for its 40-step fibo(10) flow, seconds (an anchor, not
/// measured here).
const WINDMILL_ANCHOR: &str = "2–4 s";

/// fibo(10) by naive recursion, as each python step and the floor's `python3 -c` run it.
const FIBO: &str = "def fibo(n):\n    if n <= 1:\n        return n\n    return fibo(n - 1) + fibo(n - 2)\n\nprint(fibo(10))\n";

#[derive(Args, Clone)]
pub struct WorkflowsArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// Timed runs of each figure (the chains through the API and the CLI, their floors,
    /// each fan-in).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Untimed runs of each figure before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmups: usize,
    /// Steps of the two chains.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Parallel steps of the fan-ins (repeatable; each joined by one final step).
    #[arg(long = "fan-in", default_values_t = [100, 1000])]
    pub fan_in: Vec<usize>,
    /// The interpreter of the python steps and of its floor.
    #[arg(long, default_value = "python3")]
    pub python: String,
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

/// Where a chain's step spends its time, in ms: means over every step of every timed API
/// round, from the step rows and their runs' tasks (the server's millisecond clock).
#[derive(Serialize, Default, Clone)]
struct Breakdown {
    steps: usize,
    /// Previous step finished (or the workflow run created) → this step started.
    between_steps_ms: f64,
    /// Step started (its row written) → its run created.
    step_to_run_ms: f64,
    /// Run created → its task sent to the agent.
    run_to_dispatch_ms: f64,
    /// Task sent → the agent says it started.
    dispatch_to_start_ms: f64,
    /// Task started → exited (the process itself, as the agent reports it).
    process_ms: f64,
    /// Task finished (stored) → step finished.
    exit_to_step_end_ms: f64,
    /// Last step finished → workflow run finished.
    last_step_to_end_ms: f64,
}

#[derive(Serialize)]
struct Chain {
    name: String,
    steps: usize,
    /// created_at → finished_at of the workflow run, seconds.
    server_s: Summary,
    /// A whole `herd workflows run NAME -q -t AGENT` process, seconds.
    cli_s: Summary,
    /// The same processes started in a row by this bench, seconds.
    floor_s: Summary,
    floor_what: String,
    breakdown: Breakdown,
    /// CPU of the timed API rounds, ms per step.
    cpu_per_step: CpuPerStep,
    server_samples_s: Vec<f64>,
    cli_samples_s: Vec<f64>,
    floor_samples_s: Vec<f64>,
}

#[derive(Serialize)]
struct FanIn {
    parallel: usize,
    /// Every step: the parallel ones and the final one.
    steps: usize,
    server_s: Summary,
    /// server p50 / steps, ms.
    per_step_ms_p50: f64,
    /// Steps that ran at once at most (from the step rows), median over rounds.
    peak_running_p50: f64,
    /// Where the last timed round's time went.
    last_round: FanInTimes,
    /// CPU of the timed rounds, ms per step.
    cpu_per_step: CpuPerStep,
    server_samples_s: Vec<f64>,
}

pub async fn run(a: WorkflowsArgs) -> Result<()> {
    let herd = crate::spine::resolve_herd(a.herd.as_deref())?;
    if a.rounds == 0 || a.steps == 0 {
        bail!("--rounds and --steps must be at least 1");
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

async fn bench(a: &WorkflowsArgs, herd: &Path, dir: &Path) -> Result<()> {
    eprintln!("herd-bench: herd binary {}", herd.display());
    let (pybin, python) = python_bin(&a.python, dir)?;
    eprintln!(
        "herd-bench: python steps and floor run {} (linked as {})",
        python.display(),
        pybin.join(&a.python).display()
    );
    let load_start = crate::spine::loadavg();
    let db = crate::fleet::Db::new(a.database)?;
    // The agent finds the same interpreter first on PATH (`lang:` runs `/usr/bin/env NAME`).
    let path = std::env::var("PATH").unwrap_or_default();
    let agent = fleet::AgentSpec {
        name: fleet::AGENT_NAME.to_string(),
        labels: Vec::new(),
        wrap: vec!["env".into(), format!("PATH={}:{path}", pybin.display())],
    };
    let mut fleet = Fleet::start_agents(herd, dir, vec![agent], &db).await?;
    eprintln!(
        "herd-bench: server {} (pid {}, records in {}), agent {} (pid {}) online",
        fleet.url(),
        fleet.server.pid(),
        db.name(),
        fleet.agent().name,
        fleet.agent().pid()
    );

    let n = a.steps;
    let chain_name = format!("bench-true-{n}");
    apply(&fleet, &chain_yaml(&chain_name, n, "    run: \"true\"\n")).await?;
    let fibo_name = format!("bench-fibo-{n}");
    let script = format!(
        "    lang: {}\n    script: |\n{}",
        a.python,
        FIBO.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    apply(&fleet, &chain_yaml(&fibo_name, n, &script)).await?;

    let sh = vec!["sh".to_string(), "-c".into(), "true".into()];
    let py = vec![
        pybin.join(&a.python).display().to_string(),
        "-c".into(),
        FIBO.to_string(),
    ];
    let chain = measure_chain(a, &fleet, &chain_name, &sh, "`sh -c true`").await?;
    fleet.check_alive()?;
    let fibo = measure_chain(
        a,
        &fleet,
        &fibo_name,
        &py,
        &format!("`{} -c '<fibo(10) program>'`", python.display()),
    )
    .await?;
    fleet.check_alive()?;

    let mut fans = Vec::new();
    for &p in &a.fan_in {
        let name = format!("bench-fanin-{p}");
        apply(&fleet, &fan_in_yaml(&name, p)).await?;
        fans.push(measure_fan_in(a, &fleet, &name, p).await?);
        fleet.check_alive()?;
    }

    let env = crate::spine::environment(herd, &load_start);
    let md = markdown(a, &env, db.name(), &chain, &fibo, &fans);
    println!("{md}");
    if let Some(out) = &a.out {
        let v = json!({
            "bench": "workflows",
            "environment": env,
            "database": db.name(),
            "targets": {
                "chain_true_s_max": CHAIN_TARGET_S,
                "chain_fibo_over_floor_s_max": FIBO_OVER_FLOOR_S,
                "windmill_anchor": WINDMILL_ANCHOR,
            },
            "met": {
                "chain_true_server": chain.server_s.p50 <= CHAIN_TARGET_S,
                "chain_true_cli": chain.cli_s.p50 <= CHAIN_TARGET_S,
                "chain_fibo_server": fibo.server_s.p50 <= fibo.floor_s.p50 + FIBO_OVER_FLOOR_S,
                "chain_fibo_cli": fibo.cli_s.p50 <= fibo.floor_s.p50 + FIBO_OVER_FLOOR_S,
            },
            "chain_true": chain,
            "chain_fibo": fibo,
            "fan_in": fans,
            "fan_in_per_step_ratio": fan_ratio(&fans),
            "markdown": md,
        });
        crate::write_results(out, &v)?;
    }
    Ok(())
}

/// The interpreter `python` names on PATH, itself (`sys.executable`, not a launcher script
/// such as pyenv's shims, which cost more than the interpreter), linked as `dir/pybin/python`:
/// the directory and the interpreter.
fn python_bin(python: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    if python.contains('/') {
        bail!("--python {python:?}: give a name found on PATH, such as python3");
    }
    let run = |argv0: &Path, code: &str| {
        std::process::Command::new(argv0)
            .args(["-c", code])
            .output()
            .with_context(|| {
                format!(
                    "cannot run {} — install it or pass --python",
                    argv0.display()
                )
            })
    };
    let out = run(Path::new(python), "import sys; print(sys.executable)")?;
    let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !exe.is_absolute() {
        bail!(
            "{python} did not say where its interpreter is ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let pybin = dir.join("pybin");
    std::fs::create_dir_all(&pybin)
        .with_context(|| format!("cannot create {}", pybin.display()))?;
    let link = pybin.join(python);
    std::os::unix::fs::symlink(&exe, &link)
        .with_context(|| format!("cannot link {}", link.display()))?;
    let out = run(&link, FIBO)?;
    if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "55" {
        bail!(
            "{} -c '<fibo(10)>' did not print 55 ({}): {}",
            link.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((pybin, exe))
}

/// Steps `s1`..`sN`, each needing the one before, each with the action lines `action`.
fn chain_yaml(name: &str, n: usize, action: &str) -> String {
    let mut y = format!("name: {name}\nsteps:\n");
    for i in 1..=n {
        y.push_str(&format!("  - id: s{i}\n"));
        if i > 1 {
            y.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
        y.push_str(action);
    }
    y
}

/// Steps `p1`..`pN` in parallel, then `join` needing them all; every step runs `true`.
fn fan_in_yaml(name: &str, n: usize) -> String {
    let mut y = format!("name: {name}\nsteps:\n");
    for i in 1..=n {
        y.push_str(&format!("  - id: p{i}\n    run: \"true\"\n"));
    }
    let needs: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
    y.push_str(&format!(
        "  - id: join\n    needs: [{}]\n    run: \"true\"\n",
        needs.join(", ")
    ));
    y
}

pub(crate) async fn answer(resp: reqwest::Response, what: &str) -> Result<Value> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    if !status.is_success() {
        bail!(
            "{what} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{what}: bad JSON"))
}

pub(crate) async fn get(fleet: &Fleet, path: &str) -> Result<Value> {
    let resp = fleet
        .req(reqwest::Method::GET, path)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    answer(resp, &format!("GET {path}")).await
}

async fn apply(fleet: &Fleet, source: &str) -> Result<()> {
    let resp = fleet
        .req(reqwest::Method::POST, "/api/v1/workflows")
        .json(&json!({ "source": source }))
        .send()
        .await
        .context("POST /api/v1/workflows")?;
    answer(resp, "POST /api/v1/workflows").await?;
    Ok(())
}

/// Starts workflow `name` on the bench's agent and polls it (every `poll`) until it ends;
/// the finished run, which must have succeeded.
async fn flow_api(fleet: &Fleet, name: &str, poll: Duration) -> Result<Value> {
    let what = format!("POST /api/v1/workflows/{name}/runs");
    let resp = fleet
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/workflows/{name}/runs"),
        )
        .json(&json!({ "params": {}, "targets": [fleet.agent().name] }))
        .send()
        .await
        .with_context(|| what.clone())?;
    let run = answer(resp, &what).await?;
    let id = run["id"]
        .as_str()
        .with_context(|| format!("{what}: no id in {run}"))?
        .to_string();
    let path = format!("/api/v1/workflow-runs/{id}");
    loop {
        tokio::time::sleep(poll).await;
        let run = get(fleet, &path).await?;
        match run["state"].as_str() {
            Some("succeeded") => return Ok(run),
            Some("failed" | "cancelled") => {
                let bad: Vec<String> = run["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["state"] != "succeeded")
                    .take(3)
                    .map(|s| format!("{} {} {}", s["id"], s["state"], s["detail"]))
                    .collect();
                bail!(
                    "workflow {name} run {id} ended {}: {}",
                    run["state"],
                    bad.join("; ")
                );
            }
            _ => {}
        }
    }
}

/// created_at → finished_at of a finished workflow run, seconds.
fn server_secs(run: &Value) -> Result<f64> {
    match (run["created_at"].as_i64(), run["finished_at"].as_i64()) {
        (Some(a), Some(b)) => Ok((b - a) as f64 / 1e3),
        _ => bail!("workflow run without created_at/finished_at: {run}"),
    }
}

/// One whole `herd workflows run NAME -q -t AGENT` process; its wall time in seconds.
async fn flow_cli(fleet: &Fleet, name: &str) -> Result<f64> {
    let mut cmd = fleet::cli(&fleet.server);
    cmd.args(["workflows", "run", name, "-q", "-t", &fleet.agent().name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let out = cmd
        .spawn()
        .context("cannot run herd workflows run")?
        .wait_with_output()
        .await
        .context("cannot run herd workflows run")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "herd workflows run {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(secs)
}

/// `argv` started `n` times in a row, each waited for; the wall time in seconds.
fn floor(argv: &[String], n: usize) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        let st = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", argv[0]))?;
        if !st.success() {
            bail!("{} failed ({st})", argv.join(" "));
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn measure_chain(
    a: &WorkflowsArgs,
    fleet: &Fleet,
    name: &str,
    floor_argv: &[String],
    floor_what: &str,
) -> Result<Chain> {
    eprintln!(
        "herd-bench: {name}: {} warm-ups, {} timed rounds (API, CLI, floor alternately)",
        a.warmups, a.rounds
    );
    let poll = Duration::from_millis(20);
    for _ in 0..a.warmups {
        flow_api(fleet, name, poll).await?;
        flow_cli(fleet, name).await?;
        fleet::blocking(|| floor(floor_argv, a.steps))?;
    }
    let (mut server, mut cli, mut flr) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_sum = CpuPerStep::default();
    let mut runs = Vec::new();
    for r in 0..a.rounds {
        let c0 = cpu(fleet)?;
        let run = flow_api(fleet, name, poll).await?;
        cpu_sum.add(&cpu(fleet)?, &c0);
        server.push(server_secs(&run)?);
        cli.push(flow_cli(fleet, name).await?);
        flr.push(fleet::blocking(|| floor(floor_argv, a.steps))?);
        eprintln!(
            "herd-bench:   round {}: server {:.3} s, CLI {:.3} s, floor {:.3} s",
            r + 1,
            server[r],
            cli[r],
            flr[r]
        );
        runs.push(run);
    }
    let breakdown = breakdown(fleet, &runs).await?;
    Ok(Chain {
        name: name.to_string(),
        steps: a.steps,
        server_s: stats::summarize(&server),
        cli_s: stats::summarize(&cli),
        floor_s: stats::summarize(&flr),
        floor_what: format!("{floor_what} × {}", a.steps),
        breakdown,
        cpu_per_step: cpu_sum.per_step(a.rounds * a.steps),
        server_samples_s: server,
        cli_samples_s: cli,
        floor_samples_s: flr,
    })
}

/// CPU time (utime+stime) of the server, the agent, and the agent's finished children (the
/// tasks' processes), ms.
#[derive(Serialize, Clone, Copy, Default)]
struct CpuPerStep {
    server_ms: f64,
    agent_ms: f64,
    tasks_ms: f64,
}

impl CpuPerStep {
    fn add(&mut self, now: &CpuPerStep, before: &CpuPerStep) {
        self.server_ms += now.server_ms - before.server_ms;
        self.agent_ms += now.agent_ms - before.agent_ms;
        self.tasks_ms += now.tasks_ms - before.tasks_ms;
    }

    fn per_step(&self, steps: usize) -> CpuPerStep {
        let n = steps.max(1) as f64;
        CpuPerStep {
            server_ms: self.server_ms / n,
            agent_ms: self.agent_ms / n,
            tasks_ms: self.tasks_ms / n,
        }
    }
}

fn cpu(fleet: &Fleet) -> Result<CpuPerStep> {
    let (s, a) = (fleet.server.pid(), fleet.agent().pid());
    Ok(CpuPerStep {
        server_ms: stats::proc_cpu_secs(s)? * 1e3,
        agent_ms: stats::proc_cpu_secs(a)? * 1e3,
        tasks_ms: stats::proc_children_cpu_secs(a)? * 1e3,
    })
}

/// One step of a finished workflow run on the server's clock, ms since the workflow run was
/// created: the step's row started, its run created, its task sent to the agent, started
/// there, exited, the step's row finished.
#[derive(Serialize, Clone, Copy, Default)]
struct StepTimes {
    step_start: f64,
    run_created: f64,
    dispatched: f64,
    task_started: f64,
    task_finished: f64,
    step_end: f64,
}

/// Every step's [`StepTimes`] (one GET of its run each), in the run's order.
async fn step_times(fleet: &Fleet, run: &Value) -> Result<Vec<StepTimes>> {
    let ms = |v: &Value| v.as_i64().map(|x| x as f64);
    let t0 = ms(&run["created_at"]).context("a workflow run without created_at")?;
    let steps = run["steps"].as_array().context("a run without steps")?;
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        let (Some(s0), Some(s1), Some(rid)) = (
            ms(&s["started_at"]),
            ms(&s["finished_at"]),
            s["run_id"].as_str(),
        ) else {
            bail!("a finished step without times or run: {s}");
        };
        let r = get(fleet, &format!("/api/v1/runs/{rid}")).await?;
        let t = &r["tasks"][0];
        let (Some(rc), Some(td), Some(ts), Some(tf)) = (
            ms(&r["created_at"]),
            ms(&t["dispatched_at"]),
            ms(&t["started_at"]),
            ms(&t["finished_at"]),
        ) else {
            bail!("a finished run without its task's times: {r}");
        };
        out.push(StepTimes {
            step_start: s0 - t0,
            run_created: rc - t0,
            dispatched: td - t0,
            task_started: ts - t0,
            task_finished: tf - t0,
            step_end: s1 - t0,
        });
    }
    Ok(out)
}

/// The chains' step path taken apart, from finished runs (read after the timing).
async fn breakdown(fleet: &Fleet, runs: &[Value]) -> Result<Breakdown> {
    let mut b = Breakdown::default();
    for run in runs {
        let mut prev_end = 0.0;
        for t in step_times(fleet, run).await? {
            b.between_steps_ms += t.step_start - prev_end;
            b.step_to_run_ms += t.run_created - t.step_start;
            b.run_to_dispatch_ms += t.dispatched - t.run_created;
            b.dispatch_to_start_ms += t.task_started - t.dispatched;
            b.process_ms += t.task_finished - t.task_started;
            b.exit_to_step_end_ms += t.step_end - t.task_finished;
            b.steps += 1;
            prev_end = t.step_end;
        }
        let end = server_secs(run)? * 1e3;
        b.last_step_to_end_ms += end - prev_end;
    }
    let n = b.steps.max(1) as f64;
    b.between_steps_ms /= n;
    b.step_to_run_ms /= n;
    b.run_to_dispatch_ms /= n;
    b.dispatch_to_start_ms /= n;
    b.process_ms /= n;
    b.exit_to_step_end_ms /= n;
    b.last_step_to_end_ms /= runs.len().max(1) as f64;
    Ok(b)
}

/// When the parallel steps of a fan-in's last round reached each point, ms since the
/// workflow run was created: (p50, max) over the parallel steps, then the final step's times.
#[derive(Serialize, Clone, Default)]
struct FanInTimes {
    /// (median, last) over the parallel steps.
    run_created: (f64, f64),
    dispatched: (f64, f64),
    task_started: (f64, f64),
    task_finished: (f64, f64),
    step_end: (f64, f64),
    join: StepTimes,
}

fn fan_in_times(times: &[StepTimes]) -> FanInTimes {
    let Some((join, par)) = times.split_last() else {
        return FanInTimes::default();
    };
    let pick = |f: fn(&StepTimes) -> f64| {
        let mut v: Vec<f64> = par.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        (
            stats::percentile(&v, 0.5),
            v.last().copied().unwrap_or(f64::NAN),
        )
    };
    FanInTimes {
        run_created: pick(|t| t.run_created),
        dispatched: pick(|t| t.dispatched),
        task_started: pick(|t| t.task_started),
        task_finished: pick(|t| t.task_finished),
        step_end: pick(|t| t.step_end),
        join: *join,
    }
}

/// Steps running at once at most, from the rows' start and end times.
fn peak_running(run: &Value) -> usize {
    let mut ev: Vec<(i64, i32)> = Vec::new();
    for s in run["steps"].as_array().into_iter().flatten() {
        if let (Some(a), Some(b)) = (s["started_at"].as_i64(), s["finished_at"].as_i64()) {
            ev.push((a, 1));
            ev.push((b, -1));
        }
    }
    // Ends before starts at the same millisecond.
    ev.sort();
    let (mut cur, mut peak) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        peak = peak.max(cur);
    }
    peak.max(0) as usize
}

async fn measure_fan_in(
    a: &WorkflowsArgs,
    fleet: &Fleet,
    name: &str,
    parallel: usize,
) -> Result<FanIn> {
    eprintln!(
        "herd-bench: {name}: {} warm-ups, {} timed rounds",
        a.warmups.min(1),
        a.rounds
    );
    // Polling reads every step; keep it sparse beside the run.
    let poll = Duration::from_millis((parallel as u64 / 5).clamp(20, 250));
    for _ in 0..a.warmups.min(1) {
        flow_api(fleet, name, poll).await?;
    }
    let mut server = Vec::new();
    let mut peaks = Vec::new();
    let mut last = Value::Null;
    let mut cpu_sum = CpuPerStep::default();
    for r in 0..a.rounds {
        let c0 = cpu(fleet)?;
        let run = flow_api(fleet, name, poll).await?;
        cpu_sum.add(&cpu(fleet)?, &c0);
        server.push(server_secs(&run)?);
        peaks.push(peak_running(&run) as f64);
        eprintln!(
            "herd-bench:   round {}: server {:.3} s ({} at once at most)",
            r + 1,
            server[r],
            peaks[r]
        );
        last = run;
    }
    let last_round = fan_in_times(&step_times(fleet, &last).await?);
    let s = stats::summarize(&server);
    let steps = parallel + 1;
    Ok(FanIn {
        parallel,
        steps,
        per_step_ms_p50: s.p50 / steps as f64 * 1e3,
        peak_running_p50: stats::summarize(&peaks).p50,
        last_round,
        cpu_per_step: cpu_sum.per_step(a.rounds * steps),
        server_s: s,
        server_samples_s: server,
    })
}

/// Per-step time of the largest fan-in over the smallest's (1 = linear).
fn fan_ratio(fans: &[FanIn]) -> Option<f64> {
    let lo = fans.iter().min_by_key(|f| f.parallel)?;
    let hi = fans.iter().max_by_key(|f| f.parallel)?;
    (hi.parallel > lo.parallel).then(|| hi.per_step_ms_p50 / lo.per_step_ms_p50)
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "**MISSED**" }
}

/// median (p10–p90; min–max), seconds.
fn cell(s: &Summary) -> String {
    format!(
        "**{:.3}** ({:.3}–{:.3}; {:.3}–{:.3})",
        s.p50, s.p10, s.p90, s.min, s.max
    )
}

fn markdown(
    a: &WorkflowsArgs,
    env: &Value,
    db: &str,
    chain: &Chain,
    fibo: &Chain,
    fans: &[FanIn],
) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        "## herd workflows benchmark\n\n{} CPUs ({}), load average (1/5/15 min) at start {} and end {}, Linux {}; records in {db}; herd: `{}`; {} warm-ups, {} timed rounds per figure\n\n",
        env["cpus"],
        env["cpu_model"].as_str().unwrap_or(""),
        env["loadavg_at_start"].as_str().unwrap_or(""),
        env["loadavg_at_end"].as_str().unwrap_or(""),
        env["kernel"].as_str().unwrap_or(""),
        env["herd"].as_str().unwrap_or(""),
        a.warmups,
        a.rounds,
    ));
    m.push_str("Each cell: seconds, **median** (p10–p90; min–max) over the timed rounds.\n\n");
    m.push_str(
        "| Workload | herd | floor (same machine, same run) | herd − floor | Target | Result |\n",
    );
    m.push_str("|---|---|---|---|---|---|\n");
    let n = chain.steps;
    for (what, s) in [
        (
            "server: workflow run created_at → finished_at",
            &chain.server_s,
        ),
        (
            "whole `herd workflows run NAME -q -t AGENT` process",
            &chain.cli_s,
        ),
    ] {
        m.push_str(&format!(
            "| {n} sequential `true` steps, {what} | {} | {} | {:.3} | ≤ {CHAIN_TARGET_S} s | {} |\n",
            cell(s),
            cell(&chain.floor_s),
            s.p50 - chain.floor_s.p50,
            ok(s.p50 <= CHAIN_TARGET_S),
        ));
    }
    for (what, s) in [
        ("server: created_at → finished_at", &fibo.server_s),
        ("whole `herd workflows run` process", &fibo.cli_s),
    ] {
        m.push_str(&format!(
            "| {n} sequential `lang: {}` steps computing fibo(10), {what} (Windmill publishes {WINDMILL_ANCHOR} for this flow on its engine; not measured here) | {} | {} | {:.3} | ≤ floor + {FIBO_OVER_FLOOR_S} s | {} |\n",
            a.python,
            cell(s),
            cell(&fibo.floor_s),
            s.p50 - fibo.floor_s.p50,
            ok(s.p50 <= fibo.floor_s.p50 + FIBO_OVER_FLOOR_S),
        ));
    }
    for f in fans {
        m.push_str(&format!(
            "| Fan-in: {} parallel `true` steps → 1 step needing them all, server: created_at → finished_at | {} ({:.2} ms per step; at most {:.0} running at once) | — | — | no quadratic slow-down | see below |\n",
            f.parallel,
            cell(&f.server_s),
            f.per_step_ms_p50,
            f.peak_running_p50,
        ));
    }
    m.push_str(&format!(
        "\nFloors: {} and {}, started in a row by the bench and waited for one by one.\n",
        chain.floor_what, fibo.floor_what
    ));
    if let Some(r) = fan_ratio(fans) {
        let lo = fans.iter().map(|f| f.parallel).min().unwrap_or(0);
        let hi = fans.iter().map(|f| f.parallel).max().unwrap_or(0);
        m.push_str(&format!(
            "\nFan-in per-step time at {hi} over {lo}: {r:.2}× ({}; 1 = linear, {:.0} = quadratic).\n",
            if r <= 2.0 { "no quadratic slow-down" } else { "**slower per step as it grows**" },
            hi as f64 / lo as f64,
        ));
    }
    if !fans.is_empty() {
        m.push_str("\nWhere a fan-in's time goes (its last timed round; ms since the workflow run was created, on the server's clock; median / last of the parallel steps):\n\n");
        m.push_str("| Parallel steps | runs created | tasks sent | tasks started on the agent | tasks exited | steps ended | final step: started / run created / task started / exited / ended |\n");
        m.push_str("|---|---|---|---|---|---|---|\n");
        for f in fans {
            let t = &f.last_round;
            let two = |p: (f64, f64)| format!("{:.0} / {:.0}", p.0, p.1);
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} / {:.0} / {:.0} |\n",
                f.parallel,
                two(t.run_created),
                two(t.dispatched),
                two(t.task_started),
                two(t.task_finished),
                two(t.step_end),
                t.join.step_start,
                t.join.run_created,
                t.join.task_started,
                t.join.task_finished,
                t.join.step_end,
            ));
        }
    }
    m.push_str("\nCPU per step (utime+stime over the timed API rounds, ms; the tasks' processes are the agent's children, counted once they exit):\n\n");
    m.push_str("| Workflow | server | agent | tasks' processes | total |\n|---|---|---|---|---|\n");
    let mut cpu_rows: Vec<(String, CpuPerStep)> = vec![
        (chain.name.clone(), chain.cpu_per_step),
        (fibo.name.clone(), fibo.cpu_per_step),
    ];
    for f in fans {
        cpu_rows.push((format!("fan-in {}", f.parallel), f.cpu_per_step));
    }
    for (name, c) in cpu_rows {
        m.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            c.server_ms,
            c.agent_ms,
            c.tasks_ms,
            c.server_ms + c.agent_ms + c.tasks_ms
        ));
    }
    m.push_str("\nWhere a chain's step spends its time (ms, mean per step over the timed API rounds, the server's millisecond clock):\n\n");
    m.push_str("| Chain | steps | previous step end → step start | step start → its run created | run created → task sent | sent → started on the agent | the process | exit → step end | last step → workflow end |\n");
    m.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for c in [chain, fibo] {
        let b = &c.breakdown;
        m.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            c.name,
            b.steps,
            b.between_steps_ms,
            b.step_to_run_ms,
            b.run_to_dispatch_ms,
            b.dispatch_to_start_ms,
            b.process_ms,
            b.exit_to_step_end_ms,
            b.last_step_to_end_ms,
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_workflows_check_out() {
        let chain = chain_yaml("c", 3, "    run: \"true\"\n");
        let wf = herd_workflow_shape(&chain);
        assert_eq!(
            wf,
            vec![("s1", vec![]), ("s2", vec!["s1"]), ("s3", vec!["s2"])]
        );
        let fan = fan_in_yaml("f", 2);
        assert!(fan.contains("  - id: join\n    needs: [p1, p2]\n"));
    }

    /// (id, needs) of each step, read back from the generated text.
    fn herd_workflow_shape(y: &str) -> Vec<(&str, Vec<&str>)> {
        let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
        for l in y.lines() {
            if let Some(id) = l.strip_prefix("  - id: ") {
                out.push((id, vec![]));
            } else if let Some(n) = l.strip_prefix("    needs: [")
                && let Some(last) = out.last_mut()
            {
                last.1 = n.trim_end_matches(']').split(", ").collect();
            }
        }
        out
    }

    #[test]
    fn peak_counts_overlaps() {
        let run = json!({"steps": [
            {"started_at": 0, "finished_at": 10},
            {"started_at": 5, "finished_at": 15},
            {"started_at": 10, "finished_at": 20},
        ]});
        assert_eq!(peak_running(&run), 2);
    }
}
