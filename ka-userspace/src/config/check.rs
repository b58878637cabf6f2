//! Semantic checks across the model: references, duplicates and incompatible options.

use std::collections::{HashMap, HashSet};

use super::{
    diag::{Diagnostic, Diagnostics, Span},
    model::*,
};

/// How `ka check` learns which network interfaces exist.
#[derive(Debug, Clone, Default)]
pub enum InterfaceCheck {
    /// Ask the kernel (`if_nametoindex`, this network namespace).
    #[default]
    System,
    /// Do not check interfaces.
    Skip,
    /// These interfaces exist (for tests).
    Known(HashSet<String>),
}

/// The MTU assumed for an interface whose own cannot be read (keepalived's `DEFAULT_MTU`).
const DEFAULT_MTU: u32 = 1500;

impl InterfaceCheck {
    /// The interface's MTU from `/sys/class/net` ([`InterfaceCheck::System`]), else 1500.
    fn mtu(&self, name: &str) -> u32 {
        match self {
            InterfaceCheck::System => std::fs::read_to_string(std::path::Path::new("/sys/class/net").join(name).join("mtu"))
                .ok()
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or(DEFAULT_MTU),
            _ => DEFAULT_MTU,
        }
    }

    pub(super) fn exists(&self, name: &str) -> bool {
        match self {
            // Asked of the kernel in this process's network namespace: /sys/class/net shows
            // the namespace /sys was mounted in, which is not ours under `nsenter --net`.
            InterfaceCheck::System => std::ffi::CString::new(name).is_ok_and(|c| {
                // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
                unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
            }),
            InterfaceCheck::Skip => true,
            InterfaceCheck::Known(set) => set.contains(name),
        }
    }
}

fn ip_family(a: &std::net::IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Runs every cross-block check, fixing the model the way keepalived does (e.g. clearing weights
/// it ignores) so the daemon gets what keepalived would run.
pub fn check(cfg: &mut Config, ifaces: &InterfaceCheck, d: &mut Diagnostics) {
    check_instances(cfg, ifaces, d);
    check_static(cfg, ifaces, d);
    check_sync_groups(cfg, d);
    super::sync_track::check(cfg, ifaces, d);
    super::parse::bfd::check(cfg, d);
    let global = cfg.global.vrrp_notify_priority_changes;
    for vi in &mut cfg.vrrp_instances {
        vi.notify_priority_changes = Some(vi.notify_priority_changes.unwrap_or(global));
    }
    fix_virtual_servers(cfg, d);
    check_virtual_servers(cfg, d);
    served_by_ka(cfg, d);
    check_lvs_sync_daemon(cfg, ifaces, d);
    check_schedulers(cfg, d);
}

/// keepalived's label of a virtual server in its messages (`[ADDR]:PORT`, `FWM N`, `group G`).
fn vs_label(key: &VsKey) -> String {
    match key {
        VsKey::Addr { addr, port } => format!("[{addr}]:{port}"),
        VsKey::Fwmark(m) => format!("FWM {m}"),
        VsKey::Group(g) => format!("group {g}"),
    }
}

/// What keepalived 2.2.7 corrects in a virtual server before running it (`validate_check_config`
/// in check_data.c), corrected the same way with a warning: `ha_suspend` on a fwmark service is
/// cleared, `ops` on a service that is not UDP is reset, and a service on port 0 (or a group
/// with a port-0 entry) without `persistence_timeout` becomes persistent (360 s): IPVS serves
/// all ports only with persistence.
fn fix_virtual_servers(cfg: &mut Config, d: &mut Diagnostics) {
    let groups: HashMap<String, Vec<VsgEntry>> =
        cfg.virtual_server_groups.iter().map(|g| (g.name.clone(), g.entries.clone())).collect();
    for vs in &mut cfg.virtual_servers {
        let label = vs_label(&vs.key);
        let entries = match &vs.key {
            VsKey::Group(g) => groups.get(g).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        let has_range = entries.iter().any(|e| matches!(e, VsgEntry::Range { .. }));
        let has_fwmark = matches!(vs.key, VsKey::Fwmark(_)) || entries.iter().any(|e| matches!(e, VsgEntry::Fwmark { .. }));
        if vs.ha_suspend && has_fwmark {
            d.warning(Some(vs.span), format!("virtual server {label}: cannot use ha_suspend with fwmarks - clearing ha_suspend, as keepalived 2.2 does"));
            vs.ha_suspend = false;
        }
        let by_address = matches!(vs.key, VsKey::Addr { .. }) || has_range;
        if by_address && vs.ops && vs.protocol != Protocol::Udp {
            d.warning(Some(vs.span), format!("virtual server {label}: one packet scheduling (ops) requires UDP - resetting, as keepalived 2.2 does"));
            vs.ops = false;
        }
        let port0 = match &vs.key {
            VsKey::Addr { port, .. } => *port == 0,
            _ => entries.iter().any(|e| matches!(e, VsgEntry::Range { port: 0, .. })),
        };
        if port0 && vs.persistence_timeout.is_none() {
            d.warning(Some(vs.span), format!("virtual server {label}: zero port only valid for persistent services - setting persistence_timeout 360, as keepalived 2.2 does"));
            vs.persistence_timeout = Some(std::time::Duration::from_secs(360));
        }
    }
}

/// What ka's datapath cannot serve, each at its keyword: the virtual server (or group entry)
/// is refused alone and the others are served (the daemon logs the same refusals and `ka
/// status` lists them).
fn served_by_ka(cfg: &Config, d: &mut Diagnostics) {
    for r in crate::lb::plan::plan(cfg).refused {
        d.warning(Some(r.span), r.message());
    }
    for (span, message) in crate::lb::plan::approximations(cfg) {
        d.warning(Some(span), message);
    }
}

/// `lvs_sync_daemon` follows a VRRP instance that must exist (keepalived 2.2: "Unable to find
/// vrrp instance ... clearing lvs_syncd config"); its interface should exist (IPVS refuses to
/// start the daemon otherwise; ka logs it and runs without sync).
fn check_lvs_sync_daemon(cfg: &mut Config, ifaces: &InterfaceCheck, d: &mut Diagnostics) {
    let Some(s) = &cfg.global.lvs_sync_daemon else { return };
    if !cfg.vrrp_instances.iter().any(|i| i.name == s.instance) {
        d.warning(
            Some(s.span),
            format!("lvs_sync_daemon: no vrrp_instance {}; connection sync is off: keepalived 2.2 does the same", s.instance),
        );
        cfg.global.lvs_sync_daemon = None;
        return;
    }
    if !ifaces.exists(&s.interface) {
        d.warning(Some(s.span), format!("lvs_sync_daemon: interface {} doesn't exist", s.interface));
    }
}

/// Where the datapath's schedulers and connection limits differ from IPVS's, said at the
/// keyword: the least-connection schedulers' candidate bound, real servers IPVS refuses for
/// their thresholds, and round-robin turns skipped for overloaded servers.
fn check_schedulers(cfg: &Config, d: &mut Diagnostics) {
    use ka_common::sched::MAX_DESTS;
    for vs in &cfg.virtual_servers {
        let algo = vs.lb_algo.as_str();
        let at = vs.lb_algo_span.or(Some(vs.span));
        let least_conn = matches!(
            vs.lb_algo,
            LbAlgo::Lc | LbAlgo::Wlc | LbAlgo::Sed | LbAlgo::Nq | LbAlgo::Fo | LbAlgo::Ovf | LbAlgo::Lblc | LbAlgo::Lblcr | LbAlgo::Twos
        );
        let servers = vs.real_servers.len() + usize::from(vs.sorry_server.is_some());
        if least_conn && servers > MAX_DESTS {
            d.warning(
                at,
                format!(
                    "lb_algo {algo}: the datapath considers the first {MAX_DESTS} available real servers in configuration order; \
                     this virtual server has {servers}, the later ones get connections only while fewer than {MAX_DESTS} before them are available"
                ),
            );
        }
        if vs.lb_algo == LbAlgo::Lblcr && servers > ka_common::sched::LBLCR_SET {
            d.warning(
                at,
                format!(
                    "lb_algo lblcr: the datapath replicates a destination to at most {} real servers (IPVS: to any number); \
                     a full set replaces its most loaded server",
                    ka_common::sched::LBLCR_SET
                ),
            );
        }
        for rs in vs.real_servers.iter().chain(vs.sorry_server.iter()) {
            let (u, l) = (rs.uthreshold.unwrap_or(0), rs.lthreshold.unwrap_or(0));
            if l > u {
                d.warning(
                    Some(rs.span),
                    format!(
                        "real server {}: lthreshold {l} is above uthreshold {u}: IPVS refuses such a real server (ERANGE) and keepalived runs without it; so does ka",
                        rs.address
                    ),
                );
            }
        }
        if matches!(vs.lb_algo, LbAlgo::Rr | LbAlgo::Wrr) {
            let weights: Vec<u64> = vs.real_servers.iter().map(|r| u64::try_from(r.weight).unwrap_or(0)).filter(|w| *w > 0).collect();
            let g = weights.iter().fold(0, |g, w| gcd(g, *w)).max(1);
            let turns: u64 = if vs.lb_algo == LbAlgo::Rr { weights.len() as u64 } else { weights.iter().map(|w| w / g).sum() };
            if let Some(rs) = vs.real_servers.iter().find(|r| r.uthreshold.unwrap_or(0) > 0) {
                if turns > MAX_DESTS as u64 {
                    d.warning(
                        Some(rs.span),
                        format!(
                            "uthreshold with lb_algo {algo}: the datapath skips at most {MAX_DESTS} turns of overloaded real servers (this schedule has {turns}); \
                             past that a new connection finds no server where IPVS would look further"
                        ),
                    );
                }
            }
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// (interface, is IPv6, VRID, multicast destination): instances sharing one must not clash.
type VridKey = (String, bool, u8, Option<std::net::IpAddr>);

fn check_instances(cfg: &mut Config, ifaces: &InterfaceCheck, d: &mut Diagnostics) {
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut vrids: HashMap<VridKey, Vec<(String, Vec<std::net::IpAddr>)>> = HashMap::new();
    let dynamic_interfaces = cfg.global.dynamic_interfaces;
    let global_down_timer_adverts = cfg.global.vrrp_down_timer_adverts;
    for vi in &mut cfg.vrrp_instances {
        let n = vi.name.clone();
        if let Some(first) = names.get(&n) {
            d.error(
                Some(vi.span),
                format!(
                    "vrrp_instance {n} is already defined at line {}",
                    first.line
                ),
            );
        } else {
            names.insert(n.clone(), vi.span);
        }
        if vi.virtual_router_id == 0 {
            d.error(
                Some(vi.span),
                format!("({n}) the virtual router id must be set"),
            );
        }
        match (&vi.interface, vi.interface_span) {
            (Some(i), Some(sp)) if !ifaces.exists(i) => d.warning(
                Some(sp),
                format!("interface {i} for vrrp_instance {n} doesn't exist"),
            ),
            (None, _) if vi.unicast_peers.is_empty() => d.error(
                Some(vi.span),
                format!("({n}) no interface given (needed unless unicast_peer is used)"),
            ),
            _ => {}
        }
        for t in &vi.track_interfaces {
            if !ifaces.exists(&t.name) {
                d.warning(
                    Some(t.span),
                    format!("({n}) tracked interface {} doesn't exist", t.name),
                );
            }
        }
        own_interface_tracked(vi, d);
        let dynamic = dynamic_interfaces;
        drop_missing(&mut vi.virtual_ipaddresses, ifaces, dynamic, d, vip_devs, vip_missing);
        drop_missing(&mut vi.virtual_ipaddresses_excluded, ifaces, dynamic, d, vip_devs, vip_missing);
        drop_missing(&mut vi.virtual_routes, ifaces, dynamic, d, route_devs, route_missing);
        drop_missing(&mut vi.virtual_rules, ifaces, dynamic, d, rule_devs, rule_missing);
        no_vip(vi, d);
        // All VIPs of an instance are of one family; excluded ones may mix.
        let v6 = vi.virtual_ipaddresses.first().map(|v| v.address.is_ipv6());
        if let Some(v6) = v6 {
            for v in &vi.virtual_ipaddresses {
                if v.address.is_ipv6() != v6 {
                    d.error(
                        Some(v.span),
                        format!(
                            "({n}) {} is {} but the first virtual_ipaddress is {}; put other-family addresses in virtual_ipaddress_excluded",
                            v.address,
                            ip_family(&v.address.addr),
                            if v6 { "IPv6" } else { "IPv4" }
                        ),
                    );
                }
            }
            if v6 && vi.version == VrrpVersion::V2 {
                d.warning(
                    Some(vi.span),
                    format!("({n}) VRRP version 2 does not support IPv6; using version 3"),
                );
                vi.version = VrrpVersion::V3;
            }
        }
        if let Some(src) = vi.src_ip {
            for p in &vi.unicast_peers {
                if p.address.is_ipv6() != src.is_ipv6() {
                    d.error(
                        Some(p.span),
                        format!(
                            "({n}) unicast peer {} and source {src} are of different families",
                            p.address
                        ),
                    );
                }
            }
        }
        // keepalived 2.2 (vrrp.c vrrp_complete_instance) clears both, with a warning; the
        // engine refuses them with state MASTER.
        if !vi.preempt && vi.state == VrrpState::Master {
            d.warning(
                Some(vi.span),
                format!("({n}) nopreempt does not work with initial state MASTER; cleared, as keepalived 2.2 does"),
            );
            vi.preempt = true;
        }
        if !vi.preempt_delay.is_zero() && vi.state == VrrpState::Master {
            d.warning(
                Some(vi.span),
                format!("({n}) preempt_delay does not work with initial state MASTER; cleared, as keepalived 2.2 does"),
            );
            vi.preempt_delay = std::time::Duration::ZERO;
        }
        if let Some(auth) = vi.authentication.clone() {
            // keepalived 2.2 (vrrp.c) drops authentication it cannot use, with a message.
            let why = if vi.strict_mode {
                Some("vrrp_strict: authentication is not allowed")
            } else if vi.version == VrrpVersion::V3 {
                Some("authentication is not supported with VRRP version 3 (and IPv6 instances run version 3)")
            } else if auth.auth_pass.is_empty() {
                Some("authentication specified but no auth_pass given")
            } else {
                None
            };
            if let Some(why) = why {
                d.warning(
                    Some(auth.span),
                    format!("({n}) {why}; authentication ignored: keepalived 2.2 does the same"),
                );
                vi.authentication = None;
            }
        }
        if let Some(auth) = &vi.authentication {
            // keepalived 2.2 (vrrp.c): an AH instance must receive an advert (and its sequence
            // number) before it takes over, so it starts as BACKUP unless it owns the addresses.
            if auth.auth_type == AuthType::Ah && vi.state == VrrpState::Master && vi.priority != 255 {
                d.warning(
                    Some(auth.span),
                    format!("({n}) initial state MASTER is incompatible with AH authentication; using BACKUP, as keepalived 2.2 does"),
                );
                vi.state = VrrpState::Backup;
            }
        }
        super::strict::apply(vi, global_down_timer_adverts, d);
        let mtu = vi.interface.as_deref().map_or(DEFAULT_MTU, |i| ifaces.mtu(i));
        super::strict::limit_vips(vi, mtu, d);
        if vi.virtual_router_id != 0 {
            if let Some(iface) = &vi.interface {
                let key = (
                    iface.clone(),
                    v6.unwrap_or(false),
                    vi.virtual_router_id,
                    vi.mcast_dst_ip,
                );
                let peers: Vec<_> = vi.unicast_peers.iter().map(|p| p.address).collect();
                let others = vrids.entry(key).or_default();
                for (other, other_peers) in others.iter() {
                    let clash = peers.is_empty() == other_peers.is_empty()
                        && (peers.is_empty() || peers.iter().any(|p| other_peers.contains(p)));
                    if clash {
                        d.error(
                            Some(vi.span),
                            format!(
                                "({n}) VRID {} is already used by {other} on interface {iface} for {}",
                                vi.virtual_router_id,
                                if v6 == Some(true) { "IPv6" } else { "IPv4" }
                            ),
                        );
                        break;
                    }
                }
                others.push((n.clone(), peers));
            }
        }
    }
}

/// keepalived 2.2.7 (`vrrp_complete_instance`) drops a `track_interface` entry naming the
/// instance's own interface ("Ignoring track_interface X since own interface"): the own
/// interface is tracked anyway (a fault unless `dont_track_primary`), never with a weight.
fn own_interface_tracked(vi: &mut VrrpInstance, d: &mut Diagnostics) {
    let Some(own) = vi.interface.clone() else { return };
    let n = &vi.name;
    for t in vi.track_interfaces.iter().filter(|t| t.name == own) {
        let how = if vi.dont_track_primary {
            "it is not tracked at all (dont_track_primary)"
        } else {
            "it is tracked anyway, a fault when down, without a weight"
        };
        d.warning(
            Some(t.span),
            format!("({n}) track_interface {own} is the instance's own interface: ignored, as keepalived 2.2 does; {how}"),
        );
    }
    vi.track_interfaces.retain(|t| t.name != own);
}

/// An instance without a virtual IP address: keepalived 2.2.7 (`vrrp_complete_instance`) runs
/// it with a warning over VRRPv2/IPv4, and refuses to start with VRRPv3, IPv6 or strict mode
/// ("No VIP specified; at least one is required").
fn no_vip(vi: &VrrpInstance, d: &mut Diagnostics) {
    if !vi.virtual_ipaddresses.is_empty() {
        return;
    }
    let n = &vi.name;
    let v6 = vi.src_ip.or(vi.unicast_peers.first().map(|p| p.address)).is_some_and(|a| a.is_ipv6());
    if vi.version == VrrpVersion::V3 || v6 || vi.strict_mode {
        let why = if vi.strict_mode { "strict mode" } else if v6 { "IPv6" } else { "VRRP version 3" };
        d.error(Some(vi.span), format!("({n}) no virtual_ipaddress; at least one is required with {why} (keepalived 2.2 refuses to start too)"));
    } else {
        d.warning(Some(vi.span), format!("({n}) no virtual_ipaddress; at least one is sensible: the instance runs VRRP without addresses, as keepalived 2.2 does"));
    }
}

fn vip_devs(v: &VirtualIp) -> Vec<&String> {
    v.dev.iter().collect()
}

fn vip_missing(v: &VirtualIp, dev: &str) -> String {
    format!("interface {dev} for ip address {} doesn't exist", v.address.addr)
}

fn route_devs(r: &Route) -> Vec<&String> {
    r.devs().collect()
}

fn route_missing(_: &Route, dev: &str) -> String {
    format!("interface {dev} for VROUTE nexthop doesn't exist")
}

fn rule_devs(r: &Rule) -> Vec<&String> {
    r.devs().collect()
}

fn rule_missing(_: &Rule, dev: &str) -> String {
    format!("interface {dev} for rule doesn't exist")
}

/// Entries naming an interface that does not exist: keepalived 2.2 warns at each and skips it
/// (it keeps it only with `dynamic_interfaces`, waiting for the interface).
fn drop_missing<T: HasSpan>(
    items: &mut Vec<T>,
    ifaces: &InterfaceCheck,
    dynamic: bool,
    d: &mut Diagnostics,
    devs: fn(&T) -> Vec<&String>,
    msg: fn(&T, &str) -> String,
) {
    items.retain(|item| {
        let Some(dev) = devs(item).into_iter().find(|dev| !ifaces.exists(dev)) else {
            return true;
        };
        let text = msg(item, dev);
        if dynamic {
            d.warning(Some(item.span()), format!("{text}; kept for dynamic_interfaces"));
        } else {
            d.warning(Some(item.span()), format!("{text}; ignored: keepalived 2.2 does the same"));
        }
        dynamic
    });
}

trait HasSpan {
    fn span(&self) -> Span;
}

impl HasSpan for VirtualIp {
    fn span(&self) -> Span {
        self.span
    }
}

impl HasSpan for Route {
    fn span(&self) -> Span {
        self.span
    }
}

impl HasSpan for Rule {
    fn span(&self) -> Span {
        self.span
    }
}

/// `static_ipaddress`, `static_routes` and `static_rules` entries naming a missing interface
/// (keepalived 2.2 warns at each and skips it; it only refuses when an interface of a
/// vrrp_instance is missing).
fn check_static(cfg: &mut Config, ifaces: &InterfaceCheck, d: &mut Diagnostics) {
    let dynamic = cfg.global.dynamic_interfaces;
    drop_missing(&mut cfg.static_ipaddresses, ifaces, dynamic, d, vip_devs, vip_missing);
    drop_missing(&mut cfg.static_routes, ifaces, dynamic, d, route_devs, route_missing);
    drop_missing(&mut cfg.static_rules, ifaces, dynamic, d, rule_devs, rule_missing);
}

/// An IPv6 link-local (fe80::/10) or IPv4 link-local (169.254/16) address.
pub(super) fn is_link_local(a: &std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
        std::net::IpAddr::V4(v) => v.is_link_local(),
    }
}

fn check_sync_groups(cfg: &mut Config, d: &mut Diagnostics) {
    let mut owner: HashMap<String, String> = HashMap::new();
    for g in &cfg.sync_groups {
        if g.members.len() == 1 {
            // keepalived 2.2.7 (vrrp_sync_group_end_handler) says so and runs it.
            d.warning(Some(g.span), format!("sync group {} has only 1 virtual router(s) - this probably isn't what you want", g.name));
        }
        if g.members.is_empty() {
            d.warning(
                Some(g.span),
                format!(
                    "sync group {} has no virtual router(s); it is removed",
                    g.name
                ),
            );
        }
        for (m, sp) in &g.members {
            let Some(vi) = cfg.vrrp_instances.iter_mut().find(|v| &v.name == m) else {
                // keepalived 2.2: "Virtual router X specified in sync group Y doesn't exist -
                // ignoring".
                d.warning(
                    Some(*sp),
                    format!("sync group {}: vrrp_instance {m} is not defined; ignored: keepalived 2.2 does the same", g.name),
                );
                continue;
            };
            if let Some(o) = owner.get(m) {
                d.error(
                    Some(*sp),
                    format!("vrrp_instance {m} is already in sync group {o}"),
                );
                continue;
            }
            owner.insert(m.clone(), g.name.clone());
            vi.sync_group = Some(g.name.clone());
            // keepalived 2.2.7 (vrrp_complete_instance): the instance's own setting, else its
            // sync group's, else the global one (below).
            vi.notify_priority_changes = vi.notify_priority_changes.or(g.notify_priority_changes);
        }
    }
    let defined: HashSet<String> = cfg.vrrp_instances.iter().map(|v| v.name.clone()).collect();
    for g in &mut cfg.sync_groups {
        g.members.retain(|(m, _)| defined.contains(m));
    }
    cfg.sync_groups.retain(|g| !g.members.is_empty());
}

fn check_virtual_servers(cfg: &mut Config, d: &mut Diagnostics) {
    let groups: HashSet<&str> = cfg
        .virtual_server_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    let bfds: HashSet<&str> = cfg.bfd_instances.iter().map(|b| b.name.as_str()).collect();
    let files: HashSet<&str> = cfg.track_files.iter().map(|b| b.name.as_str()).collect();
    let mut seen: HashMap<(VsKey, Protocol), Span> = HashMap::new();
    for vs in &cfg.virtual_servers {
        let label = match &vs.key {
            VsKey::Addr { addr, port } => format!("[{addr}]:{port}"),
            VsKey::Fwmark(m) => format!("FWM {m}"),
            VsKey::Group(g) => format!("group {g}"),
        };
        if let Some(first) = seen.get(&(vs.key.clone(), vs.protocol)) {
            d.error(
                Some(vs.span),
                format!(
                    "virtual server {label} is already defined at line {}",
                    first.line
                ),
            );
        } else {
            seen.insert((vs.key.clone(), vs.protocol), vs.span);
        }
        match &vs.key {
            VsKey::Fwmark(_) => {
                if let Some(sp) = vs.protocol_span {
                    d.warning(Some(sp), format!("virtual server {label}: protocol specified for fwmark - protocol will be ignored"));
                }
            }
            VsKey::Group(g) if !groups.contains(g.as_str()) => {
                d.error(
                    Some(vs.span),
                    format!("virtual_server_group {g} is not defined"),
                );
            }
            _ => {}
        }
        let vs_v6 = match &vs.key {
            VsKey::Addr { addr, .. } => Some(addr.is_ipv6()),
            _ => vs.ipv6_family,
        };
        let mut rs_seen: HashSet<(std::net::IpAddr, u16)> = HashSet::new();
        for rs in vs.real_servers.iter().chain(vs.sorry_server.iter()) {
            if !rs_seen.insert((rs.address, rs.port)) {
                d.error(
                    Some(rs.span),
                    format!(
                        "real server [{}]:{} is duplicated in virtual server {label}",
                        rs.address, rs.port
                    ),
                );
            }
            if let Some(v6) = vs_v6 {
                if rs.address.is_ipv6() != v6 && !matches!(rs.lb_kind, LbKind::Tun(_)) {
                    d.error(
                        Some(rs.end),
                        format!(
                            "real server {} is {} but virtual server {label} is {}; only tunnelled real servers may differ",
                            rs.address,
                            ip_family(&rs.address),
                            if v6 { "IPv6" } else { "IPv4" }
                        ),
                    );
                }
            }
            if let (VsKey::Addr { port, .. }, 0) = (&vs.key, rs.port) {
                if *port != 0 {
                    d.error(
                        Some(rs.span),
                        format!("real server {} needs a port", rs.address),
                    );
                }
            }
            for c in &rs.checkers {
                match &c.kind {
                    CheckerKind::Bfd { name: Some(n) } if !bfds.contains(n.as_str()) => d.error(
                        Some(c.span),
                        format!("BFD_CHECK: bfd_instance {n} is not defined"),
                    ),
                    CheckerKind::File {
                        track_file: Some(n),
                        ..
                    } if !files.contains(n.as_str()) => d.error(
                        Some(c.span),
                        format!("FILE_CHECK: track_file {n} is not defined"),
                    ),
                    _ => {}
                }
            }
        }
        if vs.real_servers.is_empty() {
            // keepalived 2.2.7 (validate_check_config) frees it, sorry server or not.
            d.warning(
                Some(vs.span),
                format!("virtual server {label} has no real servers; ignored, as keepalived 2.2 does"),
            );
        }
    }
    cfg.virtual_servers.retain(|vs| !vs.real_servers.is_empty());
}

/// What `ka check` says about the scripts the daemon will not run
/// ([`crate::notify::security::audit`]), at the lines where keepalived 2.2.7 says it:
/// - a user problem at its `user` line (an unknown user: "Unable to set uid/gid for script"),
///   or, with no `user`, at the end of the `vrrp_script` block (no default user: "Unable to set
///   default user for vrrp script X - removing"): keepalived removes the script while reading
///   it, and each `track_script` reference then finds nothing (a warning there too);
/// - a program problem (not found, not executable, unsafe) at the `script` line: keepalived
///   disables the tracker when it starts ("Disabling track script X since not
///   found/accessible") and the instances run without it;
/// - an unknown global `script_user` at its line ("Error setting global script uid/gid").
///
/// ka's daemon does the same ([`crate::notify::security::apply`]).
pub fn script_refusals(cfg: &Config, findings: &[crate::notify::security::Finding]) -> Vec<Diagnostic> {
    use crate::notify::security::FindingAbout;
    let mut out = Vec::new();
    for f in findings {
        if f.about == FindingAbout::GlobalUser {
            out.push(Diagnostic::warning(cfg.global.script_user_span, format!("{}: scripts that name no user of their own are not run, as keepalived 2.2 does", f.text)));
            continue;
        }
        let Some(name) = &f.refuses else { continue };
        let Some(s) = cfg.vrrp_scripts.iter().find(|s| &s.name == name) else { continue };
        let refs: Vec<(&str, Span)> = cfg
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_scripts.iter().filter(|t| &t.name == name).map(move |t| (i.name.as_str(), t.span)))
            .chain(cfg.sync_groups.iter().flat_map(|g| g.track_scripts.iter().filter(|t| &t.name == name).map(move |t| (g.name.as_str(), t.span))))
            .collect();
        let owners: Vec<&str> = refs.iter().map(|r| r.0).collect();
        let who = if owners.is_empty() { String::new() } else { format!(" ({} stop tracking it)", owners.join(", ")) };
        if f.about == FindingAbout::User {
            // Its own `user` is checked at that line ("Unable to set uid/gid for script");
            // the default user at the end of the block.
            out.push(Diagnostic::warning(
                Some(s.user_span.unwrap_or(s.end)),
                format!("{}: the vrrp_script is removed{who}, as keepalived 2.2 does (\"Unable to set default user for vrrp script {name} - removing\")", f.text),
            ));
            for (owner, at) in refs {
                out.push(Diagnostic::warning(Some(at), format!("({owner}) track script {name} was removed (see its definition); ignored")));
            }
        } else {
            out.push(Diagnostic::warning(
                Some(s.script_span.unwrap_or(s.span)),
                format!("{}: the tracker is disabled{who}, as keepalived 2.2 does (\"Disabling track script {name}\")", f.text),
            ));
        }
    }
    out
}
