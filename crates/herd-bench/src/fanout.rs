//! `herd-bench fleet`: the same work, `true` on N machines with every result in, through herd
//! (API and CLI), parallel-ssh and Ansible ad hoc (`-m raw`, `-m command`, forks = N) against
//! N loopback machines, as a Markdown table (stdout) and JSON (`--out`).
//!
//! herd's machines are N separate `herd agent` processes joined to a throwaway `herd server`;
//! the baselines' machines are the sshd addresses 127.0.0.2 … 127.0.0.(N+1) that
//! `bench/setup-fleet-ssh.sh N` sets up. Each tool runs alone: the herd processes are stopped
//! before the first baseline starts.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::FleetArgs;
use crate::fleet::{self, AgentSpec, Fleet};
use crate::spine;
use crate::stats::{self, Summary};

/// The label every bench agent carries; the runs target it.
const LABEL: &str = "bench=fleet";
/// herd's target for the API median, in seconds.
const TARGET_S: f64 = 0.100;

#[derive(Serialize)]
struct Row {
    /// Short name: "herd API", "parallel-ssh", …
    tool: String,
    /// What was run, as shown in the table.
    how: String,
    /// Wall seconds of each timed run, in order.
    samples_s: Vec<f64>,
    summary: Summary,
    /// This row's median over herd's API median.
    ratio_to_herd_api: Option<f64>,
}

/// What the fleet's herd processes spent during the timed API runs.
#[derive(Serialize)]
struct HerdCost {
    server_cpu_ms_per_run: f64,
    agents_cpu_ms_per_run: f64,
    server_rss_mb: f64,
    agent_rss_mb_mean: f64,
}

/// Ansible's ssh connection settings as `ansible-config` reports them.
#[derive(Serialize, Default)]
struct AnsibleSsh {
    ssh_args: Option<String>,
    pipelining: Option<bool>,
    /// ControlPersist masters found open after each mode's runs (closed by the bench).
    masters_open_after_raw: Option<usize>,
    masters_open_after_command: Option<usize>,
}

/// The files of `bench/setup-fleet-ssh.sh` and the baseline tools found on PATH.
struct Baseline {
    key: PathBuf,
    known_hosts: PathBuf,
    pssh_hosts: PathBuf,
    inventory: PathBuf,
    ansible_cfg: PathBuf,
    pssh: PathBuf,
    ansible: PathBuf,
}

pub(crate) fn ip_of(i: usize) -> Ipv4Addr {
    // Machine i (1-based) answers on 127.0.0.(i+1); N ≤ 253 is checked before.
    Ipv4Addr::new(127, 0, 0, (i + 1) as u8)
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl Baseline {
    /// Fails with a one-line hint when `bench/setup-fleet-ssh.sh n` has not been run.
    fn check(dir: &Path, n: usize) -> Result<Baseline> {
        let hint = format!("run bench/setup-fleet-ssh.sh {n} (as root) or pass --skip-ssh");
        let file = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if !p.is_file() {
                bail!("fleet baseline not set up: no {} — {hint}", p.display());
            }
            Ok(p)
        };
        let b = Baseline {
            key: file("id_ed25519")?,
            known_hosts: file("known_hosts")?,
            pssh_hosts: file("pssh_hosts")?,
            inventory: file("inventory.ini")?,
            ansible_cfg: file("ansible.cfg")?,
            pssh: which("parallel-ssh")
                .or_else(|| which("pssh"))
                .with_context(|| format!("neither parallel-ssh nor pssh on PATH — {hint}"))?,
            ansible: which("ansible").with_context(|| format!("no ansible on PATH — {hint}"))?,
        };
        let hosts = std::fs::read_to_string(&b.pssh_hosts)
            .with_context(|| format!("cannot read {}", b.pssh_hosts.display()))?;
        let have = hosts.lines().filter(|l| !l.trim().is_empty()).count();
        if have != n {
            bail!("the fleet baseline is set up for {have} machines, not {n} — {hint}");
        }
        for i in [1, n] {
            let addr = SocketAddr::from((ip_of(i), 22));
            if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
                bail!("fleet baseline not running: nothing listens on {addr} — {hint}");
            }
        }
        Ok(b)
    }

    /// The ssh options parallel-ssh passes (`-O`, one option each).
    fn pssh_options(&self) -> Vec<String> {
        vec![
            format!("IdentityFile={}", self.key.display()),
            "IdentitiesOnly=yes".into(),
            "BatchMode=yes".into(),
            "StrictHostKeyChecking=yes".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "LogLevel=ERROR".into(),
        ]
    }

    fn pssh_cmd(&self, n: usize) -> Command {
        let mut c = Command::new(&self.pssh);
        c.arg("-h")
            .arg(&self.pssh_hosts)
            .arg("-p")
            .arg(n.to_string())
            .args(["-l", "root"]);
        for o in self.pssh_options() {
            c.arg("-O").arg(o);
        }
        c.arg("true");
        c
    }

    /// `ansible all -i INV -f N -m MODULE -a true`, with Ansible's defaults except the bench
    /// config (inventory, host_key_checking = False) and a ControlPath dir of its own.
    fn ansible_cmd(&self, n: usize, module: &str, control_dir: &Path, cwd: &Path) -> Command {
        let mut c = Command::new(&self.ansible);
        c.args(["all", "-i"])
            .arg(&self.inventory)
            .arg("-f")
            .arg(n.to_string())
            .args(["-m", module, "-a", "true"])
            .env("ANSIBLE_CONFIG", &self.ansible_cfg)
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", control_dir)
            .env_remove("ANSIBLE_PIPELINING")
            .env_remove("ANSIBLE_SSH_ARGS")
            .env_remove("ANSIBLE_SSH_PIPELINING")
            .current_dir(cwd);
        c
    }

    /// ssh_args and pipelining of Ansible's ssh connection plugin, from
    /// `ansible-config dump -t connection --format json`.
    async fn ansible_ssh_settings(&self) -> AnsibleSsh {
        let mut out = AnsibleSsh::default();
        let cfg = self
            .ansible
            .parent()
            .map(|d| d.join("ansible-config"))
            .filter(|p| p.is_file())
            .or_else(|| which("ansible-config"));
        let Some(cfg) = cfg else {
            return out;
        };
        let res = Command::new(cfg)
            .args(["dump", "-t", "connection", "--format", "json"])
            .env("ANSIBLE_CONFIG", &self.ansible_cfg)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        let Ok(o) = res else {
            return out;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) else {
            return out;
        };
        let ssh = v
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|plugin| plugin.get("ssh").and_then(Value::as_array));
        for opt in ssh.into_iter().flatten() {
            match opt["name"].as_str() {
                Some("ssh_args") => out.ssh_args = opt["value"].as_str().map(str::to_string),
                Some("pipelining") => out.pipelining = opt["value"].as_bool(),
                _ => {}
            }
        }
        out
    }
}

/// First line of a program's version output (stdout, else stderr).
pub(crate) async fn version(prog: &Path, arg: &str) -> String {
    match Command::new(prog)
        .arg(arg)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
    {
        Ok(o) => {
            let pick = |b: &[u8]| {
                String::from_utf8_lossy(b)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            let s = pick(&o.stdout);
            if s.is_empty() { pick(&o.stderr) } else { s }
        }
        Err(_) => String::new(),
    }
}

pub async fn run(a: FleetArgs) -> Result<()> {
    let herd = spine::resolve_herd(a.herd.as_deref())?;
    if a.machines == 0 || a.machines > 253 {
        bail!("--machines must be 1 … 253 (the loopback addresses 127.0.0.2 … 127.0.0.254)");
    }
    if a.rounds == 0 || (!a.skip_ssh && a.ssh_rounds == 0) {
        bail!("--rounds and --ssh-rounds must be at least 1");
    }
    let baseline = if a.skip_ssh {
        None
    } else {
        Some(Baseline::check(&a.fleet_dir, a.machines)?)
    };
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-fleet-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let dir = tmp.path().to_path_buf();
    let res = bench(&a, &herd, &dir, baseline.as_ref()).await;
    if res.is_err() || a.keep {
        let kept = tmp.keep();
        eprintln!("herd-bench: logs and data kept in {}", kept.display());
    }
    res
}

async fn bench(a: &FleetArgs, herd: &Path, dir: &Path, baseline: Option<&Baseline>) -> Result<()> {
    let n = a.machines;
    eprintln!("herd-bench: herd binary {}", herd.display());
    let load_start = spine::loadavg();

    let (api, cli, cost) = herd_rows(a, herd, dir).await?;
    let mut rows = vec![api, cli];

    let mut ansible_ssh = None;
    let mut versions = json!({});
    if let Some(b) = baseline {
        versions = json!({
            "parallel_ssh": version(&b.pssh, "--version").await,
            "ansible": version(&b.ansible, "--version").await,
        });
        let mut settings = b.ansible_ssh_settings().await;

        eprintln!(
            "herd-bench: parallel-ssh: {} runs of `true` on {n} machines",
            a.ssh_rounds
        );
        let mut s = Vec::new();
        for i in 0..a.ssh_rounds {
            let (secs, out) = timed(b.pssh_cmd(n), "parallel-ssh").await?;
            check_pssh(&out, n)?;
            eprintln!("herd-bench:   run {}: {secs:.2} s", i + 1);
            s.push(secs);
        }
        let pssh_name = b
            .pssh
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.push(row(
            "parallel-ssh",
            format!(
                "`{pssh_name} -h HOSTS -p {n} -l root -O IdentityFile=KEY -O UserKnownHostsFile=KNOWN … true`"
            ),
            s,
        ));

        for module in ["raw", "command"] {
            eprintln!(
                "herd-bench: ansible -m {module}: {} runs of `true` on {n} machines (forks {n})",
                a.ssh_rounds
            );
            let control = dir.join(format!("cp-{module}"));
            std::fs::create_dir_all(&control)
                .with_context(|| format!("cannot create {}", control.display()))?;
            let mut s = Vec::new();
            let res: Result<()> = async {
                for i in 0..a.ssh_rounds {
                    let (secs, out) = timed(
                        b.ansible_cmd(n, module, &control, dir),
                        &format!("ansible -m {module}"),
                    )
                    .await?;
                    check_ansible(&out, n, module)?;
                    eprintln!("herd-bench:   run {}: {secs:.2} s", i + 1);
                    s.push(secs);
                }
                Ok(())
            }
            .await;
            let masters = close_masters(&control).await;
            res?;
            match module {
                "raw" => settings.masters_open_after_raw = Some(masters),
                _ => settings.masters_open_after_command = Some(masters),
            }
            rows.push(row(
                &format!("Ansible -m {module}"),
                format!("`ansible all -i INV -f {n} -m {module} -a true`"),
                s,
            ));
        }
        ansible_ssh = Some(settings);
    }

    let herd_median = rows[0].summary.p50;
    for r in &mut rows {
        r.ratio_to_herd_api = Some(r.summary.p50 / herd_median);
    }

    let mut env = spine::environment(herd, &load_start);
    if let Value::Object(m) = &mut env {
        m.insert("versions".into(), versions);
    }
    let md = markdown(a, &env, &rows, &cost, ansible_ssh.as_ref());
    println!("{md}");
    if let Some(out) = &a.out {
        let v = json!({
            "bench": "fleet",
            "machines": n,
            "environment": env,
            "target": {"herd_api_median_s_max": TARGET_S},
            "met": herd_median <= TARGET_S,
            "rows": rows,
            "herd_cost": cost,
            "ansible_ssh": ansible_ssh,
            "markdown": md,
        });
        crate::write_results(out, &v)?;
    }
    Ok(())
}

fn row(tool: &str, how: String, samples: Vec<f64>) -> Row {
    Row {
        tool: tool.to_string(),
        how,
        summary: stats::summarize(&samples),
        samples_s: samples,
        ratio_to_herd_api: None,
    }
}

/// Starts the server and N agents, times the API and the CLI, and stops them again.
async fn herd_rows(a: &FleetArgs, herd: &Path, dir: &Path) -> Result<(Row, Row, HerdCost)> {
    let n = a.machines;
    let specs = (1..=n)
        .map(|i| AgentSpec {
            name: format!("bench-{i:02}"),
            labels: vec![LABEL.to_string()],
            wrap: Vec::new(),
        })
        .collect();
    eprintln!("herd-bench: starting herd server and {n} agents");
    let t = Instant::now();
    let db = crate::fleet::Db::new(crate::fleet::Store::Sqlite)?;
    let mut fleet = Fleet::start_agents(herd, dir, specs, &db).await?;
    eprintln!(
        "herd-bench: server {} (pid {}), {n} agents online after {:.1} s",
        fleet.url(),
        fleet.server.pid(),
        t.elapsed().as_secs_f64()
    );

    eprintln!(
        "herd-bench: herd API: {} warm-ups, {} timed runs of `true` on {LABEL}",
        a.warmups, a.rounds
    );
    for _ in 0..a.warmups {
        herd_api(&fleet, n).await?;
    }
    let agent_pids: Vec<u32> = fleet.agents.iter().map(|x| x.pid()).collect();
    let agents_cpu = || -> Result<f64> {
        agent_pids
            .iter()
            .map(|p| stats::proc_cpu_secs(*p))
            .sum::<Result<f64>>()
    };
    let (s0, a0) = (stats::proc_cpu_secs(fleet.server.pid())?, agents_cpu()?);
    let mut api = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds {
        api.push(herd_api(&fleet, n).await?);
    }
    let (s1, a1) = (stats::proc_cpu_secs(fleet.server.pid())?, agents_cpu()?);
    let rss = agent_pids
        .iter()
        .map(|p| stats::proc_status_bytes(*p, "VmRSS"))
        .sum::<Result<u64>>()?;
    let cost = HerdCost {
        server_cpu_ms_per_run: (s1 - s0) * 1e3 / a.rounds as f64,
        agents_cpu_ms_per_run: (a1 - a0) * 1e3 / a.rounds as f64,
        server_rss_mb: stats::proc_status_bytes(fleet.server.pid(), "VmRSS")? as f64 / 1e6,
        agent_rss_mb_mean: rss as f64 / 1e6 / n as f64,
    };
    fleet.check_alive()?;

    eprintln!(
        "herd-bench: herd CLI: {} warm-ups, {} timed runs of `herd run -t {LABEL} -- true`",
        a.warmups, a.rounds
    );
    for _ in 0..a.warmups {
        herd_cli(&fleet).await?;
    }
    let mut cli = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds {
        cli.push(herd_cli(&fleet).await?);
    }
    check_newest_run(&fleet, n).await?;
    fleet.check_alive()?;
    drop(fleet);

    let api = row(
        "herd API",
        format!(
            "`POST /api/v1/runs?wait=true` `{{\"command\":\"true\",\"targets\":[\"{LABEL}\"]}}`"
        ),
        api,
    );
    let cli = row(
        "herd CLI",
        format!("`herd run -t {LABEL} -- true` (stdout and stderr to /dev/null)"),
        cli,
    );
    Ok((api, cli, cost))
}

/// Fails unless `run` (a run's JSON with its tasks) has `n` tasks, all succeeded with exit 0.
fn check_run(run: &Value, n: usize, what: &str) -> Result<()> {
    let tasks = run["tasks"]
        .as_array()
        .with_context(|| format!("{what}: no tasks in the answer"))?;
    if tasks.len() != n {
        bail!(
            "{what}: {} tasks, expected one on each of {n} machines",
            tasks.len()
        );
    }
    if let Some(t) = tasks
        .iter()
        .find(|t| t["state"] != "succeeded" || t["exit_code"].as_i64() != Some(0))
    {
        bail!("{what}: not every task succeeded, e.g. {t}");
    }
    Ok(())
}

/// One `POST /api/v1/runs?wait=true` of `true` on the bench label; its wall time in seconds.
async fn herd_api(fleet: &Fleet, n: usize) -> Result<f64> {
    let (secs, v) = fleet
        .run_and_wait(&json!({"command": "true", "targets": [LABEL]}))
        .await?;
    check_run(&v, n, "POST /api/v1/runs?wait=true")?;
    Ok(secs)
}

/// One `herd run -t bench=fleet -- true`, end to end; its wall time in seconds.
async fn herd_cli(fleet: &Fleet) -> Result<f64> {
    let mut cmd = fleet::cli(&fleet.server);
    cmd.args(["run", "-t", LABEL, "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let st = cmd.status().await.context("cannot run herd run")?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("herd run -t {LABEL} -- true failed ({st})");
    }
    Ok(secs)
}

/// The newest run (the last CLI run) must have succeeded on all `n` machines.
async fn check_newest_run(fleet: &Fleet, n: usize) -> Result<()> {
    let runs: Value = fleet
        .req(reqwest::Method::GET, "/api/v1/runs?limit=1")
        .send()
        .await
        .context("GET /api/v1/runs")?
        .error_for_status()
        .context("GET /api/v1/runs")?
        .json()
        .await
        .context("GET /api/v1/runs: bad JSON")?;
    let id = runs[0]["id"].as_str().context("GET /api/v1/runs: no run")?;
    let run: Value = fleet
        .req(reqwest::Method::GET, &format!("/api/v1/runs/{id}"))
        .send()
        .await
        .context("GET /api/v1/runs/ID")?
        .error_for_status()
        .context("GET /api/v1/runs/ID")?
        .json()
        .await
        .context("GET /api/v1/runs/ID: bad JSON")?;
    check_run(&run, n, "the last `herd run`")
}

/// Runs `cmd` with its output captured; the wall time in seconds and the output.
pub(crate) async fn timed(mut cmd: Command, what: &str) -> Result<(f64, Output)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let t = Instant::now();
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    Ok((t.elapsed().as_secs_f64(), out))
}

/// Up to 12 lines of a failed run's output, those not reporting success first.
pub(crate) fn excerpt(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok =
        |l: &str| l.contains("[SUCCESS]") || l.contains(" | SUCCESS") || l.contains(" | CHANGED");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (good, bad): (Vec<&str>, Vec<&str>) = lines.into_iter().partition(|l| ok(l));
    bad.into_iter()
        .chain(good)
        .take(12)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines of parallel-ssh output reporting a host as `[SUCCESS]`.
pub(crate) fn pssh_successes(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.contains(" [SUCCESS] ")).count()
}

/// Lines of Ansible's ad hoc output reporting a host as `SUCCESS` or `CHANGED`.
fn ansible_successes(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.contains(" | SUCCESS") || l.contains(" | CHANGED"))
        .count()
}

fn check_pssh(out: &Output, n: usize) -> Result<()> {
    let ok = pssh_successes(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || ok != n {
        bail!(
            "parallel-ssh failed ({}; {ok} of {n} machines succeeded) — the baseline must succeed everywhere:\n{}",
            out.status,
            excerpt(out)
        );
    }
    Ok(())
}

fn check_ansible(out: &Output, n: usize, module: &str) -> Result<()> {
    let ok = ansible_successes(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || ok != n {
        bail!(
            "ansible -m {module} failed ({}; {ok} of {n} machines succeeded) — the baseline must succeed everywhere:\n{}",
            out.status,
            excerpt(out)
        );
    }
    Ok(())
}

/// Closes the ssh ControlPersist masters Ansible left in `dir`; how many there were.
async fn close_masters(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let socks: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    for s in &socks {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg("/dev/null")
            .arg("-o")
            .arg(format!("ControlPath={}", s.display()))
            .args(["-O", "exit", "bench-master"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
    }
    socks.len()
}

pub(crate) fn secs3(s: &Summary) -> String {
    let p = if s.max < 10.0 { 3 } else { 2 };
    format!("{:.p$} / **{:.p$}** / {:.p$}", s.min, s.p50, s.max, p = p)
}

pub(crate) fn ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if (r - 1.0).abs() < 1e-12 => "1 (reference)".into(),
        Some(r) if r >= 100.0 => format!("{r:.0}×"),
        Some(r) if r >= 10.0 => format!("{r:.1}×"),
        Some(r) => format!("{r:.2}×"),
        None => "—".into(),
    }
}

pub(crate) fn samples(s: &[f64]) -> String {
    s.iter()
        .map(|x| {
            if *x < 1.0 {
                format!("{x:.3}")
            } else {
                format!("{x:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn markdown(
    a: &FleetArgs,
    env: &Value,
    rows: &[Row],
    cost: &HerdCost,
    ansible: Option<&AnsibleSsh>,
) -> String {
    let n = a.machines;
    let s = |k: &str| env[k].as_str().unwrap_or("").to_string();
    let mut m = String::new();
    m.push_str(&format!(
        "## herd fan-out benchmark: `true` on {n} machines\n\n"
    ));
    m.push_str(&format!(
        "{} CPUs ({}), load average (1/5/15 min) at start {} and end {}, Linux {}; {}",
        env["cpus"],
        s("cpu_model"),
        s("loadavg_at_start"),
        s("loadavg_at_end"),
        s("kernel"),
        s("ssh"),
    ));
    let v = &env["versions"];
    if let Some(p) = v["parallel_ssh"].as_str() {
        m.push_str(&format!("; parallel-ssh {p}"));
    }
    if let Some(x) = v["ansible"].as_str() {
        m.push_str(&format!("; {x}"));
    }
    m.push_str(&format!("; herd: `{}`\n\n", s("herd")));

    m.push_str(
        "| Work | Tool | How | n | Wall s, min / **median** / max | Median ÷ herd API median |\n",
    );
    m.push_str("|---|---|---|---|---|---|\n");
    for (i, r) in rows.iter().enumerate() {
        let work = if i == 0 {
            format!("`true` on {n} machines, every result in")
        } else {
            "〃".to_string()
        };
        m.push_str(&format!(
            "| {work} | {} | {} | {} | {} | {} |\n",
            r.tool,
            r.how,
            r.summary.n,
            secs3(&r.summary),
            ratio(r.ratio_to_herd_api),
        ));
    }
    let herd_median = rows.first().map(|r| r.summary.p50).unwrap_or(f64::NAN);
    m.push_str(&format!(
        "\nTarget: herd API median ≤ {:.0} ms: {} ({:.1} ms).\n\n",
        TARGET_S * 1e3,
        if herd_median <= TARGET_S {
            "met"
        } else {
            "**MISSED**"
        },
        herd_median * 1e3
    ));
    m.push_str("Details:\n\n");
    m.push_str(&format!(
        "- herd: one server and {n} separate `herd agent` processes (own state dir each, label `{LABEL}`) on this machine; {} untimed runs before the timed ones. Per API run: server {:.1} CPU-ms, all agents together {:.1} CPU-ms. RSS: server {:.1} MB, agents {:.1} MB each on average.\n",
        a.warmups,
        cost.server_cpu_ms_per_run,
        cost.agents_cpu_ms_per_run,
        cost.server_rss_mb,
        cost.agent_rss_mb_mean,
    ));
    if a.skip_ssh {
        m.push_str("- Baselines skipped (--skip-ssh).\n");
    } else {
        m.push_str(&format!(
            "- Baselines: sshd (key login as root, `UsePAM no`, `UseDNS no`) on 127.0.0.2 … 127.0.0.{}, port 22 (bench/setup-fleet-ssh.sh); every run must report success on all {n} machines. Each tool ran alone (herd stopped first); no run is dropped: the first is in the spread.\n",
            n + 1
        ));
        if let Some(an) = ansible {
            let args = an
                .ssh_args
                .as_deref()
                .map(|x| format!("`{x}`"))
                .unwrap_or_else(|| "unknown".into());
            let pipe = match an.pipelining {
                Some(true) => "on",
                Some(false) => "off",
                None => "unknown",
            };
            let persist = an
                .ssh_args
                .as_deref()
                .is_some_and(|x| x.contains("ControlPersist"));
            m.push_str(&format!(
                "- Ansible: defaults except inventory and `host_key_checking = False`; ssh_args {args} (ControlPersist {}), pipelining {pipe}. ssh masters found open after the runs: `-m raw` {}, `-m command` {} (so runs after the first reuse connections); each mode started with none.\n",
                if persist { "on" } else { "off" },
                an.masters_open_after_raw.map(|x| x.to_string()).unwrap_or_else(|| "?".into()),
                an.masters_open_after_command.map(|x| x.to_string()).unwrap_or_else(|| "?".into()),
            ));
        }
        m.push_str("- parallel-ssh opens a new ssh connection to every machine on every run (no ControlMaster).\n");
    }
    for r in rows {
        m.push_str(&format!(
            "- {} runs, s, in order: {}\n",
            r.tool,
            samples(&r.samples_s)
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_lines_are_counted() {
        let p = "[1] 09:18:25 [SUCCESS] 127.0.0.9:22\n[2] 09:18:26 [FAILURE] 127.0.0.7:22 Exited with error code 255\n[3] 09:18:26 [SUCCESS] 127.0.0.17:22\n";
        assert_eq!(pssh_successes(p), 2);
        let a = "bench-10 | CHANGED | rc=0 >>\n\nbench-04 | SUCCESS | rc=0 >>\nbench-05 | UNREACHABLE! => {\n";
        assert_eq!(ansible_successes(a), 2);
    }

    #[test]
    fn ratios_read_well() {
        assert_eq!(ratio(Some(1.0)), "1 (reference)");
        assert_eq!(ratio(Some(1.234)), "1.23×");
        assert_eq!(ratio(Some(123.4)), "123×");
        assert_eq!(ratio(None), "—");
    }
}
