//! Before authentication, written as the attacks: stalled and oversized `Join` streams, and
//! thousands of idle and half-open sockets. What a client that has not authenticated can make
//! the server hold is bounded, and the server keeps serving `/healthz`, agents and runs.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt as _;
use http_body_util::StreamBody;
use hyper::body::Frame;

use crate::harness::*;

const JOIN: &str = "/herd.agent.v1.AgentHub/Join";

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

/// The `grpc-status` a call ended with (from the trailers, or a trailers-only answer's
/// headers), or `None` while it has not ended.
type Ended = tokio::sync::oneshot::Receiver<Option<u32>>;

/// Opens `streams` `Join` calls on one HTTP/2 connection to `addr`. Each declares a
/// `declared`-byte message, sends `sent` bytes of it, then stalls (its sender is kept in
/// `held`). Returns how each call ended, once every call has either sent its bytes or ended.
async fn stalled_joins(
    addr: SocketAddr,
    streams: usize,
    declared: u32,
    sent: usize,
    held: &mut Vec<futures::channel::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>>,
) -> Vec<Ended> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut ended = Vec::new();
    let mut sending = Vec::new();
    for _ in 0..streams {
        let (mut tx, rx) = futures::channel::mpsc::channel(1);
        let req = hyper::Request::post(format!("http://{addr}{JOIN}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(StreamBody::new(rx))
            .unwrap();
        let mut sender = sender.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let Ok(res) = sender.send_request(req).await else {
                let _ = done_tx.send(None);
                return;
            };
            let header = res
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let mut body = res.into_body();
            let mut status = header;
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                if let Some(t) = frame.trailers_ref() {
                    status = t
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok()?.parse().ok());
                }
            }
            let _ = done_tx.send(status);
        });
        // The gRPC frame header: not compressed, then the declared length.
        let mut head = vec![0u8];
        head.extend_from_slice(&declared.to_be_bytes());
        let mut chunks = vec![Bytes::from(head)];
        let mut left = sent;
        while left > 0 {
            let n = left.min(64 * 1024);
            chunks.push(Bytes::from(vec![7u8; n]));
            left -= n;
        }
        held.push(tx.clone());
        tokio::spawn(async move {
            for c in chunks {
                // A refused stream stops taking data; its sender is left waiting, which is
                // what a stalled attacker does anyway.
                if tx.send(Ok(Frame::data(c))).await.is_err() {
                    break;
                }
            }
            let _ = sent_tx.send(());
            std::future::pending::<()>().await;
        });
        ended.push(done_rx);
        sending.push(sent_rx);
    }
    // Every call has sent what it meant to, or ended.
    let mut ended_or_sent = Vec::new();
    for (e, s) in ended.into_iter().zip(sending) {
        let mut e = e;
        tokio::select! {
            _ = s => {}
            r = &mut e => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(r.ok().flatten());
                ended_or_sent.push(rx);
                continue;
            }
        }
        ended_or_sent.push(e);
    }
    ended_or_sent
}

/// How the calls ended: `Some(status)` for each that ended within `wait`, `None` for each
/// still open then.
async fn settle(ended: Vec<Ended>, wait: Duration) -> Vec<Option<u32>> {
    let waits = ended.into_iter().map(|e| async move {
        match tokio::time::timeout(wait, e).await {
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
        let mut held = Vec::new();
        // 200 streams, each declaring a 32 MiB message and sending 4 MiB of it, 8 to a
        // connection: refused at their header, before the server makes room for them.
        let mut big = Vec::new();
        for _ in 0..25 {
            big.extend(stalled_joins(addr, 8, (32 << 20) - 1, 4 << 20, &mut held).await);
        }
        // 20 streams on one connection, each declaring 60 KiB and sending half of it: a
        // connection that has not authenticated gets 8 at a time; the others are refused.
        let small = stalled_joins(addr, 20, 60 << 10, 30 << 10, &mut held).await;
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
        drop(held);
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

/// Lifts this test process's open-files limit to its hard limit; returns the limit.
fn raise_open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
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
    // addresses: most send nothing, every tenth sends half a request head and stops.
    let sockets = 10_000.min(raise_open_files().saturating_sub(1_000) as usize);
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
            let source = IpAddr::from([127, 0, 0, 2 + (i % 40) as u8]);
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(source, 0)).unwrap();
            // The server may already have dropped older sockets to make room; a refused or
            // reset connect is the attack not getting in, which is fine.
            let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(2), sock.connect(addr)).await
            else {
                failed_in_a_row += 1;
                continue;
            };
            failed_in_a_row = 0;
            if i % 10 == 0 {
                use tokio::io::AsyncWriteExt as _;
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: her").await;
            }
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
