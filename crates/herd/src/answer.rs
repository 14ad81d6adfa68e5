//! `herd tasks answer TASK`: what a person answers to a task's prompt. From a terminal, one
//! line read without echo (the task's prompt shown first, from its supervision state); from
//! a pipe, stdin as it is. The answer never appears on this terminal, in argv or in a file.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use herd_api::{Health, Task, TaskInput};
use herd_core::Escaped;

use crate::client::Client;

/// The answer for task `id`.
pub async fn read(c: &Client, id: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut data = Vec::new();
        stdin
            .lock()
            .take(TaskInput::MAX_DATA as u64 + 1)
            .read_to_end(&mut data)
            .context("cannot read the answer from stdin")?;
        if data.len() > TaskInput::MAX_DATA {
            bail!(
                "cannot send the answer: stdin holds more than {} bytes — send at most that much",
                TaskInput::MAX_DATA
            );
        }
        return String::from_utf8(data).map_err(|_| {
            anyhow::anyhow!("cannot send the answer: stdin is not UTF-8 text — answers are text")
        });
    }
    let t: Task = c.get(&format!("/api/v1/tasks/{id}")).await?;
    let mut err = std::io::stderr().lock();
    match &t.supervision {
        Some(s) if s.state == Health::WaitingForInput => {
            write!(
                err,
                "{} asks: {}",
                Escaped(&t.agent_name),
                Escaped(&s.prompt)
            )?;
            if !s.prompt.ends_with(' ') {
                write!(err, " ")?;
            }
        }
        _ => write!(
            err,
            "task {} on {} is not waiting for input now; input for it: ",
            Escaped(&t.id),
            Escaped(&t.agent_name)
        )?,
    }
    err.flush()?;
    let line = read_line_without_echo()?;
    writeln!(err)?;
    Ok(format!("{line}\n"))
}

/// One line from the terminal on stdin, not echoed (echo is restored, whatever happens).
pub(crate) fn read_line_without_echo() -> Result<String> {
    use std::os::fd::AsRawFd;
    let fd = std::io::stdin().as_raw_fd();
    // SAFETY: `termios` is plain data; tcgetattr fills it for a descriptor we hold open.
    #[allow(unsafe_code)]
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(fd, &mut t) == 0).then_some(t)
    };
    if let Some(saved) = saved {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above; the value is a copy of what tcgetattr gave.
        #[allow(unsafe_code)]
        unsafe {
            libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet);
        }
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if let Some(saved) = saved {
        // SAFETY: restores what tcgetattr gave.
        #[allow(unsafe_code)]
        unsafe {
            libc::tcsetattr(fd, libc::TCSAFLUSH, &saved);
        }
    }
    read.context("cannot read the answer from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
