//! Hostile clients, written as the attacks: what a client can make the server hold is
//! bounded before it is read.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

/// A WebSocket upgrade of `path` on `s` with its key; the stream after the `101`.
fn upgraded(s: &Server, path: &str) -> TcpStream {
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        s.key
    );
    conn.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).unwrap(),
            1,
            "the upgrade answer ended early"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn
}

#[test]
fn a_websocket_frame_claiming_16_mib_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut conn = upgraded(&s, "/api/v1/runs/start");
    // A masked text frame whose header claims 16 MiB, and none of its payload.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(16u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    conn.write_all(&frame).unwrap();
    // The server answers at once with a close frame, 1009 (message too big); it does not wait
    // for (or make room for) the 16 MiB.
    let mut answer = [0u8; 4];
    conn.read_exact(&mut answer)
        .expect("the server waited for the claimed payload instead of refusing the frame");
    assert_eq!(answer[0], 0x88, "a close frame: {answer:?}");
    assert_eq!(
        u16::from_be_bytes([answer[2], answer[3]]),
        1009,
        "{answer:?}"
    );
    // And it still serves.
    let out = s.run(&["agents"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `herd agent` joining `s` with `token`; its stderr once it gave up.
fn join_with(s: &Server, dir: &std::path::Path, name: &str, token: &str) -> String {
    let out = herd()
        .args(["agent", "--server", &s.url, "--name", name, "--state-dir"])
        .arg(dir.join(name))
        .env("HERD_JOIN_TOKEN", token)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{name} joined: {err}");
    err
}

#[test]
fn guessed_join_tokens_are_rate_limited_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    for i in 0..10 {
        let err = join_with(&s, dir.path(), &format!("guess-{i}"), "hj_00_wrong");
        assert!(
            err.contains("join token is not valid"),
            "attempt {i}: {err}"
        );
    }
    // The eleventh guess from the same address is not even looked at, and neither is a
    // good token from there until the window has passed.
    let err = join_with(&s, dir.path(), "guess-10", "hj_00_wrong");
    assert!(
        err.contains("too many failed joins from 127.0.0.1"),
        "{err}"
    );
    let good = s.join_token(1).unwrap();
    let err = join_with(&s, dir.path(), "honest", &good);
    assert!(err.contains("too many failed joins"), "{err}");
    // Each refusal is on record with where it came from.
    let audit = s.json(&["audit", "--json"]);
    let refused: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.join_refused")
        .collect();
    assert_eq!(refused.len(), 10, "{audit}");
    assert!(
        refused[0]["detail"]["from"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{audit}"
    );
}
