//! The application, assembled in one place: the services the HTTP API, the watchers and the
//! agent hub call. Handlers see narrow services, never the parts behind them.

use std::sync::Arc;

use herd_core::TaskState;
use herd_outlog::OutputLog;
use herd_store::{AuditRow, Store};

use crate::error::Result;
use crate::events::Events;
use crate::fleet::FleetService;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::runs::RunService;

pub struct App {
    fleet: Arc<FleetService>,
    runs: Arc<RunService>,
    store: Arc<dyn Store>,
    live: Arc<Live>,
    events: Arc<Events>,
    outlog: Arc<OutputLog>,
    metrics: Arc<Metrics>,
}

impl App {
    pub fn new(
        fleet: Arc<FleetService>,
        runs: Arc<RunService>,
        store: Arc<dyn Store>,
        live: Arc<Live>,
        events: Arc<Events>,
        outlog: Arc<OutputLog>,
        metrics: Arc<Metrics>,
    ) -> App {
        App {
            fleet,
            runs,
            store,
            live,
            events,
            outlog,
            metrics,
        }
    }

    /// Machines and credentials.
    pub fn fleet(&self) -> &FleetService {
        &self.fleet
    }

    /// Runs and tasks.
    pub fn runs(&self) -> &RunService {
        &self.runs
    }

    /// Live output taps.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// What happens to runs.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Stored output.
    pub fn outlog(&self) -> &Arc<OutputLog> {
        &self.outlog
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        Ok(self.store.audit_log(limit).await?)
    }

    /// Tasks by state, for the metrics.
    pub async fn task_counts(&self) -> Result<Vec<(TaskState, i64)>> {
        Ok(self.store.task_counts().await?)
    }
}
