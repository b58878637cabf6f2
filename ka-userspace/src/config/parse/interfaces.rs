//! Interface blocks: `garp_group`, `linkbeat_interfaces`, `interface_up_down_delays`.

use super::{values::*, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

impl Cx<'_> {
    /// `garp_extra_if [all] SECS` (instances: SECS 0..86400, 0 turning it off) and
    /// `vrrp_garp_extra_if [all] SECS` (global: 1..86400), as keepalived 2.2.7's handlers read
    /// them: `all` anywhere, a bad or missing time ignores the keyword.
    pub(super) fn garp_extra_if(&mut self, e: &Stmt, lo: i64) -> Option<GarpExtraIf> {
        self.no_block(e);
        let mut all = false;
        let mut secs = None;
        for t in &e.args {
            if t.text == "all" {
                all = true;
            } else {
                secs = Some(self.int(t, lo, 86400)?);
            }
        }
        match secs {
            Some(s) => Some(GarpExtraIf { interval: std::time::Duration::from_secs(s as u64), all }),
            None => {
                self.err(&e.kw, format!("{} specified without time", e.name()));
                None
            }
        }
    }

    /// `garp_group { garp_interval T gna_interval T interface I interfaces { I ... } }`: the
    /// spacing of gratuitous ARPs / NAs on those interfaces (see `engine::setup::GarpPacing`).
    pub(super) fn garp_group(&mut self, s: &Stmt) {
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
                "interface" => {
                    if self.arg_str(e).is_some() {
                        let t = e.args[0].clone();
                        self.garp_group_member(&mut g, &t);
                    }
                }
                "interfaces" => {
                    for m in self.block(e) {
                        self.garp_group_member(&mut g, &m.kw);
                    }
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

    /// Adds interface `t` to garp group `g`, unless a group has it already (keepalived 2.2.7:
    /// "garp_group already specified for IFACE - ignoring").
    fn garp_group_member(&mut self, g: &mut GarpGroup, t: &Token) {
        let name = t.text.as_str();
        if self.cfg.garp_groups.iter().chain(std::iter::once(&*g)).any(|o| o.interfaces.iter().any(|i| i == name)) {
            self.err(t, format!("garp_group already specified for {name}"));
            return;
        }
        g.interfaces.push(name.to_owned());
    }

    /// `linkbeat_interfaces { IFACE [MII|ETHTOOL|IOCTL] ... }`: kept as written (ka polls the
    /// link state of every interface it tracks anyway).
    pub(super) fn linkbeat_interfaces(&mut self, s: &Stmt) {
        let block = self.block(s);
        for e in block {
            // keepalived 2.2.7 (alloc_linkbeat_interface): one optional polling type.
            if let Some(t) = e.args.first() {
                if !matches!(t.text.as_str(), "MII" | "ETHTOOL" | "IOCTL") || e.args.len() > 1 {
                    self.warn(t, format!("extra characters {} in linkbeat interface", t.text));
                }
            }
        }
        let entries: Vec<RawEntry> = block.iter().map(raw_entry).collect();
        self.cfg.linkbeat_interfaces.extend(entries);
    }

    /// `interface_up_down_delays { IFACE DOWN_DELAY [UP_DELAY] ... }` (keepalived 2.2.7's
    /// `alloc_if_up_down_delay`: delays 0-255 s with µs resolution, an omitted up delay is 0; a
    /// bad line is skipped).
    pub(super) fn interface_up_down_delays(&mut self, s: &Stmt) {
        for e in self.block(s) {
            let words: Vec<&Token> = std::iter::once(&e.kw).chain(e.args.iter()).collect();
            if words.len() < 2 {
                self.err(&e.kw, format!("no timeouts specified for {} up/down delays", e.kw.text));
                continue;
            }
            if words.len() > 3 {
                self.warn(words[3], format!("too many parameters for {} up/down delays; extra ignored", e.kw.text));
            }
            let Some(down) = self.timer_tok_us(words[1], 0, 255_000_000) else { continue };
            let up = match words.get(2) {
                Some(t) => match self.timer_tok_us(t, 0, 255_000_000) {
                    Some(u) => u,
                    None => continue,
                },
                None => std::time::Duration::ZERO,
            };
            if let Some(old) = self.cfg.if_up_down_delays.iter_mut().find(|d| d.iface == e.kw.text) {
                (old.down, old.up) = (down, up);
            } else {
                self.cfg.if_up_down_delays.push(IfUpDownDelay { iface: e.kw.text.clone(), down, up });
            }
        }
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
