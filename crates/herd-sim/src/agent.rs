//! One simulated agent: sessions forever with backoff, each dialled, greeted (`Hello` with
//! the tasks it holds) and welcomed, then commands in and heartbeats and task events out.
//! Task events stay in memory until acknowledged and are sent again after a reconnect.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::SinkExt;
use herd_link::{Backoff, VERSION};
use herd_proto::v1::{
    self as pb, AgentFrame, ServerFrame, TaskEvent, agent_frame, server_frame, task_event,
};
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::sleep_until;

use crate::codec::{SESSION_PATH, SessionCodec};
use crate::identity::{SimIdentity, facts_for};
use crate::{Fleet, lock};

/// How long a session may take from dialling to the Welcome.
const WELCOME_WAIT: Duration = Duration::from_secs(30);
/// Frames queued for one agent's stream.
const OUT_QUEUE: usize = 4;

enum End {
    Fatal(String),
    Retry(String),
}

fn status_end(s: &tonic::Status) -> End {
    match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            End::Fatal(s.message().to_string())
        }
        _ => End::Retry(s.message().to_string()),
    }
}

/// What a task's runner reports to its agent.
pub(crate) struct RunnerMsg {
    pub(crate) task_id: String,
    pub(crate) events: Vec<task_event::Kind>,
    pub(crate) done: bool,
}

/// Runner reports waiting for the agent's task.
#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) queue: Mutex<Vec<RunnerMsg>>,
    notify: Notify,
}

impl Inbox {
    pub(crate) fn push(&self, msg: RunnerMsg) {
        lock(&self.queue).push(msg);
        self.notify.notify_one();
    }
}

/// A task the agent holds: running, or finished with events not yet acknowledged.
struct SimTask {
    id: String,
    last_seq: u64,
    /// Events sent (or to send) and not yet acknowledged, in seq order.
    unacked: Vec<TaskEvent>,
    /// The process may still be running and was not asked to stop.
    cancellable: bool,
    finished: bool,
}

/// An agent's state across sessions.
struct AgentState {
    tasks: Vec<SimTask>,
    inbox: Arc<Inbox>,
}

impl AgentState {
    /// Numbers what the runners reported and returns the new events.
    fn drain_inbox(&mut self) -> Vec<TaskEvent> {
        let msgs = std::mem::take(&mut *lock(&self.inbox.queue));
        let mut out = Vec::new();
        for msg in msgs {
            let Some(t) = self.tasks.iter_mut().find(|t| t.id == msg.task_id) else {
                continue;
            };
            for kind in msg.events {
                t.last_seq += 1;
                let ev = TaskEvent {
                    task_id: t.id.clone(),
                    seq: t.last_seq,
                    kind: Some(kind),
                };
                out.push(ev.clone());
                t.unacked.push(ev);
            }
            if msg.done {
                t.finished = true;
                t.cancellable = false;
            }
        }
        out
    }

    fn unacked(&self) -> Vec<TaskEvent> {
        self.tasks
            .iter()
            .flat_map(|t| t.unacked.iter().cloned())
            .collect()
    }

    fn known(&self) -> Vec<pb::KnownTask> {
        self.tasks
            .iter()
            .map(|t| pb::KnownTask {
                task_id: t.id.clone(),
                finished: t.finished,
            })
            .collect()
    }

    fn ack(&mut self, acks: Vec<pb::Ack>) {
        for a in acks {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == a.task_id) {
                t.unacked.retain(|e| e.seq > a.seq);
            }
        }
        self.tasks.retain(|t| !(t.finished && t.unacked.is_empty()));
        if self.tasks.is_empty() {
            // Give back what a burst of tasks used.
            self.tasks = Vec::new();
        }
    }

    fn start(&mut self, fleet: &Arc<Fleet>, st: pb::StartTask) {
        // StartTask is idempotent by task id.
        if self.tasks.iter().any(|t| t.id == st.task_id) {
            return;
        }
        self.tasks.push(SimTask {
            id: st.task_id.clone(),
            last_seq: 0,
            unacked: Vec::new(),
            cancellable: true,
            finished: false,
        });
        if fleet.no_process {
            self.inbox.push(RunnerMsg {
                task_id: st.task_id,
                events: vec![
                    task_event::Kind::Started(pb::Started { pid: 0 }),
                    task_event::Kind::Exited(pb::Exited {
                        code: Some(0),
                        signal: None,
                        reason: pb::ExitReason::Exited as i32,
                        duration_ms: 0,
                        detail: "answered by the simulated fleet without running it".into(),
                        outputs: Default::default(),
                    }),
                ],
                done: true,
            });
        } else {
            fleet.runner.start_task(self.inbox.clone(), st);
        }
    }

    fn cancel(&mut self, fleet: &Fleet, c: pb::CancelTask) {
        if let Some(t) = self
            .tasks
            .iter_mut()
            .find(|t| t.id == c.task_id && t.cancellable)
        {
            t.cancellable = false;
            fleet.runner.cancel(c);
        }
    }
}

/// One simulated agent: sessions forever, with backoff. Returns the reason when the server
/// rejects its credential (revoked).
pub(crate) async fn run_agent(fleet: Arc<Fleet>, id: Arc<SimIdentity>) -> Option<String> {
    let mut st = AgentState {
        tasks: Vec::new(),
        inbox: Arc::new(Inbox::default()),
    };
    let mut welcomed = false;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        let started = Instant::now();
        // Boxed: the dial and handshake futures are large, and only live while connecting.
        let end = match Box::pin(open(&fleet, &id, &mut st)).await {
            Ok(mut link) => {
                fleet.connected.fetch_add(1, Ordering::Relaxed);
                if !welcomed {
                    welcomed = true;
                    fleet.settle(true);
                }
                let end = connected(&fleet, &mut st, &mut link).await;
                fleet.connected.fetch_sub(1, Ordering::Relaxed);
                end
            }
            Err(end) => end,
        };
        match end {
            End::Fatal(msg) => {
                tracing::warn!(agent = %id.name, error = %msg, "simulated agent stopped: the server rejected it");
                if !welcomed {
                    fleet.settle(false);
                }
                return Some(msg);
            }
            End::Retry(msg) => {
                if started.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                tracing::info!(agent = %id.name, error = %msg, retry_in = ?wait, "simulated agent lost its connection");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// An established session: the stream both ways, and the client that keeps its connection.
struct Link {
    _client: tonic::client::Grpc<tonic::transport::Channel>,
    out: futures::channel::mpsc::Sender<AgentFrame>,
    inbound: tonic::Streaming<ServerFrame>,
    /// The heartbeat period the server asked for.
    heartbeat: Duration,
}

/// Dials, says Hello and waits for the Welcome.
async fn open(fleet: &Fleet, id: &SimIdentity, st: &mut AgentState) -> Result<Link, End> {
    let Ok(_permit) = fleet.connecting.acquire().await else {
        return Err(End::Retry("the fleet is shutting down".into()));
    };
    let channel = match herd_link::channel(&fleet.server, fleet.pin.as_deref()).await {
        Ok(c) => c,
        Err(e) if e.is_retryable() => return Err(End::Retry(e.to_string())),
        Err(e) => return Err(End::Fatal(e.to_string())),
    };
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return Err(End::Retry(format!("connection not ready: {e}")));
    }
    let Ok(bearer) = format!("Bearer {}", id.credential).parse() else {
        return Err(End::Fatal(
            "credential in the fleet state file is malformed".into(),
        ));
    };
    // What finished while disconnected is numbered before Hello lists the tasks.
    let _ = st.drain_inbox();
    let (mut out, out_rx) = futures::channel::mpsc::channel::<AgentFrame>(OUT_QUEUE);
    let hello = AgentFrame {
        kind: Some(agent_frame::Kind::Hello(pb::Hello {
            version: VERSION.to_string(),
            name: id.name.clone(),
            labels: fleet.labels.clone(),
            facts: Some(facts_for(&fleet.facts, &id.name)),
            tasks: st.known(),
            instance_id: String::new(),
        })),
    };
    if out.try_send(hello).is_err() {
        return Err(End::Retry("cannot queue the hello".into()));
    }
    let mut req = tonic::Request::new(out_rx);
    req.metadata_mut().insert("authorization", bearer);
    let call = client.streaming(
        req,
        http::uri::PathAndQuery::from_static(SESSION_PATH),
        SessionCodec,
    );
    let mut inbound = match tokio::time::timeout(WELCOME_WAIT, call).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return Err(status_end(&s)),
        Err(_) => return Err(End::Retry("no answer to the session request".into())),
    };
    match tokio::time::timeout(WELCOME_WAIT, inbound.message()).await {
        Ok(Ok(Some(ServerFrame {
            kind: Some(server_frame::Kind::Welcome(w)),
        }))) => Ok(Link {
            _client: client,
            out,
            inbound,
            heartbeat: herd_link::heartbeat_period(w.heartbeat_secs),
        }),
        Ok(Ok(Some(_))) => Err(End::Retry("the server did not start with a welcome".into())),
        Ok(Ok(None)) => Err(End::Retry("server closed the stream".into())),
        Ok(Err(s)) => Err(status_end(&s)),
        Err(_) => Err(End::Retry("no welcome from the server".into())),
    }
}

/// A session after its Welcome: commands in, heartbeats and task events out.
async fn connected(fleet: &Arc<Fleet>, st: &mut AgentState, link: &mut Link) -> End {
    let Link {
        out,
        inbound,
        heartbeat,
        ..
    } = link;
    // Everything not acknowledged is sent again; the server drops what it already has.
    let resend = st.unacked();
    if !resend.is_empty() && out.send(events_frame(resend)).await.is_err() {
        return End::Retry("the stream closed".into());
    }
    // The first heartbeat at a random point of the period, so a fleet does not beat in step.
    let period = fleet.heartbeat.unwrap_or(*heartbeat);
    let offset = rand::rng().random_range(0..period.as_millis().max(1) as u64);
    let mut next_beat = tokio::time::Instant::now() + Duration::from_millis(offset);
    loop {
        tokio::select! {
            frame = inbound.message() => {
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return End::Retry("server closed the stream".into()),
                    Err(s) => return status_end(&s),
                };
                match frame.kind {
                    Some(server_frame::Kind::Start(t)) => st.start(fleet, t),
                    Some(server_frame::Kind::Cancel(c)) => st.cancel(fleet, c),
                    Some(server_frame::Kind::Acks(a)) => st.ack(a.acks),
                    Some(server_frame::Kind::GoingAway(_)) => {
                        return End::Retry("the server is going away".into());
                    }
                    Some(server_frame::Kind::Welcome(_))
                    | Some(server_frame::Kind::Input(_))
                    | Some(server_frame::Kind::Resize(_))
                    | None => {}
                }
            }
            _ = sleep_until(next_beat) => {
                next_beat += period;
                let metrics = *lock(&fleet.metrics);
                let beat = AgentFrame {
                    kind: Some(agent_frame::Kind::Heartbeat(pb::Heartbeat {
                        metrics: Some(metrics),
                    })),
                };
                // A stream too slow to take a heartbeat skips it.
                match out.try_send(beat) {
                    Err(e) if e.is_disconnected() => return End::Retry("the stream closed".into()),
                    _ => {}
                }
            }
            _ = st.inbox.notify.notified() => {
                let events = st.drain_inbox();
                if !events.is_empty() && out.send(events_frame(events)).await.is_err() {
                    return End::Retry("the stream closed".into());
                }
            }
        }
    }
}

pub(crate) fn events_frame(events: Vec<TaskEvent>) -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Events(pb::EventBatch { events })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner_process::exited;
    use bytes::Bytes;

    #[test]
    fn events_are_numbered_and_forgotten_once_acknowledged() {
        let inbox = Arc::new(Inbox::default());
        let mut st = AgentState {
            tasks: vec![SimTask {
                id: "t1".into(),
                last_seq: 0,
                unacked: Vec::new(),
                cancellable: true,
                finished: false,
            }],
            inbox: inbox.clone(),
        };
        inbox.push(RunnerMsg {
            task_id: "t1".into(),
            events: vec![task_event::Kind::Started(pb::Started { pid: 1 })],
            done: false,
        });
        inbox.push(RunnerMsg {
            task_id: "t1".into(),
            events: vec![
                task_event::Kind::Output(pb::Output {
                    stream: pb::Stream::Stdout as i32,
                    data: Bytes::from_static(b"hi\n"),
                }),
                exited(pb::ExitReason::Exited, String::new(), Instant::now()),
            ],
            done: true,
        });
        let evs = st.drain_inbox();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            st.known(),
            vec![pb::KnownTask {
                task_id: "t1".into(),
                finished: true
            }]
        );
        st.ack(vec![pb::Ack {
            task_id: "t1".into(),
            seq: 2,
        }]);
        assert_eq!(st.unacked().len(), 1);
        st.ack(vec![pb::Ack {
            task_id: "t1".into(),
            seq: 3,
        }]);
        assert!(st.tasks.is_empty());
    }
}
