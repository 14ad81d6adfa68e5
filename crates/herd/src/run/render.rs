//! What a followed run shows: each machine's output written straight to the descriptors
//! (without std's line buffering), prefixed with the machine's name when several run; the
//! live progress line of a fan-out on a terminal's stderr; and with `--json`, one JSON event
//! per line instead.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use herd_api::{OutputStream, Progress, Run, Task};
use serde::Serialize;

/// Buffer for prefixed lines of several machines: one write per chunk, not two per line.
const PREFIX_BUF: usize = 64 * 1024;

/// Standard output without std's line buffering (a duplicate of descriptor 1), or std's
/// stdout if it cannot be duplicated.
enum RawStdout {
    Fd(std::fs::File),
    Std(std::io::Stdout),
}

impl RawStdout {
    fn new() -> RawStdout {
        use std::os::fd::AsFd;
        let out = std::io::stdout();
        match out.as_fd().try_clone_to_owned() {
            Ok(fd) => RawStdout::Fd(std::fs::File::from(fd)),
            Err(_) => RawStdout::Std(out),
        }
    }
}

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStdout::Fd(f) => f.write(buf),
            RawStdout::Std(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStdout::Fd(f) => f.flush(),
            RawStdout::Std(s) => s.flush(),
        }
    }
}

/// Splits a machine's output into lines prefixed with its name.
#[derive(Default)]
struct Prefixer {
    at_line_start: HashMap<(u32, OutputStream), bool>,
}

impl Prefixer {
    fn write(
        &mut self,
        out: &mut dyn Write,
        key: (u32, OutputStream),
        name: &str,
        data: &[u8],
    ) -> std::io::Result<()> {
        let start = self.at_line_start.entry(key).or_insert(true);
        let mut rest = data;
        while !rest.is_empty() {
            if *start {
                write!(out, "{name}: ")?;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.write_all(&rest[..=i])?;
                    rest = &rest[i + 1..];
                    *start = true;
                }
                None => {
                    out.write_all(rest)?;
                    rest = &[];
                    *start = false;
                }
            }
        }
        Ok(())
    }

    /// Ends unterminated last lines so the next machine's output starts on a fresh line.
    fn finish(&mut self, out: &mut dyn Write, stream: OutputStream) -> std::io::Result<()> {
        for ((_, s), start) in self.at_line_start.iter_mut() {
            if *s == stream && !*start {
                out.write_all(b"\n")?;
                *start = true;
            }
        }
        Ok(())
    }
}

/// Where the machines' output goes: stdout and stderr, as the tasks wrote it.
pub struct Output {
    out: RawStdout,
    prefix: Prefixer,
}

impl Output {
    pub fn new() -> Output {
        Output {
            // Output goes to the descriptor unbuffered: std's stdout is line-buffered, which
            // scans every chunk for its last newline and copies what follows it.
            out: RawStdout::new(),
            prefix: Prefixer::default(),
        }
    }

    /// Writes a chunk of task `index`'s output (machine `name`) to the same stream here;
    /// with `multi`, every line prefixed with the name.
    pub fn write(
        &mut self,
        index: u32,
        stream: OutputStream,
        name: &str,
        multi: bool,
        data: &[u8],
    ) -> std::io::Result<()> {
        match stream {
            OutputStream::Stderr => {
                let mut e = std::io::stderr().lock();
                let r = if multi {
                    let mut w = std::io::BufWriter::with_capacity(PREFIX_BUF, &mut e);
                    self.prefix
                        .write(&mut w, (index, stream), name, data)
                        .and_then(|_| w.flush())
                } else {
                    e.write_all(data)
                };
                r.and_then(|_| e.flush())
            }
            OutputStream::Stdout if multi => {
                let mut w = std::io::BufWriter::with_capacity(PREFIX_BUF, &mut self.out);
                self.prefix
                    .write(&mut w, (index, stream), name, data)
                    .and_then(|_| w.flush())
            }
            OutputStream::Stdout => self.out.write_all(data),
        }
    }

    /// Ends every machine's unterminated last line.
    pub fn finish(&mut self) {
        let _ = self.prefix.finish(&mut self.out, OutputStream::Stdout);
        let _ = self
            .prefix
            .finish(&mut std::io::stderr().lock(), OutputStream::Stderr);
    }
}

/// The live `done / running / failed / pending of N` line of a fan-out, on a terminal's
/// stderr only; output lines are written above it.
pub struct ProgressLine {
    enabled: bool,
    shown: bool,
    last: Option<Progress>,
    drawn_at: Instant,
}

impl ProgressLine {
    pub fn new(enabled: bool) -> ProgressLine {
        ProgressLine {
            enabled,
            shown: false,
            last: None,
            drawn_at: Instant::now(),
        }
    }

    pub fn clear(&mut self) {
        if self.shown {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(b"\r\x1b[2K");
            let _ = e.flush();
            self.shown = false;
        }
    }

    pub fn update(&mut self, p: Progress) {
        self.last = Some(p);
        self.draw();
    }

    /// Redraws after output, at most ten times a second.
    pub fn redraw(&mut self) {
        if !self.shown && self.drawn_at.elapsed() >= Duration::from_millis(100) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let Some(p) = self.last.as_ref().filter(|_| self.enabled) else {
            return;
        };
        let line = progress_line(p);
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{line}");
        let _ = e.flush();
        self.shown = true;
        self.drawn_at = Instant::now();
    }
}

/// The text of the progress line.
fn progress_line(p: &Progress) -> String {
    let mut line = format!(
        "── {}/{} done · {} running · {} failed · {} pending",
        p.done(),
        p.total,
        p.running,
        p.failed,
        p.pending
    );
    if p.skipped > 0 {
        line.push_str(&format!(" · {} skipped", p.skipped));
    }
    line
}

/// One line of `herd run --json`, tagged by `type`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    /// A chunk of a machine's output (invalid UTF-8 replaced).
    Output {
        machine: &'a str,
        stream: OutputStream,
        data: Cow<'a, str>,
    },
    /// A machine's task ended.
    Task { machine: &'a str, task: &'a Task },
    /// The fan-out's counts changed.
    Progress(&'a Progress),
    /// Last: the run with every task's final state.
    End { run: &'a Run, tasks: &'a [Task] },
}

/// Prints one JSON event line on stdout.
pub fn emit(ev: &Event<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, ev)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefixer_prefixes_every_line_of_each_machine() {
        let mut p = Prefixer::default();
        let mut out = Vec::new();
        let a = (0, OutputStream::Stdout);
        let b = (1, OutputStream::Stdout);
        p.write(&mut out, a, "a", b"one\ntw").unwrap();
        p.write(&mut out, b, "b", b"x\n").unwrap();
        p.write(&mut out, a, "a", b"o\n\nthree").unwrap();
        p.finish(&mut out, OutputStream::Stderr).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a: one\na: twb: x\no\na: \na: three"
        );
        p.finish(&mut out, OutputStream::Stdout).unwrap();
        assert!(out.ends_with(b"three\n"));
    }

    #[test]
    fn progress_line_table() {
        let p = |pending, running, succeeded, failed, skipped| Progress {
            total: 10,
            pending,
            running,
            succeeded,
            failed,
            skipped,
            cancelled: 0,
        };
        let cases = [
            (
                p(7, 3, 0, 0, 0),
                "── 0/10 done · 3 running · 0 failed · 7 pending",
            ),
            (
                p(0, 0, 8, 1, 1),
                "── 10/10 done · 0 running · 1 failed · 0 pending · 1 skipped",
            ),
        ];
        for (progress, want) in cases {
            assert_eq!(progress_line(&progress), want);
        }
    }

    #[test]
    fn events_are_tagged_lines() {
        let out = Event::Output {
            machine: "web-1",
            stream: OutputStream::Stderr,
            data: String::from_utf8_lossy(b"oops\n"),
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"type":"output","machine":"web-1","stream":"stderr","data":"oops\n"}"#
        );
        let p = Progress {
            total: 2,
            running: 2,
            ..Progress::default()
        };
        assert_eq!(
            serde_json::to_string(&Event::Progress(&p)).unwrap(),
            concat!(
                r#"{"type":"progress","total":2,"pending":0,"running":2,"succeeded":0,"#,
                r#""failed":0,"skipped":0,"cancelled":0}"#
            )
        );
    }
}
