//! The CLI on a bad day and on an operator's first day: it never hangs (a silent or stopped
//! server ends it with 255), a closed pipe ends it quietly, TLS and URL mistakes are
//! explained in one line; and the run commands:
//! the run id on stderr, `runs logs`, `runs retry --failed`, `--group`, id prefixes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A pin no server has.
const WRONG_PIN: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// The CLI's one error line (the last line of stderr, which may start with `run ID`).
#[track_caller]
fn error_line(out: &Output) -> String {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    let herd_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("herd: ")).collect();
    assert_eq!(herd_lines.len(), 1, "one error line expected: {err:?}");
    herd_lines[0].to_string()
}

/// The CLI against `url` with a key and `HERD_TIMEOUT=1s`, no config file.
fn cli_at(dir: &std::path::Path, url: &str) -> Command {
    let mut c = herd();
    c.env("HERD_CONFIG", dir.join("none.toml"))
        .env("HERD_SERVER", url)
        .env("HERD_API_KEY", "key_x_y")
        .env("HERD_TIMEOUT", "1s")
        .stdin(Stdio::null());
    c
}

/// A TCP server that accepts connections and answers each with `reply` (none: never
/// answers, keeping the connection open).
fn fake_server(reply: Option<&'static [u8]>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            match reply {
                Some(r) => {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(r);
                    // Close only our side, then read what the client still sends until it
                    // closes: closing with unread bytes would reset the connection, and the
                    // client could see the reset before the reply (a loaded machine makes
                    // that likely).
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                }
                None => held.push(conn),
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_server_that_never_answers_ends_the_cli_with_255() {
    let dir = tempfile::tempdir().unwrap();
    let url = fake_server(None);
    for args in [
        &["agents"][..],
        &["run", "-t", "x", "--", "true"],
        &["tasks", "logs", "-f", "0123456789"],
    ] {
        let out = cli_at(dir.path(), &url).args(args).output().unwrap();
        let line = error_line(&out);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {line}");
        assert!(line.contains("no answer from herd server"), "{line}");
        assert!(line.contains("HERD_TIMEOUT"), "{line}");
    }
    // Nothing listening at all: unreachable, also 255.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cli_at(dir.path(), &format!("http://127.0.0.1:{port}"))
        .arg("agents")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(error_line(&out).contains("cannot reach herd server"));
}

#[test]
fn a_url_that_is_not_a_herd_server_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&'static [u8]; 2] = [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
    ];
    for reply in cases {
        let url = fake_server(Some(reply));
        let out = cli_at(dir.path(), &url).arg("agents").output().unwrap();
        let line = error_line(&out);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(line.contains("is not a herd server"), "{line}");
        assert!(line.contains("check HERD_SERVER"), "{line}");
    }
}

/// A server that serves TLS (it listens beyond loopback).
fn tls_server(dir: &std::path::Path) -> Server {
    let s = Server::start_with(HERD, dir, "0.0.0.0:0", &[]).unwrap();
    assert!(s.url.starts_with("https://"), "{}", s.url);
    s
}

#[test]
fn tls_mistakes_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let s = tls_server(dir.path());
    let ca = s.ca_sha256.clone().unwrap();

    // A wrong pin: both fingerprints and the likely cause.
    let out = s
        .cli()
        .env("HERD_CA_SHA256", WRONG_PIN)
        .arg("agents")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(line.contains(&format!("fingerprint is {ca}")), "{line}");
    assert!(line.contains(&format!("pinned {WRONG_PIN}")), "{line}");
    assert!(line.contains("CA changed"), "{line}");

    // http:// against the TLS server: a hint to use https://.
    let plain = s.url.replacen("https://", "http://", 1);
    let out = s
        .cli()
        .env("HERD_SERVER", &plain)
        .env("HERD_TIMEOUT", "5s")
        .arg("agents")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(line.contains("use https://"), "{line}");
}

/// A server with agents `names`, all online.
fn server_with(dir: &std::path::Path, names: &[&str]) -> (Server, Vec<Agent>) {
    let s = Server::start(HERD, dir).unwrap();
    let agents: Vec<Agent> = names.iter().map(|n| s.agent(n, &[]).unwrap()).collect();
    s.wait_online(names).unwrap();
    (s, agents)
}

/// The run id `herd run` printed on stderr (`run ID`).
#[track_caller]
fn run_id_of(out: &Output) -> String {
    let err = stderr(out);
    let line = err.lines().next().unwrap_or_default();
    let id = line
        .strip_prefix("run ")
        .unwrap_or_else(|| panic!("no run id first on stderr: {err:?}"));
    id.trim().to_string()
}

#[test]
fn a_watcher_whose_server_stops_answering_ends_with_255() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _agents) = server_with(dir.path(), &["a"]);
    let child = s
        .cli()
        .env("HERD_TIMEOUT", "2s")
        .args(["run", "-t", "a", "--", "echo started; sleep 60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Running, and its first line stored (so it went to the watcher before the stop).
    wait_for(Duration::from_secs(30), "the task to run and print", || {
        let v = s.json(&["tasks", "ls", "--json"]);
        (v[0]["state"] == "running" && v[0]["out_total"].as_i64().unwrap_or(0) >= 8).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let run = run_id_of(&out);
    let line = error_line(&out);
    assert_eq!(out.status.code(), Some(255), "{line}");
    assert!(line.contains("lost the server at"), "{line}");
    assert!(line.contains("no answer for"), "{line}");
    assert!(line.contains(&format!("herd runs logs {run} -f")), "{line}");
    assert_eq!(stdout(&out), "started\n");
}

#[test]
fn tasks_logs_follow_exits_with_the_tasks_code_and_a_closed_pipe_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _agents) = server_with(dir.path(), &["a"]);
    let v = s.json(&[
        "run",
        "--detach",
        "--json",
        "-t",
        "a",
        "--",
        "sleep 1; seq 1 300000; exit 3",
    ]);
    let task = v["tasks"][0]["id"].as_str().unwrap().to_string();
    let out = s.run(&["tasks", "logs", "-f", &task]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("299999\n300000\n"));

    // `| head -1`: the CLI ends quietly (141 or 0), the first line through.
    let herd_env = |c: &mut Command| {
        let cli = s.cli();
        for (k, v) in cli.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
    };
    for args in [
        format!("tasks logs {task}"),
        format!("tasks logs -f {task}"),
        "run -t a -- seq 1 300000".to_string(),
    ] {
        let mut c = Command::new("bash");
        herd_env(&mut c);
        let out = c
            .arg("-c")
            .arg(format!(
                "{HERD} {args} 2>err | head -1; echo \"status=${{PIPESTATUS[0]}}\"; cat err >&2"
            ))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (o, e) = (stdout(&out), stderr(&out));
        assert!(o.starts_with("1\n"), "{args}: {o:?}");
        assert!(
            o.contains("status=141") || o.contains("status=0"),
            "{args}: {o:?} {e:?}"
        );
        assert!(!e.contains("herd: "), "{args}: quiet expected: {e:?}");
        assert!(!e.contains("panicked"), "{args}: {e:?}");
    }
}

#[test]
fn runs_print_their_id_and_show_logs_retry_group_and_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut agents) = server_with(dir.path(), &["a", "b", "c"]);

    // The run id on stderr; stdout is the output alone.
    let out = s.run(&["run", "-t", "a", "--", "echo hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    let first = run_id_of(&out);
    let shown = s.json(&["runs", "show", &first, "--json"]);
    assert_eq!(shown["id"], first.as_str());

    // --group: one output, the machines that printed it.
    let out = s.run(&["run", "--group", "-t", "a,b,c", "--", "echo same"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out);
    assert_eq!(o.matches("same").count(), 1, "{o}");
    assert!(o.contains("\na, b, c\n"), "{o}");
    let grouped = run_id_of(&out);

    // runs logs: every machine's output, prefixed; -f on an ended run ends at once.
    let out = s.run(&["runs", "logs", &grouped]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["a | same", "b | same", "c | same"]);
    let out = s.run(&["runs", "logs", "-f", &grouped]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    let out = s.run(&["runs", "logs", "--group", &grouped]);
    assert_eq!(stdout(&out).matches("same").count(), 1, "{}", stdout(&out));

    // runs retry --failed: only the machine that did not answer.
    agents[2].kill();
    wait_for(Duration::from_secs(30), "c offline", || {
        let v = s.json(&["agents", "--json"]);
        v.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "c" && a["online"] == false)
            .then_some(())
    });
    let out = s.run(&["run", "-t", "a,b,c", "--", "echo again"]);
    assert_eq!(
        out.status.code(),
        Some(255),
        "c is offline: {}",
        stderr(&out)
    );
    let partial = run_id_of(&out);
    let v = s.json(&["runs", "retry", "--failed", "--detach", "--json", &partial]);
    let machines: Vec<&str> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["agent_name"].as_str().unwrap())
        .collect();
    assert_eq!(machines, ["c"]);
    assert_eq!(v["command"], "echo again");
    // Without --failed: every machine again (the run's exit code is c's, offline).
    let out = s.run(&["runs", "retry", &partial]);
    let retried = run_id_of(&out);
    assert_ne!(retried, partial);
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["a | again", "b | again"], "{}", stderr(&out));

    // Id prefixes: ≥ 6 characters and unique; shorter or ambiguous ones are one line.
    let prefix = &first[..12];
    let v = s.json(&["runs", "show", prefix, "--json"]);
    assert_eq!(v["id"], first.as_str());
    let task = v["tasks"][0]["id"].as_str().unwrap().to_string();
    let out = s.run(&["tasks", "logs", &task[..12]]);
    assert_eq!(stdout(&out), "hi\n", "{}", stderr(&out));
    let out = s.run(&["runs", "show", &first[..3]]);
    assert!(error_line(&out).contains("too short"), "{}", stderr(&out));
    // Runs created within a few hours share their first 6 characters (time-ordered ids).
    let out = s.run(&["runs", "show", &first[..6]]);
    let line = error_line(&out);
    assert!(line.contains("matches") && line.contains("runs"), "{line}");
    let out = s.run(&["runs", "show", "zzzzzzzz"]);
    assert!(error_line(&out).contains("not found"));
}

/// `herd agent …` against `url` with `extra` arguments and a throwaway state dir; its exit
/// status and stderr once it ends by itself (killed after a minute: it kept retrying).
fn agent_until_it_stops(dir: &std::path::Path, url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let state = tempfile::tempdir_in(dir).unwrap();
    let mut child = herd()
        .args([
            "agent",
            "--server",
            url,
            "--token",
            "hj_00_unused",
            "--name",
            "lonely",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = None;
    for _ in 0..600 {
        if let Some(st) = child.try_wait().unwrap() {
            code = Some(st.code().unwrap_or(-1));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if code.is_none() {
        let _ = child.kill();
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = child.wait();
    (code, err)
}

#[test]
fn an_agent_stops_on_errors_that_retrying_cannot_fix() {
    let dir = tempfile::tempdir().unwrap();
    let s = tls_server(dir.path());
    let ca = s.ca_sha256.clone().unwrap();

    // A pin other than the server's CA: both fingerprints, and a non-zero exit.
    let (code, err) = agent_until_it_stops(dir.path(), &s.url, &["--ca-sha256", WRONG_PIN]);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        code.is_some_and(|c| c != 0),
        "the agent kept retrying: {err}"
    );
    assert!(err.contains(&format!("fingerprint is {ca}")), "{err}");
    assert!(err.contains(&format!("pinned {WRONG_PIN}")), "{err}");

    // A URL that is not a herd server.
    let url = fake_server(Some(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
    ));
    let (code, err) = agent_until_it_stops(dir.path(), &url, &[]);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        code.is_some_and(|c| c != 0),
        "the agent kept retrying: {err}"
    );
    assert!(err.contains("not a herd server"), "{err}");
}
