//! Jobs and workflows: definitions by version, workflow runs and their steps.

use herd_core::{DefKind, RunState, StepState, TaskState};

use super::Fresh;
use super::audit::assert_corrupt;
use super::fixtures::*;
use crate::model::*;
use crate::{DefinitionRow, FlowRunRow, FlowStepRow, Result, StepAttemptRow, Store, StoreError};

fn def(kind: DefKind, name: &str, version: i64) -> DefinitionRow {
    DefinitionRow {
        kind,
        name: name.into(),
        version,
        body: format!(r#"{{"name":"{name}","v":{version},"steps":{{"b":1,"a":2}}}}"#),
        source: format!("name: {name}\n# version {version}\n"),
        created_at: 100 + version,
        created_by: "key:test".into(),
    }
}

async fn put(store: &dyn Store, d: &DefinitionRow) -> Result<()> {
    store
        .put_definition(d, &entry("def.put", &format!("{}:{}", d.kind, d.name)))
        .await
}

pub(super) fn flow_run(id: &str, created_at: i64, by: &str) -> FlowRunRow {
    FlowRunRow {
        id: id.into(),
        kind: DefKind::Workflow,
        name: "deploy".into(),
        version: 1,
        definition: r#"{"steps":{"z":{},"a":{}}}"#.into(),
        params: r#"{"tag":"v1"}"#.into(),
        sealed: r#"{"token":"sealed:x"}"#.into(),
        targets: vec!["role=web".into(), "zone=a".into()],
        state: RunState::Running,
        created_by: by.into(),
        created_at,
        finished_at: None,
        cancel_requested: false,
        parent: None,
    }
}

fn step(run: &str, id: &str) -> FlowStepRow {
    FlowStepRow {
        flow_run_id: run.into(),
        step_id: id.into(),
        state: StepState::Pending,
        attempt: 0,
        run_id: None,
        outputs: None,
        output: None,
        detail: None,
        started_at: None,
        finished_at: None,
        not_before: None,
    }
}

pub(super) async fn create(
    store: &dyn Store,
    run: &FlowRunRow,
    steps: &[&str],
) -> Result<Vec<FlowStepRow>> {
    let rows: Vec<FlowStepRow> = steps.iter().map(|s| step(&run.id, s)).collect();
    store
        .create_flow_run(run, &rows, &entry("flow.run", &format!("flow:{}", run.id)))
        .await?;
    Ok(rows)
}

fn step_ids(steps: &[FlowStepRow]) -> Vec<&str> {
    steps.iter().map(|s| s.step_id.as_str()).collect()
}

pub async fn definitions_by_version(store: &dyn Store) -> Result<()> {
    let (v1, v2) = (
        def(DefKind::Workflow, "deploy", 1),
        def(DefKind::Workflow, "deploy", 2),
    );
    put(store, &v1).await?;
    put(store, &v2).await?;
    // A job of the same name is another definition.
    let job = def(DefKind::Job, "deploy", 1);
    put(store, &job).await?;
    put(store, &def(DefKind::Workflow, "backup", 1)).await?;

    // Not the next version: version 2 again (another apply came first), a skipped version,
    // a first version that is not 1.
    for stale in [
        def(DefKind::Workflow, "deploy", 2),
        def(DefKind::Workflow, "deploy", 4),
        def(DefKind::Workflow, "deploy", 1),
        def(DefKind::Workflow, "fresh", 2),
    ] {
        let r = put(store, &stale).await;
        assert!(
            matches!(r, Err(StoreError::Conflict(_))),
            "{} v{}: {r:?}",
            stale.name,
            stale.version
        );
    }
    assert_eq!(
        store
            .definition(DefKind::Workflow, "deploy")
            .await?
            .as_ref(),
        Some(&v2)
    );
    assert_eq!(
        store
            .definition_version(DefKind::Workflow, "deploy", 1)
            .await?
            .as_ref(),
        Some(&v1)
    );
    assert_eq!(
        store
            .definition_version(DefKind::Workflow, "deploy", 3)
            .await?,
        None
    );
    assert_eq!(store.definition(DefKind::Job, "deploy").await?, Some(job));
    assert_eq!(store.definition(DefKind::Job, "backup").await?, None);
    let listed = store.definitions(DefKind::Workflow).await?;
    let names: Vec<(&str, i64)> = listed
        .iter()
        .map(|d| (d.name.as_str(), d.version))
        .collect();
    assert_eq!(names, [("backup", 1), ("deploy", 2)]);
    assert_eq!(store.definitions(DefKind::Job).await?.len(), 1);

    // A run keeps its copy of what it runs.
    let mut run = flow_run("f1", 10, "key:test");
    run.version = 2;
    run.definition = v2.body.clone();
    create(store, &run, &["a"]).await?;
    let del = entry("def.rm", "workflow:deploy");
    assert!(
        store
            .delete_definition(DefKind::Workflow, "deploy", &del)
            .await?
    );
    assert!(
        !store
            .delete_definition(DefKind::Workflow, "deploy", &del)
            .await?
    );
    assert_eq!(store.definition(DefKind::Workflow, "deploy").await?, None);
    assert_eq!(
        store
            .definition_version(DefKind::Workflow, "deploy", 1)
            .await?,
        None
    );
    assert!(store.definition(DefKind::Job, "deploy").await?.is_some());
    assert_eq!(
        store.flow_run("f1").await?.map(|r| r.definition),
        Some(v2.body)
    );
    // Deleted, the name starts again at version 1.
    put(store, &def(DefKind::Workflow, "deploy", 1)).await?;

    assert_eq!(
        actions(store).await?,
        [
            "def.put", "def.rm", "flow.run", "def.put", "def.put", "def.put", "def.put"
        ]
    );
    Ok(())
}

/// Applies of one name at once: one becomes each version, the others are conflicts.
pub async fn concurrent_puts_make_one_version(store: &dyn Store) -> Result<()> {
    put(store, &def(DefKind::Job, "race", 1)).await?;
    let mut attempts = Vec::new();
    for i in 0..6 {
        let mut d = def(DefKind::Job, "race", 2);
        d.created_by = format!("key:{i}");
        attempts.push(d);
    }
    let outcomes = futures::future::join_all(attempts.iter().map(|d| put(store, d))).await;
    let mut won = Vec::new();
    for (d, o) in attempts.iter().zip(outcomes) {
        match o {
            Ok(()) => won.push(d.created_by.clone()),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let latest = store.definition(DefKind::Job, "race").await?;
    assert_eq!(
        latest.map(|d| (d.version, d.created_by)),
        Some((2, won[0].clone()))
    );
    let log = actions(store).await?;
    assert_eq!(log.iter().filter(|a| *a == "def.put").count(), 2, "{log:?}");
    Ok(())
}

pub async fn flow_runs_and_their_steps(store: &dyn Store) -> Result<()> {
    let run = flow_run("wf-1", 10, "key:ops");
    let created = create(store, &run, &["build", "test", "deploy"]).await?;
    assert_eq!(store.flow_run("wf-1").await?.as_ref(), Some(&run));
    assert_eq!(store.flow_run("wf-9").await?, None);
    assert_eq!(store.flow_steps("wf-1").await?, created);
    assert!(store.flow_steps("wf-9").await?.is_empty());

    // Steps written whole, in one call; a step the run did not have yet comes last.
    let build = FlowStepRow {
        state: StepState::Succeeded,
        attempt: 1,
        run_id: Some("r-build".into()),
        outputs: Some(r#"{"image":"web:1"}"#.into()),
        output: Some("built".into()),
        started_at: Some(20),
        finished_at: Some(30),
        ..step("wf-1", "build")
    };
    let test = FlowStepRow {
        state: StepState::Running,
        attempt: 2,
        run_id: Some("r-test".into()),
        detail: Some("attempt 1 failed: exit 1".into()),
        started_at: Some(31),
        not_before: Some(40),
        ..step("wf-1", "test")
    };
    let notify = FlowStepRow {
        state: StepState::Running,
        ..step("wf-1", "notify")
    };
    // Twice in one call: the last row given is written.
    let early = FlowStepRow {
        attempt: 1,
        ..test.clone()
    };
    store
        .update_flow(
            "wf-1",
            &[early, notify.clone(), build.clone(), test.clone()],
            &[],
            None,
        )
        .await?;
    let steps = store.flow_steps("wf-1").await?;
    assert_eq!(step_ids(&steps), ["build", "test", "deploy", "notify"]);
    assert_eq!(
        steps,
        [build.clone(), test.clone(), created[2].clone(), notify]
    );
    // A row of another run is refused.
    let r = store
        .update_flow("wf-1", &[step("wf-2", "build")], &[], None)
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");

    let other = flow_run("wf-2", 20, "key:ci");
    create(store, &other, &["only"]).await?;
    let mut child = flow_run("wf-3", 30, "key:ops");
    child.kind = DefKind::Job;
    child.parent = Some("wf-1/deploy".into());
    child.targets = Vec::new();
    create(store, &child, &["run"]).await?;
    let dup = create(store, &flow_run("wf-2", 40, "key:ci"), &[]).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.flow_run("wf-3").await?, Some(child));
    let ids = |runs: Vec<FlowRunRow>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unfinished_flow_runs().await?),
        ["wf-1", "wf-2", "wf-3"]
    );

    // The last steps and the end, together.
    let deploy = FlowStepRow {
        state: StepState::Failed,
        attempt: 1,
        run_id: Some("wf-3".into()),
        detail: Some("wf-3 failed".into()),
        finished_at: Some(90),
        ..step("wf-1", "deploy")
    };
    let test_done = FlowStepRow {
        state: StepState::Succeeded,
        finished_at: Some(80),
        not_before: None,
        ..test
    };
    store
        .update_flow(
            "wf-1",
            &[test_done.clone(), deploy.clone()],
            &[],
            Some((RunState::Failed, 95)),
        )
        .await?;
    let done = store.flow_run("wf-1").await?;
    assert_eq!(
        done.as_ref().map(|r| (r.state, r.finished_at)),
        Some((RunState::Failed, Some(95)))
    );
    let steps = store.flow_steps("wf-1").await?;
    assert_eq!(step_ids(&steps), ["build", "test", "deploy", "notify"]);
    assert_eq!((&steps[1], &steps[2]), (&test_done, &deploy));
    assert_eq!(ids(store.unfinished_flow_runs().await?), ["wf-2", "wf-3"]);
    store
        .update_flow("wf-3", &[], &[], Some((RunState::Succeeded, 99)))
        .await?;
    let gone = store
        .update_flow("wf-9", &[], &[], Some((RunState::Succeeded, 99)))
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");

    // Cancel: marked and audited while unfinished; a finished run is answered as it is.
    let cancel = entry("flow.cancel", "flow:wf-2");
    let marked = store.request_flow_cancel("wf-2", &cancel).await?;
    assert_eq!(marked.map(|r| r.cancel_requested), Some(true));
    let finished = store.request_flow_cancel("wf-1", &cancel).await?;
    assert_eq!(finished, done);
    assert_eq!(store.request_flow_cancel("nope", &cancel).await?, None);
    assert_eq!(
        store.flow_run("wf-2").await?.map(|r| r.cancel_requested),
        Some(true)
    );

    // Listings: newest first, by time, state and who.
    assert_eq!(
        ids(store.flow_runs(&ListFilter::newest(10)).await?),
        ["wf-3", "wf-2", "wf-1"]
    );
    assert_eq!(
        ids(store.flow_runs(&ListFilter::newest(2)).await?),
        ["wf-3", "wf-2"]
    );
    let f = |since: Option<i64>, state: Option<&str>, who: Option<&str>| ListFilter {
        limit: 10,
        since,
        state: state.map(str::to_string),
        who: who.map(str::to_string),
        machine: None,
        name: None,
    };
    assert_eq!(
        ids(store.flow_runs(&f(Some(20), None, None)).await?),
        ["wf-3", "wf-2"]
    );
    assert_eq!(
        ids(store.flow_runs(&f(None, Some("running"), None)).await?),
        ["wf-2"]
    );
    assert_eq!(
        ids(store.flow_runs(&f(None, None, Some("key:ops"))).await?),
        ["wf-3", "wf-1"]
    );
    assert_eq!(
        ids(store
            .flow_runs(&f(Some(20), Some("succeeded"), Some("key:ops")))
            .await?),
        ["wf-3"]
    );

    // Ids by prefix, taken literally.
    assert_eq!(
        store.flow_run_ids_with_prefix("wf-", 10).await?,
        ["wf-1", "wf-2", "wf-3"]
    );
    assert_eq!(
        store.flow_run_ids_with_prefix("wf-", 2).await?,
        ["wf-1", "wf-2"]
    );
    assert_eq!(store.flow_run_ids_with_prefix("wf-2", 10).await?, ["wf-2"]);
    assert!(store.flow_run_ids_with_prefix("wf_", 10).await?.is_empty());
    assert!(store.flow_run_ids_with_prefix("%", 10).await?.is_empty());

    // Only changes people make are audited: creations and the one cancel.
    assert_eq!(
        actions(store).await?,
        ["flow.cancel", "flow.run", "flow.run", "flow.run"]
    );
    Ok(())
}

/// Every attempt of a step, written with the step's row and ended when it ends; listed by
/// step and number; pruned with its run. Listings narrow by a run's name.
pub async fn step_attempts_and_names(store: &dyn Store) -> Result<()> {
    let run = flow_run("wf-a", 10, "key:ops");
    create(store, &run, &["build", "test"]).await?;
    let attempt = |s: &str, n: i64, run_id: Option<&str>, at: i64| StepAttemptRow {
        flow_run_id: "wf-a".into(),
        step_id: s.into(),
        attempt: n,
        run_id: run_id.map(str::to_string),
        state: StepState::Running,
        detail: None,
        started_at: at,
        finished_at: None,
    };
    let test1 = attempt("test", 1, Some("r-t1"), 20);
    let build1 = attempt("build", 1, None, 21);
    let test_row = FlowStepRow {
        state: StepState::Running,
        attempt: 1,
        run_id: Some("r-t1".into()),
        started_at: Some(20),
        ..step("wf-a", "test")
    };
    store
        .update_flow(
            "wf-a",
            std::slice::from_ref(&test_row),
            &[test1.clone(), build1.clone()],
            None,
        )
        .await?;
    assert_eq!(
        store.flow_step_attempts("wf-a").await?,
        [build1.clone(), test1.clone()]
    );
    // Ended, and the next one started, in one write: a stored attempt keeps its run id and
    // start; one named twice in a call is written as if one after the other.
    let test1_end = StepAttemptRow {
        state: StepState::Failed,
        detail: Some("exit 1".into()),
        finished_at: Some(30),
        run_id: Some("ignored".into()),
        started_at: 99,
        ..test1.clone()
    };
    let test2 = attempt("test", 2, Some("r-t2"), 31);
    let test2_end = StepAttemptRow {
        state: StepState::Succeeded,
        finished_at: Some(40),
        started_at: 98,
        ..test2.clone()
    };
    store
        .update_flow("wf-a", &[], &[test1_end, test2.clone(), test2_end], None)
        .await?;
    let got = store.flow_step_attempts("wf-a").await?;
    assert_eq!(
        got,
        [
            build1,
            StepAttemptRow {
                state: StepState::Failed,
                detail: Some("exit 1".into()),
                finished_at: Some(30),
                ..test1
            },
            StepAttemptRow {
                state: StepState::Succeeded,
                finished_at: Some(40),
                ..test2
            },
        ]
    );
    // An attempt of another run is refused, and nothing of the call is written.
    let r = store
        .update_flow(
            "wf-a",
            std::slice::from_ref(&test_row),
            &[StepAttemptRow {
                flow_run_id: "wf-b".into(),
                ..attempt("x", 1, None, 1)
            }],
            None,
        )
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(store.flow_step_attempts("wf-a").await?, got);
    assert!(store.flow_step_attempts("wf-none").await?.is_empty());

    // Listings by name.
    let mut other = flow_run("wf-b", 20, "key:ops");
    other.name = "other".into();
    create(store, &other, &["only"]).await?;
    let named = |name: &str| ListFilter {
        name: Some(name.into()),
        ..ListFilter::newest(10)
    };
    let ids = |runs: Vec<FlowRunRow>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(store.flow_runs(&named("other")).await?), ["wf-b"]);
    assert_eq!(ids(store.flow_runs(&named(&run.name)).await?), ["wf-a"]);
    assert!(store.flow_runs(&named("oth%")).await?.is_empty());

    // Pruned with the run, and only with it.
    store
        .update_flow("wf-a", &[], &[], Some((RunState::Succeeded, 50)))
        .await?;
    store
        .update_flow(
            "wf-b",
            &[],
            &[StepAttemptRow {
                flow_run_id: "wf-b".into(),
                ..attempt("only", 1, Some("r-o"), 21)
            }],
            None,
        )
        .await?;
    assert_eq!(store.prune_flow_runs(i64::MAX, 100).await?, 1);
    assert!(store.flow_step_attempts("wf-a").await?.is_empty());
    assert_eq!(store.flow_step_attempts("wf-b").await?.len(), 1);
    Ok(())
}

/// Many steps in one call (more than one statement holds): all written, in order.
pub async fn many_steps_in_one_update(store: &dyn Store) -> Result<()> {
    let run = flow_run("fan", 1, "key:test");
    let names: Vec<String> = (0..1500).map(|i| format!("s{:04}", 1499 - i)).collect();
    let first: Vec<&str> = names[..700].iter().map(String::as_str).collect();
    create(store, &run, &first).await?;
    let all: Vec<FlowStepRow> = names
        .iter()
        .map(|n| FlowStepRow {
            state: StepState::Succeeded,
            attempt: 1,
            ..step("fan", n)
        })
        .collect();
    store
        .update_flow("fan", &all, &[], Some((RunState::Succeeded, 5)))
        .await?;
    let steps = store.flow_steps("fan").await?;
    assert_eq!(steps, all);
    Ok(())
}

/// Retention prunes runs, not workflow runs: a step keeps the id of a run pruned under it.
pub async fn pruning_runs_leaves_workflow_runs(store: &dyn Store) -> Result<()> {
    run_with(store, "r1", 1, &task_ids("t", 1), TaskState::Succeeded).await?;
    assert!(store.finish_run("r1", RunState::Succeeded, 10).await?);
    let run = FlowRunRow {
        state: RunState::Succeeded,
        finished_at: Some(10),
        ..flow_run("wf", 1, "key:test")
    };
    let s = FlowStepRow {
        state: StepState::Succeeded,
        run_id: Some("r1".into()),
        ..step("wf", "one")
    };
    store
        .create_flow_run(
            &run,
            std::slice::from_ref(&s),
            &entry("flow.run", "flow:wf"),
        )
        .await?;
    let pruned = store.prune_runs(i64::MAX, 100).await?;
    assert_eq!(pruned.runs, ["r1"]);
    assert_eq!(store.flow_run("wf").await?, Some(run));
    assert_eq!(store.flow_steps("wf").await?, [s]);
    Ok(())
}

pub async fn pruning_workflow_runs_keeps_unfinished_ones(store: &dyn Store) -> Result<()> {
    for (id, finished) in [("old", Some(10)), ("newer", Some(20)), ("open", None)] {
        let run = FlowRunRow {
            state: if finished.is_some() {
                RunState::Succeeded
            } else {
                RunState::Running
            },
            finished_at: finished,
            ..flow_run(id, 1, "key:test")
        };
        create(store, &run, &["a", "b"]).await?;
    }
    assert_eq!(store.prune_flow_runs(15, 100).await?, 1);
    assert_eq!(store.flow_run("old").await?, None);
    assert!(store.flow_steps("old").await?.is_empty());
    assert!(store.flow_run("newer").await?.is_some());
    assert_eq!(store.flow_steps("newer").await?.len(), 2);
    assert_eq!(store.prune_flow_runs(i64::MAX, 100).await?, 1);
    assert!(store.flow_run("newer").await?.is_none());
    // Unfinished: never.
    assert_eq!(store.prune_flow_runs(i64::MAX, 100).await?, 0);
    assert!(store.flow_run("open").await?.is_some());
    assert_eq!(store.flow_steps("open").await?.len(), 2);
    Ok(())
}

pub async fn corrupt_flow_columns(fresh: &Fresh) -> Result<()> {
    let store = fresh.store();
    create(store, &flow_run("wf-1", 1, "key:test"), &["a", "b"]).await?;
    create(store, &flow_run("wf-2", 2, "key:test"), &[]).await?;
    fresh
        .raw("UPDATE flow_runs SET state = 'paused' WHERE id = 'wf-1'")
        .await?;
    assert_corrupt(
        store.flow_run("wf-1").await,
        "flow_runs.state of workflow run wf-1",
        "paused",
    );
    assert_corrupt(
        store.unfinished_flow_runs().await,
        "flow_runs.state of workflow run wf-1",
        "paused",
    );
    fresh
        .raw(r#"UPDATE flow_runs SET targets = '{"role":"web"}' WHERE id = 'wf-2'"#)
        .await?;
    assert_corrupt(
        store.flow_run("wf-2").await,
        "flow_runs.targets of workflow run wf-2",
        "role",
    );
    fresh
        .raw("UPDATE flow_steps SET state = 'exploded' WHERE step_id = 'b'")
        .await?;
    assert_corrupt(
        store.flow_steps("wf-1").await,
        "flow_steps.state of step wf-1/b",
        "exploded",
    );
    Ok(())
}
