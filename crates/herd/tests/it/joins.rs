//! Agents racing for one name with one token: one joins, the others are told the name is
//! taken, and no refused join takes a use of the token (name taken, a name that is another
//! agent's id, a name that is not valid).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `herd agent` joining `s` as `name` with `token` in its environment, state in
/// `dir/state-{tag}`.
fn agent(s: &Server, dir: &Path, tag: &str, name: &str, token: &str) -> Command {
    let mut c = herd();
    c.args(["agent", "--server", &s.url, "--name", name])
        .arg("--state-dir")
        .arg(dir.join(format!("state-{tag}")))
        .env("HERD_JOIN_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(fp) = &s.ca_sha256 {
        c.arg("--ca-sha256").arg(fp);
    }
    c
}

/// The token `id`'s uses left, as `herd token ls` lists it.
fn uses_left(s: &Server, id: &str) -> i64 {
    let list = s.json(&["token", "ls", "--json"]);
    let tok = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no token {id}: {list}"));
    tok["uses_left"].as_i64().unwrap()
}

/// A join that the server refuses: the agent's one error line.
fn refused(mut c: Command) -> String {
    let out = c.output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "joined: {err}");
    let line = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("herd: "), "{err}");
    line
}

#[test]
fn agents_racing_for_one_name_take_one_use_of_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let created = s.json(&["token", "create", "--uses", "3", "--json"]);
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();

    // Eight machines started at once, all as "same", with one token.
    let mut racers: Vec<(KillOnDrop, std::path::PathBuf)> = (0..8)
        .map(|i| {
            let log = dir.path().join(format!("racer-{i}.log"));
            let mut c = agent(&s, dir.path(), &format!("racer-{i}"), "same", &token);
            c.stderr(std::fs::File::create(&log).unwrap());
            (KillOnDrop(c.spawn().unwrap()), log)
        })
        .collect();
    let ended = wait_for(Duration::from_secs(60), "seven racers to give up", || {
        let ended: Vec<usize> = racers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (p, _))| p.0.try_wait().unwrap().map(|_| i))
            .collect();
        (ended.len() >= 7).then_some(ended)
    });
    assert_eq!(ended.len(), 7, "{ended:?}");
    s.wait_online(&["same"]).unwrap();
    for i in ended {
        let status = racers[i].0.0.wait().unwrap();
        assert!(!status.success(), "racer {i}: {status}");
        let err = std::fs::read_to_string(&racers[i].1).unwrap();
        // One line, saying why.
        assert_eq!(err.trim().lines().count(), 1, "racer {i}: {err}");
        assert!(err.starts_with("herd: joining "), "racer {i}: {err}");
        assert!(
            err.contains(r#"an agent named "same" already exists — pick another --name"#),
            "racer {i}: {err}"
        );
    }
    // One machine joined, one use taken.
    let agents = s.json(&["agents", "--json"]);
    let same: Vec<_> = agents
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "same")
        .collect();
    assert_eq!(same.len(), 1, "{agents}");
    let same_id = same[0]["id"].as_str().unwrap().to_string();
    assert_eq!(uses_left(&s, &id), 2);
    let audit = s.json(&["audit", "--json"]);
    let joins = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.join")
        .count();
    assert_eq!(joins, 1, "{audit}");

    // Nor does a join refused for its name take one: another agent's id, not a valid name.
    let err = refused(agent(&s, dir.path(), "by-id", &same_id, &token));
    assert!(err.contains("is another agent's id"), "{err}");
    let err = refused(agent(&s, dir.path(), "bad", "no/slashes", &token));
    assert!(err.contains("is not valid"), "{err}");
    assert_eq!(uses_left(&s, &id), 2);

    // The two uses left join two machines of other names.
    let mut c1 = agent(&s, dir.path(), "next-1", "next-1", &token);
    let mut c2 = agent(&s, dir.path(), "next-2", "next-2", &token);
    let _n1 = KillOnDrop(c1.stderr(Stdio::null()).spawn().unwrap());
    let _n2 = KillOnDrop(c2.stderr(Stdio::null()).spawn().unwrap());
    s.wait_online(&["same", "next-1", "next-2"]).unwrap();
    assert_eq!(uses_left(&s, &id), 0);
}
