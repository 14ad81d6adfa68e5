//! The conformance suite every backend passes: the same cases, run against a fresh store of
//! each backend. A backend's `tests/conformance.rs` gives a function that makes a [`Fresh`]
//! store and invokes [`conformance_suite!`](crate::conformance_suite), which generates one
//! `#[tokio::test]` per case (the backend's tests need `tokio` as a dev-dependency).
//!
//! A case returns an error when the store fails a call and panics when the store answers
//! wrongly.

use std::future::Future;
use std::pin::Pin;

use crate::{Result, Store};

mod agents;
mod alerts;
mod ask;
mod audit;
mod fixtures;
mod flows;
mod joins;
mod langflow;
mod progress;
mod runs;
mod schedules;

pub use agents::*;
pub use alerts::*;
pub use ask::*;
pub use audit::*;
pub use flows::*;
pub use joins::*;
pub use langflow::*;
pub use progress::*;
pub use runs::*;
pub use schedules::*;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A backend's test-only way to write what the store itself never writes (corrupt rows).
pub type RawSql = Box<dyn Fn(String) -> BoxFuture<Result<()>> + Send + Sync>;

/// A fresh, empty store for one case, with its backend's raw SQL and what to do after the
/// case (remove its file, drop its database).
pub struct Fresh {
    store: Box<dyn Store>,
    raw: RawSql,
    after: Option<BoxFuture<()>>,
}

impl Fresh {
    pub fn new(
        store: impl Store + 'static,
        raw: impl Fn(String) -> BoxFuture<Result<()>> + Send + Sync + 'static,
    ) -> Fresh {
        Fresh {
            store: Box::new(store),
            raw: Box::new(raw),
            after: None,
        }
    }

    /// Runs `f` once the case is done and the store closed.
    pub fn after(mut self, f: impl Future<Output = ()> + Send + 'static) -> Fresh {
        self.after = Some(Box::pin(f));
        self
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Executes a statement behind the store's back.
    pub async fn raw(&self, sql: &str) -> Result<()> {
        (self.raw)(sql.to_string()).await
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some(f) = self.after {
            f.await;
        }
    }
}

/// Generates one `#[tokio::test]` per conformance case, each on a store made by `$fresh`
/// (an `async fn() -> herd_store::conformance::Fresh`).
#[macro_export]
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::conformance_suite!(@store $fresh;
            join_outcomes,
            concurrent_joins_take_a_use_only_when_they_join,
            label_edits_and_revoke,
            flush_agents_of_many_agents,
            api_keys_round_trip,
            join_tokens_round_trip,
            token_labels_bound_what_an_agent_holds,
            vars_round_trip,
            api_key_names_are_unique_and_keys_revoke,
            policies_by_version,
            join_tokens_revoke,
            many_label_edits_in_one_change,
            create_run_with_final_tasks,
            queued_tasks_are_claimed_or_ended_once,
            end_tasks_apply_only_where_the_transition_does,
            progress_of_thousands_of_tasks_lands_in_one_call,
            progress_only_moves_forward_and_ended_tasks_keep_their_end,
            an_exit_revives_a_lost_task,
            outputs_are_stored_with_the_exit,
            supervision_is_kept_with_the_seq,
            cancel_and_finish_run,
            run_and_task_listings,
            listings_filter_by_time_state_machine_and_actor,
            ids_by_prefix,
            prune_finished_runs_oldest_first,
            audit_log_newest_first,
            definitions_by_version,
            concurrent_puts_make_one_version,
            flow_runs_and_their_steps,
            step_attempts_and_names,
            many_steps_in_one_update,
            pruning_runs_leaves_workflow_runs,
            pruning_workflow_runs_keeps_unfinished_ones,
            schedules_fire_once,
            schedules_edit_in_place,
            langflow_sources_and_syncs,
            ask_runs_attempts_and_exchanges,
            pruning_takes_ask_records,
            alert_rules_and_alerts,
        );
        $crate::conformance_suite!(@fresh $fresh;
            corrupt_task_columns,
            corrupt_run_and_agent_columns,
            corrupt_flow_columns,
        );
    };
    (@store $fresh:path; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let fresh = $fresh().await;
            let outcome = $crate::conformance::$case(fresh.store()).await;
            fresh.finish().await;
            if let Err(e) = outcome {
                panic!("{}: {e}", stringify!($case));
            }
        }
    )*};
    (@fresh $fresh:path; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let fresh = $fresh().await;
            let outcome = $crate::conformance::$case(&fresh).await;
            fresh.finish().await;
            if let Err(e) = outcome {
                panic!("{}: {e}", stringify!($case));
            }
        }
    )*};
}
