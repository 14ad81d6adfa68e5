//! Schedules end to end: added from the CLI with one-line errors for what does not read,
//! firing commands, jobs and workflows on time with their history, pause and resume, overlap
//! `skip` beside a run slower than the period, and a server SIGKILLed while 20 schedules fire
//! every second: after the restart no fire time started twice and misfires follow each
//! schedule's policy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::errors::fails_one_line;
use crate::harness::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn add(s: &Server, args: &[&str]) {
    let mut all = vec!["schedules", "add"];
    all.extend_from_slice(args);
    let out = s.run(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

fn fires(s: &Server, name: &str) -> Vec<serde_json::Value> {
    s.json(&["schedules", "history", name, "-n", "1000", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

fn started(fires: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    fires.iter().filter(|f| f["outcome"] == "started").collect()
}

#[test]
fn schedules_are_checked_when_added_and_explain_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["x", "--cron", "61 0 * * *", "--", "true"], "minute 61"),
        (
            &[
                "x",
                "--cron",
                "0 0 * * *",
                "--tz",
                "Europe/Pari",
                "--",
                "true",
            ],
            "Europe/Paris",
        ),
        (&["x", "--every", "soon", "--", "true"], "soon"),
        (
            &["x", "--at", "2020-01-01T00:00:00Z", "--", "true"],
            "never fires",
        ),
        (&["x", "--every", "1m", "--job", "nope"], "no job \"nope\""),
        (&["x", "--every", "1m"], "what does it fire?"),
        (&["x", "--", "true"], "when does it fire?"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["schedules", "add"];
        all.extend_from_slice(args);
        fails_one_line(&s.run(&all), needle);
    }
    let job = dir.path().join("deploy.yaml");
    std::fs::write(
        &job,
        "name: deploy\nparams:\n  token: {type: secret}\nrun: 'true'\n",
    )
    .unwrap();
    assert!(
        s.run(&["jobs", "apply", "-f", job.to_str().unwrap()])
            .status
            .success()
    );
    fails_one_line(
        &s.run(&[
            "schedules",
            "add",
            "x",
            "--every",
            "1m",
            "--job",
            "deploy",
            "-p",
            "token=hunter22",
        ]),
        "parameter token of job deploy is a secret",
    );
    add(
        &s,
        &[
            "paris",
            "--cron",
            "0 30 2 * * *",
            "--tz",
            "Europe/Paris",
            "--paused",
            "--",
            "true",
        ],
    );
    fails_one_line(
        &s.run(&["schedules", "add", "paris", "--every", "1m", "--", "true"]),
        "a schedule named \"paris\" exists",
    );
    // The next fire times are local to the schedule's zone: 02:30 at +01:00 or +02:00.
    let next = s.json(&["schedules", "next", "paris", "-n", "400", "--json"]);
    let next = next.as_array().unwrap();
    assert_eq!(next.len(), 400);
    for t in next {
        let local = t["local"].as_str().unwrap();
        assert!(
            local.contains("T02:30:00+01:00")
                || local.contains("T02:30:00+02:00")
                || local.contains("T03:00:00+02:00"),
            "{local}"
        );
    }
    let text = stdout(&s.run(&["schedules", "ls"]));
    assert!(text.contains("paris") && text.contains("paused"), "{text}");
    let out = s.run(&["schedules", "show", "nope"]);
    fails_one_line(&out, "no schedule \"nope\"");
    let out = s.run(&["schedules", "rm", "paris"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        s.json(&["schedules", "ls", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn schedules_fire_commands_jobs_and_workflows_with_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let job = dir.path().join("hello.yaml");
    std::fs::write(
        &job,
        "name: hello\nparams:\n  who: {type: string}\nrun: echo hello ${{ params.who }}\n",
    )
    .unwrap();
    assert!(
        s.run(&["jobs", "apply", "-f", job.to_str().unwrap()])
            .status
            .success()
    );
    add(
        &s,
        &["tick", "--every", "1s", "-t", "w1", "--", "echo tick"],
    );
    add(
        &s,
        &[
            "greet",
            "--cron",
            "* * * * * *",
            "--job",
            "hello",
            "-p",
            "who=cron",
            "-t",
            "w1",
        ],
    );
    add(
        &s,
        &[
            "slow",
            "--every",
            "1s",
            "--overlap",
            "skip",
            "-t",
            "w1",
            "--",
            "sleep 2.5",
        ],
    );
    wait_for(
        Duration::from_secs(30),
        "three fires of each schedule",
        || {
            ["tick", "greet", "slow"]
                .iter()
                .all(|n| fires(&s, n).len() >= 4)
                .then_some(())
        },
    );
    // Commands and jobs: each fire started its own run, which succeeded.
    for name in ["tick", "greet"] {
        let f = fires(&s, name);
        let ok = started(&f);
        assert!(ok.len() >= 3, "{name}: {f:?}");
        let ids: BTreeSet<&str> = ok.iter().map(|f| f["run_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), ok.len(), "a run per fire: {f:?}");
        let done = wait_for(Duration::from_secs(20), "the fired runs to end", || {
            let f = fires(&s, name);
            (f.iter().filter(|f| f["run_state"] == "succeeded").count() >= 3).then_some(f)
        });
        let times: Vec<i64> = done
            .iter()
            .map(|f| f["fire_at"].as_i64().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] > w[1]),
            "newest first: {times:?}"
        );
    }
    let greet_fires = fires(&s, "greet");
    let greet = started(&greet_fires)[0];
    assert_eq!(greet["run_kind"], "workflow");
    let run = s.json(&[
        "workflows",
        "runs",
        "show",
        greet["run_id"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run["params"]["who"], "cron", "{run}");
    assert_eq!(run["created_by"], "schedule:greet", "{run}");
    // Overlap skip: a run of 2.5 s every second — fires beside it are skipped, never started.
    let slow = fires(&s, "slow");
    assert!(
        slow.iter().any(|f| f["outcome"] == "skipped"
            && f["detail"].as_str().unwrap().contains("still running")),
        "{slow:?}"
    );
    // Pause: no fire while paused; resume goes on from now.
    let out = s.run(&["schedules", "pause", "tick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let paused_at = now_ms();
    std::thread::sleep(Duration::from_millis(2500));
    let during = fires(&s, "tick");
    assert!(
        during
            .iter()
            .all(|f| f["fire_at"].as_i64().unwrap() <= paused_at + 200),
        "fired while paused: {during:?}"
    );
    let resumed_at = now_ms();
    let out = s.run(&["schedules", "resume", "tick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(Duration::from_secs(10), "a fire after resume", || {
        (fires(&s, "tick").len() > during.len()).then_some(())
    });
    let after = fires(&s, "tick");
    assert!(
        after.iter().all(|f| f["outcome"] != "missed"
            || f["fire_at"].as_i64().unwrap() < paused_at
            || f["fire_at"].as_i64().unwrap() > resumed_at),
        "time paused is not a misfire: {after:?}"
    );
    let ls = stdout(&s.run(&["schedules", "ls"]));
    assert!(ls.contains("tick") && ls.contains("succeeded"), "{ls}");
}

#[test]
fn a_server_killed_while_twenty_schedules_fire_doubles_no_fire() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let policies = ["skip", "run-once", "run-all"];
    let names: Vec<(String, &str)> = (0..20)
        .map(|i| (format!("s{i:02}"), policies[i % 3]))
        .collect();
    for (name, misfire) in &names {
        add(
            &s,
            &[
                name,
                "--every",
                "1s",
                "--misfire",
                misfire,
                "--overlap",
                "allow",
                "-t",
                "w1",
                "--",
                "true",
            ],
        );
    }
    wait_for(
        Duration::from_secs(30),
        "every schedule to fire twice",
        || {
            names
                .iter()
                .all(|(n, _)| started(&fires(&s, n)).len() >= 2)
                .then_some(())
        },
    );
    let killed = now_ms();
    s.kill9();
    std::thread::sleep(Duration::from_secs(5));
    let back = now_ms();
    s.restart().unwrap();
    s.wait_online(&["w1"]).unwrap();
    let restarted = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    // Stopped, so that the runs and the fires read below are of the same moment.
    for (name, _) in &names {
        let out = s.run(&["schedules", "pause", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    std::thread::sleep(Duration::from_secs(1));
    // The outage, well inside: fire times here were due while no server ran.
    // Fire times here are more than the grace (1 s) old whenever the restarted server
    // handles them.
    let (lo, hi) = (killed + 500, back - 1500);
    let mut runs_by_schedule: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let runs = s.json(&["runs", "ls", "--limit", "10000", "--json"]);
    for r in runs.as_array().unwrap() {
        if let Some(n) = r["created_by"].as_str().unwrap().strip_prefix("schedule:") {
            runs_by_schedule
                .entry(n.to_string())
                .or_default()
                .insert(r["id"].as_str().unwrap().to_string());
        }
    }
    for (name, misfire) in &names {
        let f = fires(&s, name);
        let times: Vec<i64> = f.iter().map(|f| f["fire_at"].as_i64().unwrap()).collect();
        let unique: BTreeSet<i64> = times.iter().copied().collect();
        assert_eq!(
            unique.len(),
            times.len(),
            "{name}: a fire time twice: {f:?}"
        );
        // Every run the schedule made is a started fire's, and each fire made one.
        let fired: BTreeSet<String> = started(&f)
            .iter()
            .map(|f| f["run_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            runs_by_schedule
                .get(name.as_str())
                .cloned()
                .unwrap_or_default(),
            fired,
            "{name}: runs without their fire, or fires without their run"
        );
        let in_outage: Vec<&serde_json::Value> = started(&f)
            .into_iter()
            .filter(|f| (lo..=hi).contains(&f["fire_at"].as_i64().unwrap()))
            .collect();
        let missed = f.iter().any(|f| f["outcome"] == "missed");
        match *misfire {
            "skip" => {
                assert!(
                    in_outage.is_empty(),
                    "{name} (skip) ran missed times: {in_outage:?}"
                );
                assert!(missed, "{name}: the missed times are not recorded: {f:?}");
            }
            "run-once" => {
                assert!(
                    in_outage.len() <= 1,
                    "{name} (run-once) ran {} missed times",
                    in_outage.len()
                );
                assert!(missed, "{name}: the missed times are not recorded: {f:?}");
            }
            _ => {
                // Every second of the outage fired, after the restart.
                assert!(
                    in_outage.len() as i64 >= (hi - lo) / 1000 - 1,
                    "{name} (run-all) ran {} of the missed times: {f:?}",
                    in_outage.len()
                );
                // Handled by the restarted server (not before the kill): after it was
                // started, however long its agent took to come back.
                assert!(
                    in_outage.iter().all(|f| f["at"].as_i64().unwrap() >= back),
                    "{name}: a missed time handled before the restart: {in_outage:?}"
                );
            }
        }
        // And it goes on firing on time after the restart.
        assert!(
            started(&f)
                .iter()
                .any(|f| f["fire_at"].as_i64().unwrap() > restarted),
            "{name} stopped firing"
        );
    }
}
