//! The spine from a person's point of view: up, run, select, exit codes, timeouts, cancel,
//! interactive input.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

#[test]
fn up_then_run_and_list_from_another_shell() {
    let db = match herd_testkit::Database::from_env().unwrap() {
        herd_testkit::Database::Postgres => Some(postgres_database()),
        _ => None,
    };
    up_then_run(db.as_deref());
}

/// `herd up --database postgres://…`: the embedded default's one command, on PostgreSQL; and
/// a second server on the same database is refused while the first runs.
#[test]
fn up_on_postgres_and_one_server_per_database() {
    let url = postgres_database();
    up_then_run(Some(&url));
    let dir = tempfile::tempdir().unwrap();
    let mut first = herd()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("a"))
        .args(["--database", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(first.stdout.take().unwrap());
        r.read_line(&mut line).unwrap();
    }
    assert!(line.starts_with("herd server listening on "), "{line}");
    let second = herd()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("b"))
        .args(["--database", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(
        err.contains("another herd server is using the database"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = first.kill();
    let _ = first.wait();
}

/// A fresh database on the tests' PostgreSQL server.
fn postgres_database() -> String {
    herd_testkit::pg::Postgres::shared()
        .unwrap()
        .create_database()
        .unwrap()
}

fn up_then_run(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let mut cmd = herd();
    cmd.env("HERD_CONFIG", &config)
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"));
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let mut up = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "config written", || {
        std::fs::read_to_string(&config)
            .ok()
            .filter(|s| s.contains("api_key"))
    });
    let cli = || {
        let mut c = herd();
        c.env("HERD_CONFIG", &config);
        c
    };
    wait_for(Duration::from_secs(30), "local agent online", || {
        let o = cli().args(["agents", "--json"]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v[0]["online"] == true).then_some(())
    });
    let out = cli()
        .args(["run", "--all", "--", "uname", "-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let kernel = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-a")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(stdout(&out), kernel);
    let agents = cli().arg("agents").output().unwrap();
    let text = stdout(&agents);
    assert!(text.contains("online"), "{text}");
    let _ = up.kill();
    let _ = up.wait();
}

#[test]
fn selectors_pick_exactly_the_labelled_machines() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("web-1", &["role=web"]).unwrap();
    let _b = s.agent("web-2", &["role=web"]).unwrap();
    let _c = s.agent("db-1", &["role=db"]).unwrap();
    s.wait_online(&["web-1", "web-2", "db-1"]).unwrap();

    let out = s.run(&["run", "-t", "role=web", "--", "echo", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, vec!["web-1 | hi", "web-2 | hi"]);

    let out = s.run(&["run", "-t", "web-* & !web-2", "--", "echo", "one"]);
    assert_eq!(stdout(&out), "one\n", "single machine: no prefix");

    let out = s.run(&["run", "-t", "nosuch", "--", "true"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no machine matches"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn exit_codes_timeouts_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();

    let out = s.run(&["run", "--all", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));

    let started = std::time::Instant::now();
    let out = s.run(&[
        "run",
        "--all",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "sleep 301 & setsid sleep 301 & sleep 301",
    ]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    wait_for(Duration::from_secs(10), "no sleep 301 left", || {
        no_process_with("sleep 301").then_some(())
    });

    // Cancel a running task through `herd tasks cancel`.
    let run = s.json(&[
        "run",
        "--all",
        "--detach",
        "--json",
        "--",
        "sh",
        "-c",
        "sleep 302 & setsid sleep 302 & sleep 302",
    ]);
    let task = run["tasks"][0]["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(10), "task running", || {
        let v = s.json(&["tasks", "show", &task, "--json"]);
        (v["state"] == "running").then_some(())
    });
    let out = s.run(&["tasks", "cancel", &task]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = wait_for(Duration::from_secs(15), "task cancelled", || {
        let v = s.json(&["tasks", "show", &task, "--json"]);
        (v["state"] == "cancelled").then_some(v)
    });
    assert_eq!(v["state"], "cancelled");
    wait_for(Duration::from_secs(10), "no sleep 302 left", || {
        no_process_with("sleep 302").then_some(())
    });
}

#[test]
fn interactive_stdin_and_tty() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();

    let mut child = s
        .cli()
        .args([
            "run",
            "--all",
            "-i",
            "--",
            "sh",
            "-c",
            "read a; echo got $a",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"yes\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "got yes\n");

    let out = s.run(&["run", "--all", "--tty", "--", "tty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stdout(&out));
}

#[test]
fn ctrl_c_cancels_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();
    let child = s
        .cli()
        .args(["run", "--all", "--", "sh", "-c", "echo started; sleep 303"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Wait until the command runs, then interrupt the CLI as a terminal's Ctrl-C would.
    // (The CLI's own command line mentions `sleep 303`, so ask the server instead of ps.)
    wait_for(Duration::from_secs(15), "task running", || {
        let v = s.json(&["tasks", "ls", "--json"]);
        (v[0]["state"] == "running").then_some(())
    });
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stdout(&out).contains("started"));
    wait_for(Duration::from_secs(10), "no sleep 303 left", || {
        no_process_with("sleep 303").then_some(())
    });
    let runs = s.json(&["runs", "ls", "--json"]);
    assert_eq!(runs[0]["state"], "cancelled", "{runs}");
}

#[test]
fn task_of_an_agent_that_never_returns_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(HERD, dir.path(), "127.0.0.1:0", &["--lost-after", "2s"]).unwrap();
    let mut a = s.agent("gone", &[]).unwrap();
    s.wait_online(&["gone"]).unwrap();
    let run = s.json(&["run", "--all", "--detach", "--json", "--", "sleep", "304"]);
    let task = run["tasks"][0]["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(10), "task running", || {
        (s.json(&["tasks", "show", &task, "--json"])["state"] == "running").then_some(())
    });
    a.kill();
    let v = wait_for(Duration::from_secs(30), "task lost", || {
        let v = s.json(&["tasks", "show", &task, "--json"]);
        (v["state"] == "lost").then_some(v)
    });
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .contains("did not come back"),
        "{v}"
    );
    let out = s.run(&["runs", "show", run["id"].as_str().unwrap(), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["state"], "failed");
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 304"])
        .status();
}

#[test]
fn logs_follow_streams_until_the_task_ends() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();
    let run = s.json(&[
        "run",
        "--all",
        "--detach",
        "--json",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2",
    ]);
    let task = run["tasks"][0]["id"].as_str().unwrap().to_string();
    let out = s.run(&["tasks", "logs", &task, "-f"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line 1\nline 2\nline 3\n");
    assert_eq!(stderr(&out), "oops\n");
    // The stored log holds both streams.
    let out = s.run(&["tasks", "logs", &task]);
    assert_eq!(stdout(&out), "line 1\nline 2\nline 3\noops\n");
}

#[test]
fn live_output_is_complete_beyond_the_storage_cap_even_for_a_slow_reader() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &["--output-cap", "1048576"],
    )
    .unwrap();
    let _a = s.agent("solo", &[]).unwrap();
    s.wait_online(&["solo"]).unwrap();
    let expected = std::process::Command::new("seq")
        .args(["1", "3000000"])
        .output()
        .unwrap()
        .stdout;
    let child = s
        .cli()
        .args(["run", "--all", "--", "seq", "1", "3000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Do not read for a while: the stream must wait for us, not drop what we missed.
    std::thread::sleep(Duration::from_secs(3));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("omitted"), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), expected.len());
    assert!(
        out.stdout == expected,
        "live output differs from the command's output"
    );

    // The stored copy is capped: head and tail kept, the cut marked.
    let tasks = s.json(&["tasks", "ls", "--json"]);
    let task = tasks[0]["id"].as_str().unwrap();
    let logs = s.run(&["tasks", "logs", task]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.starts_with("1\n2\n3\n"));
    assert!(text.ends_with("2999999\n3000000\n"));
    assert!(text.contains("bytes of output omitted"), "no cut marker");
    assert!(
        logs.stdout.len() < 2 * 1024 * 1024,
        "stored {} bytes",
        logs.stdout.len()
    );
    // On disk once the task ended: within the cap; the spare and retired segments kept
    // while the task wrote are gone.
    let files = dir.path().join("server").join("output").join(task);
    wait_for(Duration::from_secs(10), "spare segment deleted", || {
        (!files.join("spare").exists()).then_some(())
    });
    let on_disk: u64 = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 1048576 + 64, "{on_disk} bytes on disk");
}

#[test]
fn join_tokens_are_listed_without_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let created = s.json(&["token", "create", "--uses", "2", "--json"]);
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(created["join_command"].as_str().unwrap().contains(&secret));
    let listed = s.json(&["token", "ls", "--json"]);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == created["id"])
        .expect("token listed");
    assert_eq!(entry["uses_left"], 2);
    assert_eq!(entry["usable"], true);
    let text = listed.to_string();
    assert!(!text.contains(&secret), "secret leaked: {text}");
    assert!(!text.contains("hash"), "hash leaked: {text}");
}
