//! Rows of the store as the rest of herd sees them. Times are unix milliseconds.

use std::collections::BTreeMap;

use serde::Serialize;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub cred_hash: String,
    /// JSON object of labels the agent reported.
    #[serde(skip)]
    pub labels: String,
    /// JSON object of operator edits (a null value removes a reported label).
    #[serde(skip)]
    pub server_labels: String,
    #[serde(skip)]
    pub facts: String,
    #[serde(skip)]
    pub metrics: Option<String>,
    pub version: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl AgentRow {
    /// Reported labels with operator edits applied.
    pub fn effective_labels(&self) -> Labels {
        let mut labels: Labels = serde_json::from_str(&self.labels).unwrap_or_default();
        let edits: BTreeMap<String, Option<String>> =
            serde_json::from_str(&self.server_labels).unwrap_or_default();
        for (k, v) in edits {
            match v {
                Some(v) => {
                    labels.insert(k, v);
                }
                None => {
                    labels.remove(&k);
                }
            }
        }
        labels
    }

    pub fn facts_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.facts).unwrap_or(serde_json::Value::Null)
    }

    pub fn metrics_json(&self) -> serde_json::Value {
        self.metrics
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub hash: String,
    pub role: String,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JoinTokenRow {
    pub id: String,
    #[serde(skip)]
    pub hash: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: i64,
    pub uses_left: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: String,
    pub command: String,
    pub selector: String,
    /// JSON of the run's execution spec (timeout, interactive, tty, env, cwd...).
    #[serde(skip)]
    pub spec: String,
    pub created_by: String,
    pub created_at: i64,
    pub cancel_requested: bool,
    pub state: String,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TaskRow {
    pub id: String,
    pub run_id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub state: String,
    pub created_at: i64,
    pub dispatched_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub pid: Option<i64>,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub out_seq: i64,
    pub out_total: i64,
    #[serde(skip)]
    pub out_head_len: i64,
    #[serde(skip)]
    pub out_tail_seg: i64,
    #[serde(skip)]
    pub out_tail_len: i64,
}

impl TaskRow {
    pub fn output_pos(&self) -> herd_outlog::OutputPos {
        herd_outlog::OutputPos {
            total: self.out_total.max(0) as u64,
            head_len: self.out_head_len.max(0) as u64,
            tail_seg: self.out_tail_seg.max(0) as u64,
            tail_len: self.out_tail_len.max(0) as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[serde(skip)]
    pub detail: String,
}

/// A new task of a run, as created by the dispatcher.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub state: String,
    pub reason: Option<String>,
}

/// What one persisted batch of agent events changes on one task.
#[derive(Debug, Clone, Default)]
pub struct TaskProgress {
    pub task_id: String,
    /// The highest event seq now persisted.
    pub seq: u64,
    pub out: herd_outlog::OutputPos,
    pub started: Option<Started>,
    pub exited: Option<Exit>,
}

#[derive(Debug, Clone)]
pub struct Started {
    pub pid: u32,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct Exit {
    pub state: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: String,
    pub detail: String,
    pub at: i64,
}

/// What sessions reported for one agent since the last flush.
#[derive(Debug, Clone)]
pub struct AgentFlush {
    pub id: String,
    pub last_seen: i64,
    pub metrics: Option<String>,
    /// Set when the agent said hello (labels and facts as JSON objects).
    pub hello: Option<AgentHello>,
}

#[derive(Debug, Clone)]
pub struct AgentHello {
    pub labels: String,
    pub facts: String,
    pub version: String,
}
