//! Human durations: parsing user input such as `500ms`, `1h30m`, `1.5s` or `30`
//! (bare numbers are seconds) and formatting durations compactly (`350ms`, `1.2s`,
//! `5m3s`). Formatted output is always accepted back by [`parse_duration`].

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

const EXPECTED: &str = "expected a number with a unit such as 500ms, 30s, 5m or 2h";

/// Nanoseconds per unit, longest unit names first so `ms` wins over `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
];

/// Parses a duration: one or more `<number><unit>` parts (`1h30m`, optionally
/// separated by spaces), where the number may have a fraction (`1.5s`) and the
/// unit is one of `ns`, `us`, `ms`, `s`, `m`, `h`, `d`; or a bare number meaning
/// seconds (`30`, `2.5`). Empty, negative and unit-less multi-part input is
/// rejected.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(err(&format!("it is empty; {EXPECTED}")));
    }
    if text.starts_with('-') {
        return Err(err(&format!(
            "negative durations are not allowed; {EXPECTED}"
        )));
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() {
        return Err(err(EXPECTED));
    }

    let mut rest = text;
    let mut total: u128 = 0;
    let mut parts = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        if number.is_empty() {
            return Err(err(EXPECTED));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let per_unit = if unit.is_empty() {
            // A bare number is only allowed as the whole input.
            if parts > 0 || !after.trim().is_empty() {
                return Err(err(EXPECTED));
            }
            NANOS_PER_SEC
        } else {
            match UNITS.iter().find(|(name, _)| *name == unit) {
                Some(&(_, n)) => n,
                None => return Err(err(EXPECTED)),
            }
        };
        let nanos = scale(number, per_unit).ok_or_else(|| err(EXPECTED))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| err("it is too large"))?;
        parts += 1;
        rest = after.trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| err("it is too large"))?;
    // The remainder is below 1e9 and therefore fits in u32.
    let sub = u32::try_from(total % NANOS_PER_SEC).map_err(|_| err("it is too large"))?;
    Ok(Duration::new(secs, sub))
}

/// `number` (digits with at most one '.') times `per_unit` nanoseconds; fractions
/// finer than a nanosecond are truncated. `None` if malformed or overflowing.
fn scale(number: &str, per_unit: u128) -> Option<u128> {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = int_val.checked_mul(per_unit)?;
    // Only the first 18 fraction digits matter (units are at most ~8.64e13 ns).
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let frac_val: u128 = frac.parse().ok()?;
        let denom = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        nanos = nanos.checked_add(frac_val.checked_mul(per_unit)? / denom)?;
    }
    Some(nanos)
}

/// Formats a duration compactly, keeping at most two units and truncating the
/// rest: `0s`, `750ns`, `12us`, `350ms`, `1.2s`, `59.9s`, `5m`, `5m3s`, `2h`,
/// `2h5m`, `1d`, `3d4h`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", nanos / 1_000);
    }
    if nanos < NANOS_PER_SEC {
        return format!("{}ms", nanos / 1_000_000);
    }
    let secs = d.as_secs();
    if secs < 60 {
        let tenths = d.subsec_millis() / 100;
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    let (big, small, big_unit, small_unit) = if secs < 3_600 {
        (secs / 60, secs % 60, "m", "s")
    } else if secs < 86_400 {
        (secs / 3_600, secs % 3_600 / 60, "h", "m")
    } else {
        (secs / 86_400, secs % 86_400 / 3_600, "d", "h")
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parse_ok_table() {
        let cases: &[(&str, Duration)] = &[
            ("500ms", ms(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7_200)),
            ("1d", Duration::from_secs(86_400)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1h 30m", Duration::from_secs(5_400)),
            ("1m30s500ms", ms(90_500)),
            ("1.5s", ms(1_500)),
            ("0.25h", Duration::from_secs(900)),
            (".5s", ms(500)),
            ("2.s", Duration::from_secs(2)),
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("2.5", ms(2_500)),
            (" 10s ", Duration::from_secs(10)),
            ("+10s", Duration::from_secs(10)),
            ("750ns", Duration::from_nanos(750)),
            ("12us", Duration::from_micros(12)),
            ("12µs", Duration::from_micros(12)),
            ("1.000000001s", Duration::new(1, 1)),
            ("1.0000000019s", Duration::new(1, 1)),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn parse_err_table() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("-5s", "negative"),
            ("5x", "expected a number with a unit"),
            ("5 x", "expected a number with a unit"),
            ("s", "expected a number with a unit"),
            ("ms5", "expected a number with a unit"),
            ("1h30", "expected a number with a unit"),
            ("30 40", "expected a number with a unit"),
            ("1..5s", "expected a number with a unit"),
            ("1.2.3s", "expected a number with a unit"),
            (".s", "expected a number with a unit"),
            ("5 minutes", "expected a number with a unit"),
            ("5S", "expected a number with a unit"),
            ("+", "expected a number with a unit"),
            (
                "99999999999999999999999999999999999999999d",
                "expected a number",
            ),
            ("999999999999999999999d", "too large"),
        ];
        for &(input, want) in cases {
            let e = parse_duration(input).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
            assert!(
                msg.starts_with(&format!("bad duration {input:?}: ")),
                "{msg}"
            );
        }
        assert_eq!(
            parse_duration("5x").unwrap_err().to_string(),
            r#"bad duration "5x": expected a number with a unit such as 500ms, 30s, 5m or 2h"#
        );
    }

    #[test]
    fn format_table() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(750), "750ns"),
            (Duration::from_micros(12), "12us"),
            (ms(350), "350ms"),
            (ms(999), "999ms"),
            (ms(1_000), "1s"),
            (ms(1_234), "1.2s"),
            (ms(1_299), "1.2s"),
            (ms(59_999), "59.9s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(303), "5m3s"),
            (ms(303_900), "5m3s"),
            (Duration::from_secs(3_600), "1h"),
            (Duration::from_secs(5_400), "1h30m"),
            (Duration::from_secs(7_259), "2h"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(3 * 86_400 + 4 * 3_600 + 5), "3d4h"),
        ];
        for &(d, want) in cases {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn formatted_output_parses_back() {
        for d in [
            Duration::from_nanos(5),
            Duration::from_micros(7),
            ms(1),
            ms(1_500),
            Duration::from_secs(303),
            Duration::from_secs(5_400),
            Duration::from_secs(200_000),
            Duration::MAX,
        ] {
            let s = format_duration(d);
            let back = parse_duration(&s).unwrap();
            assert!(back <= d, "{d:?} -> {s} -> {back:?}");
        }
    }
}
