//! Another local user against a running server and agent: nobody (uid 65534) reads neither
//! the join token (`/etc/herd/agent-token`, written by `herd agent install`), nor the agent's
//! credential or spool, nor the server's database or output logs, nor the agent's
//! environment, and the agent's command line names no token. The test's own directories are
//! opened to everyone first, so that only the modes herd sets protect what is in them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Runs `argv` as the unprivileged user nobody, `nsenter`ed into the mount namespace of
/// process `ns` when given.
fn as_nobody(ns: Option<u32>, argv: &[&str]) -> Output {
    let mut c = match ns {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg("-t")
                .arg(pid.to_string())
                .args(["-m", "--", "setpriv"]);
            c
        }
        None => Command::new("setpriv"),
    };
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts that nobody cannot read `path`: permission denied.
fn unreadable(ns: Option<u32>, path: &str) {
    let out = as_nobody(ns, &["cat", path]);
    let err = stderr(&out);
    assert!(!out.status.success(), "nobody read {path}");
    assert!(out.stdout.is_empty(), "nobody read {path}");
    assert!(err.contains("Permission denied"), "{path}: {err}");
}

/// `dir` and every directory and regular file under it, recursively (as root).
fn everything_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        out.push(d.clone());
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The regular files under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    everything_under(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .collect()
}

fn open_to_all(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn another_local_user_reads_no_token_credential_spool_or_database() {
    let dir = tempfile::tempdir().unwrap();
    open_to_all(dir.path());
    open_to_all(&dir.path().join("agents"));
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token(1).unwrap();

    // The agent as `herd agent install` sets it up: the token in /etc/herd/agent-token, read
    // with --token-file. Install and agent run in a mount namespace of their own whose /etc
    // is an overlay (its changes land in `etc-upper`, open to all), and where no systemd is
    // seen, so this machine's /etc and services are untouched.
    let (upper, work) = (dir.path().join("etc-upper"), dir.path().join("etc-work"));
    open_to_all(&upper);
    open_to_all(&work);
    let script = format!(
        r#"set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc
if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; fi
herd=$1; shift; shift
"$herd" agent install "$@" >{install} 2>&1 || true
unset HERD_JOIN_TOKEN
exec "$herd" agent "$@" --token-file /etc/herd/agent-token"#,
        upper = upper.display(),
        work = work.display(),
        install = dir.path().join("install.out").display(),
    );
    let a = herd_testkit::Agent::start(
        &s,
        "local",
        &[],
        &token,
        Some(&["unshare", "-m", "sh", "-c", &script, "sh"]),
    )
    .unwrap();
    s.wait_online(&["local"]).unwrap();
    let pid = a.pid();
    let installed = std::fs::read_to_string(dir.path().join("install.out")).unwrap();
    assert!(
        installed.contains("--token-file /etc/herd/agent-token"),
        "{installed}"
    );

    // A task that has written output and still runs: its spool segment is on disk.
    let out = s.run(&[
        "run",
        "-t",
        "local",
        "--detach",
        "--",
        "echo spooled-output; sleep 600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = dir.path().join("agents").join("local");
    let segments = wait_for(Duration::from_secs(30), "a spool segment", || {
        let segs: Vec<PathBuf> = files_under(&state.join("spool"))
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "seg"))
            .collect();
        (!segs.is_empty()).then_some(segs)
    });
    let run_id = stdout(&out).trim().to_string();
    wait_for(Duration::from_secs(30), "the output stored", || {
        let o = s.run(&["runs", "logs", &run_id]);
        stdout(&o).contains("spooled-output").then_some(())
    });

    // The token file holds the token, and nobody cannot read it.
    let root_view = Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(["-m", "--", "cat", "/etc/herd/agent-token"])
        .output()
        .unwrap();
    assert_eq!(stdout(&root_view).trim(), token, "{}", stderr(&root_view));
    unreadable(Some(pid), "/etc/herd/agent-token");

    // The agent's credential and spool, the server's database and output logs.
    let mut attacked = files_under(&state);
    attacked.extend(
        files_under(&s.data_dir)
            .into_iter()
            .filter(|f| f.extension().is_none_or(|e| e != "pem")),
    );
    for seg in &segments {
        assert!(
            attacked.contains(seg),
            "{} gone: {attacked:?}",
            seg.display()
        );
    }
    let sqlite = std::env::var("HERD_TEST_DATABASE").as_deref() != Ok("postgres");
    for (what, found) in [("herd.db", sqlite), ("head", true), ("identity.json", true)] {
        assert!(
            !found || attacked.iter().any(|f| f.ends_with(what)),
            "no {what} in {attacked:?}"
        );
    }
    for f in &attacked {
        unreadable(None, f.to_str().unwrap());
    }

    // Nor would nobody, were the directories above opened (a state dir or data dir copied,
    // moved or opened by hand): every file and directory herd made is its owner's only.
    let made: Vec<PathBuf> = everything_under(&state)
        .into_iter()
        .chain(everything_under(&s.data_dir))
        .filter(|p| p.extension().is_none_or(|e| e != "pem"))
        .collect();
    for p in &made {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
    }

    // Its command line is anyone's to read, and names the file, never the token; its
    // environment is not anyone's.
    let cmdline = as_nobody(None, &["cat", &format!("/proc/{pid}/cmdline")]);
    assert!(cmdline.status.success(), "{}", stderr(&cmdline));
    let cmdline = stdout(&cmdline).replace('\0', " ");
    assert!(cmdline.contains(" agent "), "{cmdline}");
    assert!(
        cmdline.contains("--token-file /etc/herd/agent-token"),
        "{cmdline}"
    );
    assert!(!cmdline.contains(&token), "{cmdline}");
    unreadable(None, &format!("/proc/{pid}/environ"));
}

/// A server given its PostgreSQL URL with a password on the command line: another local
/// user reads the command line, which no longer holds the password, and not its environment,
/// which does.
#[test]
fn another_local_user_reads_no_database_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = herd_testkit::Postgres::shared()
        .unwrap()
        .create_database()
        .unwrap();
    // The test cluster trusts its user, so any password is accepted.
    let password = format!("pw-{}", std::process::id());
    let url = url.replacen("://herd@", &format!("://herd:{password}@"), 1);
    assert!(url.contains(&password), "{url}");
    let s = Server::start_on(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &["--database", &url],
        herd_testkit::Database::DataDir,
    )
    .unwrap();
    // It serves, from that database.
    let _a = s.agent("db-user", &[]).unwrap();
    s.wait_online(&["db-user"]).unwrap();
    assert!(
        !s.data_dir.join("herd.db").exists(),
        "{:?}",
        files_under(&s.data_dir)
    );

    let pid = s.pid();
    let cmdline = as_nobody(None, &["cat", &format!("/proc/{pid}/cmdline")]);
    assert!(cmdline.status.success(), "{}", stderr(&cmdline));
    let cmdline = stdout(&cmdline).replace('\0', " ");
    assert!(cmdline.contains(" server "), "{cmdline}");
    assert!(!cmdline.contains(&password), "{cmdline}");
    assert!(!cmdline.contains("--database"), "{cmdline}");
    unreadable(None, &format!("/proc/{pid}/environ"));
    assert!(!s.log().contains(&password), "{}", s.log());
}
