//! End-to-end tests of `herd_exec::spawn` against real processes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use herd_core::supervise::{ClassLimits, CommandClass, Health, Supervision};
use herd_exec::Supervise;
use herd_exec::{Control, ExecEvent, ExecHandle, ExecSpec, ExitInfo, ExitReason, OutStream, spawn};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Upper bound for any single test's task, so a bug fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(30);

fn spec(name: &str, command: &str) -> ExecSpec {
    ExecSpec {
        task_id: format!("test-{name}-{}", std::process::id()),
        command: command.to_string(),
        ..ExecSpec::default()
    }
}

/// A `sleep` duration unique to this test process, usable as a /proc marker.
fn marker(n: u32) -> String {
    format!("{n}.{}", std::process::id())
}

#[derive(Default, Debug)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_events: usize,
    exit: Option<ExitInfo>,
    started: bool,
    states: Vec<Supervision>,
}

/// Receives events until `Exited`, checking the ordering contract.
async fn collect(rx: &mut mpsc::Receiver<ExecEvent>) -> Collected {
    collect_from(rx, Collected::default(), true).await
}

/// The rest of a task's events, once `Started` was received.
async fn collect_rest(rx: &mut mpsc::Receiver<ExecEvent>) -> Collected {
    let c = Collected {
        started: true,
        ..Collected::default()
    };
    collect_from(rx, c, false).await
}

async fn collect_from(
    rx: &mut mpsc::Receiver<ExecEvent>,
    mut c: Collected,
    mut first: bool,
) -> Collected {
    loop {
        let ev = timeout(LIMIT, rx.recv())
            .await
            .expect("task did not finish in time");
        let Some(ev) = ev else {
            panic!("channel closed without Exited");
        };
        match ev {
            ExecEvent::Started { pid } => {
                assert!(first, "Started must come first");
                assert!(pid > 0);
                c.started = true;
            }
            ExecEvent::Output { stream, data } => {
                assert!(c.started, "Output before Started");
                assert!(
                    !data.is_empty() && data.len() <= 64 * 1024,
                    "bad chunk size {}",
                    data.len()
                );
                match stream {
                    OutStream::Stdout => {
                        c.stdout.extend_from_slice(&data);
                        c.stdout_events += 1;
                    }
                    OutStream::Stderr => c.stderr.extend_from_slice(&data),
                }
            }
            ExecEvent::Supervision(state) => {
                assert!(c.started, "Supervision before Started");
                c.states.push(state);
            }
            ExecEvent::Exited(info) => {
                c.exit = Some(info);
                break;
            }
        }
        first = false;
    }
    // Exited is last: the sender side is dropped right after it.
    assert!(
        timeout(LIMIT, rx.recv()).await.unwrap().is_none(),
        "event after Exited"
    );
    c
}

async fn run(spec: ExecSpec) -> Collected {
    let (tx, mut rx) = mpsc::channel(16);
    let _handle = spawn(spec, tx);
    collect(&mut rx).await
}

fn start(spec: ExecSpec) -> (ExecHandle, mpsc::Receiver<ExecEvent>) {
    let (tx, rx) = mpsc::channel(16);
    (spawn(spec, tx), rx)
}

async fn expect_started(rx: &mut mpsc::Receiver<ExecEvent>) -> u32 {
    match timeout(LIMIT, rx.recv()).await.unwrap() {
        Some(ExecEvent::Started { pid }) => pid,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Pids of live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// Waits up to `within` for no process to carry `needle`; returns survivors.
/// Gone means absent from two looks in a row: a process in the middle of an exec shows an
/// empty command line for a moment.
async fn wait_gone(needle: &str, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    let mut absent_before = false;
    loop {
        let left = processes_with(needle);
        if left.is_empty() && absent_before {
            return left;
        }
        if !left.is_empty() && Instant::now() >= deadline {
            return left;
        }
        absent_before = left.is_empty();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill_all(needle: &str) {
    for pid in processes_with(needle) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[tokio::test]
async fn exit_code_is_reported() {
    let c = run(spec("exit3", "exit 3")).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.signal, None);
    assert_eq!(exit.reason, ExitReason::Exited);
    assert!(c.started);
}

#[tokio::test]
async fn large_output_is_byte_identical_and_coalesced() {
    let c = run(spec("seq", "seq 1 200000; echo oops >&2")).await;
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(c.stdout.len(), expected.len());
    assert!(
        c.stdout == expected.as_bytes(),
        "stdout differs from seq output"
    );
    assert_eq!(c.stderr, b"oops\n");
    assert!(
        c.stdout_events < 2_000,
        "{} events for 200000 lines",
        c.stdout_events
    );
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn slow_line_printer_is_coalesced() {
    let c = run(spec(
        "slow",
        "for i in $(seq 1 50); do echo $i; sleep 0.001; done",
    ))
    .await;
    let expected: String = (1..=50).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8(c.stdout).unwrap(), expected);
    assert!(
        c.stdout_events < 50,
        "{} events for 50 lines",
        c.stdout_events
    );
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn timeout_kills_escaped_descendants() {
    let (a, b, c) = (marker(3001), marker(3002), marker(3003));
    let mut s = spec(
        "timeout",
        &format!("sh -c 'sleep {a} & setsid sleep {b} & sleep {c}'"),
    );
    s.timeout = Some(Duration::from_secs(1));
    s.grace = Duration::from_secs(1);
    let began = Instant::now();
    let res = run(s).await;
    let exit = res.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::TimedOut, "{exit:?}");
    assert!(exit.signal.is_some() || exit.code.is_some());
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    for m in [&a, &b, &c] {
        let left = wait_gone(&format!("sleep {m}"), Duration::from_secs(2)).await;
        kill_all(&format!("sleep {m}"));
        assert!(left.is_empty(), "sleep {m} survived: {left:?}");
    }
}

#[tokio::test]
async fn cancel_terminates_with_sigterm() {
    let m = marker(3011);
    let mut s = spec("cancel", &format!("sleep {m}"));
    s.grace = Duration::from_secs(2);
    let (handle, mut rx) = start(s);
    expect_started(&mut rx).await;
    handle
        .control
        .send(Control::Cancel { grace: None })
        .await
        .unwrap();
    let c = collect(&mut rx).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Cancelled, "{exit:?}");
    assert_eq!(exit.signal, Some(libc::SIGTERM), "{exit:?}");
    let left = wait_gone(&format!("sleep {m}"), Duration::from_secs(2)).await;
    kill_all(&format!("sleep {m}"));
    assert!(left.is_empty());
    // The task is over: control sends now fail.
    assert!(handle.control.send(Control::Eof).await.is_err());
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_after_grace() {
    let m = marker(3012);
    // Ignoring SIGTERM is inherited by the sleep as well.
    let s = spec(
        "cancelkill",
        &format!("trap '' TERM; echo ready; sleep {m}; echo never"),
    );
    let (handle, mut rx) = start(s);
    expect_started(&mut rx).await;
    // Cancel only once the trap is in place, or SIGTERM may win the race.
    match timeout(LIMIT, rx.recv()).await.unwrap() {
        Some(ExecEvent::Output { data, .. }) => assert_eq!(&data[..], b"ready\n"),
        other => panic!("expected ready, got {other:?}"),
    }
    let began = Instant::now();
    handle
        .control
        .send(Control::Cancel {
            grace: Some(Duration::from_millis(300)),
        })
        .await
        .unwrap();
    let c = collect(&mut rx).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Cancelled);
    assert_eq!(exit.signal, Some(libc::SIGKILL), "{exit:?}");
    assert!(began.elapsed() >= Duration::from_millis(250));
    assert!(began.elapsed() < Duration::from_secs(3));
    let left = wait_gone(&format!("sleep {m}"), Duration::from_secs(2)).await;
    kill_all(&format!("sleep {m}"));
    assert!(left.is_empty());
}

#[tokio::test]
async fn interactive_stdin() {
    let mut s = spec("stdin", "read a; echo got $a");
    s.interactive = true;
    let (handle, mut rx) = start(s);
    handle
        .control
        .send(Control::Input(Bytes::from_static(b"yes\n")))
        .await
        .unwrap();
    let c = collect(&mut rx).await;
    assert_eq!(String::from_utf8(c.stdout).unwrap(), "got yes\n");
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn interactive_eof_closes_stdin() {
    let mut s = spec("eof", "cat; echo done");
    s.interactive = true;
    let (handle, mut rx) = start(s);
    handle
        .control
        .send(Control::Input(Bytes::from_static(b"a")))
        .await
        .unwrap();
    handle
        .control
        .send(Control::Input(Bytes::from_static(b"b\n")))
        .await
        .unwrap();
    handle.control.send(Control::Eof).await.unwrap();
    let c = collect(&mut rx).await;
    assert_eq!(String::from_utf8(c.stdout).unwrap(), "ab\ndone\n");
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn non_interactive_stdin_is_dev_null() {
    let c = run(spec("devnull", "cat; echo rc=$?")).await;
    assert_eq!(String::from_utf8(c.stdout).unwrap(), "rc=0\n");
}

#[tokio::test]
async fn tty_mode() {
    let mut s = spec("tty", "tty; stty size; echo $TERM; echo err >&2");
    s.tty = true;
    let c = run(s).await;
    let out = String::from_utf8(c.stdout).unwrap();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("24 80"), "{out:?}");
    assert!(out.contains("xterm-256color"), "{out:?}");
    assert!(out.contains("err"), "stderr must arrive as stdout: {out:?}");
    assert!(c.stderr.is_empty());
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn tty_input_and_window_size_from_env() {
    let mut s = spec("ttyin", "stty size; read a; echo got $a");
    s.tty = true;
    s.env = vec![
        ("COLUMNS".into(), "132".into()),
        ("LINES".into(), "50".into()),
    ];
    let (handle, mut rx) = start(s);
    handle
        .control
        .send(Control::Input(Bytes::from_static(b"yes\n")))
        .await
        .unwrap();
    let c = collect(&mut rx).await;
    let out = String::from_utf8(c.stdout).unwrap();
    assert!(out.contains("50 132"), "{out:?}");
    assert!(out.contains("got yes"), "{out:?}");
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn tty_eof_is_ctrl_d() {
    let mut s = spec("ttyeof", "cat >/dev/null; echo finished");
    s.tty = true;
    let (handle, mut rx) = start(s);
    handle.control.send(Control::Eof).await.unwrap();
    let c = collect(&mut rx).await;
    let out = String::from_utf8(c.stdout).unwrap();
    assert!(out.contains("finished"), "{out:?}");
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn missing_cwd_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let mut s = spec("cwd", "true");
    s.cwd = Some(missing.clone());
    let c = run(s).await;
    assert!(!c.started, "no Started when the process did not start");
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::FailedToStart);
    assert_eq!(
        exit.detail,
        format!("working directory {} does not exist", missing.display())
    );
}

#[tokio::test]
async fn cwd_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("cwdok", "pwd");
    s.cwd = Some(dir.path().to_path_buf());
    let c = run(s).await;
    let canonical = dir.path().canonicalize().unwrap();
    assert_eq!(
        String::from_utf8(c.stdout).unwrap().trim_end(),
        canonical.to_str().unwrap()
    );
}

#[tokio::test]
async fn missing_shell_fails_to_start() {
    let mut s = spec("shell", "true");
    s.shell = "no-such-shell-herd".into();
    let c = run(s).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::FailedToStart);
    assert!(
        exit.detail.contains("no-such-shell-herd"),
        "{}",
        exit.detail
    );
}

#[tokio::test]
async fn env_and_task_id_marker() {
    let mut s = spec("env", "echo \"$HERD_TASK_ID $FOO\"");
    s.env = vec![("FOO".into(), "bar baz".into())];
    let id = s.task_id.clone();
    let c = run(s).await;
    assert_eq!(
        String::from_utf8(c.stdout).unwrap(),
        format!("{id} bar baz\n")
    );
}

#[tokio::test]
async fn background_process_holding_stdout_does_not_block_exit() {
    let m = marker(3021);
    let began = Instant::now();
    let c = run(spec("bg", &format!("sleep {m} & echo hi"))).await;
    let took = began.elapsed();
    kill_all(&format!("sleep {m}"));
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Exited);
    assert_eq!(exit.code, Some(0));
    assert_eq!(String::from_utf8(c.stdout).unwrap(), "hi\n");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(exit.detail.contains("cut off"), "{}", exit.detail);
}

#[tokio::test]
async fn dropping_events_receiver_kills_task() {
    let m = marker(3031);
    let mut s = spec("abandon", &format!("sleep {m}"));
    s.grace = Duration::from_millis(500);
    let (_handle, mut rx) = start(s);
    expect_started(&mut rx).await;
    // Started is reported at fork; under load the exec may follow a moment later.
    // A second look could land inside the shell's exec of `sleep`, when /proc shows an
    // empty command line for a moment; the first sighting is the evidence.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut seen = processes_with(&format!("sleep {m}"));
    while seen.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = processes_with(&format!("sleep {m}"));
    }
    assert!(!seen.is_empty(), "task's process never seen");
    drop(rx);
    let left = wait_gone(&format!("sleep {m}"), Duration::from_secs(3)).await;
    kill_all(&format!("sleep {m}"));
    assert!(left.is_empty(), "abandoned task still running: {left:?}");
}

#[tokio::test]
async fn runtime_files_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        "files",
        r#"cat "$HERD_INPUT"; echo; echo "a=1" >> "$HERD_OUTPUT"; printf 'b<<E\nx\ny\nE\n' >> "$HERD_OUTPUT"; command -v herd"#,
    );
    s.files = Some(herd_exec::TaskFiles {
        dir: tmp.path().join("task"),
        input: Bytes::from_static(br#"{"who":"world"}"#),
        herd: Some("/bin/true".into()),
    });
    let c = run(s).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.code, Some(0), "{}", exit.detail);
    // Shared by the tasks of the agent's own user, beside their directories.
    let bin = tmp.path().join(".bin/herd");
    assert_eq!(
        String::from_utf8_lossy(&c.stdout),
        format!("{{\"who\":\"world\"}}\n{}\n", bin.display())
    );
    assert_eq!(&exit.outputs[..], b"a=1\nb<<E\nx\ny\nE\n");
    // No files: no outputs, and no HERD_OUTPUT.
    let c = run(spec("nofiles", r#"echo "[$HERD_OUTPUT]""#)).await;
    assert_eq!(&c.stdout[..], b"[]\n");
    assert!(c.exit.unwrap().outputs.is_empty());
}

#[tokio::test]
async fn secrets_are_masked_in_output_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        "mask",
        r#"echo "t=$T"; printf %s "${T:0:5}"; sleep 0.2; printf '%s\n' "${T:5}"; echo "$T" >&2; echo "tok=$T" >> "$HERD_OUTPUT""#,
    );
    s.env = vec![("T".into(), "s3cr3t-t0ken".into())];
    s.mask = vec![
        Bytes::from_static(b"s3cr3t-t0ken"),
        Bytes::from_static(b"ab"),
    ];
    s.files = Some(herd_exec::TaskFiles {
        dir: tmp.path().join("task"),
        ..Default::default()
    });
    let c = run(s).await;
    assert_eq!(String::from_utf8_lossy(&c.stdout), "t=***\n***\n");
    assert_eq!(String::from_utf8_lossy(&c.stderr), "***\n");
    assert_eq!(&c.exit.unwrap().outputs[..], b"tok=***\n");
}

#[tokio::test]
async fn a_missing_interpreter_is_named() {
    let mut s = spec("interp", "");
    s.script = Some(Bytes::from_static(
        b"#!/usr/bin/env no-such-interpreter-xyz\nprint(1)\n",
    ));
    let c = run(s).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::FailedToStart);
    assert!(
        exit.detail
            .starts_with("interpreter no-such-interpreter-xyz not found on this machine"),
        "{}",
        exit.detail
    );
}

fn supervised(name: &str, command: &str, hang_ms: u64) -> ExecSpec {
    ExecSpec {
        supervise: Some(Supervise {
            class: CommandClass::Info,
            limits: ClassLimits {
                hang_ms,
                input_wait_ms: 0,
                loop_lines: 5,
                loop_window_ms: 10_000,
            },
        }),
        grace: Duration::from_millis(500),
        ..spec(name, command)
    }
}

#[tokio::test]
async fn a_silent_sleep_hangs_and_is_stopped() {
    let c = run(supervised("hang", &format!("sleep {}", marker(600)), 2_000)).await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Stopped);
    assert!(
        exit.detail
            .starts_with("hung: no output and no CPU for 2 s (class info); "),
        "{}",
        exit.detail
    );
    assert!(!exit.detail.contains('\n'));
    let states: Vec<Health> = c.states.iter().map(|s| s.state).collect();
    assert_eq!(states.last(), Some(&Health::Hanging), "{states:?}");
    assert!(processes_with(&marker(600)).is_empty());
}

#[tokio::test]
async fn a_repeated_error_line_is_stopped_as_an_error_loop() {
    let c = run(supervised(
        "loop",
        "while true; do echo 'E: Could not get lock /var/lib/dpkg/lock'; sleep 0.2; done",
        0,
    ))
    .await;
    let exit = c.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Stopped);
    assert!(exit.detail.starts_with("error loop: "), "{}", exit.detail);
    assert_eq!(c.states.last().unwrap().state, Health::ErrorLoop);
}

#[tokio::test]
async fn a_password_prompt_on_a_terminal_waits_for_a_secret_answer() {
    let (handle, mut rx) = start(ExecSpec {
        tty: true,
        interactive: true,
        ..supervised("prompt", "read -s -p 'Password: ' p; echo \"ok $p\"", 0)
    });
    expect_started(&mut rx).await;
    let mut out = Vec::new();
    let state = loop {
        match timeout(LIMIT, rx.recv()).await.unwrap().unwrap() {
            ExecEvent::Output { data, .. } => out.extend_from_slice(&data),
            ExecEvent::Supervision(s) if s.state == Health::WaitingForInput => break s,
            ExecEvent::Supervision(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(state.prompt, "Password: ");
    assert!(state.secret);
    handle
        .control
        .send(Control::Input(Bytes::from_static(b"hunter2\n")))
        .await
        .unwrap();
    let c = collect_rest(&mut rx).await;
    out.extend_from_slice(&c.stdout);
    let text = String::from_utf8_lossy(&out);
    // The terminal did not echo the answer; the program printed it itself.
    assert_eq!(text.matches("hunter2").count(), 1, "{text}");
    assert!(text.contains("ok hunter2"), "{text}");
    assert_eq!(c.exit.unwrap().code, Some(0));
}

#[tokio::test]
async fn a_read_of_a_pipe_stdin_waits_for_input() {
    let (handle, mut rx) = start(ExecSpec {
        interactive: true,
        ..supervised("pipe", "echo 'Continue? [y/N]'; read a; echo \"got $a\"", 0)
    });
    expect_started(&mut rx).await;
    let state = loop {
        match timeout(LIMIT, rx.recv()).await.unwrap().unwrap() {
            ExecEvent::Supervision(s) if s.state == Health::WaitingForInput => break s,
            _ => {}
        }
    };
    assert_eq!(state.prompt, "Continue? [y/N]");
    assert!(!state.secret);
    handle
        .control
        .send(Control::Input(Bytes::from_static(b"y\n")))
        .await
        .unwrap();
    let c = collect_rest(&mut rx).await;
    assert_eq!(String::from_utf8_lossy(&c.stdout), "got y\n");
}
