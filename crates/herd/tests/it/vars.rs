//! `herd vars`: variables, and secrets that are encrypted at rest and never shown.

use std::io::Write as _;
use std::process::{Output, Stdio};

use crate::errors::fails_one_line;
use crate::harness::*;
use crate::secrets::{contains, files_under, mode};

/// `herd vars set KEY --secret` with `value` on standard input.
pub(crate) fn set_secret(s: &Server, key: &str, value: &str) -> Output {
    let mut child = s
        .cli()
        .args(["vars", "set", key, "--secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(value.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn variables_are_kept_and_secrets_are_sealed_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(HERD, dir.path()).unwrap();
    let secret = "s3cr3t-value-that-must-not-leak-5f2c";

    let out = s.run(&["vars", "set", "region", "eu-west"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&s.run(&["vars", "get", "region"])).trim(), "eu-west");
    let out = set_secret(&s, "db_pw", &format!("{secret}\n"));
    assert!(out.status.success(), "{}", stderr(&out));

    // Shown as *** everywhere; the API answers no value.
    assert_eq!(stdout(&s.run(&["vars", "get", "db_pw"])).trim(), "***");
    let listed = stdout(&s.run(&["vars", "ls"]));
    assert!(
        listed.contains("eu-west") && listed.contains("***"),
        "{listed}"
    );
    let json = s.json(&["vars", "ls", "--json"]);
    let pw = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == "db_pw")
        .expect("db_pw listed");
    assert_eq!(pw["value"], serde_json::Value::Null, "{json}");
    assert_eq!(pw["secret"], true);
    let audit = stdout(&s.run(&["audit", "--json"]));
    assert!(audit.contains("var.set"), "{audit}");

    // Never in clear on disk (the SQLite database and its WAL, when that is the store), nor
    // in any answer or log; the key it is sealed with is the server's only.
    let data = dir.path().join("server");
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds the secret",
            f.display()
        );
    }
    assert_eq!(mode(&data.join("secrets.key")), 0o600);
    for text in [&listed, &json.to_string(), &audit, &s.log()] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }

    // A secret on the command line is refused (every local user reads it in `ps`).
    let msg = fails_one_line(
        &s.run(&["vars", "set", "db_pw", "hunter2", "--secret"]),
        "pipe it in",
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    fails_one_line(&set_secret(&s, "empty", ""), "no value");
    fails_one_line(&s.run(&["vars", "set", "a b", "x"]), "not valid");
    fails_one_line(&s.run(&["vars", "get", "nope"]), "no variable");

    // They outlive a restart (the same key file seals and opens them).
    s.restart().unwrap();
    let keys = stdout(&s.run(&["vars", "ls"]));
    assert!(keys.contains("db_pw") && keys.contains("region"), "{keys}");
    let out = s.run(&["vars", "rm", "region"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fails_one_line(&s.run(&["vars", "get", "region"]), "no variable");
}

/// A run takes a secret from the server's variables: the command sees the value, the run's
/// record and every answer only its name.
#[test]
fn a_run_takes_a_secret_from_the_servers_variables() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m1", &[]).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let secret = "vault-value-9d1e";
    let out = set_secret(&s, "db_pw", secret);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&[
        "run",
        "-t",
        "m1",
        "--secret-var",
        "PGPASSWORD=db_pw",
        "--",
        "sh",
        "-c",
        "printf %s \"$PGPASSWORD\" | sha256sum",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The command saw the value (its digest), though nothing that went to it named it.
    use sha2::Digest as _;
    let want = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    assert!(stdout(&out).contains(&want), "{}", stdout(&out));
    let runs = stdout(&s.run(&["runs", "ls", "--json"]));
    let run_id = s.json(&["runs", "ls", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = stdout(&s.run(&["runs", "show", &run_id]));
    assert!(shown.contains("PGPASSWORD=***"), "{shown}");
    for text in [&runs, &shown, &s.log()] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    fails_one_line(
        &s.run(&["run", "-t", "m1", "--secret-var", "X=nope", "--", "true"]),
        "no variable",
    );
}
