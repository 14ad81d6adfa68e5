//! Before authentication, written as the attacks: stalled and oversized `Join` streams, and
//! thousands of idle and half-open sockets. What a client that has not authenticated can make
//! the server hold is bounded, and the server keeps serving `/healthz`, agents and runs.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herd_testkit::hostile;

use crate::harness::*;

/// The server's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `GET /healthz` on a new connection; the status, or why there was none within 30 s.
fn healthz(addr: SocketAddr) -> Result<u16, String> {
    let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(30))
        .map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    c.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {answer:?}"))
}

/// The CLI with `args`; fails the test if it has not finished within a minute.
fn run_within_a_minute(s: &Server, args: &[&str]) -> std::process::Output {
    let mut child = s
        .cli()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let finished = herd_testkit::wait_until(Duration::from_secs(60), "the CLI", || {
        child.try_wait().unwrap()
    });
    if finished.is_err() {
        let _ = child.kill();
        panic!("herd {args:?} did not finish within a minute");
    }
    child.wait_with_output().unwrap()
}

fn addr_of(s: &Server) -> SocketAddr {
    s.url.trim_start_matches("http://").parse().unwrap()
}

/// `streams` stalled `Join` calls on one new HTTP/2 connection to `addr`
/// ([`hostile::stalled_join`]), each counting into `sent` once its bytes are taken; the calls'
/// endings.
async fn stalled_joins(
    addr: SocketAddr,
    streams: usize,
    declared: u32,
    bytes: usize,
    sent: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Option<u32>>> {
    let (h2, driver) = hostile::h2_connect(addr).await.unwrap();
    // Detached: the connection lives as long as the test's runtime.
    drop(driver);
    (0..streams)
        .map(|_| {
            let sent = sent.clone();
            tokio::spawn(hostile::stalled_join(
                h2.clone(),
                addr,
                declared,
                bytes,
                move || {
                    sent.fetch_add(1, Ordering::Relaxed);
                },
            ))
        })
        .collect()
}

/// Waits until every call has either taken its bytes or ended.
async fn all_sent_or_ended(calls: &[tokio::task::JoinHandle<Option<u32>>], sent: &AtomicUsize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ended = calls.iter().filter(|c| c.is_finished()).count();
        if ended + sent.load(Ordering::Relaxed) >= calls.len() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the calls neither sent their bytes nor ended within a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the calls ended: `Some(status)` for each that ended within `wait` (`u32::MAX`: reset),
/// `None` for each still open then.
async fn settle(
    calls: Vec<tokio::task::JoinHandle<Option<u32>>>,
    wait: Duration,
) -> Vec<Option<u32>> {
    let waits = calls.into_iter().map(|c| async move {
        match tokio::time::timeout(wait, c).await {
            Ok(Ok(s)) => Some(s.unwrap_or(u32::MAX)),
            _ => None,
        }
    });
    futures::future::join_all(waits).await
}

#[test]
fn stalled_oversized_join_streams_hold_no_memory_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let addr = addr_of(&s);
    assert_eq!(healthz(addr), Ok(200));
    let before = rss_kib(s.pid());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sent = Arc::new(AtomicUsize::new(0));
        // 200 streams, each declaring a 32 MiB message and sending 4 MiB of it, 8 to a
        // connection: refused at their header, before the server makes room for them.
        let mut big = Vec::new();
        for _ in 0..25 {
            big.extend(stalled_joins(addr, 8, (32 << 20) - 1, 4 << 20, &sent).await);
        }
        // 20 streams on one connection, each declaring 60 KiB and sending half of it: a
        // connection that has not authenticated gets 8 at a time; the others are refused.
        let small = stalled_joins(addr, 20, 60 << 10, 30 << 10, &sent).await;
        all_sent_or_ended(&big, &sent).await;
        all_sent_or_ended(&small, &sent).await;
        let grown_mib = rss_kib(s.pid()).saturating_sub(before) / 1024;
        assert!(
            grown_mib < 48,
            "the server grew by {grown_mib} MiB under 220 stalled Join streams"
        );
        let big = settle(big, Duration::from_secs(30)).await;
        // 11: OUT_OF_RANGE, the decoder's refusal of a message over its limit.
        assert!(
            big.iter().all(|s| *s == Some(11)),
            "oversized Join streams not refused: {big:?}"
        );
        let small = settle(small, Duration::from_secs(60)).await;
        // 8: RESOURCE_EXHAUSTED (over the connection's share); 4: DEADLINE_EXCEEDED (the
        // message did not arrive in time).
        let exhausted = small.iter().filter(|s| **s == Some(8)).count();
        let timed_out = small.iter().filter(|s| **s == Some(4)).count();
        assert_eq!((exhausted, timed_out), (12, 8), "{small:?}");
    });
    // And the server still serves agents.
    let _a = s.agent("after", &[]).unwrap();
    s.wait_online(&["after"]).unwrap();
    let out = s.run(&["run", "-t", "after", "--", "echo", "served"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("served"), "{}", stdout(&out));
}

/// A `herd` that starts with at most `open_files` descriptors (soft and hard), as a server
/// under a low limit would.
fn herd_limited(dir: &std::path::Path, open_files: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("herd-limited");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec prlimit --nofile={open_files}:{open_files} {HERD} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn thousands_of_idle_and_half_open_sockets_do_not_stop_healthz_agents_or_runs() {
    let dir = tempfile::tempdir().unwrap();
    // A server allowed 2,048 descriptors, and an agent connected before the attack.
    let s = Server::start(herd_limited(dir.path(), 2048), dir.path()).unwrap();
    let _a = s.agent("steady", &[]).unwrap();
    s.wait_online(&["steady"]).unwrap();
    let addr = addr_of(&s);
    // 10,000 sockets (fewer if this process may not open that many), from 40 source
    // addresses: most send nothing, every tenth sends half a request head and stops
    // ([`hostile::idle_socket`]).
    let sockets = 10_000.min(hostile::raise_open_files().unwrap().saturating_sub(1_000) as usize);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(async {
        let mut held = Vec::with_capacity(sockets);
        let mut failed_in_a_row = 0;
        for i in 0..sockets {
            // A server that stopped accepting: its backlog is full, and the rest would only
            // wait out their timeouts.
            if failed_in_a_row == 20 {
                break;
            }
            let Some(c) = hostile::idle_socket(addr, i).await else {
                failed_in_a_row += 1;
                continue;
            };
            failed_in_a_row = 0;
            held.push(c);
        }
        held
    });
    assert!(held.len() > 2_048, "only {} sockets opened", held.len());
    // While they are held: /healthz answers, a run on the agent completes.
    for _ in 0..3 {
        assert_eq!(healthz(addr), Ok(200));
    }
    let out = run_within_a_minute(&s, &["run", "-t", "steady", "--", "echo", "still-served"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still-served"), "{}", stdout(&out));
    let out = run_within_a_minute(&s, &["agents"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(held);
}
