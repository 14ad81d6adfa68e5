//! What a task reports through the file named by `HERD_OUTPUT`: values for the steps after
//! it, a condition, events and variables. Pure parsing and writing of its line format.
//!
//! The format is GitHub-Actions-like, one entry per line:
//! - `key=value` (the value is the rest of the line, `=` included);
//! - `key<<DELIM`, then lines up to one that is exactly `DELIM`: a multi-line value;
//! - a line that is a JSON object `{...}`: each of its keys, string values as they are,
//!   other values as their JSON text;
//! - reserved keys: `herd.condition=true|false`, `herd.event={"name": …, "data": …}`,
//!   `herd.var.KEY=VALUE`; any other key starting with `herd.` is a problem.
//!
//! Keys are `[A-Za-z0-9_.-]{1,128}`. Empty lines are ignored; a later entry of a key wins;
//! what cannot be read goes to [`TaskOutputs::problems`] and never stops the rest.

use std::collections::BTreeMap;

/// The longest key.
pub const MAX_KEY: usize = 128;
/// The key that sets the task's condition.
pub const CONDITION_KEY: &str = "herd.condition";
/// The key that records an event.
pub const EVENT_KEY: &str = "herd.event";
/// The prefix of a key that sets a variable.
pub const VAR_PREFIX: &str = "herd.var.";

/// Everything a task's output file said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutputs {
    /// `key=value` entries (not the reserved ones).
    pub values: BTreeMap<String, String>,
    /// `herd.condition`: the last one given.
    pub condition: Option<bool>,
    /// `herd.event` entries, in order.
    pub events: Vec<OutputEvent>,
    /// `herd.var.KEY=VALUE` entries, by KEY.
    pub vars: BTreeMap<String, String>,
    /// Lines that could not be read, each saying which and why.
    pub problems: Vec<String>,
}

/// One `herd.event` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputEvent {
    pub name: String,
    pub data: serde_json::Value,
}

/// Whether `key` may name an output: `[A-Za-z0-9_.-]{1,128}`.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Reads the text of a task's output file. Never fails: what cannot be read is in
/// `problems`.
pub fn parse(text: &str) -> TaskOutputs {
    let mut out = TaskOutputs::default();
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_start().starts_with('{') {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(map)) => {
                    for (key, value) in map {
                        let value = match value {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        out.set(n, &key, value);
                    }
                }
                Ok(_) | Err(_) => out
                    .problems
                    .push(format!("line {n}: not a JSON object: {}", clip(line))),
            }
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                out.set(n, &line[..e], line[e + 1..].to_string());
            }
            (_, Some(h)) => {
                let key = &line[..h];
                let delim = &line[h + 2..];
                if delim.is_empty() {
                    out.problems.push(format!(
                        "line {n}: {key}<< names no delimiter: {}",
                        clip(line)
                    ));
                    continue;
                }
                let mut body: Vec<&str> = Vec::new();
                let mut closed = false;
                for (_, raw) in lines.by_ref() {
                    let l = raw.strip_suffix('\r').unwrap_or(raw);
                    if l == delim {
                        closed = true;
                        break;
                    }
                    body.push(l);
                }
                if closed {
                    out.set(n, key, body.join("\n"));
                } else {
                    out.problems.push(format!(
                        "line {n}: {key}<<{delim} has no closing {delim} line; the value is dropped"
                    ));
                }
            }
            _ => out.problems.push(format!(
                "line {n}: expected key=value, key<<DELIM or a JSON object: {}",
                clip(line)
            )),
        }
    }
    out
}

impl TaskOutputs {
    /// Applies one entry of line `n`.
    fn set(&mut self, n: usize, key: &str, value: String) {
        if !is_valid_key(key) {
            self.problems.push(format!(
                "line {n}: bad key {:?}: expected 1 to {MAX_KEY} of A-Z a-z 0-9 _ . -",
                clip(key)
            ));
            return;
        }
        if key == CONDITION_KEY {
            match value.trim() {
                "true" => self.condition = Some(true),
                "false" => self.condition = Some(false),
                other => self.problems.push(format!(
                    "line {n}: {CONDITION_KEY} must be true or false, not {:?}",
                    clip(other)
                )),
            }
        } else if key == EVENT_KEY {
            match parse_event(&value) {
                Ok(ev) => self.events.push(ev),
                Err(why) => self.problems.push(format!("line {n}: {EVENT_KEY}: {why}")),
            }
        } else if let Some(var) = key.strip_prefix(VAR_PREFIX) {
            if var.is_empty() {
                self.problems
                    .push(format!("line {n}: {VAR_PREFIX} names no variable"));
            } else {
                self.vars.insert(var.to_string(), value);
            }
        } else if key.starts_with("herd.") {
            self.problems.push(format!(
                "line {n}: unknown reserved key {key:?} (herd.condition, herd.event and herd.var.KEY are herd's)"
            ));
        } else {
            self.values.insert(key.to_string(), value);
        }
    }
}

fn parse_event(text: &str) -> Result<OutputEvent, String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"name\": …, \"data\": …}}: {e}"))?;
    let serde_json::Value::Object(mut map) = v else {
        return Err("expected a JSON object {\"name\": …, \"data\": …}".to_string());
    };
    let name = match map.remove("name") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        _ => return Err("its \"name\" must be a non-empty string".to_string()),
    };
    let data = map.remove("data").unwrap_or(serde_json::Value::Null);
    Ok(OutputEvent { name, data })
}

/// A line's text as it is quoted in a problem: at most 80 characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The entry that sets `key` to `value`, newline included: `key=value`, or the
/// `key<<DELIM` form when the value holds a line break (with a delimiter that is none of its
/// lines).
pub fn entry(key: &str, value: &str) -> String {
    if !value.contains('\n') && !value.contains('\r') {
        return format!("{key}={value}\n");
    }
    let mut delim = "HERD_EOF".to_string();
    let mut n = 0u32;
    while value
        .split('\n')
        .any(|l| l.strip_suffix('\r').unwrap_or(l) == delim)
    {
        n += 1;
        delim = format!("HERD_EOF_{n}");
    }
    format!("{key}<<{delim}\n{value}\n{delim}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a=1", &[("a", "1")]),
            ("a=1\nb=2\n", &[("a", "1"), ("b", "2")]),
            ("a=1\r\nb=2\r\n", &[("a", "1"), ("b", "2")]),
            ("a=\n", &[("a", "")]),
            ("a=x=y", &[("a", "x=y")]),
            ("a=1\na=2", &[("a", "2")]),
            ("\n\n  \na=1\n\n", &[("a", "1")]),
            ("a=b<<c", &[("a", "b<<c")]),
            ("k.v-1_x=ok", &[("k.v-1_x", "ok")]),
            ("m<<EOF\nline 1\nline 2\nEOF\n", &[("m", "line 1\nline 2")]),
            ("m<<EOF\nEOF\n", &[("m", "")]),
            ("m<<E\na=1\nE\nb=2", &[("m", "a=1"), ("b", "2")]),
            (
                r#"{"s": "text", "n": 3, "o": {"x": [1]}, "t": true}"#,
                &[
                    ("s", "text"),
                    ("n", "3"),
                    ("o", r#"{"x":[1]}"#),
                    ("t", "true"),
                ],
            ),
            ("a=1\n{\"a\": \"2\"}", &[("a", "2")]),
        ];
        for (text, want) in cases {
            let got = parse(text);
            assert_eq!(got.values, values(want), "{text:?}");
            assert!(got.problems.is_empty(), "{text:?}: {:?}", got.problems);
        }
    }

    #[test]
    fn problems_table() {
        // (text, values kept, problems)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);
        let cases: &[Case] = &[
            ("just text", &[], 1),
            ("=1", &[], 1),
            ("bad key=1\nok=2", &[("ok", "2")], 1),
            ("k<<EOF\nnever closed", &[], 1),
            ("k<<\nx", &[], 2),
            ("{not json", &[], 1),
            ("[1, 2]", &[], 1),
            ("{\"bad key\": 1, \"ok\": 2}", &[("ok", "2")], 1),
            ("herd.other=1", &[], 1),
            ("herd.condition=maybe", &[], 1),
            ("herd.event=nope", &[], 1),
            ("herd.event={\"data\": 1}", &[], 1),
            ("herd.var.=x", &[], 1),
            (&"x".repeat(129), &[], 1),
        ];
        for (text, want, problems) in cases {
            let got = parse(text);
            assert_eq!(got.values, values(want), "{text:?}");
            assert_eq!(
                got.problems.len(),
                *problems,
                "{text:?}: {:?}",
                got.problems
            );
        }
        let long = format!("{}=1", "k".repeat(128));
        assert_eq!(parse(&long).values.len(), 1);
        let p = parse("a=1\nnonsense\n");
        assert!(p.problems[0].starts_with("line 2:"), "{:?}", p.problems);
    }

    #[test]
    fn reserved_keys() {
        let got = parse(
            "herd.condition=true\nherd.condition=false\n\
             herd.event={\"name\": \"deployed\", \"data\": {\"v\": 2}}\n\
             herd.event={\"name\": \"bare\"}\n\
             herd.var.COUNT=3\nherd.var.COUNT=4\nherd.var.other=x\n\
             {\"herd.condition\": \"true\", \"herd.var.J\": 5}\n",
        );
        assert_eq!(got.condition, Some(true));
        assert_eq!(
            got.events,
            vec![
                OutputEvent {
                    name: "deployed".into(),
                    data: json!({"v": 2})
                },
                OutputEvent {
                    name: "bare".into(),
                    data: serde_json::Value::Null
                },
            ]
        );
        assert_eq!(
            got.vars,
            values(&[("COUNT", "4"), ("other", "x"), ("J", "5")])
        );
        assert!(got.values.is_empty());
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(parse("herd.condition= false ").condition, Some(false));
    }

    #[test]
    fn entries_read_back() {
        for value in [
            "",
            "plain",
            "a=b",
            "two\nlines",
            "has\nHERD_EOF\ninside",
            "has\nHERD_EOF\nHERD_EOF_1\n",
            "trailing newline\n",
        ] {
            let text = entry("k", value);
            let got = parse(&text);
            assert_eq!(
                got.values.get("k").map(String::as_str),
                Some(value),
                "{text:?}"
            );
            assert!(got.problems.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in ["<<", "=", "{", "}", "\u{0}", "é<<é\né", "a<<b=c", "{\"a\":"] {
            let _ = parse(text);
        }
    }
}
