//! The firing loop over a schedule whose fire time was recorded already while the schedule
//! still names it (a clock that went back): it goes on to the next fire time instead of
//! trying the same one again and again.

use std::time::Duration;

use herd_store::{AuditEntry, Fire, FireRow, FireStart, ScheduleRow, now_ms};

use super::TestServer;

#[tokio::test]
async fn a_fire_time_recorded_already_is_passed_not_retried() {
    let t = TestServer::new().await;
    let store = t.store.clone();
    let now = now_ms();
    let due = now - 200;
    let spec = serde_json::json!({
        "spec": herd_schedule::Spec::every("1s", due - 1000).unwrap(),
        "tz": "UTC",
    });
    let row = ScheduleRow {
        id: "sched1".into(),
        name: "again".into(),
        spec: spec.to_string(),
        target: r#"{"kind":"command","command":"true","targets":["nobody"],"params":{}}"#.into(),
        overlap: "allow".into(),
        misfire: "run-once".into(),
        jitter_ms: 0,
        paused: false,
        next_fire_at: Some(due),
        // Not due yet: the row at `due` goes in first.
        due_at: Some(now + 600_000),
        last_fire_at: None,
        last_run_id: None,
        created_by: "test".into(),
        created_at: due - 1000,
        revision: 0,
    };
    let audit = AuditEntry::new(
        "test",
        "schedule.add",
        "schedule:again",
        serde_json::json!({}),
    );
    store.create_schedule(&row, &audit).await.unwrap();
    let recorded = [FireRow {
        schedule_id: "sched1".into(),
        fire_at: due,
        at: due,
        outcome: "failed".into(),
        run_id: None,
        run_kind: None,
        detail: Some("before".into()),
    }];
    let kept = Fire {
        schedule_id: "sched1",
        expected: due,
        revision: 0,
        rows: &recorded,
        next_fire_at: Some(due),
        next_due_at: Some(now + 600_000),
        start: FireStart::Nothing,
    };
    assert!(store.fire(&kept).await.unwrap());
    assert!(store.hold_schedule("sched1", due, now_ms()).await.unwrap());
    // The firing loop looks at the store at least once a second.

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = store.schedule("again").await.unwrap().unwrap();
        if s.next_fire_at.is_some_and(|n| n > due) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule still names a fire time recorded already: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fires = store.schedule_fires("sched1", 100).await.unwrap();
    let at_due: Vec<_> = fires.iter().filter(|f| f.fire.fire_at == due).collect();
    assert_eq!(at_due.len(), 1);
    assert_eq!(at_due[0].fire.detail.as_deref(), Some("before"));
}
