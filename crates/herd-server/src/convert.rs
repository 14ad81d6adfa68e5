//! Stored rows → what the API answers (herd-api types). Secrets never leave: the rows'
//! hashes have no field to go to.

use herd_api as api;
use herd_store::{AgentRow, ApiKeyRow, AuditRow, JoinTokenRow, RunRow, TaskRow};

pub fn agent(a: AgentRow, online: bool) -> api::Agent {
    let labels = a.effective_labels();
    // An operator's edit that sets a label makes it the server's; the rest the agent declares.
    let label_sources = labels
        .keys()
        .map(|k| {
            let source = if matches!(a.label_edits.get(k), Some(Some(_))) {
                api::LabelSource::Server
            } else {
                api::LabelSource::Agent
            };
            (k.clone(), source)
        })
        .collect();
    api::Agent {
        claims: a.label_claims(),
        labels,
        label_sources,
        id: a.id,
        name: a.name,
        online,
        version: a.version,
        facts: a.facts,
        metrics: a.metrics,
        created_at: a.created_at,
        last_seen: a.last_seen,
        revoked_at: a.revoked_at,
    }
}

pub fn run(r: RunRow) -> api::Run {
    api::Run {
        id: r.id,
        command: r.command,
        selector: r.selector,
        spec: r.spec,
        created_by: r.created_by,
        created_at: r.created_at,
        cancel_requested: r.cancel_requested,
        state: r.state,
        finished_at: r.finished_at,
    }
}

pub fn task(t: TaskRow) -> api::Task {
    let outputs = t.outputs.as_deref().map(herd_core::outputs::parse);
    api::Task {
        id: t.id,
        run_id: t.run_id,
        agent_id: t.agent_id,
        agent_name: t.agent_name,
        state: t.state,
        created_at: t.created_at,
        dispatched_at: t.dispatched_at,
        started_at: t.started_at,
        finished_at: t.finished_at,
        pid: t.pid,
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason,
        detail: t.detail,
        out_seq: t.out_seq.min(i64::MAX as u64) as i64,
        out_total: t.output.total.min(i64::MAX as u64) as i64,
        condition: outputs.as_ref().and_then(|o| o.condition),
        outputs: outputs.map(|o| o.values).unwrap_or_default(),
        // Written by this server from a checked state: one that does not read is left out.
        supervision: t
            .supervision
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok()),
    }
}

pub fn run_with_tasks(r: RunRow, tasks: Vec<TaskRow>) -> api::RunWithTasks {
    api::RunWithTasks {
        run: run(r),
        tasks: tasks.into_iter().map(task).collect(),
    }
}

pub fn api_key(k: ApiKeyRow) -> api::ApiKey {
    api::ApiKey {
        id: k.id,
        name: k.name,
        role: k.role,
        scope: k.scope,
        created_at: k.created_at,
        created_by: k.created_by,
        revoked_at: k.revoked_at,
    }
}

pub fn join_token(t: JoinTokenRow, now: i64) -> api::JoinToken {
    api::JoinToken {
        usable: t.uses_left > 0 && t.expires_at > now,
        id: t.id,
        created_at: t.created_at,
        created_by: t.created_by,
        expires_at: t.expires_at,
        uses_left: t.uses_left,
        labels: t.labels,
    }
}

pub fn audit(e: AuditRow) -> api::AuditEntry {
    api::AuditEntry {
        id: e.id,
        at: e.at,
        actor: e.actor,
        action: e.action,
        target: e.target,
        detail: e.detail,
    }
}
