//! Prometheus metrics: agents connected, tasks by state, tasks ended, dispatch latency, output
//! bytes. A scrape is answered from memory and never waits on the store: counters are kept
//! where things happen, and the count of tasks by state (a whole-database figure, the same on
//! every server of a database) is taken at start and then again in the background when a
//! scrape finds it older than [`COUNT_EVERY`], so any number of scrapers cost the store at most
//! one count per interval, and an unscraped server none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_core::TaskState;
use herd_store::Store;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The count of tasks by state is at most this old when a scrape asks for a new one.
pub const COUNT_EVERY: Duration = Duration::from_secs(10);

const STATES: usize = TaskState::ALL.len();

pub struct Metrics {
    pub agents_connected: Gauge,
    /// Seconds from sending StartTask to receiving the task's Started event.
    pub dispatch_latency: Histogram,
    pub output_bytes: Counter,
    pub events: Counter,
    pub runs_created: Counter,
    /// Tasks this server ended, by the state they ended in (index as `TaskState::ALL`).
    ended: [AtomicU64; STATES],
    counts: Mutex<TaskCounts>,
    /// Set by the scrape that asks for a count, cleared once the count is done (so scrapes
    /// meanwhile ask for no other).
    count_wanted: AtomicBool,
    count_now: Notify,
    /// The server's calls to other systems, once assembled.
    actions: std::sync::OnceLock<herd_actions::Actions>,
}

/// The last count of tasks by state.
#[derive(Default)]
struct TaskCounts {
    by_state: [i64; STATES],
    /// When the count was taken (unix ms); none before the first.
    at_ms: Option<i64>,
    /// When a count was last tried (also one that failed).
    tried: Option<Instant>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            agents_connected: Gauge::default(),
            dispatch_latency: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            output_bytes: Counter::default(),
            events: Counter::default(),
            runs_created: Counter::default(),
            ended: Default::default(),
            counts: Mutex::default(),
            count_wanted: AtomicBool::new(false),
            count_now: Notify::new(),
            actions: std::sync::OnceLock::new(),
        }
    }
}

fn index(state: TaskState) -> usize {
    TaskState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or_default()
}

fn labels(state: TaskState) -> Vec<(String, String)> {
    vec![("state".to_string(), state.as_str().to_string())]
}

impl Metrics {
    /// Reports the calls of `actions` (and its breakers) too.
    pub fn watch_actions(&self, actions: herd_actions::Actions) {
        let _ = self.actions.set(actions);
    }

    /// A task ended here (its final state is stored).
    pub fn task_ended(&self, state: TaskState) {
        self.ended[index(state)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts tasks by state in the store now; a failure keeps the last count (and logs).
    pub async fn count_tasks(&self, store: &dyn Store) {
        let result = store.task_counts().await;
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.tried = Some(Instant::now());
        match result {
            Ok(rows) => {
                c.by_state = [0; STATES];
                for (state, n) in rows {
                    c.by_state[index(state)] = n;
                }
                c.at_ms = Some(herd_store::now_ms());
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count tasks"),
        }
    }

    /// Counts tasks whenever a scrape asks for it, until shutdown.
    pub async fn keep_counting(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = self.count_now.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = self.count_tasks(store.as_ref()) => {}
                _ = shutdown.cancelled() => return,
            }
            self.count_wanted.store(false, Ordering::Release);
        }
    }

    /// Renders every metric from memory; asks for a new count of tasks when the last one is
    /// older than [`COUNT_EVERY`] (this scrape gets the last one).
    pub fn scrape(&self) -> String {
        let (by_state, at_ms, stale) = {
            let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let stale = c.tried.is_none_or(|t| t.elapsed() >= COUNT_EVERY);
            (c.by_state, c.at_ms, stale)
        };
        if stale
            && self
                .count_wanted
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.count_now.notify_one();
        }
        self.render(&by_state, at_ms)
    }

    fn render(&self, by_state: &[i64; STATES], at_ms: Option<i64>) -> String {
        let mut reg = Registry::with_prefix("herd");
        reg.register(
            "agents_connected",
            "Agents with an open control stream",
            self.agents_connected.clone(),
        );
        reg.register(
            "dispatch_latency_seconds",
            "Time from sending a task to its agent until the agent reports it started",
            self.dispatch_latency.clone(),
        );
        reg.register(
            "output_bytes",
            "Task output bytes received from agents",
            self.output_bytes.clone(),
        );
        reg.register(
            "task_events",
            "Task events persisted (duplicates excluded)",
            self.events.clone(),
        );
        reg.register("runs_created", "Runs created", self.runs_created.clone());
        let ended = Family::<Vec<(String, String)>, Counter>::default();
        for (i, state) in TaskState::ALL.into_iter().enumerate() {
            let n = self.ended[i].load(Ordering::Relaxed);
            if state.is_terminal() {
                ended.get_or_create(&labels(state)).inc_by(n);
            }
        }
        reg.register(
            "tasks_ended",
            "Tasks this server ended, by final state (a lost task that reports its exit later counts again)",
            ended,
        );
        if let Some(at_ms) = at_ms {
            let tasks = Family::<Vec<(String, String)>, Gauge>::default();
            for (i, state) in TaskState::ALL.into_iter().enumerate() {
                tasks.get_or_create(&labels(state)).set(by_state[i]);
            }
            reg.register(
                "tasks",
                "Tasks by state in the database, as of herd_tasks_counted_timestamp_seconds",
                tasks,
            );
            let at = Gauge::<f64, AtomicU64>::default();
            at.set(at_ms as f64 / 1000.0);
            reg.register(
                "tasks_counted_timestamp_seconds",
                "When herd_tasks was counted (unix time)",
                at,
            );
        }
        if let Some(actions) = self.actions.get() {
            register_actions(&mut reg, actions);
        }
        let mut out = String::new();
        if encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

/// Calls to other systems (workflow `http` and `notify` steps) and the breakers of their hosts.
fn register_actions(reg: &mut Registry, actions: &herd_actions::Actions) {
    let stats = actions.stats();
    let calls = Family::<Vec<(String, String)>, Counter>::default();
    for (result, n) in [("succeeded", stats.succeeded), ("failed", stats.failed)] {
        calls
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc_by(n);
    }
    reg.register(
        "calls",
        "HTTP calls and notifications this server made, by result",
        calls,
    );
    let attempts = Counter::<u64>::default();
    attempts.inc_by(stats.attempts);
    reg.register(
        "call_attempts",
        "Attempts of those calls that reached the network (retries included)",
        attempts,
    );
    let refused = Counter::<u64>::default();
    refused.inc_by(stats.refused);
    reg.register(
        "calls_refused",
        "Attempts refused without touching the network because their host's circuit breaker was open",
        refused,
    );
    let breakers = Family::<Vec<(String, String)>, Gauge>::default();
    let all = actions.breakers();
    for phase in [
        herd_actions::BreakerPhase::Closed,
        herd_actions::BreakerPhase::Open,
        herd_actions::BreakerPhase::HalfOpen,
    ] {
        let n = all.iter().filter(|b| b.phase == phase).count();
        breakers
            .get_or_create(&vec![("state".to_string(), phase.as_str().to_string())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register(
        "breakers",
        "Hosts called by this server, by the state of their circuit breaker",
        breakers,
    );
}
