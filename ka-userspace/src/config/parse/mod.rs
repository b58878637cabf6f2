//! Keyword tables: turns statements into the typed model, checking each value's syntax and range.
//!
//! One file per block family; [`keywords`] holds the keyword tables, [`values`] the value
//! parsers every block uses. A new top-level block gets its file here and one arm in [`Cx::top`].

// BFD's keywords (config/bfd.rs): a child module, to use the parser's helpers.
#[path = "../bfd.rs"]
pub(crate) mod bfd;
mod checkers;
mod global_defs;
pub mod keywords;
mod interfaces;
mod static_blocks;
mod sync_group;
mod track;
pub mod values;
mod virtual_server;
mod vrrp_instance;
mod vrrp_script;

use std::time::Duration;

use super::{
    diag::{Diagnostic, Diagnostics, IgnoredKeyword},
    iproute::RulePriorities,
    lexer::Token,
    model::*,
    tree::Stmt,
};

pub use keywords::*;
pub use virtual_server::parse_range;

/// Per-instance settings whose defaults come from `global_defs`, resolved after parsing.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceDefaults {
    pub version: Option<VrrpVersion>,
    pub garp_master_delay: Option<Duration>,
    pub garp_master_repeat: Option<u32>,
    pub garp_master_refresh: Option<Duration>,
    pub garp_master_refresh_repeat: Option<u32>,
    pub strict_mode: Option<bool>,
}

/// Parsing context: where diagnostics go and what has been built so far.
pub(crate) struct Cx<'d> {
    pub d: &'d mut Diagnostics,
    pub cfg: Config,
    pub inst_defaults: Vec<InstanceDefaults>,
    /// `vrrp_script` names seen but removed (no `script`): references to them only warn.
    pub removed_scripts: Vec<String>,
    /// Preferences for rules written without one (keepalived counts down across all rules).
    pub rule_prios: RulePriorities,
    /// `track_*` references to objects not defined above them, reported by [`Cx::finish`].
    pub late_refs: Vec<track::LateRef>,
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let v = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl<'d> Cx<'d> {
    pub fn new(d: &'d mut Diagnostics) -> Self {
        Self {
            d,
            cfg: Config::default(),
            inst_defaults: Vec::new(),
            removed_scripts: Vec::new(),
            rule_prios: RulePriorities::default(),
            late_refs: Vec::new(),
        }
    }

    /// A problem keepalived 2.2 runs past by ignoring what is at `t` (the keyword, the value or
    /// the entry): a warning saying so, and the caller drops it the same way (`ka check --strict`
    /// makes it an error).
    fn err(&mut self, t: &Token, msg: impl Into<String>) {
        // "...; the checker is" reads on as "...; the checker is ignored: ...".
        let msg = msg.into();
        let msg = if msg.ends_with(" is") {
            format!("{msg} {IGNORED}")
        } else {
            format!("{msg}; {IGNORED}")
        };
        self.d
            .push(Diagnostic::warning(Some(t.span), msg).with_via(t.via));
    }

    /// A problem keepalived 2.2 refuses to start with (a missing parameter ends its parse):
    /// an error, so `ka run` refuses too.
    fn fatal(&mut self, t: &Token, msg: impl Into<String>) {
        self.d
            .push(Diagnostic::error(Some(t.span), msg).with_via(t.via));
    }

    fn warn(&mut self, t: &Token, msg: impl Into<String>) {
        self.d
            .push(Diagnostic::warning(Some(t.span), msg).with_via(t.via));
    }

    fn unsupported(&mut self, s: &Stmt, ctx: &str) {
        let t = &s.kw;
        self.d.push(
            Diagnostic::warning(Some(t.span), format!("'{}' in {ctx} accepted, not supported yet", s.name()))
                .with_via(t.via)
                .ignoring(IgnoredKeyword::NotActedOn),
        );
    }

    /// A keepalived keyword whose interface ka replaces ([`REPLACED`]): a warning naming the
    /// replacement; the keyword itself is not acted on.
    fn replaced(&mut self, s: &Stmt) {
        let with = REPLACED.iter().find(|(k, _)| *k == s.name()).map_or("", |(_, w)| *w);
        let t = &s.kw;
        self.d.push(
            Diagnostic::warning(Some(t.span), format!("'{}' replaced by {with}", s.name()))
                .with_via(t.via)
                .ignoring(IgnoredKeyword::NotActedOn),
        );
    }

    /// A keyword keepalived knows but ignores where it is written: `msg` says why.
    fn ignored_here(&mut self, s: &Stmt, msg: String) {
        let t = &s.kw;
        self.d.push(Diagnostic::warning(Some(t.span), msg).with_via(t.via).ignoring(IgnoredKeyword::Unknown));
    }

    fn unknown(&mut self, s: &Stmt, ctx: &str, known: &[&[&str]]) {
        let n = s.name().chars().count();
        let best = known
            .iter()
            .flat_map(|l| l.iter())
            // Only a distance of 3 or less makes a hint, and the distance is at least the
            // difference in length (keywords are ASCII): the others are skipped, or a long
            // unknown word costs its length times every keyword's (the config fuzzer's slow
            // inputs; a 200 kB word took 20 s of CPU).
            .filter(|k| k.len().abs_diff(n) <= 3)
            .map(|k| (edit_distance(s.name(), k), *k))
            .min();
        // A keyword written without keepalived's `vrrp_` prefix (`garp_master_delay` in
        // global_defs) is a different word for edit distance; suggest the prefixed one.
        let prefixed = known
            .iter()
            .flat_map(|l| l.iter())
            .find(|k| k.strip_prefix("vrrp_") == Some(s.name()));
        let hint = match best {
            _ if prefixed.is_some() => format!("; did you mean '{}'?", prefixed.copied().unwrap_or_default()),
            Some((d, k)) if d <= 2 || (d <= 3 && s.name().len() > 8) => {
                format!("; did you mean '{k}'?")
            }
            _ => String::new(),
        };
        let t = &s.kw;
        self.d.push(
            Diagnostic::warning(Some(t.span), format!("unknown keyword '{}' in {ctx}{hint}; {IGNORED}", s.name()))
                .with_via(t.via)
                .ignoring(IgnoredKeyword::Unknown),
        );
    }

    /// Checks the argument count; extra arguments are a warning.
    fn args(&mut self, s: &Stmt, min: usize, max: usize) -> bool {
        if s.args.len() < min {
            let what = if min == 1 {
                "a value".to_string()
            } else {
                format!("{min} values")
            };
            self.fatal(&s.kw, format!("'{}' needs {what}", s.name()));
            return false;
        }
        if s.args.len() > max {
            self.warn(
                &s.args[max],
                format!(
                    "'{}': extra argument '{}' ignored",
                    s.name(),
                    s.args[max].text
                ),
            );
        }
        true
    }

    fn no_block(&mut self, s: &Stmt) {
        if s.block.is_some() {
            self.err(&s.kw, format!("'{}' does not take a {{ }} block", s.name()));
        }
    }

    fn block<'s>(&mut self, s: &'s Stmt) -> &'s [Stmt] {
        match &s.block {
            Some(b) => b,
            None => {
                self.err(&s.kw, format!("'{}' needs a {{ ... }} block", s.name()));
                &[]
            }
        }
    }

    fn name_arg(&mut self, s: &Stmt) -> String {
        match s.args.first() {
            Some(t) => {
                if s.args.len() > 1 {
                    self.warn(
                        &s.args[1],
                        format!(
                            "'{}': extra argument '{}' ignored",
                            s.name(),
                            s.args[1].text
                        ),
                    );
                }
                t.text.clone()
            }
            None => {
                self.fatal(&s.kw, format!("'{}' needs a name", s.name()));
                String::new()
            }
        }
    }

    /// Dispatches one top-level statement.
    pub fn top(&mut self, s: &Stmt) {
        match s.name() {
            "global_defs" => self.global_defs(s),
            "vrrp_script" => self.vrrp_script(s),
            "vrrp_sync_group" => self.sync_group(s),
            "vrrp_instance" => self.vrrp_instance(s),
            "virtual_server" => self.virtual_server(s),
            "virtual_server_group" => self.vs_group(s),
            "static_ipaddress" | "static_routes" | "static_rules" => self.static_block(s),
            "linkbeat_interfaces" => self.linkbeat_interfaces(s),
            "track_group" => self.track_group(s),
            "track_file" | "vrrp_track_file" => self.track_file(s),
            "vrrp_track_process" => self.track_process(s),
            "bfd_instance" => self.bfd_instance(s),
            "garp_group" => self.garp_group(s),
            "SSL" => self.ssl(s),
            "interface_up_down_delays" => self.interface_up_down_delays(s),
            "net_namespace" => {
                self.no_block(s);
                if !self.args(s, 1, 1) {
                    return;
                }
                match &self.cfg.net_namespace {
                    Some(ns) => {
                        let msg = format!("duplicate net_namespace definition {} (already {ns})", s.args[0].text);
                        self.err(&s.args[0], msg);
                    }
                    None => self.cfg.net_namespace = Some(s.args[0].text.clone()),
                }
            }
            "net_namespace_ipvs"
            | "namespace_with_ipsets"
            | "instance"
            | "use_pid_dir"
            | "linkbeat_use_polling" => self.unsupported(s, "the configuration"),
            "child_wait_time" => {
                if let Some(d) = self.arg_secs(s, 0, i64::from(u32::MAX)) {
                    self.cfg.global.child_wait_time = Some(d);
                }
            }
            _ => self.unknown(s, "the configuration", &[TOP_SUPPORTED, TOP_UNSUPPORTED]),
        }
    }

    /// Applies the defaults that come from `global_defs` (which may appear after the instances).
    pub fn finish(mut self) -> Config {
        let g = self.cfg.global.clone();
        for (vi, d) in self
            .cfg
            .vrrp_instances
            .iter_mut()
            .zip(self.inst_defaults.iter())
        {
            // The family is the first VIP's; with none, that of the advert source or the first
            // peer (keepalived sets it from whichever it reads first), else IPv4.
            let v6 = match vi.virtual_ipaddresses.first() {
                Some(v) => v.address.is_ipv6(),
                None => vi.src_ip.or(vi.unicast_peers.first().map(|p| p.address)).is_some_and(|a| a.is_ipv6()),
            };
            vi.version = match d.version {
                Some(v) => v,
                None if v6 => VrrpVersion::V3,
                None => g.vrrp_version,
            };
            vi.garp_master_delay = d.garp_master_delay.unwrap_or(g.vrrp_garp_master_delay);
            vi.garp_master_repeat = d.garp_master_repeat.unwrap_or(g.vrrp_garp_master_repeat);
            vi.garp_master_refresh = d.garp_master_refresh.unwrap_or(g.vrrp_garp_master_refresh);
            vi.garp_master_refresh_repeat = d
                .garp_master_refresh_repeat
                .unwrap_or(g.vrrp_garp_master_refresh_repeat);
            vi.strict_mode = d.strict_mode.unwrap_or(g.vrrp_strict);
        }
        self.report_late_refs();
        self.cfg
    }

    /// Says, for each `track_*` reference to an object that was not defined above it, what
    /// keepalived 2.2 makes of it: the reference is ignored (keepalived resolves names while
    /// reading, so an object defined further down is not found either).
    fn report_late_refs(&mut self) {
        for r in std::mem::take(&mut self.late_refs) {
            let what = r.kind.label();
            let (owner, name) = (&r.owner, &r.name);
            let msg = match r.kind.definition(&self.cfg, name) {
                Some(def) => format!(
                    "({owner}) {what} {name} is defined below this reference (line {}): keepalived 2.2 resolves names while reading, \
                     does not find it and ignores the reference; so does ka (move the definition above)",
                    def.line
                ),
                None if r.removed => format!("({owner}) {what} {name} was removed (see its definition); ignored"),
                None => format!("({owner}) {what} {name} is not defined; ignored: keepalived 2.2 does the same"),
            };
            self.d.warning(Some(r.span), msg);
        }
    }
}
