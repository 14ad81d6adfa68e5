//! Termination of a task's whole process tree.
//!
//! Owns how "everything this task started" is found and signalled: the task's
//! process group (via `killpg`) plus any process that left the group (double
//! fork, `setsid`) but still carries `HERD_TASK_ID=<task_id>` in its initial
//! environment (found by scanning `/proc/*/environ`). The /proc scan is
//! blocking file I/O, so the async entry points run it in `spawn_blocking`.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::TASK_ID_ENV;

/// How often survivors are re-checked while waiting for them to die.
const POLL: Duration = Duration::from_millis(50);

/// Identifies one task's processes.
#[derive(Debug)]
pub(crate) struct TaskTree {
    /// Process group id of the task (= pid of its main process).
    pgid: i32,
    /// `HERD_TASK_ID=<task_id>` as it appears in /proc/<pid>/environ, or
    /// `None` when the task id is empty (an empty marker would match every
    /// process that merely has the variable set empty).
    marker: Option<Vec<u8>>,
}

impl TaskTree {
    pub(crate) fn new(pgid: u32, task_id: &str) -> Self {
        let marker = (!task_id.is_empty()).then(|| format!("{TASK_ID_ENV}={task_id}").into_bytes());
        Self {
            pgid: i32::try_from(pgid).unwrap_or(0),
            marker,
        }
    }

    /// Live (non-zombie) processes of the task other than ourselves: members
    /// of its process group and anything carrying its marker.
    pub(crate) fn members(&self) -> Vec<Pid> {
        let me = std::process::id();
        let Ok(dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me || pid <= 1 {
                continue;
            }
            // Processes vanish mid-scan all the time; any read error means
            // "not ours to worry about".
            let Some((state, pgrp)) = stat_state_pgrp(pid) else {
                continue;
            };
            if state == 'Z' || state == 'X' {
                continue; // already dead, waiting to be reaped by someone
            }
            let ours = (self.pgid > 1 && pgrp == self.pgid) || self.has_marker(pid);
            if ours && let Ok(pid) = i32::try_from(pid) {
                found.push(Pid::from_raw(pid));
            }
        }
        found
    }

    fn has_marker(&self, pid: u32) -> bool {
        let Some(marker) = &self.marker else {
            return false;
        };
        match fs::read(format!("/proc/{pid}/environ")) {
            Ok(env) => env.split(|b| *b == 0).any(|var| var == marker.as_slice()),
            Err(_) => false,
        }
    }

    /// Sends `sig` to the process group and to every member found by a scan.
    /// Returns how many members the scan found.
    pub(crate) fn signal(&self, sig: Signal) -> usize {
        if self.pgid > 1 {
            // ESRCH just means the group is already gone.
            let _ = killpg(Pid::from_raw(self.pgid), sig);
        }
        let members = self.members();
        for pid in &members {
            let _ = kill(*pid, sig);
        }
        members.len()
    }

    /// [`Self::signal`] off the async threads.
    pub(crate) async fn signal_async(self: &Arc<Self>, sig: Signal) -> usize {
        let tree = Arc::clone(self);
        match tokio::task::spawn_blocking(move || tree.signal(sig)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "process tree signalling task failed");
                0
            }
        }
    }

    /// Number of live members, off the async threads.
    async fn count_async(self: &Arc<Self>) -> usize {
        let tree = Arc::clone(self);
        tokio::task::spawn_blocking(move || tree.members().len())
            .await
            .unwrap_or(0)
    }

    /// Used once the main process has exited during a termination: SIGTERM
    /// everything still around (including descendants started after the
    /// first scan), wait for it to go away, and SIGKILL whatever is still
    /// alive at `kill_at` (or at once if `kill_at` has passed).
    pub(crate) async fn finish_off(self: &Arc<Self>, kill_at: Instant) {
        if Instant::now() < kill_at && self.signal_async(Signal::SIGTERM).await == 0 {
            return;
        }
        loop {
            if Instant::now() >= kill_at {
                let n = self.signal_async(Signal::SIGKILL).await;
                if n > 0 {
                    tracing::debug!(pgid = self.pgid, survivors = n, "SIGKILLed task survivors");
                }
                return;
            }
            tokio::time::sleep_until(kill_at.min(Instant::now() + POLL)).await;
            if self.count_async().await == 0 {
                return;
            }
        }
    }
}

/// State letter and process group from /proc/<pid>/stat.
fn stat_state_pgrp(pid: u32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may itself contain
    // spaces and parentheses, so parse from the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_own_stat() {
        let me = std::process::id();
        let (state, pgrp) = stat_state_pgrp(me).unwrap();
        assert_ne!(state, 'Z');
        assert_eq!(pgrp, nix::unistd::getpgrp().as_raw());
    }

    #[test]
    fn empty_task_id_has_no_marker() {
        let tree = TaskTree::new(0, "");
        assert!(tree.marker.is_none());
        // pgid 0 and no marker: must never match anything (in particular not
        // our own process group).
        assert!(tree.members().is_empty());
    }
}
