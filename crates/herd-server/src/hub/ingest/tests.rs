//! The persist path's rules as tables: stored seq + incoming batch → acks and what is stored.

use super::*;
use crate::tests::events::{E, ev};
use herd_core::OutputPos;

/// Stored tasks; one whose id starts with `ended` has ended for good.
fn known(tasks: &[(&str, &str, u64)]) -> HashMap<String, ActiveTask> {
    tasks
        .iter()
        .map(|(id, agent, seq)| {
            (
                id.to_string(),
                ActiveTask {
                    run_id: "r".into(),
                    agent_id: agent.to_string(),
                    seq: *seq,
                    pos: OutputPos::default(),
                    closed: id.starts_with("ended"),
                },
            )
        })
        .collect()
}

/// What a planned task amounts to: (task, ack seq, changes, output text, started, exit code).
type Outcome = (String, u64, bool, String, bool, Option<i32>);

fn outcome(p: &Planned) -> Outcome {
    let text: String = p
        .records
        .iter()
        .map(|(s, d)| {
            let t = String::from_utf8_lossy(d).to_string();
            if *s == STDERR { format!("[{t}]") } else { t }
        })
        .collect();
    (
        p.task_id.clone(),
        p.ack,
        p.changes(),
        text,
        p.started.is_some(),
        p.exited.as_ref().and_then(|x| x.code),
    )
}

fn o(task: &str, ack: u64, changes: bool, text: &str, started: bool, exit: Option<i32>) -> Outcome {
    (task.into(), ack, changes, text.into(), started, exit)
}

#[test]
fn batches_apply_exactly_once() {
    // (what, stored tasks (id, agent, seq), batch, outcome per task)
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str, u64)>,
        Vec<pb::TaskEvent>,
        Vec<Outcome>,
    );
    let cases: Vec<Case> = vec![
        (
            "a fresh task, whole",
            vec![("t", "a", 0)],
            vec![
                ev("t", 1, E::Start),
                ev("t", 2, E::Out("hi ")),
                ev("t", 3, E::Err("oops")),
                ev("t", 4, E::Exit(0)),
            ],
            vec![o("t", 4, true, "hi [oops]", true, Some(0))],
        ),
        (
            "duplicates only: acknowledged again, nothing stored",
            vec![("t", "a", 2)],
            vec![ev("t", 1, E::Start), ev("t", 2, E::Out("x"))],
            vec![o("t", 2, false, "", false, None)],
        ),
        (
            "a replay overlapping what is stored: the new part only",
            vec![("t", "a", 2)],
            vec![
                ev("t", 2, E::Out("old")),
                ev("t", 3, E::Out("new")),
                ev("t", 4, E::Exit(1)),
            ],
            vec![o("t", 4, true, "new", false, Some(1))],
        ),
        (
            "a gap right away: nothing, the agent replays from its ack",
            vec![("t", "a", 2)],
            vec![ev("t", 4, E::Out("later")), ev("t", 5, E::Exit(0))],
            vec![o("t", 2, false, "", false, None)],
        ),
        (
            "a gap in the middle: up to the gap",
            vec![("t", "a", 0)],
            vec![
                ev("t", 1, E::Out("a")),
                ev("t", 2, E::Out("b")),
                ev("t", 4, E::Out("d")),
            ],
            vec![o("t", 2, true, "ab", false, None)],
        ),
        (
            "an unknown task is acknowledged up to its last event so the agent lets go",
            vec![],
            vec![
                ev("u", 5, E::Out("x")),
                ev("u", 7, E::Exit(0)),
                ev("u", 6, E::Out("y")),
            ],
            vec![o("u", 7, false, "", false, None)],
        ),
        (
            "another agent's task is ignored, not acknowledged",
            vec![("t", "b", 0), ("mine", "a", 0)],
            vec![ev("t", 1, E::Exit(0)), ev("mine", 1, E::Start)],
            vec![o("mine", 1, true, "", true, None)],
        ),
        (
            "two tasks interleaved keep their order of first appearance",
            vec![("t1", "a", 0), ("t2", "a", 3)],
            vec![
                ev("t2", 4, E::Out("b")),
                ev("t1", 1, E::Out("a")),
                ev("t2", 5, E::Exit(2)),
            ],
            vec![
                o("t2", 5, true, "b", false, Some(2)),
                o("t1", 1, true, "a", false, None),
            ],
        ),
        (
            "events after an exit in the same batch: acknowledged, dropped",
            vec![("t", "a", 0)],
            vec![
                ev("t", 1, E::Out("a")),
                ev("t", 2, E::Exit(0)),
                ev("t", 3, E::Out("late")),
                ev("t", 4, E::Start),
            ],
            vec![o("t", 4, true, "a", false, Some(0))],
        ),
        (
            "events after the end of a task that ended: acknowledged, nothing stored",
            vec![("ended", "a", 3)],
            vec![
                ev("ended", 3, E::Exit(0)),
                ev("ended", 4, E::Out("late")),
                ev("ended", 6, E::Exit(1)),
            ],
            vec![o("ended", 6, false, "", false, None)],
        ),
        (
            "another agent's ended task is still ignored",
            vec![("ended", "b", 3)],
            vec![ev("ended", 4, E::Out("late"))],
            vec![],
        ),
        (
            "a task lost while its agent was away takes the result the agent brings back",
            vec![("t", "a", 3)],
            vec![ev("t", 4, E::Out("done")), ev("t", 5, E::Exit(0))],
            vec![o("t", 5, true, "done", false, Some(0))],
        ),
    ];
    for (what, stored, batch, want) in cases {
        let got: Vec<Outcome> = plan("a", batch, &known(&stored))
            .iter()
            .map(outcome)
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

/// A supervision state counts like any event: once, in seq order, the batch's latest kept;
/// one that is a duplicate or follows a gap is not.
#[test]
fn supervision_states_count_once_and_the_latest_wins() {
    let state = |task: &str, seq: u64, state: &str| pb::TaskEvent {
        task_id: task.into(),
        seq,
        kind: Some(task_event::Kind::Supervision(pb::Supervision {
            state: state.into(),
            class: "info".into(),
            ..Default::default()
        })),
    };
    let batch = vec![
        ev("t", 1, E::Start),
        state("t", 2, "idle"),
        state("t", 3, "hanging"),
        // Already stored: dropped.
        state("s", 2, "idle"),
        // After a gap: waits for the replay.
        state("u", 3, "idle"),
    ];
    let planned = plan(
        "a",
        batch,
        &known(&[("t", "a", 0), ("s", "a", 2), ("u", "a", 1)]),
    );
    let latest: Vec<(&str, Option<&str>)> = planned
        .iter()
        .map(|p| {
            (
                p.task_id.as_str(),
                p.supervision.as_ref().map(|s| s.state.as_str()),
            )
        })
        .collect();
    assert_eq!(latest, [("t", Some("hanging")), ("s", None), ("u", None)]);
    assert_eq!(planned[0].ack, 3);
}
