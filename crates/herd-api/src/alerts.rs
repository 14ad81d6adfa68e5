//! Fleet health alerts: `/api/v1/alerts/rules` (thresholds on the metrics agents report, per
//! selector) and `/api/v1/alerts` (what they raised).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a rule watches: `cpu`, `memory`, `disk` (percent used of the filesystem the agent
/// measures, `/` unless its `--metrics-disk` says otherwise), the load averages, or
/// `offline` (seconds the agent has been away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertMetric {
    Cpu,
    Memory,
    Disk,
    Load1,
    Load5,
    Load15,
    Offline,
}

/// How bad an open alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    Warning,
    Critical,
}

/// The kind of a place alerts are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertNotifyKind {
    /// A JSON POST of `text` and the alert's fields (`rule`, `state`, `level`, `agent`,
    /// `metric`, `value`, `threshold`, …).
    Webhook,
    /// A Slack incoming webhook (the text).
    Slack,
    /// A Discord webhook (the text).
    Discord,
}

/// A place alerts are sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertNotify {
    pub kind: AlertNotifyKind,
    /// `http://` or `https://`.
    pub url: String,
}

/// The body of `POST /api/v1/alerts/rules`: at least one of `warning` and `critical`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewAlertRule {
    /// Letters, digits, `_`, `.`, `-` (at most 128, starting with a letter or digit).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    pub metric: AlertMetric,
    /// The machines it watches (a selector, as `herd run -t` takes); every machine without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A value at or above this raises a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
    /// A value at or above this raises a critical alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<f64>,
    /// A level ends when the value falls below its threshold less this (hysteresis; default
    /// 5 for percentages, a tenth of the lowest threshold for loads, 0 for `offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// How long a value must stay over a threshold before it raises (a duration: `30s`).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Where its alerts are sent when raised, changed, escalated and cleared.
    #[serde(default)]
    pub notify: Vec<AlertNotify>,
    /// A job started on the machine when an alert is raised (its parameters among `rule`,
    /// `agent`, `metric`, `level`, `value`, `threshold` are given); when it fails the alert
    /// is escalated to critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRule {
    pub name: String,
    pub metric: AlertMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<f64>,
    /// The clear margin in effect.
    pub margin: f64,
    /// `for`, in ms.
    pub for_ms: i64,
    #[serde(default)]
    pub notify: Vec<AlertNotify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// An alert: one rule on one machine, from when it was raised until it cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    pub id: String,
    pub rule: String,
    /// The machine's name.
    pub agent: String,
    pub agent_id: String,
    pub metric: AlertMetric,
    /// Its level now (or when it cleared).
    pub level: AlertLevel,
    /// The value that set the level.
    pub value: f64,
    /// The threshold of the level.
    pub threshold: f64,
    /// Unix ms.
    pub raised_at: i64,
    /// When its level last changed (unix ms).
    pub changed_at: i64,
    /// When it cleared (unix ms); open while absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<i64>,
    /// Held at critical: its runbook failed.
    pub escalated: bool,
    /// How the latest notification went (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<String>,
    /// The workflow run of its runbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_run: Option<String>,
    /// `running`, `succeeded`, `failed`, `cancelled`, or why it did not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_state: Option<String>,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Cleared alerts too (newest first); only open ones without.
    pub all: Option<bool>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;

    #[test]
    fn alerts_match_the_server() {
        check(
            r#"{"agent":"web-1","agent_id":"a1","changed_at":2,"escalated":false,"id":"x","level":"warning","metric":"disk","raised_at":1,"rule":"disk","runbook_run":"r","runbook_state":"running","threshold":80.0,"value":81.5}"#,
            &Alert {
                id: "x".into(),
                rule: "disk".into(),
                agent: "web-1".into(),
                agent_id: "a1".into(),
                metric: AlertMetric::Disk,
                level: AlertLevel::Warning,
                value: 81.5,
                threshold: 80.0,
                raised_at: 1,
                changed_at: 2,
                cleared_at: None,
                escalated: false,
                notified: None,
                runbook_run: Some("r".into()),
                runbook_state: Some("running".into()),
            },
        );
        check(
            r#"{"critical":90.0,"for":"30s","metric":"disk","name":"disk","notify":[{"kind":"webhook","url":"http://h/x"}]}"#,
            &NewAlertRule {
                name: "disk".into(),
                metric: AlertMetric::Disk,
                target: None,
                warning: None,
                critical: Some(90.0),
                margin: None,
                for_: Some("30s".into()),
                notify: vec![AlertNotify {
                    kind: AlertNotifyKind::Webhook,
                    url: "http://h/x".into(),
                }],
                runbook: None,
            },
        );
    }
}
