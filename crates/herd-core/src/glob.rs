//! Glob matching for selector names and values: `*` matches any run of characters
//! (including none), `?` matches exactly one character; everything else matches
//! itself, case-sensitively. There are no character classes and no escapes.

/// Returns whether `text` matches the glob `pattern` as a whole.
///
/// Uses the classic greedy two-pointer algorithm with a single backtrack point
/// (the last `*` seen), so matching never recurses and runs in
/// `O(len(pattern) * len(text))` worst case, linear for typical patterns.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last '*' in the pattern and the text position it is currently
    // assumed to extend to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
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
    p[pi..].iter().all(|&c| c == '*')
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
        ];
        for &(p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "glob_match({p:?}, {t:?})");
        }
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
