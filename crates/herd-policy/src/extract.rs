//! Finding every simple command in a command line: the AST walk over `brush-parser`'s tree, the
//! literal value of words, and the wrappers (`sudo`, `env`, `timeout`, `xargs`, `find -exec`,
//! `sh -c`, `eval`, `ssh host cmd`, …) taken off to reach the command that really runs.
//!
//! What cannot be read is recorded as a Dangerous problem, never skipped.

use std::collections::BTreeSet;

use brush_parser::ast;
use brush_parser::word::{self, TildeExpr, WordPiece, WordPieceWithSource};

use crate::{Class, Reason};

mod wrappers;

/// Nested sources (`sh -c`, `$(…)`, `eval`, `ssh host cmd`) followed this deep at most.
pub const MAX_DEPTH: usize = 8;
/// Longer command lines are not read (Dangerous).
pub const MAX_LEN: usize = 64 * 1024;
/// Bracket nesting past this is not given to the parser (Dangerous): a deep enough nest
/// would exhaust the parser's stack.
pub const MAX_NESTING: usize = 48;

/// One word with its literal value as far as it can be known before running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Word {
    /// Quotes and escapes removed; `$…` placeholders where an expansion is.
    pub text: String,
    /// Has a parameter expansion, command substitution or arithmetic: its value is decided at
    /// run time.
    pub dynamic: bool,
    /// Has an unquoted glob or brace character (`*`, `?`, `[`, `{`).
    pub glob: bool,
}

impl Word {
    fn literal(text: &str) -> Word {
        Word {
            text: text.to_string(),
            dynamic: false,
            glob: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    Read,
    Write,
    Append,
    ReadWrite,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub target: Word,
}

/// Where a simple command's standard input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stdin {
    Inherited,
    /// The previous command of a pipeline (its program name).
    Pipe(String),
    /// A here-document or here-string (its literal text, when it has no expansion).
    Here(Option<String>),
}

/// A simple command after its wrappers were taken off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simple {
    pub argv: Vec<Word>,
    /// Wrapper words in front of `argv` (`sudo -u root`, `timeout 5`, `ssh web1`), for display.
    pub wrappers: Vec<String>,
    /// Runs as another user (sudo, doas, su).
    pub elevated: bool,
    pub redirects: Vec<Redirect>,
    pub stdin: Stdin,
    /// More arguments come at run time (`xargs`, `find -exec … {}`).
    pub args_from_input: bool,
    /// Runs on another machine (`ssh host cmd`).
    pub remote: Option<String>,
}

impl Simple {
    /// The command's words joined by single spaces, without wrappers.
    pub fn inner_text(&self) -> String {
        let mut out = String::new();
        for w in &self.argv {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&w.text);
        }
        for r in &self.redirects {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(match r.kind {
                RedirectKind::Read => "<",
                RedirectKind::Write => ">",
                RedirectKind::Append => ">>",
                RedirectKind::ReadWrite => "<>",
            });
            out.push_str(&r.target.text);
        }
        out
    }

    /// Wrappers and the command, joined by single spaces.
    pub fn text(&self) -> String {
        let inner = self.inner_text();
        if self.wrappers.is_empty() {
            return inner;
        }
        format!("{} {inner}", self.wrappers.join(" "))
    }

    /// The program's base name (`/usr/bin/rm` → `rm`), empty for an assignment-only command.
    pub fn program(&self) -> &str {
        self.argv.first().map(|w| base_name(&w.text)).unwrap_or("")
    }
}

pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Everything found in a command line.
#[derive(Debug, Default)]
pub struct Found {
    pub commands: Vec<Simple>,
    pub problems: Vec<Reason>,
    /// Names of the functions the command line defines (calling one is not an unknown program).
    pub functions: BTreeSet<String>,
}

pub fn extract(source: &str) -> Found {
    let mut ex = Extractor {
        found: Found::default(),
        nest: 0,
        options: brush_parser::ParserOptions::default(),
    };
    ex.source(source, 0, &Context::default());
    ex.found
}

/// What the enclosing constructs add to each simple command found under them.
#[derive(Clone, Debug, Default)]
struct Context {
    wrappers: Vec<String>,
    elevated: bool,
    remote: Option<String>,
    stdin: Option<Stdin>,
}

struct Extractor {
    found: Found,
    /// Compound commands open around the walk (bounded, like the bracket nesting).
    nest: usize,
    options: brush_parser::ParserOptions,
}

/// A scan before parsing (the parser, and the tree it returns, recurse once per level):
/// brackets and block keywords counted as opening and closing, quotes ignored. It can only
/// over-count, which fails closed.
fn too_nested(source: &str) -> bool {
    let mut depth = 0usize;
    let open = |depth: &mut usize| {
        *depth += 1;
        *depth > MAX_NESTING
    };
    for b in source.bytes() {
        match b {
            b'(' | b'{' | b'`' if open(&mut depth) => {
                return true;
            }
            b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut blocks = 0usize;
    for word in
        source.split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
    {
        match word {
            "if" | "while" | "until" | "for" | "case" | "select" if open(&mut blocks) => {
                return true;
            }
            "fi" | "done" | "esac" => blocks = blocks.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

impl Extractor {
    fn problem(&mut self, what: &str, why: impl Into<String>) {
        self.found.problems.push(Reason {
            class: Class::Dangerous,
            what: one_line(what),
            why: why.into(),
            part: None,
        });
    }

    /// Parses `source` (the command line, or a string that a shell will parse again) and walks it.
    fn source(&mut self, source: &str, depth: usize, ctx: &Context) {
        if depth > MAX_DEPTH {
            self.problem(
                source,
                format!("nested shell text deeper than {MAX_DEPTH} levels: not read"),
            );
            return;
        }
        if source.len() > MAX_LEN {
            self.problem(
                source,
                format!("command text longer than {MAX_LEN} bytes: not read"),
            );
            return;
        }
        if source.contains('\0') {
            self.problem(source, "command text contains a NUL byte: not read");
            return;
        }
        if too_nested(source) {
            self.problem(
                source,
                format!("brackets or blocks nested deeper than {MAX_NESTING}: not read"),
            );
            return;
        }
        let mut parser =
            brush_parser::Parser::new(std::io::Cursor::new(source.as_bytes()), &self.options);
        match parser.parse_program() {
            Ok(program) => {
                for list in &program.complete_commands {
                    self.compound_list(list, depth, ctx);
                }
            }
            Err(e) => {
                let why = one_line(&format!("not valid shell: {e}"));
                self.problem(source, why);
            }
        }
    }

    fn compound_list(&mut self, list: &ast::CompoundList, depth: usize, ctx: &Context) {
        for ast::CompoundListItem(and_or, _sep) in &list.0 {
            self.pipeline(&and_or.first, depth, ctx);
            for next in &and_or.additional {
                match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p, depth, ctx),
                }
            }
        }
    }

    fn pipeline(&mut self, pipeline: &ast::Pipeline, depth: usize, ctx: &Context) {
        let mut feeder: Option<String> = None;
        for command in &pipeline.seq {
            let mut inner = ctx.clone();
            if let Some(from) = &feeder {
                inner.stdin = Some(Stdin::Pipe(from.clone()));
            }
            feeder = Some(self.command(command, depth, &inner));
        }
    }

    /// Walks one command; returns a name for it (the program, for a simple command) used when
    /// it feeds a pipe.
    fn command(&mut self, command: &ast::Command, depth: usize, ctx: &Context) -> String {
        match command {
            ast::Command::Simple(simple) => self.simple(simple, depth, ctx),
            ast::Command::Compound(compound, redirects) => {
                let mut inner = ctx.clone();
                if let Some(list) = redirects {
                    let redirs = self.redirect_list(&list.0, depth, ctx, &mut inner);
                    self.redirects_only(redirs, ctx);
                }
                self.compound(compound, depth, &inner);
                "a compound command".to_string()
            }
            ast::Command::Function(def) => {
                let name = self.word(&def.fname.value, depth, ctx).text;
                self.found.functions.insert(name.clone());
                let mut inner = ctx.clone();
                if let Some(list) = &def.body.1 {
                    let redirs = self.redirect_list(&list.0, depth, ctx, &mut inner);
                    self.redirects_only(redirs, ctx);
                }
                // Inside the body, a call of the function itself is recorded with the wrapper
                // `function NAME` so that rules can see recursion (the fork-bomb shape).
                inner.wrappers.push(format!("function {name}()"));
                self.compound(&def.body.0, depth, &inner);
                format!("function {name}")
            }
            ast::Command::ExtendedTest(test, redirects) => {
                self.extended_test(&test.expr, depth, ctx);
                if let Some(list) = redirects {
                    let mut inner = ctx.clone();
                    let redirs = self.redirect_list(&list.0, depth, ctx, &mut inner);
                    self.redirects_only(redirs, ctx);
                }
                "[[".to_string()
            }
        }
    }

    fn redirects_only(&mut self, redirects: Vec<Redirect>, ctx: &Context) {
        if redirects.iter().any(|r| r.kind != RedirectKind::Read) {
            self.emit(Vec::new(), redirects, ctx);
        }
    }

    fn extended_test(&mut self, expr: &ast::ExtendedTestExpr, depth: usize, ctx: &Context) {
        match expr {
            ast::ExtendedTestExpr::And(a, b) | ast::ExtendedTestExpr::Or(a, b) => {
                self.extended_test(a, depth, ctx);
                self.extended_test(b, depth, ctx);
            }
            ast::ExtendedTestExpr::Not(a) | ast::ExtendedTestExpr::Parenthesized(a) => {
                self.extended_test(a, depth, ctx)
            }
            ast::ExtendedTestExpr::UnaryTest(_, w) => {
                self.word(&w.value, depth, ctx);
            }
            ast::ExtendedTestExpr::BinaryTest(_, a, b) => {
                self.word(&a.value, depth, ctx);
                self.word(&b.value, depth, ctx);
            }
        }
    }

    fn arithmetic(&mut self, value: &str, ctx: &Context) {
        if value.contains("$(") || value.contains('`') {
            let _ = ctx;
            self.problem(value, "command substitution inside arithmetic: not read");
        }
    }

    fn compound(&mut self, compound: &ast::CompoundCommand, depth: usize, ctx: &Context) {
        if self.nest >= MAX_NESTING {
            self.problem(
                "compound command",
                format!("compound commands nested deeper than {MAX_NESTING}: not read"),
            );
            return;
        }
        self.nest += 1;
        self.compound_inner(compound, depth, ctx);
        self.nest -= 1;
    }

    fn compound_inner(&mut self, compound: &ast::CompoundCommand, depth: usize, ctx: &Context) {
        match compound {
            ast::CompoundCommand::Arithmetic(a) => self.arithmetic(&a.expr.value, ctx),
            ast::CompoundCommand::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arithmetic(&e.value, ctx);
                }
                self.compound_list(&f.body.list, depth, ctx);
            }
            ast::CompoundCommand::BraceGroup(g) => self.compound_list(&g.list, depth, ctx),
            ast::CompoundCommand::Subshell(s) => self.compound_list(&s.list, depth, ctx),
            ast::CompoundCommand::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word(&w.value, depth, ctx);
                }
                self.compound_list(&f.body.list, depth, ctx);
            }
            ast::CompoundCommand::CaseClause(c) => {
                self.word(&c.value.value, depth, ctx);
                for item in &c.cases {
                    for p in &item.patterns {
                        self.word(&p.value, depth, ctx);
                    }
                    if let Some(list) = &item.cmd {
                        self.compound_list(list, depth, ctx);
                    }
                }
            }
            ast::CompoundCommand::IfClause(i) => {
                self.compound_list(&i.condition, depth, ctx);
                self.compound_list(&i.then, depth, ctx);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.compound_list(c, depth, ctx);
                    }
                    self.compound_list(&e.body, depth, ctx);
                }
            }
            ast::CompoundCommand::WhileClause(w) | ast::CompoundCommand::UntilClause(w) => {
                self.compound_list(&w.0, depth, ctx);
                self.compound_list(&w.1.list, depth, ctx);
            }
            ast::CompoundCommand::Coprocess(c) => {
                self.command(&c.body, depth, ctx);
            }
        }
    }

    /// Reads the redirections; here-documents and here-strings set `ctx.stdin`.
    fn redirect_list(
        &mut self,
        redirects: &[ast::IoRedirect],
        depth: usize,
        ctx: &Context,
        out_ctx: &mut Context,
    ) -> Vec<Redirect> {
        let mut out = Vec::new();
        for r in redirects {
            match r {
                ast::IoRedirect::File(_fd, kind, target) => {
                    let kind = match kind {
                        ast::IoFileRedirectKind::Read => RedirectKind::Read,
                        ast::IoFileRedirectKind::Write | ast::IoFileRedirectKind::Clobber => {
                            RedirectKind::Write
                        }
                        ast::IoFileRedirectKind::Append => RedirectKind::Append,
                        ast::IoFileRedirectKind::ReadAndWrite => RedirectKind::ReadWrite,
                        ast::IoFileRedirectKind::DuplicateInput
                        | ast::IoFileRedirectKind::DuplicateOutput => {
                            if let ast::IoFileRedirectTarget::Duplicate(w) = target {
                                self.word(&w.value, depth, ctx);
                            }
                            continue;
                        }
                    };
                    match target {
                        ast::IoFileRedirectTarget::Filename(w) => {
                            let target = self.word(&w.value, depth, ctx);
                            out.push(Redirect { kind, target });
                        }
                        ast::IoFileRedirectTarget::ProcessSubstitution(_, sub) => {
                            let mut inner = ctx.clone();
                            inner.stdin = None;
                            self.compound_list(&sub.list, depth, &inner);
                            // `bash < <(curl …)` feeds the command like a pipe.
                            if kind == RedirectKind::Read {
                                out_ctx.stdin =
                                    Some(Stdin::Pipe("a process substitution".to_string()));
                            }
                        }
                        ast::IoFileRedirectTarget::Fd(_) => {}
                        ast::IoFileRedirectTarget::Duplicate(w) => {
                            self.word(&w.value, depth, ctx);
                        }
                    }
                }
                ast::IoRedirect::HereDocument(_fd, doc) => {
                    if doc.requires_expansion {
                        let w = self.heredoc(&doc.doc.value, depth, ctx);
                        out_ctx.stdin =
                            Some(Stdin::Here(if w.dynamic { None } else { Some(w.text) }));
                    } else {
                        out_ctx.stdin = Some(Stdin::Here(Some(doc.doc.value.clone())));
                    }
                }
                ast::IoRedirect::HereString(_fd, w) => {
                    let w = self.word(&w.value, depth, ctx);
                    out_ctx.stdin = Some(Stdin::Here(if w.dynamic { None } else { Some(w.text) }));
                }
                ast::IoRedirect::OutputAndError(w, append) => {
                    let target = self.word(&w.value, depth, ctx);
                    let kind = if *append {
                        RedirectKind::Append
                    } else {
                        RedirectKind::Write
                    };
                    out.push(Redirect { kind, target });
                }
            }
        }
        out
    }

    fn heredoc(&mut self, body: &str, depth: usize, ctx: &Context) -> Word {
        match word::parse_heredoc(body, &self.options) {
            Ok(pieces) => {
                let mut w = Word::default();
                self.pieces(&pieces, depth, ctx, &mut w, true);
                w
            }
            Err(_) => {
                self.problem(body, "here-document that is not valid shell text");
                Word {
                    text: body.to_string(),
                    dynamic: true,
                    glob: false,
                }
            }
        }
    }

    /// The literal value of a word; command substitutions in it are walked as nested sources.
    fn word(&mut self, raw: &str, depth: usize, ctx: &Context) -> Word {
        // The common case (plain text) needs no word parser.
        if raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./,:=+@%^".contains(&b))
        {
            return Word::literal(raw);
        }
        match word::parse(raw, &self.options) {
            Ok(pieces) => {
                let mut w = Word::default();
                self.pieces(&pieces, depth, ctx, &mut w, false);
                w
            }
            Err(_) => {
                self.problem(raw, "a word that is not valid shell text");
                Word {
                    text: raw.to_string(),
                    dynamic: true,
                    glob: false,
                }
            }
        }
    }

    fn pieces(
        &mut self,
        pieces: &[WordPieceWithSource],
        depth: usize,
        ctx: &Context,
        w: &mut Word,
        quoted: bool,
    ) {
        for p in pieces {
            match &p.piece {
                WordPiece::Text(s) => {
                    if !quoted && s.contains(['*', '?', '[', '{']) {
                        w.glob = true;
                    }
                    w.text.push_str(s);
                }
                WordPiece::SingleQuotedText(s) => w.text.push_str(s),
                WordPiece::AnsiCQuotedText(s) => {
                    // `$'\x72m'` hides its value behind escapes; plain text is read as is.
                    if s.contains('\\') {
                        w.dynamic = true;
                    }
                    w.text.push_str(s);
                }
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    self.pieces(inner, depth, ctx, w, true)
                }
                WordPiece::TildeExpansion(t) => match t {
                    TildeExpr::Home => w.text.push('~'),
                    TildeExpr::UserHome(u) => {
                        w.text.push('~');
                        w.text.push_str(u);
                    }
                    _ => {
                        w.text.push('~');
                        w.dynamic = true;
                    }
                },
                WordPiece::ParameterExpansion(_) => {
                    let raw = pieces_source(p);
                    w.dynamic = true;
                    w.text.push_str(&raw);
                }
                WordPiece::CommandSubstitution(s) | WordPiece::BackquotedCommandSubstitution(s) => {
                    let mut inner = ctx.clone();
                    inner.stdin = None;
                    self.source(s, depth + 1, &inner);
                    w.dynamic = true;
                    w.text.push_str("$(…)");
                }
                WordPiece::EscapeSequence(s) => {
                    let rest = s.strip_prefix('\\').unwrap_or(s);
                    if rest != "\n" {
                        w.text.push_str(rest);
                    }
                }
                WordPiece::ArithmeticExpression(e) => {
                    self.arithmetic(&e.value, ctx);
                    w.dynamic = true;
                    w.text.push_str("$((…))");
                }
            }
        }
    }

    fn simple(&mut self, simple: &ast::SimpleCommand, depth: usize, ctx: &Context) -> String {
        let mut inner = ctx.clone();
        let mut argv = Vec::new();
        let mut redirects = Vec::new();
        for item in simple.prefix.iter().flat_map(|p| p.0.iter()) {
            self.item(
                item,
                false,
                depth,
                ctx,
                (&mut inner, &mut argv, &mut redirects),
            );
        }
        if let Some(w) = &simple.word_or_name {
            argv.push(self.word(&w.value, depth, ctx));
        }
        for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
            self.item(
                item,
                true,
                depth,
                ctx,
                (&mut inner, &mut argv, &mut redirects),
            );
        }
        let name = argv
            .first()
            .map(|w| base_name(&w.text).to_string())
            .unwrap_or_default();
        self.unwrap(argv, redirects, depth, &inner, false);
        name
    }

    fn item(
        &mut self,
        item: &ast::CommandPrefixOrSuffixItem,
        suffix: bool,
        depth: usize,
        ctx: &Context,
        (inner, argv, redirects): (&mut Context, &mut Vec<Word>, &mut Vec<Redirect>),
    ) {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(r) => {
                redirects.extend(self.redirect_list(std::slice::from_ref(r), depth, ctx, inner));
            }
            ast::CommandPrefixOrSuffixItem::Word(w) => argv.push(self.word(&w.value, depth, ctx)),
            // After the program, `of=/dev/sda` is an argument that looks like an assignment.
            ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) if suffix => {
                argv.push(self.word(&w.value, depth, ctx))
            }
            ast::CommandPrefixOrSuffixItem::AssignmentWord(a, _) => self.assignment(a, depth, ctx),
            ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, sub) => {
                let mut sub_ctx = ctx.clone();
                sub_ctx.stdin = None;
                self.compound_list(&sub.list, depth, &sub_ctx);
                argv.push(Word {
                    text: "<(…)".to_string(),
                    dynamic: true,
                    glob: false,
                });
            }
        }
    }

    fn assignment(&mut self, a: &ast::Assignment, depth: usize, ctx: &Context) {
        if let ast::AssignmentName::VariableName(name) = &a.name {
            self.variable(name);
        }
        match &a.value {
            ast::AssignmentValue::Scalar(w) => {
                self.word(&w.value, depth, ctx);
            }
            ast::AssignmentValue::Array(items) => {
                for (k, v) in items {
                    if let Some(k) = k {
                        self.word(&k.value, depth, ctx);
                    }
                    self.word(&v.value, depth, ctx);
                }
            }
        }
    }

    /// Variables that make the shell or the dynamic loader run code of their choosing.
    fn variable(&mut self, name: &str) {
        if crate::tables::RISKY_VARIABLES.contains(&name) {
            self.problem(
                name,
                format!("sets {name}, which changes what code the commands run"),
            );
        }
    }

    fn emit(&mut self, argv: Vec<Word>, redirects: Vec<Redirect>, ctx: &Context) {
        self.found.commands.push(Simple {
            argv,
            wrappers: ctx.wrappers.clone(),
            elevated: ctx.elevated,
            redirects,
            stdin: ctx.stdin.clone().unwrap_or(Stdin::Inherited),
            args_from_input: false,
            remote: ctx.remote.clone(),
        });
    }
}

fn pieces_source(p: &WordPieceWithSource) -> String {
    match &p.piece {
        WordPiece::ParameterExpansion(_) => "$VAR".to_string(),
        _ => String::new(),
    }
}
