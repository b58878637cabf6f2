//! `global_defs`: daemon-wide settings and the defaults of the instances.

use super::{keywords::*, values::*, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

impl Cx<'_> {
    /// `lvs_timeouts [tcp N] [tcpfin N] [udp N]` (seconds, at most 31 days; 0 keeps IPVS's
    /// default), as keepalived parses it: each bad or unknown part is reported and skipped.
    pub(super) fn lvs_timeouts(&mut self, e: &Stmt) {
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

    pub(super) fn global_defs(&mut self, s: &Stmt) {
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
                "checker_priority" | "bfd_priority" => {
                    if let Some(v) = self.arg_int(e, -20, 19) {
                        let g = &mut self.cfg.global;
                        *if e.name() == "bfd_priority" { &mut g.bfd_priority } else { &mut g.checker_priority } = i32::try_from(v).ok();
                    }
                }
                "checker_rt_priority" | "bfd_rt_priority" => {
                    if let Some(v) = self.arg_int(e, 1, 99) {
                        let g = &mut self.cfg.global;
                        *if e.name() == "bfd_rt_priority" { &mut g.bfd_rt_priority } else { &mut g.checker_rt_priority } = i32::try_from(v).ok();
                    }
                }
                "vrrp_cpu_affinity" | "checker_cpu_affinity" | "bfd_cpu_affinity" => self.cpu_affinity(e),
                "vrrp_no_swap" | "checker_no_swap" | "bfd_no_swap" => {
                    let on = self.arg_bool(e);
                    let g = &mut self.cfg.global;
                    *match e.name() {
                        "vrrp_no_swap" => &mut g.vrrp_no_swap,
                        "checker_no_swap" => &mut g.checker_no_swap,
                        _ => &mut g.bfd_no_swap,
                    } = on;
                }
                "vrrp_rlimit_rttime" | "checker_rlimit_rttime" | "bfd_rlimit_rttime" => {
                    // keepalived's get_rt_rlimit: 1..=UINT32_MAX microseconds, 1 read as 2 (the
                    // soft limit is half of it and must not be 0).
                    if let Some(v) = self.arg_int(e, 1, i64::from(u32::MAX)) {
                        let us = (v as u64).max(2);
                        let g = &mut self.cfg.global;
                        *match e.name() {
                            "vrrp_rlimit_rttime" => &mut g.vrrp_rlimit_rttime,
                            "checker_rlimit_rttime" => &mut g.checker_rlimit_rttime,
                            _ => &mut g.bfd_rlimit_rttime,
                        } = Some(us);
                    }
                }
                "process_names" => {
                    // keepalived 2.2.7's process_names_handler: its children's default names.
                    self.arg_bool(e);
                    let g = &mut self.cfg.global;
                    g.vrrp_process_name = Some("keepalived_vrrp".into());
                    g.checker_process_name = Some("keepalived_lvs".into());
                    g.bfd_process_name = Some("keepalived_bfd".into());
                }
                "process_name" | "vrrp_process_name" | "checker_process_name" | "bfd_process_name" => self.process_name(e),
                "vrrp_netlink_cmd_rcv_bufs" => {
                    // keepalived: 0 leaves the default.
                    if let Some(v) = self.arg_int(e, 0, i64::from(u32::MAX)).filter(|v| *v > 0) {
                        self.cfg.global.vrrp_netlink_cmd_rcv_bufs = v as u32;
                    }
                }
                "log_unknown_vrids" => self.cfg.global.log_unknown_vrids = self.arg_bool(e),
                "random_seed" => {
                    if let Some(v) = self.arg_int(e, 0, i64::from(u32::MAX)) {
                        self.cfg.global.random_seed = Some(v as u32);
                    }
                }
                "vrrp_netlink_cmd_rcv_bufs_force" => self.cfg.global.vrrp_netlink_cmd_rcv_bufs_force = self.arg_bool(e),
                n if n.ends_with("_rcv_bufs") || n.ends_with("_rcv_bufs_force") => {
                    // Read as keepalived reads it (errors included), then ignored.
                    if n.ends_with("_force") {
                        self.arg_bool(e);
                    } else {
                        self.arg_int(e, 0, i64::from(u32::MAX));
                    }
                    let base = n.trim_end_matches("_force").trim_end_matches("_rcv_bufs");
                    let why = NO_SUCH_SOCKET.iter().find(|(k, _)| *k == base).map_or("ka has no such socket", |(_, w)| *w);
                    let t = &e.kw;
                    self.d.push(
                        crate::config::diag::Diagnostic::warning(Some(t.span), format!("'{n}' ignored: {why}"))
                            .with_via(t.via)
                            .ignoring(crate::config::diag::IgnoredKeyword::NotActedOn),
                    );
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
                        self.cfg.global.script_user_span = Some(e.span());
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
                        let host = e.args[0].text.clone();
                        if host.parse::<std::net::IpAddr>().is_ok() || is_host_name(&host) {
                            self.cfg.global.smtp_server = Some((host, port));
                        } else {
                            // keepalived 2.2.7 (set_smtp_server) cannot resolve it: "Invalid
                            // smtp server", and no email is sent.
                            self.err(&e.args[0], format!("invalid smtp server '{host}' (neither an address nor a host name)"));
                        }
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
                "vrrp_notify_priority_changes" => self.cfg.global.vrrp_notify_priority_changes = self.arg_bool(e),
                "no_email_faults" => {
                    self.no_block(e);
                    self.cfg.global.no_email_faults = true;
                }
                "smtp_helo_name" => self.cfg.global.smtp_helo_name = self.arg_str(e),
                "umask" => self.umask(e),
                "startup_script" | "shutdown_script" => {
                    let startup = e.name() == "startup_script";
                    let set = if startup { self.cfg.global.startup_script.is_some() } else { self.cfg.global.shutdown_script.is_some() };
                    if set {
                        self.err(&e.kw, format!("{} already specified", e.name()));
                    } else if let Some(sc) = self.script(e) {
                        if startup {
                            self.cfg.global.startup_script = Some(sc);
                        } else {
                            self.cfg.global.shutdown_script = Some(sc);
                        }
                    }
                }
                "startup_script_timeout" | "shutdown_script_timeout" => {
                    if let Some(v) = self.arg_secs(e, 1, 1000) {
                        if e.name() == "startup_script_timeout" {
                            self.cfg.global.startup_script_timeout = v;
                        } else {
                            self.cfg.global.shutdown_script_timeout = v;
                        }
                    }
                }
                n if REPLACED.iter().any(|(k, _)| *k == n) => self.replaced(e),
                // keepalived 2.2.7 installs these at the top level only (install_keyword_root):
                // inside global_defs it reports them as unknown and ignores them.
                n @ ("net_namespace" | "net_namespace_ipvs" | "namespace_with_ipsets" | "use_pid_dir" | "instance" | "child_wait_time" | "linkbeat_use_polling") => {
                    self.ignored_here(e, format!("'{n}' belongs at the top level, not in global_defs: keepalived 2.2.7 reports it as an unknown keyword here; ignored, as keepalived does"));
                }
                n if GLOBAL_UNSUPPORTED.contains(&n) => self.unsupported(e, "global_defs"),
                _ => self.unknown(e, "global_defs", &[GLOBAL_SUPPORTED, GLOBAL_UNSUPPORTED]),
            }
        }
    }

    /// `vrrp_cpu_affinity CPU...` (and the checker and bfd ones), as keepalived 2.2.7's
    /// `get_cpu_affinity` reads it: every CPU id within the online CPUs; one bad id empties the
    /// set (the thread keeps its affinity).
    fn cpu_affinity(&mut self, e: &Stmt) {
        self.no_block(e);
        if !self.args(e, 1, usize::MAX) {
            return;
        }
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
        let mut cpus = Vec::new();
        for t in &e.args {
            match self.int(t, 0, i64::from(online as i32) - 1) {
                Some(c) => cpus.push(c as usize),
                None => {
                    cpus.clear();
                    break;
                }
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        let g = &mut self.cfg.global;
        *match e.name() {
            "vrrp_cpu_affinity" => &mut g.vrrp_cpu_affinity,
            "checker_cpu_affinity" => &mut g.checker_cpu_affinity,
            _ => &mut g.bfd_cpu_affinity,
        } = cpus;
    }

    /// `process_name NAME` (and the vrrp, checker and bfd ones): a name longer than the
    /// kernel's 15 bytes is truncated with a warning, as keepalived 2.2.7's `save_process_name`.
    fn process_name(&mut self, e: &Stmt) {
        let Some(mut name) = self.arg_str(e) else { return };
        if name.len() > 15 {
            let mut end = 15;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
            self.warn(&e.args[0], format!("'{}': process name '{}' longer than 15 characters, truncated to '{name}' (as keepalived does)", e.name(), e.args[0].text));
        }
        let g = &mut self.cfg.global;
        *match e.name() {
            "process_name" => &mut g.process_name,
            "vrrp_process_name" => &mut g.vrrp_process_name,
            "checker_process_name" => &mut g.checker_process_name,
            _ => &mut g.bfd_process_name,
        } = Some(name);
    }

    /// `umask MASK`, as keepalived 2.2.7 reads it (`umask_handler`): a number (octal with a
    /// leading 0, hex with 0x) within 0777, or bit names joined by `|` (`IWGRP|IWOTH`).
    fn umask(&mut self, e: &Stmt) {
        self.no_block(e);
        if !self.args(e, 1, usize::MAX) {
            return;
        }
        let first = &e.args[0];
        if first.text.starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(extra) = e.args.get(1) {
                self.err(extra, "extra parameter(s) to umask option");
                return;
            }
            let t = first.text.as_str();
            let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                u32::from_str_radix(h, 16).ok()
            } else if t.len() > 1 && t.starts_with('0') {
                u32::from_str_radix(&t[1..], 8).ok()
            } else {
                t.parse::<u32>().ok()
            };
            match v {
                Some(v) if v & !0o777 == 0 => self.cfg.global.umask = Some(v),
                _ => self.err(first, format!("invalid umask value {t}")),
            }
            return;
        }
        let words: String = e.args.iter().map(|a| a.text.as_str()).collect();
        let mut bits = 0;
        for name in words.split('|') {
            let bit = match name {
                "IRUSR" => 0o400,
                "IWUSR" => 0o200,
                "IXUSR" => 0o100,
                "IRGRP" => 0o040,
                "IWGRP" => 0o020,
                "IXGRP" => 0o010,
                "IROTH" => 0o004,
                "IWOTH" => 0o002,
                "IXOTH" => 0o001,
                o => {
                    self.err(first, format!("unknown umask bit '{o}' (IRUSR|IWUSR|IXUSR|IRGRP|IWGRP|IXGRP|IROTH|IWOTH|IXOTH)"));
                    return;
                }
            };
            bits |= bit;
        }
        self.cfg.global.umask = Some(bits);
    }

    /// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`,
    /// checked as keepalived 2.2 checks it: a bad option is ignored alone, with a warning.
    pub(super) fn lvs_sync_daemon(&mut self, e: &Stmt) {
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
}

/// Whether `s` is a syntactically valid DNS host name (letters, digits, `-` and `_` in labels
/// of 1 to 63 bytes, separated by dots). Whether it resolves is the host's business.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}
