//! Cases of task progress: bulk, forward only, the lifecycle's transitions.

use herd_core::TaskState;

use super::fixtures::*;
use crate::model::*;
use crate::{ROWS_PER_STATEMENT, Result, Store, StoreError};
pub async fn progress_of_thousands_of_tasks_lands_in_one_call(store: &dyn Store) -> Result<()> {
    // More tasks than one statement carries, so the chunking is exercised.
    let n = ROWS_PER_STATEMENT * 2 + 7;
    let ids = task_ids("t", n);
    run_with(store, "r1", 1, &ids, TaskState::Queued).await?;
    assert_eq!(store.claim_queued(&ids, 5).await?.len(), n);
    let batch: Vec<TaskProgress> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| TaskProgress {
            started: Some(Started {
                pid: 100 + i as u32,
                at: 10,
            }),
            exited: Some(exit((i % 2) as i32, 20)),
            ..progress(id, 3, i as u64)
        })
        .collect();
    let ended = store.apply_progress(&batch).await?;
    assert_eq!(ended.len(), n, "every exit took effect");
    let tasks = store.tasks_of_run("r1").await?;
    assert_eq!(tasks.len(), n);
    for t in &tasks {
        let i: usize = t.id[1..]
            .parse()
            .map_err(|_| StoreError::Invalid(t.id.clone()))?;
        assert_eq!(t.out_seq, 3, "{}", t.id);
        assert_eq!(t.output, progress(&t.id, 3, i as u64).out, "{}", t.id);
        assert_eq!(t.pid, Some(100 + i as i64));
        assert_eq!(t.started_at, Some(10));
        assert_eq!(t.finished_at, Some(20));
        assert_eq!(t.exit_code, Some((i % 2) as i64));
        assert_eq!(
            (t.reason.as_deref(), t.detail.as_deref()),
            (Some("exited"), Some(""))
        );
        let want = if i.is_multiple_of(2) {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        };
        assert_eq!(t.state, want, "{}", t.id);
    }
    Ok(())
}

pub async fn progress_only_moves_forward_and_ended_tasks_keep_their_end(
    store: &dyn Store,
) -> Result<()> {
    let ids = task_ids("t", 3);
    run_with(store, "r1", 1, &ids, TaskState::Queued).await?;
    store.claim_queued(&ids, 5).await?;
    store.apply_progress(&[progress("t0", 5, 50)]).await?;
    // An older seq changes nothing; two records for one task merge.
    let mut second = progress("t1", 2, 20);
    second.exited = Some(exit(0, 30));
    // The ends that took effect come back with the state they gave.
    assert_eq!(
        store
            .apply_progress(&[progress("t0", 4, 40), progress("t1", 1, 10), second])
            .await?,
        [("t1".to_string(), TaskState::Succeeded)]
    );
    // t2 was cancelled before it started; a late exit does not revive it.
    assert_eq!(
        store
            .end_tasks(&["t2".into()], TaskState::Cancelled, "cancelled", 7)
            .await?,
        ["t2"]
    );
    let mut late = progress("t2", 1, 1);
    late.started = Some(Started { pid: 9, at: 8 });
    late.exited = Some(exit(0, 9));
    assert!(
        store.apply_progress(&[late]).await?.is_empty(),
        "an exit that did not apply is not an end"
    );
    assert!(store.apply_progress(&[]).await?.is_empty());

    let t0 = task(store, "t0").await?;
    assert_eq!(
        (t0.out_seq, t0.output.total, t0.state),
        (5, 50, TaskState::Dispatched)
    );
    let t1 = task(store, "t1").await?;
    assert_eq!(
        (t1.out_seq, t1.output.total, t1.state),
        (2, 20, TaskState::Succeeded)
    );
    let t2 = task(store, "t2").await?;
    assert_eq!(
        (t2.state, t2.pid, t2.finished_at),
        (TaskState::Cancelled, None, Some(7))
    );
    // Its output still counts: the seq moves forward whatever the state.
    assert_eq!(t2.out_seq, 1);
    Ok(())
}

/// A task marked lost takes the real result its agent comes back with; a start does not
/// reopen it, and other ends do not apply to it.
pub async fn an_exit_revives_a_lost_task(store: &dyn Store) -> Result<()> {
    let ids = task_ids("t", 2);
    run_with(store, "r1", 1, &ids, TaskState::Dispatched).await?;
    let mut start = progress("t0", 1, 0);
    start.started = Some(Started { pid: 3, at: 2 });
    store.apply_progress(&[start]).await?;
    let lost = store
        .end_tasks(&ids, TaskState::Lost, "agent away", 5)
        .await?;
    assert_eq!(sorted(lost), ["t0", "t1"]);

    let mut restart = progress("t1", 1, 0);
    restart.started = Some(Started { pid: 4, at: 6 });
    store.apply_progress(&[restart]).await?;
    let t1 = task(store, "t1").await?;
    assert_eq!((t1.state, t1.pid), (TaskState::Lost, None));
    assert!(
        store
            .end_tasks(&ids, TaskState::Cancelled, "cancel", 6)
            .await?
            .is_empty()
    );

    let mut back = progress("t0", 2, 10);
    back.exited = Some(exit(3, 9));
    assert_eq!(
        store.apply_progress(&[back]).await?,
        [("t0".to_string(), TaskState::Failed)]
    );
    let t0 = task(store, "t0").await?;
    assert_eq!(
        (
            t0.state,
            t0.exit_code,
            t0.finished_at,
            t0.pid,
            t0.reason.as_deref()
        ),
        (TaskState::Failed, Some(3), Some(9), Some(3), Some("exited"))
    );
    // Once it has its real result, it is final.
    let mut again = progress("t0", 3, 10);
    again.exited = Some(exit(0, 10));
    assert!(store.apply_progress(&[again]).await?.is_empty());
    assert_eq!(task(store, "t0").await?.state, TaskState::Failed);

    // A start and an exit in one record: the exit revives the lost task, the start does not
    // apply to it.
    let mut both = progress("t1", 2, 5);
    both.started = Some(Started { pid: 8, at: 10 });
    both.exited = Some(exit(0, 11));
    assert_eq!(
        store.apply_progress(&[both]).await?,
        [("t1".to_string(), TaskState::Succeeded)]
    );
    let t1 = task(store, "t1").await?;
    assert_eq!(
        (t1.state, t1.pid, t1.started_at, t1.finished_at, t1.out_seq),
        (TaskState::Succeeded, None, None, Some(11), 2)
    );
    Ok(())
}

pub async fn outputs_are_stored_with_the_exit(store: &dyn Store) -> Result<()> {
    let ids = task_ids("t", 3);
    run_with(store, "r1", 1, &ids, TaskState::Queued).await?;
    store.claim_queued(&ids, 5).await?;
    let text = "a=1\nm<<EOF\nläuft ✓\nEOF\n{\"j\": [1, 2]}\n";
    let with = |id: &str, outputs: Option<&str>, at: i64| TaskProgress {
        exited: Some(Exit {
            outputs: outputs.map(str::to_string),
            ..exit(0, at)
        }),
        ..progress(id, 2, 0)
    };
    // Before the exit there are none; the exit brings them in its transaction.
    store.apply_progress(&[progress("t0", 1, 0)]).await?;
    assert_eq!(store.tasks_of_run("r1").await?[0].outputs, None);
    store
        .apply_progress(&[with("t0", Some(text), 10), with("t1", None, 10)])
        .await?;
    // An exit that does not apply (the task was cancelled) brings none either.
    store
        .end_tasks(&["t2".into()], TaskState::Cancelled, "cancelled", 7)
        .await?;
    store
        .apply_progress(&[with("t2", Some("late=1\n"), 11)])
        .await?;
    let tasks = store.tasks_of_run("r1").await?;
    let outputs: Vec<Option<&str>> = tasks.iter().map(|t| t.outputs.as_deref()).collect();
    assert_eq!(outputs, [Some(text), None, None]);
    assert_eq!(
        store.task("t0").await?.and_then(|t| t.outputs).as_deref(),
        Some(text)
    );
    Ok(())
}

pub async fn supervision_is_kept_with_the_seq(store: &dyn Store) -> Result<()> {
    let ids = task_ids("t", 2);
    run_with(store, "r1", 1, &ids, TaskState::Queued).await?;
    store.claim_queued(&ids, 5).await?;
    let with = |id: &str, seq: u64, s: Option<&str>| TaskProgress {
        supervision: s.map(str::to_string),
        ..progress(id, seq, 0)
    };
    let idle = r#"{"state":"idle","class":"info"}"#;
    let hanging = r#"{"state":"hanging","class":"info","reason":"hung"}"#;
    store.apply_progress(&[with("t0", 1, None)]).await?;
    assert_eq!(store.task("t0").await?.and_then(|t| t.supervision), None);
    // The latest of a batch wins; a record without one keeps what is stored.
    store
        .apply_progress(&[with("t0", 2, Some(idle)), with("t0", 3, Some(hanging))])
        .await?;
    store.apply_progress(&[with("t0", 4, None)]).await?;
    assert_eq!(
        store
            .task("t0")
            .await?
            .and_then(|t| t.supervision)
            .as_deref(),
        Some(hanging)
    );
    // A replayed (older) record changes nothing.
    store.apply_progress(&[with("t0", 2, Some(idle))]).await?;
    let tasks = store.tasks_of_run("r1").await?;
    let states: Vec<Option<&str>> = tasks.iter().map(|t| t.supervision.as_deref()).collect();
    assert_eq!(states, [Some(hanging), None]);
    Ok(())
}
