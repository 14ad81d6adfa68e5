//! herd-testkit: real herd deployments for the end-to-end tests and the benchmarks, written
//! once. It starts `herd server` (listen address, data dir, database, extra arguments;
//! restart on the same port; SIGKILL), `herd agent` processes (labels, a wrapper command such
//! as `ip netns exec`), a simulated fleet (`herd bench fleet`), waits for agents to be online,
//! configures the CLI for a server, and provides network namespaces, process checks and a
//! throwaway PostgreSQL (`pg`), the systems `http` and `notify` steps call (`callee`: a scripted
//! HTTP server and a real SMTP server), a real LangFlow (`langflow`), and the hostile clients of the attack tests and benches
//! (`hostile`).
//!
//! Everything but `hostile` is synchronous (std::process and threads): tests call it directly, the
//! benchmarks from `tokio::task::block_in_place`. Every process it starts is killed and
//! reaped when its handle drops (the PostgreSQL cluster when the process that started it
//! ends); it learns about herd only from what herd prints and serves.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod agent;
pub mod callee;
mod error;
mod fleet;
pub mod hostile;
mod http;
pub mod langflow;
mod netns;
pub mod pg;
mod process;
mod server;

pub use agent::Agent;
pub use callee::{HttpCallee, Received, SmtpServer};
pub use error::{Error, Result};
pub use fleet::Fleet;
pub use http::{http_get, http_request};
pub use langflow::LangFlow;
pub use netns::{NetNs, ip};
pub use pg::Postgres;
pub use process::{alive, herd_command, no_process_with, tail, wait_until};
pub use server::{Database, Server};
