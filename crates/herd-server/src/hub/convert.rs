//! What agents report, from the wire into herd's domain types. Text an agent sends is
//! stored as text, which may not hold U+0000 (PostgreSQL refuses it): it becomes U+FFFD.

use std::collections::HashMap;

use herd_core::{Disk, Facts, Labels, Metrics, TaskState};
use herd_proto::v1 as pb;

/// Reported text as it can be stored.
pub fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn texts(v: &[String]) -> Vec<String> {
    v.iter().map(|s| text(s)).collect()
}

pub fn labels(l: &HashMap<String, String>) -> Labels {
    l.iter().map(|(k, v)| (text(k), text(v))).collect()
}

pub fn facts(f: &pb::Facts) -> Facts {
    Facts {
        machine_id: text(&f.machine_id),
        hostname: text(&f.hostname),
        os: text(&f.os_id),
        os_name: text(&f.os_name),
        os_version: text(&f.os_version),
        kernel: text(&f.kernel),
        arch: text(&f.arch),
        cpus: f.cpus,
        memory_bytes: f.memory_bytes,
        disks: f
            .disks
            .iter()
            .map(|d| Disk {
                mount: text(&d.mount),
                fs: text(&d.fs),
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            })
            .collect(),
        ips: texts(&f.ips),
        macs: texts(&f.macs),
    }
}

pub fn metrics(m: &pb::Metrics) -> Metrics {
    Metrics {
        cpu_percent: m.cpu_percent,
        memory_used_bytes: m.memory_used_bytes,
        memory_total_bytes: m.memory_total_bytes,
        disk_used_bytes: m.disk_used_bytes,
        disk_total_bytes: m.disk_total_bytes,
        load1: m.load1,
        load5: m.load5,
        load15: m.load15,
    }
}

/// How a task ended, from the agent's report: its final state and the reason shown.
pub fn exit(x: &pb::Exited, at: i64) -> herd_store::Exit {
    use herd_core::ExitKind;
    let reason = pb::ExitReason::try_from(x.reason).unwrap_or(pb::ExitReason::Unspecified);
    let (state, why) = match reason {
        // A signal death without a code is a failure, not a success.
        pb::ExitReason::Exited => (
            herd_core::task_state_for_exit(x.code, ExitKind::Exited),
            if x.signal.is_some() {
                "killed by signal"
            } else {
                "exited"
            },
        ),
        pb::ExitReason::TimedOut => (TaskState::TimedOut, "timed out"),
        pb::ExitReason::Cancelled => (TaskState::Cancelled, "cancelled"),
        pb::ExitReason::FailedToStart => (TaskState::Failed, "failed to start"),
        pb::ExitReason::Unspecified => (TaskState::Lost, "lost"),
    };
    herd_store::Exit {
        state,
        code: x.code,
        signal: x.signal,
        reason: why.to_string(),
        detail: text(&x.detail),
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reports_map_to_final_states() {
        let x = |reason: pb::ExitReason, code: Option<i32>, signal: Option<i32>| pb::Exited {
            code,
            signal,
            reason: reason as i32,
            duration_ms: 0,
            detail: String::new(),
        };
        let cases = [
            (
                x(pb::ExitReason::Exited, Some(0), None),
                TaskState::Succeeded,
                "exited",
            ),
            (
                x(pb::ExitReason::Exited, Some(3), None),
                TaskState::Failed,
                "exited",
            ),
            (
                x(pb::ExitReason::Exited, None, Some(9)),
                TaskState::Failed,
                "killed by signal",
            ),
            (
                x(pb::ExitReason::TimedOut, None, Some(15)),
                TaskState::TimedOut,
                "timed out",
            ),
            (
                x(pb::ExitReason::Cancelled, None, Some(15)),
                TaskState::Cancelled,
                "cancelled",
            ),
            (
                x(pb::ExitReason::FailedToStart, None, None),
                TaskState::Failed,
                "failed to start",
            ),
            (
                x(pb::ExitReason::Unspecified, None, None),
                TaskState::Lost,
                "lost",
            ),
        ];
        for (report, state, reason) in cases {
            let e = exit(&report, 7);
            assert_eq!(
                (e.state, e.reason.as_str(), e.at),
                (state, reason, 7),
                "{report:?}"
            );
            assert!(
                herd_core::Transition::Exit(e.state)
                    .from_states()
                    .contains(&TaskState::Running)
            );
        }
    }
}
