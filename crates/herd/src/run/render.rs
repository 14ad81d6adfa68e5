//! What a followed run shows: one machine's output written straight to the descriptors
//! (without std's line buffering); several machines' output as whole lines, each prefixed
//! with its machine's name (`Lines`); the
//! live progress line of a fan-out on a terminal's stderr; and with `--json`, one JSON event
//! per line instead.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use herd_api::{OutputStream, Progress, Run, Task};
use serde::Serialize;

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

/// How long a partial line of a machine waits for the rest before it is printed alone.
pub const PARTIAL_WAIT: Duration = Duration::from_millis(200);

/// The longest line held back: longer ones are printed in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// A machine's partial line on one stream, waiting for its newline.
struct Pending {
    name: String,
    buf: Vec<u8>,
    /// When the oldest byte of `buf` arrived.
    since: Instant,
    /// The line was begun by a piece already printed: the next piece is marked as continued.
    continued: bool,
}

/// Assembles the output of several machines into whole lines, each printed at once with its
/// machine's prefix (`NAME | `), so lines of different machines never mix. A partial line is
/// held until its newline, until it is older than [`PARTIAL_WAIT`], until it grows past
/// [`MAX_LINE`], or until the end; a piece printed early ends with a newline here and the rest
/// of its line follows with the prefix `NAME + `. Pure: the caller passes the time.
#[derive(Default)]
pub struct Lines {
    pending: HashMap<u32, Pending>,
    color: bool,
}

impl Lines {
    pub fn new(color: bool) -> Lines {
        Lines {
            pending: HashMap::new(),
            color,
        }
    }

    fn prefix(out: &mut Vec<u8>, color: bool, name: &str, continued: bool) {
        let mark = if continued { '+' } else { '|' };
        if color {
            out.extend_from_slice(format!("\x1b[36m{name}\x1b[0m {mark} ").as_bytes());
        } else {
            out.extend_from_slice(format!("{name} {mark} ").as_bytes());
        }
    }

    /// Prints `p`'s held bytes as one line (a piece, when `partial`).
    fn emit(out: &mut Vec<u8>, color: bool, p: &mut Pending, partial: bool) {
        Self::prefix(out, color, &p.name, p.continued);
        out.extend_from_slice(&p.buf);
        if !p.buf.ends_with(b"\n") {
            out.push(b'\n');
        }
        p.buf.clear();
        p.continued = partial;
    }

    /// Adds a chunk of task `index`'s output (machine `name`); appends to `out` the lines it
    /// completes.
    pub fn push(&mut self, out: &mut Vec<u8>, index: u32, name: &str, data: &[u8], now: Instant) {
        let color = self.color;
        let p = self.pending.entry(index).or_insert_with(|| Pending {
            name: name.to_string(),
            buf: Vec::new(),
            since: now,
            continued: false,
        });
        let mut rest = data;
        while !rest.is_empty() {
            if p.buf.is_empty() {
                p.since = now;
            }
            let room = MAX_LINE - p.buf.len();
            match rest.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    p.buf.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                    Self::emit(out, color, p, false);
                }
                None if rest.len() >= room => {
                    p.buf.extend_from_slice(&rest[..room]);
                    rest = &rest[room..];
                    Self::emit(out, color, p, true);
                }
                None => {
                    p.buf.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
    }

    /// When the oldest held partial line is due, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter(|p| !p.buf.is_empty())
            .map(|p| p.since + PARTIAL_WAIT)
            .min()
    }

    /// Prints the partial lines held since `PARTIAL_WAIT` before `now` (every one, with
    /// `now == None`: at the end).
    pub fn flush(&mut self, out: &mut Vec<u8>, now: Option<Instant>) {
        let color = self.color;
        let mut due: Vec<(&u32, &mut Pending)> = self
            .pending
            .iter_mut()
            .filter(|(_, p)| {
                !p.buf.is_empty() && now.is_none_or(|now| now >= p.since + PARTIAL_WAIT)
            })
            .collect();
        due.sort_by_key(|(i, p)| (p.since, **i));
        for (_, p) in due {
            Self::emit(out, color, p, true);
        }
    }
}

/// Where the machines' output goes: stdout and stderr, as the tasks wrote it.
pub struct Output {
    out: RawStdout,
    stdout_lines: Lines,
    stderr_lines: Lines,
}

impl Output {
    /// `color_out` / `color_err`: color the prefixes on stdout / stderr.
    pub fn new(color_out: bool, color_err: bool) -> Output {
        Output {
            // Output goes to the descriptor unbuffered: std's stdout is line-buffered, which
            // scans every chunk for its last newline and copies what follows it.
            out: RawStdout::new(),
            stdout_lines: Lines::new(color_out),
            stderr_lines: Lines::new(color_err),
        }
    }

    /// Writes a chunk of task `index`'s output (machine `name`) to the same stream here:
    /// with `multi`, as whole lines prefixed with the name; otherwise raw, as it came.
    pub fn write(
        &mut self,
        index: u32,
        stream: OutputStream,
        name: &str,
        multi: bool,
        data: &[u8],
    ) -> std::io::Result<()> {
        if !multi {
            return match stream {
                OutputStream::Stdout => self.out.write_all(data),
                OutputStream::Stderr => {
                    let mut e = std::io::stderr().lock();
                    e.write_all(data).and_then(|_| e.flush())
                }
            };
        }
        let mut buf = Vec::new();
        let now = Instant::now();
        match stream {
            OutputStream::Stdout => {
                self.stdout_lines.push(&mut buf, index, name, data, now);
                self.put(OutputStream::Stdout, &buf)
            }
            OutputStream::Stderr => {
                self.stderr_lines.push(&mut buf, index, name, data, now);
                self.put(OutputStream::Stderr, &buf)
            }
        }
    }

    fn put(&mut self, stream: OutputStream, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match stream {
            OutputStream::Stdout => self.out.write_all(buf),
            OutputStream::Stderr => {
                let mut e = std::io::stderr().lock();
                e.write_all(buf).and_then(|_| e.flush())
            }
        }
    }

    /// When a held partial line is due to be printed, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.stdout_lines.deadline(), self.stderr_lines.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Prints the partial lines that waited long enough (all of them with `None`).
    pub fn flush(&mut self, now: Option<Instant>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        self.stdout_lines.flush(&mut buf, now);
        self.put(OutputStream::Stdout, &buf)?;
        buf.clear();
        self.stderr_lines.flush(&mut buf, now);
        self.put(OutputStream::Stderr, &buf)
    }

    /// Prints every machine's held partial line.
    pub fn finish(&mut self) {
        let _ = self.flush(None);
    }
}

/// The live `done / running / failed / pending of N` line of a fan-out, on a terminal's
/// stderr only; output lines are written above it.
pub struct ProgressLine {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressLine {
    pub fn new(enabled: bool) -> ProgressLine {
        ProgressLine { enabled, bar: None }
    }

    /// Runs `f` (which writes output) with the line taken away, then draws it again.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Takes the line away for good.
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    pub fn update(&mut self, p: Progress) {
        if !self.enabled {
            return;
        }
        let line = progress_line(&p);
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        bar.set_message(line);
    }
}

/// Whatever ends the follow (an error, a closed pipe), the line does not stay.
impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The text of the progress line.
fn progress_line(p: &Progress) -> String {
    let waiting = if p.waiting > 0 {
        format!(" ({} waiting for their machine)", p.waiting)
    } else {
        String::new()
    };
    let mut line = format!(
        "── {}/{} done · {} running{waiting} · {} failed · {} pending",
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

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_of_machines_never_mix() {
        let mut l = Lines::new(false);
        let mut out = Vec::new();
        let t = Instant::now();
        l.push(&mut out, 0, "a", b"one\ntw", t);
        l.push(&mut out, 1, "b", b"x\n", t);
        l.push(&mut out, 0, "a", b"o\n\nthree", t);
        assert_eq!(text(&out), "a | one\nb | x\na | two\na | \n");
        assert_eq!(l.deadline(), Some(t + PARTIAL_WAIT));
        out.clear();
        l.flush(&mut out, None);
        assert_eq!(text(&out), "a | three\n");
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn a_partial_line_waits_then_prints_as_pieces() {
        let mut l = Lines::new(false);
        let mut out = Vec::new();
        let t = Instant::now();
        l.push(&mut out, 0, "a", b"sta", t);
        l.push(&mut out, 1, "b", b"half", t + Duration::from_millis(50));
        l.push(&mut out, 0, "a", b"rt", t + Duration::from_millis(100));
        l.flush(&mut out, Some(t + Duration::from_millis(199)));
        assert!(out.is_empty(), "{}", text(&out));
        l.flush(&mut out, Some(t + PARTIAL_WAIT));
        assert_eq!(text(&out), "a | start\n", "only a's is due");
        l.flush(&mut out, Some(t + Duration::from_millis(300)));
        assert_eq!(text(&out), "a | start\nb | half\n");
        out.clear();
        let later = t + Duration::from_millis(400);
        l.push(&mut out, 0, "a", b"ed\nnext\n", later);
        l.push(&mut out, 1, "b", b"\n", later);
        assert_eq!(text(&out), "a + ed\na | next\nb + \n");
    }

    #[test]
    fn a_long_line_prints_in_bounded_pieces() {
        let mut l = Lines::new(false);
        let mut out = Vec::new();
        let t = Instant::now();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        l.push(&mut out, 0, "a", &long, t);
        l.push(&mut out, 0, "a", b"\n", t);
        let lines: Vec<&str> = text(&out).lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("a | x") && lines[0].len() == MAX_LINE + 4);
        assert!(lines[1].starts_with("a + x") && lines[1].len() == MAX_LINE + 4);
        assert_eq!(lines[2], format!("a + {}", "x".repeat(10)));
    }

    #[test]
    fn colored_prefixes() {
        let mut l = Lines::new(true);
        let mut out = Vec::new();
        l.push(&mut out, 0, "a", b"hi\n", Instant::now());
        assert_eq!(text(&out), "\x1b[36ma\x1b[0m | hi\n");
    }

    #[test]
    fn progress_line_table() {
        let p = |pending, running, succeeded, failed, skipped| Progress {
            total: 10,
            pending,
            running,
            waiting: 0,
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
                Progress {
                    waiting: 2,
                    ..p(0, 3, 7, 0, 0)
                },
                "── 7/10 done · 3 running (2 waiting for their machine) · 0 failed · 0 pending",
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
                r#"{"type":"progress","total":2,"pending":0,"running":2,"waiting":0,"succeeded":0,"#,
                r#""failed":0,"skipped":0,"cancelled":0}"#
            )
        );
    }
}
