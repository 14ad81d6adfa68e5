//! LangFlow end to end. Against a real LangFlow (started by herd-testkit): a source refused
//! for a wrong key, added, synced, its flow listed, shown and run with an input and a tweak;
//! a workflow `bash → flow → bash` passing the flow's answer on; a schedule firing the flow
//! every 2 s with every answer kept; a flow removed upstream. Against a small server of the
//! test speaking LangFlow's wire format, what a real one will not do on demand: `data` as a
//! string, a 500 with its text, a hang past the timeout, and the source's breaker opening.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use herd_testkit::LangFlow;

use crate::errors::fails_one_line;
use crate::harness::*;

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn flows_of_a_real_langflow_are_synced_run_chained_and_scheduled() {
    let lf = LangFlow::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();

    // A wrong key is refused at once, naming the source.
    let line = fails_one_line(
        &s.run(&[
            "flows",
            "sources",
            "add",
            "lab",
            "--url",
            lf.url(),
            "--api-key",
            "sk-wrong",
        ]),
        "source lab",
    );
    assert!(line.contains("API key was refused"), "{line}");
    assert!(
        s.json(&["flows", "sources", "ls", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    let added = ok(s.run(&[
        "flows",
        "sources",
        "add",
        "lab",
        "--url",
        lf.url(),
        "--api-key",
        lf.api_key(),
    ]));
    assert!(added.contains("source lab added"), "{added}");
    let synced = ok(s.run(&["flows", "sync", "lab"]));
    assert!(
        synced.contains("lab: 0 added") && synced.contains("1 unchanged"),
        "{synced}"
    );
    let flows = s.json(&["flows", "ls", "--json"]);
    let echo = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == lf.flow_id())
        .unwrap_or_else(|| panic!("{flows}"))
        .clone();
    let name = echo["name"].as_str().unwrap().to_string();
    assert_eq!(echo["inputs"][0]["kind"], "ChatInput", "{echo}");
    let shown = ok(s.run(&["flows", "show", &name]));
    assert!(
        shown.contains("ChatOutput") && shown.contains("sender_name"),
        "{shown}"
    );

    // Run with an input and a tweak: the echoed text; the whole answer with --json.
    let text = ok(s.run(&[
        "flows",
        "run",
        &name,
        "--input",
        "hello herd",
        "--tweak",
        "ChatOutput.sender_name=herd-bot",
        "-t",
        "w1",
    ]));
    assert_eq!(text.trim(), "hello herd");
    let whole = s.json(&[
        "flows",
        "run",
        &name,
        "--input",
        "again",
        "--tweak",
        "Chat Output.sender_name=herd-bot",
        "-t",
        "w1",
        "--json",
    ]);
    let message = &whole["outputs"][0]["outputs"][0]["results"]["message"];
    assert_eq!(message["text"], "again", "{whole}");
    assert_eq!(message["sender_name"], "herd-bot", "{whole}");
    let bad = fails_one_line(
        &s.run(&[
            "flows",
            "run",
            &name,
            "--input",
            "x",
            "--tweak",
            "ChatOutptu.sender_name=x",
            "-t",
            "w1",
        ]),
        "ChatOutptu",
    );
    assert!(bad.contains("ChatOutput"), "a suggestion: {bad}");
    // The run is a task like any other: its output log has the request and the answer, not
    // the key.
    let runs = s.json(&["runs", "ls", "--json"]);
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    let logs = ok(s.run(&["runs", "logs", &run_id]));
    assert!(
        logs.contains("→ POST") && logs.contains("← 200") && logs.contains("again"),
        "{logs}"
    );
    assert!(
        !logs.contains(lf.api_key()),
        "the key in the output: {logs}"
    );

    // bash → flow → bash: the flow's answer reaches the last step.
    let wf = dir.path().join("chain.yaml");
    std::fs::write(
        &wf,
        format!(
            "name: chain\nsteps:\n  - id: ask\n    run: herd helper output word=ping\n  - id: flow\n    needs: [ask]\n    langflow:\n      flow: {name}\n      input: '${{{{ steps.ask.outputs.word }}}} from bash'\n      tweaks:\n        ChatOutput.sender_name: chain\n      outputs:\n        sender: /outputs/0/outputs/0/results/message/sender_name\n  - id: tell\n    needs: [flow]\n    run: echo \"got ${{{{ steps.flow.outputs.text }}}} by ${{{{ steps.flow.outputs.sender }}}}\"\n"
        ),
    )
    .unwrap();
    ok(s.run(&["workflows", "apply", "-f", wf.to_str().unwrap()]));
    let out = ok(s.run(&["workflows", "run", "chain", "-t", "w1"]));
    assert!(out.contains("got ping from bash by chain"), "{out}");

    // A schedule fires the flow every 2 s; every answer is kept with its run.
    ok(s.run(&[
        "schedules",
        "add",
        "tick",
        "--every",
        "2s",
        "--flow",
        &name,
        "--input",
        "tick tock",
        "-t",
        "w1",
    ]));
    let fires = wait_for(Duration::from_secs(60), "three answered fires", || {
        let f = s.json(&["schedules", "history", "tick", "--json"]);
        let done: Vec<serde_json::Value> = f
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["run_state"] == "succeeded")
            .cloned()
            .collect();
        (done.len() >= 3).then_some(done)
    });
    ok(s.run(&["schedules", "pause", "tick"]));
    for f in &fires {
        let run = s.json(&["runs", "show", f["run_id"].as_str().unwrap(), "--json"]);
        assert_eq!(run["tasks"][0]["outputs"]["text"], "tick tock", "{run}");
        assert_eq!(run["created_by"], "schedule:tick", "{run}");
    }

    // A flow removed upstream is marked, and a run of it says so.
    let temp = lf.create_echo_flow("temp", "temp-ep").unwrap();
    let synced = ok(s.run(&["flows", "sync"]));
    assert!(synced.contains("1 added"), "{synced}");
    lf.delete_flow(&temp).unwrap();
    let synced = ok(s.run(&["flows", "sync", "lab"]));
    assert!(synced.contains("1 removed upstream"), "{synced}");
    let listed = ok(s.run(&["flows", "ls"]));
    assert!(listed.contains("removed upstream"), "{listed}");
    fails_one_line(
        &s.run(&["flows", "run", "temp", "-t", "w1"]),
        "was removed from source lab",
    );
}

/// A LangFlow of the test's own: its wire format, answers scripted by flow id.
struct Fake {
    url: String,
}

fn node(id: &str, kind: &str, display: &str, field: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "type": "genericNode", "data": {"id": id, "type": kind, "node": {
        "display_name": display, "metadata": {"module": format!("lfx.components.input_output.{kind}")},
        "template": {field: {"type": "str", "value": "", "display_name": field}}}}})
}

fn graph() -> serde_json::Value {
    serde_json::json!({"nodes": [node("ChatInput-f1", "ChatInput", "Chat Input", "input_value"),
                                node("ChatOutput-f2", "ChatOutput", "Chat Output", "sender_name")],
                      "edges": []})
}

fn answer(text: &str) -> String {
    serde_json::json!({"session_id": "s1", "outputs": [{"inputs": {}, "outputs": [{
        "results": {"message": {"text": text, "sender_name": "AI"}}}]}]})
    .to_string()
}

impl Fake {
    fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                std::thread::spawn(move || serve(conn));
            }
        });
        Fake { url }
    }
}

fn serve(mut conn: std::net::TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    if reader.read_line(&mut head).is_err() {
        return;
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut len, mut key) = (0usize, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("x-api-key:") {
            key = line["x-api-key:".len()..].trim().to_string();
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let (status, text) = if key != "sk-fake" {
        (403, r#"{"detail":"Invalid API key"}"#.to_string())
    } else if path.starts_with("/api/v1/users/whoami") {
        (200, r#"{"id":"u1"}"#.to_string())
    } else if path.starts_with("/api/v1/flows/") {
        // `data` as an object, and as a string holding one.
        let flows = serde_json::json!([
            {"id": "f-ok", "name": "stringly", "data": graph().to_string()},
            {"id": "f-500", "name": "broken", "data": graph()},
            {"id": "f-hang", "name": "sleepy", "data": graph()},
            {"id": "f-dup1", "name": "twin", "data": graph()},
            {"id": "f-dup2", "name": "twin", "data": graph()},
        ]);
        (200, flows.to_string())
    } else if path.starts_with("/api/v1/run/f-ok") {
        (200, answer("fake answer"))
    } else if path.starts_with("/api/v1/run/f-500") {
        (500, r#"{"detail":"the model backend is down"}"#.to_string())
    } else if path.starts_with("/api/v1/run/f-hang") {
        std::thread::sleep(Duration::from_secs(20));
        (200, answer("late"))
    } else {
        (404, r#"{"detail":"Not Found"}"#.to_string())
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

#[test]
fn langflow_failures_are_one_line_and_open_the_sources_breaker() {
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    fails_one_line(
        &s.run(&[
            "flows",
            "sources",
            "add",
            "fake",
            "--url",
            &fake.url,
            "--api-key",
            "nope",
        ]),
        "source fake: the API key was refused (Invalid API key)",
    );
    fails_one_line(
        &s.run(&[
            "flows",
            "sources",
            "add",
            "down",
            "--url",
            "http://127.0.0.1:9",
            "--api-key",
            "k",
        ]),
        "source down: cannot reach LangFlow",
    );
    ok(s.run(&[
        "flows",
        "sources",
        "add",
        "fake",
        "--url",
        &fake.url,
        "--api-key",
        "sk-fake",
    ]));
    // `data` as a string is read like an object.
    let shown = s.json(&["flows", "show", "stringly", "--json"]);
    assert_eq!(shown["inputs"][0]["id"], "ChatInput-f1", "{shown}");
    let text = ok(s.run(&["flows", "run", "stringly", "--input", "hi", "-t", "w1"]));
    assert_eq!(text.trim(), "fake answer");
    // Two flows of one name: named by their ids.
    fails_one_line(
        &s.run(&["flows", "run", "twin", "-t", "w1"]),
        "2 flows of source fake are named \"twin\" — give the one you mean by its id (f-dup1, f-dup2)",
    );
    // A hang past the timeout.
    let line = fails_one_line(
        &s.run(&[
            "flows",
            "run",
            "sleepy",
            "--input",
            "hi",
            "--timeout",
            "1s",
            "-t",
            "w1",
        ]),
        "did not answer within 1s",
    );
    assert!(line.contains("flow sleepy of source fake"), "{line}");
    // A 500 with LangFlow's own text; LangFlow failing again and again opens the breaker of
    // the source, and runs are refused at once.
    let line = fails_one_line(
        &s.run(&["flows", "run", "broken", "--input", "hi", "-t", "w1"]),
        "the model backend is down",
    );
    assert!(line.contains("500"), "{line}");
    wait_for(
        Duration::from_secs(60),
        "the source's breaker to open",
        || {
            let out = s.run(&["flows", "run", "broken", "--input", "hi", "-t", "w1"]);
            let err = stderr(&out);
            err.contains("circuit open").then_some(())
        },
    );
    let line = fails_one_line(
        &s.run(&["flows", "run", "stringly", "--input", "hi", "-t", "w1"]),
        "circuit open",
    );
    assert!(line.contains("source fake"), "{line}");
}
