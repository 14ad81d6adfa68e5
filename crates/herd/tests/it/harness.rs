//! What the end-to-end tests add to herd-testkit: the binary under test, and helpers that
//! panic with what went wrong (a test's way to fail).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use herd_testkit::{Agent, Fleet, NetNs, Server, http_get, no_process_with};

/// The `herd` binary this test crate was built with.
pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// `herd` with a clean environment.
pub fn herd() -> Command {
    herd_testkit::herd_command(HERD)
}

/// Waits for `f` to return Some, polling; panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    herd_testkit::wait_until(timeout, what, f).unwrap_or_else(|e| panic!("{e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The CLI against a [`Server`], for assertions.
pub trait Cli {
    /// Runs the CLI with `args` (stdin empty), returning its output.
    fn run(&self, args: &[&str]) -> Output;
    /// Runs the CLI with `args`; panics unless it succeeds and prints JSON.
    fn json(&self, args: &[&str]) -> serde_json::Value;
}

impl Cli for Server {
    fn run(&self, args: &[&str]) -> Output {
        self.cli()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run herd")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        self.cli_json(args).unwrap_or_else(|e| panic!("{e}"))
    }
}
