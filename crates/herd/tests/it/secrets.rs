//! Secrets and disk: a `--secret-env` value reaches the command but is never stored, logged
//! or answered; `-e` values are shown as given; the data dir and the agent's state dir are
//! their owner's only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

/// Every regular file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub(crate) fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A value no test writes anywhere else.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

#[test]
fn secret_env_reaches_the_command_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("s1", &[]).unwrap();
    s.wait_online(&["s1"]).unwrap();

    let secret = unique("hunter2");
    let from_env = unique("tiger");
    let plain = unique("plain");
    let reversed = |v: &str| v.chars().rev().collect::<String>();
    // The command proves it saw the values without printing them: reversed.
    let out = s
        .cli()
        .env("HERD_TEST_FROM_ENV", &from_env)
        .args(["run", "-t", "s1", "--secret-env"])
        .arg(format!("TOKEN={secret}"))
        .args(["--secret-env", "HERD_TEST_FROM_ENV", "-e"])
        .arg(format!("PLAIN={plain}"))
        .args([
            "--",
            r#"printf '%s\n' "$TOKEN" | rev; printf '%s\n' "$HERD_TEST_FROM_ENV" | rev; echo "$PLAIN""#,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let so = stdout(&out);
    assert!(out.status.success(), "{so} {}", stderr(&out));
    assert!(so.contains(&reversed(&secret)), "{so}");
    assert!(so.contains(&reversed(&from_env)), "{so}");
    assert!(so.contains(&plain), "{so}");

    let runs = s.json(&["runs", "ls", "--json"]);
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    let show = s.json(&["runs", "show", &run_id, "--json"]);
    assert_eq!(show["spec"]["env"]["PLAIN"], plain.as_str(), "{show}");
    assert_eq!(
        show["spec"]["secret_names"],
        serde_json::json!(["HERD_TEST_FROM_ENV", "TOKEN"]),
        "{show}"
    );
    let text = stdout(&s.run(&["runs", "show", &run_id]));
    assert!(text.contains("TOKEN=***"), "{text}");
    assert!(text.contains(&format!("PLAIN={plain}")), "{text}");
    let task_id = show["tasks"][0]["id"].as_str().unwrap().to_string();

    // No answer of the API holds the values.
    let answers = [
        show.to_string(),
        text,
        s.json(&["runs", "ls", "--json"]).to_string(),
        s.json(&["tasks", "ls", "--json"]).to_string(),
        s.json(&["tasks", "show", &task_id, "--json"]).to_string(),
        s.json(&["audit", "--json"]).to_string(),
    ];
    for a in &answers {
        for v in [&secret, &from_env] {
            assert!(!a.contains(v.as_str()), "a value in {a}");
        }
    }

    // Nor any file: the server's data dir (database, WAL, output logs), the agent's state
    // dir (spool, identity), the logs of both.
    let files = files_under(dir.path());
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("herd.db"))
            || std::env::var("HERD_TEST_DATABASE").is_ok_and(|d| d == "postgres"),
        "{files:?}"
    );
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        for v in [&secret, &from_env] {
            assert!(
                !contains(&bytes, v.as_bytes()),
                "a value in {}",
                f.display()
            );
        }
    }
}

#[test]
fn data_and_state_dirs_are_their_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    // An existing data dir open to others is fixed at start.
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m1", &[]).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let out = s.run(&["run", "-t", "m1", "--", "echo output-line"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.log().contains("made it 0700"), "{}", s.log());

    assert_eq!(mode(&data), 0o700);
    let state = dir.path().join("agents").join("m1");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("identity.json")), 0o600);
    let files = files_under(&data);
    // The lock and the output log at least (and the SQLite files when the records are there).
    assert!(
        files.iter().any(|f| f.ends_with("lock")) && files.iter().any(|f| f.ends_with("head")),
        "{files:?}"
    );
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        if name.ends_with(".pem") {
            continue; // certificates are public
        }
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // Directories under the data dir (the output logs') too.
    for f in &files {
        let parent = f.parent().unwrap();
        assert_eq!(mode(parent) & 0o077, 0, "{}", parent.display());
    }
}

/// A task of a run with secrets that has not started when the server restarts ends
/// cancelled with the reason (never runs without its values).
#[test]
fn a_queued_task_whose_secrets_are_gone_ends_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("q1", &["grp=q"]).unwrap();
    let _b = s.agent("q2", &["grp=q"]).unwrap();
    s.wait_online(&["q1", "q2"]).unwrap();
    let gate = dir.path().join("gate");
    let secret = unique("queued-secret");
    let out = s
        .cli()
        .args(["run", "-t", "grp=q", "--concurrency", "1", "--detach"])
        .arg("--secret-env")
        .arg(format!("TOKEN={secret}"))
        .arg("--")
        .arg(format!(
            "while [ ! -e {} ]; do sleep 0.05; done; echo ran-with-$TOKEN",
            gate.display()
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run_id = stdout(&out).trim().to_string();
    wait_for(Duration::from_secs(30), "one task running", || {
        let r = s.json(&["runs", "show", &run_id, "--json"]);
        r["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "running")
            .then_some(())
    });
    s.restart().unwrap();
    s.wait_online(&["q1", "q2"]).unwrap();
    std::fs::write(&gate, "").unwrap();
    let r = wait_for(Duration::from_secs(60), "the run to finish", || {
        let r = s.json(&["runs", "show", &run_id, "--json"]);
        r["finished_at"].is_i64().then_some(r)
    });
    let tasks = r["tasks"].as_array().unwrap();
    let states: Vec<&str> = tasks.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"succeeded"), "{r}");
    let gone = tasks
        .iter()
        .find(|t| t["state"] == "cancelled")
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        gone["reason"].as_str().unwrap().contains("--secret-env"),
        "{gone}"
    );
}
