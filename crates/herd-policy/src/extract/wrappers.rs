//! Wrappers: the programs that run another command (`sudo`, `env`, `timeout`, `xargs`,
//! `find -exec`, `ssh host cmd`) or another piece of shell text (`sh -c`, `su -c`, `eval`,
//! `watch`, `trap`), taken off to reach what really runs.

use super::{Context, Extractor, Redirect, Simple, Stdin, Word, base_name};

impl Extractor {
    /// Nested shell text given as words (`sh -c TEXT`, `eval A B`, `ssh host A B`): read again
    /// when every word is literal, Dangerous otherwise.
    fn nested(&mut self, words: &[Word], depth: usize, ctx: &Context, what: &str) {
        if let Some(w) = words.iter().find(|w| w.dynamic) {
            let text = format!("{what} {}", w.text);
            self.problem(&text, format!("{what} runs text known only at run time"));
            return;
        }
        let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        self.source(&text.join(" "), depth + 1, ctx);
    }

    /// Takes the wrappers off `argv` and records the command that runs (and any nested ones).
    pub(super) fn unwrap(
        &mut self,
        argv: Vec<Word>,
        redirects: Vec<Redirect>,
        depth: usize,
        ctx: &Context,
        from_input: bool,
    ) {
        let mut ctx = ctx.clone();
        let mut argv = argv;
        let mut from_input = from_input;
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > 16 {
                self.problem(&join(&argv), "wrappers nested too deep: not read");
                return;
            }
            let Some(first) = argv.first() else { break };
            if first.dynamic {
                break;
            }
            let prog = base_name(&first.text).to_string();
            let rest = &argv[1..];
            let skip = match prog.as_str() {
                "sudo" => {
                    ctx.elevated = true;
                    options(
                        rest,
                        &[
                            "-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R",
                        ],
                        true,
                    )
                }
                "doas" => {
                    ctx.elevated = true;
                    options(rest, &["-u", "-C"], true)
                }
                "env" => {
                    let mut i = options(rest, &["-u", "-C", "--unset", "--chdir"], true);
                    // `env -S "text"` splits its argument as a command line.
                    if let Some(pos) = rest
                        .iter()
                        .position(|w| w.text == "-S" || w.text.starts_with("--split-string"))
                    {
                        let split: Vec<Word> = rest[pos + 1..].to_vec();
                        ctx.wrappers.push("env -S".to_string());
                        self.nested(&split, depth, &ctx, "env -S");
                        return;
                    }
                    while i < rest.len()
                        && rest[i].text.contains('=')
                        && !rest[i].text.starts_with('=')
                    {
                        if let Some((name, _)) = rest[i].text.split_once('=') {
                            self.variable(name);
                        }
                        i += 1;
                    }
                    i
                }
                "nohup" | "setsid" | "unbuffer" | "builtin" => options(rest, &[], true),
                "command" => {
                    if rest
                        .iter()
                        .take_while(|w| w.text.starts_with('-'))
                        .any(|w| w.text.contains(['v', 'V']))
                    {
                        break;
                    }
                    options(rest, &[], true)
                }
                "exec" => options(rest, &["-a"], true),
                "nice" => options(rest, &["-n", "--adjustment"], true),
                "ionice" => {
                    if rest
                        .iter()
                        .any(|w| w.text == "-p" || w.text == "-P" || w.text == "-u")
                    {
                        break;
                    }
                    options(rest, &["-c", "-n", "--class", "--classdata"], true)
                }
                "stdbuf" => options(rest, &["-i", "-o", "-e"], true),
                "time" => options(rest, &["-f", "-o", "--format", "--output"], true),
                "timeout" => {
                    let i = options(rest, &["-s", "-k", "--signal", "--kill-after"], true);
                    if i < rest.len() { i + 1 } else { i }
                }
                "chroot" => {
                    let i = options(rest, &[], true);
                    if i + 1 >= rest.len() {
                        break;
                    }
                    i + 1
                }
                "xargs" => {
                    from_input = true;
                    let i = options(
                        rest,
                        &[
                            "-I",
                            "-n",
                            "-P",
                            "-L",
                            "-d",
                            "-E",
                            "-s",
                            "-a",
                            "--max-args",
                            "--max-procs",
                            "--delimiter",
                            "--arg-file",
                        ],
                        true,
                    );
                    if i >= rest.len() {
                        // `xargs` alone runs echo.
                        break;
                    }
                    i
                }
                "watch" => {
                    let i = options(
                        rest,
                        &["-n", "--interval", "-d", "--differences", "-q", "--equexit"],
                        true,
                    );
                    ctx.wrappers.push(join(&argv[..=i]));
                    self.nested(&rest[i..], depth, &ctx, "watch");
                    return;
                }
                "sh" | "bash" | "zsh" | "dash" | "ksh" | "ash" | "mksh" | "busybox" => {
                    let rest = if prog == "busybox" {
                        match rest.first() {
                            Some(w) if matches!(w.text.as_str(), "sh" | "ash" | "bash") => {
                                &rest[1..]
                            }
                            _ => break,
                        }
                    } else {
                        rest
                    };
                    // `-c` may be grouped with other flags (`-ec`, `-lc`); the text is the first
                    // operand after the options.
                    let mut has_c = false;
                    let mut i = 0;
                    while i < rest.len()
                        && rest[i].text.starts_with('-')
                        && rest[i].text != "-"
                        && rest[i].text != "--"
                    {
                        let t = &rest[i].text;
                        if !t.starts_with("--") && t.contains('c') {
                            has_c = true;
                        }
                        if t == "-o" || t == "+o" || t == "-O" || t == "+O" {
                            i += 1;
                        }
                        i += 1;
                    }
                    if i < rest.len() && rest[i].text == "--" {
                        i += 1;
                    }
                    if has_c {
                        let Some(text) = rest.get(i) else { break };
                        let mut inner = ctx.clone();
                        inner.wrappers.push(format!("{prog} -c"));
                        inner.stdin = None;
                        self.nested(
                            std::slice::from_ref(text),
                            depth,
                            &inner,
                            &format!("{prog} -c"),
                        );
                        return;
                    }
                    let script = rest.get(i).filter(|w| w.text != "-");
                    if script.is_none()
                        && let Some(Stdin::Here(Some(text))) = &ctx.stdin
                    {
                        let mut inner = ctx.clone();
                        inner.wrappers.push(format!("{prog} <<"));
                        inner.stdin = None;
                        let text = text.clone();
                        self.source(&text, depth + 1, &inner);
                        return;
                    }
                    break;
                }
                "su" => {
                    ctx.elevated = true;
                    let mut text = None;
                    let mut i = 0;
                    while i < rest.len() {
                        let t = &rest[i].text;
                        if t == "-c" || t == "--command" {
                            text = rest.get(i + 1).cloned();
                            break;
                        }
                        if let Some(v) = t.strip_prefix("--command=") {
                            text = Some(Word {
                                text: v.to_string(),
                                ..rest[i].clone()
                            });
                            break;
                        }
                        i += 1;
                    }
                    match text {
                        Some(text) => {
                            let mut inner = ctx.clone();
                            inner.wrappers.push("su -c".to_string());
                            self.nested(std::slice::from_ref(&text), depth, &inner, "su -c");
                            return;
                        }
                        None => break,
                    }
                }
                "eval" => {
                    let mut inner = ctx.clone();
                    inner.wrappers.push("eval".to_string());
                    self.nested(rest, depth, &inner, "eval");
                    return;
                }
                "alias" => {
                    // `alias ls='rm -rf /'` runs its text wherever the name is used.
                    for a in rest {
                        if let Some((_, value)) = a.text.split_once('=') {
                            let mut inner = ctx.clone();
                            inner.wrappers.push("alias".to_string());
                            let value = Word {
                                text: value.to_string(),
                                ..a.clone()
                            };
                            self.nested(std::slice::from_ref(&value), depth, &inner, "alias");
                        }
                    }
                    break;
                }
                "trap" => {
                    if let Some(action) = rest.first().filter(|w| !w.text.starts_with('-')) {
                        let mut inner = ctx.clone();
                        inner.wrappers.push("trap".to_string());
                        self.nested(std::slice::from_ref(action), depth, &inner, "trap");
                    }
                    break;
                }
                "ssh" => {
                    let i = options(
                        rest,
                        &[
                            "-b", "-c", "-D", "-E", "-e", "-F", "-I", "-i", "-J", "-L", "-l", "-m",
                            "-O", "-o", "-p", "-Q", "-R", "-S", "-W", "-w", "-B",
                        ],
                        false,
                    );
                    if i + 1 >= rest.len() {
                        break;
                    }
                    let host = rest[i].text.clone();
                    let mut inner = ctx.clone();
                    inner.wrappers.push(format!("ssh {host}"));
                    inner.remote = Some(host);
                    inner.elevated = false;
                    self.nested(&rest[i + 1..], depth, &inner, "ssh");
                    return;
                }
                "find" => {
                    self.find(&argv, redirects.clone(), depth, &ctx);
                    return;
                }
                _ => break,
            };
            let skip = skip.min(rest.len());
            if skip >= rest.len() {
                // A wrapper with no command (`sudo -l`, `env`, `nohup`): classified as itself.
                break;
            }
            ctx.wrappers.push(join(&argv[..=skip]));
            argv = argv[skip + 1..].to_vec();
        }
        if from_input {
            ctx.stdin = ctx.stdin.or(Some(Stdin::Inherited));
        }
        self.found.commands.push(Simple {
            argv,
            wrappers: ctx.wrappers.clone(),
            elevated: ctx.elevated,
            redirects,
            stdin: ctx.stdin.clone().unwrap_or(Stdin::Inherited),
            args_from_input: from_input,
            remote: ctx.remote.clone(),
        });
    }

    /// `find … -exec cmd {} ;` runs `cmd` once per file: recorded as its own command. The find
    /// itself is recorded without its `-exec` parts (rules look at `-delete`).
    fn find(&mut self, argv: &[Word], redirects: Vec<Redirect>, depth: usize, ctx: &Context) {
        let mut own = Vec::new();
        // `{}` stands for each file found: `START/*` for each starting point, so the rules see
        // where the files are.
        let starts: Vec<&Word> = argv[1..]
            .iter()
            .take_while(|w| !w.text.starts_with('-') && w.text != "(" && w.text != "!")
            .collect();
        let found_file = |w: &Word| -> Vec<Word> {
            if !w.text.contains("{}") {
                return vec![w.clone()];
            }
            if starts.is_empty() {
                return vec![Word {
                    text: w.text.replace("{}", "./*"),
                    dynamic: w.dynamic,
                    glob: true,
                }];
            }
            starts
                .iter()
                .map(|s| Word {
                    text: w
                        .text
                        .replace("{}", &format!("{}/*", s.text.trim_end_matches('/'))),
                    dynamic: w.dynamic || s.dynamic,
                    glob: true,
                })
                .collect()
        };
        let mut i = 0;
        while i < argv.len() {
            let t = argv[i].text.as_str();
            if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                let start = i + 1;
                let mut end = start;
                while end < argv.len() && argv[end].text != ";" && argv[end].text != "+" {
                    end += 1;
                }
                let inner_argv: Vec<Word> = argv[start..end].iter().flat_map(found_file).collect();
                own.push(Word::literal(t));
                let mut inner = ctx.clone();
                inner.wrappers.push(format!("find {t}"));
                inner.stdin = None;
                if !inner_argv.is_empty() {
                    self.unwrap(inner_argv, Vec::new(), depth, &inner, false);
                }
                i = end + 1;
                continue;
            }
            own.push(argv[i].clone());
            i += 1;
        }
        self.unwrap_done(own, redirects, ctx);
    }

    fn unwrap_done(&mut self, argv: Vec<Word>, redirects: Vec<Redirect>, ctx: &Context) {
        self.emit(argv, redirects, ctx);
    }
}

fn join(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Index of the first operand after a command's options. `with_value` lists the options that
/// take the next word as their value (`-u user`); `stop_at_operand`: options end at the first
/// operand (every wrapper here works that way).
fn options(rest: &[Word], with_value: &[&str], _stop_at_operand: bool) -> usize {
    let mut i = 0;
    while i < rest.len() {
        let t = rest[i].text.as_str();
        if t == "--" {
            return i + 1;
        }
        if !t.starts_with('-') || t == "-" {
            return i;
        }
        if t.contains('=') {
            i += 1;
            continue;
        }
        if with_value.contains(&t) {
            i += 2;
            continue;
        }
        // A grouped short option ending in one that takes a value (`-nu root` is rare; `-uroot`
        // carries its value).
        i += 1;
    }
    i
}
