//! Retention: finished runs older than `--retention`, and the oldest finished runs while the
//! stored output is over `--retention-size`, are deleted with their tasks and output files,
//! in batches, by a background pass at start and every `--retention-interval` (an hour), and
//! at once by `POST /api/v1/gc` (`herd gc`). A pruned task's fetched file (`herd fetch`) goes
//! with its output, and counts against the size budget like it. Blobs of copy runs unused
//! for longer than `--retention` go too (a run created with one marks it used).
//!
//! **Invariant:** a run that has not finished, or that has a task still queued, dispatched
//! or running, is never pruned (the store's `prune_runs` guarantees it in its own query);
//! audit entries are never deleted. Rows go first, then files, so a failure leaves at worst
//! orphaned files, never a task whose output is gone.

use std::sync::Arc;
use std::time::Duration;

use herd_api::GcReport;
use herd_outlog::OutputLog;
use herd_store::{AuditEntry, Store, now_ms};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::blobs::Blobs;
use crate::error::Result;
use crate::fetched::Fetched;

/// Runs deleted per store transaction when pruning by age.
const AGE_BATCH: i64 = 200;
/// Runs deleted per store transaction while over the size budget (small, so a pass stops
/// close to the budget).
const SIZE_BATCH: i64 = 10;

/// How long and how much is kept.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Finished runs older than this are pruned.
    pub max_age: Duration,
    /// While stored output is over this many bytes, the oldest finished runs are pruned.
    pub max_bytes: Option<u64>,
    /// How often the background pass runs.
    pub interval: Duration,
}

pub struct Retention {
    store: Arc<dyn Store>,
    outlog: Arc<OutputLog>,
    fetched: Arc<Fetched>,
    blobs: Arc<Blobs>,
    policy: RetentionPolicy,
    /// One pass at a time (the background loop and `herd gc`).
    pass: tokio::sync::Mutex<()>,
}

impl Retention {
    pub fn new(
        store: Arc<dyn Store>,
        outlog: Arc<OutputLog>,
        fetched: Arc<Fetched>,
        blobs: Arc<Blobs>,
        policy: RetentionPolicy,
    ) -> Self {
        Retention {
            store,
            outlog,
            fetched,
            blobs,
            policy,
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Prunes now, on a person's request, and records it in the audit log with what it freed.
    pub async fn gc(&self, actor: &str) -> Result<GcReport> {
        let report = self.prune().await?;
        self.store
            .append_audit(&AuditEntry::new(
                actor,
                "gc",
                "runs",
                json!({"runs": report.runs, "tasks": report.tasks, "bytes": report.bytes}),
            ))
            .await?;
        Ok(report)
    }

    /// One pass: by age, then by size.
    pub async fn prune(&self) -> Result<GcReport> {
        let _one = self.pass.lock().await;
        let mut report = GcReport::default();
        let age_ms = i64::try_from(self.policy.max_age.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(age_ms);
        while self.batch(before, AGE_BATCH, &mut report).await? {}
        loop {
            let n = self.store.prune_flow_runs(before, AGE_BATCH).await?;
            report.workflow_runs += n;
            if n == 0 {
                break;
            }
        }
        loop {
            let n = self.store.prune_schedule_fires(before, AGE_BATCH).await?;
            report.schedule_fires += n;
            if n == 0 {
                break;
            }
        }
        let unused_since = std::time::SystemTime::now()
            .checked_sub(self.policy.max_age)
            .unwrap_or(std::time::UNIX_EPOCH);
        let blobs = self.blobs.clone();
        let (count, bytes) = tokio::task::spawn_blocking(move || blobs.prune(unused_since))
            .await
            .unwrap_or((0, 0));
        report.blobs += count;
        report.bytes += bytes;
        if let Some(budget) = self.policy.max_bytes {
            let mut used = self.usage().await;
            while used > budget {
                let freed_before = report.bytes;
                if !self.batch(i64::MAX, SIZE_BATCH, &mut report).await? {
                    break;
                }
                used = used.saturating_sub(report.bytes - freed_before);
            }
        }
        if report.runs > 0
            || report.blobs > 0
            || report.workflow_runs > 0
            || report.schedule_fires > 0
        {
            tracing::info!(
                runs = report.runs,
                tasks = report.tasks,
                blobs = report.blobs,
                workflow_runs = report.workflow_runs,
                schedule_fires = report.schedule_fires,
                bytes = report.bytes,
                "retention pruned old runs"
            );
        }
        Ok(report)
    }

    /// Deletes one batch of runs finished before `before`; false when there was none.
    async fn batch(&self, before: i64, limit: i64, report: &mut GcReport) -> Result<bool> {
        let pruned = self.store.prune_runs(before, limit).await?;
        if pruned.runs.is_empty() {
            return Ok(false);
        }
        report.runs += pruned.runs.len() as u64;
        report.tasks += pruned.tasks.len() as u64;
        let outlog = self.outlog.clone();
        let fetched = self.fetched.clone();
        let tasks = pruned.tasks;
        let freed = tokio::task::spawn_blocking(move || {
            let mut freed = 0u64;
            for t in &tasks {
                match outlog.remove(t) {
                    Ok(n) => freed += n,
                    Err(e) => {
                        tracing::warn!(task = %t, error = %e, "retention cannot delete output")
                    }
                }
                freed += fetched.remove(t);
            }
            freed
        })
        .await
        .unwrap_or(0);
        report.bytes += freed;
        Ok(true)
    }

    async fn usage(&self) -> u64 {
        let outlog = self.outlog.clone();
        let fetched = self.fetched.clone();
        match tokio::task::spawn_blocking(move || outlog.usage().map(|n| n + fetched.usage())).await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retention cannot measure stored output");
                0
            }
            Err(_) => 0,
        }
    }

    /// Prunes at start and every interval until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.prune().await {
                tracing::warn!(error = %e, "retention pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.policy.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
