//! `herd-bench preauth`: what clients that never authenticate cost the server and its API
//! users. Each round starts a fresh server (SQLite, loopback, plain HTTP) and one agent, and
//! measures three phases one after the other:
//! - **at rest**: the server's resident memory, and the API latency of `GET /api/v1/agents`
//!   (admin key) over one keep-alive connection and over a new connection per request, and
//!   the wall time of whole `herd run -t AGENT -- true` processes;
//! - **stalled Join streams**: 25 connections × 8 `Join` streams, each declaring a 60 KiB
//!   message and sending 30 KiB of it, then stalling (the most a stream may hold); when the
//!   server ends a connection's streams (the 10 s deadline, or too many in flight) the
//!   connection is opened again, so 200 are held throughout. Once at the start, 200 more
//!   streams declaring 32 MiB (refused at their header). Memory is sampled while they are
//!   held, and the same latencies are measured;
//! - **idle sockets**: 10,000 sockets from the 40 source addresses 127.0.0.2–41, every tenth
//!   sending half a request head; a socket the server closes (idle too long) is opened again.
//!   Memory, the latencies and `herd run` are measured while they are held.
//!
//! The attack clients are written the way the end-to-end tests in
//! `crates/herd/tests/it/preauth.rs` write them (a raw HTTP/2 client for the streams).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;

use herd_testkit::hostile;

use crate::fleet::{Db, Fleet, Store};
use crate::stats::{self, Summary};

#[derive(clap::Args, Clone)]
pub struct PreauthArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// Rounds, each on a fresh server and agent.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Timed `GET /api/v1/agents` requests per phase, for each way of connecting.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Timed `herd run -t AGENT -- true` processes per phase.
    #[arg(long, default_value_t = 5)]
    pub cli_runs: usize,
    /// Connections of stalled `Join` streams (8 streams each).
    #[arg(long, default_value_t = 25)]
    pub join_conns: usize,
    /// Idle sockets held in the last phase.
    #[arg(long, default_value_t = 10_000)]
    pub sockets: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir (server data, logs) after the run.
    #[arg(long)]
    pub keep: bool,
}

/// One phase of one round.
#[derive(Serialize, Clone)]
struct Phase {
    /// Server VmRSS when the phase began (before its attack was started), MiB.
    rss_before_mib: f64,
    /// Highest server VmRSS sampled (every 50 ms) from the attack's start to the phase's
    /// end, MiB.
    rss_peak_mib: f64,
    /// Most descriptors the server held at once during the phase (sampled every 250 ms).
    server_fds_max: usize,
    /// Latency of `GET /api/v1/agents` over one keep-alive connection, ms.
    keepalive_ms: Summary,
    /// Latency of `GET /api/v1/agents` over a new connection each, ms.
    newconn_ms: Summary,
    /// Requests that failed (not 200, or no answer within 30 s), both ways together.
    api_errors: usize,
    /// Wall time of whole `herd run -t AGENT -- true` processes, ms.
    cli_ms: Summary,
    /// Attack streams or sockets held at the phase's last sample (0 at rest).
    attack_held: usize,
    /// How often the attack had to open a stream / socket again because the server ended it.
    attack_reopened: u64,
    /// How the attack's streams ended (gRPC status → count), Join phase only.
    join_statuses: std::collections::BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct Round {
    rest: Phase,
    joins: Phase,
    sockets: Phase,
    /// Sockets the attack managed to hold at once at most.
    sockets_held_max: usize,
}

pub async fn run(a: PreauthArgs) -> Result<()> {
    let herd = crate::spine::resolve_herd(a.herd.as_deref())?;
    hostile::raise_open_files().context("cannot raise this process's open-files limit")?;
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-preauth-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let db = Db::new(Store::Sqlite)?;
    let mut rounds = Vec::new();
    for r in 0..a.rounds {
        let dir = tmp.path().join(format!("round-{r}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        eprintln!("herd-bench: round {}/{}", r + 1, a.rounds);
        let mut fleet = Fleet::start(&herd, &dir, &db).await?;
        let round = one_round(&a, &fleet).await?;
        fleet.check_alive()?;
        rounds.push(round);
    }
    print_table(&a, &herd, &rounds);
    if let Some(out) = &a.out {
        crate::write_results(
            out,
            &json!({
                "herd": herd.display().to_string(),
                "cpus": stats::cpus(),
                "rounds": rounds,
            }),
        )?;
    }
    if a.keep {
        eprintln!("herd-bench: kept {}", tmp.keep().display());
    }
    Ok(())
}

async fn one_round(a: &PreauthArgs, fleet: &Fleet) -> Result<Round> {
    let addr: SocketAddr = fleet
        .url()
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("not a loopback address: {}", fleet.url()))?;
    let pid = fleet.server.pid();
    // Let the agent's joining settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rest = measure(a, fleet, Sampler::start(pid)?, None).await?;

    // Stalled Join streams.
    let sampler = Sampler::start(pid)?;
    let held = Arc::new(AtomicUsize::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut tasks = Vec::new();
    // Refused at their header: opened once.
    for _ in 0..a.join_conns {
        let st = statuses.clone();
        let h = Arc::new(AtomicUsize::new(0));
        tasks.push(tokio::spawn(async move {
            let _ = join_conn(addr, 8, (32 << 20) - 1, 1 << 20, &h, &st).await;
            std::future::pending::<()>().await;
        }));
    }
    for _ in 0..a.join_conns {
        let (h, re, st) = (held.clone(), reopened.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let _ = join_conn(addr, 8, 60 << 10, 30 << 10, &h, &st).await;
                re.fetch_add(8, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let want = a.join_conns * 8;
    wait_held(&held, want, Duration::from_secs(10)).await;
    let mut joins = measure(a, fleet, sampler, Some((&held, &reopened))).await?;
    for t in &tasks {
        t.abort();
    }
    drop(tasks);
    joins.join_statuses = statuses.lock().map(|m| m.clone()).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Idle and half-open sockets.
    let sampler = Sampler::start(pid)?;
    let held = Arc::new(AtomicUsize::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let max_held = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(a.sockets);
    for i in 0..a.sockets {
        let (h, re, mx) = (held.clone(), reopened.clone(), max_held.clone());
        tasks.push(tokio::spawn(async move {
            idle_socket(addr, i, &h, &re, &mx).await;
        }));
        // Open them at a steady pace rather than all in one burst at the backlog.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_held(&held, a.sockets * 99 / 100, Duration::from_secs(30)).await;
    // And until the server has accepted them.
    let t = Instant::now();
    while server_fds(pid) < a.sockets * 9 / 10 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sockets = measure(a, fleet, sampler, Some((&held, &reopened))).await?;
    for t in &tasks {
        t.abort();
    }
    drop(tasks);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Round {
        rest,
        joins,
        sockets,
        sockets_held_max: max_held.load(Ordering::Relaxed),
    })
}

/// Waits until `held` reaches `want`, or `limit` has passed.
async fn wait_held(held: &AtomicUsize, want: usize, limit: Duration) {
    let t = Instant::now();
    while held.load(Ordering::Relaxed) < want && t.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = held.load(Ordering::Relaxed);
    if n < want {
        eprintln!("herd-bench: only {n} of {want} held after {limit:?}; measuring anyway");
    }
}

/// Descriptors the server holds now.
fn server_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_mib(pid: u32) -> Result<f64> {
    stats::proc_status_bytes(pid, "VmRSS").map(|b| b as f64 / (1 << 20) as f64)
}

/// The server's memory and descriptors, sampled from [`Sampler::start`] until finished.
struct Sampler {
    pid: u32,
    before_mib: f64,
    /// Highest RSS (the bits of an f64, MiB) and descriptor count seen.
    peak_mib: Arc<AtomicU64>,
    fds_max: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Result<Sampler> {
        let before_mib = rss_mib(pid)?;
        let peak_mib = Arc::new(AtomicU64::new(before_mib.to_bits()));
        let fds_max = Arc::new(AtomicUsize::new(server_fds(pid)));
        let task = {
            let (peak, fds) = (peak_mib.clone(), fds_max.clone());
            tokio::spawn(async move {
                for i in 0u64.. {
                    if let Ok(m) = rss_mib(pid)
                        && m > f64::from_bits(peak.load(Ordering::Relaxed))
                    {
                        peak.store(m.to_bits(), Ordering::Relaxed);
                    }
                    if i.is_multiple_of(5) {
                        fds.fetch_max(server_fds(pid), Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Ok(Sampler {
            pid,
            before_mib,
            peak_mib,
            fds_max,
            task,
        })
    }

    /// (RSS before, peak RSS, most descriptors), with one last sample.
    fn finish(self) -> (f64, f64, usize) {
        self.task.abort();
        let peak = f64::from_bits(self.peak_mib.load(Ordering::Relaxed))
            .max(rss_mib(self.pid).unwrap_or(0.0));
        let fds = self
            .fds_max
            .load(Ordering::Relaxed)
            .max(server_fds(self.pid));
        (self.before_mib, peak, fds)
    }
}

/// One phase's figures, measured while `sampler` samples; `attack` is (held, reopened) of
/// the attack running meanwhile.
async fn measure(
    a: &PreauthArgs,
    fleet: &Fleet,
    sampler: Sampler,
    attack: Option<(&AtomicUsize, &AtomicU64)>,
) -> Result<Phase> {
    let reopened_before = attack.map_or(0, |(_, r)| r.load(Ordering::Relaxed));
    let keepalive = client(true)?;
    let newconn = client(false)?;
    let url = format!("{}/api/v1/agents", fleet.url());
    let mut errors = 0;
    let mut ka = Vec::with_capacity(a.requests);
    let mut nc = Vec::with_capacity(a.requests);
    // Alternating, so that both ways see the same moments of the attack.
    for _ in 0..a.requests {
        match get(&keepalive, &url, &fleet.server.key).await {
            Some(ms) => ka.push(ms),
            None => errors += 1,
        }
        match get(&newconn, &url, &fleet.server.key).await {
            Some(ms) => nc.push(ms),
            None => errors += 1,
        }
    }
    let mut cli = Vec::with_capacity(a.cli_runs);
    for _ in 0..a.cli_runs {
        cli.push(crate::spine::herd_cli_true(fleet).await?);
    }
    let (rss_before_mib, rss_peak_mib, server_fds_max) = sampler.finish();
    if ka.is_empty() || nc.is_empty() {
        bail!("every API request failed ({errors})");
    }
    Ok(Phase {
        rss_before_mib,
        rss_peak_mib,
        server_fds_max,
        keepalive_ms: stats::summarize(&ka),
        newconn_ms: stats::summarize(&nc),
        api_errors: errors,
        cli_ms: stats::summarize(&cli),
        attack_held: attack.map_or(0, |(h, _)| h.load(Ordering::Relaxed)),
        attack_reopened: attack.map_or(0, |(_, r)| r.load(Ordering::Relaxed)) - reopened_before,
        join_statuses: Default::default(),
    })
}

fn client(keepalive: bool) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(if keepalive { 1 } else { 0 })
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// One `GET` with the admin key: its time in ms, or `None` if it failed.
async fn get(c: &reqwest::Client, url: &str, key: &str) -> Option<f64> {
    let t = Instant::now();
    let resp = c.get(url).bearer_auth(key).send().await.ok()?;
    let ok = resp.status() == reqwest::StatusCode::OK;
    resp.bytes().await.ok()?;
    ok.then(|| t.elapsed().as_secs_f64() * 1e3)
}

/// Opens `streams` `Join` calls on one new HTTP/2 connection ([`hostile::stalled_join`]):
/// each declares a `declared`-byte message, sends `sent` bytes of it, then stalls; `held`
/// counts the calls that have sent their bytes and not ended. Returns once every call has
/// ended (each status counted in `statuses`).
async fn join_conn(
    addr: SocketAddr,
    streams: usize,
    declared: u32,
    sent: usize,
    held: &AtomicUsize,
    statuses: &std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
) -> Result<()> {
    let (h2, driver) = hostile::h2_connect(addr).await?;
    let calls = (0..streams).map(|_| {
        let counted = AtomicUsize::new(0);
        let h2 = h2.clone();
        async move {
            let status = hostile::stalled_join(h2, addr, declared, sent, || {
                held.fetch_add(1, Ordering::Relaxed);
                counted.store(1, Ordering::Relaxed);
            })
            .await;
            if counted.load(Ordering::Relaxed) == 1 {
                held.fetch_sub(1, Ordering::Relaxed);
            }
            status
        }
    });
    let ended = futures::future::join_all(calls).await;
    driver.abort();
    if let Ok(mut m) = statuses.lock() {
        for s in ended {
            let k = match s {
                Some(0) => "0 OK".to_string(),
                Some(4) => "4 DEADLINE_EXCEEDED".to_string(),
                Some(8) => "8 RESOURCE_EXHAUSTED".to_string(),
                Some(11) => "11 OUT_OF_RANGE".to_string(),
                Some(n) => n.to_string(),
                None => "none (reset)".to_string(),
            };
            *m.entry(k).or_insert(0) += 1;
        }
    }
    Ok(())
}

/// Holds socket number `i` open ([`hostile::idle_socket`]), opening it again whenever the
/// server closes it.
async fn idle_socket(
    addr: SocketAddr,
    i: usize,
    held: &AtomicUsize,
    reopened: &AtomicU64,
    max_held: &AtomicUsize,
) {
    use tokio::io::AsyncReadExt as _;
    let mut first = true;
    loop {
        if !first {
            reopened.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let Some(mut c) = hostile::idle_socket(addr, i).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let n = held.fetch_add(1, Ordering::Relaxed) + 1;
        max_held.fetch_max(n, Ordering::Relaxed);
        // Until the server closes it (or answers something).
        let mut buf = [0u8; 512];
        while let Ok(k) = c.read(&mut buf).await {
            if k == 0 {
                break;
            }
        }
        held.fetch_sub(1, Ordering::Relaxed);
    }
}

fn fmt_sum(s: &[f64], prec: usize) -> String {
    let m = stats::summarize(s);
    format!("{:.prec$} ({:.prec$}–{:.prec$})", m.p50, m.min, m.max)
}

fn print_table(a: &PreauthArgs, herd: &std::path::Path, rounds: &[Round]) {
    println!(
        "#### herd before authentication: {} rounds, {} CPUs, {}",
        rounds.len(),
        stats::cpus(),
        herd.display()
    );
    println!();
    println!(
        "Each cell: median over rounds (min–max). API: {} × `GET /api/v1/agents` per phase and way; \
         run: {} × `herd run -t AGENT -- true` per phase.",
        a.requests, a.cli_runs
    );
    println!();
    println!(
        "| | at rest | {} stalled Join streams (+{} refused) | {} idle sockets |",
        a.join_conns * 8,
        a.join_conns * 8,
        a.sockets
    );
    println!("|---|---|---|---|");
    let phases = |f: &dyn Fn(&Phase) -> f64, prec: usize| -> String {
        let col = |p: &dyn Fn(&Round) -> &Phase| -> String {
            let v: Vec<f64> = rounds.iter().map(|r| f(p(r))).collect();
            fmt_sum(&v, prec)
        };
        format!(
            "{} | {} | {}",
            col(&|r| &r.rest),
            col(&|r| &r.joins),
            col(&|r| &r.sockets)
        )
    };
    println!(
        "| server RSS before the attack, MiB | {} |",
        phases(&|p| p.rss_before_mib, 1)
    );
    println!(
        "| server RSS peak, MiB | {} |",
        phases(&|p| p.rss_peak_mib, 1)
    );
    println!(
        "| server RSS growth under the attack, MiB | {} |",
        phases(&|p| p.rss_peak_mib - p.rss_before_mib, 1)
    );
    println!(
        "| server descriptors, most | {} |",
        phases(&|p| p.server_fds_max as f64, 0)
    );
    println!(
        "| attack held at end (client side) | {} |",
        phases(&|p| p.attack_held as f64, 0)
    );
    println!(
        "| attack reopened | {} |",
        phases(&|p| p.attack_reopened as f64, 0)
    );
    println!(
        "| API keep-alive p50, ms | {} |",
        phases(&|p| p.keepalive_ms.p50, 3)
    );
    println!(
        "| API keep-alive p99, ms | {} |",
        phases(&|p| p.keepalive_ms.p99, 3)
    );
    println!(
        "| API keep-alive max, ms | {} |",
        phases(&|p| p.keepalive_ms.max, 3)
    );
    println!(
        "| API new connection p50, ms | {} |",
        phases(&|p| p.newconn_ms.p50, 3)
    );
    println!(
        "| API new connection p99, ms | {} |",
        phases(&|p| p.newconn_ms.p99, 3)
    );
    println!(
        "| API new connection max, ms | {} |",
        phases(&|p| p.newconn_ms.max, 3)
    );
    println!("| API errors | {} |", phases(&|p| p.api_errors as f64, 0));
    println!(
        "| `herd run … true` p50, ms | {} |",
        phases(&|p| p.cli_ms.p50, 1)
    );
    println!(
        "| `herd run … true` max, ms | {} |",
        phases(&|p| p.cli_ms.max, 1)
    );
    println!();
    let mut statuses = std::collections::BTreeMap::new();
    for r in rounds {
        for (k, v) in &r.joins.join_statuses {
            *statuses.entry(k.clone()).or_insert(0) += v;
        }
    }
    let s: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("Join streams ended (all rounds): {}", s.join(", "));
    let held: Vec<String> = rounds
        .iter()
        .map(|r| r.sockets_held_max.to_string())
        .collect();
    println!(
        "Idle sockets held at once, most per round: {}",
        held.join(", ")
    );
}
