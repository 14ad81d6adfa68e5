//! `herd helper`: what a task's script calls to read its input and report outputs, a
//! condition, events and variables, through the files the agent names in `HERD_INPUT` and
//! `HERD_OUTPUT` (the agent puts this binary on every task's PATH). Runs without a runtime
//! and without the server: a few file reads and one append.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use herd_core::outputs::{self, CONDITION_KEY, EVENT_KEY, VAR_PREFIX};

#[derive(Subcommand)]
pub enum HelperCmd {
    /// Print the task's input, or one value of it by a dotted path (e.g. `params.who`,
    /// `steps.build.outputs.version`): a string as it is, anything else as JSON.
    Input { key: Option<String> },
    /// Report outputs for the steps after this one: KEY=VALUE ... (a value may hold line
    /// breaks).
    Output {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Set the task's condition (true or false), which workflows branch on.
    Condition {
        #[arg(action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
        value: bool,
    },
    /// Record an event NAME with optional JSON data.
    Event { name: String, data: Option<String> },
    /// Read or set a workflow variable.
    Var {
        #[command(subcommand)]
        cmd: VarCmd,
    },
    /// Make a flow run's call to LangFlow (what `herd flows run` starts on a machine): the
    /// call from HERD_INPUT, the key from HERD_LANGFLOW_KEY.
    Langflow,
}

#[derive(Subcommand)]
pub enum VarCmd {
    /// Print a variable: set earlier by this task (`var set`), else from the input's `vars`.
    Get { key: String },
    /// Set a variable; the workflow applies it when this step ends.
    Set { key: String, value: String },
}

/// Runs a helper command; what fails is one line on stderr and exit code 1.
pub fn main(cmd: HelperCmd) -> i32 {
    let (what, result) = match cmd {
        HelperCmd::Langflow => return crate::langflow_call::main(),
        HelperCmd::Input { key } => ("input", input(key.as_deref())),
        HelperCmd::Output { pairs } => ("output", output(&pairs)),
        HelperCmd::Condition { value } => (
            "condition",
            append(&outputs::entry(CONDITION_KEY, &value.to_string())),
        ),
        HelperCmd::Event { name, data } => ("event", event(&name, data.as_deref())),
        HelperCmd::Var {
            cmd: VarCmd::Get { key },
        } => ("var get", var_get(&key)),
        HelperCmd::Var {
            cmd: VarCmd::Set { key, value },
        } => ("var set", var_set(&key, &value)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                msg = format!("{msg}: {cause}");
            }
            eprintln!("herd: helper {what}: {}", herd_core::Escaped(&msg));
            1
        }
    }
}

/// The file an environment variable of the task names.
fn task_file(var: &str) -> Result<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!(
            "{var} is not set — herd helper runs inside a herd task (a command or script started by herd run)"
        ),
    }
}

pub(crate) fn read_input() -> Result<serde_json::Value> {
    let path = task_file(herd_exec::INPUT_ENV)?;
    let text = std::fs::read(&path)
        .with_context(|| format!("cannot read HERD_INPUT ({})", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("HERD_INPUT ({}) is not JSON", path.display()))
}

/// The value at a dotted path, or why there is none: the path and the keys where it stopped.
fn lookup<'a>(
    root: &'a serde_json::Value,
    path: &str,
) -> std::result::Result<&'a serde_json::Value, String> {
    let mut here = root;
    let mut walked: Vec<&str> = Vec::new();
    for part in path.split('.') {
        let next = match here {
            serde_json::Value::Object(m) => m.get(part),
            serde_json::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        let Some(next) = next else {
            let keys = match here {
                serde_json::Value::Object(m) if !m.is_empty() => {
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                }
                serde_json::Value::Object(_) => "none".to_string(),
                serde_json::Value::Array(a) => format!("0 to {} (a list)", a.len().max(1) - 1),
                other => format!("none ({} is {})", walked.join("."), kind(other)),
            };
            return Err(format!("no {path:?} in HERD_INPUT — keys here: {keys}"));
        };
        walked.push(part);
        here = next;
    }
    Ok(here)
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A value as a script reads it: a string as it is, anything else as JSON.
fn print_value(v: &serde_json::Value) -> Result<()> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("cannot write to stdout")?;
    Ok(())
}

fn input(key: Option<&str>) -> Result<()> {
    let root = read_input()?;
    match key {
        None => print_value(&root),
        Some(key) => print_value(lookup(&root, key).map_err(|e| anyhow!(e))?),
    }
}

/// Appends `text` to the task's output file in one write.
pub(crate) fn append(text: &str) -> Result<()> {
    let path = task_file(herd_exec::OUTPUT_ENV)?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open HERD_OUTPUT ({})", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write HERD_OUTPUT ({})", path.display()))
}

fn check_key(key: &str) -> Result<()> {
    if !outputs::is_valid_key(key) {
        bail!(
            "bad key {key:?}: expected 1 to {} of A-Z a-z 0-9 _ . -",
            outputs::MAX_KEY
        );
    }
    Ok(())
}

fn output(pairs: &[String]) -> Result<()> {
    let mut text = String::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("expected KEY=VALUE, not {pair:?}");
        };
        check_key(key)?;
        if key.starts_with("herd.") {
            bail!(
                "{key:?} is reserved — use `herd helper condition`, `herd helper event` or `herd helper var set`"
            );
        }
        text.push_str(&outputs::entry(key, value));
    }
    append(&text)
}

fn event(name: &str, data: Option<&str>) -> Result<()> {
    if name.is_empty() {
        bail!("an event needs a name");
    }
    let data: serde_json::Value = match data {
        Some(d) => serde_json::from_str(d).with_context(|| format!("{d:?} is not JSON"))?,
        None => serde_json::Value::Null,
    };
    let body = serde_json::json!({ "name": name, "data": data });
    append(&outputs::entry(EVENT_KEY, &body.to_string()))
}

fn var_get(key: &str) -> Result<()> {
    check_key(key)?;
    // What this task set wins over what it was given.
    let path = task_file(herd_exec::OUTPUT_ENV)?;
    let written = std::fs::read(&path)
        .with_context(|| format!("cannot read HERD_OUTPUT ({})", path.display()))?;
    let set = outputs::parse(&String::from_utf8_lossy(&written));
    if let Some(v) = set.vars.get(key) {
        return print_value(&serde_json::Value::String(v.clone()));
    }
    let root = read_input()?;
    match lookup(&root, &format!("vars.{key}")) {
        Ok(v) => print_value(v),
        Err(e) => Err(anyhow!(e)),
    }
}

fn var_set(key: &str, value: &str) -> Result<()> {
    check_key(key)?;
    append(&outputs::entry(&format!("{VAR_PREFIX}{key}"), value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookups_say_where_they_stopped() {
        let input = json!({
            "params": {"who": "world", "n": 3},
            "steps": {"a": {"outputs": {"greeting": "hi"}}},
            "list": [1, 2],
        });
        assert_eq!(lookup(&input, "params.who").unwrap(), &json!("world"));
        assert_eq!(
            lookup(&input, "steps.a.outputs.greeting").unwrap(),
            &json!("hi")
        );
        assert_eq!(lookup(&input, "list.1").unwrap(), &json!(2));
        assert_eq!(
            lookup(&input, "steps.x").unwrap_err(),
            r#"no "steps.x" in HERD_INPUT — keys here: a"#
        );
        assert_eq!(
            lookup(&input, "nope").unwrap_err(),
            r#"no "nope" in HERD_INPUT — keys here: list, params, steps"#
        );
        assert_eq!(
            lookup(&input, "params.who.first").unwrap_err(),
            r#"no "params.who.first" in HERD_INPUT — keys here: none (params.who is a string)"#
        );
        assert!(
            lookup(&json!({}), "a")
                .unwrap_err()
                .ends_with("keys here: none")
        );
    }
}
