//! The published tables (`tables/dangerous.tsv`, `tables/everyday.tsv`): every entry keeps its
//! class in many spellings — quoted differently, through `sh -c`, `sudo`, `$(…)`, backticks,
//! after `cd /tmp &&`, and (dangerous ones) inside pipelines, lists, groups and control flow.

use herd_policy::{Class, Decision, Policy, classify, decide};

fn table(text: &str) -> Vec<(Class, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (class, cmd) = l.split_once('\t').expect("class<TAB>command");
            let class = match class {
                "safe" => Class::Safe,
                "caution" => Class::Caution,
                "dangerous" => Class::Dangerous,
                "forbidden" => Class::Forbidden,
                other => panic!("unknown class {other}"),
            };
            (class, cmd.to_string())
        })
        .collect()
}

fn plain(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._=,:+-".contains(c))
}

/// The spellings of `cmd` that mean the same (or more, for the compounding ones).
fn spellings(cmd: &str, dangerous: bool) -> Vec<String> {
    let mut out = vec![cmd.to_string()];
    let simple = !cmd.contains([
        '|', ';', '&', '(', ')', '{', '}', '<', '>', '`', '$', '\'', '"', '\\',
    ]);
    let mut tokens = cmd.split(' ');
    let first = tokens.next().unwrap_or("");
    let rest: Vec<&str> = tokens.collect();
    if plain(first) {
        out.push(format!("'{first}' {}", rest.join(" ")));
        out.push(format!("\\{first} {}", rest.join(" ")));
    }
    if simple {
        let quoted: Vec<String> = rest
            .iter()
            .map(|t| {
                if plain(t) {
                    format!("\"{t}\"")
                } else {
                    t.to_string()
                }
            })
            .collect();
        out.push(format!("{first} {}", quoted.join(" ")));
    }
    let single = cmd.replace('\'', "'\\''");
    out.push(format!("sh -c '{single}'"));
    out.push(format!("bash -lc '{single}'"));
    out.push(format!("sudo {cmd}"));
    out.push(format!("sudo -u root {cmd}"));
    out.push(format!("echo $({cmd})"));
    if !cmd.contains('`') && !cmd.contains('\\') {
        out.push(format!("echo `{cmd}`"));
    }
    out.push(format!("cd /tmp && {cmd}"));
    if dangerous {
        out.push(format!("true; {cmd}"));
        out.push(format!("{cmd} || true"));
        out.push(format!("false || {cmd} | cat"));
        out.push(format!("( {cmd} )"));
        out.push(format!("{{ {cmd}; }}"));
        out.push(format!("if true; then {cmd}; fi"));
        out.push(format!("for i in 1 2; do {cmd}; done"));
        out.push(format!("while true; do {cmd}; done"));
        out.push(format!("diff <({cmd}) /dev/null"));
        out.push(format!("timeout 10 nohup nice -n 5 {cmd}"));
        out.push(format!("env A=1 {cmd}"));
        out.push(format!("ssh web1 '{single}'"));
        out.push(format!("eval '{single}'"));
        out.push(format!("f() {{ {cmd}; }}; f"));
    }
    out
}

#[test]
fn the_tables_are_large_enough() {
    assert!(table(include_str!("../tables/dangerous.tsv")).len() >= 50);
    assert!(table(include_str!("../tables/everyday.tsv")).len() >= 50);
}

#[test]
fn dangerous_commands_stay_gated_in_every_spelling() {
    let mut failures = Vec::new();
    for (expected, cmd) in table(include_str!("../tables/dangerous.tsv")) {
        let v = classify(&cmd);
        if v.class != expected {
            failures.push(format!(
                "{cmd}: {} (expected {expected}) {:?}",
                v.class, v.reasons
            ));
        }
        for spelling in spellings(&cmd, true) {
            let v = classify(&spelling);
            if v.class < Class::Dangerous {
                failures.push(format!("{spelling}: {} {:?}", v.class, v.reasons));
            }
            if decide(&Policy::default(), &v) == Decision::Allow {
                failures.push(format!("{spelling}: allowed by the default policy"));
            }
            let named = v
                .reasons
                .iter()
                .any(|r| r.class >= Class::Dangerous && !r.what.is_empty() && !r.why.is_empty());
            if !named {
                failures.push(format!("{spelling}: no reason names what matched"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn everyday_commands_stay_ungated_in_every_spelling() {
    let mut failures = Vec::new();
    for (expected, cmd) in table(include_str!("../tables/everyday.tsv")) {
        let v = classify(&cmd);
        if v.class != expected {
            failures.push(format!(
                "{cmd}: {} (expected {expected}) {:?}",
                v.class, v.reasons
            ));
        }
        for spelling in spellings(&cmd, false) {
            let v = classify(&spelling);
            if v.class > Class::Caution {
                failures.push(format!("{spelling}: {} {:?}", v.class, v.reasons));
            }
            if decide(&Policy::default(), &v) != Decision::Allow {
                failures.push(format!("{spelling}: not allowed by the default policy"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
