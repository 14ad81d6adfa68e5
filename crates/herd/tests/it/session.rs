//! The session a person has with the fleet: a server restart invisible to the next command,
//! machines briefly away waited for, the terminal's size and default signals on the machines,
//! local scripts, and running as another user.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

fn combined(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// Whether the server lists `name` as offline.
fn offline(s: &Server, name: &str) -> Option<()> {
    let v = s.cli_json(&["agents", "--json"]).ok()?;
    v.as_array()?
        .iter()
        .any(|a| a["name"] == name && a["online"].as_bool() == Some(false))
        .then_some(())
}

#[test]
fn a_run_right_after_a_server_restart_reaches_every_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(HERD, dir.path()).unwrap();
    let names = ["r1", "r2", "r3"];
    let agents: Vec<Agent> = names.iter().map(|n| s.agent(n, &[]).unwrap()).collect();
    s.wait_online(&names).unwrap();

    s.restart_clean().unwrap();
    // At once: the agents are still reconnecting.
    let out = s.run(&["run", "--all", "--", "echo", "after-restart"]);
    assert!(
        out.status.success(),
        "run after a restart failed: {}\nserver log:\n{}",
        combined(&out),
        s.log_tail()
    );
    assert_eq!(
        stdout(&out).matches("after-restart").count(),
        3,
        "{}",
        combined(&out)
    );
    // The clean shutdown told them to come back at once.
    for a in &agents {
        assert!(
            a.log().contains("server going away"),
            "agent {} was not told: {}",
            a.name,
            a.log()
        );
    }
}

#[test]
fn a_run_waits_for_a_machine_briefly_offline() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut agent = s.agent("blink", &[]).unwrap();
    s.wait_online(&["blink"]).unwrap();
    agent.kill();
    wait_for(Duration::from_secs(30), "blink offline", || {
        offline(&s, "blink")
    });

    let run = s
        .cli()
        .args(["run", "-t", "blink", "--", "echo", "came-back"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The task waits, queued, for its machine.
    wait_for(Duration::from_secs(30), "a task waiting for blink", || {
        let v = s.cli_json(&["tasks", "ls", "--json"]).ok()?;
        v.as_array()?
            .iter()
            .any(|t| t["agent_name"] == "blink" && t["state"] == "queued")
            .then_some(())
    });
    let _back = Agent::start(&s, "blink", &[], "", None).unwrap();
    let out = run.wait_with_output_timeout();
    assert!(
        out.status.success(),
        "the run did not wait for its machine: {}",
        combined(&out)
    );
    assert!(stdout(&out).contains("came-back"), "{}", combined(&out));
}

/// `wait_with_output` bounded by a minute (a hang fails the test instead of the suite).
trait WaitBounded {
    fn wait_with_output_timeout(self) -> std::process::Output;
}

impl WaitBounded for std::process::Child {
    fn wait_with_output_timeout(mut self) -> std::process::Output {
        let pid = self.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut out = self.stdout.take();
        let mut err = self.stderr.take();
        std::thread::spawn(move || {
            let mut o = Vec::new();
            let mut e = Vec::new();
            if let Some(s) = out.as_mut() {
                let _ = s.read_to_end(&mut o);
            }
            if let Some(s) = err.as_mut() {
                let _ = s.read_to_end(&mut e);
            }
            let _ = tx.send((o, e));
        });
        let (o, e) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("herd run (pid {pid}) did not end within a minute"));
        let status = self.wait().unwrap();
        std::process::Output {
            status,
            stdout: o,
            stderr: e,
        }
    }
}

#[test]
fn tty_tasks_get_the_callers_terminal_size() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("term", &[]).unwrap();
    s.wait_online(&["term"]).unwrap();

    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 97,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut child = s
        .cli()
        .args(["run", "-t", "term", "--tty", "--", "stty size"])
        .env_remove("LINES")
        .env_remove("COLUMNS")
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .unwrap();
    drop(pty.slave);
    let master = std::fs::File::from(pty.master);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut master = master;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the CLI (the last holder of the terminal) ends.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(seen);
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("herd run under a terminal did not end");
    let status = child.wait().unwrap();
    let seen = String::from_utf8_lossy(&seen).to_string();
    assert!(status.success(), "{seen}");
    assert!(
        seen.contains("33 97"),
        "the task's terminal is not 33x97: {seen:?}"
    );
}

#[test]
fn tasks_start_with_default_signals_whatever_the_agent_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token(1).unwrap();
    // Started from a script that ignores SIGINT (and passes that on to the agent).
    let _agent = Agent::start(
        &s,
        "deaf",
        &[],
        &token,
        Some(&["sh", "-c", "trap '' INT; exec \"$@\"", "sh"]),
    )
    .unwrap();
    s.wait_online(&["deaf"]).unwrap();

    let out = s.run(&[
        "run",
        "-t",
        "deaf",
        "--",
        "grep '^Sig\\(Ign\\|Blk\\)' /proc/self/status",
    ]);
    assert!(out.status.success(), "{}", combined(&out));
    let text = stdout(&out);
    for line in ["SigIgn:\t0000000000000000", "SigBlk:\t0000000000000000"] {
        assert!(text.contains(line), "want {line:?} in {text:?}");
    }
    // SIGINT reaches the task: it dies of it instead of going on.
    let out = s.run(&[
        "run",
        "-t",
        "deaf",
        "--",
        "kill -INT $$; sleep 1; echo survived",
    ]);
    assert!(!out.status.success(), "{}", combined(&out));
    assert!(!stdout(&out).contains("survived"), "{}", combined(&out));
}

#[test]
fn scripts_run_by_their_shebang_with_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("scripted", &[]).unwrap();
    s.wait_online(&["scripted"]).unwrap();

    let py = dir.path().join("hello.py");
    std::fs::write(
        &py,
        "#!/usr/bin/env python3\nimport sys\nprint('py', sys.argv[1:])\n",
    )
    .unwrap();
    // A python script is not read by the command policy: it needs a person's approval.
    let out = s.run(&[
        "run",
        "-t",
        "scripted",
        "--approve",
        "--script",
        py.to_str().unwrap(),
        "--",
        "a",
        "b c",
    ]);
    assert!(out.status.success(), "{}", combined(&out));
    assert!(
        stdout(&out).contains("py ['a', 'b c']"),
        "{}",
        combined(&out)
    );

    let sh = dir.path().join("count.sh");
    std::fs::write(&sh, "#!/bin/sh\necho \"sh $# $1\"\n").unwrap();
    let out = s.run(&[
        "run",
        "-t",
        "scripted",
        "--script",
        sh.to_str().unwrap(),
        "--",
        "x y",
        "z",
    ]);
    assert!(out.status.success(), "{}", combined(&out));
    assert!(stdout(&out).contains("sh 2 x y"), "{}", combined(&out));

    // Too large: refused with one line before anything is sent.
    let big = dir.path().join("big.sh");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
    let out = s.run(&["run", "-t", "scripted", "--script", big.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("herd: ") && err.contains("over the limit"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn user_runs_the_task_as_that_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("root-agent", &[]).unwrap();
    s.wait_online(&["root-agent"]).unwrap();

    let out = s.run(&[
        "run",
        "-t",
        "root-agent",
        "--user",
        "nobody",
        "--",
        "id -u; echo home=$HOME user=$USER",
    ]);
    assert!(out.status.success(), "{}", combined(&out));
    let text = stdout(&out);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert!(
        text.contains(&format!("{}\n", nobody.uid)),
        "not run as nobody: {text}"
    );
    assert!(
        text.contains(&format!("home={} user=nobody", nobody.dir.display())),
        "{text}"
    );

    let out = s.run(&[
        "run",
        "-t",
        "root-agent",
        "--user",
        "no-such-user-h3",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        combined(&out).contains("no such user"),
        "{}",
        combined(&out)
    );
}

#[test]
fn user_is_refused_when_the_agent_is_not_root() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to start an agent as nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    // The agent's state dir must be its own.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("agents").join("low");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).unwrap();
    let token = s.join_token(1).unwrap();
    let uid = nobody.uid.to_string();
    let gid = nobody.gid.to_string();
    let _agent = Agent::start(
        &s,
        "low",
        &[],
        &token,
        Some(&[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
        ]),
    )
    .unwrap();
    s.wait_online(&["low"]).unwrap();

    let out = s.run(&["run", "-t", "low", "--user", "root", "--", "id -u"]);
    assert!(!out.status.success(), "{}", combined(&out));
    let text = combined(&out);
    assert!(
        text.contains("not root") && !stdout(&out).contains("0\n"),
        "{text}"
    );
}
