//! `herd run` and following a task's output: create the run, attach over WebSocket, write
//! each machine's stdout and stderr as they arrive (prefixed with the machine name when more
//! than one runs), forward stdin with `-i`, cancel on Ctrl-C, summarise, and exit with the
//! first failing machine's code.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use herd_core::{Limit, TaskState};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Client, Ws};
use crate::config;

#[derive(Args)]
pub struct RunArgs {
    /// Machines to run on: name glob (web-*), label or fact (role=web, os=debian), with & (AND),
    /// , (OR), ! (NOT). Repeatable (OR).
    #[arg(short = 't', long = "target")]
    targets: Vec<String>,
    /// Every machine.
    #[arg(long, conflicts_with = "targets")]
    all: bool,
    /// End the command after this long (e.g. 500ms, 30s, 5m); exit code 124.
    #[arg(long, value_parser = crate::parse_dur)]
    timeout: Option<Duration>,
    /// Forward this terminal's stdin to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Run the command under a terminal (PTY).
    #[arg(long)]
    tty: bool,
    /// Print the run id and return at once.
    #[arg(long)]
    detach: bool,
    /// Environment for the command, K=V; repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory on the machines.
    #[arg(long)]
    cwd: Option<String>,
    /// Machines running at once: a number or a share of the targets (10%).
    #[arg(long, value_parser = parse_limit)]
    concurrency: Option<Limit>,
    /// Failures tolerated (a number or a share, 10%); once exceeded no new machine starts and
    /// the rest are reported as skipped. Offline machines count as failures.
    #[arg(long, value_parser = parse_limit)]
    max_errors: Option<Limit>,
    /// Pause after a machine finishes before its slot goes to the next one (e.g. 2s).
    #[arg(long, value_parser = crate::parse_dur)]
    batch_wait: Option<Duration>,
    /// One JSON event per line (output, progress, each machine's end, then the run) instead of
    /// plain output (with --detach: the created run).
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn parse_limit(s: &str) -> Result<Limit, String> {
    Limit::parse(s).map_err(|e| e.to_string())
}

/// Joins argv into one shell command; a single argument is taken as a shell snippet as is.
fn shell_command(argv: &[String]) -> String {
    if argv.len() == 1 {
        return argv[0].clone();
    }
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(a: RunArgs) -> Result<i32> {
    if !a.all && a.targets.is_empty() {
        bail!("no machines chosen — pass -t SELECTOR (e.g. -t web-1, -t role=web) or --all");
    }
    let mut env = serde_json::Map::new();
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("bad --env {kv:?}: expected KEY=VALUE"))?;
        env.insert(k.to_string(), Value::String(v.to_string()));
    }
    if a.concurrency == Some(Limit::Count(0)) {
        bail!("--concurrency must be at least 1 (or a share such as 10%)");
    }
    let mut limits = serde_json::Map::new();
    if let Some(c) = a.concurrency {
        limits.insert("concurrency".into(), json!(c));
    }
    if let Some(m) = a.max_errors {
        limits.insert("max_errors".into(), json!(m));
    }
    if let Some(w) = a.batch_wait {
        limits.insert("batch_wait_ms".into(), json!(w.as_millis() as u64));
    }
    let client = Client::from_config(&config::load()?)?;
    // Catch Ctrl-C before the run exists, so an early one cancels instead of killing us.
    let sigint = interrupts()?;
    let body = json!({
        "command": shell_command(&a.command),
        "targets": a.targets,
        "all": a.all,
        "start_on_attach": !a.detach,
        "timeout_ms": a.timeout.map(|d| d.as_millis() as u64).unwrap_or(0),
        "interactive": a.interactive,
        "tty": a.tty,
        "env": env,
        "cwd": a.cwd.clone().unwrap_or_default(),
        "limits": limits,
    });
    let run = client.post("/api/v1/runs", body).await?;
    let run_id = run["id"].as_str().unwrap_or_default().to_string();
    if a.detach {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&run)?);
        } else {
            println!("{run_id}");
        }
        return Ok(0);
    }
    let ws = client
        .websocket(&format!("/api/v1/runs/{run_id}/attach"))
        .await?;
    follow(
        ws,
        FollowOpts {
            interactive: a.interactive,
            tty: a.tty,
            json: a.json,
            summary: true,
            run_id,
        },
        sigint,
    )
    .await
}

pub fn interrupts() -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the Ctrl-C handler")
}

pub struct FollowOpts {
    pub interactive: bool,
    pub tty: bool,
    pub json: bool,
    pub summary: bool,
    pub run_id: String,
}

/// Buffer for prefixed lines of several machines: one write per chunk, not two per line.
const PREFIX_BUF: usize = 64 * 1024;

/// Standard output without std's line buffering (a duplicate of descriptor 1), or std's
/// stdout if it cannot be duplicated.
enum RawStdout {
    Fd(std::fs::File),
    Std(std::io::Stdout),
}

impl RawStdout {
    fn new() -> RawStdout {
        use std::os::fd::AsFd;
        let out = std::io::stdout();
        match out.as_fd().try_clone_to_owned() {
            Ok(fd) => RawStdout::Fd(std::fs::File::from(fd)),
            Err(_) => RawStdout::Std(out),
        }
    }
}

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStdout::Fd(f) => f.write(buf),
            RawStdout::Std(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStdout::Fd(f) => f.flush(),
            RawStdout::Std(s) => s.flush(),
        }
    }
}

/// Splits a machine's output into lines prefixed with its name.
#[derive(Default)]
struct Prefixer {
    at_line_start: HashMap<(u32, u8), bool>,
}

impl Prefixer {
    fn write(
        &mut self,
        out: &mut dyn Write,
        key: (u32, u8),
        name: &str,
        data: &[u8],
    ) -> std::io::Result<()> {
        let start = self.at_line_start.entry(key).or_insert(true);
        let mut rest = data;
        while !rest.is_empty() {
            if *start {
                write!(out, "{name}: ")?;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.write_all(&rest[..=i])?;
                    rest = &rest[i + 1..];
                    *start = true;
                }
                None => {
                    out.write_all(rest)?;
                    rest = &[];
                    *start = false;
                }
            }
        }
        Ok(())
    }

    /// Ends unterminated last lines so the next machine's output starts on a fresh line.
    fn finish(&mut self, out: &mut dyn Write, stream: u8) -> std::io::Result<()> {
        for ((_, s), start) in self.at_line_start.iter_mut() {
            if *s == stream && !*start {
                out.write_all(b"\n")?;
                *start = true;
            }
        }
        Ok(())
    }
}

/// The live `done / running / failed / pending of N` line of a fan-out, on a terminal's
/// stderr only; output lines are written above it.
struct ProgressLine {
    enabled: bool,
    shown: bool,
    last: Option<Value>,
    drawn_at: std::time::Instant,
}

impl ProgressLine {
    fn new(enabled: bool) -> ProgressLine {
        ProgressLine {
            enabled,
            shown: false,
            last: None,
            drawn_at: std::time::Instant::now(),
        }
    }

    fn clear(&mut self) {
        if self.shown {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(b"\r\x1b[2K");
            let _ = e.flush();
            self.shown = false;
        }
    }

    fn update(&mut self, p: Value) {
        self.last = Some(p);
        self.draw();
    }

    /// Redraws after output, at most ten times a second.
    fn redraw(&mut self) {
        if !self.shown && self.drawn_at.elapsed() >= Duration::from_millis(100) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let Some(p) = self.last.as_ref().filter(|_| self.enabled) else {
            return;
        };
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        let done = n("succeeded") + n("failed") + n("skipped") + n("cancelled");
        let mut line = format!(
            "── {done}/{} done · {} running · {} failed · {} pending",
            n("total"),
            n("running"),
            n("failed"),
            n("pending")
        );
        if n("skipped") > 0 {
            line.push_str(&format!(" · {} skipped", n("skipped")));
        }
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{line}");
        let _ = e.flush();
        self.shown = true;
        self.drawn_at = std::time::Instant::now();
    }
}

/// Prints one JSON event line on stdout.
fn emit(v: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Restores the terminal mode on drop.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enable() -> RawMode {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(orig) = tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

pub async fn follow(ws: Ws, o: FollowOpts, mut sigint: tokio::signal::unix::Signal) -> Result<i32> {
    use std::io::IsTerminal;
    let (mut tx, mut rx) = ws.split();
    let mut names: Vec<String> = Vec::new();
    let mut finals: Vec<Option<Value>> = Vec::new();
    let mut prefix = Prefixer::default();
    let stderr = std::io::stderr();
    // Output goes to the descriptor unbuffered: std's stdout is line-buffered, which scans
    // every chunk for its last newline and copies what follows it.
    let mut out = RawStdout::new();
    let mut end_run: Option<Value> = None;
    let _raw = (o.interactive && o.tty && std::io::stdin().is_terminal()).then(RawMode::enable);

    // stdin → server, in chunks; EOF is forwarded.
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(16);
    if o.interactive {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = in_tx.send(None).await;
                        return;
                    }
                    Ok(n) => {
                        if in_tx.send(Some(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        drop(in_tx);
    }
    let mut stdin_live = o.interactive;
    let mut interrupts = 0u32;
    let mut progress = ProgressLine::new(o.summary && !o.json && stderr.is_terminal());

    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { break };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => bail!("lost the connection to the server: {e} — the run goes on; see `herd runs show {}`", o.run_id),
                };
                match msg {
                    Message::Binary(b) => {
                        if b.len() < 6 || b[0] != 1 {
                            continue;
                        }
                        let idx = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                        let stream = b[5];
                        let data = &b[6..];
                        let multi = names.len() > 1;
                        if o.json {
                            let ev = json!({
                                "type": "output",
                                "machine": names.get(idx as usize).map(String::as_str).unwrap_or("?"),
                                "stream": if stream == 2 { "stderr" } else { "stdout" },
                                "data": String::from_utf8_lossy(data),
                            });
                            if let Err(e) = emit(&ev) {
                                if e.kind() == std::io::ErrorKind::BrokenPipe {
                                    return Ok(141);
                                }
                                return Err(e).context("cannot write output");
                            }
                            continue;
                        }
                        progress.clear();
                        let res = if stream == 2 {
                            let mut e = stderr.lock();
                            let r = if multi {
                                let mut w = std::io::BufWriter::with_capacity(PREFIX_BUF, &mut e);
                                prefix.write(&mut w, (idx, 2), names.get(idx as usize).map(String::as_str).unwrap_or("?"), data)
                                    .and_then(|_| w.flush())
                            } else {
                                e.write_all(data)
                            };
                            r.and_then(|_| e.flush())
                        } else if multi {
                            let mut w = std::io::BufWriter::with_capacity(PREFIX_BUF, &mut out);
                            prefix.write(&mut w, (idx, 1), names.get(idx as usize).map(String::as_str).unwrap_or("?"), data)
                                .and_then(|_| w.flush())
                        } else {
                            out.write_all(data)
                        };
                        if let Err(e) = res {
                            if e.kind() == std::io::ErrorKind::BrokenPipe {
                                return Ok(141);
                            }
                            return Err(e).context("cannot write output");
                        }
                        progress.redraw();
                    }
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        match v["type"].as_str() {
                            Some("hello") => {
                                if let Some(tasks) = v["tasks"].as_array() {
                                    names = tasks.iter().map(|t| t["agent_name"].as_str().unwrap_or("?").to_string()).collect();
                                    finals = vec![None; names.len()];
                                }
                            }
                            Some("task") => {
                                let i = v["index"].as_u64().unwrap_or(0) as usize;
                                if o.json {
                                    emit(&json!({"type": "task", "machine": names.get(i).map(String::as_str).unwrap_or("?"), "task": v["task"]})).ok();
                                }
                                if let Some(slot) = finals.get_mut(i) {
                                    *slot = Some(v["task"].clone());
                                }
                            }
                            Some("progress") => {
                                if o.json {
                                    emit(&v).ok();
                                } else if names.len() > 1 {
                                    progress.update(v);
                                }
                            }
                            Some("omitted") => {
                                let i = v["index"].as_u64().unwrap_or(0) as usize;
                                eprintln!("[herd: {} bytes of {}'s output omitted: over the stored-output cap]", v["bytes"], names.get(i).map(String::as_str).unwrap_or("?"));
                            }
                            Some("end") => {
                                end_run = Some(v["run"].clone());
                                break;
                            }
                            Some("error") => bail!("{}", v["error"].as_str().unwrap_or("server error")),
                            _ => {}
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            chunk = in_rx.recv(), if stdin_live => {
                match chunk {
                    Some(Some(data)) => { tx.send(Message::Binary(data.into())).await.ok(); }
                    _ => {
                        stdin_live = false;
                        tx.send(Message::Text(json!({"type":"eof"}).to_string().into())).await.ok();
                    }
                }
            }
            _ = sigint.recv() => {
                interrupts += 1;
                if interrupts > 1 {
                    eprintln!("herd: interrupted again; leaving the run {} to finish being cancelled on the server", o.run_id);
                    return Ok(130);
                }
                eprintln!("herd: cancelling (Ctrl-C again to stop waiting)");
                tx.send(Message::Text(json!({"type":"cancel"}).to_string().into())).await.ok();
            }
        }
    }
    progress.clear();
    let _ = prefix.finish(&mut out, 1);
    let _ = prefix.finish(&mut stderr.lock(), 2);
    drop(_raw);
    if end_run.is_none() {
        bail!(
            "the server closed the connection before the run ended — see `herd runs show {}`",
            o.run_id
        );
    }
    let finals: Vec<Value> = finals.into_iter().flatten().collect();
    if o.json {
        emit(&json!({"type": "end", "run": end_run, "tasks": finals}))
            .context("cannot write output")?;
    } else if o.summary {
        summarize(&finals);
    }
    Ok(exit_code(&finals))
}

fn exit_code(tasks: &[Value]) -> i32 {
    for t in tasks {
        let state: TaskState = t["state"]
            .as_str()
            .unwrap_or("lost")
            .parse()
            .unwrap_or(TaskState::Lost);
        let code = herd_core::cli_exit_code(
            state,
            t["exit_code"].as_i64().map(|c| c as i32),
            t["signal"].as_i64().map(|s| s as i32),
        );
        if code != 0 {
            return code;
        }
    }
    0
}

/// Up to this many machines the summary is a table of every machine; beyond it, the counts
/// and the names of every machine that did not succeed, by what happened to it.
const TABLE_UP_TO: usize = 20;

fn summarize(tasks: &[Value]) {
    let mut ok = 0;
    let mut lines = Vec::new();
    // (heading, machines) in a fixed order.
    let mut groups: Vec<(&str, Vec<String>)> = [
        "failed",
        "timed out",
        "offline",
        "never answered (lost)",
        "skipped",
        "cancelled",
    ]
    .into_iter()
    .map(|h| (h, Vec::new()))
    .collect();
    for t in tasks {
        let state = t["state"].as_str().unwrap_or("?");
        if state == "succeeded" {
            ok += 1;
        }
        let took = match (t["started_at"].as_i64(), t["finished_at"].as_i64()) {
            (Some(s), Some(f)) if f >= s => {
                herd_core::format_duration(Duration::from_millis((f - s) as u64))
            }
            _ => "-".into(),
        };
        let mut detail = String::new();
        if let Some(c) = t["exit_code"].as_i64() {
            detail.push_str(&format!("exit {c}"));
        } else if let Some(s) = t["signal"].as_i64() {
            detail.push_str(&format!("signal {s}"));
        }
        if let Some(r) = t["reason"].as_str().filter(|r| *r != "exited") {
            if !detail.is_empty() {
                detail.push_str(", ");
            }
            detail.push_str(r);
        }
        // The agent's own words, unless they only repeat the exit code.
        if let Some(d) = t["detail"]
            .as_str()
            .filter(|d| !d.is_empty() && !d.starts_with("exited with code"))
        {
            detail.push_str(&format!(": {d}"));
        }
        let name = t["agent_name"].as_str().unwrap_or("?").to_string();
        let group = match state {
            "failed" => Some(0),
            "timed_out" => Some(1),
            "lost" if t["reason"].as_str() == Some("agent offline") => Some(2),
            "lost" => Some(3),
            "skipped" => Some(4),
            "cancelled" => Some(5),
            _ => None,
        };
        if let Some(g) = group {
            let entry = match t["exit_code"].as_i64() {
                Some(c) if state == "failed" => format!("{name} (exit {c})"),
                _ => name.clone(),
            };
            groups[g].1.push(entry);
        }
        lines.push(vec![name, state.to_string(), took, detail]);
    }
    let mut err = std::io::stderr().lock();
    let mut head = format!("── {ok}/{} succeeded", tasks.len());
    for (h, names) in &groups {
        if !names.is_empty() {
            head.push_str(&format!(" · {} {h}", names.len()));
        }
    }
    let _ = writeln!(err, "{head}");
    if tasks.len() <= TABLE_UP_TO {
        let _ = write!(
            err,
            "{}",
            crate::table::render(&["MACHINE", "STATE", "TOOK", "DETAIL"], &lines)
        );
        return;
    }
    for (h, names) in &groups {
        if !names.is_empty() {
            let _ = writeln!(err, "{h}: {}", names.join(", "));
        }
    }
}
