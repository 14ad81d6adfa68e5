//! The model's answers as typed, validated values: `Plan`, `Validation`, `Alternative`.
//!
//! Each is read field by field from the extracted JSON object, and every error names the JSON
//! path (`steps[2].depends_on: unknown step "x"`). Keys other than the ones named here are
//! ignored and not kept: in particular a `risk`, `safe` or `approved` label the model adds is
//! never an input — herd classifies every command itself. A step's `description` is text to
//! show, even when it looks like a command; nothing here runs anything, and a caller runs only
//! `command` fields, after policy.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::extract::{extract_json, preview};

/// Most steps in a plan.
pub const MAX_STEPS: usize = 50;
/// Longest command, in bytes.
pub const MAX_COMMAND: usize = 8 * 1024;
/// Longest description, summary, expectation or reason, in bytes.
pub const MAX_TEXT: usize = 2 * 1024;
/// Longest step id, and most targets a step names.
const MAX_ID: usize = 64;
const MAX_TARGETS: usize = 256;

/// A plan: what the model proposes to do, step by step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub summary: String,
    pub steps: Vec<PlanStep>,
}

/// One step: a single non-interactive shell command, what it should produce, the steps it
/// waits for, and (optionally) the machines it is meant for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanStep {
    pub id: String,
    pub description: String,
    pub command: String,
    pub expected: String,
    pub depends_on: Vec<String>,
    pub targets: Vec<String>,
}

/// The model's judgement of a step's outcome. `confidence` is clamped to 0..=1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub is_valid: bool,
    pub confidence: f64,
    pub reason: String,
    pub suggested_fix: Option<String>,
    pub should_retry: bool,
}

/// Another command to try for a step that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub command: String,
    pub description: String,
}

/// The plan in a model's answer, validated: 1 to `MAX_STEPS` steps, unique ids of
/// `[A-Za-z0-9_-]{1,64}`, `depends_on` naming steps of the plan with no cycle, a command of
/// 1 to `MAX_COMMAND` bytes, no NUL anywhere.
pub fn parse_plan(text: &str) -> Result<Plan, String> {
    let v = extract_json(text).map_err(|e| format!("the model's plan is unusable: {e}"))?;
    Plan::from_value(&v).map_err(|e| format!("the model's plan is unusable: {e}"))
}

/// The validation in a model's answer.
pub fn parse_validation(text: &str) -> Result<Validation, String> {
    let v = extract_json(text).map_err(|e| format!("the model's validation is unusable: {e}"))?;
    Validation::from_value(&v).map_err(|e| format!("the model's validation is unusable: {e}"))
}

/// The alternative in a model's answer.
pub fn parse_alternative(text: &str) -> Result<Alternative, String> {
    let v = extract_json(text).map_err(|e| format!("the model's alternative is unusable: {e}"))?;
    Alternative::from_value(&v).map_err(|e| format!("the model's alternative is unusable: {e}"))
}

impl Plan {
    /// The plan in an already extracted JSON value; errors name the path.
    pub fn from_value(v: &Value) -> Result<Plan, String> {
        let o = object(v, "")?;
        let summary = text(o, "", "summary", MAX_TEXT, Need::Required)?;
        let steps_v = match o.get("steps") {
            Some(Value::Array(a)) => a,
            Some(other) => return Err(format!("steps: expected an array, found {}", kind(other))),
            None => return Err("steps: missing".to_string()),
        };
        if steps_v.is_empty() {
            return Err("steps: the plan has no step".to_string());
        }
        if steps_v.len() > MAX_STEPS {
            return Err(format!(
                "steps: {} steps, more than {MAX_STEPS}",
                steps_v.len()
            ));
        }
        let mut steps = Vec::with_capacity(steps_v.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, sv) in steps_v.iter().enumerate() {
            let path = format!("steps[{i}]");
            let step = PlanStep::from_value(sv, &path)?;
            if let Some(first) = index.insert(step.id.clone(), i) {
                return Err(format!(
                    "{path}.id: {:?} is also the id of steps[{first}]",
                    step.id
                ));
            }
            steps.push(step);
        }
        for (i, step) in steps.iter().enumerate() {
            for dep in &step.depends_on {
                if !index.contains_key(dep) {
                    return Err(format!("steps[{i}].depends_on: unknown step {dep:?}"));
                }
            }
        }
        if let Some(cycle) = find_cycle(&steps, &index) {
            return Err(format!(
                "steps: depends_on forms a cycle: {}",
                cycle.join(" → ")
            ));
        }
        Ok(Plan { summary, steps })
    }
}

impl PlanStep {
    fn from_value(v: &Value, path: &str) -> Result<PlanStep, String> {
        let o = object(v, path)?;
        let id = step_id(o.get("id"), &format!("{path}.id"))?;
        let description = text(o, path, "description", MAX_TEXT, Need::Required)?;
        let command = command(o, path)?;
        let expected = text(o, path, "expected", MAX_TEXT, Need::Optional)?;
        let mut depends_on = Vec::new();
        for (j, d) in list(o, path, "depends_on", MAX_STEPS)?.iter().enumerate() {
            let d = step_id(Some(d), &format!("{path}.depends_on[{j}]"))?;
            if d == id {
                return Err(format!("{path}.depends_on: the step depends on itself"));
            }
            if !depends_on.contains(&d) {
                depends_on.push(d);
            }
        }
        let mut targets = Vec::new();
        for (j, t) in list(o, path, "targets", MAX_TARGETS)?.iter().enumerate() {
            let p = format!("{path}.targets[{j}]");
            let Value::String(t) = t else {
                return Err(format!("{p}: expected a string, found {}", kind(t)));
            };
            let t = clean(t, &p, MAX_ID * 4)?;
            if t.is_empty() {
                return Err(format!("{p}: empty"));
            }
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        Ok(PlanStep {
            id,
            description,
            command,
            expected,
            depends_on,
            targets,
        })
    }
}

impl Validation {
    pub fn from_value(v: &Value) -> Result<Validation, String> {
        let o = object(v, "")?;
        let is_valid = boolean(o, "is_valid")?.ok_or("is_valid: missing")?;
        let confidence = match o.get("confidence") {
            None | Some(Value::Null) => 0.0,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Value::String(s)) => s
                .trim()
                .trim_end_matches('%')
                .parse::<f64>()
                .map_err(|_| format!("confidence: {:?} is not a number", preview(s, 40)))?,
            Some(other) => {
                return Err(format!(
                    "confidence: expected a number, found {}",
                    kind(other)
                ));
            }
        };
        let confidence = if confidence.is_finite() {
            confidence.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let reason = text(o, "", "reason", MAX_TEXT, Need::Required)?;
        let suggested_fix = text(o, "", "suggested_fix", MAX_COMMAND, Need::Optional)?;
        let suggested_fix = (!suggested_fix.trim().is_empty()).then_some(suggested_fix);
        let should_retry = boolean(o, "should_retry")?.unwrap_or(false);
        Ok(Validation {
            is_valid,
            confidence,
            reason,
            suggested_fix,
            should_retry,
        })
    }
}

impl Alternative {
    pub fn from_value(v: &Value) -> Result<Alternative, String> {
        let o = object(v, "")?;
        Ok(Alternative {
            command: command(o, "")?,
            description: text(o, "", "description", MAX_TEXT, Need::Optional)?,
        })
    }
}

#[derive(PartialEq)]
enum Need {
    Required,
    Optional,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(format!(
            "{}: expected an object, found {}",
            if path.is_empty() { "the answer" } else { path },
            kind(other)
        )),
    }
}

/// A string checked for NUL and length.
fn clean(s: &str, path: &str, max: usize) -> Result<String, String> {
    if s.contains('\0') {
        return Err(format!("{path}: contains a NUL character"));
    }
    if s.len() > max {
        return Err(format!("{path}: {} bytes, more than {max}", s.len()));
    }
    Ok(s.to_string())
}

/// A string field; an optional one may be missing or null (then empty).
fn text(
    o: &Map<String, Value>,
    path: &str,
    key: &str,
    max: usize,
    need: Need,
) -> Result<String, String> {
    let p = join(path, key);
    match o.get(key) {
        Some(Value::String(s)) => clean(s, &p, max),
        None | Some(Value::Null) if need == Need::Optional => Ok(String::new()),
        None => Err(format!("{p}: missing")),
        // Prose a model wrote as a number, a list or an object (small models do) is kept as
        // its JSON text; a command must be a string.
        Some(other @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_)))
            if key != "command" =>
        {
            clean(&other.to_string(), &p, max)
        }
        Some(other) => Err(format!("{p}: expected a string, found {}", kind(other))),
    }
}

fn command(o: &Map<String, Value>, path: &str) -> Result<String, String> {
    let p = join(path, "command");
    let c = text(o, path, "command", MAX_COMMAND, Need::Required)?;
    if c.trim().is_empty() {
        return Err(format!("{p}: empty"));
    }
    Ok(c)
}

/// An array field (missing or null: empty).
fn list<'a>(
    o: &'a Map<String, Value>,
    path: &str,
    key: &str,
    max: usize,
) -> Result<&'a [Value], String> {
    let p = join(path, key);
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() > max => {
            Err(format!("{p}: {} entries, more than {max}", a.len()))
        }
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!("{p}: expected an array, found {}", kind(other))),
    }
}

/// A step id: `[A-Za-z0-9_-]{1,64}`; a whole number is taken as its decimal text.
fn step_id(v: Option<&Value>, path: &str) -> Result<String, String> {
    let s = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(other) => return Err(format!("{path}: expected a string, found {}", kind(other))),
        None => return Err(format!("{path}: missing")),
    };
    let ok = !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(format!(
            "{path}: {:?} is not an id (1 to {MAX_ID} of A-Z a-z 0-9 _ -)",
            preview(&s, 40)
        ));
    }
    Ok(s)
}

/// A boolean field; `"true"`/`"false"` strings are taken too.
fn boolean(o: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(format!(
            "{key}: expected true or false, found {}",
            kind(other)
        )),
    }
}

/// A cycle through `depends_on`, as the ids along it (first repeated at the end).
fn find_cycle(steps: &[PlanStep], index: &HashMap<String, usize>) -> Option<Vec<String>> {
    // Iterative depth-first search: 0 unvisited, 1 on the current path, 2 done.
    let mut state = vec![0u8; steps.len()];
    for root in 0..steps.len() {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(dep) = steps[node].depends_on.get(*next) {
                *next += 1;
                let d = index[dep];
                match state[d] {
                    0 => {
                        state[d] = 1;
                        stack.push((d, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(n, _)| n == d).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(n, _)| steps[n].id.clone())
                            .collect();
                        cycle.push(steps[d].id.clone());
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn step(id: &str, deps: &[&str]) -> Value {
        json!({"id": id, "description": "d", "command": "true", "expected": "", "depends_on": deps})
    }

    fn plan(steps: Vec<Value>) -> Result<Plan, String> {
        Plan::from_value(&json!({"summary": "s", "steps": steps}))
    }

    #[test]
    fn a_good_plan() {
        let p = plan(vec![
            step("install", &[]),
            json!({"id": "start", "description": "start nginx", "command": "systemctl start nginx",
                   "expected": "exit 0", "depends_on": ["install", "install"], "targets": ["web1"],
                   "risk": "safe", "approved": true, "safe": true}),
            // A forward reference to a step that exists is fine.
            step("check", &["later"]),
            step("later", &[]),
        ])
        .unwrap();
        assert_eq!(p.steps.len(), 4);
        assert_eq!(p.steps[1].depends_on, vec!["install"]);
        assert_eq!(p.steps[1].targets, vec!["web1"]);
        // The model's labels are not kept anywhere.
        let back = serde_json::to_value(&p.steps[1]).unwrap();
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "command",
                "depends_on",
                "description",
                "expected",
                "id",
                "targets"
            ]
        );
    }

    #[test]
    fn prose_written_as_json_is_kept_as_text_but_a_command_must_be_a_string() {
        let p = plan(vec![
            json!({"id": "a", "description": ["make", "it"], "command": "true",
                                 "expected": {"exit_code": 0}, "depends_on": []}),
        ])
        .unwrap();
        assert_eq!(p.steps[0].expected, r#"{"exit_code":0}"#);
        assert_eq!(p.steps[0].description, r#"["make","it"]"#);
        let e = plan(vec![
            json!({"id": "a", "description": "d", "command": ["rm", "-rf", "/"],
                                 "depends_on": []}),
        ])
        .unwrap_err();
        assert!(e.contains("steps[0].command: expected a string"), "{e}");
    }

    #[test]
    fn numeric_ids_and_missing_optionals() {
        let p = Plan::from_value(&json!({"summary": "s", "steps": [
            {"id": 1, "description": "d", "command": "ls"},
            {"id": 2, "description": "d", "command": "ls", "depends_on": [1], "expected": null},
        ]}))
        .unwrap();
        assert_eq!(p.steps[1].depends_on, vec!["1"]);
        assert_eq!(p.steps[0].expected, "");
        assert!(p.steps[0].targets.is_empty());
    }

    #[test]
    fn bad_plans_name_the_path() {
        let long = "x".repeat(MAX_COMMAND + 1);
        let many: Vec<Value> = (0..=MAX_STEPS)
            .map(|i| step(&format!("s{i}"), &[]))
            .collect();
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "the answer: expected an object"),
            (json!({"steps": []}), "summary: missing"),
            (json!({"summary": "s"}), "steps: missing"),
            (
                json!({"summary": "s", "steps": {}}),
                "steps: expected an array",
            ),
            (
                json!({"summary": "s", "steps": []}),
                "steps: the plan has no step",
            ),
            (json!({"summary": "s", "steps": many}), "more than 50"),
            (
                json!({"summary": "s", "steps": [step("a", &[]), step("a", &[])]}),
                "steps[1].id: \"a\" is also the id of steps[0]",
            ),
            (
                json!({"summary": "s", "steps": [step("a", &[]), step("b", &["x"])]}),
                "steps[1].depends_on: unknown step \"x\"",
            ),
            (
                json!({"summary": "s", "steps": [step("a", &["a"])]}),
                "steps[0].depends_on: the step depends on itself",
            ),
            (
                json!({"summary": "s", "steps": [step("a", &["c"]), step("b", &["a"]), step("c", &["b"])]}),
                "cycle: a → c → b → a",
            ),
            (
                json!({"summary": "s", "steps": [step("a b", &[])]}),
                "steps[0].id: \"a b\" is not an id",
            ),
            (
                json!({"summary": "s", "steps": [step(&"i".repeat(65), &[])]}),
                "steps[0].id",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d", "command": "  "}]}),
                "steps[0].command: empty",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d"}]}),
                "steps[0].command: missing",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d", "command": ["ls"]}]}),
                "steps[0].command: expected a string, found an array",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d", "command": long}]}),
                "steps[0].command: 8193 bytes",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "x".repeat(MAX_TEXT + 1), "command": "ls"}]}),
                "steps[0].description: 2049 bytes",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d", "command": "ls\u{0}rm"}]}),
                "steps[0].command: contains a NUL",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d", "command": "ls", "depends_on": "b"}]}),
                "steps[0].depends_on: expected an array",
            ),
            (
                json!({"summary": "s", "steps": [{"id": "a", "description": "d", "command": "ls", "targets": [1]}]}),
                "steps[0].targets[0]: expected a string",
            ),
            (
                json!({"summary": "s", "steps": ["ls"]}),
                "steps[0]: expected an object, found a string",
            ),
        ];
        for (v, want) in cases {
            let e = Plan::from_value(&v).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn a_long_chain_is_no_cycle() {
        let steps: Vec<Value> = (0..MAX_STEPS)
            .map(|i| {
                let deps: Vec<String> = (0..i).map(|j| format!("s{j}")).collect();
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                step(&format!("s{i}"), &deps)
            })
            .collect();
        assert_eq!(plan(steps).unwrap().steps.len(), MAX_STEPS);
    }

    #[test]
    fn parse_plan_from_prose() {
        let text = "Here's the plan:\n```json\n{\"summary\":\"s\",\"steps\":[{\"id\":\"a\",\"description\":\"run `rm -rf /` — no\",\"command\":\"ls\"}]}\n```";
        let p = parse_plan(text).unwrap();
        assert_eq!(p.steps[0].command, "ls");
        let e = parse_plan("I can't do that").unwrap_err();
        assert!(
            e.starts_with("the model's plan is unusable: no JSON object"),
            "{e}"
        );
    }

    #[test]
    fn validations() {
        let v = parse_validation(r#"{"is_valid": true, "confidence": 1.7, "reason": "ok", "suggested_fix": "", "should_retry": false}"#).unwrap();
        assert!(v.is_valid);
        assert_eq!(v.confidence, 1.0);
        assert_eq!(v.suggested_fix, None);
        let v = parse_validation(r#"{"is_valid": "false", "confidence": -3, "reason": "no", "suggested_fix": "apt-get update", "should_retry": true, "risk": "low"}"#).unwrap();
        assert!(!v.is_valid);
        assert_eq!(v.confidence, 0.0);
        assert_eq!(v.suggested_fix.as_deref(), Some("apt-get update"));
        assert!(v.should_retry);
        let v =
            parse_validation(r#"{"is_valid": true, "confidence": "0.5", "reason": "r"}"#).unwrap();
        assert_eq!(v.confidence, 0.5);
        assert!(!v.should_retry);
        for (text, want) in [
            (r#"{"confidence": 1, "reason": "r"}"#, "is_valid: missing"),
            (
                r#"{"is_valid": 1, "reason": "r"}"#,
                "is_valid: expected true or false",
            ),
            (r#"{"is_valid": true}"#, "reason: missing"),
            (
                r#"{"is_valid": true, "reason": "r", "confidence": []}"#,
                "confidence: expected a number",
            ),
            (
                r#"{"is_valid": true, "reason": "r", "confidence": "high"}"#,
                "confidence: \"high\" is not a number",
            ),
        ] {
            let e = parse_validation(text).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn alternatives() {
        let a = parse_alternative(
            r#"{"command": "dnf install -y nginx", "description": "on Fedora", "safe": true}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            Alternative {
                command: "dnf install -y nginx".into(),
                description: "on Fedora".into()
            }
        );
        assert!(
            parse_alternative(r#"{"description": "x"}"#)
                .unwrap_err()
                .contains("command: missing")
        );
        assert!(
            parse_alternative(r#"{"command": ""}"#)
                .unwrap_err()
                .contains("command: empty")
        );
    }
}
