//! Labels cannot change silently: an agent keeps the labels it declared across restarts, a
//! new declared set is audited, server-owned labels stay, and keys that would shadow a fact
//! are refused.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);

/// Machine `name` as `herd agents --json` lists it.
fn agent_json(s: &Server, name: &str) -> serde_json::Value {
    s.json(&["agents", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no agent {name}"))
}

/// Stops agent `a` and waits until the server sees it offline.
fn stop(s: &Server, a: &mut Agent) {
    a.kill();
    wait_for(WAIT, "the agent offline", || {
        (agent_json(s, &a.name)["online"] == false).then_some(())
    });
}

/// Starts agent `name` again from its state dir with `labels` and waits until it is online.
fn restart(s: &Server, name: &str, labels: &[&str]) -> Agent {
    let a = Agent::start(s, name, labels, "", None).unwrap();
    s.wait_online(&[name]).unwrap();
    a
}

fn labels(v: &serde_json::Value) -> serde_json::Value {
    v["labels"].clone()
}

/// An agent started again without --label keeps the labels it joined with, so a selector
/// that excludes them still does not reach it.
#[test]
fn labels_survive_a_restart_without_label() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut db = s.agent("db", &["role=db"]).unwrap();
    let _web = s.agent("web", &[]).unwrap();
    s.wait_online(&["db", "web"]).unwrap();
    let kept = db.state_dir.join("labels.json");
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", kept.display());

    stop(&s, &mut db);
    let _db = restart(&s, "db", &[]);
    assert_eq!(
        labels(&agent_json(&s, "db")),
        serde_json::json!({"role": "db"})
    );
    let out = s.run(&["run", "-t", "!role=db", "--", "echo reached-$(hostname)"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("reached-").count(), 1, "{text}");
    let picked: Vec<serde_json::Value> = s
        .json(&["agents", "-t", "!role=db", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(picked, vec![serde_json::json!("web")]);
    assert!(
        s.json(&["audit", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "agent.labels"),
        "no change, no entry"
    );
}

/// A child process killed when the test ends, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// --label on a later start replaces the declared set, and the server audits the change;
/// --clear-labels empties it.
#[test]
fn label_on_restart_replaces_the_set_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut a = s.agent("box", &["role=db", "zone=eu"]).unwrap();
    s.wait_online(&["box"]).unwrap();
    stop(&s, &mut a);
    let mut a = restart(&s, "box", &["role=web"]);
    assert_eq!(
        labels(&agent_json(&s, "box")),
        serde_json::json!({"role": "web"})
    );
    let entries: Vec<serde_json::Value> = s
        .json(&["audit", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.labels")
        .cloned()
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], "agent:box", "{entries:?}");
    let detail = entries[0].to_string();
    assert!(detail.contains("zone"), "{detail}");
    assert!(detail.contains("web"), "{detail}");

    // --clear-labels: nothing declared, and nothing kept for the next start.
    stop(&s, &mut a);
    let cleared = KillOnDrop(
        herd()
            .args(["agent", "--server", &s.url, "--clear-labels", "--state-dir"])
            .arg(&a.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    s.wait_online(&["box"]).unwrap();
    assert_eq!(labels(&agent_json(&s, "box")), serde_json::json!({}));
    drop(cleared);
    wait_for(WAIT, "the agent offline", || {
        (agent_json(&s, "box")["online"] == false).then_some(())
    });
    let _a = restart(&s, "box", &[]);
    assert_eq!(labels(&agent_json(&s, "box")), serde_json::json!({}));
}

/// A label set through the CLI is the server's: an agent started with other labels does not
/// remove it, and `herd agents` shows where each label comes from.
#[test]
fn server_label_survives_and_sources_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut a = s.agent("app", &["role=db"]).unwrap();
    s.wait_online(&["app"]).unwrap();
    let out = s.run(&["agents", "label", "app", "tier=gold"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stop(&s, &mut a);
    let _a = restart(&s, "app", &["role=web"]);
    let v = agent_json(&s, "app");
    assert_eq!(
        labels(&v),
        serde_json::json!({"role": "web", "tier": "gold"})
    );
    assert_eq!(
        v["label_sources"],
        serde_json::json!({"role": "agent", "tier": "server"}),
        "{v}"
    );
    let out = s.run(&["agents"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("role=web(agent),tier=gold(server)"),
        "{table}"
    );
}

/// A label whose key is a fact or selector name (os, name, ip, …) is refused at agent start
/// and through the CLI/API, with one line saying why.
#[test]
fn fact_named_label_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let out = herd()
        .args([
            "agent",
            "--server",
            &s.url,
            "--label",
            "os=debian",
            "--state-dir",
        ])
        .arg(dir.path().join("refused"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("\"os\" is a fact or selector name"), "{err}");

    let _a = s.agent("m", &[]).unwrap();
    s.wait_online(&["m"]).unwrap();
    for edit in ["ip=10.0.0.1", "name=other", "arch=arm"] {
        let out = s.run(&["agents", "label", "m", edit]);
        assert!(!out.status.success(), "{edit}");
        let err = stderr(&out);
        assert!(err.contains("is a fact or selector name"), "{edit}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let out = s.run(&["agents", "label", "-t", "m", "kernel=x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is a fact or selector name"));
    assert_eq!(labels(&agent_json(&s, "m")), serde_json::json!({}));
}
