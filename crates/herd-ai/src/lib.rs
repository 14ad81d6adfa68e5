//! The model side of herd's AI operator: an OpenAI-compatible chat client (`Llm`), the
//! prompts herd sends, the JSON shapes it asks for (plan, validation, alternative) and the
//! parsing of the model's answers.
//!
//! Nothing here trusts the model: every answer is size-capped, extracted (`extract_json`),
//! parsed into typed values and validated before a caller reads it; fields the model adds
//! (a `risk`, `safe` or `approved` label) are dropped. Nothing here runs anything either: a
//! caller runs only a step's `command`, and only after herd's own policy has classified it.
//! This crate knows no store and no agent.

mod answer;
mod client;
mod config;
mod extract;

pub mod prompts;

pub use answer::{
    Alternative, MAX_COMMAND, MAX_STEPS, MAX_TEXT, Plan, PlanStep, Validation, parse_alternative,
    parse_plan, parse_validation,
};
pub use client::{Llm, LlmError, MAX_BODY, Message, Reply, ResponseSchema, Role, Usage};
pub use config::{Budget, LlmConfig, LlmSettings, not_configured_help};
pub use extract::{MAX_ANSWER, extract_json};
