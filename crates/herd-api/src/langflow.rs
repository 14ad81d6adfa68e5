//! LangFlow: `/api/v1/langflow/sources` (servers and their API keys), `/api/v1/langflow/sync`,
//! `/api/v1/langflow/flows` (what syncs found) and their runs.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /api/v1/langflow/sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewSource {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    /// LangFlow's base URL (`http://host:7860`).
    pub url: String,
    /// An API key of LangFlow (kept encrypted; never answered).
    pub api_key: String,
}

/// A LangFlow source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    pub name: String,
    pub url: String,
    pub created_by: String,
    pub created_at: i64,
    /// The last sync (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<i64>,
    /// Flows found upstream by the last sync (removed ones not counted).
    pub flows: u64,
}

/// `POST /api/v1/langflow/sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Only this source (default: every source).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub source: Option<String>,
}

/// What syncing one source did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncReport {
    pub source: String,
    pub added: u64,
    pub updated: u64,
    /// Flows no longer found upstream (kept, marked removed).
    pub removed: u64,
    pub unchanged: u64,
    /// Why the source could not be listed (nothing changed then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/langflow/flows` and `…/flows/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FlowsQuery {
    /// Only this source (a name found on several sources needs it).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub source: Option<String>,
}

/// A parameter of a component that a tweak may set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowParam {
    pub name: String,
    pub display_name: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub advanced: bool,
}

/// A component of a flow (its id is the tweak key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowComponent {
    pub id: String,
    pub kind: String,
    pub display_name: String,
    pub params: Vec<FlowParam>,
}

/// A flow of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LangFlow {
    pub source: String,
    /// LangFlow's id.
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// When a sync no longer found it upstream (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<i64>,
    pub synced_at: i64,
    /// Its input and output components, then every component (in `GET …/flows/{name}`).
    #[serde(default)]
    pub inputs: Vec<FlowComponent>,
    #[serde(default)]
    pub outputs: Vec<FlowComponent>,
    #[serde(default)]
    pub components: Vec<FlowComponent>,
}

/// The body of `POST /api/v1/langflow/flows/{name}/runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RunFlow {
    /// The chat input's text.
    pub input: String,
    /// Tweaks, each `Component.param=value` (the component by id, type or name; the value
    /// JSON when it reads as JSON).
    pub tweaks: Vec<String>,
    /// LangFlow's session id (chat memory).
    pub session: Option<String>,
    /// The machine the call is made from (a selector; default the server's own agent).
    pub targets: Vec<String>,
    /// The call's budget, e.g. `2m` (default 5 minutes).
    pub timeout: Option<String>,
    /// The source, when the name is found on several.
    pub source: Option<String>,
}
