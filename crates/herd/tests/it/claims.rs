//! Agents cannot choose their targeting, written as the attack: an agent that declares
//! `role=db` in its Hello, with a token that allows only `role=web`, is not picked by
//! `role=db`; it is shown as a claim until an operator sets the label.

use crate::harness::*;

#[test]
fn an_agent_claiming_role_db_is_not_selected_until_an_operator_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let web_token = s
        .join_token_with(2, &["--label", "role=web", "--label", "rack=*"])
        .unwrap();
    // A real database machine, joined with a token that allows role=db.
    let db_token = s.join_token_with(1, &["--label", "role=db"]).unwrap();
    let _db = Agent::start(&s, "db-1", &["role=db"], &db_token, None).unwrap();
    // The rogue: a web machine's token, and role=db in its Hello.
    let _rogue = Agent::start(
        &s,
        "web-1",
        &["role=db", "rack=r7", "zone=eu"],
        &web_token,
        None,
    )
    .unwrap();
    // An honest web machine with the same token.
    let _web = Agent::start(&s, "web-2", &["role=web"], &web_token, None).unwrap();
    s.wait_online(&["db-1", "web-1", "web-2"]).unwrap();

    // The database job reaches the database machine only.
    let out = s.run(&["run", "-t", "role=db", "--", "echo", "secret-job"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("secret-job").count(), 1, "{text}");
    assert!(!text.contains("web-1"), "the rogue got the job: {text}");
    let run = s.json(&["run", "-t", "role=db", "--detach", "--json", "--", "true"]);
    let tasks = run["tasks"].as_array().expect("tasks");
    let machines: Vec<&str> = tasks
        .iter()
        .filter_map(|t| t["agent_name"].as_str())
        .collect();
    assert_eq!(machines, ["db-1"], "{run}");

    // What the token allows is held (rack=* allows any rack); the rest are claims.
    let rogue = s.json(&["agents", "show", "web-1"]);
    assert_eq!(
        rogue["labels"],
        serde_json::json!({"rack": "r7"}),
        "{rogue}"
    );
    assert_eq!(
        rogue["claims"],
        serde_json::json!({"role": "db", "zone": "eu"}),
        "{rogue}"
    );
    let web = s.json(&["agents", "show", "web-2"]);
    assert_eq!(web["labels"], serde_json::json!({"role": "web"}), "{web}");
    let listed = stdout(&s.run(&["agents"]));
    assert!(listed.contains("role=db(claim)"), "{listed}");
    let out = s.run(&["run", "-t", "zone=eu", "--", "true"]);
    assert!(
        !out.status.success(),
        "a claim was matched: {}",
        stdout(&out)
    );

    // An operator accepts the claim: now it is the server's label, and matched.
    let out = s.run(&["agents", "label", "web-1", "role=db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = s.json(&["run", "-t", "role=db", "--detach", "--json", "--", "true"]);
    let mut machines: Vec<&str> = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["agent_name"].as_str())
        .collect();
    machines.sort_unstable();
    assert_eq!(machines, ["db-1", "web-1"], "{run}");

    // Tokens list what they allow; a token's labels are checked when it is made.
    let tokens = stdout(&s.run(&["token", "ls"]));
    assert!(tokens.contains("rack=*,role=web"), "{tokens}");
    let made = s.json(&[
        "token", "create", "--label", "role=db", "--label", "rack=*", "--json",
    ]);
    let join = made["join_command"].as_str().expect("a join command");
    assert!(join.ends_with(" --label role=db"), "{join}");
    let out = s.run(&["token", "create", "--label", "bad key=x"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// A token made without `--label` or `--any-labels`: the machine holds none of what it
/// declares.
#[test]
fn a_plain_token_lets_an_agent_hold_no_declared_label() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token_with(1, &[]).unwrap();
    let _a = Agent::start(&s, "m1", &["role=db"], &token, None).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let m = s.json(&["agents", "show", "m1"]);
    assert_eq!(m["labels"], serde_json::json!({}), "{m}");
    assert_eq!(m["claims"], serde_json::json!({"role": "db"}), "{m}");
    let out = s.run(&["run", "-t", "role=db", "--", "true"]);
    assert!(
        !out.status.success(),
        "a claim was matched: {}",
        stdout(&out)
    );
    // The machine itself is still reachable by name.
    let out = s.run(&["run", "-t", "m1", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
