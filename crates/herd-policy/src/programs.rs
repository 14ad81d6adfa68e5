//! Rules for the programs whose arguments decide their class: `rm`, `dd`, `mkfs`, `chmod`,
//! `kill`, `systemctl`, package managers, `curl`, SQL clients, `find`, `git push`, `docker`, ….

use crate::Class::{Caution, Dangerous, Forbidden, Safe};
use crate::extract::{Simple, Word};
use crate::paths;
use crate::rules::{Out, has_flag, operands, write_target};
use crate::tables::{CRITICAL_PROCESSES, CRITICAL_UNITS};

/// Rules that read arguments. Pushes nothing when the tables decide.
pub(crate) fn program_rule(cmd: &Simple, prog: &str, args: &[Word], out: &mut Out) {
    let ops = operands(args);
    match prog {
        "rm" => rm(cmd, args, &ops, out),
        "shred" | "wipefs" | "blkdiscard" => {
            if ops.iter().any(|w| paths::is_block_device(&w.text)) {
                out.push((Forbidden, format!("`{prog}` wipes a block device")));
            } else {
                out.push((Dangerous, format!("`{prog}` destroys data")));
            }
        }
        "mkfs" => {
            if ops
                .iter()
                .any(|w| paths::is_block_device(&w.text) || w.dynamic)
            {
                out.push((
                    Forbidden,
                    "makes a filesystem on a device (erases it)".to_string(),
                ));
            } else {
                out.push((
                    Dangerous,
                    "makes a filesystem (erases its target)".to_string(),
                ));
            }
        }
        "dd" => {
            let of = args.iter().find_map(|w| {
                w.text.strip_prefix("of=").map(|p| Word {
                    text: p.to_string(),
                    ..w.clone()
                })
            });
            match of {
                Some(target) => {
                    let before = out.len();
                    write_target(&target, false, "dd writes to", out);
                    if out.len() == before {
                        out.push((Caution, format!("dd writes `{}`", target.text)));
                    }
                }
                None => out.push((Caution, "dd copies raw data".to_string())),
            }
        }
        "truncate" => {
            for w in &ops {
                let before = out.len();
                write_target(w, false, "truncates", out);
                if out.len() > before
                    && let Some(last) = out.last_mut()
                    && last.0 == Caution
                {
                    last.0 = Dangerous;
                }
            }
            if ops
                .iter()
                .any(|w| !w.dynamic && paths::is_system_tree(&w.text))
                && !out.iter().any(|(c, _)| *c >= Dangerous)
            {
                out.push((Dangerous, "truncates a system file".to_string()));
            }
            if out.is_empty() {
                out.push((Caution, "truncates files".to_string()));
            }
        }
        "tee" => {
            let append = has_flag(args, 'a', "--append");
            for w in &ops {
                write_target(w, append, "tee writes", out);
            }
            if out.is_empty() {
                out.push((Safe, "tee copies to stdout".to_string()));
            }
        }
        "sed" | "perl"
            if args
                .iter()
                .any(|w| w.text.starts_with("-i") || w.text.starts_with("--in-place")) =>
        {
            for w in ops.iter().skip(1) {
                if paths::is_critical_file(&w.text) || paths::is_system_binary_tree(&w.text) {
                    out.push((
                        Dangerous,
                        format!("edits system file `{}` in place", w.text),
                    ));
                } else if paths::is_under_etc(&w.text) {
                    out.push((Caution, format!("edits `{}` in place", w.text)));
                }
            }
            out.push((Caution, "edits files in place".to_string()));
        }
        "chmod" | "chown" | "chgrp" => permissions(cmd, prog, args, &ops, out),
        "kill" => kill(args, out),
        "pkill" | "killall" => {
            let names: Vec<&str> = ops.iter().map(|w| w.text.as_str()).collect();
            if names.iter().any(|n| CRITICAL_PROCESSES.contains(n)) {
                out.push((
                    Dangerous,
                    format!(
                        "`{prog}` signals a process the machine needs ({})",
                        names.join(" ")
                    ),
                ));
            } else {
                out.push((Caution, format!("`{prog}` signals processes by name")));
            }
        }
        "killall5" => out.push((Forbidden, "signals every process".to_string())),
        "reboot" | "shutdown" => {
            if prog == "shutdown" && has_flag(args, 'c', "--cancel") {
                out.push((Caution, "cancels a shutdown".to_string()));
            } else {
                out.push((
                    Dangerous,
                    format!("`{}` takes the machine down", cmd.program()),
                ));
            }
        }
        "init" | "telinit" => match ops.first().map(|w| w.text.as_str()) {
            Some("0" | "6" | "1" | "s" | "S") => out.push((
                Dangerous,
                "changes the runlevel (halt, reboot or single user)".to_string(),
            )),
            _ => out.push((Caution, "changes the runlevel".to_string())),
        },
        "systemctl" | "service" => units(prog, &ops, out),
        "herd" => herd(&ops, out),
        "userdel" => out.push((Dangerous, format!("`{}` deletes an account", cmd.program()))),
        "chpasswd" | "chage" => out.push((Dangerous, "changes passwords".to_string())),
        "usermod" => {
            if has_flag(args, 'L', "--lock") || has_flag(args, 'e', "--expiredate") {
                out.push((Dangerous, "locks or expires an account".to_string()));
            } else if args.iter().any(|w| {
                matches!(w.text.as_str(), "sudo" | "wheel" | "root" | "admin")
                    || w.text.contains("sudo")
                    || w.text.contains("wheel")
            }) {
                out.push((Dangerous, "grants administrator rights".to_string()));
            } else {
                out.push((Caution, "changes an account".to_string()));
            }
        }
        "pip" if ops.first().is_some_and(|w| w.text == "uninstall") => {
            if cmd.elevated || args.iter().any(|w| w.text == "--break-system-packages") {
                out.push((Dangerous, "uninstalls system Python packages".to_string()));
            } else {
                out.push((Caution, "uninstalls Python packages".to_string()));
            }
        }
        "dpkg" => {
            if args
                .iter()
                .any(|w| matches!(w.text.as_str(), "-r" | "-P" | "--remove" | "--purge"))
            {
                out.push((Dangerous, "removes packages".to_string()));
            } else if args
                .iter()
                .any(|w| matches!(w.text.as_str(), "-i" | "--install" | "--configure" | "-a"))
            {
                out.push((Caution, "installs packages".to_string()));
            } else {
                out.push((Safe, "`dpkg` queries packages".to_string()));
            }
        }
        "rpm" => {
            if args.iter().any(|w| {
                w.text == "-e"
                    || w.text == "--erase"
                    || (w.text.starts_with("-e") && !w.text.starts_with("--"))
            }) {
                out.push((Dangerous, "removes packages".to_string()));
            } else if args.iter().any(|w| {
                w.text.starts_with("-q") || w.text.starts_with("-V") || w.text == "--query"
            }) {
                out.push((Safe, "`rpm` queries packages".to_string()));
            } else {
                out.push((Caution, "installs or upgrades packages".to_string()));
            }
        }
        "pacman" => {
            if args.iter().any(|w| w.text.starts_with("-R")) {
                out.push((Dangerous, "removes packages".to_string()));
            } else if args.iter().any(|w| {
                w.text.starts_with("-Q") || w.text.starts_with("-Ss") || w.text.starts_with("-Si")
            }) {
                out.push((Safe, "`pacman` queries packages".to_string()));
            } else {
                out.push((Caution, "installs or upgrades packages".to_string()));
            }
        }
        "mount" => {
            let targets: Vec<&&Word> = ops.iter().collect();
            if targets.is_empty()
                && !args
                    .iter()
                    .any(|w| w.text.contains("remount") || w.text == "-a")
            {
                out.push((Safe, "`mount` lists mounts".to_string()));
            } else if targets
                .iter()
                .any(|w| paths::is_system_dir(&w.text) || paths::is_system_tree(&w.text))
            {
                out.push((Dangerous, "mounts over a system path".to_string()));
            } else {
                out.push((Caution, "mounts a filesystem".to_string()));
            }
        }
        "umount" => {
            if ops.iter().any(|w| {
                paths::is_system_dir(&w.text)
                    || paths::is_system_tree(&w.text)
                    || paths::is_block_device(&w.text)
            }) || has_flag(args, 'a', "--all")
            {
                out.push((Dangerous, "unmounts a system filesystem".to_string()));
            } else {
                out.push((Caution, "unmounts a filesystem".to_string()));
            }
        }
        "swapoff" => out.push((Caution, "disables swap".to_string())),
        "rmmod" => out.push((Dangerous, "unloads a kernel module".to_string())),
        "modprobe" if has_flag(args, 'r', "--remove") => {
            out.push((Dangerous, "unloads a kernel module".to_string()))
        }
        "setenforce" => out.push((Dangerous, "changes SELinux enforcement".to_string())),
        "hdparm"
            if args.iter().any(|w| {
                w.text.starts_with("--security")
                    || w.text.starts_with("--trim")
                    || w.text == "--fibmap"
            }) =>
        {
            out.push((Forbidden, "erases a disk".to_string()))
        }
        "cryptsetup"
            if ops.first().is_some_and(|w| {
                matches!(w.text.as_str(), "luksFormat" | "erase" | "luksErase")
            }) =>
        {
            out.push((Forbidden, "erases an encrypted volume's keys".to_string()))
        }
        "cp" | "mv" | "install" | "ln" | "rsync" => {
            if prog == "mv" && ops.iter().any(|w| paths::is_system_dir(&w.text)) {
                out.push((Dangerous, "moves a system directory".to_string()));
            }
            if prog == "rsync"
                && args.iter().any(|w| w.text.starts_with("--delete"))
                && ops.last().is_some_and(|w| {
                    paths::is_system_dir(&w.text) || paths::is_system_tree(&w.text)
                })
            {
                out.push((Dangerous, "rsync --delete onto a system path".to_string()));
            }
            if let Some(dest) = ops.last().filter(|_| ops.len() > 1) {
                write_target(dest, false, &format!("{prog} writes"), out);
            }
        }
        "curl" => {
            let file = args.iter().any(|w| {
                let t = w.text.as_str();
                t == "--output"
                    || t == "--remote-name"
                    || t == "--remote-name-all"
                    || t.starts_with("--output=")
                    || (t.starts_with('-') && !t.starts_with("--") && t.contains(['o', 'O']))
            });
            let sends = args.iter().any(|w| {
                let t = w.text.as_str();
                t.starts_with("--data")
                    || t == "-d"
                    || t == "-F"
                    || t == "--form"
                    || t == "-T"
                    || t == "--upload-file"
                    || t == "-X"
                    || t.starts_with("--request")
            });
            if file {
                if let Some(pos) = args
                    .iter()
                    .position(|w| w.text == "-o" || w.text == "--output")
                    && let Some(dest) = args.get(pos + 1)
                {
                    write_target(dest, false, "curl writes", out);
                }
                out.push((Caution, "downloads to a file".to_string()));
            } else if sends {
                out.push((
                    Caution,
                    "sends a request that may change the remote side".to_string(),
                ));
            } else {
                out.push((Safe, "`curl` fetches to stdout".to_string()));
            }
        }
        "wget" => {
            let to_stdout = args.windows(2).any(|p| {
                p[0].text.ends_with('O') && p[0].text.starts_with('-') && p[1].text == "-"
            }) || args.iter().any(|w| {
                let t = w.text.as_str();
                t == "--output-document=-"
                    || (t.starts_with('-') && t.ends_with("O-"))
                    || t == "--spider"
            });
            if let Some(pos) = args
                .iter()
                .position(|w| w.text == "-O" || w.text == "--output-document")
                && let Some(dest) = args.get(pos + 1).filter(|w| w.text != "-")
            {
                write_target(dest, false, "wget writes", out);
            }
            if to_stdout {
                out.push((Safe, "`wget` fetches to stdout".to_string()));
            } else {
                out.push((Caution, "downloads to a file".to_string()));
            }
        }
        "psql" | "mysql" | "sqlite3" | "mongo" | "mongosh" | "redis-cli" => {
            sql(prog, args, &ops, out)
        }
        "mysqladmin" if ops.iter().any(|w| w.text == "drop") => {
            out.push((Dangerous, "drops a database".to_string()))
        }
        "find" => {
            let starts: Vec<&Word> = args
                .iter()
                .take_while(|w| !w.text.starts_with('-') && w.text != "(" && w.text != "!")
                .collect();
            let system = starts.iter().any(|w| {
                w.dynamic
                    || paths::is_root(&w.text)
                    || paths::is_system_tree(&w.text)
                    || (paths::is_system_dir(&w.text)
                        && !matches!(
                            paths::normalize(&w.text).as_str(),
                            "/var/log" | "/var/cache" | "/var/spool"
                        ))
            });
            if args.iter().any(|w| w.text == "-delete") {
                if system {
                    out.push((Dangerous, "`find -delete` under a system path".to_string()));
                } else {
                    out.push((Caution, "`find -delete` removes files".to_string()));
                }
            } else if args
                .iter()
                .any(|w| w.text.starts_with("-fprint") || w.text == "-fls")
            {
                out.push((Caution, "`find` writes a file".to_string()));
            } else {
                out.push((Safe, "`find` lists files".to_string()));
            }
        }
        "git"
            if ops.first().is_some_and(|w| w.text == "push")
                && (args.iter().any(|w| {
                    w.text == "-f"
                        || w.text.starts_with("--force")
                        || w.text == "--mirror"
                        || w.text == "--delete"
                }) || ops
                    .iter()
                    .skip(1)
                    .any(|w| w.text.starts_with('+') || w.text.starts_with(':'))) =>
        {
            out.push((
                Dangerous,
                "`git push --force` rewrites remote history".to_string(),
            ));
        }
        "docker" => {
            let sub = ops.first().map(|w| w.text.as_str()).unwrap_or("");
            let sub2 = ops.get(1).map(|w| w.text.as_str()).unwrap_or("");
            let removes = sub == "rm"
                || sub == "rmi"
                || (sub == "container" && sub2 == "rm")
                || (sub == "image" && sub2 == "rm");
            if removes
                && args.iter().any(|w| {
                    w.text == "-f"
                        || w.text == "--force"
                        || (w.text.starts_with('-')
                            && !w.text.starts_with("--")
                            && w.text.contains('f'))
                })
            {
                out.push((
                    Dangerous,
                    "`docker rm -f` kills and removes containers".to_string(),
                ));
            } else if sub == "run" || sub == "create" {
                let privileged = args.iter().any(|w| {
                    w.text == "--privileged"
                        || w.text.starts_with("--pid=host")
                        || w.text.starts_with("/:/")
                        || w.text.starts_with("--volume=/:")
                });
                if privileged {
                    out.push((
                        Dangerous,
                        "runs a privileged container or mounts the host's root".to_string(),
                    ));
                }
            } else if sub == "kill" || sub == "stop" {
                out.push((Caution, format!("`docker {sub}` stops containers")));
            }
        }
        "hostname" if !ops.is_empty() => out.push((Caution, "renames the machine".to_string())),
        "date" if has_flag(args, 's', "--set") => out.push((Caution, "sets the clock".to_string())),
        "dmesg"
            if has_flag(args, 'C', "--clear")
                || args
                    .iter()
                    .any(|w| w.text == "-c" || w.text == "--read-clear") =>
        {
            out.push((Caution, "clears the kernel ring buffer".to_string()))
        }
        "history" if has_flag(args, 'c', "--clear") => {
            out.push((Caution, "clears the shell history".to_string()))
        }
        "ip" if ops.first().is_some_and(|w| w.text == "link")
            && ops.iter().any(|w| w.text == "down") =>
        {
            out.push((Dangerous, "takes a network link down".to_string()))
        }
        "ifconfig" | "ifdown" if ops.iter().any(|w| w.text == "down") || prog == "ifdown" => {
            out.push((Dangerous, "takes a network interface down".to_string()))
        }
        "tar" => tar(args, out),
        "nc" | "ncat" | "netcat" | "socat"
            if args.iter().any(|w| {
                matches!(
                    w.text.as_str(),
                    "-e" | "-c" | "--exec" | "--sh-exec" | "--lua-exec"
                ) || w.text.starts_with("EXEC:")
                    || w.text.starts_with("SYSTEM:")
            }) =>
        {
            out.push((
                Dangerous,
                format!("`{prog}` connects a program to the network (a remote shell)"),
            ))
        }
        "sysctl" if ops.iter().any(|w| w.text.contains('=')) => {
            out.push((Caution, "changes kernel parameters".to_string()))
        }
        "export" | "declare" | "typeset" | "readonly" | "local" => {
            for w in &ops {
                let name = w.text.split('=').next().unwrap_or("");
                if crate::tables::RISKY_VARIABLES.contains(&name) {
                    out.push((
                        Dangerous,
                        format!("sets {name}, which changes what code the commands run"),
                    ));
                }
            }
        }
        "gzip" | "gunzip" | "zip" | "unzip" | "xz" | "bzip2"
            if !has_flag(args, 'l', "--list") && !has_flag(args, 'c', "--stdout") =>
        {
            out.push((Caution, format!("`{prog}` writes files")))
        }
        "awk" | "gawk" | "mawk"
            if args.iter().any(|w| {
                w.text.contains("system(")
                    || w.text.contains("| getline")
                    || w.text.contains("print >")
            }) =>
        {
            out.push((
                Dangerous,
                "awk program runs commands or writes files".to_string(),
            ))
        }
        "openssl"
            if !ops.first().is_some_and(|w| {
                matches!(
                    w.text.as_str(),
                    "x509"
                        | "version"
                        | "s_client"
                        | "verify"
                        | "rand"
                        | "dgst"
                        | "ciphers"
                        | "req"
                        | "genrsa"
                )
            }) =>
        {
            out.push((Caution, "`openssl` may write files".to_string()))
        }
        "xargs" | "watch" | "env" | "nice" => {}
        _ => {}
    }
}

fn rm(cmd: &Simple, args: &[Word], ops: &[&Word], out: &mut Out) {
    let recursive = has_flag(args, 'r', "--recursive") || has_flag(args, 'R', "--recursive");
    if args.iter().any(|w| w.text == "--no-preserve-root") {
        out.push((
            Forbidden,
            "`rm --no-preserve-root` can erase the whole filesystem".to_string(),
        ));
        return;
    }
    if cmd.args_from_input && recursive {
        out.push((
            Dangerous,
            "`rm -r` of paths that arrive at run time".to_string(),
        ));
    }
    for w in ops {
        let t = w.text.as_str();
        if w.dynamic {
            if recursive {
                out.push((
                    Dangerous,
                    format!("`rm -r` of `{t}`, a path known only at run time"),
                ));
            } else {
                out.push((
                    Caution,
                    format!("removes `{t}`, a path known only at run time"),
                ));
            }
            continue;
        }
        if paths::is_root(t) {
            if recursive {
                out.push((
                    Forbidden,
                    format!("`rm -r {t}` erases the whole filesystem"),
                ));
            } else {
                out.push((Dangerous, format!("removes `{t}` at the filesystem root")));
            }
            continue;
        }
        if t == "~" || t == "~/" || t == "~/*" || t == "~root" || t == "/root" {
            if recursive && cmd.elevated {
                out.push((Forbidden, format!("`rm -r {t}` as root erases root's home")));
            } else if recursive {
                out.push((Dangerous, format!("`rm -r {t}` erases a home directory")));
            } else {
                out.push((Caution, format!("removes `{t}`")));
            }
            continue;
        }
        if recursive && w.glob && t.contains('{') {
            out.push((Dangerous, format!("`rm -r` of the brace expansion `{t}`")));
            continue;
        }
        let glob_on_system = w.glob
            && paths::glob_parent(t)
                .is_some_and(|p| paths::is_system_dir(&p) || paths::is_system_tree(&p));
        if paths::is_system_dir(t) || paths::is_system_tree(t) || glob_on_system {
            if recursive
                || glob_on_system
                || paths::is_system_binary_tree(t)
                || paths::is_critical_file(t)
            {
                out.push((Dangerous, format!("removes system path `{t}`")));
            } else {
                out.push((Caution, format!("removes system file `{t}`")));
            }
            continue;
        }
        if recursive && (matches!(t, "." | ".." | "*" | "./*" | "../*") || t.starts_with("..")) {
            out.push((
                Dangerous,
                format!("`rm -r {t}` relative to a working directory that is not known"),
            ));
            continue;
        }
        out.push((Caution, format!("removes `{t}`")));
    }
    if out.is_empty() {
        out.push((Caution, "removes files".to_string()));
    }
}

fn permissions(cmd: &Simple, prog: &str, args: &[Word], ops: &[&Word], out: &mut Out) {
    let _ = cmd;
    let recursive = has_flag(args, 'R', "--recursive");
    let (mode, targets) = match ops.split_first() {
        Some((m, t)) if !args.iter().any(|w| w.text.starts_with("--reference")) => (Some(m), t),
        _ => (None, ops),
    };
    if prog == "chmod"
        && let Some(m) = mode
    {
        let t = m.text.as_str();
        let setuid = t.contains('s')
            || (t.len() == 4 && t.chars().all(|c| c.is_ascii_digit()) && !t.starts_with('0'));
        if setuid && targets.iter().any(|w| paths::is_system_tree(&w.text)) {
            out.push((Dangerous, "sets setuid/setgid on a system file".to_string()));
        }
    }
    for w in targets {
        let t = w.text.as_str();
        if paths::is_root(t) && recursive {
            out.push((Forbidden, format!("`{prog} -R` of the whole filesystem")));
        } else if paths::is_root(t) {
            out.push((Dangerous, format!("`{prog}` of the filesystem root")));
        } else if w.dynamic && recursive {
            out.push((
                Dangerous,
                format!("`{prog} -R` of `{t}`, a path known only at run time"),
            ));
        } else if recursive && (paths::is_system_dir(t) || paths::is_system_tree(t)) {
            out.push((Dangerous, format!("`{prog} -R` of system path `{t}`")));
        } else if paths::is_critical_file(t) {
            out.push((Dangerous, format!("`{prog}` of `{t}` (accounts or sudo)")));
        } else if paths::is_system_dir(t) || paths::is_system_tree(t) {
            out.push((Caution, format!("`{prog}` of system path `{t}`")));
        }
    }
    if out.is_empty() {
        out.push((Caution, format!("`{prog}` changes file ownership or modes")));
    }
}

/// herd itself, run by a task: what changes who may do what (the policy, keys, join tokens,
/// revocations) is never a step of a plan or a job; starting a server or agent is dangerous.
fn herd(ops: &[&Word], out: &mut Out) {
    let words: Vec<&str> = ops.iter().map(|w| w.text.as_str()).collect();
    match words.as_slice() {
        ["policy", "check", ..] => out.push((Caution, "herd: checks a command".to_string())),
        ["policy", ..] | ["keys" | "tokens", ..] | ["agents", "revoke", ..] => out.push((
            Forbidden,
            "changes herd's own policy or credentials".to_string(),
        )),
        ["server" | "agent" | "up", ..] => {
            out.push((Dangerous, "starts a herd server or agent".to_string()))
        }
        // A step's own input, outputs and variables: what follows may be its data.
        ["helper", ..] if !ops[0].dynamic => out.push((
            Caution,
            "herd helper: a step's input, outputs or variables".to_string(),
        )),
        _ if ops.iter().any(|w| w.dynamic) => out.push((
            Dangerous,
            "herd with a subcommand known only at run time".to_string(),
        )),
        _ => out.push((Caution, "runs herd".to_string())),
    }
}

fn kill(args: &[Word], out: &mut Out) {
    let mut signal = "TERM".to_string();
    let mut targets = Vec::new();
    let mut i = 0;
    let mut options_done = false;
    while i < args.len() {
        let t = args[i].text.as_str();
        if options_done {
            targets.push(t);
        } else if t == "--" {
            options_done = true;
        } else if t == "-l" || t == "-L" || t == "--list" {
            out.push((Safe, "`kill -l` lists signals".to_string()));
            return;
        } else if t == "-s" || t == "-n" || t == "--signal" {
            signal = args.get(i + 1).map(|w| w.text.clone()).unwrap_or_default();
            i += 1;
        } else if let Some(s) = t
            .strip_prefix('-')
            .filter(|_| targets.is_empty() && signal == "TERM")
        {
            signal = s.to_string();
        } else {
            targets.push(t);
        }
        i += 1;
    }
    let sig = signal.trim_start_matches("SIG").to_ascii_uppercase();
    let hard = matches!(
        sig.as_str(),
        "9" | "KILL" | "15" | "TERM" | "2" | "INT" | "6" | "ABRT"
    );
    for t in targets {
        if t == "-1" {
            out.push((
                Forbidden,
                format!("`kill -{signal} -1` signals every process"),
            ));
        } else if t == "1" && hard && sig != "15" && sig != "TERM" {
            out.push((Forbidden, format!("`kill -{signal} 1` kills init")));
        } else if t == "1" && sig != "0" {
            out.push((Dangerous, "signals init (pid 1)".to_string()));
        }
    }
    if out.is_empty() {
        out.push((Caution, "`kill` sends a signal to processes".to_string()));
    }
}

fn units(prog: &str, ops: &[&Word], out: &mut Out) {
    // `service NAME ACTION` names the unit first.
    let (action, names): (&str, Vec<&str>) = if prog == "service" {
        match ops {
            [name, action, ..] => (action.text.as_str(), vec![name.text.as_str()]),
            _ => return,
        }
    } else {
        match ops.split_first() {
            Some((a, rest)) => (
                a.text.as_str(),
                rest.iter().map(|w| w.text.as_str()).collect(),
            ),
            None => return,
        }
    };
    if !matches!(
        action,
        "stop"
            | "disable"
            | "mask"
            | "kill"
            | "restart"
            | "start"
            | "reload"
            | "try-restart"
            | "reload-or-restart"
            | "enable"
            | "unmask"
            | "daemon-reload"
            | "reset-failed"
            | "edit"
            | "set-property"
            | "force-reload"
            | "condrestart"
    ) {
        return;
    }
    let critical: Vec<&str> = names
        .iter()
        .map(|n| n.trim_end_matches(".service").trim_end_matches(".socket"))
        .filter(|n| CRITICAL_UNITS.contains(n) || n.contains('*'))
        .collect();
    if matches!(action, "stop" | "disable" | "mask" | "kill") {
        if !critical.is_empty() {
            out.push((
                Dangerous,
                format!(
                    "`{prog} {action}` of {} (cuts access or management)",
                    critical.join(" ")
                ),
            ));
        } else {
            out.push((Caution, format!("`{prog} {action}` stops a service")));
        }
    } else {
        out.push((Caution, format!("`{prog} {action}` changes a service")));
    }
}

fn sql(prog: &str, args: &[Word], ops: &[&Word], out: &mut Out) {
    let mut texts: Vec<&str> = Vec::new();
    for (i, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        if matches!(t, "-c" | "--command" | "-e" | "--execute" | "--eval") {
            if let Some(v) = args.get(i + 1) {
                texts.push(v.text.as_str());
            }
        } else if let Some(v) = t
            .strip_prefix("--command=")
            .or_else(|| t.strip_prefix("--execute="))
        {
            texts.push(v);
        } else if (prog == "mysql" && t.starts_with("-e") && t.len() > 2)
            || (prog == "psql" && t.starts_with("-c") && t.len() > 2)
        {
            texts.push(&t[2..]);
        }
    }
    if prog == "sqlite3" || prog == "redis-cli" {
        texts.extend(ops.iter().skip(1).map(|w| w.text.as_str()));
    }
    for text in texts {
        let upper = text.to_ascii_uppercase();
        let squeezed: String = upper.split_whitespace().collect::<Vec<_>>().join(" ");
        if [
            "DROP DATABASE",
            "DROP SCHEMA",
            "DROP TABLE",
            "TRUNCATE",
            "FLUSHALL",
            "FLUSHDB",
            "DROPDATABASE",
            "DROP USER",
            "DROP ROLE",
        ]
        .iter()
        .any(|k| squeezed.contains(k))
            || (squeezed.contains("DELETE FROM") && !squeezed.contains("WHERE"))
        {
            out.push((
                Dangerous,
                format!(
                    "`{prog}` runs destructive SQL ({})",
                    squeezed.chars().take(60).collect::<String>()
                ),
            ));
            return;
        }
    }
    out.push((Caution, format!("`{prog}` runs queries")));
}

/// `tar`: listing is Safe, writing an archive Caution, extracting Caution — Dangerous over `/`
/// or a system tree (`-C /`, `--directory=/usr`).
fn tar(args: &[Word], out: &mut Out) {
    // The mode letters: the first argument (old style, without a dash) and short option groups.
    let mut modes = String::new();
    for (i, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        if i == 0 && !t.starts_with('-') {
            modes.push_str(t);
        } else if t.starts_with('-') && !t.starts_with("--") {
            modes.push_str(&t[1..]);
        } else if t == "--extract" || t == "--get" {
            modes.push('x');
        } else if t == "--list" {
            modes.push('t');
        }
    }
    if modes.contains('x') {
        let dir = args
            .iter()
            .position(|w| w.text == "-C" || w.text == "--directory")
            .and_then(|i| args.get(i + 1))
            .map(|w| w.text.clone())
            .or_else(|| {
                args.iter()
                    .find_map(|w| w.text.strip_prefix("--directory=").map(str::to_string))
            });
        match dir {
            Some(d)
                if paths::is_root(&d) || paths::is_system_tree(&d) || paths::is_system_dir(&d) =>
            {
                out.push((Dangerous, format!("`tar` extracts over system path `{d}`")))
            }
            _ => out.push((Caution, "`tar` extracts files".to_string())),
        }
    } else if modes.contains('t') && !modes.contains('c') {
        out.push((Safe, "`tar` lists an archive".to_string()));
    } else {
        out.push((Caution, "`tar` writes an archive".to_string()));
    }
}
