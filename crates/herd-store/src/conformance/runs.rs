//! Cases of runs and tasks: creation, claims, ends, finishing, listings.

use herd_core::{OutputPos, RunState, TaskState};

use super::fixtures::*;
use crate::model::*;
use crate::{ROWS_PER_STATEMENT, Result, Store, StoreError};

/// A run is created with its tasks, some already final, and its audit entry.
pub async fn create_run_with_final_tasks(store: &dyn Store) -> Result<()> {
    let mut lost = new_task("t-lost", "l", TaskState::Lost);
    lost.reason = Some("agent offline".into());
    let mut skipped = new_task("t-skip", "s", TaskState::Skipped);
    skipped.reason = Some("not started".into());
    let tasks = [
        new_task("t-q", "q", TaskState::Queued),
        new_task("t-d", "d", TaskState::Dispatched),
        lost,
        skipped,
    ];
    let run = run_row("r1", 50);
    store
        .create_run(&run, &tasks, &entry("run.create", "run:r1"))
        .await?;
    assert_eq!(store.run("r1").await?, Some(run));
    assert_eq!(store.run("nope").await?, None);
    let want = [
        ("t-q", TaskState::Queued, None, None, None),
        ("t-d", TaskState::Dispatched, Some(50), None, None),
        (
            "t-lost",
            TaskState::Lost,
            None,
            Some(50),
            Some("agent offline"),
        ),
        (
            "t-skip",
            TaskState::Skipped,
            None,
            Some(50),
            Some("not started"),
        ),
    ];
    for (id, state, dispatched_at, finished_at, reason) in want {
        let t = task(store, id).await?;
        assert_eq!(
            (t.state, t.dispatched_at, t.finished_at, t.reason.as_deref()),
            (state, dispatched_at, finished_at, reason),
            "{id}"
        );
        assert_eq!((t.run_id.as_str(), t.created_at), ("r1", 50));
        assert_eq!((t.out_seq, t.output), (0, OutputPos::default()));
        assert_eq!((t.pid, t.started_at, t.exit_code), (None, None, None));
    }
    assert_eq!(actions(store).await?, ["run.create"]);
    // A run without tasks.
    store
        .create_run(&run_row("r0", 60), &[], &entry("run.create", "run:r0"))
        .await?;
    assert!(store.tasks_of_run("r0").await?.is_empty());
    Ok(())
}

pub async fn queued_tasks_are_claimed_or_ended_once(store: &dyn Store) -> Result<()> {
    let ids = task_ids("t", 5);
    run_with(store, "r1", 1, &ids, TaskState::Queued).await?;
    let first = store.claim_queued(&ids[..2], 5).await?;
    assert_eq!(sorted(first), ["t0", "t1"]);
    assert_eq!(task(store, "t0").await?.dispatched_at, Some(5));
    // Claimed ones are not claimed again, nor skipped.
    let skipped = store
        .end_tasks(&ids, TaskState::Skipped, "error budget spent", 6)
        .await?;
    assert_eq!(sorted(skipped), ["t2", "t3", "t4"]);
    assert!(store.claim_queued(&ids, 7).await?.is_empty());
    let mut some = store
        .tasks_by_ids(&["t3".into(), "nope".into(), "t0".into()])
        .await?;
    some.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        some.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t0", "t3"]
    );
    let t3 = task(store, "t3").await?;
    assert_eq!(
        (t3.state, t3.reason.as_deref(), t3.finished_at),
        (TaskState::Skipped, Some("error budget spent"), Some(6))
    );
    // More ids than one statement carries.
    let many = task_ids("m", ROWS_PER_STATEMENT + 3);
    run_with(store, "r2", 2, &many, TaskState::Queued).await?;
    assert_eq!(store.claim_queued(&many, 8).await?.len(), many.len());
    assert_eq!(store.tasks_by_ids(&many).await?.len(), many.len());
    assert!(store.claim_queued(&many, 9).await?.is_empty());
    Ok(())
}

/// `skipped` ends only queued tasks, `lost` and `cancelled` only open ones; a state no end
/// leads to is refused.
pub async fn end_tasks_apply_only_where_the_transition_does(store: &dyn Store) -> Result<()> {
    let tasks = [
        new_task("q", "q", TaskState::Queued),
        new_task("d", "d", TaskState::Dispatched),
        new_task("r", "r", TaskState::Dispatched),
        new_task("done", "done", TaskState::Dispatched),
        new_task("gone", "gone", TaskState::Dispatched),
    ];
    store
        .create_run(&run_row("r1", 1), &tasks, &entry("run.create", "run:r1"))
        .await?;
    let mut start = progress("r", 1, 0);
    start.started = Some(Started { pid: 7, at: 2 });
    let mut done = progress("done", 1, 0);
    done.exited = Some(exit(0, 3));
    store.apply_progress(&[start, done]).await?;
    assert_eq!(
        store
            .end_tasks(&["gone".into()], TaskState::Lost, "offline", 4)
            .await?,
        ["gone"]
    );
    let all: Vec<String> = ["q", "d", "r", "done", "gone", "nope"]
        .map(String::from)
        .to_vec();

    for bad in [TaskState::Succeeded, TaskState::Running, TaskState::Queued] {
        match store.end_tasks(&all, bad, "no", 5).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("ending as {bad}: {other:?}"),
        }
    }
    assert_eq!(task(store, "q").await?.state, TaskState::Queued);

    let skipped = store
        .end_tasks(&all, TaskState::Skipped, "budget", 6)
        .await?;
    assert_eq!(skipped, ["q"]);
    let cancelled = store
        .end_tasks(&all, TaskState::Cancelled, "cancelled", 7)
        .await?;
    assert_eq!(sorted(cancelled), ["d", "r"]);
    assert!(
        store
            .end_tasks(&all, TaskState::Lost, "x", 8)
            .await?
            .is_empty()
    );
    let want = [
        ("q", TaskState::Skipped, Some(6), Some("budget")),
        ("d", TaskState::Cancelled, Some(7), Some("cancelled")),
        ("r", TaskState::Cancelled, Some(7), Some("cancelled")),
        ("done", TaskState::Succeeded, Some(3), Some("exited")),
        ("gone", TaskState::Lost, Some(4), Some("offline")),
    ];
    for (id, state, finished_at, reason) in want {
        let t = task(store, id).await?;
        assert_eq!(
            (t.state, t.finished_at, t.reason.as_deref()),
            (state, finished_at, reason),
            "{id}"
        );
    }
    // An empty list changes nothing.
    assert!(
        store
            .end_tasks(&[], TaskState::Lost, "x", 9)
            .await?
            .is_empty()
    );
    Ok(())
}

pub async fn cancel_and_finish_run(store: &dyn Store) -> Result<()> {
    run_with(store, "r1", 1, &task_ids("t", 1), TaskState::Queued).await?;
    let cancelled = store
        .request_cancel("r1", &entry("run.cancel", "run:r1"))
        .await?;
    assert_eq!(cancelled.map(|r| r.cancel_requested), Some(true));
    assert_eq!(
        store
            .request_cancel("nope", &entry("run.cancel", "run:nope"))
            .await?,
        None
    );
    let log = actions(store).await?;
    assert_eq!(log.iter().filter(|a| *a == "run.cancel").count(), 1);

    assert!(store.finish_run("r1", RunState::Cancelled, 50).await?);
    let r = store.run("r1").await?;
    assert_eq!(
        r.map(|r| (r.state, r.finished_at, r.cancel_requested)),
        Some((RunState::Cancelled, Some(50), true))
    );
    // A late result revises the state; the finish time stays the first one.
    assert!(store.finish_run("r1", RunState::Failed, 60).await?);
    assert!(!store.finish_run("r1", RunState::Failed, 70).await?);
    let r = store.run("r1").await?;
    assert_eq!(
        r.map(|r| (r.state, r.finished_at)),
        Some((RunState::Failed, Some(50)))
    );
    assert!(!store.finish_run("nope", RunState::Failed, 70).await?);
    assert!(store.unfinished_runs().await?.is_empty());
    Ok(())
}

pub async fn run_and_task_listings(store: &dyn Store) -> Result<()> {
    let r1 = [
        new_task("r1-c", "c", TaskState::Queued),
        new_task("r1-a", "a", TaskState::Queued),
        new_task("r1-b", "b", TaskState::Dispatched),
    ];
    store
        .create_run(&run_row("r1", 10), &r1, &entry("run.create", "run:r1"))
        .await?;
    store
        .create_run(
            &run_row("r2", 20),
            &[new_task("r2-a", "a", TaskState::Dispatched)],
            &entry("run.create", "run:r2"),
        )
        .await?;
    store
        .create_run(
            &run_row("r3", 30),
            &[
                new_task("r3-b", "b", TaskState::Queued),
                new_task("r3-z", "z", TaskState::Lost),
            ],
            &entry("run.create", "run:r3"),
        )
        .await?;
    let mut done = progress("r2-a", 1, 0);
    done.exited = Some(exit(0, 25));
    store.apply_progress(&[done]).await?;
    store.finish_run("r2", RunState::Succeeded, 26).await?;

    let run_ids = |v: Vec<RunRow>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let task_ids = |v: Vec<TaskRow>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(run_ids(store.runs(2).await?), ["r3", "r2"]);
    assert_eq!(run_ids(store.runs(10).await?), ["r3", "r2", "r1"]);
    assert_eq!(
        sorted(run_ids(store.unfinished_runs().await?)),
        ["r1", "r3"]
    );
    assert_eq!(
        task_ids(store.tasks_of_run("r1").await?),
        ["r1-a", "r1-b", "r1-c"]
    );
    assert!(store.tasks_of_run("nope").await?.is_empty());
    assert_eq!(task_ids(store.recent_tasks(2).await?), ["r3-z", "r3-b"]);
    assert_eq!(
        task_ids(store.recent_tasks(4).await?),
        ["r3-z", "r3-b", "r2-a", "r1-c"]
    );
    let open = store
        .open_tasks_of_agents(&["a-a".into(), "a-z".into(), "a-nope".into()])
        .await?;
    assert_eq!(sorted(task_ids(open)), ["r1-a"]);
    let open = store.open_tasks_of_agents(&["a-b".into()]).await?;
    assert_eq!(sorted(task_ids(open)), ["r1-b", "r3-b"]);
    assert!(store.open_tasks_of_agents(&[]).await?.is_empty());

    let mut counts = store.task_counts().await?;
    counts.retain(|(_, n)| *n > 0);
    counts.sort_by_key(|(s, _)| s.as_str());
    let mut want = vec![
        (TaskState::Queued, 3),
        (TaskState::Dispatched, 1),
        (TaskState::Succeeded, 1),
        (TaskState::Lost, 1),
    ];
    want.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(counts, want);
    Ok(())
}

/// Run, task and audit listings narrow by time, state, machine and actor.
pub async fn listings_filter_by_time_state_machine_and_actor(store: &dyn Store) -> Result<()> {
    store
        .create_run(
            &run_row("r1", 10),
            &[
                new_task("r1-a", "a", TaskState::Queued),
                new_task("r1-b", "b", TaskState::Lost),
            ],
            &entry("run.create", "run:r1"),
        )
        .await?;
    let mut r2 = run_row("r2", 20);
    r2.created_by = "key:ci".into();
    r2.state = RunState::Succeeded;
    store
        .create_run(
            &r2,
            &[new_task("r2-b", "b", TaskState::Succeeded)],
            &AuditEntry::new("key:ci", "run.create", "run:r2", serde_json::json!({})),
        )
        .await?;
    store
        .append_audit(&AuditEntry::new(
            "key:test",
            "agent.label",
            "agent:m-a",
            serde_json::json!({}),
        ))
        .await?;

    let f = |edit: &dyn Fn(&mut ListFilter)| {
        let mut f = ListFilter::newest(100);
        edit(&mut f);
        f
    };
    let run_ids = |v: Vec<RunRow>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let task_ids = |v: Vec<TaskRow>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let runs = |f: ListFilter| async move { store.runs_filtered(&f).await.map(run_ids) };
    let tasks = |f: ListFilter| async move { store.tasks_filtered(&f).await.map(task_ids) };

    assert_eq!(runs(f(&|_| ())).await?, ["r2", "r1"]);
    assert_eq!(runs(f(&|f| f.limit = 1)).await?, ["r2"]);
    assert_eq!(runs(f(&|f| f.since = Some(15))).await?, ["r2"]);
    assert_eq!(
        runs(f(&|f| f.state = Some("running".into()))).await?,
        ["r1"]
    );
    assert_eq!(runs(f(&|f| f.machine = Some("m-a".into()))).await?, ["r1"]);
    assert_eq!(
        runs(f(&|f| f.machine = Some("m-b".into()))).await?,
        ["r2", "r1"]
    );
    assert_eq!(runs(f(&|f| f.who = Some("key:ci".into()))).await?, ["r2"]);
    assert!(runs(f(&|f| f.who = Some("ci".into()))).await?.is_empty());

    assert_eq!(sorted(tasks(f(&|_| ())).await?), ["r1-a", "r1-b", "r2-b"]);
    assert_eq!(tasks(f(&|f| f.since = Some(15))).await?, ["r2-b"]);
    assert_eq!(
        tasks(f(&|f| f.state = Some("lost".into()))).await?,
        ["r1-b"]
    );
    assert_eq!(
        sorted(tasks(f(&|f| f.machine = Some("m-b".into()))).await?),
        ["r1-b", "r2-b"]
    );
    assert_eq!(
        tasks(f(&|f| f.who = Some("key:ci".into()))).await?,
        ["r2-b"]
    );

    let audit = |f: ListFilter| async move {
        store
            .audit_filtered(&f)
            .await
            .map(|v| v.into_iter().map(|a| a.target).collect::<Vec<_>>())
    };
    assert_eq!(audit(f(&|_| ())).await?.len(), 3);
    assert_eq!(
        audit(f(&|f| f.who = Some("key:ci".into()))).await?,
        ["run:r2"]
    );
    assert_eq!(
        audit(f(&|f| f.machine = Some("m-a".into()))).await?,
        ["agent:m-a"]
    );
    assert_eq!(audit(f(&|f| f.limit = 1)).await?, ["agent:m-a"]);
    assert!(audit(f(&|f| f.since = Some(i64::MAX))).await?.is_empty());
    Ok(())
}

/// Ids are found by a prefix, literally (`_` and `%` are no wildcards), in id order.
pub async fn ids_by_prefix(store: &dyn Store) -> Result<()> {
    for (id, at) in [("0190aa01", 10), ("0190aa02", 20), ("0190bb01", 30)] {
        store
            .create_run(
                &run_row(id, at),
                &[new_task(&format!("{id}-t"), "a", TaskState::Queued)],
                &entry("run.create", &format!("run:{id}")),
            )
            .await?;
    }
    store
        .create_run(&run_row("a_b", 40), &[], &entry("run.create", "run:a_b"))
        .await?;
    assert_eq!(
        store.run_ids_with_prefix("0190aa", 10).await?,
        ["0190aa01", "0190aa02"]
    );
    assert_eq!(store.run_ids_with_prefix("0190aa", 1).await?, ["0190aa01"]);
    assert_eq!(store.run_ids_with_prefix("0190b", 10).await?, ["0190bb01"]);
    assert_eq!(
        store.run_ids_with_prefix("0190bb01", 10).await?,
        ["0190bb01"]
    );
    assert!(store.run_ids_with_prefix("0190c", 10).await?.is_empty());
    assert!(store.run_ids_with_prefix("0190_a", 10).await?.is_empty());
    assert!(store.run_ids_with_prefix("%", 10).await?.is_empty());
    assert_eq!(store.run_ids_with_prefix("a_", 10).await?, ["a_b"]);
    assert_eq!(
        store.task_ids_with_prefix("0190aa0", 10).await?,
        ["0190aa01-t", "0190aa02-t"]
    );
    assert_eq!(
        store.task_ids_with_prefix("0190bb01-", 10).await?,
        ["0190bb01-t"]
    );
    Ok(())
}

/// Finished runs are pruned with their tasks, oldest finished first, in batches; an
/// unfinished run, or a finished one with a task still open, never is; audit entries stay.
pub async fn prune_finished_runs_oldest_first(store: &dyn Store) -> Result<()> {
    run_with(store, "old", 1, &task_ids("old-", 2), TaskState::Succeeded).await?;
    run_with(store, "old2", 2, &task_ids("old2-", 1), TaskState::Failed).await?;
    run_with(store, "new", 3, &task_ids("new-", 1), TaskState::Succeeded).await?;
    run_with(store, "going", 4, &task_ids("going-", 1), TaskState::Queued).await?;
    run_with(store, "open", 5, &task_ids("open-", 1), TaskState::Queued).await?;
    assert!(store.finish_run("old2", RunState::Failed, 200).await?);
    assert!(store.finish_run("old", RunState::Succeeded, 100).await?);
    assert!(store.finish_run("new", RunState::Succeeded, 10_000).await?);
    // Finished, but a task is still queued: not prunable.
    assert!(store.finish_run("open", RunState::Failed, 50).await?);

    let first = store.prune_runs(1_000, 1).await?;
    assert_eq!(first.runs, vec!["old".to_string()]);
    assert_eq!(sorted(first.tasks), task_ids("old-", 2));
    let second = store.prune_runs(1_000, 100).await?;
    assert_eq!(second.runs, vec!["old2".to_string()]);
    assert_eq!(second.tasks, task_ids("old2-", 1));
    assert_eq!(store.prune_runs(1_000, 100).await?, PrunedRuns::default());

    assert!(store.run("old").await?.is_none());
    assert!(store.task("old-0").await?.is_none());
    for id in ["new", "going", "open"] {
        assert!(store.run(id).await?.is_some(), "{id}");
    }
    assert_eq!(task(store, "going-0").await?.state, TaskState::Queued);

    let rest = store.prune_runs(i64::MAX, 100).await?;
    assert_eq!(rest.runs, vec!["new".to_string()]);
    let log = actions(store).await?;
    assert_eq!(log.iter().filter(|a| *a == "run.create").count(), 5);
    Ok(())
}
