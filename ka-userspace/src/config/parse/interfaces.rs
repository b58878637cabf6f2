//! Interface blocks: `garp_group`, `linkbeat_interfaces`, `interface_up_down_delays`.

use super::{values::*, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

impl Cx<'_> {
    pub(super) fn garp_group(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let mut g = GarpGroup {
            garp_interval: None,
            gna_interval: None,
            interfaces: Vec::new(),
            span: s.span(),
        };
        for e in self.block(s) {
            match e.name() {
                "garp_interval" => g.garp_interval = self.arg_timer_us(e, 0, I32_US),
                "gna_interval" => g.gna_interval = self.arg_timer_us(e, 0, I32_US),
                "interface" => g.interfaces.extend(self.arg_str(e)),
                "interfaces" => {
                    let list: Vec<String> =
                        self.block(e).iter().map(|m| m.kw.text.clone()).collect();
                    g.interfaces.extend(list);
                }
                _ => self.unknown(
                    e,
                    "garp_group",
                    &[&["garp_interval", "gna_interval", "interface", "interfaces"]],
                ),
            }
        }
        if g.garp_interval.is_none() && g.gna_interval.is_none() {
            // keepalived 2.2.7: "garp group N does not have any delay set - removing".
            let at = Token {
                span: s.end,
                ..s.kw.clone()
            };
            self.err(&at, "garp_group has no garp_interval or gna_interval set; keepalived removes it");
            return;
        }
        self.cfg.garp_groups.push(g);
    }

    /// `linkbeat_interfaces { IFACE ... }`: kept as written.
    pub(super) fn linkbeat_interfaces(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let entries: Vec<RawEntry> = self.block(s).iter().map(raw_entry).collect();
        self.cfg.linkbeat_interfaces.extend(entries);
    }

    /// `interface_up_down_delays { IFACE UP_DELAY [DOWN_DELAY] ... }`.
    pub(super) fn interface_up_down_delays(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let _ = self.block(s);
    }
}

fn raw_entry(s: &Stmt) -> RawEntry {
    RawEntry {
        words: std::iter::once(&s.kw)
            .chain(s.args.iter())
            .map(|t| t.text.clone())
            .collect(),
        span: s.span(),
    }
}
