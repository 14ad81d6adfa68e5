//! API key roles and scopes, and the stored command policy applied to every run: a viewer
//! key reads only; an operator key manages no keys and stays within its scope; the policy is
//! set as versions (audited) and decides typed runs, schedules and workflow starts; a
//! dangerous command runs only when approved, a forbidden one never.

use std::process::Output;
use std::time::Duration;

use crate::harness::*;

/// The CLI with API key `key`.
fn as_key(s: &Server, key: &str, args: &[&str]) -> Output {
    s.cli()
        .env("HERD_API_KEY", key)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run herd")
}

/// A new API key created with `args` (`--role operator`).
fn key(s: &Server, name: &str, args: &[&str]) -> String {
    let mut a = vec!["keys", "create", name, "--json"];
    a.extend_from_slice(args);
    let v = s.json(&a);
    v["key"].as_str().expect("a key").to_string()
}

/// Fails with `out`'s stderr unless it failed with one line holding every one of `want`.
fn refused(out: &Output, want: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "it ran: {err}{}", stdout(out));
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("herd: "), "{err}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", stderr(out), stdout(out));
    stdout(out)
}

/// Two machines, web-1 (`role=web`) and db-1 (`role=db`).
fn fleet(s: &Server) -> (Agent, Agent) {
    let web = s.agent("web-1", &["role=web"]).unwrap();
    let db = s.agent("db-1", &["role=db"]).unwrap();
    s.wait_online(&["web-1", "db-1"]).unwrap();
    (web, db)
}

#[test]
fn a_viewer_reads_and_an_operator_stays_in_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = fleet(&s);
    let viewer = key(&s, "watcher", &["--role", "viewer"]);
    let op = key(
        &s,
        "web-ops",
        &["--role", "operator", "--scope", "role=web"],
    );

    // The keys list shows each key's role and scope; the first key stays admin.
    let keys = ok(&s.run(&["keys", "ls"]));
    assert!(keys.contains("SCOPE"), "{keys}");
    let line = |name: &str| {
        keys.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not listed: {keys}"))
            .to_string()
    };
    assert!(line("web-ops").contains("operator"), "{keys}");
    assert!(line("web-ops").contains("role=web"), "{keys}");
    assert!(line("watcher").contains("viewer"), "{keys}");
    assert!(line(" admin ").contains("admin"), "{keys}");

    // A viewer lists, and runs nothing.
    let agents = ok(&as_key(&s, &viewer, &["agents"]));
    assert!(agents.contains("web-1"), "{agents}");
    refused(
        &as_key(&s, &viewer, &["run", "-t", "web-1", "--", "echo", "hi"]),
        &["viewer"],
    );
    refused(
        &as_key(
            &s,
            &viewer,
            &["run", "-t", "web-1", "--detach", "--", "echo", "hi"],
        ),
        &["viewer"],
    );
    refused(
        &as_key(&s, &viewer, &["vars", "set", "k", "v"]),
        &["viewer"],
    );

    // An operator scoped to role=web runs on web-1, and is refused db-1, which is named.
    let out = ok(&as_key(
        &s,
        &op,
        &["run", "-t", "web-1", "--", "echo", "from-web"],
    ));
    assert!(out.contains("from-web"), "{out}");
    refused(
        &as_key(&s, &op, &["run", "-t", "db-1", "--", "echo", "hi"]),
        &["db-1", "scope", "role=web"],
    );
    refused(
        &as_key(&s, &op, &["run", "--all", "--", "echo", "hi"]),
        &["db-1", "scope"],
    );
    // Nor does it relabel a machine into its scope, or touch one outside it.
    refused(
        &as_key(&s, &op, &["agents", "label", "db-1", "role=web"]),
        &["db-1", "scope"],
    );
    refused(
        &as_key(&s, &op, &["agents", "label", "-t", "role=db", "role=web"]),
        &["db-1", "scope"],
    );
    refused(
        &as_key(&s, &op, &["agents", "revoke", "db-1"]),
        &["db-1", "scope"],
    );
    refused(
        &as_key(&s, &op, &["run", "-t", "db-1", "--", "echo", "hi"]),
        &["db-1", "scope"],
    );
    ok(&as_key(&s, &op, &["agents", "label", "web-1", "tier=gold"]));
    // Nor does it manage keys, tokens or the policy.
    refused(
        &as_key(&s, &op, &["keys", "create", "more"]),
        &["operator", "admin"],
    );
    refused(&as_key(&s, &op, &["token", "create"]), &["operator"]);
    let names: Vec<String> = s
        .json(&["keys", "ls", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"more".to_string()), "{names:?}");
    // A scope that is not a selector is refused when the key is made.
    refused(
        &s.run(&[
            "keys", "create", "bad", "--role", "operator", "--scope", "role==",
        ]),
        &["scope"],
    );
}

#[test]
fn the_stored_policy_is_versioned_audited_and_decides_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = fleet(&s);
    let op = key(&s, "ops", &["--role", "operator"]);

    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "by_role:\n  operator:\n    deny_patterns: ['systemctl restart *']\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    // Only an admin sets it.
    refused(&as_key(&s, &op, &["policy", "set", file]), &["operator"]);
    assert!(ok(&s.run(&["policy", "set", file])).contains("version 1"));

    // An operator's restart is refused; an admin's is allowed (it runs, whatever systemctl
    // answers here).
    refused(
        &as_key(
            &s,
            &op,
            &["run", "-t", "web-1", "--", "systemctl", "restart", "nginx"],
        ),
        &["denied by the command policy", "version 1"],
    );
    let check = s.json(&[
        "policy",
        "check",
        "--role",
        "operator",
        "-t",
        "web-1",
        "--json",
        "--",
        "systemctl",
        "restart",
        "nginx",
    ]);
    assert_eq!(check["decision"], "deny", "{check}");
    assert_eq!(check["class"], "caution", "{check}");
    let admin = s.run(&[
        "run",
        "-t",
        "web-1",
        "--",
        "systemctl",
        "restart",
        "herd-no-unit",
    ]);
    assert!(!stderr(&admin).contains("policy"), "{}", stderr(&admin));
    let runs = s.json(&["runs", "ls", "--json"]);
    assert!(
        runs.to_string().contains("systemctl restart herd-no-unit"),
        "{runs}"
    );

    // A policy that does not check out: one line naming the bad field; nothing stored.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "by_role:\n  operator:\n    rules:\n      safe: maybe\n",
    )
    .unwrap();
    refused(
        &s.run(&[
            "policy",
            "set",
            dir.path().join("bad.yaml").to_str().unwrap(),
        ]),
        &["by_role.operator.rules.safe"],
    );
    // A second version: label rules for role=db make caution commands need approval there.
    std::fs::write(
        dir.path().join("v2.json"),
        r#"{"by_label": [{"selector": "role=db", "policy": {"rules": {"safe": "allow", "caution": "approve", "dangerous": "approve", "forbidden": "deny"}}}]}"#,
    )
    .unwrap();
    ok(&s.run(&[
        "policy",
        "set",
        dir.path().join("v2.json").to_str().unwrap(),
    ]));
    let c = s.json(&[
        "policy",
        "check",
        "-t",
        "db-1",
        "--json",
        "--",
        "rm",
        "-rf",
        "/tmp/herd-x",
    ]);
    assert_eq!(c["decision"], "approve", "{c}");
    let c = s.json(&[
        "policy",
        "check",
        "-t",
        "web-1",
        "--json",
        "--",
        "rm",
        "-rf",
        "/tmp/herd-x",
    ]);
    assert_eq!(c["decision"], "allow", "{c}");

    let history = s.json(&["policy", "history", "--json"]);
    let versions: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1], "{history}");
    let v1 = s.json(&["policy", "show", "--version", "1"]);
    assert!(v1.to_string().contains("systemctl restart *"), "{v1}");
    let audit = s.json(&["audit", "--json"]);
    let sets: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "policy.set")
        .collect();
    assert_eq!(sets.len(), 2, "{audit}");
    assert_eq!(sets[0]["detail"]["version"], 2, "{audit}");
}

#[test]
fn dangerous_commands_need_approval_and_forbidden_ones_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = fleet(&s);
    let work = tempfile::tempdir().unwrap();
    let victim = work.path().join("victim");
    std::fs::write(&victim, "data").unwrap();
    let victim = victim.to_str().unwrap();

    // Dangerous, no --approve, no terminal: refused with the way to approve; nothing ran.
    refused(
        &s.run(&["run", "-t", "web-1", "--", "shred", "-u", victim]),
        &["needs approval", "dangerous", "--approve"],
    );
    assert!(std::path::Path::new(victim).exists());
    // Approved, it runs, and the approval is in the run's audit entry.
    ok(&s.run(&[
        "run",
        "-t",
        "web-1",
        "--approve",
        "--",
        "shred",
        "-u",
        victim,
    ]));
    assert!(!std::path::Path::new(victim).exists());
    let audit = s.json(&["audit", "--json"]);
    let created = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.create")
        .unwrap_or_else(|| panic!("no run.create: {audit}"));
    assert_eq!(created["detail"]["policy"]["approved"], true, "{created}");
    assert_eq!(
        created["detail"]["policy"]["class"], "dangerous",
        "{created}"
    );

    // Forbidden: refused even approved, on every path.
    refused(
        &s.run(&[
            "run",
            "-t",
            "web-1",
            "--approve",
            "--",
            "echo 1 > /dev/sdzz",
        ]),
        &["denied by the command policy", "forbidden"],
    );
    refused(
        &s.run(&[
            "run",
            "-t",
            "web-1",
            "--approve",
            "--detach",
            "--",
            "echo 1 > /dev/sdzz",
        ]),
        &["denied", "forbidden"],
    );
    assert!(!std::path::Path::new("/dev/sdzz").exists());

    // A schedule of a dangerous command needs the approval of who adds it.
    refused(
        &s.run(&[
            "schedules",
            "add",
            "nightly",
            "--every",
            "1h",
            "-t",
            "web-1",
            "--",
            "shred",
            "-u",
            "/tmp/herd-roles-none",
        ]),
        &["needs approval", "--approve"],
    );
    ok(&s.run(&[
        "schedules",
        "add",
        "nightly",
        "--every",
        "1h",
        "-t",
        "web-1",
        "--approve",
        "--",
        "shred",
        "-u",
        "/tmp/herd-roles-none",
    ]));
    let audit = s.json(&["audit", "--json"]);
    let added = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "schedule.add")
        .unwrap_or_else(|| panic!("no schedule.add: {audit}"));
    assert_eq!(added["detail"]["policy"]["approved"], true, "{added}");

    // A workflow with a forbidden step is refused when it starts; nothing of it runs.
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        "name: wipe\nsteps:\n  - id: hello\n    run: echo hello\n  - id: wipe\n    needs: [hello]\n    run: echo 1 > /dev/sdzz\n",
    )
    .unwrap();
    ok(&s.run(&["workflows", "apply", "-f", wf.to_str().unwrap()]));
    refused(
        &s.run(&["workflows", "run", "wipe", "-t", "web-1", "--approve"]),
        &["step wipe", "denied", "forbidden"],
    );
    let runs = s.json(&["workflows", "runs", "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");
}

#[test]
fn a_schedule_is_checked_again_at_each_fire_against_the_policy_of_then() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = fleet(&s);
    let op = key(&s, "ops", &["--role", "operator"]);
    ok(&as_key(
        &s,
        &op,
        &[
            "schedules",
            "add",
            "tick",
            "--every",
            "1s",
            "-t",
            "web-1",
            "--",
            "echo",
            "tick",
        ],
    ));
    let history = |n: &str| {
        s.json(&["schedules", "history", n, "-n", "1000", "--json"])
            .as_array()
            .unwrap()
            .clone()
    };
    wait_for(Duration::from_secs(30), "a fire that started", || {
        history("tick")
            .iter()
            .any(|f| f["outcome"] == "started")
            .then_some(())
    });
    // The policy now denies it to operators: the next fires are recorded failed, saying why.
    let file = dir.path().join("deny-echo.yaml");
    std::fs::write(
        &file,
        "by_role:\n  operator:\n    deny_patterns: ['echo tick']\n",
    )
    .unwrap();
    ok(&s.run(&["policy", "set", file.to_str().unwrap()]));
    let failed = wait_for(
        Duration::from_secs(30),
        "a fire refused by the policy",
        || {
            history("tick")
                .into_iter()
                .find(|f| f["outcome"] == "failed")
        },
    );
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("denied by the command policy"), "{failed}");
    assert!(detail.contains("role operator"), "{failed}");
}

/// `herd run ARGS` in a terminal (`script` gives it one), `answer` typed ahead.
fn in_terminal(s: &Server, dir: &std::path::Path, args: &str, answer: &str) -> (bool, String) {
    let answers = dir.join("answer");
    std::fs::write(&answers, answer).unwrap();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{HERD} run {args}"), "/dev/null"]);
    for (k, v) in s.cli().get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .stdin(std::fs::File::open(&answers).unwrap())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn in_a_terminal_a_dangerous_command_asks_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = fleet(&s);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "data").unwrap();
    let args = format!("-t web-1 -- shred -u {}", victim.display());

    // No: nothing runs, and herd says so.
    let (ran, text) = in_terminal(&s, dir.path(), &args, "n\n");
    assert!(!ran, "{text}");
    assert!(
        text.contains("this command is dangerous (dangerous: ") && text.contains("run it? [y/N]"),
        "{text}"
    );
    assert!(text.contains("not approved"), "{text}");
    assert!(victim.exists(), "{text}");
    // Yes: it runs, approved.
    let (ran, text) = in_terminal(&s, dir.path(), &args, "y\n");
    assert!(ran, "{text}");
    assert!(!victim.exists(), "{text}");
    let audit = s.json(&["audit", "--json"]);
    let created = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.create")
        .unwrap_or_else(|| panic!("no run.create: {audit}"));
    assert_eq!(created["detail"]["policy"]["approved"], true, "{created}");
}

#[test]
fn a_step_is_checked_again_as_rendered_with_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = fleet(&s);
    let wf = dir.path().join("say.yaml");
    std::fs::write(
        &wf,
        "name: say\nparams:\n  msg: {type: string}\nsteps:\n  - id: say\n    run: echo ${{ params.msg }}\n",
    )
    .unwrap();
    ok(&s.run(&["workflows", "apply", "-f", wf.to_str().unwrap()]));
    // A parameter that makes the command forbidden: the start sees a value, the step the
    // command as it would run, which never runs.
    let out = s.run(&[
        "workflows",
        "run",
        "say",
        "-t",
        "web-1",
        "-p",
        "msg=x > /dev/sdzz",
        "--json",
    ]);
    let runs = s.json(&["workflows", "runs", "--json"]);
    let id = runs[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{runs} {}", stderr(&out)));
    let r = wait_for(Duration::from_secs(30), "the workflow run to end", || {
        let r = s.json(&["workflows", "runs", "show", id, "--json"]);
        (r["state"] != "running").then_some(r)
    });
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r.to_string().contains("denied by the command policy"),
        "{r}"
    );
    assert!(!std::path::Path::new("/dev/sdzz").exists());
}
