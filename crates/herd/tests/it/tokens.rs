//! Join tokens stay off command lines: the printed join command passes the token in the
//! environment, an agent given `--token` moves it into its environment at start (so other
//! local users cannot read it from `/proc/PID/cmdline`), `--token-file` joins, and tasks never
//! inherit the token.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::*;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `herd agent` joining `s` as `name` with the extra arguments `token_args`.
fn agent(s: &Server, dir: &Path, name: &str, token_args: &[&str]) -> Command {
    let mut c = herd();
    c.args(["agent", "--server", &s.url, "--name", name])
        .args(token_args)
        .arg("--state-dir")
        .arg(dir.join(name));
    if let Some(fp) = &s.ca_sha256 {
        c.arg("--ca-sha256").arg(fp);
    }
    c
}

fn spawn(mut c: Command) -> KillOnDrop {
    KillOnDrop(
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `cat PATH` as the unprivileged user nobody.
fn cat_as_nobody(path: &str) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "cat",
            path,
        ])
        .output()
        .unwrap()
}

/// What `env` prints in a task on `name`.
fn task_env(s: &Server, name: &str) -> String {
    let out = s.run(&["run", "-t", name, "--", "env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn token_is_kept_off_command_lines_and_out_of_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();

    // The printed join command passes the token in the environment.
    let out = s.run(&["token", "create"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out).trim().to_string();
    let err = stderr(&out);
    assert!(
        err.contains(&format!("HERD_JOIN_TOKEN={printed} herd agent --server ")),
        "{err}"
    );
    assert!(!err.contains("--token"), "{err}");

    // An agent given --token on its command line: once online, its command line (as root
    // and as another user) no longer holds the token, and other users cannot read its
    // environment.
    let token = s.join_token(1).unwrap();
    let log = dir.path().join("argv.log");
    let a = KillOnDrop(
        agent(&s, dir.path(), "argv", &["--token", &token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    s.wait_online(&["argv"]).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("moved the join token off the command line"),
        "{logged}"
    );
    let pid = a.0.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains(" agent "), "{cmdline}");
    assert!(!cmdline.contains(&token), "{cmdline}");
    let seen = cat_as_nobody(&format!("/proc/{pid}/cmdline"));
    assert!(seen.status.success(), "{}", stderr(&seen));
    let seen = stdout(&seen).replace('\0', " ");
    assert!(seen.contains(" agent "), "{seen}");
    assert!(!seen.contains(&token), "{seen}");
    let environ = cat_as_nobody(&format!("/proc/{pid}/environ"));
    assert!(!environ.status.success());
    assert!(!stdout(&environ).contains(&token));

    // Tasks do not inherit the token, neither from that agent nor from one started as the
    // join command says (token in the environment).
    let env_token = s.join_token(1).unwrap();
    let mut c = agent(&s, dir.path(), "env", &[]);
    c.env("HERD_JOIN_TOKEN", &env_token);
    let _e = spawn(c);
    s.wait_online(&["env"]).unwrap();
    for (name, token) in [("argv", &token), ("env", &env_token)] {
        let env = task_env(&s, name);
        assert!(env.contains("HERD_TASK_ID="), "{env}");
        assert!(!env.contains("HERD_JOIN_TOKEN"), "{name}: {env}");
        assert!(!env.contains(token.as_str()), "{name}: {env}");
    }

    // --token-file joins (a trailing newline is ignored).
    let file_token = s.join_token(1).unwrap();
    let path = dir.path().join("join-token");
    std::fs::write(&path, format!("{file_token}\n")).unwrap();
    let _f = spawn(agent(
        &s,
        dir.path(),
        "file",
        &["--token-file", path.to_str().unwrap()],
    ));
    s.wait_online(&["file"]).unwrap();

    // An unreadable token file: one line saying so.
    let missing = dir.path().join("no-such-token");
    let out = agent(
        &s,
        dir.path(),
        "nofile",
        &["--token-file", missing.to_str().unwrap()],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("herd: cannot read the join token from "),
        "{err}"
    );
}
