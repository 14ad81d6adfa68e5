//! `herd-bench copy`: one file (pseudo-random, 100 MB by default) to N machines through
//! `herd cp` and through parallel-scp, alternately in each round, as a Markdown table
//! (stdout) and JSON (`--out`).
//!
//! herd's machines are N `herd agent` processes of a throwaway server, each in a mount
//! namespace of its own (`unshare -m`) where the one destination path `DIR/dest` is the
//! machine's own directory `DIR/machines/bench-NN`: `herd cp FILE -t bench=copy:DIR/dest/`
//! writes N distinct files, as on a real fleet. The baseline's machines are the sshd
//! addresses of `bench/setup-fleet-ssh.sh N`, where each address gives its sessions
//! `HERD_BENCH_MACHINE_DIR` (`FLEET_DIR/machines/bench-NN`); parallel-scp runs scp in its
//! legacy protocol (`-O`), whose remote shell expands `'$HERD_BENCH_MACHINE_DIR/'`: again N
//! distinct files on the same file system.
//!
//! Every round writes a new file (new content, so a blob the server does not hold) and times,
//! in an order that rotates from round to round: `herd cp` of the new file (upload included:
//! the headline), `herd cp` of the same file again (the blob already on the server),
//! parallel-scp as shipped (it always passes `scp -qC`: compression on) and parallel-scp with
//! compression off. After each step every machine's copy is checked (size and SHA-256),
//! fsynced (timed apart, for the baselines: herd's agents fsync before they report), removed,
//! and the file system synced, so no step starts with another's writeback.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::process::Command;

use crate::fanout::{excerpt, pssh_successes, ratio, samples, secs3, timed, version, which};
use crate::fleet::{self, AgentSpec, Fleet};
use crate::spine;
use crate::stats::{self, Summary};

/// The label every bench agent carries; `herd cp` targets it.
const LABEL: &str = "bench=copy";
/// The copied file's name, on every machine.
const NAME: &str = "payload.bin";
/// Target: parallel-scp's median over herd's (first copy) median.
const TARGET_RATIO: f64 = 3.0;

#[derive(Args, Clone)]
pub struct CopyArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// Machines: herd agents, and loopback sshd addresses (127.0.0.2 …) for the baseline.
    #[arg(long, default_value_t = 50)]
    pub machines: usize,
    /// Rounds; each times every tool once, on a new file.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Size of the copied file in MB (10^6 bytes).
    #[arg(long, default_value_t = 100)]
    pub size_mb: u64,
    /// Measure herd only.
    #[arg(long)]
    pub skip_ssh: bool,
    /// Where bench/setup-fleet-ssh.sh keeps the key, hosts file and machine directories.
    #[arg(long, default_value = "/tmp/herd-bench-fleet-ssh")]
    pub fleet_dir: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir (server data, logs) after the run.
    #[arg(long)]
    pub keep: bool,
}

/// The timed steps of a round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `herd cp` of a file the server does not hold, then of the same file again.
    Herd,
    /// parallel-scp, compression on (as shipped) or off.
    Scp { compress: bool },
}

#[derive(Serialize)]
struct Row {
    tool: String,
    how: String,
    /// Wall seconds of each timed copy, in round order.
    samples_s: Vec<f64>,
    summary: Summary,
    /// This row's median over herd's first-copy median.
    ratio_to_herd: Option<f64>,
    /// size × machines ÷ median, MB/s.
    aggregate_mb_s: f64,
    /// CPU seconds per copy, by process group, mean over the rounds.
    cpu_s: Vec<(String, f64)>,
    /// Seconds to fsync every machine's copy after the tool returned (baselines), per round.
    fsync_after_s: Vec<f64>,
}

#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<Vec<(String, f64)>>,
    fsync: Vec<f64>,
}

impl Samples {
    fn row(&self, tool: &str, how: String, bytes_all: f64) -> Row {
        let summary = stats::summarize(&self.wall);
        let mut cpu: Vec<(String, f64)> = Vec::new();
        for round in &self.cpu {
            for (k, v) in round {
                match cpu.iter_mut().find(|(n, _)| n == k) {
                    Some((_, sum)) => *sum += v,
                    None => cpu.push((k.clone(), *v)),
                }
            }
        }
        let rounds = self.cpu.len().max(1) as f64;
        for (_, v) in &mut cpu {
            *v /= rounds;
        }
        Row {
            tool: tool.to_string(),
            how,
            aggregate_mb_s: bytes_all / 1e6 / summary.p50,
            samples_s: self.wall.clone(),
            summary,
            ratio_to_herd: None,
            cpu_s: cpu,
            fsync_after_s: self.fsync.clone(),
        }
    }
}

/// The parallel-scp baseline of `bench/setup-fleet-ssh.sh`.
struct Scp {
    key: PathBuf,
    known_hosts: PathBuf,
    hosts: PathBuf,
    pscp: PathBuf,
    /// Each machine's own directory, where its copy lands.
    dirs: Vec<PathBuf>,
    /// The sshd daemons (their children's CPU is the remote side's).
    sshd_pids: Vec<u32>,
    /// A directory whose `scp` drops parallel-scp's `-C` (compression off).
    plain_path: std::ffi::OsString,
}

impl Scp {
    /// Fails with a one-line hint when `bench/setup-fleet-ssh.sh n` has not been run.
    fn check(dir: &Path, n: usize, tmp: &Path) -> Result<Scp> {
        let hint = format!("run bench/setup-fleet-ssh.sh {n} (as root) or pass --skip-ssh");
        let file = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if !p.is_file() {
                bail!("fleet baseline not set up: no {} — {hint}", p.display());
            }
            Ok(p)
        };
        let hosts = file("pssh_hosts")?;
        let text = std::fs::read_to_string(&hosts)
            .with_context(|| format!("cannot read {}", hosts.display()))?;
        let have = text.lines().filter(|l| !l.trim().is_empty()).count();
        if have != n {
            bail!("the fleet baseline is set up for {have} machines, not {n} — {hint}");
        }
        let dirs: Vec<PathBuf> = (1..=n)
            .map(|i| dir.join("machines").join(format!("bench-{i:02}")))
            .collect();
        if let Some(d) = dirs.iter().find(|d| !d.is_dir()) {
            bail!(
                "fleet baseline has no machine directories ({} is missing) — re-run bench/setup-fleet-ssh.sh {n} (as root)",
                d.display()
            );
        }
        let mut sshd_pids = Vec::new();
        for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let p = e?.path();
            let name = p.file_name().map(|f| f.to_string_lossy().into_owned());
            if name.is_some_and(|f| f.starts_with("sshd.") && f.ends_with(".pid")) {
                let pid = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                if let Some(pid) = pid {
                    sshd_pids.push(pid);
                }
            }
        }
        let scp = which("scp").with_context(|| format!("no scp on PATH — {hint}"))?;
        let bin = tmp.join("scp-plain");
        std::fs::create_dir_all(&bin)
            .with_context(|| format!("cannot create {}", bin.display()))?;
        let wrapper = bin.join("scp");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# parallel-scp always runs `scp -qC …`: the same without -C.\nfirst=\"$1\"; shift\n[ \"$first\" = -qC ] && first=-q\nexec '{}' \"$first\" \"$@\"\n",
                scp.display()
            ),
        )
        .with_context(|| format!("cannot write {}", wrapper.display()))?;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", wrapper.display()))?;
        let mut path = bin.into_os_string();
        if let Some(p) = std::env::var_os("PATH") {
            path.push(":");
            path.push(p);
        }
        Ok(Scp {
            key: file("id_ed25519")?,
            known_hosts: file("known_hosts")?,
            hosts,
            pscp: which("parallel-scp")
                .with_context(|| format!("no parallel-scp on PATH — {hint}"))?,
            dirs,
            sshd_pids,
            plain_path: path,
        })
    }

    /// `parallel-scp -h HOSTS -p N -l root -x -O -O … SRC '$HERD_BENCH_MACHINE_DIR/'`.
    fn cmd(&self, n: usize, src: &Path, compress: bool) -> Command {
        let mut c = Command::new(&self.pscp);
        c.arg("-h")
            .arg(&self.hosts)
            .arg("-p")
            .arg(n.to_string())
            .args(["-l", "root", "-x", "-O"]);
        for o in [
            format!("IdentityFile={}", self.key.display()),
            "IdentitiesOnly=yes".into(),
            "BatchMode=yes".into(),
            "StrictHostKeyChecking=yes".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "LogLevel=ERROR".into(),
        ] {
            c.arg("-O").arg(o);
        }
        c.arg(src).arg("$HERD_BENCH_MACHINE_DIR/");
        if !compress {
            c.env("PATH", &self.plain_path);
        }
        c
    }

    fn sshd_cpu(&self) -> f64 {
        self.sshd_pids
            .iter()
            .filter_map(|p| stats::proc_children_cpu_secs(*p).ok())
            .sum()
    }
}

/// Writes `size` pseudo-random bytes (splitmix64 from `seed`) to `path`; their SHA-256.
fn write_payload(path: &Path, size: u64, seed: u64) -> Result<String> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut h = Sha256::new();
    let mut state = seed;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            w.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Every machine's copy must be there whole: `size` bytes with SHA-256 `digest`, and no
/// `.herd-part` left. Hashes on two threads.
fn verify(dirs: &[PathBuf], size: u64, digest: &str, what: &str) -> Result<()> {
    let half = dirs.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        let jobs: Vec<_> = dirs
            .chunks(half)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for d in part {
                        let p = d.join(NAME);
                        let len = std::fs::metadata(&p)
                            .with_context(|| format!("{what}: no copy at {}", p.display()))?
                            .len();
                        if len != size {
                            bail!("{what}: {} has {len} bytes, expected {size}", p.display());
                        }
                        let got = file_sha256(&p)
                            .with_context(|| format!("{what}: cannot read {}", p.display()))?;
                        if got != digest {
                            bail!(
                                "{what}: {} has SHA-256 {got}, expected {digest}",
                                p.display()
                            );
                        }
                        if d.join(format!("{NAME}.herd-part")).exists() {
                            bail!("{what}: a part file is left in {}", d.display());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for j in jobs {
            j.join()
                .map_err(|_| anyhow::anyhow!("{what}: the check panicked"))??;
        }
        Ok(())
    })
}

/// fsyncs every machine's copy at once (as N agents do); the wall seconds it took.
fn fsync_all(dirs: &[PathBuf]) -> Result<f64> {
    let t = Instant::now();
    std::thread::scope(|s| {
        let jobs: Vec<_> = dirs
            .iter()
            .map(|d| {
                s.spawn(move || {
                    let p = d.join(NAME);
                    std::fs::File::open(&p)
                        .and_then(|f| f.sync_all())
                        .with_context(|| format!("cannot fsync {}", p.display()))
                })
            })
            .collect();
        for j in jobs {
            j.join().map_err(|_| anyhow::anyhow!("fsync panicked"))??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(t.elapsed().as_secs_f64())
}

/// Removes every machine's copy (and part file), then syncs the file systems.
fn clean(dirs: &[PathBuf]) -> Result<()> {
    for d in dirs {
        for name in [NAME.to_string(), format!("{NAME}.herd-part")] {
            let p = d.join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
            }
        }
    }
    nix::unistd::sync();
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a blocking step panicked")?
}

fn check_ok(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, excerpt(out));
    }
    Ok(())
}

pub async fn run(a: CopyArgs) -> Result<()> {
    let herd = spine::resolve_herd(a.herd.as_deref())?;
    if a.machines == 0 || a.machines > 253 {
        bail!("--machines must be 1 … 253 (the loopback addresses 127.0.0.2 … 127.0.0.254)");
    }
    if a.rounds == 0 || a.size_mb == 0 {
        bail!("--rounds and --size-mb must be at least 1");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "herd-bench copy runs each agent in a mount namespace of its own (unshare -m) — run it as root"
        );
    }
    if which("unshare").is_none() {
        bail!("no unshare on PATH — install util-linux");
    }
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-copy-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let dir = tmp.path().to_path_buf();
    let res = async {
        let scp = if a.skip_ssh {
            None
        } else {
            Some(Scp::check(&a.fleet_dir, a.machines, &dir)?)
        };
        bench(&a, &herd, &dir, scp.as_ref()).await
    }
    .await;
    if res.is_err() || a.keep {
        let kept = tmp.keep();
        eprintln!("herd-bench: logs and data kept in {}", kept.display());
    }
    res
}

async fn bench(a: &CopyArgs, herd: &Path, dir: &Path, scp: Option<&Scp>) -> Result<()> {
    let n = a.machines;
    let size = a.size_mb * 1_000_000;
    eprintln!("herd-bench: herd binary {}", herd.display());
    let load_start = spine::loadavg();

    let dest = dir.join("dest");
    let herd_dirs: Vec<PathBuf> = (1..=n)
        .map(|i| dir.join("machines").join(format!("bench-{i:02}")))
        .collect();
    for d in herd_dirs.iter().chain([&dest]) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let specs = (1..=n)
        .map(|i| {
            let script = format!(
                "mount --bind '{}' '{}' && exec \"$@\"",
                herd_dirs[i - 1].display(),
                dest.display()
            );
            AgentSpec {
                name: format!("bench-{i:02}"),
                labels: vec![LABEL.to_string()],
                wrap: [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &script,
                    "sh",
                ]
                .map(String::from)
                .to_vec(),
            }
        })
        .collect();
    eprintln!("herd-bench: starting herd server and {n} agents, each in its own mount namespace");
    let t = Instant::now();
    let db = fleet::Db::new(fleet::Store::Sqlite)?;
    let mut fleet = Fleet::start_agents(herd, dir, specs, &db).await?;
    eprintln!(
        "herd-bench: server {} (pid {}), {n} agents online after {:.1} s",
        fleet.url(),
        fleet.server.pid(),
        t.elapsed().as_secs_f64()
    );
    let blobs = fleet.server.data_dir.join("blobs");
    let agent_pids: Vec<u32> = fleet.agents.iter().map(|x| x.pid()).collect();
    let server_pid = fleet.server.pid();
    let herd_cpu = move || -> Vec<(String, f64)> {
        let agents: f64 = agent_pids
            .iter()
            .filter_map(|p| stats::proc_cpu_secs(*p).ok())
            .sum();
        vec![
            (
                "server".into(),
                stats::proc_cpu_secs(server_pid).unwrap_or(f64::NAN),
            ),
            ("agents".into(), agents),
            ("CLI".into(), stats::children_cpu_secs().unwrap_or(f64::NAN)),
        ]
    };
    let diff = |a: &[(String, f64)], b: &[(String, f64)]| -> Vec<(String, f64)> {
        a.iter()
            .zip(b)
            .map(|((k, x), (_, y))| (k.clone(), y - x))
            .collect()
    };

    let src = dir.join(NAME);
    let mut first = Samples::default();
    let mut again = Samples::default();
    let mut scp_c = Samples::default();
    let mut scp_plain = Samples::default();
    let mut orders = Vec::new();
    let mut steps = vec![Step::Herd];
    if scp.is_some() {
        steps.push(Step::Scp { compress: true });
        steps.push(Step::Scp { compress: false });
    }
    for r in 0..a.rounds {
        let p = src.clone();
        let seed = 0x6865_7264 ^ ((r as u64 + 1) << 32) ^ std::process::id() as u64;
        let digest = blocking(move || write_payload(&p, size, seed)).await?;
        let mut order = steps.clone();
        order.rotate_left(r % steps.len());
        let names: Vec<&str> = order
            .iter()
            .map(|s| match s {
                Step::Herd => "herd cp",
                Step::Scp { compress: true } => "parallel-scp",
                Step::Scp { compress: false } => "parallel-scp without -C",
            })
            .collect();
        orders.push(names.join(" → "));
        eprintln!(
            "herd-bench: round {} of {}: {} MB file {}…: {}",
            r + 1,
            a.rounds,
            a.size_mb,
            &digest[..12],
            names.join(" → ")
        );
        for step in order {
            match step {
                Step::Herd => {
                    for (label, into) in [("first", &mut first), ("again", &mut again)] {
                        if label == "first" {
                            for f in [digest.clone(), format!("{digest}.part")] {
                                let _ = std::fs::remove_file(blobs.join(f));
                            }
                        }
                        let d = herd_dirs.clone();
                        blocking(move || clean(&d)).await?;
                        let c0 = herd_cpu();
                        let mut cmd = fleet::cli(&fleet.server);
                        cmd.arg("cp")
                            .arg(&src)
                            .arg("-t")
                            .arg(format!("{LABEL}:{}/", dest.display()));
                        let (secs, out) = timed(cmd, "herd cp").await?;
                        let c1 = herd_cpu();
                        check_ok(&out, "herd cp")?;
                        let (d, g) = (herd_dirs.clone(), digest.clone());
                        blocking(move || verify(&d, size, &g, "herd cp")).await?;
                        eprintln!("herd-bench:   herd cp ({label}): {secs:.2} s");
                        into.wall.push(secs);
                        into.cpu.push(diff(&c0, &c1));
                    }
                    fleet.check_alive()?;
                    let d = herd_dirs.clone();
                    blocking(move || clean(&d)).await?;
                }
                Step::Scp { compress } => {
                    let Some(b) = scp else { continue };
                    let d = b.dirs.clone();
                    blocking(move || clean(&d)).await?;
                    let (cl0, sd0) = (stats::children_cpu_secs()?, b.sshd_cpu());
                    let (secs, out) = timed(b.cmd(n, &src, compress), "parallel-scp").await?;
                    let (cl1, sd1) = (stats::children_cpu_secs()?, b.sshd_cpu());
                    let ok = pssh_successes(&String::from_utf8_lossy(&out.stdout));
                    if !out.status.success() || ok != n {
                        bail!(
                            "parallel-scp failed ({}; {ok} of {n} machines succeeded) — the baseline must succeed everywhere:\n{}",
                            out.status,
                            excerpt(&out)
                        );
                    }
                    let d = b.dirs.clone();
                    let fsync = blocking(move || fsync_all(&d)).await?;
                    let (d, g) = (b.dirs.clone(), digest.clone());
                    blocking(move || verify(&d, size, &g, "parallel-scp")).await?;
                    let label = if compress { "as shipped, -C" } else { "no -C" };
                    eprintln!(
                        "herd-bench:   parallel-scp ({label}): {secs:.2} s (fsync of the copies after: {fsync:.2} s)"
                    );
                    let into = if compress { &mut scp_c } else { &mut scp_plain };
                    into.wall.push(secs);
                    into.fsync.push(fsync);
                    into.cpu.push(vec![
                        ("parallel-scp and scp".into(), cl1 - cl0),
                        ("sshd side".into(), sd1 - sd0),
                    ]);
                    let d = b.dirs.clone();
                    blocking(move || clean(&d)).await?;
                }
            }
        }
        for f in [digest.clone(), format!("{digest}.part")] {
            let _ = std::fs::remove_file(blobs.join(f));
        }
    }
    fleet.check_alive()?;
    drop(fleet);
    let _ = std::fs::remove_file(&src);

    let all = (size * n as u64) as f64;
    let target = format!("{LABEL}:DEST/");
    let mut rows = vec![
        first.row(
            "herd cp, new file",
            format!("`herd cp FILE -t '{target}'` (upload to the server included)"),
            all,
        ),
        again.row(
            "herd cp, blob on the server",
            "the same `herd cp` again right after (the server holds the file)".into(),
            all,
        ),
    ];
    let mut versions = json!({});
    if let Some(b) = scp {
        versions = json!({ "parallel_scp": version(&b.pscp, "--version").await });
        let base = format!(
            "`parallel-scp -h HOSTS -p {n} -l root -x -O -O IdentityFile=KEY -O UserKnownHostsFile=KNOWN … FILE '$HERD_BENCH_MACHINE_DIR/'`"
        );
        rows.push(scp_c.row(
            "parallel-scp (as shipped)",
            format!("{base} (runs `scp -qC`: compression on)"),
            all,
        ));
        rows.push(scp_plain.row(
            "parallel-scp, compression off",
            "the same with an `scp` first on PATH that drops `-C`".into(),
            all,
        ));
    }
    let herd_median = rows[0].summary.p50;
    for r in &mut rows {
        r.ratio_to_herd = Some(r.summary.p50 / herd_median);
    }
    let mut env = spine::environment(herd, &load_start);
    if let Value::Object(m) = &mut env {
        m.insert("versions".into(), versions);
    }
    let met = rows
        .get(2)
        .and_then(|r| r.ratio_to_herd)
        .map(|x| x >= TARGET_RATIO);
    let md = markdown(a, &env, &rows, &orders, met);
    println!("{md}");
    if let Some(out) = &a.out {
        let v = json!({
            "bench": "copy",
            "machines": n,
            "size_bytes": size,
            "rounds": a.rounds,
            "orders": orders,
            "environment": env,
            "target": {"parallel_scp_over_herd_min": TARGET_RATIO},
            "met": met,
            "rows": rows,
            "markdown": md,
        });
        crate::write_results(out, &v)?;
    }
    Ok(())
}

fn markdown(
    a: &CopyArgs,
    env: &Value,
    rows: &[Row],
    orders: &[String],
    met: Option<bool>,
) -> String {
    let n = a.machines;
    let s = |k: &str| env[k].as_str().unwrap_or("").to_string();
    let mut m = String::new();
    m.push_str(&format!(
        "## herd copy benchmark: a {} MB file to {n} machines\n\n",
        a.size_mb
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
    if let Some(p) = env["versions"]["parallel_scp"].as_str() {
        m.push_str(&format!("; parallel-scp {p}"));
    }
    m.push_str(&format!("; herd: `{}`\n\n", s("herd")));
    m.push_str("| Work | Tool | How | n | Wall s, min / **median** / max | Median ÷ herd cp median | MB/s to all machines (median) |\n");
    m.push_str("|---|---|---|---|---|---|---|\n");
    for (i, r) in rows.iter().enumerate() {
        let work = if i == 0 {
            format!("{} MB file to {n} machines, every copy written", a.size_mb)
        } else {
            "〃".to_string()
        };
        m.push_str(&format!(
            "| {work} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.tool,
            r.how,
            r.summary.n,
            secs3(&r.summary),
            ratio(r.ratio_to_herd),
            r.aggregate_mb_s,
        ));
    }
    if let Some(met) = met {
        let x = rows
            .get(2)
            .and_then(|r| r.ratio_to_herd)
            .unwrap_or(f64::NAN);
        let y = rows
            .get(3)
            .and_then(|r| r.ratio_to_herd)
            .unwrap_or(f64::NAN);
        m.push_str(&format!(
            "\nTarget: parallel-scp median ≥ {TARGET_RATIO:.0}× herd cp (new file) median: {} ({x:.2}×; against parallel-scp with compression off {y:.2}×).\n\n",
            if met { "met" } else { "**MISSED**" },
        ));
    } else {
        m.push('\n');
    }
    m.push_str("Details:\n\n");
    m.push_str(&format!(
        "- herd: one server (SQLite, plain HTTP on loopback) and {n} separate `herd agent` processes (label `{LABEL}`), each in its own mount namespace where the destination directory is the machine's own; each round copies a new file, so the first `herd cp` uploads it; agents write `payload.bin.herd-part`, hash it, fsync and rename it.\n"
    ));
    if a.skip_ssh {
        m.push_str("- Baseline skipped (--skip-ssh).\n");
    } else {
        m.push_str(&format!(
            "- Baseline: sshd (key login as root, `UsePAM no`, `UseDNS no`) on 127.0.0.2 … 127.0.0.{}, port 22 (bench/setup-fleet-ssh.sh), each address with its own destination directory (`SetEnv HERD_BENCH_MACHINE_DIR` in a `Match LocalAddress` block), reached by scp's legacy protocol (`-O`: the remote shell expands the variable; the SFTP protocol would not); every run must report success on all {n} machines. parallel-scp opens a new ssh connection to every machine on every run and does not fsync.\n",
            n + 1
        ));
    }
    m.push_str("- Every copy on every machine checked after each step (size and SHA-256), then removed and the file systems synced before the next step; the order of the tools rotates from round to round: ");
    m.push_str(&orders.join("; "));
    m.push_str(".\n");
    for r in rows {
        let cpu = r
            .cpu_s
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        m.push_str(&format!(
            "- {} runs, s, in order: {}; CPU s per copy: {cpu}",
            r.tool,
            samples(&r.samples_s),
        ));
        if !r.fsync_after_s.is_empty() {
            m.push_str(&format!(
                "; fsync of the {n} copies afterwards, s: {}",
                samples(&r.fsync_after_s)
            ));
        }
        m.push('\n');
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_by_seed_and_are_not_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let a = write_payload(&p, 3_000_001, 1).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3_000_001);
        assert_eq!(file_sha256(&p).unwrap(), a);
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.iter().filter(|b| **b == 0).count() < bytes.len() / 100);
        let b = write_payload(&p, 3_000_001, 2).unwrap();
        assert_ne!(a, b);
    }
}
