//! Tracked objects: references in `track_*` blocks, `vrrp_track_file`, `vrrp_track_process`, `track_group`.

use std::time::Duration;

use super::{values::*, Cx};
use crate::config::{diag::Span, model::*, tree::Stmt};

/// What a `track_*` reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracked {
    /// A `vrrp_script`.
    Script,
    /// A `vrrp_track_file`.
    File,
    /// A `vrrp_track_process`.
    Process,
    /// A `bfd_instance`.
    Bfd,
}

impl Tracked {
    /// keepalived's words for it in messages ("track script").
    pub(crate) fn label(self) -> &'static str {
        match self {
            Tracked::Script => "track script",
            Tracked::File => "track file",
            Tracked::Process => "track process",
            Tracked::Bfd => "track bfd",
        }
    }

    /// The keyword that references it.
    fn keyword(self) -> &'static str {
        match self {
            Tracked::Script => "track_script",
            Tracked::File => "track_file",
            Tracked::Process => "track_process",
            Tracked::Bfd => "track_bfd",
        }
    }

    /// keepalived 2.2.7's bounds for a reference's weight.
    fn weight_range(self) -> (i64, i64) {
        match self {
            Tracked::Bfd => (-253, 253),
            _ => (-254, 254),
        }
    }

    /// Whether +/-254 is read and turned into +/-253 (scripts).
    fn clamps_254(self) -> bool {
        self == Tracked::Script
    }

    /// Whether a bad word after the weight drops the entry (files and BFD) rather than only
    /// being reported (scripts and processes).
    fn drops_on_bad_option(self) -> bool {
        matches!(self, Tracked::File | Tracked::Bfd)
    }

    /// `Some(the object's own reverse)` if `name` is defined in `cfg` so far.
    pub(crate) fn defined(self, cfg: &Config, name: &str) -> Option<bool> {
        match self {
            Tracked::Script => cfg.vrrp_scripts.iter().find(|s| s.name == name).map(|s| s.reverse),
            Tracked::File => cfg.track_files.iter().find(|s| s.name == name).map(|s| s.reverse),
            Tracked::Process => cfg.track_processes.iter().find(|s| s.name == name).map(|_| false),
            Tracked::Bfd => cfg.bfd_instances.iter().find(|s| s.name == name).map(|_| false),
        }
    }

    /// Where `name` is defined in `cfg`, if it is.
    pub(crate) fn definition(self, cfg: &Config, name: &str) -> Option<Span> {
        match self {
            Tracked::Script => cfg.vrrp_scripts.iter().find(|s| s.name == name).map(|s| s.span),
            Tracked::File => cfg.track_files.iter().find(|s| s.name == name).map(|s| s.span),
            Tracked::Process => cfg.track_processes.iter().find(|s| s.name == name).map(|s| s.span),
            Tracked::Bfd => cfg.bfd_instances.iter().find(|s| s.name == name).map(|s| s.span),
        }
    }
}

/// A reference to an object not defined (yet) where it was read; [`super::Cx::finish`] says
/// whether it is defined further down, was removed, or is not defined at all.
#[derive(Debug, Clone)]
pub(crate) struct LateRef {
    /// The instance or sync group holding the reference.
    pub owner: String,
    /// What it names.
    pub kind: Tracked,
    /// The name.
    pub name: String,
    /// Where the reference is.
    pub span: Span,
    /// The `vrrp_script` was seen but removed (no `script`).
    pub removed: bool,
}

impl Cx<'_> {
    /// A `track_script` / `track_file` / `track_process` / `track_bfd` block of `owner` (an
    /// instance or a sync group), read as keepalived 2.2.7 reads it (`alloc_track_script` and
    /// its siblings): each name must be defined *above* the block (keepalived resolves it
    /// while reading, so one defined later is ignored; [`Cx::finish`] says which), a name
    /// listed twice counts once, an entry with an unknown option or `weight` without a value
    /// is ignored, a weight out of range leaves the object's own weight, and without `weight`
    /// the object's own `reverse` applies.
    pub(super) fn track_refs(&mut self, s: &Stmt, owner: &str, kind: Tracked, have: &[TrackRef]) -> Vec<TrackRef> {
        let mut out: Vec<TrackRef> = Vec::new();
        let what = kind.label();
        for e in self.block(s) {
            self.no_block(e);
            let name = e.kw.text.clone();
            let Some(own_reverse) = kind.defined(&self.cfg, &name) else {
                self.late_refs.push(LateRef {
                    owner: owner.to_owned(),
                    kind,
                    name,
                    span: e.span(),
                    removed: kind == Tracked::Script && self.removed_scripts.contains(&e.kw.text),
                });
                continue;
            };
            if out.iter().chain(have).any(|r| r.name == name) {
                self.err(&e.kw, format!("({owner}) duplicate {} {name}", kind.keyword()));
                continue;
            }
            let mut r = TrackRef {
                name,
                weight: None,
                reverse: own_reverse,
                span: e.span(),
            };
            if let Some(opt) = e.args.first() {
                if opt.text != "weight" {
                    self.err(opt, format!("({owner}) unknown {what} option '{}'; the entry is", opt.text));
                    continue;
                }
                let Some(v) = e.args.get(1) else {
                    self.err(opt, format!("({owner}) weight without value specified for {what} {}; the entry is", r.name));
                    continue;
                };
                let (lo, hi) = kind.weight_range();
                r.weight = self.int(v, lo, hi);
                if kind.clamps_254() && r.weight.is_some_and(|w| w.abs() == 254) {
                    self.warn(v, format!("({owner}) weight for {} cannot be +/-254; using +/-253, as keepalived 2.2 does", r.name));
                    r.weight = r.weight.map(|w| w.signum() * 253);
                }
                r.reverse = false;
                if let Some(rev) = e.args.get(2) {
                    match rev.text.as_str() {
                        "reverse" => r.reverse = true,
                        "noreverse" => {}
                        o if kind.drops_on_bad_option() => {
                            self.err(rev, format!("({owner}) unknown {what} {} weight option '{o}'; the entry is", r.name));
                            continue;
                        }
                        o => self.err(rev, format!("({owner}) unknown {what} {} weight option '{o}'", r.name)),
                    }
                }
                if let Some(extra) = e.args.get(3) {
                    self.warn(extra, format!("'{}': extra argument '{}' ignored", r.name, extra.text));
                }
            }
            out.push(r);
        }
        out
    }

    /// A `track_interface` block, as keepalived 2.2.7 reads it (`alloc_track_if`): a weight out
    /// of range is 0, +/-254 becomes +/-253, an unknown option drops the entry, and only
    /// `reverse` may follow the weight.
    pub(super) fn track_interfaces(&mut self, s: &Stmt, owner: &str, have: &[TrackedInterface]) -> Vec<TrackedInterface> {
        let mut out: Vec<TrackedInterface> = Vec::new();
        for e in self.block(s) {
            self.no_block(e);
            let name = e.kw.text.clone();
            if out.iter().chain(have).any(|t| t.name == name) {
                self.err(&e.kw, format!("({owner}) duplicate track_interface {name}"));
                continue;
            }
            let mut t = TrackedInterface {
                name,
                weight: 0,
                reverse: false,
                span: e.span(),
            };
            if let Some(opt) = e.args.first() {
                if opt.text != "weight" {
                    self.err(opt, format!("({owner}) unknown track_interface {} option '{}'; the entry is", t.name, opt.text));
                    continue;
                }
                let Some(v) = e.args.get(1) else {
                    self.err(opt, format!("({owner}) weight without value specified for track_interface {}; the entry is", t.name));
                    continue;
                };
                let w = self.int(v, -254, 254).unwrap_or(0);
                t.weight = if w.abs() == 254 {
                    self.warn(v, format!("({owner}) weight for {} cannot be +/-254; using +/-253, as keepalived 2.2 does", t.name));
                    w.signum() as i32 * 253
                } else {
                    w as i32
                };
                if let Some(rev) = e.args.get(2) {
                    if rev.text == "reverse" {
                        t.reverse = true;
                    } else {
                        self.err(rev, format!("({owner}) unknown track_interface {} weight option '{}'", t.name, rev.text));
                    }
                }
            }
            out.push(t);
        }
        out
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
