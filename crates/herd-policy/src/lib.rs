//! herd's command policy, pure: a shell command line is parsed with a real shell parser
//! (`brush-parser`), every simple command in it is found (through pipelines, lists, groups,
//! functions, control flow, command and process substitutions, `sh -c`/`eval` strings and wrappers
//! such as `sudo`, `env`, `timeout`, `xargs`, `find -exec`, `ssh host cmd`), each one is classified
//! from the tables in [`rules`], and a [`Policy`] turns the verdict into a [`Decision`] ([`decide`]).
//!
//! Fail-closed invariant: a construct herd cannot read (a parse error, nesting past the depth
//! limit, a program name or `sh -c`/`eval` text known only at run time) is Dangerous. Nothing but
//! the command text is an input: a caller's (or a model's) own risk label never is.

mod extract;
mod paths;
mod policy;
mod programs;
pub mod rules;
mod tables;

use serde::{Deserialize, Serialize};

/// How risky a command (or one part of it) is, mildest first; the order is the severity order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Safe,
    Caution,
    Dangerous,
    Forbidden,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Safe => "safe",
            Class::Caution => "caution",
            Class::Dangerous => "dangerous",
            Class::Forbidden => "forbidden",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one part of a command got its class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub class: Class,
    /// The simple command (normalized text) or the construct the reason is about.
    pub what: String,
    /// One line.
    pub why: String,
    /// Index into [`Verdict::parts`] when the reason is about one simple command; `None` for a
    /// construct (a parse error, a depth limit) that no pattern can override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<usize>,
}

/// One simple command found in the command line, after its wrappers were taken off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Normalized text: the words' literal values joined by single spaces (wrappers and
    /// redirections included), e.g. `sudo rm -rf /tmp/x`.
    pub command: String,
    /// The same without its wrappers (`rm -rf /tmp/x`); patterns are tried on both.
    pub inner: String,
    pub class: Class,
}

/// The classification of a whole command line: the worst class of its parts and constructs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub class: Class,
    pub reasons: Vec<Reason>,
    pub parts: Vec<Part>,
}

/// Classifies a command line (any shell text: one command, a pipeline, a script).
pub fn classify(cmd: &str) -> Verdict {
    let found = extract::extract(cmd);
    let mut reasons = found.problems;
    let mut parts = Vec::with_capacity(found.commands.len());
    for simple in &found.commands {
        let index = parts.len();
        let mut own = Vec::new();
        rules::classify_simple(simple, &found.functions, &mut own);
        let what = simple.text();
        let class = own.iter().map(|r| r.0).max().unwrap_or(Class::Safe);
        for (c, why) in own {
            reasons.push(Reason {
                class: c,
                what: what.clone(),
                why,
                part: Some(index),
            });
        }
        parts.push(Part {
            command: what,
            inner: simple.inner_text(),
            class,
        });
    }
    let class = reasons.iter().map(|r| r.class).max().unwrap_or(Class::Safe);
    // Mild reasons are noise next to a gated one; keep every reason at or above Caution.
    reasons.retain(|r| r.class >= Class::Caution || class == Class::Safe);
    Verdict {
        class,
        reasons,
        parts,
    }
}

pub use extract::{Redirect, RedirectKind, Simple, Stdin, Word};
pub use policy::{
    ClassRules, Decision, LabelRule, Pattern, Policy, PolicyError, PolicySet, Role, decide,
};

/// The published table of dangerous commands (`class<TAB>command` lines, `#` comments).
pub const DANGEROUS_TSV: &str = include_str!("../tables/dangerous.tsv");
/// The published table of everyday administration commands.
pub const EVERYDAY_TSV: &str = include_str!("../tables/everyday.tsv");

/// The commands of a published table (comments and classes left out).
pub fn table_commands(tsv: &str) -> Vec<&str> {
    tsv.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(_, c)| c))
        .collect()
}
