//! herd's calls to other systems, seen from outside: workflow `http` and `notify` steps
//! against a scripted HTTP server and a real SMTP server (herd-testkit's callees), and
//! `herd breakers ls`.

use std::time::Duration;

use herd_testkit::{HttpCallee, SmtpServer};

use crate::harness::*;
use crate::workflows::{finished, start, step};

fn apply(s: &Server, dir: &std::path::Path, name: &str, text: &str) {
    let f = dir.join(format!("{name}.yaml"));
    std::fs::write(&f, text).unwrap();
    let out = s.run(&["workflows", "apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn breakers_ls_lists_the_hosts_called() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    // A fresh server has called nobody.
    let json = s.json(&["breakers", "ls", "--json"]);
    assert_eq!(json, serde_json::json!([]));
    let out = s.run(&["breakers", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for col in ["HOST", "STATE", "FAILURES", "OPENED", "NEXT PROBE"] {
        assert!(table.contains(col), "{table}");
    }
}

#[test]
fn a_workflow_calls_a_flaky_server_then_posts_and_mails_what_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let callee = HttpCallee::start().unwrap();
    callee.fail_next(2);
    let smtp = SmtpServer::start(dir.path()).unwrap();
    let url = &callee.url;
    let port = smtp.addr.port();
    let wf = format!(
        r#"name: report
steps:
  - id: call
    http:
      url: {url}/flaky
      retries: {{count: 3, backoff_ms: 10, max_backoff_ms: 100}}
      extract: {{id: "$.items[0].id", all: "$.items[*].n"}}
  - id: hook
    needs: [call]
    notify: {{webhook: "{url}/hook", text: "deployed ${{{{ steps.call.outputs.id }}}}"}}
  - id: mail
    needs: [call]
    notify:
      email:
        to: [ops@example.com, dev@example.com]
        subject: "herd: ${{{{ steps.call.outputs.id }}}} deployed"
        text: "status ${{{{ steps.call.outputs.status }}}}, items ${{{{ steps.call.outputs.all }}}}"
        from: herd@example.com
        smtp: {{host: 127.0.0.1, port: {port}}}
"#
    );
    apply(&s, dir.path(), "report", &wf);
    let id = start(&s, "report", &[]);
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "succeeded", "{r}");

    // Two failures, then the answer: three requests reached the server.
    let call = step(&r, "call");
    assert_eq!(callee.received("/flaky").len(), 3);
    assert_eq!(call["outputs"]["outputs"]["status"], "200", "{call}");
    assert_eq!(call["outputs"]["outputs"]["id"], "abc", "{call}");
    assert_eq!(call["outputs"]["outputs"]["all"], "[1,2]", "{call}");
    let output = call["output"].as_str().unwrap_or_default();
    assert!(output.starts_with("attempt 1: 500"), "{output}");
    assert!(output.contains(r#""id": "abc""#), "{output}");

    let hook = callee.received("/hook");
    assert_eq!(hook.len(), 1);
    assert_eq!(hook[0].method, "POST");
    assert_eq!(hook[0].body, r#"{"text":"deployed abc"}"#);
    assert_eq!(hook[0].header("content-type"), Some("application/json"));

    let mail = smtp.messages();
    assert_eq!(mail.len(), 1, "{mail:?}");
    let m = mail[0].replace("\r\n", "\n");
    assert!(m.contains("To: ops@example.com, dev@example.com\n"), "{m}");
    assert!(m.contains("Subject: herd: abc deployed\n"), "{m}");
    assert!(m.contains("\n\nstatus 200, items [1,2]"), "{m}");

    // The host answered in the end: listed, closed.
    let b = s.json(&["breakers", "ls", "--json"]);
    let flaky = b
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["host"] == url.trim_start_matches("http://"))
        .unwrap_or_else(|| panic!("{b}"));
    assert_eq!(flaky["state"], "closed", "{b}");
}

#[test]
fn a_host_that_keeps_failing_is_cut_off_without_being_called() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let callee = HttpCallee::start().unwrap();
    callee.fail_next(1000);
    let wf = format!(
        "name: poke\nsteps:\n  - id: call\n    http: {{url: \"{}/flaky\"}}\n",
        callee.url
    );
    apply(&s, dir.path(), "poke", &wf);
    let host = callee.url.trim_start_matches("http://").to_string();
    for i in 1..=5 {
        let id = start(&s, "poke", &[]);
        let r = finished(&s, &id, Duration::from_secs(60));
        assert_eq!(r["state"], "failed", "{r}");
        assert_eq!(callee.received("/flaky").len(), i);
    }
    // The breaker is open: the next run's step fails at once and sends nothing.
    let id = start(&s, "poke", &[]);
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "failed", "{r}");
    let detail = step(&r, "call")["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains(&format!("circuit open for {host} since ")),
        "{r}"
    );
    assert_eq!(callee.received("/flaky").len(), 5);
    let b = s.json(&["breakers", "ls", "--json"]);
    assert_eq!(b[0]["host"], host, "{b}");
    assert_eq!(b[0]["state"], "open", "{b}");
    assert_eq!(b[0]["consecutive_failures"], 5, "{b}");
    let table = stdout(&s.run(&["breakers", "ls"]));
    assert!(table.contains(&host) && table.contains("open"), "{table}");
}

#[test]
fn after_the_cooldown_one_probe_closes_the_breaker_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &["--breaker-threshold", "2", "--breaker-cooldown", "1s"],
    )
    .unwrap();
    let callee = HttpCallee::start().unwrap();
    callee.fail_next(1000);
    let wf = format!(
        "name: poke\nsteps:\n  - id: call\n    http: {{url: \"{}/flaky\"}}\n",
        callee.url
    );
    apply(&s, dir.path(), "poke", &wf);
    let run = |s: &Server| {
        let id = start(s, "poke", &[]);
        finished(s, &id, Duration::from_secs(60))
    };
    for _ in 0..3 {
        assert_eq!(run(&s)["state"], "failed");
    }
    // Two failures opened it; the third run was refused without a call.
    assert_eq!(callee.received("/flaky").len(), 2);
    let b = s.json(&["breakers", "ls", "--json"]);
    assert_eq!(b[0]["state"], "open", "{b}");
    // The host recovers; once the cooldown has passed, the probe reaches it and closes it.
    callee.fail_next(0);
    let next_probe = b[0]["next_probe_ms"].as_i64().unwrap();
    wait_for(Duration::from_secs(10), "the next probe time", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        (now > next_probe + 100).then_some(())
    });
    let r = run(&s);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(callee.received("/flaky").len(), 3);
    let b = s.json(&["breakers", "ls", "--json"]);
    assert_eq!(b[0]["state"], "closed", "{b}");
    assert_eq!(b[0]["consecutive_failures"], 0, "{b}");
}

#[test]
fn a_bad_actions_ca_stops_the_server_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    for (file, needle) in [
        (bad.clone(), "holds no certificate"),
        (dir.path().join("missing.pem"), "cannot read --actions-ca"),
    ] {
        let out = herd()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--actions-ca")
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        crate::errors::fails_one_line(&out, needle);
    }
}
