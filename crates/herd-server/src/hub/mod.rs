//! The agent hub: the gRPC service agents dial (`service.rs`: join, then one session stream
//! each), a session's life (`session.rs`: hello, reconciliation after a reconnect,
//! heartbeats, event batches), and the persist path (`ingest.rs`, with the group-commit
//! `writer.rs`).

mod convert;
mod ingest;
mod join_limit;
mod service;
mod session;
mod writer;

use std::sync::Arc;

use herd_store::Store;

pub use ingest::Ingest;
#[cfg(test)]
pub(crate) use service::HubService;
pub use service::mount;
pub use writer::ProgressWriter;

use crate::events::Events;
use crate::fleet::FleetService;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runs::Drivers;

/// What sessions need.
pub struct Hub {
    pub(crate) fleet: Arc<FleetService>,
    /// Heartbeats' metrics are evaluated against the alert rules.
    pub(crate) alerts: Arc<crate::alerts::AlertService>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) drivers: Arc<Drivers>,
    pub(crate) events: Arc<Events>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) blobs: Arc<crate::blobs::Blobs>,
    pub(crate) fetched: Arc<crate::fetched::Fetched>,
    /// Failed joins per source address.
    pub(crate) join_limit: join_limit::JoinLimit,
    /// Sessions are tracked and end at shutdown.
    pub(crate) tracker: tokio_util::task::TaskTracker,
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
}
