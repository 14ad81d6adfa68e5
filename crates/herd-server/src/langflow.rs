//! LangFlow (`/api/v1/langflow`, `herd flows`): sources (a LangFlow server's URL and API key,
//! checked when added, the key sealed like a secret variable under `langflow:NAME`), syncs
//! (its flows listed over LangFlow's REST API; a flow gone upstream is marked removed), and
//! flow runs. A flow run is an ordinary run of `herd helper langflow` on a machine (the one
//! `targets` picks, else the server's own agent): the call, its request and its answer are
//! that task's output, its state, duration and cancel are the task's, and its answer text and
//! chosen fields are the task's outputs (so a workflow step reads them). The API key goes to
//! the task as a secret environment variable (masked in whatever it prints). The server's
//! breaker of the source's host admits each run and learns how it went (exit 75: LangFlow
//! failed — unreachable, timeout, 5xx).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herd_actions::Actions;
use herd_actions::langflow::{self as lf, FlowSummary};
use herd_api::{FlowComponent, FlowParam, LangFlow, NewSource, RunFlow, Source, SyncReport};
use herd_core::{RunSpec, RunState};
use herd_store::{AuditEntry, LangflowRow, RunRow, SourceRow, Store, now_ms};
use serde_json::{Value, json};

use crate::error::{Result, ServerError};
use crate::events::Events;
use crate::runs::{NewRunRequest, RunService};
use crate::vars::VarService;

/// How long checking a source may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long listing a source's flows may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// A flow run's budget unless it says otherwise.
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

pub struct LangflowService {
    store: Arc<dyn Store>,
    vars: Arc<VarService>,
    actions: Actions,
    runs: Arc<RunService>,
    events: Arc<Events>,
    local_agent: Option<String>,
}

fn scope(source: &str) -> String {
    format!("langflow:{source}")
}

impl LangflowService {
    pub fn new(
        store: Arc<dyn Store>,
        vars: Arc<VarService>,
        actions: Actions,
        runs: Arc<RunService>,
        events: Arc<Events>,
        local_agent: Option<String>,
    ) -> LangflowService {
        LangflowService {
            store,
            vars,
            actions,
            runs,
            events,
            local_agent,
        }
    }

    /// Adds a source once its URL and key work (a wrong one is refused naming the source),
    /// then lists its flows.
    pub async fn add_source(&self, actor: &str, req: NewSource) -> Result<Source> {
        if !herd_workflow::valid_name(&req.name) {
            return Err(ServerError::BadRequest(format!(
                "{:?} is not a source name — use letters, digits, `_`, `.` and `-` (at most 128, starting with a letter or digit)",
                req.name
            )));
        }
        let url = req.url.trim().trim_end_matches('/').to_string();
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(ServerError::BadRequest(format!(
                    "source {}: {:?} is not an http(s) URL — give LangFlow's address, e.g. http://host:7860",
                    req.name, req.url
                )));
            }
        }
        if self.store.source(&req.name).await?.is_some() {
            return Err(exists(&req.name));
        }
        let src = lf::Source {
            url: url.clone(),
            api_key: req.api_key.clone(),
        };
        lf::check(&self.actions, &src, CHECK_TIMEOUT)
            .await
            .map_err(|e| ServerError::BadRequest(format!("source {}: {e}", req.name)))?;
        let row = SourceRow {
            name: req.name.clone(),
            url: url.clone(),
            key_sealed: self
                .vars
                .seal_value(&scope(&req.name), "api_key", &req.api_key)?,
            created_by: actor.to_string(),
            created_at: now_ms(),
            synced_at: None,
        };
        let audit = AuditEntry::new(
            actor,
            "langflow.source.add",
            format!("langflow:{}", req.name),
            json!({"url": url}),
        );
        self.store
            .create_source(&row, &audit)
            .await
            .map_err(|e| match e {
                herd_store::StoreError::Conflict(_) => exists(&req.name),
                e => e.into(),
            })?;
        let report = self.sync_source(actor, &row).await;
        if let Some(e) = report.error {
            tracing::warn!(source = %req.name, "the first sync of the source failed: {e}");
        }
        self.source(&req.name).await
    }

    pub async fn sources(&self) -> Result<Vec<Source>> {
        let flows = self.store.langflows(None).await?;
        let mut count: BTreeMap<&str, u64> = BTreeMap::new();
        for f in flows.iter().filter(|f| f.removed_at.is_none()) {
            *count.entry(f.source.as_str()).or_default() += 1;
        }
        Ok(self
            .store
            .sources()
            .await?
            .into_iter()
            .map(|s| Source {
                flows: count.get(s.name.as_str()).copied().unwrap_or(0),
                name: s.name,
                url: s.url,
                created_by: s.created_by,
                created_at: s.created_at,
                synced_at: s.synced_at,
            })
            .collect())
    }

    async fn source(&self, name: &str) -> Result<Source> {
        self.sources()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| no_source(name))
    }

    pub async fn remove_source(&self, actor: &str, name: &str) -> Result<Source> {
        let s = self.source(name).await?;
        let audit = AuditEntry::new(
            actor,
            "langflow.source.rm",
            format!("langflow:{name}"),
            json!({}),
        );
        if !self.store.delete_source(name, &audit).await? {
            return Err(no_source(name));
        }
        Ok(s)
    }

    /// Lists the flows of one source (or of every source) and records what changed.
    pub async fn sync(&self, actor: &str, source: Option<&str>) -> Result<Vec<SyncReport>> {
        let sources = match source {
            Some(name) => vec![
                self.store
                    .source(name)
                    .await?
                    .ok_or_else(|| no_source(name))?,
            ],
            None => self.store.sources().await?,
        };
        let mut out = Vec::with_capacity(sources.len());
        for s in &sources {
            out.push(self.sync_source(actor, s).await);
        }
        Ok(out)
    }

    async fn sync_source(&self, actor: &str, s: &SourceRow) -> SyncReport {
        let mut report = SyncReport {
            source: s.name.clone(),
            added: 0,
            updated: 0,
            removed: 0,
            unchanged: 0,
            error: None,
        };
        let listed = async {
            let src = self.open(s)?;
            let flows = lf::list_flows(&self.actions, &src, LIST_TIMEOUT)
                .await
                .map_err(|e| ServerError::Conflict(format!("source {}: {e}", s.name)))?;
            let at = now_ms();
            let rows: Vec<LangflowRow> = flows
                .into_iter()
                .map(|f| LangflowRow {
                    source: s.name.clone(),
                    id: f.id,
                    name: f.name,
                    description: f.description,
                    endpoint_name: f.endpoint_name,
                    updated_at: f.updated_at,
                    summary: serde_json::to_string(&f.summary).unwrap_or_else(|_| "{}".into()),
                    removed_at: None,
                    synced_at: at,
                })
                .collect();
            let audit = AuditEntry::new(
                actor,
                "langflow.sync",
                format!("langflow:{}", s.name),
                json!({"flows": rows.len()}),
            );
            Ok::<_, ServerError>(self.store.sync_flows(&s.name, &rows, at, &audit).await?)
        };
        match listed.await {
            Ok(c) => {
                report.added = c.added;
                report.updated = c.updated;
                report.removed = c.removed;
                report.unchanged = c.unchanged;
            }
            Err(e) => report.error = Some(e.to_string()),
        }
        report
    }

    fn open(&self, s: &SourceRow) -> Result<lf::Source> {
        Ok(lf::Source {
            url: s.url.clone(),
            api_key: self
                .vars
                .open_value(&scope(&s.name), "api_key", &s.key_sealed)?,
        })
    }

    pub async fn flows(&self, source: Option<&str>) -> Result<Vec<LangFlow>> {
        if let Some(s) = source
            && self.store.source(s).await?.is_none()
        {
            return Err(no_source(s));
        }
        self.store
            .langflows(source)
            .await?
            .into_iter()
            .map(|f| answer(f, false))
            .collect()
    }

    /// The flow `name` (its name, id or endpoint name) names, on `source` or on the only
    /// source that has one.
    async fn find(&self, name: &str, source: Option<&str>) -> Result<LangflowRow> {
        let all = self.store.langflows(source).await?;
        let found: Vec<LangflowRow> = all
            .iter()
            .filter(|f| f.id == name || f.endpoint_name.as_deref() == Some(name))
            .cloned()
            .collect();
        let found = if found.is_empty() {
            all.iter()
                .filter(|f| f.name == name)
                .cloned()
                .collect::<Vec<_>>()
        } else {
            found
        };
        // A flow found upstream before one that was removed.
        let live: Vec<&LangflowRow> = found.iter().filter(|f| f.removed_at.is_none()).collect();
        match (live.as_slice(), found.as_slice()) {
            ([one], _) => Ok((*one).clone()),
            ([], [one, ..]) => Ok(one.clone()),
            ([], []) => Err(ServerError::NotFound(match source {
                Some(s) => format!(
                    "no flow {name:?} on source {s} — `herd flows sync {s}` lists its flows again"
                ),
                None => {
                    format!("no flow {name:?} — `herd flows sync` lists the sources' flows again")
                }
            })),
            (many, _) => {
                let mut sources: Vec<&str> = many.iter().map(|f| f.source.as_str()).collect();
                sources.dedup();
                Err(ServerError::BadRequest(match sources.as_slice() {
                    [one] => format!(
                        "{} flows of source {one} are named {name:?} — give the one you mean by its id ({})",
                        many.len(),
                        many.iter()
                            .map(|f| f.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    several => format!(
                        "flow {name:?} is on several sources ({}) — give --source",
                        several.join(", ")
                    ),
                }))
            }
        }
    }

    pub async fn flow(&self, name: &str, source: Option<&str>) -> Result<LangFlow> {
        answer(self.find(name, source).await?, true)
    }

    /// Starts a flow run (see the module's doc); with `fire`, a schedule's fire recorded with
    /// it (`None`: recorded already, nothing started).
    pub(crate) async fn start(
        &self,
        actor: &str,
        name: &str,
        req: RunFlow,
        fire: Option<&crate::schedules::Firing>,
        gate: Option<crate::policy::Gate>,
    ) -> Result<Option<RunRow>> {
        let tweaks = req
            .tweaks
            .iter()
            .map(|t| lf::parse_tweak(t))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|e| ServerError::BadRequest(format!("flow {name}: {e}")))?;
        let call = FlowCall {
            name: name.to_string(),
            source: req.source,
            input: req.input,
            tweaks,
            session: req.session,
            targets: req.targets,
            timeout: req.timeout,
            fields: BTreeMap::new(),
        };
        let (mut run, reservation) = self.prepare(&call).await?;
        // The call runs herd's own command: only the caller's scope applies.
        run.gate = gate.map(|g| crate::policy::Gate {
            commands: false,
            ..g
        });
        let id = herd_core::new_id();
        run.id = Some(id.clone());
        let created = self.runs.create_fired(actor, run, false, fire).await?;
        if created.is_some() {
            // The breaker learns how the call went when the run ends.
            let (store, events) = (self.store.clone(), self.events.clone());
            tokio::spawn(async move {
                let mut wait = events.wait_finish(&id);
                let done =
                    matches!(store.run(&id).await, Ok(Some(r)) if r.state != RunState::Running);
                if !done {
                    wait.finished().await;
                }
                drop(wait);
                report(&*store, &id, reservation).await;
            });
        }
        Ok(created)
    }

    /// The run a flow call makes (its id not set), and the source breaker's admission of it
    /// (to be told how it went, [`report`]).
    pub(crate) async fn prepare(
        &self,
        call: &FlowCall,
    ) -> Result<(NewRunRequest, herd_actions::Reservation)> {
        let flow = self.find(&call.name, call.source.as_deref()).await?;
        if let Some(at) = flow.removed_at {
            return Err(ServerError::Conflict(format!(
                "flow {} was removed from source {} (found missing by the sync at {}) — restore it in LangFlow and `herd flows sync {}`",
                flow.name,
                flow.source,
                time_text(at),
                flow.source
            )));
        }
        let source = self
            .store
            .source(&flow.source)
            .await?
            .ok_or_else(|| no_source(&flow.source))?;
        let summary: FlowSummary = serde_json::from_str(&flow.summary).unwrap_or_default();
        let tweaks = lf::resolve_tweaks(&summary, &call.tweaks)
            .map_err(|e| ServerError::BadRequest(format!("flow {}: {e}", flow.name)))?;
        let timeout = match &call.timeout {
            None => DEFAULT_RUN_TIMEOUT,
            Some(t) => herd_core::parse_duration(t).map_err(|e| {
                ServerError::BadRequest(format!("timeout {t:?}: {e} — e.g. 30s or 5m"))
            })?,
        };
        let targets = if !call.targets.is_empty() {
            call.targets.clone()
        } else {
            match &self.local_agent {
                Some(a) => vec![a.clone()],
                None => {
                    return Err(ServerError::BadRequest(
                        "a flow is called from a machine: give -t SELECTOR (this server has no local agent)".into(),
                    ));
                }
            }
        };
        let key = self.open(&source)?;
        let reservation = self
            .actions
            .reserve(&source.url)
            .map_err(|line| ServerError::Conflict(format!("source {}: {line}", source.name)))?;
        let input = json!({
            "langflow": {
                "source": source.name,
                "url": source.url,
                "flow": flow.id,
                "name": flow.name,
                "input": call.input,
                "tweaks": tweaks,
                "session": call.session,
                "timeout_ms": timeout.as_millis() as u64,
                "fields": call.fields,
            }
        });
        let run = NewRunRequest {
            id: None,
            command: format!("herd helper langflow  # {}/{}", source.name, flow.name),
            targets,
            all: false,
            start_on_attach: false,
            secret_env: BTreeMap::from([(lf::KEY_ENV.to_string(), key.api_key)]),
            spec: RunSpec {
                // The call's own timeout ends it first; this one ends a task stuck anyway.
                timeout_ms: (timeout + Duration::from_secs(30)).as_millis() as u64,
                input: Some(input),
                ..RunSpec::default()
            },
            gate: None,
        };
        Ok((run, reservation))
    }
}

/// A flow call, as a step or a person gives it.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowCall {
    pub name: String,
    pub source: Option<String>,
    pub input: String,
    /// (component, parameter, value), resolved against the flow's components.
    pub tweaks: Vec<(String, String, Value)>,
    pub session: Option<String>,
    pub targets: Vec<String>,
    pub timeout: Option<String>,
    /// Output name → JSON pointer into the answer.
    pub fields: BTreeMap<String, String>,
}

/// Tells the source's breaker how the flow run `run_id` (ended) went: LangFlow failed when a
/// task exited [`lf::EXIT_LANGFLOW_FAILED`].
pub(crate) async fn report(
    store: &dyn Store,
    run_id: &str,
    reservation: herd_actions::Reservation,
) {
    let failed = store.tasks_of_run(run_id).await.is_ok_and(|tasks| {
        tasks
            .iter()
            .any(|t| t.exit_code == Some(i64::from(lf::EXIT_LANGFLOW_FAILED)))
    });
    if failed {
        reservation.failed();
    } else {
        reservation.succeeded();
    }
}

fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn exists(name: &str) -> ServerError {
    ServerError::Conflict(format!(
        "a LangFlow source named {name:?} exists — remove it first (`herd flows sources rm {name}`) or pick another name"
    ))
}

fn no_source(name: &str) -> ServerError {
    ServerError::NotFound(format!(
        "no LangFlow source {name:?} — `herd flows sources ls` lists them"
    ))
}

fn component(c: &lf::Component) -> FlowComponent {
    FlowComponent {
        id: c.id.clone(),
        kind: c.kind.clone(),
        display_name: c.display_name.clone(),
        params: c
            .params
            .iter()
            .map(|p| FlowParam {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                kind: p.kind.clone(),
                value: p.value.clone(),
                advanced: p.advanced,
            })
            .collect(),
    }
}

fn answer(f: LangflowRow, whole: bool) -> Result<LangFlow> {
    let summary: FlowSummary = serde_json::from_str(&f.summary).map_err(|e| {
        ServerError::Internal(format!(
            "the stored summary of flow {} does not read: {e}",
            f.id
        ))
    })?;
    let strip = |c: &lf::Component| {
        let mut c = component(c);
        if !whole {
            c.params.clear();
        }
        c
    };
    Ok(LangFlow {
        inputs: summary.inputs.iter().map(strip).collect(),
        outputs: summary.outputs.iter().map(strip).collect(),
        components: if whole {
            summary.components.iter().map(component).collect()
        } else {
            Vec::new()
        },
        source: f.source,
        id: f.id,
        name: f.name,
        description: f.description,
        endpoint_name: f.endpoint_name,
        updated_at: f.updated_at,
        removed_at: f.removed_at,
        synced_at: f.synced_at,
    })
}

/// `Value` of a flow target's parameters as a [`RunFlow`] (schedules).
pub(crate) fn run_flow_of(params: &BTreeMap<String, Value>, targets: &[String]) -> RunFlow {
    let text = |k: &str| params.get(k).and_then(|v| v.as_str()).map(str::to_string);
    RunFlow {
        input: text("input").unwrap_or_default(),
        tweaks: params
            .get("tweaks")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        session: text("session"),
        targets: targets.to_vec(),
        timeout: text("timeout"),
        source: text("source"),
    }
}
