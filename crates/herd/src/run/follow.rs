//! Following a run (or one task) over the attach WebSocket: server messages and output frames
//! in, stdin and `eof` / `cancel` out, until the server's `end`. Ctrl-C cancels the run; a
//! second one stops waiting. The CLI pings the server while it waits; a server that stops
//! answering (or a connection that breaks) ends the follow with a [`Lost`] error (exit 255):
//! the run goes on without its watcher.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use herd_api::{ClientMessage, Run, ServerMessage, Task, decode_output};
use tokio_tungstenite::tungstenite::Message;

use super::group::Grouped;
use super::input::{RawMode, read_stdin, window_size};
use super::render::{Event, Output, ProgressLine, emit};
use super::summary::{exit_code, summary};
use crate::client::{Lost, Ws};

pub struct FollowOpts {
    pub interactive: bool,
    pub tty: bool,
    pub json: bool,
    pub summary: bool,
    /// The run is created by this watch (`/api/v1/runs/start`): its id, learned from
    /// `hello`, is printed on stderr (`run ID`) and fills `run_id` and `resume`.
    pub announce: bool,
    pub run_id: String,
    /// The server's URL, for the message when it is lost.
    pub server: String,
    /// How long the server may leave a ping unanswered (`HERD_TIMEOUT`).
    pub timeout: Duration,
    /// The command that follows the same output again (`herd runs logs RUN -f`).
    pub resume: String,
    /// Keep each machine's output until the end, then print each distinct output once.
    pub group: bool,
}

/// How often the CLI pings the server while it waits: often enough that a silent server is
/// noticed within `timeout`.
fn ping_every(timeout: Duration) -> Duration {
    (timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// The name of task `index` of the `hello`, or `?` before it.
fn name_of(names: &[String], index: u32) -> &str {
    names.get(index as usize).map_or("?", String::as_str)
}

/// A write failure ends the follow: a closed pipe (`herd run … | head`) with the shell's
/// code for SIGPIPE, anything else as an error.
fn written(res: std::io::Result<()>) -> Result<Option<i32>> {
    match res {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Some(141)),
        Err(e) => Err(e).context("cannot write output"),
    }
}

/// The error of a server lost while following: the run goes on without its watcher.
fn lost(o: &FollowOpts, why: String) -> anyhow::Error {
    anyhow::Error::new(Lost(if o.run_id.is_empty() {
        format!(
            "lost the server at {}: {why} — before it confirmed the run; see `herd runs list` whether it was created",
            o.server
        )
    } else {
        format!(
            "lost the server at {}: {why} — the run goes on; follow it with `{}`",
            o.server, o.resume
        )
    }))
}

/// Follows the watch until its end; the exit code is the first failing task's.
pub async fn follow(
    ws: Ws,
    mut o: FollowOpts,
    mut sigint: tokio::signal::unix::Signal,
) -> Result<i32> {
    let (mut tx, mut rx) = ws.split();
    let mut names: Vec<String> = Vec::new();
    let mut finals: Vec<Option<Task>> = Vec::new();
    let mut output = Output::new(crate::style::stdout(), crate::style::stderr());
    let mut grouped = (o.group && !o.json).then(Grouped::default);
    let mut end_run: Option<Box<Run>> = None;
    let raw = (o.interactive && o.tty && std::io::stdin().is_terminal()).then(RawMode::enable);
    // stdin → server, in chunks; its end is forwarded as `eof`.
    let mut stdin = read_stdin(o.interactive);
    let mut stdin_live = o.interactive;
    let mut interrupts = 0u32;
    let mut progress = ProgressLine::new(o.summary && !o.json && std::io::stderr().is_terminal());
    // The first ping goes out one period in, not at once: a short run is over before then.
    let every = ping_every(o.timeout);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    // Under --tty on a terminal, the tasks' terminals follow this one's size.
    let mut winch = if o.tty && window_size().is_some() {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };

    loop {
        let due = output.deadline();
        tokio::select! {
            _ = async { if let Some(d) = due { tokio::time::sleep_until(d.into()).await } }, if due.is_some() => {
                let res = progress.suspend(|| output.flush(Some(std::time::Instant::now())));
                if let Some(code) = written(res)? {
                    return Ok(code);
                }
            }
            msg = rx.next() => {
                let Some(msg) = msg else { break };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => return Err(lost(&o, format!("the connection broke ({e})"))),
                };
                heard = Instant::now();
                match msg {
                    Message::Binary(b) => {
                        // Anything but an output frame is not for this version: skipped.
                        let Ok(frame) = decode_output(&b) else { continue };
                        let name = name_of(&names, frame.index);
                        if o.json {
                            let ev = Event::Output {
                                machine: name,
                                stream: frame.stream,
                                data: String::from_utf8_lossy(frame.data),
                            };
                            if let Some(code) = written(emit(&ev))? {
                                return Ok(code);
                            }
                            continue;
                        }
                        if let Some(g) = grouped.as_mut() {
                            g.add(name, frame.data);
                            continue;
                        }
                        let many = names.len() > 1;
                        let res = progress.suspend(|| output.write(frame.index, frame.stream, name, many, frame.data));
                        if let Some(code) = written(res)? {
                            return Ok(code);
                        }
                    }
                    Message::Text(t) => {
                        let msg = ServerMessage::from_text(t.as_str())
                            .context("unreadable message from the server — is the server the same version as this CLI?")?;
                        match msg {
                            Some(ServerMessage::Hello { run, tasks }) => {
                                if o.announce {
                                    // On stderr, so stdout stays the command's output (or --json's events).
                                    eprintln!("run {}", herd_core::Escaped(&run.id));
                                    o.resume = format!("herd runs logs {} -f", run.id);
                                    o.run_id = run.id;
                                }
                                // Names prefix output lines and head groups: shown escaped.
                                names = tasks.iter().map(|t| herd_core::escape_controls(&t.agent_name).into_owned()).collect();
                                finals = vec![None; names.len()];
                                if let Some(g) = grouped.as_mut() {
                                    names.iter().for_each(|n| g.machine(n));
                                }
                            }
                            Some(ServerMessage::Task { index, task }) => {
                                if o.json {
                                    emit(&Event::Task { machine: name_of(&names, index), task: &task }).ok();
                                }
                                if let Some(slot) = finals.get_mut(index as usize) {
                                    *slot = Some(*task);
                                }
                            }
                            Some(ServerMessage::Progress(p)) => {
                                if o.json {
                                    emit(&Event::Progress(&p)).ok();
                                } else if names.len() > 1 {
                                    progress.update(p);
                                }
                            }
                            Some(ServerMessage::Omitted { index, bytes }) => {
                                progress.suspend(|| eprintln!("[herd: {bytes} bytes of {}'s output omitted: over the stored-output cap]", name_of(&names, index)));
                            }
                            Some(ServerMessage::End { run }) => {
                                end_run = Some(run);
                                break;
                            }
                            Some(ServerMessage::Error { error }) => bail!("{}", herd_core::Escaped(&error)),
                            None => {}
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            chunk = stdin.recv(), if stdin_live => {
                match chunk {
                    Some(Some(data)) => { tx.send(Message::Binary(data.into())).await.ok(); }
                    _ => {
                        stdin_live = false;
                        tx.send(Message::Text(ClientMessage::Eof.to_text().into())).await.ok();
                    }
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() >= o.timeout {
                    return Err(lost(&o, format!(
                        "no answer for {}",
                        herd_core::format_duration(Duration::from_secs(heard.elapsed().as_secs().max(1)))
                    )));
                }
                // A write that cannot go out is noticed by the read side; a full socket
                // buffer must not stall the loop.
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    tx.send(Message::Ping(Default::default())),
                )
                .await;
            }
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                if let Some(ws) = window_size() {
                    let msg = ClientMessage::Resize { rows: ws.rows, cols: ws.cols };
                    tx.send(Message::Text(msg.to_text().into())).await.ok();
                }
            }
            _ = sigint.recv() => {
                interrupts += 1;
                if interrupts > 1 {
                    progress.clear();
                    let run = if o.run_id.is_empty() { String::new() } else { format!(" {}", o.run_id) };
                    eprintln!("herd: interrupted again; leaving the run{run} to finish being cancelled on the server");
                    return Ok(130);
                }
                progress.suspend(|| eprintln!("herd: cancelling (Ctrl-C again to stop waiting)"));
                tx.send(Message::Text(ClientMessage::Cancel.to_text().into())).await.ok();
            }
        }
    }
    progress.clear();
    output.finish();
    drop(raw);
    if let Some(g) = grouped {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Some(code) = written(out.write_all(&g.render()).and_then(|_| out.flush()))? {
            return Ok(code);
        }
    }
    let Some(run) = end_run else {
        return Err(lost(
            &o,
            "it closed the connection before the run ended".into(),
        ));
    };
    let finals: Vec<Task> = finals.into_iter().flatten().collect();
    if o.json {
        emit(&Event::End {
            run: &run,
            tasks: &finals,
        })
        .context("cannot write output")?;
    } else if o.summary {
        use std::io::Write;
        let _ = std::io::stderr()
            .lock()
            .write_all(colored_summary(summary(&finals)).as_bytes());
    }
    Ok(exit_code(&finals))
}

/// The summary with its failures in red, when stderr is colored.
fn colored_summary(text: String) -> String {
    if crate::style::stderr() {
        text.replace("failed", &crate::style::red("failed", true))
    } else {
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_of_unknown_tasks_are_question_marks() {
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(name_of(&names, 1), "b");
        assert_eq!(name_of(&names, 2), "?");
        assert_eq!(name_of(&[], 0), "?");
    }

    #[test]
    fn pings_go_out_well_within_the_timeout() {
        assert_eq!(ping_every(Duration::from_secs(30)), Duration::from_secs(5));
        assert_eq!(ping_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(
            ping_every(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_closed_pipe_ends_with_141() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(written(Err(pipe)).unwrap(), Some(141));
        assert_eq!(written(Ok(())).unwrap(), None);
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(written(Err(other)).is_err());
    }
}
