//! Fan-out at fleet scale: rate control (`--concurrency`, `--max-errors`), a partitioned
//! machine reported by name, and a fan-out over a simulated fleet with every result stored.

use std::time::Duration;

use crate::harness::*;

/// Tasks of a run as the API returns them.
fn run_tasks(s: &Server, run_id: &str) -> Vec<serde_json::Value> {
    let v = s.json(&["runs", "show", run_id, "--json"]);
    v["tasks"].as_array().cloned().unwrap_or_default()
}

/// The run id from a `herd run --json` event stream (its last line is the run).
fn end_event(out: &std::process::Output) -> serde_json::Value {
    let text = stdout(out);
    let last = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {text}\n{}", stderr(out)));
    assert_eq!(v["type"], "end", "{v:#}");
    v
}

#[test]
fn concurrency_bounds_running_machines() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token(5).unwrap();
    let names = ["c1", "c2", "c3", "c4", "c5"];
    let _agents: Vec<Agent> = names
        .iter()
        .map(|n| Agent::start(&s, n, &["pool=c"], &token, None).unwrap())
        .collect();
    s.wait_online(&names).unwrap();

    // Every task marks itself running in a shared directory, counts how many are, and
    // stays a while so that overlaps cannot be missed.
    let shared = dir.path().join("running");
    std::fs::create_dir_all(&shared).unwrap();
    let script = format!(
        "touch {d}/$$; n=$(ls {d} | wc -l); echo running=$n; sleep 0.6; rm {d}/$$",
        d = shared.display()
    );
    let out = s.run(&[
        "run",
        "-t",
        "pool=c",
        "--concurrency",
        "2",
        "--json",
        "--",
        &script,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let end = end_event(&out);
    let text = stdout(&out);
    let counts: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "output")
        .filter_map(|e| {
            e["data"]
                .as_str()?
                .trim()
                .strip_prefix("running=")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(counts.len(), 5, "every machine reported: {text}");
    assert!(
        counts.iter().all(|&n| n <= 2),
        "more than 2 ran at once: {counts:?}"
    );
    assert!(counts.contains(&2), "the 2 slots were used: {counts:?}");

    // The stored start and end times agree: never more than 2 overlap.
    let run_id = end["run"]["id"].as_str().unwrap();
    let tasks = run_tasks(&s, run_id);
    let spans: Vec<(i64, i64)> = tasks
        .iter()
        .map(|t| {
            (
                t["started_at"].as_i64().unwrap(),
                t["finished_at"].as_i64().unwrap(),
            )
        })
        .collect();
    for &(start, _) in &spans {
        let overlapping = spans
            .iter()
            .filter(|&&(s2, e2)| s2 <= start && start < e2)
            .count();
        assert!(
            overlapping <= 2,
            "{overlapping} running at {start}: {spans:?}"
        );
    }
}

#[test]
fn max_errors_skips_the_rest_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token(5).unwrap();
    let names = ["m1", "m2", "m3", "m4", "m5"];
    let _agents: Vec<Agent> = names
        .iter()
        .map(|n| Agent::start(&s, n, &["pool=m"], &token, None).unwrap())
        .collect();
    s.wait_online(&names).unwrap();

    let out = s.run(&[
        "run",
        "-t",
        "pool=m",
        "--concurrency",
        "1",
        "--max-errors",
        "1",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("0/5 succeeded"), "{err}");
    assert!(err.contains("2 failed"), "{err}");
    assert!(err.contains("3 skipped"), "{err}");

    let runs = s.json(&["runs", "ls", "--json"]);
    let run_id = runs[0]["id"].as_str().unwrap();
    let tasks = run_tasks(&s, run_id);
    let count = |st: &str| tasks.iter().filter(|t| t["state"] == st).count();
    assert_eq!((count("failed"), count("skipped")), (2, 3), "{tasks:#?}");
    for t in tasks.iter().filter(|t| t["state"] == "skipped") {
        assert!(
            t["started_at"].is_null(),
            "a skipped machine never starts: {t:#}"
        );
        assert!(
            t["reason"].as_str().unwrap_or("").contains("max-errors"),
            "{t:#}"
        );
    }
    // Percentages work the same way: 40% of 5 tolerates 2 failures.
    let out = s.run(&[
        "run",
        "-t",
        "pool=m",
        "--concurrency",
        "20%",
        "--max-errors",
        "40%",
        "--",
        "false",
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("3 failed") && err.contains("2 skipped"),
        "{err}"
    );

    // Bad limits are one-line errors.
    let out = s.run(&["run", "--all", "--concurrency", "0", "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--concurrency"), "{}", stderr(&out));
    let out = s.run(&["run", "--all", "--max-errors", "150%", "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at most 100%"), "{}", stderr(&out));
}

#[test]
fn partitioned_machine_is_reported_by_name() {
    let Some(ns) = NetNs::create().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        HERD,
        dir.path(),
        &format!("{}:0", ns.host_ip),
        &["--lost-after", "2s"],
    )
    .unwrap();
    let token = s.join_token(3).unwrap();
    let _a = Agent::start(&s, "near-1", &["pool=p"], &token, None).unwrap();
    let _b = Agent::start(&s, "near-2", &["pool=p"], &token, None).unwrap();
    let _far = Agent::start(
        &s,
        "far-away",
        &["pool=p"],
        &token,
        Some(&["ip", "netns", "exec", &ns.name]),
    )
    .unwrap();
    s.wait_online(&["near-1", "near-2", "far-away"]).unwrap();

    ns.set_link(false).unwrap();
    let started = std::time::Instant::now();
    let out = s.run(&["run", "-t", "pool=p", "--", "echo", "hi"]);
    let err = stderr(&out);
    eprintln!("run took {:?}", started.elapsed());
    assert_eq!(
        out.status.code(),
        Some(255),
        "a lost machine fails the run: {err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("near-1 | hi") && text.contains("near-2 | hi"),
        "{text}"
    );
    assert!(err.contains("2/3 succeeded"), "{err}");
    let named = err
        .lines()
        .any(|l| l.contains("far-away") && (l.contains("lost") || l.contains("offline")));
    assert!(named, "the partitioned machine is named: {err}");

    // Once the server has noticed, a new fan-out reports it offline without waiting.
    let out = s.run(&["run", "-t", "pool=p", "--", "true"]);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("far-away") && l.contains("agent offline")),
        "{err}"
    );
    ns.set_link(true).unwrap();
}

#[test]
fn simulated_fleet_fan_out_stores_every_result() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token(200).unwrap();
    let fleet = Fleet::start(&s, 200, &token).unwrap();
    fleet.wait_ready(Duration::from_secs(120)).unwrap();
    let out = s.run(&["run", "--all", "--json", "--", "echo", "ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let end = end_event(&out);
    let run_id = end["run"]["id"].as_str().unwrap();
    let tasks = run_tasks(&s, run_id);
    assert_eq!(tasks.len(), 200);
    for t in &tasks {
        assert_eq!(t["state"], "succeeded", "{t:#}");
        assert_eq!(t["exit_code"], 0, "{t:#}");
        assert_eq!(t["out_total"], 3, "output `ok\\n` stored: {t:#}");
    }
    let outputs = stdout(&out)
        .lines()
        .filter(|l| l.contains("\"type\":\"output\""))
        .count();
    assert_eq!(outputs, 200, "every machine's output arrived live");
    // A second fan-out, rate-controlled, through the same fleet.
    let out = s.run(&["run", "--all", "--concurrency", "50", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("200/200 succeeded"),
        "{}",
        stderr(&out)
    );
}
