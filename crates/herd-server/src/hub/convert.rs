//! What agents report, from the wire into herd's domain types. Text an agent sends is
//! stored as text, which may not hold U+0000 (PostgreSQL refuses it): it becomes U+FFFD.
//! What an agent reports is bounded before it is kept (an agent's message may be 32 MiB, and
//! what it says about itself goes to the store, the index and every listing): a fact's text
//! at most [`MAX_TEXT`] bytes, lists at most [`MAX_LIST`] entries, at most
//! [`herd_core::MAX_LABELS`] labels, each as `herd agent --label` would take it (a label that
//! is not is dropped, and counted for the caller to log).

use std::collections::HashMap;

use herd_core::{Disk, Facts, Labels, Metrics, TaskState};
use herd_proto::v1 as pb;

/// The longest text of a fact (or version) kept, in bytes.
pub const MAX_TEXT: usize = 1024;
/// The most entries of a reported list (disks, addresses) kept.
pub const MAX_LIST: usize = 256;

/// Reported text as it can be stored: at most [`MAX_TEXT`] bytes (cut at a character).
pub fn text(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace('\0', "\u{FFFD}")
}

/// What a task wrote to `HERD_OUTPUT` as it is stored: text (invalid UTF-8 and NUL shown
/// as U+FFFD, which no database column refuses), at most 1 MiB (what an agent keeps); None when empty.
pub fn outputs_text(bytes: &[u8]) -> Option<String> {
    const MAX_OUTPUTS: usize = 1 << 20;
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUTS)]);
    Some(text.replace('\0', "\u{FFFD}"))
}

fn texts(v: &[String]) -> Vec<String> {
    v.iter().take(MAX_LIST).map(|s| text(s)).collect()
}

/// The labels an agent declares that herd accepts (valid as `--label` takes them; the first
/// [`herd_core::MAX_LABELS`] by key), and how many were dropped.
pub fn labels(l: &HashMap<String, String>) -> (Labels, usize) {
    let valid: Labels = l
        .iter()
        .filter(|(k, v)| herd_core::parse_label(&format!("{k}={v}")).is_ok())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let kept: Labels = valid.into_iter().take(herd_core::MAX_LABELS).collect();
    let dropped = l.len() - kept.len();
    (kept, dropped)
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
            .take(MAX_LIST)
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
        pb::ExitReason::Stopped => (TaskState::Failed, "stopped"),
        pb::ExitReason::Unspecified => (TaskState::Lost, "lost"),
    };
    herd_store::Exit {
        state,
        code: x.code,
        signal: x.signal,
        reason: why.to_string(),
        detail: text(&x.detail),
        at,
        outputs: outputs_text(&x.outputs),
    }
}

/// A supervision state as the agent reported it, bounded, as the JSON text the store keeps;
/// `None` for a state this server does not know.
pub fn supervision(s: &pb::Supervision) -> Option<String> {
    use herd_core::supervise::{self as sv, CommandClass, Health};
    let state = Health::parse(&s.state)?;
    let bounded = |t: &str, max: usize| {
        let mut t = text(t);
        if t.len() > max {
            let mut end = max;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t.truncate(end);
        }
        t
    };
    let kept = sv::Supervision {
        state,
        class: CommandClass::parse(&s.class).unwrap_or(CommandClass::Unknown),
        prompt: bounded(&s.prompt, sv::MAX_PROMPT),
        secret: s.secret,
        reason: bounded(&s.reason, sv::MAX_REASON),
    };
    serde_json::to_string(&kept).ok()
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
            outputs: Default::default(),
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

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn what_an_agent_reports_is_bounded() {
        assert_eq!(text(&"é".repeat(2000)).len(), MAX_TEXT);
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        let f = pb::Facts {
            ips: vec!["10.0.0.1".into(); 10_000],
            disks: vec![pb::Disk::default(); 10_000],
            ..Default::default()
        };
        let f = facts(&f);
        assert_eq!((f.ips.len(), f.disks.len()), (MAX_LIST, MAX_LIST));
        let mut l: HashMap<String, String> = (0..100)
            .map(|i| (format!("k{i:03}"), "v".to_string()))
            .collect();
        l.insert("bad".into(), "\x1b[2J".into());
        l.insert("os".into(), "shadowed".into());
        l.insert("long".into(), "v".repeat(300));
        let (kept, dropped) = labels(&l);
        assert_eq!(kept.len(), herd_core::MAX_LABELS);
        assert_eq!(dropped, l.len() - herd_core::MAX_LABELS);
        assert!(kept.keys().all(|k| k.starts_with('k')));
    }

    #[test]
    fn supervision_states_are_bounded_and_unknown_ones_dropped() {
        let long = "x".repeat(10_000);
        let s = pb::Supervision {
            state: "waiting_for_input".into(),
            class: "no-such-class".into(),
            prompt: format!("\u{1b}[2J{long}"),
            secret: true,
            reason: long.clone(),
        };
        let text = supervision(&s).unwrap();
        let kept: herd_core::supervise::Supervision = serde_json::from_str(&text).unwrap();
        assert_eq!(kept.class, herd_core::supervise::CommandClass::Unknown);
        assert!(kept.secret);
        assert_eq!(kept.prompt.len(), herd_core::supervise::MAX_PROMPT);
        assert_eq!(kept.reason.len(), herd_core::supervise::MAX_REASON);
        let unknown = pb::Supervision {
            state: "asleep".into(),
            ..s
        };
        assert_eq!(supervision(&unknown), None);
    }
}
