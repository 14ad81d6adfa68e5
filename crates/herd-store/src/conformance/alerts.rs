//! Alert rules and the alerts they raise.

use super::fixtures::*;
use crate::{AlertRow, AlertRuleRow, AlertUpdate, Result, Store, StoreError};

fn rule(name: &str) -> AlertRuleRow {
    AlertRuleRow {
        name: name.into(),
        spec: r#"{"metric":"disk","warning":80.0}"#.into(),
        created_by: "key:test".into(),
        created_at: 5,
    }
}

fn alert(id: &str, rule: &str, agent: &str, raised_at: i64) -> AlertRow {
    AlertRow {
        id: id.into(),
        rule: rule.into(),
        agent_id: agent.into(),
        agent_name: format!("{agent}-name"),
        metric: "disk".into(),
        level: "warning".into(),
        value: 81.25,
        threshold: 80.0,
        raised_at,
        changed_at: raised_at,
        cleared_at: None,
        escalated: false,
        notified: None,
        runbook_run: None,
        runbook_state: None,
    }
}

pub async fn alert_rules_and_alerts(store: &dyn Store) -> Result<()> {
    store
        .create_alert_rule(&rule("disk"), &entry("alert.rule.add", "alert-rule:disk"))
        .await?;
    store
        .create_alert_rule(&rule("cpu"), &entry("alert.rule.add", "alert-rule:cpu"))
        .await?;
    let dup = store
        .create_alert_rule(&rule("disk"), &entry("alert.rule.add", "alert-rule:disk"))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let rules = store.alert_rules().await?;
    assert_eq!(rules, [rule("cpu"), rule("disk")]);

    // One open alert per rule and machine: a second raise records nothing.
    assert!(store.raise_alert(&alert("x1", "disk", "a1", 10)).await?);
    assert!(!store.raise_alert(&alert("x2", "disk", "a1", 11)).await?);
    assert!(store.raise_alert(&alert("x3", "disk", "a2", 12)).await?);
    assert!(store.raise_alert(&alert("x4", "cpu", "a1", 13)).await?);
    let open: Vec<String> = store
        .alerts(false, 100)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(open, ["x4", "x3", "x1"]);

    let up = AlertUpdate {
        level: Some("critical".into()),
        value: Some(93.5),
        threshold: Some(90.0),
        changed_at: Some(20),
        escalated: Some(true),
        runbook_run: Some("r1".into()),
        runbook_state: Some("running".into()),
        ..AlertUpdate::default()
    };
    assert!(store.update_alert("x1", &up).await?);
    assert!(!store.update_alert("nope", &up).await?);
    let clear = AlertUpdate {
        cleared_at: Some(30),
        value: Some(50.0),
        ..AlertUpdate::default()
    };
    assert!(store.update_alert("x1", &clear).await?);
    // A cleared alert keeps its level and clear; its notification and runbook still land.
    assert!(
        !store
            .update_alert(
                "x1",
                &AlertUpdate {
                    level: Some("warning".into()),
                    cleared_at: Some(40),
                    ..AlertUpdate::default()
                }
            )
            .await?
    );
    let late = AlertUpdate {
        notified: Some("cleared: 200".into()),
        runbook_state: Some("failed".into()),
        ..AlertUpdate::default()
    };
    assert!(store.update_alert("x1", &late).await?);
    let all = store.alerts(true, 100).await?;
    let x1 = all
        .iter()
        .find(|a| a.id == "x1")
        .ok_or_else(|| StoreError::NotFound("alert x1".into()))?;
    assert_eq!(
        x1,
        &AlertRow {
            level: "critical".into(),
            value: 50.0,
            threshold: 90.0,
            changed_at: 20,
            cleared_at: Some(30),
            escalated: true,
            notified: Some("cleared: 200".into()),
            runbook_run: Some("r1".into()),
            runbook_state: Some("failed".into()),
            ..alert("x1", "disk", "a1", 10)
        }
    );
    assert_eq!(all.len(), 3);
    assert_eq!(store.alerts(true, 1).await?.len(), 1);
    // Once cleared, the rule raises on that machine again.
    assert!(store.raise_alert(&alert("x5", "disk", "a1", 50)).await?);

    // Removing a rule clears its open alerts, with its audit entry.
    assert!(
        store
            .delete_alert_rule("disk", 60, &entry("alert.rule.rm", "alert-rule:disk"))
            .await?
    );
    assert!(
        !store
            .delete_alert_rule("disk", 61, &entry("alert.rule.rm", "alert-rule:disk"))
            .await?
    );
    let open: Vec<String> = store
        .alerts(false, 100)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(open, ["x4"]);
    let x5 = store.alerts(true, 100).await?;
    let x5 = x5
        .iter()
        .find(|a| a.id == "x5")
        .ok_or_else(|| StoreError::NotFound("alert x5".into()))?;
    assert_eq!(x5.cleared_at, Some(60));
    assert_eq!(store.alert_rules().await?, [rule("cpu")]);
    assert_eq!(
        sorted(actions(store).await?),
        ["alert.rule.add", "alert.rule.add", "alert.rule.rm"]
    );
    Ok(())
}
