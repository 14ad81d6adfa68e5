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
