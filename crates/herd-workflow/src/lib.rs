//! herd-workflow: jobs and workflows as definitions. Text (YAML or JSON) → typed definition
//! with every problem named by its path (`steps[3].if: unknown step "biuld" — did you mean
//! "build"?`); the graph of steps (cycles, levels, ancestors, drawn as text); expressions
//! (`${{ … }}` and `if`, evaluated by minijinja); parameters checked against their
//! declaration.
//!
//! Architecture invariant: pure — no I/O, no clock, no store; the engine that drives runs of
//! these definitions lives in `herd-server`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod check;
pub mod def;
pub mod expr;
pub mod graph;
pub mod params;
pub mod parse;
mod suggest;

pub use check::{Lookup, NoLookup, check_job, check_workflow, valid_name};
pub use def::{
    Action, ActionKind, Exec, Job, LangflowStep, Param, ParamType, Retries, RetryPolicy, Step,
    Workflow,
};
pub use graph::{Graph, draw};
pub use suggest::did_you_mean;

/// A problem of a definition: where (`steps[2].needs`; empty: the whole) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    pub path: String,
    pub message: String,
}

impl DefError {
    pub fn at(path: &str, message: String) -> DefError {
        DefError {
            path: path.to_string(),
            message,
        }
    }
}

impl std::fmt::Display for DefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Reads and checks a workflow: the first problem (with how many more there are) or the
/// workflow.
pub fn workflow(text: &str, lookup: &dyn Lookup) -> Result<Workflow, String> {
    let wf = parse::workflow_from_text(text).map_err(|e| e.to_string())?;
    first(check_workflow(&wf, lookup))?;
    Ok(wf)
}

/// Reads and checks a job.
pub fn job(text: &str, lookup: &dyn Lookup) -> Result<Job, String> {
    let job = parse::job_from_text(text).map_err(|e| e.to_string())?;
    first(check_job(&job, lookup))?;
    Ok(job)
}

fn first(errors: Vec<DefError>) -> Result<(), String> {
    let n = errors.len();
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) if n == 1 => Err(e.to_string()),
        Some(e) => Err(format!("{e} (and {} more)", n - 1)),
    }
}

impl Job {
    /// The job as a workflow of one step (`main`), which is how it runs.
    pub fn as_workflow(&self) -> Workflow {
        Workflow {
            name: self.name.clone(),
            description: self.description.clone(),
            params: self.params.clone(),
            targets: Vec::new(),
            steps: vec![Step {
                id: "main".into(),
                name: None,
                needs: Vec::new(),
                condition: None,
                continue_on_error: false,
                action: self.action.clone(),
                exec: self.exec.clone(),
                job: None,
            }],
            on_failure: Vec::new(),
            always: Vec::new(),
            outputs: std::collections::BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests;
