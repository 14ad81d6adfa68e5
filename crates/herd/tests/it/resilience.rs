//! "Nothing lost": a task's output and exit code survive a server crash and a cut-off agent.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Writes exactly the output of `seq 1 200000` over about 10 s.
const SLOW_SEQ: &str =
    "i=0; while [ $i -lt 200000 ]; do seq $((i+1)) $((i+1000)); i=$((i+1000)); sleep 0.05; done";

fn expected_output() -> Vec<u8> {
    let out = Command::new("seq")
        .args(["1", "200000"])
        .output()
        .expect("run seq");
    assert!(out.status.success());
    out.stdout
}

/// Starts the slow task on the only agent; returns the task id.
fn start_slow_task(s: &Server) -> String {
    let run = s.json(&[
        "run", "--all", "--detach", "--json", "--", "sh", "-c", SLOW_SEQ,
    ]);
    run["tasks"][0]["id"].as_str().expect("task id").to_string()
}

fn task_json(s: &Server, task: &str) -> Option<serde_json::Value> {
    let out = s.run(&["tasks", "show", task, "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until the task runs and has persisted more than `bytes` of output (but is not done).
fn wait_output_flowing(s: &Server, task: &str, bytes: u64, total: u64) -> u64 {
    let got = wait_for(Duration::from_secs(60), "task output flowing", || {
        let v = task_json(s, task)?;
        let n = v["out_total"].as_u64()?;
        (n > bytes).then_some((n, v))
    });
    let (n, v) = got;
    let st = v["state"].as_str().unwrap_or("");
    assert!(
        n < total && matches!(st, "dispatched" | "running"),
        "task already done before the fault could be injected: {v}"
    );
    n
}

fn wait_succeeded(s: &Server, task: &str, timeout: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let start = Instant::now();
    loop {
        if let Some(v) = task_json(s, task) {
            let st = v["state"].as_str().unwrap_or("").to_string();
            if st == "succeeded" {
                return v;
            }
            if !matches!(st.as_str(), "queued" | "dispatched" | "running" | "") {
                panic!(
                    "task ended in state {st}: {v}\nserver log:\n{}",
                    tail(&s.log(), 4000)
                );
            }
            last = v;
        }
        if start.elapsed() > timeout {
            panic!(
                "task not succeeded after {timeout:?}; last: {last}\nserver log:\n{}",
                tail(&s.log(), 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Asserts byte equality without dumping megabytes into the panic message.
fn assert_same_output(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first_diff = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let line = want[..first_diff.min(want.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    let ctx = |b: &[u8]| {
        let from = first_diff.saturating_sub(40);
        let to = (first_diff + 40).min(b.len());
        String::from_utf8_lossy(&b[from.min(to)..to]).to_string()
    };
    panic!(
        "stored output differs: got {} bytes, want {} bytes; first difference at byte {first_diff} \
         (expected line {line})\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        ctx(got),
        ctx(want)
    );
}

fn check_result(s: &Server, task: &str, v: &serde_json::Value) {
    assert_eq!(
        v["exit_code"].as_i64(),
        Some(0),
        "exit code must arrive: {v}"
    );
    let want = expected_output();
    assert_eq!(
        v["out_total"].as_u64(),
        Some(want.len() as u64),
        "out_total: {v}"
    );
    let out = s.run(&["tasks", "logs", task]);
    assert!(out.status.success(), "tasks logs failed: {}", stderr(&out));
    assert_same_output(&out.stdout, &want);
}

#[test]
fn server_killed_midway_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(HERD, dir.path()).unwrap();
    let agent = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();
    let total = expected_output().len() as u64;

    let started = Instant::now();
    let task = start_slow_task(&s);
    let seen = wait_output_flowing(&s, &task, 100_000, total);
    eprintln!(
        "killing the server after {seen} bytes persisted ({:?})",
        started.elapsed()
    );
    s.restart().unwrap();

    let v = wait_succeeded(&s, &task, Duration::from_secs(90));
    eprintln!("task succeeded after {:?}", started.elapsed());
    if v["out_total"].as_u64() != Some(total) {
        eprintln!("agent log:\n{}", tail(&agent.log(), 4000));
    }
    check_result(&s, &task, &v);
}

#[test]
fn agent_cut_off_loses_nothing() {
    let Some(ns) = NetNs::create().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(HERD, dir.path(), &format!("{}:0", ns.host_ip), &[]).unwrap();
    assert!(
        s.url.starts_with("https://"),
        "beyond loopback the server serves TLS: {}",
        s.url
    );
    assert!(s.ca_sha256.is_some(), "server printed no CA fingerprint");
    let token = s.join_token(1).unwrap();
    let agent = Agent::start(
        &s,
        "caged",
        &[],
        &token,
        Some(&["ip", "netns", "exec", &ns.name]),
    )
    .unwrap();
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.wait_online(&["caged"]).unwrap()
    }))
    .is_err()
    {
        panic!(
            "agent did not come online.\nagent log:\n{}\nserver log:\n{}",
            tail(&agent.log(), 4000),
            tail(&s.log(), 4000)
        );
    }
    let total = expected_output().len() as u64;

    let started = Instant::now();
    let task = start_slow_task(&s);
    let seen = wait_output_flowing(&s, &task, 100_000, total);
    eprintln!(
        "cutting the agent off after {seen} bytes persisted ({:?})",
        started.elapsed()
    );
    ns.set_link(false).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    // A 5 s blip alone is usually bridged by TCP retransmission. Keep the link down until the
    // agent's keepalive declares the connection dead, so reconnect + spool replay are exercised.
    let lost = "connection to server lost";
    wait_for(
        Duration::from_secs(30),
        "agent to notice the dead link",
        || agent.log().contains(lost).then_some(()),
    );
    ns.set_link(true).unwrap();
    eprintln!("link back up ({:?})", started.elapsed());

    let v = wait_succeeded(&s, &task, Duration::from_secs(120));
    eprintln!("task succeeded after {:?}", started.elapsed());
    if v["out_total"].as_u64() != Some(total) {
        eprintln!("agent log:\n{}", tail(&agent.log(), 4000));
    }
    let log = agent.log();
    assert!(
        log.matches("connected to server").count() >= 2,
        "agent did not reconnect after the cut:\n{}",
        tail(&log, 4000)
    );
    check_result(&s, &task, &v);
    drop(agent);
}
