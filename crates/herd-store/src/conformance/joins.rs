//! Joins at the same time: a token's use is taken only by a join that records its agent.

use futures::future::join_all;

use super::fixtures::*;
use crate::model::*;
use crate::{Result, Store, StoreError};

/// `count` joins started together on `tok`, agent ids `{prefix}{i}`, names from `name(i)`.
async fn joins_at_once(
    store: &dyn Store,
    tok: &str,
    prefix: &str,
    count: usize,
    name: impl Fn(usize) -> String,
) -> Vec<Result<JoinOutcome>> {
    let rows: Vec<(AgentRow, AuditEntry)> = (0..count)
        .map(|i| {
            let name = name(i);
            let audit = entry("agent.join", &format!("agent:{name}"));
            (agent_row(&format!("{prefix}{i}"), &name), audit)
        })
        .collect();
    join_all(
        rows.iter()
            .map(|(agent, audit)| store.join_agent(tok, 500, agent, audit)),
    )
    .await
}

fn uses_left(t: Option<JoinTokenRow>) -> Option<i64> {
    t.map(|t| t.uses_left)
}

/// Eight joins at once with one name and one token of three uses: one joins, the others are
/// told the name is taken and leave the token's uses; a join refused for its id takes none
/// either; eight at once with their own names on three uses: three join, and the token is
/// never taken below zero.
pub async fn concurrent_joins_take_a_use_only_when_they_join(store: &dyn Store) -> Result<()> {
    store
        .create_join_token(
            &token("race", 1, 1000, 3),
            &entry("token.create", "token:race"),
        )
        .await?;
    let outcomes = joins_at_once(store, "race", "r", 8, |_| "same".into()).await;
    let mut joined = Vec::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        match o? {
            JoinOutcome::Joined => joined.push(format!("r{i}")),
            JoinOutcome::NameTaken => {}
            other => panic!("join r{i}: {other:?}"),
        }
    }
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(uses_left(store.join_token("race").await?), Some(2));
    let live = store.agents(false).await?;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(
        (live[0].id.as_str(), live[0].name.as_str()),
        (joined[0].as_str(), "same")
    );
    let audited = actions(store).await?;
    assert_eq!(
        audited.iter().filter(|a| *a == "agent.join").count(),
        1,
        "{audited:?}"
    );

    // The id of an agent that exists (under another name): refused, no use taken.
    let again = store
        .join_agent(
            "race",
            500,
            &agent_row(&joined[0], "other"),
            &entry("agent.join", "agent:other"),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(uses_left(store.join_token("race").await?), Some(2));

    // Its two uses are still there for other names.
    let outcomes = joins_at_once(store, "race", "n", 2, |i| format!("next-{i}")).await;
    for o in outcomes {
        assert_eq!(o?, JoinOutcome::Joined);
    }
    assert_eq!(uses_left(store.join_token("race").await?), Some(0));

    // More joins at once than uses: exactly as many join as there were uses.
    store
        .create_join_token(
            &token("few", 1, 1000, 3),
            &entry("token.create", "token:few"),
        )
        .await?;
    let outcomes = joins_at_once(store, "few", "f", 8, |i| format!("few-{i}")).await;
    let mut count = 0;
    for o in outcomes {
        match o? {
            JoinOutcome::Joined => count += 1,
            JoinOutcome::TokenSpent => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(count, 3);
    assert_eq!(uses_left(store.join_token("few").await?), Some(0));
    assert_eq!(store.agents(false).await?.len(), 6);
    Ok(())
}
