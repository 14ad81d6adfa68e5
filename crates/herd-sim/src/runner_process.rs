//! The process runner itself, `herd bench fleet-runner`: reads `Start` and `Cancel` frames
//! on stdin, runs each task's process (a plain word list directly, anything else through a
//! shell), at most a few per CPU at once, and reports each task's events on stdout, its
//! `Exited` last.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herd_proto::v1::{self as pb, ServerFrame, TaskEvent, server_frame, task_event};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::sleep_until;

use crate::FleetError;
use crate::agent::{RunnerMsg, events_frame};
use crate::frame::{read_frame, write_frame};
use crate::lock;

/// Processes running at once per CPU, so a 10,000-machine fan-out queues instead of forking
/// 10,000 processes at once (128 at once on 2 cores was 4-7x slower).
const PROCS_PER_CPU: usize = 4;
/// Reports queued in the runner before a task waits to report.
const REPORT_QUEUE: usize = 1024;
/// Reports sent to the fleet in one frame at most.
const REPORT_BATCH: usize = 256;
/// Output kept per stream per task; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// After the main process exited, how long its output pipes may stay open (held by
/// processes it left behind) before those are killed and the task reported.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// SIGTERM → SIGKILL delay on cancel or timeout when the server gives none.
const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// How long a new process may take to exit and still be reported in one batch with its
/// start (most benchmark commands are this quick); longer ones report their start then.
const START_REPORT_DELAY: Duration = Duration::from_millis(20);

fn dup_fd(f: &impl std::os::fd::AsFd) -> io::Result<std::os::fd::OwnedFd> {
    f.as_fd().try_clone_to_owned()
}

/// `herd bench fleet-runner`: runs the tasks the fleet sends on stdin and reports on stdout
/// until stdin ends.
pub async fn serve() -> Result<(), FleetError> {
    // The pipes from the fleet, read and written without a blocking thread per operation.
    let pipe_err = |what: &str, e: io::Error| {
        FleetError::Config(format!(
            "the fleet's process runner needs its {what} to be a pipe from `herd bench fleet`: {e}"
        ))
    };
    let stdin = dup_fd(&std::io::stdin())
        .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd)
        .map_err(|e| pipe_err("stdin", e))?;
    let stdout = dup_fd(&std::io::stdout())
        .and_then(tokio::net::unix::pipe::Sender::from_owned_fd)
        .map_err(|e| pipe_err("stdout", e))?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let procs = Arc::new(Semaphore::new(PROCS_PER_CPU * cpus));
    let cancels: Arc<Mutex<HashMap<String, oneshot::Sender<Duration>>>> = Arc::default();
    let (report, mut reports) = mpsc::channel::<RunnerMsg>(REPORT_QUEUE);
    let write = async move {
        let mut out = BufWriter::new(stdout);
        let mut batch = Vec::with_capacity(REPORT_BATCH);
        while reports.recv_many(&mut batch, REPORT_BATCH).await > 0 {
            let events = batch
                .drain(..)
                .flat_map(|m| {
                    let task_id = m.task_id;
                    m.events.into_iter().map(move |kind| TaskEvent {
                        task_id: task_id.clone(),
                        seq: 0,
                        kind: Some(kind),
                    })
                })
                .collect();
            write_frame(&mut out, &events_frame(events)).await?;
            if reports.is_empty() {
                out.flush().await?;
            }
        }
        Ok::<(), io::Error>(())
    };
    let read = async {
        let mut input = BufReader::new(stdin);
        let mut buf = Vec::new();
        while let Some(frame) = read_frame::<_, ServerFrame>(&mut input, &mut buf).await? {
            match frame.kind {
                Some(server_frame::Kind::Start(st)) => {
                    let (tx, rx) = oneshot::channel();
                    lock(&cancels).insert(st.task_id.clone(), tx);
                    tokio::spawn(run_task(
                        procs.clone(),
                        report.clone(),
                        cancels.clone(),
                        st,
                        rx,
                    ));
                }
                Some(server_frame::Kind::Cancel(c)) => {
                    if let Some(tx) = lock(&cancels).remove(&c.task_id) {
                        let grace = if c.grace_ms > 0 {
                            Duration::from_millis(u64::from(c.grace_ms))
                        } else {
                            DEFAULT_GRACE
                        };
                        let _ = tx.send(grace);
                    }
                }
                _ => {}
            }
        }
        Ok::<(), io::Error>(())
    };
    let r = tokio::select! {
        r = write => r,
        r = read => r,
    };
    r.map_err(|e| FleetError::Config(format!("the fleet's process runner: {e}")))
}

/// Characters that make a command need a shell.
const SHELL_CHARS: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
    '=', '{', '}', '!', '%', '\n', '\r',
];

/// Words that are shell syntax or builtins without a program of their own.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "alias", "break", "case", "cd", "command", "continue", "do", "done", "elif", "else",
    "esac", "eval", "exec", "exit", "export", "fi", "for", "function", "getopts", "hash", "if",
    "local", "read", "readonly", "return", "set", "shift", "source", "then", "times", "trap",
    "type", "ulimit", "umask", "unset", "until", "wait", "while",
];

/// The words of `command` when it is a plain word list that can run without a shell: no
/// shell syntax, and a first word that is not shell syntax or a builtin.
pub fn plain_words(command: &str) -> Option<Vec<&str>> {
    if command.contains(SHELL_CHARS) {
        return None;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let first = words.first()?;
    if SHELL_WORDS.contains(first) {
        return None;
    }
    Some(words)
}

/// The program `name` resolves to through `path` (a `PATH` value); names with a `/` are
/// taken as they are.
pub(crate) fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs one task: waits for a process slot (a cancel while waiting ends it unrun), runs it
/// and reports its last events.
async fn run_task(
    procs: Arc<Semaphore>,
    report: mpsc::Sender<RunnerMsg>,
    cancels: Arc<Mutex<HashMap<String, oneshot::Sender<Duration>>>>,
    st: pb::StartTask,
    mut cancel: oneshot::Receiver<Duration>,
) {
    let task_id = st.task_id.clone();
    let permit = tokio::select! {
        p = procs.acquire() => p.ok(),
        _ = &mut cancel => None,
    };
    let events = match permit {
        Some(_permit) => Box::pin(execute(&report, st, cancel)).await,
        None => vec![task_event::Kind::Exited(pb::Exited {
            code: None,
            signal: None,
            reason: pb::ExitReason::Cancelled as i32,
            duration_ms: 0,
            detail: "cancelled before it started".into(),
            outputs: Default::default(),
        })],
    };
    lock(&cancels).remove(&task_id);
    let _ = report
        .send(RunnerMsg {
            task_id,
            events,
            done: true,
        })
        .await;
}

pub(crate) fn exited(reason: pb::ExitReason, detail: String, since: Instant) -> task_event::Kind {
    task_event::Kind::Exited(pb::Exited {
        code: None,
        signal: None,
        reason: reason as i32,
        duration_ms: since.elapsed().as_millis() as u64,
        detail,
        outputs: Default::default(),
    })
}

/// Signals the task's process group; errors (the group is gone) do not matter.
fn signal_group(pgid: Option<u32>, sig: nix::sys::signal::Signal) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Starts the process, reports Started, waits for it (timeout, cancel), and returns the
/// Output and Exited events.
async fn execute(
    report: &mpsc::Sender<RunnerMsg>,
    st: pb::StartTask,
    mut cancel: oneshot::Receiver<Duration>,
) -> Vec<task_event::Kind> {
    use nix::sys::signal::Signal;
    use std::process::Stdio;

    let since = Instant::now();
    let path = st
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let direct = plain_words(&st.command).and_then(|w| find_program(w[0], &path).map(|p| (p, w)));
    let mut cmd = match direct {
        Some((program, words)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(&words[1..]);
            c
        }
        None => {
            let shell = if st.shell.is_empty() { "sh" } else { &st.shell };
            let mut c = tokio::process::Command::new(shell);
            c.arg("-c").arg(&st.command);
            c
        }
    };
    cmd.env(herd_exec::TASK_ID_ENV, &st.task_id)
        .envs(&st.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !st.cwd.is_empty() {
        cmd.current_dir(&st.cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return vec![exited(
                pb::ExitReason::FailedToStart,
                if st.cwd.is_empty() {
                    format!("cannot start {:?}: {e}", st.command)
                } else {
                    format!("cannot start {:?} in {}: {e}", st.command, st.cwd)
                },
                since,
            )];
        }
    };
    let pgid = child.id();
    let started = task_event::Kind::Started(pb::Started {
        pid: pgid.unwrap_or(0),
    });
    // Reported with the exit when the process is quick, else on its own after a moment.
    let mut start_report = Some(started);
    let report_start_at = tokio::time::Instant::now() + START_REPORT_DELAY;

    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let (mut out_dropped, mut err_dropped) = (0u64, 0u64);
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let deadline = (st.timeout_ms > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_millis(st.timeout_ms));
    let grace = if st.grace_ms > 0 {
        Duration::from_millis(u64::from(st.grace_ms))
    } else {
        DEFAULT_GRACE
    };
    let mut reason = pb::ExitReason::Exited;
    let mut status = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut cancel_open = true;
    {
        let stdout = read_bounded(child.stdout.take(), &mut out_buf, &mut out_dropped);
        let stderr = read_bounded(child.stderr.take(), &mut err_buf, &mut err_dropped);
        tokio::pin!(stdout, stderr);
        let (mut out_done, mut err_done) = (false, false);
        while !(status.is_some() && out_done && err_done) {
            tokio::select! {
                _ = &mut stdout, if !out_done => out_done = true,
                _ = &mut stderr, if !err_done => err_done = true,
                s = child.wait(), if status.is_none() => {
                    status = Some(s);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_WAIT);
                }
                _ = sleep_until(deadline.unwrap_or(far)),
                    if deadline.is_some() && reason == pb::ExitReason::Exited && status.is_none() => {
                    reason = pb::ExitReason::TimedOut;
                    signal_group(pgid, Signal::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + grace);
                }
                g = &mut cancel, if cancel_open => {
                    cancel_open = false;
                    // A dropped sender (the agent went away) is no cancel.
                    if let Ok(g) = g && reason == pb::ExitReason::Exited && status.is_none() {
                        reason = pb::ExitReason::Cancelled;
                        signal_group(pgid, Signal::SIGTERM);
                        kill_at = Some(tokio::time::Instant::now() + g);
                    }
                }
                _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    kill_at = None;
                    signal_group(pgid, Signal::SIGKILL);
                }
                _ = sleep_until(report_start_at), if start_report.is_some() && status.is_none() => {
                    if let Some(started) = start_report.take() {
                        let _ = report
                            .send(RunnerMsg {
                                task_id: st.task_id.clone(),
                                events: vec![started],
                                done: false,
                            })
                            .await;
                    }
                }
                _ = sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                    // Processes left behind hold the output open: end them and report.
                    signal_group(pgid, Signal::SIGKILL);
                    break;
                }
            }
        }
    }
    if kill_at.is_some() {
        signal_group(pgid, Signal::SIGKILL);
    }
    let mut events = Vec::with_capacity(4);
    events.extend(start_report);
    for (buf, stream) in [(out_buf, pb::Stream::Stdout), (err_buf, pb::Stream::Stderr)] {
        if !buf.is_empty() {
            events.push(task_event::Kind::Output(pb::Output {
                stream: stream as i32,
                data: Bytes::from(buf),
            }));
        }
    }
    let mut detail = String::new();
    if out_dropped + err_dropped > 0 {
        detail = format!(
            "the simulated agent kept {} KiB per stream and dropped {} bytes of output",
            OUTPUT_CAP / 1024,
            out_dropped + err_dropped
        );
    }
    let exit = match status {
        Some(Ok(s)) => {
            use std::os::unix::process::ExitStatusExt;
            pb::Exited {
                code: s.code(),
                signal: s.signal(),
                reason: reason as i32,
                duration_ms: since.elapsed().as_millis() as u64,
                detail,
                outputs: Default::default(),
            }
        }
        Some(Err(e)) => pb::Exited {
            code: None,
            signal: None,
            reason: pb::ExitReason::Unspecified as i32,
            duration_ms: since.elapsed().as_millis() as u64,
            detail: format!("cannot wait for the process: {e}"),
            outputs: Default::default(),
        },
        None => pb::Exited {
            code: None,
            signal: None,
            reason: pb::ExitReason::Unspecified as i32,
            duration_ms: since.elapsed().as_millis() as u64,
            detail: "the process could not be waited for".into(),
            outputs: Default::default(),
        },
    };
    events.push(task_event::Kind::Exited(exit));
    events
}

/// Reads `r` to its end, keeping the first [`OUTPUT_CAP`] bytes in `keep` and counting the
/// rest in `dropped`.
async fn read_bounded<R: AsyncRead + Unpin>(r: Option<R>, keep: &mut Vec<u8>, dropped: &mut u64) {
    let Some(mut r) = r else { return };
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let take = n.min(OUTPUT_CAP - keep.len());
                keep.extend_from_slice(&chunk[..take]);
                *dropped += (n - take) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_word_lists() {
        assert_eq!(plain_words("true"), Some(vec!["true"]));
        assert_eq!(
            plain_words("  echo  hi\tthere "),
            Some(vec!["echo", "hi", "there"])
        );
        assert_eq!(
            plain_words("/bin/ls -l /tmp"),
            Some(vec!["/bin/ls", "-l", "/tmp"])
        );
        assert_eq!(plain_words("sleep 0.5"), Some(vec!["sleep", "0.5"]));
        for shell in [
            "",
            "   ",
            "echo hi | wc",
            "true && false",
            "a; b",
            "cat < f",
            "echo > f",
            "(true)",
            "echo $HOME",
            "echo `id`",
            "echo a\\ b",
            "echo \"x\"",
            "echo 'x'",
            "ls *.rs",
            "ls ?",
            "ls [ab]",
            "echo # c",
            "ls ~",
            "FOO=1 env",
            "echo {a,b}",
            "! true",
            "echo a\nb",
            "cd /tmp",
            "exit 3",
            "export A",
        ] {
            assert_eq!(plain_words(shell), None, "{shell:?}");
        }
    }

    #[test]
    fn programs_are_found_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_program("tool", &path), Some(exe));
        assert_eq!(find_program("data", &path), None);
        assert_eq!(find_program("missing", &path), None);
        assert_eq!(
            find_program("./rel/tool", &path),
            Some(PathBuf::from("./rel/tool"))
        );
    }
}
