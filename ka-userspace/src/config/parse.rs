//! Keyword tables: turns statements into the typed model, checking each value's syntax and range.

use std::{net::IpAddr, time::Duration};

// BFD's keywords (issue 17); a child module, to use the parser's helpers.
#[path = "bfd.rs"]
pub(crate) mod bfd;

use super::{
    diag::{Diagnostic, Diagnostics},
    iproute::{self, Block, Note, Parsed, RulePriorities},
    lexer::Token,
    model::*,
    tree::Stmt,
};

/// Keywords of `global_defs` that ka accepts but does not act on yet.
pub const GLOBAL_UNSUPPORTED: &[&str] = &[
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "linkbeat_use_polling",
    "child_wait_time",
    "tmp_config_directory",
    "config_save_dir",
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "bfd_process_name",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    "smtp_helo_name",
    "checker_log_all_failures",
    "no_email_faults",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_min_garp",
    "vrrp_garp_extra_if",
    "nftables",
    "nftables_priority",
    "nftables_counters",
    "nftables_ifindex",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "vrrp_iptables",
    "vrrp_ipsets",
    "disable_local_igmp",
    "vrrp_notify_priority_changes",
    "max_auto_priority",
    "min_auto_priority_delay",
    "checker_priority",
    "bfd_priority",
    "vrrp_no_swap",
    "checker_no_swap",
    "bfd_no_swap",
    "vrrp_cpu_affinity",
    "checker_cpu_affinity",
    "bfd_cpu_affinity",
    "checker_rt_priority",
    "bfd_rt_priority",
    "vrrp_rlimit_rttime",
    "checker_rlimit_rttime",
    "bfd_rlimit_rttime",
    "snmp_socket",
    "enable_snmp_vrrp",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_traps",
    "enable_snmp_keepalived",
    "enable_dbus",
    "dbus_service_name",
    "notify_fifo_script",
    "vrrp_notify_fifo_script",
    "lvs_notify_fifo_script",
    "fifo_write_vrrp_states_on_reload",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "rs_init_notifies",
    "no_checker_emails",
    "umask",
    "log_unknown_vrids",
    "vmac_prefix",
    "vmac_addr_prefix",
    "random_seed",
    "reload_check_config",
    "include_check",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "data_use_instance",
    "lvs_id",
    "vrrp_garp_master_refresh_repeat",
];

/// Keywords of `global_defs` that ka acts on.
pub const GLOBAL_SUPPORTED: &[&str] = &[
    "router_id",
    "lvs_timeouts",
    "lvs_flood_rate",
    "vrrp_version",
    "vrrp_priority",
    "vrrp_rt_priority",
    "vrrp_strict",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "default_interface",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_skip_check_adv_addr",
    "vrrp_check_unicast_src",
    "enable_script_security",
    "script_user",
    "dynamic_interfaces",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "vrrp_down_timer_adverts",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "notify_fifo",
    "vrrp_notify_fifo",
    "vrrp_startup_delay",
    "lvs_notify_fifo",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_flush_onstop",
    "nftables_ipvs",
    "lvs_sync_daemon",
];

/// Keywords of `vrrp_instance` that ka accepts but does not act on yet.
pub const VRRP_UNSUPPORTED: &[&str] = &[
    "vrf",
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "native_ipv6",
    "track_src_ip",
    "unicast_fault_no_peer",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "garp_extra_if",
    "promote_secondaries",
    "debug",
    "notify_master_rx_lower_pri",
    "notify_priority_changes",
    "kernel_rx_buf_size",
    "linkbeat_use_polling",
];

/// Keywords of `vrrp_instance` that ka acts on.
pub const VRRP_SUPPORTED: &[&str] = &[
    "state",
    "lvs_sync_daemon_interface",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "accept",
    "no_accept",
    "mcast_src_ip",
    "unicast_src_ip",
    "mcast_dst_ip",
    "unicast_peer",
    "unicast_ttl",
    "authentication",
    "track_interface",
    "track_script",
    "dont_track_primary",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "garp_master_refresh_repeat",
    "strict_mode",
    "use_vmac",
    "down_timer_adverts",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "old_unicast_checksum",
    "notify_deleted",
    "virtual_routes",
    "virtual_rules",
    "track_file",
    "track_process",
    "smtp_alert",
    "skip_check_adv_addr",
    "check_unicast_src",
    "track_bfd",
];

/// Keywords of `virtual_server` that ka accepts but does not act on yet.
pub const VS_UNSUPPORTED: &[&str] = &[
    "persistence_engine",
    "snmp_name",
    "ip_family",
];

/// Keywords of `virtual_server` that ka acts on.
pub const VS_SUPPORTED: &[&str] = &[
    "persistence_granularity",
    "virtualhost",
    "lb_algo",
    "lvs_sched",
    "lb_kind",
    "lvs_method",
    "persistence_timeout",
    "protocol",
    "quorum",
    "sorry_server",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "delay_loop",
    "inhibit_on_failure",
    "real_server",
    "ha_suspend",
    "smtp_alert",
    "omega",
    "quorum_up",
    "quorum_down",
    "hysteresis",
    "sorry_server_inhibit",
    "alpha",
    "warmup",
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
    "ops",
    "sorry_server_lvs_method",
];

/// Keywords of `real_server` that ka accepts but does not act on yet.
pub const RS_UNSUPPORTED: &[&str] = &[
    "virtualhost",
    "snmp_name",
];

/// Keywords of `real_server` that ka acts on.
pub const RS_SUPPORTED: &[&str] = &[
    "weight",
    "uthreshold",
    "lthreshold",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "delay_loop",
    "inhibit_on_failure",
    "notify_up",
    "notify_down",
    "smtp_alert",
    "alpha",
    "warmup",
    "lvs_method",
    "lb_kind",
];

/// Checker types ka runs.
pub const CHECKERS_SUPPORTED: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "MISC_CHECK",
    "SSL_GET",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];

/// Checker types ka accepts but does not run yet.
pub const CHECKERS_UNSUPPORTED: &[&str] = &[];

/// Top-level blocks that ka accepts but does not act on yet.
pub const TOP_UNSUPPORTED: &[&str] = &[
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "linkbeat_interfaces",
    "track_group",
    "garp_group",
    "SSL",
    "interface_up_down_delays",
];

/// Top-level blocks that ka acts on.
pub const TOP_SUPPORTED: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "vrrp_sync_group",
    "vrrp_instance",
    "virtual_server",
    "vrrp_track_file",
    "track_file",
    "vrrp_track_process",
    "bfd_instance",
    "virtual_server_group",
];

/// What ka does, and keepalived 2.2 did before it, with a value or keyword it cannot use.
pub const IGNORED: &str = "ignored: keepalived 2.2 does the same";

/// Keywords keepalived 2.2 reads as "set" whatever value follows them (their handlers ignore it).
pub const FLAG_KEYWORDS: &[&str] = &[
    "vrrp_strict",
    "enable_script_security",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
];

/// `u32::MAX`, the upper bound keepalived puts on most unsigned values.
const U32: i64 = u32::MAX as i64;
/// `i32::MAX`, keepalived's bound for signed values (weights, rise, fall).
const I32: i64 = i32::MAX as i64;
/// `u32::MAX` microseconds (4294.967295 s), keepalived's bound for most timers.
const U32_US: u64 = u32::MAX as u64;
/// `i32::MAX` microseconds (2147.483647 s), keepalived's bound for `garp_group` intervals.
const I32_US: u64 = i32::MAX as u64;
/// The largest timer keepalived reads for checker delays (a `u64` of microseconds).
const U64_US: u64 = u64::MAX - 1;
/// One hour in microseconds (`vrrp_track_process` delays).
const HOUR_US: u64 = 3_600_000_000;

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
        self.warn(
            &s.kw,
            format!("'{}' in {ctx} accepted, not supported yet", s.name()),
        );
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
        self.err(
            &s.kw,
            format!("unknown keyword '{}' in {ctx}{hint}", s.name()),
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

    fn int(&mut self, t: &Token, lo: i64, hi: i64) -> Option<i64> {
        let txt = t.text.as_str();
        let v = match txt.strip_prefix("0x") {
            Some(h) => i64::from_str_radix(h, 16).ok(),
            None => txt.parse::<i64>().ok(),
        };
        match v {
            Some(v) if (lo..=hi).contains(&v) => Some(v),
            Some(_) => {
                self.err(t, format!("number '{txt}' outside range [{lo}, {hi}]"));
                None
            }
            None => {
                self.err(t, format!("'{txt}' is not a valid integer"));
                None
            }
        }
    }

    fn arg_int(&mut self, s: &Stmt, lo: i64, hi: i64) -> Option<i64> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        self.int(&s.args[0], lo, hi)
    }

    /// Parses a decimal number with at most `decimals` fractional digits, as keepalived's
    /// `read_decimal_unsigned` does, into units of 10^-`decimals`, checked against `[lo, hi]`.
    fn decimal(&mut self, t: &Token, decimals: u32, lo: u64, hi: u64, unit: &str) -> Option<u64> {
        let txt = t.text.as_str();
        let (int, frac) = txt.split_once('.').unwrap_or((txt, ""));
        let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
            self.err(t, format!("'{txt}' is not a valid time in {unit}"));
            return None;
        }
        if frac.len() > decimals as usize {
            self.err(
                t,
                format!("time '{txt}' has too many decimal places (at most {decimals})"),
            );
            return None;
        }
        let scale = 10u128.pow(decimals);
        let parse = |s: &str| if s.is_empty() { Some(0) } else { s.parse::<u128>().ok() };
        let frac_units = parse(frac).map(|f| f * 10u128.pow(decimals - frac.len() as u32));
        let v = parse(int)
            .and_then(|i| i.checked_mul(scale))
            .zip(frac_units)
            .and_then(|(i, f)| i.checked_add(f));
        match v {
            Some(v) if (u128::from(lo)..=u128::from(hi)).contains(&v) => Some(v as u64),
            _ => {
                let show = |x: u64| {
                    let (i, f) = (u128::from(x) / scale, u128::from(x) % scale);
                    if f == 0 {
                        i.to_string()
                    } else {
                        let f = format!("{f:0w$}", w = decimals as usize);
                        format!("{i}.{}", f.trim_end_matches('0'))
                    }
                };
                self.err(
                    t,
                    format!("time '{txt}' outside range [{}, {}] {unit}", show(lo), show(hi)),
                );
                None
            }
        }
    }

    /// A time in seconds with microsecond resolution, within `[lo_us, hi_us]` microseconds.
    fn timer_tok_us(&mut self, t: &Token, lo_us: u64, hi_us: u64) -> Option<Duration> {
        self.decimal(t, 6, lo_us, hi_us, "seconds")
            .map(Duration::from_micros)
    }

    fn arg_timer(&mut self, s: &Stmt, max_secs: u64) -> Option<Duration> {
        self.arg_timer_us(s, 0, max_secs.saturating_mul(1_000_000))
    }

    /// `KEYWORD TIME`, TIME in seconds with up to 6 decimals, within `[lo_us, hi_us]` µs.
    fn arg_timer_us(&mut self, s: &Stmt, lo_us: u64, hi_us: u64) -> Option<Duration> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        self.timer_tok_us(&s.args[0], lo_us, hi_us)
    }

    /// `KEYWORD SECONDS` in `(0, max]` where keepalived reads whole seconds but ka can use a
    /// fraction (fast `vrrp_script` intervals): a fraction is a warning, not an error.
    fn arg_secs_frac(&mut self, s: &Stmt, max: u64) -> Option<Duration> {
        let v = self.arg_timer_us(s, 1, max.saturating_mul(1_000_000))?;
        if v.subsec_micros() != 0 {
            self.warn(
                &s.args[0],
                format!(
                    "'{}' {}: keepalived 2.2.7 accepts only whole seconds here; ka uses the fraction",
                    s.name(),
                    s.args[0].text
                ),
            );
        }
        Some(v)
    }

    /// `KEYWORD SECONDS` where keepalived reads a whole number of seconds.
    fn arg_secs(&mut self, s: &Stmt, lo: i64, hi: i64) -> Option<Duration> {
        self.arg_int(s, lo, hi)
            .map(|v| Duration::from_secs(v as u64))
    }

    /// `KEYWORD [on|off|true|false|yes|no]`; no argument means true.
    fn arg_bool(&mut self, s: &Stmt) -> bool {
        self.no_block(s);
        let Some(t) = s.args.first() else { return true };
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
        if FLAG_KEYWORDS.contains(&s.name()) {
            self.warn(
                t,
                format!(
                    "'{}': value '{}' ignored: keepalived 2.2 turns {} on whatever follows it; so does ka",
                    s.name(),
                    t.text,
                    s.name()
                ),
            );
            return true;
        }
        match t.text.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            _ => {
                // keepalived (check_true_false): "invalid value", the keyword is ignored and the
                // setting keeps its default, off.
                self.err(
                    t,
                    format!(
                        "'{}': '{}' is not a boolean (on|off|true|false|yes|no); left off",
                        s.name(),
                        t.text
                    ),
                );
                false
            }
        }
    }

    /// An address where keepalived 2.2 also takes `ADDR/LEN` and uses the address alone
    /// (`unicast_src_ip`, `unicast_peer`).
    fn ip_or_prefix(&mut self, t: &Token) -> Option<IpAddr> {
        match t.text.split_once('/') {
            Some((a, _)) if t.text.parse::<IpPrefix>().is_ok() => {
                self.warn(
                    t,
                    format!("prefix of '{}' ignored: keepalived 2.2 uses the address {a} alone; so does ka", t.text),
                );
                a.parse().ok()
            }
            _ => self.ip(t),
        }
    }

    fn ip(&mut self, t: &Token) -> Option<IpAddr> {
        match t.text.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(t, format!("'{}' is not a valid IP address", t.text));
                None
            }
        }
    }

    fn arg_ip(&mut self, s: &Stmt) -> Option<IpAddr> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        self.ip(&s.args[0])
    }

    fn port(&mut self, t: &Token) -> Option<u16> {
        match t.text.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                self.err(t, format!("'{}' is not a valid port (0-65535)", t.text));
                None
            }
        }
    }

    fn arg_str(&mut self, s: &Stmt) -> Option<String> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        Some(s.args[0].text.clone())
    }

    fn user(&mut self, s: &Stmt, from: usize) -> Option<(String, Option<String>)> {
        if s.args.len() > from + 2 {
            self.warn(
                &s.args[from + 2],
                format!("'{}': extra argument ignored", s.name()),
            );
        }
        s.args
            .get(from)
            .map(|u| (u.text.clone(), s.args.get(from + 1).map(|g| g.text.clone())))
    }

    fn script(&mut self, s: &Stmt) -> Option<Script> {
        self.no_block(s);
        if !self.args(s, 1, 3) {
            return None;
        }
        Some(Script {
            command: s.args[0].text.clone(),
            user: self.user(s, 1),
            span: s.span(),
        })
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
            "static_ipaddress" => {
                self.unsupported(s, "the configuration");
                for e in self.block(s) {
                    if let Some(v) = self.vip(e, Block::Static) {
                        self.cfg.static_ipaddresses.push(v);
                    }
                }
            }
            "static_routes" => {
                self.unsupported(s, "the configuration");
                for e in self.block(s) {
                    if let Some(r) = self.route(e, Block::Static) {
                        self.cfg.static_routes.push(r);
                    }
                }
            }
            "static_rules" => {
                self.unsupported(s, "the configuration");
                for e in self.block(s) {
                    if let Some(r) = self.rule(e, Block::Static) {
                        self.cfg.static_rules.push(r);
                    }
                }
            }
            "linkbeat_interfaces" => {
                self.unsupported(s, "the configuration");
                let entries: Vec<RawEntry> = self.block(s).iter().map(raw_entry).collect();
                self.cfg.linkbeat_interfaces.extend(entries);
            }
            "track_group" => {
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
            "track_file" | "vrrp_track_file" => self.track_file(s),
            "vrrp_track_process" => self.track_process(s),
            "bfd_instance" => self.bfd_instance(s),
            "garp_group" => self.garp_group(s),
            "SSL" => self.ssl(s),
            "interface_up_down_delays" => {
                self.unsupported(s, "the configuration");
                let _ = self.block(s);
            }
            "net_namespace"
            | "net_namespace_ipvs"
            | "namespace_with_ipsets"
            | "instance"
            | "use_pid_dir"
            | "linkbeat_use_polling"
            | "child_wait_time" => self.unsupported(s, "the configuration"),
            _ => self.unknown(s, "the configuration", &[TOP_SUPPORTED, TOP_UNSUPPORTED]),
        }
    }

    /// `lvs_timeouts [tcp N] [tcpfin N] [udp N]` (seconds, at most 31 days; 0 keeps IPVS's
    /// default), as keepalived parses it: each bad or unknown part is reported and skipped.
    fn lvs_timeouts(&mut self, e: &Stmt) {
        self.no_block(e);
        if e.args.len() < 2 {
            self.err(&e.kw, "lvs_timeouts requires at least one option and its value");
            return;
        }
        let mut i = 0;
        while i < e.args.len() {
            let which = e.args[i].text.clone();
            if !matches!(which.as_str(), "tcp" | "tcpfin" | "udp") {
                self.err(&e.args[i], format!("unknown option '{which}' for lvs_timeouts (tcp|tcpfin|udp)"));
                i += 1;
                continue;
            }
            let Some(v) = e.args.get(i + 1) else {
                self.err(&e.args[i], format!("no value specified for lvs_timeouts {which}"));
                break;
            };
            if let Some(n) = self.int(v, 0, 86_400 * 31).map(|n| n as u32) {
                let t = &mut self.cfg.global.lvs_timeouts;
                match which.as_str() {
                    "tcp" => t.tcp = Some(n),
                    "tcpfin" => t.tcp_fin = Some(n),
                    _ => t.udp = Some(n),
                }
            }
            i += 2;
        }
    }

    fn global_defs(&mut self, s: &Stmt) {
        self.cfg.global.span = Some(s.span());
        for e in self.block(s) {
            match e.name() {
                "router_id" => self.cfg.global.router_id = self.arg_str(e),
                "lvs_timeouts" => self.lvs_timeouts(e),
                "lvs_flood_rate" => {
                    if let Some(v) = self.arg_int(e, 0, i64::from(u32::MAX)) {
                        self.cfg.global.lvs_flood_rate = Some(v as u32);
                    }
                }
                "vrrp_version" => {
                    if let Some(v) = self.arg_int(e, 2, 3) {
                        self.cfg.global.vrrp_version = if v == 2 {
                            VrrpVersion::V2
                        } else {
                            VrrpVersion::V3
                        };
                    }
                }
                "vrrp_strict" => self.cfg.global.vrrp_strict = self.arg_bool(e),
                "vrrp_priority" => {
                    if let Some(v) = self.arg_int(e, -20, 19) {
                        self.cfg.global.vrrp_priority = i32::try_from(v).ok();
                    }
                }
                "vrrp_rt_priority" => {
                    if let Some(v) = self.arg_int(e, 1, 99) {
                        self.cfg.global.vrrp_rt_priority = i32::try_from(v).ok();
                    }
                }
                "vrrp_mcast_group4" | "vrrp_mcast_group6" => {
                    if let Some(a) = self.arg_ip(e) {
                        let v6 = e.name().ends_with('6');
                        if a.is_ipv6() != v6 || !a.is_multicast() {
                            let fam = if v6 { "IPv6" } else { "IPv4" };
                            self.err(
                                &e.args[0],
                                format!("'{}' is not an {fam} multicast address", a),
                            );
                        } else if v6 {
                            self.cfg.global.vrrp_mcast_group6 = a;
                        } else {
                            self.cfg.global.vrrp_mcast_group4 = a;
                        }
                    }
                }
                "default_interface" => {
                    if let Some(v) = self.arg_str(e) {
                        self.cfg.global.default_interface = v;
                    }
                }
                "vrrp_garp_master_delay" => {
                    if let Some(v) = self.arg_secs(e, 0, 4294) {
                        self.cfg.global.vrrp_garp_master_delay = v;
                    }
                }
                "vrrp_garp_master_repeat" => {
                    if let Some(v) = self.arg_int(e, 1, U32) {
                        self.cfg.global.vrrp_garp_master_repeat = v as u32;
                    }
                }
                "vrrp_garp_master_refresh" => {
                    if let Some(v) = self.arg_secs(e, 0, U32) {
                        self.cfg.global.vrrp_garp_master_refresh = v;
                    }
                }
                "vrrp_garp_interval" | "vrrp_gna_interval" => {
                    if let Some(v) = self.arg_timer_us(e, 1, U32_US) {
                        if e.name() == "vrrp_garp_interval" {
                            self.cfg.global.vrrp_garp_interval = v;
                        } else {
                            self.cfg.global.vrrp_gna_interval = v;
                        }
                    }
                }
                "vrrp_skip_check_adv_addr" => {
                    self.cfg.global.vrrp_skip_check_adv_addr = self.arg_bool(e)
                }
                "vrrp_check_unicast_src" => {
                    self.cfg.global.vrrp_check_unicast_src = self.arg_bool(e)
                }
                "enable_script_security" => {
                    self.cfg.global.enable_script_security = self.arg_bool(e)
                }
                "dynamic_interfaces" => {
                    self.no_block(e);
                    self.cfg.global.dynamic_interfaces = true;
                }
                "script_user" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        self.cfg.global.script_user = self.user(e, 0);
                    }
                }
                "notification_email" => {
                    let list: Vec<String> =
                        self.block(e).iter().map(|m| m.kw.text.clone()).collect();
                    if list.is_empty() && e.block.is_some() {
                        // keepalived reports it where the block closes.
                        let at = Token {
                            span: e.end,
                            ..e.kw.clone()
                        };
                        self.warn(&at, "empty notification_email block");
                    }
                    self.cfg.global.notification_email = list;
                }
                "notification_email_from" => {
                    self.cfg.global.notification_email_from = self.arg_str(e)
                }
                "smtp_server" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        let port = match e.args.get(1) {
                            Some(p) => self.port(p).unwrap_or(25),
                            None => 25,
                        };
                        self.cfg.global.smtp_server = Some((e.args[0].text.clone(), port));
                    }
                }
                "smtp_alert" => self.cfg.global.smtp_alert = Some(self.arg_bool(e)),
                "smtp_alert_vrrp" => self.cfg.global.smtp_alert_vrrp = Some(self.arg_bool(e)),
                "smtp_alert_checker" => self.cfg.global.smtp_alert_checker = Some(self.arg_bool(e)),
                "smtp_connect_timeout" => {
                    if let Some(v) = self.arg_secs(e, 1, 4294) {
                        self.cfg.global.smtp_connect_timeout = v;
                    }
                }
                "vrrp_down_timer_adverts" => {
                    self.cfg.global.vrrp_down_timer_adverts = self.arg_int(e, 1, 100).map(|v| v as u8)
                }
                "vrrp_lower_prio_no_advert" => self.cfg.global.vrrp_lower_prio_no_advert = self.arg_bool(e),
                "vrrp_higher_prio_send_advert" => self.cfg.global.vrrp_higher_prio_send_advert = self.arg_bool(e),
                "vrrp_startup_delay" => {
                    if let Some(v) = self.arg_timer_us(e, 1000, U32_US) {
                        self.cfg.global.vrrp_startup_delay = v;
                    }
                }
                "notify_fifo" | "vrrp_notify_fifo" => {
                    self.no_block(e);
                    if self.args(e, 1, 3) {
                        let path = e.args[0].text.clone();
                        if e.name() == "notify_fifo" {
                            self.cfg.global.notify_fifo = Some(path);
                        } else {
                            self.cfg.global.vrrp_notify_fifo = Some(path);
                        }
                    }
                }
                "lvs_notify_fifo" => {
                    self.no_block(e);
                    if self.args(e, 1, 3) {
                        self.cfg.global.lvs_notify_fifo = Some(e.args[0].text.clone());
                    }
                }
                "lvs_flush" => {
                    self.no_block(e);
                    self.cfg.global.lvs_flush = true;
                }
                "lvs_flush_on_stop" | "lvs_flush_onstop" => {
                    self.no_block(e);
                    match e.args.first().map(|t| t.text.as_str()) {
                        None => self.cfg.global.lvs_flush_on_stop = LvsFlushOnStop::Full,
                        Some("VS") => self.cfg.global.lvs_flush_on_stop = LvsFlushOnStop::Vs,
                        Some(o) => self.err(&e.args[0], format!("unknown lvs_flush_on_stop type {o} (expected nothing or VS)")),
                    }
                }
                "nftables_ipvs" => {
                    self.no_block(e);
                    if self.cfg.global.nftables_ipvs.is_some() {
                        self.err(&e.kw, "ipvs nftables already specified");
                    } else {
                        let table = e.args.first().map_or_else(|| "keepalived_ipvs".to_owned(), |t| t.text.clone());
                        self.cfg.global.nftables_ipvs = Some(table);
                    }
                }
                "lvs_sync_daemon" => self.lvs_sync_daemon(e),
                n if GLOBAL_UNSUPPORTED.contains(&n) => self.unsupported(e, "global_defs"),
                _ => self.unknown(e, "global_defs", &[GLOBAL_SUPPORTED, GLOBAL_UNSUPPORTED]),
            }
        }
    }

    /// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`,
    /// checked as keepalived 2.2 checks it: a bad option is ignored alone, with a warning.
    fn lvs_sync_daemon(&mut self, e: &Stmt) {
        self.no_block(e);
        if let Some(d) = &self.cfg.global.lvs_sync_daemon {
            let msg = format!("lvs_sync_daemon has already been specified as {} {}", d.interface, d.instance);
            self.err(&e.kw, msg);
            return;
        }
        if e.args.len() < 2 {
            self.err(&e.kw, "lvs_sync_daemon requires an interface and a VRRP instance; it is");
            return;
        }
        // IP_VS_IFNAME_MAXLEN: names are at most 15 bytes.
        for (t, what) in [(&e.args[0], "interface"), (&e.args[1], "VRRP instance")] {
            if t.text.len() >= 16 {
                self.err(t, format!("lvs_sync_daemon {what} name '{}' is too long (at most 15 bytes); lvs_sync_daemon is", t.text));
                return;
            }
        }
        let mut d = LvsSyncDaemon {
            interface: e.args[0].text.clone(),
            instance: e.args[1].text.clone(),
            syncid: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
            span: e.span(),
        };
        let mut i = 2;
        // Before keepalived 1.2.15 the sync id came third, without a keyword.
        if let Some(t) = e.args.get(2).filter(|t| t.text.starts_with(|c: char| c.is_ascii_digit())) {
            self.warn(t, "use the keyword 'id' before the lvs_sync_daemon sync id");
            d.syncid = self.int(t, 0, 255).map(|v| v as u8);
            i = 3;
        }
        while let Some(opt) = e.args.get(i) {
            let value = e.args.get(i + 1);
            let known = matches!(opt.text.as_str(), "id" | "maxlen" | "port" | "ttl" | "group");
            if !known {
                self.err(opt, format!("unknown lvs_sync_daemon option '{}'", opt.text));
                i += 1;
                continue;
            }
            i += 2;
            let Some(v) = value else {
                self.err(opt, format!("lvs_sync_daemon '{}' needs a value", opt.text));
                break;
            };
            match opt.text.as_str() {
                "id" => d.syncid = self.int(v, 0, 255).map(|v| v as u8),
                // 65535 minus the IPv4 and UDP headers.
                "maxlen" => d.maxlen = self.int(v, 1, 65_507).map(|v| v as u16),
                "port" => d.port = self.int(v, 1, 65_535).map(|v| v as u16),
                "ttl" => d.ttl = self.int(v, 1, 255).map(|v| v as u8),
                _ => match self.ip(v) {
                    Some(a) if a.is_multicast() => d.group = Some(a),
                    Some(a) => self.err(v, format!("lvs_sync_daemon group {a} is not a multicast address")),
                    None => {}
                },
            }
        }
        self.cfg.global.lvs_sync_daemon = Some(d);
    }

    fn vrrp_script(&mut self, s: &Stmt) {
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
        };
        let mut timeout = None;
        for e in self.block(s) {
            match e.name() {
                "script" => vs.script = self.arg_str(e).filter(|s| !s.is_empty()),
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

    fn reverse(&mut self, s: &Stmt, at: usize) -> bool {
        match s.args.get(at).map(|t| t.text.as_str()) {
            None => false,
            Some("reverse") => true,
            Some("noreverse" | "no_reverse") => false,
            Some(_) => {
                self.err(
                    &s.args[at],
                    format!(
                        "expected 'reverse' or 'noreverse', not '{}'",
                        s.args[at].text
                    ),
                );
                false
            }
        }
    }

    fn track_refs(&mut self, s: &Stmt, lo: i64, hi: i64) -> Vec<TrackRef> {
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

    fn track_interfaces(&mut self, s: &Stmt) -> Vec<TrackedInterface> {
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

    fn notify(&mut self, e: &Stmt, n: &mut Notify) -> bool {
        let slot = match e.name() {
            "notify_master" => &mut n.master,
            "notify_backup" => &mut n.backup,
            "notify_fault" => &mut n.fault,
            "notify_stop" => &mut n.stop,
            "notify" => &mut n.any,
            _ => return false,
        };
        if slot.is_some() {
            // keepalived 2.2: "notify_master script already specified - ignoring ...".
            self.err(&e.kw, format!("{} script already specified", e.name()));
            return true;
        }
        *slot = self.script(e);
        true
    }

    fn sync_group(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut g = SyncGroup {
            name,
            members: Vec::new(),
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            track_files: Vec::new(),
            track_processes: Vec::new(),
            track_bfds: Vec::new(),
            notify: Notify::default(),
            smtp_alert: None,
            sync_group_tracking_weight: false,
            span: s.span(),
        };
        const KW: &[&str] = &[
            "group",
            "track_interface",
            "track_script",
            "track_file",
            "track_process",
            "track_bfd",
            "notify_master",
            "notify_backup",
            "notify_fault",
            "notify_stop",
            "notify",
            "notify_deleted",
            "notify_priority_changes",
            "smtp_alert",
            "global_tracking",
            "sync_group_tracking_weight",
        ];
        let mut have_group = false;
        for e in self.block(s) {
            let mut notify = std::mem::take(&mut g.notify);
            let handled = self.notify(e, &mut notify);
            g.notify = notify;
            if handled {
                continue;
            }
            match e.name() {
                "group" if have_group => {
                    self.err(&e.kw, format!("group list already specified for sync group {}", g.name));
                }
                "group" => {
                    have_group = true;
                    for m in self.block(e) {
                        self.no_block(m);
                        g.members.push((m.kw.text.clone(), m.span()));
                        for extra in &m.args {
                            g.members.push((extra.text.clone(), extra.span));
                        }
                    }
                }
                "track_interface" => g.track_interfaces = self.track_interfaces(e),
                "track_script" => g.track_scripts = self.track_refs(e, -253, 253),
                "track_file" => g.track_files = self.track_refs(e, -254, 254),
                "track_process" => g.track_processes = self.track_refs(e, -254, 254),
                "track_bfd" => g.track_bfds = self.track_bfd_refs(e, &g.name),
                "smtp_alert" => g.smtp_alert = Some(self.arg_bool(e)),
                "sync_group_tracking_weight" => g.sync_group_tracking_weight = self.arg_bool(e),
                "global_tracking" => {
                    self.warn(&e.kw, "'global_tracking' is deprecated; use track_* on the sync group");
                    g.sync_group_tracking_weight = true;
                }
                "notify_deleted" | "notify_priority_changes" => self.unsupported(e, "vrrp_sync_group"),
                _ if e.block.is_none() && e.args.is_empty() => self.warn(
                    &e.kw,
                    format!("'{}' is not a keyword of vrrp_sync_group; instance names belong inside 'group {{ }}'; ignored", e.name()),
                ),
                _ => self.unknown(e, "vrrp_sync_group", &[KW]),
            }
        }
        self.cfg.sync_groups.push(g);
    }

    /// Reports what the grammar said about an entry at its words; returns the entry.
    fn entry<T>(&mut self, e: &Stmt, block: Block, p: Parsed<T>) -> Option<T> {
        let words: Vec<&Token> = std::iter::once(&e.kw).chain(e.args.iter()).collect();
        let mut value = p.value;
        for n in p.notes {
            let (Note::Warn { at, .. } | Note::Skip { at, .. } | Note::Unsupported { at, .. }) = &n;
            let t = words[(*at).min(words.len() - 1)].clone();
            match n {
                Note::Warn { msg, .. } => self.warn(&t, msg),
                Note::Skip { msg, .. } => self.err(&t, msg),
                // ka runs what it applies exactly or not at all: `ka run` refuses the entry.
                Note::Unsupported { msg, .. } if block == Block::Virtual => {
                    value = None;
                    self.fatal(&t, msg);
                }
                Note::Unsupported { msg, .. } => self.warn(&t, format!("{msg}; the entry is not checked further")),
            }
        }
        value
    }

    fn words(e: &Stmt) -> Vec<&str> {
        std::iter::once(&e.kw).chain(e.args.iter()).map(|t| t.text.as_str()).collect()
    }

    /// Parses one address line of `virtual_ipaddress` and the like.
    fn vip(&mut self, e: &Stmt, block: Block) -> Option<VirtualIp> {
        self.no_block(e);
        let p = iproute::address(&Self::words(e), block, e.span());
        self.entry(e, block, p)
    }

    /// Parses one `virtual_routes` / `static_routes` line.
    fn route(&mut self, e: &Stmt, block: Block) -> Option<Route> {
        self.no_block(e);
        let p = iproute::route(&Self::words(e), block, e.span());
        self.entry(e, block, p)
    }

    /// Parses one `virtual_rules` / `static_rules` line.
    fn rule(&mut self, e: &Stmt, block: Block) -> Option<Rule> {
        self.no_block(e);
        let p = iproute::rule(&Self::words(e), block, e.span(), &mut self.rule_prios);
        self.entry(e, block, p)
    }

    fn vrrp_instance(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut vi = VrrpInstance {
            name,
            span: s.span(),
            state: VrrpState::Backup,
            interface: None,
            interface_span: None,
            virtual_router_id: 0,
            priority: 100,
            advert_int: Duration::from_secs(1),
            version: VrrpVersion::V2,
            virtual_ipaddresses: Vec::new(),
            virtual_ipaddresses_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept: None,
            src_ip: None,
            mcast_dst_ip: None,
            unicast_peers: Vec::new(),
            unicast_ttl: 255,
            authentication: None,
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            track_files: Vec::new(),
            track_processes: Vec::new(),
            track_bfds: Vec::new(),
            dont_track_primary: false,
            notify: Notify::default(),
            garp_master_delay: Duration::from_secs(5),
            garp_master_repeat: 5,
            garp_master_refresh: Duration::ZERO,
            garp_master_refresh_repeat: 1,
            strict_mode: false,
            use_vmac: None,
            smtp_alert: None,
            sync_group: None,
            down_timer_adverts: None,
            lower_prio_no_advert: None,
            higher_prio_send_advert: None,
            old_unicast_checksum: false,
            notify_deleted: false,
            skip_check_adv_addr: None,
            check_unicast_src: None,
        };
        let mut d = InstanceDefaults::default();
        // Whether `state` / `priority` were given: keepalived derives each from the other.
        let (mut state_set, mut priority_set) = (false, false);
        for e in self.block(s) {
            let mut notify = std::mem::take(&mut vi.notify);
            let handled = self.notify(e, &mut notify);
            vi.notify = notify;
            if handled {
                continue;
            }
            match e.name() {
                "state" => {
                    if let Some(v) = self.arg_str(e) {
                        match v.as_str() {
                            "MASTER" => (vi.state, state_set) = (VrrpState::Master, true),
                            "BACKUP" => (vi.state, state_set) = (VrrpState::Backup, true),
                            _ => self.err(
                                &e.args[0],
                                format!("unknown state '{v}': expected MASTER or BACKUP"),
                            ),
                        }
                    }
                }
                "interface" => {
                    if let Some(v) = self.arg_str(e) {
                        if v == "lo" {
                            self.err(
                                &e.args[0],
                                format!(
                                    "({}) cannot use a loopback interface (lo) for vrrp",
                                    vi.name
                                ),
                            );
                        } else if v.len() > 15 || v.contains('/') || v.is_empty() {
                            self.err(&e.args[0], format!("'{v}' is not a valid interface name"));
                        } else {
                            vi.interface = Some(v);
                            vi.interface_span = Some(e.args[0].span);
                        }
                    }
                }
                "virtual_router_id" => {
                    if let Some(v) = self.arg_int(e, 1, 255) {
                        vi.virtual_router_id = v as u8;
                    }
                }
                "priority" => {
                    if let Some(v) = self.arg_int(e, 1, 255) {
                        vi.priority = v as u8;
                        priority_set = true;
                    }
                }
                "advert_int" => {
                    if let Some(v) = self.arg_timer(e, 255) {
                        if v < Duration::from_millis(10) {
                            self.err(&e.args[0], "advert_int must be at least 0.01 seconds");
                        } else {
                            vi.advert_int = v;
                        }
                    }
                }
                "version" => {
                    if let Some(v) = self.arg_int(e, 2, 3) {
                        d.version = Some(if v == 2 {
                            VrrpVersion::V2
                        } else {
                            VrrpVersion::V3
                        });
                    }
                }
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                    let mut list = Vec::new();
                    for a in self.block(e) {
                        if let Some(v) = self.vip(a, Block::Virtual) {
                            list.push(v);
                        }
                    }
                    if e.name() == "virtual_ipaddress" {
                        vi.virtual_ipaddresses.extend(list);
                    } else {
                        vi.virtual_ipaddresses_excluded.extend(list);
                    }
                }
                "nopreempt" => {
                    self.no_block(e);
                    vi.preempt = false;
                }
                "preempt" => {
                    self.no_block(e);
                    vi.preempt = true;
                }
                "preempt_delay" => vi.preempt_delay = self.arg_timer(e, 1000).unwrap_or_default(),
                "accept" => {
                    self.no_block(e);
                    vi.accept = Some(true);
                }
                "no_accept" => {
                    self.no_block(e);
                    vi.accept = Some(false);
                }
                "mcast_src_ip" | "unicast_src_ip" => {
                    self.no_block(e);
                    if self.args(e, 1, 1) {
                        vi.src_ip = self.ip_or_prefix(&e.args[0]);
                    }
                }
                "mcast_dst_ip" => {
                    if let Some(a) = self.arg_ip(e) {
                        if a.is_multicast() {
                            vi.mcast_dst_ip = Some(a);
                        } else {
                            self.err(&e.args[0], format!("'{a}' is not a multicast address"));
                        }
                    }
                }
                "unicast_ttl" => vi.unicast_ttl = self.arg_int(e, 0, 255).unwrap_or(255) as u8,
                "unicast_peer" => {
                    for p in self.block(e) {
                        self.no_block(p);
                        let Some(address) = self.ip_or_prefix(&p.kw) else {
                            continue;
                        };
                        let mut peer = UnicastPeer {
                            address,
                            min_ttl: None,
                            max_ttl: None,
                            span: p.span(),
                        };
                        let mut i = 0;
                        while i < p.args.len() {
                            let which = p.args[i].text.clone();
                            match (which.as_str(), p.args.get(i + 1)) {
                                ("min_ttl" | "max_ttl", Some(t)) => {
                                    let v = self.int(t, 0, 255).map(|v| v as u8);
                                    if which == "min_ttl" {
                                        peer.min_ttl = v;
                                    } else {
                                        peer.max_ttl = v;
                                    }
                                    i += 2;
                                }
                                _ => {
                                    let t = p.args[i].clone();
                                    self.err(&t, format!("unexpected '{which}' in unicast_peer (expected min_ttl N or max_ttl N)"));
                                    i += 1;
                                }
                            }
                        }
                        vi.unicast_peers.push(peer);
                    }
                }
                "authentication" => {
                    let mut auth_type = None;
                    let mut pass = String::new();
                    for a in self.block(e) {
                        match a.name() {
                            "auth_type" => match self.arg_str(a).as_deref() {
                                Some("PASS") => auth_type = Some((AuthType::Pass, a.args[0].span)),
                                Some("AH") => auth_type = Some((AuthType::Ah, a.args[0].span)),
                                Some(o) => self.err(
                                    &a.args[0],
                                    format!("unknown auth_type '{o}': expected PASS or AH"),
                                ),
                                None => {}
                            },
                            "auth_pass" => {
                                if let Some(p) = self.arg_str(a) {
                                    if p.len() > 8 {
                                        self.warn(&a.args[0], "auth_pass longer than 8 characters; only the first 8 are used");
                                    }
                                    pass = p.chars().take(8).collect();
                                }
                            }
                            _ => self.unknown(a, "authentication", &[&["auth_type", "auth_pass"]]),
                        }
                    }
                    self.warn(&e.kw, "VRRP authentication was removed from the VRRP specification (RFC 3768); PASS and AH are still sent and checked, as keepalived does, for peers that use them");
                    match auth_type {
                        Some((t, type_span)) => {
                            vi.authentication = Some(Authentication {
                                auth_type: t,
                                auth_pass: pass,
                                span: e.span(),
                                type_span,
                            })
                        }
                        None => self.err(&e.kw, "authentication needs an auth_type (PASS or AH)"),
                    }
                }
                "track_interface" => vi.track_interfaces = self.track_interfaces(e),
                "track_script" => vi.track_scripts = self.track_refs(e, -253, 253),
                "track_file" => vi.track_files = self.track_refs(e, -254, 254),
                "track_process" => vi.track_processes = self.track_refs(e, -254, 254),
                "down_timer_adverts" => vi.down_timer_adverts = self.arg_int(e, 1, 100).map(|v| v as u8),
                "lower_prio_no_advert" => vi.lower_prio_no_advert = Some(self.arg_bool(e)),
                "higher_prio_send_advert" => vi.higher_prio_send_advert = Some(self.arg_bool(e)),
                "old_unicast_checksum" => {
                    // keepalived: `old_unicast_checksum [never]`; `never` keeps the standard one.
                    self.no_block(e);
                    vi.old_unicast_checksum = e.args.first().is_none_or(|a| a.text != "never");
                }
                "notify_deleted" => vi.notify_deleted = self.arg_bool(e),
                "skip_check_adv_addr" => vi.skip_check_adv_addr = Some(self.arg_bool(e)),
                "check_unicast_src" => vi.check_unicast_src = Some(self.arg_bool(e)),
                "track_bfd" => vi.track_bfds = self.track_bfd_refs(e, &vi.name),
                "dont_track_primary" => {
                    self.no_block(e);
                    vi.dont_track_primary = true;
                }
                "garp_master_delay" => d.garp_master_delay = self.arg_secs(e, 0, 4294),
                "garp_master_repeat" => {
                    d.garp_master_repeat = self.arg_int(e, 1, U32).map(|v| v as u32)
                }
                "garp_master_refresh" => d.garp_master_refresh = self.arg_secs(e, 0, U32),
                "garp_master_refresh_repeat" => {
                    d.garp_master_refresh_repeat = self.arg_int(e, 1, U32).map(|v| v as u32)
                }
                "strict_mode" => d.strict_mode = Some(self.arg_bool(e)),
                "use_vmac" => {
                    self.no_block(e);
                    vi.use_vmac = Some(e.args.first().map(|t| t.text.clone()));
                }
                "virtual_routes" => {
                    for r in self.block(e) {
                        if let Some(r) = self.route(r, Block::Virtual) {
                            vi.virtual_routes.push(r);
                        }
                    }
                }
                "virtual_rules" => {
                    for r in self.block(e) {
                        if let Some(r) = self.rule(r, Block::Virtual) {
                            vi.virtual_rules.push(r);
                        }
                    }
                }
                "lvs_sync_daemon_interface" => {
                    // keepalived 2.2: deprecated, but still the sync daemon on this instance.
                    self.warn(&e.kw, format!("({}) lvs_sync_daemon_interface in a vrrp_instance is deprecated; use global lvs_sync_daemon", vi.name));
                    if let Some(iface) = self.arg_str(e) {
                        match &self.cfg.global.lvs_sync_daemon {
                            Some(d) => {
                                let msg = format!("({}) lvs_sync_daemon_interface has already been specified as {}", vi.name, d.interface);
                                self.err(&e.kw, msg);
                            }
                            None => {
                                self.cfg.global.lvs_sync_daemon = Some(LvsSyncDaemon {
                                    interface: iface,
                                    instance: vi.name.clone(),
                                    syncid: None,
                                    maxlen: None,
                                    port: None,
                                    ttl: None,
                                    group: None,
                                    span: e.span(),
                                });
                            }
                        }
                    }
                }
                "smtp_alert" => vi.smtp_alert = Some(self.arg_bool(e)),
                n if VRRP_UNSUPPORTED.contains(&n) => {
                    self.unsupported(e, "vrrp_instance");
                }
                _ => self.unknown(e, "vrrp_instance", &[VRRP_SUPPORTED, VRRP_UNSUPPORTED]),
            }
        }
        // keepalived 2.2 (vrrp_complete_instance): with no priority, a MASTER is the address
        // owner (255) and anything else gets 100; with no state, the owner starts MASTER and
        // anything else BACKUP.
        (vi.priority, vi.state) = derive_state_priority(state_set.then_some(vi.state), priority_set.then_some(vi.priority));
        self.cfg.vrrp_instances.push(vi);
        self.inst_defaults.push(d);
    }

    fn lb_algo(&mut self, e: &Stmt) -> Option<LbAlgo> {
        let v = self.arg_str(e)?;
        match LbAlgo::ALL.iter().find(|(n, _)| *n == v) {
            Some((_, a)) => Some(*a),
            None => {
                self.err(&e.args[0], format!("unknown scheduler '{v}' (rr|wrr|lc|wlc|lblc|lblcr|sh|mh|dh|fo|ovf|sed|nq|twos)"));
                None
            }
        }
    }

    fn lb_kind(&mut self, e: &Stmt) -> Option<LbKind> {
        self.no_block(e);
        if !self.args(e, 1, 6) {
            return None;
        }
        match e.args[0].text.as_str() {
            "NAT" => Some(LbKind::Nat),
            "DR" => Some(LbKind::Dr),
            "TUN" => {
                let mut ty = TunnelType::Ipip;
                if e.args.get(1).map(|t| t.text.as_str()) == Some("type") {
                    match e.args.get(2).map(|t| t.text.as_str()) {
                        Some("ipip") => {}
                        Some("gre") => ty = TunnelType::Gre,
                        Some("gue") => {
                            let port = match (e.args.get(3).map(|t| t.text.as_str()), e.args.get(4))
                            {
                                (Some("port"), Some(p)) => self.port(p),
                                _ => {
                                    self.err(&e.args[2], "tunnel type gue needs 'port NUM'");
                                    None
                                }
                            };
                            ty = TunnelType::Gue(port.unwrap_or(0));
                        }
                        _ => self.err(&e.args[1], "tunnel type must be ipip, gue port NUM or gre"),
                    }
                }
                Some(LbKind::Tun(ty))
            }
            o => {
                self.err(
                    &e.args[0],
                    format!("unknown forwarding method '{o}': expected NAT, DR or TUN"),
                );
                None
            }
        }
    }

    /// Timing keywords shared by virtual servers, real servers and checkers (`checker`: a
    /// checker block, where keepalived accepts `retry 0`; elsewhere ka warns).
    fn timing(&mut self, e: &Stmt, t: &mut CheckTiming, checker: bool) -> bool {
        match e.name() {
            "connect_timeout" => {
                t.connect_timeout = self
                    .arg_timer_us(e, 1, U32_US)
                    .unwrap_or(t.connect_timeout)
            }
            "delay_loop" => {
                if let Some(v) = self.arg_timer_us(e, 0, U64_US) {
                    if v.is_zero() {
                        self.err(&e.args[0], "delay_loop must be greater than 0");
                    } else {
                        t.delay_loop = v;
                    }
                }
            }
            "retry" | "nb_get_retry" => {
                t.retry = self.arg_int(e, 0, U32).map(|v| v as u32);
                if !checker && t.retry == Some(0) {
                    self.warn(
                        &e.args[0],
                        "keepalived 2.2.7 rejects 'retry 0' outside a checker (it keeps the default); ka uses 0",
                    );
                }
            }
            "delay_before_retry" => t.delay_before_retry = self.arg_timer_us(e, 0, U64_US),
            "warmup" => t.warmup = self.arg_timer_us(e, 0, U64_US),
            "alpha" => t.alpha = self.arg_bool(e),
            "inhibit_on_failure" => t.inhibit_on_failure = self.arg_bool(e),
            _ => return false,
        }
        true
    }

    /// `sh-port`, `sh-fallback`, `mh-port`, `mh-fallback` as keepalived 2.2.7 reads them
    /// (`lbflags_handler`): they count only after `lb_algo sh` (the `sh-` ones) or `lb_algo mh`
    /// (the `mh-` ones); under another scheduler, or before any, they are ignored.
    fn sched_flag(&mut self, e: &Stmt, name: &str, sched: Option<LbAlgo>, vs: &mut VirtualServer) {
        self.no_block(e);
        let (algo, what) = name.split_once('-').unwrap_or((name, ""));
        match sched {
            Some(a) if a.as_str() == algo => {
                if what == "port" {
                    vs.hash_port = true;
                } else {
                    vs.hash_fallback = true;
                }
            }
            Some(a @ (LbAlgo::Sh | LbAlgo::Mh)) => self.err(&e.kw, format!("{name} applies to the {algo} scheduler, not {}", a.as_str())),
            _ => self.err(&e.kw, format!("{name} only applies to the {algo} scheduler (set after 'lb_algo {algo}')")),
        }
    }

    fn virtual_server(&mut self, s: &Stmt) {
        let key = match s.args.first().map(|t| t.text.as_str()) {
            None => {
                self.err(
                    &s.kw,
                    "virtual_server needs an address and port, 'fwmark N' or 'group NAME'",
                );
                None
            }
            Some("fwmark") => match s.args.get(1) {
                Some(t) => self
                    .int(t, 1, i64::from(u32::MAX))
                    .map(|m| VsKey::Fwmark(m as u32)),
                None => {
                    self.err(&s.args[0], "'fwmark' needs a number");
                    None
                }
            },
            Some("group") => match s.args.get(1) {
                Some(t) => Some(VsKey::Group(t.text.clone())),
                None => {
                    self.err(&s.args[0], "'group' needs a virtual_server_group name");
                    None
                }
            },
            Some(_) => {
                let addr = self.ip(&s.args[0]);
                let port = match s.args.get(1) {
                    Some(p) => self.port(p),
                    None => Some(0),
                };
                addr.zip(port)
                    .map(|(addr, port)| VsKey::Addr { addr, port })
            }
        };
        if s.args.len() > 2 {
            self.warn(
                &s.args[2],
                format!(
                    "virtual_server: extra argument '{}' ignored",
                    s.args[2].text
                ),
            );
        }
        let mut vs = VirtualServer {
            key: key.clone().unwrap_or(VsKey::Fwmark(0)),
            span: s.span(),
            lb_algo: LbAlgo::Wlc,
            lb_algo_span: None,
            lb_kind: LbKind::Nat,
            protocol: Protocol::Tcp,
            protocol_span: None,
            persistence_timeout: None,
            persistence_granularity: None,
            persistence_engine: None,
            ops: false,
            hash_port: false,
            hash_fallback: false,
            ha_suspend: false,
            omega: false,
            virtualhost: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            ipv6_family: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            timing: CheckTiming::default(),
            smtp_alert: None,
            real_servers: Vec::new(),
        };
        let mut rs_stmts = Vec::new();
        let mut sorry = None;
        let mut sorry_kind = None;
        // The scheduler as keepalived knows it when a flag is read (none before `lb_algo`).
        let mut sched = None;
        for e in self.block(s) {
            if self.timing(e, &mut vs.timing, false) {
                continue;
            }
            match e.name() {
                "lb_algo" | "lvs_sched" => {
                    vs.lb_algo_span = Some(e.kw.span);
                    if let Some(a) = self.lb_algo(e) {
                        vs.lb_algo = a;
                        sched = Some(a);
                    }
                }
                "flag-1" => vs.hash_fallback = true,
                "flag-2" => vs.hash_port = true,
                // IPVS defines the bit, no scheduler reads it.
                "flag-3" => {}
                n @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => self.sched_flag(e, n, sched, &mut vs),
                "sorry_server_lvs_method" => {
                    if sorry.is_none() {
                        self.err(&e.kw, "sorry_server_lvs_method used without (or before) sorry_server");
                    } else if let Some(k) = self.lb_kind(e) {
                        sorry_kind = Some(k);
                    }
                }
                "lb_kind" | "lvs_method" => vs.lb_kind = self.lb_kind(e).unwrap_or(vs.lb_kind),
                "protocol" => {
                    if let Some(p) = self.arg_str(e) {
                        vs.protocol_span = Some(e.args[0].span);
                        match p.as_str() {
                            "TCP" => vs.protocol = Protocol::Tcp,
                            "UDP" => vs.protocol = Protocol::Udp,
                            "SCTP" => vs.protocol = Protocol::Sctp,
                            _ => self.err(
                                &e.args[0],
                                format!("unknown protocol '{p}': expected TCP, UDP or SCTP"),
                            ),
                        }
                    }
                }
                "persistence_timeout" => {
                    self.no_block(e);
                    vs.persistence_timeout = match e.args.first() {
                        None => Some(Duration::from_secs(360)),
                        // keepalived 2.2.7: at most 31 days.
                        Some(t) => self
                            .int(t, 1, 2_678_400)
                            .map(|v| Duration::from_secs(v as u64)),
                    };
                }
                "persistence_granularity" => {
                    vs.persistence_granularity = self.arg_ip(e);
                }
                "persistence_engine" => {
                    vs.persistence_engine = self.arg_str(e);
                    self.unsupported(e, "virtual_server");
                }
                "quorum" => vs.quorum = self.arg_int(e, 1, i64::from(u32::MAX)).unwrap_or(1) as u32,
                "hysteresis" => {
                    vs.hysteresis = self.arg_int(e, 0, i64::from(u32::MAX)).unwrap_or(0) as u32;
                }
                "quorum_up" | "quorum_down" => {
                    let sc = self.script(e);
                    if e.name() == "quorum_up" {
                        vs.quorum_up = sc;
                    } else {
                        vs.quorum_down = sc;
                    }
                }
                "ip_family" => {
                    match self.arg_str(e).as_deref() {
                        Some("inet") => vs.ipv6_family = Some(false),
                        Some("inet6") => vs.ipv6_family = Some(true),
                        Some(o) => self.err(
                            &e.args[0],
                            format!("ip_family must be inet or inet6, not '{o}'"),
                        ),
                        None => {}
                    }
                    self.unsupported(e, "virtual_server");
                }
                "sorry_server" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        sorry = Some(e.clone());
                    }
                }
                "sorry_server_inhibit" => vs.sorry_server_inhibit = self.arg_bool(e),
                "ops" => vs.ops = self.arg_bool(e),
                "ha_suspend" => {
                    vs.ha_suspend = self.arg_bool(e);
                }
                "omega" => {
                    vs.omega = self.arg_bool(e);
                }
                "virtualhost" => {
                    // The default Host of the HTTP_GET/SSL_GET checkers below (keepalived:
                    // url > checker > real_server > virtual_server), inherited when they are built.
                    vs.virtualhost = self.arg_str(e);
                }
                "smtp_alert" => {
                    vs.smtp_alert = Some(self.arg_bool(e));
                }
                "real_server" => rs_stmts.push(e),
                n if VS_UNSUPPORTED.contains(&n) => self.unsupported(e, "virtual_server"),
                _ => self.unknown(
                    e,
                    "virtual_server",
                    &[VS_SUPPORTED, VS_UNSUPPORTED, &["nb_get_retry"]],
                ),
            }
        }
        let vs_port = match vs.key {
            VsKey::Addr { port, .. } => port,
            _ => 0,
        };
        if let Some(e) = sorry {
            if let Some(address) = self.ip(&e.args[0]) {
                let port = e.args.get(1).and_then(|p| self.port(p)).unwrap_or(vs_port);
                vs.sorry_server = Some(RealServer {
                    address,
                    port,
                    weight: 1,
                    lb_kind: sorry_kind.unwrap_or(vs.lb_kind),
                    notify_up: None,
                    notify_down: None,
                    uthreshold: None,
                    lthreshold: None,
                    virtualhost: None,
                    timing: vs.timing,
                    smtp_alert: None,
                    checkers: Vec::new(),
                    span: e.span(),
                    end: e.end,
                });
            }
        }
        for e in rs_stmts {
            if let Some(rs) = self.real_server(e, &vs, vs_port) {
                vs.real_servers.push(rs);
            }
        }
        if vs.protocol_span.is_none() && !matches!(vs.key, VsKey::Fwmark(_)) {
            // keepalived 2.2.7 (check_parser.c) falls back to UDP, with this warning.
            vs.protocol = Protocol::Udp;
            let at = Token {
                span: s.end,
                ..s.kw.clone()
            };
            self.warn(&at, "virtual server has no protocol set - defaulting to UDP, as keepalived 2.2 does; add 'protocol TCP' if that is meant");
        }
        if key.is_some() {
            self.cfg.virtual_servers.push(vs);
        }
    }

    fn real_server(&mut self, s: &Stmt, vs: &VirtualServer, vs_port: u16) -> Option<RealServer> {
        if s.args.is_empty() {
            self.err(&s.kw, "real_server needs an address and port");
            let _ = self.block(s);
            return None;
        }
        let address = self.ip(&s.args[0]);
        let port = match s.args.get(1) {
            Some(p) => self.port(p),
            None => Some(vs_port),
        };
        let mut rs = RealServer {
            address: address.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: port.unwrap_or(0),
            weight: 1,
            lb_kind: vs.lb_kind,
            notify_up: None,
            notify_down: None,
            uthreshold: None,
            lthreshold: None,
            virtualhost: vs.virtualhost.clone(),
            timing: vs.timing,
            smtp_alert: None,
            checkers: Vec::new(),
            span: s.span(),
            end: s.end,
        };
        let mut checker_stmts = Vec::new();
        for e in self.block(s) {
            if self.timing(e, &mut rs.timing, false) {
                continue;
            }
            match e.name() {
                "weight" => rs.weight = self.arg_int(e, 0, I32).unwrap_or(1) as i32,
                "lb_kind" | "lvs_method" => rs.lb_kind = self.lb_kind(e).unwrap_or(rs.lb_kind),
                "notify_up" => {
                    rs.notify_up = self.script(e);
                }
                "notify_down" => {
                    rs.notify_down = self.script(e);
                }
                "uthreshold" | "lthreshold" => {
                    let v = self.arg_int(e, 0, i64::from(u32::MAX)).map(|v| v as u32);
                    if e.name() == "uthreshold" {
                        rs.uthreshold = v;
                    } else {
                        rs.lthreshold = v;
                    }
                }
                "virtualhost" => {
                    // The default Host of this real server's HTTP_GET/SSL_GET checkers.
                    rs.virtualhost = self.arg_str(e);
                }
                "smtp_alert" => {
                    rs.smtp_alert = Some(self.arg_bool(e));
                }
                n if CHECKERS_SUPPORTED.contains(&n) || CHECKERS_UNSUPPORTED.contains(&n) => {
                    checker_stmts.push(e)
                }
                n if RS_UNSUPPORTED.contains(&n) => self.unsupported(e, "real_server"),
                _ => self.unknown(
                    e,
                    "real_server",
                    &[
                        RS_SUPPORTED,
                        RS_UNSUPPORTED,
                        CHECKERS_SUPPORTED,
                        CHECKERS_UNSUPPORTED,
                    ],
                ),
            }
        }
        for e in checker_stmts {
            if let Some(c) = self.checker(e, &rs) {
                rs.checkers.push(c);
            }
        }
        address.zip(port).map(|_| rs)
    }

    fn checker(&mut self, s: &Stmt, rs: &RealServer) -> Option<Checker> {
        let name = s.name();
        if CHECKERS_UNSUPPORTED.contains(&name) {
            self.unsupported(s, "real_server");
        }
        if !s.args.is_empty() {
            self.warn(
                &s.args[0],
                format!("{name}: extra argument '{}' ignored", s.args[0].text),
            );
        }
        let mut kind = match name {
            "TCP_CHECK" => CheckerKind::Tcp,
            "HTTP_GET" | "SSL_GET" => CheckerKind::Http {
                ssl: name == "SSL_GET",
                urls: Vec::new(),
                http_protocol: None,
                virtualhost: rs.virtualhost.clone(),
                enable_sni: false,
                fast_recovery: false,
            },
            "MISC_CHECK" => CheckerKind::Misc {
                path: None,
                timeout: None,
                dynamic: false,
                user: None,
            },
            "SMTP_CHECK" => CheckerKind::Smtp { helo_name: None },
            "DNS_CHECK" => CheckerKind::Dns {
                qtype: "SOA".into(),
                name: ".".into(),
            },
            "UDP_CHECK" => CheckerKind::Udp {
                payload: None,
                require_reply: false,
                min_reply_length: 0,
                max_reply_length: 255,
            },
            "PING_CHECK" => CheckerKind::Ping,
            "BFD_CHECK" => CheckerKind::Bfd { name: None },
            _ => CheckerKind::File {
                track_file: None,
                dynamic: false,
                weight: None,
            },
        };
        let mut t = rs.timing;
        t.retry = None;
        t.delay_before_retry = None;
        let mut c = Checker {
            kind: CheckerKind::Tcp,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            connect_timeout: Duration::ZERO,
            delay_loop: Duration::ZERO,
            retry: 0,
            delay_before_retry: Duration::ZERO,
            warmup: Duration::ZERO,
            alpha: false,
            log_all_failures: false,
            span: s.span(),
        };
        let retry_rs = rs.timing.retry;
        let dbr_rs = rs.timing.delay_before_retry;
        for e in self.block(s) {
            if e.name() == "nb_get_retry" {
                if matches!(kind, CheckerKind::Http { .. }) {
                    // keepalived 2.2 (check_http.c) still reads it for HTTP_GET/SSL_GET.
                    self.warn(&e.kw, "nb_get_retry is deprecated - please use 'retry'");
                } else {
                    self.err(
                        &e.kw,
                        format!("unknown keyword 'nb_get_retry' in {name} (keepalived 2.2 reads it only in HTTP_GET/SSL_GET); did you mean 'retry'?"),
                    );
                    continue;
                }
            }
            if self.timing(e, &mut t, true) {
                continue;
            }
            match (e.name(), &mut kind) {
                ("connect_ip", _) => c.connect_ip = self.arg_ip(e),
                ("connect_port", _) => {
                    c.connect_port = self.arg_str(e).and_then(|_| self.port(&e.args[0]))
                }
                ("bindto", _) => c.bindto = self.arg_ip(e),
                ("bind_port", _) => {
                    c.bind_port = self.arg_str(e).and_then(|_| self.port(&e.args[0]))
                }
                ("bind_if", _) => c.bind_if = self.arg_str(e),
                ("fwmark", _) => {
                    c.fwmark = self.arg_int(e, 0, i64::from(u32::MAX)).map(|v| v as u32)
                }
                ("log_all_failures", _) => c.log_all_failures = self.arg_bool(e),
                ("url", CheckerKind::Http { urls, .. }) => {
                    let mut u = HttpUrl {
                        path: String::new(),
                        digest: None,
                        status_codes: Vec::new(),
                        virtualhost: None,
                        regex: None,
                        regex_no_match: false,
                        span: e.span(),
                    };
                    let mut has_path = false;
                    for x in self.block(e) {
                        match x.name() {
                            "path" => {
                                if let Some(p) = self.arg_str(x) {
                                    u.path = p;
                                    has_path = true;
                                }
                            }
                            "digest" => {
                                if let Some(dg) = self.arg_str(x) {
                                    if dg.len() != 32 || !dg.chars().all(|c| c.is_ascii_hexdigit())
                                    {
                                        self.err(
                                            &x.args[0],
                                            format!(
                                                "digest '{dg}' is not 32 hex digits (an MD5 sum)"
                                            ),
                                        );
                                    }
                                    u.digest = Some(dg);
                                }
                            }
                            "status_code" => {
                                self.no_block(x);
                                if self.args(x, 1, usize::MAX) {
                                    for a in &x.args {
                                        let r = match a.text.split_once('-') {
                                            Some((lo, hi)) => {
                                                lo.parse::<u16>().ok().zip(hi.parse::<u16>().ok())
                                            }
                                            None => a.text.parse::<u16>().ok().map(|v| (v, v)),
                                        };
                                        match r {
                                            Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                                                u.status_codes.push(StatusRange { first: lo, last: hi })
                                            }
                                            _ => self.err(a, format!("invalid status code '{}' (100-599 or a range like 200-299)", a.text)),
                                        }
                                    }
                                }
                            }
                            "virtualhost" => u.virtualhost = self.arg_str(x),
                            "regex" => {
                                u.regex = self.arg_str(x);
                                self.unsupported(x, "url");
                            }
                            "regex_no_match" => {
                                u.regex_no_match = true;
                                self.unsupported(x, "url");
                            }
                            "regex_options" | "regex_stack" | "regex_min_offset"
                            | "regex_max_offset" => self.unsupported(x, "url"),
                            _ => self.unknown(
                                x,
                                "url",
                                &[&[
                                    "path",
                                    "digest",
                                    "status_code",
                                    "virtualhost",
                                    "regex",
                                    "regex_no_match",
                                    "regex_options",
                                    "regex_stack",
                                    "regex_min_offset",
                                    "regex_max_offset",
                                ]],
                            ),
                        }
                    }
                    if !has_path {
                        self.err(&e.kw, "url needs a path");
                    }
                    if u.status_codes.is_empty() && u.digest.is_none() {
                        u.status_codes.push(StatusRange {
                            first: 200,
                            last: 299,
                        });
                    }
                    urls.push(u);
                }
                ("http_protocol", CheckerKind::Http { http_protocol, .. }) => {
                    if let Some(p) = self.arg_str(e) {
                        if !matches!(p.as_str(), "1.0" | "1.0C" | "1.0c" | "1.1") {
                            self.err(
                                &e.args[0],
                                format!("http_protocol must be 1.0, 1.0C or 1.1, not '{p}'"),
                            );
                        }
                        *http_protocol = Some(p);
                    }
                }
                ("virtualhost", CheckerKind::Http { virtualhost, .. }) => {
                    *virtualhost = self.arg_str(e)
                }
                ("enable_sni", CheckerKind::Http { enable_sni, .. }) => {
                    *enable_sni = self.arg_bool(e)
                }
                ("fast_recovery", CheckerKind::Http { fast_recovery, .. }) => {
                    *fast_recovery = self.arg_bool(e)
                }
                ("misc_path", CheckerKind::Misc { path, .. }) => *path = self.arg_str(e),
                ("misc_timeout", CheckerKind::Misc { timeout, .. }) => {
                    // keepalived: whole seconds, 0 meaning the default (the delay_loop).
                    *timeout = self.arg_secs(e, 0, 4294).filter(|d| !d.is_zero())
                }
                ("misc_dynamic", CheckerKind::Misc { dynamic, .. }) => *dynamic = self.arg_bool(e),
                ("user", CheckerKind::Misc { user, .. }) => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        *user = self.user(e, 0);
                    }
                }
                ("helo_name", CheckerKind::Smtp { helo_name }) => *helo_name = self.arg_str(e),
                ("host", CheckerKind::Smtp { .. }) => {
                    self.warn(&e.kw, "'host' in SMTP_CHECK is deprecated (use one SMTP_CHECK per host with connect_ip); accepted, not supported yet");
                    for x in self.block(e) {
                        match x.name() {
                            "connect_ip" | "bindto" => {
                                let _ = self.arg_ip(x);
                            }
                            "connect_port" | "bind_port" => {
                                if self.args(x, 1, 1) {
                                    let _ = self.port(&x.args[0]);
                                }
                            }
                            "bind_if" | "fwmark" | "connect_timeout" | "retry"
                            | "delay_before_retry" | "warmup" => {}
                            _ => self.unknown(
                                x,
                                "host",
                                &[&[
                                    "connect_ip",
                                    "connect_port",
                                    "bindto",
                                    "bind_port",
                                    "bind_if",
                                    "fwmark",
                                    "connect_timeout",
                                ]],
                            ),
                        }
                    }
                }
                ("type", CheckerKind::Dns { qtype, .. }) => {
                    if let Some(v) = self.arg_str(e) {
                        if !matches!(
                            v.as_str(),
                            "A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA"
                        ) {
                            self.err(
                                &e.args[0],
                                format!(
                                    "unknown DNS query type '{v}' (A|NS|CNAME|SOA|MX|TXT|AAAA)"
                                ),
                            );
                        }
                        *qtype = v;
                    }
                }
                ("name", CheckerKind::Dns { name, .. }) => {
                    *name = self.arg_str(e).unwrap_or_else(|| ".".into())
                }
                ("payload", CheckerKind::Udp { payload, .. }) => *payload = Some(self.hex(e)),
                ("require_reply", CheckerKind::Udp { require_reply, .. }) => {
                    *require_reply = true;
                    if !e.args.is_empty() {
                        let _ = self.hex(e);
                    }
                }
                (
                    "min_reply_length",
                    CheckerKind::Udp {
                        min_reply_length, ..
                    },
                ) => *min_reply_length = self.arg_int(e, 0, 65535).unwrap_or(0) as u32,
                (
                    "max_reply_length",
                    CheckerKind::Udp {
                        max_reply_length, ..
                    },
                ) => *max_reply_length = self.arg_int(e, 0, 65535).unwrap_or(255) as u32,
                ("name", CheckerKind::Bfd { name }) => *name = self.bfd_check_name(e),
                ("track_file", CheckerKind::File { track_file, .. }) => {
                    *track_file = self.arg_str(e)
                }
                ("dynamic", CheckerKind::File { dynamic, .. }) => *dynamic = self.arg_bool(e),
                ("weight", CheckerKind::File { weight, .. }) => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        *weight = self.int(&e.args[0], -2_147_483_647, 2_147_483_647);
                        let _ = self.reverse(e, 1);
                    }
                }
                _ => {
                    let ctx = name.to_string();
                    self.unknown(
                        e,
                        &ctx,
                        &[&[
                            "connect_ip",
                            "connect_port",
                            "bindto",
                            "bind_port",
                            "bind_if",
                            "fwmark",
                            "connect_timeout",
                            "retry",
                            "delay_before_retry",
                            "warmup",
                            "delay_loop",
                            "alpha",
                            "log_all_failures",
                            "url",
                            "http_protocol",
                            "virtualhost",
                            "enable_sni",
                            "fast_recovery",
                            "misc_path",
                            "misc_timeout",
                            "misc_dynamic",
                            "user",
                            "helo_name",
                            "type",
                            "name",
                            "payload",
                            "require_reply",
                            "min_reply_length",
                            "max_reply_length",
                            "track_file",
                            "dynamic",
                            "weight",
                        ]],
                    );
                }
            }
        }
        // keepalived's per-type defaults (check_*.c): retry 1 (DNS 3, MISC 0), delay_before_retry
        // 3 s for HTTP/SSL, delay_loop for DNS, 1 s otherwise.
        let (def_retry, def_dbr) = match &kind {
            CheckerKind::Dns { .. } => (3, t.delay_loop),
            CheckerKind::Misc { .. } => (0, Duration::from_secs(1)),
            CheckerKind::Http { .. } => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        c.retry = t.retry.or(retry_rs).unwrap_or(def_retry);
        c.delay_before_retry = t.delay_before_retry.or(dbr_rs).unwrap_or(def_dbr);
        c.connect_timeout = t.connect_timeout;
        c.delay_loop = t.delay_loop;
        c.warmup = t.warmup.unwrap_or(t.delay_loop);
        c.alpha = t.alpha;
        // keepalived 2.2 removes a checker that cannot check anything ("- ignoring"); so does ka.
        let unusable = match &kind {
            CheckerKind::Http { urls, .. } if urls.is_empty() => Some((
                Token {
                    span: s.end,
                    ..s.kw.clone()
                },
                format!("{name} has no url {{ path ... }}; it cannot check anything; the checker is"),
            )),
            CheckerKind::Misc { path: None, .. } => {
                Some((s.kw.clone(), "MISC_CHECK needs a misc_path; the checker is".to_owned()))
            }
            // A `name` that named no usable bfd_instance was reported where it was written.
            CheckerKind::Bfd { name: None } if s.block.iter().flatten().any(|e| e.name() == "name") => return None,
            CheckerKind::Bfd { name: None } => {
                Some((s.kw.clone(), "BFD_CHECK needs a name; the checker is".to_owned()))
            }
            CheckerKind::File {
                track_file: None, ..
            } => Some((s.kw.clone(), "FILE_CHECK needs a track_file; the checker is".to_owned())),
            _ => None,
        };
        if let Some((at, msg)) = unusable {
            self.err(&at, msg);
            return None;
        }
        c.kind = kind;
        Some(c)
    }

    fn hex(&mut self, e: &Stmt) -> Vec<u8> {
        let mut out = Vec::new();
        for a in &e.args {
            let digits: Vec<u32> = a
                .text
                .chars()
                .filter_map(|c| {
                    c.to_digit(16)
                        .or(if c == 'x' || c == 'X' { Some(0) } else { None })
                })
                .collect();
            if digits.len() != a.text.len() {
                self.err(a, format!("'{}' is not a hex string", a.text));
                continue;
            }
            if digits.len() % 2 == 1 {
                out.push(digits[0] as u8);
            }
            for p in digits[digits.len() % 2..].chunks(2) {
                out.push((p[0] << 4 | p[1]) as u8);
            }
        }
        out
    }

    fn vs_group(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut g = VirtualServerGroup {
            name,
            entries: Vec::new(),
            span: s.span(),
        };
        for e in self.block(s) {
            self.no_block(e);
            if e.name() == "fwmark" {
                if let Some(m) = self.arg_int(e, 0, U32) {
                    g.entries.push(VsgEntry::Fwmark {
                        mark: m as u32,
                        span: e.span(),
                    });
                }
                continue;
            }
            let port = match e.args.first() {
                Some(p) => self.port(p).unwrap_or(0),
                None => 0,
            };
            match parse_range(&e.kw.text) {
                Some((first, last)) => g.entries.push(VsgEntry::Range {
                    first,
                    last,
                    port,
                    span: e.span(),
                }),
                None => self.err(&e.kw, format!("invalid address or range '{}'", e.kw.text)),
            }
        }
        self.cfg.virtual_server_groups.push(g);
    }

    fn track_file(&mut self, s: &Stmt) {
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

    fn track_process(&mut self, s: &Stmt) {
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

    fn garp_group(&mut self, s: &Stmt) {
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

    fn ssl(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let mut c = SslConfig {
            span: s.span(),
            ..Default::default()
        };
        for e in self.block(s) {
            match e.name() {
                "password" => c.password = self.arg_str(e),
                "ca" => c.ca = self.arg_str(e),
                "certificate" => c.certificate = self.arg_str(e),
                "key" => c.key = self.arg_str(e),
                _ => self.unknown(e, "SSL", &[&["password", "ca", "certificate", "key"]]),
            }
        }
        self.cfg.ssl = Some(c);
    }

    /// Applies the defaults that come from `global_defs` (which may appear after the instances).
    pub fn finish(mut self) -> (Config, Vec<String>) {
        let g = self.cfg.global.clone();
        for (vi, d) in self
            .cfg
            .vrrp_instances
            .iter_mut()
            .zip(self.inst_defaults.iter())
        {
            let v6 = vi
                .virtual_ipaddresses
                .first()
                .is_some_and(|v| v.address.is_ipv6());
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
        (self.cfg, self.removed_scripts)
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

/// Parses `A`, `A-B` (last byte/group), `A-FULL` or `A/nn` into an inclusive address range.
pub fn parse_range(s: &str) -> Option<(IpAddr, IpAddr)> {
    if let Some((a, l)) = s.split_once('/') {
        let p: IpPrefix = s.parse().ok()?;
        let _ = (a, l);
        return Some(match p.addr {
            IpAddr::V4(v) => {
                let mask = if p.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - p.len)
                };
                let base = u32::from(v) & mask;
                (
                    IpAddr::from(base.to_be_bytes()),
                    IpAddr::from((base | !mask).to_be_bytes()),
                )
            }
            IpAddr::V6(v) => {
                let mask = if p.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - p.len)
                };
                let base = u128::from(v) & mask;
                (
                    IpAddr::from(base.to_be_bytes()),
                    IpAddr::from((base | !mask).to_be_bytes()),
                )
            }
        });
    }
    let Some((a, b)) = s.rsplit_once('-') else {
        let ip: IpAddr = s.parse().ok()?;
        return Some((ip, ip));
    };
    let first: IpAddr = a.parse().ok()?;
    if let Ok(last) = b.parse::<IpAddr>() {
        return (last.is_ipv4() == first.is_ipv4() && last >= first).then_some((first, last));
    }
    match first {
        IpAddr::V4(v) => {
            let end: u8 = b.parse().ok()?;
            let mut o = v.octets();
            if end < o[3] {
                return None;
            }
            o[3] = end;
            Some((first, IpAddr::from(o)))
        }
        IpAddr::V6(v) => {
            let end = u16::from_str_radix(b, 16).ok()?;
            let mut seg = v.segments();
            if end < seg[7] {
                return None;
            }
            seg[7] = end;
            Some((first, IpAddr::from(seg)))
        }
    }
}

/// keepalived 2.2's defaults of a `vrrp_instance`'s `priority` and initial `state`, each
/// derived from the other when missing (`vrrp_complete_instance`): no priority gives 255 (the
/// address owner) to `state MASTER` and 100 otherwise; no state gives MASTER to priority 255
/// and BACKUP otherwise.
pub(crate) fn derive_state_priority(state: Option<VrrpState>, priority: Option<u8>) -> (u8, VrrpState) {
    let priority = priority.unwrap_or(if state == Some(VrrpState::Master) { 255 } else { 100 });
    let state = state.unwrap_or(if priority == 255 { VrrpState::Master } else { VrrpState::Backup });
    (priority, state)
}
