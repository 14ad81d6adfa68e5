use super::*;

fn disk(warning: f64, critical: f64) -> Rule {
    Rule::new(Metric::Disk, Some(warning), Some(critical), None, 0).unwrap()
}

/// Feeds `values` one second apart from t = 0; answers each change as `(second, change)`.
fn run(rule: &Rule, state: &mut State, values: &[f64]) -> Vec<(usize, Change)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, &v)| evaluate(rule, state, v, i as i64 * 1000).map(|c| (i, c)))
        .collect()
}

#[test]
fn raises_warning_then_critical_then_clears() {
    let r = disk(80.0, 90.0);
    let mut s = State::default();
    let changes = run(&r, &mut s, &[10.0, 81.0, 85.0, 95.0, 84.0, 60.0]);
    assert_eq!(
        changes,
        [
            (1, Change::Raised { to: Level::Warning }),
            (
                3,
                Change::Changed {
                    from: Level::Warning,
                    to: Level::Critical
                }
            ),
            (
                4,
                Change::Changed {
                    from: Level::Critical,
                    to: Level::Warning
                }
            ),
            (
                5,
                Change::Cleared {
                    from: Level::Warning
                }
            ),
        ]
    );
    assert_eq!(s, State::default());
}

#[test]
fn a_value_between_the_clear_level_and_the_raise_level_does_not_flap() {
    // Warning at 80, margin 5: raised at 80, cleared below 75.
    let r = disk(80.0, 90.0);
    assert_eq!(r.margin, 5.0);
    let mut s = State::default();
    let wobble = [80.0, 79.0, 76.0, 80.5, 75.0, 79.9, 78.0, 80.0, 77.0];
    assert_eq!(
        run(&r, &mut s, &wobble),
        [(0, Change::Raised { to: Level::Warning })]
    );
    assert_eq!(s.level, Level::Warning);
    // Below the clear level it clears, once; then between the levels nothing is raised.
    let mut s2 = s;
    assert_eq!(
        evaluate(&r, &mut s2, 74.9, 10_000),
        Some(Change::Cleared {
            from: Level::Warning
        })
    );
    assert_eq!(run(&r, &mut s2, &[76.0, 79.9, 75.0, 79.0]), []);
    // The same around critical: 89 holds critical (85 is its clear level), 84 falls to
    // warning.
    let mut s3 = State::default();
    assert_eq!(
        run(&r, &mut s3, &[91.0, 89.0, 86.0, 90.0, 85.0]),
        [(
            0,
            Change::Raised {
                to: Level::Critical
            }
        )]
    );
    assert_eq!(
        evaluate(&r, &mut s3, 84.0, 9_000),
        Some(Change::Changed {
            from: Level::Critical,
            to: Level::Warning
        })
    );
}

#[test]
fn a_level_is_raised_only_after_for() {
    let r = Rule::new(Metric::Cpu, Some(90.0), None, Some(10.0), 3_000).unwrap();
    let mut s = State::default();
    // Over at 1 s, under at 3 s (the wait starts again), over from 4 s: raised at 7 s.
    let values = [10.0, 95.0, 96.0, 50.0, 95.0, 92.0, 99.0, 91.0, 93.0];
    assert_eq!(
        run(&r, &mut s, &values),
        [(7, Change::Raised { to: Level::Warning })]
    );
    assert_eq!(s.pending_since, None);
    // Clearing does not wait.
    assert_eq!(
        evaluate(&r, &mut s, 70.0, 9_000),
        Some(Change::Cleared {
            from: Level::Warning
        })
    );
}

#[test]
fn an_escalated_alert_stays_critical_until_it_clears() {
    let r = disk(80.0, 90.0);
    let mut s = State::default();
    assert_eq!(escalate(&mut s), None, "nothing open to escalate");
    evaluate(&r, &mut s, 82.0, 0);
    assert_eq!(
        escalate(&mut s),
        Some(Change::Escalated {
            from: Level::Warning
        })
    );
    assert_eq!(escalate(&mut s), None, "escalated once");
    assert_eq!((s.level, s.escalated), (Level::Critical, true));
    // Values that would lower a critical alert to warning keep it critical.
    assert_eq!(run(&r, &mut s, &[82.0, 79.0, 76.0]), []);
    assert_eq!(
        evaluate(&r, &mut s, 50.0, 5_000),
        Some(Change::Cleared {
            from: Level::Critical
        })
    );
    assert!(!s.escalated);
    // Raised again later, it starts plain.
    assert_eq!(
        evaluate(&r, &mut s, 81.0, 6_000),
        Some(Change::Raised { to: Level::Warning })
    );
}

#[test]
fn offline_counts_seconds_away_and_clears_when_back() {
    let r = Rule::new(Metric::Offline, Some(30.0), Some(120.0), None, 0).unwrap();
    assert_eq!(r.margin, 0.0);
    let mut s = State::default();
    let away = [0.0, 10.0, 30.0, 60.0, 125.0, 0.0];
    assert_eq!(
        run(&r, &mut s, &away),
        [
            (2, Change::Raised { to: Level::Warning }),
            (
                4,
                Change::Changed {
                    from: Level::Warning,
                    to: Level::Critical
                }
            ),
            (
                5,
                Change::Cleared {
                    from: Level::Critical
                }
            ),
        ]
    );
}

#[test]
fn only_one_threshold() {
    let crit = Rule::new(Metric::Load1, None, Some(4.0), None, 0).unwrap();
    assert!((crit.margin - 0.4).abs() < 1e-9);
    let mut s = State::default();
    assert_eq!(
        run(&crit, &mut s, &[3.0, 4.0, 3.7, 3.5]),
        [
            (
                1,
                Change::Raised {
                    to: Level::Critical
                }
            ),
            (
                3,
                Change::Cleared {
                    from: Level::Critical
                }
            )
        ]
    );
}

#[test]
fn values_that_are_not_numbers_change_nothing() {
    let r = disk(80.0, 90.0);
    let mut s = State::default();
    assert_eq!(evaluate(&r, &mut s, f64::NAN, 0), None);
    evaluate(&r, &mut s, 95.0, 1);
    assert_eq!(evaluate(&r, &mut s, f64::NAN, 2), None);
    assert_eq!(evaluate(&r, &mut s, f64::NEG_INFINITY, 3), None);
    assert_eq!(s.level, Level::Critical);
}

#[test]
fn rules_are_checked() {
    let bad = [
        (
            Rule::new(Metric::Disk, None, None, None, 0),
            "needs a threshold",
        ),
        (
            Rule::new(Metric::Disk, Some(90.0), Some(80.0), None, 0),
            "must be below the critical",
        ),
        (
            Rule::new(Metric::Disk, Some(120.0), None, None, 0),
            "out of range",
        ),
        (Rule::new(Metric::Cpu, Some(0.0), None, None, 0), "above 0"),
        (
            Rule::new(Metric::Cpu, Some(f64::NAN), None, None, 0),
            "out of range",
        ),
        (
            Rule::new(Metric::Disk, Some(10.0), None, Some(10.0), 0),
            "clear margin",
        ),
        (
            Rule::new(Metric::Disk, Some(10.0), None, Some(-1.0), 0),
            "clear margin",
        ),
        (
            Rule::new(Metric::Disk, Some(10.0), None, None, MAX_FOR_MS + 1),
            "at most a day",
        ),
    ];
    for (r, want) in bad {
        let e = r.unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    // A low percentage threshold gets a margin below it.
    assert_eq!(disk(4.0, 8.0).margin, 2.0);
    assert!(Rule::new(Metric::Load5, Some(500.0), None, None, 0).is_ok());
    assert!(Metric::parse("disks").unwrap_err().contains("disk, load1"));
    for m in Metric::ALL {
        assert_eq!(Metric::parse(m.as_str()), Ok(m));
    }
}

#[test]
fn values_from_metrics() {
    let m = Metrics {
        cpu_percent: 12.5,
        memory_used_bytes: 3,
        memory_total_bytes: 4,
        disk_used_bytes: 1,
        disk_total_bytes: 0,
        load1: 0.5,
        load5: 1.5,
        load15: 2.5,
    };
    assert_eq!(Metric::Cpu.value(&m), Some(12.5));
    assert_eq!(Metric::Memory.value(&m), Some(75.0));
    assert_eq!(Metric::Disk.value(&m), None, "an unread size is no value");
    assert_eq!(Metric::Load15.value(&m), Some(2.5));
    assert_eq!(Metric::Offline.value(&m), None);
}
