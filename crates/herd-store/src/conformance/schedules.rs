//! Schedules: the ordered read of what is due, fires written whole or not at all under their
//! (schedule, fire time) key, listings with the latest fire and its run's state.

use herd_core::{RunState, TaskState};

use super::fixtures::*;
use crate::{Fire, FireRow, FireStart, Result, ScheduleRow, Store, StoreError};

fn schedule(id: &str, name: &str, due: i64) -> ScheduleRow {
    ScheduleRow {
        id: id.into(),
        name: name.into(),
        spec: r#"{"every_ms":1000}"#.into(),
        target: r#"{"command":"true"}"#.into(),
        overlap: "skip".into(),
        misfire: "run-once".into(),
        jitter_ms: 0,
        paused: false,
        next_fire_at: Some(due),
        due_at: Some(due),
        last_fire_at: None,
        last_run_id: None,
        created_by: "key:test".into(),
        created_at: 1,
        revision: 0,
    }
}

fn fire_row(schedule: &str, at: i64, outcome: &str, run: Option<&str>) -> FireRow {
    FireRow {
        schedule_id: schedule.into(),
        fire_at: at,
        at: at + 3,
        outcome: outcome.into(),
        run_id: run.map(Into::into),
        run_kind: run.map(|_| "run".into()),
        detail: None,
    }
}

pub async fn schedules_fire_once(store: &dyn Store) -> Result<()> {
    for (id, name, due) in [
        ("s1", "b-nightly", 3000),
        ("s2", "a-often", 1000),
        ("s3", "c-later", 9000),
    ] {
        store
            .create_schedule(&schedule(id, name, due), &entry("schedule.add", name))
            .await?;
    }
    let dup = store
        .create_schedule(
            &schedule("s4", "a-often", 5),
            &entry("schedule.add", "a-often"),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    // What is due comes earliest first, and only what is due.
    assert_eq!(store.next_due().await?, Some(1000));
    let due: Vec<String> = store
        .due_schedules(5000, 10)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(due, ["s2", "s1"]);
    assert_eq!(store.due_schedules(5000, 1).await?.len(), 1);

    // A fire with its run: the schedule moves on, the run exists.
    let run = run_row("r1", 1002);
    let tasks = [new_task("t1", "x", TaskState::Queued)];
    let audit = entry("run.create", "run:r1");
    let rows = [fire_row("s2", 1000, "started", Some("r1"))];
    let fire = Fire {
        schedule_id: "s2",
        expected: 1000,
        revision: 0,
        rows: &rows,
        next_fire_at: Some(2000),
        next_due_at: Some(2050),
        start: FireStart::Run {
            run: &run,
            tasks: &tasks,
            audit: &audit,
        },
    };
    assert!(store.fire(&fire).await?);
    assert!(store.run("r1").await?.is_some());
    let s2 = store.schedule("a-often").await?.expect("s2");
    assert_eq!(
        (s2.next_fire_at, s2.due_at, s2.last_fire_at),
        (Some(2000), Some(2050), Some(1000))
    );
    assert_eq!(s2.last_run_id.as_deref(), Some("r1"));

    // The same fire again (a second server, or a retry after a crash) writes nothing.
    let run2 = run_row("r2", 1003);
    let again = Fire {
        schedule_id: "s2",
        expected: 1000,
        revision: 0,
        rows: &rows,
        next_fire_at: Some(2000),
        next_due_at: Some(2000),
        start: FireStart::Run {
            run: &run2,
            tasks: &[],
            audit: &audit,
        },
    };
    assert!(!store.fire(&again).await?);
    assert!(
        store.run("r2").await?.is_none(),
        "a fire that lost its race created a run"
    );
    // A fire whose key exists, even with the schedule's next fire matching, writes nothing.
    let stale = Fire {
        schedule_id: "s2",
        expected: 2000,
        revision: 0,
        rows: &rows,
        next_fire_at: Some(3000),
        next_due_at: Some(3000),
        start: FireStart::Run {
            run: &run2,
            tasks: &[],
            audit: &audit,
        },
    };
    assert!(!store.fire(&stale).await?);
    assert!(store.run("r2").await?.is_none());
    assert_eq!(
        store
            .schedule("a-often")
            .await?
            .and_then(|s| s.next_fire_at),
        Some(2000)
    );

    // A held fire is looked at again later; a stale hold changes nothing.
    assert!(store.hold_schedule("s2", 2000, 2600).await?);
    assert!(!store.hold_schedule("s2", 1000, 9999).await?);
    assert_eq!(
        store.schedule("a-often").await?.and_then(|s| s.due_at),
        Some(2600)
    );

    // A skipped fire moves the schedule on without starting anything; the last run stays.
    let skipped = [fire_row("s2", 2000, "skipped", None)];
    let skip = Fire {
        schedule_id: "s2",
        expected: 2000,
        revision: 0,
        rows: &skipped,
        next_fire_at: None,
        next_due_at: None,
        start: FireStart::Nothing,
    };
    assert!(store.fire(&skip).await?);
    let s2 = store.schedule("a-often").await?.expect("s2");
    assert_eq!(
        (s2.next_fire_at, s2.last_run_id.as_deref()),
        (None, Some("r1"))
    );
    assert_eq!(store.next_due().await?, Some(3000));

    // History newest first, with the state of what each fire started.
    store.finish_run("r1", RunState::Succeeded, 1500).await?;
    let fires = store.schedule_fires("s2", 10).await?;
    assert_eq!(fires.len(), 2);
    assert_eq!(
        (fires[0].fire.fire_at, fires[0].fire.outcome.as_str()),
        (2000, "skipped")
    );
    assert_eq!(fires[1].run_state.as_deref(), Some("succeeded"));
    assert_eq!(fires[1].fire.run_id.as_deref(), Some("r1"));

    // Listing: by name, each with its latest fire.
    let all = store.schedules().await?;
    let names: Vec<&str> = all.iter().map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(names, ["a-often", "b-nightly", "c-later"]);
    assert_eq!(all[0].1.as_ref().map(|f| f.fire.fire_at), Some(2000));
    assert!(all[1].1.is_none());

    // Paused schedules are not due.
    assert!(
        store
            .set_schedule_paused(
                "s1",
                true,
                Some(3000),
                Some(3000),
                &entry("schedule.pause", "b")
            )
            .await?
    );
    assert_eq!(store.next_due().await?, Some(9000));
    assert!(
        store
            .due_schedules(i64::MAX, 10)
            .await?
            .iter()
            .all(|s| s.id == "s3")
    );
    assert!(store.schedule("b-nightly").await?.is_some_and(|s| s.paused));
    assert!(
        !store
            .set_schedule_paused("nope", true, None, None, &entry("schedule.pause", "n"))
            .await?
    );

    // Pruning keeps each schedule's latest fire.
    assert_eq!(store.prune_schedule_fires(i64::MAX, 100).await?, 1);
    assert_eq!(store.schedule_fires("s2", 10).await?.len(), 1);

    // Deleting takes the fires with it; what they started stays.
    assert!(
        store
            .delete_schedule("s2", &entry("schedule.rm", "a-often"))
            .await?
    );
    assert!(
        !store
            .delete_schedule("s2", &entry("schedule.rm", "a-often"))
            .await?
    );
    assert!(store.schedule("a-often").await?.is_none());
    assert!(store.schedule_fires("s2", 10).await?.is_empty());
    assert!(store.run("r1").await?.is_some());
    Ok(())
}

/// Editing a schedule replaces its definition in place: the same id, its fires kept, its next
/// fire the one given; a fire planned from the definition before the edit, or of a paused
/// schedule, writes nothing; an edit from a stale read writes nothing.
pub async fn schedules_edit_in_place(store: &dyn Store) -> Result<()> {
    store
        .create_schedule(
            &schedule("e1", "edited", 1000),
            &entry("schedule.add", "edited"),
        )
        .await?;
    let rows = [fire_row("e1", 1000, "started", Some("r1"))];
    let run = run_row("r1", 1002);
    let audit = entry("run.create", "run:r1");
    let first = Fire {
        schedule_id: "e1",
        expected: 1000,
        revision: 0,
        rows: &rows,
        next_fire_at: Some(2000),
        next_due_at: Some(2000),
        start: FireStart::Run {
            run: &run,
            tasks: &[],
            audit: &audit,
        },
    };
    assert!(store.fire(&first).await?);

    // The edit: a new definition and next fire under the same id.
    let read = store.schedule("edited").await?.expect("e1");
    assert_eq!(read.revision, 0);
    let edited = ScheduleRow {
        spec: r#"{"every_ms":5000}"#.into(),
        target: r#"{"command":"echo new"}"#.into(),
        overlap: "allow".into(),
        misfire: "skip".into(),
        jitter_ms: 7,
        next_fire_at: Some(2000),
        due_at: Some(2003),
        created_by: "key:editor".into(),
        ..read.clone()
    };
    assert!(
        store
            .update_schedule(&edited, &entry("schedule.edit", "schedule:edited"))
            .await?
    );
    let now = store.schedule("edited").await?.expect("e1");
    assert_eq!(now.id, "e1");
    assert_eq!(now.revision, 1);
    assert_eq!(
        (now.spec.as_str(), now.target.as_str(), now.overlap.as_str()),
        (r#"{"every_ms":5000}"#, r#"{"command":"echo new"}"#, "allow")
    );
    assert_eq!(
        (now.misfire.as_str(), now.jitter_ms, now.created_by.as_str()),
        ("skip", 7, "key:editor")
    );
    assert_eq!((now.next_fire_at, now.due_at), (Some(2000), Some(2003)));
    assert_eq!(
        (now.last_fire_at, now.last_run_id.as_deref(), now.created_at),
        (Some(1000), Some("r1"), 1)
    );
    let fires = store.schedule_fires("e1", 10).await?;
    assert_eq!(fires.len(), 1, "an edit kept the fires");
    assert_eq!(fires[0].fire.run_id.as_deref(), Some("r1"));
    assert!(
        store
            .audit_log(10)
            .await?
            .iter()
            .any(|a| a.action == "schedule.edit"),
        "the edit has its audit entry"
    );

    // A fire planned before the edit (same next fire time, old revision) writes nothing.
    let stale_rows = [fire_row("e1", 2000, "started", Some("r2"))];
    let run2 = run_row("r2", 2001);
    let stale = Fire {
        schedule_id: "e1",
        expected: 2000,
        revision: 0,
        rows: &stale_rows,
        next_fire_at: Some(3000),
        next_due_at: Some(3000),
        start: FireStart::Run {
            run: &run2,
            tasks: &[],
            audit: &audit,
        },
    };
    assert!(!store.fire(&stale).await?);
    assert!(
        store.run("r2").await?.is_none(),
        "a stale fire started a run"
    );
    // An edit from the read before the first edit writes nothing either.
    assert!(
        !store
            .update_schedule(&read, &entry("schedule.edit", "schedule:edited"))
            .await?
    );
    assert_eq!(
        store.schedule("edited").await?.map(|s| s.target),
        Some(r#"{"command":"echo new"}"#.to_string())
    );
    // Nor does an edit of a schedule that is not there.
    let gone = ScheduleRow {
        id: "nope".into(),
        ..now.clone()
    };
    assert!(
        !store
            .update_schedule(&gone, &entry("schedule.edit", "schedule:nope"))
            .await?
    );

    // A schedule paused after its fire was planned does not fire.
    assert!(
        store
            .set_schedule_paused(
                "e1",
                true,
                Some(2000),
                Some(2003),
                &entry("schedule.pause", "e")
            )
            .await?
    );
    let paused = Fire {
        revision: 1,
        ..stale
    };
    assert!(!store.fire(&paused).await?);
    assert!(store.run("r2").await?.is_none());
    // The fire planned from the current revision of the running schedule does.
    assert!(
        store
            .set_schedule_paused(
                "e1",
                false,
                Some(2000),
                Some(2003),
                &entry("schedule.resume", "e")
            )
            .await?
    );
    assert!(store.fire(&paused).await?);
    assert!(store.run("r2").await?.is_some());
    assert_eq!(store.schedule_fires("e1", 10).await?.len(), 2);
    Ok(())
}
