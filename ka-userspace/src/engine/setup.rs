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
        }
    }
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
    /// `use_vmac [NAME]`: the macvlan's name.
    pub vmac: Option<String>,
    /// `garp_master_refresh` (zero: none) and its repeat.
    pub garp_refresh: (Duration, u32),
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
    cfg.vrrp_instances.iter().map(|i| instance_with(cfg, i, &own)).collect()
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
    let iface = i.interface.clone().ok_or_else(|| SetupError::NoInterface { name: name.clone() })?;
    let v6 = i.virtual_ipaddresses.first().is_some_and(|v| v.address.is_ipv6());
    let version = match (i.version, v6) {
        // keepalived runs IPv6 instances as VRRPv3 only.
        (_, true) => Version::V3,
        (VrrpVersion::V2, false) => Version::V2,
        (VrrpVersion::V3, false) => Version::V3,
    };
    let family = if v6 { Family::V6 } else { Family::V4 };
    let placeholder: IpAddr = if v6 { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) };
    let mut p = InstanceParams::new(i.virtual_router_id, version, i.priority, i.src_ip.unwrap_or(placeholder));
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
    p.garp_master_repeat = i.garp_master_repeat;
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
    if let Some(group) = i.sync_group.as_deref().and_then(|g| own.groups.get(g)) {
        merge_group_tracking(&mut track, group);
    }
    let group = i.mcast_dst_ip.unwrap_or(if v6 { g.vrrp_mcast_group6 } else { g.vrrp_mcast_group4 });
    let setup = InstanceSetup {
        name: name.clone(),
        params: p,
        iface,
        src_ip: i.src_ip,
        vips: i.virtual_ipaddresses.iter().map(vip).collect(),
        excluded: i.virtual_ipaddresses_excluded.iter().map(vip).collect(),
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
        },
        smtp_alert: i.smtp_alert.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false),
        vmac: i.use_vmac.as_ref().map(|n| n.clone().unwrap_or_else(|| format!("vrrp.{}", i.virtual_router_id))),
        garp_refresh: (i.garp_master_refresh, i.garp_master_refresh_repeat),
        track,
        sync_group: i.sync_group.clone(),
        notify_priority_changes: i.notify_priority_changes.unwrap_or(g.vrrp_notify_priority_changes),
    };
    setup.params.validate().map_err(|source| SetupError::Params { name, source })?;
    Ok(setup)
}

fn firewall_table() -> String {
    crate::net::firewall::table_name("default")
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
        nft_table: firewall_table(),
        state_file: None,
        // keepalived writes each line to both FIFOs when both are set (the same one once).
        fifos: {
            let mut v: Vec<std::path::PathBuf> = Vec::new();
            for p in g.notify_fifo.iter().chain(&g.vrrp_notify_fifo) {
                if !v.iter().any(|x| x.as_os_str() == p.as_str()) {
                    v.push(p.into());
                }
            }
            v
        },
        no_email_faults: g.no_email_faults,
        smtp,
        garp_interval: g.vrrp_garp_interval,
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
                    NotifySetup { master: script(&n.master), backup: script(&n.backup), fault: script(&n.fault), stop: script(&n.stop), any: script(&n.any) },
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
        assert_eq!(g.fifos, vec![std::path::PathBuf::from("/run/ka-test.fifo")]);
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
