//! Where the simulated fleet's tasks run: a process of its own, `herd bench fleet-runner`,
//! started by the fleet before it opens any connection. Starting a process copies the
//! parent's descriptor table and closes it again at exec, so from a process that holds ten
//! thousand connections every start costs ten thousand descriptor operations; from this
//! small process it costs a handful, as it does on a real machine.
//!
//! The fleet and its runner talk over the runner's stdin and stdout in length-prefixed
//! protobuf frames: the fleet sends `ServerFrame`s (`Start`, `Cancel`), the runner answers
//! with `AgentFrame` event batches whose sequence numbers are left to the agents. A task's
//! last event is its `Exited`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use herd_proto::v1::{
    self as pb, AgentFrame, ServerFrame, TaskEvent, agent_frame, server_frame, task_event,
};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::Notify;

use crate::FleetError;
use crate::agent::{Inbox, RunnerMsg};
use crate::frame::{read_frame, write_frame};
use crate::lock;

/// The fleet's handle on its runner.
#[derive(Default)]
pub(crate) struct Runner {
    /// Frames waiting to be written to the runner: at most a start and a cancel per task the
    /// agents hold.
    queue: Mutex<Vec<ServerFrame>>,
    queued: Notify,
    /// The inbox of the agent each task belongs to, until the task's last event.
    routes: Mutex<HashMap<String, Arc<Inbox>>>,
}

impl Runner {
    pub(crate) fn start_task(&self, inbox: Arc<Inbox>, st: pb::StartTask) {
        lock(&self.routes).insert(st.task_id.clone(), inbox);
        self.send(ServerFrame {
            kind: Some(server_frame::Kind::Start(st)),
        });
    }

    pub(crate) fn cancel(&self, c: pb::CancelTask) {
        self.send(ServerFrame {
            kind: Some(server_frame::Kind::Cancel(c)),
        });
    }

    fn send(&self, frame: ServerFrame) {
        lock(&self.queue).push(frame);
        self.queued.notify_one();
    }

    /// Hands events to their agents, consecutive events of a task as one report.
    fn deliver(&self, events: Vec<TaskEvent>) {
        let mut reports: Vec<(Arc<Inbox>, RunnerMsg)> = Vec::new();
        {
            let mut routes = lock(&self.routes);
            for ev in events {
                let Some(kind) = ev.kind else { continue };
                let done = matches!(kind, task_event::Kind::Exited(_));
                let inbox = if done {
                    routes.remove(&ev.task_id)
                } else {
                    routes.get(&ev.task_id).cloned()
                };
                match reports.last_mut() {
                    Some((_, m)) if m.task_id == ev.task_id && !m.done => {
                        m.events.push(kind);
                        m.done = done;
                    }
                    _ => {
                        if let Some(inbox) = inbox {
                            reports.push((
                                inbox,
                                RunnerMsg {
                                    task_id: ev.task_id,
                                    events: vec![kind],
                                    done,
                                },
                            ));
                        }
                    }
                }
            }
        }
        for (inbox, msg) in reports {
            inbox.push(msg);
        }
    }
}

/// Starts the runner process with `cmd` (program and arguments). Returns its handle and
/// the future that carries frames both ways; that future ends only when the runner does,
/// with the reason.
pub(crate) fn spawn(
    cmd: &[OsString],
) -> Result<(Arc<Runner>, impl Future<Output = String> + use<>), FleetError> {
    let Some((program, args)) = cmd.split_first() else {
        return Err(FleetError::Config(
            "no command for the fleet's process runner".into(),
        ));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            FleetError::Config(format!(
                "cannot start the fleet's process runner {}: {e}",
                Path::new(program).display()
            ))
        })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(FleetError::Config(
            "the fleet's process runner has no pipes".into(),
        ));
    };
    let runner = Arc::new(Runner::default());
    let r = runner.clone();
    let io = async move {
        let why = tokio::select! {
            e = feed(&r, stdin) => format!("writing to it failed: {e}"),
            e = listen(&r, stdout) => match e {
                Ok(()) => "it closed its output".to_string(),
                Err(e) => format!("reading from it failed: {e}"),
            },
        };
        let status = match child.try_wait() {
            Ok(Some(s)) => format!(" ({s})"),
            _ => String::new(),
        };
        format!("the fleet's process runner ended: {why}{status}")
    };
    Ok((runner, io))
}

/// Writes queued frames to the runner; returns only on an error.
async fn feed(r: &Runner, stdin: tokio::process::ChildStdin) -> io::Error {
    let mut w = BufWriter::new(stdin);
    loop {
        let frames = std::mem::take(&mut *lock(&r.queue));
        if frames.is_empty() {
            r.queued.notified().await;
            continue;
        }
        for f in &frames {
            if let Err(e) = write_frame(&mut w, f).await {
                return e;
            }
        }
        if let Err(e) = w.flush().await {
            return e;
        }
    }
}

/// Reads the runner's reports and hands them to the agents.
async fn listen(r: &Runner, stdout: tokio::process::ChildStdout) -> io::Result<()> {
    let mut rd = BufReader::new(stdout);
    let mut buf = Vec::new();
    while let Some(frame) = read_frame::<_, AgentFrame>(&mut rd, &mut buf).await? {
        if let Some(agent_frame::Kind::Events(batch)) = frame.kind {
            r.deliver(batch.events);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner_process::exited;
    use std::time::Instant;

    fn ev(task: &str, kind: task_event::Kind) -> TaskEvent {
        TaskEvent {
            task_id: task.into(),
            seq: 0,
            kind: Some(kind),
        }
    }

    #[test]
    fn reports_reach_their_agents_until_the_task_ends() {
        let runner = Runner::default();
        let (one, two) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        let start = |id: &str| pb::StartTask {
            task_id: id.into(),
            ..Default::default()
        };
        runner.start_task(one.clone(), start("t1"));
        runner.start_task(two.clone(), start("t2"));
        assert_eq!(lock(&runner.queue).len(), 2);
        let exit = || exited(pb::ExitReason::Exited, String::new(), Instant::now());
        runner.deliver(vec![
            ev("t1", task_event::Kind::Started(pb::Started { pid: 1 })),
            ev("t1", exit()),
            ev("t2", task_event::Kind::Started(pb::Started { pid: 2 })),
            ev("nobody", exit()),
        ]);
        let got = std::mem::take(&mut *lock(&one.queue));
        assert_eq!(got.len(), 1, "consecutive events of a task are one report");
        assert_eq!(
            (got[0].task_id.as_str(), got[0].events.len(), got[0].done),
            ("t1", 2, true)
        );
        let got = std::mem::take(&mut *lock(&two.queue));
        assert_eq!((got[0].task_id.as_str(), got[0].done), ("t2", false));
        // t1 ended: nothing more reaches its agent; t2 is still routed.
        runner.deliver(vec![ev("t1", exit()), ev("t2", exit())]);
        assert!(lock(&one.queue).is_empty());
        assert!(lock(&two.queue)[0].done);
        assert!(lock(&runner.routes).is_empty());
    }
}
