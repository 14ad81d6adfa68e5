//! Fleet health alerts (`/api/v1/alerts`, `herd alerts`): rules — thresholds on the metrics
//! agents report, per selector, checked by [`herd_alerts::Rule::new`] — and what they raise.
//!
//! Each heartbeat's metrics are evaluated at once ([`AlertService::observe`]) against the
//! rules that match the agent: which ones do is kept per agent and computed again only when
//! the rules or the agent's selector view change, so a heartbeat costs O(rules matching that
//! agent), never a pass over the fleet. `offline` rules are evaluated by a sweep every second
//! over the agents away (connected agents report 0 with each heartbeat). Only pairs (rule,
//! agent) that are open or waiting out `for` are held in memory. A level change goes, in the
//! order it happened, to one worker task (`worker`): the store first (a raise is recorded only
//! if no alert of the rule is open on the machine, so it is notified once), then the alert's
//! notifier sends it to the rule's `notify` targets and, on a raise, starts the rule's
//! runbook job on the machine; a runbook that fails escalates the alert (`critical`, held
//! until it clears).

mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_alerts::{Change, Level, Metric, State};
use herd_api::{
    Alert, AlertLevel, AlertMetric, AlertNotify, AlertNotifyKind, AlertRule, NewAlertRule,
};
use herd_core::{DefKind, Metrics, Selector};
use herd_store::{AlertRow, AlertRuleRow, AuditEntry, Store, StoreError, now_ms};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, ServerError};
use crate::fleet::{Actor, AgentIndex};
use crate::flows::Engine;
use crate::lock;
use crate::registry::Registry;

pub use worker::Work;

/// Alerts listed at most per call.
const MAX_LISTED: i64 = 1000;
/// Rules a server keeps at most.
const MAX_RULES: usize = 1000;
/// How often agents away are looked at for `offline` rules.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A rule as evaluated.
pub(crate) struct LiveRule {
    pub api: AlertRule,
    pub rule: herd_alerts::Rule,
    selector: Option<Selector>,
}

/// The rules matching one agent, for one version of the rules and of the agent's view.
struct Matching {
    rules_version: u64,
    view_version: u64,
    rules: Vec<Arc<LiveRule>>,
}

/// A (rule, agent) pair that is not plainly `ok`.
struct Pair {
    state: State,
    /// The open alert's id (none while only waiting out `for`).
    alert_id: Option<String>,
}

#[derive(Default)]
struct Inner {
    rules: Vec<Arc<LiveRule>>,
    rules_version: u64,
    matching: HashMap<String, Matching>,
    /// By (rule, agent id).
    pairs: HashMap<(String, String), Pair>,
}

pub struct AlertService {
    store: Arc<dyn Store>,
    index: Arc<AgentIndex>,
    registry: Arc<Registry>,
    inner: Mutex<Inner>,
    work: mpsc::UnboundedSender<Work>,
}

pub(crate) fn metric_of(m: AlertMetric) -> Metric {
    match m {
        AlertMetric::Cpu => Metric::Cpu,
        AlertMetric::Memory => Metric::Memory,
        AlertMetric::Disk => Metric::Disk,
        AlertMetric::Load1 => Metric::Load1,
        AlertMetric::Load5 => Metric::Load5,
        AlertMetric::Load15 => Metric::Load15,
        AlertMetric::Offline => Metric::Offline,
    }
}

fn api_metric(m: Metric) -> AlertMetric {
    match m {
        Metric::Cpu => AlertMetric::Cpu,
        Metric::Memory => AlertMetric::Memory,
        Metric::Disk => AlertMetric::Disk,
        Metric::Load1 => AlertMetric::Load1,
        Metric::Load5 => AlertMetric::Load5,
        Metric::Load15 => AlertMetric::Load15,
        Metric::Offline => AlertMetric::Offline,
    }
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> ServerError {
    ServerError::Store(StoreError::Corrupt {
        what: what.to_string(),
        why: why.to_string(),
    })
}

/// A stored rule, checked again as it is read.
fn live_rule(row: &AlertRuleRow) -> Result<LiveRule> {
    let mut api: AlertRule = serde_json::from_str(&row.spec)
        .map_err(|e| corrupt(&format!("alert rule {}", row.name), e))?;
    api.name.clone_from(&row.name);
    api.created_by.clone_from(&row.created_by);
    api.created_at = row.created_at;
    let rule = herd_alerts::Rule::new(
        metric_of(api.metric),
        api.warning,
        api.critical,
        Some(api.margin),
        api.for_ms,
    )
    .map_err(|e| corrupt(&format!("alert rule {}", row.name), e))?;
    let selector = api
        .target
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(|e| corrupt(&format!("alert rule {}", row.name), e))?;
    Ok(LiveRule {
        api,
        rule,
        selector,
    })
}

/// An alert row as the API answers it.
pub(crate) fn answer(a: AlertRow) -> Result<Alert> {
    let metric = Metric::parse(&a.metric)
        .map(api_metric)
        .map_err(|e| corrupt(&format!("alert {}", a.id), e))?;
    let level = match Level::parse(&a.level) {
        Some(Level::Critical) => AlertLevel::Critical,
        Some(Level::Warning) => AlertLevel::Warning,
        _ => {
            return Err(corrupt(
                &format!("alert {}", a.id),
                format!("level {:?}", a.level),
            ));
        }
    };
    Ok(Alert {
        id: a.id,
        rule: a.rule,
        agent: a.agent_name,
        agent_id: a.agent_id,
        metric,
        level,
        value: a.value,
        threshold: a.threshold,
        raised_at: a.raised_at,
        changed_at: a.changed_at,
        cleared_at: a.cleared_at,
        escalated: a.escalated,
        notified: a.notified,
        runbook_run: a.runbook_run,
        runbook_state: a.runbook_state,
    })
}

impl AlertService {
    /// Loads the rules and the open alerts, and starts the worker that records, notifies and
    /// runs runbooks.
    pub async fn start(
        store: Arc<dyn Store>,
        index: Arc<AgentIndex>,
        registry: Arc<Registry>,
        engine: Arc<Engine>,
        actions: herd_actions::Actions,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Arc<AlertService>> {
        let mut inner = Inner::default();
        for row in store.alert_rules().await? {
            inner.rules.push(Arc::new(live_rule(&row)?));
        }
        for a in store.alerts(false, i64::MAX).await? {
            let level = Level::parse(&a.level).unwrap_or(Level::Warning);
            inner.pairs.insert(
                (a.rule.clone(), a.agent_id.clone()),
                Pair {
                    state: State::open(level, a.escalated),
                    alert_id: Some(a.id.clone()),
                },
            );
        }
        inner.rules_version = 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let service = Arc::new(AlertService {
            store: store.clone(),
            index,
            registry,
            inner: Mutex::new(inner),
            work: tx,
        });
        let w = worker::Worker::new(
            store,
            engine,
            actions,
            Arc::downgrade(&service),
            tracker.clone(),
            shutdown.clone(),
        );
        tracker.spawn(w.run(rx, shutdown.clone()));
        tracker.spawn(service.clone().sweep(shutdown));
        Ok(service)
    }

    // ---- rules --------------------------------------------------------------------------

    pub async fn add_rule(&self, actor: &Actor, req: NewAlertRule) -> Result<AlertRule> {
        if !herd_workflow::valid_name(&req.name) {
            return Err(ServerError::BadRequest(format!(
                "{:?} is not an alert rule name — use letters, digits, `_`, `.` and `-` (at most 128, starting with a letter or digit)",
                herd_core::escape_controls(&req.name)
            )));
        }
        let for_ms = match &req.for_ {
            None => 0,
            Some(f) => {
                let d = herd_core::parse_duration(f).map_err(|e| {
                    ServerError::BadRequest(format!("for {f:?}: {e} — e.g. 30s or 5m"))
                })?;
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            }
        };
        let metric = metric_of(req.metric);
        let rule = herd_alerts::Rule::new(metric, req.warning, req.critical, req.margin, for_ms)
            .map_err(ServerError::BadRequest)?;
        let target = req.target.filter(|t| !t.trim().is_empty());
        if let Some(t) = &target {
            Selector::parse(t).map_err(|e| ServerError::BadRequest(e.to_string()))?;
        }
        for n in &req.notify {
            notify_of(n, "check")
                .check()
                .map_err(|e| ServerError::BadRequest(format!("notify {}: {e}", n.url)))?;
        }
        if let Some(job) = &req.runbook
            && self.store.definition(DefKind::Job, job).await?.is_none()
        {
            return Err(ServerError::BadRequest(format!(
                "no job {job:?} for the runbook — apply it first (`herd jobs apply -f FILE`)"
            )));
        }
        if lock(&self.inner).rules.len() >= MAX_RULES {
            return Err(ServerError::Conflict(format!(
                "this server keeps at most {MAX_RULES} alert rules — remove one first (`herd alerts rules rm NAME`)"
            )));
        }
        let api = AlertRule {
            name: req.name.clone(),
            metric: req.metric,
            target,
            warning: rule.warning,
            critical: rule.critical,
            margin: rule.margin,
            for_ms,
            notify: req.notify,
            runbook: req.runbook,
            created_by: actor.name.clone(),
            created_at: now_ms(),
        };
        let row = AlertRuleRow {
            name: api.name.clone(),
            spec: serde_json::to_string(&api).map_err(|e| ServerError::Internal(e.to_string()))?,
            created_by: api.created_by.clone(),
            created_at: api.created_at,
        };
        let audit = AuditEntry::new(
            &actor.name,
            "alert.rule.add",
            format!("alert-rule:{}", api.name),
            json!({"rule": api}),
        );
        match self.store.create_alert_rule(&row, &audit).await {
            Err(StoreError::Conflict(_)) => {
                return Err(ServerError::Conflict(format!(
                    "an alert rule named {:?} exists — remove it first (`herd alerts rules rm {}`) or pick another name",
                    api.name, api.name
                )));
            }
            other => other?,
        }
        let live = Arc::new(live_rule(&row)?);
        let mut inner = lock(&self.inner);
        inner.rules.retain(|r| r.api.name != api.name);
        inner.rules.push(live);
        inner.rules.sort_by(|a, b| a.api.name.cmp(&b.api.name));
        inner.rules_version += 1;
        Ok(api)
    }

    pub fn rules(&self) -> Vec<AlertRule> {
        lock(&self.inner)
            .rules
            .iter()
            .map(|r| r.api.clone())
            .collect()
    }

    /// Removes a rule; its open alerts clear (without notifications).
    pub async fn remove_rule(&self, actor: &Actor, name: &str) -> Result<AlertRule> {
        if !herd_workflow::valid_name(name) {
            return Err(ServerError::BadRequest(format!(
                "{:?} is not an alert rule name — `herd alerts rules ls` lists them",
                herd_core::escape_controls(name)
            )));
        }
        let found = lock(&self.inner)
            .rules
            .iter()
            .find(|r| r.api.name == name)
            .map(|r| r.api.clone());
        let not_found = || {
            ServerError::NotFound(format!(
                "no alert rule {:?} — see `herd alerts rules ls`",
                herd_core::escape_controls(name)
            ))
        };
        let rule = found.ok_or_else(not_found)?;
        let audit = AuditEntry::new(
            &actor.name,
            "alert.rule.rm",
            format!("alert-rule:{name}"),
            json!({}),
        );
        if !self.store.delete_alert_rule(name, now_ms(), &audit).await? {
            return Err(not_found());
        }
        let mut inner = lock(&self.inner);
        inner.rules.retain(|r| r.api.name != name);
        inner.pairs.retain(|(rule, _), _| rule != name);
        inner.rules_version += 1;
        Ok(rule)
    }

    /// Open alerts (every alert with `all`), newest first.
    pub async fn list(&self, all: bool, limit: Option<i64>) -> Result<Vec<Alert>> {
        let limit = limit.unwrap_or(100);
        if limit < 1 {
            return Err(ServerError::BadRequest(format!(
                "limit {limit}: give at least 1"
            )));
        }
        let limit = limit.min(MAX_LISTED);
        self.store
            .alerts(all, limit)
            .await?
            .into_iter()
            .map(answer)
            .collect()
    }

    // ---- evaluation ---------------------------------------------------------------------

    /// The rules matching a live agent, with its name and when it was last heard from.
    fn matching(&self, agent_id: &str) -> Option<(String, Option<i64>, Vec<Arc<LiveRule>>)> {
        let mut inner = lock(&self.inner);
        if inner.rules.is_empty() {
            return None;
        }
        let inner = &mut *inner;
        self.index.with_view(agent_id, |row, view, version| {
            let fresh = inner.matching.get(agent_id).is_some_and(|m| {
                m.rules_version == inner.rules_version && m.view_version == version
            });
            if !fresh {
                let rules = inner
                    .rules
                    .iter()
                    .filter(|r| r.selector.as_ref().is_none_or(|s| s.matches(view)))
                    .cloned()
                    .collect();
                inner.matching.insert(
                    agent_id.to_string(),
                    Matching {
                        rules_version: inner.rules_version,
                        view_version: version,
                        rules,
                    },
                );
            }
            let rules = inner
                .matching
                .get(agent_id)
                .map(|m| m.rules.clone())
                .unwrap_or_default();
            (row.name.clone(), row.last_seen, rules)
        })
    }

    /// A heartbeat's metrics (the agent is connected: its `offline` rules see 0).
    pub fn observe(&self, agent_id: &str, metrics: Option<&Metrics>) {
        let Some((name, _, rules)) = self.matching(agent_id) else {
            return;
        };
        let now = now_ms();
        for r in rules {
            let value = match r.rule.metric {
                Metric::Offline => Some(0.0),
                m => metrics.and_then(|x| m.value(x)),
            };
            if let Some(v) = value {
                self.evaluate(&r, agent_id, &name, v, now);
            }
        }
    }

    /// Agents away, for their `offline` rules: seconds since they were last heard from.
    fn sweep_offline(&self) {
        let any_offline = lock(&self.inner)
            .rules
            .iter()
            .any(|r| r.rule.metric == Metric::Offline);
        if !any_offline {
            return;
        }
        let now = now_ms();
        for (id, since) in self.registry.away() {
            let Some((name, last_seen, rules)) = self.matching(&id) else {
                continue;
            };
            let away_ms = match last_seen {
                Some(seen) => now.saturating_sub(seen),
                None => since.elapsed().as_millis() as i64,
            };
            for r in rules.iter().filter(|r| r.rule.metric == Metric::Offline) {
                self.evaluate(r, &id, &name, away_ms as f64 / 1000.0, now);
            }
        }
    }

    async fn sweep(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => self.sweep_offline(),
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn evaluate(&self, r: &Arc<LiveRule>, agent_id: &str, agent: &str, v: f64, now: i64) {
        let key = (r.api.name.clone(), agent_id.to_string());
        let mut inner = lock(&self.inner);
        let pair = inner.pairs.entry(key.clone()).or_insert(Pair {
            state: State::default(),
            alert_id: None,
        });
        let change = herd_alerts::evaluate(&r.rule, &mut pair.state, v, now);
        let alert_id = match change {
            Some(Change::Raised { .. }) => {
                let id = herd_core::new_id();
                pair.alert_id = Some(id.clone());
                Some(id)
            }
            _ => pair.alert_id.clone(),
        };
        if pair.state.level == Level::Ok && pair.state.pending_since.is_none() {
            inner.pairs.remove(&key);
        }
        drop(inner);
        if let (Some(change), Some(alert_id)) = (change, alert_id) {
            self.post(Work {
                alert_id,
                rule: r.clone(),
                agent_id: agent_id.to_string(),
                agent: agent.to_string(),
                change,
                value: v,
                at: now,
            });
        }
    }

    /// The runbook of alert `alert_id` failed: the alert, if still open, is escalated.
    pub(crate) fn escalate(
        &self,
        rule: &Arc<LiveRule>,
        agent_id: &str,
        agent: &str,
        alert_id: &str,
        value: f64,
    ) {
        let key = (rule.api.name.clone(), agent_id.to_string());
        let mut inner = lock(&self.inner);
        let Some(pair) = inner.pairs.get_mut(&key) else {
            return;
        };
        if pair.alert_id.as_deref() != Some(alert_id) {
            return;
        }
        let change = herd_alerts::escalate(&mut pair.state);
        drop(inner);
        if let Some(change) = change {
            self.post(Work {
                alert_id: alert_id.to_string(),
                rule: rule.clone(),
                agent_id: agent_id.to_string(),
                agent: agent.to_string(),
                change,
                value,
                at: now_ms(),
            });
        }
    }

    fn post(&self, w: Work) {
        if self.work.send(w).is_err() {
            tracing::debug!("alert change after shutdown; not recorded");
        }
    }
}

/// The notification of `n` with `text`.
pub(crate) fn notify_of(n: &AlertNotify, text: &str) -> herd_core::actions::Notify {
    use herd_core::actions::{Chat, Notify};
    let chat = || Chat {
        webhook: n.url.clone(),
        text: text.to_string(),
    };
    match n.kind {
        AlertNotifyKind::Webhook => Notify::Webhook {
            url: n.url.clone(),
            text: text.to_string(),
        },
        AlertNotifyKind::Slack => Notify::Slack(chat()),
        AlertNotifyKind::Discord => Notify::Discord(chat()),
    }
}
