//! Live reload of the VRRP instances, as [`crate::reload`] plans it (keepalived 2.2): matched
//! instances keep their state machine, timers and tracker results and get their VIPs, routes
//! and rules diffed; deleted ones resign and notify DELETED; new ones start fresh. Everything
//! that can fail (interfaces, sockets, parameters) is resolved before anything changes.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use tracing::{info, warn};

use super::{addr_spec, build_instance, link_of, setup::InstanceSetup, tracking, EngineError, EngineGlobals, Rt, SysView, SLOT_REFRESH};
use crate::{
    reload::{held_after, InstancePlan, KeptInstance},
    vrrp::{Event, State, SyncGroup},
};

/// A reload, from the daemon to the engine.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Every instance of the new configuration, in order.
    pub setups: Vec<InstanceSetup>,
    /// How they relate to the running ones.
    pub plan: InstancePlan,
    /// The new global settings (`events` and `nft_table` are kept from the running engine).
    pub globals: EngineGlobals,
}

/// The addresses carried in an instance's adverts, and their wire form.
pub(super) fn advert_addrs(s: &InstanceSetup) -> (Vec<IpAddr>, Vec<u8>) {
    let v6 = s.params.family == ka_common::vrrp::Family::V6;
    let addrs: Vec<IpAddr> = s.vips.iter().map(|v| v.addr).filter(|a| a.is_ipv6() == v6).collect();
    let bytes = addrs
        .iter()
        .flat_map(|a| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        })
        .collect();
    (addrs, bytes)
}

impl super::Engine {
    /// Applies a reload. On error nothing has changed.
    /// `env` is the kernel's view, read for this reload.
    pub(super) async fn reload(&mut self, req: ReloadRequest, env: SysView) -> Result<(), EngineError> {
        let ReloadRequest { setups, plan, globals } = req;
        self.flush().await;
        let old_of_new = plan.old_of_new(setups.len());
        // Everything that can fail first: new instances are resolved and the kept ones'
        // parameters checked before any running instance is touched.
        // Kept instances that switch to or from auth_type AH move to the other kind of socket
        // (IP protocol 51 or 112), opened now and taken once nothing can fail any more.
        let mut resocket: HashMap<usize, (usize, usize)> = HashMap::new();
        for k in &plan.kept {
            let (Some(s), Some(r)) = (setups.get(k.new), self.inst.get(k.old)) else { continue };
            let mut p = s.params.clone();
            p.primary_addr = r.src;
            p.validate().map_err(|source| EngineError::Params { instance: s.name.clone(), source })?;
            if s.auth.ah_key().is_some() != r.setup.auth.ah_key().is_some() {
                let rx = self.sockets.receiving(s, r.ifindex, r.src)?;
                let tx = self.sockets.sending(s, rx, r.ifindex, r.vip_ifindex, r.src)?;
                resocket.insert(k.old, (rx, tx));
            }
        }
        let mut fresh: HashMap<usize, Rt> = HashMap::new();
        for (n, s) in setups.iter().enumerate() {
            if old_of_new[n].is_none() {
                let (r, _) = build_instance(s.clone(), &env, &mut self.sockets, &self.netlink, self.fast_ifindexes.as_ref(), None).await?;
                fresh.insert(n, r);
            }
        }
        self.sockets.spawn_receivers(&self.rx_tx);
        let n_socks = self.sockets.socks.len();
        self.outbox.resize_with(n_socks, Vec::new);
        self.outbox_owner.resize_with(n_socks, Vec::new);

        // A VIP a MASTER holds after the reload is never deleted (keepalived #1854, #2364).
        let held = held_after(&setups, &plan, |o| self.inst.get(o).is_some_and(|r| r.fsm.state() == State::Master));
        for (o, name) in &plan.removed {
            self.delete_instance(*o, name, &held).await;
        }
        // An unchanged instance is left alone (its setup is equal to the new one).
        for k in plan.kept.iter().filter(|k| !k.unchanged()) {
            if let Some(s) = setups.get(k.new) {
                self.apply_kept(k, s, &env, &held).await;
            }
        }
        for (o, (rx, tx)) in resocket {
            let Some(r) = self.inst.get_mut(o) else { continue };
            info!(instance = %r.setup.name, ah = r.setup.auth.ah_key().is_some(), "reload: authentication changed; adverts move to the matching socket");
            r.rx_sock = rx;
            r.tx_sock = tx;
            if let (Some(fp), Some(key)) = (self.fast.as_mut(), r.fast_key) {
                fp.maps.remove(key);
            }
            r.fast_key = super::fast_key(self.fast_ifindexes.as_ref(), r.ifindex, &r.setup);
            r.fast_written = None;
        }

        // The new order: kept instances move to their new index, with their timers.
        let mut old: Vec<Option<Rt>> = std::mem::take(&mut self.inst).into_iter().map(Some).collect();
        let mut inst = Vec::with_capacity(setups.len());
        for (n, o) in old_of_new.iter().enumerate() {
            let r = match o {
                Some(o) => old.get_mut(*o).and_then(Option::take),
                None => fresh.remove(&n),
            };
            if let Some(r) = r {
                inst.push(r);
            }
        }
        self.inst = inst;
        self.timers.clear();
        self.by_vrid.clear();
        for (i, r) in self.inst.iter().enumerate() {
            for (slot, at) in r.armed.iter().enumerate() {
                if let Some(at) = at {
                    self.timers.insert((*at, i, slot));
                }
            }
            self.by_vrid.insert((r.rx_sock, r.setup.params.vrid), i);
        }
        // Sync groups keep their members' last status.
        let old_groups = std::mem::take(&mut self.groups);
        self.group_of.clear();
        for (name, notify, smtp) in &globals.groups {
            let members: Vec<usize> = self.inst.iter().enumerate().filter(|(_, r)| r.setup.sync_group.as_deref() == Some(name)).map(|(i, _)| i).collect();
            for m in &members {
                self.group_of.insert(*m, self.groups.len());
            }
            let group = match old_groups.iter().find(|g| g.1 == *name) {
                Some(g) => g.0.reindexed(&members, |n| old_of_new.get(n).copied().flatten()),
                None => SyncGroup::new(members),
            };
            self.groups.push((group, name.clone(), notify.clone(), *smtp));
        }
        let events = self.globals.events.take();
        let nft_table = std::mem::take(&mut self.globals.nft_table);
        self.globals = EngineGlobals { events, nft_table, ..globals };

        // Trackers: new ones start; results known already (vrrp_script, files...) carry over.
        let keys: BTreeSet<_> = self.inst.iter().flat_map(|r| r.setup.track.iter().map(|(k, _)| k.clone())).collect();
        let new_keys: BTreeSet<_> = keys.difference(&self.tracked).cloned().collect();
        if !new_keys.is_empty() {
            tracking::spawn(new_keys.clone(), &self.globals, self.netlink.clone(), self.track_tx.clone());
            self.tracked.extend(new_keys);
        }
        if self.no_accept.is_none() && self.inst.iter().any(|r| !r.setup.params.accept && r.setup.params.priority != ka_common::vrrp::VRRP_PRIO_OWNER) {
            self.no_accept = Some(crate::net::firewall::NoAcceptWorker::spawn(self.globals.nft_table.clone()));
        }
        let kept_new: HashSet<usize> = plan.kept.iter().map(|k| k.new).collect();
        for i in 0..self.inst.len() {
            let fresh_one = !kept_new.contains(&i);
            let before = self.inst[i].track.summary();
            self.retrack(i);
            self.sync_fast(i);
            if fresh_one {
                info!(instance = %self.inst[i].setup.name, "reload: new instance starting");
                self.dispatch(i, Event::Startup).await;
            }
            let after = self.inst[i].track.summary();
            if after != before || (fresh_one && after != Default::default()) {
                self.dispatch(i, Event::TrackerChanged(after)).await;
            }
        }
        Ok(())
    }

    /// Rebuilds an instance's tracking from the last known tracker values (its tracked
    /// objects may have changed in the reload).
    fn retrack(&mut self, i: usize) {
        let r = &mut self.inst[i];
        let mut set = crate::vrrp::track::TrackSet::default();
        r.track_status.clear();
        for (key, w) in &r.setup.track {
            if let Some(v) = self.last_track.get(key) {
                let (c, label) = super::track_value(*v, *w);
                set.set(key.clone(), c);
                r.track_status.insert(key.clone(), label);
            }
        }
        r.track = set;
    }

    /// A reload deleted instance `i`: it resigns if MASTER (priority 0), removes its VIPs but
    /// those `held` by a MASTER after the reload, and notifies DELETED (`notify_deleted`) or
    /// FAULT, as keepalived does.
    async fn delete_instance(&mut self, i: usize, name: &str, held: &HashSet<IpAddr>) {
        info!(instance = %name, state = self.inst[i].fsm.state().name(), "reload: deleting the instance");
        // Leaving its sync group must not move the other members.
        self.group_of.remove(&i);
        self.no_accept_filter(i, false);
        self.inst[i].vips.retain(|v| !held.contains(&v.addr));
        self.dispatch(i, Event::Delete).await;
        self.flush().await;
        for slot in 0..=SLOT_REFRESH {
            self.arm(i, slot, None);
        }
        if let (Some(fp), Some(key)) = (self.fast.as_mut(), self.inst[i].fast_key) {
            fp.maps.remove(key);
        }
        let r = &self.inst[i];
        if r.setup.vmac.is_some() && r.vip_ifindex != r.ifindex {
            if let Err(e) = self.netlink.del_link(r.vip_ifindex).await {
                warn!(instance = %name, error = %e, "removing VMAC interface");
            }
        }
    }

    /// A matched instance takes its new settings, keeping its state: as MASTER, removed
    /// routes, rules and VIPs go (VIPs another MASTER holds after the reload stay), added ones
    /// are installed and announced (gratuitous ARP / unsolicited NA).
    async fn apply_kept(&mut self, k: &KeptInstance, s: &InstanceSetup, env: &SysView, held: &HashSet<IpAddr>) {
        let i = k.old;
        let master = self.inst[i].fsm.state() == State::Master;
        let r = &self.inst[i];
        let links = link_of(&env.links, s.vmac.as_deref(), r.vip_ifindex);
        let vips: Vec<_> = s.vips.iter().chain(&s.excluded).map(|v| addr_spec(v, r.vip_ifindex, &links)).collect();
        let routes: Vec<_> = s.routes.iter().map(|x| super::route_spec(x, &links)).collect();
        let gone: Vec<_> = r.vips.iter().filter(|v| !vips.contains(v)).cloned().collect();
        let added: Vec<_> = vips.iter().filter(|v| !r.vips.contains(v)).cloned().collect();
        let routes_gone: Vec<_> = r.routes.iter().filter(|x| !routes.contains(x)).cloned().collect();
        let routes_added: Vec<_> = routes.iter().filter(|x| !r.routes.contains(x)).cloned().collect();
        let rules_gone: Vec<_> = r.setup.rules.iter().filter(|x| !s.rules.contains(x)).cloned().collect();
        let rules_added: Vec<_> = s.rules.iter().filter(|x| !r.setup.rules.contains(x)).cloned().collect();
        let name = s.name.clone();
        if k.name != k.old_name {
            info!(instance = %name, old_name = %k.old_name, "reload: instance renamed (state kept)");
        }
        if master {
            for x in rules_gone {
                if let Err(e) = self.netlink.rule(false, x).await {
                    warn!(instance = %name, error = %e, "removing virtual rule");
                }
            }
            for x in routes_gone {
                if let Err(e) = self.netlink.route(false, x).await {
                    warn!(instance = %name, error = %e, "removing virtual route");
                }
            }
            for v in gone.iter().filter(|v| !held.contains(&v.addr)) {
                info!(instance = %name, vip = %v.addr, "reload: removing VIP");
                if let Err(e) = self.netlink.del_addr(v.clone()).await {
                    warn!(instance = %name, error = %e, "removing VIP");
                }
            }
            for v in &added {
                info!(instance = %name, vip = %v.addr, "reload: adding VIP");
                if let Err(e) = self.netlink.add_addr(v.clone()).await {
                    warn!(instance = %name, error = %e, "adding VIP");
                }
            }
            for x in routes_added {
                if let Err(e) = self.netlink.route(true, x).await {
                    warn!(instance = %name, error = %e, "adding virtual route");
                }
            }
            for x in rules_added {
                if let Err(e) = self.netlink.rule(true, x).await {
                    warn!(instance = %name, error = %e, "adding virtual rule");
                }
            }
        }
        if self.inst[i].blocked {
            if let Some(fw) = self.no_accept.as_ref() {
                fw.remove(&name, gone.iter().map(|v| v.addr).collect());
                fw.add(&name, added.iter().map(|v| v.addr).collect());
            }
        }
        let (adv_addrs, adv_bytes) = advert_addrs(s);
        if s.peers.is_empty() && s.group != self.inst[i].setup.group {
            let sock = self.inst[i].rx_sock;
            if self.sockets.joined.entry(sock).or_default().insert(s.group) {
                if let Err(e) = self.sockets.socks[sock].join(s.group) {
                    warn!(instance = %name, group = %s.group, error = %e, "joining the multicast group");
                }
            }
        }
        let r = &mut self.inst[i];
        if k.settings_changed {
            let mut p = s.params.clone();
            p.primary_addr = r.src;
            if let Err(e) = r.fsm.reconfigure(p) {
                warn!(instance = %name, error = %e, "reload: new parameters refused; the instance keeps its old ones");
            }
        }
        r.setup = s.clone();
        r.vips = vips;
        r.routes = routes;
        r.adv_addrs = adv_addrs;
        r.adv_bytes = adv_bytes;
        // Rewritten at the next sync: intervals, priority or addresses may have changed.
        r.fast_written = None;
        if master && !added.is_empty() {
            self.garp_addrs(i, added.iter().map(|v| v.addr).collect(), s.params.garp_master_repeat.max(1));
        }
    }
}
