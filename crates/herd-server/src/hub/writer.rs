//! Group commit of task progress: every agent session hands its batch's progress to one
//! writer, which commits whatever has gathered meanwhile in a single transaction and then
//! answers each caller. A thousand agents finishing at once cost a few transactions, not a
//! thousand, and each caller still acknowledges only after its own rows are committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_core::TaskState;
use herd_store::{Store, StoreError, TaskProgress};

use tokio::sync::{mpsc, oneshot};

/// Progress records committed together at most (bounds one transaction's length).
const MAX_GROUP: usize = 4096;
/// Callers waiting for the writer; beyond this, sessions wait to hand over (backpressure).
const QUEUE: usize = 1024;
/// How long results gather while they stream in.
const LINGER: Duration = Duration::from_millis(2);

/// The tasks of a group whose exit took effect, with the state each has now.
pub type Ended = Arc<HashMap<String, TaskState>>;

type Job = (Vec<TaskProgress>, oneshot::Sender<Result<Ended, String>>);

pub struct ProgressWriter {
    tx: mpsc::Sender<Job>,
}

impl ProgressWriter {
    /// Starts the writer on `tracker`. At `shutdown` it commits what was handed over and
    /// stops; later callers get [`StoreError::Closed`].
    pub fn start(
        store: Arc<dyn Store>,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> ProgressWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(store, rx, shutdown));
        ProgressWriter { tx }
    }

    /// Commits `batch` (with whatever else is waiting) and returns once it is durable, with
    /// the ends that took effect in the group (the caller looks up its own tasks).
    pub async fn apply(&self, batch: Vec<TaskProgress>) -> Result<Ended, StoreError> {
        let (done_tx, done_rx) = oneshot::channel();
        let gone = || StoreError::Closed("the progress writer stopped".into());
        self.tx.send((batch, done_tx)).await.map_err(|_| gone())?;
        done_rx
            .await
            .map_err(|_| gone())?
            .map_err(StoreError::Closed)
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last_callers = 0;
    let mut last_end = Instant::now();
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(j) => j,
                None => return,
            },
            _ = shutdown.cancelled() => {
                // What was handed over is committed; nothing more is taken.
                rx.close();
                match rx.try_recv() {
                    Ok(j) => j,
                    Err(_) => return,
                }
            }
        };
        // While results stream in from many sessions (the last group had several callers
        // and this one came right after it), more gather for a moment: a few larger
        // transactions instead of many small ones. A lone result is committed at once.
        if last_callers > 1 && last_end.elapsed() < LINGER && rx.len() < MAX_GROUP / 16 {
            tokio::time::sleep(LINGER).await;
        }
        let mut rows = first.0;
        let mut waiters = vec![first.1];
        while rows.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok((more, done)) => {
                    rows.extend(more);
                    waiters.push(done);
                }
                Err(_) => break,
            }
        }
        last_callers = waiters.len();
        let res = store
            .apply_progress(&rows)
            .await
            .map(|ended| Arc::new(ended.into_iter().collect::<HashMap<_, _>>()))
            .map_err(|e| e.to_string());
        for w in waiters {
            let _ = w.send(res.clone());
        }
        last_end = Instant::now();
    }
}
