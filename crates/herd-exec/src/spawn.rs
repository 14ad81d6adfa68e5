//! Starting a task process and supervising it until its `Exited` event.
//!
//! Owns the task's life cycle: resolving the shell and working directory,
//! building the command (process group or PTY session, environment, stdio),
//! then one supervisor task per process that multiplexes the child's exit,
//! the timeout, control messages (stdin input, EOF, cancel) and the event
//! receiver going away, and finally drains output and reports the exit.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::coalesce::{PumpEnd, pump, sleep_until_opt};
use crate::files::{self, INPUT_ENV, OUTPUT_ENV};
use crate::kill::TaskTree;
use crate::mask::Masker;
use crate::probe::Probe;
use crate::tap::Tap;
use crate::{
    Control, ExecEvent, ExecHandle, ExecSpec, ExitInfo, ExitReason, JOIN_TOKEN_ENV, OutStream,
    TASK_ID_ENV,
};
use crate::{child, pty};
use herd_core::supervise::{Sample, Step, Supervisor};

/// Capacity of the control channel.
const CONTROL_CAPACITY: usize = 64;
/// Stdin chunks accepted but not yet written; beyond this we stop taking
/// control messages so input backs up into the control channel instead of
/// growing without bound.
const MAX_QUEUED_INPUT: usize = 64;
/// Grace period used when `ExecSpec::grace` is zero.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long output is still drained after the main process exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// PTY size unless the task's env sets COLUMNS/LINES.
const DEFAULT_COLS: u16 = 80;
const DEFAULT_ROWS: u16 = 24;

/// Starts the task; returns at once.
///
/// Exactly one `Exited` event is always sent, last, after all `Output`.
/// `Started` is sent first unless the process failed to start (then only
/// `Exited { reason: FailedToStart, detail: why }`).
///
/// Must be called from within a Tokio runtime. If `events`' receiver is
/// dropped, the task is considered abandoned and its process tree is
/// terminated.
pub fn spawn(spec: ExecSpec, events: mpsc::Sender<ExecEvent>) -> ExecHandle {
    let (control_tx, control_rx) = mpsc::channel(CONTROL_CAPACITY);
    tokio::spawn(run(spec, events, control_rx));
    ExecHandle {
        control: control_tx,
    }
}

async fn run(spec: ExecSpec, events: mpsc::Sender<ExecEvent>, control: mpsc::Receiver<Control>) {
    let start = Instant::now();
    let spec = Arc::new(spec);
    // Path lookups, stat calls and fork/exec are blocking syscalls; keep them
    // off the async threads.
    let start_spec = Arc::clone(&spec);
    let started = match tokio::task::spawn_blocking(move || start_process(&start_spec)).await {
        Ok(result) => result,
        Err(e) => Err(format!("internal error while starting: {e}")),
    };
    match started {
        Ok(process) => supervise(&spec, events, control, process, start).await,
        Err(detail) => {
            let info = ExitInfo {
                code: None,
                signal: None,
                reason: ExitReason::FailedToStart,
                duration: start.elapsed(),
                detail,
                outputs: Bytes::new(),
            };
            // Nobody listening is fine: there is nothing left to clean up.
            let _ = events.send(ExecEvent::Exited(info)).await;
        }
    }
}

/// A started process and its I/O endpoints.
struct Process {
    child: Child,
    pid: u32,
    io: ProcessIo,
    /// The task's runtime directory, whose `output` is read when it ends.
    outputs: Option<std::os::fd::OwnedFd>,
    /// The task's input (its stdin pipe or terminal) as /proc names a descriptor of it;
    /// `None` without one.
    input: Option<String>,
}

enum ProcessIo {
    Pipes {
        stdin: Option<ChildStdin>,
        stdout: tokio::process::ChildStdout,
        stderr: tokio::process::ChildStderr,
    },
    Pty {
        master: pty::Master,
    },
}

/// Resolves everything and forks. The error is the human-readable
/// `FailedToStart` detail.
fn start_process(spec: &ExecSpec) -> Result<Process, String> {
    let run_as = spec.user.as_deref().map(child::resolve_user).transpose()?;
    // The task's own directory, else the user's home (when it exists), else the agent's.
    let cwd = spec.cwd.clone().or_else(|| {
        run_as
            .as_ref()
            .map(|u| u.home.clone())
            .filter(|h| h.is_dir())
    });
    if let Some(dir) = &cwd {
        check_cwd(dir)?;
    }
    let path_var = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let shell = resolve_shell(&spec.shell, &path_var)?;
    let made = match &spec.files {
        Some(f) => Some(files::make(
            f,
            run_as.as_ref().map(|u| (u.uid, u.gid)),
            spec.script.as_deref(),
        )?),
        None => None,
    };
    // The task's PATH: its runtime `bin` (with `herd`) first.
    let path_var = match made.as_ref().and_then(|m| m.bin.as_ref()) {
        Some(bin) if path_var.is_empty() => bin.display().to_string(),
        Some(bin) => format!("{}:{path_var}", bin.display()),
        None => path_var,
    };
    if let Some(body) = &spec.script {
        check_interpreter(body, &path_var)?;
    }

    // A script is a file in the task's private directory when it has one; else it travels
    // as an in-memory file, close-on-exec in the agent, that the child alone keeps open
    // across exec (see `pre_exec` below), so no other task inherits it.
    let script_path = made.as_ref().and_then(|m| m.script.clone());
    let script = match (&spec.script, &script_path) {
        (Some(body), None) => Some(script_file(body)?),
        _ => None,
    };
    let mut cmd = match (&script, &spec.script) {
        (_, Some(body)) if script_path.is_some() || script.is_some() => {
            let path = match (&script_path, &script) {
                (Some(p), _) => p.display().to_string(),
                (None, Some(fd)) => format!("/dev/fd/{}", fd.as_raw_fd()),
                (None, None) => String::new(),
            };
            let mut c = if body.starts_with(b"#!") {
                Command::new(&path)
            } else {
                let mut c = Command::new(&shell);
                c.arg(&path);
                c
            };
            c.args(&spec.args);
            c
        }
        _ => {
            let mut c = Command::new(&shell);
            c.arg("-c").arg(&spec.command);
            c
        }
    };
    if let Some(dir) = &cwd {
        cmd.current_dir(dir);
    }
    if let Some(u) = &run_as {
        cmd.env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name)
            .env("SHELL", &u.shell);
    }
    // The agent may hold its join token in its environment (see `herd agent`); tasks never
    // inherit it.
    cmd.env_remove(JOIN_TOKEN_ENV);
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if spec.tty && !spec.env.iter().any(|(k, _)| k == "TERM") {
        cmd.env("TERM", "xterm-256color");
    }
    if let Some(m) = &made {
        cmd.env(INPUT_ENV, &m.input).env(OUTPUT_ENV, &m.output);
        if m.bin.is_some() {
            cmd.env("PATH", &path_var);
        }
    }
    // Set last so a stray HERD_TASK_ID in spec.env cannot hide the task from
    // descendant cleanup.
    cmd.env(TASK_ID_ENV, &spec.task_id);
    // If the supervisor is dropped (runtime shutdown), at least the main
    // process does not outlive it; tokio reaps it in the background.
    cmd.kill_on_drop(true);
    let script_fd = script.as_ref().map(|fd| fd.as_raw_fd());
    let tty = spec.tty;
    // SAFETY: the closure makes only async-signal-safe syscalls (sigaction, sigprocmask,
    // fcntl, setgroups, setgid, setuid, setsid, ioctl) and touches no memory shared with
    // other threads (`run_as` was resolved before the fork and is only read).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            child::setup(run_as.as_ref())?;
            if let Some(fd) = script_fd
                && libc::fcntl(fd, libc::F_SETFD, 0) == -1
            {
                return Err(io::Error::last_os_error());
            }
            if tty {
                pty::child_setup()?;
            }
            Ok(())
        });
    }

    let fail = |e: io::Error| match &spec.script {
        Some(_) => format!("failed to start the script: {e}"),
        None => format!("failed to start {}: {e}", shell.display()),
    };
    let process = if spec.tty {
        let (cols, rows) = match spec.window {
            Some((rows, cols)) => (cols, rows),
            None => window_size(&spec.env),
        };
        let pty = pty::open(cols, rows)
            .map_err(|e| format!("failed to allocate a pseudo-terminal: {e}"))?;
        let dup = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| format!("failed to set up the pseudo-terminal: {e}"))
        };
        cmd.stdin(dup(&pty.slave)?)
            .stdout(dup(&pty.slave)?)
            .stderr(dup(&pty.slave)?);
        let input = fd_name(&pty.slave);
        let child = cmd.spawn().map_err(fail)?;
        // The parent's copies of the slave must be closed, or the master
        // never sees EOF (EIO) when the task's side closes.
        drop(cmd);
        drop(pty.slave);
        let pid = child
            .id()
            .ok_or_else(|| "process exited before its pid was known".to_string())?;
        let master = pty::Master::new(pty.master)
            .map_err(|e| format!("failed to watch the pseudo-terminal: {e}"))?;
        Process {
            child,
            pid,
            io: ProcessIo::Pty { master },
            outputs: None,
            input,
        }
    } else {
        cmd.process_group(0)
            .stdin(if spec.interactive {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(fail)?;
        let pid = child
            .id()
            .ok_or_else(|| "process exited before its pid was known".to_string())?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("output pipes were not created".to_string());
        };
        // A larger pipe lets a fast writer go on while the agent is busy elsewhere: fewer
        // wake-ups on both sides. Best effort; the default size works too.
        grow_pipe(&stdout);
        grow_pipe(&stderr);
        let stdin = child.stdin.take();
        let input = stdin.as_ref().and_then(fd_name);
        Process {
            child,
            pid,
            io: ProcessIo::Pipes {
                stdin,
                stdout,
                stderr,
            },
            outputs: None,
            input,
        }
    };
    // The child has its own copy of the script; the agent's closes here.
    drop(script);
    let mut process = process;
    process.outputs = made.map(|m| m.dir);
    Ok(process)
}

/// The script in an in-memory file (close-on-exec), for the child to exec as `/dev/fd/N`.
fn script_file(body: &[u8]) -> Result<std::os::fd::OwnedFd, String> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fail = |e: &dyn std::fmt::Display| format!("cannot hold the script in memory: {e}");
    let fd = memfd_create("herd-script", MFdFlags::MFD_CLOEXEC).map_err(|e| fail(&e))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, body).map_err(|e| fail(&e))?;
    Ok(std::os::fd::OwnedFd::from(file))
}

/// A script whose `#!` line names an interpreter this machine does not have fails to start
/// with a line that says which (the kernel's own answer would be a bare ENOENT). `#!/usr/bin/env
/// NAME` looks NAME up on the task's PATH, as env will.
fn check_interpreter(body: &[u8], path_var: &str) -> Result<(), String> {
    let Some(rest) = body.strip_prefix(b"#!") else {
        return Ok(());
    };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let Some(interpreter) = words.next() else {
        return Ok(());
    };
    let missing = |name: &str| {
        Err(format!(
            "interpreter {name} not found on this machine — install it or name another in the script's #! line"
        ))
    };
    if !interpreter.starts_with('/') {
        // Relative to the working directory: left to the kernel.
        return Ok(());
    }
    if !is_executable(Path::new(interpreter)) {
        return missing(interpreter);
    }
    if Path::new(interpreter).file_name() == Some(std::ffi::OsStr::new("env")) {
        // The first word that is neither an option (-S, -i) nor an assignment.
        let Some(name) = words.find(|w| !w.starts_with('-') && !w.contains('=')) else {
            return Ok(());
        };
        let found = if name.contains('/') {
            is_executable(Path::new(name))
        } else {
            find_on_path(name, path_var).is_some()
        };
        if !found {
            return missing(name);
        }
    }
    Ok(())
}

fn check_cwd(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "working directory {} is not a directory",
            dir.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "working directory {} does not exist",
            dir.display()
        )),
        Err(e) => Err(format!("working directory {}: {e}", dir.display())),
    }
}

/// `""` means bash from PATH, else /bin/sh. A name with a slash is used as
/// is; a bare name is looked up on PATH.
fn resolve_shell(shell: &str, path_var: &str) -> Result<PathBuf, String> {
    if shell.is_empty() {
        if let Some(bash) = find_on_path("bash", path_var) {
            return Ok(bash);
        }
        let sh = PathBuf::from("/bin/sh");
        if is_executable(&sh) {
            return Ok(sh);
        }
        return Err("no shell: bash is not on PATH and /bin/sh does not exist".to_string());
    }
    if shell.contains('/') {
        let path = PathBuf::from(shell);
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(format!("shell {shell} does not exist or is not executable"));
    }
    find_on_path(shell, path_var).ok_or_else(|| format!("shell {shell:?} not found on PATH"))
}

fn find_on_path(name: &str, path_var: &str) -> Option<PathBuf> {
    path_var
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// COLUMNS/LINES from the task env when they are sane, else 80x24.
fn window_size(env: &[(String, String)]) -> (u16, u16) {
    let get = |name: &str, default: u16| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.trim().parse::<u16>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    (get("COLUMNS", DEFAULT_COLS), get("LINES", DEFAULT_ROWS))
}

/// How often a supervised task is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A supervised task's watch: its state machine, its processes and its output.
struct Watch {
    supervisor: Supervisor,
    probe: Arc<Probe>,
    tap: Arc<Tap>,
    /// When the next sample is due.
    next: Instant,
}

impl Watch {
    /// One sample: the process tree (on the blocking pool: /proc reads) and the output
    /// since the last one, through the state machine.
    async fn sample(&mut self, start: Instant, echo_off: bool) -> Step {
        let probe = Arc::clone(&self.probe);
        let procs = tokio::task::spawn_blocking(move || probe.sample())
            .await
            .unwrap_or_default();
        let seen = self.tap.take();
        let now = Instant::now();
        self.next = now + SAMPLE_EVERY;
        self.supervisor.observe(&Sample {
            at_ms: (now - start).as_millis() as u64,
            output_bytes: seen.bytes,
            lines: seen.lines,
            partial: seen.partial,
            last_line: seen.last_line,
            cpu_ticks: procs.cpu_ticks,
            processes: procs.processes,
            reading_input: procs.reading_input,
            echo_off,
        })
    }
}

/// Where stdin input goes.
enum Sink {
    Pipe(ChildStdin),
    Pty(pty::Master),
    Closed,
}

impl Sink {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Pipe(stdin) => stdin.write(buf).await,
            Sink::Pty(master) => master.write(buf).await,
            Sink::Closed => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }
}

/// Progress of cancel/timeout handling.
#[derive(Default)]
struct Termination {
    /// First cause; `None` while the task runs undisturbed.
    reason: Option<ExitReason>,
    /// When SIGKILL is due.
    kill_at: Option<Instant>,
    /// SIGKILL has been sent.
    killed: bool,
}

impl Termination {
    /// SIGTERM now (once), SIGKILL after `grace`. A later request can only
    /// bring the SIGKILL forward, and never changes the reason.
    async fn begin(&mut self, reason: ExitReason, grace: Duration, tree: &Arc<TaskTree>) {
        if self.killed {
            return;
        }
        let first = self.reason.is_none();
        if first {
            self.reason = Some(reason);
        }
        let due = Instant::now() + grace;
        self.kill_at = Some(self.kill_at.map_or(due, |k| k.min(due)));
        if grace.is_zero() {
            self.kill(tree).await;
        } else if first {
            tree.signal_async(Signal::SIGTERM).await;
        }
    }

    async fn kill(&mut self, tree: &Arc<TaskTree>) {
        self.killed = true;
        tree.signal_async(Signal::SIGKILL).await;
    }
}

async fn supervise(
    spec: &ExecSpec,
    events: mpsc::Sender<ExecEvent>,
    mut control: mpsc::Receiver<Control>,
    process: Process,
    start: Instant,
) {
    let Process {
        mut child,
        pid,
        io,
        outputs,
        input,
    } = process;
    let mut watch = spec.supervise.map(|s| Watch {
        supervisor: Supervisor::new(&spec.command, s.class, s.limits).on_terminal(spec.tty),
        probe: Arc::new(Probe::new(pid, input)),
        tap: Arc::new(Tap::default()),
        next: start + SAMPLE_EVERY,
    });
    let tap_for = || watch.as_ref().map(|w| Arc::clone(&w.tap));
    let masker = Masker::new(&spec.mask);
    let masker_for = || masker.as_ref().map(Masker::fresh);
    let tree = Arc::new(TaskTree::new(pid, &spec.task_id));
    let default_grace = if spec.grace.is_zero() {
        DEFAULT_GRACE
    } else {
        spec.grace
    };

    // If this fails the receiver is gone; the `closed()` branch below handles it.
    let _ = events.send(ExecEvent::Started { pid }).await;

    // Pumps start only after `Started` was queued, so it comes first.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pumps: Vec<JoinHandle<PumpEnd>> = Vec::new();
    // The terminal, for resizes (TTY mode).
    let mut terminal: Option<pty::Master> = None;
    let (mut sink, tty) = match io {
        ProcessIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            pumps.push(tokio::spawn(pump(
                stdout,
                OutStream::Stdout,
                events.clone(),
                stop_rx.clone(),
                masker_for(),
                tap_for(),
            )));
            pumps.push(tokio::spawn(pump(
                stderr,
                OutStream::Stderr,
                events.clone(),
                stop_rx.clone(),
                masker_for(),
                tap_for(),
            )));
            (stdin.map_or(Sink::Closed, Sink::Pipe), false)
        }
        ProcessIo::Pty { master } => {
            pumps.push(tokio::spawn(pump(
                master.clone(),
                OutStream::Stdout,
                events.clone(),
                stop_rx.clone(),
                masker_for(),
                tap_for(),
            )));
            terminal = Some(master.clone());
            (Sink::Pty(master), true)
        }
    };
    drop(stop_rx);

    // `None` in the queue means "close stdin" (pipe mode Eof).
    let mut queue: VecDeque<Option<Bytes>> = VecDeque::new();
    let mut term = Termination::default();
    let mut abandoned = false;
    let mut control_open = true;
    let timeout_at = spec.timeout.map(|t| start + t);
    // Why supervision stopped the task.
    let mut stopped: Option<String> = None;

    let status = loop {
        // Apply pending closes, and drop input that can no longer be written.
        while let Some(None) = queue.front() {
            queue.pop_front();
            sink = Sink::Closed;
        }
        if matches!(sink, Sink::Closed) {
            queue.clear();
        }
        let front: &[u8] = match queue.front() {
            Some(Some(bytes)) => bytes,
            _ => &[],
        };

        tokio::select! {
            biased;
            status = child.wait() => break status,
            _ = events.closed(), if !abandoned => {
                tracing::debug!(task_id = %spec.task_id, pid, "event receiver dropped; terminating abandoned task");
                abandoned = true;
                term.begin(ExitReason::Cancelled, default_grace, &tree).await;
            }
            _ = sleep_until_opt(timeout_at), if term.reason.is_none() => {
                term.begin(ExitReason::TimedOut, default_grace, &tree).await;
            }
            _ = sleep_until_opt(term.kill_at), if !term.killed => {
                term.kill(&tree).await;
            }
            _ = sleep_until_opt(watch.as_ref().map(|w| w.next)), if term.reason.is_none() => {
                if let Some(w) = watch.as_mut() {
                    let echo_off = terminal.as_ref().is_some_and(pty::Master::echo_off);
                    let step = w.sample(start, echo_off).await;
                    if let Some(state) = step.changed {
                        // If this fails the receiver is gone; the `closed()` branch handles it.
                        let _ = events.send(ExecEvent::Supervision(state)).await;
                    }
                    if let Some(reason) = step.stop {
                        tracing::debug!(task_id = %spec.task_id, reason = %reason, "supervision stops the task");
                        stopped = Some(reason);
                        term.begin(ExitReason::Stopped, default_grace, &tree).await;
                    }
                }
            }
            msg = control.recv(), if control_open && queue.len() < MAX_QUEUED_INPUT => match msg {
                Some(Control::Input(bytes)) => {
                    if matches!(sink, Sink::Closed) {
                        tracing::debug!(task_id = %spec.task_id, "stdin is closed or not interactive; input dropped");
                    } else if !bytes.is_empty() {
                        queue.push_back(Some(bytes));
                    }
                }
                // On a terminal, EOF is typed (^D); a pipe is closed.
                Some(Control::Eof) => queue.push_back(if tty { Some(Bytes::from_static(b"\x04")) } else { None }),
                Some(Control::Cancel { grace }) => {
                    term.begin(ExitReason::Cancelled, grace.unwrap_or(default_grace), &tree).await;
                }
                Some(Control::Resize { rows, cols }) => {
                    if let Some(t) = &terminal
                        && let Err(e) = t.resize(cols, rows)
                    {
                        tracing::debug!(task_id = %spec.task_id, error = %e, "resizing the terminal failed");
                    }
                }
                None => control_open = false,
            },
            written = sink.write(front), if !front.is_empty() => match written {
                Ok(n) => {
                    if let Some(Some(bytes)) = queue.front_mut() {
                        bytes.advance(n.min(bytes.len()));
                        if bytes.is_empty() {
                            queue.pop_front();
                        }
                    }
                }
                Err(e) => {
                    // Typically EPIPE: the process closed its stdin.
                    tracing::debug!(task_id = %spec.task_id, error = %e, "writing stdin failed; closing it");
                    sink = Sink::Closed;
                }
            },
        }
    };
    let exited_at = Instant::now();
    // The task is over for controllers: further sends fail instead of queueing.
    drop(control);
    drop(sink);

    // Drain output (bounded, a daemon may hold the pipe forever) while making
    // sure a cancelled/timed-out task leaves nothing behind.
    let drain = async {
        let deadline = exited_at + DRAIN_LIMIT;
        let mut cut_off = false;
        let mut failures = Vec::new();
        for mut handle in pumps {
            let end = tokio::select! {
                end = &mut handle => end,
                _ = tokio::time::sleep_until(deadline) => {
                    cut_off = true;
                    let _ = stop_tx.send(true);
                    handle.await
                }
            };
            match end {
                Ok(PumpEnd::Failed(e)) => failures.push(e.to_string()),
                Ok(PumpEnd::Stopped) => cut_off = true,
                Ok(PumpEnd::Eof | PumpEnd::Abandoned) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        (cut_off, failures)
    };
    let cleanup = async {
        if term.reason.is_some() {
            tree.finish_off(term.kill_at.unwrap_or(exited_at)).await;
        }
    };
    let ((cut_off, failures), ()) = tokio::join!(drain, cleanup);

    if abandoned {
        return;
    }
    let reason = term.reason.unwrap_or(ExitReason::Exited);
    let mut info = exit_info(
        &status,
        reason,
        spec.timeout,
        exited_at - start,
        cut_off,
        &failures,
    );
    if let Some(why) = stopped {
        info.detail = format!("{why}; {}", info.detail);
    }
    if let Some(path) = outputs {
        let read =
            tokio::task::spawn_blocking(move || files::read_outputs(&path, masker.as_ref())).await;
        let (outputs, note) = read.unwrap_or_else(|e| {
            (
                Bytes::new(),
                Some(format!("reading HERD_OUTPUT failed: {e}")),
            )
        });
        info.outputs = outputs;
        if let Some(note) = note {
            info.detail.push_str("; ");
            info.detail.push_str(&note);
        }
    }
    let _ = events.send(ExecEvent::Exited(info)).await;
}

fn exit_info(
    status: &io::Result<ExitStatus>,
    reason: ExitReason,
    timeout: Option<Duration>,
    duration: Duration,
    cut_off: bool,
    failures: &[String],
) -> ExitInfo {
    let (code, signal, how) = match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => (Some(code), None, format!("exited with code {code}")),
            (None, Some(sig)) => {
                let name = Signal::try_from(sig)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown");
                (None, Some(sig), format!("killed by signal {sig} ({name})"))
            }
            (None, None) => (None, None, format!("ended with status {st}")),
        },
        Err(e) => (None, None, format!("waiting for the process failed: {e}")),
    };
    let mut detail = match reason {
        ExitReason::TimedOut => match timeout {
            Some(t) => format!("timed out after {t:?}; {how}"),
            None => format!("timed out; {how}"),
        },
        ExitReason::Cancelled => format!("cancelled; {how}"),
        ExitReason::Exited | ExitReason::FailedToStart | ExitReason::Stopped => how,
    };
    if cut_off {
        detail.push_str(&format!(
            "; output cut off {DRAIN_LIMIT:?} after exit (a background process still holds stdout/stderr)"
        ));
    }
    for failure in failures {
        detail.push_str(&format!("; reading output failed: {failure}"));
    }
    ExitInfo {
        code,
        signal,
        reason,
        duration,
        detail,
        outputs: Bytes::new(),
    }
}

/// What /proc shows as the target of a descriptor of the same file (`pipe:[INODE]`,
/// `/dev/pts/N`): both ends of a pipe share its inode.
fn fd_name(fd: &impl AsRawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Pipe buffer asked for the task's output pipes.
const PIPE_BYTES: i32 = 1 << 20;

fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    use nix::fcntl::{FcntlArg, fcntl};
    if let Err(e) = fcntl(fd.as_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
        tracing::debug!(error = %e, "cannot enlarge the output pipe");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_resolution() {
        let path = std::env::var("PATH").unwrap_or_default();
        let default = resolve_shell("", &path).unwrap();
        assert!(
            default.ends_with("bash") || default == Path::new("/bin/sh"),
            "{default:?}"
        );
        // No bash on an empty PATH: falls back to /bin/sh.
        assert_eq!(resolve_shell("", "").unwrap(), PathBuf::from("/bin/sh"));
        assert!(
            resolve_shell("no-such-shell-xyz", &path)
                .unwrap_err()
                .contains("not found on PATH")
        );
        assert!(
            resolve_shell("/no/such/shell", &path)
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn missing_interpreters_are_named() {
        let path = std::env::var("PATH").unwrap_or_default();
        let ok: &[&[u8]] = &[
            b"echo no shebang",
            b"#!/bin/sh\necho",
            b"#!/usr/bin/env sh\necho",
            b"#! /usr/bin/env -S sh -e\n",
            b"#!/usr/bin/env A=1 sh\n",
            b"#!relative/interp\n",
            b"#!\n",
        ];
        for body in ok {
            assert_eq!(check_interpreter(body, &path), Ok(()), "{body:?}");
        }
        let missing: &[(&[u8], &str)] = &[
            (
                b"#!/usr/bin/env no-such-interpreter-xyz\n",
                "no-such-interpreter-xyz",
            ),
            (b"#!/no/such/interp -x\n", "/no/such/interp"),
            (b"#!/dev/null\n", "/dev/null"),
            (b"#!/usr/bin/env /no/such/python3\n", "/no/such/python3"),
        ];
        for (body, name) in missing {
            let e = check_interpreter(body, &path).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "interpreter {name} not found on this machine — install it or name another in the script's #! line"
                )
            );
        }
        // On the task's PATH, not the agent's.
        assert!(check_interpreter(b"#!/usr/bin/env sh\n", "/nonexistent").is_err());
    }

    #[test]
    fn window_size_from_env() {
        assert_eq!(window_size(&[]), (80, 24));
        let env = vec![
            ("COLUMNS".to_string(), "132".to_string()),
            ("LINES".to_string(), "x".to_string()),
        ];
        assert_eq!(window_size(&env), (132, 24));
    }
}
