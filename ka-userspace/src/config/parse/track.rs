//! Tracked objects: references in `track_*` blocks, `vrrp_track_file`, `vrrp_track_process`, `track_group`.

use std::time::Duration;

use super::{values::*, Cx};
use crate::config::{model::*, tree::Stmt};

impl Cx<'_> {
    pub(super) fn track_refs(&mut self, s: &Stmt, lo: i64, hi: i64) -> Vec<TrackRef> {
        let mut out = Vec::new();
        for e in self.block(s) {
            self.no_block(e);
            let mut r = TrackRef {
                name: e.kw.text.clone(),
                weight: None,
                reverse: false,
                span: e.span(),
            };
            let mut i = 0;
            while i < e.args.len() {
                match e.args[i].text.as_str() {
                    "weight" => match e.args.get(i + 1) {
                        Some(t) => {
                            r.weight = self.int(t, lo, hi);
                            i += 1;
                        }
                        None => self.err(&e.args[i], "'weight' needs a value"),
                    },
                    "reverse" => r.reverse = true,
                    "noreverse" | "no_reverse" => r.reverse = false,
                    other => {
                        let t = e.args[i].clone();
                        self.err(&t, format!("unexpected '{other}' after tracked name (expected weight N [reverse])"));
                    }
                }
                i += 1;
            }
            out.push(r);
        }
        out
    }

    pub(super) fn track_interfaces(&mut self, s: &Stmt) -> Vec<TrackedInterface> {
        self.track_refs(s, -253, 253)
            .into_iter()
            .map(|r| TrackedInterface {
                name: r.name,
                weight: r.weight.unwrap_or(0) as i32,
                reverse: r.reverse,
                span: r.span,
            })
            .collect()
    }

    pub(super) fn track_file(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut tf = TrackFile {
            name,
            file: None,
            weight: 1,
            reverse: false,
            init_file: None,
            span: s.span(),
        };
        for e in self.block(s) {
            match e.name() {
                "file" => tf.file = self.arg_str(e),
                "weight" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        tf.weight = self.int(&e.args[0], -254, 254).unwrap_or(1);
                        tf.reverse = self.reverse(e, 1);
                    }
                }
                "init_file" => {
                    self.no_block(e);
                    let mut v = 0;
                    let mut over = false;
                    for a in &e.args {
                        if a.text == "overwrite" {
                            over = true;
                        } else {
                            v = self.int(a, -254, 254).unwrap_or(0);
                        }
                    }
                    tf.init_file = Some((v, over));
                }
                _ => self.unknown(e, "track_file", &[&["file", "weight", "init_file"]]),
            }
        }
        if tf.file.is_none() {
            self.err(&s.kw, format!("track_file {} needs a file; the track_file is", tf.name));
            return;
        }
        self.cfg.track_files.push(tf);
    }

    pub(super) fn track_process(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut tp = TrackProcess {
            name,
            process: Vec::new(),
            weight: 1,
            quorum: 1,
            quorum_max: None,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
            full_command: false,
            span: s.span(),
        };
        for e in self.block(s) {
            match e.name() {
                "process" => {
                    if self.args(e, 1, usize::MAX) {
                        tp.process = e.args.iter().map(|t| t.text.clone()).collect();
                    }
                }
                "weight" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        tp.weight = self.int(&e.args[0], -254, 254).unwrap_or(1) as i32;
                        let _ = self.reverse(e, 1);
                    }
                }
                "quorum" => tp.quorum = self.arg_int(e, 1, 65535).unwrap_or(1) as u32,
                "quorum_max" => tp.quorum_max = self.arg_int(e, 0, 65535).map(|v| v as u32),
                "fork_delay" => {
                    tp.fork_delay = self.arg_timer_us(e, 1, HOUR_US).unwrap_or_default()
                }
                "terminate_delay" => {
                    tp.terminate_delay = self.arg_timer_us(e, 1, HOUR_US).unwrap_or_default()
                }
                "delay" => {
                    let v = self.arg_timer_us(e, 1, HOUR_US).unwrap_or_default();
                    tp.fork_delay = v;
                    tp.terminate_delay = v;
                }
                "full_command" => tp.full_command = true,
                "param_match" => {
                    if let Some(v) = self.arg_str(e) {
                        if v != "initial" && v != "partial" {
                            self.err(&e.args[0], "param_match must be initial or partial");
                        }
                    }
                }
                _ => self.unknown(
                    e,
                    "vrrp_track_process",
                    &[&[
                        "process",
                        "weight",
                        "quorum",
                        "quorum_max",
                        "fork_delay",
                        "terminate_delay",
                        "delay",
                        "full_command",
                        "param_match",
                    ]],
                ),
            }
        }
        if tp.process.is_empty() {
            self.err(
                &s.kw,
                format!("vrrp_track_process {} needs a process; the block is", tp.name),
            );
            return;
        }
        self.cfg.track_processes.push(tp);
    }

    /// `track_group NAME { group { INSTANCE ... } }`.
    pub(super) fn track_group(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let name = self.name_arg(s);
        let mut members = Vec::new();
        for e in self.block(s) {
            if e.name() == "group" {
                members.extend(self.block(e).iter().map(|m| m.kw.text.clone()));
            } else {
                self.unknown(e, "track_group", &[&["group"]]);
            }
        }
        self.cfg.track_groups.push(NamedList {
            name,
            members,
            span: s.span(),
        });
    }
}
