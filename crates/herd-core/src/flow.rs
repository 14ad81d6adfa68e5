//! Jobs and workflows as the store and the API name them: what kind of definition a name is,
//! and the states of a workflow's steps. The definitions themselves, their validation and
//! expressions live in `herd-workflow`.

use std::fmt;
use std::str::FromStr;

use crate::ParseStateError;

/// What a stored definition is.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefKind {
    /// One reusable action with parameters (`herd jobs`).
    Job,
    /// Steps in a graph (`herd workflows`).
    Workflow,
}

impl DefKind {
    pub const ALL: [DefKind; 2] = [DefKind::Job, DefKind::Workflow];

    pub fn as_str(self) -> &'static str {
        match self {
            DefKind::Job => "job",
            DefKind::Workflow => "workflow",
        }
    }
}

impl fmt::Display for DefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DefKind {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DefKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseStateError {
                kind: "definition kind",
                input: s.to_string(),
                expected: "job, workflow".into(),
            })
    }
}

/// State of one step of a workflow run.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for the steps it needs.
    Pending,
    /// Started (its run, call or child workflow is under way, or it waits to retry).
    Running,
    Succeeded,
    /// Failed after its last attempt.
    Failed,
    /// Not run: its `if` was false, or a step it needs did not succeed.
    Skipped,
    /// The workflow run was cancelled before the step ended.
    Cancelled,
}

impl StepState {
    pub const ALL: [StepState; 6] = [
        StepState::Pending,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Skipped,
        StepState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Cancelled => "cancelled",
        }
    }

    /// Whether the step has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepState::Pending | StepState::Running)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepState {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError {
                kind: "step",
                input: s.to_string(),
                expected: StepState::ALL.map(StepState::as_str).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in StepState::ALL {
            assert_eq!(s.as_str().parse::<StepState>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for k in DefKind::ALL {
            assert_eq!(k.as_str().parse::<DefKind>().unwrap(), k);
        }
        assert!("done".parse::<StepState>().is_err());
    }
}
