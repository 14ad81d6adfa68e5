//! Text → checked definition: the size limit, YAML or JSON into a JSON value (YAML with alias
//! limits, so an anchor bomb is refused, not expanded), unknown keys refused with their path
//! and the closest known key, then the typed read with the path of a wrong type.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::def::*;
use crate::suggest::did_you_mean;
use crate::{DefError, Job, Workflow};

/// The largest definition accepted.
pub const MAX_DEFINITION_BYTES: usize = 1 << 20;
/// Steps a workflow may have (its `steps`, `on_failure` and `always` together).
pub const MAX_STEPS: usize = 5000;
/// Events of YAML that aliases may replay (what an anchor bomb needs many of).
const MAX_ALIAS_EVENTS: usize = 100_000;

/// Reads `text` (YAML, or JSON when it starts with `{`) into a JSON value.
pub fn to_value(text: &str) -> Result<Value, DefError> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(DefError::at(
            "",
            format!(
                "the definition is {} bytes, over the limit of {} — split it into workflows that use each other",
                text.len(),
                MAX_DEFINITION_BYTES
            ),
        ));
    }
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| DefError::at("", format!("not valid JSON: {e}")))?
    } else {
        let options = serde_saphyr::options! {
            alias_limits: serde_saphyr::alias_limits! {
                max_total_replayed_events: MAX_ALIAS_EVENTS,
                max_replay_stack_depth: 16,
            },
            with_snippet: false,
            strict_booleans: true,
        };
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            DefError::at("", format!("not valid YAML: {}", one_line(&e.to_string())))
        })?
    };
    if !value.is_object() {
        return Err(DefError::at(
            "",
            "expected a mapping with name and steps at the top".to_string(),
        ));
    }
    Ok(value)
}

/// Reads a workflow's text: shape, keys and types (the graph is checked by `check`).
pub fn workflow_from_text(text: &str) -> Result<Workflow, DefError> {
    let value = to_value(text)?;
    workflow_from_value(&value)
}

pub fn workflow_from_value(value: &Value) -> Result<Workflow, DefError> {
    let mut errors = Vec::new();
    keys(value, "", WORKFLOW_KEYS, &mut errors);
    if let Some(p) = value.get("params") {
        params_keys(p, "params", &mut errors);
    }
    for list in ["steps", "on_failure", "always"] {
        if let Some(Value::Array(steps)) = value.get(list) {
            for (i, s) in steps.iter().enumerate() {
                let path = format!("{list}[{i}]");
                let allowed: Vec<&str> = STEP_KEYS
                    .iter()
                    .chain(ACTION_KEYS)
                    .chain(EXEC_KEYS)
                    .copied()
                    .collect();
                keys(s, &path, &allowed, &mut errors);
                retry_keys(s, &path, &mut errors);
                flattened(s, &path, &mut errors);
            }
        }
    }
    first(errors)?;
    let wf: Workflow = typed(value)?;
    let total = wf.steps.len() + wf.on_failure.len() + wf.always.len();
    if total > MAX_STEPS {
        return Err(DefError::at(
            "steps",
            format!("{total} steps, over the limit of {MAX_STEPS} — split the workflow"),
        ));
    }
    Ok(wf)
}

/// Reads a job's text: shape, keys and types.
pub fn job_from_text(text: &str) -> Result<Job, DefError> {
    let value = to_value(text)?;
    job_from_value(&value)
}

pub fn job_from_value(value: &Value) -> Result<Job, DefError> {
    let mut errors = Vec::new();
    let allowed: Vec<&str> = JOB_KEYS
        .iter()
        .chain(ACTION_KEYS)
        .chain(EXEC_KEYS)
        .copied()
        .collect();
    keys(value, "", &allowed, &mut errors);
    if let Some(p) = value.get("params") {
        params_keys(p, "params", &mut errors);
    }
    retry_keys(value, "", &mut errors);
    flattened(value, "", &mut errors);
    first(errors)?;
    typed(value)
}

/// The typed read, naming the path of the first value of a wrong type.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, DefError> {
    typed_at(value, "")
}

fn typed_at<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, DefError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (at, path.as_str()) {
            (at, ".") => at.to_string(),
            ("", p) => p.to_string(),
            (at, p) => format!("{at}.{p}"),
        };
        DefError::at(&path, one_line(&e.inner().to_string()))
    })
}

/// The parts read through `#[serde(flatten)]` (an action, how it executes), read on their
/// own first: a flattened read loses the path of a wrong type.
fn flattened(value: &Value, path: &str, errors: &mut Vec<DefError>) {
    if !value.is_object() {
        return;
    }
    if let Err(e) = typed_at::<Action>(value, path) {
        errors.push(e);
    } else if let Err(e) = typed_at::<Exec>(value, path) {
        errors.push(e);
    }
}

fn keys(value: &Value, path: &str, allowed: &[&str], errors: &mut Vec<DefError>) {
    let Value::Object(map) = value else {
        return;
    };
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(DefError::at(
                path,
                format!(
                    "unknown key {k:?}{}",
                    did_you_mean(k, allowed.iter().copied())
                ),
            ));
        }
    }
}

fn params_keys(params: &Value, path: &str, errors: &mut Vec<DefError>) {
    if let Value::Object(map) = params {
        for (name, p) in map {
            keys(p, &format!("{path}.{name}"), PARAM_KEYS, errors);
        }
    }
}

fn retry_keys(value: &Value, path: &str, errors: &mut Vec<DefError>) {
    if let Some(r @ Value::Object(_)) = value.get("retries") {
        keys(r, &join(path, "retries"), RETRY_KEYS, errors);
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn first(errors: Vec<DefError>) -> Result<(), DefError> {
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Text on one line (a parser's message may span several).
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
