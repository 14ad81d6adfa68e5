//! Expressions: `${{ … }}` in strings, and `if`, evaluated by minijinja (Jinja expression
//! syntax: `steps.b.outputs.n == "2"`, `params.count > 3 and not steps.x.condition`) over a
//! context of `params`, `steps`, `vars` and `workflow`. Undefined values chain (a missing
//! output reads as empty and compares false), so a condition over a skipped step is false.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// The roots an expression may name.
pub const ROOTS: &[&str] = &["params", "steps", "vars", "workflow", "secrets"];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_recursion_limit(64);
        env
    })
}

/// A context ready for evaluation (converted once, used for every expression of a step).
#[derive(Clone)]
pub struct Context(minijinja::Value);

impl Context {
    pub fn new(ctx: &Value) -> Context {
        Context(minijinja::Value::from_serialize(ctx))
    }
}

/// The `${{ … }}` pieces of `s`: (start, end, expression source), or why `s` is malformed.
pub fn pieces(s: &str) -> Result<Vec<(usize, usize, &str)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = s[at..].find("${{") {
        let start = at + open;
        let Some(close) = s[start + 3..].find("}}") else {
            return Err(format!(
                "unterminated expression: {:?} has no closing }}}}",
                truncate(&s[start..], 40)
            ));
        };
        let end = start + 3 + close + 2;
        out.push((start, end, s[start + 3..end - 2].trim()));
        at = end;
    }
    Ok(out)
}

/// The source of a condition: `${{ x }}` or bare `x`.
pub fn condition_source(s: &str) -> &str {
    let t = s.trim();
    match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("${{") => inner.trim(),
        _ => t,
    }
}

/// Compiles `src` and answers the names it reads, dotted (`steps.b.outputs.n`).
pub fn names(src: &str) -> Result<BTreeSet<String>, String> {
    if src.trim().is_empty() {
        return Err("empty expression".into());
    }
    let expr = env()
        .compile_expression(src)
        .map_err(|e| format!("bad expression {:?}: {}", truncate(src, 60), message(&e)))?;
    Ok(expr.undeclared_variables(true).into_iter().collect())
}

/// Evaluates a condition: its truth in Jinja's sense.
pub fn eval_condition(src: &str, ctx: &Context) -> Result<bool, String> {
    Ok(eval(condition_source(src), ctx)?.is_true())
}

fn eval(src: &str, ctx: &Context) -> Result<minijinja::Value, String> {
    let expr = env()
        .compile_expression(src)
        .map_err(|e| format!("bad expression {:?}: {}", truncate(src, 60), message(&e)))?;
    expr.eval(&ctx.0)
        .map_err(|e| format!("{:?}: {}", truncate(src, 60), message(&e)))
}

/// `s` with every `${{ … }}` replaced by its value as text (nothing for an undefined or
/// none value, JSON for a list or a map).
pub fn render_str(s: &str, ctx: &Context) -> Result<String, String> {
    let pieces = pieces(s)?;
    if pieces.is_empty() {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end, src) in pieces {
        out.push_str(&s[at..start]);
        out.push_str(&as_text(&eval(src, ctx)?));
        at = end;
    }
    out.push_str(&s[at..]);
    Ok(out)
}

/// `v` with its strings rendered; a string that is one whole expression takes the value's
/// own type (`${{ params.count }}` stays a number).
pub fn render_value(v: &Value, ctx: &Context) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let t = s.trim();
            match pieces(t)?.as_slice() {
                [(0, end, src)] if *end == t.len() => {
                    let val = eval(src, ctx)?;
                    if val.is_undefined() || val.is_none() {
                        Value::Null
                    } else {
                        serde_json::to_value(&val).map_err(|e| e.to_string())?
                    }
                }
                _ => Value::String(render_str(s, ctx)?),
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(x, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn as_text(v: &minijinja::Value) -> String {
    if v.is_undefined() || v.is_none() {
        return String::new();
    }
    match v.kind() {
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map => {
            serde_json::to_string(v).unwrap_or_default()
        }
        _ => v.to_string(),
    }
}

fn message(e: &minijinja::Error) -> String {
    let mut m = e.kind().to_string();
    if let Some(d) = e.detail() {
        m.push_str(": ");
        m.push_str(d);
    }
    crate::parse::one_line(&m)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::new(&json!({
            "params": {"who": "world", "n": 3},
            "steps": {"b": {"status": "succeeded", "outputs": {"n": "2"}, "condition": false}},
        }))
    }

    #[test]
    fn renders_text_and_keeps_types_of_whole_expressions() {
        let c = ctx();
        assert_eq!(
            render_str("hello ${{ params.who }}!", &c).unwrap(),
            "hello world!"
        );
        assert_eq!(render_str("${{ steps.x.outputs.n }}", &c).unwrap(), "");
        assert_eq!(
            render_value(
                &json!({"count": "${{ params.n }}", "s": "n=${{ params.n }}"}),
                &c
            )
            .unwrap(),
            json!({"count": 3, "s": "n=3"})
        );
        assert!(render_str("${{ params.who ", &c).is_err());
    }

    #[test]
    fn conditions() {
        let c = ctx();
        assert!(eval_condition("${{ steps.b.outputs.n == \"2\" }}", &c).unwrap());
        assert!(eval_condition("steps.b.outputs.n == '2'", &c).unwrap());
        assert!(!eval_condition("${{ steps.b.condition }}", &c).unwrap());
        assert!(!eval_condition("${{ steps.gone.outputs.n == '2' }}", &c).unwrap());
        assert!(eval_condition("${{ params.n > 2 }}", &c).unwrap());
    }

    #[test]
    fn names_are_dotted_and_bad_syntax_is_refused() {
        let n = names("steps.b.outputs.n == '2' and params.who").unwrap();
        assert!(n.contains("steps.b.outputs.n"), "{n:?}");
        assert!(n.contains("params.who"), "{n:?}");
        assert!(names("steps.b.outputs.n ==").is_err());
        assert!(names("").is_err());
    }
}
