//! The command policy a server decides with follows the versions stored in the database:
//! one another server stored (written to the store directly here) is used within seconds,
//! without a restart.

use std::time::{Duration, Instant};

use herd_store::{AuditEntry, PolicyRow, now_ms};

use super::TestServer;

#[tokio::test]
async fn a_version_another_server_stored_is_picked_up() {
    let t = TestServer::new().await;
    let gate = t.parts.app.policy();
    let decision = || async {
        gate.check(herd_policy::Role::Operator, "uptime", &[])
            .await
            .unwrap()
    };
    let (version, before) = decision().await;
    assert_eq!((version, before.decision.as_str()), (0, "allow"));
    let set = herd_policy::PolicySet {
        by_role: [(
            herd_policy::Role::Operator,
            herd_policy::Policy {
                deny_patterns: vec![herd_policy::Pattern::new("uptime").unwrap()],
                ..herd_policy::Policy::default()
            },
        )]
        .into(),
        ..herd_policy::PolicySet::default()
    };
    t.store
        .put_policy(
            &PolicyRow {
                version: 1,
                body: serde_json::to_string(&set).unwrap(),
                created_at: now_ms(),
                created_by: "key:elsewhere".into(),
            },
            &AuditEntry::new(
                "key:elsewhere",
                "policy.set",
                "policy:1",
                serde_json::json!({"version": 1}),
            ),
        )
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let (version, after) = decision().await;
        if version == 1 {
            assert_eq!(after.decision, "deny", "{after:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "version 1 was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gate.show(None).await.unwrap().created_by, "key:elsewhere");
}
