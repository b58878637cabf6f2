//! Statement tree: `keyword args... [{ statements }]`, built from the token lines.

use super::{
    diag::{Diagnostic, Diagnostics, Span},
    lexer::Token,
    parse::keywords::{block_kind, BlockKind},
    preprocess::Preprocessor,
};

/// Deepest block nesting accepted (keepalived needs 5).
pub const MAX_DEPTH: usize = 32;

/// One statement: a keyword, its arguments, and its block if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// The keyword.
    pub kw: Token,
    /// The words after it on the same line (up to a brace).
    pub args: Vec<Token>,
    /// The `{ ... }` block that follows, if any.
    pub block: Option<Vec<Stmt>>,
    /// Where the statement ends: its closing `}`, or its keyword when it has no block.
    pub end: Span,
}

impl Stmt {
    /// The keyword text.
    pub fn name(&self) -> &str {
        &self.kw.text
    }

    /// Where the keyword was written.
    pub fn span(&self) -> Span {
        self.kw.span
    }
}

/// Pulls tokens from the preprocessor and groups them into statements.
pub struct TreeBuilder<'p, 'a> {
    pp: &'p mut Preprocessor<'a>,
    line: std::vec::IntoIter<Token>,
    peeked: Option<Token>,
    quiet_eof: bool,
    broken: bool,
}

impl<'p, 'a> TreeBuilder<'p, 'a> {
    /// Reads statements from `pp`.
    pub fn new(pp: &'p mut Preprocessor<'a>) -> Self {
        Self {
            pp,
            line: Vec::new().into_iter(),
            peeked: None,
            quiet_eof: false,
            broken: false,
        }
    }

    /// The preprocessor (for its file registry).
    pub fn preprocessor(&mut self) -> &mut Preprocessor<'a> {
        self.pp
    }

    fn peek(&mut self) -> Option<&Token> {
        if self.peeked.is_none() {
            self.peeked = self.pull();
        }
        self.peeked.as_ref()
    }

    fn pull(&mut self) -> Option<Token> {
        loop {
            if let Some(t) = self.line.next() {
                return Some(t);
            }
            self.line = self.pp.next_line()?.into_iter();
        }
    }

    fn next(&mut self) -> Option<Token> {
        match self.peeked.take() {
            Some(t) => Some(t),
            None => self.pull(),
        }
    }

    /// Whether the last statement returned by [`Self::next_top`] was cut short by a nesting error
    /// (its content is then not worth checking further). Resets the flag.
    pub fn take_broken(&mut self) -> bool {
        std::mem::replace(&mut self.broken, false)
    }

    /// Reads the next top-level statement; a stray `}` or `{` is reported and skipped.
    pub fn next_top(&mut self, diags: &mut Diagnostics) -> Option<Stmt> {
        loop {
            let t = self.next()?;
            if t.is_close() {
                diags.push(
                    Diagnostic::warning(
                        Some(t.span),
                        "unexpected '}' with no open block; ignored: keepalived 2.2 does the same",
                    )
                        .with_via(t.via),
                );
                continue;
            }
            if t.is_open() {
                Self::stray_open(&t, diags);
                continue;
            }
            return Some(self.stmt(t, "", 0, diags));
        }
    }

    /// Skips tokens until `depth` open blocks are closed.
    fn skip_block(&mut self, mut depth: usize) {
        while depth > 0 {
            match self.next() {
                Some(t) if t.is_open() => depth += 1,
                Some(t) if t.is_close() => depth -= 1,
                Some(_) => {}
                None => return,
            }
        }
    }

    /// A `{` keepalived does not expect: it reports it and reads on as if it were not there
    /// (`Unexpected '{' - ignoring`), so the block's content belongs to the enclosing block.
    fn stray_open(t: &Token, diags: &mut Diagnostics) {
        diags.push(
            Diagnostic::warning(
                Some(t.span),
                "'{' without a keyword that takes a block: keepalived 2.2 ignores the brace and reads what follows in the enclosing block; so does ka",
            )
            .with_via(t.via),
        );
    }

    /// The words after `kw` on its line, up to a brace.
    fn line_args(&mut self) -> Vec<Token> {
        let mut args = Vec::new();
        while let Some(t) = self.peek() {
            if t.bol || t.is_close() || t.is_open() {
                break;
            }
            if let Some(t) = self.next() {
                args.push(t);
            }
        }
        args
    }

    /// Consumes the `{` that opens `kw`'s block if it comes next; whether it did.
    fn open_brace(&mut self) -> Option<Token> {
        let open = self.peek().filter(|t| t.is_open()).cloned()?;
        self.next();
        Some(open)
    }

    /// Reports a block left open at the end of the input (once).
    fn eof_in_block(&mut self, kw: &Token, at: &Token, diags: &mut Diagnostics) {
        if std::mem::replace(&mut self.quiet_eof, true) {
            return;
        }
        diags.push(
            Diagnostic::warning(
                Some(at.span),
                format!("block of '{}' is not closed: missing '}}'; closed at the end of the file, as keepalived 2.2 does", kw.text),
            )
            .with_via(at.via),
        );
    }

    /// One statement in the block of `parent` (`""` at the top level), grouped as keepalived
    /// 2.2.7 groups it ([`block_kind`]).
    fn stmt(&mut self, kw: Token, parent: &str, depth: usize, diags: &mut Diagnostics) -> Stmt {
        let args = self.line_args();
        let kind = if kw.quoted { BlockKind::Word } else { block_kind(parent, &kw.text) };
        match kind {
            BlockKind::Word => {
                if let Some(open) = self.open_brace() {
                    diags.push(
                        Diagnostic::warning(
                            Some(open.span),
                            format!(
                                "'{}' takes no {{ }} block: keepalived 2.2 ignores this '{{' and reads what follows as part of the enclosing block, which the next '}}' closes; so does ka",
                                kw.text
                            ),
                        )
                        .with_via(open.via),
                    );
                }
                let end = kw.span;
                Stmt { kw, args, block: None, end }
            }
            BlockKind::Value => self.value_block(kw, args, diags),
            BlockKind::Sub => self.sub_block(kw, args, depth, diags),
        }
    }

    /// A block of keywords: statements up to the matching `}`.
    fn sub_block(&mut self, kw: Token, args: Vec<Token>, depth: usize, diags: &mut Diagnostics) -> Stmt {
        let open = match self.open_brace() {
            Some(o) => o,
            None => {
                let at = self.peek().cloned().unwrap_or_else(|| kw.clone());
                diags.push(
                    Diagnostic::warning(
                        Some(at.span),
                        format!("missing '{{' after '{}': keepalived 2.2 reads what follows as its block all the same; so does ka", kw.text),
                    )
                    .with_via(at.via),
                );
                at
            }
        };
        if depth + 1 >= MAX_DEPTH {
            diags.push(
                Diagnostic::error(
                    Some(open.span),
                    format!("blocks nested more than {MAX_DEPTH} deep; the rest of this block is ignored"),
                )
                .with_via(open.via),
            );
            self.quiet_eof = true;
            self.broken = true;
            self.skip_block(1);
            return Stmt { kw, args, block: Some(Vec::new()), end: open.span };
        }
        let mut stmts = Vec::new();
        let mut end = kw.span;
        loop {
            let Some(t) = self.next() else {
                self.eof_in_block(&kw, &open, diags);
                break;
            };
            if t.is_close() {
                end = t.span;
                break;
            }
            if t.is_open() {
                Self::stray_open(&t, diags);
                continue;
            }
            stmts.push(self.stmt(t, &kw.text, depth + 1, diags));
        }
        Stmt { kw, args, block: Some(stmts), end }
    }

    /// A block of value lines (`alloc_value_block`): each line up to the first `}` is one
    /// entry, whatever it holds (a `{` line is an entry too).
    fn value_block(&mut self, kw: Token, args: Vec<Token>, diags: &mut Diagnostics) -> Stmt {
        let named = kw.text == "virtual_server_group";
        if let (false, Some(a)) = (named, args.first()) {
            diags.push(
                Diagnostic::warning(
                    Some(a.span),
                    format!("block {} has extra parameters {} ...: ignored, as keepalived 2.2 does", kw.text, a.text),
                )
                .with_via(a.via),
            );
        }
        let open = match self.open_brace() {
            Some(o) => o,
            None => {
                diags.push(
                    Diagnostic::warning(
                        Some(kw.span),
                        format!("'{{' missing at the beginning of the block of {}: keepalived 2.2 reads the next lines up to a '}}' as its entries; so does ka", kw.text),
                    )
                    .with_via(kw.via),
                );
                kw.clone()
            }
        };
        let mut lines = Vec::new();
        let mut end = kw.span;
        loop {
            let Some(t) = self.next() else {
                self.eof_in_block(&kw, &open, diags);
                break;
            };
            if t.is_close() {
                end = t.span;
                break;
            }
            let args = if t.is_open() { Vec::new() } else { self.line_args() };
            let end = t.span;
            lines.push(Stmt { kw: t, args, block: None, end });
        }
        Stmt { kw, args, block: Some(lines), end }
    }
}
