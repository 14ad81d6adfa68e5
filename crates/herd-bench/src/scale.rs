//! `herd-bench scale`: one `herd server` and a simulated fleet (`herd bench fleet`, N light
//! agents in one process, each its own identity and connection). Measures the time for all
//! N to connect, `true` on all N (request → every result in, at the API), the server idle
//! with N agents heartbeating, a reconnect storm after the server is SIGKILLed, and
//! optionally a soak (a fan-out every second) checking that no result is lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use herd_testkit::Fleet;
use serde_json::{Value, json};

use crate::fleet::{self, blocking};
use crate::stats;

#[derive(Args, Clone)]
pub struct ScaleArgs {
    /// The RELEASE herd binary (default: next to this binary, else $CARGO_TARGET_DIR/release).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Timed fan-outs of `true` on every agent.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Seconds to sample the idle server.
    #[arg(long, default_value_t = 30)]
    pub idle_secs: u64,
    /// Kill the server with SIGKILL, restart it and time the reconnect storm.
    #[arg(long)]
    pub storm: bool,
    /// Run a fan-out of `true` every second for this many seconds and check every result.
    #[arg(long, default_value_t = 0)]
    pub soak_secs: u64,
    /// Keep the temp dir.
    #[arg(long)]
    pub keep: bool,
    /// The fleet answers every task at once without starting a process: measures what the
    /// server takes (dispatch and results persisted) without the machine's process starts.
    #[arg(long)]
    pub no_process: bool,
    /// Where the server keeps its records.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: crate::fleet::Store,
}

struct Api {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| path.to_string())?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .with_context(|| format!("{path}: bad JSON"))?;
        if !status.is_success() {
            bail!("{path}: {status}: {}", v["error"]);
        }
        Ok(v)
    }

    async fn online(&self) -> usize {
        match self
            .call(reqwest::Method::GET, "/api/v1/agents", None)
            .await
        {
            Ok(v) => v
                .as_array()
                .map(|a| a.iter().filter(|x| x["online"] == true).count())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// `true` on every agent; returns the wall time and where it went, after checking every
    /// task succeeded.
    async fn fan_out(&self, want: usize) -> Result<Round> {
        let t0 = Instant::now();
        let v = self
            .call(
                reqwest::Method::POST,
                "/api/v1/runs?wait=true",
                Some(json!({"command": "true", "all": true})),
            )
            .await?;
        let secs = t0.elapsed().as_secs_f64();
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        let ok = tasks.iter().filter(|t| t["state"] == "succeeded").count();
        if tasks.len() != want || ok != want {
            bail!(
                "fan-out: {ok} of {} tasks succeeded, {want} machines expected",
                tasks.len()
            );
        }
        // Phases from the stored times (ms since the epoch, server clock).
        let times =
            |key: &str| -> Vec<i64> { tasks.iter().filter_map(|t| t[key].as_i64()).collect() };
        let created = times("created_at").into_iter().min().unwrap_or(0);
        let since = |v: Option<i64>| v.map_or(f64::NAN, |t| (t - created) as f64 / 1000.0);
        let started = times("started_at");
        Ok(Round {
            secs,
            first_start: since(started.iter().copied().min()),
            last_start: since(started.iter().copied().max()),
            last_end: since(times("finished_at").into_iter().max()),
        })
    }
}

/// One timed fan-out.
struct Round {
    secs: f64,
    /// Seconds from the run's creation to the first and last process start, and the last end.
    first_start: f64,
    last_start: f64,
    last_end: f64,
}

/// CPU seconds used so far by the server, the fleet, its process runner, and the whole
/// machine (busy time of all cores).
fn cpu_now(server: u32, fleet: u32, runner: Option<u32>) -> [f64; 4] {
    let machine = stats::machine_ticks().map_or(f64::NAN, |(busy, _)| busy / stats::clk_tck());
    [
        stats::proc_cpu_secs(server).unwrap_or(f64::NAN),
        stats::proc_cpu_secs(fleet).unwrap_or(f64::NAN),
        runner.map_or(f64::NAN, |p| stats::proc_cpu_secs(p).unwrap_or(f64::NAN)),
        machine,
    ]
}

/// The first child process of `pid` (the fleet's process runner).
fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rss_mb(pid: u32) -> f64 {
    stats::proc_status_bytes(pid, "VmRSS").unwrap_or(0) as f64 / 1e6
}

async fn wait_online(api: &Api, n: usize, timeout: Duration) -> Result<f64> {
    let t0 = Instant::now();
    loop {
        if api.online().await >= n {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > timeout {
            bail!(
                "only {} of {n} agents online after {timeout:?}",
                api.online().await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(a: ScaleArgs, herd: PathBuf) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-scale-")
        .tempdir()
        .context("temp dir")?;
    let dir = tmp.path().to_path_buf();
    if a.keep {
        eprintln!("keeping {}", dir.display());
        std::mem::forget(tmp);
    }
    let db = fleet::Db::new(a.database)?;
    let mut server = fleet::start_server(&herd, &dir, "127.0.0.1:0", &db)?;
    let api = Api {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()
            .context("HTTP client")?,
        url: server.url.clone(),
        key: server.key.clone(),
    };
    let token = blocking(|| server.join_token(a.agents))?;

    eprintln!("starting {} simulated agents…", a.agents);
    let t0 = Instant::now();
    let extra: &[&str] = if a.no_process { &["--no-process"] } else { &[] };
    // Killed when this function ends.
    let fleet = blocking(|| -> Result<Fleet> {
        let fleet = Fleet::start_with(&server, a.agents, &token, extra)?;
        fleet.wait_ready(Duration::from_secs(600))?;
        Ok(fleet)
    })?;
    let fleet_pid = fleet.pid();
    let connect_secs = t0.elapsed().as_secs_f64();
    wait_online(&api, a.agents, Duration::from_secs(60)).await?;

    // Fan-outs.
    api.fan_out(a.agents).await?;
    let runner_pid = child_of(fleet_pid);
    let mut times = Vec::new();
    let mut rounds = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..a.rounds {
        let c0 = cpu_now(server.pid(), fleet_pid, runner_pid);
        let round = api.fan_out(a.agents).await?;
        let c1 = cpu_now(server.pid(), fleet_pid, runner_pid);
        times.push(round.secs);
        rounds.push(round);
        cpu.push([c1[0] - c0[0], c1[1] - c0[1], c1[2] - c0[2], c1[3] - c0[3]]);
    }
    let fan = stats::summarize(&times);
    let med = |f: &dyn Fn(usize) -> f64| {
        let v: Vec<f64> = (0..rounds.len()).map(f).collect();
        stats::summarize(&v).p50
    };
    let phases = [
        med(&|i| rounds[i].first_start),
        med(&|i| rounds[i].last_start),
        med(&|i| rounds[i].last_end),
    ];
    let cpu_med: Vec<f64> = (0..4).map(|k| med(&|i| cpu[i][k])).collect();

    // Idle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0 = stats::proc_cpu_secs(server.pid())?;
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
    let idle_cpu =
        (stats::proc_cpu_secs(server.pid())? - cpu0) / w0.elapsed().as_secs_f64() * 100.0;
    let idle_rss = rss_mb(server.pid());
    let fleet_rss = rss_mb(fleet_pid);

    println!(
        "herd-bench scale: {} simulated agents, one server ({}){}",
        a.agents,
        db.name(),
        if a.no_process {
            "; the fleet answers tasks without starting processes"
        } else {
            ""
        }
    );
    println!("  all connected (join + session)     {connect_secs:.1} s");
    println!(
        "  `true` on all {}{}, all results in   min {:.3} / median {:.3} / max {:.3} s (n={})  → {:.0} results/s persisted",
        a.agents,
        if a.no_process { " (not run)" } else { "" },
        fan.min,
        fan.p50,
        fan.max,
        times.len(),
        a.agents as f64 / fan.p50
    );
    if !rounds.is_empty() {
        println!(
            "    per fan-out (medians): first process started {:.2} s after the run was created, last started {:.2} s, last ended {:.2} s",
            phases[0], phases[1], phases[2]
        );
        let others = cpu_med[3] - cpu_med[0] - cpu_med[1] - cpu_med[2];
        println!(
            "    CPU s per fan-out (medians): server {:.2}, fleet {:.2}, its process runner {:.2}, everything else ({}kernel, this harness) {:.2}; machine {:.2} of {:.2} core-s",
            cpu_med[0],
            cpu_med[1],
            cpu_med[2],
            if a.no_process {
                String::new()
            } else {
                format!("the {} processes, ", a.agents)
            },
            others,
            cpu_med[3],
            fan.p50 * stats::cpus() as f64
        );
    }
    println!(
        "  idle server, agents heartbeating    RSS {idle_rss:.0} MB, CPU {idle_cpu:.1} % of a core over {} s",
        a.idle_secs
    );
    println!("  simulated fleet process            RSS {fleet_rss:.0} MB");

    if a.storm {
        server.kill9();
        let t0 = Instant::now();
        blocking(|| server.restart()).context("cannot restart herd server")?;
        let pid = server.pid();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p2 = peak.clone();
        let sampler = tokio::spawn(async move {
            loop {
                let r = stats::proc_status_bytes(pid, "VmRSS").unwrap_or(0);
                p2.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        wait_online(&api, a.agents, Duration::from_secs(300)).await?;
        let online = t0.elapsed().as_secs_f64();
        let fan_secs = api.fan_out(a.agents).await?.secs;
        let serving = t0.elapsed().as_secs_f64();
        sampler.abort();
        println!(
            "  reconnect storm after SIGKILL       all {} back in {online:.1} s; a fan-out on all done {serving:.1} s after restart ({fan_secs:.2} s); peak RSS {:.0} MB",
            a.agents,
            peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
        );
    }

    if a.soak_secs > 0 {
        let mut runs = Vec::new();
        let mut rss = Vec::new();
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while t0.elapsed() < Duration::from_secs(a.soak_secs) {
            tick.tick().await;
            let v = api
                .call(
                    reqwest::Method::POST,
                    "/api/v1/runs",
                    Some(json!({"command": "true", "all": true})),
                )
                .await?;
            runs.push(v["id"].as_str().unwrap_or_default().to_string());
            if runs.len() % 10 == 1 {
                rss.push(rss_mb(server.pid()));
            }
        }
        // Every run must finish with every task succeeded.
        let mut ok = 0usize;
        for id in &runs {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let v = api
                    .call(reqwest::Method::GET, &format!("/api/v1/runs/{id}"), None)
                    .await?;
                if v["finished_at"].is_number() {
                    let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
                    ok += tasks.iter().filter(|t| t["state"] == "succeeded").count();
                    break;
                }
                if Instant::now() > deadline {
                    bail!("soak: run {id} did not finish");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let want = runs.len() * a.agents;
        println!(
            "  soak: {} fan-outs in {} s, {ok}/{want} results succeeded; server RSS first {:.0} / last {:.0} / max {:.0} MB",
            runs.len(),
            a.soak_secs,
            rss.first().copied().unwrap_or(0.0),
            rss.last().copied().unwrap_or(0.0),
            rss.iter().copied().fold(0.0, f64::max)
        );
        let series: Vec<String> = rss.iter().step_by(3).map(|m| format!("{m:.0}")).collect();
        println!(
            "    server RSS every 30 s (MB): {}; fleet RSS at the end {:.0} MB",
            series.join(" "),
            rss_mb(fleet_pid)
        );
        if ok != want {
            bail!("soak lost results: {ok} of {want}");
        }
    }
    drop(fleet);
    drop(server);
    Ok(())
}
