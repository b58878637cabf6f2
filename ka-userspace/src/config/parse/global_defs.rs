//! `global_defs`: daemon-wide settings and the defaults of the instances.

use std::time::Duration;

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

    /// `global_defs`: each keyword goes to the helper of its family; what none takes is
    /// replaced (SNMP, D-Bus), a top-level keyword written here, or unknown.
    pub(super) fn global_defs(&mut self, s: &Stmt) {
        self.cfg.global.span = Some(s.span());
        for e in self.block(s) {
            let taken = self.global_vrrp(e)
                || self.global_process(e)
                || self.global_sockets(e)
                || self.global_garp(e)
                || self.global_notify(e)
                || self.global_reload(e)
                || self.global_lvs(e)
                || self.global_interfaces(e);
            if taken {
                continue;
            }
            match e.name() {
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

    /// The VRRP keywords of `global_defs`: version, strictness, the advert and timer defaults, the
    /// script-security and unicast checks. `false` when `e` is none of them.
    fn global_vrrp(&mut self, e: &Stmt) -> bool {
        match e.name() {
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
            "vrrp_skip_check_adv_addr" => {
                self.cfg.global.vrrp_skip_check_adv_addr = self.arg_bool(e)
            }
            "vrrp_check_unicast_src" => {
                self.cfg.global.vrrp_check_unicast_src = self.arg_bool(e)
            }
            "enable_script_security" => {
                self.cfg.global.enable_script_security = self.arg_bool(e)
            }
            "script_user" => {
                self.no_block(e);
                if self.args(e, 1, 2) {
                    self.cfg.global.script_user = self.user(e, 0);
                    self.cfg.global.script_user_span = Some(e.span());
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
            _ => return false,
        }
        true
    }

    /// The daemon's process keywords: thread priorities, CPU affinity, no-swap, RTTIME limits,
    /// names, auto priority, `umask`, the startup and shutdown scripts. `false` when `e` is none of them.
    fn global_process(&mut self, e: &Stmt) -> bool {
        match e.name() {
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
            "max_auto_priority" => {
                // keepalived 2.2.7: no value is the maximum (sched_get_priority_max(SCHED_RR)).
                if e.args.is_empty() {
                    self.no_block(e);
                    self.cfg.global.max_auto_priority = 99;
                } else if let Some(v) = self.arg_int(e, -1, 99) {
                    self.cfg.global.max_auto_priority = v as i32;
                }
            }
            "min_auto_priority_delay" => {
                if e.args.is_empty() {
                    self.err(&e.kw, "min_auto_priority_delay requires delay time");
                } else if let Some(v) = self.arg_int(e, 1, 10_000_000) {
                    self.cfg.global.min_auto_priority_delay = Duration::from_micros(v as u64);
                }
            }
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
            _ => return false,
        }
        true
    }

    /// The socket keywords: netlink and VRRP receive buffers, `random_seed`, `log_unknown_vrids`. `false` when `e` is none of them.
    fn global_sockets(&mut self, e: &Stmt) -> bool {
        match e.name() {
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
            "vrrp_netlink_monitor_rcv_bufs" => {
                if let Some(v) = self.arg_int(e, 0, i64::from(u32::MAX)).filter(|v| *v > 0) {
                    self.cfg.global.vrrp_netlink_monitor_rcv_bufs = v as u32;
                }
            }
            "vrrp_netlink_monitor_rcv_bufs_force" => self.cfg.global.vrrp_netlink_monitor_rcv_bufs_force = self.arg_bool(e),
            "vrrp_rx_bufs_policy" => self.rx_bufs_policy(e),
            "vrrp_rx_bufs_multiplier" => {
                if let Some(v) = self.arg_int(e, 1, i64::from(u32::MAX)) {
                    self.cfg.global.vrrp_rx_bufs_multiplier = v as u32;
                }
            }
            n if n.ends_with("_rcv_bufs") || n.ends_with("_rcv_bufs_force") => {
                // The buffers of keepalived's IPVS and process-event sockets, which ka does not
                // have (docs/config.md says why each has nothing to size): read as keepalived
                // reads them (errors included). After the vrrp_netlink_* arms above.
                if n.ends_with("_force") {
                    self.arg_bool(e);
                } else {
                    self.arg_int(e, 0, i64::from(u32::MAX));
                }
            }
            _ => return false,
        }
        true
    }

    /// The gratuitous ARP / unsolicited NA keywords. `false` when `e` is none of them.
    fn global_garp(&mut self, e: &Stmt) -> bool {
        match e.name() {
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
            "vrrp_garp_master_refresh_repeat" => {
                if let Some(v) = self.arg_int(e, 0, U32) {
                    if v == 0 {
                        self.warn(&e.args[0], "vrrp_garp_master_refresh_repeat must be greater than 0, setting to 1 (as keepalived 2.2)");
                    }
                    self.cfg.global.vrrp_garp_master_refresh_repeat = (v as u32).max(1);
                }
            }
            "vrrp_garp_lower_prio_delay" => {
                if let Some(v) = self.arg_secs(e, 0, 4294) {
                    self.cfg.global.vrrp_garp_lower_prio_delay = Some(v);
                }
            }
            "vrrp_garp_lower_prio_repeat" => {
                if let Some(v) = self.arg_int(e, 0, i64::from(i32::MAX)) {
                    self.cfg.global.vrrp_garp_lower_prio_repeat = Some(v as u32);
                }
            }
            "vrrp_min_garp" => {
                if self.arg_bool(e) {
                    min_garp(&mut self.cfg.global);
                }
            }
            "vrrp_garp_extra_if" => {
                if let Some(x) = self.garp_extra_if(e, 1) {
                    self.cfg.global.vrrp_garp_extra_if = Some(x);
                }
            }
            _ => return false,
        }
        true
    }

    /// The notification keywords: email, SMTP, notify FIFOs and their scripts. `false` when `e` is none of them.
    fn global_notify(&mut self, e: &Stmt) -> bool {
        match e.name() {
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
            "notify_fifo" | "vrrp_notify_fifo" => {
                self.no_block(e);
                if self.args(e, 1, 3) {
                    let path = e.args[0].text.clone();
                    let owner = self.user(e, 1);
                    if e.name() == "notify_fifo" {
                        self.cfg.global.notify_fifo = Some(path);
                        self.cfg.global.fifo_owners[0] = owner;
                    } else {
                        self.cfg.global.vrrp_notify_fifo = Some(path);
                        self.cfg.global.fifo_owners[1] = owner;
                    }
                }
            }
            "lvs_notify_fifo" => {
                self.no_block(e);
                if self.args(e, 1, 3) {
                    self.cfg.global.lvs_notify_fifo = Some(e.args[0].text.clone());
                    self.cfg.global.fifo_owners[2] = self.user(e, 1);
                }
            }
            "notify_fifo_script" | "vrrp_notify_fifo_script" | "lvs_notify_fifo_script" => {
                let g = &self.cfg.global;
                let set = match e.name() {
                    "notify_fifo_script" => g.notify_fifo_script.is_some(),
                    "vrrp_notify_fifo_script" => g.vrrp_notify_fifo_script.is_some(),
                    _ => g.lvs_notify_fifo_script.is_some(),
                };
                if set {
                    // keepalived 2.2.7: "notify_fifo_script already specified - ignoring".
                    self.err(&e.kw, format!("{} already specified", e.name()));
                } else if let Some(sc) = self.script(e) {
                    let g = &mut self.cfg.global;
                    match e.name() {
                        "notify_fifo_script" => g.notify_fifo_script = Some(sc),
                        "vrrp_notify_fifo_script" => g.vrrp_notify_fifo_script = Some(sc),
                        _ => g.lvs_notify_fifo_script = Some(sc),
                    }
                }
            }
            "fifo_write_vrrp_states_on_reload" => self.cfg.global.fifo_write_vrrp_states_on_reload = self.arg_bool(e),
            "rs_init_notifies" => self.cfg.global.rs_init_notifies = self.arg_bool(e),
            "no_checker_emails" => self.cfg.global.no_checker_emails = self.arg_bool(e),
            "checker_log_all_failures" => self.cfg.global.checker_log_all_failures = self.arg_bool(e),
            "vrrp_notify_priority_changes" => self.cfg.global.vrrp_notify_priority_changes = self.arg_bool(e),
            "no_email_faults" => {
                self.no_block(e);
                self.cfg.global.no_email_faults = true;
            }
            "smtp_helo_name" => self.cfg.global.smtp_helo_name = self.arg_str(e),
            _ => return false,
        }
        true
    }

    /// The reload and configuration-file keywords. `false` when `e` is none of them.
    fn global_reload(&mut self, e: &Stmt) -> bool {
        match e.name() {
            "data_use_instance" => self.cfg.global.data_use_instance = self.arg_bool(e),
            "reload_check_config" => {
                self.no_block(e);
                self.cfg.global.reload_check_config = Some(e.args.first().map_or_else(|| "/dev/null".to_owned(), |t| t.text.clone()));
            }
            "reload_time_file" => {
                self.no_block(e);
                if e.args.len() == 1 {
                    self.cfg.global.reload_time_file = Some(e.args[0].text.clone());
                } else {
                    self.err(&e.kw, "reload_time_file invalid (one file name expected)");
                }
            }
            "reload_repeat" => self.cfg.global.reload_repeat = self.arg_bool(e),
            "reload_file" => {
                self.no_block(e);
                self.cfg.global.reload_file = Some(e.args.first().map(|t| t.text.clone()));
            }
            "include_check" => {
                // Applied by the preprocessor to the includes that follow; its problems
                // are reported here, as keepalived's handler reports them.
                self.no_block(e);
                let words: Vec<&str> = e.args.iter().map(|t| t.text.as_str()).collect();
                let (_, problems) = crate::config::preprocess::include_check_words(Default::default(), &words);
                for p in problems {
                    self.err(&e.kw, p.trim_end_matches(" - ignoring").to_owned());
                }
            }
            "config_save_dir" => {
                self.no_block(e);
                if self.args(e, 1, 1) {
                    let dir = e.args[0].text.trim_end_matches('/').to_owned();
                    match std::fs::metadata(&dir) {
                        Ok(m) if !m.is_dir() => self.err(&e.args[0], format!("config_save_dir {dir} exists and is not a directory")),
                        _ => self.cfg.global.config_save_dir = Some(dir),
                    }
                }
            }
            "tmp_config_directory" => {
                self.no_block(e);
                if self.cfg.global.tmp_config_directory.is_some() {
                    self.err(&e.kw, "tmp_config_directory already specified");
                } else if let Some(t) = e.args.first() {
                    self.cfg.global.tmp_config_directory = Some(t.text.clone());
                } else {
                    self.err(&e.kw, "tmp_config_directory missing directory name");
                }
            }
            _ => return false,
        }
        true
    }

    /// The load-balancer keywords: `router_id`, IPVS timeouts and flushes, the sync daemon. `false` when `e` is none of them.
    fn global_lvs(&mut self, e: &Stmt) -> bool {
        match e.name() {
            "router_id" => self.cfg.global.router_id = self.arg_str(e),
            "lvs_timeouts" => self.lvs_timeouts(e),
            "lvs_flood_rate" => {
                if let Some(v) = self.arg_int(e, 0, i64::from(u32::MAX)) {
                    self.cfg.global.lvs_flood_rate = Some(v as u32);
                }
            }
            // keepalived 1.x's name of router_id; 2.2.7 no longer knows it.
            "lvs_id" => self.ignored_here(
                e,
                "'lvs_id' is not a keyword of keepalived 2.2.7 (keepalived 1.x's name for router_id: write router_id); keepalived reports it as unknown and ignores it; so does ka".to_owned(),
            ),
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
                    // keepalived's handler resets these (an earlier setting is lost).
                    self.cfg.global.nftables_ipvs_priority = -1;
                    self.cfg.global.nftables_ipvs_start_fwmark = 1000;
                }
            }
            "lvs_sync_daemon" => self.lvs_sync_daemon(e),
            _ => return false,
        }
        true
    }

    /// The interface and firewall keywords: multicast groups, default interface, VMAC names,
    /// nftables. `false` when `e` is none of them.
    fn global_interfaces(&mut self, e: &Stmt) -> bool {
        match e.name() {
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
            "disable_local_igmp" => {
                self.no_block(e);
                self.cfg.global.disable_local_igmp = true;
            }
            "dynamic_interfaces" => {
                self.no_block(e);
                self.cfg.global.dynamic_interfaces = true;
            }
            "vmac_prefix" | "vmac_addr_prefix" => {
                let prefix = e.name() == "vmac_prefix";
                let set = if prefix { self.cfg.global.vmac_prefix.is_some() } else { self.cfg.global.vmac_addr_prefix.is_some() };
                if set {
                    self.err(&e.kw, format!("{} already specified", e.name()));
                } else if let Some(v) = self.arg_str(e) {
                    if prefix {
                        self.cfg.global.vmac_prefix = Some(v);
                    } else {
                        self.cfg.global.vmac_addr_prefix = Some(v);
                    }
                }
            }
            "nftables" | "vrrp_iptables" | "vrrp_ipsets" | "nftables_priority" | "nftables_counters" | "nftables_ifindex" | "nftables_ipvs_priority" | "nftables_ipvs_start_fwmark" => self.firewall(e),
            _ => return false,
        }
        true
    }

    /// The firewall keywords, as keepalived 2.2.7 built with nftables and without iptables
    /// (Debian's) reads them (global_parser.c): `nftables [TABLE]` (once; resets the priority),
    /// `vrrp_iptables` (means `nftables keepalived`, with keepalived's warning), `vrrp_ipsets`
    /// (not acted on: the nftables sets hold the addresses), the priorities and flags.
    fn firewall(&mut self, e: &Stmt) {
        self.no_block(e);
        // nftables.h NFT_TABLE_MAXNAMELEN.
        const MAX_TABLE: usize = 32;
        match e.name() {
            "nftables" => {
                if self.cfg.global.vrrp_nftables.table.is_some() {
                    self.err(&e.kw, "nftables already specified");
                    return;
                }
                let name = e.args.first().map_or("keepalived", |t| t.text.as_str());
                if name.len() >= MAX_TABLE {
                    self.err(&e.args[0], "nftables table name too long");
                    return;
                }
                let fw = &mut self.cfg.global.vrrp_nftables;
                fw.table = Some(name.to_owned());
                fw.priority = -1;
                self.args(e, 0, 1);
            }
            "vrrp_iptables" => {
                let fw = &mut self.cfg.global.vrrp_nftables;
                fw.table = Some("keepalived".to_owned());
                fw.priority = -1;
                self.warn(&e.kw, "iptables not supported, using nftables instead (table keepalived), as keepalived 2.2.7 built without iptables does. Please replace 'vrrp_iptables' and 'vrrp_ipsets' with 'nftables'");
            }
            "vrrp_ipsets" => {
                let t = &e.kw;
                self.d.push(
                    crate::config::diag::Diagnostic::warning(Some(t.span), "'vrrp_ipsets' not acted on: ka's firewall is nftables, whose sets hold the VIPs (see 'nftables'); keepalived 2.2.7 built without iptables does not know this keyword")
                        .with_via(t.via)
                        .ignoring(crate::config::diag::IgnoredKeyword::NotActedOn),
                );
            }
            "nftables_priority" => {
                if let Some(v) = self.arg_int(e, i64::from(i32::MIN), i64::from(i32::MAX)) {
                    self.cfg.global.vrrp_nftables.priority = i32::try_from(v).unwrap_or(-1);
                }
            }
            "nftables_counters" => self.cfg.global.vrrp_nftables.counters = true,
            "nftables_ifindex" => self.cfg.global.vrrp_nftables.ifindex = true,
            "nftables_ipvs_priority" => {
                if let Some(v) = self.arg_int(e, i64::from(i32::MIN), i64::from(i32::MAX)) {
                    self.cfg.global.nftables_ipvs_priority = i32::try_from(v).unwrap_or(-1);
                }
            }
            _ => {
                if let Some(v) = self.arg_int(e, 1, i64::from(u32::MAX)) {
                    self.cfg.global.nftables_ipvs_start_fwmark = u32::try_from(v).unwrap_or(1000);
                }
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

impl Cx<'_> {
    /// `vrrp_rx_bufs_policy MTU|ADVERT|SIZE...` as keepalived 2.2.7 reads it: words combine; a
    /// size with a policy keeps the size, MTU with ADVERT keeps MTU (each with a warning).
    fn rx_bufs_policy(&mut self, e: &Stmt) {
        self.no_block(e);
        if e.args.is_empty() {
            self.err(&e.kw, "vrrp_rx_bufs_policy missing");
            return;
        }
        let (mut mtu, mut advert, mut size) = (false, false, None);
        for t in &e.args {
            match t.text.to_ascii_uppercase().as_str() {
                "MTU" => mtu = true,
                "ADVERT" => advert = true,
                _ => match t.text.parse::<u32>() {
                    Ok(n) => size = Some(n),
                    Err(_) => self.err(t, format!("Invalid vrrp_rx_bufs_policy {}", t.text)),
                },
            }
        }
        let p = match (size, mtu, advert) {
            (Some(n), m, a) => {
                if m || a {
                    self.err(&e.kw, "Cannot set vrrp_rx_bufs_policy size and policy, ignoring policy");
                }
                Some(RxBufsPolicy::Size(n))
            }
            (None, true, a) => {
                if a {
                    self.err(&e.kw, "Cannot set both vrrp_rx_bufs_policy MTU and ADVERT, ignoring ADVERT");
                }
                Some(RxBufsPolicy::Mtu)
            }
            (None, false, true) => Some(RxBufsPolicy::Advert),
            (None, false, false) => None,
        };
        if p.is_some() {
            self.cfg.global.vrrp_rx_bufs_policy = p;
        }
    }
}

/// keepalived 2.2.7's `vrrp_min_garp` (`vrrp_min_garp_handler`): one GARP/NA per burst, no
/// second burst and no refresh; each setting changes only while it still has its default, so
/// a value written before or after the keyword wins.
pub(super) fn min_garp(g: &mut GlobalDefs) {
    if g.vrrp_garp_master_repeat == 5 {
        g.vrrp_garp_master_repeat = 1;
    }
    if g.vrrp_garp_master_refresh_repeat == 1 {
        g.vrrp_garp_master_refresh_repeat = 0;
    }
    if g.vrrp_garp_master_delay == Duration::from_secs(5) {
        g.vrrp_garp_master_delay = Duration::ZERO;
    }
}

