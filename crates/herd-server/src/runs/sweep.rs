//! The lost-task sweep: a task sent to an agent that stays away longer than `--lost-after`
//! ends `lost`. Only agents away that long and not swept since they left are looked at, so
//! the sweep costs nothing while the fleet is connected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herd_core::TaskState;
use herd_store::now_ms;
use tokio_util::sync::CancellationToken;

use super::driver::{DriverCtx, Drivers};

pub async fn sweep_lost(
    ctx: Arc<DriverCtx>,
    drivers: Arc<Drivers>,
    lost_after: Duration,
    shutdown: CancellationToken,
) {
    let period = (lost_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => return,
        }
        let away = ctx.registry.away_unswept(lost_after);
        if away.is_empty() {
            continue;
        }
        let ids: Vec<String> = away.iter().map(|(id, _)| id.clone()).collect();
        let open = match ctx.store.open_tasks_of_agents(&ids).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "lost-task sweep cannot read open tasks");
                continue;
            }
        };
        // Waiting for a slot is not being lost: the run's driver reaches it in its turn.
        let mut by_agent: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for t in open.into_iter().filter(|t| t.state != TaskState::Queued) {
            by_agent
                .entry((t.agent_id, t.agent_name))
                .or_default()
                .push((t.id, t.run_id));
        }
        let mut failed = false;
        for ((_, name), tasks) in by_agent {
            let reason = format!(
                "its agent {name} did not come back within {}",
                herd_core::format_duration(lost_after)
            );
            let task_ids: Vec<String> = tasks.iter().map(|(t, _)| t.clone()).collect();
            let runs: BTreeMap<&str, &str> = tasks
                .iter()
                .map(|(t, r)| (t.as_str(), r.as_str()))
                .collect();
            match ctx
                .store
                .end_tasks(&task_ids, TaskState::Lost, &reason, now_ms())
                .await
            {
                Ok(changed) => {
                    for id in changed {
                        if let Some(run_id) = runs.get(id.as_str()) {
                            ctx.events.task_changed(run_id, &id);
                            drivers.task_ended(run_id, &id, TaskState::Lost);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost-task sweep cannot end tasks");
                    failed = true;
                }
            }
        }
        if !failed {
            ctx.registry.mark_swept(&away);
        }
    }
}
