//! `herd run` creates its run and follows it over one connection (`/api/v1/runs/start`):
//! the run request is the first message of the WebSocket, the run id comes back in its
//! `hello`. Counted through a TCP relay between the CLI and the server.

use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::*;

/// A relay on loopback to `to` (`host:port`); the returned counter counts the connections
/// it accepted.
fn relay(to: &str) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let to = to.to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(client) = conn else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(&to) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
    (format!("http://{addr}"), count)
}

#[test]
fn a_run_takes_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();
    let (url, connections) = relay(s.url.trim_start_matches("http://"));

    let out = s
        .cli()
        .env("HERD_SERVER", &url)
        .args(["run", "-t", "solo", "--", "echo one; exit 3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(stdout(&out), "one\n");
    let first = err.lines().next().unwrap_or_default();
    let id = first
        .strip_prefix("run ")
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "{err}");
    // The id is the run's, and the run is stored as asked.
    let run = s.json(&["runs", "show", id, "--json"]);
    assert_eq!(run["command"], "echo one; exit 3", "{run}");

    // A run the server refuses is its one line too, over the same single connection.
    let out = s
        .cli()
        .env("HERD_SERVER", &url)
        .args(["run", "-t", "nosuch", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("herd: no machine matches"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 2, "{err}");
}
