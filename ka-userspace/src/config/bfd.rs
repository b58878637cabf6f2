//! `bfd_instance`, `track_bfd` and `BFD_CHECK`'s `name`, as keepalived 2.2.7 reads them
//! (`bfd_parser.c`, `vrrp_track.c`, `check_bfd.c`), and the checks keepalived makes once the
//! instances are known (`vrrp.c`). A child module of [`super::parse`] (it uses the parser's
//! helpers); the session engine is [`crate::bfd`].
//!
//! keepalived parses the file once per process, and each process keeps its part:
//! - the BFD process drops a `bfd_instance` with no usable neighbour, mixed address families or
//!   a neighbour another instance has; the VRRP and checker processes still know its name, so
//!   references to it resolve and see it down for good ([`BfdInstance::enabled`] is false);
//! - references are resolved while parsing: a `track_bfd` or `BFD_CHECK` naming a
//!   `bfd_instance` defined later (or one whose `vrrp`/`checker` keyword sends its events to
//!   the other process) is not found and ignored;
//! - a weighted `track_bfd` of an instance in a sync group without
//!   `sync_group_tracking_weight`, or of an address owner, is ignored; a sync group with an
//!   address owner among its members tracks its BFDs unweighted.

use std::time::Duration;

use super::Cx;
use crate::config::{
    diag::{Diagnostic, Diagnostics, Span},
    model::{BfdInstance, Config, TrackRef},
    tree::Stmt,
};

/// keepalived's `BFD_INAME_MAX`: names of 32 bytes or more are refused.
pub const NAME_MAX: usize = 31;
/// Default TTL of IPv4 sessions (RFC 5881 §5).
pub const DEFAULT_TTL: u8 = 255;
/// Default hop limit of IPv6 sessions (keepalived's `BFD_CONTROL_HOPLIMIT`).
pub const DEFAULT_HOPLIMIT: u8 = 64;

const KEYWORDS: &[&str] = &[
    "neighbor_ip",
    "neighbour_ip",
    "source_ip",
    "min_rx",
    "min_tx",
    "idle_tx",
    "multiplier",
    "weight",
    "ttl",
    "hoplimit",
    "max_hops",
    "passive",
    "vrrp",
    "checker",
];

impl Cx<'_> {
    /// `bfd_instance NAME { ... }`.
    pub(super) fn bfd_instance(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        if name.len() > NAME_MAX {
            let _ = self.block(s);
            self.err(&s.kw, format!("bfd_instance name {name} is too long (at most {NAME_MAX} characters); the block is"));
            return;
        }
        if self.cfg.bfd_instances.iter().any(|b| b.name == name) {
            let _ = self.block(s);
            self.err(&s.kw, format!("bfd_instance {name} is already configured; this block is"));
            return;
        }
        let ms = Duration::from_millis;
        let mut b = BfdInstance {
            name,
            neighbor_ip: None,
            source_ip: None,
            min_rx: ms(10),
            min_tx: ms(10),
            idle_tx: ms(1000),
            multiplier: 5,
            weight: 0,
            reverse: false,
            passive: false,
            ttl: None,
            max_hops: 0,
            to_vrrp: true,
            to_checker: true,
            enabled: true,
            span: s.span(),
        };
        let (mut vrrp, mut checker) = (false, false);
        let mut neighbor_kw = "neighbor_ip";
        for e in self.block(s) {
            match e.name() {
                "neighbor_ip" | "neighbour_ip" => {
                    neighbor_kw = if e.name() == "neighbour_ip" { "neighbour_ip" } else { "neighbor_ip" };
                    b.neighbor_ip = self.arg_ip(e);
                }
                "source_ip" => {
                    if let Some(ip) = self.arg_ip(e) {
                        b.source_ip = Some(ip);
                    }
                }
                "min_rx" | "min_tx" | "idle_tx" => {
                    // Milliseconds with up to 3 decimals; keepalived 2.2.7: [1, 4294967] ms,
                    // idle_tx from 1000 ms. An invalid value keeps the previous one.
                    self.no_block(e);
                    let lo = if e.name() == "idle_tx" { 1_000_000 } else { 1000 };
                    let v = if self.args(e, 1, 1) {
                        self.decimal(&e.args[0], 3, lo, 4_294_967_000, "milliseconds")
                    } else {
                        None
                    };
                    if let Some(v) = v.map(Duration::from_micros) {
                        match e.name() {
                            "min_rx" => b.min_rx = v,
                            "min_tx" => b.min_tx = v,
                            _ => b.idle_tx = v,
                        }
                    }
                }
                "multiplier" => {
                    if let Some(v) = self.arg_int(e, 1, 255) {
                        b.multiplier = v as u32;
                    }
                }
                "weight" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        if let Some(w) = self.int(&e.args[0], -253, 253) {
                            b.weight = w as i32;
                        }
                        b.reverse = self.reverse(e, 1);
                    }
                }
                "ttl" | "hoplimit" => {
                    if let Some(v) = self.arg_int(e, 1, 255) {
                        b.ttl = Some(v as u8);
                    }
                }
                "max_hops" => {
                    // -1 is stored as 255 by keepalived (a uint8_t): no TTL check.
                    if let Some(v) = self.arg_int(e, -1, 255) {
                        b.max_hops = if v < 0 { u8::MAX } else { v as u8 };
                    }
                }
                "passive" => {
                    self.no_block(e);
                    b.passive = true;
                }
                "vrrp" => {
                    self.no_block(e);
                    vrrp = true;
                }
                "checker" => {
                    self.no_block(e);
                    checker = true;
                }
                _ => self.unknown(e, "bfd_instance", &[KEYWORDS]),
            }
        }
        if vrrp || checker {
            b.to_vrrp = vrrp;
            b.to_checker = checker;
        }
        // bfd_end_handler: what the BFD process refuses, it drops; the other processes keep
        // the name.
        let disabled = match (b.neighbor_ip, b.source_ip) {
            (None, _) => Some(format!("bfd_instance {} has no {neighbor_kw}: no session runs, and track_bfd / BFD_CHECK see it down", b.name)),
            (Some(n), Some(src)) if n.is_ipv4() != src.is_ipv4() => Some(format!(
                "bfd_instance {}: source_ip {src} and {neighbor_kw} {n} are of different families: no session runs, and track_bfd / BFD_CHECK see it down",
                b.name
            )),
            (Some(n), src) => self
                .cfg
                .bfd_instances
                .iter()
                .find(|o| o.enabled && o.neighbor_ip == Some(n) && (o.source_ip.is_none() || src.is_none() || o.source_ip == src))
                .map(|o| format!("bfd_instance {} has the same {neighbor_kw} {n} as {}: no session runs, and track_bfd / BFD_CHECK see it down", b.name, o.name)),
        };
        if let Some(msg) = disabled {
            self.err(&s.kw, format!("{msg}; the session is"));
            b.enabled = false;
        }
        let ttl = b.ttl.unwrap_or(if b.neighbor_ip.is_some_and(|n| n.is_ipv6()) { DEFAULT_HOPLIMIT } else { DEFAULT_TTL });
        b.ttl = Some(ttl);
        if b.max_hops != u8::MAX && b.max_hops > ttl {
            self.warn(&s.kw, format!("bfd_instance {}: max_hops exceeds ttl/hoplimit; set to {ttl}, as keepalived 2.2 does", b.name));
            b.max_hops = ttl;
        }
        self.cfg.bfd_instances.push(b);
    }

    /// `track_bfd { NAME [weight N [reverse|noreverse]] ... }` of a `vrrp_instance` or a
    /// `vrrp_sync_group` named `owner` (already holding `have`): each name must be a
    /// `bfd_instance` defined above ([`Cx::track_refs`]) that sends its events to VRRP
    /// (keepalived's `alloc_track_bfd`).
    pub(super) fn track_bfd_refs(&mut self, e: &Stmt, owner: &str, have: &[TrackRef]) -> Vec<TrackRef> {
        let refs = self.track_refs(e, owner, super::track::Tracked::Bfd, have);
        let mut out: Vec<TrackRef> = Vec::new();
        for r in refs {
            if self.cfg.bfd_instances.iter().any(|b| b.name == r.name && b.to_vrrp) {
                out.push(r);
            } else {
                self.ignored_at(r.span, format!("({owner}) track bfd {} not found (a bfd_instance sending to VRRP must be defined above); it is", r.name));
            }
        }
        out
    }

    /// What [`Cx::err`] says, at a span with no token.
    fn ignored_at(&mut self, span: Span, msg: String) {
        self.d.push(Diagnostic::warning(Some(span), format!("{msg} {}", super::IGNORED)));
    }

    /// `name` of a `BFD_CHECK`: a `bfd_instance` defined above that sends its events to the
    /// checkers (keepalived's `bfd_name_handler`); otherwise the checker is dropped.
    pub(super) fn bfd_check_name(&mut self, e: &Stmt) -> Option<String> {
        let n = self.arg_str(e)?;
        if !self.cfg.bfd_instances.iter().any(|b| b.name == n && b.to_checker) {
            self.err(&e.args[0], format!("BFD_CHECK: BFD {n} not configured (a bfd_instance sending to the checkers must be defined above); the checker is"));
            return None;
        }
        Some(n)
    }
}

/// keepalived's `vrrp_complete_instance` and `vrrp_complete_init` for BFD, once sync groups
/// are resolved: an instance in a sync group without `sync_group_tracking_weight`, or an
/// address owner, drops its weighted `track_bfd`s; a sync group with an address owner among
/// its members tracks its BFDs unweighted. Warnings at the references.
pub fn check(cfg: &mut Config, d: &mut Diagnostics) {
    let own = |cfg: &Config, name: &str| cfg.bfd_instances.iter().find(|b| b.name == name).map_or(0, |b| i64::from(b.weight));
    let weights: Vec<Vec<i64>> =
        cfg.vrrp_instances.iter().map(|vi| vi.track_bfds.iter().map(|r| r.weight.unwrap_or_else(|| own(cfg, &r.name))).collect()).collect();
    let no_weight_groups: Vec<String> = cfg.sync_groups.iter().filter(|g| !g.sync_group_tracking_weight).map(|g| g.name.clone()).collect();
    for (vi, w) in cfg.vrrp_instances.iter_mut().zip(weights) {
        let why = if vi.sync_group.as_ref().is_some_and(|g| no_weight_groups.contains(g)) {
            "the instance is in a sync group"
        } else if vi.priority == 255 {
            "the instance is the address owner"
        } else {
            continue;
        };
        let mut w = w.into_iter();
        vi.track_bfds.retain(|r| {
            let weight = w.next().unwrap_or(0);
            if weight != 0 {
                d.warning(Some(r.span), format!("({}) tracked bfd {} with weight {weight} ignored: {why}; keepalived 2.2 does the same", vi.name, r.name));
            }
            weight == 0
        });
    }
    let owners: Vec<&str> = cfg.vrrp_instances.iter().filter(|v| v.priority == 255).map(|v| v.name.as_str()).collect();
    let mut zeroed = Vec::new();
    for (gi, g) in cfg.sync_groups.iter().enumerate() {
        if !g.members.iter().any(|(m, _)| owners.contains(&m.as_str())) {
            continue;
        }
        for (ri, r) in g.track_bfds.iter().enumerate() {
            let weight = r.weight.unwrap_or_else(|| own(cfg, &r.name));
            if weight != 0 {
                d.warning(Some(r.span), format!("({}) track bfd {} weight {weight} set to 0: a member has priority 255; keepalived 2.2 does the same", g.name, r.name));
                zeroed.push((gi, ri));
            }
        }
    }
    for (gi, ri) in zeroed {
        cfg.sync_groups[gi].track_bfds[ri].weight = Some(0);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{model::Config, parse_str, LoadOptions, Severity};

    fn load(text: &str) -> (Config, Vec<(u32, Severity, String)>) {
        let l = parse_str(text, Path::new("t.conf"), &LoadOptions::default());
        let diags = l.diagnostics.iter().map(|d| (d.span.map_or(0, |s| s.line), d.severity, d.message.clone())).collect();
        (l.config, diags)
    }

    const VI: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n";
    const VIPS: &str = " virtual_ipaddress {\n 198.18.0.10\n }\n}\n";

    /// Every keyword of `bfd_instance` lands in the model with keepalived's meaning.
    #[test]
    fn keywords() {
        let (c, d) = load(
            "bfd_instance b1 {\n neighbour_ip 198.18.0.2\n source_ip 198.18.0.1\n min_rx 50.5\n min_tx 20\n idle_tx 3000\n multiplier 3\n \
             weight -20 reverse\n passive\n ttl 250\n max_hops 5\n vrrp\n}\n\
             bfd_instance b2 {\n neighbor_ip fd00:198:18::2\n max_hops -1\n checker\n}\n\
             bfd_instance b3 {\n neighbor_ip 198.18.0.3\n hoplimit 10\n max_hops 20\n}\n",
        );
        let b = &c.bfd_instances;
        assert_eq!(b.len(), 3, "{d:?}");
        let ms = std::time::Duration::from_millis;
        assert_eq!((b[0].neighbor_ip, b[0].source_ip), (Some("198.18.0.2".parse().expect("ip")), Some("198.18.0.1".parse().expect("ip"))));
        assert_eq!((b[0].min_rx, b[0].min_tx, b[0].idle_tx, b[0].multiplier), (std::time::Duration::from_micros(50_500), ms(20), ms(3000), 3));
        assert_eq!((b[0].weight, b[0].reverse, b[0].passive, b[0].ttl, b[0].max_hops), (-20, true, true, Some(250), 5));
        assert_eq!((b[0].to_vrrp, b[0].to_checker, b[0].enabled), (true, false, true));
        assert_eq!((b[1].ttl, b[1].max_hops, b[1].to_vrrp, b[1].to_checker), (Some(64), 255, false, true), "IPv6 default hop limit 64");
        assert_eq!((b[2].ttl, b[2].max_hops), (Some(10), 10), "max_hops above the TTL is lowered to it");
        assert!(d.iter().any(|(l, s, m)| *l == 19 && *s == Severity::Warning && m.contains("max_hops exceeds ttl")), "{d:?}");
        assert!(!d.iter().any(|(_, _, m)| m.contains("not supported")), "{d:?}");
    }

    /// What keepalived runs past, one row each: (what, config, line, message, check). Every
    /// row is a warning; none makes `ka run` refuse the file.
    #[test]
    fn keepalived_leniency() {
        type Check = fn(&Config) -> bool;
        let track = |bfds: &str, refs: &str| format!("{bfds}{VI} track_bfd {{\n{refs}\n }}\n{VIPS}");
        let b = |name: &str, body: &str| format!("bfd_instance {name} {{\n{body}\n}}\n");
        let rs = |check: &str| format!("virtual_server 198.18.0.10 80 {{\n protocol TCP\n real_server 198.18.1.1 80 {{\n{check}\n }}\n}}\n");
        let cases: Vec<(&str, String, u32, &str, Check)> = vec![
            ("no neighbour: the name stays, no session", b("b1", " min_rx 10"), 1, "has no neighbor_ip", |c| !c.bfd_instances[0].enabled),
            ("mixed families", b("b1", " neighbor_ip 198.18.0.2\n source_ip fd00::1"), 1, "different families", |c| !c.bfd_instances[0].enabled),
            (
                "duplicate neighbour",
                format!("{}{}", b("b1", " neighbor_ip 198.18.0.2"), b("b2", " neighbor_ip 198.18.0.2")),
                4,
                "same neighbor_ip 198.18.0.2 as b1",
                |c| c.bfd_instances[0].enabled && !c.bfd_instances[1].enabled,
            ),
            (
                "same neighbour, other sources",
                format!("{}{}", b("b1", " neighbor_ip 198.18.0.2\n source_ip 198.18.0.1"), b("b2", " neighbor_ip 198.18.0.2\n source_ip 198.18.0.5")),
                0,
                "",
                |c| c.bfd_instances.iter().all(|b| b.enabled),
            ),
            ("duplicate name", format!("{}{}", b("b1", " neighbor_ip 198.18.0.2"), b("b1", " neighbor_ip 198.18.0.3")), 4, "already configured", |c| c.bfd_instances.len() == 1),
            ("name too long", b(&"n".repeat(32), " neighbor_ip 198.18.0.2"), 1, "too long", |c| c.bfd_instances.is_empty()),
            ("bad min_rx keeps the default", b("b1", " neighbor_ip 198.18.0.2\n min_rx 0.5"), 3, "outside", |c| c.bfd_instances[0].min_rx.as_millis() == 10),
            (
                "track_bfd before its bfd_instance",
                format!("{VI} track_bfd {{\n b1\n }}\n{VIPS}{}", b("b1", " neighbor_ip 198.18.0.2")),
                5,
                "track bfd b1 is defined below this reference",
                |c| c.vrrp_instances[0].track_bfds.is_empty(),
            ),
            ("track_bfd of a checker-only bfd", track(&b("b1", " neighbor_ip 198.18.0.2\n checker"), " b1"), 9, "track bfd b1 not found", |c| c.vrrp_instances[0].track_bfds.is_empty()),
            ("duplicate track_bfd", track(&b("b1", " neighbor_ip 198.18.0.2"), " b1\n b1 weight 5"), 9, "duplicate track_bfd b1", |c| c.vrrp_instances[0].track_bfds.len() == 1),
            ("track_bfd of a session-less bfd resolves", track(&b("b1", " min_rx 10"), " b1"), 1, "has no neighbor_ip", |c| c.vrrp_instances[0].track_bfds.len() == 1),
            (
                "BFD_CHECK of a vrrp-only bfd",
                format!("{}{}", b("b1", " neighbor_ip 198.18.0.2\n vrrp"), rs(" BFD_CHECK {\n name b1\n }")),
                9,
                "BFD b1 not configured",
                |c| c.virtual_servers[0].real_servers[0].checkers.is_empty(),
            ),
            (
                "BFD_CHECK before its bfd_instance",
                format!("{}{}", rs(" BFD_CHECK {\n name b1\n }"), b("b1", " neighbor_ip 198.18.0.2")),
                5,
                "BFD b1 not configured",
                |c| c.virtual_servers[0].real_servers[0].checkers.is_empty(),
            ),
            (
                "weighted track_bfd in a sync group",
                format!("{}{VI} track_bfd {{\n b1\n }}\n{VIPS}vrrp_sync_group G {{\n group {{\n VI_1\n }}\n}}\n", b("b1", " neighbor_ip 198.18.0.2\n weight 10")),
                9,
                "weight 10 ignored: the instance is in a sync group",
                |c| c.vrrp_instances[0].track_bfds.is_empty(),
            ),
            (
                "weighted track_bfd of an address owner",
                format!("{}{}{VI} priority 255\n track_bfd {{\n b1 weight -5\n b2\n }}\n{VIPS}", b("b1", " neighbor_ip 198.18.0.2"), b("b2", " neighbor_ip 198.18.0.3")),
                12,
                "weight -5 ignored: the instance is the address owner",
                |c| c.vrrp_instances[0].track_bfds.iter().map(|r| r.name.as_str()).collect::<Vec<_>>() == ["b2"],
            ),
            (
                "sync group with an address owner",
                format!("{}{VI} priority 255\n{VIPS}vrrp_sync_group G {{\n group {{\n VI_1\n }}\n track_bfd {{\n b1 weight 7\n }}\n}}\n", b("b1", " neighbor_ip 198.18.0.2")),
                17,
                "weight 7 set to 0",
                |c| c.sync_groups[0].track_bfds[0].weight == Some(0),
            ),
        ];
        let mut failures = Vec::new();
        for (what, text, line, msg, check) in &cases {
            let (c, d) = load(text);
            if d.iter().any(|(_, s, _)| *s == Severity::Error) {
                failures.push(format!("{what}: errors {d:?}"));
            }
            if !msg.is_empty() && !d.iter().any(|(l, s, m)| l == line && *s == Severity::Warning && m.contains(msg)) {
                failures.push(format!("{what}: no warning at line {line} containing {msg:?}: {d:?}"));
            }
            if msg.is_empty() && !d.is_empty() {
                failures.push(format!("{what}: unexpected {d:?}"));
            }
            if !check(&c) {
                failures.push(format!("{what}: model {:?} {:?}", c.bfd_instances, c.vrrp_instances.first().map(|v| &v.track_bfds)));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
