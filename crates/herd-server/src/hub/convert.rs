//! What agents report, from the wire into herd's domain types.

use herd_core::{Disk, Facts, Metrics, TaskState};
use herd_proto::v1 as pb;

pub fn facts(f: &pb::Facts) -> Facts {
    Facts {
        machine_id: f.machine_id.clone(),
        hostname: f.hostname.clone(),
        os: f.os_id.clone(),
        os_name: f.os_name.clone(),
        os_version: f.os_version.clone(),
        kernel: f.kernel.clone(),
        arch: f.arch.clone(),
        cpus: f.cpus,
        memory_bytes: f.memory_bytes,
        disks: f
            .disks
            .iter()
            .map(|d| Disk {
                mount: d.mount.clone(),
                fs: d.fs.clone(),
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            })
            .collect(),
        ips: f.ips.clone(),
        macs: f.macs.clone(),
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
        detail: x.detail.clone(),
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
