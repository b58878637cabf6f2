//! Address, route and rule lines (`virtual_*` of instances, `static_*` blocks).

use super::Cx;
use crate::config::{iproute::{self, Block, Note, Parsed}, lexer::Token, model::*, tree::Stmt};

impl Cx<'_> {
    /// Reports what the grammar said about an entry at its words; returns the entry.
    pub(super) fn entry<T>(&mut self, e: &Stmt, block: Block, p: Parsed<T>) -> Option<T> {
        let words: Vec<&Token> = std::iter::once(&e.kw).chain(e.args.iter()).collect();
        let mut value = p.value;
        for n in p.notes {
            let (Note::Warn { at, .. } | Note::Skip { at, .. } | Note::Unsupported { at, .. }) = &n;
            let t = words[(*at).min(words.len() - 1)].clone();
            match n {
                Note::Warn { msg, .. } => self.warn(&t, msg),
                Note::Skip { msg, .. } => self.err(&t, msg),
                // ka runs what it applies (virtual and static entries) exactly or not at all:
                // `ka run` refuses the entry.
                Note::Unsupported { msg, .. } if matches!(block, Block::Virtual | Block::Static) => {
                    value = None;
                    self.fatal(&t, msg);
                }
                Note::Unsupported { msg, .. } => self.warn(&t, format!("{msg}; the entry is not checked further")),
            }
        }
        value
    }

    pub(super) fn words(e: &Stmt) -> Vec<&str> {
        std::iter::once(&e.kw).chain(e.args.iter()).map(|t| t.text.as_str()).collect()
    }

    /// Parses one address line of `virtual_ipaddress` and the like.
    pub(super) fn vip(&mut self, e: &Stmt, block: Block) -> Option<VirtualIp> {
        self.no_block(e);
        let p = iproute::address(&Self::words(e), block, e.span());
        self.entry(e, block, p)
    }

    /// Parses one `virtual_routes` / `static_routes` line.
    pub(super) fn route(&mut self, e: &Stmt, block: Block) -> Option<Route> {
        self.no_block(e);
        let p = iproute::route(&Self::words(e), block, e.span());
        self.entry(e, block, p)
    }

    /// Parses one `virtual_rules` / `static_rules` line.
    pub(super) fn rule(&mut self, e: &Stmt, block: Block) -> Option<Rule> {
        self.no_block(e);
        let p = iproute::rule(&Self::words(e), block, e.span(), &mut self.rule_prios);
        self.entry(e, block, p)
    }

    /// `static_ipaddress`, `static_routes`, `static_rules`: one address, route or rule a line.
    pub(super) fn static_block(&mut self, s: &Stmt) {
        for e in self.block(s) {
            match s.name() {
                "static_ipaddress" => {
                    if let Some(v) = self.vip(e, Block::Static) {
                        self.cfg.static_ipaddresses.push(v);
                    }
                }
                "static_routes" => {
                    if let Some(r) = self.route(e, Block::Static) {
                        self.cfg.static_routes.push(r);
                    }
                }
                _ => {
                    if let Some(r) = self.rule(e, Block::Static) {
                        self.cfg.static_rules.push(r);
                    }
                }
            }
        }
    }
}
