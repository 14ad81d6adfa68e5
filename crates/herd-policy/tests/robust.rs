//! Odd input never panics, and what cannot be read is Dangerous.

use herd_policy::{Class, classify};

fn dangerous_unreadable(cmd: &str) {
    let v = classify(cmd);
    assert!(
        v.class >= Class::Dangerous,
        "{:?}: {}",
        cmd.chars().take(80).collect::<String>(),
        v.class
    );
    assert!(
        v.reasons
            .iter()
            .any(|r| r.class >= Class::Dangerous && !r.why.is_empty())
    );
}

#[test]
fn unreadable_text_is_dangerous() {
    for cmd in [
        "echo 'unbalanced",
        "echo \"unbalanced",
        "echo $(ls",
        "echo `ls",
        "if true; then ls",
        "for x in; do",
        "case x in",
        "ls )",
        "{ ls",
        "ls \0 /",
        "ls | | cat",
        "&& ls",
        "echo $((1 + $(rm -rf /)))",
    ] {
        dangerous_unreadable(cmd);
    }
}

#[test]
fn huge_and_deep_input_is_dangerous_without_panicking() {
    dangerous_unreadable(&"(".repeat(1 << 20));
    dangerous_unreadable(&format!("{}ls{}", "(".repeat(5000), ")".repeat(5000)));
    dangerous_unreadable(&format!("{}ls{}", "$(".repeat(200), ")".repeat(200)));
    dangerous_unreadable(&format!("{}ls{}", "{ ".repeat(200), "; }".repeat(200)));
    dangerous_unreadable(&format!(
        "{}ls{}",
        "if true; then ".repeat(4000),
        "; fi".repeat(4000)
    ));
    dangerous_unreadable(&format!(
        "{}ls{}",
        "while true; do ".repeat(3000),
        "; done".repeat(3000)
    ));
    dangerous_unreadable(&format!("{}ls -la", "eval ".repeat(20)));
    dangerous_unreadable(&"ls ".repeat(100_000));
    // Nesting within the limits is read normally.
    assert_eq!(
        classify(&format!("{}ls{}", "(".repeat(20), ")".repeat(20))).class,
        Class::Safe
    );
    assert_eq!(
        classify(&format!("{}ls -la", "eval ".repeat(5))).class,
        Class::Safe
    );
    assert_eq!(
        classify(&format!("{}ls{}", "(".repeat(47), ")".repeat(47))).class,
        Class::Safe
    );
    assert_eq!(
        classify(&format!(
            "{}ls{}",
            "if true; then ".repeat(47),
            "; fi".repeat(47)
        ))
        .class,
        Class::Safe
    );
    assert_eq!(
        classify(&format!("{}ls{}", "{ ".repeat(47), "; }".repeat(47))).class,
        Class::Safe
    );
}

#[test]
fn random_strings_never_panic() {
    // A fixed xorshift sequence: the same strings on every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet: Vec<char> = "abc rm-f/|&;()<>{}$`'\"\\*?[]!#=~\n\t\0é$("
        .chars()
        .collect();
    for _ in 0..3000 {
        let mut s = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 60) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let v = classify(&s);
        assert_eq!(
            v.class,
            v.reasons
                .iter()
                .map(|r| r.class)
                .max()
                .unwrap_or(Class::Safe),
            "{s:?}"
        );
    }
}
