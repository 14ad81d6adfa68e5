//! Cases of the audit log and of rows that do not decode.

use herd_core::TaskState;
use serde_json::json;

use super::Fresh;
use super::fixtures::*;
use crate::model::*;
use crate::{Result, Store, StoreError};

pub async fn audit_log_newest_first(store: &dyn Store) -> Result<()> {
    assert!(store.audit_log(10).await?.is_empty());
    let before = crate::now_ms();
    for i in 0..3 {
        store
            .append_audit(&AuditEntry::new(
                "server",
                "task.cancel",
                format!("task:t{i}"),
                json!({"n": i, "why": ["a", {"b": null}]}),
            ))
            .await?;
    }
    let log = store.audit_log(2).await?;
    assert_eq!(
        log.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(),
        ["task:t2", "task:t1"]
    );
    assert!(log[0].id > log[1].id);
    assert!(log[0].at >= before);
    assert_eq!(log[0].detail, json!({"n": 2, "why": ["a", {"b": null}]}));
    assert_eq!(
        (log[0].actor.as_str(), log[0].action.as_str()),
        ("server", "task.cancel")
    );
    assert_eq!(store.audit_log(10).await?.len(), 3);
    Ok(())
}

// ---- corrupt rows -----------------------------------------------------------------------

/// Asserts `r` is `Corrupt` naming `what` (row and column) and `why` (the bad value).
pub(super) fn assert_corrupt<T: std::fmt::Debug>(r: Result<T>, what: &str, why: &str) {
    match r {
        Err(StoreError::Corrupt { what: w, why: y }) => {
            assert!(w.contains(what), "{w:?} should name {what:?}");
            assert!(y.contains(why), "{y:?} should say {why:?}");
        }
        other => panic!("expected corrupt {what}, got {other:?}"),
    }
}

pub async fn corrupt_task_columns(fresh: &Fresh) -> Result<()> {
    let store = fresh.store();
    run_with(store, "r1", 1, &task_ids("c", 3), TaskState::Queued).await?;
    fresh
        .raw("UPDATE tasks SET state = 'exploded' WHERE id = 'c1'")
        .await?;
    assert_corrupt(store.task("c1").await, "tasks.state of task c1", "exploded");
    assert_corrupt(
        store.tasks_of_run("r1").await,
        "tasks.state of task c1",
        "exploded",
    );
    assert_corrupt(
        store.recent_tasks(10).await,
        "tasks.state of task c1",
        "exploded",
    );
    assert_corrupt(store.task_counts().await, "tasks.state", "exploded");
    assert_eq!(task(store, "c0").await?.state, TaskState::Queued);

    fresh
        .raw("UPDATE tasks SET out_seq = -1 WHERE id = 'c2'")
        .await?;
    assert_corrupt(store.task("c2").await, "tasks.out_seq of task c2", "-1");
    Ok(())
}

pub async fn corrupt_run_and_agent_columns(fresh: &Fresh) -> Result<()> {
    let store = fresh.store();
    run_with(store, "r1", 1, &task_ids("c", 1), TaskState::Queued).await?;
    run_with(store, "r2", 2, &task_ids("d", 1), TaskState::Queued).await?;
    fresh
        .raw(r#"UPDATE runs SET spec = '{"timeout_ms": "soon"}' WHERE id = 'r1'"#)
        .await?;
    assert_corrupt(store.run("r1").await, "runs.spec of run r1", "soon");
    assert_corrupt(store.runs(10).await, "runs.spec of run r1", "soon");
    fresh
        .raw("UPDATE runs SET state = 'paused' WHERE id = 'r2'")
        .await?;
    assert_corrupt(store.run("r2").await, "runs.state of run r2", "paused");

    join_all(
        store,
        &[("a1".into(), "m1".into()), ("a2".into(), "m2".into())],
    )
    .await?;
    fresh
        .raw(r#"UPDATE agents SET labels = '["web"]' WHERE id = 'a1'"#)
        .await?;
    assert_corrupt(store.agent("a1").await, "agents.labels of agent a1", "web");
    assert_corrupt(store.agents(true).await, "agents.labels of agent a1", "web");
    fresh
        .raw(r#"UPDATE agents SET metrics = '{"cpu_percent": "hot"}' WHERE id = 'a2'"#)
        .await?;
    assert_corrupt(store.agent("a2").await, "agents.metrics of agent a2", "hot");
    Ok(())
}
