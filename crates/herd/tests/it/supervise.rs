//! Supervision of running tasks: a prompt is seen and answered (a secret answer kept
//! nowhere), a silent task hangs and is stopped, a repeated error line is an error loop and
//! is stopped, a busy task without output stays idle.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;
use crate::secrets::{contains, files_under};

const WAIT: Duration = Duration::from_secs(60);

/// Starts `command` detached on `machine` with `extra` run options; its task's id.
fn start(s: &Server, machine: &str, extra: &[&str], command: &str) -> (String, String) {
    let mut args = vec!["run", "-t", machine, "--detach"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", command]);
    let out = s.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = stdout(&out).trim().to_string();
    let shown = s.json(&["runs", "show", &run, "--json"]);
    let task = shown["tasks"][0]["id"].as_str().unwrap().to_string();
    (run, task)
}

fn task(s: &Server, id: &str) -> serde_json::Value {
    s.json(&["tasks", "show", id, "--json"])
}

/// The task once it ended.
fn ended(s: &Server, id: &str) -> serde_json::Value {
    wait_for(WAIT, "the task to end", || {
        let t = task(s, id);
        t["finished_at"].is_i64().then_some(t)
    })
}

#[test]
fn a_password_prompt_is_shown_and_answered_and_the_answer_is_kept_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("p1", &[]).unwrap();
    s.wait_online(&["p1"]).unwrap();

    // Stdin kept open with nobody attached: `-i --detach`; a terminal, so the prompt shows.
    let (run, id) = start(
        &s,
        "p1",
        &["-i", "--tty"],
        "read -s -p 'Password: ' p; echo ok; echo \"${#p} characters\"",
    );
    let waiting = wait_for(WAIT, "the task to wait for input", || {
        let t = task(&s, &id);
        (t["supervision"]["state"] == "waiting_for_input").then_some(t)
    });
    assert_eq!(waiting["supervision"]["prompt"], "Password: ", "{waiting}");
    assert_eq!(waiting["supervision"]["secret"], true, "{waiting}");
    // The person sees it in `herd tasks show` and the API.
    let out = s.run(&["tasks", "show", &id]);
    let shown = stdout(&out);
    assert!(shown.contains("waiting_for_input"), "{shown}");
    assert!(shown.contains("\"Password: \""), "{shown}");
    assert!(shown.contains("secret"), "{shown}");
    let (status, body) = s.api_get(&format!("/api/v1/tasks/{id}")).unwrap();
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(api["supervision"]["prompt"], "Password: ");

    // The answer comes from stdin, never argv.
    let secret = format!("hunter2-{}-{}", std::process::id(), id);
    let mut answer = s
        .cli()
        .args(["tasks", "answer", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    answer
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = answer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("answer sent to task"),
        "{}",
        stderr(&out)
    );

    let t = ended(&s, &id);
    assert_eq!(t["state"], "succeeded", "{t}");
    let logs = s.run(&["runs", "logs", &run]);
    let text = stdout(&logs);
    assert!(text.contains("ok"), "{text}");
    assert!(
        text.contains(&format!("{} characters", secret.len())),
        "{text}"
    );
    assert!(!text.contains(&secret), "{text}");

    // Audited without the value.
    let audit = s.json(&["audit", "--json"]);
    let audit_text = audit.to_string();
    assert!(audit_text.contains("task.input"), "{audit_text}");
    assert!(!audit_text.contains(&secret));

    // Nowhere on disk (database and its WAL, output logs, the agent's spool) or in a log.
    for f in files_under(dir.path()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "the answer is in {}",
            f.display()
        );
    }
    assert!(!s.log().contains(&secret));

    // A task without stdin is refused, in one line.
    let (_, plain) = start(&s, "p1", &[], "sleep 30");
    wait_for(WAIT, "the task to run", || {
        (task(&s, &plain)["state"] == "running").then_some(())
    });
    let mut refused = s
        .cli()
        .args(["tasks", "answer", &plain])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    refused.stdin.take().unwrap().write_all(b"x\n").unwrap();
    let out = refused.wait_with_output().unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.starts_with("herd: ") && e.contains("herd run -i"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    s.run(&["tasks", "cancel", &plain]);
}

#[test]
fn hangs_and_error_loops_are_stopped_and_a_busy_loop_stays_idle() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &[
            "--supervise",
            "all.hang=3s",
            "--supervise",
            "all.loop=5",
            "--supervise",
            "all.loop-window=10s",
        ],
    )
    .unwrap();
    let _a = s.agent("h1", &[]).unwrap();
    s.wait_online(&["h1"]).unwrap();

    // A timeout stops each one should supervision not: the test then fails on its state.
    let (_, hang) = start(&s, "h1", &["--timeout", "60s"], "sleep 600");
    let (_, looping) = start(
        &s,
        "h1",
        &["--timeout", "60s"],
        "while true; do echo 'E: Could not get lock /var/lib/dpkg/lock'; sleep 0.2; done",
    );
    let (_, busy) = start(&s, "h1", &["--timeout", "8s"], "while :; do :; done");

    let t = ended(&s, &hang);
    assert_eq!(t["state"], "failed", "{t}");
    assert_eq!(t["reason"], "stopped", "{t}");
    let detail = t["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("hung: no output and no CPU for 3 s (class unknown)"),
        "{detail}"
    );
    assert!(!detail.contains('\n'), "{detail}");
    assert_eq!(t["supervision"]["state"], "hanging", "{t}");
    let shown = stdout(&s.run(&["tasks", "show", &hang]));
    assert!(shown.contains("hanging (class unknown)"), "{shown}");
    assert!(
        shown.contains("hung: no output and no CPU for 3 s"),
        "{shown}"
    );

    let t = ended(&s, &looping);
    assert_eq!(t["state"], "failed", "{t}");
    let detail = t["detail"].as_str().unwrap();
    assert!(detail.starts_with("error loop: "), "{detail}");
    assert!(
        detail.contains("E: Could not get lock /var/lib/dpkg/lock"),
        "{detail}"
    );
    assert_eq!(t["supervision"]["state"], "error_loop", "{t}");

    // Busy without output: idle to the end, never stopped as hanging.
    let t = ended(&s, &busy);
    assert_eq!(t["state"], "timed_out", "{t}");
    assert_eq!(t["supervision"]["state"], "idle", "{t}");
    assert!(
        t["supervision"]["reason"]
            .as_str()
            .unwrap()
            .ends_with("CPU busy"),
        "{t}"
    );
}
