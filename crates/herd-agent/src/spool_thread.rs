//! The spool thread: one OS thread, `herd-spool`, owns the agent's [`Outbox`] (the spool on
//! disk and the recent events held in memory) and does all of its disk work. The runtime
//! sends it requests over a channel and awaits the answers on oneshot channels, so a slow
//! or stuck disk delays only what needs the disk; heartbeats, commands and the pacing of
//! tasks read the few facts the thread publishes (memory room, whether anything waits in
//! memory, activity) from atomics, and wait on its [`Notify`]s.
//!
//! Requests are served one at a time in the order they were sent, so an ack sent before a
//! rewind is applied before it. Each rewind starts a new session number, and a batch asked
//! for by an earlier session (one that ended while its request waited) is answered empty
//! and marks nothing as sent.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use herd_proto::v1::{self as pb, TaskEvent};
use herd_spool::{Spool, SpoolError, SpoolTask};
use tokio::sync::{Notify, oneshot};

use crate::outbox::Outbox;

/// Name of the thread that owns the outbox.
const THREAD_NAME: &str = "herd-spool";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the spool thread: {0}")]
    Thread(std::io::Error),
    #[error("the spool thread has stopped")]
    Stopped,
}

/// What the thread publishes for the runtime to read without waiting for the disk.
struct Facts {
    memory_room: AtomicUsize,
    holds_memory: AtomicBool,
    /// Counts appended batches.
    activity: AtomicU64,
    /// Signalled when events are appended.
    appended: Notify,
    /// Signalled (to every waiter) once acknowledgements were applied.
    acked: Notify,
}

impl Facts {
    fn publish(&self, ob: &Outbox) {
        self.memory_room.store(ob.memory_room(), Ordering::Release);
        self.holds_memory
            .store(!ob.holds_nothing_in_memory(), Ordering::Release);
    }
}

enum Request {
    Append {
        events: Vec<TaskEvent>,
        reply: oneshot::Sender<Result<(), SpoolError>>,
    },
    Ack {
        acks: Vec<pb::Ack>,
    },
    NextBatch {
        session: u64,
        max_bytes: usize,
        reply: oneshot::Sender<Result<Vec<TaskEvent>, SpoolError>>,
    },
    Tasks {
        reply: oneshot::Sender<Vec<SpoolTask>>,
    },
    Rewind {
        reply: oneshot::Sender<Rewound>,
    },
    Knows {
        task_id: String,
        reply: oneshot::Sender<bool>,
    },
    LastSeq {
        task_id: String,
        reply: oneshot::Sender<u64>,
    },
    /// Test hook: the thread reports that it is held, then waits for `release`.
    #[cfg(test)]
    Hold {
        held: oneshot::Sender<()>,
        release: mpsc::Receiver<()>,
    },
}

/// A new session's start: its number, and the tasks the spool holds.
pub struct Rewound {
    pub session: u64,
    pub tasks: Vec<SpoolTask>,
}

/// The runtime's handle on the spool thread. The thread ends once every handle is gone.
#[derive(Clone)]
pub struct SpoolThread {
    requests: mpsc::Sender<Request>,
    facts: Arc<Facts>,
}

impl SpoolThread {
    /// Starts the thread, which opens (and recovers) the spool in `dir` before serving.
    pub async fn open(dir: PathBuf) -> Result<SpoolThread, OutboxError> {
        SpoolThread::start(move || Spool::open(&dir).map(Outbox::new)).await
    }

    /// Starts the thread with the outbox `make` returns (called on the thread).
    pub(crate) async fn start(
        make: impl FnOnce() -> Result<Outbox, SpoolError> + Send + 'static,
    ) -> Result<SpoolThread, OutboxError> {
        let (requests, rx) = mpsc::channel();
        let facts = Arc::new(Facts {
            memory_room: AtomicUsize::new(0),
            holds_memory: AtomicBool::new(false),
            activity: AtomicU64::new(0),
            appended: Notify::new(),
            acked: Notify::new(),
        });
        let (opened_tx, opened) = oneshot::channel();
        let f = facts.clone();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || match make() {
                Ok(ob) => {
                    f.publish(&ob);
                    let _ = opened_tx.send(Ok(()));
                    serve(ob, &rx, &f);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(OutboxError::Thread)?;
        opened.await.map_err(|_| OutboxError::Stopped)??;
        Ok(SpoolThread { requests, facts })
    }

    async fn ask<T>(
        &self,
        req: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(req(reply))
            .map_err(|_| OutboxError::Stopped)?;
        answer.await.map_err(|_| OutboxError::Stopped)
    }

    /// Appends a task's batch to the spool (then to memory, where there is room); once this
    /// returns `Ok`, the events are on disk and may be sent.
    pub async fn append(&self, events: Vec<TaskEvent>) -> Result<(), OutboxError> {
        Ok(self
            .ask(|reply| Request::Append { events, reply })
            .await??)
    }

    /// Applies the server's acknowledgements, without waiting for the disk; the
    /// [`acked`](Self::acked) notify fires once they are applied.
    pub fn ack(&self, acks: Vec<pb::Ack>) {
        if self.requests.send(Request::Ack { acks }).is_err() {
            tracing::warn!("cannot record acknowledgement: the spool thread has stopped");
        }
    }

    /// Up to about `max_bytes` of events not yet sent in `session` (from [`rewind`]);
    /// nothing once a later session started.
    ///
    /// [`rewind`]: Self::rewind
    pub async fn next_batch(
        &self,
        session: u64,
        max_bytes: usize,
    ) -> Result<Vec<TaskEvent>, OutboxError> {
        Ok(self
            .ask(|reply| Request::NextBatch {
                session,
                max_bytes,
                reply,
            })
            .await??)
    }

    /// The tasks the spool holds (finished ones included, until acknowledged).
    pub async fn tasks(&self) -> Result<Vec<SpoolTask>, OutboxError> {
        self.ask(|reply| Request::Tasks { reply }).await
    }

    /// A new session: everything not acknowledged is sent again. Returns the session's
    /// number and the tasks held.
    pub async fn rewind(&self) -> Result<Rewound, OutboxError> {
        self.ask(|reply| Request::Rewind { reply }).await
    }

    /// Whether the spool has events of `task_id` or knows it finished.
    pub async fn knows(&self, task_id: &str) -> Result<bool, OutboxError> {
        let task_id = task_id.to_string();
        self.ask(|reply| Request::Knows { task_id, reply }).await
    }

    /// The highest seq spooled for `task_id` (0 if none).
    pub async fn last_seq(&self, task_id: &str) -> Result<u64, OutboxError> {
        let task_id = task_id.to_string();
        self.ask(|reply| Request::LastSeq { task_id, reply }).await
    }

    /// Encoded bytes that can still be appended and kept in memory, as last published.
    pub fn memory_room(&self) -> usize {
        self.facts.memory_room.load(Ordering::Acquire)
    }

    /// True when no event waits in memory for its acknowledgement, as last published.
    pub fn holds_nothing_in_memory(&self) -> bool {
        !self.facts.holds_memory.load(Ordering::Acquire)
    }

    /// Counts appended batches.
    pub fn activity(&self) -> u64 {
        self.facts.activity.load(Ordering::Acquire)
    }

    /// Signalled when events were appended.
    pub fn appended(&self) -> &Notify {
        &self.facts.appended
    }

    /// Signalled to every waiter once acknowledgements were applied (and the memory room
    /// they freed published).
    pub fn acked(&self) -> &Notify {
        &self.facts.acked
    }

    /// Test hook: holds the thread (as a slow disk would) until the returned sender is
    /// sent to (or every clone of it dropped). Returns once the thread is held.
    #[cfg(test)]
    pub(crate) async fn hold(&self) -> mpsc::Sender<()> {
        let (release, rx) = mpsc::channel();
        let (held, is_held) = oneshot::channel();
        let _ = self.requests.send(Request::Hold { held, release: rx });
        let _ = is_held.await;
        release
    }
}

/// The thread's loop: serves requests until every handle is gone.
fn serve(mut ob: Outbox, rx: &mpsc::Receiver<Request>, facts: &Facts) {
    let mut current = 0u64;
    while let Ok(req) = rx.recv() {
        match req {
            Request::Append { events, reply } => {
                let mut appended = false;
                let mut res = Ok(());
                for ev in events {
                    if let Err(e) = ob.append(ev) {
                        res = Err(e);
                        break;
                    }
                    appended = true;
                }
                facts.publish(&ob);
                if appended {
                    facts.activity.fetch_add(1, Ordering::AcqRel);
                    facts.appended.notify_one();
                }
                let _ = reply.send(res);
            }
            Request::Ack { acks } => {
                for a in acks {
                    if let Err(e) = ob.ack(&a.task_id, a.seq) {
                        tracing::warn!(task = %a.task_id, error = %e, "cannot record acknowledgement");
                    }
                }
                facts.publish(&ob);
                facts.acked.notify_waiters();
            }
            Request::NextBatch {
                session,
                max_bytes,
                reply,
            } => {
                let batch = if session == current {
                    ob.next_batch(max_bytes)
                } else {
                    Ok(Vec::new())
                };
                let _ = reply.send(batch);
            }
            Request::Tasks { reply } => {
                let _ = reply.send(ob.tasks());
            }
            Request::Rewind { reply } => {
                ob.rewind();
                current += 1;
                let _ = reply.send(Rewound {
                    session: current,
                    tasks: ob.tasks(),
                });
            }
            Request::Knows { task_id, reply } => {
                let _ = reply.send(ob.knows(&task_id));
            }
            Request::LastSeq { task_id, reply } => {
                let _ = reply.send(ob.last_seq(&task_id));
            }
            #[cfg(test)]
            Request::Hold { held, release } => {
                let _ = held.send(());
                let _ = release.recv();
            }
        }
    }
}

#[cfg(test)]
/// Test hook: releases a held spool thread if the test does not get there within a minute (the
/// runtime side blocked on the held thread), so the test fails instead of hanging.
pub(crate) struct Watchdog {
    done: mpsc::Sender<()>,
    fired: Arc<AtomicBool>,
}

#[cfg(test)]
impl Watchdog {
    pub(crate) fn new(release: mpsc::Sender<()>) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(std::time::Duration::from_secs(60))
            {
                f.store(true, Ordering::SeqCst);
                let _ = release.send(());
            }
        });
        Watchdog { done, fired }
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::v1::task_event;
    use std::time::Duration;

    fn output(task: &str, seq: u64, n: usize) -> TaskEvent {
        TaskEvent {
            task_id: task.into(),
            seq,
            kind: Some(task_event::Kind::Output(pb::Output {
                stream: pb::Stream::Stdout as i32,
                data: vec![seq as u8; n].into(),
            })),
        }
    }

    /// While the thread is held (a slow disk), a request that needs it waits, and the
    /// runtime side goes on: a heartbeat-like timer keeps firing, published facts are read
    /// and acks are handed over without waiting. Once released, the waiting request
    /// completes and the facts it changed are published.
    #[tokio::test(flavor = "current_thread")]
    async fn the_runtime_goes_on_while_the_spool_thread_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolThread::open(dir.path().to_path_buf()).await.unwrap();
        let room = spool.memory_room();
        assert!(room > 0);
        let release = spool.hold().await;
        let watchdog = Watchdog::new(release.clone());

        let s = spool.clone();
        let append = tokio::spawn(async move { s.append(vec![output("t", 1, 1000)]).await });
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for _ in 0..3 {
            tick.tick().await;
            assert!(
                !append.is_finished(),
                "the append waits for the held thread"
            );
            assert_eq!(spool.memory_room(), room);
            assert!(spool.holds_nothing_in_memory());
            assert_eq!(spool.activity(), 0);
        }
        spool.ack(vec![pb::Ack {
            task_id: "t".into(),
            seq: 0,
        }]);
        assert!(
            !watchdog.fired(),
            "the runtime side waited for the held thread"
        );

        release.send(()).unwrap();
        append.await.unwrap().unwrap();
        assert!(!watchdog.fired());
        assert!(spool.memory_room() < room);
        assert!(!spool.holds_nothing_in_memory());
        assert_eq!(spool.activity(), 1);
        assert_eq!(spool.last_seq("t").await.unwrap(), 1);
        assert!(spool.knows("t").await.unwrap());
        assert!(!spool.knows("u").await.unwrap());

        // Acks are applied in order and announced; memory is released.
        let acked = spool.acked().notified();
        tokio::pin!(acked);
        acked.as_mut().enable();
        spool.ack(vec![pb::Ack {
            task_id: "t".into(),
            seq: 1,
        }]);
        acked.await;
        assert_eq!(spool.memory_room(), room);
        assert!(spool.holds_nothing_in_memory());
    }

    /// Batches and rewinds go through the thread like the outbox itself: each event once per
    /// session, everything unacknowledged again after a rewind; a disk error reaches the
    /// caller.
    #[tokio::test(flavor = "current_thread")]
    async fn batches_rewinds_and_errors_reach_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolThread::open(dir.path().to_path_buf()).await.unwrap();
        spool
            .append((1..=3).map(|s| output("a", s, 100)).collect())
            .await
            .unwrap();
        let seqs = |b: Vec<TaskEvent>| b.iter().map(|e| e.seq).collect::<Vec<_>>();
        let first = spool.rewind().await.unwrap().session;
        assert_eq!(
            seqs(spool.next_batch(first, 1 << 20).await.unwrap()),
            [1, 2, 3]
        );
        assert!(spool.next_batch(first, 1 << 20).await.unwrap().is_empty());
        spool.ack(vec![pb::Ack {
            task_id: "a".into(),
            seq: 1,
        }]);
        let second = spool.rewind().await.unwrap();
        assert_eq!(second.tasks.len(), 1);
        let t = &second.tasks[0];
        assert_eq!((t.acked_seq, t.last_seq), (1, 3));
        // A request left over from the first session takes nothing from the second.
        assert!(spool.next_batch(first, 1 << 20).await.unwrap().is_empty());
        let batch = spool.next_batch(second.session, 1 << 20).await.unwrap();
        assert_eq!(seqs(batch), [2, 3]);

        // A gap in a task's seqs is refused by the spool, and the caller hears of it.
        let err = spool.append(vec![output("a", 9, 10)]).await.unwrap_err();
        assert!(
            matches!(err, OutboxError::Spool(SpoolError::SeqGap { .. })),
            "{err}"
        );
        // An invalid spool directory fails to open, with the spool's error.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = SpoolThread::open(file).await.err().unwrap();
        assert!(matches!(err, OutboxError::Spool(_)), "{err}");
    }
}
