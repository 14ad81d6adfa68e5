//! Editing a schedule in place (`herd schedules edit`, `PUT /api/v1/schedules/{name}`): a
//! schedule firing every second changes its command and keeps its id and fire history; no
//! fire of the old command is written after the edit returned; what is not given keeps its
//! value; a bad cron expression is refused in one line and changes nothing; a viewer key is
//! refused.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use crate::errors::fails_one_line;
use crate::harness::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", stderr(out), stdout(out));
    stdout(out)
}

fn fires(s: &Server, name: &str) -> Vec<serde_json::Value> {
    s.json(&["schedules", "history", name, "-n", "1000", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// The fire times of the fires that started a run, with the run's id.
fn started(fires: &[serde_json::Value]) -> Vec<(i64, String)> {
    fires
        .iter()
        .filter(|f| f["outcome"] == "started")
        .map(|f| {
            (
                f["fire_at"].as_i64().unwrap(),
                f["run_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn command_of(s: &Server, run: &str) -> String {
    let v = s.json(&["runs", "show", run, "--json"]);
    v["command"].as_str().unwrap_or_default().to_string()
}

#[test]
fn an_edited_schedule_keeps_its_id_and_history_and_fires_the_new_command() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    ok(&s.run(&[
        "schedules",
        "add",
        "tick",
        "--every",
        "1s",
        "--overlap",
        "allow",
        "-t",
        "w1",
        "--",
        "echo old",
    ]));
    let before = s.json(&["schedules", "show", "tick", "--json"]);
    wait_for(
        Duration::from_secs(30),
        "two fires of the old command",
        || (started(&fires(&s, "tick")).len() >= 2).then_some(()),
    );
    let fired_before: BTreeSet<i64> = fires(&s, "tick")
        .iter()
        .map(|f| f["fire_at"].as_i64().unwrap())
        .collect();

    // Only the command is given: the rest keeps its value.
    let edited = s.json(&["schedules", "edit", "tick", "--json", "--", "echo new"]);
    let edited_at = now_ms();
    let listed_at_edit: BTreeSet<String> = started(&fires(&s, "tick"))
        .into_iter()
        .map(|(_, run)| run)
        .collect();
    assert_eq!(edited["id"], before["id"], "{edited}");
    assert_eq!(edited["target"]["command"], "echo new", "{edited}");
    assert_eq!(edited["target"]["targets"], before["target"]["targets"]);
    assert_eq!(edited["when"], before["when"]);
    assert_eq!(edited["overlap"], "allow");
    assert_eq!(edited["paused"], false);

    let after = wait_for(
        Duration::from_secs(30),
        "two fires of the new command",
        || {
            let f = fires(&s, "tick");
            (started(&f).iter().filter(|(at, _)| *at > edited_at).count() >= 2).then_some(f)
        },
    );
    // The history from before the edit is still there.
    let fired_after: BTreeSet<i64> = after
        .iter()
        .map(|f| f["fire_at"].as_i64().unwrap())
        .collect();
    assert!(
        fired_before.is_subset(&fired_after),
        "fires lost by the edit: {fired_before:?} not in {fired_after:?}"
    );
    // Fires after the edit run the new command; every fire of the old one was written
    // before the edit returned.
    let mut new = 0;
    for (at, run) in started(&after) {
        let command = command_of(&s, &run);
        if at > edited_at {
            assert_eq!(command, "echo new", "fire at {at} (edited at {edited_at})");
        }
        if command == "echo old" {
            assert!(
                listed_at_edit.contains(&run),
                "run {run} of the old command was fired after the edit returned"
            );
        } else {
            assert_eq!(command, "echo new");
            new += 1;
        }
    }
    assert!(new >= 2, "{after:?}");
    let history = ok(&s.run(&["audit", "--json"]));
    assert!(history.contains("schedule.edit"), "{history}");

    // Paused stays paused through an edit that does not say otherwise.
    ok(&s.run(&["schedules", "pause", "tick"]));
    let e = s.json(&["schedules", "edit", "tick", "--every", "2s", "--json"]);
    assert_eq!(e["paused"], true, "{e}");
    assert_eq!(e["target"]["command"], "echo new", "{e}");
    assert_ne!(e["when"], before["when"], "{e}");
}

#[test]
fn a_bad_edit_changes_nothing_and_a_viewer_cannot_edit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    ok(&s.run(&[
        "schedules",
        "add",
        "nightly",
        "--cron",
        "0 30 2 * * *",
        "--tz",
        "Europe/Paris",
        "--jitter",
        "5s",
        "-t",
        "role=db",
        "--",
        "echo backup",
    ]));
    let before = s.json(&["schedules", "show", "nightly", "--json"]);

    fails_one_line(
        &s.run(&["schedules", "edit", "nightly", "--cron", "61 0 * * *"]),
        "minute 61",
    );
    fails_one_line(
        &s.run(&["schedules", "edit", "nightly", "--tz", "Europe/Pari"]),
        "Europe/Paris",
    );
    fails_one_line(
        &s.run(&["schedules", "edit", "nightly", "--job", "nope"]),
        "no job \"nope\"",
    );
    fails_one_line(
        &s.run(&["schedules", "edit", "nope", "--", "true"]),
        "no schedule \"nope\"",
    );
    assert_eq!(
        s.json(&["schedules", "show", "nightly", "--json"]),
        before,
        "a refused edit changed the schedule"
    );

    let v = s.json(&["keys", "create", "watcher", "--role", "viewer", "--json"]);
    let viewer = v["key"].as_str().unwrap();
    let out = s
        .cli()
        .env("HERD_API_KEY", viewer)
        .args(["schedules", "edit", "nightly", "--", "echo pwned"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    fails_one_line(&out, "viewer");
    assert_eq!(s.json(&["schedules", "show", "nightly", "--json"]), before);

    // A zone alone reads the cron expression there; the rest is kept.
    let e = s.json(&[
        "schedules",
        "edit",
        "nightly",
        "--tz",
        "America/New_York",
        "--json",
    ]);
    assert_eq!(e["id"], before["id"]);
    assert_eq!(e["tz"], "America/New_York", "{e}");
    assert!(e["when"].as_str().unwrap().contains("0 30 2 * * *"), "{e}");
    assert_eq!(e["jitter_ms"], 5000, "{e}");
    assert_eq!(e["target"], before["target"], "{e}");
    assert!(
        e["next_fire_local"]
            .as_str()
            .unwrap()
            .contains("T02:30:00-0"),
        "{e}"
    );
}

/// The CLI with API key `key`.
fn as_key(s: &Server, key: &str, args: &[&str]) -> Output {
    s.cli()
        .env("HERD_API_KEY", key)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn an_edit_is_checked_as_whoever_edits_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _web = s.agent("web-1", &["role=web"]).unwrap();
    let _db = s.agent("db-1", &["role=db"]).unwrap();
    s.wait_online(&["web-1", "db-1"]).unwrap();
    ok(&s.run(&[
        "schedules",
        "add",
        "hourly",
        "--every",
        "1h",
        "-t",
        "web-1",
        "--",
        "echo hi",
    ]));
    let before = s.json(&["schedules", "show", "hourly", "--json"]);
    let v = s.json(&[
        "keys", "create", "web-ops", "--role", "operator", "--scope", "role=web", "--json",
    ]);
    let op = v["key"].as_str().unwrap().to_string();

    // Outside the key's scope: refused, nothing changed.
    let err = fails_one_line(
        &as_key(&s, &op, &["schedules", "edit", "hourly", "-t", "db-1"]),
        "db-1",
    );
    assert!(err.contains("scope"), "{err}");
    assert_eq!(s.json(&["schedules", "show", "hourly", "--json"]), before);
    // A command the policy sends for approval needs the editor's approval.
    fails_one_line(
        &as_key(
            &s,
            &op,
            &[
                "schedules",
                "edit",
                "hourly",
                "--",
                "shred -u /tmp/herd-edit-none",
            ],
        ),
        "needs approval",
    );
    assert_eq!(s.json(&["schedules", "show", "hourly", "--json"]), before);
    let e: serde_json::Value = serde_json::from_str(&ok(&as_key(
        &s,
        &op,
        &[
            "schedules",
            "edit",
            "hourly",
            "--approve",
            "--json",
            "--",
            "shred -u /tmp/herd-edit-none",
        ],
    )))
    .unwrap();
    assert_eq!(e["id"], before["id"]);
    assert!(
        e["created_by"].as_str().unwrap().contains("web-ops"),
        "the schedule acts for who edited it: {e}"
    );
    let audit = s.json(&["audit", "--json"]);
    let edit = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "schedule.edit")
        .unwrap_or_else(|| panic!("no schedule.edit: {audit}"));
    assert_eq!(edit["detail"]["policy"]["approved"], true, "{edit}");
    assert_eq!(edit["detail"]["before"]["target"]["command"], "echo hi");
    // The approval is not kept: an edit of anything else asks for it again.
    fails_one_line(
        &s.run(&["schedules", "edit", "hourly", "--every", "2h"]),
        "needs approval",
    );
}
