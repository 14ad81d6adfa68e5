//! How the tasks of a run execute: the spec a run is created with and stored with.

use std::collections::BTreeMap;

use crate::Limit;

/// How every task of a run executes; stored with the run and sent with each task.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunSpec {
    /// 0: no timeout.
    pub timeout_ms: u64,
    /// The person's stdin is forwarded to the tasks.
    pub interactive: bool,
    /// The command runs under a terminal (PTY).
    pub tty: bool,
    /// Environment variables set for the command, on top of the agent's. Stored and shown
    /// as given: secrets go in the request's `secret_env`.
    pub env: BTreeMap<String, String>,
    /// Names of the secret environment variables the run was created with (the request's
    /// `secret_env`). Only the names are stored and shown; the values live in the server's
    /// memory until the run ends. Set by the server, never by a request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_names: Vec<String>,
    /// Empty: the agent's working directory.
    pub cwd: String,
    /// Empty: `bash`.
    pub shell: String,
    /// Between SIGTERM and SIGKILL on cancel or timeout; 0: the agent's default.
    pub grace_ms: u32,
    /// Rate control of the fan-out.
    pub limits: RunLimits,
    /// Files to copy instead of running the command (`herd cp`): each one's blob, uploaded
    /// to the server before, is written on every machine. Empty for a command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<CopyFile>,
    /// How long a task waits for its machine when that machine is offline but was seen within
    /// this window (e.g. it reconnects after a server restart), before it ends `lost`; absent:
    /// [`RunSpec::DEFAULT_WAIT_OFFLINE_MS`], 0: an offline machine's task is `lost` at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_offline_ms: Option<u64>,
    /// Run as this user on the machines (their agent must run as root); empty: the agent's
    /// own user.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The caller's terminal size under `tty`, so the task's terminal starts with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSize>,
    /// A script to run instead of the command: executed directly on each machine (its `#!`
    /// line says by what; without one, the shell runs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
    /// A file every machine sends to the server instead of running the command (`herd
    /// fetch`); each task's copy is then read from `GET /api/v1/tasks/{id}/fetched`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchFile>,
    /// JSON object every task reads from the file named by HERD_INPUT; absent: {}.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

impl RunSpec {
    /// How long a task waits for its offline machine unless the run says otherwise.
    pub const DEFAULT_WAIT_OFFLINE_MS: u64 = 30_000;
    /// The largest script a run may carry.
    pub const MAX_SCRIPT_BYTES: usize = 1 << 20;

    /// How long a task waits for its offline machine.
    pub fn wait_offline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.wait_offline_ms
                .unwrap_or(RunSpec::DEFAULT_WAIT_OFFLINE_MS),
        )
    }
}

/// A terminal's size.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A script shipped with a run.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Script {
    /// Its file name where it came from (shown, not used to run it).
    pub name: String,
    /// Its text, at most 1 MiB.
    pub body: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// One file of a copy run: the blob the server holds and where it goes on the machines.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CopyFile {
    /// SHA-256 of the content, 64 lowercase hex digits: a blob the server holds whole.
    pub digest: String,
    /// Length of the content in bytes.
    pub size: u64,
    /// Absolute destination: a file path, or a directory (an existing one, or ending in `/`)
    /// that receives `name`.
    pub dest: String,
    /// The file's name when `dest` is a directory (no `/`).
    pub name: String,
    /// Permission bits (e.g. 420 = 0o644).
    pub mode: u32,
}

impl CopyFile {
    /// What is wrong with the entry, if anything (the blob's presence is checked elsewhere).
    pub fn check(&self) -> Result<(), String> {
        if !is_digest(&self.digest) {
            return Err(format!(
                "bad digest {:?}: expected 64 lowercase hex digits (SHA-256)",
                self.digest
            ));
        }
        if !self.dest.starts_with('/') || self.dest.contains('\0') {
            return Err(format!(
                "bad destination {:?}: expected an absolute path",
                self.dest
            ));
        }
        if self.name.is_empty()
            || self.name.contains('/')
            || self.name == "."
            || self.name == ".."
            || self.name.contains('\0')
        {
            return Err(format!(
                "bad file name {:?}: expected a name without /",
                self.name
            ));
        }
        if self.mode > 0o7777 {
            return Err(format!(
                "bad mode {:o}: expected permission bits (at most 7777)",
                self.mode
            ));
        }
        Ok(())
    }
}

/// The file of a fetch run, the same path on every machine.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FetchFile {
    /// Absolute path of a regular file on the machines.
    pub path: String,
}

impl FetchFile {
    /// What is wrong with the entry, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.contains('\0') {
            return Err(format!(
                "bad path {:?}: expected the absolute path of a file on the machines",
                self.path
            ));
        }
        if self.path.ends_with('/') || self.basename().is_empty() {
            return Err(format!(
                "bad path {:?}: it names a directory — name a file",
                self.path
            ));
        }
        Ok(())
    }

    /// The file's name, what the fetched copy is called.
    pub fn basename(&self) -> &str {
        match self.path.rsplit('/').next() {
            Some(".") | Some("..") | None => "",
            Some(n) => n,
        }
    }
}

/// A SHA-256 digest as herd writes it: 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Rate control of a run's fan-out, as asked (counts or percentages of its targets).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunLimits {
    /// Machines running at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Limit>,
    /// Failures tolerated; once exceeded no new machine starts and the rest are skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<Limit>,
    /// Pause after a machine finishes before its slot goes to the next one.
    #[serde(skip_serializing_if = "is_zero")]
    pub batch_wait_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
