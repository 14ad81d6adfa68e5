//! Rows and helpers the cases build on.

use std::collections::BTreeMap;

use herd_core::{Facts, Labels, OutputPos, RunSpec, RunState, TaskState};
use serde_json::json;

use crate::model::*;
use crate::{Result, Store, StoreError};

pub(super) fn entry(action: &str, target: &str) -> AuditEntry {
    AuditEntry::new("key:test", action, target, json!({"why": "test"}))
}

pub(super) fn token(id: &str, created_at: i64, expires_at: i64, uses_left: i64) -> JoinTokenRow {
    JoinTokenRow {
        id: id.into(),
        hash: format!("hash-{id}"),
        created_at,
        created_by: "key:test".into(),
        expires_at,
        uses_left,
        labels: None,
    }
}

pub(super) fn agent_row(id: &str, name: &str) -> AgentRow {
    AgentRow {
        id: id.into(),
        name: name.into(),
        cred_hash: format!("cred-{id}"),
        labels: Labels::from([("role".into(), "web".into()), ("zone".into(), "a".into())]),
        label_edits: Default::default(),
        allowed_labels: None,
        facts: Facts {
            hostname: name.into(),
            os: "debian".into(),
            cpus: 4,
            ..Default::default()
        },
        metrics: None,
        version: "1.0".into(),
        created_at: 100,
        last_seen: None,
        revoked_at: None,
    }
}

/// Joins agents `(id, name)` with a token of as many uses.
pub(super) async fn join_all(store: &dyn Store, agents: &[(String, String)]) -> Result<()> {
    let tok = format!("bulk-{}", agents.first().map_or("", |a| a.0.as_str()));
    store
        .create_join_token(
            &token(&tok, 1, i64::MAX, agents.len() as i64),
            &entry("token.create", &format!("token:{tok}")),
        )
        .await?;
    for (id, name) in agents {
        let outcome = store
            .join_agent(
                &tok,
                10,
                &agent_row(id, name),
                &entry("agent.join", &format!("agent:{name}")),
            )
            .await?;
        assert_eq!(outcome, JoinOutcome::Joined, "{name}");
    }
    Ok(())
}

pub(super) fn run_row(id: &str, created_at: i64) -> RunRow {
    RunRow {
        id: id.into(),
        command: "uptime".into(),
        selector: "role=web".into(),
        spec: RunSpec {
            timeout_ms: 30_000,
            tty: true,
            env: BTreeMap::from([("LANG".into(), "C".into())]),
            cwd: "/tmp".into(),
            ..Default::default()
        },
        created_by: "key:test".into(),
        created_at,
        cancel_requested: false,
        state: RunState::Running,
        finished_at: None,
    }
}

pub(super) fn new_task(id: &str, agent: &str, state: TaskState) -> NewTask {
    NewTask {
        id: id.into(),
        agent_id: format!("a-{agent}"),
        agent_name: format!("m-{agent}"),
        state,
        reason: None,
    }
}

/// A run `run_id` with one task per id, all in `state`.
pub(super) async fn run_with(
    store: &dyn Store,
    run_id: &str,
    created_at: i64,
    ids: &[String],
    state: TaskState,
) -> Result<()> {
    let tasks: Vec<NewTask> = ids.iter().map(|id| new_task(id, id, state)).collect();
    store
        .create_run(
            &run_row(run_id, created_at),
            &tasks,
            &entry("run.create", &format!("run:{run_id}")),
        )
        .await
}

pub(super) fn task_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

pub(super) fn exit(code: i32, at: i64) -> Exit {
    Exit {
        state: if code == 0 {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        },
        code: Some(code),
        signal: None,
        reason: "exited".into(),
        detail: String::new(),
        at,
        outputs: None,
    }
}

pub(super) fn progress(id: &str, seq: u64, total: u64) -> TaskProgress {
    TaskProgress {
        task_id: id.into(),
        seq,
        out: OutputPos {
            total,
            head_len: total + 8,
            tail_seg: 0,
            tail_len: 0,
        },
        ..Default::default()
    }
}

pub(super) async fn task(store: &dyn Store, id: &str) -> Result<TaskRow> {
    store
        .task(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("task {id}")))
}

pub(super) async fn actions(store: &dyn Store) -> Result<Vec<String>> {
    Ok(store
        .audit_log(1000)
        .await?
        .into_iter()
        .map(|a| a.action)
        .collect())
}

pub(super) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
