//! Cron expressions and time zones: parsing what a person wrote into croner's `Cron` and a
//! chrono-tz zone, with one-line errors that name the field at fault, and the fire times
//! around an instant (croner computes them; this module only converts instants).

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The aliases a person may write instead of fields, and what croner is given for each.
const ALIASES: &[(&str, &str)] = &[
    ("@yearly", "@yearly"),
    ("@annually", "@annually"),
    ("@monthly", "@monthly"),
    ("@weekly", "@weekly"),
    ("@daily", "@daily"),
    ("@midnight", "@daily"),
    ("@hourly", "@hourly"),
];

const HOW: &str = "write 5 fields (minute hour day-of-month month day-of-week), 6 with seconds \
                   first, or an alias (@yearly @monthly @weekly @daily @midnight @hourly)";

/// One field of a six-field expression: its name, range and what it accepts.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    takes: &'static str,
}

const FIELDS: [Field; 6] = [
    Field {
        name: "second",
        lo: 0,
        hi: 59,
        takes: "0-59, lists (1,2), ranges (1-5) and steps (*/10, 0-30/5)",
    },
    Field {
        name: "minute",
        lo: 0,
        hi: 59,
        takes: "0-59, lists (1,2), ranges (1-5) and steps (*/10, 0-30/5)",
    },
    Field {
        name: "hour",
        lo: 0,
        hi: 23,
        takes: "0-23, lists (1,2), ranges (1-5) and steps (*/2, 8-18/2)",
    },
    Field {
        name: "day-of-month",
        lo: 1,
        hi: 31,
        takes: "1-31, lists, ranges, steps, L (last day), 15W (weekday nearest the 15th), ?",
    },
    Field {
        name: "month",
        lo: 1,
        hi: 12,
        takes: "1-12 or JAN-DEC, lists, ranges and steps",
    },
    Field {
        name: "day-of-week",
        lo: 0,
        hi: 7,
        takes: "0-7 or SUN-SAT (0 and 7 are Sunday), lists, ranges, steps, MON#2 (second Monday), 5L or FRI#L (last Friday), ?",
    },
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// The expression with its fields separated by one space, as stored and shown.
pub(crate) fn normalize(expr: &str) -> String {
    expr.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a cron expression (already normalized) into croner's form.
pub(crate) fn parse(expr: &str) -> Result<Cron, String> {
    let bad = |why: String| format!("cron {expr:?}: {why}");
    if expr.is_empty() {
        return Err(format!("cron expression is empty — {HOW}"));
    }
    if expr.starts_with('@') {
        let Some((_, given)) = ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(expr)) else {
            let names = ALIASES.iter().map(|(a, _)| *a);
            let hint = closest(&expr.to_ascii_lowercase(), names)
                .map(|a| format!("did you mean {a:?}?"))
                .unwrap_or_else(|| HOW.to_string());
            return Err(bad(format!("unknown alias — {hint}")));
        };
        return parser()
            .parse(given)
            .map_err(|e| bad(format!("{e} — {HOW}")));
    }
    let fields: Vec<&str> = expr.split(' ').collect();
    if fields.len() != 5 && fields.len() != 6 {
        return Err(bad(format!("has {} fields — {HOW}", fields.len())));
    }
    match parser().parse(expr) {
        Ok(cron) => Ok(cron),
        Err(e) => Err(bad(explain(&fields, &e.to_string()))),
    }
}

/// Names the field croner refused: each field is tried alone among wildcards, and the first
/// one that fails on its own is the one at fault.
fn explain(fields: &[&str], whole: &str) -> String {
    let offset = 6 - fields.len();
    for (i, text) in fields.iter().enumerate() {
        let at = i + offset;
        let mut alone = ["*"; 6];
        alone[at] = text;
        let Err(e) = parser().parse(&alone.join(" ")) else {
            continue;
        };
        let field = &FIELDS[at];
        let msg = e.to_string();
        let why = if let Some(n) = out_of_range(text, field) {
            format!(
                "{} {n} is out of range {}-{}",
                field.name, field.lo, field.hi
            )
        } else if msg.contains("Nth specifier") {
            format!(
                "{} {text:?}: the number after # must be 1-5 or L",
                field.name
            )
        } else if msg.contains("Step cannot be zero") {
            format!("{} {text:?}: a step of 0 never moves", field.name)
        } else if msg.contains("Invalid step syntax") {
            format!(
                "{} {text:?}: a step goes after * or a range (*/5, 10-40/5)",
                field.name
            )
        } else if msg.contains("Range out of bounds") {
            format!(
                "{} {text:?}: a range runs from low to high (e.g. 1-5)",
                field.name
            )
        } else if let Some(c) = msg.split('\'').nth(1).filter(|_| msg.contains("illegal")) {
            format!("{} {text:?}: {c:?} is not allowed here", field.name)
        } else {
            let detail = msg
                .trim_start_matches("Component error: ")
                .trim_end_matches('.');
            format!("{} {text:?}: {detail}", field.name)
        };
        return format!("{why} — {} takes {}", field.name, field.takes);
    }
    format!("{} — {HOW}", whole.trim_end_matches('.'))
}

/// A number written in a field that lies outside the field's range, if any (month and
/// weekday names are letters and never match).
fn out_of_range(text: &str, field: &Field) -> Option<String> {
    // The number after `#` (nth weekday) and after `/` (a step) has its own rule.
    let values = text.split(',').map(|part| {
        let part = part.split(['#', '/']).next().unwrap_or("");
        part.trim_end_matches(['L', 'W', 'l', 'w']).to_string()
    });
    for value in values {
        for n in value.split('-') {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let in_range = n
                .parse::<u32>()
                .is_ok_and(|v| (field.lo..=field.hi).contains(&v));
            if !in_range {
                return Some(n.to_string());
            }
        }
    }
    None
}

/// Parses an IANA zone name ("UTC" when empty); a typo gets the closest name.
pub(crate) fn parse_tz(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let lower = name.to_ascii_lowercase();
    let exact_but_case = names().find(|n| n.to_ascii_lowercase() == lower);
    let city = || {
        names().find(|n| {
            n.rsplit('/')
                .next()
                .is_some_and(|c| c.eq_ignore_ascii_case(&lower.replace(' ', "_")))
        })
    };
    let hint = exact_but_case
        .or_else(city)
        .or_else(|| closest(name, names()))
        .map(|n| format!("did you mean {n:?}?"))
        .unwrap_or_else(|| "use an IANA name such as \"Europe/Paris\" or \"UTC\"".to_string());
    Err(format!("unknown time zone {name:?} — {hint}"))
}

/// The known name nearest to `given` (ignoring case), if it is close: at most a third of its
/// length in edits, at least one.
fn closest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_ascii_lowercase();
    let limit = (given.chars().count() / 3).max(1);
    known
        .map(|k| {
            (
                strsim::damerau_levenshtein(&given, &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The first fire time strictly after `after_ms`. croner works in whole seconds, so the
/// search starts from the second `after_ms` falls in; a fire time is a whole second.
pub(crate) fn next_after(cron: &Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    let mut from_s = after_ms.div_euclid(1000);
    // croner's answer is always later than where it starts; the loop only guards that
    // promise (a fire time must never repeat or go back).
    for _ in 0..3 {
        let start = tz.timestamp_opt(from_s, 0).single()?;
        let next = cron.find_next_occurrence(&start, false).ok()?;
        let ms = next.timestamp_millis();
        if ms > after_ms {
            return Some(ms);
        }
        from_s = from_s.max(next.timestamp()).checked_add(1)?;
    }
    None
}

/// The last fire time strictly before `before_ms`.
pub(crate) fn prev_before(cron: &Cron, tz: Tz, before_ms: i64) -> Option<i64> {
    // Exclusive search back from the first whole second at or after `before_ms`.
    let mut from_s = before_ms.div_euclid(1000) + i64::from(before_ms.rem_euclid(1000) != 0);
    for _ in 0..3 {
        let start = tz.timestamp_opt(from_s, 0).single()?;
        let prev = cron.find_previous_occurrence(&start, false).ok()?;
        let ms = prev.timestamp_millis();
        if ms < before_ms {
            return Some(ms);
        }
        from_s = from_s.min(prev.timestamp()).checked_sub(1)?;
    }
    None
}

/// Whether the expression matches any time at all (February 30th never does): croner gives
/// up after years without a match, so a search from 1970 tells.
pub(crate) fn ever_matches(cron: &Cron, tz: Tz) -> bool {
    let Some(start) = DateTime::from_timestamp(0, 0) else {
        return false;
    };
    cron.find_next_occurrence(&start.with_timezone(&tz), false)
        .is_ok()
}
