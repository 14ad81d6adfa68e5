//! The persist path in process, on a real store: batches in, acks out, rows and output as
//! they should be, across duplicates, gaps and a `lost` task revived by its real result.

use std::time::Duration;

use herd_core::{RunState, TaskState};
use herd_proto::v1 as pb;
use herd_store::now_ms;
use tokio::sync::mpsc;

use super::TestServer;
use super::events::{E, ev};
use crate::runs::NewRunRequest;

/// A joined, connected agent and a run of one task on it.
struct Fixture {
    srv: TestServer,
    agent: String,
    _frames: mpsc::Receiver<pb::ServerFrame>,
}

impl Fixture {
    async fn new() -> Fixture {
        let srv = TestServer::new().await;
        let (agent, _) = srv.join("m1").await.unwrap();
        let (tx, frames) = mpsc::channel(64);
        let peer = crate::registry::Peer {
            instance: "",
            addr: "test",
        };
        let _ = srv
            .parts
            .hub
            .registry
            .connect(&agent, tx, peer, std::time::Duration::ZERO);
        Fixture {
            srv,
            agent,
            _frames: frames,
        }
    }

    /// A new run on the agent; returns (run id, task id).
    async fn run(&self) -> (String, String) {
        let run = self
            .srv
            .parts
            .app
            .runs()
            .create(
                "key:test",
                NewRunRequest {
                    command: "true".into(),
                    targets: vec!["m1".into()],
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
        let tasks = self.srv.store.tasks_of_run(&run.id).await.unwrap();
        (run.id, tasks[0].id.clone())
    }

    async fn persist(&self, events: Vec<pb::TaskEvent>) -> Vec<(String, u64)> {
        self.srv
            .parts
            .hub
            .ingest
            .persist(&self.agent, pb::EventBatch { events })
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.task_id, a.seq))
            .collect()
    }

    async fn output(&self, task: &str) -> String {
        let t = self.srv.store.task(task).await.unwrap().unwrap();
        let (chunks, _) = self
            .srv
            .parts
            .app
            .outlog()
            .read(task, t.output, Default::default(), 1 << 20)
            .unwrap();
        chunks
            .iter()
            .map(|c| match c {
                herd_outlog::Chunk::Data { data, .. } => String::from_utf8_lossy(data).to_string(),
                herd_outlog::Chunk::Omitted { .. } => "[omitted]".into(),
            })
            .collect()
    }

    async fn run_state(&self, run: &str) -> RunState {
        for _ in 0..200 {
            let r = self.srv.store.run(run).await.unwrap().unwrap();
            if r.finished_at.is_some() {
                return r.state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {run} did not finish");
    }
}

#[tokio::test]
async fn batches_become_acks_and_rows() {
    // (batches of (seq, event)) → (ack of each batch, final state, stored seq, output)
    type Case = (
        &'static str,
        Vec<Vec<(u64, E)>>,
        Vec<u64>,
        TaskState,
        u64,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "in one batch",
            vec![vec![
                (1, E::Start),
                (2, E::Out("hello ")),
                (3, E::Out("world")),
                (4, E::Exit(0)),
            ]],
            vec![4],
            TaskState::Succeeded,
            4,
            "hello world",
        ),
        (
            "a replay after a lost ack stores nothing twice",
            vec![
                vec![(1, E::Start), (2, E::Out("a"))],
                vec![
                    (1, E::Start),
                    (2, E::Out("a")),
                    (3, E::Out("b")),
                    (4, E::Exit(3)),
                ],
            ],
            vec![2, 4],
            TaskState::Failed,
            4,
            "ab",
        ),
        (
            "a gap stops the batch until the agent replays",
            vec![
                vec![(1, E::Start), (3, E::Out("c"))],
                vec![(2, E::Out("b")), (3, E::Out("c")), (4, E::Exit(0))],
            ],
            vec![1, 4],
            TaskState::Succeeded,
            4,
            "bc",
        ),
        (
            "a running task without its exit stays running",
            vec![
                vec![(1, E::Start), (2, E::Out("x"))],
                vec![(2, E::Out("x"))],
            ],
            vec![2, 2],
            TaskState::Running,
            2,
            "x",
        ),
    ];
    let f = Fixture::new().await;
    for (what, batches, acks, state, seq, output) in cases {
        let (_, task) = f.run().await;
        let mut got = Vec::new();
        for b in batches {
            let events = b.into_iter().map(|(s, e)| ev(&task, s, e)).collect();
            let a = f.persist(events).await;
            assert_eq!(a.len(), 1, "{what}: one ack per task");
            got.push(a[0].1);
        }
        assert_eq!(got, acks, "{what}: acks");
        let row = f.srv.store.task(&task).await.unwrap().unwrap();
        assert_eq!((row.state, row.out_seq), (state, seq), "{what}: row");
        assert_eq!(f.output(&task).await, output, "{what}: output");
    }
}

#[tokio::test]
async fn unknown_and_foreign_tasks() {
    let f = Fixture::new().await;
    // Unknown: acknowledged up to its last event, nothing stored.
    let acks = f
        .persist(vec![ev("nope", 3, E::Out("x")), ev("nope", 5, E::Exit(0))])
        .await;
    assert_eq!(acks, [("nope".to_string(), 5)]);
    assert!(f.srv.store.task("nope").await.unwrap().is_none());
    // Another agent's task: not acknowledged, not stored.
    let (_, task) = f.run().await;
    let acks = f
        .srv
        .parts
        .hub
        .ingest
        .persist(
            "someone-else",
            pb::EventBatch {
                events: vec![ev(&task, 1, E::Start)],
            },
        )
        .await
        .unwrap();
    assert!(acks.is_empty());
    let row = f.srv.store.task(&task).await.unwrap().unwrap();
    assert_eq!((row.state, row.out_seq), (TaskState::Dispatched, 0));
}

#[tokio::test]
async fn a_lost_task_takes_its_real_result_and_the_run_follows() {
    let f = Fixture::new().await;
    let (run, task) = f.run().await;
    f.persist(vec![ev(&task, 1, E::Start), ev(&task, 2, E::Out("half"))])
        .await;
    // Its agent stays away: the task is lost, and with it the run fails.
    let ids = [task.clone()];
    let changed = f
        .srv
        .store
        .end_tasks(&ids, TaskState::Lost, "away", now_ms())
        .await
        .unwrap();
    assert_eq!(changed, ids);
    f.srv
        .parts
        .hub
        .drivers
        .task_ended(&run, &task, TaskState::Lost);
    assert_eq!(f.run_state(&run).await, RunState::Failed);
    // It comes back with the rest and the real end.
    let acks = f
        .persist(vec![
            ev(&task, 3, E::Out(" done")),
            ev(&task, 4, E::Exit(0)),
        ])
        .await;
    assert_eq!(acks, [(task.clone(), 4)]);
    let row = f.srv.store.task(&task).await.unwrap().unwrap();
    assert_eq!((row.state, row.exit_code), (TaskState::Succeeded, Some(0)));
    assert_eq!(f.output(&task).await, "half done");
    for _ in 0..200 {
        if f.srv.store.run(&run).await.unwrap().unwrap().state == RunState::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        f.srv.store.run(&run).await.unwrap().unwrap().state,
        RunState::Succeeded,
        "the finished run's state is derived again"
    );
    // A cancelled task is not revived by a late exit.
    let (_, t2) = f.run().await;
    f.srv
        .parts
        .app
        .runs()
        .cancel_task("key:test", &t2)
        .await
        .unwrap();
    f.srv
        .store
        .end_tasks(
            std::slice::from_ref(&t2),
            TaskState::Cancelled,
            "test",
            now_ms(),
        )
        .await
        .unwrap();
    f.persist(vec![ev(&t2, 1, E::Start), ev(&t2, 2, E::Exit(0))])
        .await;
    let row = f.srv.store.task(&t2).await.unwrap().unwrap();
    assert_eq!(row.state, TaskState::Cancelled);
}

#[tokio::test]
async fn events_after_a_tasks_exit_are_acknowledged_and_dropped() {
    let f = Fixture::new().await;
    let (run, task) = f.run().await;
    // Events after the exit in the exit's own batch count for nothing.
    let acks = f
        .persist(vec![
            ev(&task, 1, E::Start),
            ev(&task, 2, E::Out("done")),
            ev(&task, 3, E::Exit(0)),
            ev(&task, 4, E::Out(" and more")),
        ])
        .await;
    assert_eq!(acks, [(task.clone(), 4)]);
    let ended = f.srv.store.task(&task).await.unwrap().unwrap();
    assert_eq!((ended.state, ended.out_seq), (TaskState::Succeeded, 3));
    assert_eq!(f.output(&task).await, "done");
    // Right after the exit, and once the run has finished: acknowledged, nothing stored.
    let acks = f
        .persist(vec![ev(&task, 5, E::Out("late")), ev(&task, 6, E::Start)])
        .await;
    assert_eq!(acks, [(task.clone(), 6)]);
    assert_eq!(f.run_state(&run).await, RunState::Succeeded);
    let acks = f
        .persist(vec![
            ev(&task, 7, E::Out("much later")),
            ev(&task, 8, E::Exit(1)),
        ])
        .await;
    assert_eq!(acks, [(task.clone(), 8)]);
    assert_eq!(f.srv.store.task(&task).await.unwrap().unwrap(), ended);
    assert_eq!(f.output(&task).await, "done");
}

/// Outputs ride on the exit: stored with it once, whatever is replayed or comes late, and
/// answered parsed.
#[tokio::test]
async fn outputs_are_stored_once_with_the_exit() {
    let f = Fixture::new().await;
    let (_run, task) = f.run().await;
    let first = vec![
        ev(&task, 1, E::Start),
        ev(
            &task,
            2,
            E::ExitWith(0, b"a=1\nherd.condition=false\nodd=\0\xff\n"),
        ),
    ];
    assert_eq!(f.persist(first).await, [(task.clone(), 2)]);
    // The same batch again (the agent reconnected before the ack), then a later exit.
    let again = vec![
        ev(&task, 1, E::Start),
        ev(&task, 2, E::ExitWith(0, b"a=2\n")),
    ];
    assert_eq!(f.persist(again).await, [(task.clone(), 2)]);
    assert_eq!(
        f.persist(vec![ev(&task, 3, E::ExitWith(1, b"a=3\n"))])
            .await,
        [(task.clone(), 3)]
    );
    let row = f.srv.store.task(&task).await.unwrap().unwrap();
    assert_eq!(
        row.outputs.as_deref(),
        Some("a=1\nherd.condition=false\nodd=\u{FFFD}\u{FFFD}\n")
    );
    let answered = crate::convert::task(row);
    assert_eq!(
        answered.outputs,
        [
            ("a".to_string(), "1".to_string()),
            ("odd".to_string(), "\u{FFFD}\u{FFFD}".to_string())
        ]
        .into()
    );
    assert_eq!(answered.condition, Some(false));
}
