//! Specs: parsing, fire times (DST in Europe/Paris, 2027: forward 2027-03-28 02:00→03:00,
//! back 2027-10-31 03:00→02:00), the stored form, odd input.

use crate::Spec;
use crate::spec::Occurrences;

/// Unix milliseconds of an RFC 3339 time.
fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn iso(ms: i64) -> String {
    crate::when::format_instant(ms)
}

fn cron(expr: &str, tz: &str) -> Spec {
    Spec::cron(expr, tz).unwrap_or_else(|e| panic!("{expr:?} in {tz:?}: {e}"))
}

/// Every fire time in `[from, to)`.
fn fires_between(spec: &Spec, from: &str, to: &str) -> Vec<String> {
    let (from, to) = (ms(from), ms(to));
    let mut out = Vec::new();
    let mut t = from - 1;
    while let Some(next) = spec.next_after(t).filter(|n| *n < to) {
        assert!(next > t, "{} after {}", iso(next), iso(t));
        out.push(iso(next));
        t = next;
    }
    out
}

#[test]
fn a_seconds_cron_fires_sixty_times_a_minute() {
    let spec = cron("* * * * * *", "UTC");
    let fires = fires_between(&spec, "2027-05-01T10:00:00Z", "2027-05-01T10:01:00Z");
    assert_eq!(fires.len(), 60);
    assert_eq!(fires[0], "2027-05-01T10:00:00Z");
    assert_eq!(fires[59], "2027-05-01T10:00:59Z");
    // From inside a second, the next whole second.
    let t = ms("2027-05-01T10:00:00.500Z");
    assert_eq!(spec.next_after(t), Some(ms("2027-05-01T10:00:01Z")));
    assert_eq!(
        spec.upcoming(t, 3),
        [1, 2, 3].map(|s| ms("2027-05-01T10:00:00Z") + s * 1000)
    );
}

#[test]
fn a_fixed_time_fires_once_on_both_dst_days_in_paris() {
    for expr in ["0 30 2 * * *", "30 2 * * *"] {
        let spec = cron(expr, "Europe/Paris");
        // Spring: 02:30 does not exist on the 28th; it fires once at 03:00 CEST = 01:00Z.
        assert_eq!(
            fires_between(&spec, "2027-03-26T00:00:00Z", "2027-03-30T00:00:00Z"),
            [
                "2027-03-26T01:30:00Z",
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z",
            ],
            "{expr}"
        );
        // Autumn: 02:30 happens twice on the 31st; it fires once, at the first (CEST).
        assert_eq!(
            fires_between(&spec, "2027-10-30T00:00:00Z", "2027-11-02T00:00:00Z"),
            [
                "2027-10-30T00:30:00Z",
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z",
            ],
            "{expr}"
        );
        // From inside the repeated hour, past the first 02:30: the next day, not 01:30Z.
        assert_eq!(
            spec.next_after(ms("2027-10-31T00:45:00Z")).map(iso),
            Some("2027-11-01T01:30:00Z".to_string())
        );
    }
}

#[test]
fn an_interval_cron_follows_absolute_time_through_dst() {
    let quarter = cron("0 */15 * * * *", "Europe/Paris");
    for (from, to) in [
        ("2027-03-28T00:00:00Z", "2027-03-28T02:00:00Z"),
        ("2027-10-31T00:00:00Z", "2027-10-31T02:00:00Z"),
    ] {
        let fires: Vec<i64> = fires_between(&quarter, from, to)
            .iter()
            .map(|t| ms(t))
            .collect();
        assert_eq!(fires.len(), 8, "{from}");
        assert!(
            fires.windows(2).all(|w| w[1] - w[0] == 15 * 60_000),
            "{from}"
        );
    }
    // Every second of the repeated hour, once each: 2 hours of absolute time.
    let every_second = cron("* * * * * *", "Europe/Paris");
    let fires = fires_between(
        &every_second,
        "2027-10-31T00:00:00Z",
        "2027-10-31T02:00:00Z",
    );
    assert_eq!(fires.len(), 7_200);
}

#[test]
fn backward_walks_find_the_same_fire_times_as_forward_ones() {
    // `plan` walks back from now; it must see what next_after hands out, DST days included.
    for expr in [
        "0 30 2 * * *",
        "0 */15 * * * *",
        "0 0,30 2 * * *",
        "0 30 * * * *",
        "0 0 3 * * *",
    ] {
        let occ = Occurrences::new(&cron(expr, "Europe/Paris"));
        for (from, to) in [
            ("2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z"),
            ("2027-10-30T00:00:00Z", "2027-11-01T00:00:00Z"),
        ] {
            let (from, to) = (ms(from), ms(to));
            let mut forward = Vec::new();
            let mut t = from;
            while let Some(n) = occ.next_after(t).filter(|n| *n < to) {
                forward.push(n);
                t = n;
            }
            let mut backward = Vec::new();
            let mut t = to;
            while let Some(p) = occ.prev_before(t).filter(|p| *p > from) {
                backward.push(p);
                t = p;
            }
            backward.reverse();
            assert_eq!(
                forward.iter().map(|t| iso(*t)).collect::<Vec<_>>(),
                backward.iter().map(|t| iso(*t)).collect::<Vec<_>>(),
                "{expr}"
            );
        }
    }
}

#[test]
fn last_day_nearest_weekday_and_nth_weekday() {
    let last = cron("0 0 12 L * *", "UTC");
    assert_eq!(
        last.next_after(ms("2027-02-01T00:00:00Z"))
            .map(iso)
            .unwrap(),
        "2027-02-28T12:00:00Z"
    );
    assert_eq!(
        last.next_after(ms("2028-02-01T00:00:00Z"))
            .map(iso)
            .unwrap(),
        "2028-02-29T12:00:00Z"
    );
    // 2027-05-15 is a Saturday: the nearest weekday is Friday the 14th; 2027-08-15 is a
    // Sunday: Monday the 16th.
    let nearest = cron("0 0 9 15W * *", "UTC");
    assert_eq!(
        nearest
            .next_after(ms("2027-05-01T00:00:00Z"))
            .map(iso)
            .unwrap(),
        "2027-05-14T09:00:00Z"
    );
    assert_eq!(
        nearest
            .next_after(ms("2027-08-01T00:00:00Z"))
            .map(iso)
            .unwrap(),
        "2027-08-16T09:00:00Z"
    );
    // Day-of-week numbers are POSIX (0 and 7 = Sunday, 1 = Monday): the second Monday of
    // March 2027 (the 1st is a Monday) is the 8th.
    for expr in ["0 0 9 * * MON#2", "0 0 9 * * 1#2", "0 9 * * mon#2"] {
        assert_eq!(
            cron(expr, "UTC")
                .upcoming(ms("2027-03-01T00:00:00Z"), 2)
                .into_iter()
                .map(iso)
                .collect::<Vec<_>>(),
            ["2027-03-08T09:00:00Z", "2027-04-12T09:00:00Z"],
            "{expr}"
        );
    }
    // The last Friday of the month.
    assert_eq!(
        cron("0 0 9 * * 5L", "UTC")
            .next_after(ms("2027-03-01T00:00:00Z"))
            .map(iso)
            .unwrap(),
        "2027-03-26T09:00:00Z"
    );
}

#[test]
fn aliases() {
    let t = ms("2027-05-01T10:20:30Z");
    for (alias, next) in [
        ("@daily", "2027-05-02T00:00:00Z"),
        ("@midnight", "2027-05-02T00:00:00Z"),
        ("@DAILY", "2027-05-02T00:00:00Z"),
        ("@hourly", "2027-05-01T11:00:00Z"),
        ("@weekly", "2027-05-02T00:00:00Z"),
        ("@monthly", "2027-06-01T00:00:00Z"),
        ("@yearly", "2028-01-01T00:00:00Z"),
        ("@annually", "2028-01-01T00:00:00Z"),
    ] {
        assert_eq!(
            cron(alias, "UTC").next_after(t).map(iso).unwrap(),
            next,
            "{alias}"
        );
    }
    // In a zone: midnight there.
    assert_eq!(
        cron("@daily", "Europe/Paris")
            .next_after(t)
            .map(iso)
            .unwrap(),
        "2027-05-01T22:00:00Z"
    );
}

#[test]
fn bad_cron_expressions_say_what_and_what_to_do_in_one_line() {
    for (expr, want) in [
        (
            "61 0 * * *",
            "cron \"61 0 * * *\": minute 61 is out of range 0-59 — minute takes",
        ),
        // Five fields start at the minute: 61 is the hour here.
        (
            "0 61 * * *",
            "cron \"0 61 * * *\": hour 61 is out of range 0-23 — hour takes",
        ),
        ("61 0 * * * *", "second 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 0 * * *", ""),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("0 0 * * 1-9", "day-of-week 9 is out of range 0-7"),
        (
            "0 0 * * MON#6",
            "day-of-week \"MON#6\": the number after # must be 1-5 or L",
        ),
        ("*/0 * * * *", "minute \"*/0\": a step of 0 never moves"),
        (
            "5-1 * * * *",
            "minute \"5-1\": a range runs from low to high",
        ),
        ("x * * * *", "minute \"x\": \"X\" is not allowed here"),
        ("* * * *", "has 4 fields — write 5 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("", "cron expression is empty"),
        ("@dayly", "unknown alias — did you mean \"@daily\"?"),
        ("@sometimes", "unknown alias — write 5 fields"),
        ("0 0 30 2 *", "never matches a date"),
        (
            "0/5 * * * *",
            "minute \"0/5\": a step goes after * or a range (*/5, 10-40/5)",
        ),
    ] {
        let got = Spec::cron(expr, "UTC");
        if want.is_empty() {
            assert!(got.is_ok(), "{expr}: {got:?}");
            continue;
        }
        let e = got.expect_err(expr);
        assert!(e.contains(want), "{expr}: {e}");
        assert!(!e.contains('\n') && e.contains(" — "), "{expr}: {e}");
    }
}

#[test]
fn time_zones_default_to_utc_and_typos_get_the_closest_name() {
    assert_eq!(
        cron("0 0 * * *", ""),
        Spec::Cron {
            expr: "0 0 * * *".into(),
            tz: chrono_tz::Tz::UTC
        }
    );
    for (given, hint) in [
        ("Europe/Pari", "did you mean \"Europe/Paris\"?"),
        ("europe/paris", "did you mean \"Europe/Paris\"?"),
        ("Paris", "did you mean \"Europe/Paris\"?"),
        ("America/New York", "did you mean \"America/New_York\"?"),
        (
            "Mars/Olympus_Mons",
            "use an IANA name such as \"Europe/Paris\" or \"UTC\"",
        ),
    ] {
        let e = Spec::cron("0 0 * * *", given).unwrap_err();
        assert_eq!(
            e,
            format!("unknown time zone {given:?} — {hint}"),
            "{given}"
        );
    }
}

#[test]
fn every_is_anchored_at_creation() {
    let anchor = ms("2027-05-01T10:00:00.250Z");
    let spec = Spec::every("2s", anchor).unwrap();
    assert_eq!(
        spec,
        Spec::Every {
            period_ms: 2_000,
            anchor_ms: anchor
        }
    );
    assert_eq!(spec.describe(), "every 2s");
    assert_eq!(spec.next_after(anchor - 60_000), Some(anchor + 2_000));
    assert_eq!(spec.next_after(anchor), Some(anchor + 2_000));
    assert_eq!(spec.next_after(anchor + 1_999), Some(anchor + 2_000));
    assert_eq!(spec.next_after(anchor + 2_000), Some(anchor + 4_000));
    assert_eq!(
        spec.upcoming(anchor + 3_000, 3),
        [anchor + 4_000, anchor + 6_000, anchor + 8_000]
    );
    for (text, period) in [
        ("90s", 90_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("1d", 86_400_000),
    ] {
        assert_eq!(
            Spec::every(text, 0),
            Ok(Spec::Every {
                period_ms: period,
                anchor_ms: 0
            })
        );
    }
    assert_eq!(Spec::every("1h30m", 0).unwrap().describe(), "every 1h30m");
    assert_eq!(
        Spec::every("1d2h3m4s", 0).unwrap().describe(),
        "every 1d2h3m4s"
    );
    for (text, want) in [
        (
            "500ms",
            "every \"500ms\": the period is shorter than 1s — give at least 1s",
        ),
        ("367d", "every \"367d\": the period is longer than 366d"),
        ("0s", "every \"0s\": the period is shorter than 1s"),
        (
            "5 parsecs",
            "every \"5 parsecs\": expected a number with a unit",
        ),
        ("", "every \"\": it is empty"),
    ] {
        let e = Spec::every(text, 0).unwrap_err();
        assert!(e.starts_with(want), "{text}: {e}");
    }
}

#[test]
fn at_fires_once_and_never_in_the_past() {
    let now = ms("2027-05-01T10:00:00Z");
    let past = Spec::at("2027-04-01T00:00:00Z", "UTC", now).unwrap();
    assert_eq!(past.next_after(now), None);
    assert_eq!(past.upcoming(now, 5), Vec::<i64>::new());

    let soon = Spec::at("+10m", "UTC", now).unwrap();
    assert_eq!(
        soon,
        Spec::At {
            at_ms: now + 600_000
        }
    );
    assert_eq!(soon.next_after(now), Some(now + 600_000));
    assert_eq!(soon.next_after(now + 600_000), None);
    assert_eq!(soon.describe(), "at 2027-05-01T10:10:00Z");

    let offset = Spec::at("2027-03-28T02:30:00+01:00", "UTC", now).unwrap();
    assert_eq!(offset.describe(), "at 2027-03-28T01:30:00Z");
    // Local times in a zone, with the DST rules of fixed-time crons.
    for (text, want) in [
        ("2027-07-14 22:00", "2027-07-14T20:00:00Z"),
        ("2027-07-14 22:00:05", "2027-07-14T20:00:05Z"),
        ("2027-03-28 02:30", "2027-03-28T01:00:00Z"),
        ("2027-10-31 02:30", "2027-10-31T00:30:00Z"),
    ] {
        assert_eq!(
            Spec::at(text, "Europe/Paris", now).unwrap().describe(),
            format!("at {want}")
        );
    }
    for (text, want) in [
        (
            "tomorrow",
            "at \"tomorrow\": not a time — write an RFC 3339 time",
        ),
        ("2027-02-30 10:00", "not a time"),
        ("+0s", "the delay must be more than 0"),
        ("+5x", "at \"+5x\": expected a number with a unit"),
    ] {
        let e = Spec::at(text, "UTC", now).unwrap_err();
        assert!(e.starts_with(want) || e.contains(want), "{text}: {e}");
    }
    assert!(
        Spec::at("2027-07-14 22:00", "Mars/Base", now)
            .unwrap_err()
            .contains("unknown time zone")
    );
}

#[test]
fn the_stored_form_round_trips_and_is_checked() {
    let specs = [
        cron("0 30 2 * * *", "Europe/Paris"),
        Spec::every("90s", 1_800_000_000_000).unwrap(),
        Spec::At {
            at_ms: 1_800_000_000_123,
        },
    ];
    for spec in &specs {
        assert_eq!(Spec::from_json(&spec.to_json()).as_ref(), Ok(spec));
    }
    assert_eq!(
        specs[0].to_json(),
        r#"{"kind":"cron","expr":"0 30 2 * * *","tz":"Europe/Paris"}"#
    );
    assert_eq!(
        specs[1].to_json(),
        r#"{"kind":"every","period_ms":90000,"anchor_ms":1800000000000}"#
    );
    assert_eq!(specs[2].to_json(), r#"{"kind":"at","at_ms":1800000000123}"#);
    assert_eq!(specs[0].describe(), "cron 0 30 2 * * * (Europe/Paris)");
    for (text, want) in [
        (
            r#"{"kind":"cron","expr":"61 * * * *","tz":"UTC"}"#,
            "stored schedule: cron \"61 * * * *\": minute 61 is out of range",
        ),
        (
            r#"{"kind":"cron","expr":"* * * * *","tz":"Europe/Pari"}"#,
            "did you mean",
        ),
        (
            r#"{"kind":"every","period_ms":0,"anchor_ms":0}"#,
            "shorter than 1s",
        ),
        (r#"{"kind":"weekly"}"#, "unknown variant"),
        ("not json", "stored schedule is not readable"),
    ] {
        let e = Spec::from_json(text).unwrap_err();
        assert!(e.contains(want) && !e.contains('\n'), "{text}: {e}");
        assert_eq!(e.matches(" — ").count(), 1, "{text}: {e}");
    }
}

#[test]
fn fire_times_strictly_increase() {
    let specs = [
        cron("* * * * * *", "Europe/Paris"),
        cron("0 30 2 * * *", "Europe/Paris"),
        cron("*/7 */13 1-3 * * *", "America/New_York"),
        cron("@hourly", "Australia/Lord_Howe"), // a half-hour DST shift
        Spec::every("3s", 5).unwrap(),
    ];
    let mut seed: u64 = 7;
    for _ in 0..300 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Around the 2027 DST days, and anywhere in 1970-2100.
        let around = [ms("2027-03-28T00:00:00Z"), ms("2027-10-31T00:00:00Z"), 0];
        let base = around[(seed >> 60) as usize % 3];
        let span = if base == 0 {
            4_102_444_800_000
        } else {
            4 * 3_600_000
        };
        let t = base + (seed >> 8) as i64 % span;
        for spec in &specs {
            if let Some(n) = spec.next_after(t) {
                assert!(n > t, "{}: {} after {}", spec.describe(), iso(n), iso(t));
            }
        }
    }
}

#[test]
fn odd_input_never_panics_and_errors_are_one_line() {
    let pieces = [
        "*",
        "/",
        "-",
        ",",
        "#",
        "L",
        "W",
        "?",
        "+",
        "@",
        "0",
        "7",
        "59",
        "60",
        "99999999999",
        "MON",
        "jan",
        " ",
        " ",
        " ",
        "ß",
        "日",
        "\t",
        "\n",
        "-1",
        "1/",
        "/1",
        "1#",
        "#L",
        "LW",
        "Europe/",
        "T",
        ":",
        "2027-03-28",
        "02:30",
        "Z",
        "+01:00",
        ".5",
        "ms",
        "d",
        "e9",
    ];
    let mut seed: u64 = 42;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let check = |what: &str, r: Result<Spec, String>| {
        if let Err(e) = r {
            assert!(!e.contains('\n'), "{what:?}: {e}");
        }
    };
    for _ in 0..1_500 {
        let n = next() % 12;
        let text: String = (0..n).map(|_| pieces[next() % pieces.len()]).collect();
        check(&text, Spec::cron(&text, "UTC"));
        check(&text, Spec::cron("* * * * *", &text));
        check(&text, Spec::every(&text, i64::MAX));
        check(&text, Spec::at(&text, "Europe/Paris", i64::MAX));
        check(&text, Spec::at(&text, "UTC", i64::MIN));
        check(&text, Spec::from_json(&text));
    }
    // Extreme instants: no fire time, no panic.
    for spec in [
        cron("* * * * * *", "UTC"),
        Spec::every("1s", i64::MAX - 10).unwrap(),
        Spec::At { at_ms: i64::MIN },
    ] {
        for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            if let Some(n) = spec.next_after(t) {
                assert!(n > t);
            }
            let _ = spec.upcoming(t, 3);
        }
    }
    let stored = Spec::Every {
        period_ms: 0,
        anchor_ms: 0,
    };
    assert_eq!(stored.next_after(0), None);
}
