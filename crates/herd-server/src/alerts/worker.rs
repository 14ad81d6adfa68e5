//! What a level change does, in the order changes happened: recorded in the store (a raise
//! only if no alert of the rule is open on the machine: whoever recorded it notifies), then
//! handed to the alert's notifier — one task per alert while it is open — which sends it to
//! the rule's `notify` targets through the server's `Actions` (breakers, retries, timeouts)
//! and, on a raise, starts the rule's runbook job on the machine. The runbook's end is
//! recorded on the alert; one that did not succeed escalates it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use herd_alerts::Change;
use herd_core::{DefKind, RunState};
use herd_store::{AlertRow, AlertUpdate, Store};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AlertService, LiveRule, notify_of};
use crate::flows::Engine;

/// One level change of one alert.
#[derive(Clone)]
pub struct Work {
    pub(crate) alert_id: String,
    pub(crate) rule: Arc<LiveRule>,
    pub(crate) agent_id: String,
    pub(crate) agent: String,
    pub(crate) change: Change,
    pub(crate) value: f64,
    pub(crate) at: i64,
}

impl Work {
    /// The threshold of the level it reached (of the level it left, when cleared).
    fn threshold(&self) -> f64 {
        let level = match self.change {
            Change::Cleared { from } => from,
            c => c.level(),
        };
        self.rule
            .rule
            .threshold(level)
            .or(self.rule.rule.warning)
            .or(self.rule.rule.critical)
            .unwrap_or_default()
    }

    /// The line of its notification.
    fn text(&self) -> String {
        let unit = self.rule.rule.metric.unit();
        let (metric, agent, rule) = (self.rule.rule.metric, &self.agent, &self.rule.api.name);
        let v = round(self.value);
        let t = round(self.threshold());
        match self.change {
            Change::Cleared { .. } => format!(
                "cleared: {metric} on {agent} is back to {v}{unit} (below {t}{unit} less the margin) — alert rule {rule}"
            ),
            Change::Escalated { .. } => format!(
                "escalated to critical: the runbook of alert rule {rule} did not succeed on {agent} ({metric} {v}{unit})"
            ),
            c => format!(
                "{}: {metric} on {agent} is {v}{unit}, {} (threshold {t}{unit}) — alert rule {rule}",
                c.as_str(),
                c.level()
            ),
        }
    }

    /// The fields of a webhook notification.
    fn data(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "alert": self.alert_id,
            "rule": self.rule.api.name,
            "state": self.change.as_str(),
            "level": self.change.level().as_str(),
            "agent": self.agent,
            "agent_id": self.agent_id,
            "metric": self.rule.rule.metric.as_str(),
            "value": self.value,
            "threshold": self.threshold(),
            "at": self.at,
        });
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub(crate) struct Worker {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    actions: herd_actions::Actions,
    service: Weak<AlertService>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// The notifier of each open alert this server recorded.
    notifiers: HashMap<String, mpsc::UnboundedSender<Work>>,
}

impl Worker {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        actions: herd_actions::Actions,
        service: Weak<AlertService>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Worker {
        Worker {
            store,
            engine,
            actions,
            service,
            tracker,
            shutdown,
            notifiers: HashMap::new(),
        }
    }

    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Work>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                w = rx.recv() => match w {
                    Some(w) => self.handle(w).await,
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn handle(&mut self, w: Work) {
        let recorded = match self.record(&w).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(rule = %w.rule.api.name, agent = %w.agent, "cannot record an alert's change ({}): {e}", w.change.as_str());
                false
            }
        };
        if !recorded {
            return;
        }
        tracing::info!(rule = %w.rule.api.name, agent = %w.agent, level = %w.change.level(), value = w.value, "alert {}", w.change.as_str());
        let tx = match self.notifiers.get(&w.alert_id) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let n = Notifier {
                    store: self.store.clone(),
                    engine: self.engine.clone(),
                    actions: self.actions.clone(),
                    service: self.service.clone(),
                };
                let shutdown = self.shutdown.clone();
                self.tracker.spawn(async move {
                    tokio::select! {
                        _ = n.run(rx) => {}
                        _ = shutdown.cancelled() => {}
                    }
                });
                self.notifiers.insert(w.alert_id.clone(), tx.clone());
                tx
            }
        };
        let cleared = matches!(w.change, Change::Cleared { .. });
        let _ = tx.send(w.clone());
        if cleared {
            // The notifier ends once it has sent what it holds.
            self.notifiers.remove(&w.alert_id);
        }
    }

    /// Records the change; false when it is not this server's to notify (another recorded
    /// the raise, or the alert is no longer open).
    async fn record(&self, w: &Work) -> herd_store::Result<bool> {
        let level = w.change.level();
        match w.change {
            Change::Raised { .. } => {
                let row = AlertRow {
                    id: w.alert_id.clone(),
                    rule: w.rule.api.name.clone(),
                    agent_id: w.agent_id.clone(),
                    agent_name: w.agent.clone(),
                    metric: w.rule.rule.metric.as_str().to_string(),
                    level: level.as_str().to_string(),
                    value: w.value,
                    threshold: w.threshold(),
                    raised_at: w.at,
                    changed_at: w.at,
                    cleared_at: None,
                    escalated: false,
                    notified: None,
                    runbook_run: None,
                    runbook_state: None,
                };
                self.store.raise_alert(&row).await
            }
            Change::Changed { .. } | Change::Escalated { .. } => {
                let up = AlertUpdate {
                    level: Some(level.as_str().to_string()),
                    value: Some(w.value),
                    threshold: Some(w.threshold()),
                    changed_at: Some(w.at),
                    escalated: matches!(w.change, Change::Escalated { .. }).then_some(true),
                    ..AlertUpdate::default()
                };
                self.store.update_alert(&w.alert_id, &up).await
            }
            Change::Cleared { .. } => {
                let up = AlertUpdate {
                    value: Some(w.value),
                    cleared_at: Some(w.at),
                    ..AlertUpdate::default()
                };
                self.store.update_alert(&w.alert_id, &up).await
            }
        }
    }
}

struct Notifier {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    actions: herd_actions::Actions,
    service: Weak<AlertService>,
}

impl Notifier {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Work>) {
        while let Some(w) = rx.recv().await {
            self.notify(&w).await;
            if matches!(w.change, Change::Raised { .. })
                && let Some(job) = w.rule.api.runbook.clone()
            {
                self.runbook(&w, &job).await;
            }
        }
    }

    async fn notify(&self, w: &Work) {
        if w.rule.api.notify.is_empty() {
            return;
        }
        let text = w.text();
        let data = w.data();
        let mut lines = Vec::new();
        for n in &w.rule.api.notify {
            let r = self.actions.notify_with(&notify_of(n, &text), &data).await;
            let how = match (&r.error, r.status) {
                (None, Some(s)) => format!("answered {s}"),
                (None, None) => "sent".to_string(),
                (Some(e), _) => format!("failed: {e}"),
            };
            if !r.ok {
                tracing::warn!(rule = %w.rule.api.name, agent = %w.agent, "alert notification {how}");
            }
            lines.push(format!("{:?} {how}", n.kind).to_lowercase());
        }
        let up = AlertUpdate {
            notified: Some(format!("{}: {}", w.change.as_str(), lines.join("; "))),
            ..AlertUpdate::default()
        };
        if let Err(e) = self.store.update_alert(&w.alert_id, &up).await {
            tracing::warn!("cannot record how an alert's notification went: {e}");
        }
    }

    /// Starts the runbook on the machine (with the alert's fields among the parameters it
    /// declares) and, in a task of its own, waits for its end, records it and escalates the
    /// alert when it did not succeed.
    async fn runbook(&self, w: &Work, job: &str) {
        let id = herd_core::new_id();
        let started = self.start_runbook(w, job, &id).await;
        let state = match &started {
            Ok(()) => "running".to_string(),
            Err(e) => format!("not started: {e}"),
        };
        let up = AlertUpdate {
            runbook_run: started.is_ok().then(|| id.clone()),
            runbook_state: Some(state),
            ..AlertUpdate::default()
        };
        if let Err(e) = self.store.update_alert(&w.alert_id, &up).await {
            tracing::warn!("cannot record an alert's runbook: {e}");
        }
        if started.is_err() {
            self.escalate(w);
            return;
        }
        let engine = self.engine.clone();
        let store = self.store.clone();
        let service = self.service.clone();
        let w = w.clone();
        self.engine.spawn(async move {
            engine.wait_flow(&id).await;
            let state = match store.flow_run(&id).await {
                Ok(Some(r)) => r.state,
                Ok(None) => RunState::Failed,
                Err(e) => {
                    tracing::warn!("cannot read the runbook run {id}: {e}");
                    return;
                }
            };
            let up = AlertUpdate {
                runbook_state: Some(state.as_str().to_string()),
                ..AlertUpdate::default()
            };
            if let Err(e) = store.update_alert(&w.alert_id, &up).await {
                tracing::warn!("cannot record an alert's runbook: {e}");
            }
            if state != RunState::Succeeded
                && let Some(s) = service.upgrade()
            {
                s.escalate(&w.rule, &w.agent_id, &w.agent, &w.alert_id, w.value);
            }
        });
    }

    fn escalate(&self, w: &Work) {
        if let Some(s) = self.service.upgrade() {
            s.escalate(&w.rule, &w.agent_id, &w.agent, &w.alert_id, w.value);
        }
    }

    async fn start_runbook(&self, w: &Work, job: &str, id: &str) -> crate::error::Result<()> {
        let declared = match self.store.definition(DefKind::Job, job).await? {
            Some(d) => crate::flows::workflow_of(DefKind::Job, &d.body)
                .map(|wf| wf.params.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let fields: [(&str, Value); 6] = [
            ("rule", Value::from(w.rule.api.name.clone())),
            ("agent", Value::from(w.agent.clone())),
            ("metric", Value::from(w.rule.rule.metric.as_str())),
            ("level", Value::from(w.change.level().as_str())),
            ("value", Value::from(round(w.value).to_string())),
            ("threshold", Value::from(round(w.threshold()).to_string())),
        ];
        let params: BTreeMap<String, Value> = fields
            .into_iter()
            .filter(|(k, _)| declared.iter().any(|d| d == k))
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // Checked against the policy of now, as the person who added the rule.
        let actor = format!("alert:{}", w.rule.api.name);
        let by = self
            .engine
            .runs
            .policy()
            .acting_for(&actor, &w.rule.api.created_by)
            .await?;
        let gate = crate::policy::Gate::new(&by, false);
        crate::flows::create(
            &self.engine,
            &actor,
            DefKind::Job,
            job,
            &params,
            vec![w.agent.clone()],
            id.to_string(),
            None,
            None,
            Some(&gate),
        )
        .await?;
        Ok(())
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("alert_id", &self.alert_id)
            .field("rule", &self.rule.api.name)
            .field("agent", &self.agent)
            .field("change", &self.change)
            .finish()
    }
}
