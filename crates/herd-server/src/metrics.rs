//! Prometheus metrics: agents connected, tasks by state, dispatch latency, output bytes.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub struct Metrics {
    pub agents_connected: Gauge,
    /// Seconds from sending StartTask to receiving the task's Started event.
    pub dispatch_latency: Histogram,
    pub output_bytes: Counter,
    pub events: Counter,
    pub runs_created: Counter,
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
        }
    }
}

impl Metrics {
    /// Renders every metric; `tasks` are (state, count) pairs read from the store at scrape.
    pub fn render(&self, tasks: &[(herd_core::TaskState, i64)]) -> String {
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
        let family =
            prometheus_client::metrics::family::Family::<Vec<(String, String)>, Gauge>::default();
        for state in herd_core::TaskState::ALL {
            let n = tasks
                .iter()
                .find(|(s, _)| *s == state)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            family
                .get_or_create(&vec![("state".to_string(), state.as_str().to_string())])
                .set(n);
        }
        reg.register("tasks", "Tasks by state", family);
        let mut out = String::new();
        if encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}
