//! The application, assembled in one place: the services the HTTP API, the watchers and the
//! agent hub call. Handlers see narrow services, never the parts behind them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_outlog::OutputLog;
use herd_store::{AuditRow, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::active::ActiveTasks;
use crate::blobs::Blobs;
use crate::error::{Result, ServerError};
use crate::events::Events;
use crate::fetched::Fetched;
use crate::fleet::{AgentIndex, FleetService};
use crate::hub::{self, Hub, Ingest, ProgressWriter};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::retention::{Retention, RetentionPolicy};
use crate::runs::{DriverCtx, Drivers, RunService, Waiters};

/// What the application is made from.
pub struct Settings {
    pub store: Arc<dyn Store>,
    pub output_dir: PathBuf,
    pub output_cap: u64,
    /// Where the blobs of copy runs are kept.
    pub blob_dir: PathBuf,
    /// Where the files of fetch runs are kept.
    pub fetched_dir: PathBuf,
    /// The key secrets are sealed with (made at first start).
    pub secrets_key: PathBuf,
    pub lost_after: Duration,
    /// The longest life a join token may be given.
    pub max_token_ttl: Duration,
    /// What retention keeps.
    pub retention: RetentionPolicy,
    /// The server's URL and CA pin, for the join commands it prints.
    pub url: String,
    pub ca_fingerprint: Option<String>,
    /// Whether `/metrics` needs an API key.
    pub metrics_auth: bool,
    /// The name of the agent that runs in the server's own process (`herd up`), where steps
    /// without targets run.
    pub local_agent: Option<String>,
    /// How herd calls other systems (breakers, extra CA certificates).
    pub actions: herd_actions::ActionsConfig,
    /// The model of `herd ask`, or why there is none.
    pub llm: std::result::Result<Arc<herd_ai::Llm>, String>,
    /// The limits of each command class, sent with every StartTask.
    pub supervise: herd_core::supervise::Limits,
    /// Where the dashboard's assets are read from (`--web-dir`); None: the built-in copy.
    pub web_dir: Option<PathBuf>,
}

/// The assembled application: what the HTTP API uses, what agents' sessions use, the admin
/// key of a first start, and the background work with its shutdown signal.
pub struct Parts {
    pub app: Arc<App>,
    pub hub: Arc<Hub>,
    pub admin_key: Option<String>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Builds every part once, in dependency order, rebuilds the drivers of unfinished runs,
/// and starts the background work (lost-task sweep, agent state flush, progress writer,
/// retention).
pub async fn assemble(s: Settings) -> Result<Parts> {
    let Settings {
        store,
        output_dir,
        output_cap,
        blob_dir,
        fetched_dir,
        secrets_key,
        lost_after,
        max_token_ttl,
        retention,
        url,
        ca_fingerprint,
        metrics_auth,
        local_agent,
        actions,
        llm,
        supervise,
        web_dir,
    } = s;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    // herd's calls to other systems (workflow `http` and `notify` steps): one per server,
    // its breakers and rate buckets in memory.
    let actions = herd_actions::Actions::new(actions);
    let agents = store.agents(false).await?;
    let registry = Arc::new(Registry::new(agents.iter().map(|a| a.id.clone())));
    let index = Arc::new(AgentIndex::load(agents));
    let events = Arc::new(Events::default());
    let live = Arc::new(Live::default());
    let metrics = Arc::new(Metrics::default());
    metrics.watch_actions(actions.clone());
    let outlog = Arc::new(OutputLog::new(output_dir, output_cap));
    let active = Arc::new(ActiveTasks::default());
    let blobs = Arc::new(Blobs::new(blob_dir));
    let fetched = Arc::new(Fetched::new(fetched_dir));
    let key_path = secrets_key.clone();
    let sealer = tokio::task::spawn_blocking(move || crate::vars::Sealer::load_or_create(&key_path))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(|e| {
            ServerError::Internal(format!(
                "cannot read or make the secrets key {}: {e} — check the data dir's permissions and free space",
                secrets_key.display()
            ))
        })?;
    let vars = Arc::new(crate::vars::VarService::new(store.clone(), sealer));
    let fleet = Arc::new(FleetService::new(
        store.clone(),
        index.clone(),
        registry.clone(),
        url,
        ca_fingerprint,
        max_token_ttl,
    ));
    let admin_key = fleet.ensure_admin_key().await?;
    let driver_ctx = Arc::new(DriverCtx {
        store: store.clone(),
        registry: registry.clone(),
        active: active.clone(),
        outlog: outlog.clone(),
        events: events.clone(),
        index: index.clone(),
        waiters: Waiters::default(),
        metrics: metrics.clone(),
        supervise,
    });
    let drivers = Arc::new(Drivers::new(
        driver_ctx.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    let policy = Arc::new(crate::policy::PolicyGate::new(store.clone(), index.clone()));
    let runs = Arc::new(RunService::new(
        store.clone(),
        index.clone(),
        registry.clone(),
        drivers.clone(),
        events.clone(),
        metrics.clone(),
        policy.clone(),
    ));
    let ingest = Arc::new(Ingest::new(
        store.clone(),
        ProgressWriter::start(store.clone(), &tracker, shutdown.clone()),
        outlog.clone(),
        active,
        live.clone(),
        events.clone(),
        drivers.clone(),
        metrics.clone(),
    ));
    let retention = Arc::new(Retention::new(
        store.clone(),
        outlog.clone(),
        fetched.clone(),
        blobs.clone(),
        retention,
    ));
    let langflow = Arc::new(crate::langflow::LangflowService::new(
        store.clone(),
        vars.clone(),
        actions.clone(),
        runs.clone(),
        events.clone(),
        local_agent.clone(),
    ));
    let engine = Arc::new(crate::flows::Engine::new(
        store.clone(),
        runs.clone(),
        vars.clone(),
        events.clone(),
        Some(Arc::new(crate::flows::Calls(actions.clone())) as Arc<dyn crate::flows::ServerActions>),
        local_agent,
        langflow.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    let flows = Arc::new(crate::flows::FlowService::new(engine.clone()));
    let recovery = Arc::new(crate::ask::recover::Recovery::new(
        llm.clone(),
        store.clone(),
        outlog.clone(),
        shutdown.clone(),
        policy.clone(),
    ));
    engine.set_recovery(recovery.clone());
    let alerts = crate::alerts::AlertService::start(
        store.clone(),
        index.clone(),
        registry.clone(),
        engine.clone(),
        actions.clone(),
        &tracker,
        shutdown.clone(),
    )
    .await?;
    let hub = Arc::new(hub::Hub {
        fleet: fleet.clone(),
        alerts: alerts.clone(),
        registry: registry.clone(),
        ingest,
        store: store.clone(),
        drivers: drivers.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        blobs: blobs.clone(),
        fetched: fetched.clone(),
        join_limit: Default::default(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    });
    let ask = Arc::new(crate::ask::AskService::new(
        llm,
        store.clone(),
        index.clone(),
        engine.clone(),
        recovery,
    ));
    let schedule_changed = Arc::new(tokio::sync::Notify::new());
    let schedules = Arc::new(crate::schedules::ScheduleService::new(
        store.clone(),
        schedule_changed.clone(),
        engine.clone(),
    ));
    let firer = Arc::new(crate::schedules::Firer::new(
        store.clone(),
        engine,
        langflow.clone(),
        schedule_changed,
    ));
    let app = Arc::new(App {
        fleet: fleet.clone(),
        runs: runs.clone(),
        flows: flows.clone(),
        alerts,
        schedules,
        langflow,
        ask,
        retention: retention.clone(),
        store: store.clone(),
        live,
        events,
        outlog,
        metrics: metrics.clone(),
        blobs,
        fetched,
        vars,
        actions,
        metrics_auth,
        web: crate::web::Web::new(web_dir),
    });
    runs.recover().await?;
    flows.recover().await?;
    // The count of tasks by state that scrapes serve until one asks for a newer one.
    metrics.count_tasks(store.as_ref()).await;
    tracker.spawn(crate::runs::sweep_lost(
        driver_ctx,
        drivers,
        lost_after,
        shutdown.clone(),
    ));
    tracker.spawn(fleet.flush_loop(shutdown.clone()));
    // After recovery: a fire's run must find the drivers of the runs before it.
    tracker.spawn(firer.run(shutdown.clone()));
    tracker.spawn(retention.run(shutdown.clone()));
    tracker.spawn(metrics.keep_counting(store, shutdown.clone()));
    Ok(Parts {
        app,
        hub,
        admin_key,
        tracker,
        shutdown,
    })
}

pub struct App {
    fleet: Arc<FleetService>,
    runs: Arc<RunService>,
    flows: Arc<crate::flows::FlowService>,
    alerts: Arc<crate::alerts::AlertService>,
    schedules: Arc<crate::schedules::ScheduleService>,
    langflow: Arc<crate::langflow::LangflowService>,
    ask: Arc<crate::ask::AskService>,
    retention: Arc<Retention>,
    store: Arc<dyn Store>,
    live: Arc<Live>,
    events: Arc<Events>,
    outlog: Arc<OutputLog>,
    metrics: Arc<Metrics>,
    blobs: Arc<Blobs>,
    fetched: Arc<Fetched>,
    vars: Arc<crate::vars::VarService>,
    actions: herd_actions::Actions,
    metrics_auth: bool,
    web: crate::web::Web,
}

impl App {
    /// Machines and credentials.
    pub fn fleet(&self) -> &FleetService {
        &self.fleet
    }

    /// The dashboard's assets.
    pub fn web(&self) -> &crate::web::Web {
        &self.web
    }

    /// Runs and tasks.
    pub fn runs(&self) -> &RunService {
        &self.runs
    }

    /// The command policy and key scopes.
    pub fn policy(&self) -> &crate::policy::PolicyGate {
        self.runs.policy()
    }

    /// Jobs, workflows and their runs.
    pub fn flows(&self) -> &crate::flows::FlowService {
        &self.flows
    }

    /// Fleet health alert rules and their alerts.
    pub fn alerts(&self) -> &crate::alerts::AlertService {
        &self.alerts
    }

    /// Schedules and their fires.
    pub fn schedules(&self) -> &crate::schedules::ScheduleService {
        &self.schedules
    }

    /// LangFlow sources, their flows and flow runs.
    pub fn langflow(&self) -> &crate::langflow::LangflowService {
        &self.langflow
    }

    /// The AI operator.
    pub fn ask(&self) -> &crate::ask::AskService {
        &self.ask
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The files of fetch runs.
    /// Variables and secrets.
    pub fn vars(&self) -> &crate::vars::VarService {
        &self.vars
    }

    pub fn fetched(&self) -> &Fetched {
        &self.fetched
    }

    /// herd's calls to other systems (HTTP requests, notifications) and their breakers.
    pub fn actions(&self) -> &herd_actions::Actions {
        &self.actions
    }

    /// Pruning of old runs.
    pub fn retention(&self) -> &Retention {
        &self.retention
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

    /// Whether a scrape of `/metrics` needs an API key (`--metrics-auth`).
    pub fn metrics_auth(&self) -> bool {
        self.metrics_auth
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, filter: &herd_store::ListFilter) -> Result<Vec<AuditRow>> {
        Ok(self.store.audit_filtered(filter).await?)
    }
}
