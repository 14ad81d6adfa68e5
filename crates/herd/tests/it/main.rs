//! End-to-end tests: real `herd` server, agent and CLI processes.
#![allow(clippy::unwrap_used)]

mod actions;
mod api_contract;
mod ask;
mod ask_recover;
mod claims;
mod cli;
mod errors;
mod escapes;
mod fetch;
mod files;
mod fleet;
mod harness;
mod hostile;
mod identity;
mod inventory;
mod joins;
mod labels;
mod langflow;
mod local_user;
mod observability;
mod output;
mod preauth;
mod resilience;
mod retention;
mod roles;
mod run_start;
mod runtime;
mod schedules;
mod secrets;
mod session;
mod spine;
mod supervise;
mod tokens;
mod vars;
mod workflows;
