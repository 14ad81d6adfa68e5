//! Supervision of a running task, as a pure state machine fed by samples.
//!
//! Owns what herd concludes about a task while it runs: the command's class (`classify`:
//! info, package manager, build, download, service, unknown — by its first program), the
//! limits of each class (`Limits`, `ClassLimits`: how long without output and CPU is a hang,
//! how long a wait for input may last, how many repeats of one error line within a window is
//! a loop; `Limits::set` reads `CLASS.KEY=VALUE`), and the `Supervisor`, which takes one
//! `Sample` at a time (output since the last sample, the process group's CPU, whether one
//! of its processes is blocked reading the task's stdin or terminal, whether the terminal
//! echoes) and answers the task's `Health` — healthy, idle, hanging, waiting for input, error
//! loop —, the prompt line a person is asked, whether the answer is a secret, and whether the
//! task must be stopped (with a one-line reason).
//!
//! Reading /proc and the terminal is the caller's (`herd-exec`); time is given in each
//! sample, as milliseconds since the task started.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a command is, for its limits: read from its first program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandClass {
    /// Reads the system's state (ls, cat, df, ps, …).
    Info,
    /// A package manager (apt, dnf, yum, pip, npm, …).
    Package,
    /// A build (make, cargo, gcc, go, …).
    Build,
    /// A transfer (curl, wget, rsync, git clone, …).
    Download,
    /// Service control (systemctl, service, …).
    Service,
    /// Anything else.
    Unknown,
}

impl CommandClass {
    pub const ALL: [CommandClass; 6] = [
        CommandClass::Info,
        CommandClass::Package,
        CommandClass::Build,
        CommandClass::Download,
        CommandClass::Service,
        CommandClass::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandClass::Info => "info",
            CommandClass::Package => "package",
            CommandClass::Build => "build",
            CommandClass::Download => "download",
            CommandClass::Service => "service",
            CommandClass::Unknown => "unknown",
        }
    }

    /// The class named `s` (as [`Self::as_str`] writes it).
    pub fn parse(s: &str) -> Option<CommandClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for CommandClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Programs that run another program given after their options (and, for `timeout`, a
/// duration): the class is the wrapped program's.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "nice", "ionice", "nohup", "time", "timeout", "stdbuf", "command",
    "exec", "chronic", "unbuffer",
];
const PACKAGE: &[&str] = &[
    "apt",
    "apt-get",
    "aptitude",
    "dpkg",
    "dnf",
    "yum",
    "microdnf",
    "zypper",
    "pacman",
    "apk",
    "rpm",
    "snap",
    "flatpak",
    "pip",
    "pip3",
    "pipx",
    "npm",
    "yarn",
    "pnpm",
    "gem",
    "brew",
    "conda",
    "mamba",
    "poetry",
    "uv",
    "emerge",
    "xbps-install",
    "nix-env",
    "opkg",
];
const BUILD: &[&str] = &[
    "make",
    "gmake",
    "cmake",
    "ninja",
    "meson",
    "cargo",
    "rustc",
    "gcc",
    "g++",
    "cc",
    "c++",
    "clang",
    "clang++",
    "go",
    "mvn",
    "gradle",
    "gradlew",
    "ant",
    "bazel",
    "javac",
    "tsc",
    "./configure",
    "configure",
    "scons",
    "msbuild",
    "dotnet",
];
const DOWNLOAD: &[&str] = &[
    "curl", "wget", "rsync", "scp", "sftp", "aria2c", "axel", "lftp", "ftp", "rclone",
];
const SERVICE: &[&str] = &[
    "systemctl",
    "service",
    "rc-service",
    "rc-update",
    "supervisorctl",
    "initctl",
    "sv",
    "launchctl",
];
const INFO: &[&str] = &[
    "ls",
    "cat",
    "df",
    "du",
    "free",
    "uptime",
    "uname",
    "ps",
    "id",
    "whoami",
    "hostname",
    "ip",
    "ss",
    "netstat",
    "lsblk",
    "blkid",
    "mount",
    "findmnt",
    "date",
    "head",
    "tail",
    "grep",
    "egrep",
    "find",
    "stat",
    "wc",
    "echo",
    "printf",
    "which",
    "type",
    "w",
    "who",
    "last",
    "lscpu",
    "lsmem",
    "lspci",
    "lsusb",
    "lsof",
    "dmesg",
    "journalctl",
    "true",
    "false",
    "test",
    "pwd",
    "file",
    "sort",
    "uniq",
    "cut",
    "awk",
    "sed",
    "tr",
    "md5sum",
    "sha256sum",
    "getent",
    "hostnamectl",
    "timedatectl",
    "nproc",
    "vmstat",
    "iostat",
    "sysctl",
    "readlink",
    "realpath",
    "basename",
    "dirname",
    "jq",
    "env",
    "printenv",
    "locale",
    "tree",
    "less",
    "more",
];

/// The class of a command line: its first program (past `VAR=value` assignments and
/// wrappers such as `sudo` or `timeout 10`), by name; `git clone|fetch|pull`, `docker
/// pull` and `docker build` by their subcommand. Never fails: anything unknown is
/// [`CommandClass::Unknown`].
pub fn classify(command: &str) -> CommandClass {
    let mut words = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
        .peekable();
    let mut in_wrapper = false;
    while let Some(word) = words.next() {
        let is_assignment = word.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if is_assignment || (in_wrapper && (word.starts_with('-') || is_duration(word))) {
            continue;
        }
        let name = if word.starts_with("./") {
            word
        } else {
            word.rsplit('/').next().unwrap_or(word)
        };
        if WRAPPERS.contains(&name) && name != "env" || (name == "env" && words.peek().is_some()) {
            in_wrapper = true;
            continue;
        }
        let sub = words.next().unwrap_or("");
        return match name {
            "git" | "hg" | "svn" => match sub {
                "clone" | "fetch" | "pull" | "checkout" | "co" | "lfs" => CommandClass::Download,
                "status" | "log" | "diff" | "show" | "branch" | "remote" => CommandClass::Info,
                _ => CommandClass::Unknown,
            },
            "docker" | "podman" => match sub {
                "pull" => CommandClass::Download,
                "build" => CommandClass::Build,
                "ps" | "images" | "inspect" | "logs" | "info" | "version" => CommandClass::Info,
                _ => CommandClass::Unknown,
            },
            n if PACKAGE.contains(&n) => CommandClass::Package,
            n if BUILD.contains(&n) => CommandClass::Build,
            n if DOWNLOAD.contains(&n) => CommandClass::Download,
            n if SERVICE.contains(&n) => CommandClass::Service,
            n if INFO.contains(&n) => CommandClass::Info,
            _ => CommandClass::Unknown,
        };
    }
    CommandClass::Unknown
}

/// `10`, `10s`, `1.5m`: a wrapper's duration argument (`timeout 10 cmd`).
fn is_duration(w: &str) -> bool {
    let digits = w.trim_end_matches(['s', 'm', 'h', 'd']);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The limits of one command class. A limit of 0 is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassLimits {
    /// No output and no CPU progress for this long is a hang: the task is stopped.
    pub hang_ms: u64,
    /// Waiting for input longer than this stops the task.
    pub input_wait_ms: u64,
    /// This many repeats of one error line within `loop_window_ms` is an error loop: the
    /// task is stopped.
    pub loop_lines: u32,
    pub loop_window_ms: u64,
}

impl ClassLimits {
    /// herd's defaults for a class.
    pub const fn default_for(class: CommandClass) -> ClassLimits {
        let hang_s = match class {
            CommandClass::Info => 60,
            CommandClass::Package => 600,
            CommandClass::Build => 1800,
            CommandClass::Download => 600,
            CommandClass::Service => 120,
            CommandClass::Unknown => 300,
        };
        ClassLimits {
            hang_ms: hang_s * 1000,
            input_wait_ms: 15 * 60 * 1000,
            loop_lines: 10,
            loop_window_ms: 60 * 1000,
        }
    }
}

/// The limits of every class (what a server is configured with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    classes: [ClassLimits; 6],
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            classes: CommandClass::ALL.map(ClassLimits::default_for),
        }
    }
}

/// A supervision setting that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad supervision setting {setting:?}: {why} — {help}")]
pub struct SettingError {
    pub setting: String,
    pub why: String,
    pub help: &'static str,
}

const SETTING_HELP: &str = "give CLASS.KEY=VALUE, CLASS one of info, package, build, download, service, unknown or all, KEY one of hang (a duration), input (a duration), loop (a count), loop-window (a duration); 0 turns a limit off";

impl Limits {
    pub fn get(&self, class: CommandClass) -> ClassLimits {
        self.classes[class as usize]
    }

    /// Applies one `CLASS.KEY=VALUE` setting (`info.hang=3s`, `all.loop=5`,
    /// `build.input=0`).
    pub fn set(&mut self, setting: &str) -> Result<(), SettingError> {
        let err = |why: String| SettingError {
            setting: setting.to_string(),
            why,
            help: SETTING_HELP,
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| err("no `=`".to_string()))?;
        let (class, key) = name
            .split_once('.')
            .ok_or_else(|| err("no `.` between class and key".to_string()))?;
        let classes: Vec<CommandClass> = if class == "all" {
            CommandClass::ALL.to_vec()
        } else {
            vec![
                CommandClass::parse(class)
                    .ok_or_else(|| err(format!("unknown class {class:?}")))?,
            ]
        };
        let ms = || -> Result<u64, SettingError> {
            if value == "0" {
                return Ok(0);
            }
            crate::parse_duration(value)
                .map(|d| d.as_millis() as u64)
                .map_err(|e| err(e.to_string()))
        };
        for c in classes {
            let l = &mut self.classes[c as usize];
            match key {
                "hang" => l.hang_ms = ms()?,
                "input" => l.input_wait_ms = ms()?,
                "loop-window" => l.loop_window_ms = ms()?,
                "loop" => {
                    l.loop_lines = value
                        .parse()
                        .map_err(|_| err(format!("{value:?} is not a count")))?
                }
                _ => return Err(err(format!("unknown key {key:?}"))),
            }
        }
        Ok(())
    }
}

/// What herd makes of a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// It writes output or uses CPU.
    Healthy,
    /// No output for a while, but not (yet) a hang: it uses CPU, or has not been quiet long.
    Idle,
    /// No output and no CPU for its class's limit: stopped.
    Hanging,
    /// A process of the task is blocked reading its stdin or terminal.
    WaitingForInput,
    /// It printed the same error line its class's number of times within the window:
    /// stopped.
    ErrorLoop,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Idle => "idle",
            Health::Hanging => "hanging",
            Health::WaitingForInput => "waiting_for_input",
            Health::ErrorLoop => "error_loop",
        }
    }

    pub fn parse(s: &str) -> Option<Health> {
        [
            Health::Healthy,
            Health::Idle,
            Health::Hanging,
            Health::WaitingForInput,
            Health::ErrorLoop,
        ]
        .into_iter()
        .find(|h| h.as_str() == s)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's supervision state, as it changes (what the agent reports, the server keeps
/// and the API answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Supervision {
    /// What herd makes of the task now.
    pub state: Health,
    /// The command's class, whose limits apply.
    pub class: CommandClass,
    /// While waiting for input: the line the task asked with (its last output line), at
    /// most [`MAX_PROMPT`] bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// While waiting for input: the answer is a secret (the terminal does not echo, the
    /// prompt asks for a password, passphrase, PIN or token, or the command is `sudo`,
    /// `passwd` or `read -s`). It is never stored, logged or shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Why, in one line (hanging, error loop, idle, a wait past its limit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Longest prompt kept, in bytes.
pub const MAX_PROMPT: usize = 256;
/// Longest reason kept, in bytes.
pub const MAX_REASON: usize = 512;
/// Quiet this long (or half the hang limit, if that is shorter) makes a task idle.
pub const IDLE_AFTER_MS: u64 = 10_000;

/// What the caller saw since the previous sample.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Milliseconds since the task started.
    pub at_ms: u64,
    /// Output bytes so far (cumulative).
    pub output_bytes: u64,
    /// Whole lines printed since the previous sample, consecutive repeats counted once with
    /// their number (the caller may keep only some when there are many).
    pub lines: Vec<(String, u32)>,
    /// The output's last line when it has no newline yet (a prompt), else empty.
    pub partial: String,
    /// The last whole line printed so far.
    pub last_line: String,
    /// CPU ticks of the task's processes so far (cumulative; reaped children included).
    pub cpu_ticks: u64,
    /// A fingerprint of the task's process ids: a change (a new process) is progress.
    pub processes: u64,
    /// A process of the task is blocked reading the task's stdin or terminal.
    pub reading_input: bool,
    /// The task's terminal does not echo (`read -s`, a password prompt).
    pub echo_off: bool,
}

/// What a sample leads to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The state changed (state, prompt or secrecy): report it.
    pub changed: Option<Supervision>,
    /// Stop the task, for this one-line reason.
    pub stop: Option<String>,
}

/// The state machine of one task.
#[derive(Debug, Clone)]
pub struct Supervisor {
    class: CommandClass,
    limits: ClassLimits,
    /// The command itself asks for a secret (`read -s`, `sudo`, `passwd`).
    secret_command: bool,
    current: Supervision,
    stopped: bool,
    bytes: u64,
    ticks: u64,
    processes: u64,
    /// When output, and CPU or a new process, were last seen.
    last_output_ms: u64,
    last_busy_ms: u64,
    waiting_since_ms: Option<u64>,
    /// Error lines seen within the loop window: (when, hash of the line, repeats).
    errors: VecDeque<(u64, u64, u32)>,
}

/// Error lines remembered within a window, at most.
const MAX_ERRORS: usize = 256;

impl Supervisor {
    /// A command that follows a log or a stream (`tail -f`, `journalctl -f`, `watch`, …) is
    /// silent while nothing happens: it never counts as hanging.
    pub fn new(command: &str, class: CommandClass, mut limits: ClassLimits) -> Supervisor {
        if follows(command) {
            limits.hang_ms = 0;
        }
        Supervisor {
            class,
            limits,
            secret_command: asks_secret(command),
            current: Supervision {
                state: Health::Healthy,
                class,
                prompt: String::new(),
                secret: false,
                reason: String::new(),
            },
            stopped: false,
            bytes: 0,
            ticks: 0,
            processes: 0,
            last_output_ms: 0,
            last_busy_ms: 0,
            waiting_since_ms: None,
            errors: VecDeque::new(),
        }
    }

    /// The task runs on a terminal (`tty`): a person's session, which may wait for its
    /// person as long as it likes — no limit on a wait for input.
    pub fn on_terminal(mut self, tty: bool) -> Supervisor {
        if tty {
            self.limits.input_wait_ms = 0;
        }
        self
    }

    /// The current state.
    pub fn state(&self) -> &Supervision {
        &self.current
    }

    /// Takes one sample. Once it asked for a stop, it stays where it is.
    pub fn observe(&mut self, s: &Sample) -> Step {
        if self.stopped {
            return Step::default();
        }
        let now = s.at_ms;
        if s.output_bytes > self.bytes {
            self.bytes = s.output_bytes;
            self.last_output_ms = now;
        }
        if s.cpu_ticks > self.ticks || s.processes != self.processes {
            self.last_busy_ms = now;
        }
        self.ticks = self.ticks.max(s.cpu_ticks);
        self.processes = s.processes;

        let (next, stop) = self.judge(s);
        if stop.is_some() {
            self.stopped = true;
        }
        let changed = (next.state != self.current.state
            || next.prompt != self.current.prompt
            || next.secret != self.current.secret)
            .then(|| next.clone());
        self.current = next;
        Step { changed, stop }
    }

    fn judge(&mut self, s: &Sample) -> (Supervision, Option<String>) {
        let now = s.at_ms;
        let l = self.limits;
        let class = self.class;
        let state = |state: Health, reason: String| Supervision {
            state,
            class,
            prompt: String::new(),
            secret: false,
            reason: cut(reason, MAX_REASON),
        };

        if s.reading_input {
            let since = *self.waiting_since_ms.get_or_insert(now);
            let prompt = cut(
                if s.partial.trim().is_empty() {
                    s.last_line.trim_end().to_string()
                } else {
                    s.partial.clone()
                },
                MAX_PROMPT,
            );
            let secret = s.echo_off || self.secret_command || prompt_asks_secret(&prompt);
            let waited = now.saturating_sub(since);
            let (reason, stop) = if l.input_wait_ms > 0 && waited >= l.input_wait_ms {
                let r = format!(
                    "waited for input for {} (class {class}): nobody answered",
                    secs(l.input_wait_ms)
                );
                (r.clone(), Some(r))
            } else {
                (String::new(), None)
            };
            let mut st = state(Health::WaitingForInput, reason);
            st.prompt = prompt;
            st.secret = secret;
            return (st, stop);
        }
        self.waiting_since_ms = None;

        if let Some(r) = self.error_loop(s) {
            return (state(Health::ErrorLoop, r.clone()), Some(r));
        }

        let quiet = now.saturating_sub(self.last_output_ms);
        let still = now.saturating_sub(self.last_busy_ms);
        if l.hang_ms > 0 && quiet >= l.hang_ms && still >= l.hang_ms {
            let r = format!(
                "hung: no output and no CPU for {} (class {class})",
                secs(l.hang_ms)
            );
            return (state(Health::Hanging, r.clone()), Some(r));
        }
        let idle_after = match l.hang_ms {
            0 => IDLE_AFTER_MS,
            h => IDLE_AFTER_MS.min(h / 2),
        };
        if quiet >= idle_after {
            let r = if still < quiet {
                format!("no output for {}, CPU busy", secs(quiet))
            } else {
                format!("no output and no CPU for {}", secs(quiet))
            };
            return (state(Health::Idle, r), None);
        }
        (state(Health::Healthy, String::new()), None)
    }

    /// A line that looks like an error, repeated the class's number of times within its
    /// window: the reason.
    fn error_loop(&mut self, s: &Sample) -> Option<String> {
        let l = self.limits;
        if l.loop_lines == 0 {
            return None;
        }
        let now = s.at_ms;
        while self
            .errors
            .front()
            .is_some_and(|(at, _, _)| now.saturating_sub(*at) > l.loop_window_ms)
        {
            self.errors.pop_front();
        }
        let mut found = None;
        for (line, n) in &s.lines {
            if !looks_like_error(line) {
                continue;
            }
            let h = hash(line.trim());
            if self.errors.len() == MAX_ERRORS {
                self.errors.pop_front();
            }
            self.errors.push_back((now, h, *n));
            let total: u64 = self
                .errors
                .iter()
                .filter(|(_, eh, _)| *eh == h)
                .map(|(_, _, c)| u64::from(*c))
                .sum();
            if total >= u64::from(l.loop_lines) && found.is_none() {
                found = Some(format!(
                    "error loop: {total} times within {} {:?} (class {})",
                    secs(l.loop_window_ms),
                    cut(line.trim().to_string(), 160),
                    self.class
                ));
            }
        }
        found
    }
}

/// Words of an error line (lowercase), and the prefixes of package managers' errors.
const ERROR_WORDS: &[&str] = &[
    "error",
    "fail",
    "fatal",
    "cannot",
    "can't",
    "could not",
    "couldn't",
    "unable",
    "denied",
    "refused",
    "timed out",
    "timeout",
    "not found",
    "no such",
    "panic",
    "exception",
];

/// The line reads like an error message.
pub fn looks_like_error(line: &str) -> bool {
    let t = line.trim_start();
    if t.starts_with("E:") || t.starts_with("E ") || t.starts_with("ERR") {
        return true;
    }
    let lower = t.to_ascii_lowercase();
    ERROR_WORDS.iter().any(|w| lower.contains(w))
}

/// The prompt asks for a secret.
pub fn prompt_asks_secret(prompt: &str) -> bool {
    let lower = prompt.to_ascii_lowercase();
    [
        "password",
        "passphrase",
        "passcode",
        "secret",
        "token",
        "pin:",
        "pin ",
    ]
    .iter()
    .any(|w| lower.contains(w))
        || lower.trim_end().ends_with(" pin")
}

/// The command asks for a secret by itself: `read -s`, `sudo`, `passwd`, `su`.
pub fn asks_secret(command: &str) -> bool {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().enumerate().any(|(i, w)| {
        let name = w.rsplit('/').next().unwrap_or(w);
        match name {
            "sudo" | "passwd" | "su" | "chpasswd" | "gpasswd" | "kinit" => true,
            "read" => words[i + 1..]
                .iter()
                .take_while(|a| a.starts_with('-'))
                .any(|a| !a.starts_with("--") && a.contains('s')),
            _ => false,
        }
    })
}

/// The command follows a log or a stream, silent while nothing happens: `tail -f|-F|--follow`,
/// `journalctl -f|--follow`, `kubectl|docker|podman logs -f`, `watch`, `dmesg -w|--follow`,
/// `sleep infinity`.
pub fn follows(command: &str) -> bool {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect();
    let flag = |rest: &[&str], short: char, long: &str| {
        rest.iter().any(|a| {
            *a == long || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains(short))
        })
    };
    words.iter().enumerate().any(|(i, w)| {
        let rest = &words[i + 1..];
        match w.rsplit('/').next().unwrap_or(w) {
            "tail" => flag(rest, 'f', "--follow") || flag(rest, 'F', "--follow"),
            "journalctl" => flag(rest, 'f', "--follow"),
            "kubectl" | "docker" | "podman" => {
                rest.first() == Some(&"logs") && flag(rest, 'f', "--follow")
            }
            "dmesg" => flag(rest, 'w', "--follow"),
            "watch" => true,
            "sleep" => rest.first() == Some(&"infinity"),
            _ => false,
        }
    })
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable, no allocation.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) || ms >= 10_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_classified_by_their_first_program() {
        let cases = [
            ("ls -la /", CommandClass::Info),
            ("df -h", CommandClass::Info),
            ("cat /etc/os-release | grep ID", CommandClass::Info),
            ("apt-get install -y nginx", CommandClass::Package),
            ("sudo -E apt update", CommandClass::Package),
            (
                "DEBIAN_FRONTEND=noninteractive apt-get -y upgrade",
                CommandClass::Package,
            ),
            ("timeout 30 pip install x", CommandClass::Package),
            ("/usr/bin/dnf -y install httpd", CommandClass::Package),
            ("npm ci", CommandClass::Package),
            ("make -j4", CommandClass::Build),
            ("cargo build --release", CommandClass::Build),
            ("./configure --prefix=/usr", CommandClass::Build),
            ("docker build -t x .", CommandClass::Build),
            ("curl -fsSL https://example.com", CommandClass::Download),
            ("git clone https://x/y", CommandClass::Download),
            ("docker pull nginx", CommandClass::Download),
            ("systemctl restart nginx", CommandClass::Service),
            ("service ssh reload", CommandClass::Service),
            ("sleep 600", CommandClass::Unknown),
            ("read -s -p 'Password: ' p; echo ok", CommandClass::Unknown),
            ("env", CommandClass::Info),
            ("env FOO=1 make", CommandClass::Build),
            ("", CommandClass::Unknown),
            ("   ", CommandClass::Unknown),
            ("git commit -m x", CommandClass::Unknown),
        ];
        for (cmd, class) in cases {
            assert_eq!(classify(cmd), class, "{cmd}");
        }
    }

    #[test]
    fn settings_change_one_class_or_all() {
        let mut l = Limits::default();
        assert_eq!(l.get(CommandClass::Info).hang_ms, 60_000);
        assert_eq!(l.get(CommandClass::Build).hang_ms, 1_800_000);
        l.set("info.hang=3s").unwrap();
        assert_eq!(l.get(CommandClass::Info).hang_ms, 3_000);
        assert_eq!(l.get(CommandClass::Unknown).hang_ms, 300_000);
        l.set("all.loop=5").unwrap();
        l.set("all.loop-window=2s").unwrap();
        l.set("build.input=0").unwrap();
        for c in CommandClass::ALL {
            assert_eq!(l.get(c).loop_lines, 5);
            assert_eq!(l.get(c).loop_window_ms, 2_000);
        }
        assert_eq!(l.get(CommandClass::Build).input_wait_ms, 0);
        for bad in [
            "info",
            "info.hang",
            "nope.hang=3s",
            "info.nope=3s",
            "info.hang=soon",
            "info.loop=many",
        ] {
            let e = l.set(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("bad supervision setting {bad:?}: ")),
                "{e}"
            );
            assert!(e.contains(" — give CLASS.KEY=VALUE"), "{e}");
        }
    }

    fn limits(hang_ms: u64) -> ClassLimits {
        ClassLimits {
            hang_ms,
            input_wait_ms: 60_000,
            loop_lines: 10,
            loop_window_ms: 5_000,
        }
    }

    /// Feeds samples (one a second), returns each step's state and stop.
    fn run(sup: &mut Supervisor, samples: &[Sample]) -> Vec<(Health, Option<String>)> {
        samples
            .iter()
            .map(|s| {
                let step = sup.observe(s);
                (sup.state().state, step.stop)
            })
            .collect()
    }

    fn at(sec: u64) -> Sample {
        Sample {
            at_ms: sec * 1000,
            ..Sample::default()
        }
    }

    #[test]
    fn a_sleeping_task_is_idle_then_hanging_and_stopped() {
        let mut sup = Supervisor::new("sleep 600", CommandClass::Info, limits(3_000));
        let seen = run(&mut sup, &[at(1), at(2), at(3), at(4)]);
        assert_eq!(seen[0], (Health::Healthy, None));
        assert_eq!(seen[1].0, Health::Idle);
        assert_eq!(seen[2].0, Health::Hanging);
        assert_eq!(
            seen[2].1.as_deref(),
            Some("hung: no output and no CPU for 3 s (class info)")
        );
        // Stopped once: later samples change nothing.
        assert_eq!(seen[3], (Health::Hanging, None));
    }

    #[test]
    fn a_busy_loop_without_output_is_idle_never_hanging() {
        let mut sup = Supervisor::new("while :; do :; done", CommandClass::Unknown, limits(3_000));
        let samples: Vec<Sample> = (1..30)
            .map(|s| Sample {
                cpu_ticks: s * 100,
                ..at(s)
            })
            .collect();
        let seen = run(&mut sup, &samples);
        assert!(
            seen.iter()
                .all(|(h, stop)| *h != Health::Hanging && stop.is_none())
        );
        assert_eq!(seen.last().unwrap().0, Health::Idle);
        assert_eq!(sup.state().reason, "no output for 29 s, CPU busy");
    }

    #[test]
    fn output_keeps_a_task_healthy_and_new_processes_count_as_progress() {
        let mut sup = Supervisor::new("x", CommandClass::Unknown, limits(3_000));
        let samples: Vec<Sample> = (1..10)
            .map(|s| Sample {
                output_bytes: s * 10,
                ..at(s)
            })
            .collect();
        assert!(
            run(&mut sup, &samples)
                .iter()
                .all(|(h, _)| *h == Health::Healthy)
        );

        let mut sup = Supervisor::new("x", CommandClass::Unknown, limits(3_000));
        let samples: Vec<Sample> = (1..10)
            .map(|s| Sample {
                processes: s,
                ..at(s)
            })
            .collect();
        assert!(
            run(&mut sup, &samples)
                .iter()
                .all(|(_, stop)| stop.is_none())
        );
    }

    #[test]
    fn a_repeated_error_line_is_an_error_loop() {
        let mut sup = Supervisor::new("apt-get install x", CommandClass::Package, limits(0));
        let line = "E: Could not get lock /var/lib/dpkg/lock".to_string();
        let samples: Vec<Sample> = (1..6)
            .map(|s| Sample {
                output_bytes: s * 200,
                lines: vec![(line.clone(), 4)],
                ..at(s)
            })
            .collect();
        let seen = run(&mut sup, &samples);
        assert_eq!(seen[0].0, Health::Healthy);
        assert_eq!(seen[1].0, Health::Healthy);
        assert_eq!(seen[2].0, Health::ErrorLoop);
        let reason = seen[2].1.clone().unwrap();
        assert_eq!(
            reason,
            "error loop: 12 times within 5 s \"E: Could not get lock /var/lib/dpkg/lock\" (class package)"
        );
        assert!(!reason.contains('\n'));
    }

    #[test]
    fn repeats_outside_the_window_or_of_plain_lines_are_no_loop() {
        let mut sup = Supervisor::new("x", CommandClass::Unknown, limits(0));
        // One error line every 2 s: at most 3 within the 5 s window, under 10.
        let samples: Vec<Sample> = (1..40)
            .map(|s| Sample {
                output_bytes: s,
                lines: if s % 2 == 0 {
                    vec![("error: retrying".to_string(), 1)]
                } else {
                    vec![]
                },
                ..at(s)
            })
            .collect();
        assert!(
            run(&mut sup, &samples)
                .iter()
                .all(|(h, _)| *h == Health::Healthy)
        );
        // Progress lines repeat but are no error.
        let mut sup = Supervisor::new("x", CommandClass::Unknown, limits(0));
        let samples: Vec<Sample> = (1..10)
            .map(|s| Sample {
                output_bytes: s,
                lines: vec![("still working".to_string(), 50)],
                ..at(s)
            })
            .collect();
        assert!(
            run(&mut sup, &samples)
                .iter()
                .all(|(h, _)| *h == Health::Healthy)
        );
    }

    #[test]
    fn a_blocked_read_is_waiting_for_input_with_its_prompt() {
        let mut sup = Supervisor::new(
            "read -s -p 'Password: ' p; echo ok",
            CommandClass::Unknown,
            limits(3_000),
        );
        let waiting = Sample {
            output_bytes: 10,
            partial: "Password: ".to_string(),
            reading_input: true,
            ..at(1)
        };
        let step = sup.observe(&waiting);
        let st = step.changed.unwrap();
        assert_eq!(st.state, Health::WaitingForInput);
        assert_eq!(st.prompt, "Password: ");
        assert!(st.secret);
        assert!(step.stop.is_none());
        // Waiting is not hanging, however long (within the input limit), and reports once.
        for s in 2..50 {
            let step = sup.observe(&Sample {
                at_ms: s * 1000,
                ..waiting.clone()
            });
            assert!(step.changed.is_none() && step.stop.is_none(), "{s}");
        }
        // Past the input limit: stopped.
        let step = sup.observe(&Sample {
            at_ms: 61_000,
            ..waiting.clone()
        });
        assert_eq!(
            step.stop.as_deref(),
            Some("waited for input for 60 s (class unknown): nobody answered")
        );
        // An answer: back to healthy.
        let mut sup = Supervisor::new("read x", CommandClass::Unknown, limits(3_000));
        sup.observe(&Sample {
            partial: "Name? ".into(),
            reading_input: true,
            ..at(1)
        });
        assert!(!sup.state().secret);
        let step = sup.observe(&Sample {
            output_bytes: 20,
            ..at(2)
        });
        assert_eq!(step.changed.unwrap().state, Health::Healthy);
    }

    #[test]
    fn following_commands_never_hang_and_terminals_wait_as_long_as_they_like() {
        for cmd in [
            "tail -f /var/log/syslog",
            "tail -n 20 -F app.log",
            "journalctl -fu nginx",
            "sudo journalctl --follow",
            "kubectl logs -f pod/x",
            "watch df -h",
            "dmesg -w",
        ] {
            assert!(follows(cmd), "{cmd}");
            let mut sup = Supervisor::new(cmd, classify(cmd), limits(3_000));
            let seen = run(&mut sup, &(1..20).map(at).collect::<Vec<_>>());
            assert!(
                seen.iter()
                    .all(|(h, stop)| *h != Health::Hanging && stop.is_none()),
                "{cmd}"
            );
        }
        for cmd in [
            "tail -n 5 x",
            "journalctl -u nginx",
            "docker ps -f x",
            "sleep 600",
        ] {
            assert!(!follows(cmd), "{cmd}");
        }
        // On a terminal a wait for input has no limit; without one it does.
        let waiting = |s| Sample {
            reading_input: true,
            ..at(s)
        };
        let mut sup =
            Supervisor::new("bash", CommandClass::Unknown, limits(3_000)).on_terminal(true);
        assert!((1..200).all(|s| sup.observe(&waiting(s)).stop.is_none()));
        let mut sup =
            Supervisor::new("bash", CommandClass::Unknown, limits(3_000)).on_terminal(false);
        assert!((1..200).any(|s| sup.observe(&waiting(s)).stop.is_some()));
    }

    #[test]
    fn secret_prompts_are_recognised() {
        assert!(prompt_asks_secret("[sudo] password for ops: "));
        assert!(prompt_asks_secret(
            "Enter passphrase for key '/root/.ssh/id_ed25519': "
        ));
        assert!(prompt_asks_secret("PIN: "));
        assert!(prompt_asks_secret("API token? "));
        assert!(!prompt_asks_secret("Do you want to continue? [Y/n] "));
        assert!(!prompt_asks_secret("Pinned version? "));
        assert!(asks_secret("read -s x"));
        assert!(asks_secret("read -rsp 'x' v"));
        assert!(asks_secret("sudo -k true"));
        assert!(asks_secret("echo x | passwd --stdin bob"));
        assert!(!asks_secret("read -r x"));
        assert!(!asks_secret("echo sudo-ish"));
        // The terminal's echo off makes any prompt secret.
        let mut sup = Supervisor::new("ssh host", CommandClass::Unknown, limits(0));
        sup.observe(&Sample {
            partial: "Enter code: ".into(),
            reading_input: true,
            echo_off: true,
            ..at(1)
        });
        assert!(sup.state().secret);
    }

    #[test]
    fn the_json_form_is_stable() {
        let s = Supervision {
            state: Health::WaitingForInput,
            class: CommandClass::Package,
            prompt: "Password: ".into(),
            secret: true,
            reason: String::new(),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"{"state":"waiting_for_input","class":"package","prompt":"Password: ","secret":true}"#
        );
        assert_eq!(serde_json::from_str::<Supervision>(&text).unwrap(), s);
        let h: Supervision = serde_json::from_str(r#"{"state":"healthy","class":"info"}"#).unwrap();
        assert_eq!(h.state, Health::Healthy);
    }
}
