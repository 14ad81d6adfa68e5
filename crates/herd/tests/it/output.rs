//! What the CLI prints: whole prefixed lines from several machines, color, completions, the
//! manual page, the hint for a forgotten `--`, and the agent's systemd unit.

use crate::harness::{Cli, HERD, Server, herd, stderr, stdout};

fn three_machines(dir: &std::path::Path) -> (Server, Vec<crate::harness::Agent>) {
    let s = Server::start(HERD, dir).unwrap();
    let agents = ["m1", "m2", "m3"]
        .iter()
        .map(|n| s.agent(n, &["pool=out"]).unwrap())
        .collect();
    s.wait_online(&["m1", "m2", "m3"]).unwrap();
    (s, agents)
}

#[test]
fn output_lines_of_several_machines_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _agents) = three_machines(dir.path());
    let script = "printf start-; sleep 0.3; printf 'end\\n'; printf half-; sleep 0.3; printf 'done\\nwhole\\n'";
    let out = s.run(&["run", "--color", "never", "-t", "pool=out", "--", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Each line: one machine's prefix, then text of that machine only; a piece printed early
    // goes on with the prefix `NAME + `.
    let mut per_machine: std::collections::BTreeMap<&str, String> = Default::default();
    for line in text.lines() {
        let (name, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no prefix: {line:?} in\n{text}"));
        let (mark, body) = rest.split_at(2);
        assert!(
            ["m1", "m2", "m3"].contains(&name) && (mark == "| " || mark == "+ "),
            "bad prefix: {line:?} in\n{text}"
        );
        assert!(
            !body.contains('m'),
            "two machines in one line: {line:?}\n{text}"
        );
        let acc = per_machine.entry(name).or_default();
        if mark == "| " && !acc.is_empty() {
            acc.push('\n');
        }
        acc.push_str(body);
    }
    assert_eq!(per_machine.len(), 3, "{text}");
    for (name, all) in per_machine {
        assert_eq!(all, "start-end\nhalf-done\nwhole", "{name} in\n{text}");
    }
}

#[test]
fn color_follows_the_flag_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _agents) = three_machines(dir.path());
    let run = |color: Option<&str>, no_color: bool| {
        let mut c = s.cli();
        c.arg("run");
        if let Some(when) = color {
            c.args(["--color", when]);
        }
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c
            .args(["-t", "pool=out", "--", "echo", "hi"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    for out in [run(Some("never"), false), run(None, true)] {
        assert!(!out.stdout.contains(&0x1b), "{}", stdout(&out));
        let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        lines.sort();
        assert_eq!(lines, ["m1 | hi", "m2 | hi", "m3 | hi"]);
    }
    let out = run(Some("always"), true);
    let text = stdout(&out);
    assert!(text.contains("\x1b[36mm1\x1b[0m | hi"), "{text:?}");
}

#[test]
fn completions_and_man_page_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = herd().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for sub in ["run", "agents", "runs", "completions"] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = herd().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(".ie") || text.contains(".TH herd 1"),
        "{text}"
    );
    for sub in ["run", "agents", "audit", "completions"] {
        assert!(text.contains(sub), "man page lacks {sub}");
    }
}

#[test]
fn a_forgotten_double_dash_gets_a_hint() {
    let out = herd()
        .args(["run", "-t", "x", "ls", "-la"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("herd run -t x -- ls -la"), "{err}");
}

#[test]
fn agent_install_dry_run_prints_the_unit() {
    let out = herd()
        .args([
            "agent",
            "install",
            "--dry-run",
            "--server",
            "https://herd.example:7700",
            "--token",
            "tok",
            "-l",
            "role=web",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let exe = std::fs::canonicalize(HERD).unwrap();
    let exec = format!(
        "ExecStart={} agent --server https://herd.example:7700 -l role=web --token-file /etc/herd/agent-token\n",
        exe.display()
    );
    // The token never goes into the unit, which any local user may read.
    assert!(!text.contains("--token tok"), "{text}");
    assert!(text.contains("# /etc/herd/agent-token (0600)"), "{text}");
    assert!(
        text.contains("/etc/systemd/system/herd-agent.service"),
        "{text}"
    );
    assert!(text.contains(&exec), "{text}");
    assert!(text.contains("Restart=always\n"), "{text}");
    assert!(text.contains("WantedBy=multi-user.target"), "{text}");

    let out = herd()
        .args(["agent", "install", "--dry-run", "--nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("herd: bad agent arguments"), "{err}");
}
