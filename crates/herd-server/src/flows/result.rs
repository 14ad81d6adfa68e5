//! What a step left behind: its outputs (merged over its machines, and per machine), its
//! helper condition and events, as stored in the step's row and read by expressions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One machine's part of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineResult {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<bool>,
}

/// A step's results (the `outputs` column of its row).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Merged over the machines (in name order: a later machine's key wins), or what a
    /// server-side step extracted.
    #[serde(default)]
    pub outputs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<bool>,
    /// Per machine (steps on machines).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub machines: BTreeMap<String, MachineResult>,
    /// `herd helper event` calls: {machine, name, data}.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Value>,
}

impl StepResult {
    pub fn from_column(s: Option<&str>) -> StepResult {
        s.and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    pub fn to_column(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Recomputes the merged outputs and condition from the machines.
    pub fn merge_machines(&mut self) {
        let mut merged = BTreeMap::new();
        let mut cond: Option<bool> = None;
        for m in self.machines.values() {
            for (k, v) in &m.outputs {
                merged.insert(k.clone(), Value::String(v.clone()));
            }
            if let Some(c) = m.condition {
                cond = Some(cond.unwrap_or(true) && c);
            }
        }
        self.outputs = merged;
        self.condition = cond;
    }

    /// Machines whose part did not succeed (what a retry runs on again).
    pub fn failed_machines(&self) -> Vec<String> {
        self.machines
            .iter()
            .filter(|(_, m)| m.state != "succeeded")
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The step as expressions and `HERD_INPUT` see it.
    pub fn view(&self, status: &str, attempts: i64) -> Value {
        let machines: Map<String, Value> = self
            .machines
            .iter()
            .map(|(n, m)| {
                (
                    n.clone(),
                    json!({"status": m.state, "exit_code": m.exit_code, "outputs": m.outputs, "condition": m.condition}),
                )
            })
            .collect();
        json!({
            "status": status,
            "outputs": self.outputs,
            "condition": self.condition,
            "machines": machines,
            "attempts": attempts,
        })
    }
}
