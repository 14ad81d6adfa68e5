//! What a task's processes are doing, read from /proc for its supervision.
//!
//! Owns one pass over the task's process tree per sample: from the main process down through
//! `/proc/PID/task/TID/children` (never a scan of all of /proc), the CPU ticks of each
//! process (its own and its reaped children's), a fingerprint of the pids, and whether one
//! of them is blocked reading the task's stdin or terminal (`/proc/PID/syscall`: a `read`
//! whose descriptor is the task's input). Blocking file reads: callers run it on the
//! blocking pool.

use std::fs;

/// Processes looked at per sample, at most (a fork bomb costs a bounded pass).
const MAX_PROCESSES: usize = 512;

/// `read`, `readv` and `pread64`, by number on this architecture.
#[cfg(target_arch = "x86_64")]
const READ_CALLS: &[u64] = &[0, 17, 19];
#[cfg(target_arch = "aarch64")]
const READ_CALLS: &[u64] = &[63, 65, 67];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const READ_CALLS: &[u64] = &[];

/// A task's process tree.
#[derive(Debug)]
pub(crate) struct Probe {
    root: u32,
    /// The task's input as `/proc/PID/fd/N` names it (`pipe:[INODE]`, `/dev/pts/N`); `None`
    /// when it has none (stdin is /dev/null).
    input: Option<String>,
}

/// One sample of the tree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcState {
    pub(crate) cpu_ticks: u64,
    pub(crate) processes: u64,
    pub(crate) reading_input: bool,
}

impl Probe {
    pub(crate) fn new(root: u32, input: Option<String>) -> Probe {
        Probe { root, input }
    }

    pub(crate) fn sample(&self) -> ProcState {
        let mut out = ProcState::default();
        let mut todo = vec![self.root];
        let mut seen = 0;
        while let Some(pid) = todo.pop() {
            if seen == MAX_PROCESSES {
                break;
            }
            seen += 1;
            // A process may end at any moment: what cannot be read is skipped.
            let Some(stat) = read_stat(pid) else { continue };
            out.cpu_ticks += stat.ticks;
            out.processes = out.processes.wrapping_add(mix(pid));
            if !out.reading_input
                && stat.state == b'S'
                && let Some(input) = &self.input
            {
                out.reading_input = reads(pid, input);
            }
            children(pid, stat.threads, &mut todo);
        }
        out
    }
}

struct Stat {
    state: u8,
    ticks: u64,
    threads: u64,
}

/// State, utime + stime + cutime + cstime and the number of threads of `/proc/PID/stat`.
fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().take(18).collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(Stat {
        state: f.first()?.bytes().next()?,
        ticks: num(11) + num(12) + num(13) + num(14),
        threads: num(17).max(1),
    })
}

/// Adds the children of every thread of `pid` to `todo`.
fn children(pid: u32, threads: u64, todo: &mut Vec<u32>) {
    let mut read = |tid: &str| {
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            todo.extend(
                text.split_ascii_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    };
    if threads <= 1 {
        read(&pid.to_string());
        return;
    }
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            if let Some(tid) = e.file_name().to_str() {
                read(tid);
            }
        }
    }
}

/// `pid` is blocked in a read of a descriptor that is the task's input.
fn reads(pid: u32, input: &str) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut f = text.split_ascii_whitespace();
    let Some(nr) = f.next().and_then(|n| n.parse::<u64>().ok()) else {
        return false; // "running", or not permitted
    };
    if !READ_CALLS.contains(&nr) {
        return false;
    }
    let Some(fd) = f
        .next()
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
    else {
        return false;
    };
    fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|p| p.as_os_str() == input)
}

/// A pid spread over 64 bits, so that the sum over a set changes when the set does.
fn mix(pid: u32) -> u64 {
    let mut z = u64::from(pid).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_read_of_the_tasks_stdin_is_seen_and_a_pipelines_is_not() {
        let mut child = Command::new("bash")
            .args(["-c", "read x; echo \"got $x\"; sleep 0.2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let link = fs::read_link(format!("/proc/self/fd/{}", stdin.as_raw_fd())).unwrap();
        let probe = Probe::new(child.id(), Some(link.to_string_lossy().into_owned()));
        until("blocked on stdin", || probe.sample().reading_input);
        let mut stdin = stdin;
        stdin.write_all(b"yes\n").unwrap();
        until("no longer reading", || !probe.sample().reading_input);
        child.wait().unwrap();

        // `cat` reads a pipe of its own pipeline, not the task's input.
        let mut child = Command::new("bash")
            .args(["-c", "sleep 5 | cat"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let link = fs::read_link(format!("/proc/self/fd/{}", stdin.as_raw_fd())).unwrap();
        let probe = Probe::new(child.id(), Some(link.to_string_lossy().into_owned()));
        until("both processes", || {
            let mut n = 0;
            let mut todo = vec![child.id()];
            while let Some(p) = todo.pop() {
                n += 1;
                children(p, 1, &mut todo);
            }
            n == 3
        });
        assert!(!probe.sample().reading_input);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn cpu_ticks_grow_for_a_busy_tree_and_the_fingerprint_follows_its_processes() {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("bash")
            .args(["-c", "(while :; do :; done) & sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let probe = Probe::new(child.id(), None);
        let first = probe.sample();
        until("ticks grow", || {
            probe.sample().cpu_ticks > first.cpu_ticks + 5
        });
        let mut one = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let alone = Probe::new(one.id(), None).sample();
        assert_ne!(alone.processes, first.processes);
        assert!(!alone.reading_input);
        for c in [&mut child, &mut one] {
            // The busy subshell is the group's: end it with the group.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            c.kill().ok();
            c.wait().unwrap();
        }
    }
}
