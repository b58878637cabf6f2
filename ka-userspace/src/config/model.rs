//! The typed configuration model, with keepalived's defaults applied.

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use super::diag::Span;

/// An address with a prefix length (`198.18.0.1/32`, `fd00:198:18::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address (host bits are kept: a VIP `198.18.0.1/24` is the address .1 on a /24).
    pub addr: IpAddr,
    /// Prefix length, at most 32 (IPv4) or 128 (IPv6).
    pub len: u8,
}

impl IpPrefix {
    /// Whether the address is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

/// Why a prefix does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The address part is not an IP address.
    #[error("'{0}' is not a valid IP address")]
    Address(String),
    /// The length is not a number or too long for the family.
    #[error("invalid prefix length '{0}'")]
    Length(String),
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    /// Parses `ADDR[/LEN]`; a bare address gets /32 or /128.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| PrefixError::Address(a.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => return Err(PrefixError::Length(l.to_owned())),
            },
        };
        Ok(Self { addr, len })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `global_defs`.
    pub global: GlobalDefs,
    /// `vrrp_script` blocks.
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `track_file` / `vrrp_track_file` blocks.
    pub track_files: Vec<TrackFile>,
    /// `vrrp_track_process` blocks.
    pub track_processes: Vec<TrackProcess>,
    /// `bfd_instance` blocks.
    pub bfd_instances: Vec<BfdInstance>,
    /// `vrrp_sync_group` blocks.
    pub sync_groups: Vec<SyncGroup>,
    /// `vrrp_instance` blocks.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `virtual_server_group` blocks.
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    /// `virtual_server` blocks.
    pub virtual_servers: Vec<VirtualServer>,
    /// `static_ipaddress` entries.
    pub static_ipaddresses: Vec<VirtualIp>,
    /// `static_routes` entries (installed at start, see [`crate::statics`]).
    pub static_routes: Vec<Route>,
    /// `static_rules` entries (installed at start, see [`crate::statics`]).
    pub static_rules: Vec<Rule>,
    /// `linkbeat_interfaces` entries.
    pub linkbeat_interfaces: Vec<RawEntry>,
    /// `track_group` blocks.
    pub track_groups: Vec<NamedList>,
    /// `garp_group` blocks.
    pub garp_groups: Vec<GarpGroup>,
    /// The `SSL` block.
    pub ssl: Option<SslConfig>,
    /// `net_namespace NAME` (top level): the network namespace (`/run/netns/NAME`) the
    /// daemon enters before anything else.
    pub net_namespace: Option<String>,
}

impl Config {
    /// The `vrrp_instance` (index into [`Config::vrrp_instances`]) that holds each VIP, from
    /// `virtual_ipaddress` and `virtual_ipaddress_excluded` (a later instance wins an address
    /// named twice). The datapath's mastership slots and `ha_suspend` both follow it.
    pub fn vip_owners(&self) -> std::collections::HashMap<IpAddr, usize> {
        let mut owners = std::collections::HashMap::new();
        for (i, inst) in self.vrrp_instances.iter().enumerate() {
            for v in inst.virtual_ipaddresses.iter().chain(&inst.virtual_ipaddresses_excluded) {
                owners.insert(v.address.addr, i);
            }
        }
        owners
    }

    /// The `vrrp_instance` that owns virtual server `vs`: the one holding its address (for a
    /// `virtual_server_group`, the first of the group's addresses that an instance holds).
    /// `None` for fwmark services and for addresses no instance holds.
    pub fn vs_owner(&self, vs: &VirtualServer) -> Option<usize> {
        let owners = self.vip_owners();
        match &vs.key {
            VsKey::Addr { addr, .. } => owners.get(addr).copied(),
            VsKey::Fwmark(_) => None,
            VsKey::Group(name) => self.virtual_server_groups.iter().find(|g| g.name == *name)?.entries.iter().find_map(|e| match e {
                VsgEntry::Range { first, last, .. } => {
                    let key = |a: &IpAddr| match a {
                        IpAddr::V4(x) => (false, u128::from(u32::from(*x))),
                        IpAddr::V6(x) => (true, u128::from(*x)),
                    };
                    let (lo, hi) = (key(first), key(last));
                    owners.iter().filter(|(a, _)| (lo..=hi).contains(&key(a))).map(|(a, i)| (key(a), *i)).min().map(|(_, i)| i)
                }
                VsgEntry::Fwmark { .. } => None,
            }),
        }
    }
}

/// An entry ka keeps as words only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The words.
    pub words: Vec<String>,
    /// Where it starts.
    pub span: Span,
}

/// A named block holding a list of names (`track_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedList {
    /// The block name.
    pub name: String,
    /// The names listed.
    pub members: Vec<String>,
    /// Where the block starts.
    pub span: Span,
}

/// `global_defs`.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalDefs {
    /// `router_id` (default: unset, meaning the host name).
    pub router_id: Option<String>,
    /// `vrrp_version` (default 2).
    pub vrrp_version: VrrpVersion,
    /// `vrrp_strict`.
    pub vrrp_strict: bool,
    /// `vrrp_mcast_group4` (default 224.0.0.18).
    pub vrrp_mcast_group4: IpAddr,
    /// `vrrp_mcast_group6` (default ff02::12).
    pub vrrp_mcast_group6: IpAddr,
    /// `default_interface` (default eth0).
    pub default_interface: String,
    /// `vrrp_garp_master_delay` (default 5 s).
    pub vrrp_garp_master_delay: Duration,
    /// `vrrp_garp_master_repeat` (default 5).
    pub vrrp_garp_master_repeat: u32,
    /// `vrrp_garp_master_refresh` (default 0: off).
    pub vrrp_garp_master_refresh: Duration,
    /// `vrrp_garp_master_refresh_repeat` (default 1).
    pub vrrp_garp_master_refresh_repeat: u32,
    /// `vrrp_garp_interval` (default 0).
    pub vrrp_garp_interval: Duration,
    /// `vrrp_priority`: nice value (-20..=19) of the VRRP engine's thread (default: unchanged).
    pub vrrp_priority: Option<i32>,
    /// `vrrp_rt_priority`: SCHED_RR priority (1..=99) of the VRRP engine's thread (default:
    /// none, the normal scheduler).
    pub vrrp_rt_priority: Option<i32>,
    /// `checker_priority`: nice value (-20..=19) of the threads the health checkers run on.
    pub checker_priority: Option<i32>,
    /// `bfd_priority`: nice value (-20..=19) of the BFD thread (`ka-bfd`).
    pub bfd_priority: Option<i32>,
    /// `checker_rt_priority`: SCHED_RR priority (1..=99) of the checkers' threads.
    pub checker_rt_priority: Option<i32>,
    /// `bfd_rt_priority`: SCHED_RR priority (1..=99) of the BFD thread.
    pub bfd_rt_priority: Option<i32>,
    /// `vrrp_cpu_affinity`: CPUs the VRRP engine's thread may run on (empty: unchanged).
    pub vrrp_cpu_affinity: Vec<usize>,
    /// `checker_cpu_affinity`: CPUs the checkers' threads may run on (empty: unchanged).
    pub checker_cpu_affinity: Vec<usize>,
    /// `bfd_cpu_affinity`: CPUs the BFD thread may run on (empty: unchanged).
    pub bfd_cpu_affinity: Vec<usize>,
    /// `vrrp_no_swap`: lock the daemon in memory (`mlockall`; process-wide in ka).
    pub vrrp_no_swap: bool,
    /// `checker_no_swap`: as `vrrp_no_swap`.
    pub checker_no_swap: bool,
    /// `bfd_no_swap`: as `vrrp_no_swap`.
    pub bfd_no_swap: bool,
    /// `vrrp_rlimit_rttime`: `RLIMIT_RTTIME` in microseconds, with `vrrp_rt_priority` only.
    pub vrrp_rlimit_rttime: Option<u64>,
    /// `checker_rlimit_rttime`: as `vrrp_rlimit_rttime`, with `checker_rt_priority`.
    pub checker_rlimit_rttime: Option<u64>,
    /// `bfd_rlimit_rttime`: as `vrrp_rlimit_rttime`, with `bfd_rt_priority`.
    pub bfd_rlimit_rttime: Option<u64>,
    /// `process_name`: name (at most 15 bytes) of the daemon's main thread, hence of the process.
    pub process_name: Option<String>,
    /// `vrrp_process_name` (or `keepalived_vrrp` by `process_names`): the VRRP thread's name.
    pub vrrp_process_name: Option<String>,
    /// `checker_process_name` (or `keepalived_lvs` by `process_names`): the checkers' threads' name.
    pub checker_process_name: Option<String>,
    /// `bfd_process_name` (or `keepalived_bfd` by `process_names`): the BFD thread's name.
    pub bfd_process_name: Option<String>,
    /// `vrrp_netlink_cmd_rcv_bufs`: SO_RCVBUF of ka's rtnetlink socket (0: the kernel's default).
    pub vrrp_netlink_cmd_rcv_bufs: u32,
    /// `vrrp_netlink_cmd_rcv_bufs_force`: set it with SO_RCVBUFFORCE (past `rmem_max`).
    pub vrrp_netlink_cmd_rcv_bufs_force: bool,
    /// `log_unknown_vrids`: log each advert for a VRID no instance runs on its interface.
    pub log_unknown_vrids: bool,
    /// `random_seed`: seed of ka's randomness (BFD discriminators and jitter) instead of
    /// `/dev/urandom`.
    pub random_seed: Option<u32>,
    /// `child_wait_time` (top level): how long a stop waits for the VRRP engine and the
    /// checkers to finish before going on without them; `None`: as long as they take.
    pub child_wait_time: Option<Duration>,
    /// `vrrp_gna_interval` (default 0).
    pub vrrp_gna_interval: Duration,
    /// `vrrp_skip_check_adv_addr`.
    pub vrrp_skip_check_adv_addr: bool,
    /// `vrrp_check_unicast_src`.
    pub vrrp_check_unicast_src: bool,
    /// `enable_script_security`.
    pub enable_script_security: bool,
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    /// Where `script_user` is written.
    pub script_user_span: Option<Span>,
    /// `dynamic_interfaces`.
    pub dynamic_interfaces: bool,
    /// `notification_email` addresses.
    pub notification_email: Vec<String>,
    /// `notification_email_from`.
    pub notification_email_from: Option<String>,
    /// `smtp_server ADDR [PORT]` (port default 25).
    pub smtp_server: Option<(String, u16)>,
    /// `smtp_connect_timeout` (default 30 s).
    pub smtp_connect_timeout: Duration,
    /// `smtp_alert`: default of every `smtp_alert` (VRRP and checkers).
    pub smtp_alert: Option<bool>,
    /// `smtp_alert_vrrp`: default of the VRRP instances' and sync groups' `smtp_alert`.
    pub smtp_alert_vrrp: Option<bool>,
    /// `smtp_alert_checker`: default of the virtual and real servers' `smtp_alert`.
    pub smtp_alert_checker: Option<bool>,
    /// `vrrp_down_timer_adverts` (default for `down_timer_adverts`, 3).
    pub vrrp_down_timer_adverts: Option<u8>,
    /// `vrrp_lower_prio_no_advert`.
    pub vrrp_lower_prio_no_advert: bool,
    /// `vrrp_higher_prio_send_advert`.
    pub vrrp_higher_prio_send_advert: bool,
    /// `vrrp_startup_delay`.
    pub vrrp_startup_delay: Duration,
    /// `vrrp_notify_priority_changes [BOOL]`: the default of the instances'
    /// `notify_priority_changes`.
    pub vrrp_notify_priority_changes: bool,
    /// `no_email_faults`: no SMTP alert when an instance or sync group enters FAULT.
    pub no_email_faults: bool,
    /// `smtp_helo_name NAME`: the name in the SMTP `EHLO` (default: the host name).
    pub smtp_helo_name: Option<String>,
    /// `umask MASK`: the daemon's file-creation mask (numeric, or `IWGRP|IWOTH` style).
    pub umask: Option<u32>,
    /// `startup_script SCRIPT [USER [GROUP]]`: run, and waited for, before the daemon starts.
    pub startup_script: Option<Script>,
    /// `startup_script_timeout SECS` (1-1000, default 10).
    pub startup_script_timeout: Duration,
    /// `shutdown_script SCRIPT [USER [GROUP]]`: run, and waited for, when the daemon has stopped.
    pub shutdown_script: Option<Script>,
    /// `shutdown_script_timeout SECS` (1-1000, default 10).
    pub shutdown_script_timeout: Duration,
    /// `notify_fifo PATH`.
    pub notify_fifo: Option<String>,
    /// `vrrp_notify_fifo PATH`.
    pub vrrp_notify_fifo: Option<String>,
    /// `lvs_notify_fifo PATH`: virtual and real server state changes (`VS ...`, `RS ...`).
    pub lvs_notify_fifo: Option<String>,
    /// `lvs_flush`: start from empty load-balancer tables (nothing adopted from an earlier run).
    pub lvs_flush: bool,
    /// `lvs_flush_on_stop [VS]`.
    pub lvs_flush_on_stop: LvsFlushOnStop,
    /// `nftables_ipvs [TABLE]`: a `virtual_server_group` is one IPVS service in keepalived (its
    /// entries marked with one fwmark), so its persistence spans the whole group.
    pub nftables_ipvs: Option<String>,
    /// `lvs_sync_daemon` (or the deprecated `lvs_sync_daemon_interface` of a `vrrp_instance`).
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    /// `lvs_timeouts`: connection-table entry lifetimes.
    pub lvs_timeouts: LvsTimeouts,
    /// `lvs_flood_rate N` (ka's own): new unassured connection-table entries per second and
    /// CPU above which the CPU is in flood mode (0: never); `None`: the default.
    pub lvs_flood_rate: Option<u32>,
    /// Where `global_defs` starts, if present.
    pub span: Option<Span>,
}

/// `lvs_timeouts tcp N tcpfin N udp N` (seconds; unset or 0: IPVS's default, 900 / 120 / 300).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LvsTimeouts {
    /// ESTABLISHED TCP.
    pub tcp: Option<u32>,
    /// TCP after a FIN.
    pub tcp_fin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        Self {
            router_id: None,
            vrrp_version: VrrpVersion::V2,
            vrrp_strict: false,
            vrrp_mcast_group4: IpAddr::from([224, 0, 0, 18]),
            vrrp_mcast_group6: IpAddr::from([0xff02, 0, 0, 0, 0, 0, 0, 0x12]),
            default_interface: "eth0".into(),
            vrrp_garp_master_delay: Duration::from_secs(5),
            vrrp_garp_master_repeat: 5,
            vrrp_garp_master_refresh: Duration::ZERO,
            vrrp_garp_master_refresh_repeat: 1,
            vrrp_garp_interval: Duration::ZERO,
            vrrp_priority: None,
            vrrp_rt_priority: None,
            checker_priority: None,
            bfd_priority: None,
            checker_rt_priority: None,
            bfd_rt_priority: None,
            vrrp_cpu_affinity: Vec::new(),
            checker_cpu_affinity: Vec::new(),
            bfd_cpu_affinity: Vec::new(),
            vrrp_no_swap: false,
            checker_no_swap: false,
            bfd_no_swap: false,
            vrrp_rlimit_rttime: None,
            checker_rlimit_rttime: None,
            bfd_rlimit_rttime: None,
            process_name: None,
            vrrp_process_name: None,
            checker_process_name: None,
            bfd_process_name: None,
            vrrp_netlink_cmd_rcv_bufs: 0,
            vrrp_netlink_cmd_rcv_bufs_force: false,
            log_unknown_vrids: false,
            random_seed: None,
            child_wait_time: None,
            vrrp_gna_interval: Duration::ZERO,
            vrrp_skip_check_adv_addr: false,
            vrrp_check_unicast_src: false,
            enable_script_security: false,
            script_user: None,
            script_user_span: None,
            dynamic_interfaces: false,
            notification_email: Vec::new(),
            notification_email_from: None,
            smtp_server: None,
            smtp_connect_timeout: Duration::from_secs(30),
            smtp_alert: None,
            smtp_alert_vrrp: None,
            smtp_alert_checker: None,
            vrrp_down_timer_adverts: None,
            vrrp_lower_prio_no_advert: false,
            vrrp_higher_prio_send_advert: false,
            vrrp_startup_delay: Duration::ZERO,
            vrrp_notify_priority_changes: false,
            no_email_faults: false,
            smtp_helo_name: None,
            umask: None,
            startup_script: None,
            startup_script_timeout: Duration::from_secs(10),
            shutdown_script: None,
            shutdown_script_timeout: Duration::from_secs(10),
            notify_fifo: None,
            vrrp_notify_fifo: None,
            lvs_notify_fifo: None,
            lvs_flush: false,
            lvs_flush_on_stop: LvsFlushOnStop::No,
            nftables_ipvs: None,
            lvs_sync_daemon: None,
            lvs_timeouts: LvsTimeouts::default(),
            lvs_flood_rate: None,
            span: None,
        }
    }
}

/// `lvs_flush_on_stop`: what keepalived does with its services when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LvsFlushOnStop {
    /// Not given: each real server is removed, then its virtual server (with `omega`, the
    /// real servers' down notifiers run).
    #[default]
    No,
    /// `lvs_flush_on_stop`: everything is flushed at once (with `omega`, each virtual server's
    /// quorum-down notifiers run, not the real servers').
    Full,
    /// `lvs_flush_on_stop VS`: each virtual server is removed with its real servers (notifiers
    /// as [`LvsFlushOnStop::Full`]).
    Vs,
}

/// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`:
/// connection sync between directors, following the VRRP instance (MASTER sends, BACKUP
/// receives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvsSyncDaemon {
    /// Interface the sync datagrams go out and come in on.
    pub interface: String,
    /// The VRRP instance whose state decides the role.
    pub instance: String,
    /// `id`: the sync id (default: the instance's VRID).
    pub syncid: Option<u8>,
    /// `maxlen`: largest sync datagram payload (default: 1500 minus the IP and UDP headers).
    pub maxlen: Option<u16>,
    /// `port` (default 8848).
    pub port: Option<u16>,
    /// `ttl` of the multicast datagrams (default 1).
    pub ttl: Option<u8>,
    /// `group`: multicast group (default 224.0.0.81).
    pub group: Option<IpAddr>,
    /// Where it was configured.
    pub span: Span,
}

/// A script to run, with the user to run it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The command line (one word, or a quoted string with arguments).
    pub command: String,
    /// `username [groupname]`.
    pub user: Option<(String, Option<String>)>,
    /// Where it was configured.
    pub span: Span,
}

/// `vrrp_script NAME { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpScript {
    /// Its name.
    pub name: String,
    /// `script` (required; a script without one is removed, as keepalived does).
    pub script: Option<String>,
    /// `interval` (default 1 s).
    pub interval: Duration,
    /// `timeout` (default: the interval).
    pub timeout: Duration,
    /// `weight` (default 0).
    pub weight: i32,
    /// `weight ... reverse`.
    pub reverse: bool,
    /// `rise` (default 1).
    pub rise: u32,
    /// `fall` (default 1).
    pub fall: u32,
    /// `user USER [GROUP]`.
    pub user: Option<(String, Option<String>)>,
    /// `init_fail`.
    pub init_fail: bool,
    /// Where the block starts.
    pub span: Span,
    /// Where its `script` line is (for what is said about the script itself).
    pub script_span: Option<Span>,
    /// Where the block ends (its `}`), where keepalived reports what it decides on reading it.
    pub end: Span,
    /// Where its `user` line is.
    pub user_span: Option<Span>,
}

/// `track_file NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFile {
    /// Its name.
    pub name: String,
    /// `file`.
    pub file: Option<String>,
    /// `weight` (default 1).
    pub weight: i64,
    /// `weight ... reverse`.
    pub reverse: bool,
    /// `init_file [VALUE] [overwrite]`.
    pub init_file: Option<(i64, bool)>,
    /// Where the block starts.
    pub span: Span,
}

/// `vrrp_track_process NAME { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackProcess {
    /// Its name.
    pub name: String,
    /// `process` words.
    pub process: Vec<String>,
    /// `weight` (default 1).
    pub weight: i32,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `quorum_max`.
    pub quorum_max: Option<u32>,
    /// `delay` / `fork_delay` / `terminate_delay`.
    pub fork_delay: Duration,
    /// `terminate_delay`.
    pub terminate_delay: Duration,
    /// `full_command`.
    pub full_command: bool,
    /// Where the block starts.
    pub span: Span,
}

/// `bfd_instance NAME { ... }` (see [`crate::bfd`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BfdInstance {
    /// Its name.
    pub name: String,
    /// `neighbor_ip`.
    pub neighbor_ip: Option<IpAddr>,
    /// `source_ip`.
    pub source_ip: Option<IpAddr>,
    /// `min_rx` (default 10 ms).
    pub min_rx: Duration,
    /// `min_tx` (default 10 ms).
    pub min_tx: Duration,
    /// `idle_tx` (default 1000 ms).
    pub idle_tx: Duration,
    /// `multiplier` (default 5).
    pub multiplier: u32,
    /// `weight` (default 0): the weight of `track_bfd` references that give none.
    pub weight: i32,
    /// `weight N reverse`.
    pub reverse: bool,
    /// `passive`.
    pub passive: bool,
    /// `ttl` / `hoplimit` (default: 255 for IPv4, 64 for IPv6, as keepalived).
    pub ttl: Option<u8>,
    /// `max_hops` (default 0; 255 or -1: the received TTL is not checked).
    pub max_hops: u8,
    /// The VRRP instances hear of it (`vrrp`, or neither `vrrp` nor `checker`).
    pub to_vrrp: bool,
    /// The checkers hear of it (`checker`, or neither `vrrp` nor `checker`).
    pub to_checker: bool,
    /// A session runs. keepalived's BFD process drops an instance with no usable neighbour,
    /// mixed families or a duplicate neighbour, while its VRRP and checker processes still
    /// know the name: references to it resolve and see it down, forever.
    pub enabled: bool,
    /// Where the block starts.
    pub span: Span,
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpVersion {
    /// RFC 3768.
    V2,
    /// RFC 5798.
    V3,
}

impl VrrpVersion {
    /// 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

/// Initial state of a VRRP instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpState {
    /// `state MASTER`.
    Master,
    /// `state BACKUP` (the default).
    Backup,
}

impl VrrpState {
    /// The keyword, `MASTER` or `BACKUP`.
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
        }
    }
}

/// VRRP authentication type (deprecated by RFC 3768).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// Simple password.
    Pass,
    /// IPsec AH.
    Ah,
}

/// `authentication { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// `auth_type`.
    pub auth_type: AuthType,
    /// `auth_pass` (at most 8 bytes are used).
    pub auth_pass: String,
    /// Where the block starts.
    pub span: Span,
    /// Where the `auth_type` value is written.
    pub type_span: Span,
}

/// An address of `virtual_ipaddress`, `virtual_ipaddress_excluded` or `static_ipaddress`
/// (`ADDR[/LEN] [dev IF] [brd B|+|-] [scope S] [label L] [peer P] [home] [-nodad] [mngtmpaddr]
/// [noprefixroute] [autojoin] [preferred_lft N|forever] [no_track] [use_vmac] [track_group G]`),
/// fully parsed: the engine applies these values as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIp {
    /// Address and prefix (a bare address gets /32 or /128; with `peer`, the peer's).
    pub address: IpPrefix,
    /// `dev` (default: the instance's interface).
    pub dev: Option<String>,
    /// `brd` / `broadcast` (`+` and `-` computed from the prefix), IPv4 only.
    pub broadcast: Option<std::net::Ipv4Addr>,
    /// `scope` as a number (0 global, 200 site, 253 link, 254 host, 255 nowhere), IPv4 only.
    pub scope: Option<u8>,
    /// `label`, IPv4 only, at most 15 bytes.
    pub label: Option<String>,
    /// `peer` (point-to-point remote address).
    pub peer: Option<IpAddr>,
    /// `no_track`.
    pub no_track: bool,
    /// Address flags (`home`, `mngtmpaddr`, `noprefixroute`, `autojoin`, `-nodad`).
    pub flags: AddrFlags,
    /// `preferred_lft` in seconds (`forever`: `u32::MAX`).
    pub preferred_lft: Option<u32>,
    /// `use_vmac` (the address goes on the instance's VMAC).
    pub use_vmac: bool,
    /// `track_group` (static addresses only).
    pub track_group: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// The `ip addr` flags an address may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrFlags {
    /// `home` (IFA_F_HOMEADDRESS).
    pub home: bool,
    /// `-nodad`: duplicate address detection is done (ka skips it for IPv6 VIPs by default).
    pub dad: bool,
    /// `mngtmpaddr` (IFA_F_MANAGETEMPADDR).
    pub mngtmpaddr: bool,
    /// `noprefixroute` (IFA_F_NOPREFIXROUTE).
    pub noprefixroute: bool,
    /// `autojoin` (IFA_F_MCAUTOJOIN).
    pub autojoin: bool,
}

/// A route type (`ip route` TYPE, keepalived's `rtntypes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteType {
    /// `unicast` (the default).
    #[default]
    Unicast,
    /// `local`.
    Local,
    /// `broadcast` / `brd`.
    Broadcast,
    /// `anycast`.
    Anycast,
    /// `multicast`.
    Multicast,
    /// `blackhole`.
    Blackhole,
    /// `unreachable`.
    Unreachable,
    /// `prohibit`.
    Prohibit,
    /// `throw`.
    Throw,
    /// `nat` (obsolete; the kernel refuses it).
    Nat,
    /// `xresolve`.
    Xresolve,
}

/// A per-route TCP/path metric (`RTA_METRICS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMetric {
    /// `mtu`.
    Mtu(u32),
    /// `window`.
    Window(u32),
    /// `rtt` (units of 1/8 ms).
    Rtt(u32),
    /// `rttvar` (units of 1/4 ms).
    RttVar(u32),
    /// `ssthresh`.
    SsThresh(u32),
    /// `cwnd`.
    Cwnd(u32),
    /// `advmss`.
    Advmss(u32),
    /// `reordering`.
    Reordering(u32),
    /// `hoplimit`.
    Hoplimit(u32),
    /// `initcwnd`.
    InitCwnd(u32),
    /// `features ecn`.
    Features(u32),
    /// `rto_min` (ms).
    RtoMin(u32),
    /// `initrwnd`.
    InitRwnd(u32),
    /// `quickack`.
    QuickAck(u32),
    /// `congctl`.
    CongCtl(String),
    /// `fastopen_no_cookie`.
    FastopenNoCookie(u32),
}

/// One `nexthop` of a multipath route (or one side of the deprecated `or`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nexthop {
    /// `via`.
    pub via: Option<IpAddr>,
    /// `dev`.
    pub dev: Option<String>,
    /// `weight`, 1-256 (`None`: 1).
    pub weight: Option<u16>,
    /// `onlink`.
    pub onlink: bool,
}

/// A `virtual_routes` / `static_routes` entry (keepalived's `ip route` grammar), fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination (`default`: 0.0.0.0/0 or ::/0).
    pub dst: IpPrefix,
    /// Route type.
    pub kind: RouteType,
    /// `src` (preferred source address).
    pub src: Option<IpAddr>,
    /// `from` (IPv6 source prefix).
    pub from: Option<IpPrefix>,
    /// `via` / `gw`.
    pub via: Option<IpAddr>,
    /// `dev` / `oif`.
    pub dev: Option<String>,
    /// `table` (default: main, 254).
    pub table: u32,
    /// `metric` / `priority` / `preference`.
    pub metric: Option<u32>,
    /// `scope` as a number.
    pub scope: Option<u8>,
    /// `protocol` (keepalived's 18 for tracked routes, as keepalived sets it).
    pub protocol: Option<u8>,
    /// `tos` / `dsfield`.
    pub tos: Option<u8>,
    /// `onlink`.
    pub onlink: bool,
    /// `pref` (IPv6 router preference: 0 medium, 1 high, 3 low).
    pub pref: Option<u8>,
    /// `expires` (IPv6, seconds).
    pub expires: Option<u32>,
    /// Metrics (`mtu`, `advmss`, ...).
    pub metrics: Vec<RouteMetric>,
    /// Bit mask of locked metrics (`mtu lock N`: bit RTAX_MTU).
    pub lock: u32,
    /// Multipath next hops (`nexthop ...`, or the deprecated `or`).
    pub nexthops: Vec<Nexthop>,
    /// Whether the route follows its interface (not `no_track`, and a `dev` is given).
    pub track: bool,
    /// Where it was written.
    pub span: Span,
}

impl Route {
    /// Whether the route is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.dst.is_ipv6()
    }

    /// Every interface the route names (`dev` and each next hop's `dev`).
    pub fn devs(&self) -> impl Iterator<Item = &String> {
        self.dev.iter().chain(self.nexthops.iter().filter_map(|n| n.dev.as_ref()))
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// `table N` / `lookup N`.
    Table(u32),
    /// `goto N` (a rule preference).
    Goto(u32),
    /// `nop`.
    Nop,
    /// `blackhole`.
    Blackhole,
    /// `unreachable`.
    Unreachable,
    /// `prohibit`.
    Prohibit,
}

/// A `virtual_rules` / `static_rules` entry (keepalived's `ip rule` grammar), fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// IPv6 rule (otherwise IPv4).
    pub v6: bool,
    /// `from PREFIX` (`all`: none).
    pub from: Option<IpPrefix>,
    /// `to PREFIX` (`all`: none).
    pub to: Option<IpPrefix>,
    /// `not`.
    pub invert: bool,
    /// The action.
    pub action: RuleAction,
    /// `preference` / `priority` / `order` (assigned from 16384 down when missing, as
    /// keepalived does, with a warning).
    pub priority: u32,
    /// `tos` / `dsfield`.
    pub tos: Option<u8>,
    /// `fwmark N[/MASK]`.
    pub fwmark: Option<(u32, Option<u32>)>,
    /// `iif` / `dev`.
    pub iif: Option<String>,
    /// `oif`.
    pub oif: Option<String>,
    /// `protocol` (keepalived's 18 unless `no_track`).
    pub protocol: Option<u8>,
    /// `suppress_prefixlength` / `sup_pl`.
    pub suppress_prefixlen: Option<u32>,
    /// Where it was written.
    pub span: Span,
}

impl Rule {
    /// Every interface the rule names (`iif`, `oif`).
    pub fn devs(&self) -> impl Iterator<Item = &String> {
        self.iif.iter().chain(self.oif.iter())
    }
}

/// A `track_interface` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedInterface {
    /// Interface name.
    pub name: String,
    /// `weight` (0: fault when down).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// Where it was written.
    pub span: Span,
}

/// A reference to a tracked object (`track_script`, `track_file`, `track_process`, `track_bfd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRef {
    /// The name of the tracked object.
    pub name: String,
    /// `weight`, when given (otherwise the object's own weight).
    pub weight: Option<i64>,
    /// `reverse`.
    pub reverse: bool,
    /// Where it was written.
    pub span: Span,
}

/// A `unicast_peer` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicastPeer {
    /// Peer address.
    pub address: IpAddr,
    /// `min_ttl`.
    pub min_ttl: Option<u8>,
    /// `max_ttl`.
    pub max_ttl: Option<u8>,
    /// Where it was written.
    pub span: Span,
}

/// Notification scripts of an instance or group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// `notify_master`.
    pub master: Option<Script>,
    /// `notify_backup`.
    pub backup: Option<Script>,
    /// `notify_fault`.
    pub fault: Option<Script>,
    /// `notify_stop`.
    pub stop: Option<Script>,
    /// `notify`.
    pub any: Option<Script>,
}

/// `vrrp_instance NAME { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpInstance {
    /// Its name.
    pub name: String,
    /// `debug` level, 0 to 4: keepalived 2.2.7 only shows it in its data dump; so does ka.
    pub debug: u8,
    /// Where the block starts.
    pub span: Span,
    /// `state` (default BACKUP).
    pub state: VrrpState,
    /// `interface` (required unless unicast peers are given).
    pub interface: Option<String>,
    /// Where `interface` was written.
    pub interface_span: Option<Span>,
    /// `virtual_router_id`, 1-255 (0 when missing: reported as an error).
    pub virtual_router_id: u8,
    /// `priority` (default 100).
    pub priority: u8,
    /// `advert_int` (default 1 s).
    pub advert_int: Duration,
    /// `version` (default: global `vrrp_version`; IPv6 instances always use 3).
    pub version: VrrpVersion,
    /// `virtual_ipaddress`.
    pub virtual_ipaddresses: Vec<VirtualIp>,
    /// `virtual_ipaddress_excluded`.
    pub virtual_ipaddresses_excluded: Vec<VirtualIp>,
    /// `virtual_routes`: added on MASTER, removed otherwise.
    pub virtual_routes: Vec<Route>,
    /// `virtual_rules`: added on MASTER, removed otherwise.
    pub virtual_rules: Vec<Rule>,
    /// Preemption (`nopreempt` clears it; default on).
    pub preempt: bool,
    /// `preempt_delay` (default 0).
    pub preempt_delay: Duration,
    /// `accept` / `no_accept` (`None`: the default for the mode).
    pub accept: Option<bool>,
    /// `mcast_src_ip` / `unicast_src_ip`.
    pub src_ip: Option<IpAddr>,
    /// `mcast_dst_ip`.
    pub mcast_dst_ip: Option<IpAddr>,
    /// `unicast_peer`.
    pub unicast_peers: Vec<UnicastPeer>,
    /// `unicast_ttl` (default 255).
    pub unicast_ttl: u8,
    /// `authentication`.
    pub authentication: Option<Authentication>,
    /// `track_interface`.
    pub track_interfaces: Vec<TrackedInterface>,
    /// `track_script`.
    pub track_scripts: Vec<TrackRef>,
    /// `track_file`.
    pub track_files: Vec<TrackRef>,
    /// `track_process`.
    pub track_processes: Vec<TrackRef>,
    /// `track_bfd`.
    pub track_bfds: Vec<TrackRef>,
    /// `dont_track_primary`.
    pub dont_track_primary: bool,
    /// Notification scripts.
    pub notify: Notify,
    /// `garp_master_delay` (default: global, 5 s).
    pub garp_master_delay: Duration,
    /// `garp_master_repeat` (default: global, 5).
    pub garp_master_repeat: u32,
    /// `garp_master_refresh` (default: global, 0).
    pub garp_master_refresh: Duration,
    /// `garp_master_refresh_repeat` (default: global, 1).
    pub garp_master_refresh_repeat: u32,
    /// `strict_mode` (default: global `vrrp_strict`).
    pub strict_mode: bool,
    /// `use_vmac [NAME]`.
    pub use_vmac: Option<Option<String>>,
    /// `smtp_alert`.
    pub smtp_alert: Option<bool>,
    /// The sync group it belongs to, filled in after parsing.
    pub sync_group: Option<String>,
    /// `down_timer_adverts` (default: the global one, else 3).
    pub down_timer_adverts: Option<u8>,
    /// `lower_prio_no_advert` (default: the global one).
    pub lower_prio_no_advert: Option<bool>,
    /// `higher_prio_send_advert` (default: the global one).
    pub higher_prio_send_advert: Option<bool>,
    /// `old_unicast_checksum`: VRRPv3 unicast checksum over the multicast group.
    pub old_unicast_checksum: bool,
    /// `notify_deleted`.
    pub notify_deleted: bool,
    /// `notify_priority_changes [BOOL]`: effective priority changes go to the notify FIFOs
    /// (`INSTANCE "VI_1" MASTER_PRIORITY 90`). Unset: the sync group's, else the global
    /// `vrrp_notify_priority_changes` (resolved by the checks).
    pub notify_priority_changes: Option<bool>,
    /// `skip_check_adv_addr` (default: the global one).
    pub skip_check_adv_addr: Option<bool>,
    /// `check_unicast_src` (default: the global one).
    pub check_unicast_src: Option<bool>,
}

/// `vrrp_sync_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// Its name.
    pub name: String,
    /// `group { ... }` members (vrrp_instance names).
    pub members: Vec<(String, Span)>,
    /// `track_interface`.
    pub track_interfaces: Vec<TrackedInterface>,
    /// `track_script`.
    pub track_scripts: Vec<TrackRef>,
    /// `track_file`.
    pub track_files: Vec<TrackRef>,
    /// `track_process`.
    pub track_processes: Vec<TrackRef>,
    /// `track_bfd`.
    pub track_bfds: Vec<TrackRef>,
    /// Notification scripts.
    pub notify: Notify,
    /// `smtp_alert`.
    pub smtp_alert: Option<bool>,
    /// `sync_group_tracking_weight`.
    pub sync_group_tracking_weight: bool,
    /// `notify_priority_changes [BOOL]`: the default of its instances'.
    pub notify_priority_changes: Option<bool>,
    /// Where the block starts.
    pub span: Span,
}

/// `garp_group { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpGroup {
    /// `garp_interval`.
    pub garp_interval: Option<Duration>,
    /// `gna_interval`.
    pub gna_interval: Option<Duration>,
    /// `interface` or `interfaces`.
    pub interfaces: Vec<String>,
    /// Where the block starts.
    pub span: Span,
}

/// The `SSL` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslConfig {
    /// `password`.
    pub password: Option<String>,
    /// `ca`.
    pub ca: Option<String>,
    /// `certificate`.
    pub certificate: Option<String>,
    /// `key`.
    pub key: Option<String>,
    /// Where the block starts.
    pub span: Span,
}

/// IPVS scheduler (`lb_algo` / `lvs_sched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum LbAlgo {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Sh,
    Mh,
    Dh,
    Fo,
    Ovf,
    Sed,
    Nq,
    Twos,
}

impl LbAlgo {
    /// Every scheduler with its keyword.
    pub const ALL: [(&'static str, LbAlgo); 14] = [
        ("rr", LbAlgo::Rr),
        ("wrr", LbAlgo::Wrr),
        ("lc", LbAlgo::Lc),
        ("wlc", LbAlgo::Wlc),
        ("lblc", LbAlgo::Lblc),
        ("lblcr", LbAlgo::Lblcr),
        ("sh", LbAlgo::Sh),
        ("mh", LbAlgo::Mh),
        ("dh", LbAlgo::Dh),
        ("fo", LbAlgo::Fo),
        ("ovf", LbAlgo::Ovf),
        ("sed", LbAlgo::Sed),
        ("nq", LbAlgo::Nq),
        ("twos", LbAlgo::Twos),
    ];

    /// The keyword (`rr`, `wlc`, ...).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(s, _)| s)
    }
}

/// Tunnel encapsulation of `lvs_method TUN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelType {
    /// IP in IP (default).
    Ipip,
    /// GUE to the given port.
    Gue(u16),
    /// GRE.
    Gre,
}

/// IPVS forwarding method (`lb_kind` / `lvs_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LbKind {
    /// NAT (default).
    Nat,
    /// Direct routing.
    Dr,
    /// Tunnelling.
    Tun(TunnelType),
}

impl LbKind {
    /// The keyword: `NAT`, `DR` or `TUN`.
    pub fn as_str(self) -> &'static str {
        match self {
            LbKind::Nat => "NAT",
            LbKind::Dr => "DR",
            LbKind::Tun(_) => "TUN",
        }
    }
}

/// L4 protocol of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP (keepalived 2.2's default when `protocol` is missing).
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// `TCP`, `UDP` or `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// What a `virtual_server` is keyed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VsKey {
    /// `virtual_server ADDR [PORT]` (port 0: all ports, persistent services only).
    Addr {
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// `virtual_server fwmark N`.
    Fwmark(u32),
    /// `virtual_server group NAME`.
    Group(String),
}

/// An entry of a `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsgEntry {
    /// An address range `first..=last` and port.
    Range {
        /// First address.
        first: IpAddr,
        /// Last address (inclusive).
        last: IpAddr,
        /// Port (0: none given).
        port: u16,
        /// Where it was written.
        span: Span,
    },
    /// `fwmark N`.
    Fwmark {
        /// The mark.
        mark: u32,
        /// Where it was written.
        span: Span,
    },
}

/// `virtual_server_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServerGroup {
    /// Its name.
    pub name: String,
    /// Its entries.
    pub entries: Vec<VsgEntry>,
    /// Where the block starts.
    pub span: Span,
}

/// Health-check timing shared by virtual servers, real servers and checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTiming {
    /// `connect_timeout` (default 5 s).
    pub connect_timeout: Duration,
    /// `delay_loop` (default 60 s).
    pub delay_loop: Duration,
    /// `retry` (default 1; DNS_CHECK 3; MISC_CHECK 0).
    pub retry: Option<u32>,
    /// `delay_before_retry` (default 3 s for HTTP_GET/SSL_GET, delay_loop for DNS, else 1 s).
    pub delay_before_retry: Option<Duration>,
    /// `warmup` (default: random up to delay_loop).
    pub warmup: Option<Duration>,
    /// `alpha`.
    pub alpha: bool,
    /// `inhibit_on_failure`.
    pub inhibit_on_failure: bool,
}

impl Default for CheckTiming {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            delay_loop: Duration::from_secs(60),
            retry: None,
            delay_before_retry: None,
            warmup: None,
            alpha: false,
            inhibit_on_failure: false,
        }
    }
}

/// `virtual_server ... { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    /// Address and port, fwmark or group.
    pub key: VsKey,
    /// Where the block starts.
    pub span: Span,
    /// Scheduler (default `wlc`, as ipvsadm).
    pub lb_algo: LbAlgo,
    /// Where `lb_algo` was written.
    pub lb_algo_span: Option<Span>,
    /// Forwarding method (default NAT).
    pub lb_kind: LbKind,
    /// Protocol (keepalived 2.2 defaults to UDP, with a warning, when none is given).
    pub protocol: Protocol,
    /// Where `protocol` was written.
    pub protocol_span: Option<Span>,
    /// `persistence_timeout` (given without value: 360 s).
    pub persistence_timeout: Option<Duration>,
    /// `persistence_granularity`.
    pub persistence_granularity: Option<IpAddr>,
    /// `persistence_engine`.
    pub persistence_engine: Option<String>,
    /// `ops`: one-packet scheduling (UDP only).
    pub ops: bool,
    /// `sh-port` / `mh-port` (`flag-2`): the source port is hashed with the address.
    pub hash_port: bool,
    /// `sh-fallback` / `mh-fallback` (`flag-1`): another server when the hashed one is unusable.
    pub hash_fallback: bool,
    /// `ha_suspend`.
    pub ha_suspend: bool,
    /// `omega`.
    pub omega: bool,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `hysteresis` (default 0).
    pub hysteresis: u32,
    /// `quorum_up`.
    pub quorum_up: Option<Script>,
    /// `quorum_down`.
    pub quorum_down: Option<Script>,
    /// `ip_family` (inet6: true).
    pub ipv6_family: Option<bool>,
    /// `sorry_server`.
    pub sorry_server: Option<RealServer>,
    /// `sorry_server_inhibit`: the sorry server stays in the table at weight 0 while unused.
    pub sorry_server_inhibit: bool,
    /// Timing defaults for real servers and checkers.
    pub timing: CheckTiming,
    /// `smtp_alert`.
    pub smtp_alert: Option<bool>,
    /// `real_server` blocks.
    pub real_servers: Vec<RealServer>,
}

/// `real_server ADDR [PORT] { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    /// Address.
    pub address: IpAddr,
    /// Port (default: the virtual server's).
    pub port: u16,
    /// `weight` (default 1).
    pub weight: i32,
    /// Forwarding method (default: the virtual server's).
    pub lb_kind: LbKind,
    /// `notify_up`.
    pub notify_up: Option<Script>,
    /// `notify_down`.
    pub notify_down: Option<Script>,
    /// `uthreshold`.
    pub uthreshold: Option<u32>,
    /// `lthreshold`.
    pub lthreshold: Option<u32>,
    /// `virtualhost` (default: the virtual server's).
    pub virtualhost: Option<String>,
    /// Timing (default: the virtual server's).
    pub timing: CheckTiming,
    /// `smtp_alert`.
    pub smtp_alert: Option<bool>,
    /// Health checkers.
    pub checkers: Vec<Checker>,
    /// Where it starts.
    pub span: Span,
    /// Where its block closes (keepalived reports real-server problems there).
    pub end: Span,
}

/// A status code range of an HTTP check URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// First code.
    pub first: u16,
    /// Last code (inclusive).
    pub last: u16,
}

/// `url { ... }` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `path`.
    pub path: String,
    /// `digest`.
    pub digest: Option<String>,
    /// `status_code` (default 200-299).
    pub status_codes: Vec<StatusRange>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `regex`.
    pub regex: Option<String>,
    /// `regex_no_match`.
    pub regex_no_match: bool,
    /// Where it starts.
    pub span: Span,
}

/// Checker-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckerKind {
    /// `TCP_CHECK`.
    Tcp,
    /// `HTTP_GET` (`ssl: false`) or `SSL_GET` (`ssl: true`).
    Http {
        /// SSL_GET.
        ssl: bool,
        /// `url` blocks.
        urls: Vec<HttpUrl>,
        /// `http_protocol` (1.0, 1.0C, 1.1).
        http_protocol: Option<String>,
        /// `virtualhost`.
        virtualhost: Option<String>,
        /// `enable_sni`.
        enable_sni: bool,
        /// `fast_recovery`.
        fast_recovery: bool,
    },
    /// `MISC_CHECK`.
    Misc {
        /// `misc_path`.
        path: Option<String>,
        /// `misc_timeout` (default: delay_loop).
        timeout: Option<Duration>,
        /// `misc_dynamic`.
        dynamic: bool,
        /// `user`.
        user: Option<(String, Option<String>)>,
    },
    /// `SMTP_CHECK`.
    Smtp {
        /// `helo_name`.
        helo_name: Option<String>,
    },
    /// `DNS_CHECK`.
    Dns {
        /// `type` (default SOA).
        qtype: String,
        /// `name` (default `.`).
        name: String,
    },
    /// `UDP_CHECK`.
    Udp {
        /// `payload`.
        payload: Option<Vec<u8>>,
        /// `require_reply`.
        require_reply: bool,
        /// `min_reply_length` (default 0).
        min_reply_length: u32,
        /// `max_reply_length` (default 255).
        max_reply_length: u32,
    },
    /// `PING_CHECK`.
    Ping,
    /// `BFD_CHECK`.
    Bfd {
        /// `name` of the bfd_instance.
        name: Option<String>,
    },
    /// `FILE_CHECK`.
    File {
        /// `track_file` name.
        track_file: Option<String>,
        /// `dynamic`.
        dynamic: bool,
        /// `weight`.
        weight: Option<i64>,
    },
}

impl CheckerKind {
    /// The keepalived keyword (`HTTP_GET`, `TCP_CHECK`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            CheckerKind::Tcp => "TCP_CHECK",
            CheckerKind::Http { ssl: false, .. } => "HTTP_GET",
            CheckerKind::Http { ssl: true, .. } => "SSL_GET",
            CheckerKind::Misc { .. } => "MISC_CHECK",
            CheckerKind::Smtp { .. } => "SMTP_CHECK",
            CheckerKind::Dns { .. } => "DNS_CHECK",
            CheckerKind::Udp { .. } => "UDP_CHECK",
            CheckerKind::Ping => "PING_CHECK",
            CheckerKind::Bfd { .. } => "BFD_CHECK",
            CheckerKind::File { .. } => "FILE_CHECK",
        }
    }
}

/// One health checker of a real server.
#[derive(Debug, Clone, PartialEq)]
pub struct Checker {
    /// Type and type-specific settings.
    pub kind: CheckerKind,
    /// `connect_ip` (default: the real server's address).
    pub connect_ip: Option<IpAddr>,
    /// `connect_port` (default: the real server's port).
    pub connect_port: Option<u16>,
    /// `bindto`.
    pub bindto: Option<IpAddr>,
    /// `bind_port`.
    pub bind_port: Option<u16>,
    /// `bind_if`.
    pub bind_if: Option<String>,
    /// `fwmark`.
    pub fwmark: Option<u32>,
    /// Timing, with defaults resolved for the checker type.
    pub connect_timeout: Duration,
    /// `delay_loop`.
    pub delay_loop: Duration,
    /// `retry`.
    pub retry: u32,
    /// `delay_before_retry`.
    pub delay_before_retry: Duration,
    /// `warmup` (default: the delay_loop).
    pub warmup: Duration,
    /// `alpha`.
    pub alpha: bool,
    /// `log_all_failures`.
    pub log_all_failures: bool,
    /// Where it starts.
    pub span: Span,
}
