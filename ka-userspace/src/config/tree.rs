//! Statement tree: `keyword args... [{ statements }]`, built from the token lines.

use super::{
    diag::{Diagnostic, Diagnostics, Span},
    lexer::Token,
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

    /// Reads the next top-level statement; stray `}` are reported and skipped.
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
                diags.push(
                    Diagnostic::warning(
                        Some(t.span),
                        "'{' without a keyword before it; the block is ignored: keepalived 2.2 does the same",
                    )
                        .with_via(t.via),
                );
                self.skip_block(1);
                continue;
            }
            return Some(self.stmt(t, 0, diags));
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

    fn stmt(&mut self, kw: Token, depth: usize, diags: &mut Diagnostics) -> Stmt {
        let mut args = Vec::new();
        while let Some(t) = self.peek() {
            if t.bol || t.is_close() {
                break;
            }
            if t.is_open() {
                break;
            }
            if let Some(t) = self.next() {
                args.push(t);
            }
        }
        let mut block = None;
        let mut end = kw.span;
        if let Some(open) = self.peek().filter(|t| t.is_open()).cloned() {
            self.next();
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
                let end = open.span;
                return Stmt {
                    kw,
                    args,
                    block: Some(Vec::new()),
                    end,
                };
            }
            let mut stmts = Vec::new();
            loop {
                let Some(t) = self.next() else {
                    if std::mem::replace(&mut self.quiet_eof, true) {
                        break;
                    }
                    diags.push(
                        Diagnostic::warning(
                            Some(open.span),
                            format!("block of '{}' is not closed: missing '}}'; closed at the end of the file, as keepalived 2.2 does", kw.text),
                        )
                        .with_via(open.via),
                    );
                    break;
                };
                if t.is_close() {
                    end = t.span;
                    break;
                }
                if t.is_open() {
                    diags.push(
                        Diagnostic::warning(
                        Some(t.span),
                        "'{' without a keyword before it; the block is ignored: keepalived 2.2 does the same",
                    )
                            .with_via(t.via),
                    );
                    self.skip_block(1);
                    continue;
                }
                stmts.push(self.stmt(t, depth + 1, diags));
            }
            block = Some(stmts);
        }
        Stmt {
            kw,
            args,
            block,
            end,
        }
    }
}
