//! herd-core: the domain types and pure logic shared by server, agent and CLI.
//!
//! Owns target selectors (and their evaluation over an index), fan-out limits, duration
//! parsing/formatting, the task lifecycle (states, which are open, which transition leads
//! where) and run states with their exit-code mapping, the run spec, machine facts and
//! metrics, output positions, what a task's `HERD_OUTPUT` file says (`outputs`), the calls to
//! other systems (`actions`: HTTP requests and notifications as data), id
//! generation/validation, label parsing and the escaping of text from
//! agents and people before it is printed or logged. Nothing
//! in this crate performs I/O (no filesystem, network or async runtime); the only
//! side effect anywhere is reading the clock in [`new_id`].
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod actions;
pub mod display;
pub mod duration;
pub mod flow;
pub mod glob;
pub mod ids;
pub mod labels;
pub mod limit;
pub mod machine;
pub mod output;
pub mod outputs;
pub mod selector;
pub mod spec;
pub mod state;
pub mod supervise;

pub use display::{Escaped, escape_controls, is_unsafe_char};
pub use duration::{DurationError, format_duration, parse_duration};
pub use flow::{DefKind, StepState};
pub use glob::glob_match;
pub use ids::{is_valid_id, new_id, short};
pub use labels::{
    LabelEdits, LabelError, Labels, MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_LABELS, RESERVED_KEYS,
    check_label_key, effective_labels, is_reserved_key, label_allowed, label_claims, parse_label,
    parse_label_edit,
};
pub use limit::{Limit, LimitError};
pub use machine::{Disk, Facts, Metrics};
pub use output::OutputPos;
pub use outputs::{OutputEvent, TaskOutputs};
pub use selector::{Selector, SelectorError, Target, TargetIndex};
pub use spec::{CopyFile, FetchFile, RunLimits, RunSpec, Script, WindowSize, is_digest};
pub use state::{
    ExitKind, ParseStateError, RunState, TaskState, Transition, cli_exit_code, run_state,
    task_state_for_exit,
};
