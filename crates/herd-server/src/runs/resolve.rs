//! Selectors → the machines they pick, from the fleet index (never the store).

use herd_core::Selector;
use herd_store::Store;

use crate::error::{Result, ServerError};
use crate::fleet::{AgentIndex, matching_revoked};

/// The machines a request picks, as `(id, name)` by name, and how to show the selection.
pub fn resolve(
    index: &AgentIndex,
    targets: &[String],
    all: bool,
) -> Result<(String, Vec<(String, String)>)> {
    if all {
        let agents = index.resolve(&[], true);
        if agents.is_empty() {
            return Err(ServerError::Conflict(
                "no machine has joined yet — start an agent with the command `herd token create` prints".into(),
            ));
        }
        return Ok(("--all".into(), agents));
    }
    if targets.is_empty() {
        return Err(ServerError::BadRequest(
            "no target given — pass -t SELECTOR (e.g. -t web-1, -t role=web) or --all".into(),
        ));
    }
    let mut sels = Vec::with_capacity(targets.len());
    for t in targets {
        sels.push(Selector::parse(t).map_err(|e| ServerError::BadRequest(e.to_string()))?);
    }
    let label = targets.join(" , ");
    let picked = index.resolve(&sels, false);
    if picked.is_empty() {
        return Err(ServerError::Conflict(format!(
            "no machine matches {label:?} ({} known) — see `herd agents` for names and labels",
            index.len()
        )));
    }
    Ok((label, picked))
}

/// Revoked machines (from the store) that any of `targets` picks, by name, leaving out names
/// a live machine has taken since; for saying why a selection found nothing.
pub async fn revoked_matches(
    store: &dyn Store,
    index: &AgentIndex,
    targets: &[String],
) -> Result<Vec<String>> {
    let sels: Vec<Selector> = targets
        .iter()
        .filter_map(|t| Selector::parse(t).ok())
        .collect();
    let mut names: Vec<String> = matching_revoked(store.agents(true).await?, &sels)
        .into_iter()
        .filter(|a| index.by_name(&a.name).is_none())
        .map(|a| a.name)
        .collect();
    names.dedup();
    Ok(names)
}
