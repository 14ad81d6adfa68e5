//! Machines: `GET /api/v1/agents`, `GET /api/v1/agents/{agent}`,
//! `POST /api/v1/agents/{agent}/labels` and `POST /api/v1/agents/{agent}/revoke`. `{agent}` is
//! a machine's name or id.

use std::collections::BTreeMap;

use herd_core::{Facts, Metrics};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A machine of the fleet, as its agent last reported it. The answer of every agents call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    /// The agent's id, given when it joined.
    pub id: String,
    /// The machine's name in the fleet (unique; what selectors and `herd` commands name).
    pub name: String,
    /// Whether the agent is connected now.
    pub online: bool,
    /// herd version the agent runs.
    pub version: String,
    /// Labels: those the agent reports, with operators' edits applied.
    pub labels: BTreeMap<String, String>,
    /// Where each of `labels` comes from: `agent` (declared by the agent, `--label`; it may
    /// change them when it starts again) or `server` (set through `herd agents label` or the
    /// API; no agent removes them).
    #[serde(default)]
    #[schema(required = true)]
    pub label_sources: BTreeMap<String, LabelSource>,
    /// Labels the agent declares beyond what its join token allowed: matched by no selector
    /// until an operator sets them (`herd agents label NAME k=v`).
    #[serde(default)]
    #[schema(required = true)]
    pub claims: BTreeMap<String, String>,
    /// What the machine reported about itself when it last connected.
    #[serde(deserialize_with = "crate::null_as_default")]
    pub facts: Facts,
    /// The machine's latest load; null until its first heartbeat with metrics.
    #[schema(required = true)]
    pub metrics: Option<Metrics>,
    /// When the agent joined.
    pub created_at: i64,
    /// When the server last heard from the agent; null if never.
    #[schema(required = true)]
    pub last_seen: Option<i64>,
    /// When the agent's credential was revoked; null while it may connect.
    #[schema(required = true)]
    pub revoked_at: Option<i64>,
}

/// Where a machine's label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// Declared by the machine's agent (`herd agent --label`).
    Agent,
    /// Set through `herd agents label` or the API: the server keeps it whatever the agent
    /// declares.
    Server,
}

/// The query of `GET /api/v1/agents`: which machines to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// A selector (`web-*`, `role=web & !web-3`, `ip=10.0.0.0/8`): only the machines it
    /// picks; every machine without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Revoked machines too (their `revoked_at` is set); default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
}

/// Label edits of `POST /api/v1/agents/{agent}/labels`: set some labels, remove others. A
/// removed label the agent reports stays removed until set again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct LabelEdit {
    /// Labels to set, `key: value` (keys of letters, digits, `_ . - /`; values without
    /// whitespace, control characters or any of `, & ! ( ) =`).
    #[schema(schema_with = label_map)]
    pub set: BTreeMap<String, String>,
    /// Keys of labels to remove.
    #[schema(schema_with = label_keys)]
    pub remove: Vec<String>,
}

/// `POST /api/v1/labels`: the same label edits on every machine a selector picks, in one
/// change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct BulkLabelEdit {
    /// A selector (`web-*`, `role=web`): the machines to edit (revoked ones are not).
    pub target: String,
    /// Labels to set, `key: value`.
    #[schema(schema_with = label_map)]
    pub set: BTreeMap<String, String>,
    /// Keys of labels to remove.
    #[schema(schema_with = label_keys)]
    pub remove: Vec<String>,
}

/// The schema of a list of label keys.
fn label_keys() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(herd_core::labels::KEY_PATTERN)),
        )
        .description(Some("Keys of labels to remove."))
        .build()
}

/// The schema of a map of labels: its keys and values follow the label syntax.
fn label_map() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(herd_core::labels::KEY_PATTERN)),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(herd_core::labels::VALUE_PATTERN)),
        ))
        .description(Some(
            "Labels to set, `key: value` (keys of letters, digits, `_ . - /`; values without whitespace, control characters or any of `, & ! ( ) =`).",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;
    use herd_core::Disk;

    fn agent() -> Agent {
        Agent {
            id: "0190f3a2b4c57d8e9f00112233445566".into(),
            name: "web-1".into(),
            online: true,
            version: "0.1.0".into(),
            labels: [("role".to_string(), "web".to_string())].into(),
            label_sources: [("role".to_string(), LabelSource::Agent)].into(),
            claims: [("zone".to_string(), "eu".to_string())].into(),
            facts: Facts {
                machine_id: "5f2c".into(),
                hostname: "web-1".into(),
                os: "debian".into(),
                os_name: "Debian GNU/Linux".into(),
                os_version: "12".into(),
                kernel: "6.1.0-18-amd64".into(),
                arch: "x86_64".into(),
                cpus: 4,
                memory_bytes: 8_589_934_592,
                disks: vec![Disk {
                    mount: "/".into(),
                    fs: "ext4".into(),
                    total_bytes: 2000,
                    available_bytes: 1500,
                }],
                ips: vec!["10.0.0.5".into()],
                macs: vec!["02:00:00:00:00:01".into()],
            },
            metrics: Some(Metrics {
                cpu_percent: 12.5,
                memory_used_bytes: 100,
                memory_total_bytes: 200,
                disk_used_bytes: 500,
                disk_total_bytes: 2000,
                load1: 0.5,
                load5: 0.75,
                load15: 0.25,
            }),
            created_at: 1_700_000_000_000,
            last_seen: Some(1_700_000_001_000),
            revoked_at: None,
        }
    }

    /// `agent_json` in the server: the row's fields, the effective labels, the facts and
    /// metrics the hub stored as JSON objects.
    #[test]
    fn agent_matches_the_server() {
        check(
            concat!(
                r#"{"claims":{"zone":"eu"},"created_at":1700000000000,"facts":{"arch":"x86_64","cpus":4,"#,
                r#""disks":[{"available_bytes":1500,"fs":"ext4","mount":"/","total_bytes":2000}],"#,
                r#""hostname":"web-1","ips":["10.0.0.5"],"kernel":"6.1.0-18-amd64","#,
                r#""machine_id":"5f2c","macs":["02:00:00:00:00:01"],"memory_bytes":8589934592,"#,
                r#""os":"debian","os_name":"Debian GNU/Linux","os_version":"12"},"#,
                r#""id":"0190f3a2b4c57d8e9f00112233445566","label_sources":{"role":"agent"},"#,
                r#""labels":{"role":"web"},"#,
                r#""last_seen":1700000001000,"metrics":{"cpu_percent":12.5,"#,
                r#""disk_total_bytes":2000,"disk_used_bytes":500,"load1":0.5,"load15":0.25,"#,
                r#""load5":0.75,"memory_total_bytes":200,"memory_used_bytes":100},"#,
                r#""name":"web-1","online":true,"revoked_at":null,"version":"0.1.0"}"#
            ),
            &agent(),
        );
        let revoked = Agent {
            online: false,
            labels: BTreeMap::new(),
            label_sources: BTreeMap::new(),
            metrics: None,
            last_seen: None,
            revoked_at: Some(1_700_000_002_000),
            ..agent()
        };
        let golden = crate::golden::canonical(&revoked);
        assert!(golden.contains(r#""labels":{}"#), "{golden}");
        assert!(golden.contains(r#""metrics":null"#), "{golden}");
        assert!(golden.contains(r#""revoked_at":1700000002000"#), "{golden}");
        check(&golden, &revoked);
    }

    /// Facts stored before the agent's first hello are `{}`; unreadable ones are answered as
    /// null. Both read as empty facts.
    #[test]
    fn missing_facts_read_as_empty() {
        for facts in ["{}", "null"] {
            let text = format!(
                r#"{{"created_at":1,"facts":{facts},"id":"a","labels":{{}},"last_seen":null,"metrics":null,"name":"n","online":false,"revoked_at":null,"version":""}}"#
            );
            let a: Agent = serde_json::from_str(&text).unwrap();
            assert_eq!(a.facts, Facts::default(), "{text}");
        }
    }

    #[test]
    fn label_edit_matches_the_server() {
        let edit = LabelEdit {
            set: [("tier".to_string(), "gold".to_string())].into(),
            remove: vec!["old".into()],
        };
        check(r#"{"remove":["old"],"set":{"tier":"gold"}}"#, &edit);
        // The server takes either part alone.
        let only_set: LabelEdit = serde_json::from_str(r#"{"set":{"a":"b"}}"#).unwrap();
        assert_eq!(only_set.remove, Vec::<String>::new());
        let only_remove: LabelEdit = serde_json::from_str(r#"{"remove":["a"]}"#).unwrap();
        assert!(only_remove.set.is_empty());
    }
}

/// The query of `GET /api/v1/fleet/summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// A selector: count the machines it picks too (what `herd run -t` would target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `GET /api/v1/fleet/summary`: counts of the fleet's machines (revoked ones not counted),
/// answered from the server's index without listing them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetSummary {
    /// Every machine.
    pub total: u64,
    /// Those connected now.
    pub online: u64,
    /// Those the query's selector picks (every machine without one).
    pub matched: u64,
    /// Those of `matched` connected now.
    pub matched_online: u64,
}
