//! Policy decisions: a [`Policy`] maps each class to a [`Decision`], with explicit patterns over
//! a simple command's normalized text that override the class (deny before allow); a verdict's
//! decision is the worst over its parts. Roles and label scoping are the server's: this module
//! only holds the data ([`PolicySet`], per [`Role`]).

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::{Class, Verdict};

/// What herd does with a command, mildest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Runs (a Caution command's reason is shown with it).
    Allow,
    /// Waits for a person's approval.
    Approve,
    /// Refused.
    Deny,
}

/// The decision for each class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRules {
    pub safe: Decision,
    pub caution: Decision,
    pub dangerous: Decision,
    pub forbidden: Decision,
}

impl Default for ClassRules {
    fn default() -> Self {
        ClassRules {
            safe: Decision::Allow,
            caution: Decision::Allow,
            dangerous: Decision::Approve,
            forbidden: Decision::Deny,
        }
    }
}

impl ClassRules {
    pub fn for_class(&self, class: Class) -> Decision {
        match class {
            Class::Safe => self.safe,
            Class::Caution => self.caution,
            Class::Dangerous => self.dangerous,
            Class::Forbidden => self.forbidden,
        }
    }

    fn all(decision: Decision) -> ClassRules {
        ClassRules {
            safe: decision,
            caution: decision,
            dangerous: decision,
            forbidden: decision,
        }
    }
}

/// A pattern over a simple command's normalized text ([`crate::Part::command`], and the same
/// without wrappers, [`crate::Part::inner`]). Written as a string: `re:REGEX` is a regular
/// expression (searched), anything else a glob matched against the whole text (`*` any run of
/// characters, `?` one character).
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    re: Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, PolicyError> {
        let re = match source.strip_prefix("re:") {
            Some(re) => Regex::new(re),
            None => {
                let mut re = String::from("^");
                for c in source.chars() {
                    match c {
                        '*' => re.push_str(".*"),
                        '?' => re.push('.'),
                        c => re.push_str(&regex::escape(&c.to_string())),
                    }
                }
                re.push('$');
                Regex::new(&re)
            }
        };
        if source.trim().is_empty() {
            return Err(PolicyError(format!(
                "pattern {source:?} is empty — write a glob or re:REGEX"
            )));
        }
        match re {
            Ok(re) => Ok(Pattern {
                source: source.to_string(),
                re,
            }),
            Err(e) => {
                let why = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                Err(PolicyError(format!(
                    "pattern {source:?} is not a valid regular expression: {why} — fix or quote it"
                )))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        self.re.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(|e| serde::de::Error::custom(e.0))
    }
}

/// A policy error a person can fix; its text is one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A command policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub rules: ClassRules,
    /// A simple command matching one of these is allowed whatever its class (but never a
    /// construct herd could not read).
    #[serde(default)]
    pub allow_patterns: Vec<Pattern>,
    /// A simple command matching one of these is denied; tried before `allow_patterns`.
    #[serde(default)]
    pub deny_patterns: Vec<Pattern>,
}

impl Policy {
    /// A policy that gives every command the same decision.
    pub fn uniform(decision: Decision) -> Policy {
        Policy {
            rules: ClassRules::all(decision),
            ..Policy::default()
        }
    }

    /// Reads a policy from JSON (YAML goes through the same serde shape); the error is one line.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("invalid policy: {e}")))?;
        policy.validate()?;
        Ok(policy)
    }

    /// A worse class never gets a milder decision than a better one (a policy that approves
    /// Caution commands but allows Dangerous ones is a mistake).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let r = &self.rules;
        let order = [
            ("safe", r.safe),
            ("caution", r.caution),
            ("dangerous", r.dangerous),
            ("forbidden", r.forbidden),
        ];
        for pair in order.windows(2) {
            let ((a, da), (b, db)) = (pair[0], pair[1]);
            if db < da {
                return Err(PolicyError(format!(
                    "invalid policy: {b} is {} but {a} is {} — a worse class cannot get a milder decision",
                    name(db),
                    name(da)
                )));
            }
        }
        Ok(())
    }
}

fn name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Approve => "approve",
        Decision::Deny => "deny",
    }
}

/// The decision for a classified command: per simple command, a deny pattern denies, an allow
/// pattern allows, else its class's rule; a construct herd could not read (a reason with no
/// part) takes its class's rule and no pattern overrides it. The worst wins.
pub fn decide(policy: &Policy, verdict: &Verdict) -> Decision {
    let mut worst = Decision::Allow;
    for part in &verdict.parts {
        let matches = |p: &Pattern| p.matches(&part.command) || p.matches(&part.inner);
        let d = if policy.deny_patterns.iter().any(matches) {
            Decision::Deny
        } else if policy.allow_patterns.iter().any(matches) {
            Decision::Allow
        } else {
            policy.rules.for_class(part.class)
        };
        worst = worst.max(d);
    }
    for r in verdict.reasons.iter().filter(|r| r.part.is_none()) {
        worst = worst.max(policy.rules.for_class(r.class));
    }
    if verdict.parts.is_empty() && verdict.reasons.is_empty() {
        worst = worst.max(policy.rules.for_class(verdict.class));
    }
    worst
}

/// Who asks. The server maps keys and users to a role and scopes by labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

/// A policy for the machines a selector picks (`env=prod`), for some roles or all: it adds
/// to the role's policy, and the strictest decision of all that apply wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRule {
    /// A selector, as `-t` takes it (the server reads it).
    pub selector: String,
    /// The roles it applies to; empty: every role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    pub policy: Policy,
}

/// The policies of a fleet: a default, one per role where it differs, and rules for the
/// machines of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    #[serde(default)]
    pub default: Policy,
    #[serde(default)]
    pub by_role: BTreeMap<Role, Policy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_label: Vec<LabelRule>,
}

impl Default for PolicySet {
    /// The default policy for everyone, and a viewer runs nothing.
    fn default() -> Self {
        PolicySet {
            default: Policy::default(),
            by_role: BTreeMap::from([(Role::Viewer, Policy::uniform(Decision::Deny))]),
            by_label: Vec::new(),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PolicySet {
    /// The policy that applies to `role`.
    pub fn policy(&self, role: Role) -> &Policy {
        self.by_role.get(&role).unwrap_or(&self.default)
    }

    pub fn from_json(text: &str) -> Result<PolicySet, PolicyError> {
        let set: PolicySet = serde_json::from_str(text)
            .map_err(|e| PolicyError(format!("invalid policy set: {e}")))?;
        set.validate()?;
        Ok(set)
    }

    /// Every policy of the set checks out ([`Policy::validate`]); the error names the path
    /// of the bad one (`by_role.operator.rules`, `by_label[0].policy.rules`).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let at = |path: String, e: PolicyError| {
            PolicyError(format!(
                "{path}: {}",
                e.0.strip_prefix("invalid policy: ").unwrap_or(&e.0)
            ))
        };
        self.default
            .validate()
            .map_err(|e| at("default.rules".into(), e))?;
        for (role, p) in &self.by_role {
            p.validate()
                .map_err(|e| at(format!("by_role.{role}.rules"), e))?;
        }
        for (i, r) in self.by_label.iter().enumerate() {
            if r.selector.trim().is_empty() {
                return Err(PolicyError(format!(
                    "by_label[{i}].selector: empty — name the machines, e.g. env=prod"
                )));
            }
            r.policy
                .validate()
                .map_err(|e| at(format!("by_label[{i}].policy.rules"), e))?;
        }
        Ok(())
    }

    /// The decision for `verdict` by `role` on machines of which `picks` says whether a
    /// rule's selector picks one: the role's policy and every label rule that applies, the
    /// strictest wins. A viewer runs nothing.
    pub fn decide(
        &self,
        role: Role,
        verdict: &Verdict,
        mut picks: impl FnMut(&str) -> bool,
    ) -> Decision {
        if role == Role::Viewer {
            return Decision::Deny;
        }
        let mut d = decide(self.policy(role), verdict);
        for r in &self.by_label {
            if d == Decision::Deny {
                break;
            }
            if (r.roles.is_empty() || r.roles.contains(&role)) && picks(&r.selector) {
                d = d.max(decide(&r.policy, verdict));
            }
        }
        d
    }
}
