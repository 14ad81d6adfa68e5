//! Finding the JSON object in what a model wrote: models wrap it in prose, in Markdown fences
//! or in a `<think>` block, whatever they were asked. The work is bounded: the text is capped,
//! and at most a few candidates are tried, each with one linear scan.

use serde_json::Value;

/// The longest answer herd reads (a plan of 50 steps of 8 KiB commands fits in half of it).
pub const MAX_ANSWER: usize = 1024 * 1024;
/// Fenced blocks and `{` positions tried before giving up.
const MAX_CANDIDATES: usize = 16;

/// The JSON object in `text`: the whole text; else the first ```` ``` ```` fenced block
/// (```` ```json ```` or any other) holding an object; else the first balanced `{…}` in the
/// prose (brace matching that skips strings). Only an object counts. A text longer than
/// `MAX_ANSWER` is refused.
pub fn extract_json(text: &str) -> Result<Value, String> {
    if text.len() > MAX_ANSWER {
        return Err(format!(
            "the answer is {} bytes, more than the {} herd reads — ask for something smaller",
            text.len(),
            MAX_ANSWER
        ));
    }
    let text = skip_thinking(text.trim_start_matches('\u{feff}')).trim();
    if text.is_empty() {
        return Err("the answer is empty".to_string());
    }
    if let Some(v) = object(text) {
        return Ok(v);
    }
    for block in fences(text).take(MAX_CANDIDATES) {
        if let Some(v) = object(block.trim()) {
            return Ok(v);
        }
    }
    let mut tried = 0;
    let mut from = 0;
    while tried < MAX_CANDIDATES {
        let Some(start) = text[from..].find('{').map(|i| i + from) else {
            break;
        };
        tried += 1;
        if let Some(end) = balanced_end(&text[start..])
            && let Some(v) = object(&text[start..start + end])
        {
            return Ok(v);
        }
        from = start + 1;
    }
    Err(format!(
        "no JSON object in the answer (it begins {:?})",
        preview(text, 80)
    ))
}

fn object(s: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// A reasoning model's leading `<think>…</think>` is not the answer.
fn skip_thinking(text: &str) -> &str {
    let t = text.trim_start();
    if let Some(rest) = t.strip_prefix("<think>")
        && let Some(end) = rest.find("</think>")
    {
        return &rest[end + "</think>".len()..];
    }
    text
}

/// The contents of each ```` ``` ```` fenced block, in order (the info string after the
/// opening fence is skipped).
fn fences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let open = rest.find("```")?;
        let after = &rest[open + 3..];
        // The info string (`json`, `JSON`, …) runs to the end of the line.
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let info = &after[..body_start];
        // `{` right after the fence: a one-line block with no info string.
        let body_start = if info.trim_start().starts_with('{') {
            0
        } else {
            body_start
        };
        let body = &after[body_start..];
        let close = body.find("```")?;
        rest = &body[close + 3..];
        Some(&body[..close])
    })
}

/// The length of the balanced `{…}` at the start of `s` (which starts with `{`), skipping
/// braces inside JSON strings.
fn balanced_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// At most `max` characters of `s`.
pub(crate) fn preview(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_object() {
        let cases: &[(&str, Value)] = &[
            (r#"{"a":1}"#, json!({"a":1})),
            ("  \n{\"a\":1}\n", json!({"a":1})),
            ("\u{feff}{\"a\":1}", json!({"a":1})),
            ("```json\n{\"a\":1}\n```", json!({"a":1})),
            (
                "Here it is:\n```JSON\n{\"a\":1}\n```\nDone.",
                json!({"a":1}),
            ),
            ("```\n{\"a\":2}\n```", json!({"a":2})),
            ("```{\"a\":3}```", json!({"a":3})),
            // A fence holding something else first, then the object.
            (
                "```bash\nls\n```\nand\n```json\n{\"a\":4}\n```",
                json!({"a":4}),
            ),
            ("Sure! {\"a\": \"}{\"} hope that helps", json!({"a":"}{"})),
            (
                r#"prose {"a": "say \"}\" here"} more"#,
                json!({"a":"say \"}\" here"}),
            ),
            ("{not json} then {\"b\":true}", json!({"b":true})),
            ("<think>maybe {\"x\":0}</think>\n{\"a\":5}", json!({"a":5})),
            (
                "nested {\"a\":{\"b\":{\"c\":[1,{\"d\":2}]}}} tail",
                json!({"a":{"b":{"c":[1,{"d":2}]}}}),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&extract_json(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        for text in [
            "",
            "   ",
            "I cannot help with that.",
            "[1,2,3]",
            "\"a string\"",
            "42",
            "{\"a\": 1",
            "```json\n{broken\n```",
            "}}}}{{{{",
        ] {
            let e = extract_json(text).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn bounded_on_huge_or_hostile_input() {
        let huge = "x".repeat(5 * 1024 * 1024);
        assert!(extract_json(&huge).unwrap_err().contains("more than"));
        // Many unbalanced braces: a few candidates, each one linear scan.
        let braces = "{".repeat(MAX_ANSWER - 10);
        assert!(extract_json(&braces).is_err());
        let opens = "{\"a\":".repeat(200_000);
        assert!(extract_json(&opens).is_err());
        // Deep nesting: serde_json's recursion limit refuses it, no stack overflow.
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert!(extract_json(&deep).is_err());
        let fences = "```\n".repeat(100_000);
        assert!(extract_json(&fences).is_err());
    }

    #[test]
    fn preview_cuts_on_characters() {
        assert_eq!(preview("ééé", 2), "éé…");
        assert_eq!(preview("ab", 5), "ab");
    }
}
