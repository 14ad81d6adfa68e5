//! Target selectors: parsing, canonical rendering and matching of the expressions
//! that pick hosts (`web-*`, `role=db & !env=prod`, `(a,b) & os_id=debian`).
//!
//! Grammar (whitespace around tokens is ignored):
//!
//! ```text
//! expr  = and (("," | "|") and)*  OR, lowest precedence
//! and   = unary ("&" unary)*      AND
//! unary = "!" unary | "(" expr ")" | atom
//! atom  = key "=" value | key "!=" value | name
//! ```
//!
//! Keys are `[A-Za-z0-9_.\-/]+`; values and names are runs of any characters other
//! than whitespace and `,|&!()=` (inside a bracket expression `[…]`, `!` is allowed).
//! Values and names are globs (`*` any run, `?` one character, `[abc]`, `[a-z]`, `[!a]`
//! one character of a class), matched case-sensitively. `key=value` looks the key up with
//! [`Target::attr`] (labels first, then facts); a missing key never matches.
//! `key!=value` is exactly `!(key=value)`, so it also matches targets that lack
//! the key. Two keys are not looked up: `name=GLOB` is the machine's name (the same as
//! the bare `GLOB`), and `ip=CIDR` (`10.0.0.0/8`, `192.168.1.7`, `fd00::/8`) matches a
//! machine any of whose addresses ([`Target::ips`]) is in the network.
//!
//! Several selectors (e.g. repeated `-t` flags) are OR'ed with [`Selector::or`];
//! equivalently, joining their source strings with `,` and parsing the result gives
//! the same selector, because `,` has the lowest precedence.

use std::fmt;
use std::str::FromStr;

use std::net::IpAddr;

use crate::glob::{bracket_len, glob_match, is_literal};
use crate::labels::is_value_char;

/// Maximum nesting of `!` and `(` accepted by the parser, to bound recursion.
const MAX_DEPTH: usize = 64;

/// Something a selector can be matched against: a host with a name, labels and facts.
pub trait Target {
    /// The target's name, matched by bare name globs.
    fn name(&self) -> &str;
    /// label or fact value by key: labels first, then facts
    fn attr(&self, key: &str) -> Option<&str>;
    /// The target's addresses, matched by `ip=CIDR` atoms; unparsable ones never match.
    fn ips(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Lookups a fleet's index answers so that [`Selector::select`] need not visit every
/// target for the common selectors (`role=web`, `web-1`, and ANDs with one of them).
/// Target ids are the index's own small integers.
pub trait TargetIndex {
    /// Every target id, ascending.
    fn all(&self) -> Vec<u32>;
    /// Ids of the targets whose `key` (label, else fact) is exactly `value`, ascending;
    /// `None` when this key is not indexed (then targets are visited).
    fn with_attr(&self, key: &str, value: &str) -> Option<Vec<u32>>;
    /// The id of the target with exactly this name.
    fn named(&self, name: &str) -> Option<u32>;
    /// The target behind an id from this index.
    fn target(&self, id: u32) -> Option<&dyn Target>;
}

/// A parsed selector expression. `Display` renders it back canonically (no
/// whitespace, minimal parentheses) and parsing that rendering yields an equal
/// selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    /// At least two alternatives, none of which is itself an `Or`.
    Or(Vec<Expr>),
    /// At least two conjuncts, none of which is itself an `And`.
    And(Vec<Expr>),
    Not(Box<Expr>),
    Name(String),
    Eq(String, String),
    Ne(String, String),
    Ip(Cidr),
}

/// A network (`10.0.0.0/8`) or a single address, as an `ip=` atom names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    /// The atom's value as written, rendered back unchanged.
    src: String,
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(src: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "{src:?} is not an address or network; expected e.g. ip=10.0.0.0/8 or ip=192.168.1.7"
            )
        };
        let (addr, prefix) = match src.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (src, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(bad()),
            },
            None => max,
        };
        Ok(Cidr {
            src: src.to_string(),
            net,
            prefix,
        })
    }

    fn contains(&self, addr: &str) -> bool {
        // An address may carry its interface's prefix length (`10.0.0.5/24`).
        let addr = addr.split_once('/').map_or(addr, |(a, _)| a);
        let Ok(ip) = addr.parse::<IpAddr>() else {
            return false;
        };
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        bits(ip) & mask == bits(self.net) & mask
    }
}

/// Why a selector string could not be parsed; `column` is 1-based, in characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad selector {input:?}: {reason} (at column {column})")]
pub struct SelectorError {
    pub input: String,
    pub reason: String,
    pub column: usize,
}

impl Selector {
    /// Parses a selector expression; see the module documentation for the grammar.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let tokens = lex(s).map_err(|(column, c)| SelectorError {
            input: s.to_string(),
            reason: format!("{c:?} is not allowed in a selector (control characters never are)"),
            column,
        })?;
        let mut p = Parser {
            input: s,
            tokens,
            pos: 0,
            depth: 0,
        };
        if p.peek().tok == Tok::End {
            return Err(p.err(
                1,
                "empty selector; expected a name glob such as web-* or key=value",
            ));
        }
        let expr = p.expr(None)?;
        let next = p.peek().clone();
        match next.tok {
            Tok::End => Ok(Selector { expr }),
            Tok::RParen => Err(p.err(next.column, "unexpected ')' without a matching '('")),
            other => Err(p.err(next.column, unexpected_after_operand(&other, "',' or '&'"))),
        }
    }

    /// OR's several selectors together (the CLI's repeated `-t` flags). A single
    /// selector is returned unchanged; an empty list gives a selector that matches
    /// nothing, rendered as `!*`.
    pub fn or(selectors: Vec<Selector>) -> Selector {
        let mut exprs: Vec<Expr> = selectors.into_iter().map(|s| s.expr).collect();
        let expr = match exprs.len() {
            0 => Expr::Not(Box::new(Expr::Name("*".to_string()))),
            1 => exprs.remove(0),
            _ => Expr::Or(flatten(exprs, true)),
        };
        Selector { expr }
    }

    /// Whether the target is selected.
    pub fn matches(&self, t: &dyn Target) -> bool {
        self.expr.matches(t)
    }

    /// The ids of the selected targets, ascending. Literal names and `key=value` atoms are
    /// looked up in the index; an AND starts from its most specific looked-up atom and
    /// checks only those candidates against the rest; globs and negations visit targets.
    pub fn select(&self, idx: &dyn TargetIndex) -> Vec<u32> {
        self.expr.select(idx)
    }
}

/// Sorted union of two ascending lists.
fn union(a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// `all` minus `sub`, both ascending.
fn complement(all: Vec<u32>, sub: &[u32]) -> Vec<u32> {
    let mut j = 0;
    all.into_iter()
        .filter(|id| {
            while j < sub.len() && sub[j] < *id {
                j += 1;
            }
            !(j < sub.len() && sub[j] == *id)
        })
        .collect()
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.render(f)
    }
}

/// Splices nested `Or`s (when `or`) or nested `And`s into their parent.
fn flatten(items: Vec<Expr>, or: bool) -> Vec<Expr> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::Or(inner) if or => out.extend(inner),
            Expr::And(inner) if !or => out.extend(inner),
            other => out.push(other),
        }
    }
    out
}

impl Expr {
    /// The ids an index lookup answers for this node without visiting targets.
    fn lookup(&self, idx: &dyn TargetIndex) -> Option<Vec<u32>> {
        match self {
            Expr::Name(n) if is_literal(n) => Some(idx.named(n).into_iter().collect()),
            Expr::Eq(k, v) if is_literal(v) => idx.with_attr(k, v),
            _ => None,
        }
    }

    fn select(&self, idx: &dyn TargetIndex) -> Vec<u32> {
        if let Some(ids) = self.lookup(idx) {
            return ids;
        }
        let visit = |ids: Vec<u32>, e: &Expr| -> Vec<u32> {
            ids.into_iter()
                .filter(|&id| idx.target(id).is_some_and(|t| e.matches(t)))
                .collect()
        };
        match self {
            Expr::Or(items) => items
                .iter()
                .fold(Vec::new(), |acc, e| union(acc, e.select(idx))),
            Expr::And(items) => {
                // Start from the smallest set an index lookup gives, else from the first
                // conjunct; every other conjunct only checks those candidates.
                let mut best: Option<(usize, Vec<u32>)> = None;
                for (i, e) in items.iter().enumerate() {
                    if let Some(ids) = e.lookup(idx)
                        && best.as_ref().is_none_or(|(_, b)| ids.len() < b.len())
                    {
                        best = Some((i, ids));
                    }
                }
                let (first, mut ids) = match best {
                    Some(b) => b,
                    None => (0, items[0].select(idx)),
                };
                for (i, e) in items.iter().enumerate() {
                    if i != first {
                        ids = visit(ids, e);
                    }
                }
                ids
            }
            Expr::Not(e) => complement(idx.all(), &e.select(idx)),
            Expr::Ne(k, v) => complement(idx.all(), &Expr::Eq(k.clone(), v.clone()).select(idx)),
            Expr::Name(_) | Expr::Eq(_, _) | Expr::Ip(_) => visit(idx.all(), self),
        }
    }

    fn matches(&self, t: &dyn Target) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|e| e.matches(t)),
            Expr::And(items) => items.iter().all(|e| e.matches(t)),
            Expr::Not(e) => !e.matches(t),
            Expr::Name(pattern) => glob_match(pattern, t.name()),
            Expr::Eq(k, pattern) => t.attr(k).is_some_and(|v| glob_match(pattern, v)),
            Expr::Ne(k, pattern) => !t.attr(k).is_some_and(|v| glob_match(pattern, v)),
            Expr::Ip(cidr) => t.ips().iter().any(|a| cidr.contains(a)),
        }
    }

    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    e.render(f)?;
                }
                Ok(())
            }
            Expr::And(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("&")?;
                    }
                    e.render_grouped(f, matches!(e, Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Not(e) => {
                f.write_str("!")?;
                e.render_grouped(f, matches!(**e, Expr::Or(_) | Expr::And(_)))
            }
            Expr::Name(n) => f.write_str(n),
            Expr::Eq(k, v) => write!(f, "{k}={v}"),
            Expr::Ne(k, v) => write!(f, "{k}!={v}"),
            Expr::Ip(cidr) => write!(f, "ip={}", cidr.src),
        }
    }

    fn render_grouped(&self, f: &mut fmt::Formatter<'_>, parens: bool) -> fmt::Result {
        if parens {
            f.write_str("(")?;
            self.render(f)?;
            f.write_str(")")
        } else {
            self.render(f)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Comma,
    Amp,
    Bang,
    LParen,
    RParen,
    Eq,
    NotEq,
    Word(String),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Comma => "','".to_string(),
            Tok::Amp => "'&'".to_string(),
            Tok::Bang => "'!'".to_string(),
            Tok::LParen => "'('".to_string(),
            Tok::RParen => "')'".to_string(),
            Tok::Eq => "'='".to_string(),
            Tok::NotEq => "'!='".to_string(),
            Tok::Word(w) => format!("{w:?}"),
            Tok::End => "the end".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based character column of the token's first character.
    column: usize,
}

/// Splits the input into tokens; always ends with `Tok::End`. Every character is
/// whitespace, an operator or part of a word, except control characters: the first one is
/// returned with its column.
fn lex(s: &str) -> Result<Vec<Token>, (usize, char)> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ',' | '|' => (Tok::Comma, 1),
            '&' => (Tok::Amp, 1),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '=' => (Tok::Eq, 1),
            '!' if chars.get(i + 1) == Some(&'=') => (Tok::NotEq, 2),
            '!' => (Tok::Bang, 1),
            _ => {
                let len = word_len(&chars[i..]);
                if len == 0 {
                    return Err((column, c));
                }
                (Tok::Word(chars[i..i + len].iter().collect()), len)
            }
        };
        out.push(Token { tok, column });
        i += len;
    }
    out.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(out)
}

/// The length of the word at the start of `chars`: value characters other than `|`, and
/// whole bracket expressions (which may hold `!`).
fn word_len(chars: &[char]) -> usize {
    let mut len = 0;
    while len < chars.len() {
        let c = chars[len];
        if c == '['
            && let Some(n) = bracket_len(&chars[len..])
            && chars[len..len + n]
                .iter()
                .all(|&c| is_value_char(c) || c == '!')
        {
            len += n;
        } else if is_value_char(c) && c != '|' {
            len += 1;
        } else {
            break;
        }
    }
    len
}

/// The reason for finding `tok` where one of `expected` should follow an operand.
fn unexpected_after_operand(tok: &Tok, expected: &str) -> String {
    match tok {
        Tok::Eq | Tok::NotEq => format!(
            "unexpected {}; values and names may not contain '=' (expected {expected})",
            tok.describe()
        ),
        _ => format!("expected {expected} before {}", tok.describe()),
    }
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // `lex` always appends `End` and `bump` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn err(&self, column: usize, reason: impl Into<String>) -> SelectorError {
        SelectorError {
            input: self.input.to_string(),
            reason: reason.into(),
            column,
        }
    }

    /// `expr = and ("," and)*`; `after` names the operator that preceded it.
    fn expr(&mut self, after: Option<&str>) -> Result<Expr, SelectorError> {
        let mut items = vec![self.and(after)?];
        while self.peek().tok == Tok::Comma {
            self.bump();
            items.push(self.and(Some(","))?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(flatten(items, true))
        })
    }

    /// `and = unary ("&" unary)*`
    fn and(&mut self, after: Option<&str>) -> Result<Expr, SelectorError> {
        let mut items = vec![self.unary(after)?];
        while self.peek().tok == Tok::Amp {
            self.bump();
            items.push(self.unary(Some("&"))?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(flatten(items, false))
        })
    }

    /// `unary = "!" unary | "(" expr ")" | atom`
    fn unary(&mut self, after: Option<&str>) -> Result<Expr, SelectorError> {
        let t = self.bump();
        match t.tok {
            Tok::Bang => {
                let inner = self.nested(t.column, |p| p.unary(Some("!")))?;
                Ok(Expr::Not(Box::new(inner)))
            }
            Tok::LParen => {
                if self.peek().tok == Tok::RParen {
                    return Err(self.err(
                        t.column,
                        "empty parentheses; expected a name or key=value inside '()'",
                    ));
                }
                let inner = self.nested(t.column, |p| p.expr(Some("(")))?;
                let close = self.bump();
                match close.tok {
                    Tok::RParen => Ok(inner),
                    Tok::End => Err(self.err(
                        close.column,
                        format!("unclosed '(' opened at column {}", t.column),
                    )),
                    other => Err(self.err(
                        close.column,
                        unexpected_after_operand(&other, "',', '&' or ')'"),
                    )),
                }
            }
            Tok::Word(w) => self.atom(w, t.column),
            Tok::Eq | Tok::NotEq => Err(self.err(
                t.column,
                format!("expected a key before {}", t.tok.describe()),
            )),
            Tok::RParen if after.is_none() => {
                Err(self.err(t.column, "unexpected ')' without a matching '('"))
            }
            Tok::Comma | Tok::Amp | Tok::RParen | Tok::End => {
                let reason = match after {
                    Some(op) => format!("expected a name or key=value after '{op}'"),
                    None => format!("expected a name or key=value before {}", t.tok.describe()),
                };
                Err(self.err(t.column, reason))
            }
        }
    }

    /// Runs `f` one nesting level deeper, refusing absurdly deep input.
    fn nested(
        &mut self,
        column: usize,
        f: impl FnOnce(&mut Self) -> Result<Expr, SelectorError>,
    ) -> Result<Expr, SelectorError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(
                column,
                format!("selector is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `atom = key "=" value | key "!=" value | name`, having consumed the first word.
    fn atom(&mut self, word: String, column: usize) -> Result<Expr, SelectorError> {
        let negated = match self.peek().tok {
            Tok::Eq => false,
            Tok::NotEq => true,
            _ => return Ok(Expr::Name(word)),
        };
        self.bump();
        if let Some((i, c)) = word
            .chars()
            .enumerate()
            .find(|&(_, c)| !crate::labels::is_key_char(c))
        {
            return Err(self.err(
                column + i,
                format!(
                    "invalid character {c:?} in key {word:?}; keys may only contain letters, digits, '_', '.', '-' and '/'"
                ),
            ));
        }
        let value = self.bump();
        let Tok::Word(v) = value.tok else {
            let opstr = if negated { "!=" } else { "=" };
            return Err(self.err(
                value.column,
                format!("expected a value after '{word}{opstr}'"),
            ));
        };
        let positive = match word.as_str() {
            "name" => Expr::Name(v),
            "ip" => Expr::Ip(Cidr::parse(&v).map_err(|r| self.err(value.column, r))?),
            _ if negated => return Ok(Expr::Ne(word, v)),
            _ => return Ok(Expr::Eq(word, v)),
        };
        Ok(if negated {
            Expr::Not(Box::new(positive))
        } else {
            positive
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with labels and facts; labels shadow facts of the same key.
    struct Host {
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
        facts: &'static [(&'static str, &'static str)],
        ips: &'static [&'static str],
    }

    impl Target for Host {
        fn name(&self) -> &str {
            self.name
        }
        fn attr(&self, key: &str) -> Option<&str> {
            let find = |kv: &'static [(&'static str, &'static str)]| {
                kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
            };
            find(self.labels).or_else(|| find(self.facts))
        }
        fn ips(&self) -> Vec<&str> {
            self.ips.to_vec()
        }
    }

    /// An index over HOSTS that looks up names and every attribute except `arch`
    /// (so un-indexed keys are exercised too).
    struct Idx;

    impl TargetIndex for Idx {
        fn all(&self) -> Vec<u32> {
            (0..HOSTS.len() as u32).collect()
        }
        fn with_attr(&self, key: &str, value: &str) -> Option<Vec<u32>> {
            if key == "arch" {
                return None;
            }
            Some(
                (0..HOSTS.len() as u32)
                    .filter(|&i| HOSTS[i as usize].attr(key) == Some(value))
                    .collect(),
            )
        }
        fn named(&self, name: &str) -> Option<u32> {
            HOSTS.iter().position(|h| h.name == name).map(|i| i as u32)
        }
        fn target(&self, id: u32) -> Option<&dyn Target> {
            HOSTS.get(id as usize).map(|h| h as &dyn Target)
        }
    }

    #[test]
    fn select_through_an_index_agrees_with_matching() {
        for src in [
            "web-1",
            "web-*",
            "nosuch",
            "role=web",
            "role=w*",
            "role!=web",
            "!role=db",
            "role=db & env=prod",
            "arch=x86_64 & role=db",
            "arch=x86_64",
            "(web-1, db1) & env=prod",
            "role=web, role=db",
            "os_id=custom",
            "os_id=debian",
            "!(role=web & env=prod), cache",
            "db1 & db12",
            "name=web-1",
            "web-[12]",
            "ip=10.0.0.0/8 & role=web",
            "web-1|cache",
            "*",
            "!*",
        ] {
            let sel = Selector::parse(src).unwrap();
            let want: Vec<u32> = (0..HOSTS.len() as u32)
                .filter(|&i| sel.matches(&HOSTS[i as usize]))
                .collect();
            assert_eq!(sel.select(&Idx), want, "{src}");
        }
    }

    const HOSTS: &[Host] = &[
        Host {
            name: "web-1",
            labels: &[("role", "web"), ("env", "prod")],
            facts: &[("os_id", "debian"), ("arch", "x86_64")],
            ips: &["10.0.1.1", "fd00::1"],
        },
        Host {
            name: "web-2",
            labels: &[("role", "web"), ("env", "staging")],
            facts: &[("os_id", "ubuntu"), ("arch", "aarch64")],
            ips: &["10.0.1.2"],
        },
        Host {
            name: "db1",
            labels: &[("role", "db"), ("env", "prod"), ("os_id", "custom")],
            facts: &[("os_id", "debian"), ("arch", "x86_64")],
            ips: &["10.0.2.5/24"],
        },
        Host {
            name: "db12",
            labels: &[("role", "db"), ("herd.io/zone", "eu-west-1")],
            facts: &[("os_id", "rocky"), ("arch", "x86_64")],
            ips: &["192.168.7.12"],
        },
        Host {
            name: "cache",
            labels: &[],
            facts: &[("os_id", "alpine"), ("arch", "x86_64")],
            ips: &[],
        },
    ];

    fn selected(sel: &str) -> Vec<&'static str> {
        let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{e}"));
        HOSTS
            .iter()
            .filter(|h| s.matches(*h))
            .map(|h| h.name)
            .collect()
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &[&str])] = &[
            ("*", &["web-1", "web-2", "db1", "db12", "cache"]),
            ("web-1", &["web-1"]),
            ("web-*", &["web-1", "web-2"]),
            ("WEB-*", &[]),
            ("db?", &["db1"]),
            ("db*", &["db1", "db12"]),
            ("db??", &["db12"]),
            ("*1", &["web-1", "db1"]),
            ("role=web", &["web-1", "web-2"]),
            ("role=w*", &["web-1", "web-2"]),
            ("role=Web", &[]),
            ("role!=web", &["db1", "db12", "cache"]),
            ("env!=prod", &["web-2", "db12", "cache"]),
            ("!env=prod", &["web-2", "db12", "cache"]),
            ("env=*", &["web-1", "web-2", "db1"]),
            ("!env=*", &["db12", "cache"]),
            ("missing=*", &[]),
            ("missing!=x", &["web-1", "web-2", "db1", "db12", "cache"]),
            // Fact fallback, and labels shadowing facts.
            ("os_id=debian", &["web-1"]),
            ("os_id=custom", &["db1"]),
            ("arch=x86_64", &["web-1", "db1", "db12", "cache"]),
            ("herd.io/zone=eu-*", &["db12"]),
            // OR, AND and precedence: a,b&c = a OR (b AND c).
            ("web-1,db1", &["web-1", "db1"]),
            ("web-1 , db1", &["web-1", "db1"]),
            ("role=web&env=prod", &["web-1"]),
            ("role=web & env=prod", &["web-1"]),
            ("cache,role=db&env=prod", &["db1", "cache"]),
            ("role=db&env=prod,cache", &["db1", "cache"]),
            ("(cache,role=db)&env=prod", &["db1"]),
            ("cache,(role=db&env=prod)", &["db1", "cache"]),
            // '!' binds tighter than '&' and ','.
            ("!role=web&arch=x86_64", &["db1", "db12", "cache"]),
            (
                "!(role=web&arch=x86_64)",
                &["web-2", "db1", "db12", "cache"],
            ),
            ("!web-*,db1", &["db1", "db12", "cache"]),
            ("!(web-*,db1)", &["db12", "cache"]),
            ("!!web-1", &["web-1"]),
            ("! ! web-1", &["web-1"]),
            ("!*", &[]),
            ("((web-1))", &["web-1"]),
            ("( web-1 , web-2 ) & env = prod", &["web-1"]),
            ("\tweb-1\n", &["web-1"]),
            ("role=db&!herd.io/zone=*", &["db1"]),
            ("a,b,c,web-2", &["web-2"]),
            // `|` is OR too.
            ("web-1|db1", &["web-1", "db1"]),
            ("web-1 | role=db & env=prod", &["web-1", "db1"]),
            // name= is the machine's name, whatever labels say.
            ("name=web-*", &["web-1", "web-2"]),
            ("name!=web-*", &["db1", "db12", "cache"]),
            ("name=db1&env=prod", &["db1"]),
            // Bracket expressions.
            ("web-[12]", &["web-1", "web-2"]),
            ("web-[!1]", &["web-2"]),
            ("db[0-9]", &["db1"]),
            ("db[0-9][0-9]", &["db12"]),
            ("role=[dw]*", &["web-1", "web-2", "db1", "db12"]),
            ("![a-d]*", &["web-1", "web-2"]),
            ("[!w]*", &["db1", "db12", "cache"]),
            // ip= matches any of the machine's addresses.
            ("ip=10.0.0.0/16", &["web-1", "web-2", "db1"]),
            ("ip=10.0.1.0/24", &["web-1", "web-2"]),
            ("ip=10.0.1.2", &["web-2"]),
            ("ip=10.0.2.5/32", &["db1"]),
            ("ip=0.0.0.0/0", &["web-1", "web-2", "db1", "db12"]),
            ("ip=fd00::/8", &["web-1"]),
            ("ip=192.168.0.0/16, ip=10.0.2.0/24", &["db1", "db12"]),
            ("!ip=10.0.0.0/8", &["db12", "cache"]),
            ("ip!=10.0.0.0/8", &["db12", "cache"]),
            ("ip=172.16.0.0/12", &[]),
        ];
        for &(sel, want) in cases {
            assert_eq!(selected(sel), want, "selector {sel:?}");
        }
    }

    #[test]
    fn canonical_display_table() {
        let cases: &[(&str, &str)] = &[
            ("web-*", "web-*"),
            (" a , b ", "a,b"),
            ("a,b&c", "a,b&c"),
            ("(a,b)&c", "(a,b)&c"),
            ("a&(b,c)", "a&(b,c)"),
            ("(a&b),c", "a&b,c"),
            ("((a,b)),c", "a,b,c"),
            ("a,(b,c)", "a,b,c"),
            ("a&(b&c)", "a&b&c"),
            ("!(a&b)", "!(a&b)"),
            ("!(a,b)", "!(a,b)"),
            ("!(a)", "!a"),
            ("! k = v", "!k=v"),
            ("k != v", "k!=v"),
            ("!k!=v", "!k!=v"),
            ("!!a", "!!a"),
            ("(a,b)&(c,d)", "(a,b)&(c,d)"),
            ("!(a,b)&c", "!(a,b)&c"),
            ("a|b", "a,b"),
            ("a | b & c", "a,b&c"),
            ("name=web-*", "web-*"),
            ("name!=a", "!a"),
            ("web-[!1]", "web-[!1]"),
            ("k=[a-c]*", "k=[a-c]*"),
            ("ip = 10.0.0.0/8", "ip=10.0.0.0/8"),
            ("ip!=fd00::/8", "!ip=fd00::/8"),
        ];
        for &(input, want) in cases {
            let s = Selector::parse(input).unwrap();
            assert_eq!(s.to_string(), want, "{input:?}");
            let again: Selector = want.parse().unwrap();
            assert_eq!(again, s, "{input:?} round trip");
        }
    }

    #[test]
    fn every_character_lexes_or_is_refused() {
        // Whatever the character, parsing ends (a word of no character once looped forever).
        for c in (0u32..0x3100).filter_map(char::from_u32) {
            for input in [format!("{c}"), format!("a{c}b"), format!("k={c}")] {
                let _ = Selector::parse(&input);
            }
        }
    }

    #[test]
    fn error_table() {
        // (input, reason fragment, column)
        let cases: &[(&str, &str, usize)] = &[
            ("", "empty selector", 1),
            ("   ", "empty selector", 1),
            ("a&", "expected a name or key=value after '&'", 3),
            ("a & ", "expected a name or key=value after '&'", 5),
            ("a,", "expected a name or key=value after ','", 3),
            ("a,,b", "expected a name or key=value after ','", 3),
            ("a&&b", "expected a name or key=value after '&'", 3),
            ("a&,b", "expected a name or key=value after '&'", 3),
            ("&a", "expected a name or key=value before '&'", 1),
            (",a", "expected a name or key=value before ','", 1),
            ("!", "expected a name or key=value after '!'", 2),
            ("a&!", "expected a name or key=value after '!'", 4),
            ("(", "expected a name or key=value after '('", 2),
            ("(a", "unclosed '(' opened at column 1", 3),
            ("a&(b,(c)", "unclosed '(' opened at column 3", 9),
            ("()", "empty parentheses", 1),
            ("a)", "unexpected ')' without a matching '('", 2),
            (")", "unexpected ')' without a matching '('", 1),
            ("(a))", "unexpected ')' without a matching '('", 4),
            ("(a,)", "expected a name or key=value after ','", 4),
            ("a b", "expected ',' or '&' before \"b\"", 3),
            ("(a b)", "expected ',', '&' or ')' before \"b\"", 4),
            ("a!b", "expected ',' or '&' before '!'", 2),
            ("a(b)", "expected ',' or '&' before '('", 2),
            ("=v", "expected a key before '='", 1),
            ("a&!=v", "expected a key before '!='", 3),
            ("k=", "expected a value after 'k='", 3),
            ("k!=", "expected a value after 'k!='", 4),
            ("k=&a", "expected a value after 'k='", 3),
            ("k=(v)", "expected a value after 'k='", 3),
            ("k=a=b", "values and names may not contain '='", 4),
            ("ro*le=web", "invalid character '*' in key \"ro*le\"", 3),
            ("x&rôle=web", "invalid character 'ô' in key", 4),
            // Control characters are refused where they stand (they once made the lexer
            // spin on an empty word).
            ("ab\u{93}", "'\\u{93}' is not allowed in a selector", 3),
            ("\u{0}", "not allowed in a selector", 1),
            ("a=b\u{7}c", "not allowed in a selector", 4),
            ("a||b", "expected a name or key=value after ','", 3),
            ("ip=10.0.0.0/33", "not an address or network", 4),
            ("a&ip=web-1", "not an address or network", 6),
            ("ip=10.0.0/8", "not an address or network", 4),
            ("ip=fd00::/129", "not an address or network", 4),
        ];
        for &(input, reason, column) in cases {
            let e = Selector::parse(input).unwrap_err();
            assert!(
                e.reason.contains(reason),
                "{input:?}: reason {:?} lacks {reason:?}",
                e.reason
            );
            assert_eq!(e.column, column, "{input:?}: {e}");
            assert_eq!(e.input, input);
        }
        let e = Selector::parse("a&").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad selector \"a&\": expected a name or key=value after '&' (at column 3)"
        );
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowing() {
        let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = Selector::parse(&deep).unwrap_err();
        assert!(e.reason.contains("nested"), "{e}");
        let bangs = format!("{}a", "!".repeat(10_000));
        assert!(Selector::parse(&bangs).is_err());
        let ok = format!("{}a{}", "(".repeat(32), ")".repeat(32));
        assert_eq!(Selector::parse(&ok).unwrap().to_string(), "a");
    }

    #[test]
    fn or_of_many() {
        let parts = ["web-1", "role=db&env=prod", "cache"];
        let sels: Vec<Selector> = parts.iter().map(|p| p.parse().unwrap()).collect();
        let any = Selector::or(sels);
        assert_eq!(any.to_string(), "web-1,role=db&env=prod,cache");
        assert_eq!(any, Selector::parse(&parts.join(",")).unwrap());
        let names: Vec<_> = HOSTS
            .iter()
            .filter(|h| any.matches(*h))
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["web-1", "db1", "cache"]);

        let one = Selector::or(vec![Selector::parse("a,b").unwrap()]);
        assert_eq!(one.to_string(), "a,b");
        let nested = Selector::or(vec![
            Selector::parse("a,b").unwrap(),
            Selector::parse("c").unwrap(),
        ]);
        assert_eq!(nested, Selector::parse("a,b,c").unwrap());

        let none = Selector::or(Vec::new());
        assert_eq!(none.to_string(), "!*");
        assert!(HOSTS.iter().all(|h| !none.matches(h)));
    }
}
