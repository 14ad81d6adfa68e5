//! Cases of agents (join, labels, revoke, flushes) and credentials.

use std::collections::BTreeMap;

use herd_core::{Facts, Labels, Metrics};
use serde_json::json;

use super::fixtures::*;
use crate::model::*;
use crate::{ROWS_PER_STATEMENT, Result, Store, StoreError};

/// A join takes one use of a live token and records the agent with its audit entry; a spent
/// or expired token, or a taken name, records nothing and keeps the token's uses.
pub async fn join_outcomes(store: &dyn Store) -> Result<()> {
    store
        .create_join_token(&token("t2", 1, 1000, 2), &entry("token.create", "token:t2"))
        .await?;
    store
        .create_join_token(
            &token("old", 1, 400, 5),
            &entry("token.create", "token:old"),
        )
        .await?;
    let join = |id: &'static str, name: &'static str, tok: &'static str| async move {
        let audit = entry("agent.join", &format!("agent:{name}"));
        store
            .join_agent(tok, 500, &agent_row(id, name), &audit)
            .await
    };

    assert_eq!(join("a1", "m1", "t2").await?, JoinOutcome::Joined);
    assert_eq!(store.agent("a1").await?, Some(agent_row("a1", "m1")));
    let joins = store.audit_log(10).await?;
    assert_eq!(
        (joins[0].action.as_str(), joins[0].target.as_str()),
        ("agent.join", "agent:m1")
    );
    assert_eq!(joins[0].actor, "key:test");
    assert_eq!(joins[0].detail, json!({"why": "test"}));
    assert_eq!(store.join_token("t2").await?.map(|t| t.uses_left), Some(1));

    // A live agent has that name: nothing recorded, the use given back.
    assert_eq!(join("a2", "m1", "t2").await?, JoinOutcome::NameTaken);
    assert_eq!(store.agent("a2").await?, None);
    assert_eq!(store.join_token("t2").await?.map(|t| t.uses_left), Some(1));

    assert_eq!(join("a3", "m3", "t2").await?, JoinOutcome::Joined);
    assert_eq!(store.join_token("t2").await?.map(|t| t.uses_left), Some(0));
    // Used up, expired (expires_at 400 < now 500), unknown.
    assert_eq!(join("a4", "m4", "t2").await?, JoinOutcome::TokenSpent);
    assert_eq!(join("a5", "m5", "old").await?, JoinOutcome::TokenSpent);
    assert_eq!(join("a6", "m6", "nope").await?, JoinOutcome::TokenSpent);
    for id in ["a4", "a5", "a6"] {
        assert_eq!(store.agent(id).await?, None, "{id}");
    }
    assert_eq!(store.join_token("old").await?.map(|t| t.uses_left), Some(5));
    let joined = actions(store).await?;
    assert_eq!(joined.iter().filter(|a| *a == "agent.join").count(), 2);
    assert_eq!(
        store
            .agents(false)
            .await?
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["m1", "m3"]
    );
    Ok(())
}

/// Operator label edits override and remove reported labels; a revoked agent stays revoked,
/// is listed only on request, and its name is free again.
pub async fn label_edits_and_revoke(store: &dyn Store) -> Result<()> {
    let agents = [("a1", "m1"), ("a2", "m2")].map(|(i, n)| (i.to_string(), n.to_string()));
    join_all(store, &agents).await?;

    // The agent declares other labels: stored with their audit entry.
    let declared = Labels::from([("role".into(), "web".into()), ("zone".into(), "b".into())]);
    let row = store
        .set_declared_labels("a1", &declared, &entry("agent.labels", "agent:m1"))
        .await?
        .ok_or_else(|| StoreError::NotFound("agent a1".into()))?;
    assert_eq!(row.labels, declared);
    assert_eq!(store.agent("a1").await?.map(|a| a.labels), Some(declared));
    assert!(
        store
            .audit_log(10)
            .await?
            .iter()
            .any(|e| e.action == "agent.labels" && e.target == "agent:m1")
    );
    assert_eq!(
        store
            .set_declared_labels("nope", &Labels::new(), &entry("agent.labels", "agent:nope"))
            .await?,
        None
    );

    let edits = BTreeMap::from([
        ("role".to_string(), Some("db".to_string())),
        ("zone".to_string(), None),
        ("tier".to_string(), Some("1".to_string())),
    ]);
    let edited = store
        .set_label_edits("a1", &edits, &entry("agent.label", "agent:m1"))
        .await?;
    let edited = edited.ok_or_else(|| StoreError::NotFound("agent a1".into()))?;
    assert_eq!(edited.label_edits, edits);
    assert_eq!(
        edited.effective_labels(),
        Labels::from([("role".into(), "db".into()), ("tier".into(), "1".into())])
    );
    assert_eq!(store.agent("a1").await?, Some(edited));
    assert_eq!(
        store
            .set_label_edits("nope", &edits, &entry("agent.label", "agent:nope"))
            .await?,
        None
    );

    let revoked = store
        .revoke_agent("a2", 700, &entry("agent.revoke", "agent:m2"))
        .await?;
    assert_eq!(revoked.and_then(|a| a.revoked_at), Some(700));
    // Revoking again keeps the first revocation.
    let again = store
        .revoke_agent("a2", 800, &entry("agent.revoke", "agent:m2"))
        .await?;
    assert_eq!(again.and_then(|a| a.revoked_at), Some(700));
    assert_eq!(
        store
            .revoke_agent("nope", 800, &entry("agent.revoke", "agent:nope"))
            .await?,
        None
    );
    let names = |v: Vec<AgentRow>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(names(store.agents(false).await?), ["a1"]);
    assert_eq!(names(store.agents(true).await?), ["a1", "a2"]);

    // The name of a revoked agent can join again.
    join_all(store, &[("a2b".into(), "m2".into())]).await?;
    assert_eq!(names(store.agents(false).await?), ["a1", "a2b"]);
    let log = actions(store).await?;
    assert_eq!(log.iter().filter(|a| *a == "agent.label").count(), 1);
    assert!(log.iter().filter(|a| *a == "agent.revoke").count() >= 2);
    Ok(())
}

/// Hellos and heartbeats of more agents than one statement carries land in one call; an
/// agent named twice in a batch takes its latest report; metrics absent keep the old ones.
pub async fn flush_agents_of_many_agents(store: &dyn Store) -> Result<()> {
    let n = ROWS_PER_STATEMENT + 5;
    let agents: Vec<(String, String)> =
        (0..n).map(|i| (format!("a{i}"), format!("m{i}"))).collect();
    join_all(store, &agents).await?;
    let metrics = |cpu: f64| Metrics {
        cpu_percent: cpu,
        memory_total_bytes: 1 << 30,
        load1: 0.5,
        ..Default::default()
    };
    let first: Vec<AgentFlush> = (0..n)
        .map(|i| AgentFlush {
            id: format!("a{i}"),
            last_seen: 1000,
            metrics: Some(metrics(1.0)),
            hello: None,
        })
        .collect();
    store.flush_agents(&first).await?;

    let hello = |i: usize| AgentHello {
        labels: Labels::from([("n".into(), i.to_string())]),
        facts: Facts {
            hostname: format!("host{i}"),
            memory_bytes: 1 << 33,
            ..Default::default()
        },
        version: "2.0".into(),
    };
    let mut second: Vec<AgentFlush> = (0..n)
        .map(|i| AgentFlush {
            id: format!("a{i}"),
            last_seen: 2000 + i as i64,
            metrics: (i % 3 != 0).then(|| metrics(i as f64)),
            hello: (i % 2 == 0).then(|| hello(i)),
        })
        .collect();
    second.push(AgentFlush {
        id: "a1".into(),
        last_seen: 9000,
        metrics: Some(metrics(99.0)),
        hello: Some(hello(77)),
    });
    store.flush_agents(&second).await?;
    store.flush_agents(&[]).await?;

    let all = store.agents(false).await?;
    assert_eq!(all.len(), n);
    for a in all {
        let i: usize = a.id[1..]
            .parse()
            .map_err(|_| StoreError::Invalid(a.id.clone()))?;
        let (seen, cpu, hello_of) = match i {
            1 => (9000, 99.0, Some(77)),
            _ => (
                2000 + i as i64,
                if !i.is_multiple_of(3) { i as f64 } else { 1.0 },
                i.is_multiple_of(2).then_some(i),
            ),
        };
        assert_eq!(a.last_seen, Some(seen), "{}", a.id);
        assert_eq!(a.metrics, Some(metrics(cpu)), "{}", a.id);
        match hello_of {
            Some(h) => {
                let want = hello(h);
                assert_eq!(
                    (a.labels, a.facts, a.version),
                    (want.labels, want.facts, want.version)
                );
            }
            None => {
                let want = agent_row(&a.id, &a.name);
                assert_eq!(
                    (a.labels, a.facts, a.version),
                    (want.labels, want.facts, want.version)
                );
            }
        }
    }
    Ok(())
}

// ---- credentials ------------------------------------------------------------------------

pub async fn api_keys_round_trip(store: &dyn Store) -> Result<()> {
    let key = |id: &str, created_at: i64| ApiKeyRow {
        id: id.into(),
        name: format!("name-{id}"),
        hash: format!("hash-{id}"),
        role: if id == "k2" { "operator" } else { "admin" }.into(),
        scope: (id == "k2").then(|| "role=web".into()),
        created_at,
        created_by: "bootstrap".into(),
        revoked_at: None,
    };
    assert_eq!(store.count_api_keys().await?, 0);
    for (id, at) in [("k3", 30), ("k1", 10), ("k2", 20)] {
        store
            .create_api_key(&key(id, at), &entry("key.create", &format!("key:{id}")))
            .await?;
    }
    assert_eq!(store.count_api_keys().await?, 3);
    assert_eq!(store.api_key("k2").await?, Some(key("k2", 20)));
    assert_eq!(store.api_key("nope").await?, None);
    assert_eq!(
        store.api_keys().await?,
        vec![key("k1", 10), key("k2", 20), key("k3", 30)]
    );
    assert_eq!(actions(store).await?, ["key.create"; 3]);
    Ok(())
}

pub async fn join_tokens_round_trip(store: &dyn Store) -> Result<()> {
    for (id, at) in [("j1", 5), ("j3", 15), ("j2", 10)] {
        store
            .create_join_token(&token(id, at, at + 100, 3), &entry("token.create", id))
            .await?;
    }
    assert_eq!(store.join_token("j3").await?, Some(token("j3", 15, 115, 3)));
    assert_eq!(store.join_token("nope").await?, None);
    let newest_first: Vec<String> = store
        .join_tokens()
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(newest_first, ["j3", "j2", "j1"]);
    assert_eq!(actions(store).await?, ["token.create"; 3]);
    Ok(())
}

/// A token's labels round-trip (a token without them allows any), and an agent keeps the
/// labels it was allowed: what it reports beyond them is a claim, not a label selectors see.
pub async fn token_labels_bound_what_an_agent_holds(store: &dyn Store) -> Result<()> {
    let allowed = Labels::from([("role".into(), "web".into()), ("rack".into(), "*".into())]);
    let mut t = token("tl", 1, 1000, 2);
    t.labels = Some(allowed.clone());
    store
        .create_join_token(&t, &entry("token.create", "token:tl"))
        .await?;
    assert_eq!(store.join_token("tl").await?, Some(t));
    assert_eq!(store.join_tokens().await?[0].labels, Some(allowed.clone()));
    let mut row = agent_row("al", "claimer");
    row.labels = Labels::from([
        ("role".into(), "db".into()),
        ("rack".into(), "r7".into()),
        ("zone".into(), "a".into()),
    ]);
    row.allowed_labels = Some(allowed);
    let audit = entry("agent.join", "agent:claimer");
    assert_eq!(
        store.join_agent("tl", 500, &row, &audit).await?,
        JoinOutcome::Joined
    );
    let stored = store.agent("al").await?.expect("the agent that joined");
    assert_eq!(stored, row);
    assert_eq!(
        stored.effective_labels(),
        Labels::from([("rack".into(), "r7".into())])
    );
    assert_eq!(
        stored.label_claims().keys().collect::<Vec<_>>(),
        ["role", "zone"]
    );
    // A restart that declares other labels keeps the bound.
    let declared = Labels::from([("role".into(), "web".into())]);
    store
        .set_declared_labels("al", &declared, &entry("agent.labels", "agent:claimer"))
        .await?;
    let stored = store.agent("al").await?.expect("the agent");
    assert_eq!(stored.allowed_labels, row.allowed_labels);
    assert_eq!(stored.effective_labels(), declared);
    Ok(())
}

/// Key names are unique (revoked keys keep theirs); revoking sets `revoked_at` once, with its
/// audit entry; an unknown key changes nothing and records nothing.
pub async fn api_key_names_are_unique_and_keys_revoke(store: &dyn Store) -> Result<()> {
    let key = |id: &str, name: &str| ApiKeyRow {
        id: id.into(),
        name: name.into(),
        hash: format!("hash-{id}"),
        role: "admin".into(),
        scope: None,
        created_at: 10,
        created_by: "bootstrap".into(),
        revoked_at: None,
    };
    store
        .create_api_key(&key("k1", "ci"), &entry("key.create", "key:k1"))
        .await?;
    match store
        .create_api_key(&key("k2", "ci"), &entry("key.create", "key:k2"))
        .await
    {
        Err(StoreError::Conflict(why)) => assert!(why.contains("\"ci\""), "{why}"),
        other => panic!("a second key named ci: {other:?}"),
    }
    assert_eq!(store.api_key("k2").await?, None);
    assert_eq!(actions(store).await?, ["key.create"]);

    let revoked = store
        .revoke_api_key("k1", 50, &entry("key.revoke", "key:k1"))
        .await?;
    assert_eq!(
        revoked,
        Some(ApiKeyRow {
            revoked_at: Some(50),
            ..key("k1", "ci")
        })
    );
    // A second revocation keeps the first time.
    let again = store
        .revoke_api_key("k1", 90, &entry("key.revoke", "key:k1"))
        .await?;
    assert_eq!(again.and_then(|k| k.revoked_at), Some(50));
    assert_eq!(
        store
            .revoke_api_key("nope", 90, &entry("key.revoke", "key:nope"))
            .await?,
        None
    );
    assert_eq!(
        actions(store).await?,
        ["key.revoke", "key.revoke", "key.create"]
    );
    // The revoked key keeps its name.
    assert!(matches!(
        store
            .create_api_key(&key("k3", "ci"), &entry("key.create", "key:k3"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    Ok(())
}

/// A revoked join token has no use left, so no machine joins with it.
pub async fn join_tokens_revoke(store: &dyn Store) -> Result<()> {
    store
        .create_join_token(
            &token("j1", 5, i64::MAX, 3),
            &entry("token.create", "token:j1"),
        )
        .await?;
    let revoked = store
        .revoke_join_token("j1", &entry("token.revoke", "token:j1"))
        .await?;
    assert_eq!(revoked, Some(token("j1", 5, i64::MAX, 0)));
    assert_eq!(
        store
            .revoke_join_token("nope", &entry("token.revoke", "token:nope"))
            .await?,
        None
    );
    let outcome = store
        .join_agent(
            "j1",
            10,
            &agent_row("a1", "web-1"),
            &entry("agent.join", "agent:a1"),
        )
        .await?;
    assert_eq!(outcome, JoinOutcome::TokenSpent);
    assert_eq!(store.agent("a1").await?, None);
    Ok(())
}

/// Label edits of many agents land together, one audit entry per agent; unknown ids are
/// skipped.
pub async fn many_label_edits_in_one_change(store: &dyn Store) -> Result<()> {
    store
        .create_join_token(
            &token("t", 1, i64::MAX, 5),
            &entry("token.create", "token:t"),
        )
        .await?;
    for (id, name) in [("a1", "web-1"), ("a2", "web-2")] {
        store
            .join_agent("t", 2, &agent_row(id, name), &entry("agent.join", id))
            .await?;
    }
    let edits: herd_core::LabelEdits = [("role".to_string(), Some("web".to_string()))]
        .into_iter()
        .collect();
    let changes: Vec<(String, herd_core::LabelEdits, AuditEntry)> = ["a1", "a2", "nope"]
        .into_iter()
        .map(|id| {
            (
                id.to_string(),
                edits.clone(),
                entry("agent.label", &format!("agent:{id}")),
            )
        })
        .collect();
    let rows = store.set_many_label_edits(&changes).await?;
    assert_eq!(
        rows.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    for id in ["a1", "a2"] {
        let a = store
            .agent(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.into()))?;
        assert_eq!(a.label_edits, edits, "{id}");
    }
    let labelled = store
        .audit_log(100)
        .await?
        .into_iter()
        .filter(|e| e.action == "agent.label")
        .map(|e| e.target)
        .collect::<Vec<_>>();
    assert_eq!(sorted(labelled), ["agent:a1", "agent:a2"]);
    Ok(())
}

/// Variables: set (and set again), read, listed by scope, deleted, each change audited; a
/// deleted variable is gone and deleting it again changes nothing.
pub async fn vars_round_trip(store: &dyn Store) -> Result<()> {
    let var = |key: &str, value: &str, secret: bool| VarRow {
        scope: "global".into(),
        key: key.into(),
        value: value.into(),
        secret,
        updated_at: 10,
        updated_by: "key:test".into(),
    };
    store
        .set_var(&var("region", "eu", false), &entry("var.set", "var:region"))
        .await?;
    store
        .set_var(
            &var("db_pw", "sealed:abc", true),
            &entry("var.set", "var:db_pw"),
        )
        .await?;
    let mut other = var("region", "us", false);
    other.scope = "job:deploy".into();
    store
        .set_var(&other, &entry("var.set", "var:region"))
        .await?;
    // Set again: replaced, not added.
    let again = VarRow {
        updated_at: 20,
        ..var("region", "eu-west", false)
    };
    store
        .set_var(&again, &entry("var.set", "var:region"))
        .await?;
    assert_eq!(store.var("global", "region").await?, Some(again));
    assert_eq!(store.var("global", "nope").await?, None);
    let keys: Vec<String> = store
        .vars("global")
        .await?
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(keys, ["db_pw", "region"]);
    assert!(store.vars("global").await?[0].secret);
    assert_eq!(store.vars("job:deploy").await?.len(), 1);
    let gone = store
        .delete_var("global", "db_pw", &entry("var.rm", "var:db_pw"))
        .await?;
    assert_eq!(gone.map(|v| v.key), Some("db_pw".to_string()));
    assert_eq!(
        store
            .delete_var("global", "db_pw", &entry("var.rm", "var:db_pw"))
            .await?,
        None
    );
    // Newest first.
    assert_eq!(
        actions(store).await?,
        ["var.rm", "var.set", "var.set", "var.set", "var.set"]
    );
    Ok(())
}

/// Policy versions: each stored as the latest plus one with its audit entry; another number
/// is a conflict and stores nothing.
pub async fn policies_by_version(store: &dyn Store) -> Result<()> {
    assert_eq!(store.policy_version().await?, 0);
    assert_eq!(store.policy(None).await?, None);
    let row = |version: i64| PolicyRow {
        version,
        body: format!("{{\"v\":{version}}}"),
        created_at: 10 * version,
        created_by: "key:admin".into(),
    };
    store
        .put_policy(&row(1), &entry("policy.set", "policy:1"))
        .await?;
    for wrong in [1, 3] {
        match store
            .put_policy(&row(wrong), &entry("policy.set", "policy:x"))
            .await
        {
            Err(StoreError::Conflict(why)) => assert!(why.contains("next version"), "{why}"),
            other => panic!("version {wrong} after 1: {other:?}"),
        }
    }
    store
        .put_policy(&row(2), &entry("policy.set", "policy:2"))
        .await?;
    assert_eq!(store.policy_version().await?, 2);
    assert_eq!(store.policy(None).await?, Some(row(2)));
    assert_eq!(store.policy(Some(1)).await?, Some(row(1)));
    assert_eq!(store.policy(Some(7)).await?, None);
    assert_eq!(store.policies().await?, vec![row(2), row(1)]);
    assert_eq!(actions(store).await?, ["policy.set"; 2]);
    Ok(())
}
