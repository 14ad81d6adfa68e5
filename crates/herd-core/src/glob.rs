//! Glob matching for selector names and values: `*` matches any run of characters
//! (including none), `?` matches exactly one character, `[abc]` one of the listed
//! characters, `[a-z]` one in the range, `[!a]` (or `[^a]`) one that is not listed;
//! everything else matches itself, case-sensitively. A `[` without a closing `]` is an
//! ordinary character; `]` right after `[` or `[!` is listed, not the closing bracket.
//! There are no escapes.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Star => true,
            Tok::Any => true,
            Tok::Lit(l) => *l == c,
            Tok::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// The bracket expression starting at `p[i] == '['`: the class and the index after its
/// closing `]`, or `None` when it is not closed.
fn class_at(p: &[char], i: usize) -> Option<(Tok, usize)> {
    let mut j = i + 1;
    let negated = matches!(p.get(j), Some('!' | '^'));
    if negated {
        j += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(j)?;
        if c == ']' && !first {
            return Some((Tok::Class { negated, ranges }, j + 1));
        }
        first = false;
        if p.get(j + 1) == Some(&'-') && p.get(j + 2).is_some_and(|&h| h != ']') {
            let hi = p[j + 2];
            ranges.push((c.min(hi), c.max(hi)));
            j += 3;
        } else {
            ranges.push((c, c));
            j += 1;
        }
    }
}

fn compile(pattern: &str) -> Vec<Tok> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '?' => {
                out.push(Tok::Any);
                i += 1;
            }
            '[' => match class_at(&p, i) {
                Some((class, next)) => {
                    out.push(class);
                    i = next;
                }
                None => {
                    out.push(Tok::Lit('['));
                    i += 1;
                }
            },
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// Whether `pattern` has no wildcard: it matches exactly the text equal to it.
pub fn is_literal(pattern: &str) -> bool {
    compile(pattern).iter().all(|t| matches!(t, Tok::Lit(_)))
}

/// The length of a bracket expression starting at `chars[0] == '['`, closing `]`
/// included, or `None` when it is not closed. The selector lexer uses it to keep a
/// class such as `[!a]` in one word.
pub fn bracket_len(chars: &[char]) -> Option<usize> {
    class_at(chars, 0).map(|(_, next)| next)
}

/// Returns whether `text` matches the glob `pattern` as a whole.
///
/// Uses the classic greedy two-pointer algorithm with a single backtrack point
/// (the last `*` seen), so matching never recurses and runs in
/// `O(len(pattern) * len(text))` worst case, linear for typical patterns.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == text;
    }
    let p = compile(pattern);
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last '*' in the pattern and the text position it is currently
    // assumed to extend to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(Tok::Star) => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(tok) if tok.matches(t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last '*' swallow one more character and retry.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("a", "", false),
            ("*", "", true),
            ("*", "anything", true),
            ("**", "", true),
            ("?", "", false),
            ("?", "a", true),
            ("?", "ab", false),
            ("??", "ab", true),
            ("web", "web", true),
            ("web", "Web", false),
            ("web", "web1", false),
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "web", false),
            ("web-*", "db-1", false),
            ("*-1", "web-1", true),
            ("*-1", "web-12", false),
            ("db?", "db1", true),
            ("db?", "db", false),
            ("db?", "db12", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a*b*c", "acb", false),
            ("*a*", "bab", true),
            ("*a*", "bbb", false),
            ("a*a", "aaaa", true),
            ("a*a", "a", false),
            ("*?", "", false),
            ("*?", "x", true),
            ("?*?", "x", false),
            ("?*?", "xy", true),
            ("*.example.com", "web.example.com", true),
            ("*.example.com", "example.com", false),
            ("10.0.*", "10.0.3.4", true),
            ("ü?", "üß", true),
            ("?", "ß", true),
            ("*x", "ééx", true),
            // Bracket expressions.
            ("web-[12]", "web-1", true),
            ("web-[12]", "web-2", true),
            ("web-[12]", "web-3", false),
            ("web-[12]", "web-", false),
            ("web-[1-3]", "web-3", true),
            ("web-[1-3]", "web-4", false),
            ("web-[!1]", "web-1", false),
            ("web-[!1]", "web-2", true),
            ("web-[^1]", "web-2", true),
            ("web-[a-c0-9]*", "web-b7x", true),
            ("web-[a-c0-9]*", "web-d", false),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("[!]]", "]", false),
            ("[a-]", "-", true),
            ("a[", "a[", true),
            ("a[b", "a[b", true),
            ("a[b", "ab", false),
            ("*[0-9]", "db12", true),
            ("*[0-9]", "db1x", false),
        ];
        for &(p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "glob_match({p:?}, {t:?})");
        }
    }

    #[test]
    fn literal_patterns() {
        for (p, want) in [
            ("web-1", true),
            ("a[", true),
            ("a[b", true),
            ("web-*", false),
            ("a?", false),
            ("[ab]", false),
        ] {
            assert_eq!(super::is_literal(p), want, "{p:?}");
        }
        assert_eq!(super::bracket_len(&['[', '!', 'a', ']', 'x']), Some(4));
        assert_eq!(super::bracket_len(&['[', ']', ']']), Some(3));
        assert_eq!(super::bracket_len(&['[', 'a']), None);
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        let start = std::time::Instant::now();
        assert!(!glob_match(&pattern, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
