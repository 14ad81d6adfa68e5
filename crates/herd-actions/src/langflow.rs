//! LangFlow's REST API (1.x): checking a source (its URL and API key), listing its flows with
//! a summary of their components, and running a flow with an input text and tweaks.
//!
//! The wire, as LangFlow 1.13 speaks it (held to it by `tests/langflow.rs` against a real
//! LangFlow):
//! - every call carries `x-api-key: KEY`; a refused key answers 403 (`{"detail": "Invalid API
//!   key"}`, `"Invalid or missing API key"` on `/run`), some setups 401: both are
//!   [`LangflowError::Unauthorized`];
//! - `check`: `GET /api/v1/users/whoami` (200 with the key's user);
//! - `list_flows`: `GET /api/v1/flows/?get_all=true&remove_example_flows=true` answers a JSON
//!   array of flows (`id, name, description, data{nodes,edges}, endpoint_name, updated_at,
//!   is_component, …`; a paginated `{"items": [...]}` is read too); `data` is an object, or a
//!   string holding one; saved components (`is_component`) are left out;
//! - `run_flow`: `POST /api/v1/run/{flow id or endpoint name}?stream=false` with
//!   `{input_value?, input_type:"chat", output_type:"chat", tweaks, session_id?}`
//!   (`input_value` left out when the input is empty: LangFlow refuses one beside a tweak of the
//!   chat input's `input_value`, with a 400); the answer is
//!   `{session_id, outputs:[{inputs, outputs:[ResultData…]}]}` and the text is at
//!   `outputs[0].outputs[i].results.message.text` (also `…results.message.data.text`,
//!   `…messages[0].message`, `…artifacts.message`, `…outputs.message.message`);
//! - errors are 4xx/5xx with `{"detail": …}`: a string (404 `Flow identifier X not found`, 400),
//!   an object (422 refused tweaks: `{error, code, message, fields}`), a list (422 validation:
//!   `[{loc, msg}]`), or, for a flow that failed while running, a 500 whose `detail` is a
//!   string holding `{"message": "Error running graph: …", …}` ([`LangflowError::FlowError`]).
//!
//! Calls go through the [`Actions`]' per-host breaker and token bucket like every other call
//! out. `check` and `list_flows` are retried (connection errors, 429 and 5xx, with jittered
//! backoff and `Retry-After`); `run_flow` only when the connection could not be made (nothing
//! was sent), never once the request may have reached LangFlow. Every call is bounded by its
//! timeout and every body by a cap.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use herd_core::actions::Retry;
use herd_core::format_duration;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{chain, host_key, jittered, read_capped, retry_after};
use crate::{Actions, Outcome};

/// A LangFlow server: its base URL (`http://host:7860`, or with a path prefix) and an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub api_key: String,
}

/// One flow of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowInfo {
    pub id: String,
    pub name: String,
    pub description: String,
    pub endpoint_name: Option<String>,
    /// As LangFlow wrote it (ISO 8601).
    pub updated_at: Option<String>,
    pub summary: FlowSummary,
    /// The flow's graph (`{nodes, edges, …}`), always an object (`Null` when it had none).
    /// Template fields marked `password` may hold secrets: keep it where secrets may be.
    pub data: Value,
}

/// The components of a flow, in the order of its nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSummary {
    /// Its input components (Chat Input, Text Input, …).
    pub inputs: Vec<Component>,
    /// Its output components (Chat Output, Text Output, …).
    pub outputs: Vec<Component>,
    /// Every component, inputs and outputs included (notes and groups are not components).
    pub components: Vec<Component>,
}

/// One component (node) of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The node id, which is the tweak key: `ChatInput-abc12`.
    pub id: String,
    /// Its component type: `ChatInput`.
    pub kind: String,
    /// `Chat Input`.
    pub display_name: String,
    /// Its parameters that a tweak may set (shown fields; not `code`).
    pub params: Vec<Param>,
}

/// One parameter of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// The tweak's name for it: `input_value`.
    pub name: String,
    /// `Input Text`.
    pub display_name: String,
    /// LangFlow's field type: `str`, `bool`, `int`, `dict`, `file`, …
    pub kind: String,
    /// The flow's value, shortened to 60 characters; `(secret)` for a password field with a
    /// value; `None` when empty.
    pub value: Option<String>,
    /// Shown only among a component's advanced settings in LangFlow.
    pub advanced: bool,
}

/// `{component id: {parameter: value}}`, as LangFlow's `tweaks`.
pub type Tweaks = BTreeMap<String, BTreeMap<String, Value>>;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The flow's id or endpoint name.
    pub flow: String,
    /// The chat input's text; empty: none is sent, so the flow's own (or a tweak's) applies
    /// (LangFlow refuses an input together with a tweak of the chat input's `input_value`).
    pub input: String,
    pub tweaks: Tweaks,
    /// LangFlow's session (chat memory); LangFlow uses the flow's id when absent.
    pub session_id: Option<String>,
    /// The budget of the whole call.
    pub timeout: Duration,
}

/// What a run answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAnswer {
    /// The text of the first output component that has one.
    pub text: Option<String>,
    pub session_id: Option<String>,
    /// The whole answer.
    pub response: Value,
}

/// Why a call to LangFlow failed. Its `Display` is one line: what failed, then what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LangflowError {
    /// The source's URL or key cannot be used as given.
    Invalid(String),
    /// No connection (refused, DNS, TLS), or it broke.
    Unreachable(String),
    /// No answer within the call's timeout.
    Timeout(Duration),
    /// 401/403: the API key was refused (LangFlow's text).
    Unauthorized(String),
    /// Any other non-2xx answer, with LangFlow's own text.
    Status { status: u16, detail: String },
    /// The flow ran and failed (LangFlow's text).
    FlowError(String),
    /// A 2xx answer herd cannot read.
    BadAnswer(String),
    /// The host's circuit breaker is open (the line says since when and the next probe).
    BreakerOpen(String),
    /// The host's rate limit has no token within the call's time.
    RateLimited(String),
}

impl fmt::Display for LangflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LangflowError::Invalid(why) => {
                write!(f, "{why} — fix the source's URL or API key")
            }
            LangflowError::Unreachable(why) => write!(
                f,
                "cannot reach LangFlow: {why} — check the source's URL and that LangFlow runs"
            ),
            LangflowError::Timeout(d) => write!(
                f,
                "LangFlow did not answer within {} — check that it runs, or allow a longer timeout",
                format_duration(*d)
            ),
            LangflowError::Unauthorized(detail) => write!(
                f,
                "the API key was refused ({detail}) — create an API key in LangFlow (Settings → \
                 API Keys) and set it on the source"
            ),
            LangflowError::Status { status, detail } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                let hint = match status {
                    404 => "check the URL and the flow's id or endpoint name (sync the source)",
                    400 | 422 => "check the input and the tweaks",
                    429 => "LangFlow is busy: try again later",
                    _ => "see LangFlow's log",
                };
                write!(f, "LangFlow answered {status} {reason}: {detail} — {hint}")
            }
            LangflowError::FlowError(detail) => {
                write!(f, "the flow failed: {detail} — see the flow in LangFlow")
            }
            LangflowError::BadAnswer(why) => write!(
                f,
                "LangFlow's answer cannot be read: {why} — check that the URL points at LangFlow 1.x"
            ),
            LangflowError::BreakerOpen(line) => {
                write!(
                    f,
                    "{line} (LangFlow failed repeatedly) — wait for the probe"
                )
            }
            LangflowError::RateLimited(line) => write!(f, "{line} — try again later"),
        }
    }
}

impl std::error::Error for LangflowError {}

/// The exit code of a flow run's task (`herd helper langflow`) when LangFlow failed —
/// unreachable, timeout, 5xx, busy — rather than the flow or the request: what the source's
/// breaker counts.
pub const EXIT_LANGFLOW_FAILED: i32 = 75;
/// The environment variable a flow run's task reads the source's API key from.
pub const KEY_ENV: &str = "HERD_LANGFLOW_KEY";

/// Most bytes of a run's or a check's answer read.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Most bytes of a flow listing read (every flow with its graph).
pub const MAX_LISTING: usize = 64 * 1024 * 1024;

/// Retries of `check` and `list_flows` (connection errors, 429, 5xx).
const IDEMPOTENT_RETRY: Retry = Retry {
    count: 2,
    backoff_ms: 500,
    max_backoff_ms: 5_000,
};

/// Retries of `run_flow`: only a connection that could not be made.
const RUN_RETRY: Retry = Retry {
    count: 1,
    backoff_ms: 300,
    max_backoff_ms: 1_000,
};

/// Proves the URL and the key work with one cheap authenticated call
/// (`GET /api/v1/users/whoami`).
pub async fn check(
    actions: &Actions,
    source: &Source,
    timeout: Duration,
) -> Result<(), LangflowError> {
    let url = endpoint(source, &["users", "whoami"], None)?;
    let body = call(actions, source, Call::get(url, MAX_ANSWER), timeout).await?;
    let v = json(&body)?;
    if v.is_object() {
        Ok(())
    } else {
        Err(LangflowError::BadAnswer(format!(
            "users/whoami answered {}, not a user",
            kind_of(&v)
        )))
    }
}

/// Every flow of the key's user (LangFlow's examples and saved components left out).
pub async fn list_flows(
    actions: &Actions,
    source: &Source,
    timeout: Duration,
) -> Result<Vec<FlowInfo>, LangflowError> {
    let url = endpoint(
        source,
        &["flows", ""],
        Some("get_all=true&remove_example_flows=true"),
    )?;
    let body = call(actions, source, Call::get(url, MAX_LISTING), timeout).await?;
    parse_flows(&json(&body)?)
}

/// Runs a flow (not streamed) and returns its answer.
pub async fn run_flow(
    actions: &Actions,
    source: &Source,
    req: &RunRequest,
) -> Result<RunAnswer, LangflowError> {
    if req.flow.is_empty() {
        return Err(LangflowError::Invalid("no flow named to run".to_string()));
    }
    let url = endpoint(source, &["run", &req.flow], Some("stream=false"))?;
    let mut body = serde_json::Map::new();
    if !req.input.is_empty() {
        body.insert("input_value".into(), Value::String(req.input.clone()));
    }
    body.insert("input_type".into(), "chat".into());
    body.insert("output_type".into(), "chat".into());
    body.insert("tweaks".into(), serde_json::json!(req.tweaks));
    if let Some(sid) = &req.session_id {
        body.insert("session_id".into(), Value::String(sid.clone()));
    }
    let call_ = Call {
        method: reqwest::Method::POST,
        url,
        body: Some(Value::Object(body).to_string()),
        cap: MAX_ANSWER,
        retry: RUN_RETRY,
        idempotent: false,
    };
    let answer = call(actions, source, call_, req.timeout).await?;
    parse_run(json(&answer)?)
}

/// `Component.param=value` → (component, param, value). The value is JSON when it parses as
/// JSON (`42`, `true`, `{"a":1}`, `"quoted"`), else the text as it is. The component is the
/// part before the last `.` left of the first `=`.
pub fn parse_tweak(raw: &str) -> Result<(String, String, Value), String> {
    let form = "a tweak is COMPONENT.PARAM=VALUE (COMPONENT: a component's id, type or name)";
    let Some((left, value)) = raw.split_once('=') else {
        return Err(format!("tweak {raw:?} has no '=': {form}"));
    };
    let Some((component, param)) = left.rsplit_once('.') else {
        return Err(format!("tweak {raw:?} has no '.' before '=': {form}"));
    };
    let (component, param) = (component.trim(), param.trim());
    if component.is_empty() || param.is_empty() {
        return Err(format!(
            "tweak {raw:?} names no component or no parameter: {form}"
        ));
    }
    let value =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((component.to_string(), param.to_string(), value))
}

/// The tweaks of parsed `(component, param, value)` triples, keyed by node id: a component is
/// named by its id, or (when only one matches) its type or display name, case and spaces
/// ignored; a parameter by its name or display name. `Err` names what is unknown, the closest
/// known name and the known ones.
pub fn resolve_tweaks(
    summary: &FlowSummary,
    raw: &[(String, String, Value)],
) -> Result<Tweaks, String> {
    let mut out = Tweaks::new();
    for (component, param, value) in raw {
        let c = find_component(summary, component)?;
        let p = find_param(c, param)?;
        let slot = out.entry(c.id.clone()).or_default();
        if slot.insert(p.name.clone(), value.clone()).is_some() {
            return Err(format!("tweak {}.{} is given twice", c.id, p.name));
        }
    }
    Ok(out)
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn find_component<'a>(summary: &'a FlowSummary, name: &str) -> Result<&'a Component, String> {
    let all = &summary.components;
    if let Some(c) = all.iter().find(|c| c.id == name) {
        return Ok(c);
    }
    let lower = name.to_lowercase();
    if let Some(c) = all.iter().find(|c| c.id.to_lowercase() == lower) {
        return Ok(c);
    }
    let key = squash(name);
    let matching: Vec<&Component> = all
        .iter()
        .filter(|c| squash(&c.kind) == key || squash(&c.display_name) == key)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            let known: Vec<String> = all.iter().map(component_shown).collect();
            let names = all
                .iter()
                .flat_map(|c| [c.id.as_str(), c.kind.as_str(), c.display_name.as_str()]);
            Err(format!(
                "the flow has no component {name:?}{} — its components: {}",
                did_you_mean(name, names),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
        many => Err(format!(
            "{name:?} names {} components: {} — name one by its id",
            many.len(),
            many.iter()
                .map(|c| component_shown(c))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn component_shown(c: &Component) -> String {
    if c.display_name.is_empty() {
        c.id.clone()
    } else {
        format!("{} ({})", c.id, c.display_name)
    }
}

fn find_param<'a>(c: &'a Component, name: &str) -> Result<&'a Param, String> {
    if let Some(p) = c.params.iter().find(|p| p.name == name) {
        return Ok(p);
    }
    let key = squash(name);
    if let Some(p) = c
        .params
        .iter()
        .find(|p| squash(&p.name) == key || squash(&p.display_name) == key)
    {
        return Ok(p);
    }
    let names: Vec<&str> = c.params.iter().map(|p| p.name.as_str()).collect();
    Err(format!(
        "component {} has no parameter {name:?}{} — its parameters: {}",
        c.id,
        did_you_mean(name, names.iter().copied()),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// `, did you mean "X"?` for the closest of `known` when it is close enough, else nothing.
fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let lower = name.to_lowercase();
    let best = known
        .into_iter()
        .filter(|k| !k.is_empty())
        .map(|k| (levenshtein(&lower, &k.to_lowercase()), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= (name.chars().count() / 3).max(2) => {
            format!(" (did you mean {k:?}?)")
        }
        _ => String::new(),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The summary of a flow's graph (`data`): its components in node order.
pub fn summarize(data: &Value) -> FlowSummary {
    let mut s = FlowSummary::default();
    let Some(nodes) = data.get("nodes").and_then(Value::as_array) else {
        return s;
    };
    for node in nodes {
        let Some(c) = component(node) else { continue };
        match io_role(node, &c.kind) {
            Some(Role::Input) => s.inputs.push(c.clone()),
            Some(Role::Output) => s.outputs.push(c.clone()),
            None => {}
        }
        s.components.push(c);
    }
    s
}

enum Role {
    Input,
    Output,
}

/// Whether a node is one of LangFlow's inputs or outputs (`lfx.components.input_output.…`,
/// else by its type's name).
fn io_role(node: &Value, kind: &str) -> Option<Role> {
    let module = node
        .pointer("/data/node/metadata/module")
        .and_then(Value::as_str)
        .unwrap_or("");
    let io = module.contains("input_output")
        || matches!(
            kind,
            "ChatInput" | "TextInput" | "ChatOutput" | "TextOutput"
        );
    if !io {
        None
    } else if kind.ends_with("Input") {
        Some(Role::Input)
    } else if kind.ends_with("Output") {
        Some(Role::Output)
    } else {
        None
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A node as a component; `None` for notes and nodes without a template.
fn component(node: &Value) -> Option<Component> {
    if node.get("type").and_then(Value::as_str) == Some("noteNode") {
        return None;
    }
    let id = str_at(node, "/id").or_else(|| str_at(node, "/data/id"))?;
    let template = node.pointer("/data/node/template")?.as_object()?;
    let kind = str_at(node, "/data/type")
        .or_else(|| str_at(node, "/data/node/metadata/component_class_name"))
        .or_else(|| id.rsplit_once('-').map(|(k, _)| k))
        .unwrap_or(id);
    let display_name = str_at(node, "/data/node/display_name")
        .or_else(|| str_at(node, "/data/display_name"))
        .unwrap_or(kind);
    let mut params = Vec::new();
    // LangFlow's own order of fields, then any others.
    let mut names: Vec<&str> = node
        .pointer("/data/node/field_order")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for k in template.keys() {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    for name in names {
        let Some(field) = template.get(name).and_then(Value::as_object) else {
            continue;
        };
        let kind = field.get("type").and_then(Value::as_str).unwrap_or("");
        if name == "code" || name.starts_with('_') || kind == "code" {
            continue;
        }
        if field.get("show").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let secret = field.get("password").and_then(Value::as_bool) == Some(true);
        let value = match field.get("value") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(_) if secret => Some("(secret)".to_string()),
            Some(Value::String(s)) => Some(shorten(s, 60)),
            Some(v) => Some(shorten(&v.to_string(), 60)),
        };
        params.push(Param {
            name: name.to_string(),
            display_name: field
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string(),
            kind: kind.to_string(),
            value,
            advanced: field.get("advanced").and_then(Value::as_bool) == Some(true),
        });
    }
    Some(Component {
        id: id.to_string(),
        kind: kind.to_string(),
        display_name: display_name.to_string(),
        params,
    })
}

/// `s` on one line, at most `max` characters (`…` marks a cut).
fn shorten(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        let mut cut: String = one.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn json(body: &[u8]) -> Result<Value, LangflowError> {
    serde_json::from_slice(body).map_err(|e| {
        LangflowError::BadAnswer(format!(
            "not JSON ({e}): {}",
            shorten(&String::from_utf8_lossy(&body[..body.len().min(200)]), 120)
        ))
    })
}

/// A flow listing: a JSON array, or a page `{"items": [...]}`.
pub fn parse_flows(v: &Value) -> Result<Vec<FlowInfo>, LangflowError> {
    let items = match v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(LangflowError::BadAnswer(
                    "the flow listing is an object without items".to_string(),
                ));
            }
        },
        other => {
            return Err(LangflowError::BadAnswer(format!(
                "the flow listing is {}, not a list",
                kind_of(other)
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.get("is_component").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let Some(id) = item
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Err(LangflowError::BadAnswer(format!(
                "a flow of the listing has no id: {}",
                shorten(&item.to_string(), 120)
            )));
        };
        let text = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let data = match item.get("data") {
            Some(Value::Object(o)) => Value::Object(o.clone()),
            // Some LangFlow versions and proxies hand the graph over as a JSON string.
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => Value::Null,
            },
            _ => Value::Null,
        };
        out.push(FlowInfo {
            id: id.to_string(),
            name: text("name").unwrap_or_else(|| id.to_string()),
            description: text("description").unwrap_or_default(),
            endpoint_name: text("endpoint_name"),
            updated_at: text("updated_at"),
            summary: summarize(&data),
            data,
        });
    }
    Ok(out)
}

/// A run's answer: its text and session, or the error a component reported inside it.
pub fn parse_run(response: Value) -> Result<RunAnswer, LangflowError> {
    if !response.is_object() {
        return Err(LangflowError::BadAnswer(format!(
            "the run answered {}, not an object",
            kind_of(&response)
        )));
    }
    let results: Vec<&Value> = response
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("outputs").and_then(Value::as_array))
        .flatten()
        .filter(|r| r.is_object())
        .collect();
    if let Some(error) = results.iter().find_map(|r| reported_error(r)) {
        return Err(LangflowError::FlowError(error));
    }
    let text = results.iter().find_map(|r| result_text(r));
    let session_id = response
        .get("session_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(RunAnswer {
        text,
        session_id,
        response,
    })
}

/// The text of one output component's result, from where LangFlow versions put it.
fn result_text(r: &Value) -> Option<String> {
    const PLACES: [&str; 6] = [
        "/results/message/text",
        "/results/message/data/text",
        "/messages/0/message",
        "/artifacts/message",
        "/outputs/message/message",
        "/results/text/text",
    ];
    if let Some(s) = PLACES
        .iter()
        .find_map(|p| r.pointer(p).and_then(Value::as_str))
    {
        return Some(s.to_string());
    }
    // Another output name: the first result that holds a text.
    r.get("results")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|o| o.values())
        .find_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            v => v
                .get("text")
                .or_else(|| v.pointer("/data/text"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
}

/// The error an output component's result reports (a message flagged `error`).
fn reported_error(r: &Value) -> Option<String> {
    let message = r.pointer("/results/message")?;
    let flagged = message.get("error").and_then(Value::as_bool) == Some(true)
        || message.pointer("/data/error").and_then(Value::as_bool) == Some(true)
        || message.get("category").and_then(Value::as_str) == Some("error");
    if !flagged {
        return None;
    }
    let text = message
        .get("text")
        .or_else(|| message.pointer("/data/text"))
        .and_then(Value::as_str)
        .unwrap_or("the flow reported an error without a text");
    let component = r
        .get("component_display_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = shorten(text, 500);
    Some(if component.is_empty() {
        text
    } else {
        format!("{component}: {text}")
    })
}

/// LangFlow's own text of an error answer: its `detail` (a string, a string holding
/// `{"message": …}`, an object with `message`, a validation list), else the body itself.
pub fn detail_text(status: u16, body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("detail") {
            Some(d) => detail_value(d),
            None => message_of(&v).unwrap_or_else(|| v.to_string()),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = shorten(&text, 500);
    if text.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no text")
            .to_string()
    } else {
        text
    }
}

fn detail_value(d: &Value) -> String {
    match d {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner) => message_of(&inner).unwrap_or_else(|| s.clone()),
            Err(_) => s.clone(),
        },
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let msg = i
                    .get("msg")
                    .and_then(Value::as_str)
                    .map_or_else(|| i.to_string(), str::to_string);
                let loc: Vec<String> = i
                    .get("loc")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                    .collect();
                if loc.is_empty() {
                    msg
                } else {
                    format!("{}: {msg}", loc.join("."))
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => message_of(other).unwrap_or_else(|| other.to_string()),
    }
}

/// `message` (with `fields` and `suggestion` when present), else `error`, of an object.
fn message_of(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let mut text = o
        .get("message")
        .or_else(|| o.get("error"))
        .or_else(|| o.get("detail"))
        .and_then(Value::as_str)?
        .trim()
        .to_string();
    if let Some(fields) = o.get("fields").and_then(Value::as_array) {
        let names: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() {
            text.push_str(&format!(" (fields: {})", names.join(", ")));
        }
    }
    if let Some(s) = o
        .get("suggestion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        text.push_str(&format!(" ({s})"));
    }
    Some(text)
}

/// The flow failure inside a run's 500 (`detail` is a string holding `{"message": …}`).
fn flow_failure(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let inner: Value = serde_json::from_str(v.get("detail")?.as_str()?).ok()?;
    message_of(&inner).map(|m| shorten(&m, 500))
}

/// `source`'s URL with `/api/v1/SEGMENTS…` after its path, and `query`.
fn endpoint(
    source: &Source,
    segments: &[&str],
    query: Option<&str>,
) -> Result<url::Url, LangflowError> {
    let mut url = url::Url::parse(source.url.trim()).map_err(|e| {
        LangflowError::Invalid(format!("the URL {:?} does not parse: {e}", source.url))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(LangflowError::Invalid(format!(
            "the URL {:?} is not an http:// or https:// URL with a host",
            source.url
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url.path_segments_mut().map_err(|()| {
            LangflowError::Invalid(format!("the URL {:?} cannot take a path", source.url))
        })?;
        path.pop_if_empty().extend(["api", "v1"]).extend(segments);
    }
    url.set_query(query);
    Ok(url)
}

/// One request to LangFlow.
struct Call {
    method: reqwest::Method,
    url: url::Url,
    body: Option<String>,
    cap: usize,
    retry: Retry,
    /// Whether a request that may have reached LangFlow may be sent again.
    idempotent: bool,
}

impl Call {
    fn get(url: url::Url, cap: usize) -> Call {
        Call {
            method: reqwest::Method::GET,
            url,
            body: None,
            cap,
            retry: IDEMPOTENT_RETRY,
            idempotent: true,
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Answer {
        status: u16,
        body: Vec<u8>,
        truncated: bool,
        retry_after: Option<Duration>,
    },
    /// Not connected: nothing was sent.
    NotConnected(String),
    /// Broke after the request may have been sent.
    Broken(String),
    TimedOut,
}

/// Sends `call` through the host's breaker and bucket, retrying as it allows; the 2xx body.
async fn call(
    actions: &Actions,
    source: &Source,
    call: Call,
    timeout: Duration,
) -> Result<Vec<u8>, LangflowError> {
    let mut attempts = 0u32;
    let r = attempt_all(actions, source, &call, timeout, &mut attempts).await;
    actions.count(r.is_ok(), attempts);
    r
}

async fn attempt_all(
    actions: &Actions,
    source: &Source,
    call: &Call,
    timeout: Duration,
    attempts: &mut u32,
) -> Result<Vec<u8>, LangflowError> {
    let key = reqwest::header::HeaderValue::from_str(source.api_key.trim()).map_err(|_| {
        LangflowError::Invalid("the API key holds characters a header cannot carry".to_string())
    })?;
    if key.is_empty() {
        return Err(LangflowError::Invalid(
            "the source has no API key".to_string(),
        ));
    }
    let client = actions.client().map_err(LangflowError::Unreachable)?;
    let host = host_key(&call.url);
    let rate = actions.config().default_rate;
    let deadline = Instant::now() + timeout;
    loop {
        let permit = actions.admit(&host).map_err(LangflowError::BreakerOpen)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(line) = actions.take_token(&host, rate, remaining).await {
            permit.release();
            return Err(LangflowError::RateLimited(line));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            permit.release();
            return Err(LangflowError::Timeout(timeout));
        }
        *attempts += 1;
        let mut req = client
            .request(call.method.clone(), call.url.clone())
            .timeout(remaining)
            .header("x-api-key", key.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let attempt = match tokio::time::timeout(remaining, send(req, call.cap)).await {
            Ok(a) => a,
            Err(_) => Attempt::TimedOut,
        };
        // Why this attempt failed, and whether another may go.
        let (error, may_retry, wait_asked) = match attempt {
            Attempt::TimedOut => {
                permit.report(Outcome::Failed);
                return Err(LangflowError::Timeout(timeout));
            }
            Attempt::NotConnected(why) => {
                permit.report(Outcome::Failed);
                (LangflowError::Unreachable(why), true, None)
            }
            Attempt::Broken(why) => {
                permit.report(Outcome::Failed);
                let error = if call.idempotent {
                    LangflowError::Unreachable(why)
                } else {
                    LangflowError::Unreachable(format!(
                        "{why} (after the request was sent: the flow may have run)"
                    ))
                };
                (error, call.idempotent, None)
            }
            Attempt::Answer {
                status,
                body,
                truncated,
                retry_after,
            } => {
                let flow_failed = !call.idempotent && status == 500;
                let flow_failure = if flow_failed {
                    flow_failure(&body)
                } else {
                    None
                };
                let transient = (status == 429 || status >= 500) && flow_failure.is_none();
                // A flow that failed is LangFlow working: it does not count against the host.
                permit.report(if transient {
                    Outcome::Failed
                } else {
                    Outcome::Healthy
                });
                if (200..300).contains(&status) {
                    if truncated {
                        return Err(LangflowError::BadAnswer(format!(
                            "the answer is over {} bytes",
                            call.cap
                        )));
                    }
                    return Ok(body);
                }
                if let Some(why) = flow_failure {
                    return Err(LangflowError::FlowError(why));
                }
                let detail = detail_text(status, &body);
                if status == 401 || status == 403 {
                    return Err(LangflowError::Unauthorized(detail));
                }
                let error = LangflowError::Status { status, detail };
                (error, transient && call.idempotent, retry_after)
            }
        };
        let n = *attempts;
        if !may_retry || n > call.retry.count {
            return Err(error);
        }
        let wait = match wait_asked {
            Some(asked) if asked > Duration::from_millis(call.retry.max_backoff_ms) => {
                return Err(error);
            }
            Some(asked) => asked,
            None => jittered(&call.retry, n),
        };
        if wait >= deadline.saturating_duration_since(Instant::now()) {
            return Err(error);
        }
        tracing::debug!(url = %call.url, attempt = n, error = %error, "langflow: retrying");
        tokio::time::sleep(wait).await;
    }
}

async fn send(req: reqwest::RequestBuilder, cap: usize) -> Attempt {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Attempt::TimedOut,
        Err(e) if e.is_connect() => return Attempt::NotConnected(chain(&e)),
        Err(e) => return Attempt::Broken(chain(&e)),
    };
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    match read_capped(resp, cap).await {
        Ok((body, truncated)) => Attempt::Answer {
            status,
            body,
            truncated,
            retry_after,
        },
        Err(e) if e.is_timeout() => Attempt::TimedOut,
        Err(e) => Attempt::Broken(chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> FlowSummary {
        let data = json!({"nodes": [
            {"id": "ChatInput-a1", "type": "genericNode", "data": {"id": "ChatInput-a1", "type": "ChatInput",
              "node": {"display_name": "Chat Input", "field_order": ["input_value", "sender_name"],
                       "metadata": {"module": "lfx.components.input_output.chat.ChatInput"},
                       "template": {"_type": "Component",
                         "code": {"type": "code", "value": "class X: ..."},
                         "input_value": {"type": "str", "value": "", "display_name": "Input Text", "advanced": false},
                         "sender_name": {"type": "str", "value": "User", "display_name": "Sender Name", "advanced": true},
                         "hidden": {"type": "str", "show": false, "value": "x"}}}}},
            {"id": "note-1", "type": "noteNode", "data": {"node": {"template": {}}}},
            {"id": "OpenAIModel-b2", "type": "genericNode", "data": {"id": "OpenAIModel-b2", "type": "OpenAIModel",
              "node": {"display_name": "OpenAI", "template": {
                 "api_key": {"type": "str", "password": true, "value": "sk-secret", "display_name": "OpenAI API Key"},
                 "temperature": {"type": "float", "value": 0.1, "display_name": "Temperature"}}}}},
            {"id": "ChatOutput-c3", "type": "genericNode", "data": {"id": "ChatOutput-c3", "type": "ChatOutput",
              "node": {"display_name": "Chat Output", "template": {
                 "sender_name": {"type": "str", "value": "AI", "display_name": "Sender Name"}}}}},
            {"id": "ChatOutput-d4", "type": "genericNode", "data": {"id": "ChatOutput-d4", "type": "ChatOutput",
              "node": {"display_name": "Chat Output", "template": {
                 "sender_name": {"type": "str", "value": "AI", "display_name": "Sender Name"}}}}}
        ], "edges": []});
        summarize(&data)
    }

    #[test]
    fn a_graph_is_summarized_without_notes_code_hidden_fields_or_secrets() {
        let s = summary();
        let ids: Vec<&str> = s.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "ChatInput-a1",
                "OpenAIModel-b2",
                "ChatOutput-c3",
                "ChatOutput-d4"
            ]
        );
        assert_eq!(s.inputs.len(), 1);
        assert_eq!(s.outputs.len(), 2);
        let ci = &s.inputs[0];
        assert_eq!(
            (ci.kind.as_str(), ci.display_name.as_str()),
            ("ChatInput", "Chat Input")
        );
        let names: Vec<&str> = ci.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["input_value", "sender_name"]);
        assert_eq!(ci.params[0].value, None);
        assert!(ci.params[1].advanced);
        let llm = &s.components[1];
        assert_eq!(llm.params[0].value.as_deref(), Some("(secret)"));
        assert_eq!(llm.params[1].value.as_deref(), Some("0.1"));
    }

    #[test]
    fn tweaks_parse_json_values_else_text() {
        let t = |s: &str| parse_tweak(s).unwrap();
        assert_eq!(
            t("ChatInput-a1.input_value=hi"),
            ("ChatInput-a1".into(), "input_value".into(), json!("hi"))
        );
        assert_eq!(t("OpenAI.temperature=0.5").2, json!(0.5));
        assert_eq!(t("X.flag=true").2, json!(true));
        assert_eq!(t("X.obj={\"a\":[1]}").2, json!({"a": [1]}));
        assert_eq!(t("X.s=\"42\"").2, json!("42"));
        assert_eq!(t("X.s=a=b").2, json!("a=b"));
        assert_eq!(t("X.s=").2, json!(""));
        assert_eq!(t("My.Comp.p=1").0, "My.Comp");
        assert!(
            parse_tweak("nodot=1")
                .unwrap_err()
                .contains("COMPONENT.PARAM=VALUE")
        );
        assert!(parse_tweak("X.p").unwrap_err().contains("no '='"));
        assert!(parse_tweak(".p=1").is_err());
        assert!(parse_tweak("X.=1").is_err());
    }

    #[test]
    fn tweaks_resolve_by_id_kind_or_name_with_did_you_mean() {
        let s = summary();
        let raw = |v: &[&str]| -> Vec<(String, String, Value)> {
            v.iter().map(|r| parse_tweak(r).unwrap()).collect()
        };
        let got = resolve_tweaks(
            &s,
            &raw(&[
                "chat input.Input Text=hello",
                "OpenAIModel.temperature=1",
                "ChatOutput-c3.sender_name=herd",
            ]),
        )
        .unwrap();
        assert_eq!(got["ChatInput-a1"]["input_value"], json!("hello"));
        assert_eq!(got["OpenAIModel-b2"]["temperature"], json!(1));
        assert_eq!(got["ChatOutput-c3"]["sender_name"], json!("herd"));

        let e = resolve_tweaks(&s, &raw(&["ChatOutput.sender_name=x"])).unwrap_err();
        assert!(
            e.contains("names 2 components")
                && e.contains("ChatOutput-c3")
                && e.contains("by its id"),
            "{e}"
        );
        let e = resolve_tweaks(&s, &raw(&["ChatInptu.input_value=x"])).unwrap_err();
        assert!(
            e.contains("did you mean \"ChatInput\"") && e.contains("ChatInput-a1 (Chat Input)"),
            "{e}"
        );
        let e = resolve_tweaks(&s, &raw(&["ChatInput.input_valeu=x"])).unwrap_err();
        assert!(
            e.contains("did you mean \"input_value\"") && e.contains("input_value, sender_name"),
            "{e}"
        );
        let e = resolve_tweaks(&s, &raw(&["ChatInput.code=x"])).unwrap_err();
        assert!(e.contains("no parameter \"code\""), "{e}");
        let e = resolve_tweaks(
            &s,
            &raw(&["ChatInput.input_value=x", "ChatInput-a1.input_value=y"]),
        )
        .unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let e = resolve_tweaks(&s, &raw(&["Nothing.x=1"])).unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn details_are_langflows_own_text() {
        let d = |s: u16, b: &str| detail_text(s, b.as_bytes());
        assert_eq!(
            d(404, r#"{"detail":"Flow identifier x not found"}"#),
            "Flow identifier x not found"
        );
        assert_eq!(
            d(
                422,
                r#"{"detail":{"error":"Refused tweaks","code":"TWEAKS_REFUSED","message":"The field is protected.","fields":["code"]}}"#
            ),
            "The field is protected. (fields: code)"
        );
        assert_eq!(
            d(
                422,
                r#"{"detail":[{"type":"json_invalid","loc":["body",15],"msg":"JSON decode error"}]}"#
            ),
            "body.15: JSON decode error"
        );
        assert_eq!(
            d(
                500,
                r#"{"detail":"{\"message\":\"Error running graph: boom\",\"traceback\":null}"}"#
            ),
            "Error running graph: boom"
        );
        assert_eq!(
            d(502, "<html>\n bad   gateway </html>"),
            "<html> bad gateway </html>"
        );
        assert_eq!(d(503, ""), "Service Unavailable");
    }

    #[test]
    fn the_answer_text_is_found_where_versions_put_it() {
        let one = |r: Value| {
            parse_run(json!({"session_id": "s", "outputs": [{"inputs": {}, "outputs": [null, r]}]}))
                .unwrap()
        };
        assert_eq!(
            one(json!({"results": {"message": {"text": "a"}}}))
                .text
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            one(json!({"results": {"message": {"data": {"text": "b"}}}}))
                .text
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            one(json!({"messages": [{"message": "c"}]})).text.as_deref(),
            Some("c")
        );
        assert_eq!(
            one(json!({"artifacts": {"message": "d"}})).text.as_deref(),
            Some("d")
        );
        assert_eq!(
            one(json!({"results": {"result": "e"}})).text.as_deref(),
            Some("e")
        );
        assert_eq!(one(json!({"results": {}})).text, None);
        assert_eq!(one(json!({})).session_id.as_deref(), Some("s"));
        let e = parse_run(
            json!({"outputs": [{"outputs": [{"component_display_name": "Chat Output",
            "results": {"message": {"text": "it broke", "error": true}}}]}]}),
        )
        .unwrap_err();
        assert_eq!(e, LangflowError::FlowError("Chat Output: it broke".into()));
        assert!(parse_run(json!([])).is_err());
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_the_flow() {
        let s = |u: &str| Source {
            url: u.into(),
            api_key: "k".into(),
        };
        let u = endpoint(&s("http://h:7860"), &["flows", ""], Some("get_all=true")).unwrap();
        assert_eq!(u.as_str(), "http://h:7860/api/v1/flows/?get_all=true");
        let u = endpoint(&s("https://h/lf/?x=1"), &["run", "my flow/1"], None).unwrap();
        assert_eq!(u.as_str(), "https://h/lf/api/v1/run/my%20flow%2F1");
        assert!(matches!(
            endpoint(&s("ftp://h"), &[], None),
            Err(LangflowError::Invalid(_))
        ));
        assert!(matches!(
            endpoint(&s("not a url"), &[], None),
            Err(LangflowError::Invalid(_))
        ));
    }

    #[test]
    fn listings_take_data_as_object_or_string_and_skip_components() {
        let graph = json!({"nodes": [{"id": "ChatInput-1", "data": {"type": "ChatInput", "node": {"template": {}}}}], "edges": []});
        let v = json!([
            {"id": "1", "name": "obj", "data": graph, "endpoint_name": "obj", "updated_at": "2026-01-01T00:00:00"},
            {"id": "2", "name": "str", "data": graph.to_string(), "description": "d"},
            {"id": "3", "name": "comp", "is_component": true, "data": graph},
            {"id": "4", "name": "bad", "data": "{not json"}
        ]);
        let flows = parse_flows(&v).unwrap();
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0].data, graph);
        assert_eq!(flows[1].data, graph);
        assert_eq!(flows[1].summary.inputs[0].id, "ChatInput-1");
        assert_eq!(flows[0].endpoint_name.as_deref(), Some("obj"));
        assert_eq!(flows[1].endpoint_name, None);
        assert_eq!(flows[2].data, Value::Null);
        assert_eq!(
            parse_flows(&json!({"items": [], "total": 0})).unwrap(),
            vec![]
        );
        assert!(parse_flows(&json!([{"name": "no id"}])).is_err());
    }
}
