//! Parameters given to a run, checked against what the definition declares: types, choices,
//! required ones, defaults; secret ones kept apart.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::def::{Param, ParamType};
use crate::suggest::did_you_mean;

/// Parameters ready for a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Every parameter but the secret ones, typed.
    pub values: BTreeMap<String, Value>,
    /// The secret ones, in clear (the caller seals or passes them on, never stores them).
    pub secrets: BTreeMap<String, String>,
}

/// Checks `given` (from `-p k=v`, strings, or from the API, JSON values) against `declared`.
pub fn resolve(
    declared: &BTreeMap<String, Param>,
    given: &BTreeMap<String, Value>,
) -> Result<Resolved, String> {
    for k in given.keys() {
        if !declared.contains_key(k) {
            let known = if declared.is_empty() {
                " (it declares none)".to_string()
            } else {
                did_you_mean(k, declared.keys().map(String::as_str))
            };
            return Err(format!("unknown parameter {k:?}{known}"));
        }
    }
    let mut out = Resolved::default();
    for (name, p) in declared {
        let v = match given.get(name).or(p.default.as_ref()) {
            Some(v) => v,
            None if p.required => {
                return Err(format!(
                    "parameter {name:?} is required — give it with -p {name}=…"
                ));
            }
            None => continue,
        };
        let v = typed(name, p, v)?;
        match (p.ty, v) {
            (ParamType::Secret, Value::String(s)) => {
                out.secrets.insert(name.clone(), s);
            }
            (_, v) => {
                out.values.insert(name.clone(), v);
            }
        }
    }
    Ok(out)
}

/// `v` as parameter `name` of type `p.ty` (a string is read as the type asks).
pub fn typed(name: &str, p: &Param, v: &Value) -> Result<Value, String> {
    let bad = |what: &str| {
        Err(format!(
            "parameter {name:?} is {}, not {what}",
            match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            }
        ))
    };
    match p.ty {
        ParamType::String | ParamType::Secret => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => bad("a string"),
        },
        ParamType::Int => match v {
            Value::Number(n) if n.is_i64() => Ok(v.clone()),
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Ok(Value::from(i)),
                Err(_) => bad("an integer"),
            },
            _ => bad("an integer"),
        },
        ParamType::Bool => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) => match s.trim() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => bad("true or false"),
            },
            _ => bad("true or false"),
        },
        ParamType::Choice => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return bad("a string"),
            };
            if p.choices.contains(&s) {
                Ok(Value::String(s))
            } else {
                Err(format!(
                    "parameter {name:?} is {s:?}, not one of {}",
                    p.choices.join(", ")
                ))
            }
        }
    }
}

/// `k=v` strings (from the command line) as given parameters.
pub fn from_pairs(pairs: &[String]) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!("-p {p:?}: expected NAME=VALUE"));
        };
        out.insert(k.trim().to_string(), Value::String(v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl() -> BTreeMap<String, Param> {
        serde_json::from_value(json!({
            "who": {"type": "string", "default": "world"},
            "n": {"type": "int", "required": true},
            "go": {"type": "bool", "default": false},
            "env": {"type": "choice", "choices": ["dev", "prod"], "default": "dev"},
            "token": {"type": "secret"},
        }))
        .unwrap()
    }

    #[test]
    fn types_defaults_and_secrets() {
        let r = resolve(
            &decl(),
            &from_pairs(&["n=3".into(), "go=yes".into(), "token=s3cret".into()]).unwrap(),
        )
        .unwrap();
        assert_eq!(r.values["n"], json!(3));
        assert_eq!(r.values["go"], json!(true));
        assert_eq!(r.values["who"], json!("world"));
        assert_eq!(r.secrets["token"], "s3cret");
        assert!(!r.values.contains_key("token"));
    }

    #[test]
    fn clear_errors() {
        let e = resolve(&decl(), &BTreeMap::new()).unwrap_err();
        assert!(e.contains("\"n\" is required"), "{e}");
        let e = resolve(&decl(), &from_pairs(&["n=x".into()]).unwrap()).unwrap_err();
        assert!(e.contains("not an integer"), "{e}");
        let e = resolve(
            &decl(),
            &from_pairs(&["n=1".into(), "env=qa".into()]).unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("not one of dev, prod"), "{e}");
        let e = resolve(
            &decl(),
            &from_pairs(&["n=1".into(), "whoo=x".into()]).unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("did you mean \"who\""), "{e}");
    }
}
