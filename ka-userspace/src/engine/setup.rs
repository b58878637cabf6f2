//! From the keepalived.conf model to what the engine runs: one [`InstanceSetup`] per
//! `vrrp_instance`, with keepalived's defaults and the global settings folded in. Pure and
//! unit-tested; the engine resolves interface names and addresses at start.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use ka_common::vrrp::{Auth, AuthType as WireAuthType, Family, V3Checksum, Version};

use crate::{
    config::model::{self, Config, VrrpState, VrrpVersion},
    vrrp::{track::Weight, InitialState, InstanceParams},
};

/// A virtual address as configured (`virtual_ipaddress` / `_excluded` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSetup {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length (keepalived: /32 or /128 when bare).
    pub prefix: u8,
    /// `dev` (default: the instance's interface).
    pub dev: Option<String>,
    /// `brd`.
    pub broadcast: Option<std::net::Ipv4Addr>,
    /// `scope` as a number.
    pub scope: Option<u8>,
    /// `label`.
    pub label: Option<String>,
    /// `peer`.
    pub peer: Option<IpAddr>,
    /// Address flags.
    pub flags: model::AddrFlags,
    /// Which interface it goes on without `dev` / whether it has a VMAC of its own.
    pub placement: Placement,
}

/// Where a VIP goes, by keepalived 2.2.7's rules (`vrrp_complete_instance`) for `use_vmac`,
/// `use_vmac_addr` and a VIP's own `use_vmac`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Its `dev`, else the instance's VMAC (or interface).
    #[default]
    Instance,
    /// Its `dev`, else the instance's own interface, not its VMAC (a VIP of the other family
    /// under `use_vmac`).
    Base,
    /// A VMAC of its own (one per interface and family, see [`AddrVmac`]) on its `dev`, else
    /// on the instance's interface.
    OwnVmac,
}

/// A VMAC made for VIPs on another interface or of the other family (`use_vmac_addr`, or
/// `use_vmac` on the VIP), with the virtual MAC of its family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrVmac {
    /// The interface it is made on.
    pub base: String,
    /// IPv6 (virtual MAC 00:00:5e:00:02:VRID) or IPv4 (…:01:VRID).
    pub v6: bool,
    /// Its name (`vmac_addr_prefix`, else `vmac_prefix`, `.VRID`, unique).
    pub name: String,
}

/// keepalived's placement of VIP `v` of instance `i` (`v6`: the instance's family).
pub fn placement(v: &model::VirtualIp, i: &model::VrrpInstance, v6: bool) -> Placement {
    let on_configured = v.dev.is_none() || v.dev == i.interface;
    let same_family = v.address.addr.is_ipv6() == v6;
    let vmac = i.use_vmac.is_some();
    // A VIP's own use_vmac is dropped when the instance's VMAC or use_vmac_addr covers it.
    let own = v.use_vmac && !(on_configured && vmac && same_family) && !((!on_configured || !same_family) && i.use_vmac_addr);
    if on_configured {
        if vmac && same_family {
            Placement::Instance
        } else if own || (i.use_vmac_addr && !same_family) {
            Placement::OwnVmac
        } else if vmac {
            Placement::Base
        } else {
            Placement::Instance
        }
    } else if own || i.use_vmac_addr {
        Placement::OwnVmac
    } else {
        Placement::Instance
    }
}

/// A `unicast_peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSetup {
    /// Address.
    pub addr: IpAddr,
    /// Lowest TTL accepted from it (default 0: any).
    pub min_ttl: u8,
    /// Highest TTL accepted from it (default 255).
    pub max_ttl: u8,
}

/// Notify scripts (command line and optional user).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifySetup {
    /// `notify_master`.
    pub master: Option<ScriptCmd>,
    /// `notify_backup`.
    pub backup: Option<ScriptCmd>,
    /// `notify_fault`.
    pub fault: Option<ScriptCmd>,
    /// `notify_stop`.
    pub stop: Option<ScriptCmd>,
    /// `notify` (generic, gets keepalived's four arguments).
    pub any: Option<ScriptCmd>,
    /// `notify_master_rx_lower_pri` (instances only), run without arguments.
    pub master_rx_lower_pri: Option<ScriptCmd>,
}

/// A script command line with its optional `USER [GROUP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCmd {
    /// Command line.
    pub command: String,
    /// Who runs it.
    pub user: Option<(String, Option<String>)>,
}

/// What a tracked object is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackKey {
    /// `track_interface`.
    Interface(String),
    /// `track_script` (a `vrrp_script` name).
    Script(String),
    /// `track_file` (a `vrrp_track_file` name).
    File(String),
    /// `track_process` (a `vrrp_track_process` name).
    Process(String),
    /// `track_bfd` (a `bfd_instance` name).
    Bfd(String),
    /// `track_src_ip`: the instance's configured source address on its interface.
    SrcAddr(String, IpAddr),
}

impl TrackKey {
    /// `kind:name` for status output.
    pub fn label(&self) -> String {
        match self {
            TrackKey::Interface(n) => format!("interface:{n}"),
            TrackKey::Script(n) => format!("script:{n}"),
            TrackKey::File(n) => format!("file:{n}"),
            TrackKey::Process(n) => format!("process:{n}"),
            TrackKey::Bfd(n) => format!("bfd:{n}"),
            TrackKey::SrcAddr(i, a) => format!("src_ip:{i}/{a}"),
        }
    }
}

/// The kind of interface an instance's VIPs go on when it has one of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VmacKind {
    /// `use_vmac`: a private macvlan with the VRRP virtual MAC.
    #[default]
    Macvlan,
    /// `use_ipvlan`: an L2 ipvlan (the parent's MAC) with mode `flags` (0 bridge, 1 private,
    /// 2 vepa) and its own address, if given.
    Ipvlan {
        /// IFLA_IPVLAN_FLAGS.
        flags: u16,
        /// Its address and prefix length.
        addr: Option<(IpAddr, u8)>,
    },
}

/// keepalived's `create_vmac_name`: `PREFIX.VRID` cut to fit IFNAMSIZ, and while `taken` says
/// the name is used, `PREFIXn.VRID` with n = 1, 2, ... (IPv6: 6 first, then 1, 2, ... skipping 6).
pub fn vmac_name(prefix: &str, vrid: u8, v6: bool, taken: impl Fn(&str) -> bool) -> String {
    const MAX: usize = 15;
    let fit = |num: Option<u16>| {
        let tail = match num {
            Some(n) => format!("{n}.{vrid}"),
            None => format!(".{vrid}"),
        };
        let keep = MAX.saturating_sub(tail.len()).min(prefix.len());
        let cut = (0..=keep).rev().find(|&k| prefix.is_char_boundary(k)).unwrap_or(0);
        format!("{}{tail}", &prefix[..cut])
    };
    let mut name = fit(None);
    let mut num: u16 = 0;
    // Bounded: a u16's worth of names.
    while taken(&name) && num < u16::MAX {
        num = match (v6, num) {
            (true, 0) => 6,
            (true, 6) => 1,
            (true, n) if n + 1 == 6 => 7,
            (_, n) => n + 1,
        };
        name = fit(Some(num));
    }
    name
}

/// Everything the engine needs to run one `vrrp_instance`.
#[derive(Clone, Debug)]
pub struct InstanceSetup {
    /// Name.
    pub name: String,
    /// Protocol parameters (the primary address is filled in by the engine at start unless
    /// `unicast_src_ip` gives it).
    pub params: InstanceParams,
    /// `interface`.
    pub iface: String,
    /// The address in `unicast_src_ip`, if any.
    pub src_ip: Option<IpAddr>,
    /// Virtual addresses carried in adverts and added on MASTER.
    pub vips: Vec<VipSetup>,
    /// `virtual_ipaddress_excluded`: added on MASTER, not in adverts.
    pub excluded: Vec<VipSetup>,
    /// `virtual_routes`: added on MASTER, removed otherwise.
    pub routes: Vec<model::Route>,
    /// `virtual_rules`: added on MASTER, removed otherwise.
    pub rules: Vec<model::Rule>,
    /// VRRPv2 authentication.
    pub auth: Auth,
    /// VRRPv3-over-IPv4 checksum flavour.
    pub v3_checksum: V3Checksum,
    /// Multicast group (`mcast_dst_ip` or the global group).
    pub group: IpAddr,
    /// `unicast_peer`s (empty: multicast).
    pub peers: Vec<PeerSetup>,
    /// Check that unicast adverts come from a configured peer (`vrrp_check_unicast_src`).
    pub check_unicast_src: bool,
    /// Check the advert's address list against ours (not `vrrp_skip_check_adv_addr`).
    pub check_adv_addrs: bool,
    /// Notify scripts.
    pub notify: NotifySetup,
    /// `smtp_alert`.
    pub smtp_alert: bool,
    /// `use_vmac [NAME]` (or `use_ipvlan [NAME]`): the macvlan's (ipvlan's) name.
    pub vmac: Option<String>,
    /// What `vmac` is: a macvlan with the virtual MAC, or keepalived's `use_ipvlan`.
    pub vmac_kind: VmacKind,
    /// `vmac_xmit_base`: adverts leave through the base interface, not the VMAC.
    pub vmac_xmit_base: bool,
    /// The VMACs of VIPs placed [`Placement::OwnVmac`] (named by [`instances`]).
    pub addr_vmacs: Vec<AddrVmac>,
    /// no_accept firewall: link-local VIPs on the instance's interface are matched by interface
    /// name, not index (keepalived: `dont_track_primary` without `nftables_ifindex`).
    pub fw_by_name: bool,
    /// `garp_master_refresh` (zero: none) and its repeat.
    pub garp_refresh: (Duration, u32),
    /// `garp_extra_if` (else the global `vrrp_garp_extra_if`), when on.
    pub garp_extra_if: Option<model::GarpExtraIf>,
    /// `promote_secondaries` (not with `use_vmac`: keepalived ignores it there).
    pub promote_secondaries: bool,
    /// `kernel_rx_buf_size`: its share of the receive socket's `SO_RCVBUF`.
    pub kernel_rx_buf_size: Option<u32>,
    /// Tracked objects with their weights.
    pub track: Vec<(TrackKey, Weight)>,
    /// `vrrp_sync_group` this instance belongs to.
    pub sync_group: Option<String>,
    /// `notify_priority_changes` (resolved with the sync group's and the global one): effective
    /// priority changes are written to the notify FIFOs.
    pub notify_priority_changes: bool,
}

/// Errors that stop an instance from being run (the config checker reports them too).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No interface.
    #[error("vrrp_instance {name}: no interface given")]
    NoInterface {
        /// Instance.
        name: String,
    },
    /// Parameters out of range.
    #[error("vrrp_instance {name}: {source}")]
    Params {
        /// Instance.
        name: String,
        /// Cause.
        #[source]
        source: crate::vrrp::ParamsError,
    },
}

fn vip(v: &model::VirtualIp) -> VipSetup {
    VipSetup {
        addr: v.address.addr,
        prefix: v.address.len,
        dev: v.dev.clone(),
        broadcast: v.broadcast,
        scope: v.scope,
        label: v.label.clone(),
        peer: v.peer,
        flags: v.flags,
        placement: Placement::Instance,
    }
}

fn script(s: &Option<model::Script>) -> Option<ScriptCmd> {
    s.as_ref().map(|s| ScriptCmd { command: s.command.clone(), user: s.user.clone() })
}

fn weight(own: i64, r: &model::TrackRef) -> Weight {
    let w = r.weight.unwrap_or(own);
    Weight { weight: i32::try_from(w.clamp(-253, 253)).unwrap_or(0), reverse: r.reverse }
}

/// A reference's weight: its own `weight`, else its object's; its `reverse`, else its object's
/// (keepalived's `alloc_track_script` etc.; an explicit `noreverse` cannot be told from none
/// in the model, so an object's `reverse` wins over it).
fn ref_weight(own: Option<&(i64, bool)>, default: i64, r: &model::TrackRef) -> Weight {
    let (w, rev) = own.copied().unwrap_or((default, false));
    weight(w, &model::TrackRef { reverse: r.reverse || rev, ..r.clone() })
}

/// What a sync group's `track_*` entries track, with their weights.
fn group_tracking(g: &model::SyncGroup, own: &OwnWeights<'_>) -> Vec<(TrackKey, Weight)> {
    let mut out: Vec<(TrackKey, Weight)> =
        g.track_interfaces.iter().map(|t| (TrackKey::Interface(t.name.clone()), Weight { weight: t.weight, reverse: t.reverse })).collect();
    out.extend(g.track_scripts.iter().map(|r| (TrackKey::Script(r.name.clone()), ref_weight(own.scripts.get(r.name.as_str()), 0, r))));
    out.extend(g.track_files.iter().map(|r| (TrackKey::File(r.name.clone()), ref_weight(own.files.get(r.name.as_str()), 1, r))));
    out.extend(g.track_processes.iter().map(|r| (TrackKey::Process(r.name.clone()), ref_weight(own.processes.get(r.name.as_str()).map(|w| (*w, false)).as_ref(), 0, r))));
    out.extend(g.track_bfds.iter().map(|r| (TrackKey::Bfd(r.name.clone()), ref_weight(own.bfds.get(r.name.as_str()), 0, r))));
    out
}

/// Adds a sync group's tracked objects to a member's (keepalived's `sync_group_tracking_init`:
/// every member tracks them, with the group's weights). An object the member tracks already
/// is tracked once, with the group's weight unless the member's is unweighted
/// (`add_vrrp_to_track_script`, `add_obj_to_track_file`, `add_vrrp_to_interface`, ...; for a
/// process keepalived takes the group's weight but keeps the member's `reverse`).
pub fn merge_group_tracking(track: &mut Vec<(TrackKey, Weight)>, group: &[(TrackKey, Weight)]) {
    for (k, w) in group {
        match track.iter_mut().find(|(mine, _)| mine == k) {
            Some((TrackKey::Process(_), mine)) if mine.weight != 0 => mine.weight = w.weight,
            Some((_, mine)) if mine.weight != 0 => *mine = *w,
            Some(_) => {}
            None => track.push((k.clone(), *w)),
        }
    }
}

/// Converts every `vrrp_instance` of `cfg`.
///
/// # Errors
/// The first instance that cannot be run.
pub fn instances(cfg: &Config) -> Result<Vec<InstanceSetup>, SetupError> {
    let own = OwnWeights::of(cfg);
    let mut setups: Vec<InstanceSetup> = cfg.vrrp_instances.iter().map(|i| instance_with(cfg, i, &own)).collect::<Result<_, _>>()?;
    // A generated VMAC name an earlier instance uses gets a number, as keepalived does; named
    // ones are taken first.
    let named = |i: &model::VrrpInstance| matches!(&i.use_vmac, Some(Some(_))) || i.use_ipvlan.as_ref().is_some_and(|v| v.name.is_some());
    let mut taken: std::collections::HashSet<String> =
        setups.iter().zip(&cfg.vrrp_instances).filter(|(_, i)| named(i)).filter_map(|(s, _)| s.vmac.clone()).collect();
    let prefix = cfg.global.vmac_prefix.as_deref().unwrap_or("vrrp");
    for (s, i) in setups.iter_mut().zip(&cfg.vrrp_instances) {
        if s.vmac.is_some() && !named(i) {
            let n = vmac_name(prefix, s.params.vrid, s.params.family == Family::V6, |n| taken.contains(n));
            taken.insert(n.clone());
            s.vmac = Some(n);
        }
    }
    // Then the VMACs of VIPs that have their own (keepalived names them after the instances').
    let addr_prefix = cfg.global.vmac_addr_prefix.as_deref().unwrap_or(prefix);
    for s in &mut setups {
        let mut want: Vec<(String, bool)> = Vec::new();
        for v in s.vips.iter().chain(&s.excluded).filter(|v| v.placement == Placement::OwnVmac) {
            let key = (v.dev.clone().unwrap_or_else(|| s.iface.clone()), v.addr.is_ipv6());
            if !want.contains(&key) {
                want.push(key);
            }
        }
        for (base, v6) in want {
            let name = vmac_name(addr_prefix, s.params.vrid, v6, |n| taken.contains(n));
            taken.insert(name.clone());
            s.addr_vmacs.push(AddrVmac { base, v6, name });
        }
    }
    Ok(setups)
}

/// The weights the tracker definitions give themselves, by name: looked up once per tracked
/// object (a linear search per instance made the 65,024-instance example quadratic).
struct OwnWeights<'a> {
    /// A `vrrp_script`'s `weight` and its `reverse`.
    scripts: HashMap<&'a str, (i64, bool)>,
    /// A `track_file`'s `weight` and its `reverse`.
    files: HashMap<&'a str, (i64, bool)>,
    processes: HashMap<&'a str, i64>,
    /// A `bfd_instance`'s `weight` and its `reverse`.
    bfds: HashMap<&'a str, (i64, bool)>,
    /// What each sync group tracks, by group name.
    groups: HashMap<&'a str, Vec<(TrackKey, Weight)>>,
}

impl<'a> OwnWeights<'a> {
    fn of(cfg: &'a Config) -> OwnWeights<'a> {
        // The first definition of a name wins, as the linear search did.
        fn first<'a, V>(it: impl Iterator<Item = (&'a str, V)>) -> HashMap<&'a str, V> {
            let mut m = HashMap::new();
            for (k, v) in it {
                m.entry(k).or_insert(v);
            }
            m
        }
        let mut own = OwnWeights {
            scripts: first(cfg.vrrp_scripts.iter().map(|s| (s.name.as_str(), (i64::from(s.weight), s.reverse)))),
            files: first(cfg.track_files.iter().map(|f| (f.name.as_str(), (f.weight, f.reverse)))),
            processes: first(cfg.track_processes.iter().map(|p| (p.name.as_str(), i64::from(p.weight)))),
            bfds: cfg.bfd_instances.iter().map(|b| (b.name.as_str(), (i64::from(b.weight), b.reverse))).collect(),
            groups: HashMap::new(),
        };
        own.groups = cfg.sync_groups.iter().map(|g| (g.name.as_str(), group_tracking(g, &own))).collect();
        own
    }
}

/// Converts one `vrrp_instance`.
///
/// # Errors
/// No interface, or parameters out of range.
pub fn instance(cfg: &Config, i: &model::VrrpInstance) -> Result<InstanceSetup, SetupError> {
    instance_with(cfg, i, &OwnWeights::of(cfg))
}

fn instance_with(cfg: &Config, i: &model::VrrpInstance, own: &OwnWeights<'_>) -> Result<InstanceSetup, SetupError> {
    let g = &cfg.global;
    let name = i.name.clone();
    // keepalived's `vrf`: an instance with no interface (unicast only) binds its sockets to
    // the VRF device.
    let iface = i.interface.clone().or_else(|| i.vrf.clone()).ok_or_else(|| SetupError::NoInterface { name: name.clone() })?;
    let v6 = i.virtual_ipaddresses.first().map_or(i.if_opts.native_ipv6, |v| v.address.is_ipv6());
    let version = match (i.version, v6) {
        // keepalived runs IPv6 instances as VRRPv3 only.
        (_, true) => Version::V3,
        (VrrpVersion::V2, false) => Version::V2,
        (VrrpVersion::V3, false) => Version::V3,
    };
    let family = if v6 { Family::V6 } else { Family::V4 };
    let placeholder: IpAddr = if v6 { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) };
    // keepalived takes the ipvlan's address as the advert source unless one was given.
    let src_ip = i.src_ip.or(i.use_ipvlan.as_ref().and_then(|v| v.addr.map(|(a, _)| a)));
    let mut p = InstanceParams::new(i.virtual_router_id, version, i.priority, src_ip.unwrap_or(placeholder));
    p.family = family;
    let centis = u16::try_from(i.advert_int.as_millis() / 10).unwrap_or(u16::MAX).max(1);
    p.advert_int = match version {
        // VRRPv2 intervals are whole seconds (keepalived rounds up).
        Version::V2 => centis.div_ceil(100).max(1) * 100,
        Version::V3 => centis.min(4095),
    };
    p.preempt = i.preempt;
    p.preempt_delay = i.preempt_delay;
    // keepalived: accept is the default unless strict mode, where only the owner accepts
    // (`config::strict` sets it; this is the same rule for a model that skipped the checks).
    p.accept = i.accept.unwrap_or(i.priority == 255 || !i.strict_mode);
    p.initial_state = match i.state {
        VrrpState::Master => InitialState::Master,
        _ => InitialState::Backup,
    };
    p.sync_group = i.sync_group.is_some();
    p.garp_master_delay = i.garp_master_delay;
    p.down_timer_adverts = i.down_timer_adverts.or(g.vrrp_down_timer_adverts).unwrap_or(3);
    p.lower_prio_no_advert = i.lower_prio_no_advert.unwrap_or(g.vrrp_lower_prio_no_advert);
    p.higher_prio_send_advert = i.higher_prio_send_advert.unwrap_or(g.vrrp_higher_prio_send_advert);
    p.startup_delay = g.vrrp_startup_delay;
    p.notify_deleted = i.notify_deleted;
    // keepalived unicast_fault_no_peer: no peers means FAULT, not multicast.
    p.config_fault = i.if_opts.unicast_fault_no_peer && i.unicast_peers.is_empty();
    p.garp_master_repeat = i.garp_master_repeat;
    (p.garp_lower_prio_repeat, p.garp_lower_prio_delay) = lower_prio_garp(g, i);
    let auth = match &i.authentication {
        None => Auth::None,
        Some(a) => Auth::from_config(
            match a.auth_type {
                model::AuthType::Pass => WireAuthType::Pass,
                model::AuthType::Ah => WireAuthType::Ah,
            },
            a.auth_pass.as_bytes(),
        ),
    };
    let mut track: Vec<(TrackKey, Weight)> = i
        .track_interfaces
        .iter()
        .map(|t| (TrackKey::Interface(t.name.clone()), Weight { weight: t.weight, reverse: t.reverse }))
        .collect();
    // keepalived tracks the instance's own interface unless dont_track_primary.
    if !i.dont_track_primary && !track.iter().any(|(k, _)| *k == TrackKey::Interface(iface.clone())) {
        track.push((TrackKey::Interface(iface.clone()), Weight { weight: 0, reverse: false }));
    }
    for r in &i.track_scripts {
        track.push((TrackKey::Script(r.name.clone()), ref_weight(own.scripts.get(r.name.as_str()), 0, r)));
    }
    for r in &i.track_files {
        track.push((TrackKey::File(r.name.clone()), ref_weight(own.files.get(r.name.as_str()), 1, r)));
    }
    for r in &i.track_processes {
        let own = own.processes.get(r.name.as_str()).copied().unwrap_or(0);
        track.push((TrackKey::Process(r.name.clone()), weight(own, r)));
    }
    for r in &i.track_bfds {
        track.push((TrackKey::Bfd(r.name.clone()), ref_weight(own.bfds.get(r.name.as_str()), 0, r)));
    }
    if let (true, Some(a)) = (i.if_opts.track_src_ip, i.src_ip) {
        // keepalived track_src_ip: FAULT while the configured source address is missing.
        track.push((TrackKey::SrcAddr(iface.clone(), a), Weight { weight: 0, reverse: false }));
    }
    for dev in track_group_interfaces(cfg, &i.name) {
        if !track.iter().any(|(k, _)| *k == TrackKey::Interface(dev.clone())) {
            track.push((TrackKey::Interface(dev), Weight { weight: 0, reverse: false }));
        }
    }
    if let Some(group) = i.sync_group.as_deref().and_then(|g| own.groups.get(g)) {
        merge_group_tracking(&mut track, group);
    }
    let group = i.mcast_dst_ip.unwrap_or(if v6 { g.vrrp_mcast_group6 } else { g.vrrp_mcast_group4 });
    let setup = InstanceSetup {
        name: name.clone(),
        params: p,
        iface,
        src_ip,
        vips: i.virtual_ipaddresses.iter().map(|v| VipSetup { placement: placement(v, i, v6), ..vip(v) }).collect(),
        excluded: i.virtual_ipaddresses_excluded.iter().map(|v| VipSetup { placement: placement(v, i, v6), ..vip(v) }).collect(),
        addr_vmacs: Vec::new(),
        routes: i.virtual_routes.clone(),
        rules: i.virtual_rules.clone(),
        auth,
        v3_checksum: if i.old_unicast_checksum { V3Checksum::OldUnicast } else { V3Checksum::Standard },
        group,
        peers: i
            .unicast_peers
            .iter()
            .map(|u| PeerSetup { addr: u.address, min_ttl: u.min_ttl.unwrap_or(0), max_ttl: u.max_ttl.unwrap_or(255) })
            .collect(),
        check_unicast_src: i.check_unicast_src.unwrap_or(g.vrrp_check_unicast_src),
        check_adv_addrs: !i.skip_check_adv_addr.unwrap_or(g.vrrp_skip_check_adv_addr),
        notify: NotifySetup {
            master: script(&i.notify.master),
            backup: script(&i.notify.backup),
            fault: script(&i.notify.fault),
            stop: script(&i.notify.stop),
            any: script(&i.notify.any),
            master_rx_lower_pri: script(&i.notify.master_rx_lower_pri),
        },
        smtp_alert: i.smtp_alert.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false),
        vmac: {
            let generated = || vmac_name(g.vmac_prefix.as_deref().unwrap_or("vrrp"), i.virtual_router_id, v6, |_| false);
            match (&i.use_vmac, &i.use_ipvlan) {
                (Some(n), _) => Some(n.clone().unwrap_or_else(generated)),
                (None, Some(v)) => Some(v.name.clone().unwrap_or_else(generated)),
                (None, None) => None,
            }
        },
        vmac_kind: match (&i.use_vmac, &i.use_ipvlan) {
            (None, Some(v)) => VmacKind::Ipvlan {
                flags: match v.mode {
                    model::IpvlanMode::Bridge => 0,
                    model::IpvlanMode::Private => 1,
                    model::IpvlanMode::Vepa => 2,
                },
                addr: v.addr,
            },
            _ => VmacKind::Macvlan,
        },
        vmac_xmit_base: i.vmac_xmit_base,
        garp_refresh: (i.garp_master_refresh, i.garp_master_refresh_repeat),
        garp_extra_if: i.garp_extra_if.or(g.vrrp_garp_extra_if).filter(|x| !x.interval.is_zero()),
        promote_secondaries: i.if_opts.promote_secondaries && i.use_vmac.is_none(),
        kernel_rx_buf_size: i.if_opts.kernel_rx_buf_size,
        fw_by_name: i.dont_track_primary && !g.vrrp_nftables.ifindex,
        track,
        sync_group: i.sync_group.clone(),
        notify_priority_changes: i.notify_priority_changes.unwrap_or(g.vrrp_notify_priority_changes),
    };
    setup.params.validate().map_err(|source| SetupError::Params { name, source })?;
    Ok(setup)
}

/// The interfaces instance `name` tracks through `track_group`s (keepalived 2.2.7's
/// `static_track_group_init`): those of the static addresses (`dev`), routes (`dev`) and rules
/// (`iif`) naming a group it is a member of, not `no_track`; each with weight 0, so the
/// instance goes to FAULT while one is down. In configuration order, each once.
pub fn track_group_interfaces(cfg: &Config, name: &str) -> Vec<String> {
    let member = |g: &Option<String>| {
        g.as_deref().is_some_and(|g| cfg.track_groups.iter().any(|t| t.name == g && t.members.iter().any(|m| m == name)))
    };
    let addrs = cfg.static_ipaddresses.iter().filter(|a| !a.no_track && member(&a.track_group)).filter_map(|a| a.dev.clone());
    let routes = cfg.static_routes.iter().filter(|r| member(&r.track_group)).filter_map(|r| r.dev.clone());
    let rules = cfg.static_rules.iter().filter(|r| member(&r.track_group)).filter_map(|r| r.iif.clone());
    let mut out: Vec<String> = Vec::new();
    for d in addrs.chain(routes).chain(rules) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// How gratuitous ARPs / NAs are spaced (keepalived 2.2.7's `garp_delay_t`): each `garp_group`
/// is one delay group for all its interfaces (the first group naming an interface wins, as
/// keepalived ignores the later ones); any other interface is a group of its own with the
/// global `vrrp_garp_interval` / `vrrp_gna_interval`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GarpPacing {
    by_iface: HashMap<String, usize>,
    groups: Vec<(Duration, Duration)>,
    default: (Duration, Duration),
}

impl GarpPacing {
    /// The delay groups of `cfg`.
    pub fn of(cfg: &Config) -> GarpPacing {
        let mut p = GarpPacing { default: (cfg.global.vrrp_garp_interval, cfg.global.vrrp_gna_interval), ..GarpPacing::default() };
        for (n, g) in cfg.garp_groups.iter().enumerate() {
            p.groups.push((g.garp_interval.unwrap_or_default(), g.gna_interval.unwrap_or_default()));
            for i in &g.interfaces {
                p.by_iface.entry(i.clone()).or_insert(n);
            }
        }
        p
    }

    /// The delay group of interface `iface`: a key naming it and its ARP and NA intervals.
    pub fn group(&self, iface: &str) -> (String, Duration, Duration) {
        match self.by_iface.get(iface) {
            Some(&n) => (format!("garp_group {n}"), self.groups[n].0, self.groups[n].1),
            None => (format!("interface {iface}"), self.default.0, self.default.1),
        }
    }
}

/// keepalived 2.2.7's `garp_lower_prio_repeat` and `garp_lower_prio_delay` of an instance
/// (vrrp_complete_instance, vrrp_complete_init): its own, else none in strict mode, else the
/// global ones, whose defaults are `vrrp_garp_master_repeat` and `vrrp_garp_master_delay`.
pub fn lower_prio_garp(g: &model::GlobalDefs, i: &model::VrrpInstance) -> (u32, Duration) {
    if i.strict_mode {
        return (i.garp_lower_prio_repeat.unwrap_or(0), i.garp_lower_prio_delay.unwrap_or(Duration::ZERO));
    }
    let repeat = i.garp_lower_prio_repeat.unwrap_or(g.vrrp_garp_lower_prio_repeat.unwrap_or(g.vrrp_garp_master_repeat));
    let delay = i.garp_lower_prio_delay.unwrap_or(g.vrrp_garp_lower_prio_delay.unwrap_or(g.vrrp_garp_master_delay));
    (repeat, delay)
}

/// The firewall of `global_defs`, ka's own table named for the default instance unless
/// `nftables` names one (the daemon renames ka's own for its instance).
fn firewall(cfg: &Config) -> crate::net::firewall::Settings {
    crate::net::firewall::Settings::of(&cfg.global.vrrp_nftables, "default")
}

/// The global settings of the engine: notify runner, SMTP, sync groups and tracker definitions.
///
/// # Errors
/// `script_user` names an unknown user or group.
pub fn globals(cfg: &Config) -> Result<super::EngineGlobals, crate::notify::script::ScriptError> {
    use crate::notify::script::Runner;
    use crate::vrrp::track::{ProcessParams, ScriptParams};
    let g = &cfg.global;
    let default_user = crate::notify::security::default_user(g.script_user.as_ref().map(|(u, grp)| (u.as_str(), grp.as_deref())), g.enable_script_security)?;
    let smtp = match (&g.smtp_server, g.notification_email.is_empty()) {
        (Some((server, port)), false) => Some(crate::notify::smtp::SmtpConfig {
            server: server.clone(),
            port: *port,
            timeout: g.smtp_connect_timeout,
            from: g.notification_email_from.clone().unwrap_or_else(|| "keepalived@localhost".to_owned()),
            to: g.notification_email.clone(),
            router_id: g.router_id.clone().unwrap_or_else(crate::config::default_config_id),
            helo_name: g.smtp_helo_name.clone(),
        }),
        _ => None,
    };
    Ok(super::EngineGlobals {
        runner: Runner { default_user, secure: g.enable_script_security, timeout: Duration::from_secs(60) },
        events: None,
        firewall: firewall(cfg),
        state_file: None,
        // keepalived's VRRP process opens notify_fifo and vrrp_notify_fifo (each line goes to
        // both); notify_fifo_script is the checkers' to run when they run.
        fifos: crate::notify::fifo::specs(g, crate::notify::fifo::Part::Vrrp, !cfg.virtual_servers.is_empty()),
        fifo_states_on_reload: g.fifo_write_vrrp_states_on_reload,
        no_email_faults: g.no_email_faults,
        smtp,
        garp_pacing: GarpPacing::of(cfg),
        disable_local_igmp: g.disable_local_igmp,
        rx_bufs: (g.vrrp_rx_bufs_policy, g.vrrp_rx_bufs_multiplier),
        auto_priority: crate::threads::AutoPriority::new(g.max_auto_priority, g.min_auto_priority_delay, g.vrrp_rt_priority),
        if_delays: std::sync::Arc::new(std::sync::RwLock::new(cfg.if_up_down_delays.iter().map(|d| (d.iface.clone(), (d.down, d.up))).collect())),
        sched: crate::threads::Tuning::of(g, crate::threads::Part::Vrrp),
        log_unknown_vrids: g.log_unknown_vrids,
        bfd: None,
        groups: cfg
            .sync_groups
            .iter()
            .map(|sg| {
                let n = &sg.notify;
                (
                    sg.name.clone(),
                    NotifySetup { master: script(&n.master), backup: script(&n.backup), fault: script(&n.fault), stop: script(&n.stop), any: script(&n.any), master_rx_lower_pri: None },
                    sg.smtp_alert.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false),
                )
            })
            .collect(),
        scripts: cfg
            .vrrp_scripts
            .iter()
            .filter_map(|v| {
                Some(super::tracking::ScriptDef {
                    name: v.name.clone(),
                    command: v.script.clone()?,
                    params: ScriptParams {
                        interval: v.interval,
                        timeout: v.timeout,
                        rise: v.rise.max(1),
                        fall: v.fall.max(1),
                        weight: Weight { weight: v.weight, reverse: v.reverse },
                        init_fail: v.init_fail,
                        user: v.user.clone(),
                    },
                })
            })
            .collect(),
        files: cfg
            .track_files
            .iter()
            .filter_map(|f| Some(super::tracking::FileDef { name: f.name.clone(), path: f.file.clone()?.into() }))
            .collect(),
        processes: cfg
            .track_processes
            .iter()
            .map(|p| super::tracking::ProcessDef {
                name: p.name.clone(),
                process: p.process.clone(),
                full_command: p.full_command,
                params: ProcessParams {
                    quorum: p.quorum.max(1),
                    quorum_max: p.quorum_max.unwrap_or(u32::MAX),
                    fork_delay: p.fork_delay,
                    terminate_delay: p.terminate_delay,
                    weight: Weight { weight: p.weight, reverse: false },
                },
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, LoadOptions};

    fn setups(text: &str) -> Vec<InstanceSetup> {
        let loaded = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        instances(&loaded.config).expect("setup")
    }

    /// keepalived 2.2.7's GARP settings as an instance ends up with them: the lower-priority
    /// burst (instance, global, then `vrrp_garp_master_*`; none in strict mode),
    /// `vrrp_min_garp` (only where the default still holds), the global refresh repeat and
    /// `garp_extra_if` (instance, else global; 0 turns it off).
    #[test]
    fn garp_settings_follow_keepalived() {
        struct Case {
            name: &'static str,
            global: &'static str,
            inst: &'static str,
            lower: (u32, u64),
            master: (u32, u64),
            refresh_repeat: u32,
            extra: Option<(u64, bool)>,
        }
        let cases = [
            Case { name: "defaults", global: "", inst: "", lower: (5, 5), master: (5, 5), refresh_repeat: 1, extra: None },
            Case { name: "lower follows vrrp_garp_master_*", global: " vrrp_garp_master_repeat 3\n vrrp_garp_master_delay 7\n", inst: "", lower: (3, 7), master: (3, 7), refresh_repeat: 1, extra: None },
            Case { name: "global lower prio", global: " vrrp_garp_lower_prio_repeat 2\n vrrp_garp_lower_prio_delay 9\n", inst: "", lower: (2, 9), master: (5, 5), refresh_repeat: 1, extra: None },
            Case { name: "instance wins", global: " vrrp_garp_lower_prio_repeat 2\n", inst: " garp_lower_prio_repeat 0\n garp_lower_prio_delay 1\n", lower: (0, 1), master: (5, 5), refresh_repeat: 1, extra: None },
            Case { name: "strict: none", global: " vrrp_strict\n vrrp_garp_lower_prio_repeat 2\n", inst: "", lower: (0, 0), master: (5, 5), refresh_repeat: 1, extra: None },
            Case { name: "min_garp", global: " vrrp_min_garp\n", inst: "", lower: (1, 0), master: (1, 0), refresh_repeat: 0, extra: None },
            Case { name: "min_garp keeps what was set", global: " vrrp_garp_master_repeat 3\n vrrp_min_garp\n", inst: "", lower: (3, 0), master: (3, 0), refresh_repeat: 0, extra: None },
            Case { name: "min_garp off", global: " vrrp_min_garp false\n", inst: "", lower: (5, 5), master: (5, 5), refresh_repeat: 1, extra: None },
            Case { name: "global refresh repeat", global: " vrrp_garp_master_refresh_repeat 4\n", inst: "", lower: (5, 5), master: (5, 5), refresh_repeat: 4, extra: None },
            Case { name: "global extra_if", global: " vrrp_garp_extra_if all 100\n", inst: "", lower: (5, 5), master: (5, 5), refresh_repeat: 1, extra: Some((100, true)) },
            Case { name: "instance extra_if wins", global: " vrrp_garp_extra_if all 100\n", inst: " garp_extra_if 30\n", lower: (5, 5), master: (5, 5), refresh_repeat: 1, extra: Some((30, false)) },
            Case { name: "instance extra_if 0 is off", global: " vrrp_garp_extra_if all 100\n", inst: " garp_extra_if 0\n", lower: (5, 5), master: (5, 5), refresh_repeat: 1, extra: None },
        ];
        for c in cases {
            let text = format!(
                "global_defs {{\n{}}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n{} virtual_ipaddress {{\n 198.18.0.10\n }}\n}}\n",
                c.global, c.inst
            );
            let i = &setups(&text)[0];
            let secs = Duration::from_secs;
            assert_eq!((i.params.garp_lower_prio_repeat, i.params.garp_lower_prio_delay), (c.lower.0, secs(c.lower.1)), "{}: lower prio", c.name);
            assert_eq!((i.params.garp_master_repeat, i.params.garp_master_delay), (c.master.0, secs(c.master.1)), "{}: master", c.name);
            assert_eq!(i.garp_refresh.1, c.refresh_repeat, "{}: refresh repeat", c.name);
            assert_eq!(i.garp_extra_if.map(|x| (x.interval.as_secs(), x.all)), c.extra, "{}: extra_if", c.name);
        }
    }

    /// `track_group`: the member instances track the interfaces of the static entries naming
    /// the group (addresses by `dev`, routes by `dev`, rules by `iif`), weight 0; `no_track`
    /// entries, non-members and a group defined below the entry (keepalived: "not found") do
    /// not count.
    #[test]
    fn track_group_members_track_static_interfaces() {
        let text = concat!(
            "global_defs {\n dynamic_interfaces\n}\n",
            "track_group TG {\n group {\n VI_1\n }\n}\n",
            "static_ipaddress {\n 198.18.1.1/24 dev eth1 track_group TG\n 198.18.2.1/24 dev eth2 track_group TG no_track\n 198.18.3.1/24 dev eth3\n}\n",
            "static_routes {\n 198.18.9.0/24 dev eth4 track_group TG\n 198.18.10.0/24 dev eth5 track_group LATE\n}\n",
            "static_rules {\n from 198.18.0.0/24 iif eth6 table 100 priority 10 track_group TG\n}\n",
            "track_group LATE {\n group {\n VI_1\n }\n}\n",
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
            "vrrp_instance VI_2 {\n interface eth0\n virtual_router_id 52\n virtual_ipaddress {\n 198.18.0.11\n }\n}\n",
        );
        let loaded = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        assert!(loaded.diagnostics.iter().any(|d| d.message.contains("track_group LATE not found")), "{:?}", loaded.diagnostics);
        assert!(!loaded.diagnostics.iter().any(|d| d.message.contains("not supported")), "{:?}", loaded.diagnostics);
        let s = instances(&loaded.config).expect("setup");
        let ifaces = |n: usize| -> Vec<String> {
            s[n].track.iter().filter_map(|(k, w)| match k {
                TrackKey::Interface(i) if w.weight == 0 => Some(i.clone()),
                _ => None,
            }).collect()
        };
        assert_eq!(ifaces(0), ["eth0", "eth1", "eth4", "eth6"]);
        assert_eq!(ifaces(1), ["eth0"]);
    }

    /// `native_ipv6` (keepalived 2.2.7): an instance without VIPs runs IPv6 / VRRPv3; an IPv4
    /// VIP after it is dropped ("address family must match"); after an IPv4 VIP the keyword is
    /// refused. `unicast_fault_no_peer` without peers is a configuration fault.
    #[test]
    fn native_ipv6_and_unicast_fault_no_peer() {
        let inst = |body: &str| format!("global_defs {{\n dynamic_interfaces\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n{body}}}\n");
        let load = |body: &str| parse_str(&inst(body), std::path::Path::new("t.conf"), &LoadOptions::default());
        let l = load(" native_ipv6\n");
        let s = instances(&l.config).expect("setup");
        assert_eq!((s[0].params.family, s[0].params.version), (Family::V6, Version::V3));
        let l = load(" native_ipv6\n virtual_ipaddress {\n 198.18.0.10\n fd00:198:18::10\n }\n");
        assert!(l.diagnostics.iter().any(|d| d.message.contains("address family must match")), "{:?}", l.diagnostics);
        assert_eq!(l.config.vrrp_instances[0].virtual_ipaddresses.len(), 1);
        assert!(l.config.vrrp_instances[0].virtual_ipaddresses[0].address.is_ipv6());
        let l = load(" virtual_ipaddress {\n 198.18.0.10\n }\n native_ipv6\n");
        assert!(l.diagnostics.iter().any(|d| d.message.contains("Cannot specify native_ipv6 with IPv4 addresses")), "{:?}", l.diagnostics);
        assert!(!l.config.vrrp_instances[0].if_opts.native_ipv6);
        let l = load(" unicast_fault_no_peer\n virtual_ipaddress {\n 198.18.0.10\n }\n");
        assert!(instances(&l.config).expect("setup")[0].params.config_fault, "no peers: FAULT");
        let l = load(" unicast_fault_no_peer\n unicast_peer {\n 198.18.0.2\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n");
        assert!(!instances(&l.config).expect("setup")[0].params.config_fault, "with a peer: no fault");
    }

    /// `garp_group`: its interfaces share one delay group with its intervals (an unset one is
    /// none); the first group naming an interface wins; other interfaces each get the global
    /// intervals.
    #[test]
    fn garp_groups_pace_their_interfaces() {
        let text = concat!(
            "global_defs {\n vrrp_garp_interval 0.002\n}\n",
            "garp_group {\n garp_interval 0.01\n interfaces {\n eth1\n eth2\n }\n}\n",
            "garp_group {\n gna_interval 0.5\n interface eth2\n}\n",
            "garp_group {\n gna_interval 0.3\n interface eth3\n}\n",
        );
        let loaded = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        let p = GarpPacing::of(&loaded.config);
        let ms = Duration::from_millis;
        let (k1, a1, n1) = p.group("eth1");
        let (k2, a2, n2) = p.group("eth2");
        assert_eq!((k1 == k2, a1, n1, a2, n2), (true, ms(10), ms(0), ms(10), ms(0)));
        let (k3, a3, n3) = p.group("eth3");
        assert_eq!((k3 != k1, a3, n3), (true, ms(0), ms(300)));
        let (k4, a4, n4) = p.group("eth4");
        let (k5, _, _) = p.group("eth5");
        assert_eq!((k4 != k5, a4, n4), (true, ms(2), ms(0)));
    }

    /// keepalived's `create_vmac_name`: `PREFIX.VRID` cut to 15 characters; a name in use
    /// gets a number (IPv6: 6 first).
    #[test]
    fn vmac_names_as_keepalived() {
        let cases: &[(&str, u8, bool, &[&str], &str)] = &[
            ("vrrp", 5, false, &[], "vrrp.5"),
            ("kv", 255, false, &[], "kv.255"),
            ("abcdefghijklmnop", 200, false, &[], "abcdefghijk.200"),
            ("vrrp", 5, false, &["vrrp.5"], "vrrp1.5"),
            ("vrrp", 5, false, &["vrrp.5", "vrrp1.5"], "vrrp2.5"),
            ("vrrp", 5, true, &["vrrp.5"], "vrrp6.5"),
            ("vrrp", 5, true, &["vrrp.5", "vrrp6.5", "vrrp1.5", "vrrp2.5", "vrrp3.5", "vrrp4.5", "vrrp5.5"], "vrrp7.5"),
            ("abcdefghijklmnop", 200, false, &["abcdefghijk.200"], "abcdefghij1.200"),
        ];
        for (prefix, vrid, v6, taken, want) in cases {
            assert_eq!(vmac_name(prefix, *vrid, *v6, |n| taken.contains(&n)), *want, "{prefix} {vrid} {v6} {taken:?}");
        }
    }

    /// [`setups`] where eth0 and eth1 exist.
    fn setups_eth(text: &str) -> Vec<InstanceSetup> {
        let opts = LoadOptions { config_id: None, interfaces: crate::config::InterfaceCheck::Known(["eth0", "eth1"].iter().map(|s| s.to_string()).collect()) };
        let loaded = parse_str(text, std::path::Path::new("t.conf"), &opts);
        instances(&loaded.config).expect("setup")
    }

    /// keepalived's VIP placement (vrrp_complete_instance): one row per rule, with the
    /// instance's `use_vmac` / `use_vmac_addr`, the VIP's `dev` and `use_vmac`, its family.
    #[test]
    fn vip_placement_as_keepalived() {
        use Placement::*;
        // (use_vmac, use_vmac_addr, VIP text, expected)
        let cases: &[(bool, bool, &str, Placement)] = &[
            (false, false, "198.18.0.10", Instance),
            (true, false, "198.18.0.10", Instance),
            (true, false, "fd00:198:18::10", Base),
            (false, true, "fd00:198:18::10", OwnVmac),
            (false, true, "198.18.0.10", Instance),
            (false, true, "198.18.0.10 dev eth1", OwnVmac),
            (false, false, "198.18.0.10 dev eth1", Instance),
            (false, false, "198.18.0.10 dev eth1 use_vmac", OwnVmac),
            (true, false, "198.18.0.10 use_vmac", Instance),
            (false, false, "198.18.0.10 use_vmac", OwnVmac),
            (true, false, "fd00:198:18::10 use_vmac", OwnVmac),
        ];
        for (vmac, addr, vip_text, want) in cases {
            let text = format!(
                "vrrp_instance A {{\n interface eth0\n virtual_router_id 5\n{}{} virtual_ipaddress {{\n 198.18.0.1\n }}\n virtual_ipaddress_excluded {{\n {vip_text}\n }}\n}}\n",
                if *vmac { " use_vmac\n" } else { "" },
                if *addr { " use_vmac_addr\n" } else { "" },
            );
            let s = setups_eth(&text);
            assert_eq!(s[0].excluded[0].placement, *want, "use_vmac {vmac} use_vmac_addr {addr} VIP {vip_text}");
        }
    }

    /// The VMACs of VIPs with their own are named after the instances' (`vmac_addr_prefix`,
    /// else `vmac_prefix`), one per interface and family.
    #[test]
    fn addr_vmacs_named_after_instances() {
        let text = "global_defs {\n vmac_prefix kv\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 5\n use_vmac\n use_vmac_addr\n virtual_ipaddress {\n 198.18.0.1\n 198.18.1.1 dev eth1\n 198.18.1.2 dev eth1\n }\n virtual_ipaddress_excluded {\n fd00:198:18::1\n }\n}\n";
        let s = setups_eth(text);
        let got: Vec<(&str, bool, &str)> = s[0].addr_vmacs.iter().map(|a| (a.base.as_str(), a.v6, a.name.as_str())).collect();
        assert_eq!(got, vec![("eth1", false, "kv1.5"), ("eth0", true, "kv6.5")]);
        assert_eq!(s[0].vmac.as_deref(), Some("kv.5"));
        let s = setups_eth(&text.replace(" vmac_prefix kv\n", " vmac_prefix kv\n vmac_addr_prefix ka\n"));
        let got: Vec<&str> = s[0].addr_vmacs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(got, vec!["ka.5", "ka6.5"]);
    }

    /// The interface keywords reach the engine's setup: `vmac_prefix` names generated VMACs
    /// (distinct per instance), `vmac_xmit_base`, `use_ipvlan` (kind, flags, address as the
    /// advert source), `vrf` as the interface of an instance without one.
    #[test]
    fn interface_keywords_in_setup() {
        let vi = |name: &str, vrid: u8, body: &str| {
            format!("vrrp_instance {name} {{\n virtual_router_id {vrid}\n{body}\n virtual_ipaddress {{\n 198.18.0.{vrid}\n }}\n}}\n")
        };
        let text = format!(
            "global_defs {{\n vmac_prefix kv\n}}\n{}{}{}{}{}",
            vi("A", 5, " interface eth0\n use_vmac\n vmac_xmit_base"),
            vi("B", 5, " interface eth1\n use_vmac"),
            vi("C", 6, " interface eth0\n use_vmac kv.6"),
            vi("D", 7, " interface eth0\n use_ipvlan iv7 198.18.0.70/24 private"),
            vi("E", 8, " vrf blue\n unicast_src_ip 198.18.0.80\n unicast_peer {\n 198.18.0.81\n }"),
        );
        let s = setups(&text);
        assert_eq!((s[0].vmac.as_deref(), s[0].vmac_xmit_base, &s[0].vmac_kind), (Some("kv.5"), true, &VmacKind::Macvlan));
        assert_eq!((s[1].vmac.as_deref(), s[1].vmac_xmit_base), (Some("kv1.5"), false));
        assert_eq!(s[2].vmac.as_deref(), Some("kv.6"));
        let ip = |a: &str| a.parse::<IpAddr>().expect("addr");
        assert_eq!((s[3].vmac.as_deref(), &s[3].vmac_kind), (Some("iv7"), &VmacKind::Ipvlan { flags: 1, addr: Some((ip("198.18.0.70"), 24)) }));
        assert_eq!((s[3].src_ip, s[3].params.primary_addr), (Some(ip("198.18.0.70")), ip("198.18.0.70")));
        assert_eq!((s[4].iface.as_str(), s[4].vmac.as_deref()), ("blue", None));
    }

    #[test]
    fn defaults_follow_keepalived() {
        let s = setups(
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
        );
        let i = &s[0];
        assert_eq!(i.params.vrid, 51);
        assert_eq!(i.params.priority, 100);
        assert_eq!(i.params.advert_int, 100);
        assert_eq!(i.params.version, Version::V2);
        assert_eq!(i.params.initial_state, InitialState::Backup);
        assert!(i.params.preempt);
        assert_eq!(i.vips[0].prefix, 32);
        assert_eq!(i.group, IpAddr::V4(ka_common::vrrp::VRRP_MCAST_V4));
        assert!(i.track.contains(&(TrackKey::Interface("eth0".into()), Weight { weight: 0, reverse: false })));
    }

    #[test]
    fn advert_options_and_globals_reach_the_engine() {
        let text = concat!(
            "global_defs {\n vrrp_down_timer_adverts 5\n vrrp_lower_prio_no_advert\n vrrp_startup_delay 2\n vrrp_notify_fifo /run/ka-test.fifo\n}\n",
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n version 3\n higher_prio_send_advert\n old_unicast_checksum\n notify_deleted\n",
            " unicast_peer {\n 198.18.0.2\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
        );
        let loaded = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        let i = &instances(&loaded.config).expect("setup")[0];
        assert_eq!(i.params.down_timer_adverts, 5);
        assert!(i.params.lower_prio_no_advert && i.params.higher_prio_send_advert && i.params.notify_deleted);
        assert_eq!(i.params.startup_delay, Duration::from_secs(2));
        assert_eq!(i.v3_checksum, V3Checksum::OldUnicast);
        let g = globals(&loaded.config).expect("globals");
        assert_eq!(g.fifos, vec![crate::notify::fifo::FifoSpec { path: "/run/ka-test.fifo".into(), script: None, owner: None }]);
    }

    /// Global `smtp_alert` is every instance's default, `smtp_alert_vrrp` overrides it, and the
    /// instance's own `smtp_alert` overrides both.
    #[test]
    fn global_smtp_alert_defaults() {
        let vi = |name: &str, vrid: u8, own: &str| format!("vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n {own}\n virtual_ipaddress {{\n 198.18.0.{vrid}\n }}\n}}\n");
        let body = format!("{}{}", vi("A", 1, ""), vi("B", 2, "smtp_alert off"));
        let alerts = |globals: &str| setups(&format!("global_defs {{\n{globals}\n}}\n{body}")).iter().map(|i| i.smtp_alert).collect::<Vec<_>>();
        assert_eq!(alerts(""), vec![false, false]);
        assert_eq!(alerts("smtp_alert on"), vec![true, false]);
        assert_eq!(alerts("smtp_alert on\n smtp_alert_vrrp off"), vec![false, false]);
        assert_eq!(alerts("smtp_alert off\n smtp_alert_vrrp on"), vec![true, false]);
    }

    /// Routes, rules and address options reach the engine as the config parsed them: typed,
    /// nothing re-read from words (the old re-parse dropped a `peer` with a prefix silently).
    #[test]
    fn routes_rules_and_address_options_reach_the_engine_typed() {
        let s = setups(concat!(
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n",
            " virtual_ipaddress {\n 198.18.0.10/24 brd + scope link label eth0:1\n 198.18.0.11 peer 198.18.0.1\n }\n",
            " virtual_routes {\n 198.18.9.0/24 via 198.18.0.254 dev eth0 table 100 metric 5 protocol static no_track\n",
            " 198.18.10.0/24 nexthop via 198.18.0.1 dev eth0 weight 2 nexthop via 198.18.0.2 dev eth0\n }\n",
            " virtual_rules {\n from 198.18.0.10 table 100 priority 100\n }\n}\n",
        ));
        let i = &s[0];
        assert_eq!(i.vips[0].broadcast, Some("198.18.0.255".parse().expect("ip")));
        assert_eq!((i.vips[0].scope, i.vips[0].label.as_deref()), (Some(253), Some("eth0:1")));
        assert_eq!(i.vips[1].peer, Some("198.18.0.1".parse().expect("ip")));
        let r = &i.routes[0];
        assert_eq!((r.dst.to_string(), r.via, r.table, r.metric, r.protocol), ("198.18.9.0/24".into(), Some("198.18.0.254".parse().expect("ip")), 100, Some(5), Some(4)));
        assert_eq!(i.routes[1].nexthops.len(), 2);
        assert_eq!(i.routes[1].nexthops[0].weight, Some(2));
        assert_eq!(i.rules[0].action, model::RuleAction::Table(100));
        assert_eq!(i.rules[0].priority, 100);
    }

    /// Route, rule and address forms `ka check` used to accept and `ka run` refused (the engine
    /// re-parsed them with a smaller grammar).
    const ONCE_REFUSED: &str = concat!(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n",
        " virtual_ipaddress {\n 198.18.0.10/24 brd + home\n }\n",
        " virtual_routes {\n 198.18.9.0/24 via 198.18.0.1 dev eth0 no_track\n 198.18.10.0/24 dev eth0 protocol static onlink mtu 1400\n",
        " 198.18.11.0/24 nexthop via 198.18.0.1 dev eth0 nexthop via 198.18.0.2 dev eth0\n inet6 default via fd00:198:18::1 dev eth0 pref high\n }\n",
        " virtual_rules {\n not from 198.18.0.0/24 lookup main order 5\n to 198.18.1.0/24 goto 300 priority 200\n }\n}\n",
    );

    /// Every configuration `ka check` accepts (no error), `engine::setup` accepts, with every
    /// route, rule and address the model holds: the corpus (Debian-like samples and real-world
    /// files) and the forms above, read the same way both times.
    #[test]
    fn what_check_accepts_setup_runs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/config");
        let mut inputs: Vec<(String, String)> = vec![("ONCE_REFUSED".into(), ONCE_REFUSED.into())];
        for sub in ["valid", "real", "invalid"] {
            let mut files: Vec<_> = std::fs::read_dir(dir.join(sub)).expect("corpus").map(|e| e.expect("entry").path()).collect();
            files.sort();
            for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "conf")) {
                if let Ok(t) = std::fs::read_to_string(&f) {
                    inputs.push((f.display().to_string(), t));
                }
            }
        }
        let opts = LoadOptions { config_id: Some("ka-test".into()), interfaces: crate::config::InterfaceCheck::Skip };
        let (mut accepted, mut routes) = (0, 0);
        for (name, text) in &inputs {
            let l = parse_str(text, std::path::Path::new(name), &opts);
            if l.has_errors() {
                continue;
            }
            accepted += 1;
            for vi in &l.config.vrrp_instances {
                let i = match instance(&l.config, vi) {
                    Ok(i) => i,
                    Err(e) => panic!("{name}: ka check accepts it, setup refuses: {e}"),
                };
                assert_eq!(i.routes, vi.virtual_routes, "{name}");
                assert_eq!(i.rules, vi.virtual_rules, "{name}");
                assert_eq!(i.vips.len(), vi.virtual_ipaddresses.len(), "{name}");
                routes += i.routes.len() + i.rules.len();
            }
        }
        assert!(accepted >= 50, "only {accepted} of {} inputs accepted", inputs.len());
        let once = parse_str(ONCE_REFUSED, std::path::Path::new("t.conf"), &opts);
        assert!(!once.has_errors(), "{:?}", once.diagnostics);
        assert_eq!(once.config.vrrp_instances[0].virtual_routes.len() + once.config.vrrp_instances[0].virtual_rules.len(), 6);
        assert!(routes >= 10, "{routes} routes and rules seen");
    }

    #[test]
    fn ipv6_instances_run_vrrpv3_with_centisecond_intervals() {
        let s = setups(
            "vrrp_instance V6 {\n interface eth0\n virtual_router_id 7\n advert_int 0.05\n virtual_ipaddress {\n fd00:198:18::10\n }\n}\n",
        );
        assert_eq!(s[0].params.version, Version::V3);
        assert_eq!(s[0].params.family, Family::V6);
        assert_eq!(s[0].params.advert_int, 5);
        assert_eq!(s[0].vips[0].prefix, 128);
    }

    /// keepalived's `auth_type AH` runs (it used to be refused): keyed with the first 8 bytes
    /// of auth_pass.
    #[test]
    fn auth_ah_runs_keyed_with_auth_pass() {
        let s = setups(
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n authentication {\n auth_type AH\n auth_pass s3cret-long\n }\n virtual_ipaddress {\n 198.18.0.10/24\n }\n}\n",
        );
        assert_eq!(s[0].auth, Auth::Ah(*b"s3cret-l"));
        assert_eq!(s[0].params.version, Version::V2);
    }

    /// `track_bfd`: the bfd_instance's weight and reverse by default; a sync group's BFDs are
    /// tracked by each member, once, with the group's weight unless the member's reference is
    /// unweighted (keepalived's `add_vrrp_to_track_bfd`).
    #[test]
    fn track_bfd_weights_and_sync_groups() {
        let s = setups(concat!(
            "bfd_instance b1 {\n neighbor_ip 198.18.0.2\n weight 10 reverse\n}\n",
            "bfd_instance b2 {\n neighbor_ip 198.18.0.3\n}\n",
            "bfd_instance b3 {\n neighbor_ip 198.18.0.4\n}\n",
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n track_bfd {\n b1\n b2 weight 3\n b3\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
            "vrrp_instance VI_2 {\n interface eth0\n virtual_router_id 6\n virtual_ipaddress {\n 198.18.0.11\n }\n}\n",
            "vrrp_sync_group G {\n group {\n VI_1\n VI_2\n }\n sync_group_tracking_weight\n track_bfd {\n b2 weight -7\n b3 weight 4\n }\n}\n",
        ));
        let bfds = |i: &InstanceSetup| -> Vec<(TrackKey, Weight)> { i.track.iter().filter(|(k, _)| matches!(k, TrackKey::Bfd(_))).cloned().collect() };
        let b = |n: &str, weight: i32, reverse: bool| (TrackKey::Bfd(n.into()), Weight { weight, reverse });
        assert_eq!(bfds(&s[0]), [b("b1", 10, true), b("b2", -7, false), b("b3", 0, false)]);
        assert_eq!(bfds(&s[1]), [b("b2", -7, false), b("b3", 4, false)]);
    }

    /// keepalived's merge of a sync group's trackers into a member's, case by case: the
    /// group's object is added; one the member tracks already keeps the member's unweighted
    /// tracking, or takes the group's weight (a process keeps the member's `reverse`).
    #[test]
    fn merge_group_tracking_follows_keepalived() {
        let w = |weight: i32, reverse: bool| Weight { weight, reverse };
        let (i, s, f, p) = (|n: &str| TrackKey::Interface(n.into()), |n: &str| TrackKey::Script(n.into()), |n: &str| TrackKey::File(n.into()), |n: &str| TrackKey::Process(n.into()));
        type Track = Vec<(TrackKey, Weight)>;
        let cases: Vec<(&str, Track, Track, Track)> = vec![
            ("nothing to merge", vec![(i("eth0"), w(0, false))], vec![], vec![(i("eth0"), w(0, false))]),
            ("added after the member's own", vec![(i("eth0"), w(0, false))], vec![(s("a"), w(-5, false)), (f("b"), w(0, false))], vec![(i("eth0"), w(0, false)), (s("a"), w(-5, false)), (f("b"), w(0, false))]),
            ("the member's unweighted tracking stays", vec![(i("eth0"), w(0, false)), (s("a"), w(0, false))], vec![(i("eth0"), w(-4, true)), (s("a"), w(9, false))], vec![(i("eth0"), w(0, false)), (s("a"), w(0, false))]),
            ("a weighted member takes the group's weight and reverse", vec![(s("a"), w(3, false)), (f("b"), w(2, true))], vec![(s("a"), w(-7, true)), (f("b"), w(0, false))], vec![(s("a"), w(-7, true)), (f("b"), w(0, false))]),
            ("a process keeps the member's reverse", vec![(p("c"), w(3, true))], vec![(p("c"), w(-6, false))], vec![(p("c"), w(-6, true))]),
            ("same name, other kind: both tracked", vec![(s("x"), w(0, false))], vec![(f("x"), w(2, false))], vec![(s("x"), w(0, false)), (f("x"), w(2, false))]),
        ];
        for (what, mut mine, group, want) in cases {
            merge_group_tracking(&mut mine, &group);
            assert_eq!(mine, want, "{what}");
        }
    }

    /// A sync group's `track_interface`, `track_script`, `track_file` and `track_process` reach
    /// every member, with the group's weights even without `sync_group_tracking_weight` (as
    /// keepalived 2.2.7 runs them), and the objects' own weight and `reverse` when the
    /// reference gives none; an instance outside the group gets none of them.
    #[test]
    fn sync_group_trackers_reach_every_member() {
        let s = setups(concat!(
            "vrrp_script chk {\n script /bin/true\n weight -20 reverse\n}\n",
            "vrrp_script fatal {\n script /bin/true\n}\n",
            "track_file tf {\n file /tmp/ka-tf\n}\n",
            "vrrp_track_process tp {\n process ka-tp\n weight 0\n}\n",
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n track_script {\n fatal\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
            "vrrp_instance VI_2 {\n interface eth1\n virtual_router_id 6\n dont_track_primary\n virtual_ipaddress {\n 198.18.0.11\n }\n}\n",
            "vrrp_instance VI_3 {\n interface eth1\n virtual_router_id 7\n virtual_ipaddress {\n 198.18.0.12\n }\n}\n",
            "vrrp_sync_group G {\n group {\n VI_1\n VI_2\n }\n track_interface {\n eth1 weight -3\n }\n",
            " track_script {\n chk\n fatal weight 4\n }\n track_file {\n tf weight -2\n }\n track_process {\n tp\n }\n}\n",
        ));
        let w = |weight: i32, reverse: bool| Weight { weight, reverse };
        let group = [
            (TrackKey::Interface("eth1".into()), w(-3, false)),
            (TrackKey::Script("chk".into()), w(-20, true)),
            (TrackKey::File("tf".into()), w(-2, false)),
            (TrackKey::Process("tp".into()), w(0, false)),
        ];
        // VI_1: its primary eth0, its own unweighted `fatal` (the group's weight 4 does not
        // apply to it), then the group's.
        let mut want = vec![(TrackKey::Interface("eth0".into()), w(0, false)), (TrackKey::Script("fatal".into()), w(0, false))];
        want.extend(group.iter().cloned());
        assert_eq!(s[0].track, want);
        // VI_2: dont_track_primary, so the group's eth1 is tracked with the group's weight;
        // the group's `fatal` with weight 4.
        let vi2 = s[1].track.clone();
        assert!(vi2.contains(&(TrackKey::Interface("eth1".into()), w(-3, false))), "{vi2:?}");
        assert!(vi2.contains(&(TrackKey::Script("fatal".into()), w(4, false))), "{vi2:?}");
        for k in &group[1..] {
            assert!(vi2.contains(k), "{k:?} in {vi2:?}");
        }
        assert_eq!(s[2].track, [(TrackKey::Interface("eth1".into()), w(0, false))]);
    }

    /// A reference without `weight` takes its object's `reverse` too (keepalived's
    /// `alloc_track_script` / `vrrp_alloc_track_file`).
    #[test]
    fn references_take_their_objects_reverse() {
        let s = setups(concat!(
            "vrrp_script chk {\n script /bin/true\n weight -20 reverse\n}\n",
            "track_file tf {\n file /tmp/ka-tf\n weight 3 reverse\n}\n",
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n track_script {\n chk\n }\n track_file {\n tf weight 2\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
        ));
        assert!(s[0].track.contains(&(TrackKey::Script("chk".into()), Weight { weight: -20, reverse: true })), "{:?}", s[0].track);
        assert!(s[0].track.contains(&(TrackKey::File("tf".into()), Weight { weight: 2, reverse: true })), "{:?}", s[0].track);
    }

    #[test]
    fn auth_pass_scripts_and_tracking_weights_carry_over() {
        let s = setups(concat!(
            "vrrp_script chk { \n script \"/bin/true\"\n weight -20\n}\n",
            "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 5\n priority 150\n",
            " authentication {\n auth_type PASS\n auth_pass secret\n }\n",
            " track_script {\n chk\n }\n notify_master \"/bin/echo up\"\n",
            " unicast_peer {\n 198.18.0.2\n }\n virtual_ipaddress {\n 198.18.0.10/24 dev eth0 label eth0:1\n }\n}\n",
        ));
        let i = &s[0];
        assert_eq!(i.params.initial_state, InitialState::Master);
        assert_eq!(i.auth, Auth::pass(b"secret"));
        assert!(i.track.contains(&(TrackKey::Script("chk".into()), Weight { weight: -20, reverse: false })));
        assert_eq!(i.notify.master.as_ref().map(|s| s.command.as_str()), Some("/bin/echo up"));
        assert_eq!(i.peers[0].addr, "198.18.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(i.vips[0].label.as_deref(), Some("eth0:1"));
        assert_eq!(i.vips[0].prefix, 24);
    }
}
