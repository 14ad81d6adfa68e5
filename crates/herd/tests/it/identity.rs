//! Who is who: one server per data dir, and an agent's identity that cannot be copied or
//! renamed silently.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A second server on a running server's data dir exits with one line naming the holder's
/// PID.
#[test]
fn second_server_on_a_data_dir_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_on(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &[],
        herd_testkit::Database::DataDir,
    )
    .unwrap();
    let second = herd()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(
        err.contains(&format!(
            "another herd server (PID {}) is using the data dir",
            s.pid()
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Runs `cmd` with stderr captured until it exits; kills it and fails after `timeout`.
fn exits_within(mut cmd: Command, timeout: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still runs after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `herd agent` on an existing state dir, without a join token.
fn agent_on(s: &Server, state_dir: &Path) -> Command {
    let mut cmd = herd();
    cmd.args(["agent", "--server", &s.url, "--state-dir"])
        .arg(state_dir);
    cmd
}

/// The audit log's entries with `action`.
fn audited(s: &Server, action: &str) -> Vec<serde_json::Value> {
    let v = s.json(&["audit", "--json"]);
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// A copy of an agent's state dir started elsewhere is refused with one line naming the
/// conflict and what to do, the refusal is audited, and the first agent stays connected.
#[test]
fn copied_identity_is_refused_and_the_first_stays() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut first = s.agent("orig", &[]).unwrap();
    s.wait_online(&["orig"]).unwrap();

    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(
        first.state_dir.join("identity.json"),
        copy.join("identity.json"),
    )
    .unwrap();
    let (code, err) = exits_within(agent_on(&s, &copy), Duration::from_secs(60));
    assert_ne!(code, Some(0), "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("herd: "), "{err}");
    assert!(
        last.contains("agent \"orig\" is already connected from 127.0.0.1:"),
        "{last}"
    );
    assert!(
        last.contains("a copy of this agent's state dir is running elsewhere"),
        "{last}"
    );
    assert!(last.contains("remove identity.json"), "{last}");

    let entries = audited(&s, "agent.identity_conflict");
    assert!(!entries.is_empty(), "no audit entry");
    assert_eq!(entries[0]["target"], "agent:orig", "{entries:?}");

    first.check_alive().unwrap();
    let agents = s.json(&["agents", "--json"]);
    let orig = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "orig")
        .unwrap();
    assert_eq!(orig["online"], true, "{orig}");
    let out = s.run(&["run", "-t", "orig", "--", "echo still-here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still-here"));
    assert!(
        !first.log().contains("connection to server lost"),
        "{}",
        first.log()
    );
}

/// `--name` that differs from the name the state dir's identity joined with is refused at
/// start, not ignored.
#[test]
fn name_that_differs_from_the_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut a = s.agent("alpha", &[]).unwrap();
    s.wait_online(&["alpha"]).unwrap();
    a.kill();
    let mut cmd = agent_on(&s, &a.state_dir);
    cmd.args(["--name", "beta"]);
    let (code, err) = exits_within(cmd, Duration::from_secs(30));
    assert_ne!(code, Some(0), "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("herd: "), "{err}");
    assert!(
        last.contains("--name \"beta\" does not match this state dir's identity"),
        "{last}"
    );
    assert!(last.contains("joined as \"alpha\""), "{last}");
    // The same name is fine.
    let _again = herd_testkit::Agent::start(&s, "alpha", &[], "", None).unwrap();
    s.wait_online(&["alpha"]).unwrap();
}
