//! `herd helper langflow`: what a flow run's task runs. It reads the call from `HERD_INPUT`
//! (`langflow`: the source's URL, the flow, the input, tweaks, session, timeout, and the
//! answer's fields to output) and the API key from `HERD_LANGFLOW_KEY`, prints the request
//! and LangFlow's answer (the task's output log), and reports the answer's text
//! (`text`), its session (`session_id`), the whole answer (`response`) and each chosen field
//! as outputs. Exit 0 when the flow answered; 75 when LangFlow failed (unreachable, timeout,
//! 5xx, busy: the server's breaker of the source counts it); 1 for anything else (a refused
//! key, a flow that failed inside, a bad input).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use herd_actions::langflow::{self as lf, LangflowError};
use herd_core::outputs;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Call {
    #[serde(default)]
    source: String,
    url: String,
    flow: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    tweaks: lf::Tweaks,
    #[serde(default)]
    session: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// Output name → JSON pointer into the answer (`/outputs/0/outputs/0/results/message/sender`).
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

fn default_timeout() -> u64 {
    300_000
}

pub fn main() -> i32 {
    match call() {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("herd: langflow: {}", herd_core::Escaped(&msg));
            code
        }
    }
}

fn call() -> Result<i32, (i32, String)> {
    let fail = |m: String| (1, m);
    let root = crate::helper::read_input().map_err(|e| fail(format!("{e:#}")))?;
    let call: Call = serde_json::from_value(root.get("langflow").cloned().unwrap_or(Value::Null))
        .map_err(|e| {
        fail(format!(
            "HERD_INPUT has no LangFlow call ({e}) — start it with `herd flows run`"
        ))
    })?;
    let key = std::env::var(lf::KEY_ENV).map_err(|_| {
        fail(format!(
            "{} is not set — start it with `herd flows run`",
            lf::KEY_ENV
        ))
    })?;
    let what = format!(
        "flow {} of source {}",
        if call.name.is_empty() {
            &call.flow
        } else {
            &call.name
        },
        call.source
    );
    let req = lf::RunRequest {
        flow: call.flow.clone(),
        input: call.input.clone(),
        tweaks: call.tweaks.clone(),
        session_id: call.session.clone(),
        timeout: Duration::from_millis(call.timeout_ms.max(1)),
    };
    let shown = serde_json::json!({
        "input_value": req.input,
        "input_type": "chat",
        "output_type": "chat",
        "tweaks": req.tweaks,
        "session_id": req.session_id,
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "→ POST {}/api/v1/run/{}?stream=false\n{}",
            call.url.trim_end_matches('/'),
            call.flow,
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        );
        let _ = out.flush();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let actions = herd_actions::Actions::new(herd_actions::ActionsConfig::default());
    let source = lf::Source {
        url: call.url.clone(),
        api_key: key,
    };
    let answer = rt.block_on(lf::run_flow(&actions, &source, &req));
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let code = match &e {
                LangflowError::Unreachable(_)
                | LangflowError::Timeout(_)
                | LangflowError::BreakerOpen(_)
                | LangflowError::RateLimited(_) => lf::EXIT_LANGFLOW_FAILED,
                LangflowError::Status { status, .. } if *status >= 500 || *status == 429 => {
                    lf::EXIT_LANGFLOW_FAILED
                }
                _ => 1,
            };
            return Err((code, format!("{what}: {e}")));
        }
    };
    let pretty = serde_json::to_string_pretty(&answer.response).unwrap_or_default();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "← 200 OK\n{pretty}");
        if let Some(t) = &answer.text {
            let _ = writeln!(out, "answer: {t}");
        }
    }
    let mut entries = String::new();
    if let Some(t) = &answer.text {
        entries.push_str(&outputs::entry("text", t));
    }
    if let Some(s) = &answer.session_id {
        entries.push_str(&outputs::entry("session_id", s));
    }
    entries.push_str(&outputs::entry("response", &answer.response.to_string()));
    for (name, pointer) in &call.fields {
        match answer.response.pointer(pointer) {
            Some(Value::String(s)) => entries.push_str(&outputs::entry(name, s)),
            Some(v) => entries.push_str(&outputs::entry(name, &v.to_string())),
            None => {
                eprintln!(
                    "herd: langflow: {what}: the answer has nothing at {pointer} (output {name})"
                );
            }
        }
    }
    crate::helper::append(&entries).map_err(|e| fail(format!("{e:#}")))?;
    Ok(0)
}
