//! Label syntax: the character rules for keys and values (shared with selectors)
//! and parsing of `key=value` labels and `key=value` / `key-` label edits.

/// Characters that may not appear in a value or name: they are selector operators.
pub(crate) const RESERVED: &[char] = &[',', '&', '!', '(', ')', '='];

/// A label key as a regular expression (what [`is_key_char`] allows), for API schemas.
pub const KEY_PATTERN: &str = "^[A-Za-z0-9_./-]+$";

/// A label value as a regular expression (what [`is_value_char`] allows: no character
/// Rust counts as whitespace or control, none of `, & ! ( ) =`), for API schemas.
pub const VALUE_PATTERN: &str = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000,&!()=]+$";

/// Whether `c` may appear in a label/fact key: `[A-Za-z0-9_.\-/]`.
pub(crate) fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

/// Whether `c` may appear in a value or name: anything but whitespace, control characters
/// and `,&!()=`.
pub(crate) fn is_value_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !RESERVED.contains(&c)
}

/// The first character of `key` that is not allowed in a key, if any.
pub(crate) fn bad_key_char(key: &str) -> Option<char> {
    key.chars().find(|&c| !is_key_char(c))
}

/// A label or label edit that does not follow the `key=value` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad label {input:?}: {reason}; expected key=value such as role=web")]
pub struct LabelError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> LabelError {
    LabelError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// The longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 128;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;
/// The most labels one machine declares.
pub const MAX_LABELS: usize = 64;

fn check_key(input: &str, key: &str) -> Result<(), LabelError> {
    if key.is_empty() {
        return Err(err(input, "the key before '=' is empty"));
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(err(
            input,
            format!(
                "the key is {} bytes long; at most {MAX_LABEL_KEY}",
                key.len()
            ),
        ));
    }
    if let Some(c) = bad_key_char(key) {
        return Err(err(
            input,
            format!(
                "key {key:?} contains {c:?}; keys may only contain letters, digits, '_', '.', '-' and '/'"
            ),
        ));
    }
    Ok(())
}

fn check_value(input: &str, key: &str, value: &str) -> Result<(), LabelError> {
    if value.is_empty() {
        return Err(err(input, format!("the value after '{key}=' is empty")));
    }
    if value.len() > MAX_LABEL_VALUE {
        return Err(err(
            input,
            format!(
                "the value is {} bytes long; at most {MAX_LABEL_VALUE}",
                value.len()
            ),
        ));
    }
    if let Some(c) = value.chars().find(|&c| !is_value_char(c)) {
        return Err(err(
            input,
            format!(
                "value {value:?} contains {c:?}; values may not contain whitespace, control characters or any of , & ! ( ) ="
            ),
        ));
    }
    Ok(())
}

/// Parses a `key=value` label. The key follows the selector key rules
/// (`[A-Za-z0-9_.\-/]+`); the value is non-empty and may not contain whitespace
/// or `,&!()=`. Surrounding whitespace is not trimmed: labels come from argv.
pub fn parse_label(s: &str) -> Result<(String, String), LabelError> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(err(s, "there is no '='"));
    };
    check_key(s, key)?;
    if is_reserved_key(key) {
        return Err(err(
            s,
            format!(
                "{key:?} is a fact or selector name ({}), which a label would shadow; pick another key such as my_{key}",
                RESERVED_KEYS.join(", ")
            ),
        ));
    }
    check_value(s, key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Keys a label may not have: the facts a machine reports (a label would shadow them in
/// selectors) and the selector atoms `name` and `ip`.
pub const RESERVED_KEYS: &[&str] = &[
    "name",
    "ip",
    "ips",
    "macs",
    "machine_id",
    "hostname",
    "os",
    "os_name",
    "os_version",
    "kernel",
    "arch",
    "cpus",
    "memory_bytes",
];

/// Whether `key` is one a label may not have (see [`RESERVED_KEYS`]).
pub fn is_reserved_key(key: &str) -> bool {
    RESERVED_KEYS.contains(&key)
}

/// Parses a label edit: `key=value` sets a label (`Some(value)`), `key-` removes
/// it (`None`).
pub fn parse_label_edit(s: &str) -> Result<(String, Option<String>), LabelError> {
    if s.contains('=') {
        let (k, v) = parse_label(s)?;
        return Ok((k, Some(v)));
    }
    let Some(key) = s.strip_suffix('-') else {
        return Err(err(
            s,
            "there is no '='; use key=value to set a label or key- to remove it",
        ));
    };
    if key.is_empty() {
        return Err(err(s, "the key before '-' is empty"));
    }
    check_key(s, key)?;
    Ok((key.to_string(), None))
}

/// Checks a label key alone (as given to remove a label).
pub fn check_label_key(key: &str) -> Result<(), LabelError> {
    check_key(key, key)
}

/// A machine's labels, by key.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Operator edits of a machine's labels, kept apart from what its agent reports: a value
/// sets (or overrides) a label, `None` removes a reported one.
pub type LabelEdits = std::collections::BTreeMap<String, Option<String>>;

/// The labels selectors match: what the agent reports, as far as its join token allowed
/// (`allowed`: `None` allows any), with operator edits applied (an edit sets or removes a
/// label whatever the agent reported).
pub fn effective_labels(reported: &Labels, allowed: Option<&Labels>, edits: &LabelEdits) -> Labels {
    let mut labels: Labels = reported
        .iter()
        .filter(|(k, v)| label_allowed(allowed, k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in edits {
        match v {
            Some(v) => {
                labels.insert(k.clone(), v.clone());
            }
            None => {
                labels.remove(k);
            }
        }
    }
    labels
}

/// Whether a join token's `allowed` labels (`None`: any) let an agent hold `key=value`; an
/// allowed value `*` allows any value of its key.
pub fn label_allowed(allowed: Option<&Labels>, key: &str, value: &str) -> bool {
    match allowed {
        None => true,
        Some(a) => a.get(key).is_some_and(|v| v == value || v == "*"),
    }
}

/// What an agent reports beyond what its token allowed and no operator edit settled: shown
/// as claims, matched by no selector until an operator sets the label.
pub fn label_claims(reported: &Labels, allowed: Option<&Labels>, edits: &LabelEdits) -> Labels {
    reported
        .iter()
        .filter(|(k, v)| !label_allowed(allowed, k, v) && !edits.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_beyond_the_token_are_claims_until_an_operator_sets_them() {
        let reported: Labels = [("role", "db"), ("zone", "eu"), ("rack", "r7")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let allowed: Labels = [("role", "web"), ("rack", "*")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let none = LabelEdits::new();
        let held = effective_labels(&reported, Some(&allowed), &none);
        assert_eq!(held.keys().collect::<Vec<_>>(), ["rack"]);
        let claims = label_claims(&reported, Some(&allowed), &none);
        assert_eq!(claims.keys().collect::<Vec<_>>(), ["role", "zone"]);
        // An operator accepts role=db: it is matched and no longer a claim.
        let edits: LabelEdits = [("role".to_string(), Some("db".to_string()))].into();
        assert_eq!(
            effective_labels(&reported, Some(&allowed), &edits)["role"],
            "db"
        );
        assert!(!label_claims(&reported, Some(&allowed), &edits).contains_key("role"));
        // A token that allows any labels: everything reported is held.
        assert_eq!(effective_labels(&reported, None, &none), reported);
        assert!(label_claims(&reported, None, &none).is_empty());
    }

    #[test]
    fn parse_label_table() {
        let ok: &[(&str, &str, &str)] = &[
            ("role=web", "role", "web"),
            ("a=b", "a", "b"),
            ("herd.io/zone=eu-west-1", "herd.io/zone", "eu-west-1"),
            ("k_1=v.2:3", "k_1", "v.2:3"),
            ("env=prod*", "env", "prod*"),
        ];
        for &(input, k, v) in ok {
            assert_eq!(
                parse_label(input),
                Ok((k.to_string(), v.to_string())),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("", "no '='"),
            ("role", "no '='"),
            ("=web", "key before '=' is empty"),
            ("role=", "value after 'role=' is empty"),
            ("ro le=web", "contains ' '"),
            ("rôle=web", "contains 'ô'"),
            ("role=we b", "may not contain whitespace"),
            ("role=a=b", "contains '='"),
            ("role=a,b", "contains ','"),
            ("role=(x)", "contains '('"),
            ("os=debian", "fact or selector name"),
            ("name=web-1", "fact or selector name"),
            ("ip=10.0.0.1", "fact or selector name"),
            ("os_version=12", "fact or selector name"),
        ];
        for &(input, want) in bad {
            let e = parse_label(input).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
            assert!(msg.contains("expected key=value"), "{input:?}: {msg}");
            assert_eq!(e.input, input);
        }
    }

    #[test]
    fn every_fact_is_a_reserved_key() {
        for (k, _) in crate::Facts::default().attrs() {
            assert!(is_reserved_key(k), "{k}");
        }
    }

    #[test]
    fn parse_label_edit_table() {
        let ok: &[(&str, &str, Option<&str>)] = &[
            ("role=web", "role", Some("web")),
            ("role-", "role", None),
            ("a-b-", "a-b", None),
            ("herd.io/zone-", "herd.io/zone", None),
            ("a-=b", "a-", Some("b")),
        ];
        for &(input, k, v) in ok {
            assert_eq!(
                parse_label_edit(input),
                Ok((k.to_string(), v.map(str::to_string))),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("", "key- to remove"),
            ("role", "key- to remove"),
            ("-", "key before '-' is empty"),
            ("ro le-", "contains ' '"),
            ("role=", "value after 'role=' is empty"),
        ];
        for &(input, want) in bad {
            let msg = parse_label_edit(input).unwrap_err().to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
        }
    }
}
