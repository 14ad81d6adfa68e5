//! `herd ask`: a plan's run, its attempts (stored, replaced, approved once) and its model
//! exchanges.

use super::fixtures::*;
use crate::{AskAttemptRow, AskExchangeRow, AskRunRow, Result, Store, StoreError};

fn attempt(step: &str, n: i64, approval: &str) -> AskAttemptRow {
    AskAttemptRow {
        run_id: "r1".into(),
        step_id: step.into(),
        attempt: n,
        origin: if n == 1 { "plan" } else { "alternative" }.into(),
        command: format!("echo {step} {n}"),
        description: "say it".into(),
        check: r#"{"class":"safe","decision":"allow","reasons":[]}"#.into(),
        approval: approval.into(),
        task_run_id: None,
        validation: None,
        created_at: 7,
    }
}

pub async fn ask_runs_attempts_and_exchanges(store: &dyn Store) -> Result<()> {
    let run = AskRunRow {
        run_id: "r1".into(),
        plan_id: "p1".into(),
        request: "say hello".into(),
        plan: "[]".into(),
        unattended: true,
        summary: None,
        created_by: "key:test".into(),
        created_at: 5,
    };
    store
        .create_ask_run(
            &run,
            &[attempt("a", 1, "allowed"), attempt("b", 1, "approved")],
        )
        .await?;
    assert!(matches!(
        store.create_ask_run(&run, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.ask_run("r1").await?, Some(run.clone()));
    assert_eq!(store.ask_run("r2").await?, None);

    // An attempt is replaced by its key; a new one is added.
    let mut a1 = attempt("a", 1, "allowed");
    a1.task_run_id = Some("t1".into());
    a1.validation = Some(r#"{"is_valid":false}"#.into());
    store.put_ask_attempt(&a1).await?;
    store.put_ask_attempt(&attempt("a", 2, "awaiting")).await?;
    let all = store.ask_attempts("r1").await?;
    assert_eq!(
        all.iter()
            .map(|a| (a.step_id.as_str(), a.attempt))
            .collect::<Vec<_>>(),
        [("a", 1), ("a", 2), ("b", 1)]
    );
    assert_eq!(all[0], a1);

    // An approval is decided once, with its audit entry.
    let e = entry("ask.approve", "workflow-run:r1");
    assert!(
        store
            .decide_ask_attempt("r1", "a", 2, "approved", &e)
            .await?
    );
    assert!(
        !store
            .decide_ask_attempt("r1", "a", 2, "refused", &e)
            .await?
    );
    assert!(
        !store
            .decide_ask_attempt("r1", "b", 1, "refused", &e)
            .await?
    );
    assert_eq!(store.ask_attempts("r1").await?[1].approval, "approved");

    store.set_ask_summary("r1", "all done").await?;
    assert_eq!(
        store
            .ask_run("r1")
            .await?
            .and_then(|r| r.summary)
            .as_deref(),
        Some("all done")
    );

    for (i, kind) in ["plan", "validation", "alternative"].iter().enumerate() {
        store
            .add_ask_exchange(&AskExchangeRow {
                id: format!("x{i}"),
                plan_id: "p1".into(),
                kind: (*kind).into(),
                step_id: (i > 0).then(|| "a".into()),
                at: 10 + i as i64,
                model: "m".into(),
                tokens: 150,
                request: "[]".into(),
                answer: "{}".into(),
                error: (i == 2).then(|| "bad answer".into()),
            })
            .await?;
    }
    let x = store.ask_exchanges("p1").await?;
    assert_eq!(
        x.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["plan", "validation", "alternative"]
    );
    assert_eq!(x[2].error.as_deref(), Some("bad answer"));
    assert!(store.ask_exchanges("p2").await?.is_empty());
    Ok(())
}

/// Pruning a finished workflow run takes its plan's records with it; exchanges of plans that
/// never ran go once as old; a newer run's records stay.
pub async fn pruning_takes_ask_records(store: &dyn Store) -> Result<()> {
    use crate::FlowRunRow;
    use herd_core::RunState;
    for (id, plan, finished) in [("old", "p-old", Some(10)), ("new", "p-new", Some(50))] {
        let run = FlowRunRow {
            state: RunState::Succeeded,
            finished_at: finished,
            ..super::flows::flow_run(id, 1, "key:test")
        };
        super::flows::create(store, &run, &["a"]).await?;
        let mut a = attempt("a", 1, "allowed");
        a.run_id = id.into();
        store
            .create_ask_run(
                &AskRunRow {
                    run_id: id.into(),
                    plan_id: plan.into(),
                    request: "r".into(),
                    plan: "[]".into(),
                    unattended: true,
                    summary: None,
                    created_by: "key:test".into(),
                    created_at: 1,
                },
                &[a],
            )
            .await?;
    }
    for (id, plan, at) in [
        ("x1", "p-old", 5),
        ("x2", "p-new", 5),
        ("x3", "p-never", 5),
        ("x4", "p-never-new", 40),
    ] {
        store
            .add_ask_exchange(&AskExchangeRow {
                id: id.into(),
                plan_id: plan.into(),
                kind: "plan".into(),
                step_id: None,
                at,
                model: "m".into(),
                tokens: 1,
                request: "[]".into(),
                answer: String::new(),
                error: None,
            })
            .await?;
    }
    assert_eq!(store.prune_flow_runs(20, 100).await?, 1);
    assert_eq!(store.ask_run("old").await?, None);
    assert!(store.ask_attempts("old").await?.is_empty());
    assert!(store.ask_exchanges("p-old").await?.is_empty());
    assert!(store.ask_exchanges("p-never").await?.is_empty());
    assert_eq!(store.ask_exchanges("p-never-new").await?.len(), 1);
    assert!(store.ask_run("new").await?.is_some());
    assert_eq!(store.ask_attempts("new").await?.len(), 1);
    assert_eq!(store.ask_exchanges("p-new").await?.len(), 1);
    Ok(())
}
