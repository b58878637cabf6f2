//! Keyword tables: what ka acts on, what it accepts without acting, per block.

/// Keywords of `global_defs` that ka accepts but does not act on yet.
pub const GLOBAL_UNSUPPORTED: &[&str] = &[
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "linkbeat_use_polling",
    "tmp_config_directory",
    "config_save_dir",
    "checker_log_all_failures",
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
    "max_auto_priority",
    "min_auto_priority_delay",
    "notify_fifo_script",
    "vrrp_notify_fifo_script",
    "lvs_notify_fifo_script",
    "fifo_write_vrrp_states_on_reload",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "rs_init_notifies",
    "no_checker_emails",
    "vmac_prefix",
    "vmac_addr_prefix",
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
    "log_unknown_vrids",
    "random_seed",
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
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "bfd_process_name",
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
    "vrrp_notify_priority_changes",
    "no_email_faults",
    "smtp_helo_name",
    "umask",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
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
    "notify_master_rx_lower_pri",
    "kernel_rx_buf_size",
    "linkbeat_use_polling",
];

/// Keywords of `vrrp_instance` that ka acts on.
pub const VRRP_SUPPORTED: &[&str] = &[
    "debug",
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
    "notify_priority_changes",
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
    "linkbeat_interfaces",
    "track_group",
    "garp_group",
    "SSL",
    "interface_up_down_delays",
];

/// Top-level blocks that ka acts on.
pub const TOP_SUPPORTED: &[&str] = &[
    "child_wait_time",
    "net_namespace",
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
    "static_ipaddress",
    "static_routes",
    "static_rules",
];

/// keepalived keywords whose interface ka replaces by its own, with the replacement:
/// `ka check` warns with it (ka has no SNMP agent and no D-Bus service).
pub const REPLACED: &[(&str, &str)] = &[
    ("enable_snmp_vrrp", "VRRP state and counters: the Prometheus endpoint of `ka run --metrics [ADDR:]PORT` (ka_vrrp_state, ka_vrrp_effective_priority, ka_vrrp_adverts_*) and `ka status [--json]`"),
    ("enable_snmp_keepalived", "VRRP state and counters: the Prometheus endpoint of `ka run --metrics [ADDR:]PORT` (ka_vrrp_*) and `ka status [--json]`"),
    ("enable_snmp_checker", "virtual and real server health: the Prometheus endpoint of `ka run --metrics [ADDR:]PORT` (ka_lvs_*) and `ka status [--json]`"),
    ("enable_snmp_rfc", "VRRP state (RFC 2787/6527 MIBs): the Prometheus endpoint of `ka run --metrics [ADDR:]PORT` (ka_vrrp_*) and `ka status [--json]`"),
    ("enable_snmp_rfcv2", "VRRP state (RFC 2787 MIB): the Prometheus endpoint of `ka run --metrics [ADDR:]PORT` (ka_vrrp_*) and `ka status [--json]`"),
    ("enable_snmp_rfcv3", "VRRP state (RFC 6527 MIB): the Prometheus endpoint of `ka run --metrics [ADDR:]PORT` (ka_vrrp_*) and `ka status [--json]`"),
    ("enable_traps", "SNMP traps on state changes: the notify scripts, `notify_fifo` and `smtp_alert`, which ka runs as keepalived does"),
    ("snmp_socket", "the AgentX socket: ka has no SNMP agent; `ka run --metrics [ADDR:]PORT` serves Prometheus metrics instead"),
    ("enable_dbus", "the D-Bus service (state queries, CreateInstance/DestroyInstance): the control socket /run/ka/NAME.sock, used by `ka status`, `ka reload` and `ka rs`"),
    ("dbus_service_name", "the D-Bus service name: ka's control socket is /run/ka/NAME.sock (`ka --instance NAME`)"),
];

/// What ka does, and keepalived 2.2 did before it, with a value or keyword it cannot use.
pub const IGNORED: &str = "ignored: keepalived 2.2 does the same";

/// The netlink receive-buffer keywords of keepalived for sockets ka does not have, and why.
pub const NO_SUCH_SOCKET: &[(&str, &str)] = &[
    ("vrrp_netlink_monitor", "ka has no netlink monitor socket: it reads link state by polling over its one rtnetlink socket (see vrrp_netlink_cmd_rcv_bufs)"),
    ("lvs_netlink_cmd", "ka has no IPVS generic-netlink socket: its load balancer is XDP programs and BPF maps"),
    ("lvs_netlink_monitor", "ka has no IPVS netlink monitor socket: its load balancer is XDP programs and BPF maps"),
    ("process_monitor", "ka has no process-event (proc connector) netlink socket: track_process scans /proc"),
];

/// Keywords keepalived 2.2 reads as "set" whatever value follows them (their handlers ignore it).
pub const FLAG_KEYWORDS: &[&str] = &[
    "vrrp_strict",
    "enable_script_security",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
    "vrrp_no_swap",
    "checker_no_swap",
    "bfd_no_swap",
    "process_names",
    "log_unknown_vrids",
];

/// How keepalived 2.2.7's parser (`lib/parser.c`) reads what follows a keyword: this decides
/// which `{` opens a block and which `}` closes which, so ka groups statements exactly as
/// keepalived does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// A block of keywords of its own (`install_sublevel`): `{` expected after the keyword
    /// ("Missing '{'" otherwise, and the next lines are read as its block all the same).
    Sub,
    /// A block of value lines (`alloc_value_block`): every line up to the first `}` is one
    /// entry, a `{` line included.
    Value,
    /// No block: a `{` after it is reported and ignored ("Unexpected '{'"), and what follows
    /// is read in the enclosing block, whose `}` it then is.
    Word,
}

/// The [`BlockKind`] of keyword `kw` inside the block of `parent` (`""` at the top level), as
/// keepalived 2.2.7 installs its keywords (`install_keyword_root`, `install_sublevel`, and the
/// handlers that call `alloc_value_block`). Unknown keywords take no block.
pub fn block_kind(parent: &str, kw: &str) -> BlockKind {
    use BlockKind::{Sub, Value, Word};
    match (parent, kw) {
        (
            "",
            "global_defs" | "vrrp_sync_group" | "garp_group" | "vrrp_instance" | "vrrp_script"
            | "vrrp_track_process" | "track_group" | "bfd_instance" | "track_file"
            | "vrrp_track_file" | "SSL" | "virtual_server",
        ) => Sub,
        (
            "",
            "static_ipaddress" | "static_routes" | "static_rules" | "linkbeat_interfaces"
            | "interface_up_down_delays" | "virtual_server_group",
        ) => Value,
        ("global_defs", "notification_email") => Value,
        ("vrrp_sync_group", "group" | "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd") => Value,
        ("track_group", "group") | ("garp_group", "interfaces") => Value,
        ("vrrp_instance", "authentication") => Sub,
        (
            "vrrp_instance",
            "unicast_peer" | "track_interface" | "track_script" | "track_file" | "track_process"
            | "track_bfd" | "virtual_ipaddress" | "virtual_ipaddress_excluded" | "virtual_routes"
            | "virtual_rules",
        ) => Value,
        ("virtual_server", "real_server") => Sub,
        ("real_server", k) if CHECKERS_SUPPORTED.contains(&k) || CHECKERS_UNSUPPORTED.contains(&k) => Sub,
        ("HTTP_GET" | "SSL_GET", "url") | ("SMTP_CHECK", "host") => Sub,
        _ => Word,
    }
}
