//! A hostile agent, written as the attack: every text it reports (labels, facts, version, a
//! task's exit detail, task ids) carries escape sequences and forged lines, and none of it
//! reaches an operator's terminal or the server's log as it is.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use futures::channel::mpsc;
use herd_proto::v1::{self as pb, agent_frame, server_frame, task_event};

use crate::harness::*;

/// Clears the screen and moves the cursor home.
const CLEAR: &str = "\u{1b}[2J\u{1b}[H";
/// A forged row of `herd agents`, on a line of its own.
const FORGED_ROW: &str = "\r\nweb-1  0000  online  debian 12  -  just now";
/// What a forged server log line starts with.
const FORGED_LOG: &str = "FORGED: admin key revoked";

fn facts() -> pb::Facts {
    pb::Facts {
        machine_id: "m\u{1b}]0;pwned\u{7}".into(),
        hostname: "evil\u{9b}2J".into(),
        os_id: format!("debian{CLEAR}"),
        os_name: "Debian\u{202e}txt.exe".into(),
        os_version: format!("12{FORGED_ROW}"),
        kernel: "6.1\u{7f}".into(),
        arch: "x86_64".into(),
        cpus: 1,
        memory_bytes: 1 << 30,
        ..Default::default()
    }
}

fn frame(kind: agent_frame::Kind) -> pb::AgentFrame {
    pb::AgentFrame { kind: Some(kind) }
}

fn event(task_id: &str, seq: u64, kind: task_event::Kind) -> pb::TaskEvent {
    pb::TaskEvent {
        task_id: task_id.into(),
        seq,
        kind: Some(kind),
    }
}

/// Task ids the agent makes up, each forging a line of the server's log.
const MADE_UP_TASKS: usize = 30;

type Client = pb::agent_hub_client::AgentHubClient<tonic::transport::Channel>;

/// Joins `url` as `evil` with `token`: the client and the credential.
async fn join(url: String, token: String) -> Result<(Client, String), String> {
    let ch = herd_link::channel(&url, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = pb::agent_hub_client::AgentHubClient::new(ch);
    let joined = client
        .join(pb::JoinRequest {
            token,
            name: "evil".into(),
            labels: HashMap::new(),
            facts: Some(facts()),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok((client, joined.credential))
}

/// A session stream of `frames` with `credential`.
fn session_request(
    credential: &str,
    frames: mpsc::UnboundedReceiver<pb::AgentFrame>,
) -> tonic::Request<mpsc::UnboundedReceiver<pb::AgentFrame>> {
    let mut req = tonic::Request::new(frames);
    let bearer = format!("Bearer {credential}").parse().unwrap();
    req.metadata_mut().insert("authorization", bearer);
    req
}

/// Sessions that break the protocol at once (a heartbeat before the hello), `n` times.
async fn bad_sessions(mut client: Client, credential: String, n: usize) {
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded();
        let hb = pb::Heartbeat { metrics: None };
        tx.unbounded_send(frame(agent_frame::Kind::Heartbeat(hb)))
            .unwrap();
        let refused = client.session(session_request(&credential, rx)).await;
        assert!(refused.is_err(), "a session without a hello was taken");
    }
}

/// The hand-made agent `evil`: says hello with the crafted texts, beats, and ends every
/// task it is given at once with exit 3 and a crafted detail; with each, events for
/// [`MADE_UP_TASKS`] task ids that forge log lines.
async fn evil_agent(mut client: Client, credential: String) -> Result<(), String> {
    let (tx, rx) = mpsc::unbounded();
    let hello = pb::Hello {
        version: format!("1.0{CLEAR}\u{9b}31m"),
        name: format!("evil{CLEAR}"),
        labels: HashMap::from([("role".to_string(), format!("web{CLEAR}"))]),
        facts: Some(facts()),
        tasks: Vec::new(),
        instance_id: "evil-1".into(),
    };
    tx.unbounded_send(frame(agent_frame::Kind::Hello(hello)))
        .map_err(|e| e.to_string())?;
    let mut inbound = client
        .session(session_request(&credential, rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let beats = tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let hb = pb::Heartbeat { metrics: None };
            if beats
                .unbounded_send(frame(agent_frame::Kind::Heartbeat(hb)))
                .is_err()
            {
                return;
            }
        }
    });
    while let Some(f) = inbound.next().await {
        let f = f.map_err(|e| e.to_string())?;
        let Some(server_frame::Kind::Start(start)) = f.kind else {
            continue;
        };
        let id = start.task_id;
        let exited = pb::Exited {
            code: Some(3),
            signal: None,
            reason: pb::ExitReason::Exited as i32,
            duration_ms: 1,
            detail: format!("disk full{CLEAR}{FORGED_ROW}"),
            ..Default::default()
        };
        let mut events = vec![
            event(&id, 1, task_event::Kind::Started(pb::Started { pid: 1 })),
            event(&id, 2, task_event::Kind::Exited(exited)),
        ];
        for i in 0..MADE_UP_TASKS {
            let forged = format!("nope-{i}\n{FORGED_LOG}\r\u{1b}[2K{FORGED_LOG}");
            events.push(event(
                &forged,
                1,
                task_event::Kind::Started(pb::Started { pid: 1 }),
            ));
        }
        let batch = pb::EventBatch { events };
        tx.unbounded_send(frame(agent_frame::Kind::Events(batch)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Nothing in `out` would act on a terminal: no ESC, CR, C1 control or bidi override (line
/// feeds end lines).
fn assert_harmless(what: &str, out: &str) {
    let bad: Vec<char> = out
        .chars()
        .filter(|&c| c != '\n' && herd_core::is_unsafe_char(c))
        .collect();
    assert!(bad.is_empty(), "{what} printed {bad:?} raw:\n{out:?}");
    assert!(
        !out.lines().any(|l| l.starts_with("web-1 ")),
        "{what} printed a forged row:\n{out}"
    );
}

#[test]
fn an_agents_escape_sequences_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token(1).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, credential) = rt.block_on(join(s.url.clone(), token)).unwrap();
    let agent = rt.spawn(evil_agent(client.clone(), credential.clone()));
    s.wait_online(&["evil"]).unwrap_or_else(|e| {
        let ended = agent.is_finished();
        panic!("{e} (the hand-made agent ended: {ended})")
    });

    // The listing: the OS column holds the crafted facts, the labels the crafted label.
    let out = s.run(&["agents"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    assert_harmless("herd agents", &list);
    assert!(list.contains("debian\\e[2J\\e[H 12  web-1  0000"), "{list}");
    assert_eq!(list.lines().count(), 2, "one row for one machine:\n{list}");

    // One machine: every fact, the labels and the version.
    let out = s.run(&["agents", "show", "evil"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert_harmless("herd agents show", &shown);
    // Still JSON, meaning the same texts.
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["facts"]["hostname"], "evil\u{9b}2J", "{shown}");
    assert_eq!(v["version"], format!("1.0{CLEAR}\u{9b}31m"), "{shown}");

    // A task it ends with a crafted detail: the run's summary and the task.
    let out = s.run(&["run", "-t", "evil", "--", "true"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary = stderr(&out);
    assert_harmless("herd run's summary", &summary);
    assert!(summary.contains("disk full\\e[2J\\e[H"), "{summary}");
    let tasks = s.json(&["tasks", "ls", "--json"]);
    let task = tasks[0]["id"].as_str().unwrap().to_string();
    let out = s.run(&["tasks", "show", &task]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert_harmless("herd tasks show", &shown);
    assert!(
        shown.contains("disk full\\e[2J\\e[H\\r\\nweb-1  0000  online"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 11, "one line per field:\n{shown}");
    for args in [&["tasks", "ls"][..], &["runs", "ls"], &["audit"]] {
        let out = s.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_harmless(&args.join(" "), &stdout(&out));
    }
    // A name the server quotes back in its error line.
    let out = s.run(&["agents", "show", "no\u{1b}[2J\u{202e}body"]);
    assert!(!out.status.success());
    assert_harmless("herd agents show's error", &stderr(&out));
    // And it breaks its sessions over and over.
    rt.block_on(bad_sessions(client, credential, 30));
    rt.shutdown_background();

    // The server's log: the made-up task ids are escaped on the lines that name them (no
    // forged line, no escape sequence), and only a few of those lines are written.
    let log = s.log();
    assert_harmless("the server's log", &log);
    assert!(
        !log.lines().any(|l| l.starts_with(FORGED_LOG)),
        "a forged log line:\n{log}"
    );
    assert!(
        log.contains(&format!("nope-0\\n{FORGED_LOG}\\r\\e[2K{FORGED_LOG}")),
        "{log}"
    );
    let named = log.lines().filter(|l| l.contains("nope-")).count();
    assert!(
        (1..=10).contains(&named),
        "{named} lines about made-up tasks, from one agent at once:\n{log}"
    );
    // Its mistakes, all told, are a few lines: not one per made-up task and broken session.
    let mistakes = log
        .lines()
        .filter(|l| l.contains("nope-") || l.contains("first frame was not a hello"))
        .count();
    assert!(
        mistakes <= 11,
        "{mistakes} lines about one agent's mistakes:\n{log}"
    );
}
