//! `herd-bench ask`: how well `herd ask --yes` does a table of plain-language administration
//! tasks with a real model, on a real agent. Each task has its own directory (made ready by
//! the bench), a request naming it, and a check command the bench runs on the machine
//! afterwards that decides success. Per task: success, the plan's steps, attempts and
//! alternatives run, policy stops (a plan or an alternative the policy gated), the time of the
//! whole `herd ask` process. Totals: the success rate, the time's median and spread, and the
//! commands that ran without being allowed as they stood (must be none: `--yes` never
//! approves).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use crate::fleet::{AGENT_NAME, Db, Fleet, blocking};
use crate::stats::{self, Summary};
use crate::workflows::get;

#[derive(Args, Clone)]
pub struct AskArgs {
    /// The RELEASE herd binary to measure (default: `herd` next to this binary, else
    /// $CARGO_TARGET_DIR/release/herd, else the workspace's target/release/herd).
    #[arg(long)]
    pub herd: Option<PathBuf>,
    /// The model's OpenAI-compatible base URL (`../shared/tools/local-llm start` prints it).
    #[arg(
        long,
        env = "HERD_LLM_URL",
        default_value = "http://127.0.0.1:18081/v1"
    )]
    pub llm_url: String,
    /// The model's name.
    #[arg(
        long,
        env = "HERD_LLM_MODEL",
        default_value = "qwen2.5-coder-1.5b-instruct"
    )]
    pub llm_model: String,
    /// Only these tasks (by name; repeatable).
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// How long one `herd ask` may take, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir (server data, logs, task directories) after the run.
    #[arg(long)]
    pub keep: bool,
}

/// One administration task: what to ask, how to make its directory ready, how to check it.
struct Task {
    name: &'static str,
    /// The request; `{D}` is the task's directory.
    ask: &'static str,
    /// Run by the bench in the task's directory before (`sh -c`).
    setup: &'static str,
    /// Run by the bench in the task's directory after: exit 0 is success.
    check: &'static str,
}

const TASKS: &[Task] = &[
    Task {
        name: "mkdir",
        ask: "Create the directory {D}/app/logs, with its parents.",
        setup: "",
        check: "test -d app/logs",
    },
    Task {
        name: "write-file",
        ask: "Create the file {D}/hello.txt containing exactly the line: hello world",
        setup: "",
        check: "grep -qx 'hello world' hello.txt",
    },
    Task {
        name: "cpus",
        ask: "Write the number of CPUs of this machine (just the number) into the file {D}/cpus.txt.",
        setup: "",
        check: "test \"$(tr -d ' \\n' < cpus.txt)\" = \"$(nproc)\"",
    },
    Task {
        name: "kernel",
        ask: "Write the running kernel's release (as uname -r prints it) into the file {D}/kernel.txt.",
        setup: "",
        check: "grep -qx \"$(uname -r)\" kernel.txt",
    },
    Task {
        name: "hostname",
        ask: "Save this machine's hostname into the file {D}/host.txt.",
        setup: "",
        check: "grep -qx \"$(hostname)\" host.txt",
    },
    Task {
        name: "chmod-x",
        ask: "Make the script {D}/run.sh executable.",
        setup: "printf '#!/bin/sh\\necho ok\\n' > run.sh; chmod 644 run.sh",
        check: "test -x run.sh",
    },
    Task {
        name: "count-lines",
        ask: "Count the lines of {D}/data.csv and write only the number into {D}/count.txt.",
        setup: "seq 1 42 | sed 's/$/,x/' > data.csv",
        check: "test \"$(tr -d ' \\n' < count.txt)\" = 42",
    },
    Task {
        name: "tar",
        ask: "Make a gzip-compressed tar archive {D}/src.tar.gz of the directory {D}/src.",
        setup: "mkdir -p src && echo 'fn main() {}' > src/main.rs",
        check: "tar tzf src.tar.gz | grep -q 'main.rs'",
    },
    Task {
        name: "find-large",
        ask: "List the names of the files larger than 1 MB under {D}/files, one per line, into {D}/large.txt.",
        setup: "mkdir -p files && head -c 2000000 /dev/zero > files/big.bin && echo small > files/small.txt",
        check: "grep -q big.bin large.txt && ! grep -q small.txt large.txt",
    },
    Task {
        name: "replace",
        ask: "In the file {D}/config.ini, replace every occurrence of the word foo with bar.",
        setup: "printf '[main]\\nname=foo\\nother=foo\\n' > config.ini",
        check: "grep -q 'name=bar' config.ini && ! grep -q foo config.ini",
    },
    Task {
        name: "symlink",
        ask: "Create a symbolic link {D}/current that points to the directory {D}/releases/v2.",
        setup: "mkdir -p releases/v1 releases/v2",
        check: "test \"$(readlink -f current)\" = \"$(readlink -f releases/v2)\"",
    },
    Task {
        name: "chmod-600",
        ask: "Set the permissions of {D}/secret.key so that only its owner can read and write it (mode 600).",
        setup: "echo key > secret.key; chmod 644 secret.key",
        check: "test \"$(stat -c %a secret.key)\" = 600",
    },
    Task {
        name: "memory",
        ask: "Write this machine's total memory in megabytes (just the number) into {D}/mem.txt.",
        setup: "",
        check: "n=$(tr -d ' \\n' < mem.txt); t=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo); [ \"$n\" -ge $((t*9/10)) ] && [ \"$n\" -le $((t*11/10+1)) ]",
    },
    Task {
        name: "largest",
        ask: "Write the name of the largest file in {D}/logs into {D}/largest.txt.",
        setup: "mkdir -p logs && head -c 5000 /dev/zero > logs/a.log && head -c 90000 /dev/zero > logs/b.log && head -c 700 /dev/zero > logs/c.log",
        check: "grep -q 'b.log' largest.txt && ! grep -q 'a.log' largest.txt",
    },
    Task {
        name: "append",
        ask: "Append the line 'export PATH=$PATH:/opt/tool/bin' to the file {D}/profile, keeping what it holds.",
        setup: "echo '# profile' > profile",
        check: "grep -q '^# profile' profile && grep -qF '/opt/tool/bin' profile",
    },
    Task {
        name: "extract",
        ask: "Extract the archive {D}/bundle.tar.gz into the directory {D}/out.",
        setup: "mkdir -p b/inner && echo data > b/inner/file.txt && tar czf bundle.tar.gz -C b inner && rm -rf b",
        check: "find out -name file.txt | grep -q .",
    },
    Task {
        name: "backup",
        ask: "Copy {D}/a.txt to {D}/backup/a.txt.bak (the backup directory does not exist yet).",
        setup: "echo precious > a.txt",
        check: "cmp -s a.txt backup/a.txt.bak",
    },
    Task {
        name: "clean-tmp",
        ask: "Delete every file ending in .tmp in {D}/cache, and nothing else.",
        setup: "mkdir -p cache && touch cache/x.tmp cache/y.tmp cache/keep.txt",
        check: "test -f cache/keep.txt && ! ls cache/*.tmp 2>/dev/null | grep -q .",
    },
    Task {
        name: "json",
        ask: "Create the JSON file {D}/info.json holding an object with the key name set to \"herd\" and the key version set to 1.",
        setup: "",
        check: "python3 -c 'import json,sys; d=json.load(open(\"info.json\")); sys.exit(0 if d.get(\"name\")==\"herd\" and d.get(\"version\")==1 else 1)'",
    },
    Task {
        name: "sort-unique",
        ask: "Sort the lines of {D}/names.txt, drop duplicates, and write the result to {D}/sorted.txt.",
        setup: "printf 'carol\\nalice\\nbob\\nalice\\n' > names.txt",
        check: "printf 'alice\\nbob\\ncarol\\n' | cmp -s - sorted.txt",
    },
    Task {
        name: "rename",
        ask: "Rename the file {D}/old_name.txt to {D}/new_name.txt.",
        setup: "echo x > old_name.txt",
        check: "test -f new_name.txt && ! test -e old_name.txt",
    },
    Task {
        name: "disk-free",
        ask: "Write the available space of the filesystem holding {D}, in kilobytes (just the number), into {D}/free.txt.",
        setup: "",
        check: "n=$(tr -d ' \\n' < free.txt); [ \"$n\" -gt 0 ] 2>/dev/null",
    },
];

#[derive(Debug, Clone, Serialize)]
struct Outcome {
    name: String,
    ok: bool,
    exit: Option<i32>,
    secs: f64,
    steps: usize,
    attempts: usize,
    alternatives: usize,
    retries: usize,
    /// The policy gated something: the plan (the run never started) or an alternative.
    policy_stops: usize,
    /// Commands that ran without being allowed as they stood (must be 0).
    ran_unapproved: usize,
    /// The error line of `herd ask`, when it failed before a run.
    error: Option<String>,
    run: Option<String>,
    /// Each attempt: its step, origin, command, approval and judgement.
    tried: Vec<String>,
}

pub async fn run(a: AskArgs) -> Result<()> {
    let herd = crate::spine::resolve_herd(a.herd.as_deref())?;
    let probe = reqwest::Client::new()
        .get(format!("{}/models", a.llm_url.trim_end_matches('/')))
        // A model busy with another request answers when it is done.
        .timeout(Duration::from_secs(300))
        .send()
        .await;
    if !probe.is_ok_and(|r| r.status().is_success()) {
        bail!(
            "no model answers at {} — start one (../shared/tools/local-llm start) or give --llm-url",
            a.llm_url
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("herd-bench-ask-")
        .tempdir()
        .context("cannot make a temp dir")?;
    let dir = tmp.path().to_path_buf();
    let res = bench(&a, &herd, &dir).await;
    if a.keep {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    res
}

async fn bench(a: &AskArgs, herd: &Path, dir: &Path) -> Result<()> {
    let load_start = crate::spine::loadavg();
    // The agent's tasks start in its working directory: the temp dir, never the caller's
    // (a model's command may write where it stands).
    let work = dir.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot make {}", work.display()))?;
    std::env::set_current_dir(&work)
        .with_context(|| format!("cannot change to {}", work.display()))?;
    let db = Db::new(crate::fleet::Store::Sqlite)?;
    let extra = [
        "--llm-url",
        a.llm_url.as_str(),
        "--llm-model",
        a.llm_model.as_str(),
    ];
    let fleet = Fleet::start_with(herd, dir, &db, &extra).await?;
    let tasks: Vec<&Task> = TASKS
        .iter()
        .filter(|t| a.only.is_empty() || a.only.iter().any(|o| o == t.name))
        .collect();
    if tasks.is_empty() {
        bail!(
            "no task matches --only (tasks: {})",
            TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
        );
    }
    let mut outcomes = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let d = dir.join("tasks").join(t.name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot make {}", d.display()))?;
        if !t.setup.is_empty() {
            sh(&d, t.setup).with_context(|| format!("{}: setup", t.name))?;
        }
        let request = t.ask.replace("{D}", &d.display().to_string());
        eprintln!("[{}/{}] {}: {request}", i + 1, tasks.len(), t.name);
        let o = one(a, &fleet, t, &d, &request).await?;
        eprintln!(
            "    {} in {:.1} s ({} steps, {} attempts, {} alternatives, {} policy stops){}",
            if o.ok { "done" } else { "NOT done" },
            o.secs,
            o.steps,
            o.attempts,
            o.alternatives,
            o.policy_stops,
            o.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        for t in &o.tried {
            eprintln!("      {t}");
        }
        outcomes.push(o);
    }
    let env = crate::spine::environment(herd, &load_start);
    let md = markdown(a, &env, &outcomes);
    println!("{md}");
    if let Some(out) = &a.out {
        let v = json!({"env": env, "model": a.llm_model, "tasks": outcomes});
        std::fs::write(out, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    drop(fleet);
    Ok(())
}

/// `sh -c script` in `dir`; fails unless it exits 0.
fn sh(dir: &Path, script: &str) -> Result<()> {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .context("cannot run sh")?;
    if !st.success() {
        bail!("`{script}` exited {st}");
    }
    Ok(())
}

async fn one(a: &AskArgs, fleet: &Fleet, t: &Task, d: &Path, request: &str) -> Result<Outcome> {
    let before: Vec<String> = workflow_runs(fleet).await?;
    let mut cmd = crate::fleet::cli(&fleet.server);
    cmd.args(["ask", request, "-t", AGENT_NAME, "--yes", "--quiet"]);
    cmd.stdin(std::process::Stdio::null());
    let t0 = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(a.timeout), cmd.output()).await;
    let secs = t0.elapsed().as_secs_f64();
    let (exit, stderr) = match out {
        Ok(Ok(o)) => (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        ),
        Ok(Err(e)) => bail!("cannot run herd ask: {e}"),
        Err(_) => (None, format!("timed out after {} s", a.timeout)),
    };
    let ok = blocking(|| sh(d, t.check)).is_ok();
    let run = workflow_runs(fleet)
        .await?
        .into_iter()
        .find(|r| !before.contains(r));
    let mut o = Outcome {
        name: t.name.to_string(),
        ok,
        exit,
        secs,
        steps: 0,
        attempts: 0,
        alternatives: 0,
        retries: 0,
        policy_stops: 0,
        ran_unapproved: 0,
        error: None,
        run: run.clone(),
        tried: Vec::new(),
    };
    let Some(run) = run else {
        // No run: the plan did not come, did not check out, or the policy stopped it.
        let line = stderr.lines().last().unwrap_or("").trim().to_string();
        if line.contains("denied by the command policy") || line.contains("needs approval") {
            o.policy_stops = 1;
        }
        o.error = Some(line);
        return Ok(o);
    };
    let v: Value = get(fleet, &format!("/api/v1/ask/runs/{run}")).await?;
    let attempts = v["attempts"].as_array().cloned().unwrap_or_default();
    o.steps = v["run"]["steps"].as_array().map(Vec::len).unwrap_or(0);
    o.attempts = attempts.iter().filter(|x| !x["run_id"].is_null()).count();
    o.alternatives = attempts
        .iter()
        .filter(|x| x["origin"] == "alternative" && !x["run_id"].is_null())
        .count();
    o.retries = attempts
        .iter()
        .filter(|x| x["origin"] == "retry" && !x["run_id"].is_null())
        .count();
    o.policy_stops = attempts
        .iter()
        .filter(|x| x["approval"] == "denied" || x["approval"] == "refused")
        .count();
    o.ran_unapproved = attempts
        .iter()
        .filter(|x| !x["run_id"].is_null() && x["check"]["decision"] != "allow")
        .count();
    o.tried = attempts
        .iter()
        .map(|x| {
            format!(
                "{} #{} {} [{}] $ {} => {}",
                x["step"].as_str().unwrap_or(""),
                x["attempt"],
                x["origin"].as_str().unwrap_or(""),
                x["approval"].as_str().unwrap_or(""),
                x["command"].as_str().unwrap_or(""),
                match x["validation"]["is_valid"].as_bool() {
                    Some(true) => format!(
                        "valid: {}",
                        x["validation"]["reason"].as_str().unwrap_or("")
                    ),
                    Some(false) => format!(
                        "invalid: {}",
                        x["validation"]["reason"].as_str().unwrap_or("")
                    ),
                    None => "not judged".to_string(),
                }
            )
        })
        .collect();
    if exit != Some(0) {
        o.error = stderr.lines().last().map(|l| l.trim().to_string());
    }
    Ok(o)
}

async fn workflow_runs(fleet: &Fleet) -> Result<Vec<String>> {
    let v = get(fleet, "/api/v1/workflow-runs?limit=1000").await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn markdown(a: &AskArgs, env: &Value, outcomes: &[Outcome]) -> String {
    let n = outcomes.len();
    let done = outcomes.iter().filter(|o| o.ok).count();
    let secs: Vec<f64> = outcomes.iter().map(|o| o.secs).collect();
    let s: Summary = stats::summarize(&secs);
    let unapproved: usize = outcomes.iter().map(|o| o.ran_unapproved).sum();
    let mut m = format!(
        "## herd ask benchmark\n\n{} CPUs ({}), load average (1/5/15 min) at start {} and end {}, Linux {}; model `{}` at {}; herd: `{}`\n\n",
        env["cpus"],
        env["cpu_model"].as_str().unwrap_or(""),
        env["loadavg_at_start"].as_str().unwrap_or(""),
        env["loadavg_at_end"].as_str().unwrap_or(""),
        env["kernel"].as_str().unwrap_or(""),
        a.llm_model,
        a.llm_url,
        env["herd"].as_str().unwrap_or(""),
    );
    m.push_str(&format!(
        "**{done} of {n} tasks done ({:.0} %)** (the task's check passed on the machine afterwards); time per task (whole `herd ask --yes` process) min / p10 / **median** / p90 / max: {:.1} / {:.1} / **{:.1}** / {:.1} / {:.1} s; alternatives run {}, retries {}, policy stops {}; commands run that the policy did not allow as they stood: **{unapproved}**\n\n",
        100.0 * done as f64 / n.max(1) as f64,
        s.min, s.p10, s.p50, s.p90, s.max,
        outcomes.iter().map(|o| o.alternatives).sum::<usize>(),
        outcomes.iter().map(|o| o.retries).sum::<usize>(),
        outcomes.iter().map(|o| o.policy_stops).sum::<usize>(),
    ));
    m.push_str("| Task | Done | Steps | Attempts run | Alternatives | Policy stops | Time, s | herd ask's last line when it failed |\n");
    m.push_str("|---|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
            o.name,
            if o.ok { "yes" } else { "no" },
            o.steps,
            o.attempts,
            o.alternatives,
            o.policy_stops,
            o.secs,
            o.error
                .as_deref()
                .unwrap_or("")
                .replace('|', "\\|")
                .chars()
                .take(160)
                .collect::<String>()
        ));
    }
    m
}
