//! One agent session on the control stream: hello (facts, labels, the tasks the agent still
//! holds), welcome (the heartbeat period), reconciliation after a (re)connect, then
//! heartbeats and event batches until the stream ends, the agent falls silent, a newer
//! session replaces this one, the agent is revoked, or the server shuts down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use herd_core::TaskState;
use herd_proto::v1::{self as pb, AgentFrame, ServerFrame, agent_frame, server_frame};
use herd_store::{AgentRow, AuditEntry, now_ms};
use serde_json::json;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{Hub, convert};
use crate::registry::{Peer, Registration};
use crate::runs::{SECRETS_GONE, cancel_frame, going_away_frame, start_frame};

/// Heartbeats the whole fleet sends per second at most: agents of a large fleet are asked
/// to beat less often (every 5 s up to 2,500 machines, every 20 s at 10,000), so the idle
/// cost of the server stays flat as the fleet grows.
const MAX_BEATS_PER_SEC: u64 = 500;
const MIN_HEARTBEAT_SECS: u64 = 5;
const MAX_HEARTBEAT_SECS: u64 = 60;
/// A batch of events merged from messages already waiting stops growing here.
const MERGE_EVENTS: usize = 4096;
/// How long a shutting-down server waits for an agent to close its stream after `GoingAway`.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);
/// An agent must say hello this soon after opening its stream.
const HELLO_WITHIN: Duration = Duration::from_secs(30);

/// The heartbeat period asked of agents when `agents` are registered.
fn heartbeat_for(agents: usize) -> Duration {
    Duration::from_secs(
        (agents as u64)
            .div_ceil(MAX_BEATS_PER_SEC)
            .clamp(MIN_HEARTBEAT_SECS, MAX_HEARTBEAT_SECS),
    )
}

/// A session that sends nothing (not even a heartbeat) for three periods and a second is
/// dropped: its agent is offline until it reconnects.
fn silence_limit(heartbeat: Duration) -> Duration {
    heartbeat * 3 + Duration::from_secs(1)
}

/// The first frame of a session, which must be a hello.
pub async fn hello(
    hub: &Hub,
    agent: &AgentRow,
    inbound: &mut Streaming<AgentFrame>,
) -> Result<pb::Hello, Status> {
    let why = match tokio::time::timeout(HELLO_WITHIN, inbound.message()).await {
        Ok(Ok(Some(AgentFrame {
            kind: Some(agent_frame::Kind::Hello(h)),
        }))) => return Ok(h),
        Ok(Ok(Some(_))) => "first frame was not a hello".to_string(),
        Ok(Ok(None)) => "stream closed before hello".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no hello within 30 s".to_string(),
    };
    end(hub, agent, &why);
    Err(Status::invalid_argument(why))
}

/// Registers the session, unless another process holding the agent's identity is connected
/// and live: that is refused (FAILED_PRECONDITION), with what to do, and audited.
pub async fn register(
    hub: &Hub,
    agent: &AgentRow,
    hello: &pb::Hello,
    addr: &str,
    tx: mpsc::Sender<ServerFrame>,
) -> Result<Registration, Status> {
    // Heard from within a heartbeat period and a bit: a live agent always is; a dead
    // session (the machine crashed and its agent restarted) stops being so soon after.
    let live = heartbeat_for(hub.fleet.agent_count()) + Duration::from_secs(2);
    let peer = Peer {
        instance: &hello.instance_id,
        addr,
    };
    let conflict = match hub.registry.connect(&agent.id, tx, peer, live) {
        Ok(reg) => return Ok(reg),
        Err(c) => c,
    };
    let machine = hello
        .facts
        .as_ref()
        .map(|f| f.machine_id.as_str())
        .filter(|m| !m.is_empty())
        .unwrap_or(&agent.facts.machine_id);
    let msg = format!(
        "agent {:?} is already connected from {} (this is machine {machine:?} at {addr}): a copy of this agent's state dir is running elsewhere — give each machine its own state (remove identity.json from the state dir and join again with a new token)",
        agent.name, conflict.addr
    );
    tracing::warn!(agent = %agent.id, name = %herd_core::Escaped(&agent.name), live = %conflict.addr, refused = %addr, "two processes hold one agent identity; refused the newer one");
    let entry = AuditEntry::new(
        format!("agent:{}", agent.name),
        "agent.identity_conflict",
        format!("agent:{}", agent.name),
        json!({
            "connected_from": conflict.addr,
            "refused_from": addr,
            "refused_machine_id": machine,
        }),
    );
    if let Err(e) = hub.store.append_audit(&entry).await {
        tracing::error!(error = %e, "cannot record an identity conflict in the audit log");
    }
    Err(Status::failed_precondition(msg))
}

pub async fn run(
    hub: Arc<Hub>,
    agent: AgentRow,
    first: pb::Hello,
    reg: Registration,
    tx: mpsc::Sender<ServerFrame>,
    mut inbound: Streaming<AgentFrame>,
) {
    let facts = first
        .facts
        .as_ref()
        .map(convert::facts)
        .unwrap_or_else(|| agent.facts.clone());
    let (labels, dropped) = convert::labels(&first.labels);
    if dropped > 0 && hub.ingest.mistakes.admit(&agent.id) {
        tracing::warn!(agent = %agent.id, name = %herd_core::Escaped(&agent.name), dropped, "the agent declares labels herd does not accept (not valid, or more than {}); they are ignored", herd_core::MAX_LABELS);
    }
    if labels != agent.labels {
        // The labels the agent declares changed (a start with other --label): selectors
        // pick by them, so the change is on record.
        tracing::info!(agent = %agent.id, name = %herd_core::Escaped(&agent.name), "the agent declares other labels");
        let entry = AuditEntry::new(
            format!("agent:{}", agent.name),
            "agent.labels",
            format!("agent:{}", agent.name),
            json!({"before": agent.labels, "after": labels}),
        );
        // Stored with its audit entry in one transaction (the flush that follows writes the
        // same labels again).
        if let Err(e) = hub
            .store
            .set_declared_labels(&agent.id, &labels, &entry)
            .await
        {
            tracing::error!(error = %e, "cannot record an agent's label change");
        }
    }
    hub.fleet
        .hello(&agent.id, labels, facts, convert::text(&first.version));
    hub.metrics
        .agents_connected
        .set(hub.registry.online_count() as i64);
    let res = serve(&hub, &agent, &reg, &first.tasks, &tx, &mut inbound).await;
    if let Err(e) = res {
        end(&hub, &agent, &e);
    }
    hub.registry.disconnected(&agent.id, reg.conn_id);
    hub.metrics
        .agents_connected
        .set(hub.registry.online_count() as i64);
}

/// Logs why a session ended; an agent that keeps breaking its sessions is limited
/// (`log_limit`), and `why` may quote what the agent sent.
fn end(hub: &Hub, agent: &AgentRow, why: &str) {
    if !hub.ingest.mistakes.admit(&agent.id) {
        return;
    }
    tracing::info!(agent = %agent.id, name = %herd_core::Escaped(&agent.name), error = %herd_core::Escaped(why), "agent session ended");
}

async fn serve(
    hub: &Arc<Hub>,
    agent: &AgentRow,
    reg: &Registration,
    known: &[pb::KnownTask],
    tx: &mpsc::Sender<ServerFrame>,
    inbound: &mut Streaming<AgentFrame>,
) -> Result<(), String> {
    let heartbeat = heartbeat_for(hub.fleet.agent_count());
    let silence = silence_limit(heartbeat);
    let welcome = ServerFrame {
        kind: Some(server_frame::Kind::Welcome(pb::Welcome {
            agent_id: agent.id.clone(),
            heartbeat_secs: heartbeat.as_secs() as u32,
        })),
    };
    tx.send(welcome).await.map_err(|_| "agent went away")?;
    reconcile(hub, agent, known, tx).await?;
    // Runs waiting for this machine start its tasks now.
    hub.drivers.agent_online(&agent.id);

    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(silence, inbound.message()) => match f {
                Err(_) => {
                    return Err(format!(
                        "no heartbeat for {} (network partition or a stuck agent)",
                        herd_core::format_duration(silence)
                    ));
                }
                Ok(f) => match f.map_err(|e| e.to_string())? {
                    Some(f) => f,
                    None => return Ok(()),
                },
            },
            _ = reg.stop.notified() => {
                return Err("connection dropped (agent revoked or reconnected)".into());
            }
            _ = hub.shutdown.cancelled() => {
                say_going_away(tx, inbound).await;
                return Err("server shutting down".into());
            }
        };
        // Revoked or replaced by a newer session: end this stream, so the agent reconnects
        // and is told why.
        reg.heard.now();
        if !hub.registry.is_current(&agent.id, reg.conn_id) {
            return Err("connection dropped (agent revoked or reconnected)".into());
        }
        match frame.kind {
            Some(agent_frame::Kind::Heartbeat(hb)) => heartbeat_in(hub, agent, &hb),
            Some(agent_frame::Kind::Events(mut batch)) => {
                // Batches already waiting are persisted together (one pass over the output
                // log, one commit): a server that falls behind catches up in bigger steps.
                let mut batches = 1usize;
                while batch.events.len() < MERGE_EVENTS {
                    match inbound.message().now_or_never() {
                        Some(Ok(Some(AgentFrame {
                            kind: Some(agent_frame::Kind::Events(more)),
                        }))) => {
                            batch.events.extend(more.events);
                            batches += 1;
                        }
                        Some(Ok(Some(AgentFrame {
                            kind: Some(agent_frame::Kind::Heartbeat(hb)),
                        }))) => heartbeat_in(hub, agent, &hb),
                        Some(Ok(Some(_))) => {}
                        Some(Ok(None)) | None => break,
                        Some(Err(e)) => return Err(e.to_string()),
                    }
                }
                let acks = hub
                    .ingest
                    .persist(&agent.id, batch)
                    .await
                    .map_err(|e| e.to_string())?;
                // Exactly one Acks frame per batch received, even an empty one: the agent
                // counts them to size its window of batches in flight.
                for _ in 1..batches {
                    let empty = ServerFrame {
                        kind: Some(server_frame::Kind::Acks(pb::Acks { acks: Vec::new() })),
                    };
                    tx.send(empty).await.map_err(|_| "agent went away")?;
                }
                let frame = ServerFrame {
                    kind: Some(server_frame::Kind::Acks(pb::Acks { acks })),
                };
                tx.send(frame).await.map_err(|_| "agent went away")?;
            }
            Some(agent_frame::Kind::Hello(_)) | None => {}
        }
    }
}

/// Tells the agent the server is shutting down cleanly (so it reconnects soon instead of
/// backing off), and waits briefly for it to close its side: then the frame has reached it
/// before the process exits.
async fn say_going_away(tx: &mpsc::Sender<ServerFrame>, inbound: &mut Streaming<AgentFrame>) {
    let _ = tokio::time::timeout(GOODBYE_WAIT, async {
        if tx.send(going_away_frame()).await.is_ok() {
            while let Ok(Some(_)) = inbound.message().await {}
        }
    })
    .await;
}

/// In memory; the fleet writes it to the store with everyone else's every few seconds.
/// Alert rules see the metrics at once (no store work unless a level changes).
fn heartbeat_in(hub: &Hub, agent: &AgentRow, hb: &pb::Heartbeat) {
    let metrics = hb.metrics.as_ref().map(convert::metrics);
    hub.alerts.observe(&agent.id, metrics.as_ref());
    hub.fleet.heartbeat(&agent.id, metrics);
}

/// Brings server and agent to agreement after a (re)connect: resend tasks the agent never
/// received, mark lost the running tasks it no longer has, and cancel on it the tasks
/// cancelled while it was away.
async fn reconcile(
    hub: &Arc<Hub>,
    agent: &AgentRow,
    known: &[pb::KnownTask],
    tx: &mpsc::Sender<ServerFrame>,
) -> Result<(), String> {
    let known: HashMap<&str, bool> = known
        .iter()
        .map(|k| (k.task_id.as_str(), k.finished))
        .collect();
    let open = hub
        .store
        .open_tasks_of_agents(std::slice::from_ref(&agent.id))
        .await
        .map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    // Tasks of runs with secrets whose values went with a server restart.
    let mut gone = Vec::new();
    let mut runs = HashMap::new();
    for task in open {
        if known.contains_key(task.id.as_str()) {
            continue;
        }
        match task.state {
            // Waiting for a slot (or for its watcher): the run's driver starts it.
            TaskState::Queued => {}
            TaskState::Dispatched => {
                let run = match runs.get(&task.run_id) {
                    Some(r) => r,
                    None => {
                        let Some(r) = hub
                            .store
                            .run(&task.run_id)
                            .await
                            .map_err(|e| e.to_string())?
                        else {
                            continue;
                        };
                        runs.entry(task.run_id.clone()).or_insert(r)
                    }
                };
                let secrets = hub.drivers.secrets(&task.run_id);
                match start_frame(
                    &task.id,
                    &run.command,
                    &run.spec,
                    secrets.as_ref(),
                    hub.drivers.supervise(),
                ) {
                    Some(frame) => tx.send(frame).await.map_err(|_| "agent went away")?,
                    None => gone.push((task.id, task.run_id)),
                }
            }
            _ => lost.push((task.id, task.run_id)),
        }
    }
    if !gone.is_empty() {
        let ids: Vec<String> = gone.iter().map(|(t, _)| t.clone()).collect();
        let changed = hub
            .store
            .end_tasks(&ids, TaskState::Cancelled, SECRETS_GONE, now_ms())
            .await
            .map_err(|e| e.to_string())?;
        for (task_id, run_id) in gone.iter().filter(|(t, _)| changed.contains(t)) {
            hub.events.task_changed(run_id, task_id);
            hub.drivers
                .task_ended(run_id, task_id, TaskState::Cancelled);
        }
    }
    if !lost.is_empty() {
        let ids: Vec<String> = lost.iter().map(|(t, _)| t.clone()).collect();
        let changed = hub
            .store
            .end_tasks(
                &ids,
                TaskState::Lost,
                "the agent came back without this task (it restarted or lost its state)",
                now_ms(),
            )
            .await
            .map_err(|e| e.to_string())?;
        for (task_id, run_id) in lost.iter().filter(|(t, _)| changed.contains(t)) {
            hub.events.task_changed(run_id, task_id);
            hub.drivers.task_ended(run_id, task_id, TaskState::Lost);
        }
    }
    // Tasks the agent still runs that the server already ended (cancelled while away).
    let running: Vec<String> = known
        .iter()
        .filter(|(_, finished)| !**finished)
        .map(|(id, _)| id.to_string())
        .collect();
    if !running.is_empty() {
        let rows = hub
            .store
            .tasks_by_ids(&running)
            .await
            .map_err(|e| e.to_string())?;
        for t in rows {
            if t.state == TaskState::Cancelled && t.agent_id == agent.id {
                tx.send(cancel_frame(&t.id))
                    .await
                    .map_err(|_| "agent went away")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fleets_beat_less_often() {
        assert_eq!(heartbeat_for(0), Duration::from_secs(5));
        assert_eq!(heartbeat_for(2_500), Duration::from_secs(5));
        assert_eq!(heartbeat_for(2_501), Duration::from_secs(6));
        assert_eq!(heartbeat_for(10_000), Duration::from_secs(20));
        assert_eq!(heartbeat_for(1_000_000), Duration::from_secs(60));
        // The fleet's heartbeat rate stays bounded.
        for n in [1_000usize, 5_000, 10_000, 30_000] {
            assert!(n as f64 / heartbeat_for(n).as_secs_f64() <= MAX_BEATS_PER_SEC as f64);
        }
        assert_eq!(
            silence_limit(Duration::from_secs(5)),
            Duration::from_secs(16)
        );
    }
}
