//! `vrrp_instance`: one VRRP router, its addresses, peers, tracking and notify scripts.
//!
//! [`Cx::vrrp_instance`] hands each keyword to the helper of its kind (identity, addresses,
//! peers, tracking, behaviour); the first that knows the keyword handles it.

use std::time::Duration;

use super::{keywords::*, track::Tracked, values::*, Cx, InstanceDefaults};
use crate::config::{iproute::Block, model::*, tree::Stmt};

/// An instance being read: the model, the settings whose defaults come from `global_defs`, and
/// whether `state` / `priority` were given (keepalived derives each from the other).
struct Building {
    vi: VrrpInstance,
    d: InstanceDefaults,
    state_set: bool,
    priority_set: bool,
}

/// A `vrrp_instance` with keepalived 2.2's defaults, before its block is read.
fn new_instance(name: String, s: &Stmt) -> VrrpInstance {
    VrrpInstance {
        name,
        debug: 0,
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
        notify_priority_changes: None,
        skip_check_adv_addr: None,
        check_unicast_src: None,
    }
}

impl Cx<'_> {
    pub(super) fn vrrp_instance(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut b = Building {
            vi: new_instance(name, s),
            d: InstanceDefaults::default(),
            state_set: false,
            priority_set: false,
        };
        for e in self.block(s) {
            let handled = self.notify(e, &mut b.vi.notify)
                || self.vi_identity(e, &mut b)
                || self.vi_addresses(e, &mut b.vi)
                || self.vi_peers(e, &mut b.vi)
                || self.vi_tracking(e, &mut b.vi)
                || self.vi_behaviour(e, &mut b);
            if handled {
                continue;
            }
            match e.name() {
                "authentication" => {
                    if let Some(a) = self.authentication(e) {
                        b.vi.authentication = Some(a);
                    }
                }
                "lvs_sync_daemon_interface" => self.lvs_sync_daemon_interface(e, &b.vi.name),
                "debug" => {
                    // keepalived 2.2.7's vrrp_debug_handler: 0..4, shown in the data dump only.
                    if let Some(v) = self.arg_int(e, 0, 4) {
                        b.vi.debug = v as u8;
                    }
                }
                n if VRRP_UNSUPPORTED.contains(&n) => self.unsupported(e, "vrrp_instance"),
                _ => self.unknown(e, "vrrp_instance", &[VRRP_SUPPORTED, VRRP_UNSUPPORTED]),
            }
        }
        let Building { mut vi, d, state_set, priority_set } = b;
        // keepalived 2.2 (vrrp_complete_instance): with no priority, a MASTER is the address
        // owner (255) and anything else gets 100; with no state, the owner starts MASTER and
        // anything else BACKUP.
        (vi.priority, vi.state) = derive_state_priority(state_set.then_some(vi.state), priority_set.then_some(vi.priority));
        self.cfg.vrrp_instances.push(vi);
        self.inst_defaults.push(d);
    }

    /// `state`, `interface`, `virtual_router_id`, `priority`, `advert_int`, `version`.
    fn vi_identity(&mut self, e: &Stmt, b: &mut Building) -> bool {
        let vi = &mut b.vi;
        match e.name() {
            "state" => {
                if let Some(v) = self.arg_str(e) {
                    match v.as_str() {
                        "MASTER" => (vi.state, b.state_set) = (VrrpState::Master, true),
                        "BACKUP" => (vi.state, b.state_set) = (VrrpState::Backup, true),
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
                            format!("({}) cannot use a loopback interface (lo) for vrrp", vi.name),
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
                    b.priority_set = true;
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
                    b.d.version = Some(if v == 2 { VrrpVersion::V2 } else { VrrpVersion::V3 });
                }
            }
            _ => return false,
        }
        true
    }

    /// `virtual_ipaddress`, `virtual_ipaddress_excluded`, `virtual_routes`, `virtual_rules`.
    fn vi_addresses(&mut self, e: &Stmt, vi: &mut VrrpInstance) -> bool {
        match e.name() {
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
            _ => return false,
        }
        true
    }

    /// The source and destinations of adverts: `mcast_src_ip`/`unicast_src_ip`,
    /// `mcast_dst_ip`, `unicast_ttl`, `unicast_peer`.
    fn vi_peers(&mut self, e: &Stmt, vi: &mut VrrpInstance) -> bool {
        match e.name() {
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
                    if let Some(peer) = self.unicast_peer(p) {
                        vi.unicast_peers.push(peer);
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// One `unicast_peer` line: `ADDR [min_ttl N] [max_ttl N]`.
    fn unicast_peer(&mut self, p: &Stmt) -> Option<UnicastPeer> {
        self.no_block(p);
        let address = self.ip_or_prefix(&p.kw)?;
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
        Some(peer)
    }

    /// `authentication { auth_type PASS|AH; auth_pass SECRET }`.
    fn authentication(&mut self, e: &Stmt) -> Option<Authentication> {
        let mut auth_type = None;
        let mut pass = String::new();
        for a in self.block(e) {
            match a.name() {
                "auth_type" => match self.arg_str(a).as_deref() {
                    Some("PASS") => auth_type = Some((AuthType::Pass, a.args[0].span)),
                    Some("AH") => auth_type = Some((AuthType::Ah, a.args[0].span)),
                    Some(o) => self.err(&a.args[0], format!("unknown auth_type '{o}': expected PASS or AH")),
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
            Some((t, type_span)) => Some(Authentication {
                auth_type: t,
                auth_pass: pass,
                span: e.span(),
                type_span,
            }),
            None => {
                self.err(&e.kw, "authentication needs an auth_type (PASS or AH)");
                None
            }
        }
    }

    /// `track_interface`, `track_script`, `track_file`, `track_process`, `track_bfd`,
    /// `dont_track_primary`.
    fn vi_tracking(&mut self, e: &Stmt, vi: &mut VrrpInstance) -> bool {
        match e.name() {
            "track_interface" => {
                let list = self.track_interfaces(e, &vi.name, &vi.track_interfaces);
                vi.track_interfaces.extend(list);
            }
            "track_script" => {
                let list = self.track_refs(e, &vi.name, Tracked::Script, &vi.track_scripts);
                vi.track_scripts.extend(list);
            }
            "track_file" => {
                let list = self.track_refs(e, &vi.name, Tracked::File, &vi.track_files);
                vi.track_files.extend(list);
            }
            "track_process" => {
                let list = self.track_refs(e, &vi.name, Tracked::Process, &vi.track_processes);
                vi.track_processes.extend(list);
            }
            // The BFD family (`config/bfd.rs`) defines the sessions; the reference is read here.
            "track_bfd" => {
                let list = self.track_bfd_refs(e, &vi.name, &vi.track_bfds);
                vi.track_bfds.extend(list);
            }
            "dont_track_primary" => {
                self.no_block(e);
                vi.dont_track_primary = true;
            }
            _ => return false,
        }
        true
    }

    /// How the instance behaves: preemption, accept mode, gratuitous ARP, adverts, strictness,
    /// VMAC, checksum and alert settings.
    fn vi_behaviour(&mut self, e: &Stmt, b: &mut Building) -> bool {
        let (vi, d) = (&mut b.vi, &mut b.d);
        match e.name() {
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
            "down_timer_adverts" => vi.down_timer_adverts = self.arg_int(e, 1, 100).map(|v| v as u8),
            "lower_prio_no_advert" => vi.lower_prio_no_advert = Some(self.arg_bool(e)),
            "higher_prio_send_advert" => vi.higher_prio_send_advert = Some(self.arg_bool(e)),
            "old_unicast_checksum" => {
                // keepalived: `old_unicast_checksum [never]`; `never` keeps the standard one.
                self.no_block(e);
                vi.old_unicast_checksum = e.args.first().is_none_or(|a| a.text != "never");
            }
            "notify_deleted" => vi.notify_deleted = self.arg_bool(e),
            "notify_priority_changes" => vi.notify_priority_changes = Some(self.arg_bool(e)),
            "skip_check_adv_addr" => vi.skip_check_adv_addr = Some(self.arg_bool(e)),
            "check_unicast_src" => vi.check_unicast_src = Some(self.arg_bool(e)),
            "garp_master_delay" => d.garp_master_delay = self.arg_secs(e, 0, 4294),
            "garp_master_repeat" => d.garp_master_repeat = self.arg_int(e, 1, U32).map(|v| v as u32),
            "garp_master_refresh" => d.garp_master_refresh = self.arg_secs(e, 0, U32),
            "garp_master_refresh_repeat" => {
                d.garp_master_refresh_repeat = self.arg_int(e, 1, U32).map(|v| v as u32)
            }
            "strict_mode" => d.strict_mode = Some(self.arg_bool(e)),
            "use_vmac" => {
                self.no_block(e);
                vi.use_vmac = Some(e.args.first().map(|t| t.text.clone()));
            }
            "smtp_alert" => vi.smtp_alert = Some(self.arg_bool(e)),
            _ => return false,
        }
        true
    }

    /// `lvs_sync_daemon_interface IFACE` (keepalived 2.2: deprecated, but still the sync
    /// daemon on this instance).
    fn lvs_sync_daemon_interface(&mut self, e: &Stmt, instance: &str) {
        self.warn(&e.kw, format!("({instance}) lvs_sync_daemon_interface in a vrrp_instance is deprecated; use global lvs_sync_daemon"));
        let Some(iface) = self.arg_str(e) else { return };
        match &self.cfg.global.lvs_sync_daemon {
            Some(d) => {
                let msg = format!("({instance}) lvs_sync_daemon_interface has already been specified as {}", d.interface);
                self.err(&e.kw, msg);
            }
            None => {
                self.cfg.global.lvs_sync_daemon = Some(LvsSyncDaemon {
                    interface: iface,
                    instance: instance.to_owned(),
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

/// keepalived 2.2's defaults of a `vrrp_instance`'s `priority` and initial `state`, each
/// derived from the other when missing (`vrrp_complete_instance`): no priority gives 255 (the
/// address owner) to `state MASTER` and 100 otherwise; no state gives MASTER to priority 255
/// and BACKUP otherwise.
pub(super) fn derive_state_priority(state: Option<VrrpState>, priority: Option<u8>) -> (u8, VrrpState) {
    let priority = priority.unwrap_or(if state == Some(VrrpState::Master) { 255 } else { 100 });
    let state = state.unwrap_or(if priority == 255 { VrrpState::Master } else { VrrpState::Backup });
    (priority, state)
}
