//! How a followed run ended, for a person and for the shell: the summary (a table of every
//! machine up to 20, beyond that the counts and the names of every machine that did not
//! succeed, by what happened to it) and the exit code (the first failing machine's).

use std::time::Duration;

use herd_api::Task;
use herd_api::task::{REASON_AGENT_OFFLINE, REASON_EXITED};
use herd_core::TaskState;

/// Up to this many machines the summary is a table of every machine; beyond it, the counts
/// and the names of every machine that did not succeed, by what happened to it.
const TABLE_UP_TO: usize = 20;

/// The groups of machines that did not succeed, in the order the summary names them.
const GROUPS: [&str; 6] = [
    "failed",
    "timed out",
    "offline",
    "never answered (lost)",
    "skipped",
    "cancelled",
];

/// The group of `GROUPS` a task belongs to; `None` for a task that succeeded (or has not
/// ended).
fn group(t: &Task) -> Option<usize> {
    match t.state {
        TaskState::Failed => Some(0),
        TaskState::TimedOut => Some(1),
        TaskState::Lost if t.reason.as_deref() == Some(REASON_AGENT_OFFLINE) => Some(2),
        TaskState::Lost => Some(3),
        TaskState::Skipped => Some(4),
        TaskState::Cancelled => Some(5),
        TaskState::Queued | TaskState::Dispatched | TaskState::Running | TaskState::Succeeded => {
            None
        }
    }
}

/// How long the task's process ran, or `-`.
fn took(t: &Task) -> String {
    match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) if f >= s => {
            herd_core::format_duration(Duration::from_millis((f - s) as u64))
        }
        _ => "-".into(),
    }
}

/// How the task ended beyond its state: exit code or signal, reason, the agent's words.
fn detail(t: &Task) -> String {
    let mut detail = String::new();
    if let Some(c) = t.exit_code {
        detail.push_str(&format!("exit {c}"));
    } else if let Some(s) = t.signal {
        detail.push_str(&format!("signal {s}"));
    }
    if let Some(r) = t.reason.as_deref().filter(|r| *r != REASON_EXITED) {
        if !detail.is_empty() {
            detail.push_str(", ");
        }
        detail.push_str(r);
    }
    // The agent's own words, unless they only repeat the exit code.
    if let Some(d) = t
        .detail
        .as_deref()
        .filter(|d| !d.is_empty() && !d.starts_with("exited with code"))
    {
        detail.push_str(&format!(": {d}"));
    }
    detail
}

/// The summary of the run's final tasks, as printed on stderr.
pub fn summary(tasks: &[Task]) -> String {
    let mut ok = 0;
    let mut lines = Vec::new();
    let mut groups: [Vec<String>; GROUPS.len()] = Default::default();
    for t in tasks {
        if t.state == TaskState::Succeeded {
            ok += 1;
        }
        let name = herd_core::escape_controls(&t.agent_name).into_owned();
        if let Some(g) = group(t) {
            let entry = match t.exit_code {
                Some(c) if t.state == TaskState::Failed => format!("{name} (exit {c})"),
                _ => name.clone(),
            };
            groups[g].push(entry);
        }
        lines.push(vec![name, t.state.to_string(), took(t), detail(t)]);
    }
    let mut out = format!("── {ok}/{} succeeded", tasks.len());
    for (h, names) in GROUPS.iter().zip(&groups) {
        if !names.is_empty() {
            out.push_str(&format!(" · {} {h}", names.len()));
        }
    }
    out.push('\n');
    if tasks.len() <= TABLE_UP_TO {
        out.push_str(&crate::table::render_stderr(
            &["MACHINE", "STATE", "TOOK", "DETAIL"],
            &lines,
        ));
        return out;
    }
    for (h, names) in GROUPS.iter().zip(&groups) {
        if !names.is_empty() {
            out.push_str(&format!("{h}: {}\n", names.join(", ")));
        }
    }
    out
}

/// The exit code of `herd run`: the first machine's that did not succeed, else 0.
pub fn exit_code(tasks: &[Task]) -> i32 {
    tasks
        .iter()
        .map(|t| {
            herd_core::cli_exit_code(
                t.state,
                t.exit_code.and_then(|c| i32::try_from(c).ok()),
                t.signal.and_then(|s| i32::try_from(s).ok()),
            )
        })
        .find(|&code| code != 0)
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A final task of machine `name`.
    fn task(name: &str, state: TaskState) -> Task {
        let (exit_code, reason) = match state {
            TaskState::Succeeded => (Some(0), Some(REASON_EXITED)),
            TaskState::Failed => (Some(2), Some(REASON_EXITED)),
            TaskState::TimedOut => (None, Some("timed out")),
            TaskState::Lost => (None, Some("its agent did not come back within 10m")),
            TaskState::Skipped => (
                None,
                Some("not started: the run's --max-errors was exceeded"),
            ),
            TaskState::Cancelled => (None, Some("cancelled before it started")),
            TaskState::Queued | TaskState::Dispatched | TaskState::Running => (None, None),
        };
        Task {
            id: format!("t-{name}"),
            run_id: "r".into(),
            agent_id: format!("a-{name}"),
            agent_name: name.into(),
            state,
            created_at: 1_000,
            dispatched_at: Some(1_000),
            started_at: Some(1_000),
            finished_at: Some(2_500),
            pid: Some(7),
            exit_code,
            signal: None,
            reason: reason.map(str::to_string),
            detail: None,
            out_seq: 1,
            out_total: 0,
            outputs: Default::default(),
            condition: None,
            supervision: None,
        }
    }

    fn offline(name: &str) -> Task {
        Task {
            reason: Some(REASON_AGENT_OFFLINE.into()),
            started_at: None,
            ..task(name, TaskState::Lost)
        }
    }

    #[test]
    fn exit_code_table() {
        use TaskState::*;
        let killed = Task {
            exit_code: None,
            signal: Some(9),
            ..task("k", Failed)
        };
        let cases: Vec<(Vec<Task>, i32)> = vec![
            (vec![], 0),
            (vec![task("a", Succeeded), task("b", Succeeded)], 0),
            (vec![task("a", Succeeded), task("b", Failed)], 2),
            (vec![task("a", TimedOut), task("b", Failed)], 124),
            (vec![task("a", Succeeded), killed], 137),
            (vec![task("a", Cancelled)], 130),
            (vec![offline("a")], 255),
            (vec![task("a", Succeeded), task("b", Skipped)], 1),
            (vec![task("a", Running)], 1),
        ];
        for (tasks, want) in cases {
            let states: Vec<TaskState> = tasks.iter().map(|t| t.state).collect();
            assert_eq!(exit_code(&tasks), want, "{states:?}");
        }
    }

    #[test]
    fn grouping_table() {
        use TaskState::*;
        let cases: Vec<(Task, Option<&str>)> = vec![
            (task("a", Succeeded), None),
            (task("a", Running), None),
            (task("a", Failed), Some("failed")),
            (task("a", TimedOut), Some("timed out")),
            (offline("a"), Some("offline")),
            (task("a", Lost), Some("never answered (lost)")),
            (task("a", Skipped), Some("skipped")),
            (task("a", Cancelled), Some("cancelled")),
        ];
        for (t, want) in cases {
            assert_eq!(group(&t).map(|g| GROUPS[g]), want, "{:?}", t.state);
        }
    }

    /// Up to 20 machines: the counts, then a row per machine.
    #[test]
    fn small_runs_get_a_table() {
        let killed = Task {
            exit_code: None,
            signal: Some(9),
            reason: Some("killed by signal".into()),
            detail: Some("killed by signal 9 (SIGKILL)".into()),
            ..task("k", TaskState::Failed)
        };
        let tasks = vec![
            task("web-1", TaskState::Succeeded),
            task("web-2", TaskState::Failed),
            killed,
            offline("db"),
        ];
        assert_eq!(
            summary(&tasks),
            concat!(
                "── 1/4 succeeded · 2 failed · 1 offline\n",
                "MACHINE  STATE      TOOK  DETAIL\n",
                "web-1    succeeded  1.5s  exit 0\n",
                "web-2    failed     1.5s  exit 2\n",
                "k        failed     1.5s  signal 9, killed by signal: killed by signal 9 (SIGKILL)\n",
                "db       lost       -     agent offline\n",
            )
        );
    }

    /// Beyond 20 machines: the counts, then every machine that did not succeed, by group.
    #[test]
    fn large_runs_name_who_did_not_succeed() {
        let mut tasks: Vec<Task> = (0..18)
            .map(|i| task(&format!("ok-{i}"), TaskState::Succeeded))
            .collect();
        tasks.push(task("f1", TaskState::Failed));
        tasks.push(task("t1", TaskState::TimedOut));
        tasks.push(offline("o1"));
        tasks.push(offline("o2"));
        tasks.push(task("l1", TaskState::Lost));
        tasks.push(task("s1", TaskState::Skipped));
        tasks.push(task("c1", TaskState::Cancelled));
        assert_eq!(
            summary(&tasks),
            concat!(
                "── 18/25 succeeded · 1 failed · 1 timed out · 2 offline",
                " · 1 never answered (lost) · 1 skipped · 1 cancelled\n",
                "failed: f1 (exit 2)\n",
                "timed out: t1\n",
                "offline: o1, o2\n",
                "never answered (lost): l1\n",
                "skipped: s1\n",
                "cancelled: c1\n",
            )
        );
        let all_ok: Vec<Task> = (0..21)
            .map(|i| task(&format!("m{i}"), TaskState::Succeeded))
            .collect();
        assert_eq!(summary(&all_ok), "── 21/21 succeeded\n");
    }
}
