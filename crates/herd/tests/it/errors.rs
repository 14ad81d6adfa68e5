//! Bad input gets a one-line error and a non-zero exit, and the server stays up: malformed
//! selectors and durations, unreachable or unconfigured servers, wrong keys, bad join tokens,
//! revoked agents, labels, audit, metrics and the OpenAPI document.

use std::process::Output;
use std::time::Duration;

use crate::harness::*;

/// The command failed, printing exactly one non-empty line to stderr that contains `needle`.
#[track_caller]
pub(crate) fn fails_one_line(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure; stdout {:?} stderr {err:?}",
        stdout(out)
    );
    assert_ne!(out.status.code(), None, "killed by a signal? {err:?}");
    let trimmed = err.trim();
    assert!(!trimmed.is_empty(), "no error message");
    assert_eq!(trimmed.lines().count(), 1, "one line expected: {err:?}");
    assert!(trimmed.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!trimmed.contains("panicked"), "{err:?}");
    trimmed.to_string()
}

/// A clap-parsed flag failed: non-zero exit, and the first stderr line gives the reason.
#[track_caller]
fn fails_usage(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure; stderr {err:?}");
    let first = err.trim().lines().next().unwrap_or_default();
    assert!(
        first.contains(needle),
        "expected {needle:?} in first line of {err:?}"
    );
    assert!(!err.contains("panicked"), "{err:?}");
}

/// `/healthz` answers 200 and a real run on every machine succeeds.
#[track_caller]
fn server_alive(s: &Server) {
    let (status, body) = http_get(&s.url, "/healthz", None).unwrap();
    assert_eq!(status, 200, "healthz: {}", String::from_utf8_lossy(&body));
    let out = s.run(&["run", "--all", "--", "true"]);
    assert!(
        out.status.success(),
        "run after bad input failed: {}; server log: {}",
        stderr(&out),
        s.log()
    );
}

fn agent_line_with(a: &Agent, needle: &str) -> bool {
    a.log().lines().any(|l| l.contains(needle))
}

#[test]
fn bad_selectors_and_unknown_targets_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("web-1", &["role=web"]).unwrap();
    s.wait_online(&["web-1"]).unwrap();

    for sel in ["a&&", "(web"] {
        let out = s.run(&["run", "-t", sel, "--", "true"]);
        let msg = fails_one_line(&out, "bad selector");
        assert!(msg.contains(sel), "names the selector: {msg}");
        server_alive(&s);
    }
    let out = s.run(&["run", "-t", "nosuch", "--", "true"]);
    let msg = fails_one_line(&out, "no machine matches");
    assert!(msg.contains("nosuch"), "{msg}");
    // Neither -t nor --all.
    let out = s.run(&["run", "--", "true"]);
    fails_one_line(&out, "no machines chosen");
    server_alive(&s);
}

#[test]
fn bad_durations_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();

    let out = s.run(&["run", "--all", "--timeout", "5x", "--", "true"]);
    fails_usage(&out, "bad duration");
    assert!(stderr(&out).contains("5x"), "{}", stderr(&out));
    let out = s.run(&["token", "create", "--ttl", "abc"]);
    fails_usage(&out, "bad duration");
    assert!(stderr(&out).contains("abc"), "{}", stderr(&out));
    let out = s.run(&["token", "create", "--uses", "0"]);
    fails_one_line(&out, "--uses must be at least 1");
    server_alive(&s);
}

#[test]
fn unreachable_server_and_missing_config_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.toml");

    // Nothing listens on port 1.
    let out = herd()
        .env("HERD_CONFIG", &missing)
        .env("HERD_SERVER", "http://127.0.0.1:1")
        .env("HERD_API_KEY", "hk_0123456789abcdef_0123456789abcdef")
        .args(["agents"])
        .output()
        .unwrap();
    let msg = fails_one_line(&out, "cannot reach");
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    let out = herd()
        .env("HERD_CONFIG", &missing)
        .env("HERD_SERVER", "http://127.0.0.1:1")
        .env("HERD_API_KEY", "hk_0123456789abcdef_0123456789abcdef")
        .args(["run", "--all", "--", "true"])
        .output()
        .unwrap();
    fails_one_line(&out, "cannot reach");

    // No config file and no environment.
    for args in [&["agents"][..], &["run", "--all", "--", "true"], &["audit"]] {
        let out = herd()
            .env("HERD_CONFIG", &missing)
            .args(args)
            .output()
            .unwrap();
        let msg = fails_one_line(&out, "herd up");
        assert!(msg.contains("HERD_SERVER"), "{msg}");
    }

    // A server URL that is not a URL.
    let out = herd()
        .env("HERD_CONFIG", &missing)
        .env("HERD_SERVER", "localhost:7700")
        .env("HERD_API_KEY", "x")
        .args(["agents"])
        .output()
        .unwrap();
    fails_one_line(&out, "bad server URL");

    // A config file that is not TOML.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "server = [unterminated\n").unwrap();
    let out = herd()
        .env("HERD_CONFIG", &broken)
        .args(["agents"])
        .output()
        .unwrap();
    fails_one_line(&out, "not valid TOML");
}

#[test]
fn wrong_api_keys_are_rejected_and_created_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();

    let unknown = format!("hk_0123456789abcdef_{}", "ab".repeat(16));
    for key in [unknown.as_str(), "nope"] {
        for args in [
            &["agents"][..],
            &["run", "--all", "--", "true"],
            &["token", "create"],
        ] {
            let out = s
                .cli()
                .env("HERD_API_KEY", key)
                .args(args)
                .output()
                .unwrap();
            fails_one_line(&out, "API key is not valid");
        }
        server_alive(&s);
    }

    let v = s.json(&["keys", "create", "--name", "ci", "--json"]);
    let key = v["key"].as_str().expect("key").to_string();
    let out = s
        .cli()
        .env("HERD_API_KEY", &key)
        .args(["run", "--all", "--", "echo", "with-new-key"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "with-new-key\n");
    let out = s.run(&["keys", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ci"), "{}", stdout(&out));
    // The run is audited under the new key's name.
    let audit = s.json(&["audit", "--json"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "run.create"
                && e["actor"].as_str().is_some_and(|a| a.contains("ci"))),
        "{audit:#}"
    );
}

#[test]
fn join_tokens_expired_used_up_and_garbage_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();

    // Expired.
    let v = s.json(&["token", "create", "--ttl", "1s", "--json"]);
    let expired = v["token"].as_str().unwrap().to_string();
    assert!(
        v["join_command"]
            .as_str()
            .is_some_and(|c| c.contains(&expired)),
        "{v}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut a = Agent::start(&s, "late", &[], &expired, None).unwrap();
    let code = a.wait_exit(Duration::from_secs(15));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        a.log()
    );
    assert!(agent_line_with(&a, "expired"), "log: {}", a.log());

    // Used up.
    let once = s.join_token(1).unwrap();
    let _first = Agent::start(&s, "first", &[], &once, None).unwrap();
    s.wait_online(&["first"]).unwrap();
    let mut second = Agent::start(&s, "second", &[], &once, None).unwrap();
    let code = second.wait_exit(Duration::from_secs(15));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        second.log()
    );
    assert!(agent_line_with(&second, "used up"), "log: {}", second.log());

    // Garbage.
    let mut g = Agent::start(&s, "garbage", &[], "not-a-token", None).unwrap();
    let code = g.wait_exit(Duration::from_secs(15));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        g.log()
    );
    assert!(agent_line_with(&g, "not valid"), "log: {}", g.log());

    // Well-formed but unknown.
    let fake = format!("hj_0123456789abcdef_{}", "cd".repeat(16));
    let mut f = Agent::start(&s, "fake", &[], &fake, None).unwrap();
    let code = f.wait_exit(Duration::from_secs(15));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        f.log()
    );
    assert!(agent_line_with(&f, "not valid"), "log: {}", f.log());

    // None of them joined.
    let v = s.json(&["agents", "--json"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, vec!["first"], "{v:#}");
    server_alive(&s);
}

#[test]
fn revoked_agent_is_cut_off_and_cannot_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _keep = s.agent("keep", &[]).unwrap();
    let mut a = s.agent("doomed", &[]).unwrap();
    s.wait_online(&["keep", "doomed"]).unwrap();

    let out = s.run(&["agents", "revoke", "doomed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked doomed"), "{}", stdout(&out));

    let code = a.wait_exit(Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        a.log()
    );
    assert!(agent_line_with(&a, "revoked"), "log: {}", a.log());

    let v = s.json(&["agents", "--json"]);
    assert!(
        !v.as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "doomed" && x["online"] == true),
        "{v:#}"
    );
    // It is not picked by selectors any more.
    let out = s.run(&["run", "-t", "doomed", "--", "true"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));

    // Restarting it from the same state dir, without a token, fails the same way.
    let mut again = Agent::start(&s, "doomed", &[], "", None).unwrap();
    let code = again.wait_exit(Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        again.log()
    );
    assert!(agent_line_with(&again, "revoked"), "log: {}", again.log());

    // Revoking a machine that does not exist is a one-line error.
    let out = s.run(&["agents", "revoke", "nosuch"]);
    fails_one_line(&out, "nosuch");
    server_alive(&s);
}

#[test]
fn labels_steer_selection_and_bad_labels_fail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("box", &[]).unwrap();
    let _b = s.agent("other", &[]).unwrap();
    s.wait_online(&["box", "other"]).unwrap();

    let out = s.run(&["agents", "label", "box", "tier=gold"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("tier=gold"), "{}", stdout(&out));
    let out = s.run(&["run", "-t", "tier=gold", "--", "echo", "x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "x\n", "only box runs it");
    // `run --json` streams one event per line; the last is the run with every task.
    let out = s.run(&["run", "-t", "tier=gold", "--json", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let run = events.last().cloned().unwrap_or_default();
    assert_eq!(run["type"], "end", "{run:#}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "task" && e["machine"] == "box")
    );
    let tasks = run["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{run:#}");
    assert_eq!(tasks[0]["agent_name"], "box", "{run:#}");

    let out = s.run(&["agents", "label", "box", "tier-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["run", "-t", "tier=gold", "--", "echo", "x"]);
    fails_one_line(&out, "no machine matches");

    let out = s.run(&["agents", "label", "box", "bad key"]);
    fails_one_line(&out, "bad label");
    let out = s.run(&["agents", "label", "nosuch", "a=b"]);
    fails_one_line(&out, "nosuch");
    server_alive(&s);
}

#[test]
fn audit_records_who_did_what() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("aud", &[]).unwrap();
    let _b = s.agent("gone", &[]).unwrap();
    s.wait_online(&["aud", "gone"]).unwrap();
    let out = s.run(&["run", "--all", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["agents", "label", "aud", "k=v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["agents", "revoke", "gone"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = s.json(&["keys", "create", "--name", "k2", "--json"]);

    let v = s.json(&["audit", "--json"]);
    let entries = v.as_array().expect("audit is a list");
    for action in [
        "run.create",
        "token.create",
        "agent.join",
        "agent.revoke",
        "agent.label",
        "key.create",
    ] {
        let e = entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {v:#}"));
        assert!(
            e["actor"].as_str().is_some_and(|a| !a.is_empty()),
            "{action} without actor: {e}"
        );
        assert!(e["at"].as_i64().is_some(), "{action} without time: {e}");
    }
    let rev = entries
        .iter()
        .find(|e| e["action"] == "agent.revoke")
        .unwrap();
    assert!(
        rev["target"].as_str().is_some_and(|t| t.contains("gone")),
        "{rev}"
    );
    let out = s.run(&["audit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("agent.revoke"), "{}", stdout(&out));
}

#[test]
fn metrics_and_openapi_are_open_and_the_api_needs_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m", &[]).unwrap();
    s.wait_online(&["m"]).unwrap();
    server_alive(&s);

    let (status, body) = http_get(&s.url, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("herd_agents_connected"), "{text}");
    assert!(text.contains("herd_tasks{state=\"succeeded\"}"), "{text}");
    assert!(
        text.contains("herd_dispatch_latency_seconds_bucket"),
        "{text}"
    );
    let connected = text
        .lines()
        .find(|l| l.starts_with("herd_agents_connected "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<f64>().ok());
    assert_eq!(connected, Some(1.0), "{text}");

    let (status, body) = http_get(&s.url, "/api/v1/openapi.json", None).unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("openapi is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc:#}"
    );
    assert!(doc["paths"].get("/api/v1/runs").is_some(), "{doc:#}");

    for key in [None, Some("nope")] {
        let (status, body) = http_get(&s.url, "/api/v1/agents", key).unwrap();
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        let msg = v["error"].as_str().expect("error string");
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg}");
    }
    let (status, body) = s.api_get("/api/v1/runs/nosuch").unwrap();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    server_alive(&s);
}
