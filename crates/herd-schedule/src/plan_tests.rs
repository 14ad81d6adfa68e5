//! Planning: misfires after an outage, the bound on work, overlap with a slow job.

use crate::{MAX_CATCH_UP, Misfire, Missed, Overlap, OverlapDecision, Plan, Spec, overlap, plan};

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn iso(ms: i64) -> String {
    crate::when::format_instant(ms)
}

fn isos(v: &[i64]) -> Vec<String> {
    v.iter().map(|t| iso(*t)).collect()
}

const MINUTE: i64 = 60_000;

#[test]
fn a_three_hour_outage_of_a_quarter_hour_schedule() {
    let spec = Spec::cron("0 */15 * * * *", "UTC").unwrap();
    // Stored next fire 09:00; the server comes back at 11:52: 09:00 … 11:45 passed (12).
    let (due, now) = (ms("2027-05-01T09:00:00Z"), ms("2027-05-01T11:52:00Z"));
    let all: Vec<i64> = (0..12).map(|k| due + k * 15 * MINUTE).collect();
    let next = Some(ms("2027-05-01T12:00:00Z"));

    let skip = plan(&spec, due, now, MINUTE, Misfire::Skip);
    assert_eq!(
        skip,
        Plan {
            fire: vec![],
            missed: Missed {
                count: 12,
                exact: true,
                first: Some(all[0]),
                last: Some(all[11])
            },
            next,
        }
    );

    let once = plan(&spec, due, now, MINUTE, Misfire::RunOnce);
    assert_eq!(isos(&once.fire), ["2027-05-01T11:45:00Z"]);
    assert_eq!(
        once.missed,
        Missed {
            count: 11,
            exact: true,
            first: Some(all[0]),
            last: Some(all[10])
        }
    );
    assert_eq!(once.next, next);

    let every = plan(&spec, due, now, MINUTE, Misfire::RunAll);
    assert_eq!(every.fire, all);
    assert_eq!(every.missed, Missed::default());
    assert_eq!(every.next, next);
    assert_eq!(Misfire::default(), Misfire::RunOnce);
}

#[test]
fn fire_times_within_grace_run_whatever_the_policy() {
    let spec = Spec::cron("0 */15 * * * *", "UTC").unwrap();
    let due = ms("2027-05-01T11:45:00Z");
    for misfire in Misfire::ALL {
        // 30 s late with a minute of grace: on time.
        let p = plan(&spec, due, due + 30_000, MINUTE, misfire);
        assert_eq!(p.fire, [due], "{misfire}");
        assert_eq!(p.missed, Missed::default(), "{misfire}");
        assert_eq!(p.next, Some(due + 15 * MINUTE));
        // Exactly at the edge of grace: still on time.
        assert_eq!(plan(&spec, due, due + MINUTE, MINUTE, misfire).fire, [due]);
        // Not yet due: nothing, and the same next.
        let early = plan(&spec, due, due - 1, MINUTE, misfire);
        assert_eq!((early.fire, early.next), (vec![], Some(due)));
    }
    // Late ones beside an on-time one: run-once runs the on-time one only.
    let (due, now) = (ms("2027-05-01T11:00:00Z"), ms("2027-05-01T11:45:10Z"));
    let p = plan(&spec, due, now, MINUTE, Misfire::RunOnce);
    assert_eq!(isos(&p.fire), ["2027-05-01T11:45:00Z"]);
    assert_eq!(p.missed.count, 3);
    let p = plan(&spec, due, now, MINUTE, Misfire::Skip);
    assert_eq!(isos(&p.fire), ["2027-05-01T11:45:00Z"]);
    assert_eq!(p.missed.count, 3);
    assert_eq!(plan(&spec, due, now, MINUTE, Misfire::RunAll).fire.len(), 4);
}

#[test]
fn a_one_off_runs_once_or_is_missed() {
    let at = ms("2027-05-01T09:00:00Z");
    let spec = Spec::At { at_ms: at };
    let now = at + 3 * 3_600_000;
    let once = plan(&spec, at, now, MINUTE, Misfire::RunOnce);
    assert_eq!((once.fire, once.next), (vec![at], None));
    let skip = plan(&spec, at, now, MINUTE, Misfire::Skip);
    assert_eq!((skip.fire, skip.missed.count, skip.next), (vec![], 1, None));
}

#[test]
fn a_year_long_outage_of_a_one_second_schedule_plans_in_bounded_time() {
    let due = ms("2027-01-01T00:00:00Z");
    let now = ms("2028-01-01T00:00:00Z");
    let passed = (now - due) / 1_000 + 1; // both ends included
    let specs = [
        Spec::Every {
            period_ms: 1_000,
            anchor_ms: due - 1_000,
        },
        Spec::cron("* * * * * *", "UTC").unwrap(),
    ];
    for spec in &specs {
        let all = plan(spec, due, now, 5_000, Misfire::RunAll);
        assert_eq!(all.fire.len(), MAX_CATCH_UP, "{}", spec.describe());
        assert_eq!(*all.fire.last().unwrap(), now);
        assert!(all.fire.windows(2).all(|w| w[1] - w[0] == 1_000));
        assert_eq!(all.next, Some(now + 1_000));
        assert_eq!(all.missed.first, Some(due));
        assert_eq!(all.missed.last, Some(all.fire[0] - 1_000));
        let want = (passed - MAX_CATCH_UP as i64) as u64;
        if all.missed.exact {
            assert_eq!(all.missed.count, want, "{}", spec.describe());
        } else {
            // A cron's count past the first ones looked at is estimated.
            assert!(
                all.missed.count.abs_diff(want) <= want / 100,
                "{:?}",
                all.missed
            );
        }
        // Skip runs what is within grace (the last 5 s, 6 fire times) and misses the rest.
        let skip = plan(spec, due, now, 5_000, Misfire::Skip);
        assert_eq!(
            skip.fire,
            (0..6).rev().map(|k| now - k * 1_000).collect::<Vec<_>>()
        );
        let want = (passed - 6) as u64;
        if skip.missed.exact {
            assert_eq!(skip.missed.count, want, "{}", spec.describe());
        } else {
            assert!(
                skip.missed.count.abs_diff(want) <= want / 100,
                "{:?}",
                skip.missed
            );
        }
        let once = plan(spec, due, now - 100, 0, Misfire::RunOnce);
        assert_eq!(once.fire, [now - 1_000]);
    }
    assert!(
        plan(&specs[0], due, now, 5_000, Misfire::RunAll)
            .missed
            .exact
    );
}

/// A 1-s schedule whose runs take 2.5 s, over 10 s: the firing loop wakes at each fire time
/// and each run's end (an end first when both fall together).
fn simulate(policy: Overlap) -> (Vec<i64>, usize, usize, usize) {
    const RUN: i64 = 2_500;
    let spec = Spec::every("1s", 0).unwrap();
    let mut due = spec.next_after(0).unwrap();
    let (mut running, mut starts, mut skips) = (Vec::<i64>::new(), Vec::new(), 0);
    let (mut waiting, mut most_waiting, mut most_running) = (false, 0, 0);
    loop {
        let now = match running.iter().min() {
            Some(end) if *end <= due => *end,
            _ => due,
        };
        if now > 10_000 {
            break;
        }
        running.retain(|end| *end > now);
        if waiting && running.is_empty() {
            waiting = false;
            running.push(now + RUN);
            starts.push(now);
        }
        if now == due {
            let p = plan(&spec, due, now, 0, Misfire::RunOnce);
            for _ in &p.fire {
                match overlap(policy, !running.is_empty()) {
                    OverlapDecision::Start => {
                        running.push(now + RUN);
                        starts.push(now);
                    }
                    OverlapDecision::Skip => skips += 1,
                    // At most one waits: a fire while one waits joins it.
                    OverlapDecision::Queue => waiting = true,
                }
            }
            due = p.next.unwrap();
        }
        most_waiting = most_waiting.max(usize::from(waiting));
        most_running = most_running.max(running.len());
    }
    (starts, skips, most_waiting, most_running)
}

#[test]
fn overlap_with_a_job_slower_than_its_period() {
    let (starts, skips, _, most_running) = simulate(Overlap::Skip);
    assert_eq!(starts, [1_000, 4_000, 7_000, 10_000]);
    assert_eq!((skips, most_running), (6, 1));

    let (starts, skips, most_waiting, most_running) = simulate(Overlap::Queue);
    assert_eq!(starts, [1_000, 3_500, 6_000, 8_500]);
    assert_eq!((skips, most_waiting, most_running), (0, 1, 1));

    let (starts, skips, _, most_running) = simulate(Overlap::Allow);
    assert_eq!(starts, (1..=10).map(|k| k * 1_000).collect::<Vec<_>>());
    assert_eq!((skips, most_running), (0, 3));

    assert_eq!(overlap(Overlap::Skip, false), OverlapDecision::Start);
    assert_eq!(overlap(Overlap::Queue, false), OverlapDecision::Start);
}

#[test]
fn policies_read_and_print_as_typed() {
    for (text, o) in [
        ("skip", Overlap::Skip),
        ("queue", Overlap::Queue),
        ("allow", Overlap::Allow),
    ] {
        assert_eq!(text.parse::<Overlap>(), Ok(o));
        assert_eq!(o.to_string(), text);
    }
    for (text, m) in [
        ("skip", Misfire::Skip),
        ("run-once", Misfire::RunOnce),
        ("run-all", Misfire::RunAll),
    ] {
        assert_eq!(text.parse::<Misfire>(), Ok(m));
        assert_eq!(m.to_string(), text);
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("{text:?}"));
    }
    assert_eq!(
        "sometimes".parse::<Misfire>(),
        Err("unknown misfire policy \"sometimes\" — use skip, run-once or run-all".to_string())
    );
    assert_eq!(
        "never".parse::<Overlap>(),
        Err("unknown overlap policy \"never\" — use skip, queue or allow".to_string())
    );
}

#[test]
fn extreme_clocks_never_panic_and_stay_bounded() {
    let specs = [
        Spec::cron("* * * * * *", "Europe/Paris").unwrap(),
        Spec::cron("@yearly", "UTC").unwrap(),
        Spec::Every {
            period_ms: 1_000,
            anchor_ms: i64::MIN,
        },
        Spec::Every {
            period_ms: 1_000,
            anchor_ms: i64::MAX - 500,
        },
        Spec::At { at_ms: 0 },
    ];
    let edges = [i64::MIN, -1, 0, 1_800_000_000_000, i64::MAX];
    for spec in &specs {
        for due in edges {
            for now in edges {
                for grace in [i64::MIN, 0, i64::MAX] {
                    for misfire in Misfire::ALL {
                        let p = plan(spec, due, now, grace, misfire);
                        assert!(p.fire.len() <= MAX_CATCH_UP);
                        assert!(p.fire.windows(2).all(|w| w[0] < w[1]));
                        if let Some(next) = p.next {
                            assert!(next > now || due > now, "{}", spec.describe());
                        }
                    }
                }
            }
        }
    }
}
