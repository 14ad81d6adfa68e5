//! The classification rules: data tables for the plain cases (read-only programs, subcommands)
//! and a few functions for the programs whose arguments decide (`rm`, `dd`, `chmod`, `kill`,
//! redirections, pipes into interpreters, …).
//!
//! Reading order: [`classify_simple`] → redirections → pipes into interpreters → the program's
//! own rule (`programs.rs`, else the `tables.rs` subcommands, read-only and change lists, else
//! "unknown program", Caution).

use std::collections::BTreeSet;

use crate::Class::{self, Caution, Dangerous, Forbidden, Safe};
use crate::extract::{RedirectKind, Simple, Stdin, Word};
use crate::paths;
use crate::tables::{CHANGES, INTERPRETERS, PROGRAM_DEFAULTS, READ_ONLY, SUBCOMMANDS};
pub(crate) type Out = Vec<(Class, String)>;

/// Classifies one simple command; pushes one `(class, why)` per finding (at least one).
pub fn classify_simple(cmd: &Simple, functions: &BTreeSet<String>, out: &mut Out) {
    redirects(cmd, out);
    let Some(first) = cmd.argv.first() else {
        if out.is_empty() {
            out.push((Safe, "assignment or redirection only".to_string()));
        }
        return;
    };
    // `[` alone is the test command: an unmatched bracket expands to nothing else.
    if first.glob && first.text != "[" {
        out.push((
            Dangerous,
            format!(
                "program name `{}` comes from a glob or brace expansion",
                first.text
            ),
        ));
        return;
    }
    if first.dynamic {
        out.push((
            Dangerous,
            format!("program name `{}` is known only at run time", first.text),
        ));
        return;
    }
    let mut prog = cmd.program().to_string();
    let mut args: &[Word] = &cmd.argv[1..];
    // `python3 -m pip …` is pip.
    if prog.starts_with("python") && args.first().is_some_and(|w| w.text == "-m") && args.len() > 1
    {
        prog = args[1].text.clone();
        args = &args[2..];
    }
    let prog = canonical(&prog);
    if cmd
        .wrappers
        .iter()
        .any(|w| w == &format!("function {prog}()"))
    {
        out.push((
            Forbidden,
            format!("function `{prog}` calls itself (fork-bomb shape)"),
        ));
        return;
    }
    if functions.contains(prog) {
        out.push((Safe, format!("calls `{prog}`, defined in this command")));
        return;
    }
    if INTERPRETERS.contains(&prog) && interpreter(cmd, prog, args, out) {
        return;
    }
    if let Some(w) = args.iter().find(|w| paths::is_secret(&w.text)) {
        out.push((Caution, format!("reads secrets (`{}`)", w.text)));
    }
    let before = out.len();
    crate::programs::program_rule(cmd, prog, args, out);
    if out.len() == before {
        table_rule(prog, args, out);
    }
    if cmd.elevated && out.iter().all(|(c, _)| *c == Safe) {
        out.push((Caution, format!("runs `{prog}` as another user")));
    }
}

/// Spellings of the same program: `apt-get` is `apt`, `pip3` is `pip`, `mkfs.ext4` is `mkfs`.
pub(crate) fn canonical(prog: &str) -> &str {
    match prog {
        "apt-get" | "aptitude" => "apt",
        "yum" | "microdnf" => "dnf",
        "pip3" | "pip2" => "pip",
        "ip6tables" | "iptables-legacy" | "iptables-nft" | "ebtables" | "arptables" => "iptables",
        "podman" | "nerdctl" => "docker",
        "docker-compose" => "docker",
        "oc" => "kubectl",
        "poweroff" | "halt" => "reboot",
        "mariadb" => "mysql",
        "deluser" | "groupdel" | "delgroup" => "userdel",
        "mke2fs" | "mkswap" | "mkdosfs" => "mkfs",
        p if p.starts_with("mkfs.") => "mkfs",
        p => p,
    }
}

/// Operands: the arguments that are not options.
pub(crate) fn operands(args: &[Word]) -> Vec<&Word> {
    let mut out = Vec::new();
    let mut options_done = false;
    for w in args {
        if !options_done && w.text == "--" {
            options_done = true;
            continue;
        }
        if options_done || !w.text.starts_with('-') || w.text == "-" {
            out.push(w);
        }
    }
    out
}

pub(crate) fn has_flag(args: &[Word], short: char, long: &str) -> bool {
    args.iter().any(|w| {
        let t = w.text.as_str();
        t == long || (t.starts_with('-') && !t.starts_with("--") && t[1..].contains(short))
    })
}

fn redirects(cmd: &Simple, out: &mut Out) {
    for r in &cmd.redirects {
        if r.kind == RedirectKind::Read {
            continue;
        }
        write_target(
            &r.target,
            r.kind == RedirectKind::Append,
            "redirect onto",
            out,
        );
    }
}

/// A write to `target` (a redirection, `tee`, `dd of=`, `cp` destination, `truncate`).
pub(crate) fn write_target(target: &Word, append: bool, how: &str, out: &mut Out) {
    let path = target.text.as_str();
    if target.dynamic {
        out.push((
            Caution,
            format!("{how} `{path}`, a path known only at run time"),
        ));
        return;
    }
    let p = paths::normalize(path);
    if p == "/proc/sysrq-trigger" {
        out.push((
            Forbidden,
            "writes to /proc/sysrq-trigger (can crash or reboot the kernel)".to_string(),
        ));
    } else if paths::is_block_device(&p) {
        out.push((
            Forbidden,
            format!("{how} block device `{p}` (destroys its data)"),
        ));
    } else if paths::is_harmless_sink(&p) {
    } else if paths::is_critical_file(&p) {
        if append {
            out.push((
                Dangerous,
                format!("appends to `{p}` (accounts, sudo or boot configuration)"),
            ));
        } else {
            out.push((
                Forbidden,
                format!("overwrites `{p}` (accounts, sudo or boot configuration)"),
            ));
        }
    } else if paths::runs_later(&p) {
        out.push((
            Dangerous,
            format!(
                "{how} `{p}`, which the system runs or trusts later (cron, units, login, SSH keys)"
            ),
        ));
    } else if paths::is_system_binary_tree(&p) || p.starts_with("/dev/") {
        out.push((Dangerous, format!("{how} system file `{p}`")));
    } else if paths::is_under_etc(&p) || p.starts_with("/proc/") || p.starts_with("/sys/") {
        out.push((Caution, format!("{how} system configuration `{p}`")));
    }
}

/// A shell or interpreter: Dangerous when it runs what a pipe feeds it. Returns true when the
/// command is fully classified.
fn interpreter(cmd: &Simple, prog: &str, args: &[Word], out: &mut Out) -> bool {
    let inline = args
        .iter()
        .any(|w| matches!(w.text.as_str(), "-c" | "-e" | "-E" | "--eval" | "-r"));
    let ops = operands(args);
    let script = ops.first().filter(|w| w.text != "-");
    match (&cmd.stdin, script, inline) {
        (_, _, true) => {
            // The code is another language: only a few markers of running commands or deleting
            // files are looked for.
            const MARKERS: &[&str] = &[
                "system(",
                "subprocess",
                "popen",
                "exec(",
                "execv",
                "spawn",
                "rmtree",
                "remove(",
                "unlink",
                "rmdir",
                "child_process",
                "`",
                "shell_exec",
                "passthru",
                "Runtime.getRuntime",
                "eval(",
            ];
            let runs = args
                .iter()
                .any(|w| MARKERS.iter().any(|m| w.text.contains(m)));
            if runs {
                out.push((
                    Dangerous,
                    format!("inline {prog} code that runs commands or deletes files"),
                ));
            } else {
                out.push((Caution, format!("runs inline {prog} code (not read)")));
            }
        }
        (Stdin::Pipe(from), None, false) => {
            let why = match canonical(from) {
                "curl" | "wget" | "fetch" | "aria2c" => {
                    format!("download piped to an interpreter (`{from} | {prog}`)")
                }
                "base64" | "base32" | "xxd" | "openssl" | "gunzip" | "zcat" | "rev" | "tr" => {
                    format!("decoded payload piped to an interpreter (`{from} | {prog}`)")
                }
                _ => format!("`{from}` piped into the interpreter `{prog}`"),
            };
            out.push((Dangerous, why));
        }
        (Stdin::Here(None), None, false) => out.push((
            Dangerous,
            format!("here-document with expansions run by `{prog}`"),
        )),
        (_, Some(s), false) => out.push((
            Caution,
            format!("runs the script `{}` (its content is not read)", s.text),
        )),
        (_, None, false) => out.push((Caution, format!("opens an interactive `{prog}`"))),
    }
    true
}

fn table_rule(prog: &str, args: &[Word], out: &mut Out) {
    let ops = operands(args);
    let first = args
        .iter()
        .find(|w| !w.text.starts_with("--") || w.text.contains('='))
        .map(|w| w.text.as_str());
    let sub1 = ops.first().map(|w| w.text.as_str()).unwrap_or("");
    let sub2 = if ops.len() > 1 {
        format!("{} {}", ops[0].text, ops[1].text)
    } else {
        String::new()
    };
    for key in [sub2.as_str(), sub1] {
        if let Some((_, _, class, why)) = SUBCOMMANDS
            .iter()
            .find(|(p, s, _, _)| *p == prog && *s == key && (!key.is_empty() || ops.is_empty()))
        {
            out.push((*class, format!("`{prog}` {why}")));
            return;
        }
    }
    // Option-style subcommands (`crontab -r`, `iptables -F`, `nginx -t`).
    for a in args.iter().filter(|w| w.text.starts_with('-')) {
        let key = a.text.split('=').next().unwrap_or("");
        if let Some((_, _, class, why)) = SUBCOMMANDS
            .iter()
            .find(|(p, s, _, _)| *p == prog && *s == key)
        {
            out.push((*class, format!("`{prog}` {why}")));
            return;
        }
    }
    let _ = first;
    if let Some((_, class, why)) = PROGRAM_DEFAULTS.iter().find(|(p, _, _)| *p == prog) {
        out.push((*class, format!("`{prog}` {why}")));
    } else if READ_ONLY.contains(&prog) {
        out.push((Safe, format!("`{prog}` only reads or reports")));
    } else if let Some((_, why)) = CHANGES.iter().find(|(p, _)| *p == prog) {
        out.push((Caution, format!("`{prog}` {why}")));
    } else {
        out.push((Caution, format!("unknown program `{prog}`")));
    }
}
