//! Fleet health alerts end to end: an agent reports the usage of a small tmpfs of its own
//! (`--metrics-disk`); a file a run writes there crosses a rule's threshold, which raises an
//! alert, posts it to a webhook the test serves, and starts the rule's runbook on the
//! machine; the runbook removes the file, and the alert clears when the value falls back. A
//! runbook that fails escalates its alert to critical. An agent that stops is raised by an
//! `offline` rule and cleared when it is back.

use std::time::Duration;

use herd_testkit::HttpCallee;

use crate::errors::fails_one_line;
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(90);

/// The webhook posts the callee received at `path`, as JSON.
fn posts(hook: &HttpCallee, path: &str) -> Vec<serde_json::Value> {
    hook.received(path)
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("a JSON body"))
        .collect()
}

/// Waits for a post with `state` at `path`; answers it.
fn wait_post(hook: &HttpCallee, path: &str, state: &str) -> serde_json::Value {
    wait_for(WAIT, &format!("a webhook post with state {state}"), || {
        posts(hook, path).into_iter().find(|p| p["state"] == state)
    })
}

/// The agent's own tmpfs of 8 MiB at `disk` (a mount namespace of its own; a user namespace
/// too when the test is not root), reported as its `disk`.
fn wrapper(disk: &str) -> Vec<String> {
    let root = nix::unistd::Uid::effective().is_root();
    let mut w: Vec<String> = vec!["unshare".into(), if root { "-m" } else { "-rm" }.into()];
    w.extend([
        "sh".into(),
        "-c".into(),
        format!(
            "mount -t tmpfs -o size=8m tmpfs '{disk}' && exec \"$0\" \"$@\" --metrics-disk '{disk}'"
        ),
    ]);
    w
}

fn alerts(s: &Server, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["alerts", "--json"];
    if all {
        args.push("--all");
    }
    s.json(&args).as_array().unwrap().clone()
}

#[test]
fn a_full_disk_raises_notifies_runs_its_runbook_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let hook = HttpCallee::start().unwrap();
    let disk_dir = dir.path().join("disk");
    std::fs::create_dir_all(&disk_dir).unwrap();
    let disk = disk_dir.to_str().unwrap().to_string();
    let token = s.join_token(1).unwrap();
    let wrap = wrapper(&disk);
    let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
    let _agent = Agent::start(&s, "m1", &["role=db"], &token, Some(&wrap)).unwrap();
    s.wait_online(&["m1"]).unwrap();

    // The runbook: frees the disk, and says which alert it ran for.
    let job = dir.path().join("free-disk.yaml");
    std::fs::write(
        &job,
        format!(
            "name: free-disk\nparams:\n  agent: {{}}\n  level: {{}}\n  value: {{}}\n  rule: {{}}\nrun: 'rm -f {disk}/fill && echo freed for ${{{{ params.rule }}}} on ${{{{ params.agent }}}} at ${{{{ params.level }}}}'\n"
        ),
    )
    .unwrap();
    let out = s.run(&["jobs", "apply", "-f", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Rules are checked when added, each refusal one line.
    let cases: [(&[&str], &str); 5] = [
        (&["x", "--metric", "disk"], "needs a threshold"),
        (
            &[
                "x",
                "--metric",
                "disk",
                "--warning",
                "90",
                "--critical",
                "80",
            ],
            "below the critical",
        ),
        (
            &[
                "x",
                "--metric",
                "disk",
                "--warning",
                "50",
                "--runbook",
                "nope",
            ],
            "no job \"nope\"",
        ),
        (
            &[
                "x",
                "--metric",
                "disk",
                "--warning",
                "50",
                "--notify",
                "ftp://h/x",
            ],
            "notify ftp://h/x",
        ),
        (
            &["x", "--metric", "cpu", "--warning", "50", "--for", "soon"],
            "for \"soon\"",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["alerts", "rules", "add"];
        all.extend_from_slice(args);
        fails_one_line(&s.run(&all), needle);
    }

    let url = format!("{}/alerts", hook.url);
    let out = s.run(&[
        "alerts",
        "rules",
        "add",
        "disk-full",
        "--metric",
        "disk",
        "--warning",
        "50",
        "--critical",
        "95",
        "-t",
        "role=db",
        "--notify",
        &url,
        "--runbook",
        "free-disk",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("disk ≥ 50% warning"),
        "{}",
        stdout(&out)
    );
    let rules = s.json(&["alerts", "rules", "ls", "--json"]);
    assert_eq!(rules[0]["name"], "disk-full");
    assert_eq!(rules[0]["margin"], 5.0);
    let out = s.run(&["alerts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no open alerts"), "{}", stdout(&out));

    // 6 MiB of 8: 75%, over the warning.
    let fill = format!("dd if=/dev/zero of={disk}/fill bs=1M count=6 status=none");
    let out = s.run(&["run", "-t", "m1", "--", "sh", "-c", &fill]);
    assert!(out.status.success(), "{}", stderr(&out));

    let raised = wait_post(&hook, "/alerts", "raised");
    assert_eq!(raised["rule"], "disk-full");
    assert_eq!(raised["level"], "warning");
    assert_eq!(raised["agent"], "m1");
    assert_eq!(raised["metric"], "disk");
    assert_eq!(raised["threshold"], 50.0);
    let v = raised["value"].as_f64().unwrap();
    assert!((50.0..95.0).contains(&v), "{raised}");
    assert!(
        raised["text"].as_str().unwrap().contains("disk on m1"),
        "{raised}"
    );

    // The runbook removed the file: the next value is back under the clear level.
    let cleared = wait_post(&hook, "/alerts", "cleared");
    assert_eq!(cleared["rule"], "disk-full");
    assert_eq!(cleared["level"], "ok");
    assert!(cleared["value"].as_f64().unwrap() < 45.0, "{cleared}");
    assert!(alerts(&s, false).is_empty());
    let a = wait_for(WAIT, "the runbook's end on the alert", || {
        let all = alerts(&s, true);
        (all.len() == 1 && all[0]["runbook_state"] == "succeeded").then(|| all[0].clone())
    });
    assert_eq!(a["level"], "warning");
    assert_eq!(a["escalated"], false);
    assert!(a["cleared_at"].is_i64(), "{a}");
    assert!(
        a["notified"]
            .as_str()
            .unwrap()
            .starts_with("cleared: webhook answered 200"),
        "{a}"
    );
    let run = s.json(&[
        "workflows",
        "runs",
        "show",
        a["runbook_run"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run["name"], "free-disk", "{run}");
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["created_by"], "alert:disk-full", "{run}");
    let listed = s.run(&["alerts", "--all"]);
    let text = stdout(&listed);
    assert!(
        text.contains("disk-full") && text.contains("cleared"),
        "{text}"
    );
    assert_eq!(posts(&hook, "/alerts").len(), 2, "one post per change");

    // A runbook that fails escalates the alert to critical, and says so.
    let failing = dir.path().join("give-up.yaml");
    std::fs::write(&failing, "name: give-up\nrun: 'exit 3'\n").unwrap();
    let out = s.run(&["jobs", "apply", "-f", failing.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["alerts", "rules", "rm", "disk-full"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url2 = format!("{}/escalations", hook.url);
    let out = s.run(&[
        "alerts",
        "rules",
        "add",
        "disk-full-2",
        "--metric",
        "disk",
        "--warning",
        "50",
        "--critical",
        "95",
        "--notify",
        &url2,
        "--runbook",
        "give-up",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["run", "-t", "m1", "--", "sh", "-c", &fill]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_post(&hook, "/escalations", "raised");
    let escalated = wait_post(&hook, "/escalations", "escalated");
    assert_eq!(escalated["level"], "critical");
    assert!(
        escalated["text"]
            .as_str()
            .unwrap()
            .contains("runbook of alert rule disk-full-2 did not succeed"),
        "{escalated}"
    );
    let open = alerts(&s, false);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["level"], "critical");
    assert_eq!(open[0]["escalated"], true);
    assert_eq!(open[0]["runbook_state"], "failed");
    // Freed by hand, it clears.
    let out = s.run(&["run", "-t", "m1", "--", "rm", "-f", &format!("{disk}/fill")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cleared = wait_post(&hook, "/escalations", "cleared");
    assert_eq!(cleared["rule"], "disk-full-2");
    assert!(alerts(&s, false).is_empty());

    // Every rule change is in the audit log.
    let audit = s.json(&["audit", "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("alert."))
        .collect();
    assert_eq!(
        actions,
        ["alert.rule.add", "alert.rule.rm", "alert.rule.add"],
        "{audit}"
    );
}

#[test]
fn an_agent_away_raises_offline_and_clears_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let hook = HttpCallee::start().unwrap();
    let token = s.join_token(1).unwrap();
    let mut agent = Agent::start(&s, "m1", &[], &token, None).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let url = format!("{}/offline", hook.url);
    let out = s.run(&[
        "alerts",
        "rules",
        "add",
        "away",
        "--metric",
        "offline",
        "--warning",
        "2",
        "--critical",
        "3600",
        "--notify",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Connected: nothing.
    let out = s.run(&["run", "-t", "m1", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(alerts(&s, false).is_empty());

    agent.stop(Duration::from_secs(10));
    let raised = wait_post(&hook, "/offline", "raised");
    assert_eq!(raised["agent"], "m1");
    assert_eq!(raised["metric"], "offline");
    assert_eq!(raised["level"], "warning");
    assert!(raised["value"].as_f64().unwrap() >= 2.0, "{raised}");
    let open = alerts(&s, false);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["rule"], "away");

    let _back = Agent::start(&s, "m1", &[], "", None).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let cleared = wait_post(&hook, "/offline", "cleared");
    assert_eq!(cleared["value"], 0.0);
    assert!(alerts(&s, false).is_empty());
    assert_eq!(posts(&hook, "/offline").len(), 2, "one post per change");
}
