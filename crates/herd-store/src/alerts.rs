//! Fleet health alerts: the rules (`herd alerts rules`) and the alerts they raised, one row
//! per (rule, machine) from raise to clear. At most one alert of a rule is open on a machine
//! (`raise_alert` answers whether this raise made it), so servers that see the same values
//! raise it, and notify about it, once.

use async_trait::async_trait;

use crate::Result;
use crate::model::AuditEntry;

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleRow {
    pub name: String,
    /// The rule as the server keeps it (JSON).
    pub spec: String,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub agent_id: String,
    pub agent_name: String,
    pub metric: String,
    /// `warning` or `critical`.
    pub level: String,
    pub value: f64,
    pub threshold: f64,
    pub raised_at: i64,
    pub changed_at: i64,
    pub cleared_at: Option<i64>,
    pub escalated: bool,
    /// How the latest notification went.
    pub notified: Option<String>,
    pub runbook_run: Option<String>,
    pub runbook_state: Option<String>,
}

/// What changes on an alert: the fields given. `level`, `value`, `threshold`, `changed_at`,
/// `escalated` and `cleared_at` apply only while the alert is open; `notified` and the
/// runbook's fields also after (a notification or a runbook may end after the clear).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertUpdate {
    pub level: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub changed_at: Option<i64>,
    pub escalated: Option<bool>,
    pub cleared_at: Option<i64>,
    pub notified: Option<String>,
    pub runbook_run: Option<String>,
    pub runbook_state: Option<String>,
}

impl AlertUpdate {
    /// Whether it changes a field that applies only while the alert is open.
    pub fn changes_state(&self) -> bool {
        self.level.is_some()
            || self.value.is_some()
            || self.threshold.is_some()
            || self.changed_at.is_some()
            || self.escalated.is_some()
            || self.cleared_at.is_some()
    }
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Stores a new rule with `audit`; [`crate::StoreError::Conflict`] if the name is taken.
    async fn create_alert_rule(&self, rule: &AlertRuleRow, audit: &AuditEntry) -> Result<()>;
    /// Every rule, by name.
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>>;
    /// Deletes a rule and clears its open alerts at `at`, with `audit`, in one transaction;
    /// false (and no audit entry) if there was none.
    async fn delete_alert_rule(&self, name: &str, at: i64, audit: &AuditEntry) -> Result<bool>;
    /// Records a raised alert unless its rule has one open on its machine already; true if
    /// this call recorded it.
    async fn raise_alert(&self, alert: &AlertRow) -> Result<bool>;
    /// Applies `update` to alert `id` (see [`AlertUpdate`]); true if a row changed.
    async fn update_alert(&self, id: &str, update: &AlertUpdate) -> Result<bool>;
    /// The open alerts (or every alert with `all`), newest raised first, at most `limit`.
    async fn alerts(&self, all: bool, limit: i64) -> Result<Vec<AlertRow>>;
}
