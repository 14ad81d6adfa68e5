//! Child processes the testkit starts (killed and reaped when their handle drops), the
//! `herd` command with a clean environment, polling, log tails and checks over `/proc`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Lines of a log shown in an error.
const TAIL_LINES: usize = 15;

/// `herd` (the binary at `herd`) with none of the caller's herd settings: no server, key,
/// CA pin, join token, data dir, database or config file from the environment; logs at
/// `info`, no backtraces.
pub fn herd_command(herd: impl AsRef<Path>) -> Command {
    let mut c = Command::new(herd.as_ref());
    clean_env(&mut c);
    c
}

/// Removes the environment variables `herd` reads, so only what a caller sets applies.
pub(crate) fn clean_env(c: &mut Command) {
    for var in [
        "HERD_SERVER",
        "HERD_API_KEY",
        "HERD_CA_SHA256",
        "HERD_JOIN_TOKEN",
        "HERD_DATA_DIR",
        "HERD_DATABASE",
        "HERD_CONFIG",
    ] {
        c.env_remove(var);
    }
    c.env("HERD_LOG", "info").env("RUST_BACKTRACE", "0");
}

/// A started process: SIGKILLed and reaped when dropped, so nothing it started the test or
/// benchmark with outlives it, and a restart finds its port free.
pub(crate) struct Proc {
    child: Option<Child>,
    pid: u32,
    /// What it is, for messages ("herd server").
    what: String,
    /// Where its stderr goes, shown when it ends unexpectedly.
    log: PathBuf,
}

impl Proc {
    pub(crate) fn new(child: Child, what: impl Into<String>, log: &Path) -> Proc {
        Proc {
            pid: child.id(),
            child: Some(child),
            what: what.into(),
            log: log.to_path_buf(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails if the process has ended, with its status and the tail of its log.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.exited("killed"));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(self.exited(&st.to_string())),
            Err(e) => Err(self.exited(&e.to_string())),
        }
    }

    /// Whether it still runs, without reaping it (for callers holding `&self`).
    pub(crate) fn running(&self) -> bool {
        self.child.is_some() && alive(self.pid)
    }

    pub(crate) fn exited(&self, status: &str) -> Error {
        Error::Exited {
            what: self.what.clone(),
            status: status.to_string(),
            log: tail(&self.log),
        }
    }

    /// Waits up to `timeout` for the process to end on its own; its exit status.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (a clean stop), then up to `timeout` for it to end; SIGKILL if it does not.
    /// Its exit status, when it ended by itself.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let st = self.wait_exit(timeout);
        self.kill();
        st
    }

    /// SIGKILL, as a crash would, then reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `out` line by line on a thread of its own until EOF: every line goes to the returned
/// channel (as long as someone holds it), and the pipe is always drained, so the process never
/// blocks or fails on a full or closed stdout. The channel disconnects at EOF.
pub(crate) fn line_reader(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// The last lines of a log file (empty if it cannot be read).
pub fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines[from..].join("\n")
}

/// Opens a log file for a process's stderr; `append` keeps what earlier runs wrote.
pub(crate) fn log_file(path: &Path, append: bool) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path).map_err(crate::error::io(format!(
        "cannot create {}",
        path.display()
    )))
}

/// Calls `f` every 50 ms until it returns `Some`; fails after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
                log: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S …": the state follows the last ')', since comm may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// No process whose command line contains `needle` (zombies have none), on two looks 20 ms
/// apart: a process in the middle of an exec shows an empty command line for a moment. This
/// process, other instances of its binary (a test filter may name the needle) and cargo do
/// not count.
pub fn no_process_with(needle: &str) -> bool {
    if !no_process_now(needle) {
        return false;
    }
    std::thread::sleep(Duration::from_millis(20));
    no_process_now(needle)
}

fn no_process_now(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    let me = std::env::current_exe().ok();
    let own = std::process::id().to_string();
    for e in dir.flatten() {
        if e.file_name().to_str() == Some(own.as_str()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if me.is_some() && std::fs::read_link(e.path().join("exe")).ok() == me {
            continue;
        }
        let c = String::from_utf8_lossy(&raw).replace('\0', " ");
        if c.contains(needle) && !c.contains("cargo") {
            return false;
        }
    }
    true
}
