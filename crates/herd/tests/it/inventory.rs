//! Inventory and its limits: revoking API keys and join tokens, unique key names, the
//! longest token life, revoked machines in listings and selectors, `agents -t`, labels on
//! many machines at once, and filters on runs, tasks and the audit log.

use std::process::Output;
use std::time::Duration;

use crate::harness::*;

/// The command failed with exactly one line on stderr, containing `needle`.
#[track_caller]
fn fails_one_line(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure; stdout {:?} stderr {err:?}",
        stdout(out)
    );
    let trimmed = err.trim();
    assert_eq!(trimmed.lines().count(), 1, "one line expected: {err:?}");
    assert!(trimmed.starts_with("herd: "), "{err:?}");
    assert!(trimmed.contains(needle), "expected {needle:?} in {err:?}");
    trimmed.to_string()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: stdout {:?} stderr {:?}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[test]
fn keys_and_tokens_revoke_and_keep_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start_with(HERD, dir.path(), "127.0.0.1:0", &["--max-token-ttl", "2d"]).unwrap();

    // A key revoked by name answers 401 with one line from then on.
    let ci = s.json(&["keys", "create", "--name", "ci", "--json"]);
    let ci_key = ci["key"].as_str().unwrap().to_string();
    let as_ci = |args: &[&str]| {
        s.cli()
            .env("HERD_API_KEY", &ci_key)
            .args(args)
            .output()
            .unwrap()
    };
    ok(&as_ci(&["agents"]));
    // Nobody revokes the key they call with.
    fails_one_line(
        &as_ci(&["keys", "revoke", "ci"]),
        "is the key of this request",
    );
    let revoked = s.json(&["keys", "revoke", "ci", "--json"]);
    assert_eq!(revoked["name"], "ci");
    assert!(revoked["revoked_at"].is_i64(), "{revoked}");
    let msg = fails_one_line(&as_ci(&["agents"]), "revoked");
    assert!(msg.contains("ask an admin for a new one"), "{msg}");
    let (status, _) = http_get(&s.url, "/api/v1/agents", Some(&ci_key)).unwrap();
    assert_eq!(status, 401);
    let keys = s.json(&["keys", "ls", "--json"]);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "ci" && k["revoked_at"].is_i64()),
        "{keys}"
    );
    fails_one_line(
        &s.run(&["keys", "revoke", "nosuch"]),
        "no API key named \"nosuch\"",
    );

    // Key names are unique, revoked keys' too.
    let msg = fails_one_line(
        &s.run(&["keys", "create", "--name", "ci"]),
        "already exists",
    );
    assert!(msg.contains("pick another --name"), "{msg}");
    ok(&s.run(&["keys", "create", "--name", "ci-2"]));

    // A token longer than the server's maximum is refused, naming the maximum.
    let msg = fails_one_line(&s.run(&["token", "create", "--ttl", "3d"]), "at most 2d");
    assert!(msg.contains("--max-token-ttl"), "{msg}");
    ok(&s.run(&["token", "create", "--ttl", "2d"]));

    // A revoked token admits no machine.
    let t = s.json(&["token", "create", "--uses", "5", "--json"]);
    let (id, token) = (t["id"].as_str().unwrap(), t["token"].as_str().unwrap());
    let out = ok(&s.run(&["token", "revoke", id]));
    assert!(out.contains(id), "{out}");
    let mut a = Agent::start(&s, "late", &[], token, None).unwrap();
    let code = a.wait_exit(Duration::from_secs(15));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log: {}",
        a.log()
    );
    assert!(a.log().contains("revoked"), "log: {}", a.log());
    fails_one_line(&s.run(&["token", "revoke", "nosuch"]), "no join token");
    // The token itself names it too.
    let t2 = s.json(&["token", "create", "--json"]);
    let revoked = s.json(&["token", "revoke", t2["token"].as_str().unwrap(), "--json"]);
    assert_eq!(revoked["id"], t2["id"]);
    assert_eq!(revoked["uses_left"], 0);

    let audit = s.json(&["audit", "--json"]);
    for action in ["key.revoke", "token.revoke"] {
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action),
            "{action} missing: {audit:#}"
        );
    }
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn agents_by_selector_bulk_labels_and_revoked_machines() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _w1 = s.agent("web-1", &["role=web"]).unwrap();
    let _w2 = s.agent("web-2", &["role=web"]).unwrap();
    let _d1 = s.agent("db-1", &["role=db"]).unwrap();
    let w3 = s.agent("web-3", &["role=web"]).unwrap();
    s.wait_online(&["web-1", "web-2", "db-1", "web-3"]).unwrap();

    // agents -t narrows the listing; selectors' new atoms and `|` work through it.
    assert_eq!(
        names(&s.json(&["agents", "-t", "role=web", "--json"])),
        ["web-1", "web-2", "web-3"]
    );
    assert_eq!(
        names(&s.json(&["agents", "-t", "web-[12]|db-*", "--json"])),
        ["db-1", "web-1", "web-2"]
    );
    assert_eq!(
        names(&s.json(&["agents", "-t", "name=web-[!1]", "-t", "db-1", "--json"])),
        ["db-1", "web-2", "web-3"]
    );
    // ip= matches the addresses the machines report (all four share this host's).
    let listed = s.json(&["agents", "-t", "web-1", "--json"]);
    if let Some(addr) = listed[0]["facts"]["ips"][0].as_str() {
        let sel = format!("ip={}", addr.split('/').next().unwrap());
        assert_eq!(
            names(&s.json(&["agents", "-t", &sel, "--json"])).len(),
            4,
            "{sel}"
        );
    }
    let none = s.json(&["agents", "-t", "ip=255.255.255.255/32", "--json"]);
    assert_eq!(names(&none), Vec::<String>::new());
    fails_one_line(&s.run(&["agents", "-t", "a&&"]), "bad selector");

    // Bulk label: every machine the selector picks, one audit entry each.
    let out = ok(&s.run(&[
        "agents",
        "label",
        "-t",
        "role=web & !web-3",
        "tier=front",
        "role-",
    ]));
    assert!(
        out.contains("web-1: tier=front") && out.contains("web-2: tier=front"),
        "{out}"
    );
    assert_eq!(
        names(&s.json(&["agents", "-t", "tier=front", "--json"])),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(&s.json(&["agents", "-t", "role=web", "--json"])),
        ["web-3"]
    );
    let audit = s.json(&["audit", "--json"]);
    let labelled: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.label")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(labelled.len(), 2, "{audit:#}");
    fails_one_line(
        &s.run(&["agents", "label", "-t", "nosuch", "x=y"]),
        "no machine matches",
    );
    // The single-machine form still works.
    ok(&s.run(&["agents", "label", "db-1", "tier=back"]));

    // A revoked machine leaves the default listing, is listed as revoked with --all, and a
    // selector naming it says so.
    ok(&s.run(&["agents", "revoke", "web-3"]));
    drop(w3);
    assert!(!names(&s.json(&["agents", "--json"])).contains(&"web-3".to_string()));
    let all = s.json(&["agents", "--all", "--json"]);
    let revoked: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "web-3")
        .collect();
    assert_eq!(revoked.len(), 1, "{all:#}");
    assert!(revoked[0]["revoked_at"].is_i64(), "{all:#}");
    let table = ok(&s.run(&["agents", "--all"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web-3") && l.contains("revoked")),
        "{table}"
    );
    assert_eq!(
        names(&s.json(&["agents", "--all", "-t", "web-3", "--json"])),
        ["web-3"]
    );
    let msg = fails_one_line(&s.run(&["run", "-t", "web-3", "--", "true"]), "revoked");
    assert!(
        msg.contains("web-3") && !msg.contains("no machine matches"),
        "{msg}"
    );
    let msg = fails_one_line(
        &s.run(&["run", "-t", "nosuch", "--", "true"]),
        "no machine matches",
    );
    assert!(!msg.contains("revoked"), "{msg}");
}

#[test]
fn filters_narrow_runs_tasks_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _w = s.agent("web-1", &["role=web"]).unwrap();
    let _d = s.agent("db-1", &["role=db"]).unwrap();
    s.wait_online(&["web-1", "db-1"]).unwrap();
    let ci = s.json(&["keys", "create", "--name", "ci", "--json"]);
    let ci_key = ci["key"].as_str().unwrap().to_string();

    ok(&s.run(&["run", "-t", "web-1", "--", "true"]));
    let out = s
        .cli()
        .env("HERD_API_KEY", &ci_key)
        .args(["run", "-t", "db-1", "--", "false"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));

    let count = |args: &[&str]| s.json(args).as_array().unwrap().len();
    let ids = |args: &[&str]| -> Vec<String> {
        s.json(args)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(count(&["runs", "ls", "--json"]), 2);
    let by_ci = ids(&["runs", "ls", "--who", "ci", "--json"]);
    assert_eq!(by_ci.len(), 1);
    assert_eq!(ids(&["runs", "ls", "--machine", "db-1", "--json"]), by_ci);
    assert_eq!(ids(&["runs", "ls", "--state", "failed", "--json"]), by_ci);
    assert_eq!(count(&["runs", "ls", "--state", "succeeded", "--json"]), 1);
    assert_eq!(count(&["runs", "ls", "--since", "1h", "--json"]), 2);
    assert_eq!(
        count(&["runs", "ls", "--since", "2999-01-01T00:00:00Z", "--json"]),
        0
    );

    let tasks = s.json(&["tasks", "ls", "--machine", "web-1", "--json"]);
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks:#}");
    assert_eq!(tasks[0]["agent_name"], "web-1");
    let failed = s.json(&["tasks", "ls", "--state", "failed", "--json"]);
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed:#}");
    assert_eq!(failed[0]["agent_name"], "db-1");
    let by_ci = s.json(&["tasks", "ls", "--who", "ci", "--json"]);
    assert_eq!(by_ci.as_array().unwrap().len(), 1, "{by_ci:#}");
    assert_eq!(by_ci[0]["agent_name"], "db-1");
    assert_eq!(
        count(&["tasks", "ls", "--since", "2999-01-01T00:00:00Z", "--json"]),
        0
    );

    let audit = s.json(&["audit", "--who", "ci", "--json"]);
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit:#}");
    assert_eq!(entries[0]["action"], "run.create");
    let about = s.json(&["audit", "--machine", "web-1", "--json"]);
    assert!(!about.as_array().unwrap().is_empty(), "{about:#}");
    assert!(
        about
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "agent:web-1" || e["target"] == "agent:web-1"),
        "{about:#}"
    );
    assert!(count(&["audit", "--json"]) > about.as_array().unwrap().len());
    assert_eq!(
        count(&["audit", "--since", "2999-01-01T00:00:00Z", "--json"]),
        0
    );

    // A --since that is neither a duration nor a time is refused before any request.
    let out = s.run(&["runs", "ls", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neither a duration"),
        "{}",
        stderr(&out)
    );
}
