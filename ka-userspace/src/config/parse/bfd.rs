//! `bfd_instance`: the BFD sessions instances and checkers can track.

use std::time::Duration;

use super::Cx;
use crate::config::{model::*, tree::Stmt};

impl Cx<'_> {
    pub(super) fn bfd_instance(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let name = self.name_arg(s);
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
            span: s.span(),
        };
        for e in self.block(s) {
            match e.name() {
                "neighbor_ip" | "neighbour_ip" => b.neighbor_ip = self.arg_ip(e),
                "source_ip" => b.source_ip = self.arg_ip(e),
                "min_rx" | "min_tx" | "idle_tx" => {
                    // Milliseconds with up to 3 decimals; keepalived 2.2.7: [1, 4294967] ms,
                    // idle_tx from 1000 ms.
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
                "multiplier" => b.multiplier = self.arg_int(e, 1, 255).unwrap_or(5) as u32,
                "weight" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        b.weight = self.int(&e.args[0], -253, 253).unwrap_or(0) as i32;
                        let _ = self.reverse(e, 1);
                    }
                }
                "ttl" | "hoplimit" => {
                    let _ = self.arg_int(e, 1, 255);
                }
                "max_hops" => {
                    let _ = self.arg_int(e, -1, 255);
                }
                "passive" | "vrrp" | "checker" => self.no_block(e),
                _ => self.unknown(
                    e,
                    "bfd_instance",
                    &[&[
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
                    ]],
                ),
            }
        }
        if b.neighbor_ip.is_none() {
            self.err(
                &s.kw,
                format!("bfd_instance {} needs a neighbor_ip; the block is", b.name),
            );
            return;
        }
        self.cfg.bfd_instances.push(b);
    }
}
