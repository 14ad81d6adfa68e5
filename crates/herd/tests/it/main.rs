//! End-to-end tests: real `herd` server, agent and CLI processes.

mod errors;
mod harness;
mod resilience;
mod spine;
