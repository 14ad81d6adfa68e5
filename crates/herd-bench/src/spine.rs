//! `herd-bench spine`: the three spine figures of herd beside ssh, as a Markdown table
//! (stdout) and JSON (`--out`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::SpineArgs;
use crate::fleet::{self, Fleet};
use crate::ssh::Ssh;
use crate::stats::{self, Summary};

const RTT_TARGET_MS: f64 = 5.0;
/// Whole-process `herd run -t M -- true` against `ssh` over a ControlMaster connection:
/// ssh p50 / herd p50 at least this.
const CLI_RATIO_TARGET: f64 = 10.0;
const THROUGHPUT_TARGET_RATIO: f64 = 3.0;
const IDLE_RSS_TARGET_MB: f64 = 15.0;
/// What the bench takes as "CPU near zero" for an idle agent.
const IDLE_CPU_TARGET_PCT: f64 = 1.0;

#[derive(Serialize)]
struct RoundTrip {
    herd_ms: Summary,
    ssh_ms: Option<Summary>,
    /// ssh p50 / herd p50.
    ratio_p50: Option<f64>,
    herd_samples_ms: Vec<f64>,
    ssh_samples_ms: Vec<f64>,
    /// Whole process: `herd run -t M -- true` (CLI start, API call, WebSocket follow, exit),
    /// timed alternately with the ssh rounds.
    herd_cli_ms: Summary,
    /// ssh p50 / herd CLI p50.
    cli_ratio_p50: Option<f64>,
    herd_cli_samples_ms: Vec<f64>,
}

#[derive(Serialize)]
struct StreamRun {
    secs: f64,
    /// The stream size over the wall time (the figure).
    mb_per_s: f64,
    /// Bytes the client actually received (stream size minus omitted) over the wall time.
    delivered_mb_per_s: f64,
    /// CPU seconds of the CLI (herd run / ssh client), from this process's cutime+cstime.
    client_cpu_s: f64,
    /// CPU seconds of the herd server / agent during the run (herd only).
    server_cpu_s: Option<f64>,
    agent_cpu_s: Option<f64>,
    /// Average cores busy on the whole machine during the run.
    machine_busy_cores: f64,
    /// Bytes the herd CLI reported as omitted (`[herd: N bytes of … omitted …]`): output it
    /// never received because it fell behind the server's stored-output cap.
    omitted_bytes: u64,
}

#[derive(Serialize)]
struct Throughput {
    bytes: u64,
    herd_mb_per_s: Summary,
    ssh_mb_per_s: Option<Summary>,
    /// herd median / ssh median.
    ratio_median: Option<f64>,
    /// Like herd_mb_per_s, counting only the bytes the CLI received.
    herd_delivered_mb_per_s: Summary,
    /// herd delivered median / ssh median; the target is judged on this.
    ratio_delivered_median: Option<f64>,
    herd_runs: Vec<StreamRun>,
    ssh_runs: Vec<StreamRun>,
}

#[derive(Serialize)]
struct Idle {
    secs: f64,
    settle_secs: u64,
    rss_mb_last: f64,
    rss_mb_max: f64,
    rss_mb_after_join: f64,
    hwm_mb: f64,
    cpu_s: f64,
    cpu_pct_one_core: f64,
    server_rss_mb: f64,
    server_cpu_pct_one_core: f64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The herd binary to measure: `explicit`, else `herd` next to this binary, else
/// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd.
pub fn resolve_herd(explicit: Option<&Path>) -> Result<PathBuf> {
    let p = if let Some(p) = explicit {
        p.to_path_buf()
    } else {
        let mut cands = Vec::new();
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
        {
            cands.push(dir.join("herd"));
        }
        if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
            cands.push(PathBuf::from(t).join("release").join("herd"));
        }
        cands.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/release/herd")
                .to_path_buf(),
        );
        match cands.iter().find(|c| c.is_file()) {
            Some(c) => c.clone(),
            None => bail!(
                "no release herd binary found (looked at {}) — build it with `cargo build --release -p herd` or pass --herd",
                cands
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    if !p.is_file() {
        bail!(
            "{} is not a file — pass --herd PATH to a release herd binary",
            p.display()
        );
    }
    let p = p
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", p.display()))?;
    if p.components().any(|c| c.as_os_str() == "debug") {
        eprintln!(
            "herd-bench: warning: {} looks like a debug build; figures will not be representative",
            p.display()
        );
    }
    Ok(p)
}

pub async fn run(a: SpineArgs) -> Result<()> {
    let herd = resolve_herd(a.herd.as_deref())?;
    if a.rounds == 0 || a.gib_runs == 0 {
        bail!("--rounds and --gib-runs must be at least 1");
    }
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let dir = tmp.path().to_path_buf();
    let ssh = if a.skip_ssh {
        None
    } else {
        Some(Ssh::check(a.ssh_port, &a.ssh_key, &dir)?)
    };
    let res = bench(&a, &herd, &dir, ssh.as_ref()).await;
    drop(ssh);
    if res.is_err() || a.keep {
        let kept = tmp.keep();
        eprintln!("herd-bench: logs and data kept in {}", kept.display());
    }
    res
}

async fn bench(a: &SpineArgs, herd: &Path, dir: &Path, ssh: Option<&Ssh>) -> Result<()> {
    eprintln!("herd-bench: herd binary {}", herd.display());
    let load_start = loadavg();
    let db = crate::fleet::Db::new(a.database)?;
    eprintln!("herd-bench: records in {}", db.name());
    let mut fleet = Fleet::start(herd, dir, &db).await?;
    eprintln!(
        "herd-bench: server {} (pid {}), agent pid {} online",
        fleet.url(),
        fleet.server.pid(),
        fleet.agent().pid()
    );
    let rss_after_join = stats::proc_status_bytes(fleet.agent().pid(), "VmRSS")?;

    let rtt = round_trip(a, &fleet, ssh).await?;
    fleet.check_alive()?;
    let tput = throughput(a, &fleet, ssh).await?;
    fleet.check_alive()?;
    let idle = idle(a, &fleet, rss_after_join).await?;
    fleet.check_alive()?;

    let env = environment(herd, &load_start);
    let md = markdown(a, &env, &rtt, &tput, &idle);
    println!("{md}");
    if let Some(out) = &a.out {
        let v = json!({
            "bench": "spine",
            "environment": env,
            "targets": {
                "round_trip_p50_ms_max": RTT_TARGET_MS,
                "cli_round_trip_ssh_ratio_min": CLI_RATIO_TARGET,
                "throughput_ratio_min": THROUGHPUT_TARGET_RATIO,
                "idle_rss_mb_max": IDLE_RSS_TARGET_MB,
                "idle_cpu_pct_max": IDLE_CPU_TARGET_PCT,
            },
            "met": {
                "round_trip": rtt.herd_ms.p50 <= RTT_TARGET_MS,
                "cli_round_trip_vs_ssh": rtt.cli_ratio_p50.map(|r| r >= CLI_RATIO_TARGET),
                "throughput": tput.ratio_delivered_median.map(|r| r >= THROUGHPUT_TARGET_RATIO),
                "idle_rss": idle.rss_mb_max <= IDLE_RSS_TARGET_MB,
                "idle_cpu": idle.cpu_pct_one_core <= IDLE_CPU_TARGET_PCT,
            },
            "round_trip": rtt,
            "throughput": tput,
            "idle_agent": idle,
            "markdown": md,
        });
        crate::write_results(out, &v)?;
    }
    Ok(())
}

/// One `POST /api/v1/runs?wait=true` of `true` on every machine; its wall time in ms.
async fn herd_true(fleet: &Fleet) -> Result<f64> {
    let (secs, v) = fleet
        .run_and_wait(&json!({"command": "true", "all": true}))
        .await?;
    let task = &v["tasks"][0];
    if task["state"] != "succeeded" {
        bail!("round trip of `true` did not succeed: task {task}");
    }
    Ok(secs * 1e3)
}

/// One whole `herd run -t M -- true` process; its wall time in ms.
pub(crate) async fn herd_cli_true(fleet: &Fleet) -> Result<f64> {
    let mut cmd = fleet::cli(&fleet.server);
    cmd.args(["run", "-t", &fleet.agent().name, "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let st = cmd.status().await.context("cannot run herd run")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !st.success() {
        bail!("herd run -t {} -- true failed ({st})", fleet.agent().name);
    }
    Ok(ms)
}

async fn ssh_status(mut cmd: tokio::process::Command, what: &str) -> Result<()> {
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st}) — is bench/setup-ssh.sh's sshd running?");
    }
    Ok(())
}

async fn round_trip(a: &SpineArgs, fleet: &Fleet, ssh: Option<&Ssh>) -> Result<RoundTrip> {
    eprintln!(
        "herd-bench: round trip of `true`: {} warm-ups, {} timed",
        a.warmups, a.rounds
    );
    for _ in 0..a.warmups {
        herd_true(fleet).await?;
    }
    let mut herd = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds {
        herd.push(herd_true(fleet).await?);
    }
    let mut ssh_ms = Vec::new();
    if let Some(ssh) = ssh {
        eprintln!(
            "herd-bench: ssh (ControlMaster) round trip of `true`: 1 warm-up, {} timed",
            a.ssh_rounds
        );
        // The warm-up opens the master; its stderr goes to a file since the backgrounded
        // master keeps it open.
        let log = std::fs::File::create(fleet.dir().join("ssh-master.log"))
            .context("cannot create ssh-master.log")?;
        let st = ssh
            .muxed("true")
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .await
            .context("cannot run ssh")?;
        if !st.success() {
            bail!(
                "ssh to 127.0.0.1:{} failed ({st}); see {} — run bench/setup-ssh.sh",
                ssh.port,
                fleet.dir().join("ssh-master.log").display()
            );
        }
    }
    // Whole processes: `herd run` and `ssh` alternately, so drifts of the machine hit both.
    eprintln!(
        "herd-bench: whole-process `herd run -t M -- true`{}: {} warm-ups, {} timed",
        if ssh.is_some() { " beside ssh" } else { "" },
        a.warmups.min(3),
        a.ssh_rounds
    );
    for _ in 0..a.warmups.min(3) {
        herd_cli_true(fleet).await?;
    }
    let mut cli_ms = Vec::with_capacity(a.ssh_rounds);
    for _ in 0..a.ssh_rounds {
        cli_ms.push(herd_cli_true(fleet).await?);
        if let Some(ssh) = ssh {
            let t = Instant::now();
            ssh_status(ssh.muxed("true"), "multiplexed ssh true").await?;
            ssh_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let herd_ms = stats::summarize(&herd);
    let herd_cli_ms = stats::summarize(&cli_ms);
    let ssh_sum = (!ssh_ms.is_empty()).then(|| stats::summarize(&ssh_ms));
    Ok(RoundTrip {
        ratio_p50: ssh_sum.as_ref().map(|s| s.p50 / herd_ms.p50),
        cli_ratio_p50: ssh_sum.as_ref().map(|s| s.p50 / herd_cli_ms.p50),
        herd_ms,
        herd_cli_ms,
        ssh_ms: ssh_sum,
        herd_samples_ms: herd,
        ssh_samples_ms: ssh_ms,
        herd_cli_samples_ms: cli_ms,
    })
}

/// Runs `cmd` (stdout to /dev/null), timing it and the CPU it and the herd processes used.
async fn timed_stream(
    mut cmd: tokio::process::Command,
    what: &str,
    bytes: u64,
    pids: Option<(u32, u32)>,
) -> Result<StreamRun> {
    let cpu0 = pids
        .map(|(s, ag)| {
            Ok::<_, anyhow::Error>((stats::proc_cpu_secs(s)?, stats::proc_cpu_secs(ag)?))
        })
        .transpose()?;
    let kids0 = stats::children_cpu_secs()?;
    let (busy0, total0) = stats::machine_ticks()?;
    let t = Instant::now();
    // `spawn` + `wait_with_output`, not `output()`: tokio's `output()` pipes stdout whatever
    // was set, and the stream must go to /dev/null, not into this process's memory.
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?
        .wait_with_output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    let secs = t.elapsed().as_secs_f64();
    let (busy1, total1) = stats::machine_ticks()?;
    let kids1 = stats::children_cpu_secs()?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let ncpu = stats::cpus() as f64;
    let (server_cpu_s, agent_cpu_s) = match (pids, cpu0) {
        (Some((s, ag)), Some((s0, a0))) => (
            Some(stats::proc_cpu_secs(s)? - s0),
            Some(stats::proc_cpu_secs(ag)? - a0),
        ),
        _ => (None, None),
    };
    let dt = total1 - total0;
    let omitted_bytes = omitted(&String::from_utf8_lossy(&out.stderr));
    if omitted_bytes > 0 {
        eprintln!(
            "herd-bench: warning: {what} received only {} of {bytes} bytes ({omitted_bytes} omitted over the stored-output cap)",
            bytes.saturating_sub(omitted_bytes)
        );
    }
    Ok(StreamRun {
        secs,
        mb_per_s: mb(bytes) / secs,
        delivered_mb_per_s: mb(bytes.saturating_sub(omitted_bytes)) / secs,
        client_cpu_s: kids1 - kids0,
        server_cpu_s,
        agent_cpu_s,
        machine_busy_cores: if dt > 0.0 {
            (busy1 - busy0) / dt * ncpu
        } else {
            0.0
        },
        omitted_bytes,
    })
}

/// Sum of N over the CLI's `[herd: N bytes of NAME's output omitted: …]` lines.
fn omitted(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[herd: "))
        .filter(|l| l.contains("omitted"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// out_total of the newest run's task, to check the stream delivered every byte.
async fn newest_task_bytes(fleet: &Fleet) -> Result<Option<i64>> {
    let runs: Value = fleet
        .req(reqwest::Method::GET, "/api/v1/runs?limit=1")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let Some(id) = runs[0]["id"].as_str() else {
        return Ok(None);
    };
    let run: Value = fleet
        .req(reqwest::Method::GET, &format!("/api/v1/runs/{id}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(run["tasks"][0]["out_total"].as_i64())
}

async fn throughput(a: &SpineArgs, fleet: &Fleet, ssh: Option<&Ssh>) -> Result<Throughput> {
    let remote = format!("head -c {} /dev/zero", a.bytes);
    let mut herd_runs = Vec::new();
    let mut ssh_runs = Vec::new();
    // Alternate herd and ssh so drifts of the machine hit both alike.
    for i in 0..a.gib_runs {
        eprintln!(
            "herd-bench: stream {} bytes, run {}/{}: herd run --all -- {remote}",
            a.bytes,
            i + 1,
            a.gib_runs
        );
        let mut cmd = fleet::cli(&fleet.server);
        cmd.args(["run", "--all", "--", "head", "-c"])
            .arg(a.bytes.to_string())
            .arg("/dev/zero");
        let r = timed_stream(
            cmd,
            "herd run",
            a.bytes,
            Some((fleet.server.pid(), fleet.agent().pid())),
        )
        .await?;
        eprintln!("herd-bench:   {:.0} MB/s in {:.2} s", r.mb_per_s, r.secs);
        match newest_task_bytes(fleet).await {
            Ok(Some(n)) if n as u64 != a.bytes => eprintln!(
                "herd-bench: warning: the task reports {n} bytes of output, expected {}",
                a.bytes
            ),
            Ok(_) => {}
            Err(e) => eprintln!("herd-bench: warning: cannot check the task's output size: {e}"),
        }
        herd_runs.push(r);
        if let Some(ssh) = ssh {
            eprintln!(
                "herd-bench: stream run {}/{}: ssh ... '{remote}'",
                i + 1,
                a.gib_runs
            );
            let r = timed_stream(ssh.plain(&remote), "ssh", a.bytes, None).await?;
            eprintln!("herd-bench:   {:.0} MB/s in {:.2} s", r.mb_per_s, r.secs);
            ssh_runs.push(r);
        }
    }
    let h = stats::summarize(&herd_runs.iter().map(|r| r.mb_per_s).collect::<Vec<_>>());
    let s = (!ssh_runs.is_empty())
        .then(|| stats::summarize(&ssh_runs.iter().map(|r| r.mb_per_s).collect::<Vec<_>>()));
    let hd = stats::summarize(
        &herd_runs
            .iter()
            .map(|r| r.delivered_mb_per_s)
            .collect::<Vec<_>>(),
    );
    Ok(Throughput {
        bytes: a.bytes,
        ratio_median: s.as_ref().map(|s| h.p50 / s.p50),
        ratio_delivered_median: s.as_ref().map(|s| hd.p50 / s.p50),
        herd_delivered_mb_per_s: hd,
        herd_mb_per_s: h,
        ssh_mb_per_s: s,
        herd_runs,
        ssh_runs,
    })
}

async fn idle(a: &SpineArgs, fleet: &Fleet, rss_after_join: u64) -> Result<Idle> {
    eprintln!(
        "herd-bench: idle agent: settle {} s, then sample {} s",
        a.idle_settle_secs, a.idle_secs
    );
    tokio::time::sleep(Duration::from_secs(a.idle_settle_secs)).await;
    let (apid, spid) = (fleet.agent().pid(), fleet.server.pid());
    let a0 = stats::proc_cpu_secs(apid)?;
    let s0 = stats::proc_cpu_secs(spid)?;
    let t = Instant::now();
    let mut rss_max = stats::proc_status_bytes(apid, "VmRSS")?;
    let end = t + Duration::from_secs(a.idle_secs);
    let mut last = rss_max;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        last = stats::proc_status_bytes(apid, "VmRSS")?;
        rss_max = rss_max.max(last);
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = stats::proc_cpu_secs(apid)? - a0;
    let scpu = stats::proc_cpu_secs(spid)? - s0;
    Ok(Idle {
        secs,
        settle_secs: a.idle_settle_secs,
        rss_mb_last: mb(last),
        rss_mb_max: mb(rss_max),
        rss_mb_after_join: mb(rss_after_join),
        hwm_mb: mb(stats::proc_status_bytes(apid, "VmHWM")?),
        cpu_s: cpu,
        cpu_pct_one_core: cpu / secs * 100.0,
        server_rss_mb: mb(stats::proc_status_bytes(spid, "VmRSS")?),
        server_cpu_pct_one_core: scpu / secs * 100.0,
    })
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn environment(herd: &Path, load_start: &str) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ssh_version = std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    json!({
        "loadavg_at_start": load_start,
        "loadavg_at_end": loadavg(),
        "herd": herd.display().to_string(),
        "cpus": stats::cpus(),
        "cpu_model": cpu,
        "kernel": kernel,
        "ssh": ssh_version,
    })
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "**MISSED**" }
}

fn five(s: &Summary, prec: usize) -> String {
    format!(
        "{:.p$} / {:.p$} / **{:.p$}** / {:.p$} / {:.p$}",
        s.min,
        s.p10,
        s.p50,
        s.p90,
        s.max,
        p = prec
    )
}

fn three(s: &Summary, prec: usize) -> String {
    format!(
        "{:.p$} / **{:.p$}** / {:.p$}",
        s.min,
        s.p50,
        s.max,
        p = prec
    )
}

fn markdown(a: &SpineArgs, env: &Value, rtt: &RoundTrip, tp: &Throughput, idle: &Idle) -> String {
    let mut m = String::new();
    let na = "— (--skip-ssh)".to_string();
    m.push_str(&format!(
        "## herd spine benchmark\n\n{} CPUs ({}), load average (1/5/15 min) at start {} and end {}, Linux {}, {}; herd: `{}`\n\n",
        env["cpus"],
        env["cpu_model"].as_str().unwrap_or(""),
        env["loadavg_at_start"].as_str().unwrap_or(""),
        env["loadavg_at_end"].as_str().unwrap_or(""),
        env["kernel"].as_str().unwrap_or(""),
        env["ssh"].as_str().unwrap_or(""),
        env["herd"].as_str().unwrap_or("")
    ));
    m.push_str("| Benchmark | herd | ssh baseline (same run) | Ratio | Target | Result |\n");
    m.push_str("|---|---|---|---|---|---|\n");

    // Round trip.
    let rtt_ratio = rtt
        .ratio_p50
        .map(|r| format!("ssh/herd p50 = {r:.1}×"))
        .unwrap_or_else(|| "—".into());
    m.push_str(&format!(
        "| Round trip of `true`, ms, min / p10 / **p50** / p90 / max (herd: API `POST /api/v1/runs?wait=true`, n={}; ssh: ControlMaster, n={}) | {} | {} | {} | herd p50 ≤ {RTT_TARGET_MS} ms | {} |\n",
        rtt.herd_ms.n,
        rtt.ssh_ms.as_ref().map(|s| s.n).unwrap_or(0),
        five(&rtt.herd_ms, 2),
        rtt.ssh_ms.as_ref().map(|s| five(s, 2)).unwrap_or_else(|| na.clone()),
        rtt_ratio,
        ok(rtt.herd_ms.p50 <= RTT_TARGET_MS),
    ));

    m.push_str(&format!(
        "| Whole-process round trip of `true`, ms, min / p10 / **p50** / p90 / max (herd: `herd run -t M -- true`, n={}; ssh: ControlMaster, alternately, n={}) | {} | {} | {} | ssh/herd p50 ≥ {CLI_RATIO_TARGET}× | {} |\n",
        rtt.herd_cli_ms.n,
        rtt.ssh_ms.as_ref().map(|s| s.n).unwrap_or(0),
        five(&rtt.herd_cli_ms, 2),
        rtt.ssh_ms.as_ref().map(|s| five(s, 2)).unwrap_or_else(|| na.clone()),
        rtt.cli_ratio_p50
            .map(|r| format!("ssh/herd p50 = {r:.1}×"))
            .unwrap_or_else(|| "—".into()),
        rtt.cli_ratio_p50
            .map(|r| ok(r >= CLI_RATIO_TARGET).to_string())
            .unwrap_or_else(|| "not measured".into()),
    ));

    // Throughput.
    let gib = tp.bytes as f64 / (1u64 << 30) as f64;
    let size = if (gib - 1.0).abs() < 1e-9 {
        "1 GiB".to_string()
    } else {
        format!("{} bytes", tp.bytes)
    };
    let omitted = tp.herd_runs.iter().any(|r| r.omitted_bytes > 0);
    let ssh_col = tp
        .ssh_mb_per_s
        .as_ref()
        .map(|s| three(s, 0))
        .unwrap_or_else(|| na.clone());
    let ratio = |r: Option<f64>| {
        r.map(|r| format!("herd/ssh median = {r:.2}×"))
            .unwrap_or_else(|| "—".into())
    };
    let tp_res = match tp.ratio_delivered_median {
        Some(r) if omitted => format!(
            "{} (judged on delivered bytes)",
            ok(r >= THROUGHPUT_TARGET_RATIO)
        ),
        Some(r) => ok(r >= THROUGHPUT_TARGET_RATIO).to_string(),
        None => "not measured".into(),
    };
    m.push_str(&format!(
        "| {size} stdout streamed to the client, MB/s = {:.3} MB / wall s, min / **median** / max (herd: `herd run --all -- head -c {} /dev/zero > /dev/null`; ssh: `ssh localhost 'head -c …' > /dev/null`; n={}) | {} | {} | {} | herd ≥ {THROUGHPUT_TARGET_RATIO}× ssh | {} |\n",
        mb(tp.bytes),
        tp.bytes,
        tp.herd_mb_per_s.n,
        three(&tp.herd_mb_per_s, 0),
        ssh_col,
        ratio(tp.ratio_median),
        if omitted { "see next row" } else { tp_res.as_str() },
    ));
    if omitted {
        m.push_str(&format!(
            "| … counting only the bytes `herd run` actually received (⚠ it fell behind and the server omitted output over its stored-output cap; see details) | {} | {} | {} | herd ≥ {THROUGHPUT_TARGET_RATIO}× ssh | {} |\n",
            three(&tp.herd_delivered_mb_per_s, 0),
            ssh_col,
            ratio(tp.ratio_delivered_median),
            tp_res,
        ));
    }

    // Idle.
    m.push_str(&format!(
        "| Idle agent resident memory (VmRSS, max over {:.0} s after ≥ {} s idle), MB | {:.1} | — | — | ≤ {IDLE_RSS_TARGET_MB} MB | {} |\n",
        idle.secs,
        idle.settle_secs,
        idle.rss_mb_max,
        ok(idle.rss_mb_max <= IDLE_RSS_TARGET_MB),
    ));
    m.push_str(&format!(
        "| Idle agent CPU (utime+stime over {:.0} s), % of one core | {:.3} | — | — | near zero (≤ {IDLE_CPU_TARGET_PCT} %) | {} |\n",
        idle.secs,
        idle.cpu_pct_one_core,
        ok(idle.cpu_pct_one_core <= IDLE_CPU_TARGET_PCT),
    ));

    // Details.
    m.push_str("\nMB = 10^6 bytes. Medians in bold.\n\n");
    m.push_str("Details:\n\n");
    m.push_str(&format!(
        "- Agent RSS just after joining: {:.1} MB; last idle sample: {:.1} MB; peak (VmHWM) over the whole run: {:.1} MB.\n",
        idle.rss_mb_after_join, idle.rss_mb_last, idle.hwm_mb
    ));
    m.push_str(&format!(
        "- Idle server (for reference): RSS {:.1} MB, CPU {:.3} % of one core.\n",
        idle.server_rss_mb, idle.server_cpu_pct_one_core
    ));
    for r in &tp.herd_runs {
        m.push_str(&format!(
            "- herd stream run: {:.2} s, {:.0} MB/s; CPU s: CLI {:.2}, server {:.2}, agent {:.2} (task's `head` not counted); machine busy {:.2} cores\n",
            r.secs,
            r.mb_per_s,
            r.client_cpu_s,
            r.server_cpu_s.unwrap_or(f64::NAN),
            r.agent_cpu_s.unwrap_or(f64::NAN),
            r.machine_busy_cores,
        ));
        if r.omitted_bytes > 0 {
            m.push_str(&format!(
                "  - **not a full stream**: the CLI fell behind and {} bytes were omitted (over the stored-output cap); it received {} bytes\n",
                r.omitted_bytes,
                tp.bytes.saturating_sub(r.omitted_bytes)
            ));
        }
    }
    for r in &tp.ssh_runs {
        m.push_str(&format!(
            "- ssh stream run: {:.2} s, {:.0} MB/s; CPU s: ssh client {:.2}; machine busy {:.2} cores\n",
            r.secs, r.mb_per_s, r.client_cpu_s, r.machine_busy_cores,
        ));
    }
    if a.skip_ssh {
        m.push_str("- ssh baseline skipped (--skip-ssh).\n");
    }
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn omitted_lines_are_summed() {
        let e = "[herd: 100 bytes of bench's output omitted: over the stored-output cap]\nother\n[herd: 5 bytes of x's output omitted: over the stored-output cap]\n";
        assert_eq!(super::omitted(e), 105);
        assert_eq!(super::omitted("[herd: run failed]"), 0);
    }
}
