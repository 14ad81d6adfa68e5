//! The session's runtime side while the spool thread is busy: what does not need the disk
//! goes on, and what does waits without losing anything.

use super::*;
use crate::spool_thread::Watchdog;

fn output(task: &str, seq: u64) -> TaskEvent {
    TaskEvent {
        task_id: task.into(),
        seq,
        kind: Some(task_event::Kind::Output(pb::Output {
            stream: pb::Stream::Stdout as i32,
            data: vec![b'x'; 100].into(),
        })),
    }
}

async fn shared(dir: &std::path::Path) -> (Arc<Shared>, SpoolThread) {
    let spool = SpoolThread::open(dir.join("spool")).await.unwrap();
    (
        Arc::new(Shared::new(
            spool.clone(),
            dir.join("copies"),
            dir.join("tasks"),
            true,
        )),
        spool,
    )
}

/// A spool write held up (as by a slow disk) does not hold up the heartbeats.
#[tokio::test(flavor = "current_thread")]
async fn heartbeats_go_on_while_a_spool_write_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, spool) = shared(dir.path()).await;
    let release = spool.hold().await;
    let watchdog = Watchdog::new(release.clone());
    let s = spool.clone();
    let append = tokio::spawn(async move { s.append(vec![output("t", 1)]).await });

    let (out, mut frames) = mpsc::channel(4);
    let beats = tokio::spawn(heartbeats(
        shared.clone(),
        out,
        Duration::from_millis(10),
        None,
    ));
    for _ in 0..3 {
        let frame = frames.recv().await.unwrap();
        assert!(
            matches!(frame.kind, Some(agent_frame::Kind::Heartbeat(_))),
            "{frame:?}"
        );
        assert!(!append.is_finished(), "the write waits for the held thread");
    }
    assert!(!watchdog.fired(), "heartbeats waited for the spool thread");
    release.send(()).unwrap();
    append.await.unwrap().unwrap();
    assert!(!watchdog.fired());
    assert_eq!(spool.activity(), 1);
    beats.abort();
}

/// A StartTask and a Cancel that arrive while the spool thread is busy are both taken at
/// once; the task starts when the spool has answered that it is new, and the cancel that
/// waited for it ends it. A second StartTask of a task the spool knows does not run it again.
#[tokio::test(flavor = "current_thread")]
async fn commands_wait_for_the_spool_without_being_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, spool) = shared(dir.path()).await;
    let start = pb::StartTask {
        task_id: "t1".into(),
        command: "sleep 30".into(),
        ..Default::default()
    };
    let release = spool.hold().await;
    let watchdog = Watchdog::new(release.clone());
    shared.start_task(start.clone());
    shared.start_task(start.clone());
    shared.control("t1", Control::Cancel { grace: None }).await;
    match lock(&shared.running).get("t1") {
        Some(Slot::Checking(waiting)) => assert_eq!(waiting.len(), 1),
        _ => panic!("t1 should wait for the spool"),
    }
    assert!(!watchdog.fired(), "commands waited for the spool thread");
    release.send(()).unwrap();

    let session = spool.rewind().await.unwrap().session;
    let mut events = Vec::new();
    let exited = loop {
        let appended = spool.appended().notified();
        events.extend(spool.next_batch(session, 1 << 20).await.unwrap());
        let last = events.iter().find_map(|e| match &e.kind {
            Some(task_event::Kind::Exited(x)) => Some(x.clone()),
            _ => None,
        });
        if let Some(x) = last {
            break x;
        }
        appended.await;
    };
    assert_eq!(
        exited.reason,
        pb::ExitReason::Cancelled as i32,
        "{exited:?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // The task ended; the spool knows it, so starting it again runs nothing.
    while lock(&shared.running).contains_key("t1") {
        tokio::task::yield_now().await;
    }
    shared.start_task(start);
    while matches!(lock(&shared.running).get("t1"), Some(Slot::Checking(_))) {
        tokio::task::yield_now().await;
    }
    assert!(lock(&shared.running).get("t1").is_none(), "t1 ran again");
    assert_eq!(spool.last_seq("t1").await.unwrap(), seqs.len() as u64);
}
