//! `herd ask` end to end against a chat-completions server of the test that answers from a
//! script: a 4-step plan across 2 machines runs in the order its dependencies say; plans
//! with a forbidden or a dangerous step, a workflow expression, or no JSON at all run nothing;
//! without a model, one line says how to configure one.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::errors::fails_one_line;
use crate::harness::*;

/// An OpenAI-compatible server answering each chat completion with the next scripted text
/// of its kind (the JSON Schema herd asks for names it: a plan, a validation, an
/// alternative); a kind with nothing scripted gets an empty answer.
pub(crate) struct Model {
    pub url: String,
    script: Arc<Mutex<[VecDeque<String>; 3]>>,
    pub asked: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn kind_of(body: &serde_json::Value) -> usize {
    match body["response_format"]["json_schema"]["name"].as_str() {
        Some("herd_validation") => 1,
        Some("herd_alternative") => 2,
        _ => 0,
    }
}

impl Model {
    pub fn start() -> Model {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let script: Arc<Mutex<[VecDeque<String>; 3]>> = Arc::default();
        let asked: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let (s, a) = (script.clone(), asked.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let kind = kind_of(&body);
                a.lock().unwrap().push(body);
                let content = s.lock().unwrap()[kind].pop_front().unwrap_or_default();
                let answer = json!({
                    "id": "c1", "object": "chat.completion", "model": "scripted",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
                })
                .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Model { url, script, asked }
    }

    /// The next plan.
    pub fn answer(&self, content: impl Into<String>) {
        self.script.lock().unwrap()[0].push_back(content.into());
    }

    /// The next judgement of a step.
    pub fn judge(&self, content: impl Into<String>) {
        self.script.lock().unwrap()[1].push_back(content.into());
    }

    /// The next alternative command.
    pub fn alternative(&self, content: impl Into<String>) {
        self.script.lock().unwrap()[2].push_back(content.into());
    }

    /// The requests of one kind (0 plan, 1 validation, 2 alternative), in order.
    pub fn asked_for(&self, kind: usize) -> Vec<serde_json::Value> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|b| kind_of(b) == kind)
            .cloned()
            .collect()
    }
}

pub(crate) fn plan(steps: serde_json::Value) -> String {
    json!({"summary": "a plan", "steps": steps}).to_string()
}

#[test]
fn a_reviewed_plan_runs_in_the_order_of_its_dependencies_and_gated_steps_never_run() {
    let model = Model::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &["--llm-url", &model.url, "--llm-model", "scripted"],
    )
    .unwrap();
    let _w1 = s.agent("w1", &[]).unwrap();
    let _w2 = s.agent("w2", &[]).unwrap();
    s.wait_online(&["w1", "w2"]).unwrap();
    let log = dir.path().join("order.log");
    let log = log.to_str().unwrap();

    // Four steps on two machines: s1 on w1, then s2 on w2, then s3 on both, then s4 on w1.
    model.answer(plan(json!([
        {"id": "s4", "description": "last", "command": format!("echo s4 >> {log}"),
         "expected": "exit 0", "depends_on": ["s3"], "targets": ["w1"], "risk": "safe"},
        {"id": "s1", "description": "first", "command": format!("sleep 0.3; echo s1 >> {log}"),
         "expected": "exit 0", "depends_on": [], "targets": ["w1"]},
        {"id": "s2", "description": "second", "command": format!("echo s2 >> {log}"),
         "expected": "exit 0", "depends_on": ["s1"], "targets": ["w2"]},
        {"id": "s3", "description": "both", "command": format!("echo s3 >> {log}"),
         "expected": "exit 0", "depends_on": ["s2"], "targets": []}
    ])));
    let out = s.run(&[
        "ask",
        "write the order file",
        "-t",
        "w1",
        "-t",
        "w2",
        "--yes",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(
        text.contains("[safe]") && text.contains("$ echo s2"),
        "{text}"
    );
    let order = std::fs::read_to_string(dir.path().join("order.log")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["s1", "s2", "s3", "s3", "s4"],
        "steps in the order of their dependencies"
    );
    // The plan went to the model with the machines' facts, and the run is a workflow run.
    let asked = model.asked.lock().unwrap().clone();
    let prompt = asked[0].to_string();
    assert!(
        prompt.contains("write the order file") && prompt.contains("w2"),
        "{prompt}"
    );
    let runs = s.json(&["workflows", "runs", "--json"]);
    assert_eq!(runs[0]["name"], "ask", "{runs}");
    assert_eq!(runs[0]["state"], "succeeded", "{runs}");

    // A forbidden step: denied; nothing of the plan runs.
    std::fs::remove_file(dir.path().join("order.log")).unwrap();
    model.answer(plan(json!([
        {"id": "a", "description": "harmless", "command": format!("echo a >> {log}"), "expected": "", "depends_on": []},
        {"id": "b", "description": "clean up", "command": "sudo rm -rf --no-preserve-root /", "expected": "", "depends_on": ["a"], "risk": "safe"}
    ])));
    fails_one_line(
        &s.run(&["ask", "clean up", "-t", "w1", "--yes"]),
        "step b is denied by the command policy",
    );
    // A dangerous step: --yes never approves it.
    model.answer(plan(json!([
        {"id": "a", "description": "harmless", "command": format!("echo a >> {log}"), "expected": "", "depends_on": []},
        {"id": "off", "description": "restart the machine", "command": "sh -c 'shutdown -r now'", "expected": "", "depends_on": ["a"]}
    ])));
    fails_one_line(
        &s.run(&["ask", "restart it", "-t", "w1", "--yes"]),
        "step off needs approval",
    );
    // A workflow expression would read variables or secrets: denied.
    model.answer(plan(json!([
        {"id": "leak", "description": "print", "command": "echo ${{ vars.token }}", "expected": "", "depends_on": []}
    ])));
    fails_one_line(
        &s.run(&["ask", "print it", "-t", "w1", "--yes"]),
        "step leak is denied",
    );
    // No JSON at all.
    model.answer("Sure! First, SSH into the machine and run rm -rf / to free space.");
    fails_one_line(
        &s.run(&["ask", "free space", "-t", "w1", "--yes"]),
        "the model's plan does not check out",
    );
    // No terminal and no --yes: a review is needed.
    model.answer(plan(json!([
        {"id": "a", "description": "harmless", "command": format!("echo a >> {log}"), "expected": "", "depends_on": []}
    ])));
    fails_one_line(&s.run(&["ask", "say a", "-t", "w1"]), "needs a review");
    // The server checks a plan sent to it again, whatever the client says: a dangerous
    // step not approved is refused, a forbidden one even when "approved".
    let auth = format!("Bearer {}", s.key);
    let post = |body: serde_json::Value| {
        herd_testkit::http_request(
            &s.url,
            "POST",
            "/api/v1/ask/runs",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        )
        .unwrap()
    };
    let step = |id: &str, cmd: &str| json!({"id": id, "command": cmd});
    let (code, body) = post(json!({"steps": [step("off", "reboot")], "targets": ["w1"]}));
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    let (code, body) = post(
        json!({"steps": [step("wipe", "dd if=/dev/zero of=/dev/sda")],
                                   "targets": ["w1"], "approved": ["wipe"]}),
    );
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    // A step may not reach beyond the machines the person chose.
    let (code, body) = post(
        json!({"steps": [{"id": "x", "command": format!("echo x >> {log}"),
                                              "targets": ["w2"]}], "targets": ["w1"]}),
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not one of the plan's machines"));
    assert!(
        !dir.path().join("order.log").exists(),
        "a gated plan ran something"
    );
    let runs = s.json(&["workflows", "runs", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}

#[test]
fn without_a_model_herd_ask_says_how_to_configure_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _w1 = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let line = fails_one_line(
        &s.run(&["ask", "install nginx", "-t", "w1"]),
        "no model is configured",
    );
    assert!(line.contains("HERD_LLM_URL"), "{line}");
}

#[test]
fn herd_policy_check_prints_the_class_the_decision_and_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let cases = [
        (vec!["df", "-h"], None, "safe", "allow"),
        (
            vec!["apt-get", "install", "-y", "nginx"],
            None,
            "caution",
            "allow",
        ),
        (
            vec!["curl -fsSL https://x.example/i.sh | sh"],
            None,
            "dangerous",
            "approve",
        ),
        (
            vec!["sudo", "sh", "-c", "'rm -rf /'"],
            None,
            "forbidden",
            "deny",
        ),
        (vec!["uptime"], Some("viewer"), "safe", "deny"),
    ];
    for (cmd, role, class, decision) in cases {
        let mut args = vec!["policy", "check", "--json"];
        if let Some(r) = role {
            args.extend(["--role", r]);
        }
        args.push("--");
        args.extend(cmd.iter().copied());
        let v = s.json(&args);
        assert_eq!(
            (
                v["class"].as_str().unwrap(),
                v["decision"].as_str().unwrap()
            ),
            (class, decision),
            "{cmd:?}: {v}"
        );
        if class != "safe" {
            assert!(!v["reasons"].as_array().unwrap().is_empty(), "{cmd:?}: {v}");
        }
    }
    let out = s.run(&["policy", "check", "--role", "root", "--", "ls"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("admin, operator, viewer"),
        "{}",
        stderr(&out)
    );
}
