//! The audit log, newest first: `GET /api/v1/audit`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who did what to what, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The entry's number, increasing.
    pub id: i64,
    /// When it happened.
    pub at: i64,
    /// Who did it: `key:<name>` of an API key, `agent:<name>` of a joining machine, or the
    /// server itself (`server`, `herd up`).
    pub actor: String,
    /// What was done, e.g. `run.create`, `agent.label`, `key.create`.
    pub action: String,
    /// What it was done to, e.g. `run:<id>`, `agent:<name>`.
    pub target: String,
    /// The particulars of the action (its own shape per action); null if unreadable.
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_entry_matches_the_server() {
        crate::golden::check(
            concat!(
                r#"{"action":"agent.label","actor":"key:admin","at":1700000000000,"#,
                r#""detail":{"remove":[],"set":{"tier":"gold"}},"id":7,"target":"agent:box"}"#
            ),
            &AuditEntry {
                id: 7,
                at: 1_700_000_000_000,
                actor: "key:admin".into(),
                action: "agent.label".into(),
                target: "agent:box".into(),
                detail: serde_json::json!({"set": {"tier": "gold"}, "remove": []}),
            },
        );
    }
}
