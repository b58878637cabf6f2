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
    /// `vrrp_sync_group` named `owner`: each name must be a `bfd_instance` defined above that
    /// sends its events to VRRP (keepalived's `alloc_track_bfd`).
    pub(super) fn track_bfd_refs(&mut self, e: &Stmt, owner: &str) -> Vec<TrackRef> {
        let refs = self.track_refs(e, -253, 253);
        let mut out: Vec<TrackRef> = Vec::new();
        for r in refs {
            if !self.cfg.bfd_instances.iter().any(|b| b.name == r.name && b.to_vrrp) {
                self.ignored_at(r.span, format!("({owner}) track bfd {} not found (a bfd_instance sending to VRRP must be defined above); it is", r.name));
            } else if out.iter().any(|o| o.name == r.name) {
                self.ignored_at(r.span, format!("({owner}) duplicate track_bfd {}; it is", r.name));
            } else {
                out.push(r);
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
