//! The task runtime: HERD_INPUT / HERD_OUTPUT and `herd helper` inside real tasks, outputs
//! and condition through the API and the CLI, a script's missing interpreter named, and a
//! run's secrets masked in live output, stored output, outputs and the database.

use crate::errors::fails_one_line;
use crate::harness::*;
use crate::secrets::{contains, files_under};
use crate::vars::set_secret;

/// The id of the one task of the newest run.
fn last_task(s: &Server) -> serde_json::Value {
    let run_id = s.json(&["runs", "ls", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = s.json(&["runs", "show", &run_id, "--json"]);
    let id = run["tasks"][0]["id"].as_str().unwrap().to_string();
    s.json(&["tasks", "show", &id, "--json"])
}

#[test]
fn outputs_and_condition_come_back_from_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m1", &[]).unwrap();
    s.wait_online(&["m1"]).unwrap();

    let out = s.run(&[
        "run",
        "-t",
        "m1",
        "--",
        r#"echo a=1 >> "$HERD_OUTPUT"; herd helper output b=2 'multi=line 1
line 2'; herd helper condition false; herd helper var set n 5; echo "n=$(herd helper var get n)"; echo "input=$(herd helper input)"; herd helper input params.who; echo "rc=$?""#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("n=5\n"), "{text}");
    assert!(text.contains("input={}\n"), "{text}");
    assert!(text.contains("rc=1\n"), "{text}");
    assert!(
        stderr(&out)
            .contains(r#"herd: helper input: no "params.who" in HERD_INPUT — keys here: none"#)
            || text
                .contains(r#"herd: helper input: no "params.who" in HERD_INPUT — keys here: none"#),
        "{text}{}",
        stderr(&out)
    );

    let task = last_task(&s);
    assert_eq!(
        task["outputs"],
        serde_json::json!({"a": "1", "b": "2", "multi": "line 1\nline 2"}),
        "{task}"
    );
    assert_eq!(task["condition"], false, "{task}");
    let id = task["id"].as_str().unwrap();
    let shown = stdout(&s.run(&["tasks", "show", id]));
    assert!(shown.contains("condition  false"), "{shown}");
    assert!(shown.contains("outputs    a=1\n"), "{shown}");
    assert!(shown.contains("b=2\n"), "{shown}");

    // A task that writes nothing has none (absent from the answer).
    let out = s.run(&["run", "-t", "m1", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let task = last_task(&s);
    assert!(
        task.get("outputs").is_none() && task.get("condition").is_none(),
        "{task}"
    );

    // Outside a task the helper says where it runs.
    let msg = fails_one_line(
        &herd().args(["helper", "output", "a=1"]).output().unwrap(),
        "runs inside a herd task",
    );
    assert!(
        msg.starts_with("herd: helper output: HERD_OUTPUT is not set"),
        "{msg}"
    );
}

#[test]
fn a_scripts_missing_interpreter_is_named_with_its_machine() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m1", &[]).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let script = dir.path().join("job.py");
    std::fs::write(
        &script,
        "#!/usr/bin/env no-such-interpreter-xyz\nprint('hi')\n",
    )
    .unwrap();
    // A script of another language than shell is not read by the command policy: it runs
    // only approved.
    let out = s.run(&[
        "run",
        "-t",
        "m1",
        "--approve",
        "--script",
        script.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let all = format!("{}{}", stdout(&out), stderr(&out));
    let line = all
        .lines()
        .find(|l| l.contains("interpreter no-such-interpreter-xyz not found on this machine"))
        .unwrap_or_else(|| panic!("the interpreter is not named: {all}"));
    assert!(line.contains("m1"), "the machine is not named: {all}");
    assert!(
        line.contains("install it or name another in the script's #! line"),
        "{line}"
    );
    let task = last_task(&s);
    assert_eq!(task["state"], "failed", "{task}");
}

#[test]
fn a_runs_secret_is_masked_in_output_outputs_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m1", &[]).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let secret = "Zq8vKx2mWp4rTn7L";
    let out = set_secret(&s, "tok", secret);
    assert!(out.status.success(), "{}", stderr(&out));

    // Whole, then split across two writes a second apart (two reads, two batches), then
    // into HERD_OUTPUT.
    let out = s.run(&[
        "run",
        "-t",
        "m1",
        "--secret-var",
        "T=tok",
        "--",
        r#"echo "whole=$T"; printf %s "split=${T:0:5}"; sleep 1; printf '%s\n' "${T:5}"; echo "err=$T" >&2; echo "tok=$T" >> "$HERD_OUTPUT"; herd helper output "again=x${T}y""#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let live = stdout(&out);
    assert!(live.contains("whole=***\n"), "{live}");
    assert!(live.contains("split=***\n"), "{live}");
    assert!(stderr(&out).contains("err=***\n"), "{}", stderr(&out));

    let task = last_task(&s);
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(
        task["outputs"],
        serde_json::json!({"tok": "***", "again": "x***y"}),
        "{task}"
    );
    let run_id = task["run_id"].as_str().unwrap().to_string();
    let logs = s.run(&["runs", "logs", &run_id]);
    let stored = format!("{}{}", stdout(&logs), stderr(&logs));
    // Stored as written: the streams interleave, so the split line is checked on its own.
    assert!(
        stored.contains("whole=***") && stored.contains("split=") && stored.contains("err=***"),
        "{stored}"
    );
    let task_logs = stdout(&s.run(&["tasks", "logs", &id]));
    assert!(task_logs.contains("whole=***"), "{task_logs}");

    // Neither the secret nor the part written before the pause is anywhere: answers, the
    // server's log, the database and every other file of the server's.
    let head = &secret[..5];
    for text in [
        &live,
        &stderr(&out),
        &stored,
        &task_logs,
        &task.to_string(),
        &s.log(),
    ] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
        assert!(!text.contains(head), "part of the secret leaked: {text}");
    }
    for f in files_under(&dir.path().join("server")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, secret.as_bytes()) && !contains(&bytes, head.as_bytes()),
            "{} holds the secret",
            f.display()
        );
    }
}

/// A task run as another user reaches its files too (the agent's state dir is its own only).
#[test]
fn a_task_run_as_another_user_reads_its_input_and_writes_outputs() {
    if !nix_is_root() {
        eprintln!("skipped: the agent must run as root to run tasks as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m1", &[]).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let out = s.run(&[
        "run",
        "-t",
        "m1",
        "--user",
        "nobody",
        "--",
        r#"echo "who=$(id -un)" >> "$HERD_OUTPUT" && echo "in=$(cat "$HERD_INPUT")" >> "$HERD_OUTPUT""#,
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let task = last_task(&s);
    assert_eq!(
        task["outputs"],
        serde_json::json!({"who": "nobody", "in": "{}"}),
        "{task}"
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}
