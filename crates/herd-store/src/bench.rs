//! A measurement every backend's example runs: how many task results a store persists per
//! second through `apply_progress`, in groups of the size the server's writer commits.
//! Figures come from running it, never from assertions.

use std::time::{Duration, Instant};

use herd_core::{OutputPos, RunSpec, RunState, TaskState};

use crate::model::*;
use crate::{Result, Store, StoreError};

/// What one measurement did and how long it took.
#[derive(Debug, Clone)]
pub struct ProgressRate {
    pub tasks: usize,
    /// Records per `apply_progress` call.
    pub group: usize,
    pub calls: usize,
    pub elapsed: Duration,
}

impl ProgressRate {
    /// Tasks whose start and exit were persisted, per second.
    pub fn results_per_sec(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Creates run `run_id` with `tasks` dispatched tasks, then persists a start record for every
/// task and an exit record for every task (two records per result, as when a task runs for
/// longer than one group), `group` records per call, and checks that every task succeeded.
pub async fn progress_rate(
    store: &dyn Store,
    run_id: &str,
    tasks: usize,
    group: usize,
) -> Result<ProgressRate> {
    let ids: Vec<String> = (0..tasks).map(|i| format!("{run_id}-{i:06}")).collect();
    let new: Vec<NewTask> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| NewTask {
            id: id.clone(),
            agent_id: format!("agent-{i}"),
            agent_name: format!("machine-{i:06}"),
            state: TaskState::Dispatched,
            reason: None,
        })
        .collect();
    let run = RunRow {
        id: run_id.into(),
        command: "true".into(),
        selector: "*".into(),
        spec: RunSpec::default(),
        created_by: "bench".into(),
        created_at: crate::now_ms(),
        cancel_requested: false,
        state: RunState::Running,
        finished_at: None,
    };
    let audit = AuditEntry::new(
        "bench",
        "run.create",
        format!("run:{run_id}"),
        Default::default(),
    );
    store.create_run(&run, &new, &audit).await?;

    let out = |total: u64| OutputPos {
        total,
        head_len: total + 8,
        ..Default::default()
    };
    let starts = ids.iter().enumerate().map(|(i, id)| TaskProgress {
        task_id: id.clone(),
        seq: 1,
        out: out(6),
        started: Some(Started {
            pid: 1000 + i as u32,
            at: run.created_at,
        }),
        exited: None,
        supervision: None,
    });
    let exits = ids.iter().map(|id| TaskProgress {
        task_id: id.clone(),
        seq: 2,
        out: out(12),
        started: None,
        exited: Some(Exit {
            state: TaskState::Succeeded,
            code: Some(0),
            signal: None,
            reason: "exited".into(),
            detail: String::new(),
            at: run.created_at + 1,
            outputs: None,
        }),
        supervision: None,
    });
    let records: Vec<TaskProgress> = starts.chain(exits).collect();

    let began = Instant::now();
    let mut calls = 0;
    for chunk in records.chunks(group.max(1)) {
        store.apply_progress(chunk).await?;
        calls += 1;
    }
    let elapsed = began.elapsed();

    let done = store
        .tasks_of_run(run_id)
        .await?
        .iter()
        .filter(|t| t.state == TaskState::Succeeded && t.out_seq == 2)
        .count();
    if done != tasks {
        return Err(StoreError::Invalid(format!(
            "{done} of {tasks} tasks were persisted as succeeded"
        )));
    }
    Ok(ProgressRate {
        tasks,
        group,
        calls,
        elapsed,
    })
}
