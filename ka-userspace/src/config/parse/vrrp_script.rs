//! `vrrp_script`: the scripts instances and sync groups track.

use std::time::Duration;

use super::{values::*, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

impl Cx<'_> {
    pub(super) fn vrrp_script(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut vs = VrrpScript {
            name,
            script: None,
            interval: Duration::from_secs(1),
            timeout: Duration::ZERO,
            weight: 0,
            reverse: false,
            rise: 1,
            fall: 1,
            user: None,
            init_fail: false,
            span: s.span(),
            script_span: None,
            end: s.end,
            user_span: None,
        };
        let mut timeout = None;
        for e in self.block(s) {
            match e.name() {
                "script" => {
                    vs.script = self.arg_str(e).filter(|s| !s.is_empty());
                    vs.script_span = Some(e.span());
                }
                "interval" => vs.interval = self.arg_secs_frac(e, 4294).unwrap_or(vs.interval),
                "timeout" => timeout = self.arg_secs_frac(e, 4294),
                "weight" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        vs.weight = self.int(&e.args[0], -253, 253).unwrap_or(0) as i32;
                        vs.reverse = self.reverse(e, 1);
                    }
                }
                "rise" => vs.rise = self.arg_int(e, 1, I32).unwrap_or(1) as u32,
                "fall" => vs.fall = self.arg_int(e, 1, I32).unwrap_or(1) as u32,
                "user" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        vs.user = self.user(e, 0);
                        vs.user_span = Some(e.span());
                    }
                }
                "init_fail" => {
                    self.no_block(e);
                    vs.init_fail = true;
                }
                _ => self.unknown(
                    e,
                    "vrrp_script",
                    &[&[
                        "script",
                        "interval",
                        "timeout",
                        "weight",
                        "rise",
                        "fall",
                        "user",
                        "init_fail",
                    ]],
                ),
            }
        }
        vs.timeout = timeout.unwrap_or(vs.interval);
        if vs.script.is_none() {
            let at = Token {
                span: s.end,
                ..s.kw.clone()
            };
            self.warn(
                &at,
                format!("no script set for vrrp_script {}; it is removed", vs.name),
            );
            self.removed_scripts.push(vs.name);
            return;
        }
        self.cfg.vrrp_scripts.push(vs);
    }
}
