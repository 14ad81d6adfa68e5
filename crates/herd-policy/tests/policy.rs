//! Policy decisions: the default rules, patterns (deny before allow), validation, roles.

use herd_policy::{Decision, Policy, PolicySet, Role, classify, decide};

fn decision(policy: &Policy, cmd: &str) -> Decision {
    decide(policy, &classify(cmd))
}

#[test]
fn the_default_policy_follows_the_class() {
    let p = Policy::default();
    assert_eq!(decision(&p, "ls -la"), Decision::Allow);
    assert_eq!(decision(&p, "systemctl restart nginx"), Decision::Allow);
    assert_eq!(decision(&p, "reboot"), Decision::Approve);
    assert_eq!(decision(&p, "rm -rf /"), Decision::Deny);
    // The worst part decides.
    assert_eq!(decision(&p, "ls; reboot; ls"), Decision::Approve);
    assert_eq!(decision(&p, "reboot && rm -rf /"), Decision::Deny);
    assert_eq!(decision(&p, "echo 'unbalanced"), Decision::Approve);
}

#[test]
fn patterns_override_per_simple_command_deny_first() {
    let p = Policy::from_json(
        r#"{"allow_patterns": ["systemctl reboot", "re:^docker rm -f web[0-9]+$"],
            "deny_patterns": ["apt * nginx*", "re:^curl .*evil"]}"#,
    )
    .expect("valid policy");
    assert_eq!(decision(&p, "systemctl reboot"), Decision::Allow);
    assert_eq!(
        decision(&p, "sudo systemctl reboot"),
        Decision::Allow,
        "the text without wrappers matches too"
    );
    assert_eq!(decision(&p, "docker rm -f web12"), Decision::Allow);
    assert_eq!(decision(&p, "docker rm -f db1"), Decision::Approve);
    assert_eq!(decision(&p, "apt install -y nginx-full"), Decision::Deny);
    assert_eq!(
        decision(&p, "ls && curl -s https://evil.example"),
        Decision::Deny
    );
    // An allowed part does not allow its neighbours.
    assert_eq!(decision(&p, "systemctl reboot; rm -rf /"), Decision::Deny);
    // Deny before allow.
    let both =
        Policy::from_json(r#"{"allow_patterns": ["reboot"], "deny_patterns": ["re:reboot"]}"#)
            .expect("valid");
    assert_eq!(decision(&both, "reboot"), Decision::Deny);
    // No pattern allows what herd could not read.
    let all = Policy::from_json(r#"{"allow_patterns": ["*"]}"#).expect("valid");
    assert_eq!(decision(&all, "rm -rf /"), Decision::Allow);
    assert_eq!(decision(&all, "sh -c \"$X\""), Decision::Approve);
    assert_eq!(decision(&all, "echo \"unbalanced"), Decision::Approve);
}

#[test]
fn policies_round_trip_and_errors_are_one_line() {
    let p = Policy::from_json(r#"{"rules": {"safe": "allow", "caution": "approve", "dangerous": "deny", "forbidden": "deny"}, "deny_patterns": ["re:^kill "]}"#)
        .expect("valid");
    assert_eq!(decision(&p, "systemctl restart nginx"), Decision::Approve);
    let text = serde_json::to_string(&p).expect("serializes");
    assert_eq!(Policy::from_json(&text).expect("reads back"), p);

    for (bad, says) in [
        (
            r#"{"deny_patterns": ["re:(unclosed"]}"#,
            "not a valid regular expression",
        ),
        (r#"{"allow_patterns": [""]}"#, "empty"),
        (
            r#"{"rules": {"safe": "allow", "caution": "allow", "dangerous": "allow", "forbidden": "approve"}, "x": 1}"#,
            "unknown field",
        ),
        (
            r#"{"rules": {"safe": "allow", "caution": "approve", "dangerous": "allow", "forbidden": "deny"}}"#,
            "a worse class cannot get a milder decision",
        ),
        (
            r#"{"rules": {"safe": "allow", "caution": "allow", "dangerous": "maybe", "forbidden": "deny"}}"#,
            "unknown variant",
        ),
    ] {
        let e = Policy::from_json(bad).expect_err(bad).to_string();
        assert!(e.contains(says), "{bad}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn a_viewer_runs_nothing_by_default() {
    let set = PolicySet::default();
    assert_eq!(
        decide(set.policy(Role::Viewer), &classify("ls")),
        Decision::Deny
    );
    assert_eq!(
        decide(set.policy(Role::Operator), &classify("ls")),
        Decision::Allow
    );
    assert_eq!(
        decide(set.policy(Role::Admin), &classify("reboot")),
        Decision::Approve
    );
    let text = serde_json::to_string(&set).expect("serializes");
    assert_eq!(PolicySet::from_json(&text).expect("reads back"), set);
    let e = PolicySet::from_json(r#"{"by_role": {"operator": {"rules": {"safe": "deny", "caution": "allow", "dangerous": "deny", "forbidden": "deny"}}}}"#)
        .expect_err("invalid");
    assert!(e.to_string().starts_with("by_role.operator.rules: "), "{e}");
}

#[test]
fn label_rules_add_to_the_role_policy_and_the_strictest_wins() {
    let set = PolicySet::from_json(
        r#"{"by_role": {"operator": {"deny_patterns": ["systemctl restart *"]}},
            "by_label": [{"selector": "env=prod", "roles": ["operator"],
                          "policy": {"rules": {"safe": "allow", "caution": "approve", "dangerous": "deny", "forbidden": "deny"}}}]}"#,
    )
    .expect("valid");
    let restart = classify("systemctl restart nginx");
    assert_eq!(
        set.decide(Role::Operator, &restart, |_| false),
        Decision::Deny
    );
    assert_eq!(
        set.decide(Role::Admin, &restart, |_| false),
        Decision::Allow
    );
    let unknown = classify("frobnicate");
    assert_eq!(
        set.decide(Role::Operator, &unknown, |_| false),
        Decision::Allow
    );
    assert_eq!(
        set.decide(Role::Operator, &unknown, |s| s == "env=prod"),
        Decision::Approve
    );
    assert_eq!(set.decide(Role::Admin, &unknown, |_| true), Decision::Allow);
    assert_eq!(
        set.decide(Role::Viewer, &classify("ls"), |_| false),
        Decision::Deny
    );
    let e = PolicySet::from_json(
        r#"{"by_label": [{"selector": "env=prod", "policy": {"rules": {"safe": "allow", "caution": "deny", "dangerous": "approve", "forbidden": "deny"}}}]}"#,
    )
    .expect_err("invalid");
    assert!(
        e.to_string().starts_with("by_label[0].policy.rules: "),
        "{e}"
    );
}
